//! Usage counters: the real-time view that limits are checked against.
//!
//! One [`CounterStore`] trait, two implementations: [`embedded`] (in-process, the default for a
//! single control plane) and [`redis`] (many replicas; one Lua script per call). Both apply all
//! the counters of one call atomically per application: either every limit holds and every
//! counter moves, or nothing moves. The same conformance suite (`tests/counters.rs`) runs
//! against both.

pub mod embedded;
pub mod redis;

use crate::periods::Period;
use std::future::Future;

/// One counter touched by a call: an application's metric in one period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    pub metric_id: i64,
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
    pub account: Option<i64>,
}

impl Op {
    /// Whose counter this is, as the stores key it: the application's id, or the negated
    /// account id (application ids are positive, so the two never meet).
    pub fn owner(&self, app: i64) -> i64 {
        self.account.map_or(app, |a| -a)
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

/// An hour counter, as the usage flush copies it: (application, metric, hour start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HourKey {
    pub app: i64,
    pub metric_id: i64,
    /// Unix seconds.
    pub start: i64,
}

/// An hour counter's value as read for the usage flush, and when it was read (microseconds;
/// Redis' own clock for Redis): of two readings, the later one is the one to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HourValue {
    pub key: HourKey,
    pub value: i64,
    pub observed_us: i64,
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

#[derive(Debug, thiserror::Error)]
pub enum CounterError {
    #[error("counter store unavailable: {0}")]
    Unavailable(String),
}

/// The one rule both stores apply: a limited counter may not pass its max.
pub fn exceeds(current: i64, amount: Amount, max: Option<i64>) -> bool {
    matches!(max, Some(max) if amount.applied_to(current) > max)
}

pub trait CounterStore: Send + Sync {
    /// Applies `ops` for application `app` atomically, as `mode` says.
    fn apply(&self, app: i64, ops: &[Op], mode: Mode) -> impl Future<Output = Result<Outcome, CounterError>> + Send;

    /// The hour counters moved (by this process) since the last take, with their current
    /// values: what the usage flush copies into the usage tables.
    fn take_changed_hours(&self) -> impl Future<Output = Result<Vec<HourValue>, CounterError>> + Send;

    /// Hands taken counters back (their flush failed); the next take returns them again.
    fn mark_changed_hours(&self, keys: Vec<HourKey>);
}

/// The store a control plane runs with.
#[derive(Clone)]
pub enum Counters {
    Embedded(std::sync::Arc<embedded::EmbeddedStore>),
    Redis(redis::RedisStore),
}

impl Counters {
    pub fn backend(&self) -> &'static str {
        match self {
            Counters::Embedded(_) => "embedded",
            Counters::Redis(_) => "redis",
        }
    }
}

impl CounterStore for Counters {
    async fn apply(&self, app: i64, ops: &[Op], mode: Mode) -> Result<Outcome, CounterError> {
        match self {
            Counters::Embedded(s) => s.apply(app, ops, mode).await,
            Counters::Redis(s) => s.apply(app, ops, mode).await,
        }
    }

    async fn take_changed_hours(&self) -> Result<Vec<HourValue>, CounterError> {
        match self {
            Counters::Embedded(s) => s.take_changed_hours().await,
            Counters::Redis(s) => s.take_changed_hours().await,
        }
    }

    fn mark_changed_hours(&self, keys: Vec<HourKey>) {
        match self {
            Counters::Embedded(s) => s.mark_changed_hours(keys),
            Counters::Redis(s) => s.mark_changed_hours(keys),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{exceeds, Amount};

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
}
