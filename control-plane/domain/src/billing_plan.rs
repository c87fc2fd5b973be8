//! The daily billing run's plan (SPEC §6.4–6.5; 3scale §26.4).
//!
//! [`plan`] takes one account's facts on a date — its contracts' plan history,
//! last month's usage, pricing rules, its background invoices and what they already bill — and
//! returns the changes to make: lines to bill (each with a key naming what it bills), invoices
//! to finalize, issue and charge, and events. Storage loads every account's facts, applies
//! each account's changes atomically and charges. Every line's key is unique in the database
//! and the state moves depend on dates, so **running a date twice changes nothing**.
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

use crate::billing::Mode;
use crate::contracts::{ContractType, PlanPeriod};
use crate::ids::{AccountId, ApplicationId, InvoiceId, MetricId, PlanId};
use crate::invoice::{LineType, NewLine, State};
use crate::pricing::{self, Tier};
use crate::proration;
use chrono::{Datelike, Days, Months, NaiveDate};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// Days between finalizing an invoice and issuing it.
pub const ISSUE_AFTER_DAYS: u64 = 2;
/// A trial's end is announced this many days ahead.
pub const TRIAL_NOTICE_DAYS: u64 = 10;
/// Failed attempts after which an invoice is `failed` (3scale: three retries, 3 days apart).
pub const MAX_RETRIES: i64 = 3;
pub const RETRY_DAYS: u64 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountFacts {
    pub id: AccountId,
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
    pub application_id: ApplicationId,
    pub metric_id: MetricId,
    pub metric_name: String,
    pub units: i64,
}

/// A background invoice that is not closed yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenInvoice {
    pub id: InvoiceId,
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
    pub pricing: Arc<HashMap<(PlanId, MetricId), Vec<Tier>>>,
    pub invoices: Vec<OpenInvoice>,
    /// Keys of the lines already billed.
    pub billed: HashSet<String>,
    pub credits: Vec<PendingCredit>,
    /// Events already recorded, by [`Event::identity`].
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

/// An event the run announces (once: see [`Facts::events`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A contract's trial ends within [`TRIAL_NOTICE_DAYS`].
    TrialEnding {
        contract_type: ContractType,
        contract_id: i64,
        plan: String,
        trial_ends_on: NaiveDate,
    },
    /// The account's card expires this month or next (`YYYY-MM`).
    CardExpiring { expires_on: String },
}

impl Event {
    pub fn kind(&self) -> &'static str {
        match self {
            Event::TrialEnding { .. } => "contract.trial_ending",
            Event::CardExpiring { .. } => "credit_card.expiring",
        }
    }

    /// What makes it this event and no other: recorded events are remembered by it.
    pub fn identity(&self) -> String {
        match self {
            Event::TrialEnding {
                contract_type,
                contract_id,
                trial_ends_on,
                ..
            } => format!(
                "{} {}:{contract_id}:{trial_ends_on}",
                self.kind(),
                contract_type.as_str()
            ),
            Event::CardExpiring { expires_on } => format!("{} {expires_on}", self.kind()),
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
        invoice_id: InvoiceId,
    },
    Charge {
        invoice_id: InvoiceId,
    },
    Event(Event),
}

pub fn month_of(day: NaiveDate) -> NaiveDate {
    day.with_day(1).unwrap_or(day)
}

pub fn next_month(first: NaiveDate) -> NaiveDate {
    first.checked_add_months(Months::new(1)).unwrap_or(first)
}

pub fn period_name(first: NaiveDate) -> String {
    first.format("%Y-%m").to_string()
}

/// One contract's rows, oldest first.
pub fn contracts(plans: &[PlanPeriod]) -> BTreeMap<(ContractType, i64), Vec<&PlanPeriod>> {
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
pub fn plan_at_end<'a>(rows: &[&'a PlanPeriod], month: NaiveDate) -> Option<&'a PlanPeriod> {
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
            let Some(rows) = by_contract.get(&(ContractType::Application, u.application_id.get())) else {
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
                contract_id: Some(u.application_id.get()),
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
            && i.last_charged_on.is_none_or(|d| d + Days::new(RETRY_DAYS) <= date);
        if due && account.charging_enabled {
            out.push(Change::Charge { invoice_id: i.id });
        }
    }
    let event = |e: Event, out: &mut Vec<Change>| {
        if !f.events.contains(&e.identity()) {
            out.push(Change::Event(e));
        }
    };
    for rows in by_contract.values() {
        let (first, last) = (rows[0], rows[rows.len() - 1]);
        let trial_end = first.trial_ends_on;
        let live = last.ends_on.is_none();
        if live && trial_end > first.starts_on && trial_end > date && date + Days::new(TRIAL_NOTICE_DAYS) >= trial_end {
            let e = Event::TrialEnding {
                contract_type: first.contract_type,
                contract_id: first.contract_id,
                plan: last.plan_name.clone(),
                trial_ends_on: trial_end,
            };
            event(e, &mut out);
        }
    }
    if let Some(expiry) = account.card_expires_on {
        let last_day = next_month(expiry).pred_opt().unwrap_or(expiry);
        let warn_from = expiry.checked_sub_months(Months::new(1)).unwrap_or(expiry);
        if date >= warn_from && date <= last_day {
            let e = Event::CardExpiring {
                expires_on: period_name(expiry),
            };
            event(e, &mut out);
        }
    }
    out
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
            account_id: AccountId::new(1),
            plan_id: PlanId::new(id * 10),
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
            id: AccountId::new(1),
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
            id: InvoiceId::new(1),
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
                .any(|c| matches!(c, Change::Event(e) if e.kind() == "contract.trial_ending")),
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
            application_id: ApplicationId::new(7),
            metric_id: MetricId::new(3),
            metric_name: "hits".into(),
            units: 1500,
        }];
        Arc::make_mut(&mut f.pricing).insert(
            (PlanId::new(10), MetricId::new(3)),
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
            id: InvoiceId::new(4),
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
            id: InvoiceId::new(id),
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
                Change::Issue {
                    invoice_id: InvoiceId::new(1)
                },
                Change::Charge {
                    invoice_id: InvoiceId::new(3)
                },
                Change::Charge {
                    invoice_id: InvoiceId::new(5)
                }
            ]
        );
        f.account.charging_enabled = false;
        assert_eq!(
            plan(&f),
            vec![Change::Issue {
                invoice_id: InvoiceId::new(1)
            }],
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
        let Some(Change::Event(e)) = changes.first() else {
            panic!("{changes:?}")
        };
        assert_eq!(e.kind(), "credit_card.expiring");
        f.events.insert(e.identity());
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
