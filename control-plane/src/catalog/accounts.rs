//! Developer accounts and their users. `signup` creates an account with its admin user in one
//! transaction (3scale's `signup.json`, which is also how clients create accounts).

use super::resource::{field, fixed, Kind, OnCreate, Resource, Values};
use crate::db::Db;
use crate::error::ApiError;
use crate::params::Params;
use serde_json::Value;

pub const ACCOUNT: Resource = Resource {
    name: "account",
    collection: "accounts",
    table: "accounts",
    scope: &[],
    fields: &[
        field("org_name", Kind::Text, OnCreate::Required),
        fixed(
            "state",
            Kind::OneOf(&["pending", "approved", "rejected", "suspended"]),
            OnCreate::Default("approved"),
        ),
    ],
    unique_field: "org_name",
};

pub const USER: Resource = Resource {
    name: "user",
    collection: "users",
    table: "users",
    scope: &["account_id"],
    fields: &[
        field("username", Kind::Text, OnCreate::Required),
        field("email", Kind::Text, OnCreate::Optional),
        fixed("role", Kind::OneOf(&["admin", "member"]), OnCreate::Default("member")),
        fixed(
            "state",
            Kind::OneOf(&["pending", "active", "suspended"]),
            OnCreate::Default("pending"),
        ),
    ],
    unique_field: "email",
};

/// Checks an e-mail address when one is given.
pub fn check_email(values: &Values) -> Result<(), ApiError> {
    match super::behaviour::text(values, "email") {
        Some(e) if !e.contains('@') => Err(ApiError::invalid("email", "should look like an email address")),
        _ => Ok(()),
    }
}

/// Creates an approved account with its active admin user.
pub async fn signup(db: &Db, p: &Params) -> Result<Value, ApiError> {
    let account_values = ACCOUNT.values_for_create(p)?;
    let mut user_values = USER.values_for_create(p)?;
    check_email(&user_values)?;
    for (name, v) in user_values.iter_mut() {
        match *name {
            "role" => *v = super::resource::Val::Text("admin".into()),
            "state" => *v = super::resource::Val::Text("active".into()),
            _ => {}
        }
    }
    let mut tx = db.pool.begin().await?;
    let account = ACCOUNT.insert(&mut tx, &[], &account_values).await?;
    let id = account["id"]
        .as_i64()
        .ok_or_else(|| ApiError::Internal("account without id".into()))?;
    USER.insert(&mut tx, &[id], &user_values).await?;
    tx.commit().await?;
    Ok(account)
}
