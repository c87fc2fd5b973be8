//! The daily billing run (SPEC §6.4–6.5; 3scale §26.4), as stored: loads every account's facts
//! at once, asks the domain's plan ([`tollgate_domain::billing_plan::plan`]) what to change,
//! applies them [`CHUNK`] accounts at a time in set-based statements (a multi-row statement
//! per kind of change, one transaction per chunk; a chunk that fails is applied again account
//! by account, so each account's changes stay atomic), then charges. Every line's key is
//! unique in the database and the state moves depend on dates, so **running a date twice
//! changes nothing**. A run first copies what the counters hold into the usage tables, so it
//! bills everything counted before it started.

use super::invoices;
use super::payments::{self, ChargeError, Gateways};
use super::settings;
use crate::counters::Counters;
use crate::db::Db;
use crate::error::{Result, StoreError};
use chrono::{Months, NaiveDate};
use serde_json::{json, Value};
use sqlx::{AnyConnection, Row};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use tollgate_domain::billing::{Mode, Settings};
use tollgate_domain::billing_plan::{
    billable_start, contracts, month_of, next_month, period_name, plan, plan_at_end, AccountFacts, Change, Event,
    Facts, OpenInvoice, PendingCredit, Usage,
};
use tollgate_domain::contracts::ContractType;
use tollgate_domain::ids::{AccountId, ApplicationId, InvoiceId, MetricId, PlanId};
use tollgate_domain::invoice::{CreationType, State};
use tollgate_domain::pricing::Tier;

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
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for RunError {
    fn from(e: sqlx::Error) -> Self {
        RunError::Store(e.into())
    }
}

const LEASE: &str = "billing-run";

/// Runs billing for `date` under the billing lease (one run at a time, across replicas). With
/// `counters`, what they counted is flushed into the usage tables first, so the run bills
/// every call counted before it started.
pub async fn run(
    db: &Db,
    counters: Option<&Counters>,
    gateways: &Gateways,
    date: NaiveDate,
) -> Result<Report, RunError> {
    let holder = format!("{}-{}", std::process::id(), rand::random::<u64>());
    if !crate::leases::acquire(db, LEASE, &holder, 3600).await? {
        return Err(RunError::Busy);
    }
    let result = match counters {
        Some(counters) => match crate::alerts::flush_usage(db, counters).await {
            Ok(_) => run_locked(db, gateways, date).await,
            Err(e) => Err(e),
        },
        None => run_locked(db, gateways, date).await,
    };
    crate::leases::release(db, LEASE, &holder).await?;
    result.map_err(RunError::Store)
}

fn parse_day(s: Option<String>) -> Option<NaiveDate> {
    s.as_deref().and_then(crate::time::day)
}

async fn run_locked(db: &Db, gateways: &Gateways, date: NaiveDate) -> Result<Report> {
    let started = crate::time::now();
    let settings = settings::get(db).await?;
    let mode = settings.mode;
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
    if !work.is_empty() {
        refresh_statistics(db).await;
    }
    let charges: Vec<InvoiceId> = work
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
            Err(ChargeError::NotChargeable(why)) => tracing::info!(invoice = %id, %why, "invoice not charged"),
            Err(ChargeError::Store(e)) => return Err(e),
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
) -> Result<BTreeMap<i64, Facts>> {
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
            id: AccountId::new(id),
            billing_enabled: r.try_get::<i64, _>("monthly_billing_enabled")? != 0,
            charging_enabled: settings.charging_enabled && r.try_get::<i64, _>("monthly_charging_enabled")? != 0,
            card_expires_on: expires.and_then(|e| tollgate_domain::invoice::parse_period(&e)),
        };
        facts.insert(id, Facts::new(date, mode, account));
    }
    for p in crate::contracts::all(&mut conn).await? {
        if let Some(f) = facts.get_mut(&p.account_id.get()) {
            f.plans.push(p);
        }
    }
    let rules = sqlx::query("SELECT plan_id, metric_id, min, max, cost_per_unit FROM pricing_rules ORDER BY min")
        .fetch_all(&mut *conn)
        .await?;
    let mut pricing: HashMap<(PlanId, MetricId), Vec<Tier>> = HashMap::new();
    for r in rules {
        pricing
            .entry((
                PlanId::new(r.try_get("plan_id")?),
                MetricId::new(r.try_get("metric_id")?),
            ))
            .or_default()
            .push(Tier {
                min: r.try_get("min")?,
                max: r.try_get("max")?,
                cost_per_unit: crate::rows::decimal(&r, "cost_per_unit")?,
            });
    }
    // Last month's usage of applications whose plan prices something, from their first
    // billable day.
    let priced_plans: HashSet<PlanId> = pricing.keys().map(|(plan, _)| *plan).collect();
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
                    application_id: ApplicationId::new(*app),
                    metric_id: MetricId::new(metric_id),
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
                id: InvoiceId::new(r.try_get("id")?),
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
                amount: crate::rows::decimal(&r, "amount")?,
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
            if let Some(e) = event_from(&kind, &payload) {
                f.events.insert(e.identity());
            }
        }
    }
    Ok(facts)
}

