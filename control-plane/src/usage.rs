//! The usage tables and the flush that fills them.
//!
//! Limits are checked against live counters (Redis or embedded); billing and analytics read
//! `usage_hourly` and `response_codes_hourly` instead: per application (hence per service),
//! metric or response code, and hour. Every call that counts usage also moves an hour counter
//! ([`crate::limits::ops`]); the store remembers which ones moved, and [`flush`] copies their
//! absolute values here. Copying values rather than adding deltas makes the flush idempotent:
//! repeating it (after a crash, a failed write or a restart, which hands every hour counter
//! over again) changes nothing, and of two readings — two replicas flushing one counter — the
//! later one wins, so a `#N` set that lowers a counter is copied too.

use crate::counters::{CounterError, CounterStore, Counters, HourValue};
use crate::db::Db;
use crate::limits::response_code_name;
use sqlx::Row;
use std::collections::BTreeMap;
use std::time::Duration;

/// Rows written per transaction.
const CHUNK: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    #[error(transparent)]
    Counters(#[from] CounterError),
    #[error("writing usage: {0}")]
    Database(#[from] sqlx::Error),
}

/// Copies the hour counters moved since the last flush into the usage tables. Counters whose
/// write fails are handed back to the store, to be copied by the next flush. Returns the rows
/// written.
pub async fn flush(db: &Db, counters: &Counters) -> Result<usize, FlushError> {
    let values = counters.take_changed_hours().await?;
    let mut written = 0;
    for (i, chunk) in values.chunks(CHUNK).enumerate() {
        if let Err(e) = write(db, chunk).await {
            counters.mark_changed_hours(values[i * CHUNK..].iter().map(|v| v.key).collect());
            return Err(e.into());
        }
        written += chunk.len();
    }
    metrics::counter!("tollgate_usage_rows_flushed_total").increment(written as u64);
    Ok(written)
}

async fn write(db: &Db, values: &[HourValue]) -> Result<(), sqlx::Error> {
    let mut tx = db.pool.begin().await?;
    for v in values {
        // The service is the application's; an application deleted since has no row to keep.
        let query = match response_code_name(v.key.metric_id) {
            None => sqlx::query(
                "INSERT INTO usage_hourly (application_id, service_id, metric_id, hour_start, value, observed_us)
                 SELECT id, service_id, $2, $3, $4, $5 FROM applications WHERE id = $1
                 ON CONFLICT (application_id, metric_id, hour_start)
                 DO UPDATE SET value = excluded.value, observed_us = excluded.observed_us
                 WHERE excluded.observed_us >= usage_hourly.observed_us",
            )
            .bind(v.key.app)
            .bind(v.key.metric_id),
            Some(code) => sqlx::query(
                "INSERT INTO response_codes_hourly (application_id, service_id, code, hour_start, value, observed_us)
                 SELECT id, service_id, $2, $3, $4, $5 FROM applications WHERE id = $1
                 ON CONFLICT (application_id, code, hour_start)
                 DO UPDATE SET value = excluded.value, observed_us = excluded.observed_us
                 WHERE excluded.observed_us >= response_codes_hourly.observed_us",
            )
            .bind(v.key.app)
            .bind(code),
        };
        query
            .bind(v.key.start)
            .bind(v.value)
            .bind(v.observed_us)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

/// Flushes every `interval` until `stop` fires, then once more (so a graceful shutdown leaves
/// nothing unflushed); also forgets report batch ids older than 24 hours.
pub async fn flush_loop(db: Db, counters: Counters, interval: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = stop.changed() => true,
        };
        match flush(&db, &counters).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(rows = n, "usage flushed"),
            Err(e) => tracing::warn!(error = %e, "usage flush failed; retrying at the next tick"),
        }
        // Credits spent go to the ledger on the same beat (see `credits`).
        match crate::credits::flush(&db, &counters).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(accounts = n, "credit deductions recorded"),
            Err(e) => tracing::warn!(error = %e, "credit flush failed; retrying at the next tick"),
        }
        match crate::credits::expire(&db, &counters).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(grants = n, "credit grants expired"),
            Err(e) => tracing::warn!(error = %e, "expiring credit grants failed; retrying at the next tick"),
        }
        if let Err(e) = crate::batches::forget_old(&db, chrono::Utc::now().timestamp()).await {
            tracing::warn!(error = %e, "forgetting old report batches failed");
        }
        if stopping {
            return;
        }
    }
}

/// Whose usage to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Application(i64),
    Service(i64),
}

impl Scope {
    fn column_and_id(self) -> (&'static str, i64) {
        match self {
            Scope::Application(id) => ("application_id", id),
            Scope::Service(id) => ("service_id", id),
        }
    }
}

/// A metric's usage per hour in `[from, to)` (unix seconds), hours without usage left out.
pub async fn hourly(db: &Db, scope: Scope, metric_id: i64, from: i64, to: i64) -> Result<Vec<(i64, i64)>, sqlx::Error> {
    let (column, id) = scope.column_and_id();
    let rows = sqlx::query(&format!(
        "SELECT hour_start, CAST(SUM(value) AS BIGINT) AS total FROM usage_hourly
         WHERE {column} = $1 AND metric_id = $2 AND hour_start >= $3 AND hour_start < $4
         GROUP BY hour_start ORDER BY hour_start"
    ))
    .bind(id)
    .bind(metric_id)
    .bind(from)
    .bind(to)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("hour_start")?, r.try_get("total")?)))
        .collect()
}

/// A metric's total usage in `[from, to)`: what variable costs are billed from.
pub async fn total(db: &Db, scope: Scope, metric_id: i64, from: i64, to: i64) -> Result<i64, sqlx::Error> {
    Ok(hourly(db, scope, metric_id, from, to)
        .await?
        .iter()
        .map(|(_, v)| v)
        .sum())
}

/// Response codes logged in `[from, to)`: exact codes and classes (`"404"`, `"4xx"`).
pub async fn response_codes(db: &Db, scope: Scope, from: i64, to: i64) -> Result<BTreeMap<String, i64>, sqlx::Error> {
    let (column, id) = scope.column_and_id();
    let rows = sqlx::query(&format!(
        "SELECT code, CAST(SUM(value) AS BIGINT) AS total FROM response_codes_hourly
         WHERE {column} = $1 AND hour_start >= $2 AND hour_start < $3 GROUP BY code"
    ))
    .bind(id)
    .bind(from)
    .bind(to)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("code")?, r.try_get("total")?)))
        .collect()
}
