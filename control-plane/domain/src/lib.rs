//! Tollgate's domain core: what the control plane knows and decides, as plain Rust over domain
//! types — no I/O, no clock (callers pass `now`), no database, HTTP or JSON-value types in any
//! signature. Storage (`tollgate-store`) loads and saves these types; the HTTP API
//! (`tollgate-api`) parses requests into them and renders them; both depend on this crate and
//! never the other way round, so the compiler keeps the direction.
//!
//! - [`ids`]: newtypes for every kind of id.
//! - [`invalid`], [`form`]: bad input named field by field, and the name/value form 3scale's
//!   APIs take (parsed into typed inputs next to each type: "parse, don't validate").
//! - [`access`]: scopes, sections and who may do what.
//! - [`catalog`]: states and credentials of services, accounts and applications, system names,
//!   mapping-rule patterns; [`proxy`]: a service's gateway settings; [`gateway`]: endpoint
//!   URLs and an environment's routing plan (what the xDS server serves).
//! - [`periods`], [`counters`], [`limits`]: calendar periods, counter operations, plan limits.
//! - [`money`], [`pricing`], [`proration`], [`invoice`], [`contracts`], [`billing`],
//!   [`billing_plan`]: money, variable costs, fees by the day, invoice rules, plan history,
//!   billing settings and the daily billing run's plan.
//! - [`credits`]: prepaid credit units, rates, costs and the ledger's rules.
//! - [`analytics`]: stats windows, time zones and buckets.
//! - [`notify`]: the event catalogue, retry schedule, limit alert levels and notification
//!   preferences.

pub mod access;
pub mod analytics;
pub mod billing;
pub mod billing_plan;
pub mod catalog;
pub mod contracts;
pub mod counters;
pub mod credits;
pub mod form;
pub mod gateway;
pub mod ids;
pub mod invalid;
pub mod invoice;
pub mod limits;
pub mod money;
pub mod notify;
pub mod periods;
pub mod pricing;
pub mod proration;
pub mod proxy;
pub mod sign_in;

pub use invalid::Invalid;
