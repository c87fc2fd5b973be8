//! Usage-limit alerts (3scale's levels). After each usage flush, the applications whose usage
//! moved are checked against their limits on the live counters — off authrep's path — for
//! services that have `notification_settings`. A limit used past a configured level raises
//! one alert per application, limit, period and level (the highest level reached, as 3scale's
//! backend does), written with its `limit.alert` event in one transaction; the event carries
//! whether the level is one the provider or the developer is e-mailed at.

use crate::analytics::limit_uses_of;
use crate::counters::Counters;
use crate::db::{Db, Row};
use crate::error::{Result, StoreError};
use crate::events::{record_as, Actor};
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::Row as _;
use std::collections::BTreeMap;
use tollgate_domain::form::Page;
use tollgate_domain::ids::{AccountId, ApplicationId, ServiceId};
use tollgate_domain::notify::{crossing, is_violation, NotificationSettings};

/// A service's alert settings as stored (`None`: not set).
pub fn settings_of(text: Option<&str>) -> Option<NotificationSettings> {
    let v: serde_json::Value = serde_json::from_str(text?).ok()?;
    let mut s = NotificationSettings::default();
    for key in NotificationSettings::KEYS {
        *s.list_mut(key) = v
            .get(key)
            .and_then(|l| l.as_array())
            .map(|l| {
                l.iter()
                    .filter_map(|x| x.as_u64())
                    .filter_map(|x| u16::try_from(x).ok())
                    .collect()
            })
            .unwrap_or_default();
    }
    Some(s)
}

/// The usage flush with its limit alerts: copies the counters that moved into the usage tables
/// ([`crate::usage::flush_moved`]), then checks the limits of the applications whose usage moved.
/// Every flush goes through here — the usage beat, the billing run, and a stats request (which
/// flushes first, so that it reads every call counted before it) —, since a flush that skipped
/// the check would hide those applications' crossings from the next one. A failed check is
/// logged and not retried until their usage moves again. Returns the usage rows written.
pub async fn flush_usage(db: &Db, counters: &Counters) -> Result<usize> {
    // One flush at a time in this process: a stats read's flush must not find the counters
    // already taken by a beat still writing them, and read the tables before it commits.
    let (written, moved) = {
        let _one_at_a_time = db.usage_flush.lock().await;
        crate::usage::flush_moved(db, counters).await?
    };
    if written > 0 {
        tracing::debug!(rows = written, "usage flushed");
        match detect(db, counters, &moved, Utc::now()).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(alerts = n, "limit alerts raised"),
            Err(e) => tracing::warn!(error = %e, "checking limit alerts failed; checked again when usage next moves"),
        }
    }
    Ok(written)
}

/// Raises the alerts the usage of `apps` calls for now; how many were raised.
pub async fn detect(db: &Db, counters: &Counters, apps: &[ApplicationId], now: DateTime<Utc>) -> Result<usize> {
    if apps.is_empty() {
        return Ok(0);
    }
    let mut raised = 0;
    for chunk in apps.chunks(500) {
        let ids = crate::multirow::id_list(chunk.iter().map(|a| a.get()));
        let rows = sqlx::query(&format!(
            "SELECT a.id, a.service_id, s.notification_settings FROM applications a JOIN services s ON s.id = a.service_id
             WHERE a.id IN ({ids}) AND s.notification_settings IS NOT NULL"
        ))
        .fetch_all(&db.pool)
        .await?;
        let mut by_service: BTreeMap<i64, (NotificationSettings, Vec<ApplicationId>)> = BTreeMap::new();
        for r in rows {
            let text: Option<String> = r.try_get("notification_settings")?;
            let Some(settings) = settings_of(text.as_deref()).filter(|s| !s.is_empty()) else {
                continue;
            };
            by_service
                .entry(r.try_get("service_id")?)
                .or_insert_with(|| (settings, Vec::new()))
                .1
                .push(ApplicationId::new(r.try_get("id")?));
        }
        for (service, (settings, apps)) in by_service {
            let service = ServiceId::new(service);
            let levels = settings.levels();
            for u in limit_uses_of(db, counters, service, Some(&apps), now).await? {
                let Some(start) = u.period.start(now) else { continue };
                let already: Option<i64> = sqlx::query_scalar(
                    "SELECT MAX(level) FROM alerts WHERE application_id = $1 AND metric_id = $2 AND period = $3
                       AND period_start = $4",
                )
                .bind(u.application.get())
                .bind(u.metric_id.get())
                .bind(u.period.as_str())
                .bind(start.timestamp())
                .fetch_one(&db.pool)
                .await?;
                let already = already.and_then(|l| u16::try_from(l).ok());
                let Some(c) = crossing(&levels, &u.metric, u.period, u.current, u.max, already) else {
                    continue;
                };
                if raise(db, service, &u, start.timestamp(), &c, &settings).await? {
                    raised += 1;
                }
            }
        }
    }
    if raised > 0 {
        metrics::counter!("tollgate_limit_alerts_total").increment(raised as u64);
    }
    Ok(raised)
}

