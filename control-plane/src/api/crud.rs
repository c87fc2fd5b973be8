//! Generic admin handlers over [`Resource`]s: list, create, show, update, delete at
//! `{collection}.json` and `{collection}/{id}.json`, as 3scale lays them out.
//!
//! What differs between entities is declared, not re-coded: the resource (fields, table),
//! how the URL's ids resolve to its scope ([`Parent`]: the parents must exist and own each
//! other, else 404), and its [`Behaviour`] (what happens around a write). Every write runs
//! in one transaction with its behaviour, so nothing is half-written.

use super::AppState;
use crate::auth::{authorize, Access, Principal, Scope, Section};
use crate::catalog::resource::{Resource, Values};
use crate::catalog::{behaviour, Page};
use crate::error::ApiError;
use crate::params::Params;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use sqlx::AnyConnection;
use std::collections::HashMap;

pub use crate::catalog::behaviour::Behaviour;

/// Where a resource hangs, i.e. which path ids make up its scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parent {
    /// Top level: no scope.
    Root,
    /// `{service_id}`
    Service,
    /// `{service_id}` / `{metric_id}`: methods, which only `hits` has (3scale §19).
    ServiceMetric,
    /// `{backend_id}`
    Backend,
    /// `{backend_id}` / `{metric_id}`: the backend's `hits` and its methods.
    BackendMetric,
    /// `{plan_id}` / `{metric_id}`: the metric must belong to the plan's service or its backends.
    PlanMetric,
    /// `{account_id}`
    Account,
}

fn checked_id(m: &Mount, who: &Principal, path: &HashMap<String, String>) -> Result<i64, ApiError> {
    let id = path_id(path, m.id_param)?;
    check_entity(m, who, id)?;
    Ok(id)
}

/// A member limited to some services may only touch those services themselves.
fn check_entity(m: &Mount, who: &Principal, id: i64) -> Result<(), ApiError> {
    if m.behaviour == Behaviour::Service {
        who.check_service(id)?;
    }
    Ok(())
}

pub fn path_id(params: &HashMap<String, String>, name: &str) -> Result<i64, ApiError> {
    let raw = params.get(name).ok_or(ApiError::NotFound)?;
    raw.strip_suffix(".json")
        .unwrap_or(raw)
        .parse()
        .map_err(|_| ApiError::NotFound)
}

async fn exists(conn: &mut AnyConnection, sql: &str, ids: &[i64]) -> Result<(), ApiError> {
    let mut q = sqlx::query_scalar::<_, i64>(sql);
    for id in ids {
        q = q.bind(*id);
    }
    q.fetch_optional(&mut *conn)
        .await?
        .map(|_| ())
        .ok_or(ApiError::NotFound)
}

impl Parent {
    /// The service the scope belongs to, for members limited to some services.
    pub async fn service(self, conn: &mut AnyConnection, scope: &[i64]) -> Result<Option<i64>, ApiError> {
        Ok(match (self, scope) {
            (Parent::Service | Parent::ServiceMetric, [sid, ..]) => Some(*sid),
            (Parent::PlanMetric, [pid, ..]) => {
                sqlx::query_scalar("SELECT service_id FROM application_plans WHERE id = $1")
                    .bind(*pid)
                    .fetch_optional(&mut *conn)
                    .await?
            }
            _ => None,
        })
    }

    /// Resolves the scope and checks the caller may see its service.
    pub async fn scope_for(
        self,
        who: &Principal,
        conn: &mut AnyConnection,
        p: &HashMap<String, String>,
    ) -> Result<Vec<i64>, ApiError> {
        let scope = self.scope(conn, p).await?;
        if let Some(service) = self.service(conn, &scope).await? {
            who.check_service(service)?;
        }
        Ok(scope)
    }

