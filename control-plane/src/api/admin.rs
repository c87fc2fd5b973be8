//! The admin API: 3scale Account Management API paths and shapes. Catalog entities are mounted
//! on the generic CRUD handlers; the rest (proxy, configs, signup, applications) are thin
//! handlers over the catalog.

use super::crud::{self, Behaviour, Mount, Parent};
use super::{created, wrap, wrap_list, AppState};
use crate::auth::{authorize, Access, Principal, Scope, Section};
use crate::catalog::plans::PlanKind;
use crate::catalog::proxy::{self, validate_environment};
use crate::catalog::resource::{Resource, Val};
use crate::catalog::{
    accounts, applications, backends, mapping_rules, metrics, plans, provider, services, subscriptions,
};
use crate::credits;
use crate::error::ApiError;
use crate::params::Params;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

/// A catalog resource under the account-management scope, in the section of its parent:
/// accounts and their users, applications and subscriptions are `partners`; provider users
/// `settings`; services and everything about them `plans`.
const fn mount(resource: &'static Resource, id_param: &'static str, parent: Parent, behaviour: Behaviour) -> Mount {
    let section = match (parent, behaviour) {
        (Parent::Account, _) | (_, Behaviour::Account) => Section::Partners,
        (_, Behaviour::User) => Section::Settings,
        _ => Section::Plans,
    };
    Mount {
        resource,
        id_param,
        parent,
        behaviour,
        scope: Scope::AccountManagement,
        section,
    }
}

/// The catalog resources and where they are mounted; the router and the OpenAPI document
/// are both built from this table.
pub fn catalog() -> Vec<(&'static str, Mount)> {
    use Behaviour as B;
    vec![
        (
            "/admin/api/accounts",
            mount(&accounts::ACCOUNT, "account_id", Parent::Root, B::Account),
        ),
        (
            "/admin/api/account_plans",
            mount(
                &plans::ACCOUNT_PLAN,
                "plan_id",
                Parent::Root,
                B::Plan(PlanKind::Account),
            ),
        ),
        (
            "/admin/api/services/{service_id}/service_plans",
            mount(
                &plans::SERVICE_PLAN,
                "plan_id",
                Parent::Service,
                B::Plan(PlanKind::Service),
            ),
        ),
        (
            "/admin/api/accounts/{account_id}/service_subscriptions",
            mount(
                &subscriptions::SERVICE_SUBSCRIPTION,
                "id",
                Parent::Account,
                B::ServiceSubscription,
            ),
        ),
        (
            "/admin/api/users",
            mount(&provider::PROVIDER_USER, "user_id", Parent::Root, B::User),
        ),
        (
            "/admin/api/accounts/{account_id}/users",
            mount(&accounts::USER, "id", Parent::Account, B::User),
        ),
        (
            "/admin/api/accounts/{account_id}/applications",
            mount(
                &applications::APPLICATION,
                "application_id",
                Parent::Account,
                B::Application,
            ),
        ),
        (
            "/admin/api/services",
            mount(&services::SERVICE, "service_id", Parent::Root, B::Service),
        ),
        (
            "/admin/api/services/{service_id}/metrics",
            mount(&metrics::METRIC, "metric_id", Parent::Service, B::Metric),
        ),
        (
            "/admin/api/services/{service_id}/metrics/{metric_id}/methods",
            mount(&metrics::METHOD, "id", Parent::ServiceMetric, B::Metric),
        ),
        (
            "/admin/api/services/{service_id}/proxy/mapping_rules",
            mount(&mapping_rules::MAPPING_RULE, "id", Parent::Service, B::MappingRule),
        ),
        (
            "/admin/api/services/{service_id}/application_plans",
            mount(
                &plans::APPLICATION_PLAN,
                "plan_id",
                Parent::Service,
                B::Plan(PlanKind::Application),
            ),
        ),
        (
            "/admin/api/services/{service_id}/backend_usages",
            mount(&backends::BACKEND_USAGE, "id", Parent::Service, B::BackendUsage),
        ),
        (
            "/admin/api/application_plans/{plan_id}/metrics/{metric_id}/limits",
            mount(&plans::LIMIT, "id", Parent::PlanMetric, B::Plain),
        ),
        (
            "/admin/api/application_plans/{plan_id}/metrics/{metric_id}/pricing_rules",
            mount(&plans::PRICING_RULE, "id", Parent::PlanMetric, B::PricingRule),
        ),
        (
            "/admin/api/services/{service_id}/credit_rates",
            mount(&crate::credits::CREDIT_RATE, "id", Parent::Service, B::CreditRate),
        ),
        (
            "/admin/api/backend_apis",
            mount(&backends::BACKEND, "backend_id", Parent::Root, B::Backend),
        ),
        (
            "/admin/api/backend_apis/{backend_id}/metrics",
            mount(&metrics::BACKEND_METRIC, "metric_id", Parent::Backend, B::BackendMetric),
        ),
        (
            "/admin/api/backend_apis/{backend_id}/metrics/{metric_id}/methods",
            mount(&metrics::BACKEND_METHOD, "id", Parent::BackendMetric, B::BackendMetric),
        ),
        (
            "/admin/api/backend_apis/{backend_id}/mapping_rules",
            mount(
                &mapping_rules::BACKEND_MAPPING_RULE,
                "id",
                Parent::Backend,
                B::BackendMappingRule,
            ),
        ),
    ]
}

