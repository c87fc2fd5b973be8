//! Integration errors (3scale Ch. 29.5): the authorize, authrep and report calls a service
//! could not take because of how the gateway called it — an unknown metric, a malformed usage
//! value, an application or key the service does not have. Kept so that whoever integrates
//! the API sees what went wrong without reading gateway logs: newest first, at most
//! [`KEPT`] a service.

use crate::db::Db;
use crate::error::Result;
use crate::time::now;
use sqlx::Row;
use tollgate_domain::form::Page;
use tollgate_domain::ids::ServiceId;

/// Errors kept per service; older ones go as new ones come.
pub const KEPT: i64 = 1000;

/// The service-management error codes that are the integrator's to fix.
pub const KINDS: &[&str] = &[
    "metric_invalid",
    "usage_value_invalid",
    "application_not_found",
    "user_key_invalid",
    "application_key_invalid",
    "transactions_format_invalid",
    "transactions_empty",
];

pub fn is_integration_error(code: &str) -> bool {
    KINDS.contains(&code)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntegrationError {
    pub id: i64,
    pub kind: String,
    pub message: String,
    /// RFC 3339, UTC.
    pub timestamp: String,
}

/// Keeps one error, and forgets what is beyond the newest [`KEPT`].
pub async fn record(db: &Db, service: ServiceId, kind: &str, message: &str) -> Result<()> {
    let mut tx = db.begin_write().await?;
    sqlx::query("INSERT INTO integration_errors (service_id, kind, message, created_at) VALUES ($1, $2, $3, $4)")
        .bind(service.get())
        .bind(kind)
        .bind(message)
        .bind(now())
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "DELETE FROM integration_errors WHERE service_id = $1 AND id <= (
             SELECT id FROM integration_errors WHERE service_id = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)",
    )
    .bind(service.get())
    .bind(KEPT)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// A page of a service's errors, newest first, and how many it has.
pub async fn list(db: &Db, service: ServiceId, page: Page) -> Result<(Vec<IntegrationError>, i64)> {
    let rows = sqlx::query(
        "SELECT id, kind, message, created_at FROM integration_errors WHERE service_id = $1
         ORDER BY id DESC LIMIT $2 OFFSET $3",
    )
    .bind(service.get())
    .bind(page.per_page)
    .bind(page.offset())
    .fetch_all(&db.pool)
    .await?;
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM integration_errors WHERE service_id = $1")
        .bind(service.get())
        .fetch_one(&db.pool)
        .await?;
    let errors = rows
        .iter()
        .map(|r| {
            Ok(IntegrationError {
                id: r.try_get("id")?,
                kind: r.try_get("kind")?,
                message: r.try_get("message")?,
                timestamp: r.try_get("created_at")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    Ok((errors, count))
}

/// Forgets a service's errors (3scale's "Purge").
pub async fn clear(db: &Db, service: ServiceId) -> Result<u64> {
    let done = sqlx::query("DELETE FROM integration_errors WHERE service_id = $1")
        .bind(service.get())
        .execute(&db.pool)
        .await?;
    Ok(done.rows_affected())
}