/// Accounts applied together: a chunk's changes are a few multi-row statements and one commit.
pub const CHUNK: usize = 1000;

/// A recorded event, read back from its payload (see [`event_payload`]).
fn event_from(kind: &str, payload: &str) -> Option<Event> {
    let v: Value = serde_json::from_str(payload).ok()?;
    match kind {
        "contract.trial_ending" => Some(Event::TrialEnding {
            contract_type: ContractType::parse(v["contract_type"].as_str()?)?,
            contract_id: v["contract_id"].as_i64()?,
            plan: v["plan"].as_str().unwrap_or_default().to_string(),
            trial_ends_on: crate::time::day(v["trial_ends_on"].as_str()?)?,
        }),
        "credit_card.expiring" => Some(Event::CardExpiring {
            expires_on: v["expires_on"].as_str()?.to_string(),
        }),
        _ => None,
    }
}

/// An event's payload as the event log keeps it.
fn event_payload(e: &Event) -> Value {
    match e {
        Event::TrialEnding {
            contract_type,
            contract_id,
            plan,
            trial_ends_on,
        } => json!({"contract_type": contract_type.as_str(), "contract_id": contract_id,
            "plan": plan, "trial_ends_on": trial_ends_on.to_string()}),
        Event::CardExpiring { expires_on } => json!({"expires_on": expires_on}),
    }
}

/// One account's work: its changes and its open background invoices by period.
struct Work {
    account: AccountId,
    changes: Vec<Change>,
    open: HashMap<String, InvoiceId>,
}

/// Applies every account's changes (all but charges), [`CHUNK`] accounts at a time, each chunk
/// in one transaction of set-based statements. A chunk that fails is rolled back and applied
/// again account by account, so that an account that fails leaves nothing half-done and does
/// not stop the others.
/// A run adds a row or more per account to the invoices and their lines. On PostgreSQL their
/// planner statistics are refreshed after it (autovacuum does it too, when it is on and in
/// time): read by a chunk's invoice ids, a table last analyzed when it was nearly empty is
/// scanned whole for each chunk — 65 ms a chunk with 400,000 lines, a run's time growing with
/// the square of its accounts. Best effort: a role that does not own them skips them.
async fn refresh_statistics(db: &Db) {
    if db.engine != crate::db::Engine::Postgres {
        return;
    }
    if let Err(e) = sqlx::query("ANALYZE invoices, line_items").execute(&db.pool).await {
        tracing::warn!(error = %e, "billing run: refreshing the planner's statistics failed");
    }
}

async fn apply_all(db: &Db, settings: &Settings, date: NaiveDate, work: &[Work], report: &mut Report) -> Result<()> {
    for chunk in work.chunks(CHUNK) {
        match attempt(db, settings, date, chunk).await? {
            Ok(part) => report.add(&part),
            Err(e) if chunk.len() == 1 => fail(report, chunk[0].account, &e),
            Err(e) => {
                tracing::warn!(accounts = chunk.len(), error = %e, "billing run: a chunk failed; applying it account by account");
                for w in chunk {
                    match attempt(db, settings, date, std::slice::from_ref(w)).await? {
                        Ok(part) => report.add(&part),
                        Err(e) => fail(report, w.account, &e),
                    }
                }
            }
        }
    }
    Ok(())
}

