//! Developer accounts and their users; `signup` creates both at once (3scale's signup.json).

use crate::db::{Db, Row};
use crate::error::{is_unique_violation, ApiError};
use crate::params::Params;
use crate::time::now;
use serde::Serialize;
use sqlx::Row as _;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Account {
    pub id: i64,
    pub org_name: String,
    pub state: String,
    pub created_at: String,
    pub updated_at: String,
}

fn from_row(r: &Row) -> Result<Account, sqlx::Error> {
    Ok(Account {
        id: r.try_get("id")?,
        org_name: r.try_get("org_name")?,
        state: r.try_get("state")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// Creates an approved account with its admin user, in one transaction.
pub async fn signup(db: &Db, p: &Params) -> Result<Account, ApiError> {
    let org_name = p.required("org_name")?.trim().to_string();
    let username = p.required("username")?.trim().to_string();
    let email = p.required("email")?.trim().to_string();
    if !email.contains('@') {
        return Err(ApiError::invalid("email", "should look like an email address"));
    }
    let ts = now();
    let mut tx = db.pool.begin().await?;
    let row = sqlx::query(
        "INSERT INTO accounts (org_name, state, created_at, updated_at) VALUES ($1, 'approved', $2, $2)
         RETURNING id, org_name, state, created_at, updated_at",
    )
    .bind(&org_name)
    .bind(&ts)
    .fetch_one(&mut *tx)
    .await?;
    let account = from_row(&row)?;
    let user = sqlx::query(
        "INSERT INTO users (account_id, username, email, role, state, created_at, updated_at)
         VALUES ($1, $2, $3, 'admin', 'active', $4, $4)",
    )
    .bind(account.id)
    .bind(&username)
    .bind(&email)
    .bind(&ts)
    .execute(&mut *tx)
    .await;
    match user {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e) => return Err(ApiError::invalid("email", "has already been taken")),
        Err(e) => return Err(e.into()),
    }
    tx.commit().await?;
    Ok(account)
}

pub async fn find(db: &Db, id: i64) -> Result<Account, ApiError> {
    let row = sqlx::query("SELECT id, org_name, state, created_at, updated_at FROM accounts WHERE id = $1")
        .bind(id)
        .fetch_optional(&db.pool)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(from_row(&row)?)
}
