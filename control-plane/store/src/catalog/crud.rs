//! The catalog's operations over any [`Entity`]: list, find, create, update, event, delete.
//! Each write is one transaction (a write transaction from its start: see
//! [`crate::db::Db::begin_write`]) that checks the URL's parents, runs the entity's
//! [`Behaviour`] and writes — so nothing is half-written. Lists are decorated in one query and
//! always bounded by a page.

use super::resource::{Behaviour, EventInput, Listing, Record, Resource, Values, Write};
use super::webhook_events;
use crate::db::Db;
use crate::error::{Result, StoreError};
use sqlx::AnyConnection;
use tollgate_domain::form::Page;

/// Where a resource hangs, i.e. which ids make up its scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parent {
    /// Top level: no scope.
    Root,
    /// A service.
    Service,
    /// A service and its `hits` metric: methods, which only `hits` has (3scale §19).
    ServiceMetric,
    /// A backend.
    Backend,
    /// A backend and its `hits`.
    BackendMetric,
    /// An application plan and a metric of its service or its backends.
    PlanMetric,
    /// A developer account.
    Account,
}

impl Parent {
    /// The path parameters that make up the scope, in order.
    pub fn params(self) -> &'static [&'static str] {
        match self {
            Parent::Root => &[],
            Parent::Service => &["service_id"],
            Parent::ServiceMetric => &["service_id", "metric_id"],
            Parent::Backend => &["backend_id"],
            Parent::BackendMetric => &["backend_id", "metric_id"],
            Parent::PlanMetric => &["plan_id", "metric_id"],
            Parent::Account => &["account_id"],
        }
    }

    /// The query that finds a row when the parents exist and own each other (bound in the
    /// order of [`Parent::params`]).
    fn lookup(self) -> &'static str {
        match self {
            Parent::Root => "",
            Parent::Service => "SELECT id FROM services WHERE id = $1",
            Parent::ServiceMetric => {
                "SELECT id FROM metrics WHERE service_id = $1 AND id = $2 AND parent_id IS NULL AND system_name = 'hits'"
            }
            Parent::Backend => "SELECT id FROM backend_apis WHERE id = $1",
            Parent::BackendMetric => {
                "SELECT id FROM metrics WHERE backend_id = $1 AND id = $2 AND parent_id IS NULL AND system_name LIKE 'hits.%'"
            }
            Parent::PlanMetric => {
                "SELECT m.id FROM metrics m, application_plans p WHERE p.id = $1 AND m.id = $2 AND
                   (m.service_id = p.service_id OR m.backend_id IN
                      (SELECT backend_id FROM backend_usages u WHERE u.service_id = p.service_id))"
            }
            Parent::Account => "SELECT id FROM accounts WHERE id = $1",
        }
    }

    /// Not found unless the scope's parents exist and own each other.
    pub async fn check(self, conn: &mut AnyConnection, scope: &[i64]) -> Result<()> {
        if scope.is_empty() {
            return Ok(());
        }
        let mut q = sqlx::query_scalar::<_, i64>(self.lookup());
        for id in scope {
            q = q.bind(*id);
        }
        q.fetch_optional(&mut *conn)
            .await?
            .map(|_| ())
            .ok_or(StoreError::NotFound)
    }
}

/// A resource with its place and its behaviour.
pub struct Entity {
    pub resource: &'static Resource,
    pub parent: Parent,
    pub behaviour: &'static dyn Behaviour,
}

impl Entity {
    /// Every event the entity takes: its transitions' and its behaviour's.
    pub fn events(&self) -> Vec<&'static str> {
        let mut events: Vec<&'static str> = self.resource.transitions.iter().map(|t| t.event).collect();
        events.extend(self.behaviour.events());
        events
    }
}

async fn decorated(e: &Entity, conn: &mut AnyConnection, mut items: Vec<Record>) -> Result<Vec<Record>> {
    e.behaviour.decorate(conn, &mut items).await?;
    Ok(items)
}

async fn decorated_one(e: &Entity, conn: &mut AnyConnection, item: Record) -> Result<Record> {
    decorated(e, conn, vec![item])
        .await?
        .pop()
        .ok_or_else(|| StoreError::Internal("decorating lost the record".into()))
}

/// One page of the rows in `scope`, optionally only those whose `column` is one of `ids`.
pub async fn list(db: &Db, e: &Entity, scope: &[i64], only: Option<(&str, &[i64])>, page: Page) -> Result<Vec<Record>> {
    list_listed(db, e, scope, only, &Listing::default(), page).await
}

/// [`list`], searched and ordered as `listing` says (the console's tables).
pub async fn list_listed(
    db: &Db,
    e: &Entity,
    scope: &[i64],
    only: Option<(&str, &[i64])>,
    listing: &Listing<'_>,
    page: Page,
) -> Result<Vec<Record>> {
    let mut conn = db.pool.acquire().await?;
    e.parent.check(&mut conn, scope).await?;
    let items = e
        .resource
        .select_listed(&mut conn, &e.resource.scope_filters(scope), only, listing, page)
        .await?;
    decorated(e, &mut conn, items).await
}

