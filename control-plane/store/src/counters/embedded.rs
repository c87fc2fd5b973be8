//! The in-process store: counters in sharded maps, one lock per shard. One application's
//! counters live in one shard, so a call's check-and-add happens under one lock (atomic per
//! application) while other applications proceed on other shards.
//!
//! Durability ([`EmbeddedStore::durable`]): the counters a call moved are written to the
//! database before the call returns. The write job is queued while the shard lock is still
//! held, so writes of one counter reach the database in the order they happened; one writer
//! task commits whatever has queued up in a single transaction (group commit). If the write
//! fails, the call's deltas are taken back and the call fails: nothing counts that was not
//! stored. At start, unexpired counters are read back.

use super::store::{CounterError, CounterStore};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use tollgate_domain::counters::{exceeds, Amount, Mode, Op, Outcome, Scope, SeriesKey, SeriesValue, SERIES};
use tollgate_domain::ids::ApplicationId;
use tollgate_domain::periods::Period;

const SHARDS: usize = 64;
/// Rows per upsert statement (6 parameters each; SQLite allows 32766 parameters).
const UPSERT_ROWS: usize = 500;
/// Expired counters are swept from a shard every this many calls on it.
const SWEEP_EVERY: u32 = 4096;

type Key = (i64, i64, Period, i64);

/// A counter's new value, to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub app: i64,
    pub counter: i64,
    pub period: Period,
    pub start: i64,
    pub value: i64,
    pub expires_at: Option<i64>,
}

type Done = tokio::sync::oneshot::Sender<Result<(), String>>;
/// The queue to the writer task: counters to store, and whom to tell when they are.
type Writer = tokio::sync::mpsc::UnboundedSender<(Vec<Stored>, Done)>;

#[derive(Default)]
struct Shard {
    /// (owner: app, or -account; metric, period, start) → (value, expires at: unix seconds, or None).
    counters: HashMap<Key, (i64, Option<i64>)>,
    /// Hour counters moved since the usage flush last took them.
    changed: HashSet<SeriesKey>,
    calls: u32,
}

pub struct EmbeddedStore {
    shards: Vec<Mutex<Shard>>,
    /// Where moved counters go before a call returns; `None`: memory only (tests).
    writer: Option<Writer>,
}

impl Default for EmbeddedStore {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            writer: None,
        }
    }
}

fn shard_index(owner: i64) -> usize {
    (owner.unsigned_abs() % SHARDS as u64) as usize
}

/// The shards a call holds, by index.
struct Locked<'a>(Vec<(usize, std::sync::MutexGuard<'a, Shard>)>);

