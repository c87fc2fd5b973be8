//! What the stats API reads: usage per hour and quarter from the roll-ups the usage flush keeps
//! (per service and hour; per application and day) or from an application's own rows, and the
//! few catalog facts a stats answer shows (the metric, the application, its plan and account).
//!
//! Every query is an indexed range scan, whatever the number of applications: a service's or an
//! application's year by month reads 365 daily rows and, in a zone whose months do not start
//! at a UTC midnight, the hours of the days the boundaries cut; the top applications of a month
//! read `usage_app_daily` (one row per application and day) plus the edge days' hours.
//!
//! Beyond 3scale: every application's limits with their live values ([`limit_uses`], for
//! "applications near their limits"), and the credits deductions charged with their upstream
//! cost ([`charged`], AIGNE Hub's usage and cost).

use crate::counters::{CounterStore, Counters};
use crate::credits::ledger::Deducted;
use crate::db::Db;
use crate::error::{Result, StoreError};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::Row;
use std::collections::{BTreeMap, HashMap};
use tollgate_domain::analytics::series::{sum_in, QuarterRow};
use tollgate_domain::counters::{Mode, Scope};
use tollgate_domain::ids::{AccountId, ApplicationId, BackendId, MetricId, ServiceId};
use tollgate_domain::limits::{self, PlanLimit};
use tollgate_domain::periods::Period;

/// Whose usage: a service's, an application's, or a backend's (summed over the services that
/// use it — a backend's metrics are its own, so every service's rows of them count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Service(ServiceId),
    Application(ApplicationId),
    Backend(BackendId),
}

/// What is counted: a metric (or method), or a response code (`"404"`) or class (`"4xx"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Measure {
    Metric(MetricId),
    ResponseCode(String),
}

const QUARTERS: &str = "CAST(SUM(q0) AS BIGINT) AS q0, CAST(SUM(q1) AS BIGINT) AS q1, \
                        CAST(SUM(q2) AS BIGINT) AS q2, CAST(SUM(q3) AS BIGINT) AS q3";

fn quarter_row(r: &sqlx::any::AnyRow) -> Result<QuarterRow, sqlx::Error> {
    Ok(QuarterRow {
        hour_start: r.try_get("hour_start")?,
        quarters: [r.try_get("q0")?, r.try_get("q1")?, r.try_get("q2")?, r.try_get("q3")?],
    })
}

/// What `owner` counted of `measure` in each bucket (`[start, end)` UTC seconds, ascending),
/// as rows for [`tollgate_domain::analytics::fill`]: whole UTC days inside a bucket from a
/// daily roll-up (a row at the day's start), the rest — the days a boundary cuts, or
/// everything for buckets shorter than a day — from the hour rows with their quarters.
pub async fn series(db: &Db, owner: Owner, measure: &Measure, buckets: &[(i64, i64)]) -> Result<Vec<QuarterRow>> {
    let daily = daily_source(owner, measure);
    let mut days = Vec::new();
    let mut spans = Vec::new();
    for &(start, end) in buckets {
        let (day_from, day_to) = (ceil_day(start), end - end.rem_euclid(DAY));
        if daily.is_some() && day_from < day_to {
            days.push((day_from, day_to));
            spans.extend([(start, day_from), (day_to, end)].into_iter().filter(|(a, b)| a < b));
        } else {
            spans.push((start, end));
        }
    }
    let mut rows = Vec::new();
    if let (Some((table, scope, id, metric)), Some(&(from, _)), Some(&(_, to))) = (daily, days.first(), days.last()) {
        let sql = format!(
            "SELECT day_start, CAST(SUM(value) AS BIGINT) AS total FROM {table}
             WHERE {scope} AND metric_id = $2 AND day_start >= $3 AND day_start < $4
             GROUP BY day_start ORDER BY day_start"
        );
        let found = sqlx::query(&sql)
            .bind(id)
            .bind(metric)
            .bind(from)
            .bind(to)
            .fetch_all(&db.pool)
            .await?;
        for r in found {
            let day: i64 = r.try_get("day_start")?;
            if tollgate_domain::analytics::series::bucket_of(&days, day).is_some() {
                rows.push(QuarterRow {
                    hour_start: day,
                    quarters: [r.try_get("total")?, 0, 0, 0],
                });
            }
        }
    }
    if !spans.is_empty() {
        rows.extend(hourly(db, owner, measure, &spans).await?);
    }
    Ok(rows)
}

/// Seconds from the next UTC midnight at or after `t`.
fn ceil_day(t: i64) -> i64 {
    t + (DAY - t.rem_euclid(DAY)) % DAY
}