pub fn routes() -> Router<AppState> {
    let mut router = Router::new()
        .route(
            "/admin/api/services/{service_id}/proxy.json",
            get(show_proxy).patch(update_proxy).put(update_proxy),
        )
        .route("/admin/api/services/{service_id}/proxy/deploy.json", post(deploy))
        .route(
            "/admin/api/services/{service_id}/proxy/configs/{env}",
            get(list_configs),
        )
        .route(
            "/admin/api/services/{service_id}/proxy/configs/{env}/{version}",
            get(show_config),
        )
        .route("/admin/api/application_plans.json", get(all_plans))
        .route(
            "/admin/api/services/{service_id}/proxy/configs/{env}/{version}/promote.json",
            post(promote),
        )
        .route("/admin/api/account/proxy_configs/{env}", get(all_configs))
        .route("/admin/api/signup.json", post(signup))
        .route(
            "/admin/api/settings/credits.json",
            get(credit_settings).put(update_credit_settings),
        )
        .route(
            "/admin/api/billing/settings.json",
            get(billing_settings).put(update_billing_settings),
        )
        .route(
            "/admin/api/accounts/{account_id}/credit_grants.json",
            get(credit_grants).post(grant_credits),
        )
        .route(
            "/admin/api/accounts/{account_id}/credit_balance.json",
            get(credit_balance),
        )
        .route(
            "/admin/api/services/{service_id}/credit_margins.json",
            get(credit_margins),
        )
        .route(
            "/admin/api/accounts/{account_id}/credits.json",
            get(issued_credits).post(issue_credits),
        )
        .route(
            "/admin/api/accounts/{account_id}/credit_transactions.json",
            get(credit_transactions),
        )
        .route(
            "/admin/api/accounts/{account_id}/billing_address.json",
            axum::routing::put(set_billing_address),
        )
        .route("/admin/api/accounts/{account_id}/messages.json", post(send_message))
        .route("/admin/api/applications.json", get(all_applications))
        .route("/admin/api/applications/find.json", get(find_application))
        .route("/admin/api/applications/bulk/{action}", post(bulk_applications))
        .route("/admin/api/application_plans/{plan_id}/copy.json", post(copy_plan))
        .route("/admin/api/accounts/find.json", get(find_account))
        .route("/admin/api/accounts/{account_id}/plan.json", get(account_plan))
        .route("/admin/api/provider.json", get(show_provider).put(update_provider))
        .route(
            "/admin/api/users/{user_id}/permissions.json",
            get(show_permissions).put(update_permissions),
        )
        .route(
            "/admin/api/personal/access_tokens.json",
            get(list_tokens).post(create_token),
        )
        .route("/admin/api/users/{user_id}/access_tokens.json", post(create_user_token))
        .route(
            "/admin/api/personal/access_tokens/{token_id}",
            get(show_token).delete(delete_token),
        )
        .route(
            "/admin/api/accounts/{account_id}/applications/{application_id}/keys.json",
            get(list_keys).post(create_key),
        )
        .route(
            "/admin/api/accounts/{account_id}/applications/{application_id}/keys/{key}",
            delete(delete_key),
        );
    for (path, m) in catalog() {
        router = router.merge(crud::routes(path, m));
    }
    router
}

