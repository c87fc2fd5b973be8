//! Applications: an account's subscription to a service's plan, with its credentials —
//! a `user_key` (backend_version 1) or an `application_id` with keys (backend_version 2).

use super::behaviour::text;
use super::resource::{event, field, fixed, Kind, OnCreate, Resource, Val, Values};
use crate::auth::generate_token;
use crate::db::{Db, Row};
use crate::error::ApiError;
use crate::params::Params;
use crate::time::now;
use sqlx::{AnyConnection, Row as _};

pub const APPLICATION: Resource = Resource {
    name: "application",
    collection: "applications",
    table: "applications",
    scope: &["account_id"],
    fields: &[
        field("name", Kind::Text, OnCreate::Required),
        field("description", Kind::Text, OnCreate::Default("")),
        fixed("plan_id", Kind::Id, OnCreate::Required),
        fixed("service_id", Kind::Id, OnCreate::Derived),
        fixed(
            "state",
            Kind::OneOf(&["pending", "live", "suspended"]),
            OnCreate::Derived,
        ),
        field("user_key", Kind::Text, OnCreate::Derived),
        fixed("application_id", Kind::Text, OnCreate::Derived),
    ],
    unique_field: "user_key",
    transitions: &[
        event("accept", &["pending"], "live"),
        event("suspend", &["live"], "suspended"),
        event("resume", &["suspended"], "live"),
    ],
};

/// On create: the plan decides the service and whether the application waits for approval;
/// credentials are generated unless given.
pub async fn before_write(
    conn: &mut AnyConnection,
    id: Option<i64>,
    p: &Params,
    values: &mut Values,
) -> Result<(), ApiError> {
    if let Some(key) = text(values, "user_key") {
        if key.trim().is_empty() || key.len() > 256 {
            return Err(ApiError::invalid("user_key", "must be 1 to 256 characters"));
        }
    }
    if id.is_some() {
        return Ok(());
    }
    super::subscriptions::terms_from_plan(conn, "application_plans", values).await?;
    if text(values, "user_key").is_none() {
        values.push(("user_key", Val::Text(generate_token())));
    }
    let app_id = p.get("application_id").filter(|v| !v.is_empty()).map(str::to_string);
    values.push((
        "application_id",
        Val::Text(app_id.unwrap_or_else(|| generate_token()[..8].to_string())),
    ));
    Ok(())
}

/// A key given with the new application (`application_key`) becomes its first key.
pub async fn after_create(conn: &mut AnyConnection, id: i64, p: &Params) -> Result<(), ApiError> {
    if let Some(key) = p.get("application_key").filter(|k| !k.is_empty()) {
        add_key(conn, id, key).await?;
    }
    Ok(())
}

pub async fn add_key(conn: &mut AnyConnection, application_id: i64, value: &str) -> Result<(), ApiError> {
    if value.is_empty() || value.len() > 256 {
        return Err(ApiError::invalid("key", "must be 1 to 256 characters"));
    }
    let inserted = sqlx::query("INSERT INTO application_keys (application_id, value, created_at) VALUES ($1, $2, $3)")
        .bind(application_id)
        .bind(value)
        .bind(now())
        .execute(&mut *conn)
        .await;
    match inserted {
        Ok(_) => Ok(()),
        Err(e) if crate::error::is_unique_violation(&e) => Err(ApiError::invalid("key", "has already been taken")),
        Err(e) => Err(e.into()),
    }
}

pub async fn delete_key(conn: &mut AnyConnection, application_id: i64, value: &str) -> Result<(), ApiError> {
    let done = sqlx::query("DELETE FROM application_keys WHERE application_id = $1 AND value = $2")
        .bind(application_id)
        .bind(value)
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() == 0 {
        return Err(ApiError::NotFound);
    }
    Ok(())
}

/// An application as the service-management API needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Application {
    pub id: i64,
    pub account_id: i64,
    pub service_id: i64,
    pub plan_id: i64,
    pub state: String,
    pub user_key: Option<String>,
    pub application_id: String,
}

const COLUMNS: &str = "id, account_id, service_id, plan_id, state, user_key, application_id";

fn from_row(r: &Row) -> Result<Application, sqlx::Error> {
    Ok(Application {
        id: r.try_get("id")?,
        account_id: r.try_get("account_id")?,
        service_id: r.try_get("service_id")?,
        plan_id: r.try_get("plan_id")?,
        state: r.try_get("state")?,
        user_key: r.try_get("user_key")?,
        application_id: r.try_get("application_id")?,
    })
}