/// The daily roll-up that serves `owner`'s `measure`, if one does (table, scope, owner id,
/// metric id): metrics have one, response codes do not.
fn daily_source(owner: Owner, measure: &Measure) -> Option<(&'static str, &'static str, i64, i64)> {
    let Measure::Metric(metric) = measure else {
        return None;
    };
    let (table, scope, id) = match owner {
        Owner::Service(s) => ("usage_service_daily", "service_id = $1", s.get()),
        Owner::Backend(b) => (
            "usage_service_daily",
            "service_id IN (SELECT service_id FROM backend_usages WHERE backend_id = $1)",
            b.get(),
        ),
        Owner::Application(a) => ("usage_app_daily", "application_id = $1", a.get()),
    };
    Some((table, scope, id, metric.get()))
}

/// The hour rows (quarters and all) of the hours that overlap `spans`, ascending.
async fn hourly(db: &Db, owner: Owner, measure: &Measure, spans: &[(i64, i64)]) -> Result<Vec<QuarterRow>> {
    let (table, scope, id) = match owner {
        Owner::Service(s) => (service_table(measure), "service_id = $1", s.get()),
        Owner::Application(a) => (app_table(measure), "application_id = $1", a.get()),
        // Summed over the services using the backend now, as 3scale does.
        Owner::Backend(b) => (
            service_table(measure),
            "service_id IN (SELECT service_id FROM backend_usages WHERE backend_id = $1)",
            b.get(),
        ),
    };
    let column = match measure {
        Measure::Metric(_) => "metric_id",
        Measure::ResponseCode(_) => "code",
    };
    // Whole hours: the one holding a span's start counts its quarters from there on (the
    // caller's buckets decide). Adjacent spans merge into one range.
    let mut ranges: Vec<(i64, i64)> = Vec::new();
    for &(start, end) in spans {
        let from = start - start.rem_euclid(3600);
        match ranges.last_mut() {
            Some(last) if from <= last.1 => last.1 = last.1.max(end),
            _ => ranges.push((from, end)),
        }
    }
    let within: Vec<String> = (0..ranges.len())
        .map(|i| format!("(hour_start >= ${} AND hour_start < ${})", 3 + 2 * i, 4 + 2 * i))
        .collect();
    let sql = format!(
        "SELECT hour_start, {QUARTERS} FROM {table}
         WHERE {scope} AND {column} = $2 AND ({})
         GROUP BY hour_start ORDER BY hour_start",
        within.join(" OR ")
    );
    let q = sqlx::query(&sql).bind(id);
    let mut q = match measure {
        Measure::Metric(m) => q.bind(m.get()),
        Measure::ResponseCode(c) => q.bind(c.clone()),
    };
    for (from, to) in ranges {
        q = q.bind(from).bind(to);
    }
    let rows = q.fetch_all(&db.pool).await?;
    Ok(rows.iter().map(quarter_row).collect::<Result<_, sqlx::Error>>()?)
}

fn service_table(measure: &Measure) -> &'static str {
    match measure {
        Measure::Metric(_) => "usage_service_hourly",
        Measure::ResponseCode(_) => "response_codes_service_hourly",
    }
}

fn app_table(measure: &Measure) -> &'static str {
    match measure {
        Measure::Metric(_) => "usage_hourly",
        Measure::ResponseCode(_) => "response_codes_hourly",
    }
}

const DAY: i64 = 86_400;

