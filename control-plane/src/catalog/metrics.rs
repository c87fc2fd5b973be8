//! Metrics and methods of services and backends. Methods are children of `hits`; the
//! hierarchy is stored generally (`parent_id`), so usage of a child also counts for its parent.

use super::behaviour::{derive, text};
use super::resource::{field, fixed, Kind, OnCreate, Resource, Val, Values};
use crate::error::ApiError;
use crate::time::now;
use sqlx::AnyConnection;

/// Metrics name their unit; methods count hits of their parent.
const FIELDS: &[super::resource::Field] = &[
    field("friendly_name", Kind::Text, OnCreate::Required),
    fixed("system_name", Kind::SystemName, OnCreate::Derived),
    field("unit", Kind::Text, OnCreate::Required),
    field("description", Kind::Text, OnCreate::Default("")),
];
const METHOD_FIELDS: &[super::resource::Field] = &[
    field("friendly_name", Kind::Text, OnCreate::Required),
    fixed("system_name", Kind::SystemName, OnCreate::Derived),
    field("unit", Kind::Text, OnCreate::Default("hit")),
    field("description", Kind::Text, OnCreate::Default("")),
];

pub const METRIC: Resource = Resource {
    name: "metric",
    collection: "metrics",
    table: "metrics",
    scope: &["service_id"],
    fields: FIELDS,
    unique_field: "system_name",
    transitions: &[],
};
pub const METHOD: Resource = Resource {
    name: "method",
    collection: "methods",
    table: "metrics",
    scope: &["service_id", "parent_id"],
    fields: METHOD_FIELDS,
    unique_field: "system_name",
    transitions: &[],
};
pub const BACKEND_METRIC: Resource = Resource {
    name: "metric",
    collection: "metrics",
    table: "metrics",
    scope: &["backend_id"],
    fields: FIELDS,
    unique_field: "system_name",
    transitions: &[],
};
pub const BACKEND_METHOD: Resource = Resource {
    name: "method",
    collection: "methods",
    table: "metrics",
    scope: &["backend_id", "parent_id"],
    fields: METHOD_FIELDS,
    unique_field: "system_name",
    transitions: &[],
};

/// Derives the system name. A backend's metrics carry the backend's id as a suffix
/// (`hits.7`), as in 3scale, so they stay unique when products merge several backends.
pub fn before_write(id: Option<i64>, backend: Option<i64>, values: &mut Values) -> Result<(), ApiError> {
    if id.is_none() {
        let name = text(values, "friendly_name").unwrap_or_default().to_string();
        derive(values, "system_name", || super::system_name_from(&name));
        if let Some(backend) = backend {
            let suffix = format!(".{backend}");
            for (n, v) in values.iter_mut() {
                if let (&mut "system_name", Val::Text(s)) = (n, v) {
                    if !s.ends_with(&suffix) {
                        s.push_str(&suffix);
                    }
                }
            }
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
pub enum Owner {
    Service(i64),
    Backend(i64),
}

/// Creates the built-in `hits` metric; returns its id.
pub async fn create_hits(conn: &mut AnyConnection, owner: Owner) -> Result<i64, ApiError> {
    let (column, id, system_name) = match owner {
        Owner::Service(id) => ("service_id", id, "hits".to_string()),
        Owner::Backend(id) => ("backend_id", id, format!("hits.{id}")),
    };
    let id: i64 = sqlx::query_scalar(&format!(
        "INSERT INTO metrics ({column}, system_name, friendly_name, unit, description, created_at, updated_at)
         VALUES ($1, $3, 'Hits', 'hit', 'Number of API hits', $2, $2) RETURNING id"
    ))
    .bind(id)
    .bind(now())
    .bind(system_name)
    .fetch_one(&mut *conn)
    .await?;
    Ok(id)
}