async fn raise(
    db: &Db,
    service: ServiceId,
    u: &crate::analytics::LimitUse,
    period_start: i64,
    c: &tollgate_domain::notify::Crossing,
    settings: &NotificationSettings,
) -> Result<bool> {
    let mut tx = db.begin_write().await?;
    let app = sqlx::query("SELECT account_id, name FROM applications WHERE id = $1")
        .bind(u.application.get())
        .fetch_optional(&mut *tx)
        .await?;
    let Some(app) = app else { return Ok(false) };
    let account: i64 = app.try_get("account_id")?;
    let name: String = app.try_get("name")?;
    let timestamp = crate::time::now();
    let inserted = sqlx::query(
        "INSERT INTO alerts (account_id, service_id, application_id, metric_id, period, period_start, level,
           utilization, message, provider_web, buyer_web, timestamp)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         ON CONFLICT (application_id, metric_id, period, period_start, level) DO NOTHING",
    )
    .bind(account)
    .bind(service.get())
    .bind(u.application.get())
    .bind(u.metric_id.get())
    .bind(u.period.as_str())
    .bind(period_start)
    .bind(i64::from(c.level))
    .bind(c.utilization.to_string())
    .bind(&c.message)
    .bind(i64::from(settings.web_provider.contains(&c.level)))
    .bind(i64::from(settings.web_buyer.contains(&c.level)))
    .bind(&timestamp)
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Ok(false);
    }
    let id: i64 = sqlx::query_scalar(
        "SELECT id FROM alerts WHERE application_id = $1 AND metric_id = $2 AND period = $3 AND period_start = $4
           AND level = $5",
    )
    .bind(u.application.get())
    .bind(u.metric_id.get())
    .bind(u.period.as_str())
    .bind(period_start)
    .bind(i64::from(c.level))
    .fetch_one(&mut *tx)
    .await?;
    let payload = json!({
        "alert": {
            "id": id, "level": c.level, "utilization": c.utilization.to_string(), "message": c.message,
            "kind": if is_violation(c.level) { "violation" } else { "alert" },
            "timestamp": timestamp, "service_id": service, "application_id": u.application,
            "metric": u.metric, "period": u.period.as_str(), "current": u.current, "max": u.max,
        },
        "application": {"id": u.application, "name": name, "account_id": account},
        "email": {
            "provider": settings.email_provider.contains(&c.level),
            "buyer": settings.email_buyer.contains(&c.level),
        },
    });
    record_as(
        &mut tx,
        "limit.alert",
        Some(AccountId::new(account)),
        Some(service),
        Actor::System,
        &payload,
    )
    .await?;
    tx.commit().await?;
    tracing::info!(application = %u.application, level = c.level, message = %c.message, "limit alert");
    Ok(true)
}

/// An alert as the provider sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub id: i64,
    pub account_id: i64,
    pub service_id: i64,
    pub application_id: i64,
    pub level: i64,
    pub utilization: String,
    pub message: String,
    pub state: String,
    pub timestamp: String,
}

fn alert_of(r: &Row) -> Result<Alert> {
    Ok(Alert {
        id: r.try_get("id")?,
        account_id: r.try_get("account_id")?,
        service_id: r.try_get("service_id")?,
        application_id: r.try_get("application_id")?,
        level: r.try_get("level")?,
        utilization: r.try_get("utilization")?,
        message: r.try_get("message")?,
        state: r.try_get("state")?,
        timestamp: r.try_get("timestamp")?,
    })
}