    /// The path parameters that make up the scope, and the query that must find a row for
    /// them (bound in the same order) — i.e. the parents exist and own each other.
    fn lookup(self) -> (&'static [&'static str], &'static str) {
        match self {
            Parent::Root => (&[], ""),
            Parent::Service => (&["service_id"], "SELECT id FROM services WHERE id = $1"),
            Parent::ServiceMetric => (
                &["service_id", "metric_id"],
                "SELECT id FROM metrics WHERE service_id = $1 AND id = $2 AND parent_id IS NULL AND system_name = 'hits'",
            ),
            Parent::Backend => (&["backend_id"], "SELECT id FROM backend_apis WHERE id = $1"),
            Parent::BackendMetric => (
                &["backend_id", "metric_id"],
                "SELECT id FROM metrics WHERE backend_id = $1 AND id = $2 AND parent_id IS NULL AND system_name LIKE 'hits.%'",
            ),
            Parent::PlanMetric => (
                &["plan_id", "metric_id"],
                "SELECT m.id FROM metrics m, application_plans p WHERE p.id = $1 AND m.id = $2 AND
                   (m.service_id = p.service_id OR m.backend_id IN
                      (SELECT backend_id FROM backend_usages u WHERE u.service_id = p.service_id))",
            ),
            Parent::Account => (&["account_id"], "SELECT id FROM accounts WHERE id = $1"),
        }
    }

    pub async fn scope(self, conn: &mut AnyConnection, p: &HashMap<String, String>) -> Result<Vec<i64>, ApiError> {
        let (params, sql) = self.lookup();
        let ids = params
            .iter()
            .map(|name| path_id(p, name))
            .collect::<Result<Vec<_>, _>>()?;
        if !ids.is_empty() {
            exists(conn, sql, &ids).await?;
        }
        Ok(ids)
    }
}

/// One resource mounted at a path.
#[derive(Clone, Copy)]
pub struct Mount {
    pub resource: &'static Resource,
    /// The path parameter naming one entity (`service_id`, …; children reuse the name).
    pub id_param: &'static str,
    pub parent: Parent,
    pub behaviour: Behaviour,
    pub scope: Scope,
    pub section: Section,
}

/// Routes for `collection` (a path without `.json`, with `{service_id}`-style parameters).
pub fn routes(collection: &str, m: Mount) -> Router<AppState> {
    let router = Router::new();
    let has_events = !m.resource.transitions.is_empty()
        || matches!(
            m.behaviour,
            Behaviour::Plan(_) | Behaviour::Application | Behaviour::ServiceSubscription | Behaviour::Account
        );
    let router = if has_events {
        router.route(
            &format!("{collection}/{{{}}}/{{event}}", m.id_param),
            axum::routing::put(move |s, h, path, p| event(m, s, h, path, p)),
        )
    } else {
        router
    };
    router
        .route(
            &format!("{collection}.json"),
            get(move |s, h, path, p| list(m, s, h, path, p)).post(move |s, h, path, p| create(m, s, h, path, p)),
        )
        .route(
            &format!("{collection}/{{{}}}", m.id_param),
            get(move |s, h, path, p| show(m, s, h, path, p))
                .put(move |s, h, path, p| update(m, s, h, path, p))
                .patch(move |s, h, path, p| update(m, s, h, path, p))
                .delete(move |s, h, path, p| delete(m, s, h, path, p)),
        )
}

type PathMap = Path<HashMap<String, String>>;

async fn list(
    m: Mount,
    State(app): State<AppState>,
    h: HeaderMap,
    Path(path): PathMap,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    let who = authorize(&app.db, &h, &p, m.scope, Access::Read, m.section).await?;
    let page = if p.get("page").is_some() || p.get("per_page").is_some() {
        Some(Page::from_params(&p)?)
    } else {
        None
    };
    let mut conn = app.db.pool.acquire().await?;
    let scope = m.parent.scope_for(&who, &mut conn, &path).await?;
    // A member limited to some services lists only those (in SQL: pages stay whole).
    let only = if m.behaviour == Behaviour::Service {
        who.services().map(|ids| ("id", ids))
    } else {
        None
    };
    let mut items = m.resource.list(&mut conn, &scope, only, page).await?;
    for item in &mut items {
        behaviour::decorate(m.behaviour, &mut conn, item).await?;
    }
    let wrapped: Vec<Value> = items.into_iter().map(|i| json!({ m.resource.name: i })).collect();
    Ok(Json(json!({ m.resource.collection: wrapped })))
}

