//! The counter-store conformance suite: every check runs against the embedded store and
//! against Redis (its own key prefix per test), so both implementations mean the same thing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failure report

use std::sync::Arc;
use std::time::Duration;
use tollgate_domain::counters::SERIES;
use tollgate_domain::ids::{AccountId, ApplicationId};
use tollgate_domain::periods::Period;
use tollgate_store::counters::embedded::EmbeddedStore;
use tollgate_store::counters::redis::RedisStore;
use tollgate_store::counters::{Amount, Counter, CounterStore, Counters, Mode, Op, SeriesKey};

fn redis_url() -> String {
    std::env::var("TOLLGATE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Application `id`.
fn a(id: i64) -> ApplicationId {
    ApplicationId::new(id)
}

async fn redis() -> Counters {
    let client = redis::Client::open(redis_url()).unwrap();
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
                s.apply(a(21 + i % 4), &ops, Mode::CheckAndAdd).await.unwrap().authorized
            }));
        }
        let mut passed = 0;
        for t in tasks {
            passed += usize::from(t.await.unwrap());
        }
        assert_eq!(passed, 33);
        let spent = s.apply(a(99), &[spend(0)], Mode::Check).await.unwrap().values;
        assert_eq!(spent, vec![990], "one balance for every application of the account");
        let mut hits = 0;
        for app in 21..25 {
            hits += s.apply(a(app), &[op(1, Period::Eternity, 0, None)], Mode::Check).await.unwrap().values[0];
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
async fn a_restarted_redis_store_finds_its_hour_counters() {
    let Counters::Redis(store) = redis().await else {
        unreachable!()
    };
    store
        .apply(a(5), &[op(1, SERIES, 3, None), op(-200, SERIES, 1, None)], Mode::Add)
        .await
        .unwrap();
    let fresh = store.with_fresh_state();
    assert_eq!(fresh.recover_changed_series().await.unwrap(), 2);
    let hours: Vec<(i64, i64)> = taken(&fresh).await.iter().map(|(k, v)| (k.counter, *v)).collect();
    assert_eq!(hours, vec![(-200, 1), (1, 3)]);
}

#[tokio::test]
async fn redis_keys_share_the_application_slot_and_expire() {
    let Counters::Redis(store) = redis().await else {
        unreachable!()
    };
    let minute = op(1, Period::Minute, 1, None);
    let forever = op(1, Period::Eternity, 1, None);
    let (k1, k2) = (store.key(a(42), &minute), store.key(a(42), &forever));
    assert!(k1.contains("{app:42}") && k2.contains("{app:42}"));
    store.apply(a(42), &[minute, forever], Mode::Add).await.unwrap();
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let ttl: i64 = redis::cmd("TTL").arg(&k1).query_async(&mut conn).await.unwrap();
    assert!(ttl > 0 && ttl <= 3600, "{ttl}");
    let ttl: i64 = redis::cmd("TTL").arg(&k2).query_async(&mut conn).await.unwrap();
    assert_eq!(ttl, -1, "eternity counters never expire");
}
