//! Tollgate's control plane as a library: the `tollgate` binary is a thin CLI over it, and the
//! integration tests start it in-process on a random port.
//!
//! Layers: [`config`] (environment and file), [`db`] (sqlx over SQLite or PostgreSQL, one SQL),
//! [`catalog`] (services, plans, accounts, applications and their repositories), [`auth`]
//! (access tokens), [`api`] (axum routers; [`error`] maps every failure to HTTP in one place),
//! [`metrics`] (Prometheus), [`startup`] (bind, serve, shut down gracefully).

pub mod api;
pub mod auth;
pub mod batches;
pub mod billing;
pub mod billing_run;
pub mod catalog;
pub mod config;
pub mod contracts;
pub mod counters;
pub mod credits;
pub mod db;
pub mod error;
pub mod events;
pub mod hot_cache;
pub mod invoice;
pub mod invoices;
pub mod limits;
pub mod metrics;
pub mod params;
pub mod payments;
pub mod pdf;
pub mod periods;
pub mod pricing;
pub mod proration;
pub mod startup;
#[cfg(feature = "testing")]
pub mod stripe_mock;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod time;
pub mod transactor;
pub mod usage;

/// The binary's version, reported by `/health`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
