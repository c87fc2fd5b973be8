//! End to end through real Envoy with the built filter (`target/tollgate_filter.wasm`, from
//! `scripts/build-filter.sh`): the control plane on SQLite, a demo upstream, Envoy started by
//! `scripts/envoy.sh` with two workers.

use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use tollgate::testing::{Backend, TestApp, ADMIN_TOKEN};
use tollgate_e2e::{serve_demo, Envoy};

async fn demo_upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_demo(listener));
    addr
}

fn envoy_env(app: &TestApp, upstream: SocketAddr) -> Vec<(&'static str, String)> {
    vec![
        ("TOLLGATE_CONTROL_PLANE", app.addr.to_string()),
        ("TOLLGATE_ACCESS_TOKEN", ADMIN_TOKEN.to_string()),
        ("TOLLGATE_UPSTREAM", upstream.to_string()),
        ("TOLLGATE_REFRESH_MS", "500".to_string()),
        ("TOLLGATE_ENVOY_CONCURRENCY", "2".to_string()),
    ]
}

/// GETs `url` until it answers something other than 503 (the filter's answer until it has
/// fetched its configuration), for at most 20 s.
async fn get_when_configured(url: &str) -> reqwest::Response {
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = client.get(url).send().await.unwrap();
        if r.status() != 503 || std::time::Instant::now() > deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_request_with_the_key_passes_and_a_wrong_key_is_403() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.seed("e2e-key").await;
    let upstream = demo_upstream().await;
    let mut envoy = Envoy::start(&envoy_env(&app, upstream)).unwrap();
    envoy.wait_ready(Duration::from_secs(30)).await.unwrap();

    let ok = get_when_configured(&envoy.url("/hello?user_key=e2e-key")).await;
    assert_eq!(ok.status(), 200, "{}", envoy.output());
    let body: Value = ok.json().await.unwrap();
    assert_eq!(body["upstream"], "tollgate-demo", "the upstream answered");
    assert_eq!(body["path"], "/hello");

    let client = reqwest::Client::new();
    let wrong = client.get(envoy.url("/hello?user_key=wrong")).send().await.unwrap();
    assert_eq!(wrong.status(), 403);
    assert_eq!(wrong.text().await.unwrap(), "Authentication failed");
    let missing = client.get(envoy.url("/hello")).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    assert_eq!(missing.text().await.unwrap(), "Authentication parameters missing");
    let unmapped = client.post(envoy.url("/hello?user_key=e2e-key")).send().await.unwrap();
    assert_eq!(unmapped.status(), 404, "only GET / is mapped");

    drop(envoy);
    app.stop().await;
}

#[tokio::test]
async fn over_the_plan_limit_is_429() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (service, application) = app.seed("limited").await;
    app.limit_hits(&service, &application, "day", 2).await;
    let upstream = demo_upstream().await;
    let mut envoy = Envoy::start(&envoy_env(&app, upstream)).unwrap();
    envoy.wait_ready(Duration::from_secs(30)).await.unwrap();

    let url = envoy.url("/x?user_key=limited");
    assert_eq!(get_when_configured(&url).await.status(), 200, "{}", envoy.output());
    let client = reqwest::Client::new();
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    let denied = client.get(&url).send().await.unwrap();
    assert_eq!(denied.status(), 429);
    assert_eq!(denied.text().await.unwrap(), "Usage limit exceeded");
    drop(envoy);
    app.stop().await;
}

#[tokio::test]
async fn the_same_config_without_the_filter_lets_everything_through() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let upstream = demo_upstream().await;
    let mut env = envoy_env(&app, upstream);
    env.push(("TOLLGATE_FILTER", "off".to_string()));
    let mut envoy = Envoy::start(&env).unwrap();
    envoy.wait_ready(Duration::from_secs(30)).await.unwrap();
    let r = reqwest::get(envoy.url("/no-key-needed")).await.unwrap();
    assert_eq!(r.status(), 200, "{}", envoy.output());
    drop(envoy);
    app.stop().await;
}

#[tokio::test]
async fn a_bad_filter_configuration_stops_envoy_with_the_field_named() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let upstream = demo_upstream().await;
    let mut env = envoy_env(&app, upstream);
    // Out of range for the filter (1..=60000): on_configure must refuse it.
    env.push(("TOLLGATE_CP_TIMEOUT_MS", "0".to_string()));
    let mut envoy = Envoy::start(&env).unwrap();
    let status = envoy.wait_exit(Duration::from_secs(30)).await;
    assert!(
        matches!(status, Some(s) if !s.success()),
        "envoy must refuse to serve: {status:?}\n{}",
        envoy.output()
    );
    assert!(
        envoy.output().contains("control_plane.timeout_ms"),
        "{}",
        envoy.output()
    );
    app.stop().await;
}
