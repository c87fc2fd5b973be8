//! What usage counters hold and how a call moves them — the rules both counter stores (Redis,
//! embedded) apply. A call is a list of [`Op`]s applied atomically per application: either
//! every limit holds and every counter moves, or nothing moves.

use crate::ids::{AccountId, ApplicationId, MetricId};
use crate::periods::Period;

/// What one counter counts. Stores key counters by [`Counter::raw`]: metric ids are positive,
/// response codes and classes and the credit counter take reserved negative numbers, so the
/// kinds never meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Counter {
    /// Usage of a metric or method.
    Metric(MetricId),
    /// Responses with this code (`log[code]`).
    ResponseCode(u16),
    /// Responses of this class (2 for 2xx).
    ResponseClass(u8),
    /// An account's credits spent, in [`crate::credits::UNITS`] (owned by the account).
    CreditsSpent,
    /// A report's transaction counted already ([`once`]): 0 or 1, in eternity, the mark's id
    /// as the period's start.
    Counted,
}

const CREDITS_SPENT: i64 = -1000;
const COUNTED: i64 = -2000;

impl Counter {
    pub fn raw(self) -> i64 {
        match self {
            Counter::Metric(id) => id.get(),
            Counter::ResponseCode(code) => -i64::from(code),
            Counter::ResponseClass(class) => -i64::from(class),
            Counter::CreditsSpent => CREDITS_SPENT,
            Counter::Counted => COUNTED,
        }
    }

    pub fn from_raw(raw: i64) -> Option<Counter> {
        match raw {
            1.. => Some(Counter::Metric(MetricId::new(raw))),
            CREDITS_SPENT => Some(Counter::CreditsSpent),
            COUNTED => Some(Counter::Counted),
            -9..=-1 => u8::try_from(-raw).ok().map(Counter::ResponseClass),
            -999..=-100 => u16::try_from(-raw).ok().map(Counter::ResponseCode),
            _ => None,
        }
    }

    /// The response code a counter stands for, as the usage tables name it: `"200"` or `"2xx"`.
    pub fn response_code_name(self) -> Option<String> {
        match self {
            Counter::ResponseCode(code) => Some(code.to_string()),
            Counter::ResponseClass(class) => Some(format!("{class}xx")),
            _ => None,
        }
    }

    pub fn metric(self) -> Option<MetricId> {
        match self {
            Counter::Metric(id) => Some(id),
            _ => None,
        }
    }
}

/// Whose counters one call moves: an application and the account it belongs to. The account
/// is what keeps a call in one place when counters are partitioned (Redis Cluster's hash tag):
/// an account's applications and its credit counter are always stored together, so one
/// atomic call can move them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Scope {
    pub app: ApplicationId,
    pub account: AccountId,
}

impl Scope {
    pub fn new(app: ApplicationId, account: AccountId) -> Self {
        Self { app, account }
    }

    /// A call on the account's own counters only (no application: the credit counter).
    pub fn account(account: AccountId) -> Self {
        Self {
            app: ApplicationId::new(0),
            account,
        }
    }
}

/// One counter touched by a call: an application's (or its account's) counter in one period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    pub counter: Counter,
    pub period: Period,
    /// Unix seconds of the period's start; 0 for eternity.
    pub start: i64,
    /// Seconds the counter must live; `None`: forever.
    pub ttl: Option<u64>,
    pub amount: Amount,
    /// The plan's limit on this counter, if any.
    pub max: Option<i64>,
    /// `Some(account)`: the counter is the application's account's, not the application's
    /// (prepaid credits: one balance for all of an account's applications). It moves in the
    /// same atomic call as the application's counters.
    pub account: Option<AccountId>,
}

impl Op {
    /// Whose counter this is, as the stores key it: the application's id, or the negated
    /// account id (application ids are positive, so the two never meet).
    pub fn owner(&self, app: ApplicationId) -> i64 {
        self.account.map_or(app.get(), |a| -a.get())
    }
}

/// What a call does to a counter: add N (`usage[hits]=N`), or set it to N (`usage[hits]=#N`,
/// apisonator's way of correcting a counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    Add(i64),
    Set(i64),
}

impl Amount {
    /// The counter's value after this amount is applied to `current`.
    pub fn applied_to(self, current: i64) -> i64 {
        match self {
            Amount::Add(d) => current.saturating_add(d),
            Amount::Set(v) => v,
        }
    }

    /// Whether applying it moves nothing.
    pub fn is_noop(self) -> bool {
        self == Amount::Add(0)
    }

    /// Two usages of one metric in one call (a method's and its parent's own): a set wins and
    /// later additions add to it, as apisonator's `Usage.add` does.
    pub fn plus(self, other: Amount) -> Amount {
        match (self, other) {
            (_, Amount::Set(v)) => Amount::Set(v),
            (Amount::Add(a), Amount::Add(b)) => Amount::Add(a.saturating_add(b)),
            (Amount::Set(a), Amount::Add(b)) => Amount::Set(a.saturating_add(b)),
        }
    }

    /// The units this call uses of the metric (for the limit headers).
    pub fn units(self) -> i64 {
        match self {
            Amount::Add(n) | Amount::Set(n) => n,
        }
    }
}

