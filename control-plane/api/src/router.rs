//! The router built from the route table: each route behind its guard, then the layers every
//! request goes through (the OpenAPI document, cache invalidation after admin writes, metrics,
//! traces).

use crate::routes::{guard, Guard, Guarded, Routes, ServiceScope};
use crate::state::AppState;
use crate::{
    accounts, alerts, applications, billing, catalog, credits, crud, openapi, provider, service_management, stats,
    system, webhooks,
};
use axum::http::Method;
use axum::response::Response;
use axum::{middleware, Extension, Router};
use std::sync::Arc;
use tollgate_store::hot_cache::HotCache;
use tower_http::trace::TraceLayer;

/// Every route of the control plane, in one table: what the router mounts and the OpenAPI
/// document describes.
pub fn table() -> Routes {
    let mut r = Routes::default();
    system::routes(&mut r);
    service_management::routes(&mut r);
    crud::routes(&mut r);
    catalog::routes(&mut r);
    accounts::routes(&mut r);
    applications::routes(&mut r);
    provider::routes(&mut r);
    credits::routes(&mut r);
    billing::routes(&mut r);
    stats::routes(&mut r);
    webhooks::routes(&mut r);
    alerts::routes(&mut r);
    r
}

/// After an admin write succeeds, what authrep has cached may be stale: forget it.
async fn invalidate_on_admin_writes(
    axum::extract::State(cache): axum::extract::State<Arc<HotCache>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let write = !matches!(*req.method(), Method::GET | Method::HEAD);
    let path = req.uri().path();
    let admin = ["/admin/", "/api/", "/console/", "/portal/", "/master/"]
        .iter()
        .any(|root| path.starts_with(root));
    let response = next.run(req).await;
    if write && admin && response.status().as_u16() < 400 {
        cache.invalidate();
    }
    response
}

/// The control plane's HTTP service: every route of the table behind its guard, and the
/// OpenAPI document of the same table.
pub fn router(state: AppState) -> Router {
    mount(table(), state)
}

/// Mounts every route of `table` with its guard.
pub fn mount(table: Routes, state: AppState) -> Router {
    let cache = state.cache.clone();
    let document = openapi::Document::of(&table);
    let mut router = Router::new();
    for route in table.0 {
        let handler = match route.guard {
            Guard::Public => route.handler,
            Guard::Token(permission) => route.handler.layer(middleware::from_fn_with_state(
                Guarded {
                    app: state.clone(),
                    permission,
                    scope: ServiceScope::of(&route.path),
                },
                guard,
            )),
        };
        // 3scale's admin API answers XML too: the same route under `.xml`.
        if route.path.starts_with("/admin/api/") {
            if let Some(stem) = route.path.strip_suffix(".json") {
                router = router.route(&format!("{stem}.xml"), handler.clone());
            }
        }
        router = router.route(&route.path, handler);
    }
    router
        .layer(middleware::from_fn_with_state(state.clone(), crate::xml_answers::layer))
        .merge(crate::console::router(state.clone()))
        .merge(crate::portal::router())
        .with_state(state)
        .layer(Extension(document))
        .layer(middleware::from_fn_with_state(cache, invalidate_on_admin_writes))
        .layer(middleware::from_fn(crate::metrics::track))
        .layer(TraceLayer::new_for_http())
}