/// A path segment `{id}.json` → the id; anything else is 404.
pub(super) fn json_id(segment: &str) -> Result<i64, ApiError> {
    segment
        .strip_suffix(".json")
        .unwrap_or(segment)
        .parse()
        .map_err(|_| ApiError::NotFound)
}

async fn am(
    app: &AppState,
    headers: &HeaderMap,
    params: &Params,
    access: Access,
    section: Section,
) -> Result<Principal, ApiError> {
    authorize(&app.db, headers, params, Scope::AccountManagement, access, section).await
}

async fn show_proxy(
    State(app): State<AppState>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    let who = am(&app, &headers, &p, Access::Read, Section::Plans).await?;
    let service = services::find(&app.db, json_id(&sid)?).await?;
    who.check_service(service.id)?;
    let settings = proxy::settings(&app.db, service.id).await?;
    Ok(wrap("proxy", &proxy::proxy_json(&service, &settings)))
}

async fn update_proxy(
    State(app): State<AppState>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    let who = am(&app, &headers, &p, Access::Write, Section::Plans).await?;
    let service = services::find(&app.db, json_id(&sid)?).await?;
    who.check_service(service.id)?;
    let settings = proxy::update_settings(&app.db, service.id, &p).await?;
    Ok(wrap("proxy", &proxy::proxy_json(&service, &settings)))
}

async fn deploy(
    State(app): State<AppState>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    let who = am(&app, &headers, &p, Access::Write, Section::Plans).await?;
    let sid = json_id(&sid)?;
    who.check_service(sid)?;
    Ok(created("proxy_config", &proxy::deploy(&app.db, sid).await?))
}

async fn list_configs(
    State(app): State<AppState>,
    Path((sid, env)): Path<(String, String)>,
    headers: HeaderMap,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    let who = am(&app, &headers, &p, Access::Read, Section::Plans).await?;
    who.check_service(json_id(&sid)?)?;
    let env = validate_environment(env.strip_suffix(".json").unwrap_or(&env))?;
    let service = services::find(&app.db, json_id(&sid)?).await?;
    Ok(wrap_list(
        "proxy_configs",
        "proxy_config",
        &proxy::list_configs(&app.db, service.id, env).await?,
    ))
}

async fn all_plans(State(app): State<AppState>, headers: HeaderMap, p: Params) -> Result<Json<Value>, ApiError> {
    let who = am(&app, &headers, &p, Access::Read, Section::Plans).await?;
    let mut conn = app.db.pool.acquire().await?;
    let mut plans = plans::APPLICATION_PLAN.list_all(&mut conn).await?;
    plans.retain(|p| who.may_see_service(p["service_id"].as_i64().unwrap_or_default()));
    for plan in &mut plans {
        crate::catalog::behaviour::decorate(Behaviour::Plan(PlanKind::Application), &mut conn, plan).await?;
    }
    Ok(wrap_list("plans", "application_plan", &plans))
}

async fn show_config(
    State(app): State<AppState>,
    Path((sid, env, version)): Path<(String, String, String)>,
    headers: HeaderMap,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    let who = am(&app, &headers, &p, Access::Read, Section::Plans).await?;
    who.check_service(json_id(&sid)?)?;
    let env = validate_environment(&env)?;
    let version = match version.as_str() {
        "latest.json" => None,
        v => Some(json_id(v)?),
    };
    Ok(wrap(
        "proxy_config",
        &proxy::find_config(&app.db, json_id(&sid)?, env, version).await?,
    ))
}

async fn promote(
    State(app): State<AppState>,
    Path((sid, env, version)): Path<(String, String, String)>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    let who = am(&app, &headers, &p, Access::Write, Section::Plans).await?;
    who.check_service(json_id(&sid)?)?;
    let env = validate_environment(&env)?;
    let to = p.required("to")?;
    Ok(created(
        "proxy_config",
        &proxy::promote(&app.db, json_id(&sid)?, env, json_id(&version)?, to).await?,
    ))
}

