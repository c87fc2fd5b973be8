//! Tollgate's HTTP API: 3scale's Account Management, Billing and service-management APIs, the
//! operational endpoints, and the OpenAPI document of all of them. Handlers are thin: they
//! parse the request into domain inputs, call the store, and render 3scale's shapes.
//!
//! - [`routes`]: the route table every area adds to; [`router`] mounts it. Each route names its permission; the
//!   guard it is mounted with authorizes the caller, and checks the service a path names
//!   (`{service_id}`, an application plan's `{plan_id}`), before any handler runs — a handler
//!   cannot forget either. The router and [`openapi`] are both built from the table.
//! - [`params`]: 3scale's parameters (query, form or JSON) as a [`tollgate_domain::form::Form`].
//! - [`error`]: every failure, and the one place that turns it into HTTP.
//! - [`render`]: records and domain types in 3scale's JSON shapes; [`pdf`]: invoices as PDFs.
//! - Areas, each with its `routes()`: [`crud`] (the catalog's generic resources), [`catalog`]
//!   (proxy, configs, plans), [`accounts`], [`applications`], [`provider`] (provider account,
//!   users, permissions, tokens), [`credits`], [`billing`], [`service_management`],
//!   [`stats`] (the Analytics API), [`system`].
//! - [`xml`]: the one XML writer, and JSON answers as 3scale's XML; [`xml_answers`]: the
//!   admin API under `.xml`.

pub mod accounts;
pub mod alerts;
pub mod applications;
pub mod billing;
pub mod catalog;
pub mod console;
pub mod credits;
pub mod crud;
pub mod delivery;
pub mod error;
pub mod mailer;
pub mod metrics;
pub mod openapi;
pub mod params;
pub mod pdf;
pub mod portal;
pub mod provider;
pub mod render;
pub mod router;
pub mod routes;
pub mod service_management;
pub mod state;
pub mod stats;
pub mod system;
pub mod webhooks;
pub mod xml;
pub mod xml_answers;

pub use error::ApiError;
pub use router::{router, table};
pub use state::AppState;

/// The binary's version, reported by `/health`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
