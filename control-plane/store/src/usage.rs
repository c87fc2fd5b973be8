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
use crate::multirow::{self, Column};
use sqlx::Row;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use tollgate_domain::analytics::series::hour_and_quarter;
use tollgate_domain::ids::{ApplicationId, MetricId, ServiceId};

/// Series values written per transaction: a few multi-row statements, and each roll-up
/// bucket they touch recomputed once (a service's hour sums every application's row of it).
pub const CHUNK: usize = 5000;

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
    if let Err(e) = write(db, &values).await {
        // Written in part, perhaps: writing them all again next time completes it.
        counters.mark_changed_series(values.iter().map(|v| v.key).collect());
        return Err(e);
    }
    let written = values.len();
    metrics::counter!("tollgate_usage_rows_flushed_total").increment(written as u64);
    Ok((written, moved.into_iter().map(ApplicationId::new).collect()))
}

/// A series value as a row of a usage table: the application, the metric or code, the hour,
/// the value and when it was read.
struct UsageRow<K> {
    app: i64,
    key: K,
    hour: i64,
    value: i64,
    observed_us: i64,
}

/// Rows of one table, by quarter of the hour: within a quarter each (application, key, hour)
/// once — the later reading of a series read twice —, as one multi-row upsert requires.
type Quarters<K> = [BTreeMap<(i64, K, i64), UsageRow<K>>; 4];

fn keep<K: Ord + Clone>(quarters: &mut Quarters<K>, q: usize, row: UsageRow<K>) {
    let slot = (row.app, row.key.clone(), row.hour);
    match quarters[q].get(&slot) {
        Some(held) if held.observed_us > row.observed_us => {}
        _ => {
            quarters[q].insert(slot, row);
        }
    }
}

/// Series values as rows of their tables, by quarter.
fn rows_of(values: &[SeriesValue]) -> (Quarters<i64>, Quarters<String>) {
    let mut metrics: Quarters<i64> = Default::default();
    let mut codes: Quarters<String> = Default::default();
    for v in values {
        let counter = Counter::from_raw(v.key.counter);
        let (hour, q) = hour_and_quarter(v.key.start);
        let (app, value, observed_us) = (v.key.app, v.value, v.observed_us);
        if let Some(code) = counter.and_then(Counter::response_code_name) {
            let row = UsageRow {
                app,
                key: code,
                hour,
                value,
                observed_us,
            };
            keep(&mut codes, q, row);
        } else if let Some(metric) = counter.and_then(Counter::metric) {
            let row = UsageRow {
                app,
                key: metric.get(),
                hour,
                value,
                observed_us,
            };
            keep(&mut metrics, q, row);
        }
    }
    (metrics, codes)
}

/// A write transaction that holds the roll-up lock. Roll-ups are recomputed from the rows:
/// on PostgreSQL two replicas' flushes take turns, so neither sums what the other has not
/// committed yet. (SQLite's writers take turns anyway.)
async fn locked(db: &Db) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
    let mut tx = db.begin_write().await?;
    if db.engine == Engine::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(ROLLUP_LOCK)
            .execute(&mut *tx)
            .await?;
    }
    Ok(tx)
}

/// Writes series values as the flush does, in set-based statements
/// ([`multirow::run_columns`]): the rows and their applications' daily roll-ups, [`CHUNK`]
/// values a transaction; then, once, the service roll-ups they fall in (a service's hour sums
/// every application's row of it, so it is summed after all of them are in rather than after
/// each chunk). Writing is idempotent: after a failure part-way, writing the same values again
/// completes it. The flush's writer; also how a bench or a test lays down history.
pub async fn write(db: &Db, values: &[SeriesValue]) -> Result<()> {
    let mut service_hours = BTreeSet::new();
    let mut code_hours = BTreeSet::new();
    for chunk in values.chunks(CHUNK) {
        let (metrics, codes) = rows_of(chunk);
        let mut tx = locked(db).await?;
        upsert_quarters(&mut tx, "usage_hourly", "metric_id", &metrics).await?;
        upsert_quarters(&mut tx, "response_codes_hourly", "code", &codes).await?;
        let metrics: BTreeSet<(i64, i64, i64)> = metrics.iter().flat_map(|m| m.keys().cloned()).collect();
        let codes: BTreeSet<(i64, String, i64)> = codes.iter().flat_map(|m| m.keys().cloned()).collect();
        let apps: BTreeSet<i64> = metrics.iter().map(|m| m.0).chain(codes.iter().map(|c| c.0)).collect();
        let services = services_of(&mut tx, apps).await?;
        app_days(&mut tx, &metrics).await?;
        tx.commit().await?;
        service_hours.extend(
            metrics
                .iter()
                .filter_map(|&(app, metric, hour)| Some((*services.get(&app)?, metric, hour))),
        );
        code_hours.extend(
            codes
                .into_iter()
                .filter_map(|(app, code, hour)| Some((*services.get(&app)?, code, hour))),
        );
    }
    if service_hours.is_empty() && code_hours.is_empty() {
        return Ok(());
    }
    let mut tx = locked(db).await?;
    service_roll_ups(&mut tx, service_hours, code_hours).await?;
    tx.commit().await?;
    Ok(())
}

