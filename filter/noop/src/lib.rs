//! A proxy-wasm filter that does nothing: what any Rust wasm filter costs in Envoy before it
//! does any work (the VM calls for a request's context, headers and end). `scripts/bench-filter.sh`
//! runs it beside Tollgate's filter as the floor the filter's figures are measured against.
//!
//!     scripts/build-filter.sh --noop    # writes target/noop_filter.wasm
//!
//! Its own crate, so that nothing but proxy-wasm is built for wasm32.

use proxy_wasm::traits::{Context, HttpContext};

proxy_wasm::main! {{
    proxy_wasm::set_http_context(|_, _| -> Box<dyn HttpContext> { Box::new(Noop) });
}}

struct Noop;

impl Context for Noop {}

impl HttpContext for Noop {}
