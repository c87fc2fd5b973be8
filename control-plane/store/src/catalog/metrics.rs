//! Metrics and methods of services and backends. Methods are children of `hits`; the
//! hierarchy is stored generally (`parent_id`), so usage of a child also counts for its parent.

use super::crud::{Entity, Parent};
use super::resource::{
    derive, field, fixed, owner, text, Behaviour, Extra, Field, Kind, OnCreate, Record, Resource, Val, Write,
};
use crate::error::Result;
use crate::time::now;
use async_trait::async_trait;
use sqlx::AnyConnection;
use tollgate_domain::catalog::system_name_from;
use tollgate_domain::ids::{BackendId, MetricId, ServiceId};

/// Metrics name their unit; methods count hits of their parent.
const FIELDS: &[Field] = &[
    field("friendly_name", Kind::Text, OnCreate::Required),
    fixed("system_name", Kind::SystemName, OnCreate::Derived),
    field("unit", Kind::Text, OnCreate::Required),
    field("description", Kind::Text, OnCreate::Default("")),
];
const METHOD_FIELDS: &[Field] = &[
    field("friendly_name", Kind::Text, OnCreate::Required),
    fixed("system_name", Kind::SystemName, OnCreate::Derived),
    field("unit", Kind::Text, OnCreate::Default("hit")),
    field("description", Kind::Text, OnCreate::Default("")),
];

pub static METRIC: Resource = Resource {
    name: "metric",
    collection: "metrics",
    table: "metrics",
    scope: &["service_id"],
    fields: FIELDS,
    unique_field: "system_name",
    transitions: &[],
};
pub static METHOD: Resource = Resource {
    name: "method",
    collection: "methods",
    table: "metrics",
    scope: &["service_id", "parent_id"],
    fields: METHOD_FIELDS,
    unique_field: "system_name",
    transitions: &[],
};
pub static BACKEND_METRIC: Resource = Resource {
    name: "metric",
    collection: "metrics",
    table: "metrics",
    scope: &["backend_id"],
    fields: FIELDS,
    unique_field: "system_name",
    transitions: &[],
};
pub static BACKEND_METHOD: Resource = Resource {
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
struct Metrics {
    of_backend: bool,
}

#[async_trait]
impl Behaviour for Metrics {
    async fn before_write(&self, w: Write<'_>) -> Result<()> {
        if w.id.is_some() {
            return Ok(());
        }
        let name = text(w.values, "friendly_name").unwrap_or_default().to_string();
        derive(w.values, "system_name", || system_name_from(&name));
        if self.of_backend {
            let suffix = format!(".{}", owner(w.scope)?);
            for (n, v) in w.values.iter_mut() {
                if let (&mut "system_name", Val::Text(s)) = (n, v) {
                    if !s.ends_with(&suffix) {
                        s.push_str(&suffix);
                    }
                }
            }
        }
        Ok(())
    }

    /// 3scale shows a metric's `name` (its system name).
    async fn decorate(&self, _conn: &mut AnyConnection, items: &mut [Record]) -> Result<()> {
        for item in items {
            let name = item.text("system_name").unwrap_or_default().to_string();
            item.put("name", Extra::Text(name));
        }
        Ok(())
    }
}

pub static METRICS: Entity = Entity {
    resource: &METRIC,
    parent: Parent::Service,
    behaviour: &Metrics { of_backend: false },
};
pub static METHODS: Entity = Entity {
    resource: &METHOD,
    parent: Parent::ServiceMetric,
    behaviour: &Metrics { of_backend: false },
};
pub static BACKEND_METRICS: Entity = Entity {
    resource: &BACKEND_METRIC,
    parent: Parent::Backend,
    behaviour: &Metrics { of_backend: true },
};
pub static BACKEND_METHODS: Entity = Entity {
    resource: &BACKEND_METHOD,
    parent: Parent::BackendMetric,
    behaviour: &Metrics { of_backend: true },
};

/// Whose metrics and mapping rules: a service's or a backend's.
#[derive(Debug, Clone, Copy)]
pub enum Owner {
    Service(ServiceId),
    Backend(BackendId),
}

impl Owner {
    /// The column naming the owner, and its id.
    pub fn column(self) -> (&'static str, i64) {
        match self {
            Owner::Service(id) => ("service_id", id.get()),
            Owner::Backend(id) => ("backend_id", id.get()),
        }
    }
}

/// Creates the built-in `hits` metric; returns its id.
pub async fn create_hits(conn: &mut AnyConnection, owner: Owner) -> Result<MetricId> {
    let (column, id) = owner.column();
    let system_name = match owner {
        Owner::Service(_) => "hits".to_string(),
        Owner::Backend(id) => format!("hits.{id}"),
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
    Ok(MetricId::new(id))
}