/// The advisory lock PostgreSQL flushes take (any constant no other lock uses).
const ROLLUP_LOCK: i64 = 0x7011_6a7e_0001;

/// Upserts a table's rows, quarter by quarter; `key` makes a column of their keys (metric ids
/// or response codes).
async fn upsert_quarters<K: Ord + Clone>(
    conn: &mut sqlx::AnyConnection,
    table: &str,
    key: &str,
    quarters: &Quarters<K>,
) -> Result<()>
where
    Column: From<Vec<K>>,
{
    for (q, rows) in quarters.iter().enumerate() {
        let rows: Vec<&UsageRow<K>> = rows.values().collect();
        let columns = [
            Column::Int(rows.iter().map(|r| r.app).collect()),
            Column::from(rows.iter().map(|r| r.key.clone()).collect::<Vec<K>>()),
            Column::Int(rows.iter().map(|r| r.hour).collect()),
            Column::Int(rows.iter().map(|r| r.value).collect()),
            Column::Int(rows.iter().map(|r| r.observed_us).collect()),
        ];
        multirow::run_columns(conn, &columns, |source| upsert(table, key, q, source)).await?;
    }
    Ok(())
}

/// The services of applications (an application deleted since has none).
async fn services_of(conn: &mut sqlx::AnyConnection, apps: BTreeSet<i64>) -> Result<HashMap<i64, i64>> {
    let apps = [Column::Int(apps.into_iter().collect())];
    let sql = |source: &str| {
        format!(
            "SELECT w.column1, w.service FROM (SELECT v.column1,
                 (SELECT a.service_id FROM applications a WHERE a.id = v.column1) AS service FROM {source}) AS w
             WHERE w.service IS NOT NULL"
        )
    };
    let mut services = HashMap::new();
    for r in multirow::run_columns(conn, &apps, sql).await? {
        services.insert(r.try_get(0)?, r.try_get(1)?);
    }
    Ok(services)
}

/// Writes one quarter of hour rows (`source`: application, metric or code, hour, value,
/// reading time): the quarter's value and reading time, the hour's total moved by the
/// quarter's change — unless the row holds a later reading of that quarter. The service is
/// the application's; an application deleted since has no row to keep. (Looked up row by row
/// in a subquery: joined, PostgreSQL hashes every application to write a few thousand rows.)
fn upsert(table: &str, key: &str, q: usize, source: &str) -> String {
    format!(
        "INSERT INTO {table} (application_id, service_id, {key}, hour_start, value, observed_us, q{q}, o{q})
         SELECT w.column1, w.service, w.column2, w.column3, w.column4, w.column5, w.column4, w.column5
         FROM (SELECT v.*, (SELECT a.service_id FROM applications a WHERE a.id = v.column1) AS service
               FROM {source}) AS w
         WHERE w.service IS NOT NULL
         ON CONFLICT (application_id, {key}, hour_start) DO UPDATE SET
             value = {table}.value - {table}.q{q} + excluded.q{q},
             q{q} = excluded.q{q},
             o{q} = excluded.o{q},
             observed_us = CASE WHEN excluded.o{q} > {table}.observed_us THEN excluded.o{q} ELSE {table}.observed_us END
         WHERE excluded.o{q} >= {table}.o{q}"
    )
}

fn day(hour: i64) -> i64 {
    hour - hour.rem_euclid(DAY)
}

/// The days (owner, metric, day) that (owner, metric, hour) buckets fall in.
fn days_of(hours: &BTreeSet<(i64, i64, i64)>) -> BTreeSet<(i64, i64, i64)> {
    hours
        .iter()
        .map(|&(owner, metric, hour)| (owner, metric, day(hour)))
        .collect()
}

/// (a, b, c) triples as three integer columns.
fn id_columns(triples: impl IntoIterator<Item = (i64, i64, i64)>) -> [Column; 3] {
    let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
    for (x, y, z) in triples {
        a.push(x);
        b.push(y);
        c.push(z);
    }
    [Column::Int(a), Column::Int(b), Column::Int(c)]
}

/// Recomputes the applications' daily roll-up for the (application, metric, hour) rows just
/// written: each day summed from that application's hours.
async fn app_days(conn: &mut sqlx::AnyConnection, metrics: &BTreeSet<(i64, i64, i64)>) -> Result<()> {
    let days = days_of(metrics);
    let sql = |source: &str| {
        format!(
            "INSERT INTO usage_app_daily (service_id, metric_id, day_start, application_id, value)
             SELECT h.service_id, h.metric_id, v.column3, h.application_id, CAST(SUM(h.value) AS BIGINT)
             FROM {source} JOIN usage_hourly h
               ON h.application_id = v.column1 AND h.metric_id = v.column2
              AND h.hour_start >= v.column3 AND h.hour_start < v.column3 + {DAY}
             WHERE true GROUP BY h.service_id, h.metric_id, v.column3, h.application_id
             ON CONFLICT (service_id, metric_id, day_start, application_id) DO UPDATE SET value = excluded.value"
        )
    };
    multirow::run_columns(conn, &id_columns(days), sql).await?;
    Ok(())
}

