//! Every failure of an API call, and the one place that turns it into HTTP.
//!
//! Client mistakes are 4xx with a message naming the field (3scale's shapes:
//! `{"errors": {"field": ["message"]}}` for 422, `{"error": "Access denied"}` for 403,
//! `{"status": "Not found"}` for 404). Only our own faults are 5xx, and they are logged.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use tollgate_domain::analytics::StatsError;
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
    /// A stats request 3scale refuses (400; a missing parameter as plain text).
    #[error(transparent)]
    Stats(#[from] StatsError),
    /// 404 with 3scale's message (`Service not found`, `Application not found`).
    #[error("{0}")]
    NotFoundNamed(&'static str),
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
    let errors: Map<String, Value> = invalid
        .by_field()
        .into_iter()
        .map(|(field, messages)| (field.to_string(), json!(messages)))
        .collect();
    json!({ "errors": errors })
}

/// The format an answer is asked in, from the path's extension (`.xml`, `.csv`; JSON
/// otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Xml,
    Csv,
}

impl Format {
    pub fn of_path(path: &str) -> Format {
        let last = path.rsplit('/').next().unwrap_or("");
        match last.rsplit_once('.').map(|(_, ext)| ext) {
            Some("xml") => Format::Xml,
            Some("csv") => Format::Csv,
            _ => Format::Json,
        }
    }
}

impl ApiError {
    /// The answer in `format`, as 3scale's `render_error` gives it: JSON `{"error": …}`, XML
    /// `<error>…</error>`, plain text otherwise; a missing parameter is plain text always.
    pub fn into_response_as(self, format: Format) -> Response {
        if format == Format::Json || matches!(self, ApiError::Stats(StatsError::Missing(_))) {
            return self.into_response();
        }
        let status = self.status();
        let typed = |content_type: &'static str, body: String| {
            (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
        };
        let message = match &self {
            ApiError::AccessDenied => Some("Access denied".to_string()),
            ApiError::BadRequest(m) => Some(m.clone()),
            ApiError::Stats(e) => Some(e.to_string()),
            ApiError::NotFoundNamed(m) => Some(m.to_string()),
            ApiError::Invalid(invalid) if format == Format::Xml => {
                let mut x = crate::xml::Xml::document();
                x.open("errors", &[]);
                for e in &invalid.0 {
                    x.leaf("error", format!("{} {}", e.field, e.message));
                }
                x.close("errors");
                return typed("application/xml", x.finish());
            }
            ApiError::Invalid(invalid) => Some(invalid.to_string()),
            ApiError::Internal(e) => {
                tracing::error!(error = %e, "internal error");
                Some("internal error".to_string())
            }
            // 3scale's XML 404 is an empty body.
            ApiError::NotFound => None,
        };
        match (format, message) {
            (Format::Xml, Some(m)) => typed(
                "application/xml",
                format!(
                    "{}<error>{}</error>",
                    crate::xml::DECLARATION,
                    crate::xml::escape(&m, false)
                ),
            ),
            (Format::Xml, None) => typed("application/xml", String::new()),
            (_, m) => typed("text/plain; charset=utf-8", m.unwrap_or_else(|| "Not found".into())),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::AccessDenied => StatusCode::FORBIDDEN,
            ApiError::NotFound | ApiError::NotFoundNamed(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) | ApiError::Stats(_) => StatusCode::BAD_REQUEST,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = match &self {
            ApiError::AccessDenied => json!({"error": "Access denied"}),
            ApiError::NotFound => json!({"status": "Not found"}),
            ApiError::NotFoundNamed(m) => json!({"error": m}),
            ApiError::BadRequest(m) => json!({"error": m}),
            ApiError::Stats(StatsError::Missing(_)) => {
                return (
                    status,
                    [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                    self.to_string(),
                )
                    .into_response()
            }
            ApiError::Stats(e) => json!({"error": e.to_string()}),
            ApiError::Invalid(invalid) => errors_json(invalid),
            ApiError::Internal(e) => {
                tracing::error!(error = %e, "internal error");
                json!({"error": "internal error"})
            }
        };
        (status, Json(body)).into_response()
    }
}

/// A path segment `{id}`, `{id}.json` or `{id}.xml` as an id; anything else is not found.
pub fn path_id<T: std::str::FromStr>(segment: &str) -> Result<T, ApiError> {
    segment
        .strip_suffix(".json")
        .or_else(|| segment.strip_suffix(".xml"))
        .unwrap_or(segment)
        .parse()
        .map_err(|_| ApiError::NotFound)
}
