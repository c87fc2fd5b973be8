//! What a counter store does, whichever it is.

use std::future::Future;
use tollgate_domain::counters::{Mode, Op, Outcome, Scope, SeriesKey, SeriesValue};

#[derive(Debug, thiserror::Error)]
pub enum CounterError {
    #[error("counter store unavailable: {0}")]
    Unavailable(String),
}

pub trait CounterStore: Send + Sync {
    /// Applies `ops` for `scope`'s application (and its account) atomically, as `mode` says.
    fn apply(&self, scope: Scope, ops: &[Op], mode: Mode)
        -> impl Future<Output = Result<Outcome, CounterError>> + Send;

    /// The hour counters moved (by this process) since the last take, with their current
    /// values: what the usage flush copies into the usage tables.
    fn take_changed_series(&self) -> impl Future<Output = Result<Vec<SeriesValue>, CounterError>> + Send;

    /// Hands taken counters back (their flush failed); the next take returns them again.
    fn mark_changed_series(&self, keys: Vec<SeriesKey>);
}
