//! Tollgate's control plane: the layers wired together. The `tollgate` binary is a thin CLI
//! over this crate, and the integration tests start it in-process on a random port.
//!
//! The layers are crates, so that the compiler keeps their direction (see the README's
//! Layout): [`domain`] (pure types and rules) ← [`store`] (storage and use cases) ← [`api`]
//! (HTTP) ← this crate: [`config`] (environment and file), [`startup`] (connect, migrate,
//! bind, serve, shut down), [`jobs`] (the usage flush and the billing schedule), [`seed`] (the
//! demo data), [`telemetry`] (logs).

pub mod config;
pub mod jobs;
pub mod seed;
pub mod startup;
#[cfg(feature = "testing")]
pub mod stripe_mock;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

pub use tollgate_api as api;
pub use tollgate_domain as domain;
pub use tollgate_store as store;
pub use tollgate_store::{counters, credits, db, usage};

/// The binary's version, reported by `/health`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