async fn all_configs(
    State(app): State<AppState>,
    Path(env): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    let who = am(&app, &headers, &p, Access::Read, Section::Plans).await?;
    let env = validate_environment(env.strip_suffix(".json").unwrap_or(&env))?;
    let mut configs = proxy::latest_of_all(&app.db, env).await?;
    configs.retain(|c| who.may_see_service(c.content["id"].as_i64().unwrap_or_default()));
    Ok(wrap_list("proxy_configs", "proxy_config", &configs))
}

async fn signup(State(app): State<AppState>, headers: HeaderMap, p: Params) -> Result<Response, ApiError> {
    am(&app, &headers, &p, Access::Write, Section::Partners).await?;
    let account = accounts::signup(&app.db, &p).await?;
    if let Some(id) = account["id"].as_i64() {
        credits::welcome(&app.db, id).await?;
    }
    Ok(created("account", &account))
}

async fn billing_settings(State(app): State<AppState>, headers: HeaderMap, p: Params) -> Result<Json<Value>, ApiError> {
    am(&app, &headers, &p, Access::Read, Section::Finance).await?;
    Ok(wrap(
        "billing_settings",
        &crate::billing::settings(&app.db).await?.to_json(),
    ))
}

async fn update_billing_settings(
    State(app): State<AppState>,
    headers: HeaderMap,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    am(&app, &headers, &p, Access::Write, Section::Finance).await?;
    let settings = crate::billing::update_settings(&app.db, &p).await?;
    Ok(wrap("billing_settings", &settings.to_json()))
}

async fn credit_settings(State(app): State<AppState>, headers: HeaderMap, p: Params) -> Result<Json<Value>, ApiError> {
    am(&app, &headers, &p, Access::Read, Section::Settings).await?;
    Ok(wrap("credit_settings", &credits::settings(&app.db).await?.to_json()))
}

async fn update_credit_settings(
    State(app): State<AppState>,
    headers: HeaderMap,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    am(&app, &headers, &p, Access::Write, Section::Settings).await?;
    Ok(wrap(
        "credit_settings",
        &credits::update_settings(&app.db, &p).await?.to_json(),
    ))
}

async fn credit_grants(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    am(&app, &headers, &p, Access::Read, Section::Partners).await?;
    let grants = credits::grants(&app.db, json_id(&account)?).await?;
    Ok(wrap_list("credit_grants", "credit_grant", &grants))
}

async fn grant_credits(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    am(&app, &headers, &p, Access::Write, Section::Partners).await?;
    Ok(created(
        "credit_grant",
        &credits::grant(&app.db, json_id(&account)?, &p).await?,
    ))
}

async fn credit_margins(
    State(app): State<AppState>,
    Path(service): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    am(&app, &headers, &p, Access::Read, Section::Plans).await?;
    let list = credits::margins(&app.db, json_id(&service)?, &p).await?;
    Ok(wrap_list("credit_margins", "credit_margin", &list))
}

async fn issued_credits(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    am(&app, &headers, &p, Access::Read, Section::Partners).await?;
    let list = credits::issued(&app.db, json_id(&account)?, &p).await?;
    Ok(wrap_list("credits", "credit", &list))
}

async fn issue_credits(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    am(&app, &headers, &p, Access::Write, Section::Partners).await?;
    Ok(created(
        "credit",
        &credits::issue(&app.db, json_id(&account)?, &p).await?,
    ))
}

async fn credit_balance(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    am(&app, &headers, &p, Access::Read, Section::Partners).await?;
    let balance = credits::balance(&app.db, &app.counters, json_id(&account)?).await?;
    Ok(wrap("credit_balance", &balance))
}

async fn credit_transactions(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    am(&app, &headers, &p, Access::Read, Section::Partners).await?;
    let list = credits::transactions(&app.db, json_id(&account)?, &p).await?;
    Ok(wrap_list("credit_transactions", "credit_transaction", &list))
}

