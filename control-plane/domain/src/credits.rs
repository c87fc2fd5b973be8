//! Prepaid credits (SPEC §7), the rules: credit units, what a call costs at the rates, the
//! counter op that deducts it, which grants are spent first, and the inputs the credit
//! endpoints and screens take.
//!
//! The hot balance is one counter per account ([`Counter::CreditsSpent`], owned by the account:
//! [`Op::account`]): what the account has spent, in [`UNITS`] per credit, limited by what it
//! was granted. A call's cost is one more op of the call, so it is checked and deducted
//! atomically with the limit counters, and a denied call deducts nothing. Storage keeps the
//! ledger (the truth) and copies the counter into it.

use crate::counters::{exceeds, Amount, Counter, Op};
use crate::form::{Form, FromForm};
use crate::ids::{AccountId, GrantId, MetricId, PlanId, ServiceId};
use crate::limits::{MetricNode, Usage};
use crate::periods::Period;
use crate::Invalid;
use rust_decimal::Decimal;

/// Counter units per credit: credits carry 4 decimals, counters count integers.
pub const UNITS: i64 = 10_000;

/// Credits as counter units; `None` past 4 decimals or out of range.
pub fn to_units(credits: Decimal) -> Option<i64> {
    let units = credits.checked_mul(Decimal::from(UNITS))?;
    (units.fract().is_zero()).then(|| i64::try_from(units).ok()).flatten()
}

/// Counter units as credits.
pub fn from_units(units: i64) -> Decimal {
    Decimal::new(units, 4).normalize()
}

/// What one unit of a metric costs, for every plan of the service or for one plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rate {
    pub metric_id: MetricId,
    pub application_plan_id: Option<PlanId>,
    /// Counter units per unit of the metric.
    pub units: i64,
    /// What a unit costs the provider upstream, in the same units (for the margin report).
    pub upstream_units: i64,
}

/// A prepaid account as authrep needs it, for one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wallet {
    pub account_id: AccountId,
    /// Everything granted, adjusted and expired, in units: the spent counter's limit.
    pub granted_units: i64,
    pub rates: Vec<Rate>,
    /// Where the developer buys more (the credit settings'), for the 402 at the gateway.
    pub purchase_url: Option<String>,
}

/// What a call's usage costs, per rated metric: (metric, credit units, upstream units). A
/// plan's own rate takes precedence over the service's general one. Sets (`#N`, corrections)
/// cost nothing.
pub fn charges(rates: &[Rate], plan_id: PlanId, usage: &Usage) -> Vec<(MetricId, i64, i64)> {
    usage
        .iter()
        .filter_map(|(metric, amount)| match amount {
            Amount::Add(n) if *n > 0 => Some((*metric, *n)),
            _ => None,
        })
        .filter_map(|(metric, n)| {
            let of_metric = || rates.iter().filter(move |r| r.metric_id == metric);
            let rate = of_metric()
                .find(|r| r.application_plan_id == Some(plan_id))
                .or_else(|| of_metric().find(|r| r.application_plan_id.is_none()))?;
            Some((
                metric,
                rate.units.saturating_mul(n),
                rate.upstream_units.saturating_mul(n),
            ))
        })
        .collect()
}

/// A call's cost in units: the sum of its [`charges`].
pub fn cost(rates: &[Rate], plan_id: PlanId, usage: &Usage) -> i64 {
    charges(rates, plan_id, usage)
        .iter()
        .fold(0i64, |sum, (_, units, _)| sum.saturating_add(*units))
}

/// The call's credit op, if the application's account is prepaid (`wallet`): its cost against
/// the account's balance. (Per-metric charges are not counted here: the margin report works
/// them out from the usage tables, and the hot path stays one counter heavier, not three.)
pub fn ops(plan_id: PlanId, wallet: Option<&Wallet>, usage: &Usage) -> Vec<Op> {
    let Some(wallet) = wallet else { return Vec::new() };
    let amount = Amount::Add(cost(&wallet.rates, plan_id, usage));
    vec![Op {
        max: Some(wallet.granted_units),
        ..spent_op(wallet.account_id, amount)
    }]
}

