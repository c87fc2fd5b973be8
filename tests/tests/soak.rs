//! The production shape under faults: two Envoys with the filter, two control-plane replicas on
//! one PostgreSQL database and a Redis Cluster (three masters, a replica each), mixed traffic
//! while a replica is killed and started again, a Redis master fails over and a gateway
//! drains; afterwards every request served is counted and paid for once. The test command runs
//! it for 20 s; `scripts/soak.sh` for ten minutes (`TOLLGATE_SOAK_SECONDS`), printing the same
//! figures.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tollgate::store::testing::RedisCluster;
use tollgate::testing::{Backend, TestApp, ADMIN_TOKEN};
use tollgate_e2e::{serve_demo, Envoy};

const GRANTED: i64 = 100_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_soak_with_every_fault_counts_every_request_once() {
    soak(Duration::from_secs(20)).await;
}

/// The ten-minute run (`scripts/soak.sh`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "ten minutes: scripts/soak.sh runs it"]
async fn soak_for_ten_minutes() {
    let seconds = std::env::var("TOLLGATE_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    soak(Duration::from_secs(seconds)).await;
}

/// What a client saw: answers by status.
type Statuses = Arc<Mutex<BTreeMap<u16, i64>>>;

async fn soak(duration: Duration) {
    let cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3, 1)).await.unwrap();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let app = TestApp::spawn_with(Backend::Postgres, |c| {
        c.redis_url = Some(cluster.url());
        c.redis_prefix = format!("soak:{nanos}:");
        c.redis_timeout_ms = 200;
        c.redis_replica_acks = 1;
        c.gateways = 2;
    })
    .await;
    let cluster = Arc::new(Mutex::new(cluster));
    let (service, application) = app.seed("soak").await;
    let (sid, hits) = app
        .limit_hits(&service, &application, "eternity", 1_000_000_000_000)
        .await;
    let aid = application["application"]["account_id"].as_i64().unwrap();
    let id = application["application"]["id"].as_i64().unwrap();
    app.make_prepaid(sid, aid, &hits.to_string(), &[("credits_per_unit", "1")])
        .await;
    let grants = format!("/admin/api/accounts/{aid}/credit_grants.json");
    assert_eq!(app.post_form(&grants, &[("amount", &GRANTED.to_string())]).await.0, 201);

    let mut replica = app.killable_replica();
    let replica_addr = replica.addr;
    let upstream = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve_demo(listener));
        addr
    };
    let env = vec![
        ("TOLLGATE_CONTROL_PLANE", format!("{replica_addr},{}", app.addr)),
        ("TOLLGATE_ACCESS_TOKEN", ADMIN_TOKEN.to_string()),
        ("TOLLGATE_UPSTREAM", upstream.to_string()),
        ("TOLLGATE_REFRESH_MS", "1000".to_string()),
        ("TOLLGATE_FILTER_CACHE_TTL_MS", "100".to_string()),
        ("TOLLGATE_REPORT_INTERVAL_MS", "200".to_string()),
        ("TOLLGATE_CP_TIMEOUT_MS", "1000".to_string()),
    ];
    let mut envoys = Vec::new();
    for _ in 0..2 {
        let mut envoy = Envoy::start(&env).unwrap();
        envoy.wait_ready(Duration::from_secs(30)).await.unwrap();
        envoys.push(envoy);
    }
    let client = reqwest::Client::new();
    let urls: Vec<String> = envoys.iter().map(|e| e.url("/soak?user_key=soak")).collect();
    for url in &urls {
        let deadline = Instant::now() + Duration::from_secs(20);
        while client.get(url).send().await.unwrap().status() != 200 {
            assert!(Instant::now() < deadline, "not serving");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let warmup_served = 2; // those two requests

    // Mixed traffic: each gateway two clients, one calling without pause, one every 5 ms;
    // now and then a wrong key (403, not served, not counted).
    let stop = [Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false))];
    let statuses: Statuses = Arc::default();
    let sent = Arc::new(AtomicI64::new(0));
    let mut clients = tokio::task::JoinSet::new();
    for (g, url) in urls.iter().enumerate() {
        for paced in [false, true] {
            let (client, url, stop, statuses, sent) = (
                client.clone(),
                url.clone(),
                stop[g].clone(),
                statuses.clone(),
                sent.clone(),
            );
            clients.spawn(async move {
                let wrong = url.replace("user_key=soak", "user_key=nobody");
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let target = if n.is_multiple_of(50) { &wrong } else { &url };
                    sent.fetch_add(1, Ordering::Relaxed);
                    let status = match client.get(target).send().await {
                        Ok(r) => r.status().as_u16(),
                        Err(_) => 0,
                    };
                    *statuses.lock().unwrap().entry(status).or_default() += 1;
                    if paced {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            });
        }
    }

    // The faults, at fixed points of the run.
    let started = Instant::now();
    let at = |fraction: f64| started + duration.mul_f64(fraction);
    let mut faults = Vec::new();
    tokio::time::sleep_until(at(0.2).into()).await;
    tokio::task::spawn_blocking(move || replica.kill()).await.unwrap();
    faults.push(format!(
        "{:>6.1} s  replica {replica_addr} killed",
        started.elapsed().as_secs_f64()
    ));
    tokio::time::sleep_until(at(0.35).into()).await;
    let restarted = app.killable_replica_at(replica_addr);
    faults.push(format!(
        "{:>6.1} s  replica started again on {replica_addr}",
        started.elapsed().as_secs_f64()
    ));
    tokio::time::sleep_until(at(0.5).into()).await;
    let failover = {
        let cluster = cluster.clone();
        let key = {
            let tollgate::counters::Counters::Redis(store) = &app.counters else {
                panic!("on Redis")
            };
            store.key(
                tollgate::counters::Scope::account(tollgate::domain::ids::AccountId::new(aid)),
                &tollgate::domain::credits::spent_op(
                    tollgate::domain::ids::AccountId::new(aid),
                    tollgate::counters::Amount::Add(0),
                ),
            )
        };
        tokio::task::spawn_blocking(move || {
            let mut cluster = cluster.lock().unwrap();
            let victim = cluster.master_of(&key);
            let killed = Instant::now();
            cluster.nodes[victim].kill();
            cluster.wait_for_failover(&key, victim, Duration::from_secs(30));
            killed.elapsed()
        })
        .await
        .unwrap()
    };
    faults.push(format!(
        "{:>6.1} s  the account's Redis master killed; its replica took over in {failover:.1?}",
        started.elapsed().as_secs_f64()
    ));
    tokio::time::sleep_until(at(0.7).into()).await;
    // Gateway 2 drains as an operator would: no new connections, then quit once its outbox is
    // empty (reports that failed during the faults wait there for their retry).
    stop[1].store(true, Ordering::Relaxed);
    let drained = envoys.pop().unwrap();
    let _ = client
        .post(format!(
            "http://127.0.0.1:{}/drain_listeners?graceful",
            drained.admin_port
        ))
        .send()
        .await;
    faults.push(format!("{:>6.1} s  gateway 2 drained", started.elapsed().as_secs_f64()));
    let deadline = Instant::now() + Duration::from_secs(60);
    let drained_stats = loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let stats = drained.filter_stats().await;
        if stats.get("buffered_batches") == Some(&0) || Instant::now() > deadline {
            break stats;
        }
    };
    let mut drained = drained;
    drained.quit(Duration::from_secs(10)).await;
    faults.push(format!("{:>6.1} s  gateway 2 stopped", started.elapsed().as_secs_f64()));
    tokio::time::sleep_until(at(1.0).into()).await;
    stop[0].store(true, Ordering::Relaxed);
    while let Some(c) = clients.join_next().await {
        c.unwrap();
    }
    let ran = started.elapsed();

    // Settle: the last reports, then the usage tables and the ledger.
    let statuses = statuses.lock().unwrap().clone();
    let served = statuses.get(&200).copied().unwrap_or(0) + warmup_served;
    let authorize = app.url(&format!(
        "/transactions/authorize.json?service_id={sid}&service_token={}&user_key=soak",
        app.service_token(sid).await
    ));
    let counted = || async {
        let body: serde_json::Value = reqwest::get(&authorize).await.unwrap().json().await.unwrap();
        body["usage_reports"][0]["current_value"].as_i64().unwrap_or(-1)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while (counted().await < served || envoys[0].filter_stats().await.get("buffered_batches") != Some(&0))
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let counted = counted().await;
    let mut stats = envoys[0].filter_stats().await;
    for (k, v) in &drained_stats {
        *stats.entry(k.clone()).or_default() += v;
    }
    // Flushed as a control plane that just started would: every series counter in the
    // cluster, whichever replica (the killed one too) moved it.
    let tollgate::counters::Counters::Redis(store) = &app.counters else {
        panic!("on Redis")
    };
    let everything = tollgate::counters::Counters::Redis(store.with_fresh_state());
    let tollgate::counters::Counters::Redis(fresh) = &everything else {
        unreachable!()
    };
    fresh.recover_changed_series().await.unwrap();
    let mut attempts = 0;
    while let Err(e) = tollgate::usage::flush(&app.db, &everything).await {
        attempts += 1;
        eprintln!("  the usage flush failed ({e}); again");
        assert!(attempts < 10, "the usage flush keeps failing: {e}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tollgate::credits::flush(&app.db, &app.counters).await.unwrap();
    let now = chrono::Utc::now().timestamp();
    let in_usage_tables = tollgate::usage::total(
        &app.db,
        tollgate::usage::Scope::Application(tollgate::domain::ids::ApplicationId::new(id)),
        tollgate::domain::ids::MetricId::new(hits),
        now - 86_400,
        now + 3600,
    )
    .await
    .unwrap();
    let (_, balance) = app
        .get_json(&format!("/admin/api/accounts/{aid}/credit_balance.json"))
        .await;
    let balance: f64 = balance["credit_balance"]["balance"].as_str().unwrap().parse().unwrap();
    let deducted = GRANTED - balance as i64;

    eprintln!("soak: {ran:.0?}, two gateways (one drained at 70 %), two replicas, a 3-master Redis Cluster");
    for f in &faults {
        eprintln!("  {f}");
    }
    eprintln!(
        "  requests sent {}, answered {statuses:?}",
        sent.load(Ordering::Relaxed)
    );
    eprintln!(
        "  served {served}, counted {counted}, in the usage tables {in_usage_tables}, credits deducted {deducted}"
    );
    eprintln!("  the filters (both gateways): {stats:?}");
    // Wrong keys are 403; nothing else but a served request.
    assert!(
        statuses.keys().all(|s| [200, 403].contains(s)),
        "a client was refused for a fault: {statuses:?}"
    );
    assert_eq!(
        in_usage_tables, counted,
        "the usage tables hold what the counters counted"
    );
    assert_eq!(deducted, counted, "the ledger deducted what was counted");
    // An authrep a dying replica or master had counted but not answered is counted again when
    // its request is reported: at most one per failed call.
    assert!(
        counted >= served && counted <= served + stats["authrep_failures"] as i64,
        "served {served}, counted {counted}: {stats:?}"
    );
    drop(restarted);
    drop(envoys);
    app.stop().await;
}
