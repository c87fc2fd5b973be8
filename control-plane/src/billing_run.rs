//! The daily billing run (SPEC §6.4–6.5; 3scale §26.4).
//!
//! A pure core, [`plan`], takes one account's facts on a date — its contracts' plan history,
//! last month's usage, pricing rules, its background invoices and what they already bill — and
//! returns the changes to make: lines to bill (each with a key naming what it bills), invoices
//! to finalize, issue and charge, and events. [`run`] loads the facts of every account at once,
//! applies each account's changes atomically (a savepoint each; [`CHUNK`] accounts share a
//! commit), then charges. Every line's key is unique in the database and the
//! state moves depend on dates, so **running a date twice changes nothing**.
//!
//! What is billed when, for the month M of the date (prepaid and postpaid alike unless said):
//! - fixed costs of M — the monthly fee from the first billable day (the later of the 1st, the
//!   contract's start and its trial's end; prorated by days when that is not the 1st), the
//!   setup fee on a contract's first billable day, and for each plan change in M the refund of
//!   the old plan's rest of the month and the new plan's (upgrades only) — onto M's open
//!   invoice, or a new one when M's invoice was already finalized (prepaid: the second invoice
//!   of a mid-month upgrade);
//! - variable costs of M−1, on the 1st or the first run after it: postpaid onto M−1's invoice,
//!   prepaid onto M's;
//! - postpaid issued credits (Apigee's), as a credit line on their month's invoice;
//! - then: postpaid finalizes the invoices of months that ended, prepaid every open one;
//!   finalized invoices are issued [`ISSUE_AFTER_DAYS`] later (the admin's time to review:
//!   "usually 2–3 days" in 3scale) with due on = issued + 2; pending and unpaid invoices that
//!   are due are charged, failed charges retried every 3 days, three times.
//!
//! Only invoices the run created (`background`) are touched; manual ones never are. A run
//! looks back one month, so a missed day (or the 1st) is caught up by the next run.

use crate::billing::Settings;
use crate::contracts::{ContractType, PlanPeriod};
use crate::db::{Db, Engine};
use crate::error::ApiError;
use crate::invoice::{LineType, State};
use crate::invoices::{self, NewLine};
use crate::payments::{self, Gateways};
use crate::pricing::{self, Tier};
use crate::proration;
use chrono::{Datelike, Days, Months, NaiveDate};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use sqlx::{Acquire, AnyConnection, Row};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// Days between finalizing an invoice and issuing it.
pub const ISSUE_AFTER_DAYS: u64 = 2;
/// A trial's end is announced this many days ahead.
pub const TRIAL_NOTICE_DAYS: u64 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Prepaid,
    Postpaid,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountFacts {
    pub id: i64,
    /// Off: the run makes no new invoices for the account.
    pub billing_enabled: bool,
    /// Off (for the account, or in the settings): invoices, but no charges.
    pub charging_enabled: bool,
    /// The first day of the card's expiry month.
    pub card_expires_on: Option<NaiveDate>,
}

/// Units of a metric an application used in a month (its billable days only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    pub application_id: i64,
    pub metric_id: i64,
    pub metric_name: String,
    pub units: i64,
}

/// A background invoice that is not closed yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenInvoice {
    pub id: i64,
    pub period: String,
    pub state: State,
    pub finalized_on: Option<NaiveDate>,
    pub due_on: Option<NaiveDate>,
    pub last_charged_on: Option<NaiveDate>,
}

/// A postpaid account's issued credit that no invoice holds yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingCredit {
    pub id: i64,
    pub amount: Decimal,
    pub month: String,
    pub note: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Facts {
    pub date: NaiveDate,
    pub mode: Mode,
    pub account: AccountFacts,
    /// The account's plan history (every contract), oldest first.
    pub plans: Vec<PlanPeriod>,
    /// Last month's usage.
    pub usage: Vec<Usage>,
    /// Pricing rules by (plan, metric), shared by every account's facts.
    pub pricing: Arc<HashMap<(i64, i64), Vec<Tier>>>,
    pub invoices: Vec<OpenInvoice>,
    /// Keys of the lines already billed.
    pub billed: HashSet<String>,
    pub credits: Vec<PendingCredit>,
    /// Events already recorded, as `kind payload`.
    pub events: HashSet<String>,
}

