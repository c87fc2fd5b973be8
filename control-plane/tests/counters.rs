//! The counter-store conformance suite: every check runs against the embedded store and
//! against Redis (its own key prefix per test), so both implementations mean the same thing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failure report

use std::sync::Arc;
use std::time::Duration;
use tollgate::counters::embedded::EmbeddedStore;
use tollgate::counters::redis::RedisStore;
use tollgate::counters::{CounterStore, Counters, Mode, Op};
use tollgate::periods::Period;

async fn redis() -> Counters {
    let client = redis::Client::open(tollgate::testing::redis_url()).unwrap();
    let conn = redis::aio::ConnectionManager::new(client).await.unwrap();
    let prefix = format!("test:{}:{}:", std::process::id(), rand_suffix());
    Counters::Redis(RedisStore::new(conn, &prefix, Duration::from_secs(2)))
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
    let db = tollgate::db::Db::connect(&format!("sqlite://{}", dir.path().join("c.db").display()))
        .await
        .unwrap();
    db.migrate().await.unwrap();
    (
        Counters::Embedded(Arc::new(EmbeddedStore::durable(db).await.unwrap())),
        dir,
    )
}

fn op(metric: i64, period: Period, delta: i64, max: Option<i64>) -> Op {
    let ttl = if period == Period::Eternity { None } else { Some(3600) };
    Op {
        metric_id: metric,
        period,
        start: if period == Period::Eternity { 0 } else { 1_700_000_000 },
        ttl,
        delta,
        max,
    }
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
        let out = s.apply(7, &ops, Mode::Check).await.unwrap();
        assert!(out.authorized);
        assert_eq!(out.values, vec![0]);
        assert_eq!(s.apply(7, &ops, Mode::Check).await.unwrap().values, vec![0]);
    }

    async fn check_and_add_moves_all_or_nothing(s: Counters) {
        let ops = [op(1, Period::Day, 4, Some(10)), op(1, Period::Month, 4, Some(5))];
        let first = s.apply(7, &ops, Mode::CheckAndAdd).await.unwrap();
        assert_eq!((first.authorized, first.values.clone()), (true, vec![4, 4]));
        // The month limit (5) would pass: nothing moves, not even the day counter.
        let second = s.apply(7, &ops, Mode::CheckAndAdd).await.unwrap();
        assert_eq!((second.authorized, second.values), (false, vec![4, 4]));
        let read = s.apply(7, &[op(1, Period::Day, 0, None), op(1, Period::Month, 0, None)], Mode::Check).await.unwrap();
        assert_eq!(read.values, vec![4, 4]);
    }

    async fn add_always_moves_even_past_limits(s: Counters) {
        let ops = [op(1, Period::Minute, 8, Some(5))];
        let out = s.apply(7, &ops, Mode::Add).await.unwrap();
        assert_eq!((out.authorized, out.values), (true, vec![8]));
        let check = s.apply(7, &[op(1, Period::Minute, 1, Some(5))], Mode::Check).await.unwrap();
        assert!(!check.authorized);
    }

    async fn zero_limits_and_untouched_metrics(s: Counters) {
        assert!(!s.apply(7, &[op(2, Period::Eternity, 1, Some(0))], Mode::CheckAndAdd).await.unwrap().authorized);
        let untouched = [op(2, Period::Eternity, 0, Some(0)), op(3, Period::Hour, 1, None)];
        let out = s.apply(7, &untouched, Mode::CheckAndAdd).await.unwrap();
        assert!(out.authorized, "a metric at its max that this call does not touch denies nothing");
        assert_eq!(out.values, vec![0, 1]);
    }

    async fn applications_and_periods_are_separate(s: Counters) {
        s.apply(7, &[op(1, Period::Hour, 5, None)], Mode::Add).await.unwrap();
        assert_eq!(s.apply(8, &[op(1, Period::Hour, 0, None)], Mode::Check).await.unwrap().values, vec![0]);
        let mut next_hour = op(1, Period::Hour, 0, None);
        next_hour.start += 3600;
        assert_eq!(s.apply(7, &[next_hour], Mode::Check).await.unwrap().values, vec![0]);
    }

    async fn concurrent_authreps_never_pass_the_limit(s: Counters) {
        let s = Arc::new(s);
        let mut tasks = Vec::new();
        for _ in 0..60 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                let ops = [op(1, Period::Minute, 1, Some(25)), op(1, Period::Eternity, 1, None)];
                s.apply(9, &ops, Mode::CheckAndAdd).await.unwrap().authorized
            }));
        }
        let mut passed = 0;
        for t in tasks {
            passed += usize::from(t.await.unwrap());
        }
        assert_eq!(passed, 25);
        let read = s.apply(9, &[op(1, Period::Minute, 0, None), op(1, Period::Eternity, 0, None)], Mode::Check).await.unwrap();
        assert_eq!(read.values, vec![25, 25], "denied calls moved nothing");
    }
}

#[tokio::test]
async fn redis_keys_share_the_application_slot_and_expire() {
    let Counters::Redis(store) = redis().await else {
        unreachable!()
    };
    let minute = op(1, Period::Minute, 1, None);
    let forever = op(1, Period::Eternity, 1, None);
    let (k1, k2) = (store.key(42, &minute), store.key(42, &forever));
    assert!(k1.contains("{app:42}") && k2.contains("{app:42}"));
    store.apply(42, &[minute, forever], Mode::Add).await.unwrap();
    let client = redis::Client::open(tollgate::testing::redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let ttl: i64 = redis::cmd("TTL").arg(&k1).query_async(&mut conn).await.unwrap();
    assert!(ttl > 0 && ttl <= 3600, "{ttl}");
    let ttl: i64 = redis::cmd("TTL").arg(&k2).query_async(&mut conn).await.unwrap();
    assert_eq!(ttl, -1, "eternity counters never expire");
}
