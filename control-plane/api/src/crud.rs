//! The catalog's resources over HTTP, as 3scale lays them out: list, create, show, update,
//! delete at `{collection}.json` and `{collection}/{id}.json`, and state events at
//! `{collection}/{id}/{event}.json`. What differs between resources is declared — the entity
//! (its fields and behaviour, in the store), where it is mounted and which section it belongs
//! to ([`MOUNTS`]) — not re-coded per resource. To add a resource: declare it and its
//! behaviour next to each other in `tollgate_store::catalog`, and mount it here.

use crate::error::{path_id, ApiError};
use crate::params::Params;
use crate::render;
use crate::routes::{am, Caller, Routes};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;
use std::collections::HashMap;
use tollgate_domain::access::{Access, Section};
use tollgate_domain::form::{FromForm, Page};
use tollgate_store::catalog::crud::{self, Entity};
use tollgate_store::catalog::resource::EventInput;
use tollgate_store::catalog::{
    accounts, applications, backends, mapping_rules, metrics, plans, provider, services, subscriptions,
};
use tollgate_store::credits::rates;

/// One resource mounted at a path.
pub struct Mount {
    /// The collection's path, without `.json` (with `{service_id}`-style parameters).
    pub collection: &'static str,
    /// The path parameter naming one entity (`service_id`, …; children reuse the name).
    pub id_param: &'static str,
    pub entity: &'static Entity,
    pub section: Section,
    /// Lists show a member only the rows of their services, by this column.
    pub service_column: Option<&'static str>,
}

const fn mount(collection: &'static str, id_param: &'static str, entity: &'static Entity, section: Section) -> Mount {
    Mount {
        collection,
        id_param,
        entity,
        section,
        service_column: None,
    }
}

/// The catalog's resources and where they are mounted (accounts and their users, applications
/// and subscriptions are `partners`; provider users `settings`; services and everything about
/// them `plans`).
pub static MOUNTS: [Mount; 20] = [
    mount(
        "/admin/api/accounts",
        "account_id",
        &accounts::ACCOUNTS,
        Section::Partners,
    ),
    mount(
        "/admin/api/account_plans",
        "plan_id",
        &plans::ACCOUNT_PLANS,
        Section::Plans,
    ),
    mount(
        "/admin/api/services/{service_id}/service_plans",
        "plan_id",
        &plans::SERVICE_PLANS,
        Section::Plans,
    ),
    mount(
        "/admin/api/accounts/{account_id}/service_subscriptions",
        "id",
        &subscriptions::SERVICE_SUBSCRIPTIONS,
        Section::Partners,
    ),
    mount(
        "/admin/api/users",
        "user_id",
        &provider::PROVIDER_USERS,
        Section::Settings,
    ),
    mount(
        "/admin/api/accounts/{account_id}/users",
        "id",
        &accounts::USERS,
        Section::Partners,
    ),
    mount(
        "/admin/api/accounts/{account_id}/applications",
        "application_id",
        &applications::APPLICATIONS,
        Section::Partners,
    ),
    Mount {
        service_column: Some("id"),
        ..mount("/admin/api/services", "service_id", &services::SERVICES, Section::Plans)
    },
    mount(
        "/admin/api/services/{service_id}/metrics",
        "metric_id",
        &metrics::METRICS,
        Section::Plans,
    ),
    mount(
        "/admin/api/services/{service_id}/metrics/{metric_id}/methods",
        "id",
        &metrics::METHODS,
        Section::Plans,
    ),
    mount(
        "/admin/api/services/{service_id}/proxy/mapping_rules",
        "id",
        &mapping_rules::MAPPING_RULES,
        Section::Plans,
    ),
    mount(
        "/admin/api/services/{service_id}/application_plans",
        "plan_id",
        &plans::APPLICATION_PLANS,
        Section::Plans,
    ),
    mount(
        "/admin/api/services/{service_id}/backend_usages",
        "id",
        &backends::BACKEND_USAGES,
        Section::Plans,
    ),
    mount(
        "/admin/api/application_plans/{plan_id}/metrics/{metric_id}/limits",
        "id",
        &plans::LIMITS,
        Section::Plans,
    ),
    mount(
        "/admin/api/application_plans/{plan_id}/metrics/{metric_id}/pricing_rules",
        "id",
        &plans::PRICING_RULES,
        Section::Plans,
    ),
    mount(
        "/admin/api/services/{service_id}/credit_rates",
        "id",
        &rates::CREDIT_RATES,
        Section::Plans,
    ),
    mount(
        "/admin/api/backend_apis",
        "backend_id",
        &backends::BACKENDS,
        Section::Plans,
    ),
    mount(
        "/admin/api/backend_apis/{backend_id}/metrics",
        "metric_id",
        &metrics::BACKEND_METRICS,
        Section::Plans,
    ),
    mount(
        "/admin/api/backend_apis/{backend_id}/metrics/{metric_id}/methods",
        "id",
        &metrics::BACKEND_METHODS,
        Section::Plans,
    ),
    mount(
        "/admin/api/backend_apis/{backend_id}/mapping_rules",
        "id",
        &mapping_rules::BACKEND_MAPPING_RULES,
        Section::Plans,
    ),
];