/// The application of an account named by the path, or 404.
async fn application_of(conn: &mut sqlx::AnyConnection, account: &str, application: &str) -> Result<i64, ApiError> {
    let (account, application) = (json_id(account)?, json_id(application)?);
    let found: Option<i64> = sqlx::query_scalar("SELECT id FROM applications WHERE id = $1 AND account_id = $2")
        .bind(application)
        .bind(account)
        .fetch_optional(&mut *conn)
        .await?;
    found.ok_or(ApiError::NotFound)
}

fn keys_json(application_id: i64, keys: &[String]) -> Json<Value> {
    let keys: Vec<Value> = keys
        .iter()
        .map(|k| json!({"key": {"value": k, "application_id": application_id}}))
        .collect();
    Json(json!({ "keys": keys }))
}

async fn list_keys(
    State(app): State<AppState>,
    Path((account, application)): Path<(String, String)>,
    headers: HeaderMap,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    am(&app, &headers, &p, Access::Read, Section::Partners).await?;
    let mut conn = app.db.pool.acquire().await?;
    let id = application_of(&mut conn, &account, &application).await?;
    Ok(keys_json(id, &applications::keys(&mut conn, id).await?))
}

async fn create_key(
    State(app): State<AppState>,
    Path((account, application)): Path<(String, String)>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    am(&app, &headers, &p, Access::Write, Section::Partners).await?;
    let key = p.required("key")?.to_string();
    let mut tx = app.db.pool.begin().await?;
    let id = application_of(&mut tx, &account, &application).await?;
    applications::add_key(&mut tx, id, &key).await?;
    let mut item =
        crate::catalog::resource::Resource::find(&applications::APPLICATION, &mut tx, &[json_id(&account)?], id)
            .await?;
    tx.commit().await?;
    item["keys"] = json!([key]);
    Ok((axum::http::StatusCode::CREATED, Json(json!({ "application": item }))).into_response())
}

async fn delete_key(
    State(app): State<AppState>,
    Path((account, application, key)): Path<(String, String, String)>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    am(&app, &headers, &p, Access::Write, Section::Partners).await?;
    let key = key.strip_suffix(".json").unwrap_or(&key).to_string();
    let mut tx = app.db.pool.begin().await?;
    let id = application_of(&mut tx, &account, &application).await?;
    applications::delete_key(&mut tx, id, &key).await?;
    tx.commit().await?;
    Ok(axum::http::StatusCode::OK.into_response())
}

async fn find_account(State(app): State<AppState>, headers: HeaderMap, p: Params) -> Result<Json<Value>, ApiError> {
    am(&app, &headers, &p, Access::Read, Section::Partners).await?;
    let id = accounts::find_id(&app.db, &p).await?;
    let mut conn = app.db.pool.acquire().await?;
    Ok(wrap("account", &accounts::ACCOUNT.find(&mut conn, &[], id).await?))
}

async fn account_plan(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    am(&app, &headers, &p, Access::Read, Section::Partners).await?;
    let mut conn = app.db.pool.acquire().await?;
    let account = accounts::ACCOUNT.find(&mut conn, &[], json_id(&account)?).await?;
    let plan_id = account["plan_id"].as_i64().ok_or(ApiError::NotFound)?;
    let mut plan = plans::ACCOUNT_PLAN.find(&mut conn, &[], plan_id).await?;
    plans::decorate(PlanKind::Account, &mut conn, &mut plan).await?;
    Ok(wrap("account_plan", &plan))
}

async fn show_provider(State(app): State<AppState>, headers: HeaderMap, p: Params) -> Result<Json<Value>, ApiError> {
    am(&app, &headers, &p, Access::Read, Section::Any).await?;
    Ok(wrap("account", &provider::account(&app.db).await?))
}

async fn update_provider(State(app): State<AppState>, headers: HeaderMap, p: Params) -> Result<Json<Value>, ApiError> {
    am(&app, &headers, &p, Access::Write, Section::Settings).await?;
    Ok(wrap("account", &provider::update_account(&app.db, &p).await?))
}

async fn show_permissions(
    State(app): State<AppState>,
    Path(user): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    am(&app, &headers, &p, Access::Read, Section::Settings).await?;
    let mut conn = app.db.pool.acquire().await?;
    Ok(Json(provider::permissions(&mut conn, json_id(&user)?).await?))
}

