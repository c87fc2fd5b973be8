//! Backends (SPEC §3.1): APIs with their own metrics, methods and mapping rules, used by
//! services (products) under a path through backend usages.

use super::crud::{Entity, Parent};
use super::metrics::{create_hits, Owner};
use super::resource::{
    aliased, derive, field, fixed, int, text, Behaviour, Extra, Field, Kind, OnCreate, Record, Resource, Values, Write,
};
use crate::error::{Result, StoreError};
use async_trait::async_trait;
use sqlx::AnyConnection;
use tollgate_domain::catalog::system_name_from;
use tollgate_domain::ids::BackendId;

pub static BACKEND: Resource = Resource {
    name: "backend_api",
    collection: "backend_apis",
    table: "backend_apis",
    scope: &[],
    fields: &[
        field("name", Kind::Text, OnCreate::Required),
        fixed("system_name", Kind::SystemName, OnCreate::Derived),
        field("description", Kind::Text, OnCreate::Default("")),
        field("private_endpoint", Kind::Url, OnCreate::Default("")),
    ],
    unique_field: "system_name",
    transitions: &[],
};

pub static BACKEND_USAGE: Resource = Resource {
    name: "backend_usage",
    collection: "backend_usages",
    table: "backend_usages",
    scope: &["service_id"],
    fields: &[
        // 3scale takes `backend_api_id` and shows `backend_id`.
        Field {
            updatable: false,
            ..aliased("backend_id", "backend_api_id", Kind::Id, OnCreate::Required)
        },
        field("path", Kind::UsagePath, OnCreate::Default("/")),
    ],
    unique_field: "backend_id",
    transitions: &[],
};

/// A new backend gets a system name and its own `hits`; 3scale shows `annotations`.
struct Backends;

#[async_trait]
impl Behaviour for Backends {
    async fn before_write(&self, w: Write<'_>) -> Result<()> {
        if w.id.is_none() {
            let name = text(w.values, "name").unwrap_or_default().to_string();
            derive(w.values, "system_name", || system_name_from(&name));
        }
        Ok(())
    }

    async fn after_create(&self, conn: &mut AnyConnection, created: &Record, _values: &Values) -> Result<()> {
        create_hits(conn, Owner::Backend(BackendId::new(created.id()))).await?;
        Ok(())
    }

    async fn decorate(&self, _conn: &mut AnyConnection, items: &mut [Record]) -> Result<()> {
        for item in items {
            item.put("annotations", Extra::Empty);
        }
        Ok(())
    }
}

/// A usage names an existing backend.
struct Usages;

#[async_trait]
impl Behaviour for Usages {
    async fn before_write(&self, w: Write<'_>) -> Result<()> {
        let Some(backend) = int(w.values, "backend_id") else {
            return Ok(());
        };
        let found: Option<i64> = sqlx::query_scalar("SELECT id FROM backend_apis WHERE id = $1")
            .bind(backend)
            .fetch_optional(&mut *w.conn)
            .await?;
        found
            .map(|_| ())
            .ok_or_else(|| StoreError::invalid("backend_api_id", "does not exist"))
    }
}

pub static BACKENDS: Entity = Entity {
    resource: &BACKEND,
    parent: Parent::Root,
    behaviour: &Backends,
};
pub static BACKEND_USAGES: Entity = Entity {
    resource: &BACKEND_USAGE,
    parent: Parent::Service,
    behaviour: &Usages,
};
