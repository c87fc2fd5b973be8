//! The usage tables and the flush that fills them.
//!
//! Limits are checked against live counters (Redis or embedded); billing and analytics read
//! `usage_hourly` and `response_codes_hourly` instead: per application (hence per service),
//! metric or response code, and hour, split in quarters. Every call that counts usage also
//! moves a quarter-hour series counter ([`tollgate_domain::limits::ops`]); the store remembers
//! which ones moved, and [`flush`] copies their absolute values here, then recomputes the
//! roll-ups analytics read (per service and hour, per service and day, per application and
//! day). Copying values rather than adding deltas makes the flush idempotent:
//! repeating it (after a crash, a failed write or a restart, which hands every hour counter
//! over again) changes nothing, and of two readings — two replicas flushing one counter — the
//! later one wins, so a `#N` set that lowers a counter is copied too.

use crate::counters::{Counter, CounterStore, Counters, SeriesValue};
use crate::db::{Db, Engine};
use crate::error::Result;
use sqlx::Row;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use tollgate_domain::analytics::series::hour_and_quarter;
use tollgate_domain::ids::{ApplicationId, MetricId, ServiceId};

/// Rows written per transaction.
const CHUNK: usize = 500;

/// Copies the series counters moved since the last flush into the usage tables. Counters whose
/// write fails are handed back to the store, to be copied by the next flush. Returns the rows
/// written.
pub async fn flush(db: &Db, counters: &Counters) -> Result<usize> {
    Ok(flush_moved(db, counters).await?.0)
}

/// [`flush`], also saying which applications' usage moved (what limit alerts check).
pub async fn flush_moved(db: &Db, counters: &Counters) -> Result<(usize, Vec<ApplicationId>)> {
    let values = counters.take_changed_series().await?;
    let moved: BTreeSet<i64> = values.iter().map(|v| v.key.app).collect();
    let mut written = 0;
    for (i, chunk) in values.chunks(CHUNK).enumerate() {
        if let Err(e) = write(db, chunk).await {
            counters.mark_changed_series(values[i * CHUNK..].iter().map(|v| v.key).collect());
            return Err(e);
        }
        written += chunk.len();
    }
    metrics::counter!("tollgate_usage_rows_flushed_total").increment(written as u64);
    Ok((written, moved.into_iter().map(ApplicationId::new).collect()))
}

/// Series values as rows: which table, the application, the metric or code, the hour and
/// the quarter.
enum Series {
    Metric(i64),
    Code(String),
}

/// Writes series values as the flush does (the rows, then their roll-ups), in one
/// transaction. The flush's writer; also how a bench or a test lays down history.
pub async fn write(db: &Db, values: &[SeriesValue]) -> Result<()> {
    let mut tx = db.begin_write().await?;
    if db.engine == Engine::Postgres {
        // Roll-ups are recomputed from the rows: two replicas' flushes take turns, so neither
        // sums what the other has not committed yet. (SQLite's writers take turns anyway.)
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(ROLLUP_LOCK)
            .execute(&mut *tx)
            .await?;
    }
    let usage_sql: [String; 4] = std::array::from_fn(|q| upsert("usage_hourly", "metric_id", q));
    let codes_sql: [String; 4] = std::array::from_fn(|q| upsert("response_codes_hourly", "code", q));
    let mut metrics = BTreeSet::new();
    let mut codes = BTreeSet::new();
    for v in values {
        let counter = Counter::from_raw(v.key.counter);
        let series = match counter.and_then(Counter::response_code_name) {
            Some(code) => Series::Code(code),
            None => match counter.and_then(Counter::metric) {
                Some(metric) => Series::Metric(metric.get()),
                None => continue,
            },
        };
        let (hour, q) = hour_and_quarter(v.key.start);
        // The service is the application's; an application deleted since has no row to keep.
        let query = match &series {
            Series::Metric(metric) => sqlx::query(&usage_sql[q]).bind(v.key.app).bind(*metric),
            Series::Code(code) => sqlx::query(&codes_sql[q]).bind(v.key.app).bind(code.clone()),
        };
        query
            .bind(hour)
            .bind(v.value)
            .bind(v.observed_us)
            .execute(&mut *tx)
            .await?;
        match series {
            Series::Metric(metric) => metrics.insert((v.key.app, metric, hour)),
            Series::Code(code) => codes.insert((v.key.app, code, hour)),
        };
    }
    roll_up(&mut tx, &metrics, &codes).await?;
    tx.commit().await?;
    Ok(())
}

/// The advisory lock PostgreSQL flushes take (any constant no other lock uses).
const ROLLUP_LOCK: i64 = 0x7011_6a7e_0001;

/// Writes one quarter of an hour row: the quarter's value and reading time, the hour's total
/// moved by the quarter's change — unless the row holds a later reading of that quarter.
fn upsert(table: &str, key: &str, q: usize) -> String {
    format!(
        "INSERT INTO {table} (application_id, service_id, {key}, hour_start, value, observed_us, q{q}, o{q})
         SELECT id, service_id, $2, $3, $4, $5, $4, $5 FROM applications WHERE id = $1
         ON CONFLICT (application_id, {key}, hour_start) DO UPDATE SET
             value = {table}.value - {table}.q{q} + excluded.q{q},
             q{q} = excluded.q{q},
             o{q} = excluded.o{q},
             observed_us = CASE WHEN excluded.o{q} > {table}.observed_us THEN excluded.o{q} ELSE {table}.observed_us END
         WHERE excluded.o{q} >= {table}.o{q}"
    )
}

