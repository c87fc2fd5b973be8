//! The counter-store conformance suite: every check runs against the embedded store (in
//! memory and durable), against Redis and against a 3-master Redis Cluster the tests start
//! (each test its own key prefix), so every implementation means the same thing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failure report

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tollgate_domain::counters::SERIES;
use tollgate_domain::counters::{once, Scope};
use tollgate_domain::ids::{AccountId, ApplicationId};
use tollgate_domain::periods::Period;
use tollgate_store::counters::embedded::EmbeddedStore;
use tollgate_store::counters::redis::RedisStore;
use tollgate_store::counters::{Amount, Counter, CounterStore, Counters, Mode, Op, SeriesKey};
use tollgate_store::redis_nodes::Connection;

fn redis_url() -> String {
    std::env::var("TOLLGATE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Application `id`, of an account of its own (1000 + id: on a cluster, apps spread over
/// the slots).
fn a(id: i64) -> Scope {
    in_account(id, 1000 + id)
}

/// Application `id` of account `account`.
fn in_account(id: i64, account: i64) -> Scope {
    Scope::new(ApplicationId::new(id), AccountId::new(account))
}

async fn redis_store_at(url: &str) -> RedisStore {
    let conn = Connection::open(url).await.unwrap();
    let prefix = format!("test:{}:{}:", std::process::id(), rand_suffix());
    RedisStore::new(conn, &prefix, Duration::from_secs(2))
}

async fn redis() -> Counters {
    Counters::Redis(redis_store_at(&redis_url()).await)
}

/// A store on the binary's shared 3-master cluster.
async fn cluster() -> Counters {
    let url = tokio::task::spawn_blocking(tollgate_store::testing::shared_cluster_url)
        .await
        .unwrap();
    Counters::Redis(redis_store_at(&url).await)
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn embedded() -> Counters {
    Counters::Embedded(Arc::new(EmbeddedStore::new()))
}

/// The embedded store as the control plane runs it: every moved counter stored in SQLite.
async fn durable() -> (Counters, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = tollgate_store::Db::connect(&format!("sqlite://{}", dir.path().join("c.db").display()))
        .await
        .unwrap();
    db.migrate().await.unwrap();
    (
        Counters::Embedded(Arc::new(EmbeddedStore::durable(db).await.unwrap())),
        dir,
    )
}

/// An op on counter `raw` ([`Counter::raw`]: a metric id, or a reserved negative id).
fn op(raw: i64, period: Period, delta: i64, max: Option<i64>) -> Op {
    let ttl = if period == Period::Eternity { None } else { Some(3600) };
    Op {
        counter: Counter::from_raw(raw).unwrap(),
        period,
        start: if period == Period::Eternity { 0 } else { 1_700_000_000 },
        ttl,
        amount: Amount::Add(delta),
        max,
        account: None,
    }
}

fn set(metric: i64, period: Period, value: i64, max: Option<i64>) -> Op {
    Op {
        amount: Amount::Set(value),
        ..op(metric, period, 0, max)
    }
}

/// The changed series counters a store hands over, as (key, value), in key order.
async fn taken(s: &impl CounterStore) -> Vec<(SeriesKey, i64)> {
    let mut out: Vec<_> = s
        .take_changed_series()
        .await
        .unwrap()
        .iter()
        .map(|v| (v.key, v.value))
        .collect();
    out.sort();
    out
}

macro_rules! on_both_stores {
    ($(async fn $name:ident($store:ident: Counters) $body:block)*) => {
        $(
            mod $name {
                use super::*;
                async fn run($store: Counters) $body
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn embedded() { run(super::embedded()).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn redis() { run(super::redis().await).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn redis_cluster() { run(super::cluster().await).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn embedded_durable() {
                    let (store, _dir) = super::durable().await;
                    run(store).await
                }
            }
        )*
    };
}

on_both_stores! {
    async fn check_never_moves_counters(s: Counters) {
        let ops = [op(1, Period::Day, 3, Some(10))];
        let out = s.apply(a(7), &ops, Mode::Check).await.unwrap();
        assert!(out.authorized);
        assert_eq!(out.values, vec![0]);
        assert_eq!(s.apply(a(7), &ops, Mode::Check).await.unwrap().values, vec![0]);
    }

    async fn check_and_add_moves_all_or_nothing(s: Counters) {
        let ops = [op(1, Period::Day, 4, Some(10)), op(1, Period::Month, 4, Some(5))];
        let first = s.apply(a(7), &ops, Mode::CheckAndAdd).await.unwrap();
        assert_eq!((first.authorized, first.values.clone()), (true, vec![4, 4]));
        // The month limit (5) would pass: nothing moves, not even the day counter.
        let second = s.apply(a(7), &ops, Mode::CheckAndAdd).await.unwrap();
        assert_eq!((second.authorized, second.values), (false, vec![4, 4]));
        let read = s.apply(a(7), &[op(1, Period::Day, 0, None), op(1, Period::Month, 0, None)], Mode::Check).await.unwrap();
        assert_eq!(read.values, vec![4, 4]);
    }

    async fn add_always_moves_even_past_limits(s: Counters) {
        let ops = [op(1, Period::Minute, 8, Some(5))];
        let out = s.apply(a(7), &ops, Mode::Add).await.unwrap();
        assert_eq!((out.authorized, out.values), (true, vec![8]));
        let check = s.apply(a(7), &[op(1, Period::Minute, 1, Some(5))], Mode::Check).await.unwrap();
        assert!(!check.authorized);
    }

    async fn zero_limits_and_untouched_metrics(s: Counters) {
        assert!(!s.apply(a(7), &[op(2, Period::Eternity, 1, Some(0))], Mode::CheckAndAdd).await.unwrap().authorized);
        let untouched = [op(2, Period::Eternity, 0, Some(0)), op(3, Period::Hour, 1, None)];
        let out = s.apply(a(7), &untouched, Mode::CheckAndAdd).await.unwrap();
        assert!(out.authorized, "a metric at its max that this call does not touch denies nothing");
        assert_eq!(out.values, vec![0, 1]);
    }

    async fn applications_and_periods_are_separate(s: Counters) {
        s.apply(a(7), &[op(1, Period::Hour, 5, None)], Mode::Add).await.unwrap();
        assert_eq!(s.apply(a(8), &[op(1, Period::Hour, 0, None)], Mode::Check).await.unwrap().values, vec![0]);
        let mut next_hour = op(1, Period::Hour, 0, None);
        next_hour.start += 3600;
        assert_eq!(s.apply(a(7), &[next_hour], Mode::Check).await.unwrap().values, vec![0]);
    }

    async fn concurrent_authreps_never_pass_the_limit(s: Counters) {
        let s = Arc::new(s);
        let mut tasks = Vec::new();
        for _ in 0..60 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                let ops = [op(1, Period::Minute, 1, Some(25)), op(1, Period::Eternity, 1, None)];
                s.apply(a(9), &ops, Mode::CheckAndAdd).await.unwrap().authorized
            }));
        }
        let mut passed = 0;
        for t in tasks {
            passed += usize::from(t.await.unwrap());
        }
        assert_eq!(passed, 25);
        let read = s.apply(a(9), &[op(1, Period::Minute, 0, None), op(1, Period::Eternity, 0, None)], Mode::Check).await.unwrap();
        assert_eq!(read.values, vec![25, 25], "denied calls moved nothing");
    }

    async fn concurrent_calls_of_one_account_never_overspend_its_credits(s: Counters) {
        // Account 500's balance covers 1000 units; each call costs 30: exactly 33 pass, over
        // four applications of the account at once.
        let s = Arc::new(s);
        let spend = |cost| Op {
            account: Some(AccountId::new(500)),
            ..op(Counter::CreditsSpent.raw(), Period::Eternity, cost, Some(1000))
        };
        let mut tasks = Vec::new();
        for i in 0..48 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                let ops = [op(1, Period::Eternity, 1, None), spend(30)];
                s.apply(in_account(21 + i % 4, 500), &ops, Mode::CheckAndAdd).await.unwrap().authorized
            }));
        }
        let mut passed = 0;
        for t in tasks {
            passed += usize::from(t.await.unwrap());
        }
        assert_eq!(passed, 33);
        let spent = s.apply(Scope::account(AccountId::new(500)), &[spend(0)], Mode::Check).await.unwrap().values;
        assert_eq!(spent, vec![990], "one balance for every application of the account");
        let mut hits = 0;
        for app in 21..25 {
            hits += s.apply(in_account(app, 500), &[op(1, Period::Eternity, 0, None)], Mode::Check).await.unwrap().values[0];
        }
        assert_eq!(hits, 33, "a call denied for credits moved nothing");
    }

    async fn a_set_replaces_the_value_and_is_checked_for_it(s: Counters) {
        s.apply(a(7), &[op(1, Period::Day, 8, None)], Mode::Add).await.unwrap();
        let over = s.apply(a(7), &[set(1, Period::Day, 11, Some(10))], Mode::CheckAndAdd).await.unwrap();
        assert_eq!((over.authorized, over.values), (false, vec![8]));
        let down = s.apply(a(7), &[set(1, Period::Day, 2, Some(10))], Mode::CheckAndAdd).await.unwrap();
        assert_eq!((down.authorized, down.values), (true, vec![2]), "a set may lower a counter");
        let check = s.apply(a(7), &[set(1, Period::Day, 10, Some(10))], Mode::Check).await.unwrap();
        assert!(check.authorized, "setting to the max is within it");
        let zero = s.apply(a(7), &[set(1, Period::Day, 0, None)], Mode::Add).await.unwrap();
        assert_eq!(zero.values, vec![0], "#0 resets");
    }

    async fn a_marked_transaction_counts_once(s: Counters) {
        let ops = || vec![op(1, Period::Day, 4, Some(1)), op(-200, Period::Day, 1, None)];
        let first = s.apply(a(7), &once(ops(), 42), Mode::CheckAndAdd).await.unwrap();
        assert!(first.authorized, "counted past its limit: a report counts what happened");
        let again = s.apply(a(7), &once(ops(), 42), Mode::CheckAndAdd).await.unwrap();
        assert!(!again.authorized, "the same transaction again counts nothing");
        let next = s.apply(a(7), &once(ops(), 43), Mode::CheckAndAdd).await.unwrap();
        assert!(next.authorized, "another transaction counts");
        let elsewhere = s.apply(a(8), &once(ops(), 42), Mode::CheckAndAdd).await.unwrap();
        assert!(elsewhere.authorized, "marks are the application's");
        let read = s.apply(a(7), &[op(1, Period::Day, 0, None), op(-200, Period::Day, 0, None)], Mode::Check).await.unwrap();
        assert_eq!(read.values, vec![8, 2]);
    }

    async fn moved_series_counters_are_handed_to_the_usage_flush(s: Counters) {
        assert!(s.take_changed_series().await.unwrap().is_empty());
        let hour = op(1, SERIES, 2, None);
        s.apply(a(7), &[hour.clone(), op(1, Period::Month, 2, None)], Mode::Add).await.unwrap();
        s.apply(a(7), std::slice::from_ref(&hour), Mode::Add).await.unwrap();
        s.apply(a(7), &[op(1, SERIES, 1, Some(0))], Mode::CheckAndAdd).await.unwrap();
        s.apply(a(8), &[op(1, SERIES, 0, None)], Mode::Check).await.unwrap();
        let key = SeriesKey { app: 7, counter: 1, start: hour.start };
        assert_eq!(taken(&s).await, vec![(key, 4)], "denied and read-only calls move nothing");
        assert!(s.take_changed_series().await.unwrap().is_empty(), "taken once");
        s.mark_changed_series(vec![key]);
        assert_eq!(taken(&s).await, vec![(key, 4)], "handed back after a failed flush");
    }
}