/// The applications of `service` that used `metric` most in `[from, to)`, most first (ties by
/// id), at most `limit`.
pub async fn top_applications(
    db: &Db,
    service: ServiceId,
    metric: MetricId,
    from: i64,
    to: i64,
    limit: usize,
) -> Result<Vec<(ApplicationId, i64)>> {
    // Whole UTC days from the daily roll-up, the rest of the edge days from the hour rows.
    // (`application_id + 0`: grouping by an expression keeps SQLite on the service-first
    // covering indexes, one range scan, instead of skipping through the application-first keys.)
    let first_day = from + (DAY - from.rem_euclid(DAY)) % DAY;
    let last_day = to - to.rem_euclid(DAY);
    let mut totals: HashMap<i64, i64> = HashMap::new();
    if first_day < last_day {
        let rows = sqlx::query(
            "SELECT application_id + 0 AS application_id, CAST(SUM(value) AS BIGINT) AS total FROM usage_app_daily
             WHERE service_id = $1 AND metric_id = $2 AND day_start >= $3 AND day_start < $4
             GROUP BY application_id + 0",
        )
        .bind(service.get())
        .bind(metric.get())
        .bind(first_day)
        .bind(last_day)
        .fetch_all(&db.pool)
        .await?;
        for r in rows {
            *totals.entry(r.try_get("application_id")?).or_default() += r.try_get::<i64, _>("total")?;
        }
    }
    let edges = if first_day < last_day {
        vec![(from, first_day), (last_day, to)]
    } else {
        vec![(from, to)]
    };
    for (start, end) in edges.into_iter().filter(|(s, e)| s < e) {
        // Whole hours summed by the database (from the covering index); the hour a boundary
        // cuts (zones a half or a quarter off the hour) read with its quarters.
        let (whole_from, whole_to) = (
            start + (3600 - start.rem_euclid(3600)) % 3600,
            end - end.rem_euclid(3600),
        );
        if whole_from < whole_to {
            let rows = sqlx::query(
                "SELECT application_id + 0 AS application_id, CAST(SUM(q0 + q1 + q2 + q3) AS BIGINT) AS total
                 FROM usage_hourly WHERE service_id = $1 AND metric_id = $2 AND hour_start >= $3 AND hour_start < $4
                 GROUP BY application_id + 0",
            )
            .bind(service.get())
            .bind(metric.get())
            .bind(whole_from)
            .bind(whole_to)
            .fetch_all(&db.pool)
            .await?;
            for r in rows {
                *totals.entry(r.try_get("application_id")?).or_default() += r.try_get::<i64, _>("total")?;
            }
        }
        let mut cut: Vec<i64> = [start, end]
            .into_iter()
            .filter(|t| t.rem_euclid(3600) != 0)
            .map(|t| t - t.rem_euclid(3600))
            .collect();
        cut.dedup();
        for hour in cut {
            let rows = sqlx::query(
                "SELECT application_id, hour_start, q0, q1, q2, q3 FROM usage_hourly
                 WHERE service_id = $1 AND metric_id = $2 AND hour_start = $3",
            )
            .bind(service.get())
            .bind(metric.get())
            .bind(hour)
            .fetch_all(&db.pool)
            .await?;
            for r in rows {
                let value = sum_in(&[quarter_row(&r)?], start, end);
                if value != 0 {
                    *totals.entry(r.try_get("application_id")?).or_default() += value;
                }
            }
        }
    }
    let mut ranked: Vec<(ApplicationId, i64)> = totals
        .into_iter()
        .filter(|&(_, v)| v > 0)
        .map(|(a, v)| (ApplicationId::new(a), v))
        .collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.get().cmp(&b.0.get())));
    ranked.truncate(limit);
    Ok(ranked)
}

/// A metric or method as a stats answer shows it (a method shows its parent's unit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricInfo {
    pub id: MetricId,
    pub friendly_name: String,
    pub system_name: String,
    pub unit: String,
}

/// The metric or method of `owner` named `name` (its system name); `None` if it has none.
/// A service's names include those of the backends it uses, as authrep's do. A backend's
/// metrics are named with or without their backend suffix (`hits` or `hits.7`, 3scale's
/// extended system name).
pub async fn metric(db: &Db, owner: Owner, name: &str) -> Result<Option<MetricInfo>> {
    let extended = match owner {
        Owner::Backend(b) => format!("{name}.{}", b.get()),
        _ => name.to_string(),
    };
    let (scope, id, name) = match owner {
        Owner::Service(s) => (
            "(m.service_id = $1 OR m.backend_id IN (SELECT backend_id FROM backend_usages WHERE service_id = $1))",
            s.get(),
            name,
        ),
        Owner::Application(a) => (
            "(m.service_id = (SELECT service_id FROM applications WHERE id = $1)
              OR m.backend_id IN (SELECT u.backend_id FROM backend_usages u JOIN applications x
                                  ON x.service_id = u.service_id WHERE x.id = $1))",
            a.get(),
            name,
        ),
        Owner::Backend(b) => ("m.backend_id = $1", b.get(), name),
    };
    let row = sqlx::query(&format!(
        "SELECT m.id, m.friendly_name, m.system_name, COALESCE(p.unit, m.unit) AS unit
         FROM metrics m LEFT JOIN metrics p ON p.id = m.parent_id
         WHERE {scope} AND (m.system_name = $2 OR m.system_name = $3)
         ORDER BY m.service_id IS NULL, m.system_name = $3, m.id LIMIT 1"
    ))
    .bind(id)
    .bind(name)
    .bind(extended)
    .fetch_optional(&db.pool)
    .await?;
    row.map(|r| {
        Ok(MetricInfo {
            id: MetricId::new(r.try_get("id")?),
            friendly_name: r.try_get("friendly_name")?,
            system_name: r.try_get("system_name")?,
            unit: r.try_get("unit")?,
        })
    })
    .transpose()
    .map_err(|e: sqlx::Error| StoreError::from(e))
}