/// Recomputes every roll-up bucket the rows just written fall in.
async fn roll_up(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    metrics: &BTreeSet<(i64, i64, i64)>,
    codes: &BTreeSet<(i64, String, i64)>,
) -> Result<()> {
    let mut services = HashMap::new();
    let mut service_of = async |tx: &mut sqlx::Transaction<'static, sqlx::Any>, app: i64| -> Result<Option<i64>> {
        if let Some(s) = services.get(&app) {
            return Ok(*s);
        }
        let s: Option<i64> = sqlx::query_scalar("SELECT service_id FROM applications WHERE id = $1")
            .bind(app)
            .fetch_optional(&mut **tx)
            .await?;
        services.insert(app, s);
        Ok(s)
    };
    let mut service_hours = BTreeSet::new();
    let mut app_days = BTreeSet::new();
    for &(app, metric, hour) in metrics {
        if let Some(service) = service_of(tx, app).await? {
            service_hours.insert((service, metric, hour));
        }
        app_days.insert((app, metric, hour - hour.rem_euclid(DAY)));
    }
    let mut code_hours = BTreeSet::new();
    for (app, code, hour) in codes {
        if let Some(service) = service_of(tx, *app).await? {
            code_hours.insert((service, code.clone(), *hour));
        }
    }
    let service_days: BTreeSet<(i64, i64, i64)> = service_hours
        .iter()
        .map(|&(service, metric, hour)| (service, metric, hour - hour.rem_euclid(DAY)))
        .collect();
    for (service, metric, hour) in service_hours {
        sqlx::query(
            "INSERT INTO usage_service_hourly (service_id, metric_id, hour_start, q0, q1, q2, q3)
             SELECT service_id, metric_id, hour_start, CAST(SUM(q0) AS BIGINT), CAST(SUM(q1) AS BIGINT),
                    CAST(SUM(q2) AS BIGINT), CAST(SUM(q3) AS BIGINT)
             FROM usage_hourly WHERE service_id = $1 AND metric_id = $2 AND hour_start = $3
             GROUP BY service_id, metric_id, hour_start
             ON CONFLICT (service_id, metric_id, hour_start)
             DO UPDATE SET q0 = excluded.q0, q1 = excluded.q1, q2 = excluded.q2, q3 = excluded.q3",
        )
        .bind(service)
        .bind(metric)
        .bind(hour)
        .execute(&mut **tx)
        .await?;
    }
    for (service, metric, day) in service_days {
        sqlx::query(
            "INSERT INTO usage_service_daily (service_id, metric_id, day_start, value)
             SELECT service_id, metric_id, $3, CAST(SUM(q0 + q1 + q2 + q3) AS BIGINT) FROM usage_service_hourly
             WHERE service_id = $1 AND metric_id = $2 AND hour_start >= $3 AND hour_start < $4
             GROUP BY service_id, metric_id
             ON CONFLICT (service_id, metric_id, day_start) DO UPDATE SET value = excluded.value",
        )
        .bind(service)
        .bind(metric)
        .bind(day)
        .bind(day + DAY)
        .execute(&mut **tx)
        .await?;
    }
    for (service, code, hour) in code_hours {
        sqlx::query(
            "INSERT INTO response_codes_service_hourly (service_id, code, hour_start, q0, q1, q2, q3)
             SELECT service_id, code, hour_start, CAST(SUM(q0) AS BIGINT), CAST(SUM(q1) AS BIGINT),
                    CAST(SUM(q2) AS BIGINT), CAST(SUM(q3) AS BIGINT)
             FROM response_codes_hourly WHERE service_id = $1 AND code = $2 AND hour_start = $3
             GROUP BY service_id, code, hour_start
             ON CONFLICT (service_id, code, hour_start)
             DO UPDATE SET q0 = excluded.q0, q1 = excluded.q1, q2 = excluded.q2, q3 = excluded.q3",
        )
        .bind(service)
        .bind(code)
        .bind(hour)
        .execute(&mut **tx)
        .await?;
    }
    for (app, metric, day) in app_days {
        sqlx::query(
            "INSERT INTO usage_app_daily (service_id, metric_id, day_start, application_id, value)
             SELECT service_id, metric_id, $3, application_id, CAST(SUM(value) AS BIGINT) FROM usage_hourly
             WHERE application_id = $1 AND metric_id = $2 AND hour_start >= $3 AND hour_start < $4
             GROUP BY service_id, metric_id, application_id
             ON CONFLICT (service_id, metric_id, day_start, application_id) DO UPDATE SET value = excluded.value",
        )
        .bind(app)
        .bind(metric)
        .bind(day)
        .bind(day + DAY)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

const DAY: i64 = 86_400;

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