/// Applies `work` in a transaction of its own: committed, or rolled back with why.
async fn attempt(db: &Db, settings: &Settings, date: NaiveDate, work: &[Work]) -> Result<Result<Report>> {
    let mut tx = db.begin_write().await?;
    match apply(&mut tx, settings, date, work).await {
        Ok(part) => {
            tx.commit().await?;
            Ok(Ok(part))
        }
        Err(e) => {
            tx.rollback().await?;
            Ok(Err(e))
        }
    }
}

fn fail(report: &mut Report, account: AccountId, e: &StoreError) {
    report.failed_accounts += 1;
    tracing::error!(account = %account, error = %e, "billing run: account not billed; the next run retries it");
}

/// Applies the changes of `work`'s accounts in a few statements for them all, in the order
/// [`plan`] gives every account's changes: invoices opened, lines added (credits marked
/// invoiced), invoices finalized, then issued, then events recorded.
async fn apply(conn: &mut AnyConnection, settings: &Settings, date: NaiveDate, work: &[Work]) -> Result<Report> {
    let mut wanted: Vec<(AccountId, String)> = Vec::new();
    let mut seen = HashSet::new();
    for w in work {
        for c in &w.changes {
            if let Change::Bill { period, .. } = c {
                if !w.open.contains_key(period) && seen.insert((w.account, period.as_str())) {
                    wanted.push((w.account, period.clone()));
                }
            }
        }
    }
    let created = invoices::create_many(conn, settings, &wanted, CreationType::Background).await?;
    let opened: HashMap<(AccountId, &str), InvoiceId> = wanted
        .iter()
        .zip(&created)
        .map(|((account, period), inv)| ((*account, period.as_str()), inv.id))
        .collect();
    let (mut lines, mut credits, mut finalize, mut issue, mut events) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for w in work {
        let invoice_of = |period: &str| w.open.get(period).or_else(|| opened.get(&(w.account, period))).copied();
        for change in &w.changes {
            match change {
                Change::Bill {
                    period,
                    line,
                    credit_id,
                } => {
                    let invoice = invoice_of(period)
                        .ok_or_else(|| StoreError::Internal(format!("no invoice of {period} to bill")))?;
                    lines.push((invoice, line));
                    credits.extend(*credit_id);
                }
                Change::Finalize { period } => finalize.extend(invoice_of(period)),
                Change::Issue { invoice_id } => issue.push(*invoice_id),
                Change::Charge { .. } => {}
                Change::Event(e) => events.push(crate::events::New {
                    kind: e.kind(),
                    account_id: Some(w.account),
                    service_id: None,
                    actor: crate::events::Actor::System,
                    payload: event_payload(e),
                }),
            }
        }
    }
    let mut report = Report {
        invoices_created: created.len(),
        ..Report::default()
    };
    report.lines = invoices::add_lines(conn, &lines).await?.len();
    if !credits.is_empty() {
        sqlx::query(&format!(
            "UPDATE issued_credits SET invoiced_at = $1 WHERE id IN ({})",
            crate::multirow::id_list(credits)
        ))
        .bind(crate::time::now())
        .execute(&mut *conn)
        .await?;
    }
    report.finalized = invoices::change_states(conn, &finalize, State::Finalized, date)
        .await?
        .len();
    report.issued = invoices::change_states(conn, &issue, State::Pending, date).await?.len();
    report.events = crate::events::record_all(conn, &events).await?.len();
    Ok(report)
}

/// The daily schedule: at `hour` UTC (3scale's billing day starts at 08:00) runs billing for
/// the day, in whichever replica takes the lease first; the others find it held or the day
/// already done. Checks every minute, so a replica that was down at the hour catches up.
pub async fn schedule(
    db: Db,
    counters: Counters,
    gateways: Gateways,
    hour: u32,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
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
                match run(&db, Some(&counters), &gateways, today).await {
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
