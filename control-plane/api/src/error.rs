//! Every failure of an API call, and the one place that turns it into HTTP.
//!
//! Client mistakes are 4xx with a message naming the field (3scale's shapes:
//! `{"errors": {"field": ["message"]}}` for 422, `{"error": "Access denied"}` for 403,
//! `{"status": "Not found"}` for 404). Only our own faults are 5xx, and they are logged.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use tollgate_domain::Invalid;
use tollgate_store::billing::payments::ChargeError;
use tollgate_store::billing::run::RunError;
use tollgate_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("access denied")]
    AccessDenied,
    #[error("not found")]
    NotFound,
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("internal: {0}")]
    Internal(String),
}

impl ApiError {
    /// Invalid on one field.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ApiError::Invalid(Invalid::field(field, message))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::NotFound,
            StoreError::AccessDenied => ApiError::AccessDenied,
            StoreError::Invalid(i) => ApiError::Invalid(i),
            e => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<ChargeError> for ApiError {
    fn from(e: ChargeError) -> Self {
        match e {
            ChargeError::NotChargeable(why) => ApiError::Invalid(why),
            ChargeError::Store(e) => e.into(),
        }
    }
}

impl From<RunError> for ApiError {
    fn from(e: RunError) -> Self {
        match e {
            RunError::Busy => ApiError::invalid("base", "a billing run is in progress; try again later"),
            RunError::Store(e) => e.into(),
        }
    }
}

/// `{"errors": {"field": ["message", …]}}`, fields in the order first named.
pub fn errors_json(invalid: &Invalid) -> Value {
    let mut errors = Map::new();
    for e in &invalid.0 {
        let entry = errors.entry(e.field.clone()).or_insert_with(|| Value::Array(vec![]));
        if let Value::Array(list) = entry {
            list.push(Value::String(e.message.clone()));
        }
    }
    json!({ "errors": errors })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match &self {
            ApiError::AccessDenied => (StatusCode::FORBIDDEN, json!({"error": "Access denied"})),
            ApiError::NotFound => (StatusCode::NOT_FOUND, json!({"status": "Not found"})),
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, json!({"error": m})),
            ApiError::Invalid(invalid) => (StatusCode::UNPROCESSABLE_ENTITY, errors_json(invalid)),
            ApiError::Internal(e) => {
                tracing::error!(error = %e, "internal error");
                (StatusCode::INTERNAL_SERVER_ERROR, json!({"error": "internal error"}))
            }
        };
        (status, Json(body)).into_response()
    }
}

/// A path segment `{id}` or `{id}.json` as an id; anything else is not found.
pub fn path_id<T: std::str::FromStr>(segment: &str) -> Result<T, ApiError> {
    segment
        .strip_suffix(".json")
        .unwrap_or(segment)
        .parse()
        .map_err(|_| ApiError::NotFound)
}