impl Facts {
    /// An account's facts with nothing recorded yet.
    pub fn new(date: NaiveDate, mode: Mode, account: AccountFacts) -> Self {
        Facts {
            date,
            mode,
            account,
            plans: Vec::new(),
            usage: Vec::new(),
            pricing: Arc::default(),
            invoices: Vec::new(),
            billed: HashSet::new(),
            credits: Vec::new(),
            events: HashSet::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Add a line to the account's open background invoice of `period` (a new one if none).
    Bill {
        period: String,
        line: NewLine,
        credit_id: Option<i64>,
    },
    /// Finalize the account's open background invoices of `period`.
    Finalize {
        period: String,
    },
    Issue {
        invoice_id: i64,
    },
    Charge {
        invoice_id: i64,
    },
    Event {
        kind: String,
        payload: Value,
    },
}

pub fn month_of(day: NaiveDate) -> NaiveDate {
    day.with_day(1).unwrap_or(day)
}

fn next_month(first: NaiveDate) -> NaiveDate {
    first.checked_add_months(Months::new(1)).unwrap_or(first)
}

pub fn period_name(first: NaiveDate) -> String {
    first.format("%Y-%m").to_string()
}

/// One contract's rows, oldest first.
fn contracts(plans: &[PlanPeriod]) -> BTreeMap<(ContractType, i64), Vec<&PlanPeriod>> {
    let mut out: BTreeMap<(ContractType, i64), Vec<&PlanPeriod>> = BTreeMap::new();
    for p in plans {
        out.entry((p.contract_type, p.contract_id)).or_default().push(p);
    }
    out
}

/// The first day of `month` the contract is billed for: the latest of the 1st, its start and
/// its trial's end; `None` if that is not in the month or the contract ended before it.
pub fn billable_start(rows: &[&PlanPeriod], month: NaiveDate) -> Option<NaiveDate> {
    let first = rows.first()?;
    let start = month.max(first.starts_on).max(first.trial_ends_on);
    let ended = rows.last().and_then(|r| r.ends_on);
    (start < next_month(month) && ended.is_none_or(|e| start < e)).then_some(start)
}

fn key(row: &PlanPeriod, what: &str) -> String {
    format!("{}:{}:{what}", row.contract_type.as_str(), row.contract_id)
}

fn plan_line(
    row: &PlanPeriod,
    kind: LineType,
    name: String,
    description: String,
    cost: Decimal,
    key: String,
) -> NewLine {
    NewLine {
        name,
        description,
        quantity: Decimal::ONE,
        cost,
        kind,
        metric_id: None,
        contract_type: Some(row.contract_type.as_str().to_string()),
        contract_id: Some(row.contract_id),
        plan_id: Some(row.plan_id),
        billing_key: Some(key),
    }
}

/// The fixed costs of `month` for one contract, as of `date`.
fn fixed(rows: &[&PlanPeriod], month: NaiveDate, date: NaiveDate) -> Vec<NewLine> {
    let mut out = Vec::new();
    let Some(b) = billable_start(rows, month).filter(|b| *b <= date) else {
        return out;
    };
    let end = next_month(month).pred_opt().unwrap_or(month);
    // The plan the month's fee is billed at: the first row in force on day b (a row that ended
    // on b counts: a change on the billing day shows as fee, refund, upgrade).
    let Some(base_at) = rows
        .iter()
        .position(|r| r.starts_on <= b && r.ends_on.is_none_or(|e| e >= b))
    else {
        return out;
    };
    let base = rows[base_at];
    let m = period_name(month);
    let fee = proration::rest_of_month(base.cost_per_month, b);
    if !fee.is_zero() {
        out.push(plan_line(
            base,
            LineType::PlanCost,
            format!("Fixed fee ('{}')", base.plan_name),
            format!("{b} - {end}"),
            fee,
            key(base, &format!("fee:{m}")),
        ));
    }
    let first_billable = rows[0].starts_on.max(rows[0].trial_ends_on);
    if b == first_billable && !base.setup_fee.is_zero() {
        out.push(plan_line(
            base,
            LineType::SetupFee,
            format!("Setup fee ('{}')", base.plan_name),
            String::new(),
            base.setup_fee,
            key(base, "setup"),
        ));
    }
    for pair in rows[base_at..].windows(2) {
        let (old, new) = (pair[0], pair[1]);
        if new.starts_on < b || new.starts_on > end || new.starts_on > date {
            continue;
        }
        for line in proration::change(old.cost_per_month, new.cost_per_month, new.starts_on) {
            let (kind, amount, name, what) = match line {
                proration::Line::Refund(a) => (LineType::Refund, a, format!("Refund ('{}')", old.plan_name), "refund"),
                proration::Line::Upgrade(a) => (
                    LineType::Upgrade,
                    a,
                    format!("Application upgrade ('{}' to '{}')", old.plan_name, new.plan_name),
                    "upgrade",
                ),
            };
            if !amount.is_zero() {
                out.push(plan_line(
                    new,
                    kind,
                    name,
                    format!("{} - {end}", new.starts_on),
                    amount,
                    format!(
                        "{}:{}:change:{}:{what}",
                        new.contract_type.as_str(),
                        new.contract_id,
                        new.id
                    ),
                ));
            }
        }
    }
    out
}

/// The plan an application was on at the end of `month` (what its usage is priced at).
fn plan_at_end<'a>(rows: &[&'a PlanPeriod], month: NaiveDate) -> Option<&'a PlanPeriod> {
    let next = next_month(month);
    rows.iter()
        .rev()
        .find(|r| r.starts_on < next && r.ends_on.is_none_or(|e| e > month))
        .copied()
}

