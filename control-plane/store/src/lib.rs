//! Tollgate's storage and the use cases that write through it. Every function here takes and
//! returns domain types (`tollgate-domain`) or records of its own; failures are one
//! [`StoreError`]. The HTTP API and the console call the same functions: there is no second
//! path to the database.
//!
//! - [`db`]: the connection (SQLite or PostgreSQL through sqlx's `Any`, one set of SQL) and
//!   the migrations (one source, translated for PostgreSQL); [`rows`]: columns back into
//!   domain values.
//! - [`counters`]: the counter stores (embedded, Redis) behind one trait; [`hot_cache`]: what
//!   authrep reads without a query; [`invalidation`]: replicas telling each other to forget it.
//! - [`catalog`]: services, metrics, mapping rules, backends, plans, accounts, users,
//!   applications, the provider — declared resources with their behaviours.
//! - [`auth`]: access tokens and who is calling; [`console`]: sign-in and sessions for the
//!   console and the developer portal alike; [`portal`]: who a signed-in developer is.
//! - [`authrep`]: the service-management core (authorize, authrep, report).
//! - [`usage`], [`batches`]: the usage tables (and their roll-ups) and report batch ids;
//!   [`analytics`]: what the stats API reads from them; [`integration_errors`]: calls a
//!   service could not take.
//! - [`credits`]: wallets, the ledger, rates, issued credits, margins.
//! - [`billing`]: settings, invoices, payments, the billing run.
//! - [`contracts`], [`events`], [`leases`]: plan history, the event log, leases between
//!   replicas.
//! - [`gateway_registry`]: the gateways connected over xDS (in memory, per replica).
//! - [`outbox`], [`webhooks`], [`alerts`]: notifications — routing events to deliveries and
//!   leasing them to a sender, webhook endpoints and their secrets, usage-limit alerts.

pub mod alerts;
pub mod analytics;
pub mod auth;
pub mod authrep;
pub mod batches;
pub mod billing;
pub mod catalog;
pub mod console;
pub mod contracts;
pub mod counters;
pub mod credits;
pub mod db;
pub mod error;
pub mod events;
pub mod gateway_registry;
pub mod hot_cache;
pub mod integration_errors;
pub mod invalidation;
pub mod invitations;
pub mod leases;
pub mod multirow;
pub mod outbox;
pub mod passwords;
pub mod portal;
pub mod redis_nodes;
pub mod rows;
#[cfg(feature = "testing")]
pub mod testing;
pub mod time;
pub mod usage;
pub mod webhooks;

pub use db::Db;
pub use error::{Result, StoreError};
pub use tollgate_domain as domain;
