//! Every failure of an API call, and the one place that turns it into HTTP.
//!
//! Client mistakes are 4xx with a message naming the field (3scale's shapes:
//! `{"errors": {"field": ["message"]}}` for 422, `{"error": "Access denied"}` for 403,
//! `{"status": "Not found"}` for 404). Only our own faults are 5xx, and they are logged.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("access denied")]
    AccessDenied,
    #[error("not found")]
    NotFound,
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("validation failed: {0:?}")]
    Invalid(Vec<(String, String)>),
    #[error("database: {0}")]
    Database(sqlx::Error),
    #[error("internal: {0}")]
    Internal(String),
}

/// A foreign-key violation is the client's mistake (deleting what is still used, or naming a
/// row that does not exist): 422 on `base`, as Rails reports errors of the whole record.
impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        if is_foreign_key_violation(&e) {
            ApiError::invalid("base", "is still in use, or refers to something that does not exist")
        } else {
            ApiError::Database(e)
        }
    }
}

impl ApiError {
    /// A 422 naming one field.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::Invalid(vec![(field.to_string(), message.into())])
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match &self {
            ApiError::AccessDenied => (StatusCode::FORBIDDEN, json!({"error": "Access denied"})),
            ApiError::NotFound => (StatusCode::NOT_FOUND, json!({"status": "Not found"})),
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, json!({"error": m})),
            ApiError::Invalid(fields) => {
                let mut errors = Map::new();
                for (field, message) in fields {
                    let entry = errors.entry(field.clone()).or_insert_with(|| Value::Array(vec![]));
                    if let Value::Array(list) = entry {
                        list.push(Value::String(message.clone()));
                    }
                }
                (StatusCode::UNPROCESSABLE_ENTITY, json!({"errors": errors}))
            }
            ApiError::Database(e) => {
                tracing::error!(error = %e, "database error");
                (StatusCode::INTERNAL_SERVER_ERROR, json!({"error": "internal error"}))
            }
            ApiError::Internal(e) => {
                tracing::error!(error = %e, "internal error");
                (StatusCode::INTERNAL_SERVER_ERROR, json!({"error": "internal error"}))
            }
        };
        (status, Json(body)).into_response()
    }
}

/// Whether a database error is a foreign-key violation (both engines): a row still in use.
pub fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db.is_foreign_key_violation(),
        _ => false,
    }
}

/// Whether a database error is a unique-constraint violation (both engines).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db.is_unique_violation(),
        _ => false,
    }
}
