//! The provider: the one account that runs Tollgate (3scale's tenant), its settings, and its
//! users — admins, or members limited to some sections and services.

use super::accounts::{USER_EVENTS, USER_FIELDS};
use super::resource::Resource;
use crate::auth::generate_token;
use crate::db::Db;
use crate::error::ApiError;
use crate::params::Params;
use crate::time::now;
use serde_json::{json, Map, Value};
use sqlx::{AnyConnection, Row};

pub const PROVIDER_ID: i64 = 1;

/// The admin portal's sections a member may be given (3scale §3.5).
pub const SECTIONS: &[&str] = &[
    "portal",
    "finance",
    "settings",
    "partners",
    "monitoring",
    "plans",
    "policy_registry",
];

pub const PROVIDER_USER: Resource = Resource {
    name: "user",
    collection: "users",
    table: "provider_users",
    scope: &[],
    fields: USER_FIELDS,
    unique_field: "username",
    transitions: USER_EVENTS,
};

/// Makes sure the provider and a default account plan exist (first start).
pub async fn ensure(db: &Db) -> Result<(), sqlx::Error> {
    let mut tx = db.pool.begin().await?;
    let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM provider_account WHERE id = $1")
        .bind(PROVIDER_ID)
        .fetch_optional(&mut *tx)
        .await?;
    if exists.is_none() {
        let ts = now();
        let settings = json!({ "site_access_code": generate_token()[..10].to_string() });
        let plan: i64 = sqlx::query_scalar(
            "INSERT INTO account_plans (name, system_name, state, created_at, updated_at)
             VALUES ('Default', 'default', 'published', $1, $1) RETURNING id",
        )
        .bind(&ts)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO provider_account (id, org_name, settings, default_account_plan_id, created_at, updated_at)
             VALUES ($1, 'Provider', $2, $3, $4, $4)",
        )
        .bind(PROVIDER_ID)
        .bind(settings.to_string())
        .bind(plan)
        .bind(&ts)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// The provider account as `/admin/api/provider.json` shows it.
pub async fn account(db: &Db) -> Result<Value, ApiError> {
    let row = sqlx::query("SELECT id, org_name, settings, created_at, updated_at FROM provider_account WHERE id = $1")
        .bind(PROVIDER_ID)
        .fetch_one(&db.pool)
        .await?;
    let settings: String = row.try_get("settings")?;
    let mut v: Map<String, Value> = serde_json::from_str(&settings).unwrap_or_default();
    v.insert("id".into(), json!(row.try_get::<i64, _>("id")?));
    v.insert("org_name".into(), json!(row.try_get::<String, _>("org_name")?));
    v.insert("state".into(), json!("approved"));
    v.insert("created_at".into(), json!(row.try_get::<String, _>("created_at")?));
    v.insert("updated_at".into(), json!(row.try_get::<String, _>("updated_at")?));
    Ok(Value::Object(v))
}

/// Updates the provider's settings: `org_name`, and any other plain setting as given.
pub async fn update_account(db: &Db, p: &Params) -> Result<Value, ApiError> {
    let current = account(db).await?;
    let mut settings: Map<String, Value> = current.as_object().cloned().unwrap_or_default();
    for key in ["id", "org_name", "state", "created_at", "updated_at"] {
        settings.remove(key);
    }
    let mut org_name = current["org_name"].as_str().unwrap_or("Provider").to_string();
    for (name, value) in &p.0 {
        let plain = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        match name.as_str() {
            "org_name" if value.trim().is_empty() => return Err(ApiError::invalid("org_name", "can't be blank")),
            "org_name" => org_name = value.clone(),
            "id" | "state" | "created_at" | "updated_at" | "access_token" => {}
            _ if plain => {
                settings.insert(name.clone(), Value::String(value.clone()));
            }
            _ => {}
        }
    }
    sqlx::query("UPDATE provider_account SET org_name = $1, settings = $2, updated_at = $3 WHERE id = $4")
        .bind(org_name)
        .bind(Value::Object(settings).to_string())
        .bind(now())
        .bind(PROVIDER_ID)
        .execute(&db.pool)
        .await?;
    account(db).await
}

/// What a provider user may see: admins everything; members their sections and services.
pub async fn permissions(conn: &mut AnyConnection, user_id: i64) -> Result<Value, ApiError> {
    let row = sqlx::query("SELECT role, allowed_sections, allowed_service_ids FROM provider_users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(ApiError::NotFound)?;
    let role: String = row.try_get("role")?;
    let sections: String = row.try_get("allowed_sections")?;
    let services: Option<String> = row.try_get("allowed_service_ids")?;
    let (sections, services): (Vec<&str>, Value) = if role == "admin" {
        (SECTIONS.to_vec(), Value::Null)
    } else {
        let ids: Vec<i64> = services
            .as_deref()
            .unwrap_or("")
            .split(',')
            .filter_map(|s| s.parse().ok())
            .collect();
        (sections.split(',').filter(|s| !s.is_empty()).collect(), json!(ids))
    };
    Ok(json!({ "permissions": {
        "user_id": user_id,
        "role": role,
        "allowed_sections": sections,
        "allowed_service_ids": services,
    }}))
}

/// Sets a member's sections (`allowed_sections[]`) and services (`allowed_service_ids[]`);
/// parameters not given stay as they are, and the value `[]` empties a list (as 3scale's
/// clients send it).
pub async fn update_permissions(conn: &mut AnyConnection, user_id: i64, p: &Params) -> Result<Value, ApiError> {
    let given = |name| -> Vec<&str> {
        p.all(name)
            .into_iter()
            .map(|v| if v == "[]" { "" } else { v })
            .collect()
    };
    let sections = given("allowed_sections");
    if let Some(bad) = sections.iter().find(|s| !s.is_empty() && !SECTIONS.contains(s)) {
        return Err(ApiError::invalid(
            "allowed_sections",
            format!("unknown section `{bad}`"),
        ));
    }
    let services = given("allowed_service_ids");
    let mut ids = Vec::new();
    for s in services.iter().filter(|s| !s.is_empty()) {
        let id: i64 = s
            .parse()
            .map_err(|_| ApiError::invalid("allowed_service_ids", format!("`{s}` is not an id")))?;
        let found: Option<i64> = sqlx::query_scalar("SELECT id FROM services WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
        found.ok_or_else(|| ApiError::invalid("allowed_service_ids", format!("service {id} does not exist")))?;
        ids.push(id.to_string());
    }
    if !sections.is_empty() {
        let joined: Vec<&str> = sections.into_iter().filter(|s| !s.is_empty()).collect();
        set_user_column(conn, user_id, "allowed_sections", joined.join(",")).await?;
    }
    if !services.is_empty() {
        set_user_column(conn, user_id, "allowed_service_ids", ids.join(",")).await?;
    }
    permissions(conn, user_id).await
}

async fn set_user_column(conn: &mut AnyConnection, user_id: i64, column: &str, value: String) -> Result<(), ApiError> {
    sqlx::query(&format!(
        "UPDATE provider_users SET {column} = $1, updated_at = $2 WHERE id = $3"
    ))
    .bind(value)
    .bind(now())
    .bind(user_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
