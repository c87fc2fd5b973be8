//! Service subscriptions: an account's contract with a service under a service plan (3scale's
//! service contracts), and plan changes for any contract.

use super::behaviour::int;
use super::resource::{event, fixed, Kind, OnCreate, Resource, Val, Values};
use crate::error::ApiError;
use sqlx::{AnyConnection, Row};

pub const SERVICE_SUBSCRIPTION: Resource = Resource {
    name: "service_subscription",
    collection: "service_subscriptions",
    table: "service_subscriptions",
    scope: &["account_id"],
    fields: &[
        fixed("plan_id", Kind::Id, OnCreate::Required),
        fixed("service_id", Kind::Id, OnCreate::Derived),
        fixed(
            "state",
            Kind::OneOf(&["pending", "live", "suspended"]),
            OnCreate::Derived,
        ),
    ],
    unique_field: "service_id",
    transitions: &[event("approve", &["pending"], "live")],
};

/// A new contract's terms from its plan (in `plans_table`): the service, and a state of
/// `pending` when the plan needs approval, else `live`.
pub async fn terms_from_plan(conn: &mut AnyConnection, plans_table: &str, values: &mut Values) -> Result<(), ApiError> {
    let plan_id = int(values, "plan_id").unwrap_or_default();
    let plan = sqlx::query(&format!(
        "SELECT service_id, approval_required FROM {plans_table} WHERE id = $1"
    ))
    .bind(plan_id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| ApiError::invalid("plan_id", "does not exist"))?;
    values.push(("service_id", Val::Int(plan.try_get("service_id")?)));
    let pending = plan.try_get::<i64, _>("approval_required")? != 0;
    values.push(("state", Val::Text(if pending { "pending" } else { "live" }.into())));
    Ok(())
}

pub async fn before_write(conn: &mut AnyConnection, id: Option<i64>, values: &mut Values) -> Result<(), ApiError> {
    match id {
        None => terms_from_plan(conn, "service_plans", values).await,
        Some(_) => Ok(()),
    }
}

/// Moves a contract (`table`: applications or service_subscriptions) to another plan of the
/// same service (`plans_table`).
pub async fn change_plan(
    conn: &mut AnyConnection,
    table: &str,
    plans_table: &str,
    account_id: i64,
    id: i64,
    plan_id: i64,
) -> Result<(), ApiError> {
    let service_id: i64 = sqlx::query_scalar(&format!(
        "SELECT service_id FROM {table} WHERE id = $1 AND account_id = $2"
    ))
    .bind(id)
    .bind(account_id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(ApiError::NotFound)?;
    let same_service: Option<i64> = sqlx::query_scalar(&format!(
        "SELECT id FROM {plans_table} WHERE id = $1 AND service_id = $2"
    ))
    .bind(plan_id)
    .bind(service_id)
    .fetch_optional(&mut *conn)
    .await?;
    if same_service.is_none() {
        return Err(ApiError::invalid("plan_id", "is not a plan of this service"));
    }
    sqlx::query(&format!(
        "UPDATE {table} SET plan_id = $1, updated_at = $2 WHERE id = $3"
    ))
    .bind(plan_id)
    .bind(crate::time::now())
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