/// Recomputes the services' roll-ups for (service, metric or code, hour) buckets: each hour
/// summed from every application's row of it, each day from the service's hours.
async fn service_roll_ups(
    conn: &mut sqlx::AnyConnection,
    service_hours: BTreeSet<(i64, i64, i64)>,
    code_hours: BTreeSet<(i64, String, i64)>,
) -> Result<()> {
    let service_days = days_of(&service_hours);
    let sql = |source: &str| {
        format!(
            "INSERT INTO usage_service_hourly (service_id, metric_id, hour_start, q0, q1, q2, q3)
             SELECT h.service_id, h.metric_id, h.hour_start, CAST(SUM(h.q0) AS BIGINT), CAST(SUM(h.q1) AS BIGINT),
                    CAST(SUM(h.q2) AS BIGINT), CAST(SUM(h.q3) AS BIGINT)
             FROM {source} JOIN usage_hourly h
               ON h.service_id = v.column1 AND h.metric_id = v.column2 AND h.hour_start = v.column3
             WHERE true GROUP BY h.service_id, h.metric_id, h.hour_start
             ON CONFLICT (service_id, metric_id, hour_start)
             DO UPDATE SET q0 = excluded.q0, q1 = excluded.q1, q2 = excluded.q2, q3 = excluded.q3"
        )
    };
    multirow::run_columns(conn, &id_columns(service_hours), sql).await?;
    let sql = |source: &str| {
        format!(
            "INSERT INTO usage_service_daily (service_id, metric_id, day_start, value)
             SELECT h.service_id, h.metric_id, v.column3, CAST(SUM(h.q0 + h.q1 + h.q2 + h.q3) AS BIGINT)
             FROM {source} JOIN usage_service_hourly h
               ON h.service_id = v.column1 AND h.metric_id = v.column2
              AND h.hour_start >= v.column3 AND h.hour_start < v.column3 + {DAY}
             WHERE true GROUP BY h.service_id, h.metric_id, v.column3
             ON CONFLICT (service_id, metric_id, day_start) DO UPDATE SET value = excluded.value"
        )
    };
    multirow::run_columns(conn, &id_columns(service_days), sql).await?;
    let sql = |source: &str| {
        format!(
            "INSERT INTO response_codes_service_hourly (service_id, code, hour_start, q0, q1, q2, q3)
             SELECT h.service_id, h.code, h.hour_start, CAST(SUM(h.q0) AS BIGINT), CAST(SUM(h.q1) AS BIGINT),
                    CAST(SUM(h.q2) AS BIGINT), CAST(SUM(h.q3) AS BIGINT)
             FROM {source} JOIN response_codes_hourly h
               ON h.service_id = v.column1 AND h.code = v.column2 AND h.hour_start = v.column3
             WHERE true GROUP BY h.service_id, h.code, h.hour_start
             ON CONFLICT (service_id, code, hour_start)
             DO UPDATE SET q0 = excluded.q0, q1 = excluded.q1, q2 = excluded.q2, q3 = excluded.q3"
        )
    };
    let (mut services, mut codes, mut hours) = (Vec::new(), Vec::new(), Vec::new());
    for (service, code, hour) in code_hours {
        services.push(service);
        codes.push(code);
        hours.push(hour);
    }
    let columns = [Column::Int(services), Column::Text(codes), Column::Int(hours)];
    multirow::run_columns(conn, &columns, sql).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_domain::counters::SeriesKey;

    fn reading(counter: Counter, start: i64, value: i64, observed_us: i64) -> SeriesValue {
        let key = SeriesKey {
            app: 7,
            counter: counter.raw(),
            start,
        };
        SeriesValue {
            key,
            value,
            observed_us,
        }
    }

    /// One multi-row upsert may not touch a row twice (PostgreSQL refuses the statement), so a
    /// series read twice is one row: the later reading, whatever the order.
    #[test]
    fn a_series_read_twice_is_one_row_with_the_later_reading() {
        let hits = Counter::Metric(MetricId::new(3));
        let quarter = 1_792_490_400 + 900;
        let values = [
            reading(hits, quarter, 9, 20),
            reading(hits, quarter, 5, 10),
            reading(Counter::ResponseCode(200), quarter, 4, 10),
            reading(Counter::ResponseCode(200), quarter, 6, 30),
            reading(hits, quarter + 900, 1, 10),
        ];
        let (metrics, codes) = rows_of(&values);
        let q = hour_and_quarter(quarter).1;
        let rows: Vec<(i64, i64)> = metrics[q].values().map(|r| (r.value, r.observed_us)).collect();
        assert_eq!(rows, vec![(9, 20)]);
        let rows: Vec<(i64, i64)> = codes[q].values().map(|r| (r.value, r.observed_us)).collect();
        assert_eq!(rows, vec![(6, 30)]);
        assert_eq!(
            metrics.iter().map(BTreeMap::len).sum::<usize>(),
            2,
            "another quarter is another row"
        );
    }
}
