//! authrep against plan limits, end to end over HTTP: on SQLite and PostgreSQL with embedded
//! counters, on Redis, and with Redis going away and coming back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failure report

use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tollgate::on_both_databases;
use tollgate::testing::{Backend, TestApp};

/// Seeds an application whose plan allows 3 hits a minute; returns the authrep query prefix
/// and the id of a method (child of hits).
async fn limited(app: &TestApp) -> (String, i64) {
    let (service, application) = app.seed("limited-key").await;
    let sid = service["service"]["id"].as_i64().unwrap();
    let plan = application["application"]["plan_id"].as_i64().unwrap();
    let (_, metrics) = app.get_json(&format!("/admin/api/services/{sid}/metrics.json")).await;
    let hits = metrics["metrics"][0]["metric"]["id"].as_i64().unwrap();
    let (status, _) = app
        .post_form(
            &format!("/admin/api/application_plans/{plan}/metrics/{hits}/limits.json"),
            &[("period", "minute"), ("value", "3")],
        )
        .await;
    assert_eq!(status, 201);
    let (status, method) = app
        .post_form(
            &format!("/admin/api/services/{sid}/metrics/{hits}/methods.json"),
            &[("friendly_name", "Search")],
        )
        .await;
    assert_eq!(status, 201);
    let token = app.service_token(sid).await;
    (
        format!("/transactions/authrep.json?service_id={sid}&service_token={token}&user_key=limited-key"),
        method["method"]["id"].as_i64().unwrap(),
    )
}

async fn call(app: &TestApp, path: &str) -> (u16, Value) {
    let r = app.client.get(app.url(path)).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn limits_hold(app: &TestApp) {
    let (base, _) = limited(app).await;
    for n in 1..=2 {
        let (status, body) = call(app, &format!("{base}&usage%5Bhits%5D=1")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["usage_reports"][0]["current_value"], n);
        assert_eq!(body["usage_reports"][0]["max_value"], 3);
        assert_eq!(body["usage_reports"][0]["period"], "minute");
    }
    // A method's usage counts for hits too: 2 + 1 = 3 passes, then nothing more.
    let (status, _) = call(app, &format!("{base}&usage%5Bsearch%5D=1")).await;
    assert_eq!(status, 200);
    let (status, body) = call(app, &format!("{base}&usage%5Bhits%5D=1")).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["reason"], "usage limits are exceeded");
    assert_eq!(body["rejection_reason"], "limits_exceeded");
    assert_eq!(body["usage_reports"][0]["current_value"], 3, "a denial counts nothing");
    // A call that uses nothing limited still passes.
    let (status, _) = call(app, &base).await;
    assert_eq!(status, 200);
}

on_both_databases! {
    async fn limits_hold_with_embedded_counters(app: &TestApp) {
        limits_hold(app).await;
    }
}

#[tokio::test]
async fn limits_hold_with_redis_counters() {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!("authrep-test:{}:{nanos}:", std::process::id());
    let url = tollgate::testing::redis_url();
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.redis_url = Some(url);
        c.redis_prefix = prefix;
    })
    .await;
    limits_hold(&app).await;
    app.stop().await;
}

struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    fn start(port: u16) -> RedisServer {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/setup.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        RedisServer { child, port }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn redis_going_away_gives_fast_503s_and_recovery() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let redis = RedisServer::start(port);
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.redis_url = Some(format!("redis://127.0.0.1:{}", redis.port));
        c.redis_timeout_ms = 100;
    })
    .await;
    let (base, _) = limited(&app).await;
    let path = format!("{base}&usage%5Bhits%5D=1");
    assert_eq!(call(&app, &path).await.0, 200);

    drop(redis);
    for _ in 0..3 {
        let started = Instant::now();
        let (status, body) = call(&app, &path).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["code"], "backend_unavailable");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "answered in {:?}",
            started.elapsed()
        );
    }

    // Back on the same port: authreps pass again without restarting the control plane.
    let _redis = RedisServer::start(port);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, _) = call(&app, &path).await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "did not recover: {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.stop().await;
}
