//! The catalog (SPEC §3): services with their metrics, mapping rules and proxy settings, backends,
//! plans, developer accounts with their users and applications, the provider and its users.
//! Each module holds one entity: its declared [`resource::Resource`], its
//! [`resource::Behaviour`] next to it, and the queries the entity needs beyond CRUD.
//!
//! Entities depend on the engine ([`resource`], [`crud`]) and on entities below them (a service
//! creates its `hits` metric; an application takes its terms from its plan), never the other way.

pub mod accounts;
pub mod applications;
pub mod backends;
pub mod crud;
pub mod json;
pub mod mapping_rules;
pub mod metrics;
pub mod names;
pub mod plans;
pub mod provider;
pub mod proxy;
pub mod resource;
pub mod services;
pub mod subscriptions;
pub mod webhook_events;

pub use crud::{Entity, Parent};
pub use resource::{Record, Resource};
