//! The service-management API gateways call (apisonator-compatible). This first cut answers
//! `authrep` in its JSON form for our filter: service token, credentials, application state and
//! known metrics are checked with apisonator's error codes and statuses. Limits, counters, the
//! XML forms and reports come with the counters (issue 4).

use super::AppState;
use crate::catalog::{applications, plans, services};
use crate::error::ApiError;
use crate::params::Params;
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
    let known: Vec<String> = sqlx::query("SELECT system_name FROM metrics WHERE service_id = $1")
        .bind(service.id)
        .fetch_all(&app.db.pool)
        .await
        .map_err(ApiError::from)?
        .iter()
        .filter_map(|r| r.try_get("system_name").ok())
        .collect();
    for (name, value) in &p.0 {
        let Some(metric) = name.strip_prefix("usage[").and_then(|m| m.strip_suffix(']')) else {
            continue;
        };
        if !known.iter().any(|k| k == metric) {
            return Err(not_found("metric_invalid", format!("metric \"{metric}\" is invalid")));
        }
        let v = value.trim().trim_start_matches('#');
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SmError::new(
                StatusCode::FORBIDDEN,
                "usage_value_invalid",
                format!("usage value \"{value}\" for metric \"{metric}\" is invalid"),
            ));
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
    metrics::counter!("tollgate_authrep_total", "result" => "authorized").increment(1);
    Ok(Json(json!({"authorized": true, "plan": plan.name})).into_response())
}