/// What one unit of each of the service's metrics costs the application, its ancestors'
/// rates included (a method's call is also a call of its parent): what a gateway needs to
/// spend a cached balance exactly as authrep would. Free metrics are left out.
pub fn weights(wallet: &Wallet, plan_id: PlanId, metrics: &[MetricNode]) -> Vec<(String, i64)> {
    metrics
        .iter()
        .map(|m| {
            let one = crate::limits::expand(&[(m.id, Amount::Add(1))], metrics, false);
            (m.system_name.clone(), cost(&wallet.rates, plan_id, &one))
        })
        .filter(|(_, w)| *w > 0)
        .collect()
}

/// Whether a denied call was denied for its credits: its credit op would pass the balance.
pub fn exhausted(ops: &[Op], values: &[i64]) -> bool {
    ops.iter()
        .zip(values)
        .any(|(op, value)| op.counter == Counter::CreditsSpent && exceeds(*value, op.amount, op.max))
}

/// The credits left after a call: the balance its credit op was checked against, less what the
/// counter holds now. `None` when the call had no credit op.
pub fn remaining(ops: &[Op], values: &[i64], wallet: &Wallet) -> Option<i64> {
    let i = ops.iter().position(|op| op.counter == Counter::CreditsSpent)?;
    let spent = values.get(i).copied()?;
    Some(wallet.granted_units.saturating_sub(spent).max(0))
}

/// What one gateway may spend of an account's `remaining` credits from its cache before it asks
/// again, when `gateways` gateways serve the account: an equal share, as a gateway's workers
/// share what it was given (a gateway that knows nothing of the others would take it all).
///
/// The bound this gives: calls a control plane answers are checked against the balance, so only
/// cached calls pass it, each gateway within the share it holds; N gateways can overdraw an
/// account by at most their N shares, one balance in all, where without shares each could
/// spend the whole balance (N balances). Fewer gateways than configured only makes them ask
/// sooner; more than configured widen the bound in proportion.
pub fn gateway_share(remaining: i64, gateways: u32) -> i64 {
    remaining / i64::from(gateways.max(1))
}

/// One grant, for working out what of it is still unspent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantState {
    pub id: GrantId,
    pub units: i64,
    /// RFC 3339; `None`: never expires.
    pub expires_at: Option<String>,
    /// Units that left the balance when it expired; `None`: not expired.
    pub expired_units: Option<i64>,
}

/// Each live grant's unspent units, when `spent` units have been spent in all: grants that
/// expire soonest are consumed first (those that never expire last, oldest first). An expired
/// grant consumed what it did not give up at expiry.
pub fn unspent(grants: &[GrantState], spent: i64) -> Vec<(GrantId, i64)> {
    let mut left = grants
        .iter()
        .filter_map(|g| Some(g.units - g.expired_units?))
        .fold(spent, i64::saturating_sub)
        .max(0);
    let mut live: Vec<&GrantState> = grants.iter().filter(|g| g.expired_units.is_none()).collect();
    live.sort_by(|a, b| match (&a.expires_at, &b.expires_at) {
        (Some(x), Some(y)) => x.cmp(y).then(a.id.cmp(&b.id)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.id.cmp(&b.id),
    });
    live.into_iter()
        .map(|g| {
            let used = left.min(g.units);
            left -= used;
            (g.id, g.units - used)
        })
        .collect()
}

/// The op that reads (or, with `amount`, moves) an account's spent counter.
pub fn spent_op(account_id: AccountId, amount: Amount) -> Op {
    Op {
        counter: Counter::CreditsSpent,
        period: Period::Eternity,
        start: 0,
        ttl: None,
        amount,
        max: None,
        account: Some(account_id),
    }
}

/// Whether a balance is low: below the threshold (a threshold of 0 turns the event off).
pub fn is_low(balance: Decimal, threshold: Decimal) -> bool {
    !threshold.is_zero() && balance < threshold
}

/// Which amounts of credits a field takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sign {
    /// Grants: more than 0.
    Positive,
    /// Issued credits: either way, never 0.
    NonZero,
    /// Settings: 0 or more.
    NonNegative,
}