async fn update_permissions(
    State(app): State<AppState>,
    Path(user): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    am(&app, &headers, &p, Access::Write, Section::Settings).await?;
    let mut tx = app.db.pool.begin().await?;
    let permissions = provider::update_permissions(&mut tx, json_id(&user)?, &p).await?;
    tx.commit().await?;
    Ok(Json(permissions))
}

async fn list_tokens(State(app): State<AppState>, headers: HeaderMap, p: Params) -> Result<Json<Value>, ApiError> {
    let me = am(&app, &headers, &p, Access::Read, Section::Any).await?;
    Ok(wrap_list(
        "access_tokens",
        "access_token",
        &crate::auth::list_tokens(&app.db, me.user_id()).await?,
    ))
}

async fn create_token(State(app): State<AppState>, headers: HeaderMap, p: Params) -> Result<Response, ApiError> {
    let me = am(&app, &headers, &p, Access::Write, Section::Any).await?;
    Ok(created(
        "access_token",
        &crate::auth::create_token(&app.db, me.user_id(), &p).await?,
    ))
}

async fn show_token(
    State(app): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    let me = am(&app, &headers, &p, Access::Read, Section::Any).await?;
    Ok(wrap(
        "access_token",
        &crate::auth::find_token(&app.db, me.user_id(), json_id(&token)?).await?,
    ))
}

async fn delete_token(
    State(app): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    let me = am(&app, &headers, &p, Access::Write, Section::Any).await?;
    crate::auth::delete_token(&app.db, me.user_id(), json_id(&token)?).await?;
    Ok(axum::http::StatusCode::OK.into_response())
}

/// An admin creates a token for one of the provider's users.
async fn create_user_token(
    State(app): State<AppState>,
    Path(user): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    am(&app, &headers, &p, Access::Write, Section::Settings).await?;
    let user_id = json_id(&user)?;
    let mut conn = app.db.pool.acquire().await?;
    provider::PROVIDER_USER.find(&mut conn, &[], user_id).await?;
    drop(conn);
    Ok(created(
        "access_token",
        &crate::auth::create_token(&app.db, Some(user_id), &p).await?,
    ))
}

/// All applications, filtered by `service_id`, `plan_id`, `account_id`, `state`; paginated.
async fn all_applications(State(app): State<AppState>, headers: HeaderMap, p: Params) -> Result<Json<Value>, ApiError> {
    let who = am(&app, &headers, &p, Access::Read, Section::Partners).await?;
    let page = crate::catalog::Page::from_params(&p)?;
    let mut conn = app.db.pool.acquire().await?;
    let only = who.services().map(|ids| ("service_id", ids));
    let list = applications::APPLICATION
        .select_only(&mut conn, &applications::filters(&p)?, only, Some(page))
        .await?;
    Ok(wrap_list("applications", "application", &list))
}

/// One application by `application_id` (its id), `app_id` or `user_key`, optionally in `service_id`.
async fn find_application(State(app): State<AppState>, headers: HeaderMap, p: Params) -> Result<Json<Value>, ApiError> {
    let who = am(&app, &headers, &p, Access::Read, Section::Partners).await?;
    let filters = applications::filters(&p)?;
    if !filters
        .iter()
        .any(|(c, _)| matches!(*c, "id" | "application_id" | "user_key"))
    {
        return Err(ApiError::invalid(
            "application_id",
            "give application_id, app_id or user_key",
        ));
    }
    let mut conn = app.db.pool.acquire().await?;
    let found = applications::APPLICATION.select(&mut conn, &filters, None).await?;
    let application = found.into_iter().next().ok_or(ApiError::NotFound)?;
    who.check_service(application["service_id"].as_i64().unwrap_or_default())?;
    Ok(wrap("application", &application))
}