#[tokio::test]
async fn a_restarted_durable_store_hands_its_hour_counters_over_again() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("c.db").display());
    let db = tollgate_store::Db::connect(&url).await.unwrap();
    db.migrate().await.unwrap();
    let store = EmbeddedStore::durable(db.clone()).await.unwrap();
    store
        .apply(
            a(7),
            &[op(1, SERIES, 3, None), op(1, Period::Eternity, 3, None)],
            Mode::Add,
        )
        .await
        .unwrap();
    assert_eq!(store.take_changed_series().await.unwrap().len(), 1);
    drop(store);
    let again = EmbeddedStore::durable(db).await.unwrap();
    let hours = again.take_changed_series().await.unwrap();
    assert_eq!(hours.len(), 1);
    assert_eq!(hours[0].value, 3);
}

#[tokio::test]
async fn a_restarted_durable_store_keeps_its_marks() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("c.db").display());
    let db = tollgate_store::Db::connect(&url).await.unwrap();
    db.migrate().await.unwrap();
    let ops = || once(vec![op(1, Period::Eternity, 3, None)], 9);
    let store = EmbeddedStore::durable(db.clone()).await.unwrap();
    assert!(store.apply(a(7), &ops(), Mode::CheckAndAdd).await.unwrap().authorized);
    drop(store);
    let again = EmbeddedStore::durable(db).await.unwrap();
    assert!(!again.apply(a(7), &ops(), Mode::CheckAndAdd).await.unwrap().authorized);
}

