//! What the filter's pure per-request work costs natively: the request head as the glue builds
//! it (from Envoy's serialized header map), the decision (service, mapping rules, credentials)
//! and the cache key. The rest of a request's cost in Envoy is host calls and callbacks.
//!
//!     cargo run --release -p tollgate-filter --example core_cost

use tollgate_filter::authrep::cache_key;
use tollgate_filter::config::FailureMode;
use tollgate_filter::decision::{decide, Decision};
use tollgate_filter::request::{HeaderMap, RequestHead};
use tollgate_filter::service::Services;

fn main() -> Result<(), String> {
    let services = Services::parse_proxy_configs(
        br#"{"proxy_configs":[{"proxy_config":{"version":1,"content":{"id":3,"backend_authentication_value":"st",
          "proxy":{"proxy_rules":[{"http_method":"GET","pattern":"/","metric_system_name":"hits","delta":1}]}}}}]}"#,
    )?;
    let map = HeaderMap::serialize(&[
        (":method", "GET"),
        (
            ":path",
            "/bench?user_key=cb53fbbc81a93197a285516fe9b3c5decf7bd0e5d9631fb38c38a1e764cba11d",
        ),
        (":authority", "127.0.0.1:8080"),
        (":scheme", "http"),
        ("user-agent", "wrk"),
        ("x-forwarded-proto", "http"),
        ("x-request-id", "4c2b5e0e-1a2b-4c3d-9e8f-123456789abc"),
    ]);
    let n: u32 = std::env::var("CORE_COST_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500_000);
    let start = std::time::Instant::now();
    for _ in 0..n {
        let head = RequestHead::from_header_map(std::hint::black_box(map.clone()));
        match decide(Some(&services), FailureMode::Closed, &head) {
            Decision::Authorize(call) => {
                std::hint::black_box(cache_key(call.service_id, &call.credentials));
            }
            other => return Err(format!("expected a call to authorize, got {other:?}")),
        }
    }
    println!("per request: {:?}", start.elapsed() / n);
    Ok(())
}