/// The whole plan for one account on its date.
pub fn plan(f: &Facts) -> Vec<Change> {
    let (date, mode, account) = (f.date, f.mode, &f.account);
    let month = month_of(date);
    let prev = month.checked_sub_months(Months::new(1)).unwrap_or(month);
    let mut out = Vec::new();
    let bill = |period: NaiveDate, line: NewLine, credit_id: Option<i64>, out: &mut Vec<Change>| {
        if line.billing_key.as_ref().is_some_and(|k| !f.billed.contains(k)) {
            out.push(Change::Bill {
                period: period_name(period),
                line,
                credit_id,
            });
        }
    };
    let by_contract = contracts(&f.plans);
    if account.billing_enabled {
        for m in [prev, month] {
            for rows in by_contract.values() {
                for line in fixed(rows, m, date) {
                    bill(m, line, None, &mut out);
                }
            }
        }
        let target = match mode {
            Mode::Postpaid => prev,
            Mode::Prepaid => month,
        };
        for u in &f.usage {
            let Some(rows) = by_contract.get(&(ContractType::Application, u.application_id)) else {
                continue;
            };
            let Some(row) = billable_start(rows, prev).and_then(|_| plan_at_end(rows, prev)) else {
                continue;
            };
            let Some(tiers) = f.pricing.get(&(row.plan_id, u.metric_id)) else {
                continue;
            };
            let cost = pricing::variable_cost(tiers, u.units);
            if cost.is_zero() {
                continue;
            }
            let line = NewLine {
                name: format!("Variable cost ('{}')", u.metric_name),
                description: format!("{} units in {}", u.units, period_name(prev)),
                quantity: Decimal::from(u.units),
                cost,
                kind: LineType::VariableCost,
                metric_id: Some(u.metric_id),
                contract_type: Some(ContractType::Application.as_str().to_string()),
                contract_id: Some(u.application_id),
                plan_id: Some(row.plan_id),
                billing_key: Some(format!(
                    "application:{}:variable:{}:{}",
                    u.application_id,
                    period_name(prev),
                    u.metric_id
                )),
            };
            bill(target, line, None, &mut out);
        }
        if mode == Mode::Postpaid {
            for c in &f.credits {
                let Some(m) = crate::invoice::parse_period(&c.month).filter(|m| *m <= month) else {
                    continue;
                };
                let line = NewLine {
                    name: "Credit".into(),
                    description: c.note.clone().unwrap_or_default(),
                    quantity: Decimal::ONE,
                    cost: -c.amount,
                    kind: LineType::Credit,
                    metric_id: None,
                    contract_type: None,
                    contract_id: None,
                    plan_id: None,
                    billing_key: Some(format!("credit:{}", c.id)),
                };
                bill(m, line, Some(c.id), &mut out);
            }
        }
    }
    // Finalize: the months that ended (postpaid) or everything open (prepaid), including
    // invoices the lines above are about to open.
    let mut periods: BTreeSet<String> = f
        .invoices
        .iter()
        .filter(|i| i.state == State::Open)
        .map(|i| i.period.clone())
        .collect();
    periods.extend(out.iter().filter_map(|c| match c {
        Change::Bill { period, .. } => Some(period.clone()),
        _ => None,
    }));
    let this_month = period_name(month);
    for period in periods {
        if mode == Mode::Prepaid || period < this_month {
            out.push(Change::Finalize { period });
        }
    }
    for i in &f.invoices {
        let issue =
            i.state == State::Finalized && i.finalized_on.is_some_and(|d| d + Days::new(ISSUE_AFTER_DAYS) <= date);
        if issue {
            out.push(Change::Issue { invoice_id: i.id });
        }
        let due = i.state.chargeable()
            && i.due_on.is_some_and(|d| d <= date)
            && i.last_charged_on
                .is_none_or(|d| d + Days::new(payments::RETRY_DAYS) <= date);
        if due && account.charging_enabled {
            out.push(Change::Charge { invoice_id: i.id });
        }
    }
    let event = |kind: &str, payload: Value, out: &mut Vec<Change>| {
        if !f.events.contains(&format!("{kind} {payload}")) {
            out.push(Change::Event {
                kind: kind.into(),
                payload,
            });
        }
    };
    for rows in by_contract.values() {
        let (first, last) = (rows[0], rows[rows.len() - 1]);
        let trial_end = first.trial_ends_on;
        let live = last.ends_on.is_none();
        if live && trial_end > first.starts_on && trial_end > date && date + Days::new(TRIAL_NOTICE_DAYS) >= trial_end {
            let payload = json!({"contract_type": first.contract_type.as_str(), "contract_id": first.contract_id,
                "plan": last.plan_name, "trial_ends_on": trial_end.to_string()});
            event("contract.trial_ending", payload, &mut out);
        }
    }
    if let Some(expiry) = account.card_expires_on {
        let last_day = next_month(expiry).pred_opt().unwrap_or(expiry);
        let warn_from = expiry.checked_sub_months(Months::new(1)).unwrap_or(expiry);
        if date >= warn_from && date <= last_day {
            event(
                "credit_card.expiring",
                json!({"expires_on": period_name(expiry)}),
                &mut out,
            );
        }
    }
    out
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub date: String,
    pub accounts: usize,
    pub lines: usize,
    pub invoices_created: usize,
    pub finalized: usize,
    pub issued: usize,
    pub charged: usize,
    pub charge_failures: usize,
    pub events: usize,
    /// Accounts whose changes failed (rolled back; the next run tries again).
    pub failed_accounts: usize,
}

impl Report {
    fn add(&mut self, part: &Report) {
        self.lines += part.lines;
        self.invoices_created += part.invoices_created;
        self.finalized += part.finalized;
        self.issued += part.issued;
        self.events += part.events;
    }

    pub fn changes(&self) -> usize {
        self.lines + self.finalized + self.issued + self.charged + self.charge_failures + self.events
    }

