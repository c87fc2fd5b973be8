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
    pub delta: i64,
    /// The plan's limit on this counter, if any.
    pub max: Option<i64>,
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
pub fn exceeds(current: i64, delta: i64, max: Option<i64>) -> bool {
    matches!(max, Some(max) if current.saturating_add(delta) > max)
}

pub trait CounterStore: Send + Sync {
    /// Applies `ops` for application `app` atomically, as `mode` says.
    fn apply(&self, app: i64, ops: &[Op], mode: Mode) -> impl Future<Output = Result<Outcome, CounterError>> + Send;
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
}

#[cfg(test)]
mod tests {
    use super::exceeds;

    #[test]
    fn the_limit_rule() {
        assert!(!exceeds(9, 1, Some(10)));
        assert!(exceeds(10, 1, Some(10)));
        assert!(exceeds(0, 1, Some(0)), "a limit of 0 disables the metric");
        assert!(!exceeds(i64::MAX, 5, None));
        assert!(
            !exceeds(0, 0, Some(0)),
            "an untouched metric at its max is not a denial"
        );
    }
}
