//! The counter store a control plane runs with, chosen at start-up.

use super::embedded::EmbeddedStore;
use super::redis::RedisStore;
use super::store::{CounterError, CounterStore};
use tollgate_domain::counters::{Mode, Op, Outcome, Scope, SeriesKey, SeriesValue};

/// The store a control plane runs with.
#[derive(Clone)]
pub enum Counters {
    Embedded(std::sync::Arc<EmbeddedStore>),
    Redis(RedisStore),
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
    async fn apply(&self, scope: Scope, ops: &[Op], mode: Mode) -> Result<Outcome, CounterError> {
        match self {
            Counters::Embedded(s) => s.apply(scope, ops, mode).await,
            Counters::Redis(s) => s.apply(scope, ops, mode).await,
        }
    }

    async fn take_changed_series(&self) -> Result<Vec<SeriesValue>, CounterError> {
        match self {
            Counters::Embedded(s) => s.take_changed_series().await,
            Counters::Redis(s) => s.take_changed_series().await,
        }
    }

    fn mark_changed_series(&self, keys: Vec<SeriesKey>) {
        match self {
            Counters::Embedded(s) => s.mark_changed_series(keys),
            Counters::Redis(s) => s.mark_changed_series(keys),
        }
    }
}