impl Locked<'_> {
    /// The shard of `owner`'s counters (one of those locked by [`EmbeddedStore::lock_owners`]).
    fn of(&mut self, owner: i64) -> Option<&mut Shard> {
        let i = shard_index(owner);
        self.0.iter_mut().find(|(j, _)| *j == i).map(|(_, g)| &mut **g)
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl EmbeddedStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn shard(&self, owner: i64) -> &Mutex<Shard> {
        &self.shards[shard_index(owner)]
    }

    /// Locks the shards of every counter the ops touch (the application's, and its account's
    /// for credits), in index order so that two calls never wait for each other's locks.
    fn lock_owners(&self, app: ApplicationId, ops: &[Op]) -> Locked<'_> {
        let mut indexes: Vec<usize> = std::iter::once(app.get())
            .chain(ops.iter().map(|op| op.owner(app)))
            .map(shard_index)
            .collect();
        indexes.sort_unstable();
        indexes.dedup();
        Locked(
            indexes
                .into_iter()
                .map(|i| (i, self.shards[i].lock().unwrap_or_else(|e| e.into_inner())))
                .collect(),
        )
    }

    /// Applies the ops under the application's shard lock (memory only).
    pub fn apply_now(&self, app: ApplicationId, ops: &[Op], mode: Mode, now: i64) -> Outcome {
        self.apply_locked(app, ops, mode, now, None).0
    }

    /// Applies the ops; the moved counters are queued to `writer` before the lock is released.
    /// Returns whether anything was queued (and so must be waited for), and the moved
    /// counters' values before the call (to undo it).
    fn apply_locked(
        &self,
        app: ApplicationId,
        ops: &[Op],
        mode: Mode,
        now: i64,
        writer: Option<(&Writer, Done)>,
    ) -> (Outcome, bool, Vec<i64>) {
        // A poisoned lock only means another call panicked mid-way; the map itself is intact.
        let mut locked = self.lock_owners(app, ops);
        if let Some(shard) = locked.of(app.get()) {
            shard.calls = shard.calls.wrapping_add(1);
            if shard.calls.is_multiple_of(SWEEP_EVERY) {
                shard.counters.retain(|_, (_, expires)| expires.is_none_or(|e| e > now));
            }
        }
        let key = |op: &Op| (op.owner(app), op.counter.raw(), op.period, op.start);
        let mut values: Vec<i64> = ops
            .iter()
            .map(
                |op| match locked.of(op.owner(app)).and_then(|s| s.counters.get(&key(op))) {
                    Some((v, expires)) if expires.is_none_or(|e| e > now) => *v,
                    _ => 0,
                },
            )
            .collect();
        let authorized = mode == Mode::Add
            || !ops
                .iter()
                .zip(&values)
                .any(|(op, cur)| exceeds(*cur, op.amount, op.max));
        let mut stored = Vec::new();
        let mut previous = Vec::new();
        if mode == Mode::Add || (mode == Mode::CheckAndAdd && authorized) {
            for (op, value) in ops.iter().zip(values.iter_mut()) {
                let Some(shard) = locked.of(op.owner(app)).filter(|_| !op.amount.is_noop()) else {
                    continue;
                };
                previous.push(*value);
                *value = op.amount.applied_to(*value);
                let expires = op.ttl.map(|t| now + t as i64);
                shard.counters.insert(key(op), (*value, expires));
                if op.period == SERIES {
                    shard.changed.insert(SeriesKey {
                        app: op.owner(app),
                        counter: op.counter.raw(),
                        start: op.start,
                    });
                }
                stored.push(Stored {
                    app: op.owner(app),
                    counter: op.counter.raw(),
                    period: op.period,
                    start: op.start,
                    value: *value,
                    expires_at: expires,
                });
            }
        }
        let queued = match writer {
            Some((w, done)) if !stored.is_empty() => w.send((stored, done)).is_ok(),
            _ => false,
        };
        (Outcome { authorized, values }, queued, previous)
    }

    /// Takes back a call's moves (its write failed): additions are subtracted (other calls'
    /// additions since stay); a set is reverted if nothing has moved the counter since.
    fn undo(&self, app: ApplicationId, ops: &[Op], previous: &[i64]) {
        let mut locked = self.lock_owners(app, ops);
        for (op, before) in ops.iter().filter(|op| !op.amount.is_noop()).zip(previous) {
            let key = (op.owner(app), op.counter.raw(), op.period, op.start);
            if let Some((v, _)) = locked.of(op.owner(app)).and_then(|s| s.counters.get_mut(&key)) {
                match op.amount {
                    Amount::Add(d) => *v = v.saturating_sub(d),
                    Amount::Set(n) if *v == n => *v = *before,
                    Amount::Set(_) => {}
                }
            }
        }
    }

    /// Takes the series counters moved since the last take, with their values.
    pub fn take_series_now(&self) -> Vec<SeriesValue> {
        let mut out = Vec::new();
        let observed_us = chrono::Utc::now().timestamp_micros();
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            let changed = std::mem::take(&mut shard.changed);
            for k in changed {
                let value = shard
                    .counters
                    .get(&(k.app, k.counter, SERIES, k.start))
                    .map_or(0, |(v, _)| *v);
                out.push(SeriesValue {
                    key: k,
                    value,
                    observed_us,
                });
            }
        }
        out
    }

    /// A store whose counters survive restarts: loads the unexpired ones from `db` and starts
    /// the writer that stores every moved counter before its call returns.
    pub async fn durable(db: crate::db::Db) -> Result<Self, sqlx::Error> {
        use sqlx::Row;
        let now = now();
        sqlx::query("DELETE FROM counter_values WHERE expires_at IS NOT NULL AND expires_at <= $1")
            .bind(now)
            .execute(&db.pool)
            .await?;
        let mut store = Self::default();
        let rows = sqlx::query("SELECT app_id, metric_id, period, period_start, value, expires_at FROM counter_values")
            .fetch_all(&db.pool)
            .await?;
        for r in rows {
            let period: String = r.try_get("period")?;
            let Some(period) = Period::parse_any(&period) else {
                continue;
            };
            let app: i64 = r.try_get("app_id")?;
            let key = (app, r.try_get("metric_id")?, period, r.try_get("period_start")?);
            let mut shard = store.shard(app).lock().unwrap_or_else(|e| e.into_inner());
            // The usage tables may not have the last moves before a stop: flush them again.
            if period == SERIES {
                shard.changed.insert(SeriesKey {
                    app,
                    counter: key.1,
                    start: key.3,
                });
            }
            shard
                .counters
                .insert(key, (r.try_get("value")?, r.try_get("expires_at")?));
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(write_loop(db, rx));
        store.writer = Some(tx);
        Ok(store)
    }
}

