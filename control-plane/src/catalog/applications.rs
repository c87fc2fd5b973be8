//! Applications: an account's subscription to a service's plan, with its credentials —
//! a `user_key` (backend_version 1) or an `application_id` with keys (backend_version 2).

use super::{accounts, plans, services};
use crate::auth::generate_token;
use crate::db::{Db, Row};
use crate::error::{is_unique_violation, ApiError};
use crate::params::Params;
use crate::time::now;
use serde::Serialize;
use sqlx::Row as _;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Application {
    pub id: i64,
    pub account_id: i64,
    pub service_id: i64,
    pub plan_id: i64,
    pub name: String,
    pub description: String,
    pub state: String,
    pub user_key: Option<String>,
    pub application_id: String,
    pub created_at: String,
    pub updated_at: String,
}

const COLUMNS: &str =
    "id, account_id, service_id, plan_id, name, description, state, user_key, application_id, created_at, updated_at";

fn from_row(r: &Row) -> Result<Application, sqlx::Error> {
    Ok(Application {
        id: r.try_get("id")?,
        account_id: r.try_get("account_id")?,
        service_id: r.try_get("service_id")?,
        plan_id: r.try_get("plan_id")?,
        name: r.try_get("name")?,
        description: r.try_get("description")?,
        state: r.try_get("state")?,
        user_key: r.try_get("user_key")?,
        application_id: r.try_get("application_id")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// Creates an application for `account_id` on `plan_id` (pending if the plan needs approval).
pub async fn create(db: &Db, account_id: i64, p: &Params) -> Result<Application, ApiError> {
    accounts::find(db, account_id).await?;
    let plan_id = p
        .parse::<i64>("plan_id")?
        .ok_or_else(|| ApiError::invalid("plan_id", "can't be blank"))?;
    let plan = match plans::find(db, plan_id).await {
        Err(ApiError::NotFound) => return Err(ApiError::invalid("plan_id", "does not exist")),
        other => other?,
    };
    let service = services::find(db, plan.service_id).await?;
    let name = p.required("name")?.trim().to_string();
    let user_key = match p.get("user_key") {
        Some(k) if !k.is_empty() => k.to_string(),
        _ => generate_token(),
    };
    let application_id = match p.get("application_id") {
        Some(k) if !k.is_empty() => k.to_string(),
        _ => generate_token().chars().take(8).collect(),
    };
    let state = if plan.approval_required { "pending" } else { "live" };
    let ts = now();
    let mut tx = db.pool.begin().await?;
    let row = sqlx::query(&format!(
        "INSERT INTO applications (account_id, service_id, plan_id, name, description, state, user_key, application_id,
           created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING {COLUMNS}"
    ))
    .bind(account_id)
    .bind(service.id)
    .bind(plan.id)
    .bind(&name)
    .bind(p.get("description").unwrap_or(""))
    .bind(state)
    .bind(&user_key)
    .bind(&application_id)
    .bind(&ts)
    .fetch_one(&mut *tx)
    .await;
    let app = match row {
        Ok(row) => from_row(&row)?,
        Err(e) if is_unique_violation(&e) => {
            let field = if p.get("application_id").is_some() {
                "application_id"
            } else {
                "user_key"
            };
            return Err(ApiError::invalid(field, "has already been taken"));
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(key) = p.get("application_key").filter(|k| !k.is_empty()) {
        sqlx::query("INSERT INTO application_keys (application_id, value, created_at) VALUES ($1, $2, $3)")
            .bind(app.id)
            .bind(key)
            .bind(&ts)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(app)
}

pub async fn list_for_account(db: &Db, account_id: i64) -> Result<Vec<Application>, ApiError> {
    accounts::find(db, account_id).await?;
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM applications WHERE account_id = $1 ORDER BY id"
    ))
    .bind(account_id)
    .fetch_all(&db.pool)
    .await?;
    Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
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

pub async fn keys(db: &Db, application_id: i64) -> Result<Vec<String>, ApiError> {
    let keys: Vec<String> =
        sqlx::query_scalar("SELECT value FROM application_keys WHERE application_id = $1 ORDER BY id")
            .bind(application_id)
            .fetch_all(&db.pool)
            .await?;
    Ok(keys)
}
