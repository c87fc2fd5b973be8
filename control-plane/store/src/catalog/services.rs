//! Services (API products). A new service gets the built-in `hits` metric, 3scale's default
//! mapping rule (`GET /` → hits), a default service plan, default proxy settings and a service
//! token for gateways.

use super::crud::{Entity, Parent};
use super::metrics::{create_hits, Owner};
use super::resource::{
    derive, field, fixed, text, Behaviour, Extra, Kind, OnCreate, Record, Resource, Val, Values, Write,
};
use crate::auth::generate_token;
use crate::db::Db;
use crate::error::{Result, StoreError};
use crate::time::now;
use async_trait::async_trait;
use sqlx::{AnyConnection, Row};
use tollgate_domain::catalog::{system_name_from, BackendVersion, Service};
use tollgate_domain::ids::ServiceId;
use tollgate_domain::proxy::ProxySettings;

pub static SERVICE: Resource = Resource {
    name: "service",
    collection: "services",
    table: "services",
    scope: &[],
    fields: &[
        field("name", Kind::Text, OnCreate::Required),
        fixed("system_name", Kind::SystemName, OnCreate::Derived),
        field("description", Kind::Text, OnCreate::Default("")),
        field(
            "backend_version",
            Kind::OneOf(BackendVersion::WORDS),
            OnCreate::Default("1"),
        ),
        field(
            "state",
            Kind::OneOf(&["incomplete", "published", "hidden"]),
            OnCreate::Default("incomplete"),
        ),
        field("notification_settings", Kind::Levels, OnCreate::Optional),
    ],
    unique_field: "system_name",
    transitions: &[],
};

struct Services;

#[async_trait]
impl Behaviour for Services {
    async fn before_write(&self, w: Write<'_>) -> Result<()> {
        if w.id.is_none() {
            let name = text(w.values, "name").unwrap_or_default().to_string();
            derive(w.values, "system_name", || system_name_from(&name));
            w.values.push(("service_token", Val::Text(generate_token())));
        }
        Ok(())
    }

    async fn after_create(&self, conn: &mut AnyConnection, created: &Record, _values: &Values) -> Result<()> {
        let service_id = created.id();
        let hits = create_hits(conn, Owner::Service(ServiceId::new(service_id))).await?;
        let ts = now();
        sqlx::query(
            "INSERT INTO mapping_rules (service_id, metric_id, http_method, pattern, delta, position, last, created_at, updated_at)
             VALUES ($1, $2, 'GET', '/', 1, 1, 0, $3, $3)",
        )
        .bind(service_id)
        .bind(hits.get())
        .bind(&ts)
        .execute(&mut *conn)
        .await?;
        let plan_id: i64 = sqlx::query_scalar(
            "INSERT INTO service_plans (service_id, name, system_name, state, created_at, updated_at)
             VALUES ($1, 'Default', 'default', 'published', $2, $2) RETURNING id",
        )
        .bind(service_id)
        .bind(&ts)
        .fetch_one(&mut *conn)
        .await?;
        sqlx::query("UPDATE services SET default_service_plan_id = $1 WHERE id = $2")
            .bind(plan_id)
            .bind(service_id)
            .execute(&mut *conn)
            .await?;
        let settings =
            serde_json::to_string(&ProxySettings::default()).map_err(|e| StoreError::Internal(e.to_string()))?;
        sqlx::query("INSERT INTO proxies (service_id, settings, updated_at) VALUES ($1, $2, $3)")
            .bind(service_id)
            .bind(settings)
            .bind(&ts)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    async fn decorate(&self, _conn: &mut AnyConnection, items: &mut [Record]) -> Result<()> {
        for item in items {
            item.put("annotations", Extra::Empty);
        }
        Ok(())
    }
}

pub static SERVICES: Entity = Entity {
    resource: &SERVICE,
    parent: Parent::Root,
    behaviour: &Services,
};

pub async fn find(db: &Db, id: ServiceId) -> Result<Service> {
    let r = sqlx::query(
        "SELECT id, name, system_name, backend_version, service_token, updated_at FROM services WHERE id = $1",
    )
    .bind(id.get())
    .fetch_optional(&db.pool)
    .await?
    .ok_or(StoreError::NotFound)?;
    let version: String = r.try_get("backend_version")?;
    Ok(Service {
        id: ServiceId::new(r.try_get("id")?),
        name: r.try_get("name")?,
        system_name: r.try_get("system_name")?,
        backend_version: BackendVersion::parse(&version)
            .ok_or_else(|| StoreError::Internal(format!("backend_version `{version}`")))?,
        service_token: r.try_get("service_token")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// The service an application plan belongs to; `None`: no such plan.
pub async fn of_plan(conn: &mut AnyConnection, plan: tollgate_domain::ids::PlanId) -> Result<Option<ServiceId>> {
    let id: Option<i64> = sqlx::query_scalar("SELECT service_id FROM application_plans WHERE id = $1")
        .bind(plan.get())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(id.map(ServiceId::new))
}
