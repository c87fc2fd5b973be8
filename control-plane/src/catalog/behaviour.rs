//! What happens around a catalog write beyond storing fields: derived system names, a new
//! service's built-in `hits` metric and default rule, mapping-rule patterns and metric
//! ownership, pricing tiers that must not overlap, and the extra fields 3scale shows.
//! Each runs inside the write's transaction.

use super::metrics::Owner;
use super::resource::{Val, Values};
use super::{accounts, applications, mapping_rules, metrics, plans, services, subscriptions};
use crate::contracts::{self, ContractType};
use crate::error::ApiError;
use crate::params::Params;
use serde_json::Value;
use sqlx::AnyConnection;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Plain,
    Service,
    Backend,
    Metric,
    BackendMetric,
    MappingRule,
    BackendMappingRule,
    BackendUsage,
    Plan(plans::PlanKind),
    PricingRule,
    Application,
    User,
    ServiceSubscription,
    Account,
    CreditRate,
}

/// Sets a derived value unless the client gave one.
pub fn derive(values: &mut Values, name: &'static str, value: impl FnOnce() -> String) {
    if !values.iter().any(|(n, _)| *n == name) {
        values.push((name, Val::Text(value())));
    }
}

pub fn text<'v>(values: &'v Values, name: &str) -> Option<&'v str> {
    values.iter().find(|(n, _)| *n == name).and_then(|(_, v)| match v {
        Val::Text(s) => Some(s.as_str()),
        _ => None,
    })
}

pub fn int(values: &Values, name: &str) -> Option<i64> {
    values.iter().find(|(n, _)| *n == name).and_then(|(_, v)| match v {
        Val::Int(i) => Some(*i),
        _ => None,
    })
}

fn first(scope: &[i64]) -> Result<i64, ApiError> {
    scope
        .first()
        .copied()
        .ok_or_else(|| ApiError::Internal("resource mounted without its owner".into()))
}

/// Before insert (`id` None) or update.
pub async fn before_write(
    b: Behaviour,
    conn: &mut AnyConnection,
    scope: &[i64],
    id: Option<i64>,
    p: &Params,
    values: &mut Values,
) -> Result<(), ApiError> {
    match b {
        Behaviour::Plain => Ok(()),
        Behaviour::Account => accounts::before_write(values),
        Behaviour::Service => services::before_write(id, values),
        Behaviour::Backend => {
            if id.is_none() {
                let name = text(values, "name").unwrap_or_default().to_string();
                derive(values, "system_name", || super::system_name_from(&name));
            }
            Ok(())
        }
        Behaviour::Metric => metrics::before_write(id, None, values),
        Behaviour::BackendMetric => metrics::before_write(id, Some(first(scope)?), values),
        Behaviour::MappingRule => mapping_rules::before_write(conn, Owner::Service(first(scope)?), id, values).await,
        Behaviour::BackendMappingRule => {
            mapping_rules::before_write(conn, Owner::Backend(first(scope)?), id, values).await
        }
        Behaviour::BackendUsage => match int(values, "backend_id") {
            Some(backend) => {
                let found: Option<i64> = sqlx::query_scalar("SELECT id FROM backend_apis WHERE id = $1")
                    .bind(backend)
                    .fetch_optional(&mut *conn)
                    .await?;
                found
                    .map(|_| ())
                    .ok_or_else(|| ApiError::invalid("backend_api_id", "does not exist"))
            }
            None => Ok(()),
        },
        Behaviour::Plan(_) => plans::before_write(id, p, values),
        Behaviour::ServiceSubscription => subscriptions::before_write(conn, id, values).await,
        Behaviour::PricingRule => plans::pricing_rule_before_write(conn, scope, id, values).await,
        Behaviour::Application => applications::before_write(conn, id, p, values).await,
        Behaviour::User => accounts::check_email(values),
        Behaviour::CreditRate => crate::credits::rate_before_write(conn, scope, values).await,
    }
}

pub async fn after_create(b: Behaviour, conn: &mut AnyConnection, p: &Params, item: &Value) -> Result<(), ApiError> {
    let id = item["id"]
        .as_i64()
        .ok_or_else(|| ApiError::Internal("created row has no id".into()))?;
    match b {
        Behaviour::Service => services::after_create(conn, id).await,
        Behaviour::Backend => metrics::create_hits(conn, metrics::Owner::Backend(id))
            .await
            .map(|_| ()),
        Behaviour::Application => applications::after_create(conn, id, p).await,
        _ => Ok(()),
    }
}

/// Events beyond the resource's state machine: `default` for plans, `change_plan` for
/// contracts. `Ok(false)`: not one of them.
pub async fn event(
    b: Behaviour,
    conn: &mut AnyConnection,
    scope: &[i64],
    item: &Value,
    event: &str,
    p: &Params,
) -> Result<bool, ApiError> {
    let id = item["id"].as_i64().unwrap_or_default();
    match (b, event) {
        (Behaviour::Plan(kind), "default") => kind.set_default(conn, item).await.map(|_| true),
        (Behaviour::Application, "customize_plan") => applications::customize_plan(conn, item).await.map(|_| true),
        (Behaviour::Application, "decustomize_plan") => applications::decustomize_plan(conn, item).await.map(|_| true),
        (Behaviour::Application | Behaviour::ServiceSubscription | Behaviour::Account, "change_plan") => {
            let plan_id = p
                .parse::<i64>("plan_id")?
                .ok_or_else(|| ApiError::invalid("plan_id", "can't be blank"))?;
            let kind = match b {
                Behaviour::Application => ContractType::Application,
                Behaviour::ServiceSubscription => ContractType::Service,
                _ => ContractType::Account,
            };
            // The history first, while the contract is still on its old plan; the change
            // below validates the new one, and a failure rolls both back.
            contracts::change_plan(conn, kind, id, plan_id, chrono::Utc::now().date_naive()).await?;
            match b {
                Behaviour::Application => {
                    subscriptions::change_plan(conn, "applications", "application_plans", first(scope)?, id, plan_id)
                        .await?
                }
                Behaviour::ServiceSubscription => {
                    subscriptions::change_plan(
                        conn,
                        "service_subscriptions",
                        "service_plans",
                        first(scope)?,
                        id,
                        plan_id,
                    )
                    .await?
                }
                _ => accounts::change_plan(conn, id, plan_id).await?,
            }
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Adds the fields 3scale shows that are not columns.
pub async fn decorate(b: Behaviour, conn: &mut AnyConnection, item: &mut Value) -> Result<(), ApiError> {
    match b {
        Behaviour::Metric | Behaviour::BackendMetric => {
            item["name"] = item["system_name"].clone();
            Ok(())
        }
        Behaviour::Service | Behaviour::Backend => {
            item["annotations"] = serde_json::json!({});
            Ok(())
        }
        Behaviour::Plan(kind) => plans::decorate(kind, conn, item).await,
        Behaviour::Account => accounts::decorate(conn, item).await,
        _ => Ok(()),
    }
}