/// Every mount's routes.
pub fn routes(r: &mut Routes) {
    for m in &MOUNTS {
        let (read, write) = (am(Access::Read, m.section), am(Access::Write, m.section));
        let res = m.entity.resource;
        let (list_path, item_path) = (
            format!("{}.json", m.collection),
            format!("{}/{{{}}}", m.collection, m.id_param),
        );
        r.get(
            &list_path,
            read,
            format!("List {}", res.collection),
            move |s, c, p, q| list(m, s, c, p, q),
        );
        r.post(&list_path, write, format!("Create a {}", res.name), move |s, p, q| {
            create(m, s, p, q)
        })
        .body(res.fields, true);
        r.get(&item_path, read, format!("Read a {}", res.name), move |s, p| {
            show(m, s, p)
        });
        r.put(&item_path, write, format!("Update a {}", res.name), move |s, p, q| {
            update(m, s, p, q)
        })
        .body(res.fields, false);
        r.patch(&item_path, write, format!("Update a {}", res.name), move |s, p, q| {
            update(m, s, p, q)
        })
        .body(res.fields, false);
        r.delete(&item_path, write, format!("Delete a {}", res.name), move |s, p| {
            delete(m, s, p)
        });
        let events = m.entity.events();
        if !events.is_empty() {
            let documented: Vec<String> = events
                .iter()
                .map(|e| format!("{}/{{{}}}/{e}.json", m.collection, m.id_param))
                .collect();
            let documented: Vec<&str> = documented.iter().map(String::as_str).collect();
            r.put(
                format!("{item_path}/{{event}}"),
                write,
                format!("A {} event: {}", res.name, events.join(", ")),
                move |s, p, q| event(m, s, p, q),
            )
            .documented(&documented);
        }
    }
}

type PathMap = Path<HashMap<String, String>>;

/// The ids of the path parameters that make up the entity's scope, in order.
pub(crate) fn scope(m: &Mount, path: &HashMap<String, String>) -> Result<Vec<i64>, ApiError> {
    m.entity
        .parent
        .params()
        .iter()
        .map(|name| path_id(path.get(*name).map(String::as_str).unwrap_or("")))
        .collect()
}

pub(crate) fn id(m: &Mount, path: &HashMap<String, String>) -> Result<i64, ApiError> {
    path_id(path.get(m.id_param).map(String::as_str).unwrap_or(""))
}

async fn list(
    m: &Mount,
    State(app): State<AppState>,
    who: Caller,
    Path(path): PathMap,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    let page = Page::from_form(&p)?;
    let only_ids = m.service_column.and_then(|_| who.service_ids());
    let only = m.service_column.zip(only_ids.as_deref());
    let scope = scope(m, &path)?;
    let items = crud::list(&app.db, m.entity, &scope, only, page).await?;
    let total = crud::count(&app.db, m.entity, &scope, only).await?;
    let res = m.entity.resource;
    Ok(render::page(res.collection, res.name, &items, page, total))
}

async fn show(m: &Mount, State(app): State<AppState>, Path(path): PathMap) -> Result<Json<Value>, ApiError> {
    let item = crud::find(&app.db, m.entity, &scope(m, &path)?, id(m, &path)?).await?;
    Ok(render::one(&item))
}

async fn create(m: &Mount, State(app): State<AppState>, Path(path): PathMap, p: Params) -> Result<Response, ApiError> {
    let values = m.entity.resource.values_for_create(&p)?;
    let item = crud::create(&app.db, m.entity, &scope(m, &path)?, values).await?;
    Ok((StatusCode::CREATED, render::one(&item)).into_response())
}

async fn update(
    m: &Mount,
    State(app): State<AppState>,
    Path(path): PathMap,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    let values = m.entity.resource.values_for_update(&p)?;
    let item = crud::update(&app.db, m.entity, &scope(m, &path)?, id(m, &path)?, values).await?;
    Ok(render::one(&item))
}

/// `PUT …/{id}/{event}.json`: a state event, `default` (plans) or `change_plan` (contracts).
async fn event(
    m: &Mount,
    State(app): State<AppState>,
    Path(path): PathMap,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    let name = path
        .get("event")
        .map(|e| e.strip_suffix(".json").unwrap_or(e))
        .unwrap_or_default();
    let event = EventInput::from_form(name, &p)?;
    let item = crud::event(&app.db, m.entity, &scope(m, &path)?, id(m, &path)?, &event).await?;
    Ok(render::one(&item))
}

async fn delete(m: &Mount, State(app): State<AppState>, Path(path): PathMap) -> Result<StatusCode, ApiError> {
    crud::delete(&app.db, m.entity, &scope(m, &path)?, id(m, &path)?).await?;
    Ok(StatusCode::OK)
}