/// An amount of credits from a form: a decimal with at most 4 places, of the `sign` the field
/// takes. Errors name the field.
pub fn amount(form: &Form, field: &str, sign: Sign) -> Result<Option<Decimal>, Invalid> {
    let Some(value) = form.parse::<Decimal>(field)? else {
        return Ok(None);
    };
    if to_units(value).is_none() {
        return Err(Invalid::field(field, "must have at most 4 decimal places"));
    }
    let (negative, zero) = (value.is_sign_negative() && !value.is_zero(), value.is_zero());
    match sign {
        Sign::Positive if negative || zero => Err(Invalid::field(field, "must be greater than 0")),
        Sign::NonZero if zero => Err(Invalid::field(field, "must not be 0")),
        Sign::NonNegative if negative => Err(Invalid::field(field, "must not be negative")),
        _ => Ok(Some(value)),
    }
}

crate::billing::words!(
    /// How a grant came.
    GrantKind { Purchase = "purchase", Manual = "manual", Starter = "starter", Promotional = "promotional" }
);
crate::billing::words!(
    /// A ledger entry's kind.
    EntryKind { Grant = "grant", Deduction = "deduction", Adjustment = "adjustment", Expiry = "expiry" }
);

/// An optional RFC 3339 time from a form, normalized to how times are stored (UTC, seconds).
pub fn time(form: &Form, field: &str) -> Result<Option<String>, Invalid> {
    match form.text(field) {
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .map(|t| {
                Some(
                    t.with_timezone(&chrono::Utc)
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                )
            })
            .map_err(|_| Invalid::field(field, "must be an RFC 3339 time")),
        None => Ok(None),
    }
}

/// An optional `YYYY-MM` from a form.
pub fn month(form: &Form, field: &str) -> Result<Option<String>, Invalid> {
    match form.text(field) {
        Some(m) if crate::invoice::parse_period(m).is_some() => Ok(Some(m.to_string())),
        Some(_) => Err(Invalid::field(field, "must be YYYY-MM")),
        None => Ok(None),
    }
}

/// The provider's credit settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub starter_credits: Decimal,
    pub low_balance_threshold: Decimal,
    pub purchase_url: Option<String>,
}

/// A change to the credit settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettingsPatch {
    pub starter_credits: Option<Decimal>,
    pub low_balance_threshold: Option<Decimal>,
    /// `Some(None)`: cleared.
    pub purchase_url: Option<Option<String>>,
}

impl FromForm for SettingsPatch {
    fn from_form(form: &Form) -> Result<Self, Invalid> {
        let starter_credits = amount(form, "starter_credits", Sign::NonNegative)?;
        let low_balance_threshold = amount(form, "low_balance_threshold", Sign::NonNegative)?;
        let purchase_url = match form.get("purchase_url").map(str::trim) {
            None => None,
            Some("") => Some(None),
            Some(url) if url.starts_with("https://") || url.starts_with("http://") => Some(Some(url.to_string())),
            Some(_) => return Err(Invalid::field("purchase_url", "must be an http(s) URL")),
        };
        Ok(SettingsPatch {
            starter_credits,
            low_balance_threshold,
            purchase_url,
        })
    }
}

impl Settings {
    pub fn apply(&mut self, patch: SettingsPatch) {
        if let Some(v) = patch.starter_credits {
            self.starter_credits = v;
        }
        if let Some(v) = patch.low_balance_threshold {
            self.low_balance_threshold = v;
        }
        if let Some(v) = patch.purchase_url {
            self.purchase_url = v;
        }
    }
}

/// A grant an admin makes (`POST …/credit_grants.json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewGrant {
    pub amount: Decimal,
    pub kind: GrantKind,
    /// RFC 3339, UTC.
    pub expires_at: Option<String>,
    pub note: Option<String>,
}