/// The period of the counters the usage flush copies into the usage tables: a quarter hour,
/// so that the tables can answer in any time zone exactly ([`crate::analytics::series`]).
pub const SERIES: Period = Period::Quarter;

/// A series counter ([`SERIES`]), as the usage flush copies it, in the stores' raw key parts:
/// the owner ([`Op::owner`]), the counter ([`Counter::raw`]) and the quarter's start (unix
/// seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    pub app: i64,
    pub counter: i64,
    pub start: i64,
}

/// A series counter's value as read for the usage flush, and when it was read (microseconds;
/// Redis' own clock for Redis): of two readings, the later one is the one to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesValue {
    pub key: SeriesKey,
    pub value: i64,
    pub observed_us: i64,
}

/// How long a transaction's mark is kept: as long as a batch id is remembered.
pub const COUNTED_TTL: u64 = 86_400;

/// The ops that count one transaction of a report exactly once, however often its batch is
/// sent: its counters with their limits lifted (a report counts what happened, limits or not)
/// and the transaction's mark (`mark`: an id unique to the batch and the transaction's place in
/// it), which may move from 0 to 1 only. Applied with [`Mode::CheckAndAdd`], in the one atomic
/// call that moves the counters: authorized means counted now; refused, counted before — so a
/// batch that failed part-way, sent again, counts only what it had not.
pub fn once(ops: Vec<Op>, mark: i64) -> Vec<Op> {
    let mut ops: Vec<Op> = ops.into_iter().map(|op| Op { max: None, ..op }).collect();
    ops.push(Op {
        counter: Counter::Counted,
        period: Period::Eternity,
        start: mark,
        ttl: Some(COUNTED_TTL),
        amount: Amount::Add(1),
        max: Some(1),
        account: None,
    });
    ops
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// authorize: check, move nothing.
    Check,
    /// authrep: check; move every counter only if every limit holds.
    CheckAndAdd,
    /// report: move every counter, limits or not.
    Add,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub authorized: bool,
    /// Each op's counter after the call (moved or not), in the order of the ops.
    pub values: Vec<i64>,
}

/// The one rule both stores apply: a limited counter may not pass its max.
pub fn exceeds(current: i64, amount: Amount, max: Option<i64>) -> bool {
    matches!(max, Some(max) if amount.applied_to(current) > max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_rule() {
        assert!(!exceeds(9, Amount::Add(1), Some(10)));
        assert!(exceeds(10, Amount::Add(1), Some(10)));
        assert!(exceeds(0, Amount::Add(1), Some(0)), "a limit of 0 disables the metric");
        assert!(!exceeds(i64::MAX, Amount::Add(5), None));
        assert!(
            !exceeds(0, Amount::Add(0), Some(0)),
            "an untouched metric at its max is not a denial"
        );
        assert!(
            !exceeds(50, Amount::Set(10), Some(10)),
            "a set is checked for its own value"
        );
        assert!(exceeds(0, Amount::Set(11), Some(10)));
    }

    #[test]
    fn amounts_combine_as_apisonator() {
        assert_eq!(Amount::Add(2).plus(Amount::Add(3)), Amount::Add(5));
        assert_eq!(Amount::Add(2).plus(Amount::Set(3)), Amount::Set(3));
        assert_eq!(Amount::Set(2).plus(Amount::Add(3)), Amount::Set(5));
        assert_eq!(Amount::Set(7).applied_to(100), 7);
        assert!(Amount::Add(0).is_noop() && !Amount::Set(0).is_noop());
    }

    #[test]
    fn counters_keep_their_raw_keys() {
        for c in [
            Counter::Metric(MetricId::new(42)),
            Counter::ResponseCode(404),
            Counter::ResponseClass(4),
            Counter::CreditsSpent,
            Counter::Counted,
        ] {
            assert_eq!(Counter::from_raw(c.raw()), Some(c));
        }
        assert_eq!(
            (Counter::ResponseCode(200).raw(), Counter::ResponseClass(2).raw()),
            (-200, -2)
        );
        assert_eq!(Counter::CreditsSpent.raw(), -1000, "stored keys do not move");
        assert_eq!(Counter::ResponseClass(4).response_code_name().as_deref(), Some("4xx"));
        assert_eq!(Counter::from_raw(0), None);
        assert_eq!(Counter::from_raw(-50), None);
    }

    #[test]
    fn once_lifts_the_limits_and_adds_a_mark_that_moves_once() {
        let op = Op {
            counter: Counter::Metric(MetricId::new(1)),
            period: Period::Day,
            start: 0,
            ttl: None,
            amount: Amount::Add(3),
            max: Some(1),
            account: None,
        };
        let ops = once(vec![op], 77);
        assert_eq!(ops.len(), 2);
        assert_eq!(ops[0].max, None);
        let mark = &ops[1];
        assert_eq!(
            (mark.counter, mark.period, mark.start),
            (Counter::Counted, Period::Eternity, 77)
        );
        assert!(!exceeds(0, mark.amount, mark.max), "a new mark moves");
        assert!(exceeds(1, mark.amount, mark.max), "a set mark refuses the call");
    }
}