async fn show(
    m: Mount,
    State(app): State<AppState>,
    h: HeaderMap,
    Path(path): PathMap,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    let who = authorize(&app.db, &h, &p, m.scope, Access::Read, m.section).await?;
    let mut conn = app.db.pool.acquire().await?;
    let scope = m.parent.scope_for(&who, &mut conn, &path).await?;
    let mut item = m.resource.find(&mut conn, &scope, checked_id(&m, &who, &path)?).await?;
    behaviour::decorate(m.behaviour, &mut conn, &mut item).await?;
    Ok(Json(json!({ m.resource.name: item })))
}

async fn create(
    m: Mount,
    State(app): State<AppState>,
    h: HeaderMap,
    Path(path): PathMap,
    p: Params,
) -> Result<Response, ApiError> {
    let who = authorize(&app.db, &h, &p, m.scope, Access::Write, m.section).await?;
    let mut values: Values = m.resource.values_for_create(&p)?;
    let mut tx = app.db.pool.begin().await?;
    let scope = m.parent.scope_for(&who, &mut tx, &path).await?;
    behaviour::before_write(m.behaviour, &mut tx, &scope, None, &p, &mut values).await?;
    let mut item = m.resource.insert(&mut tx, &scope, &values).await?;
    behaviour::after_create(m.behaviour, &mut tx, &p, &item).await?;
    behaviour::decorate(m.behaviour, &mut tx, &mut item).await?;
    tx.commit().await?;
    tracing::info!(entity = m.resource.name, id = %item["id"], "created");
    Ok((StatusCode::CREATED, Json(json!({ m.resource.name: item }))).into_response())
}

async fn update(
    m: Mount,
    State(app): State<AppState>,
    h: HeaderMap,
    Path(path): PathMap,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    let who = authorize(&app.db, &h, &p, m.scope, Access::Write, m.section).await?;
    let mut values = m.resource.values_for_update(&p)?;
    let id = checked_id(&m, &who, &path)?;
    let mut tx = app.db.pool.begin().await?;
    let scope = m.parent.scope_for(&who, &mut tx, &path).await?;
    m.resource.find(&mut tx, &scope, id).await?;
    behaviour::before_write(m.behaviour, &mut tx, &scope, Some(id), &p, &mut values).await?;
    let mut item = if values.is_empty() {
        m.resource.find(&mut tx, &scope, id).await?
    } else {
        m.resource.update(&mut tx, &scope, id, &values).await?
    };
    behaviour::decorate(m.behaviour, &mut tx, &mut item).await?;
    tx.commit().await?;
    Ok(Json(json!({ m.resource.name: item })))
}

/// `PUT …/{id}/{event}.json`: a state event, `default` (plans) or `change_plan` (contracts).
async fn event(
    m: Mount,
    State(app): State<AppState>,
    h: HeaderMap,
    Path(path): PathMap,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    let who = authorize(&app.db, &h, &p, m.scope, Access::Write, m.section).await?;
    let id = checked_id(&m, &who, &path)?;
    let name = path
        .get("event")
        .map(|e| e.strip_suffix(".json").unwrap_or(e))
        .unwrap_or_default();
    let mut tx = app.db.pool.begin().await?;
    let scope = m.parent.scope_for(&who, &mut tx, &path).await?;
    let current = m.resource.find(&mut tx, &scope, id).await?;
    let mut item = if behaviour::event(m.behaviour, &mut tx, &scope, &current, name, &p).await? {
        m.resource.find(&mut tx, &scope, id).await?
    } else {
        m.resource.transition(&mut tx, &scope, id, name).await?
    };
    behaviour::decorate(m.behaviour, &mut tx, &mut item).await?;
    tx.commit().await?;
    tracing::info!(entity = m.resource.name, id, event = name, "event");
    Ok(Json(json!({ m.resource.name: item })))
}

async fn delete(
    m: Mount,
    State(app): State<AppState>,
    h: HeaderMap,
    Path(path): PathMap,
    p: Params,
) -> Result<Response, ApiError> {
    let who = authorize(&app.db, &h, &p, m.scope, Access::Write, m.section).await?;
    let id = checked_id(&m, &who, &path)?;
    let mut tx = app.db.pool.begin().await?;
    let scope = m.parent.scope_for(&who, &mut tx, &path).await?;
    m.resource.delete(&mut tx, &scope, id).await?;
    tx.commit().await?;
    tracing::info!(entity = m.resource.name, id, "deleted");
    Ok(StatusCode::OK.into_response())
}
