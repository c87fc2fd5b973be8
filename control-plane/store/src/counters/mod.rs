//! Usage counters: the real-time view that limits are checked against.
//!
//! One [`CounterStore`] trait, two implementations: [`embedded`] (in-process, the default for a
//! single control plane) and [`redis`] (many replicas; one Lua script per call). Both apply all
//! the counters of one call atomically per application, by the rules of
//! [`tollgate_domain::counters`]: either every limit holds and every counter moves, or nothing
//! moves. The same conformance suite (`tests/counters.rs`) runs against both.

pub mod backend;
pub mod embedded;
pub mod redis;
pub mod store;

pub use backend::Counters;
pub use store::{CounterError, CounterStore};
pub use tollgate_domain::counters::{exceeds, Amount, Counter, Mode, Op, Outcome, Scope, SeriesKey, SeriesValue};
