//! Mapping rules of services and backends (3scale §19.4): `{http_method, pattern, metric,
//! delta, position, last}`. Patterns are validated here ([`validate_pattern`]); the filter
//! matches them.

use super::crud::{Entity, Parent};
use super::metrics::Owner;
use super::resource::{field, int, owner, text, Behaviour, Field, Kind, OnCreate, Resource, Val, Write};
use crate::error::{Result, StoreError};
use async_trait::async_trait;
use tollgate_domain::catalog::{validate_pattern, HTTP_METHODS};
use tollgate_domain::ids::{BackendId, ServiceId};

const FIELDS: &[Field] = &[
    field("http_method", Kind::OneOf(HTTP_METHODS), OnCreate::Required),
    field("pattern", Kind::Text, OnCreate::Required),
    field("metric_id", Kind::Id, OnCreate::Required),
    field("delta", Kind::Count, OnCreate::Required),
    field("position", Kind::Count, OnCreate::Derived),
    field("last", Kind::Bool, OnCreate::Default("false")),
];

pub static MAPPING_RULE: Resource = Resource {
    name: "mapping_rule",
    collection: "mapping_rules",
    table: "mapping_rules",
    scope: &["service_id"],
    fields: FIELDS,
    unique_field: "pattern",
    transitions: &[],
};
pub static BACKEND_MAPPING_RULE: Resource = Resource {
    name: "mapping_rule",
    collection: "mapping_rules",
    table: "mapping_rules",
    scope: &["backend_id"],
    fields: FIELDS,
    unique_field: "pattern",
    transitions: &[],
};

/// Checks the pattern, the metric's owner and the delta; appends new rules at the end.
struct Rules {
    of_backend: bool,
}

#[async_trait]
impl Behaviour for Rules {
    async fn before_write(&self, w: Write<'_>) -> Result<()> {
        if let Some(pattern) = text(w.values, "pattern") {
            validate_pattern(pattern).map_err(|e| StoreError::invalid("pattern", e))?;
        }
        if int(w.values, "delta") == Some(0) {
            return Err(StoreError::invalid("delta", "must be greater than 0"));
        }
        let id = owner(w.scope)?;
        let owner = match self.of_backend {
            true => Owner::Backend(BackendId::new(id)),
            false => Owner::Service(ServiceId::new(id)),
        };
        let (column, owner_id) = owner.column();
        if let Some(metric_id) = int(w.values, "metric_id") {
            // A service's rules may count its own metrics or those of the backends it uses.
            let sql = match owner {
                Owner::Service(_) => {
                    "SELECT id FROM metrics WHERE id = $1 AND (service_id = $2 OR backend_id IN
                       (SELECT backend_id FROM backend_usages WHERE service_id = $2))"
                }
                Owner::Backend(_) => "SELECT id FROM metrics WHERE id = $1 AND backend_id = $2",
            };
            let found: Option<i64> = sqlx::query_scalar(sql)
                .bind(metric_id)
                .bind(owner_id)
                .fetch_optional(&mut *w.conn)
                .await?;
            if found.is_none() {
                return Err(StoreError::invalid("metric_id", "does not exist here"));
            }
        }
        if w.id.is_none() && int(w.values, "position").is_none() {
            let next: i64 = sqlx::query_scalar(&format!(
                "SELECT COALESCE(MAX(position), 0) + 1 FROM mapping_rules WHERE {column} = $1"
            ))
            .bind(owner_id)
            .fetch_one(&mut *w.conn)
            .await?;
            w.values.push(("position", Val::Int(next)));
        }
        Ok(())
    }
}

pub static MAPPING_RULES: Entity = Entity {
    resource: &MAPPING_RULE,
    parent: Parent::Service,
    behaviour: &Rules { of_backend: false },
};
pub static BACKEND_MAPPING_RULES: Entity = Entity {
    resource: &BACKEND_MAPPING_RULE,
    parent: Parent::Backend,
    behaviour: &Rules { of_backend: true },
};
