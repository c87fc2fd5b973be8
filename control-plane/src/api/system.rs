//! Operational endpoints: health (with schema and binary versions) and Prometheus metrics.

use super::AppState;
use crate::error::ApiError;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
}

async fn health(State(app): State<AppState>) -> Result<Json<Value>, ApiError> {
    let schema = app.db.schema_version().await?;
    Ok(Json(json!({
        "status": "ok",
        "version": crate::VERSION,
        "schema_version": schema,
        "expected_schema_version": app.db.expected_schema_version(),
        "database": format!("{:?}", app.db.engine).to_lowercase(),
        "counters": app.counters.backend(),
    })))
}

async fn metrics() -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::handle().render(),
    )
}
