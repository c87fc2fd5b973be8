//! Tollgate's Envoy filter.
//!
//! Everything is plain Rust, compiled and tested natively: the rules (configuration,
//! credentials, mapping rules, decisions, the cache, reports) and the worker's state machines
//! ([`root`], [`stream`], over the [`host::Host`] trait). Only `glue` touches proxy-wasm, and
//! only on `wasm32`: it implements the host over proxy-wasm's host calls and hands each
//! callback to the core. Native tests run the same core on a fake host (`fake`).

pub mod authrep;
pub mod cache;
pub mod config;
pub mod credentials;
pub mod decision;
pub mod host;
pub mod inflight;
pub mod mapping;
pub mod report;
pub mod request;
pub mod root;
pub mod service;
pub mod shared;
pub mod stats;
pub mod stream;
pub mod timing;
pub mod vm;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod scenarios;

#[cfg(target_arch = "wasm32")]
mod glue;