    pub fn to_json(&self) -> Value {
        json!({
            "date": self.date, "state": "done", "accounts": self.accounts, "lines_billed": self.lines,
            "invoices_created": self.invoices_created, "invoices_finalized": self.finalized,
            "invoices_issued": self.issued, "invoices_charged": self.charged,
            "charges_failed": self.charge_failures, "events": self.events,
            "failed_accounts": self.failed_accounts,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("another billing run holds the lock")]
    Busy,
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl From<RunError> for ApiError {
    fn from(e: RunError) -> Self {
        match e {
            RunError::Busy => ApiError::invalid("base", "a billing run is in progress; try again later"),
            RunError::Api(e) => e,
        }
    }
}

impl From<sqlx::Error> for RunError {
    fn from(e: sqlx::Error) -> Self {
        RunError::Api(e.into())
    }
}

/// Takes the named lease for `seconds` unless another holder has it; `true` if ours now.
pub async fn acquire_lease(db: &Db, name: &str, holder: &str, seconds: i64) -> Result<bool, ApiError> {
    let now = chrono::Utc::now();
    let expires = (now + chrono::Duration::seconds(seconds)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let done = sqlx::query(
        "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
         WHERE leases.expires_at < $4 OR leases.holder = excluded.holder",
    )
    .bind(name)
    .bind(holder)
    .bind(expires)
    .bind(crate::time::now())
    .execute(&db.pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn release_lease(db: &Db, name: &str, holder: &str) -> Result<(), ApiError> {
    sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
        .bind(name)
        .bind(holder)
        .execute(&db.pool)
        .await?;
    Ok(())
}

const LEASE: &str = "billing-run";

/// Runs billing for `date` under the billing lease (one run at a time, across replicas).
pub async fn run(db: &Db, gateways: &Gateways, date: NaiveDate) -> Result<Report, RunError> {
    let holder = format!("{}-{}", std::process::id(), rand::random::<u64>());
    if !acquire_lease(db, LEASE, &holder, 3600).await? {
        return Err(RunError::Busy);
    }
    let result = run_locked(db, gateways, date).await;
    release_lease(db, LEASE, &holder).await?;
    result.map_err(RunError::Api)
}

fn parse_day(s: Option<String>) -> Option<NaiveDate> {
    s.as_deref().and_then(crate::time::day)
}

async fn run_locked(db: &Db, gateways: &Gateways, date: NaiveDate) -> Result<Report, ApiError> {
    let started = crate::time::now();
    let settings = crate::billing::settings(db).await?;
    let mode = if settings.mode == "prepaid" {
        Mode::Prepaid
    } else {
        Mode::Postpaid
    };
    crate::contracts::sync_all(db, date).await?;
    let month = month_of(date);
    let prev = month.checked_sub_months(Months::new(1)).unwrap_or(month);
    let clock = std::time::Instant::now();
    let facts = load(db, &settings, mode, date, prev).await?;
    let loaded = clock.elapsed();
    let mut report = Report {
        date: date.to_string(),
        accounts: facts.len(),
        ..Report::default()
    };
    let mut work = Vec::new();
    for f in facts.values() {
        let changes = plan(f);
        if changes.is_empty() {
            continue;
        }
        // The open background invoices lines go to (the oldest of a period, if several).
        let mut open = HashMap::new();
        for i in f.invoices.iter().filter(|i| i.state == State::Open) {
            open.entry(i.period.clone()).or_insert(i.id);
        }
        work.push(Work {
            account: f.account.id,
            changes,
            open,
        });
    }
    drop(facts);
    apply_all(db, &settings, date, &work, &mut report).await?;
    let charges: Vec<i64> = work
        .iter()
        .flat_map(|w| w.changes.iter())
        .filter_map(|c| match c {
            Change::Charge { invoice_id } => Some(*invoice_id),
            _ => None,
        })
        .collect();
    let applied = clock.elapsed() - loaded;
    tracing::info!(
        load_ms = loaded.as_millis() as u64,
        apply_ms = applied.as_millis() as u64,
        "billing run: facts loaded, changes applied"
    );
    for id in charges {
        match payments::charge(db, gateways, id, date).await {
            Ok((_, outcome)) if outcome.success => report.charged += 1,
            Ok(_) => report.charge_failures += 1,
            // Not chargeable (no card, offline gateway): it stays pending for an admin.
            Err(ApiError::Invalid(e)) => tracing::info!(invoice = id, reason = ?e, "invoice not charged"),
            Err(e) => return Err(e),
        }
    }
    sqlx::query(
        "INSERT INTO billing_runs (date, accounts, changes, started_at, finished_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (date) DO UPDATE SET accounts = excluded.accounts, changes = excluded.changes,
           started_at = excluded.started_at, finished_at = excluded.finished_at",
    )
    .bind(date.to_string())
    .bind(report.accounts as i64)
    .bind(report.changes() as i64)
    .bind(started)
    .bind(crate::time::now())
    .execute(&db.pool)
    .await?;
    tracing::info!(?report, "billing run done");
    Ok(report)
}

/// Every account's facts, loaded with a few queries over all accounts.
async fn load(
    db: &Db,
    settings: &Settings,
    mode: Mode,
    date: NaiveDate,
    prev: NaiveDate,
) -> Result<BTreeMap<i64, Facts>, ApiError> {
    let mut conn = db.pool.acquire().await?;
    let mut facts: BTreeMap<i64, Facts> = BTreeMap::new();
    let rows = sqlx::query(
        "SELECT id, monthly_billing_enabled, monthly_charging_enabled, credit_card_expires_on FROM accounts ORDER BY id",
    )
    .fetch_all(&mut *conn)
    .await?;
    for r in rows {
        let id: i64 = r.try_get("id")?;
        let expires: Option<String> = r.try_get("credit_card_expires_on")?;
        let account = AccountFacts {
            id,
            billing_enabled: r.try_get::<i64, _>("monthly_billing_enabled")? != 0,
            charging_enabled: settings.charging_enabled && r.try_get::<i64, _>("monthly_charging_enabled")? != 0,
            card_expires_on: expires.and_then(|e| crate::invoice::parse_period(&e)),
        };
        facts.insert(id, Facts::new(date, mode, account));
    }
    for p in crate::contracts::all(&mut conn).await? {
        if let Some(f) = facts.get_mut(&p.account_id) {
            f.plans.push(p);
        }
    }
    let rules = sqlx::query("SELECT plan_id, metric_id, min, max, cost_per_unit FROM pricing_rules ORDER BY min")
        .fetch_all(&mut *conn)
        .await?;
    let mut pricing: HashMap<(i64, i64), Vec<Tier>> = HashMap::new();
    for r in rules {
        pricing
            .entry((r.try_get("plan_id")?, r.try_get("metric_id")?))
            .or_default()
            .push(Tier {
                min: r.try_get("min")?,
                max: r.try_get("max")?,
                cost_per_unit: crate::db::decimal(&r, "cost_per_unit")?,
            });
    }
    // Last month's usage of applications whose plan prices something, from their first
    // billable day.
    let priced_plans: HashSet<i64> = pricing.keys().map(|(plan, _)| *plan).collect();
    let pricing = Arc::new(pricing);
    let names: HashMap<i64, String> = sqlx::query("SELECT id, system_name FROM metrics")
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("system_name")?)))
        .collect::<Result<_, sqlx::Error>>()?;
    let ts = |d: NaiveDate| d.and_hms_opt(0, 0, 0).map_or(0, |t| t.and_utc().timestamp());
    let month_usage = sqlx::query(
        "SELECT application_id, metric_id, CAST(SUM(value) AS BIGINT) AS units FROM usage_hourly
         WHERE hour_start >= $1 AND hour_start < $2 GROUP BY application_id, metric_id",
    )
    .bind(ts(prev))
    .bind(ts(next_month(prev)))
    .fetch_all(&mut *conn)
    .await?;
    let mut usage: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
    for r in month_usage {
        usage
            .entry(r.try_get("application_id")?)
            .or_default()
            .push((r.try_get("metric_id")?, r.try_get("units")?));
    }
    for f in facts.values_mut() {
        let by_contract = contracts(&f.plans);
        let mut found = Vec::new();
        for ((kind, app), rows) in &by_contract {
            let (Some(start), Some(row)) = (billable_start(rows, prev), plan_at_end(rows, prev)) else {
                continue;
            };
            if *kind != ContractType::Application || !priced_plans.contains(&row.plan_id) {
                continue;
            }
            let units: Vec<(i64, i64)> = if start == prev {
                usage.get(app).cloned().unwrap_or_default()
            } else {
                // Billing started mid-month (a trial ended): only the days after count.
                sqlx::query(
                    "SELECT metric_id, CAST(SUM(value) AS BIGINT) AS units FROM usage_hourly
                     WHERE application_id = $1 AND hour_start >= $2 AND hour_start < $3 GROUP BY metric_id",
                )
                .bind(app)
                .bind(ts(start))
                .bind(ts(next_month(prev)))
                .fetch_all(&mut *conn)
                .await?
                .iter()
                .map(|r| Ok((r.try_get("metric_id")?, r.try_get("units")?)))
                .collect::<Result<_, sqlx::Error>>()?
            };
            for (metric_id, units) in units {
                found.push(Usage {
                    application_id: *app,
                    metric_id,
                    metric_name: names.get(&metric_id).cloned().unwrap_or_else(|| metric_id.to_string()),
                    units,
                });
            }
        }
        f.usage = found;
        f.pricing = Arc::clone(&pricing);
    }
    let open = sqlx::query(
        "SELECT id, account_id, period, state, finalized_at, due_on, last_charged_on FROM invoices
         WHERE creation_type = 'background' AND state IN ('open', 'finalized', 'pending', 'unpaid')",
    )
    .fetch_all(&mut *conn)
    .await?;
    for r in open {
        let state: String = r.try_get("state")?;
        if let (Some(f), Some(state)) = (facts.get_mut(&r.try_get::<i64, _>("account_id")?), State::parse(&state)) {
            f.invoices.push(OpenInvoice {
                id: r.try_get("id")?,
                period: r.try_get("period")?,
                state,
                finalized_on: parse_day(r.try_get("finalized_at")?),
                due_on: parse_day(r.try_get("due_on")?),
                last_charged_on: parse_day(r.try_get("last_charged_on")?),
            });
        }
    }
    // What is billed already: every key the run could make now lives on an invoice of last
    // month or later (issued credits are marked invoiced instead).
    let billed = sqlx::query(
        "SELECT i.account_id, l.billing_key FROM line_items l JOIN invoices i ON i.id = l.invoice_id
         WHERE l.billing_key IS NOT NULL AND i.period >= $1",
    )
    .bind(period_name(prev))
    .fetch_all(&mut *conn)
    .await?;
    for r in billed {
        if let Some(f) = facts.get_mut(&r.try_get::<i64, _>("account_id")?) {
            f.billed.insert(r.try_get("billing_key")?);
        }
    }
    let credits = sqlx::query(
        "SELECT id, account_id, amount, billing_month, note FROM issued_credits
         WHERE invoiced_at IS NULL AND transaction_id IS NULL",
    )
    .fetch_all(&mut *conn)
    .await?;
    for r in credits {
        if let Some(f) = facts.get_mut(&r.try_get::<i64, _>("account_id")?) {
            f.credits.push(PendingCredit {
                id: r.try_get("id")?,
                amount: crate::db::decimal(&r, "amount")?,
                month: r.try_get("billing_month")?,
                note: r.try_get("note")?,
            });
        }
    }
    let events = sqlx::query(
        "SELECT account_id, kind, payload FROM events WHERE kind IN ('contract.trial_ending', 'credit_card.expiring')",
    )
    .fetch_all(&mut *conn)
    .await?;
    for r in events {
        if let Some(f) = facts.get_mut(&r.try_get::<i64, _>("account_id")?) {
            let (kind, payload): (String, String) = (r.try_get("kind")?, r.try_get("payload")?);
            f.events.insert(format!("{kind} {payload}"));
        }
    }
    Ok(facts)
}

/// Accounts committed together: each account's changes are atomic on their own (a savepoint
/// each), and a chunk shares one commit, which is most of what a transaction costs.
pub const CHUNK: usize = 256;

/// One account's work: its changes and its open background invoices by period.
struct Work {
    account: i64,
    changes: Vec<Change>,
    open: HashMap<String, i64>,
}

/// Applies every account's changes (all but charges), each account under its own savepoint so
/// that an account that fails leaves nothing half-done and does not stop the others.
async fn apply_all(
    db: &Db,
    settings: &Settings,
    date: NaiveDate,
    work: &[Work],
    report: &mut Report,
) -> Result<(), ApiError> {
    for chunk in work.chunks(CHUNK) {
        let mut tx = db.begin_write().await?;
        for w in chunk {
            let mut account_tx = tx.begin().await?;
            let mut part = Report::default();
            match apply(&mut account_tx, settings, w, date, &mut part).await {
                Ok(()) => {
                    account_tx.commit().await?;
                    report.add(&part);
                }
                Err(e) => {
                    account_tx.rollback().await?;
                    report.failed_accounts += 1;
                    tracing::error!(account = w.account, error = %e, "billing run: account not billed; the next run retries it");
                }
            }
        }
        tx.commit().await?;
    }
    Ok(())
}

async fn apply(
    conn: &mut AnyConnection,
    settings: &Settings,
    w: &Work,
    date: NaiveDate,
    report: &mut Report,
) -> Result<(), ApiError> {
    let mut open = w.open.clone();
    let mut created: Vec<(String, i64)> = Vec::new();
    for change in &w.changes {
        match change {
            Change::Bill {
                period,
                line,
                credit_id,
            } => {
                let invoice = match open.get(period) {
                    Some(id) => *id,
                    None => {
                        let id = invoices::create(conn, settings, w.account, period, "background")
                            .await?
                            .id;
                        report.invoices_created += 1;
                        open.insert(period.clone(), id);
                        created.push((period.clone(), id));
                        id
                    }
                };
                if invoices::add_line(conn, invoice, line).await?.is_some() {
                    report.lines += 1;
                }
                if let Some(credit) = credit_id {
                    sqlx::query("UPDATE issued_credits SET invoiced_at = $1 WHERE id = $2")
                        .bind(crate::time::now())
                        .bind(credit)
                        .execute(&mut *conn)
                        .await?;
                }
            }
            Change::Finalize { period } => {
                let ids = w.open.iter().chain(created.iter().map(|(p, id)| (p, id)));
                for (_, id) in ids.filter(|(p, _)| *p == period) {
                    invoices::change_state(conn, *id, State::Finalized, date).await?;
                    report.finalized += 1;
                }
            }
            Change::Issue { invoice_id } => {
                invoices::change_state(conn, *invoice_id, State::Pending, date).await?;
                report.issued += 1;
            }
            Change::Charge { .. } => {}
            Change::Event { kind, payload } => {
                crate::events::record(conn, kind, w.account, payload).await?;
                report.events += 1;
            }
        }
    }
    Ok(())
}

/// The daily schedule: at `hour` UTC (3scale's billing day starts at 08:00) runs billing for
/// the day, in whichever replica takes the lease first; the others find it held or the day
/// already done. Checks every minute, so a replica that was down at the hour catches up.
pub async fn schedule(db: Db, gateways: Gateways, hour: u32, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        let now = chrono::Utc::now();
        let today = now.date_naive();
        if now.hour() >= hour {
            let done: Result<Option<String>, sqlx::Error> =
                sqlx::query_scalar("SELECT date FROM billing_runs WHERE date = $1")
                    .bind(today.to_string())
                    .fetch_optional(&db.pool)
                    .await;
            if matches!(done, Ok(None)) {
                match run(&db, &gateways, today).await {
                    Ok(report) => tracing::info!(date = %today, changes = report.changes(), "scheduled billing run"),
                    Err(RunError::Busy) => {}
                    Err(e) => tracing::error!(error = %e, "scheduled billing run failed"),
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => {}
            _ = stop.changed() => return,
        }
    }
}

use chrono::Timelike;

/// The SQL for "this text date plus N days" in the engine's dialect.
pub fn add_days_sql(engine: Engine, date: &str, days: &str) -> String {
    match engine {
        Engine::Sqlite => format!("date(substr({date}, 1, 10), '+' || {days} || ' days')"),
        Engine::Postgres => {
            format!("to_char(to_date(substr({date}, 1, 10), 'YYYY-MM-DD') + ({days})::int, 'YYYY-MM-DD')")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn row(id: i64, plan: &str, fee: i64, setup: i64, trial_end: &str, starts: &str, ends: Option<&str>) -> PlanPeriod {
        PlanPeriod {
            id,
            contract_type: ContractType::Application,
            contract_id: 7,
            account_id: 1,
            plan_id: id * 10,
            plan_name: plan.into(),
            setup_fee: Decimal::from(setup),
            cost_per_month: Decimal::from(fee),
            trial_ends_on: day(trial_end),
            starts_on: day(starts),
            ends_on: ends.map(day),
        }
    }

    fn facts(mode: Mode, date: &str, plans: Vec<PlanPeriod>) -> Facts {
        let account = AccountFacts {
            id: 1,
            billing_enabled: true,
            charging_enabled: true,
            card_expires_on: None,
        };
        Facts {
            plans,
            ..Facts::new(day(date), mode, account)
        }
    }

    /// (type, cost) of the lines billed, in order.
    fn lines(changes: &[Change]) -> Vec<(&'static str, Decimal)> {
        changes
            .iter()
            .filter_map(|c| match c {
                Change::Bill { line, .. } => Some((line.kind.as_str(), line.cost)),
                _ => None,
            })
            .collect()
    }

    fn total(changes: &[Change]) -> Decimal {
        lines(changes).iter().map(|(_, c)| *c).sum()
    }

    /// What applying the changes leaves for the next run: the keys billed.
    fn bill_into(f: &mut Facts, changes: &[Change]) {
        for c in changes {
            if let Change::Bill { line, .. } = c {
                f.billed.insert(line.billing_key.clone().unwrap());
            }
        }
    }

    #[test]
    fn prepaid_upgrade_on_the_billing_day_is_200_minus_200_plus_300() {
        // Signed up for A ($200) on the 1st and upgraded to B ($300) the same day.
        let plans = vec![
            row(1, "Plan A", 200, 0, "2026-11-01", "2026-11-01", Some("2026-11-01")),
            row(2, "Plan B", 300, 0, "2026-11-01", "2026-11-01", None),
        ];
        let changes = plan(&facts(Mode::Prepaid, "2026-11-01", plans));
        assert_eq!(
            lines(&changes),
            vec![
                ("plan_cost", Decimal::from(200)),
                ("refund", Decimal::from(-200)),
                ("upgrade", Decimal::from(300))
            ]
        );
        assert_eq!(total(&changes), Decimal::from(300));
        assert!(
            changes.contains(&Change::Finalize {
                period: "2026-11".into()
            }),
            "prepaid finalizes at once"
        );
    }

    #[test]
    fn prepaid_upgrade_after_the_invoice_was_issued_is_a_second_invoice_of_50() {
        let before = vec![row(1, "Plan A", 200, 0, "2026-10-01", "2026-10-01", None)];
        let mut f = facts(Mode::Prepaid, "2026-11-01", before);
        f.billed.insert("application:7:fee:2026-10".into());
        let first = plan(&f);
        assert_eq!(lines(&first), vec![("plan_cost", Decimal::from(200))]);
        bill_into(&mut f, &first);
        // Upgraded on the 16th of a 30-day month, after the November invoice was issued.
        f.plans = vec![
            row(1, "Plan A", 200, 0, "2026-10-01", "2026-10-01", Some("2026-11-16")),
            row(2, "Plan B", 300, 0, "2026-10-01", "2026-11-16", None),
        ];
        f.date = day("2026-11-16");
        f.invoices = vec![OpenInvoice {
            id: 1,
            period: "2026-11".into(),
            state: State::Pending,
            finalized_on: Some(day("2026-11-01")),
            due_on: Some(day("2026-11-05")),
            last_charged_on: None,
        }];
        let second = plan(&f);
        assert_eq!(
            lines(&second),
            vec![("refund", Decimal::from(-100)), ("upgrade", Decimal::from(150))]
        );
        assert_eq!(total(&second), Decimal::from(50));
        bill_into(&mut f, &second);
        assert!(lines(&plan(&f)).is_empty(), "billed once");
    }

    #[test]
    fn downgrades_refund_nothing_and_postpaid_changes_go_on_the_open_invoice() {
        let plans = vec![
            row(1, "Plan B", 300, 0, "2026-10-01", "2026-10-01", Some("2026-11-16")),
            row(2, "Plan A", 200, 0, "2026-10-01", "2026-11-16", None),
        ];
        let mut f = facts(Mode::Postpaid, "2026-11-20", plans);
        f.billed.extend([
            "application:7:fee:2026-10".to_string(),
            "application:7:fee:2026-11".to_string(),
        ]);
        assert!(lines(&plan(&f)).is_empty());
    }

    #[test]
    fn setup_fee_on_the_first_invoice_only() {
        // $10/month + $5 setup → first charge $15, then $10.
        let plans = vec![row(1, "Basic", 10, 5, "2026-10-01", "2026-10-01", None)];
        let mut f = facts(Mode::Prepaid, "2026-10-01", plans);
        let october = plan(&f);
        assert_eq!(total(&october), Decimal::from(15));
        bill_into(&mut f, &october);
        f.date = day("2026-11-01");
        let november = plan(&f);
        assert_eq!(lines(&november), vec![("plan_cost", Decimal::from(10))]);
    }

    #[test]
    fn billing_starts_after_the_trial_and_an_upgrade_does_not_reset_it() {
        // A 20-day trial from 2026-10-05: billed from 2026-10-25, 7 of 31 days.
        let mut f = facts(
            Mode::Postpaid,
            "2026-10-20",
            vec![row(1, "Pro", 31, 0, "2026-10-25", "2026-10-05", None)],
        );
        let during = plan(&f);
        assert!(lines(&during).is_empty());
        assert!(
            during
                .iter()
                .any(|c| matches!(c, Change::Event { kind, .. } if kind == "contract.trial_ending")),
            "the trial's end is announced 10 days ahead: {during:?}"
        );
        // Upgraded during the trial: the new plan keeps the trial's end.
        f.plans = vec![
            row(1, "Pro", 31, 0, "2026-10-25", "2026-10-05", Some("2026-10-21")),
            row(2, "Max", 62, 0, "2026-10-25", "2026-10-21", None),
        ];
        f.date = day("2026-10-25");
        assert_eq!(lines(&plan(&f)), vec![("plan_cost", Decimal::from(14))]);
    }

    #[test]
    fn postpaid_first_of_month_bills_variable_costs_finalizes_and_opens_the_month() {
        let mut f = facts(
            Mode::Postpaid,
            "2026-11-01",
            vec![row(1, "Metered", 10, 0, "2026-10-01", "2026-10-01", None)],
        );
        f.billed.insert("application:7:fee:2026-10".into());
        f.usage = vec![Usage {
            application_id: 7,
            metric_id: 3,
            metric_name: "hits".into(),
            units: 1500,
        }];
        Arc::make_mut(&mut f.pricing).insert(
            (10, 3),
            vec![
                Tier {
                    min: 1,
                    max: Some(1000),
                    cost_per_unit: Decimal::new(10, 4),
                },
                Tier {
                    min: 1001,
                    max: None,
                    cost_per_unit: Decimal::new(5, 4),
                },
            ],
        );
        f.invoices = vec![OpenInvoice {
            id: 4,
            period: "2026-10".into(),
            state: State::Open,
            finalized_on: None,
            due_on: None,
            last_charged_on: None,
        }];
        let changes = plan(&f);
        let periods: Vec<(&str, &str, Decimal)> = changes
            .iter()
            .filter_map(|c| match c {
                Change::Bill { period, line, .. } => Some((period.as_str(), line.kind.as_str(), line.cost)),
                _ => None,
            })
            .collect();
        assert_eq!(
            periods,
            vec![
                ("2026-11", "plan_cost", Decimal::from(10)),
                ("2026-10", "variable_cost", Decimal::new(125, 2))
            ]
        );
        assert!(changes.contains(&Change::Finalize {
            period: "2026-10".into()
        }));
        assert!(
            !changes.contains(&Change::Finalize {
                period: "2026-11".into()
            }),
            "postpaid: not before the month ends"
        );
        f.mode = Mode::Prepaid;
        let prepaid = plan(&f);
        assert!(
            prepaid.iter().any(|c| matches!(c, Change::Bill { period, line, .. }
            if period == "2026-11" && line.kind == LineType::VariableCost)),
            "prepaid: last month's usage on this month's invoice"
        );
    }

    #[test]
    fn issue_after_review_charge_when_due_and_retry_every_three_days() {
        let mut f = facts(Mode::Postpaid, "2026-11-03", vec![]);
        let inv = |id, state, finalized: &str, due: Option<&str>, charged: Option<&str>| OpenInvoice {
            id,
            period: "2026-10".into(),
            state,
            finalized_on: Some(day(finalized)),
            due_on: due.map(day),
            last_charged_on: charged.map(day),
        };
        f.invoices = vec![
            inv(1, State::Finalized, "2026-11-01", None, None),
            inv(2, State::Finalized, "2026-11-02", None, None),
            inv(3, State::Pending, "2026-10-01", Some("2026-11-03"), None),
            inv(4, State::Unpaid, "2026-10-01", Some("2026-10-20"), Some("2026-11-01")),
            inv(5, State::Unpaid, "2026-10-01", Some("2026-10-20"), Some("2026-10-31")),
        ];
        let changes = plan(&f);
        assert_eq!(
            changes,
            vec![
                Change::Issue { invoice_id: 1 },
                Change::Charge { invoice_id: 3 },
                Change::Charge { invoice_id: 5 }
            ]
        );
        f.account.charging_enabled = false;
        assert_eq!(
            plan(&f),
            vec![Change::Issue { invoice_id: 1 }],
            "charging off: invoices, no charges"
        );
    }

    #[test]
    fn billing_disabled_makes_no_invoices() {
        let mut f = facts(
            Mode::Prepaid,
            "2026-11-01",
            vec![row(1, "Basic", 10, 5, "2026-10-01", "2026-10-01", None)],
        );
        f.account.billing_enabled = false;
        assert!(lines(&plan(&f)).is_empty());
    }

    #[test]
    fn an_expiring_card_is_announced_once() {
        let mut f = facts(Mode::Postpaid, "2026-11-10", vec![]);
        f.account.card_expires_on = Some(day("2026-12-01"));
        let changes = plan(&f);
        let Some(Change::Event { kind, payload }) = changes.first() else {
            panic!("{changes:?}")
        };
        assert_eq!(kind, "credit_card.expiring");
        f.events.insert(format!("{kind} {payload}"));
        assert!(plan(&f).is_empty());
    }

    fn history() -> impl Strategy<Value = Vec<PlanPeriod>> {
        // A contract started some day of 2026, with a trial of 0-40 days and up to 3 plan
        // changes on later days.
        (
            0u64..365,
            0u64..40,
            proptest::collection::vec((1u64..60, 0i64..500), 0..4),
            0i64..500,
            0i64..50,
        )
            .prop_map(|(start, trial, changes, first_fee, setup)| {
                let start = day("2026-01-01") + Days::new(start);
                let trial_end = start + Days::new(trial);
                let mut rows = vec![row(1, "P1", first_fee, setup, "2026-01-01", "2026-01-01", None)];
                rows[0].starts_on = start;
                rows[0].trial_ends_on = trial_end;
                let mut on = start;
                for (i, (gap, fee)) in changes.into_iter().enumerate() {
                    on = on + Days::new(gap);
                    let last = rows.len() - 1;
                    rows[last].ends_on = Some(on);
                    let mut next = row(i as i64 + 2, "Pn", fee, setup, "2026-01-01", "2026-01-01", None);
                    next.starts_on = on;
                    next.trial_ends_on = trial_end;
                    rows.push(next);
                }
                rows
            })
    }

    proptest! {
        #[test]
        fn a_date_run_twice_bills_once_and_no_key_is_billed_twice(
            plans in history(), days in 1u64..120, prepaid in any::<bool>(),
        ) {
            let mode = if prepaid { Mode::Prepaid } else { Mode::Postpaid };
            let start = plans[0].starts_on;
            // Daily runs from the start...
            let mut daily = facts(mode, "2026-01-01", plans.clone());
            for d in 0..days {
                daily.date = start + Days::new(d);
                let changes = plan(&daily);
                bill_into(&mut daily, &changes);
                let again = plan(&daily);
                prop_assert!(lines(&again).is_empty(), "run twice: {:?}", again);
            }
            // ...never bill a key twice, and each line's cost is within its plan's fees.
            for c in plan(&daily) {
                if let Change::Bill { line, .. } = c {
                    prop_assert!(!daily.billed.contains(line.billing_key.as_ref().unwrap()));
                }
            }
        }

        #[test]
        fn lines_of_a_month_never_exceed_the_highest_fee_plus_setup(plans in history(), day_of in 0u64..365) {
            let date = day("2026-01-01") + Days::new(day_of);
            let f = facts(Mode::Prepaid, "2026-01-01", plans.clone());
            let f = Facts { date, ..f };
            let month = period_name(month_of(date));
            let billed: Decimal = plan(&f).iter().filter_map(|c| match c {
                Change::Bill { period, line, .. } if *period == month => Some(line.cost),
                _ => None,
            }).sum();
            let max_fee = plans.iter().map(|p| p.cost_per_month).max().unwrap_or_default();
            prop_assert!(billed <= max_fee * Decimal::from(plans.len() as i64) + plans[0].setup_fee);
            prop_assert!(billed >= Decimal::ZERO);
        }
    }
}