pub async fn find_by_user_key(db: &Db, service_id: i64, user_key: &str) -> Result<Option<Application>, ApiError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM applications WHERE service_id = $1 AND user_key = $2"
    ))
    .bind(service_id)
    .bind(user_key)
    .fetch_optional(&db.pool)
    .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

pub async fn find_by_app_id(db: &Db, service_id: i64, app_id: &str) -> Result<Option<Application>, ApiError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM applications WHERE service_id = $1 AND application_id = $2"
    ))
    .bind(service_id)
    .bind(app_id)
    .fetch_optional(&db.pool)
    .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

pub async fn keys(conn: &mut AnyConnection, application_id: i64) -> Result<Vec<String>, ApiError> {
    let keys: Vec<String> =
        sqlx::query_scalar("SELECT value FROM application_keys WHERE application_id = $1 ORDER BY id")
            .bind(application_id)
            .fetch_all(&mut *conn)
            .await?;
    Ok(keys)
}

/// Gives the application its own copy of its plan; changes to the original no longer apply.
pub async fn customize_plan(conn: &mut AnyConnection, app: &serde_json::Value) -> Result<(), ApiError> {
    let (id, plan_id) = (
        app["id"].as_i64().unwrap_or_default(),
        app["plan_id"].as_i64().unwrap_or_default(),
    );
    let plan = sqlx::query("SELECT name, system_name, custom FROM application_plans WHERE id = $1")
        .bind(plan_id)
        .fetch_one(&mut *conn)
        .await?;
    if plan.try_get::<i64, _>("custom")? != 0 {
        return Ok(());
    }
    let name = format!("{} (custom)", plan.try_get::<String, _>("name")?);
    let system_name = format!("{}_custom_{id}", plan.try_get::<String, _>("system_name")?);
    let custom = super::plans::copy(conn, plan_id, &name, &system_name, true).await?;
    record_plan_change(conn, id, custom).await?;
    sqlx::query("UPDATE applications SET plan_id = $1, updated_at = $2 WHERE id = $3")
        .bind(custom)
        .bind(now())
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The plan history, before the application moves to `plan`.
async fn record_plan_change(conn: &mut AnyConnection, id: i64, plan: i64) -> Result<(), ApiError> {
    let today = chrono::Utc::now().date_naive();
    crate::contracts::change_plan(conn, crate::contracts::ContractType::Application, id, plan, today).await
}

/// Puts the application back on the plan its custom plan was copied from; the custom plan goes.
pub async fn decustomize_plan(conn: &mut AnyConnection, app: &serde_json::Value) -> Result<(), ApiError> {
    let (id, plan_id) = (
        app["id"].as_i64().unwrap_or_default(),
        app["plan_id"].as_i64().unwrap_or_default(),
    );
    let original: Option<Option<i64>> =
        sqlx::query_scalar("SELECT original_id FROM application_plans WHERE id = $1 AND custom = 1")
            .bind(plan_id)
            .fetch_optional(&mut *conn)
            .await?;
    let Some(original) = original else { return Ok(()) };
    let original = original.ok_or_else(|| ApiError::invalid("plan_id", "the original plan no longer exists"))?;
    record_plan_change(conn, id, original).await?;
    sqlx::query("UPDATE applications SET plan_id = $1, updated_at = $2 WHERE id = $3")
        .bind(original)
        .bind(now())
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "DELETE FROM application_plans WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM applications WHERE plan_id = $1)",
    )
    .bind(plan_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The filters of `/admin/api/applications.json` and `find.json`, as column conditions.
pub fn filters(p: &Params) -> Result<Vec<(&'static str, Val)>, ApiError> {
    let mut f = Vec::new();
    for (param, column) in [
        ("service_id", "service_id"),
        ("plan_id", "plan_id"),
        ("account_id", "account_id"),
    ] {
        if let Some(v) = p.parse::<i64>(param)? {
            f.push((column, Val::Int(v)));
        }
    }
    // find.json: `application_id` is the numeric id, `app_id` the credential.
    if let Some(v) = p.parse::<i64>("application_id")? {
        f.push(("id", Val::Int(v)));
    }
    if let Some(v) = p.get("app_id").filter(|v| !v.is_empty()) {
        f.push(("application_id", Val::Text(v.to_string())));
    }
    if let Some(v) = p.get("user_key").filter(|v| !v.is_empty()) {
        f.push(("user_key", Val::Text(v.to_string())));
    }
    if let Some(v) = p.get("state").filter(|v| !v.is_empty()) {
        if !matches!(v, "pending" | "live" | "suspended") {
            return Err(ApiError::invalid("state", "must be pending, live or suspended"));
        }
        f.push(("state", Val::Text(v.to_string())));
    }
    Ok(f)
}
