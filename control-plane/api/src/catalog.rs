//! A service's gateway settings and proxy configs (deploy, promote, what gateways load), the
//! gateways connected over xDS, and the plan endpoints beyond CRUD (every plan, copying one).

use crate::error::{path_id, ApiError};
use crate::params::Params;
use crate::render::{self, created, wrap, wrap_list};
use crate::routes::{am, Caller, Routes};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::Json;
use serde_json::Value;
use tollgate_domain::access::{Access, Section};
use tollgate_domain::catalog::Environment;
use tollgate_domain::ids::{PlanId, ServiceId};
use tollgate_store::catalog::{plans, proxy, services};

pub fn routes(r: &mut Routes) {
    let (read, write) = (am(Access::Read, Section::Plans), am(Access::Write, Section::Plans));
    r.get(
        "/admin/api/services/{service_id}/proxy.json",
        read,
        "Gateway settings of a service",
        show_proxy,
    );
    r.put(
        "/admin/api/services/{service_id}/proxy.json",
        write,
        "Update gateway settings (deploys a sandbox config)",
        update_proxy,
    );
    r.patch(
        "/admin/api/services/{service_id}/proxy.json",
        write,
        "Update gateway settings (deploys a sandbox config)",
        update_proxy,
    );
    r.post(
        "/admin/api/services/{service_id}/proxy/deploy.json",
        write,
        "Deploy the service to the sandbox",
        deploy,
    );
    r.get(
        "/admin/api/services/{service_id}/proxy/configs/{env}",
        read,
        "Proxy configs of an environment",
        list_configs,
    )
    .documented(&["/admin/api/services/{service_id}/proxy/configs/{environment}.json"]);
    r.get(
        "/admin/api/services/{service_id}/proxy/configs/{env}/{version}",
        read,
        "One proxy config version, or the latest",
        show_config,
    )
    .documented(&[
        "/admin/api/services/{service_id}/proxy/configs/{environment}/{version}.json",
        "/admin/api/services/{service_id}/proxy/configs/{environment}/latest.json",
    ]);
    r.post(
        "/admin/api/services/{service_id}/proxy/configs/{env}/{version}/promote.json",
        write,
        "Promote a version (to=production)",
        promote,
    )
    .documented(&["/admin/api/services/{service_id}/proxy/configs/{environment}/{version}/promote.json"]);
    r.get(
        "/admin/api/account/proxy_configs/{env}",
        read,
        "Latest config of every service: what gateways load",
        all_configs,
    )
    .documented(&["/admin/api/account/proxy_configs/{environment}.json"]);
    r.get(
        "/admin/api/gateways.json",
        read,
        "Gateways connected over xDS: environment, acknowledged version, last error (this replica's)",
        gateways,
    );
    r.get(
        "/admin/api/application_plans.json",
        read,
        "All application plans",
        all_plans,
    );
    r.post(
        "/admin/api/application_plans/{plan_id}/copy.json",
        write,
        "Extension: copy a plan with its limits and pricing rules",
        copy_plan,
    );
}

fn environment(segment: &str) -> Result<Environment, ApiError> {
    Environment::from_segment(segment.strip_suffix(".json").unwrap_or(segment)).ok_or(ApiError::NotFound)
}

async fn show_proxy(State(app): State<AppState>, Path(sid): Path<String>) -> Result<Json<Value>, ApiError> {
    let sid: ServiceId = path_id(&sid)?;
    let service = services::find(&app.db, sid).await?;
    let settings = proxy::settings(&app.db, sid).await?;
    Ok(wrap("proxy", proxy::proxy_json(&service, &settings)))
}

async fn update_proxy(
    State(app): State<AppState>,
    Path(sid): Path<String>,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    let sid: ServiceId = path_id(&sid)?;
    let service = services::find(&app.db, sid).await?;
    let settings = proxy::update_settings(&app.db, sid, |s| s.update_from(&p)).await?;
    Ok(wrap("proxy", proxy::proxy_json(&service, &settings)))
}

async fn deploy(State(app): State<AppState>, Path(sid): Path<String>) -> Result<Response, ApiError> {
    Ok(created("proxy_config", proxy::deploy(&app.db, path_id(&sid)?).await?))
}

async fn list_configs(
    State(app): State<AppState>,
    Path((sid, env)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let configs = proxy::list_configs(&app.db, path_id(&sid)?, environment(&env)?).await?;
    Ok(wrap_list("proxy_configs", "proxy_config", configs))
}

async fn show_config(
    State(app): State<AppState>,
    Path((sid, env, version)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let version = match version.as_str() {
        "latest.json" => None,
        v => Some(path_id(v)?),
    };
    let config = proxy::find_config(&app.db, path_id(&sid)?, environment(&env)?, version).await?;
    Ok(wrap("proxy_config", config))
}

async fn promote(
    State(app): State<AppState>,
    Path((sid, env, version)): Path<(String, String, String)>,
    p: Params,
) -> Result<Response, ApiError> {
    let to = Environment::from_segment(p.required("to")?)
        .ok_or_else(|| ApiError::invalid("to", "must be sandbox or production"))?;
    let config = proxy::promote(&app.db, path_id(&sid)?, environment(&env)?, path_id(&version)?, to).await?;
    Ok(created("proxy_config", config))
}

async fn all_configs(
    State(app): State<AppState>,
    who: Caller,
    Path(env): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let mut configs = proxy::latest_of_all(&app.db, environment(&env)?).await?;
    configs.retain(|c| who.may_see_service(c.service_id));
    Ok(wrap_list("proxy_configs", "proxy_config", configs))
}

async fn gateways(State(app): State<AppState>) -> Json<Value> {
    wrap_list("gateways", "gateway", app.gateway_registry.list())
}

async fn all_plans(State(app): State<AppState>, who: Caller) -> Result<Json<Value>, ApiError> {
    let plans = plans::all_application_plans(&app.db, who.service_ids().as_deref()).await?;
    Ok(render::many("plans", "application_plan", &plans))
}

async fn copy_plan(State(app): State<AppState>, Path(plan): Path<String>, p: Params) -> Result<Response, ApiError> {
    let plan: PlanId = path_id(&plan)?;
    let copied = plans::copy_plan(&app.db, plan, p.text("name"), p.get("system_name")).await?;
    Ok(created("application_plan", render::record(&copied)))
}
