//! Several control-plane replicas on one PostgreSQL database and one Redis (or one Redis
//! Cluster) behave as one: an admin write on one replica reaches the others' hot caches through
//! Redis pub/sub, long before their cache TTL (here ten minutes, so only the message can
//! explain it), and they count on the same counters.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failure report

use reqwest::Method;
use std::time::{Duration, Instant};
use tollgate::testing::{redis_url, Backend, TestApp};

async fn authrep(app: &TestApp, sid: i64, token: &str) -> u16 {
    app.client
        .get(app.url(&format!(
            "/transactions/authrep.json?service_id={sid}&service_token={token}&user_key=replica-key&usage%5Bhits%5D=1"
        )))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// How long until `replica` answers authrep with something else than `was`.
async fn until_not(replica: &TestApp, sid: i64, token: &str, was: u16) -> Duration {
    let start = Instant::now();
    while authrep(replica, sid, token).await == was {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the write never reached the other replica"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    start.elapsed()
}

#[tokio::test]
async fn an_admin_write_on_one_replica_reaches_the_others_cache_at_once() {
    replicas_behave_as_one(redis_url()).await;
}

/// The same on a Redis Cluster: a message published on one node reaches subscribers on every
/// node, and the replicas' counters share one cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_a_redis_cluster_behave_as_one() {
    let url = tokio::task::spawn_blocking(tollgate::store::testing::shared_cluster_url)
        .await
        .unwrap();
    replicas_behave_as_one(url).await;
}

async fn replicas_behave_as_one(redis_url: String) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!("test:replicas:{nanos}:");
    let a = TestApp::spawn_with(Backend::Postgres, |c| {
        c.redis_url = Some(redis_url);
        c.redis_prefix = prefix.clone();
        c.cache_ttl_ms = 600_000;
    })
    .await;
    let b = a.replica(|_| {}).await;
    let (service, application) = a.seed("replica-key").await;
    let sid = service["service"]["id"].as_i64().unwrap();
    let token = a.service_token(sid).await;
    let account = application["application"]["account_id"].as_i64().unwrap();
    let id = application["application"]["id"].as_i64().unwrap();
    // Both replicas serve the key, and cache it.
    for app in [&a, &b, &b] {
        assert_eq!(authrep(app, sid, &token).await, 200);
    }
    // Suspended on A: B refuses it at once.
    let path = |event: &str| format!("/admin/api/accounts/{account}/applications/{id}/{event}.json");
    let (s, body) = a.send_form(Method::PUT, &path("suspend"), &[]).await;
    assert_eq!(s, 200, "{body}");
    let refused = authrep(&a, sid, &token).await;
    assert_ne!(refused, 200, "the writing replica sees its own write at once");
    let suspended = until_not(&b, sid, &token, 200).await;
    assert_eq!(authrep(&b, sid, &token).await, refused);
    // Resumed on B (the other way round): A serves it again.
    let (s, body) = b.send_form(Method::PUT, &path("resume"), &[]).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(authrep(&b, sid, &token).await, 200);
    let resumed = until_not(&a, sid, &token, refused).await;
    assert_eq!(authrep(&a, sid, &token).await, 200);
    eprintln!(
        "a suspension reached the other replica in {suspended:?}, a resumption in {resumed:?} (cache TTL: 10 min)"
    );
    // Limits and counts are one: both replicas count on the same Redis.
    let (_, usage) = a
        .get_json(&format!("/stats/services/{sid}/usage.json?metric_name=hits&period=day"))
        .await;
    assert!(usage["total"].as_i64().unwrap() >= 4, "{usage}");
    b.stop().await;
    a.stop().await;
}
