//! Developer accounts and their users. `signup` creates an account with its admin user in one
//! transaction (3scale's `signup.json`, which is also how clients create accounts).

use super::resource::{event, field, fixed, Kind, OnCreate, Resource, Transition, Values};
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
        fixed("plan_id", Kind::Id, OnCreate::Derived),
    ],
    unique_field: "org_name",
    transitions: &[
        event("approve", &["pending"], "approved"),
        event("reject", &["pending"], "rejected"),
        event("make_pending", &["approved", "rejected"], "pending"),
        event("suspend", &["approved"], "suspended"),
        event("resume", &["suspended"], "approved"),
    ],
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
    transitions: USER_EVENTS,
};

/// Users' states and roles, for developer and provider users alike.
pub const USER_EVENTS: &[Transition] = &[
    event("activate", &["pending"], "active"),
    event("suspend", &["active"], "suspended"),
    event("unsuspend", &["suspended"], "active"),
    Transition {
        event: "admin",
        column: "role",
        from: &[],
        to: "admin",
    },
    Transition {
        event: "member",
        column: "role",
        from: &[],
        to: "member",
    },
];

/// Checks an e-mail address when one is given.
pub fn check_email(values: &Values) -> Result<(), ApiError> {
    match super::behaviour::text(values, "email") {
        Some(e) if !e.contains('@') => Err(ApiError::invalid("email", "should look like an email address")),
        _ => Ok(()),
    }
}

/// Creates an approved account with its active admin user, on the default account plan (or
/// `account_plan_id`), subscribed to every service's default service plan.
pub async fn signup(db: &Db, p: &Params) -> Result<Value, ApiError> {
    let mut account_values = ACCOUNT.values_for_create(p)?;
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
    let plan_id = match p.parse::<i64>("account_plan_id")? {
        Some(id) => {
            let found: Option<i64> = sqlx::query_scalar("SELECT id FROM account_plans WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            Some(found.ok_or_else(|| ApiError::invalid("account_plan_id", "does not exist"))?)
        }
        None => {
            sqlx::query_scalar::<_, Option<i64>>("SELECT default_account_plan_id FROM provider_account WHERE id = 1")
                .fetch_optional(&mut *tx)
                .await?
                .flatten()
        }
    };
    if let Some(plan_id) = plan_id {
        account_values.push(("plan_id", super::resource::Val::Int(plan_id)));
    }
    let account = ACCOUNT.insert(&mut tx, &[], &account_values).await?;
    let id = account["id"]
        .as_i64()
        .ok_or_else(|| ApiError::Internal("account without id".into()))?;
    USER.insert(&mut tx, &[id], &user_values).await?;
    sqlx::query(
        "INSERT INTO service_subscriptions (account_id, service_id, plan_id, state, created_at, updated_at)
         SELECT $1, s.id, s.default_service_plan_id, 'live', $2, $2 FROM services s
         WHERE s.default_service_plan_id IS NOT NULL",
    )
    .bind(id)
    .bind(crate::time::now())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(account)
}

/// Moves an account to another account plan.
pub async fn change_plan(conn: &mut sqlx::AnyConnection, account_id: i64, plan_id: i64) -> Result<(), ApiError> {
    let found: Option<i64> = sqlx::query_scalar("SELECT id FROM account_plans WHERE id = $1")
        .bind(plan_id)
        .fetch_optional(&mut *conn)
        .await?;
    found.ok_or_else(|| ApiError::invalid("plan_id", "does not exist"))?;
    sqlx::query("UPDATE accounts SET plan_id = $1, updated_at = $2 WHERE id = $3")
        .bind(plan_id)
        .bind(crate::time::now())
        .bind(account_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// `find.json`: the account with a user of this `username` or `email`, or this `user_id`.
pub async fn find_id(db: &Db, p: &Params) -> Result<i64, ApiError> {
    let (sql, value) = if let Some(u) = p.get("username").filter(|v| !v.is_empty()) {
        (
            "SELECT account_id FROM users WHERE username = $1 ORDER BY id LIMIT 1",
            u.to_string(),
        )
    } else if let Some(e) = p.get("email").filter(|v| !v.is_empty()) {
        (
            "SELECT account_id FROM users WHERE email = $1 ORDER BY id LIMIT 1",
            e.to_string(),
        )
    } else if let Some(id) = p.parse::<i64>("user_id")? {
        (
            "SELECT account_id FROM users WHERE CAST(id AS TEXT) = $1",
            id.to_string(),
        )
    } else {
        return Err(ApiError::invalid("username", "give username, email or user_id"));
    };
    let id: Option<i64> = sqlx::query_scalar(sql).bind(value).fetch_optional(&db.pool).await?;
    id.ok_or(ApiError::NotFound)
}