/// An application as a stats answer shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppInfo {
    pub id: ApplicationId,
    pub name: String,
    pub state: String,
    pub description: String,
    pub service_id: ServiceId,
    pub plan_id: i64,
    pub plan_name: String,
    pub account_id: i64,
    pub account_name: String,
}

const APP_INFO: &str = "SELECT a.id, a.name, a.state, a.description, a.service_id, p.id AS plan_id,
        p.name AS plan_name, c.id AS account_id, c.org_name
     FROM applications a JOIN application_plans p ON p.id = a.plan_id JOIN accounts c ON c.id = a.account_id";

fn app_info(r: &sqlx::any::AnyRow) -> Result<AppInfo, sqlx::Error> {
    Ok(AppInfo {
        id: ApplicationId::new(r.try_get("id")?),
        name: r.try_get("name")?,
        state: r.try_get("state")?,
        description: r.try_get("description")?,
        service_id: ServiceId::new(r.try_get("service_id")?),
        plan_id: r.try_get("plan_id")?,
        plan_name: r.try_get("plan_name")?,
        account_id: r.try_get("account_id")?,
        account_name: r.try_get("org_name")?,
    })
}

pub async fn application(db: &Db, id: ApplicationId) -> Result<Option<AppInfo>> {
    let row = sqlx::query(&format!("{APP_INFO} WHERE a.id = $1"))
        .bind(id.get())
        .fetch_optional(&db.pool)
        .await?;
    Ok(row.as_ref().map(app_info).transpose()?)
}

/// Several applications at once (for top applications), in no particular order.
pub async fn applications(db: &Db, ids: &[ApplicationId]) -> Result<Vec<AppInfo>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let list = ids.iter().map(|i| i.get().to_string()).collect::<Vec<_>>().join(",");
    let rows = sqlx::query(&format!("{APP_INFO} WHERE a.id IN ({list})"))
        .fetch_all(&db.pool)
        .await?;
    Ok(rows.iter().map(app_info).collect::<Result<_, sqlx::Error>>()?)
}

pub async fn service_exists(db: &Db, id: ServiceId) -> Result<bool> {
    exists(db, "SELECT id FROM services WHERE id = $1", id.get()).await
}

pub async fn backend_exists(db: &Db, id: BackendId) -> Result<bool> {
    exists(db, "SELECT id FROM backend_apis WHERE id = $1", id.get()).await
}

/// The services using a backend.
pub async fn backend_services(db: &Db, id: BackendId) -> Result<Vec<ServiceId>> {
    let ids: Vec<i64> = sqlx::query_scalar("SELECT service_id FROM backend_usages WHERE backend_id = $1")
        .bind(id.get())
        .fetch_all(&db.pool)
        .await?;
    Ok(ids.into_iter().map(ServiceId::new).collect())
}

async fn exists(db: &Db, sql: &str, id: i64) -> Result<bool> {
    let found: Option<i64> = sqlx::query_scalar(sql).bind(id).fetch_optional(&db.pool).await?;
    Ok(found.is_some())
}

/// One limit of one application this period: how much of it is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitUse {
    pub application: ApplicationId,
    pub metric_id: MetricId,
    pub metric: String,
    pub period: Period,
    pub current: i64,
    pub max: i64,
}

impl LimitUse {
    /// Used, in ten-thousandths of the limit (a limit of 0 is used up): a ratio to rank by,
    /// exact.
    pub fn used_per_10k(&self) -> i64 {
        match self.max {
            0 => 10_000,
            max => self.current.saturating_mul(10_000) / max,
        }
    }
}

/// Every limit of every live application of `service` with its value now, from the live
/// counters (not the usage tables: a minute's limit is there too, and nothing waits for a
/// flush). Unordered.
pub async fn limit_uses(db: &Db, counters: &Counters, service: ServiceId, now: DateTime<Utc>) -> Result<Vec<LimitUse>> {
    limit_uses_of(db, counters, service, None, now).await
}

