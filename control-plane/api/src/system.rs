//! Operational endpoints: health (with schema and binary versions), Prometheus metrics, and
//! this API's OpenAPI document.

use crate::error::ApiError;
use crate::openapi::Document;
use crate::routes::{Guard, Routes};
use crate::state::AppState;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde_json::{json, Value};

pub fn routes(r: &mut Routes) {
    r.get(
        "/health",
        Guard::Public,
        "Health, with schema and binary versions",
        health,
    );
    r.get("/metrics", Guard::Public, "Prometheus metrics", metrics);
    r.get("/openapi.json", Guard::Public, "This document", openapi);
}

async fn health(State(app): State<AppState>) -> Result<Json<Value>, ApiError> {
    let schema = app
        .db
        .schema_version()
        .await
        .map_err(tollgate_store::StoreError::from)?;
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

async fn openapi(Extension(document): Extension<Document>) -> Json<Value> {
    Json(Value::clone(&document.0))
}