impl FromForm for NewGrant {
    fn from_form(form: &Form) -> Result<Self, Invalid> {
        let amount =
            amount(form, "amount", Sign::Positive)?.ok_or_else(|| Invalid::field("amount", "can't be blank"))?;
        let kind = match form.text("kind") {
            None => GrantKind::Manual,
            Some(k) => GrantKind::parse(k)
                .ok_or_else(|| Invalid::field("kind", format!("must be one of {}", GrantKind::WORDS.join(", "))))?,
        };
        Ok(NewGrant {
            amount,
            kind,
            expires_at: time(form, "expires_at")?,
            note: form.text("note").map(str::to_string),
        })
    }
}

/// A credit issued to a developer for a billing month (Apigee's "+ Credit").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIssuedCredit {
    /// Positive or negative, never 0.
    pub amount: Decimal,
    /// ISO 4217.
    pub currency: String,
    /// `YYYY-MM`; `None`: this month.
    pub billing_month: Option<String>,
    pub note: Option<String>,
    pub service_id: Option<ServiceId>,
    pub application_plan_id: Option<PlanId>,
}

impl FromForm for NewIssuedCredit {
    fn from_form(form: &Form) -> Result<Self, Invalid> {
        let amount =
            amount(form, "amount", Sign::NonZero)?.ok_or_else(|| Invalid::field("amount", "can't be blank"))?;
        let currency = form.text("currency").unwrap_or("USD");
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(Invalid::field("currency", "must be an ISO 4217 code, e.g. USD"));
        }
        Ok(NewIssuedCredit {
            amount,
            currency: currency.to_string(),
            billing_month: month(form, "billing_month")?,
            note: form.text("note").map(str::to_string),
            service_id: form.parse("service_id")?,
            application_plan_id: form.parse("application_plan_id")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_gateway_gets_an_equal_share_rounded_down() {
        assert_eq!(gateway_share(100, 1), 100);
        assert_eq!(gateway_share(100, 3), 33);
        assert_eq!(gateway_share(1, 2), 0, "the last units: every call asks");
        assert_eq!(gateway_share(100, 0), 100, "no gateways configured is one");
    }
    use std::collections::BTreeMap;
    use std::str::FromStr;

    fn m(id: i64) -> MetricId {
        MetricId::new(id)
    }

    #[test]
    fn the_soonest_expiring_grant_is_spent_first() {
        let g = |id, units, expires: Option<&str>, expired| GrantState {
            id: GrantId::new(id),
            units,
            expires_at: expires.map(String::from),
            expired_units: expired,
        };
        let grants = [
            g(1, 10, None, None),
            g(2, 5, Some("2026-12-01T00:00:00Z"), None),
            g(3, 5, Some("2026-11-25T00:00:00Z"), None),
        ];
        let ids = |v: Vec<(GrantId, i64)>| v.into_iter().map(|(id, n)| (id.get(), n)).collect::<Vec<_>>();
        assert_eq!(ids(unspent(&grants, 7)), vec![(3, 0), (2, 3), (1, 10)]);
        assert_eq!(ids(unspent(&grants, 30)), vec![(3, 0), (2, 0), (1, 0)]);
        // Grant 3 expired with 4 unspent: it consumed 1 of the 7.
        let after = [
            grants[0].clone(),
            grants[1].clone(),
            g(3, 5, Some("2026-11-25T00:00:00Z"), Some(4)),
        ];
        assert_eq!(ids(unspent(&after, 7)), vec![(2, 0), (1, 9)]);
    }

    fn rate(metric_id: i64, plan: Option<i64>, credits: &str) -> Rate {
        Rate {
            metric_id: m(metric_id),
            application_plan_id: plan.map(PlanId::new),
            units: to_units(Decimal::from_str(credits).unwrap()).unwrap(),
            upstream_units: 1,
        }
    }

    #[test]
    fn a_methods_weight_includes_its_parents_rate() {
        let node = |id, name: &str, parent: Option<i64>| MetricNode {
            id: m(id),
            system_name: name.into(),
            parent_id: parent.map(m),
        };
        let metrics = [node(1, "hits", None), node(2, "search", Some(1)), node(3, "free", None)];
        let wallet = Wallet {
            account_id: AccountId::new(1),
            granted_units: 0,
            rates: vec![rate(1, None, "0.5"), rate(2, None, "1")],
            purchase_url: None,
        };
        assert_eq!(
            weights(&wallet, PlanId::new(7), &metrics),
            vec![("hits".to_string(), 5_000), ("search".to_string(), 15_000)]
        );
    }

    #[test]
    fn units_keep_four_decimals_exactly() {
        assert_eq!(to_units(Decimal::from_str("0.0001").unwrap()), Some(1));
        assert_eq!(to_units(Decimal::from_str("12.5").unwrap()), Some(125_000));
        assert_eq!(to_units(Decimal::from_str("0.00001").unwrap()), None);
        assert_eq!(from_units(125_000).to_string(), "12.5");
        assert_eq!(from_units(-3).to_string(), "-0.0003");
    }

    #[test]
    fn a_plans_own_rate_wins_and_unrated_metrics_are_free() {
        let rates = [rate(1, None, "0.5"), rate(1, Some(7), "0.25"), rate(2, None, "2")];
        let usage: BTreeMap<MetricId, Amount> =
            [(m(1), Amount::Add(4)), (m(2), Amount::Add(1)), (m(3), Amount::Add(100))].into();
        assert_eq!(
            cost(&rates, PlanId::new(7), &usage),
            to_units(Decimal::from(3)).unwrap()
        );
        assert_eq!(
            cost(&rates, PlanId::new(8), &usage),
            to_units(Decimal::from(4)).unwrap()
        );
        let corrections: BTreeMap<MetricId, Amount> = [(m(1), Amount::Set(4))].into();
        assert_eq!(
            cost(&rates, PlanId::new(7), &corrections),
            0,
            "a set corrects, it does not consume"
        );
    }

    #[test]
    fn a_credit_op_that_passes_the_balance_is_exhaustion() {
        let op = |counter, max| Op {
            counter,
            period: Period::Eternity,
            start: 0,
            ttl: None,
            amount: Amount::Add(5),
            max: Some(max),
            account: None,
        };
        let limit = Counter::Metric(m(1));
        assert!(exhausted(&[op(limit, 100), op(Counter::CreditsSpent, 10)], &[0, 6]));
        assert!(
            !exhausted(&[op(limit, 3), op(Counter::CreditsSpent, 10)], &[0, 5]),
            "the limit denied it"
        );
    }

    #[test]
    fn inputs_name_their_fields() {
        let bad = |pairs: &[(&str, &str)]| {
            NewGrant::from_form(&Form::of(pairs))
                .err()
                .map(|e| e.0[0].field.clone())
        };
        assert_eq!(bad(&[]).as_deref(), Some("amount"));
        assert_eq!(bad(&[("amount", "-1")]).as_deref(), Some("amount"));
        assert_eq!(bad(&[("amount", "1.00001")]).as_deref(), Some("amount"));
        assert_eq!(bad(&[("amount", "1"), ("kind", "gift")]).as_deref(), Some("kind"));
        assert_eq!(
            bad(&[("amount", "1"), ("expires_at", "soon")]).as_deref(),
            Some("expires_at")
        );
        let ok = NewGrant::from_form(&Form::of(&[
            ("amount", "2.5"),
            ("expires_at", "2026-12-01T09:00:00+09:00"),
        ]))
        .unwrap();
        assert_eq!(ok.expires_at.as_deref(), Some("2026-12-01T00:00:00Z"));
        let zero = NewIssuedCredit::from_form(&Form::of(&[("amount", "0")]));
        assert!(matches!(zero, Err(Invalid(e)) if e[0].field == "amount" && e[0].message == "must not be 0"));
    }
}
