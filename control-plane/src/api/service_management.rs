//! The service-management API gateways call (apisonator-compatible). `authrep` in its JSON
//! form, for our filter: service token, credentials, application state and metrics are checked
//! with apisonator's error codes and statuses; then the plan's limits, with usage flowing up the
//! metric hierarchy, are checked and counted atomically in the counter store (Redis or
//! embedded). A store that does not answer in time gives 503. Still to come (issue 4): the XML
//! forms, authorize and report, `3scale-options`, durable embedded counters and caching.

use super::AppState;
use crate::catalog::{applications, plans, services};
use crate::counters::{CounterStore, Mode};
use crate::error::ApiError;
use crate::limits;
use crate::params::Params;
use crate::periods::Period;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use sqlx::Row;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/transactions/authrep.json", get(authrep))
        .route("/check.txt", get(|| async { "ok" }))
        .route(
            "/status",
            get(|| async { Json(json!({"status": "ok", "version": {"backend": crate::VERSION}})) }),
        )
}

/// An apisonator error: its code, message and HTTP status.
#[derive(Debug, PartialEq, Eq)]
pub struct SmError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl SmError {
    fn new(status: StatusCode, code: &'static str, message: String) -> Self {
        Self { status, code, message }
    }
}

impl IntoResponse for SmError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response()
    }
}

impl From<ApiError> for SmError {
    fn from(e: ApiError) -> Self {
        // Only our own faults reach here (validation is done in this module); log and 500.
        let _ = e.into_response();
        SmError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal error".into(),
        )
    }
}

/// A denial: 409 with the reason, as apisonator's validators answer.
fn denied(reason: String, rejection_reason: &str, plan: &str) -> Response {
    (
        StatusCode::CONFLICT,
        Json(json!({"authorized": false, "reason": reason, "rejection_reason": rejection_reason, "plan": plan})),
    )
        .into_response()
}