/// Extension: `POST /admin/api/applications/bulk/{approve|suspend|resume|change_plan}.json`
/// with `ids[]` (and `plan_id`): all of them or none, in one transaction.
async fn bulk_applications(
    State(app): State<AppState>,
    Path(action): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    let who = am(&app, &headers, &p, Access::Write, Section::Partners).await?;
    let action = action.strip_suffix(".json").unwrap_or(&action).to_string();
    let event = match action.as_str() {
        "approve" => "accept",
        "suspend" | "resume" | "change_plan" => action.as_str(),
        _ => return Err(ApiError::NotFound),
    };
    let mut ids = Vec::new();
    for raw in p.all("ids") {
        ids.push(
            raw.parse::<i64>()
                .map_err(|_| ApiError::invalid("ids", format!("`{raw}` is not an id")))?,
        );
    }
    if ids.is_empty() {
        return Err(ApiError::invalid("ids", "can't be blank"));
    }
    let r = &applications::APPLICATION;
    let mut tx = app.db.pool.begin().await?;
    let mut done = Vec::new();
    for id in ids {
        let current = r
            .select(&mut tx, &[("id", Val::Int(id))], None)
            .await?
            .into_iter()
            .next();
        let current = current.ok_or_else(|| ApiError::invalid("ids", format!("application {id} does not exist")))?;
        who.check_service(current["service_id"].as_i64().unwrap_or_default())?;
        let scope = [current["account_id"].as_i64().unwrap_or_default()];
        let handled =
            crate::catalog::behaviour::event(Behaviour::Application, &mut tx, &scope, &current, event, &p).await?;
        if !handled {
            r.transition(&mut tx, &scope, id, event).await.map_err(|e| match e {
                ApiError::Invalid(mut errors) => {
                    errors
                        .iter_mut()
                        .for_each(|(_, m)| *m = format!("application {id}: {m}"));
                    ApiError::Invalid(errors)
                }
                other => other,
            })?;
        }
        done.push(r.find(&mut tx, &scope, id).await?);
    }
    tx.commit().await?;
    Ok(wrap_list("applications", "application", &done))
}

/// Extension: copies an application plan with its limits and pricing rules.
async fn copy_plan(
    State(app): State<AppState>,
    Path(plan): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    let who = am(&app, &headers, &p, Access::Write, Section::Plans).await?;
    let plan_id = json_id(&plan)?;
    let mut tx = app.db.pool.begin().await?;
    let original = plans::APPLICATION_PLAN
        .select(&mut tx, &[("id", Val::Int(plan_id))], None)
        .await?;
    let original = original.into_iter().next().ok_or(ApiError::NotFound)?;
    who.check_service(original["service_id"].as_i64().unwrap_or_default())?;
    let name = p.get("name").filter(|n| !n.trim().is_empty()).map(str::to_string);
    let name = name.unwrap_or_else(|| format!("{} (copy)", original["name"].as_str().unwrap_or_default()));
    let system_name = p
        .get("system_name")
        .map(str::to_string)
        .unwrap_or_else(|| crate::catalog::system_name_from(&name));
    crate::catalog::resource::check_system_name(&system_name).map_err(|e| ApiError::invalid("system_name", e))?;
    let id = plans::copy(&mut tx, plan_id, &name, &system_name, false).await?;
    let mut copied = plans::APPLICATION_PLAN
        .find(&mut tx, &[original["service_id"].as_i64().unwrap_or_default()], id)
        .await?;
    plans::decorate(PlanKind::Application, &mut tx, &mut copied).await?;
    tx.commit().await?;
    Ok(created("application_plan", &copied))
}

async fn set_billing_address(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    am(&app, &headers, &p, Access::Write, Section::Partners).await?;
    let id = json_id(&account)?;
    let mut tx = app.db.pool.begin().await?;
    accounts::ACCOUNT.find(&mut tx, &[], id).await?;
    accounts::set_billing_address(&mut tx, id, &p).await?;
    let mut account = accounts::ACCOUNT.find(&mut tx, &[], id).await?;
    accounts::decorate(&mut tx, &mut account).await?;
    tx.commit().await?;
    Ok(wrap("account", &account))
}

async fn send_message(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    am(&app, &headers, &p, Access::Write, Section::Partners).await?;
    let id = json_id(&account)?;
    let mut tx = app.db.pool.begin().await?;
    accounts::ACCOUNT.find(&mut tx, &[], id).await?;
    let message = accounts::send_message(&mut tx, id, &p).await?;
    tx.commit().await?;
    Ok(created("message", &message))
}
