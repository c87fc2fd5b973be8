//! Credit rates (AIGNE Hub's model rates): what a unit of a metric costs, for every plan of the
//! service or one plan (`/admin/api/services/{service_id}/credit_rates.json`).

use crate::catalog::crud::{Entity, Parent};
use crate::catalog::resource::{field, int, owner, Behaviour, Kind, OnCreate, Resource, Write};
use crate::error::{Result, StoreError};
use crate::rows::decimal;
use async_trait::async_trait;
use sqlx::Row;
use tollgate_domain::credits::{to_units, Rate};
use tollgate_domain::ids::{MetricId, PlanId, ServiceId};

pub static CREDIT_RATE: Resource = Resource {
    name: "credit_rate",
    collection: "credit_rates",
    table: "credit_rates",
    scope: &["service_id"],
    fields: &[
        field("metric_id", Kind::Id, OnCreate::Required),
        field("credits_per_unit", Kind::Money, OnCreate::Required),
        field("upstream_cost_per_unit", Kind::Money, OnCreate::Default("0")),
        field("rate_type", Kind::Text, OnCreate::Optional),
        field("providers", Kind::Text, OnCreate::Optional),
        field("description", Kind::Text, OnCreate::Optional),
        field("application_plan_id", Kind::Id, OnCreate::Optional),
    ],
    unique_field: "metric_id",
    transitions: &[],
};

/// A rate's metric must be the service's (its own or a backend's it uses), and its plan one of
/// the service's application plans.
struct Rates;

#[async_trait]
impl Behaviour for Rates {
    async fn before_write(&self, w: Write<'_>) -> Result<()> {
        let service_id = owner(w.scope)?;
        if let Some(metric) = int(w.values, "metric_id") {
            let found: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM metrics WHERE id = $1 AND (service_id = $2
                   OR backend_id IN (SELECT backend_id FROM backend_usages WHERE service_id = $2))",
            )
            .bind(metric)
            .bind(service_id)
            .fetch_optional(&mut *w.conn)
            .await?;
            found.ok_or_else(|| StoreError::invalid("metric_id", "is not a metric of this service"))?;
        }
        if let Some(plan) = int(w.values, "application_plan_id") {
            let found: Option<i64> =
                sqlx::query_scalar("SELECT id FROM application_plans WHERE id = $1 AND service_id = $2")
                    .bind(plan)
                    .bind(service_id)
                    .fetch_optional(&mut *w.conn)
                    .await?;
            found.ok_or_else(|| {
                StoreError::invalid("application_plan_id", "is not an application plan of this service")
            })?;
        }
        Ok(())
    }
}

pub static CREDIT_RATES: Entity = Entity {
    resource: &CREDIT_RATE,
    parent: Parent::Service,
    behaviour: &Rates,
};

/// The service's credit rates.
pub(crate) async fn for_service(conn: &mut sqlx::AnyConnection, service: ServiceId) -> Result<Vec<Rate>> {
    sqlx::query("SELECT metric_id, application_plan_id, credits_per_unit, upstream_cost_per_unit FROM credit_rates WHERE service_id = $1")
        .bind(service.get())
        .fetch_all(conn)
        .await?
        .iter()
        .map(|r| {
            Ok(Rate {
                metric_id: MetricId::new(r.try_get("metric_id")?),
                application_plan_id: r.try_get::<Option<i64>, _>("application_plan_id")?.map(PlanId::new),
                units: to_units(decimal(r, "credits_per_unit")?).unwrap_or(i64::MAX),
                upstream_units: to_units(decimal(r, "upstream_cost_per_unit")?).unwrap_or(0),
            })
        })
        .collect()
}