async fn authrep(State(app): State<AppState>, p: Params) -> Result<Response, SmError> {
    let forbidden = |code, message| SmError::new(StatusCode::FORBIDDEN, code, message);
    let not_found = |code, message| SmError::new(StatusCode::NOT_FOUND, code, message);
    let token = p.get("service_token").unwrap_or("");
    let Some(service_id) = p.get("service_id").filter(|s| !s.is_empty()) else {
        return Err(forbidden("service_id_missing", "service id is missing".into()));
    };
    let service = match service_id.parse::<i64>() {
        Ok(id) => match services::find(&app.db, id).await {
            Ok(s) => s,
            Err(ApiError::NotFound) => {
                return Err(not_found(
                    "service_id_invalid",
                    format!("service id \"{service_id}\" is invalid"),
                ))
            }
            Err(e) => return Err(e.into()),
        },
        Err(_) => {
            return Err(not_found(
                "service_id_invalid",
                format!("service id \"{service_id}\" is invalid"),
            ))
        }
    };
    if token.is_empty() || token != service.service_token {
        return Err(forbidden(
            "service_token_invalid",
            format!("service token \"{token}\" is invalid"),
        ));
    }

    let application = if service.backend_version == "1" && p.get("app_id").is_none() {
        let Some(key) = p.get("user_key").filter(|k| !k.is_empty()) else {
            return Err(not_found("application_not_found", "application id is missing".into()));
        };
        applications::find_by_user_key(&app.db, service.id, key)
            .await?
            .ok_or_else(|| forbidden("user_key_invalid", format!("user key \"{key}\" is invalid")))?
    } else {
        let Some(app_id) = p.get("app_id").filter(|k| !k.is_empty()) else {
            return Err(not_found("application_not_found", "application id is missing".into()));
        };
        applications::find_by_app_id(&app.db, service.id, app_id)
            .await?
            .ok_or_else(|| {
                not_found(
                    "application_not_found",
                    format!("application with id=\"{app_id}\" was not found"),
                )
            })?
    };
    let plan = plans::find(&app.db, application.plan_id).await?;

    // Usage: every metric must exist, every value must be a (non-negative) number.
    let metrics = service_metrics(&app, service.id).await?;
    let mut usage = Vec::new();
    for (name, value) in &p.0 {
        let Some(metric) = name.strip_prefix("usage[").and_then(|m| m.strip_suffix(']')) else {
            continue;
        };
        let Some(node) = metrics.iter().find(|m| m.system_name == metric) else {
            return Err(not_found("metric_invalid", format!("metric \"{metric}\" is invalid")));
        };
        let delta = value.trim().parse::<i64>().ok().filter(|d| *d >= 0).ok_or_else(|| {
            SmError::new(
                StatusCode::FORBIDDEN,
                "usage_value_invalid",
                format!("usage value \"{value}\" for metric \"{metric}\" is invalid"),
            )
        })?;
        if delta > 0 {
            usage.push((node.id, delta));
        }
    }

    if application.state != "live" {
        return Ok(denied(
            "application is not active".into(),
            "application_not_active",
            &plan.name,
        ));
    }
    if service.backend_version != "1" {
        let mut conn = app.db.pool.acquire().await.map_err(ApiError::from)?;
        let keys = applications::keys(&mut conn, application.id).await?;
        match p.get("app_key").filter(|k| !k.is_empty()) {
            None if !keys.is_empty() => {
                return Ok(denied(
                    "application key is missing".into(),
                    "application_key_invalid",
                    &plan.name,
                ))
            }
            Some(k) if !keys.iter().any(|x| x == k) => {
                return Ok(denied(
                    format!("application key \"{k}\" is invalid"),
                    "application_key_invalid",
                    &plan.name,
                ))
            }
            _ => {}
        }
    }
    let limits = plan_limits(&app, plan.id).await?;
    let now = chrono::Utc::now();
    let ops = limits::ops(&limits, &limits::expand(&usage, &metrics, false), now);
    let outcome = app
        .counters
        .apply(application.id, &ops, Mode::CheckAndAdd)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "counters unavailable");
            metrics::counter!("tollgate_authrep_total", "result" => "unavailable").increment(1);
            SmError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "backend_unavailable",
                "usage counters are unavailable".into(),
            )
        })?;
    let reports = limits::reports(&ops, &outcome.values, &metrics, now);
    if !outcome.authorized {
        metrics::counter!("tollgate_authrep_total", "result" => "limits_exceeded").increment(1);
        let body = json!({"authorized": false, "reason": "usage limits are exceeded",
                          "rejection_reason": "limits_exceeded", "plan": plan.name, "usage_reports": reports});
        return Ok((StatusCode::CONFLICT, Json(body)).into_response());
    }
    metrics::counter!("tollgate_authrep_total", "result" => "authorized").increment(1);
    Ok(Json(json!({"authorized": true, "plan": plan.name, "usage_reports": reports})).into_response())
}

/// The service's metrics and those of the backends it uses, with their hierarchy.
async fn service_metrics(app: &AppState, service_id: i64) -> Result<Vec<limits::MetricNode>, ApiError> {
    let rows = sqlx::query(
        "SELECT id, system_name, parent_id FROM metrics
         WHERE service_id = $1 OR backend_id IN (SELECT backend_id FROM backend_usages WHERE service_id = $1)",
    )
    .bind(service_id)
    .fetch_all(&app.db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(limits::MetricNode {
                id: r.try_get("id")?,
                system_name: r.try_get("system_name")?,
                parent_id: r.try_get("parent_id")?,
            })
        })
        .collect()
}

async fn plan_limits(app: &AppState, plan_id: i64) -> Result<Vec<limits::PlanLimit>, ApiError> {
    let rows = sqlx::query("SELECT metric_id, period, value FROM usage_limits WHERE plan_id = $1")
        .bind(plan_id)
        .fetch_all(&app.db.pool)
        .await?;
    let mut out = Vec::new();
    for r in rows {
        let period: String = r.try_get("period")?;
        out.push(limits::PlanLimit {
            metric_id: r.try_get("metric_id")?,
            period: Period::parse(&period).ok_or_else(|| ApiError::Internal(format!("stored period `{period}`")))?,
            max: r.try_get("value")?,
        });
    }
    Ok(out)
}