#[tokio::test]
async fn a_restarted_redis_store_finds_its_hour_counters() {
    restarted_redis_store_finds_its_hour_counters(redis().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_redis_store_finds_its_hour_counters_on_every_master() {
    restarted_redis_store_finds_its_hour_counters(cluster().await).await;
}

async fn restarted_redis_store_finds_its_hour_counters(store: Counters) {
    let Counters::Redis(store) = store else { unreachable!() };
    store
        .apply(a(5), &[op(1, SERIES, 3, None), op(-200, SERIES, 1, None)], Mode::Add)
        .await
        .unwrap();
    // Other accounts' counters, on other masters of a cluster.
    for app in 100..139 {
        store
            .apply(a(app), &[op(1, SERIES, app, None)], Mode::Add)
            .await
            .unwrap();
    }
    let fresh = store.with_fresh_state();
    assert_eq!(fresh.recover_changed_series().await.unwrap(), 41);
    let hours: Vec<(i64, i64, i64)> = taken(&fresh)
        .await
        .iter()
        .map(|(k, v)| (k.app, k.counter, *v))
        .collect();
    assert_eq!(hours.len(), 41);
    assert!(
        hours.contains(&(5, -200, 1)) && hours.contains(&(5, 1, 3)) && hours.contains(&(138, 1, 138)),
        "{hours:?}"
    );
}

#[tokio::test]
async fn counters_under_the_old_application_tag_move_to_the_account_tag() {
    let Counters::Redis(store) = redis().await else {
        unreachable!()
    };
    let new_key = store.key(in_account(42, 9), &op(1, Period::Eternity, 0, None));
    let prefix = new_key.split("{acct:").next().unwrap().to_string();
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let old_day = format!("{prefix}{{app:42}}:1:day:1700000000");
    let _: () = redis::cmd("SET")
        .arg(&old_day)
        .arg(5)
        .arg("EX")
        .arg(3600)
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(format!("{prefix}{{app:42}}:1:eternity:0"))
        .arg(7)
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(format!("{prefix}{{app:-9}}:-1000:eternity:0"))
        .arg(30)
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(format!("{prefix}{{app:77}}:1:eternity:0"))
        .arg(1)
        .query_async(&mut conn)
        .await
        .unwrap();
    // A call of the new version lands before the move: the move adds to it.
    store
        .apply(in_account(42, 9), &[op(1, Period::Eternity, 1, None)], Mode::Add)
        .await
        .unwrap();
    let legacy = store.legacy_keys().await.unwrap();
    assert_eq!(legacy.len(), 4);
    let accounts = std::collections::HashMap::from([(42, 9)]);
    assert_eq!(
        store.rekey(&legacy, &accounts).await.unwrap(),
        3,
        "application 77 is unknown: it stays"
    );
    let credits = Op {
        account: Some(AccountId::new(9)),
        ..op(Counter::CreditsSpent.raw(), Period::Eternity, 0, None)
    };
    let read = store
        .apply(
            in_account(42, 9),
            &[op(1, Period::Day, 0, None), op(1, Period::Eternity, 0, None), credits],
            Mode::Check,
        )
        .await
        .unwrap();
    assert_eq!(read.values, vec![5, 8, 30]);
    let moved_day = store.key(in_account(42, 9), &op(1, Period::Day, 0, None));
    let ttl: i64 = redis::cmd("TTL").arg(&moved_day).query_async(&mut conn).await.unwrap();
    assert!(ttl > 0 && ttl <= 3600, "the TTL moves too: {ttl}");
    assert_eq!(store.legacy_keys().await.unwrap().len(), 1);
}

#[tokio::test]
async fn redis_keys_share_the_account_slot_and_expire() {
    let Counters::Redis(store) = redis().await else {
        unreachable!()
    };
    let minute = op(1, Period::Minute, 1, None);
    let forever = op(1, Period::Eternity, 1, None);
    let credits = Op {
        account: Some(AccountId::new(9)),
        ..op(Counter::CreditsSpent.raw(), Period::Eternity, 1, None)
    };
    let app = in_account(42, 9);
    let (k1, k2, k3) = (
        store.key(app, &minute),
        store.key(app, &forever),
        store.key(app, &credits),
    );
    assert!(
        [&k1, &k2, &k3].iter().all(|k| k.contains("{acct:9}:")),
        "one hash tag: {k1} {k2} {k3}"
    );
    assert!(
        k1.contains("}:42:1:minute:") && k3.contains("}:-9:-1000:eternity:0"),
        "{k1} {k3}"
    );
    store.apply(app, &[minute, forever], Mode::Add).await.unwrap();
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let ttl: i64 = redis::cmd("TTL").arg(&k1).query_async(&mut conn).await.unwrap();
    assert!(ttl > 0 && ttl <= 3600, "{ttl}");
    let ttl: i64 = redis::cmd("TTL").arg(&k2).query_async(&mut conn).await.unwrap();
    assert_eq!(ttl, -1, "eternity counters never expire");
}

/// A master with a replica is killed mid-traffic: calls fail fast while the cluster elects the
/// replica, then succeed on it, and every answered call is in the counter (the store waits for
/// one replica's acknowledgement before answering).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_failing_over_loses_no_answered_call() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use tollgate_store::testing::RedisCluster;
    let cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3, 1)).await.unwrap();
    let timeout = Duration::from_millis(200);
    let conn = Connection::open(&cluster.url()).await.unwrap();
    let store = RedisStore::new(conn, &format!("failover:{}:", rand_suffix()), timeout).with_replica_acks(1);
    let scope = in_account(1, 77);
    let hits = [op(1, Period::Eternity, 1, None)];
    let key = store.key(scope, &hits[0]);
    let cluster = Arc::new(Mutex::new(cluster));
    let victim = {
        let (cluster, key) = (cluster.clone(), key.clone());
        tokio::task::spawn_blocking(move || cluster.lock().unwrap().master_of(&key))
            .await
            .unwrap()
    };

    let stop = Arc::new(AtomicBool::new(false));
    let caller = {
        let (store, stop) = (store.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut answered, mut failed, mut slowest_failure) = (0i64, 0i64, Duration::ZERO);
            while !stop.load(Ordering::Relaxed) {
                let started = std::time::Instant::now();
                match store.apply(scope, &hits, Mode::Add).await {
                    Ok(_) => answered += 1,
                    Err(_) => {
                        failed += 1;
                        slowest_failure = slowest_failure.max(started.elapsed());
                        tokio::task::yield_now().await;
                    }
                }
            }
            (answered, failed, slowest_failure)
        })
    };
    let count = || async {
        store
            .apply(scope, &[op(1, Period::Eternity, 0, None)], Mode::Check)
            .await
    };
    while count().await.map_or(true, |o| o.values[0] < 200) {
        tokio::task::yield_now().await;
    }
    {
        let (cluster, key) = (cluster.clone(), key.clone());
        tokio::task::spawn_blocking(move || {
            let mut cluster = cluster.lock().unwrap();
            cluster.nodes[victim].kill();
            cluster.wait_for_failover(&key, victim, Duration::from_secs(30));
        })
        .await
        .unwrap();
    }
    let failed_over = std::time::Instant::now();
    // Calls succeed again on the promoted replica (slowly: it has no replica to wait for, so
    // each waits half the timeout).
    let after = loop {
        if let Ok(o) = count().await {
            break o.values[0];
        }
        tokio::task::yield_now().await;
    };
    let recovered = failed_over.elapsed();
    while count().await.map_or(true, |o| o.values[0] < after + 20) {
        tokio::task::yield_now().await;
    }
    stop.store(true, Ordering::Relaxed);
    let (answered, failed, slowest_failure) = caller.await.unwrap();
    let counted = count().await.unwrap().values[0];
    // The series counters read on the promoted replica too (the read script by its source).
    store.apply(scope, &[op(1, SERIES, 1, None)], Mode::Add).await.unwrap();
    let fresh = store.with_fresh_state();
    fresh.recover_changed_series().await.unwrap();
    assert_eq!(fresh.take_changed_series().await.unwrap().len(), 1);
    assert!(failed > 0, "the election was not noticed: {answered} calls answered");
    assert!(
        slowest_failure < timeout + Duration::from_millis(300),
        "a call failed after {slowest_failure:?}"
    );
    assert!(
        counted >= answered && counted <= answered + failed,
        "counted {counted}: {answered} calls answered, {failed} failed"
    );
    eprintln!(
        "failover: {answered} answered, {failed} failed fast (slowest {slowest_failure:?}), {counted} counted; \
         calls answered again {recovered:?} after the cluster was whole"
    );
}
