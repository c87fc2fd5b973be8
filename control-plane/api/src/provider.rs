//! The provider account, its users' permissions, and access tokens (3scale §3, §6).

use crate::error::{path_id, ApiError};
use crate::params::Params;
use crate::render::{created, wrap, wrap_list};
use crate::routes::{am, Caller, Routes};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde_json::{json, Map, Value};
use tollgate_domain::access::{Access, Section};
use tollgate_domain::form::FromForm;
use tollgate_domain::ids::{ProviderUserId, PROVIDER_ID};
use tollgate_store::auth::{self, NewToken, Token};
use tollgate_store::catalog::provider::{self, Permissions, PermissionsPatch, ProviderAccount, ProviderPatch};

pub fn routes(r: &mut Routes) {
    let settings = |access| am(access, Section::Settings);
    let own = |access| am(access, Section::Any);
    r.get(
        "/admin/api/provider.json",
        own(Access::Read),
        "The provider account",
        show,
    );
    r.put(
        "/admin/api/provider.json",
        settings(Access::Write),
        "Update the provider account",
        update,
    );
    let permissions = "/admin/api/users/{user_id}/permissions.json";
    r.get(
        permissions,
        settings(Access::Read),
        "A provider user's sections and services",
        show_permissions,
    );
    r.put(
        permissions,
        settings(Access::Write),
        "Set allowed_sections[] and allowed_service_ids[]",
        update_permissions,
    );
    r.post(
        "/admin/api/users/{user_id}/access_tokens.json",
        settings(Access::Write),
        "Create an access token for a provider user",
        create_user_token,
    );
    let tokens = "/admin/api/personal/access_tokens.json";
    r.get(tokens, own(Access::Read), "The caller's access tokens", list_tokens);
    r.post(
        tokens,
        own(Access::Write),
        "Create an access token (its value is shown once)",
        create_token,
    );
    let prefs = "/admin/api/personal/notification_preferences.json";
    r.get(
        prefs,
        own(Access::Read),
        "The caller's e-mail notification preferences (those their sections allow)",
        show_preferences,
    );
    r.patch(
        prefs,
        own(Access::Write),
        "Turn e-mail notifications on or off (name=true|false)",
        update_preferences,
    );
    let token = "/admin/api/personal/access_tokens/{token_id}";
    r.get(token, own(Access::Read), "One access token", show_token);
    r.delete(token, own(Access::Write), "Delete an access token", delete_token);
}

/// The provider account; its key only for admins (it is admin credentials).
fn account_json(a: &ProviderAccount, caller: &Caller) -> Value {
    let mut v: Map<String, Value> = a.settings.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    v.insert("id".into(), json!(PROVIDER_ID));
    v.insert("org_name".into(), json!(a.org_name));
    v.insert("state".into(), json!("approved"));
    v.insert("created_at".into(), json!(a.created_at));
    v.insert("updated_at".into(), json!(a.updated_at));
    if caller.member.is_none() {
        v.insert("provider_key".into(), json!(a.provider_key));
    }
    Value::Object(v)
}

async fn show(State(app): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    Ok(wrap(
        "account",
        account_json(&provider::account(&app.db).await?, &caller),
    ))
}

async fn update(State(app): State<AppState>, caller: Caller, p: Params) -> Result<Json<Value>, ApiError> {
    let account = provider::update_account(&app.db, ProviderPatch::from_form(&p)?).await?;
    Ok(wrap("account", account_json(&account, &caller)))
}

fn permissions_json(p: &Permissions) -> Json<Value> {
    Json(json!({ "permissions": {
        "user_id": p.user_id,
        "role": p.role.as_str(),
        "allowed_sections": p.sections,
        "allowed_service_ids": p.services,
    }}))
}

async fn show_permissions(State(app): State<AppState>, Path(user): Path<String>) -> Result<Json<Value>, ApiError> {
    let mut conn = app.db.pool.acquire().await.map_err(tollgate_store::StoreError::from)?;
    Ok(permissions_json(
        &provider::permissions(&mut conn, path_id(&user)?).await?,
    ))
}

async fn update_permissions(
    State(app): State<AppState>,
    Path(user): Path<String>,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    let updated = provider::update_permissions(&app.db, path_id(&user)?, PermissionsPatch::from_form(&p)?).await?;
    Ok(permissions_json(&updated))
}

fn token_json(t: &Token) -> Value {
    let scopes: Vec<&str> = t.scopes.iter().map(|s| s.as_str()).collect();
    json!({
        "id": t.id, "name": t.name, "scopes": scopes, "permission": t.permission.as_str(),
        "expires_at": null, "created_at": t.created_at,
    })
}

async fn created_token(app: &AppState, owner: Option<ProviderUserId>, p: &Params) -> Result<Response, ApiError> {
    let made = auth::create_token(&app.db, owner, NewToken::from_form(p)?).await?;
    let mut body = token_json(&made.token);
    body["value"] = Value::String(made.value);
    Ok(created("access_token", body))
}

/// An admin creates a token for one of the provider's users.
async fn create_user_token(
    State(app): State<AppState>,
    Path(user): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    created_token(&app, Some(path_id(&user)?), &p).await
}

async fn list_tokens(State(app): State<AppState>, me: Caller) -> Result<Json<Value>, ApiError> {
    let tokens = auth::list_tokens(&app.db, me.user_id).await?;
    Ok(wrap_list(
        "access_tokens",
        "access_token",
        tokens.iter().map(token_json),
    ))
}

async fn create_token(State(app): State<AppState>, me: Caller, p: Params) -> Result<Response, ApiError> {
    created_token(&app, me.user_id, &p).await
}

async fn show_token(
    State(app): State<AppState>,
    me: Caller,
    Path(token): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(wrap(
        "access_token",
        token_json(&auth::find_token(&app.db, me.user_id, path_id(&token)?).await?),
    ))
}

async fn delete_token(
    State(app): State<AppState>,
    me: Caller,
    Path(token): Path<String>,
) -> Result<StatusCode, ApiError> {
    auth::delete_token(&app.db, me.user_id, path_id(&token)?).await?;
    Ok(StatusCode::OK)
}

fn preferences_user(caller: &Caller) -> Result<ProviderUserId, ApiError> {
    caller.user_id.ok_or_else(|| {
        ApiError::BadRequest("this token belongs to no provider user (the bootstrap token); use a user's token".into())
    })
}

/// 3scale's shape: `{"notification_preferences": {"preferences": {name: on, …}}}`, only the
/// notifications the caller's sections allow (Ch. 4.2).
fn preferences_json(caller: &Caller, stored: &Map<String, Value>) -> Json<Value> {
    let prefs: Map<String, Value> =
        tollgate_domain::notify::visible_preferences(caller, |n| stored.get(n).and_then(Value::as_bool))
            .into_iter()
            .map(|(name, _, on)| (name.to_string(), Value::Bool(on)))
            .collect();
    wrap("notification_preferences", json!({ "preferences": prefs }))
}

async fn show_preferences(State(app): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let stored = provider::notification_preferences(&app.db, preferences_user(&caller)?).await?;
    Ok(preferences_json(&caller, &stored))
}

async fn update_preferences(State(app): State<AppState>, caller: Caller, p: Params) -> Result<Json<Value>, ApiError> {
    let user = preferences_user(&caller)?;
    let pairs = p.0 .0.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    let changes = tollgate_domain::notify::preference_changes(&caller, pairs)?;
    let stored = provider::set_notification_preferences(&app.db, user, &changes).await?;
    Ok(preferences_json(&caller, &stored))
}
