//! Service subscriptions: an account's contract with a service under a service plan (3scale's
//! service contracts), and what every contract shares — its terms from its plan, and moving it
//! to another plan with its plan history.

use super::crud::{Entity, Parent};
use super::resource::{
    event, fixed, int, owner, Behaviour, EventInput, Kind, OnCreate, Record, Resource, Val, Values, Write,
};
use crate::contracts::{self, ContractType};
use crate::error::{Result, StoreError};
use async_trait::async_trait;
use sqlx::{AnyConnection, Row};
use tollgate_domain::catalog::ApplicationState;
use tollgate_domain::ids::PlanId;

pub static SERVICE_SUBSCRIPTION: Resource = Resource {
    name: "service_subscription",
    collection: "service_subscriptions",
    table: "service_subscriptions",
    scope: &["account_id"],
    fields: &[
        fixed("plan_id", Kind::Id, OnCreate::Required),
        fixed("service_id", Kind::Id, OnCreate::Derived),
        fixed("state", Kind::OneOf(ApplicationState::WORDS), OnCreate::Derived),
    ],
    unique_field: "service_id",
    transitions: &[event("approve", &["pending"], "live")],
};

/// A new contract's terms from its plan (in `plans_table`): the service, and a state of
/// `pending` when the plan needs approval, else `live`.
pub async fn terms_from_plan(conn: &mut AnyConnection, plans_table: &str, values: &mut Values) -> Result<()> {
    let plan_id = int(values, "plan_id").unwrap_or_default();
    let plan = sqlx::query(&format!(
        "SELECT service_id, approval_required FROM {plans_table} WHERE id = $1"
    ))
    .bind(plan_id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| StoreError::invalid("plan_id", "does not exist"))?;
    values.push(("service_id", Val::Int(plan.try_get("service_id")?)));
    let state = match plan.try_get::<i64, _>("approval_required")? != 0 {
        true => ApplicationState::Pending,
        false => ApplicationState::Live,
    };
    values.push(("state", Val::Text(state.as_str().into())));
    Ok(())
}

/// Moves a contract (`table`: applications or service_subscriptions) to another plan of the
/// same service (`plans_table`), recording the plan history first (while the contract is still
/// on its old plan; a failure rolls both back).
pub async fn change_plan(
    conn: &mut AnyConnection,
    kind: ContractType,
    account_id: i64,
    id: i64,
    plan: PlanId,
) -> Result<()> {
    let (table, plans_table) = match kind {
        ContractType::Application => ("applications", "application_plans"),
        _ => ("service_subscriptions", "service_plans"),
    };
    let service_id: i64 = sqlx::query_scalar(&format!(
        "SELECT service_id FROM {table} WHERE id = $1 AND account_id = $2"
    ))
    .bind(id)
    .bind(account_id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(StoreError::NotFound)?;
    let same_service: Option<i64> = sqlx::query_scalar(&format!(
        "SELECT id FROM {plans_table} WHERE id = $1 AND service_id = $2"
    ))
    .bind(plan.get())
    .bind(service_id)
    .fetch_optional(&mut *conn)
    .await?;
    if same_service.is_none() {
        return Err(StoreError::invalid("plan_id", "is not a plan of this service"));
    }
    contracts::change_plan(conn, kind, id, plan, chrono::Utc::now().date_naive()).await?;
    sqlx::query(&format!(
        "UPDATE {table} SET plan_id = $1, updated_at = $2 WHERE id = $3"
    ))
    .bind(plan.get())
    .bind(crate::time::now())
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Takes its terms from its service plan; moves to another (`change_plan`).
struct Subscriptions;

#[async_trait]
impl Behaviour for Subscriptions {
    async fn before_write(&self, w: Write<'_>) -> Result<()> {
        match w.id {
            None => terms_from_plan(w.conn, "service_plans", w.values).await,
            Some(_) => Ok(()),
        }
    }

    fn events(&self) -> &'static [&'static str] {
        &["change_plan"]
    }

    async fn event(&self, conn: &mut AnyConnection, scope: &[i64], current: &Record, e: &EventInput) -> Result<()> {
        change_plan(conn, ContractType::Service, owner(scope)?, current.id(), e.plan()?).await
    }
}

pub static SERVICE_SUBSCRIPTIONS: Entity = Entity {
    resource: &SERVICE_SUBSCRIPTION,
    parent: Parent::Account,
    behaviour: &Subscriptions,
};
