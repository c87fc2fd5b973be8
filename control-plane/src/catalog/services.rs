//! Services (API products). A new service gets the built-in `hits` metric, 3scale's default
//! mapping rule (`GET /` → hits), a default service plan, default proxy settings and a service
//! token for gateways.

use super::behaviour::{derive, text};
use super::metrics::{self, Owner};
use super::proxy::ProxySettings;
use super::resource::{field, fixed, Kind, OnCreate, Resource, Val, Values};
use crate::auth::generate_token;
use crate::db::{Db, Row};
use crate::error::ApiError;
use crate::time::now;
use sqlx::{AnyConnection, Row as _};

pub const SERVICE: Resource = Resource {
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
            Kind::OneOf(&["1", "2", "oidc"]),
            OnCreate::Default("1"),
        ),
        field(
            "state",
            Kind::OneOf(&["incomplete", "published", "hidden"]),
            OnCreate::Default("incomplete"),
        ),
    ],
    unique_field: "system_name",
    transitions: &[],
};

pub fn before_write(id: Option<i64>, values: &mut Values) -> Result<(), ApiError> {
    if id.is_none() {
        let name = text(values, "name").unwrap_or_default().to_string();
        derive(values, "system_name", || super::system_name_from(&name));
        values.push(("service_token", Val::Text(generate_token())));
    }
    Ok(())
}

pub async fn after_create(conn: &mut AnyConnection, service_id: i64) -> Result<(), ApiError> {
    let hits = metrics::create_hits(conn, Owner::Service(service_id)).await?;
    let ts = now();
    sqlx::query(
        "INSERT INTO mapping_rules (service_id, metric_id, http_method, pattern, delta, position, last, created_at, updated_at)
         VALUES ($1, $2, 'GET', '/', 1, 1, 0, $3, $3)",
    )
    .bind(service_id)
    .bind(hits)
    .bind(&ts)
    .execute(&mut *conn)
    .await?;
    let ts2 = ts.clone();
    let plan_id: i64 = sqlx::query_scalar(
        "INSERT INTO service_plans (service_id, name, system_name, state, created_at, updated_at)
         VALUES ($1, 'Default', 'default', 'published', $2, $2) RETURNING id",
    )
    .bind(service_id)
    .bind(&ts2)
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query("UPDATE services SET default_service_plan_id = $1 WHERE id = $2")
        .bind(plan_id)
        .bind(service_id)
        .execute(&mut *conn)
        .await?;
    let settings = serde_json::to_string(&ProxySettings::default()).map_err(|e| ApiError::Internal(e.to_string()))?;
    sqlx::query("INSERT INTO proxies (service_id, settings, updated_at) VALUES ($1, $2, $3)")
        .bind(service_id)
        .bind(settings)
        .bind(&ts)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// A service as the service-management API needs it (with its token).
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub id: i64,
    pub name: String,
    pub system_name: String,
    pub backend_version: String,
    pub service_token: String,
    pub updated_at: String,
}

fn from_row(r: &Row) -> Result<Service, sqlx::Error> {
    Ok(Service {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        system_name: r.try_get("system_name")?,
        backend_version: r.try_get("backend_version")?,
        service_token: r.try_get("service_token")?,
        updated_at: r.try_get("updated_at")?,
    })
}

pub async fn find(db: &Db, id: i64) -> Result<Service, ApiError> {
    let row = sqlx::query(
        "SELECT id, name, system_name, backend_version, service_token, updated_at FROM services WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&db.pool)
    .await?
    .ok_or(ApiError::NotFound)?;
    Ok(from_row(&row)?)
}