impl CounterStore for EmbeddedStore {
    /// One process holds every counter: the account plays no part in where they are.
    async fn apply(&self, scope: Scope, ops: &[Op], mode: Mode) -> Result<Outcome, CounterError> {
        let app = scope.app;
        let Some(writer) = &self.writer else {
            return Ok(self.apply_now(app, ops, mode, now()));
        };
        let (done, stored) = tokio::sync::oneshot::channel();
        let (outcome, queued, previous) = self.apply_locked(app, ops, mode, now(), Some((writer, done)));
        if !queued {
            return Ok(outcome);
        }
        match stored.await {
            Ok(Ok(())) => Ok(outcome),
            Ok(Err(e)) => {
                self.undo(app, ops, &previous);
                Err(CounterError::Unavailable(format!("storing counters: {e}")))
            }
            Err(_) => {
                self.undo(app, ops, &previous);
                Err(CounterError::Unavailable("the counter writer stopped".into()))
            }
        }
    }

    async fn take_changed_series(&self) -> Result<Vec<SeriesValue>, CounterError> {
        Ok(self.take_series_now())
    }

    fn mark_changed_series(&self, keys: Vec<SeriesKey>) {
        for k in keys {
            let mut shard = self.shard(k.app).lock().unwrap_or_else(|e| e.into_inner());
            shard.changed.insert(k);
        }
    }
}

/// Stores queued counters: everything waiting is committed in one transaction.
async fn write_loop(db: crate::db::Db, mut rx: tokio::sync::mpsc::UnboundedReceiver<(Vec<Stored>, Done)>) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < 512 {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let result = write(&db, &jobs).await.map_err(|e| e.to_string());
        if let Err(e) = &result {
            tracing::error!(error = %e, "storing counters failed");
        }
        metrics::counter!("tollgate_counter_commits_total").increment(1);
        metrics::histogram!("tollgate_counter_commit_calls").record(jobs.len() as f64);
        for (_, done) in jobs {
            let _ = done.send(result.clone());
        }
    }
}

async fn write(db: &crate::db::Db, jobs: &[(Vec<Stored>, Done)]) -> Result<(), sqlx::Error> {
    // Jobs are in the order the counters moved: per counter, the last value is the one to keep.
    let mut latest: HashMap<(i64, i64, Period, i64), &Stored> = HashMap::new();
    for row in jobs.iter().flat_map(|(rows, _)| rows) {
        latest.insert((row.app, row.counter, row.period, row.start), row);
    }
    let rows: Vec<&Stored> = latest.into_values().collect();
    // One multi-row statement per chunk, so that a typical commit is one statement (atomic on
    // its own: one round trip to the database); more chunks share a transaction.
    if rows.len() <= UPSERT_ROWS {
        let mut conn = db.pool.acquire().await?;
        return upsert(&mut conn, &rows).await;
    }
    let mut tx = db.pool.begin().await?;
    for chunk in rows.chunks(UPSERT_ROWS) {
        upsert(&mut tx, chunk).await?;
    }
    tx.commit().await
}

async fn upsert(conn: &mut sqlx::AnyConnection, rows: &[&Stored]) -> Result<(), sqlx::Error> {
    let values = crate::multirow::values(crate::multirow::Placeholders::of(conn), rows.len(), 6);
    let sql = format!(
        "INSERT INTO counter_values (app_id, metric_id, period, period_start, value, expires_at) VALUES {values}
         ON CONFLICT (app_id, metric_id, period, period_start)
         DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at"
    );
    let mut query = sqlx::query(&sql);
    for row in rows {
        query = query
            .bind(row.app)
            .bind(row.counter)
            .bind(row.period.as_str())
            .bind(row.start)
            .bind(row.value)
            .bind(row.expires_at);
    }
    query.execute(&mut *conn).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(delta: i64, max: Option<i64>, ttl: Option<u64>) -> Op {
        Op {
            counter: tollgate_domain::counters::Counter::Metric(tollgate_domain::ids::MetricId::new(1)),
            period: Period::Minute,
            start: 60,
            ttl,
            amount: Amount::Add(delta),
            max,
            account: None,
        }
    }

    #[test]
    fn expired_counters_read_as_zero() {
        let s = EmbeddedStore::new();
        let app = ApplicationId::new(1);
        s.apply_now(app, &[op(5, None, Some(10))], Mode::Add, 100);
        assert_eq!(
            s.apply_now(app, &[op(0, None, Some(10))], Mode::Check, 105).values,
            vec![5]
        );
        assert_eq!(
            s.apply_now(app, &[op(0, None, Some(10))], Mode::Check, 111).values,
            vec![0]
        );
    }
}