/// [`limit_uses`] of some applications only (`None`: all).
pub async fn limit_uses_of(
    db: &Db,
    counters: &Counters,
    service: ServiceId,
    only: Option<&[ApplicationId]>,
    now: DateTime<Utc>,
) -> Result<Vec<LimitUse>> {
    let filter = match only {
        None => String::new(),
        Some([]) => return Ok(Vec::new()),
        Some(ids) => format!(
            " AND a.id IN ({})",
            ids.iter().map(|i| i.get().to_string()).collect::<Vec<_>>().join(",")
        ),
    };
    let rows = sqlx::query(&format!(
        "SELECT a.id AS application_id, a.account_id, l.metric_id, m.system_name, l.period, l.value
         FROM applications a JOIN usage_limits l ON l.plan_id = a.plan_id JOIN metrics m ON m.id = l.metric_id
         WHERE a.service_id = $1 AND a.state = 'live'{filter} ORDER BY a.id"
    ))
    .bind(service.get())
    .fetch_all(&db.pool)
    .await?;
    let mut by_app: BTreeMap<(i64, i64), Vec<(PlanLimit, String)>> = BTreeMap::new();
    for r in rows {
        let period: String = r.try_get("period")?;
        let Some(period) = Period::parse(&period) else { continue };
        by_app
            .entry((r.try_get("application_id")?, r.try_get("account_id")?))
            .or_default()
            .push((
                PlanLimit {
                    metric_id: MetricId::new(r.try_get("metric_id")?),
                    period,
                    max: r.try_get("value")?,
                },
                r.try_get("system_name")?,
            ));
    }
    let mut out = Vec::new();
    for ((app, account), limits) in by_app {
        let plan: Vec<PlanLimit> = limits.iter().map(|(l, _)| l.clone()).collect();
        let ops = limits::ops(&plan, &Default::default(), &[], now);
        let read = counters
            .apply(
                Scope::new(ApplicationId::new(app), AccountId::new(account)),
                &ops,
                Mode::Check,
            )
            .await
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        for ((limit, name), current) in limits.into_iter().zip(read.values) {
            out.push(LimitUse {
                application: ApplicationId::new(app),
                metric_id: limit.metric_id,
                metric: name,
                period: limit.period,
                current,
                max: limit.max,
            });
        }
    }
    Ok(out)
}

/// Credits charged and their upstream cost, as deductions detailed them: each deduction's
/// time, and per application and rated metric what it charged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charged {
    pub at: i64,
    pub account: AccountId,
    pub service: ServiceId,
    pub application: ApplicationId,
    pub metric_id: MetricId,
    pub credits: Decimal,
    pub upstream_cost: Decimal,
}

/// The deductions' details in `[from, to)` (UTC seconds), of one account if given.
pub async fn charged(db: &Db, account: Option<AccountId>, from: i64, to: i64) -> Result<Vec<Charged>> {
    let time = |t: i64| {
        DateTime::from_timestamp(t, 0)
            .unwrap_or_default()
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    };
    let sql = format!(
        "SELECT account_id, detail, created_at FROM credit_transactions
         WHERE kind = 'deduction' AND created_at >= $1 AND created_at < $2{}",
        if account.is_some() { " AND account_id = $3" } else { "" }
    );
    let mut q = sqlx::query(&sql).bind(time(from)).bind(time(to));
    if let Some(a) = account {
        q = q.bind(a.get());
    }
    let rows = q.fetch_all(&db.pool).await?;
    let mut details = Vec::with_capacity(rows.len());
    for r in rows {
        let Some(detail) = r.try_get::<Option<String>, _>("detail")? else {
            continue;
        };
        let created: String = r.try_get("created_at")?;
        let at = DateTime::parse_from_rfc3339(&created)
            .map(|t| t.timestamp())
            .unwrap_or(from);
        let items: Vec<Deducted> = serde_json::from_str(&detail).unwrap_or_default();
        details.push((at, AccountId::new(r.try_get("account_id")?), items));
    }
    // The services of just the applications the details name (integers: safe to inline).
    let mut apps: Vec<i64> = details
        .iter()
        .flat_map(|(_, _, items)| items.iter().map(|i| i.application_id.get()))
        .collect();
    apps.sort_unstable();
    apps.dedup();
    let mut services: HashMap<i64, i64> = HashMap::new();
    if !apps.is_empty() {
        let list = apps.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        for r in sqlx::query(&format!("SELECT id, service_id FROM applications WHERE id IN ({list})"))
            .fetch_all(&db.pool)
            .await?
        {
            services.insert(r.try_get("id")?, r.try_get("service_id")?);
        }
    }
    let mut out = Vec::new();
    for (at, account, items) in details {
        for item in items {
            let Some(&service) = services.get(&item.application_id.get()) else {
                continue;
            };
            out.push(Charged {
                at,
                account,
                service: ServiceId::new(service),
                application: item.application_id,
                metric_id: item.metric_id,
                credits: item.credits,
                upstream_cost: item.upstream_cost,
            });
        }
    }
    Ok(out)
}
