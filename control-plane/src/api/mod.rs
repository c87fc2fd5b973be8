//! HTTP: one router for the admin API (3scale-shaped JSON), the service-management API
//! gateways call, and the operational endpoints (`/health`, `/metrics`).

pub mod admin;
pub mod crud;
pub mod openapi;
pub mod service_management;
pub mod system;

use crate::counters::Counters;
use crate::db::Db;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{middleware, Json, Router};
use serde::Serialize;
use serde_json::{json, Value};
use tower_http::trace::TraceLayer;

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub counters: Counters,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(system::routes())
        .route("/openapi.json", axum::routing::get(openapi::serve))
        .merge(admin::routes())
        .merge(service_management::routes())
        .with_state(state)
        .layer(middleware::from_fn(crate::metrics::track))
        .layer(TraceLayer::new_for_http())
}

/// 3scale wraps each object in its name: `{"service": {...}}`.
pub fn wrap(name: &str, value: &impl Serialize) -> Json<Value> {
    Json(json!({ name: value }))
}

/// …and lists as `{"services": [{"service": {...}}]}`.
pub fn wrap_list<T: Serialize>(plural: &str, name: &str, items: &[T]) -> Json<Value> {
    let items: Vec<Value> = items.iter().map(|i| json!({ name: i })).collect();
    Json(json!({ plural: items }))
}

/// A created object: 201 with the wrapped body.
pub fn created(name: &str, value: &impl Serialize) -> Response {
    (StatusCode::CREATED, wrap(name, value)).into_response()
}
