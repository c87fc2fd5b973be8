//! The usage tables and the flush that fills them.
//!
//! Limits are checked against live counters (Redis or embedded); billing and analytics read
//! `usage_hourly` and `response_codes_hourly` instead: per application (hence per service),
//! metric or response code, and hour. Every call that counts usage also moves an hour counter
//! ([`tollgate_domain::limits::ops`]); the store remembers which ones moved, and [`flush`] copies their
//! absolute values here. Copying values rather than adding deltas makes the flush idempotent:
//! repeating it (after a crash, a failed write or a restart, which hands every hour counter
//! over again) changes nothing, and of two readings — two replicas flushing one counter — the
//! later one wins, so a `#N` set that lowers a counter is copied too.

use crate::counters::{Counter, CounterStore, Counters, HourValue};
use crate::db::Db;
use crate::error::Result;
use sqlx::Row;
use std::collections::BTreeMap;
use tollgate_domain::ids::{ApplicationId, MetricId, ServiceId};

/// Rows written per transaction.
const CHUNK: usize = 500;

/// Copies the hour counters moved since the last flush into the usage tables. Counters whose
/// write fails are handed back to the store, to be copied by the next flush. Returns the rows
/// written.
pub async fn flush(db: &Db, counters: &Counters) -> Result<usize> {
    let values = counters.take_changed_hours().await?;
    let mut written = 0;
    for (i, chunk) in values.chunks(CHUNK).enumerate() {
        if let Err(e) = write(db, chunk).await {
            counters.mark_changed_hours(values[i * CHUNK..].iter().map(|v| v.key).collect());
            return Err(e);
        }
        written += chunk.len();
    }
    metrics::counter!("tollgate_usage_rows_flushed_total").increment(written as u64);
    Ok(written)
}

async fn write(db: &Db, values: &[HourValue]) -> Result<()> {
    let mut tx = db.begin_write().await?;
    for v in values {
        let counter = Counter::from_raw(v.key.counter);
        // The service is the application's; an application deleted since has no row to keep.
        let query = match counter.and_then(Counter::response_code_name) {
            None if counter.and_then(Counter::metric).is_none() => continue,
            None => sqlx::query(
                "INSERT INTO usage_hourly (application_id, service_id, metric_id, hour_start, value, observed_us)
                 SELECT id, service_id, $2, $3, $4, $5 FROM applications WHERE id = $1
                 ON CONFLICT (application_id, metric_id, hour_start)
                 DO UPDATE SET value = excluded.value, observed_us = excluded.observed_us
                 WHERE excluded.observed_us >= usage_hourly.observed_us",
            )
            .bind(v.key.app)
            .bind(v.key.counter),
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
    tx.commit().await?;
    Ok(())
}

/// Whose usage to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Application(ApplicationId),
    Service(ServiceId),
}

impl Scope {
    fn column_and_id(self) -> (&'static str, i64) {
        match self {
            Scope::Application(id) => ("application_id", id.get()),
            Scope::Service(id) => ("service_id", id.get()),
        }
    }
}

/// A metric's usage per hour in `[from, to)` (unix seconds), hours without usage left out.
pub async fn hourly(db: &Db, scope: Scope, metric: MetricId, from: i64, to: i64) -> Result<Vec<(i64, i64)>> {
    let (column, id) = scope.column_and_id();
    let rows = sqlx::query(&format!(
        "SELECT hour_start, CAST(SUM(value) AS BIGINT) AS total FROM usage_hourly
         WHERE {column} = $1 AND metric_id = $2 AND hour_start >= $3 AND hour_start < $4
         GROUP BY hour_start ORDER BY hour_start"
    ))
    .bind(id)
    .bind(metric.get())
    .bind(from)
    .bind(to)
    .fetch_all(&db.pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| Ok((r.try_get("hour_start")?, r.try_get("total")?)))
        .collect::<Result<_, sqlx::Error>>()?)
}

/// A metric's total usage in `[from, to)`: what variable costs are billed from.
pub async fn total(db: &Db, scope: Scope, metric: MetricId, from: i64, to: i64) -> Result<i64> {
    Ok(hourly(db, scope, metric, from, to).await?.iter().map(|(_, v)| v).sum())
}

/// Response codes logged in `[from, to)`: exact codes and classes (`"404"`, `"4xx"`).
pub async fn response_codes(db: &Db, scope: Scope, from: i64, to: i64) -> Result<BTreeMap<String, i64>> {
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
    Ok(rows
        .iter()
        .map(|r| Ok((r.try_get("code")?, r.try_get("total")?)))
        .collect::<Result<_, sqlx::Error>>()?)
}
