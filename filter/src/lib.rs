//! Tollgate's Envoy filter.
//!
//! The logic (configuration, credentials, mapping rules, decisions) is plain Rust in the modules
//! below, compiled and tested natively. Only [`glue`] touches proxy-wasm, and only on `wasm32`:
//! it reads the request, asks the core what to do, and does it.

pub mod authrep;
pub mod cache;
pub mod config;
pub mod credentials;
pub mod decision;
pub mod inflight;
pub mod mapping;
pub mod report;
pub mod request;
pub mod service;
pub mod shared;

#[cfg(target_arch = "wasm32")]
mod glue;