/// What the provider's list is narrowed to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub service_id: Option<ServiceId>,
    pub application_id: Option<ApplicationId>,
    /// `unread`, `read` or `deleted`; without it, all but deleted.
    pub state: Option<String>,
}

impl tollgate_domain::form::FromForm for Filter {
    fn from_form(f: &tollgate_domain::form::Form) -> Result<Self, tollgate_domain::Invalid> {
        let state = f.get("state").filter(|s| !s.is_empty()).map(str::to_string);
        if state
            .as_deref()
            .is_some_and(|s| !["unread", "read", "deleted"].contains(&s))
        {
            return Err(tollgate_domain::Invalid::field(
                "state",
                "must be unread, read or deleted",
            ));
        }
        Ok(Filter {
            service_id: f.parse("service_id")?,
            application_id: f.parse("application_id")?,
            state,
        })
    }
}

fn conditions(f: &Filter, services: Option<&[i64]>) -> String {
    let mut c = String::from("provider_web = 1");
    if let Some(s) = f.service_id {
        c.push_str(&format!(" AND service_id = {}", s.get()));
    }
    if let Some(a) = f.application_id {
        c.push_str(&format!(" AND application_id = {}", a.get()));
    }
    match f.state.as_deref() {
        Some(s) => c.push_str(&format!(" AND state = '{s}'")),
        None => c.push_str(" AND state <> 'deleted'"),
    }
    if let Some(ids) = services {
        c.push_str(&format!(
            " AND service_id IN ({})",
            crate::multirow::id_list(ids.iter().copied())
        ));
    }
    c
}

/// The provider's alerts, newest first (`services`: a member's services, `None`: all).
pub async fn list(db: &Db, f: &Filter, services: Option<&[i64]>, page: Page) -> Result<Vec<Alert>> {
    let rows = sqlx::query(&format!(
        "SELECT id, account_id, service_id, application_id, level, utilization, message, state, timestamp
         FROM alerts WHERE {} ORDER BY id DESC LIMIT $1 OFFSET $2",
        conditions(f, services)
    ))
    .bind(page.per_page)
    .bind(page.offset())
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(alert_of).collect()
}

pub async fn count(db: &Db, f: &Filter, services: Option<&[i64]>) -> Result<i64> {
    Ok(sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM alerts WHERE {}",
        conditions(f, services)
    ))
    .fetch_one(&db.pool)
    .await?)
}

/// Moves one alert to `state` (`read`, `deleted`); the alert then. `services` as for [`list`].
pub async fn set_state(db: &Db, id: i64, state: &str, services: Option<&[i64]>) -> Result<Alert> {
    // Any state may move (a deleted alert may be read again).
    let cond = conditions(&Filter::default(), services).replace(" AND state <> 'deleted'", "");
    let done = sqlx::query(&format!("UPDATE alerts SET state = $1 WHERE id = $2 AND {cond}"))
        .bind(state)
        .bind(id)
        .execute(&db.pool)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    let row = sqlx::query(
        "SELECT id, account_id, service_id, application_id, level, utilization, message, state, timestamp
         FROM alerts WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&db.pool)
    .await?;
    alert_of(&row)
}

/// Marks every unread alert matching `f` read; how many.
pub async fn all_read(db: &Db, f: &Filter, services: Option<&[i64]>) -> Result<u64> {
    let f = Filter {
        state: Some("unread".into()),
        ..f.clone()
    };
    let done = sqlx::query(&format!(
        "UPDATE alerts SET state = 'read' WHERE {}",
        conditions(&f, services)
    ))
    .execute(&db.pool)
    .await?;
    Ok(done.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_settings_read_back() {
        let s = settings_of(Some(r#"{"web_provider":[50,100],"email_buyer":[100]}"#));
        assert_eq!(
            s.map(|s| (s.levels(), s.web_provider, s.email_buyer)),
            Some((vec![50, 100], vec![50, 100], vec![100]))
        );
        assert_eq!(settings_of(None), None);
    }
}
