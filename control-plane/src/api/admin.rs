//! The admin API: 3scale Account Management API paths and shapes. Handlers only authorize,
//! call the catalog and wrap the result; the catalog validates and stores.

use super::{created, wrap, wrap_list, AppState};
use crate::auth::{authorize, Access, Scope};
use crate::catalog::proxy::{self, validate_environment};
use crate::catalog::{accounts, applications, plans, services, Page};
use crate::error::ApiError;
use crate::params::Params;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::Value;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/api/services.json", get(list_services).post(create_service))
        .route("/admin/api/services/{id}", get(show_service))
        .route(
            "/admin/api/services/{id}/application_plans.json",
            get(list_plans).post(create_plan),
        )
        .route(
            "/admin/api/services/{id}/proxy.json",
            get(show_proxy).patch(update_proxy).put(update_proxy),
        )
        .route("/admin/api/services/{id}/proxy/deploy.json", post(deploy))
        .route(
            "/admin/api/services/{id}/proxy/configs/{env}/{version}",
            get(show_config),
        )
        .route(
            "/admin/api/services/{id}/proxy/configs/{env}/{version}/promote.json",
            post(promote),
        )
        .route("/admin/api/account/proxy_configs/{env}", get(all_configs))
        .route("/admin/api/signup.json", post(signup))
        .route("/admin/api/accounts/{id}", get(show_account))
        .route(
            "/admin/api/accounts/{id}/applications.json",
            get(list_applications).post(create_application),
        )
}

/// A path segment `{id}.json` → the id; anything else is 404.
fn json_id(segment: &str) -> Result<i64, ApiError> {
    segment
        .strip_suffix(".json")
        .unwrap_or(segment)
        .parse()
        .map_err(|_| ApiError::NotFound)
}

fn id(segment: &str) -> Result<i64, ApiError> {
    segment.parse().map_err(|_| ApiError::NotFound)
}

async fn am(app: &AppState, headers: &HeaderMap, params: &Params, access: Access) -> Result<(), ApiError> {
    authorize(&app.db, headers, params, Scope::AccountManagement, access)
        .await
        .map(|_| ())
}

async fn list_services(State(app): State<AppState>, headers: HeaderMap, p: Params) -> Result<Json<Value>, ApiError> {
    am(&app, &headers, &p, Access::Read).await?;
    let list = services::list(&app.db, Page::from_params(&p)?).await?;
    Ok(wrap_list("services", "service", &list))
}

async fn create_service(State(app): State<AppState>, headers: HeaderMap, p: Params) -> Result<Response, ApiError> {
    am(&app, &headers, &p, Access::Write).await?;
    let service = services::create(&app.db, services::NewService::from_params(&p)?).await?;
    tracing::info!(service_id = service.id, system_name = %service.system_name, "service created");
    Ok(created("service", &service))
}

async fn show_service(
    State(app): State<AppState>,
    Path(seg): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    am(&app, &headers, &p, Access::Read).await?;
    Ok(wrap("service", &services::find(&app.db, json_id(&seg)?).await?))
}

async fn list_plans(
    State(app): State<AppState>,
    Path(seg): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    am(&app, &headers, &p, Access::Read).await?;
    let service = services::find(&app.db, id(&seg)?).await?;
    let list = plans::list_for_service(&app.db, service.id).await?;
    Ok(wrap_list("plans", "application_plan", &list))
}

async fn create_plan(
    State(app): State<AppState>,
    Path(seg): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    am(&app, &headers, &p, Access::Write).await?;
    let service = services::find(&app.db, id(&seg)?).await?;
    Ok(created(
        "application_plan",
        &plans::create(&app.db, service.id, &p).await?,
    ))
}

async fn show_proxy(
    State(app): State<AppState>,
    Path(seg): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    am(&app, &headers, &p, Access::Read).await?;
    let service = services::find(&app.db, id(&seg)?).await?;
    let settings = proxy::settings(&app.db, service.id).await?;
    Ok(wrap("proxy", &proxy::proxy_json(&service, &settings)))
}

async fn update_proxy(
    State(app): State<AppState>,
    Path(seg): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    am(&app, &headers, &p, Access::Write).await?;
    let service = services::find(&app.db, id(&seg)?).await?;
    let settings = proxy::update_settings(&app.db, service.id, &p).await?;
    Ok(wrap("proxy", &proxy::proxy_json(&service, &settings)))
}

async fn deploy(
    State(app): State<AppState>,
    Path(seg): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    am(&app, &headers, &p, Access::Write).await?;
    Ok(created("proxy_config", &proxy::deploy(&app.db, id(&seg)?).await?))
}

async fn show_config(
    State(app): State<AppState>,
    Path((seg, env, version)): Path<(String, String, String)>,
    headers: HeaderMap,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    am(&app, &headers, &p, Access::Read).await?;
    let env = validate_environment(&env)?;
    let version = match version.as_str() {
        "latest.json" => None,
        v => Some(json_id(v)?),
    };
    Ok(wrap(
        "proxy_config",
        &proxy::find_config(&app.db, id(&seg)?, env, version).await?,
    ))
}

async fn promote(
    State(app): State<AppState>,
    Path((seg, env, version)): Path<(String, String, String)>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    am(&app, &headers, &p, Access::Write).await?;
    let env = validate_environment(&env)?;
    let to = p.required("to")?;
    Ok(created(
        "proxy_config",
        &proxy::promote(&app.db, id(&seg)?, env, id(&version)?, to).await?,
    ))
}

async fn all_configs(
    State(app): State<AppState>,
    Path(env): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    am(&app, &headers, &p, Access::Read).await?;
    let env = validate_environment(env.strip_suffix(".json").unwrap_or(&env))?;
    Ok(wrap_list(
        "proxy_configs",
        "proxy_config",
        &proxy::latest_of_all(&app.db, env).await?,
    ))
}

async fn signup(State(app): State<AppState>, headers: HeaderMap, p: Params) -> Result<Response, ApiError> {
    am(&app, &headers, &p, Access::Write).await?;
    Ok(created("account", &accounts::signup(&app.db, &p).await?))
}

async fn show_account(
    State(app): State<AppState>,
    Path(seg): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    am(&app, &headers, &p, Access::Read).await?;
    Ok(wrap("account", &accounts::find(&app.db, json_id(&seg)?).await?))
}

async fn list_applications(
    State(app): State<AppState>,
    Path(seg): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    am(&app, &headers, &p, Access::Read).await?;
    let list = applications::list_for_account(&app.db, id(&seg)?).await?;
    Ok(wrap_list("applications", "application", &list))
}

async fn create_application(
    State(app): State<AppState>,
    Path(seg): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    am(&app, &headers, &p, Access::Write).await?;
    let application = applications::create(&app.db, id(&seg)?, &p).await?;
    tracing::info!(
        application_id = application.id,
        account_id = application.account_id,
        "application created"
    );
    Ok(created("application", &application).into_response())
}
