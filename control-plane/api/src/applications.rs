//! Applications beyond CRUD: every application (filtered, paged), finding one by id or
//! credential, bulk actions, and application keys.

use crate::error::{path_id, ApiError};
use crate::params::Params;
use crate::render::{self, wrap_list};
use crate::routes::{am, Caller, Routes};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tollgate_domain::access::{Access, Section};
use tollgate_domain::form::{FromForm, Page};
use tollgate_domain::ids::{AccountId, ApplicationId, ServiceId};
use tollgate_store::catalog::applications::{self, BulkAction, Filter};

pub fn routes(r: &mut Routes) {
    let (read, write) = (
        am(Access::Read, Section::Partners),
        am(Access::Write, Section::Partners),
    );
    r.get(
        "/admin/api/applications.json",
        read,
        "All applications (filters: service_id, plan_id, account_id, state)",
        all,
    );
    r.get(
        "/admin/api/applications/find.json",
        read,
        "Find an application by application_id, app_id or user_key",
        find,
    );
    r.post(
        "/admin/api/applications/bulk/{action}",
        write,
        "Extension: approve, suspend, resume or change_plan many applications (ids[]), all or none",
        bulk,
    )
    .documented(&["/admin/api/applications/bulk/{action}.json"]);
    let keys = "/admin/api/accounts/{account_id}/applications/{application_id}/keys.json";
    r.get(keys, read, "List application keys", list_keys);
    r.post(keys, write, "Add an application key", create_key);
    r.delete(
        "/admin/api/accounts/{account_id}/applications/{application_id}/keys/{key}",
        write,
        "Delete an application key",
        delete_key,
    );
}

async fn all(State(app): State<AppState>, who: Caller, p: Params) -> Result<Json<Value>, ApiError> {
    let (filter, page, services) = (Filter::from_form(&p)?, Page::from_form(&p)?, who.service_ids());
    let list = applications::select(&app.db, &filter, services.as_deref(), page).await?;
    let total = applications::count(&app.db, &filter, services.as_deref()).await?;
    Ok(render::page("applications", "application", &list, page, total))
}

async fn find(State(app): State<AppState>, who: Caller, p: Params) -> Result<Json<Value>, ApiError> {
    let filter = Filter::from_form(&p)?;
    if !filter.names_one() {
        return Err(ApiError::invalid(
            "application_id",
            "give application_id, app_id or user_key",
        ));
    }
    let found = applications::select(&app.db, &filter, None, Page::FIRST).await?;
    let application = found.into_iter().next().ok_or(ApiError::NotFound)?;
    who.check_service(ServiceId::new(application.int("service_id").unwrap_or_default()))?;
    Ok(render::one(&application))
}

/// `POST /admin/api/applications/bulk/{approve|suspend|resume|change_plan}.json` with `ids[]`
/// (and `plan_id`): all of them or none, in one transaction.
async fn bulk(
    State(app): State<AppState>,
    who: Caller,
    Path(action): Path<String>,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    let action = BulkAction::parse(action.strip_suffix(".json").unwrap_or(&action), &p)?.ok_or(ApiError::NotFound)?;
    let mut ids = Vec::new();
    for raw in p.all("ids") {
        ids.push(
            raw.parse::<ApplicationId>()
                .map_err(|_| ApiError::invalid("ids", format!("`{raw}` is not an id")))?,
        );
    }
    if ids.is_empty() {
        return Err(ApiError::invalid("ids", "can't be blank"));
    }
    let done = applications::bulk(&app.db, &ids, action, |s| who.may_see_service(s)).await?;
    Ok(render::many("applications", "application", &done))
}

fn keys_json(application: ApplicationId, keys: &[String]) -> Json<Value> {
    wrap_list(
        "keys",
        "key",
        keys.iter().map(|k| json!({"value": k, "application_id": application})),
    )
}

fn ids(account: &str, application: &str) -> Result<(AccountId, ApplicationId), ApiError> {
    Ok((path_id(account)?, path_id(application)?))
}

async fn list_keys(
    State(app): State<AppState>,
    Path((account, application)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (account, application) = ids(&account, &application)?;
    let keys = applications::account_keys(&app.db, account, application).await?;
    Ok(keys_json(application, &keys))
}

async fn create_key(
    State(app): State<AppState>,
    Path((account, application)): Path<(String, String)>,
    p: Params,
) -> Result<Response, ApiError> {
    let (account, application) = ids(&account, &application)?;
    let key = p.required("key")?.to_string();
    let created = applications::create_key(&app.db, account, application, &key).await?;
    let mut item = render::record(&created);
    item["keys"] = json!([key]);
    Ok((StatusCode::CREATED, Json(json!({ "application": item }))).into_response())
}

async fn delete_key(
    State(app): State<AppState>,
    Path((account, application, key)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let (account, application) = ids(&account, &application)?;
    let key = key.strip_suffix(".json").unwrap_or(&key);
    applications::delete_key(&app.db, account, application, key).await?;
    Ok(StatusCode::OK)
}