/// How many records [`list`] pages through.
pub async fn count(db: &Db, e: &Entity, scope: &[i64], only: Option<(&str, &[i64])>) -> Result<i64> {
    count_listed(db, e, scope, only, &Listing::default()).await
}

/// How many records [`list_listed`] pages through.
pub async fn count_listed(
    db: &Db,
    e: &Entity,
    scope: &[i64],
    only: Option<(&str, &[i64])>,
    listing: &Listing<'_>,
) -> Result<i64> {
    let mut conn = db.pool.acquire().await?;
    e.resource
        .count_listed(&mut conn, &e.resource.scope_filters(scope), only, listing)
        .await
}

pub async fn find(db: &Db, e: &Entity, scope: &[i64], id: i64) -> Result<Record> {
    let mut conn = db.pool.acquire().await?;
    e.parent.check(&mut conn, scope).await?;
    let item = e.resource.find(&mut conn, scope, id).await?;
    decorated_one(e, &mut conn, item).await
}

/// Creates a row in `scope` inside `conn`'s transaction (signup creates several in one).
pub async fn create_in(conn: &mut AnyConnection, e: &Entity, scope: &[i64], mut values: Values) -> Result<Record> {
    e.parent.check(conn, scope).await?;
    e.behaviour
        .before_write(Write {
            conn: &mut *conn,
            scope,
            id: None,
            values: &mut values,
        })
        .await?;
    let item = e.resource.insert(conn, scope, &values).await?;
    e.behaviour.after_create(conn, &item, &values).await?;
    let item = decorated_one(e, conn, item).await?;
    webhook_events::changed(conn, "created", &item).await?;
    tracing::info!(entity = e.resource.name, id = item.id(), "created");
    Ok(item)
}

pub async fn create(db: &Db, e: &Entity, scope: &[i64], values: Values) -> Result<Record> {
    let mut tx = db.begin_write().await?;
    let item = create_in(&mut tx, e, scope, values).await?;
    tx.commit().await?;
    Ok(item)
}

pub async fn update(db: &Db, e: &Entity, scope: &[i64], id: i64, mut values: Values) -> Result<Record> {
    let mut tx = db.begin_write().await?;
    e.parent.check(&mut tx, scope).await?;
    let before = e.resource.find(&mut tx, scope, id).await?;
    e.behaviour
        .before_write(Write {
            conn: &mut tx,
            scope,
            id: Some(id),
            values: &mut values,
        })
        .await?;
    let item = e.resource.update(&mut tx, scope, id, &values).await?;
    let item = decorated_one(e, &mut tx, item).await?;
    webhook_events::changed(&mut tx, "updated", &item).await?;
    if webhook_events::type_of(e.resource.table) == Some("application")
        && before.text("user_key") != item.text("user_key")
    {
        webhook_events::changed(&mut tx, "user_key_updated", &item).await?;
        webhook_events::changed(&mut tx, "key_updated", &item).await?;
    }
    tx.commit().await?;
    Ok(item)
}

/// `PUT …/{id}/{event}.json`: the behaviour's event, or a transition of the resource.
pub async fn event_in(
    conn: &mut AnyConnection,
    e: &Entity,
    scope: &[i64],
    id: i64,
    event: &EventInput,
) -> Result<Record> {
    e.parent.check(conn, scope).await?;
    let current = e.resource.find(conn, scope, id).await?;
    let item = if e.behaviour.events().contains(&event.name.as_str()) {
        e.behaviour.event(conn, scope, &current, event).await?;
        e.resource.find(conn, scope, id).await?
    } else {
        e.resource.transition(conn, scope, id, &event.name).await?
    };
    let item = decorated_one(e, conn, item).await?;
    if let Some(kind) = webhook_events::type_of(e.resource.table) {
        let action = webhook_events::action_of_event(kind, &event.name);
        webhook_events::emit(conn, kind, action, &item).await?;
    }
    tracing::info!(entity = e.resource.name, id, event = event.name, "event");
    Ok(item)
}

pub async fn event(db: &Db, e: &Entity, scope: &[i64], id: i64, event: &EventInput) -> Result<Record> {
    let mut tx = db.begin_write().await?;
    let item = event_in(&mut tx, e, scope, id, event).await?;
    tx.commit().await?;
    Ok(item)
}

pub async fn delete(db: &Db, e: &Entity, scope: &[i64], id: i64) -> Result<()> {
    let mut tx = db.begin_write().await?;
    e.parent.check(&mut tx, scope).await?;
    if webhook_events::type_of(e.resource.table).is_some() {
        let gone = e.resource.find(&mut tx, scope, id).await?;
        let gone = decorated_one(e, &mut tx, gone).await?;
        webhook_events::changed(&mut tx, "deleted", &gone).await?;
    }
    e.resource.delete(&mut tx, scope, id).await?;
    tx.commit().await?;
    tracing::info!(entity = e.resource.name, id, "deleted");
    Ok(())
}
