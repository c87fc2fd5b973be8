//! Developer accounts and their users. `signup` creates an account with its admin user in one
//! transaction (3scale's `signup.json`, which is also how clients create accounts).

use super::behaviour::text;
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
        field("vat_code", Kind::Text, OnCreate::Optional),
        // Percent, e.g. 21 or 23.5 (SPEC §3.4).
        field("vat_rate", Kind::Fee, OnCreate::Default("0")),
        field(
            "billing_type",
            Kind::OneOf(&["postpaid", "prepaid"]),
            OnCreate::Default("postpaid"),
        ),
        field("monthly_billing_enabled", Kind::Bool, OnCreate::Default("true")),
        field("monthly_charging_enabled", Kind::Bool, OnCreate::Default("true")),
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

/// Developer and provider users have the same fields and events.
pub const USER_FIELDS: &[super::resource::Field] = &[
    field("username", Kind::Text, OnCreate::Required),
    field("email", Kind::Text, OnCreate::Optional),
    fixed("role", Kind::OneOf(&["admin", "member"]), OnCreate::Default("member")),
    fixed(
        "state",
        Kind::OneOf(&["pending", "active", "suspended"]),
        OnCreate::Default("pending"),
    ),
];

pub const USER: Resource = Resource {
    name: "user",
    collection: "users",
    table: "users",
    scope: &["account_id"],
    fields: USER_FIELDS,
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
/// `account_plan_id`), subscribed to every service's default service plan, with an
/// application on every service's default application plan.
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
    // …and an application on every default application plan (3scale's signup).
    let defaults: Vec<i64> = sqlx::query_scalar(
        "SELECT default_application_plan_id FROM services WHERE default_application_plan_id IS NOT NULL",
    )
    .fetch_all(&mut *tx)
    .await?;
    let org = text(&account_values, "org_name").unwrap_or_default().to_string();
    for plan_id in defaults {
        let p = Params(vec![
            ("name".into(), format!("{org}'s App")),
            ("plan_id".into(), plan_id.to_string()),
        ]);
        let mut values = super::applications::APPLICATION.values_for_create(&p)?;
        super::applications::before_write(&mut tx, None, &p, &mut values).await?;
        super::applications::APPLICATION.insert(&mut tx, &[id], &values).await?;
    }
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

/// VAT is a percentage.
pub fn before_write(values: &Values) -> Result<(), ApiError> {
    if let Some(rate) = super::behaviour::text(values, "vat_rate") {
        let rate: rust_decimal::Decimal = rate
            .parse()
            .map_err(|_| ApiError::invalid("vat_rate", "is not a number"))?;
        if rate > rust_decimal::Decimal::ONE_HUNDRED {
            return Err(ApiError::invalid("vat_rate", "must be at most 100"));
        }
    }
    Ok(())
}

const ADDRESS_FIELDS: &[&str] = &[
    "name", "address1", "address2", "city", "state", "zip", "country", "phone",
];

/// Shows the billing address as an object.
pub async fn decorate(conn: &mut sqlx::AnyConnection, item: &mut Value) -> Result<(), ApiError> {
    let stored: Option<Option<String>> = sqlx::query_scalar("SELECT billing_address FROM accounts WHERE id = $1")
        .bind(item["id"].as_i64().unwrap_or_default())
        .fetch_optional(&mut *conn)
        .await?;
    item["billing_address"] = stored
        .flatten()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(Value::Null);
    Ok(())
}

/// `PUT /accounts/{id}/billing_address.json`: name, address1, address2, city, state, zip, country, phone.
pub async fn set_billing_address(conn: &mut sqlx::AnyConnection, account_id: i64, p: &Params) -> Result<(), ApiError> {
    let mut address = serde_json::Map::new();
    for f in ADDRESS_FIELDS {
        let value = p
            .get(f)
            .or_else(|| p.get(&format!("billing_address[{f}]")))
            .unwrap_or("");
        if value.len() > 255 {
            return Err(ApiError::invalid(f, "is too long (255 characters at most)"));
        }
        address.insert((*f).to_string(), Value::String(value.to_string()));
    }
    for required in ["name", "address1", "city", "country"] {
        if address
            .get(required)
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim()
            .is_empty()
        {
            return Err(ApiError::invalid(required, "can't be blank"));
        }
    }
    sqlx::query("UPDATE accounts SET billing_address = $1, updated_at = $2 WHERE id = $3")
        .bind(Value::Object(address).to_string())
        .bind(crate::time::now())
        .bind(account_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Stores a message to an account; returns it.
pub async fn send_message(conn: &mut sqlx::AnyConnection, account_id: i64, p: &Params) -> Result<Value, ApiError> {
    let body = p.required("body")?;
    let subject = p.get("subject").unwrap_or("");
    let row = sqlx::query(
        "INSERT INTO messages (account_id, subject, body, created_at) VALUES ($1, $2, $3, $4)
         RETURNING id, account_id, subject, body, created_at",
    )
    .bind(account_id)
    .bind(subject)
    .bind(body)
    .bind(crate::time::now())
    .fetch_one(&mut *conn)
    .await?;
    use sqlx::Row;
    Ok(serde_json::json!({
        "id": row.try_get::<i64, _>("id")?,
        "account_id": row.try_get::<i64, _>("account_id")?,
        "subject": row.try_get::<String, _>("subject")?,
        "body": row.try_get::<String, _>("body")?,
        "state": "sent",
        "created_at": row.try_get::<String, _>("created_at")?,
    }))
}
