//! HTTP: one router for the admin API (3scale-shaped JSON), the service-management API
//! gateways call, and the operational endpoints (`/health`, `/metrics`).

pub mod admin;
pub mod crud;
pub mod finance;
pub mod openapi;
pub mod service_management;
pub mod system;

use crate::counters::Counters;
use crate::db::Db;
use crate::hot_cache::HotCache;
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
    pub cache: std::sync::Arc<HotCache>,
    pub gateways: crate::payments::Gateways,
}

impl AppState {
    /// The database through the hot-path cache.
    pub fn lookup(&self) -> crate::transactor::Lookup<'_> {
        crate::transactor::Lookup {
            db: &self.db,
            cache: &self.cache,
        }
    }
}

/// After an admin write succeeds, what authrep has cached may be stale: forget it.
async fn invalidate_on_admin_writes(
    axum::extract::State(cache): axum::extract::State<std::sync::Arc<HotCache>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let write = !matches!(*req.method(), axum::http::Method::GET | axum::http::Method::HEAD);
    let admin = req.uri().path().starts_with("/admin/") || req.uri().path().starts_with("/api/");
    let response = next.run(req).await;
    if write && admin && response.status().as_u16() < 400 {
        cache.invalidate();
    }
    response
}

pub fn router(state: AppState) -> Router {
    let cache = state.cache.clone();
    Router::new()
        .merge(system::routes())
        .route("/openapi.json", axum::routing::get(openapi::serve))
        .merge(admin::routes())
        .merge(finance::routes())
        .merge(service_management::routes())
        .with_state(state)
        .layer(middleware::from_fn_with_state(cache, invalidate_on_admin_writes))
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
