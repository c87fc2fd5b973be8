//! Report batch ids. A gateway that does not hear the 202 for a report sends it again; with a
//! `batch_id`, a batch seen in the last 24 hours is acknowledged again and not counted twice.
//!
//! A batch is claimed (`counting`) before it is counted and marked `done` after; a failed
//! count releases the claim, so the resend counts. A resend that arrives while the first copy
//! is still being counted gets a 409 and is retried by the gateway. A claim left `counting`
//! for over 5 s (the control plane died mid-count) is taken over by the next resend.
//! Either way a resend counts only the transactions the first copy had not: each transaction's
//! mark moves in the same atomic call as its counters (`authrep::count`), so a batch cut short
//! — Redis gone mid-batch, a replica killed — is counted exactly once.

use crate::db::Db;
use crate::error::Result;
use sqlx::Row;
use tollgate_domain::ids::ServiceId;

/// How long a batch id is remembered.
pub const REMEMBER_SECS: i64 = 86_400;
/// After this long a `counting` claim is considered abandoned (its replica died mid-count).
/// Counting a batch takes well under a second; taking over a claim that is alive after all
/// costs only duplicate work, since each transaction's mark lets it count once.
const ABANDONED_SECS: i64 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Not seen (or forgotten): count it, then [`finish`] or [`release`].
    New,
    /// Counted already: acknowledge, count nothing.
    Done,
    /// Being counted right now by another request.
    InProgress,
}

pub async fn claim(db: &Db, service: ServiceId, batch_id: &str, now: i64) -> Result<Claim> {
    let service_id = service.get();
    let inserted = sqlx::query(
        "INSERT INTO report_batches (service_id, batch_id, state, received_at) VALUES ($1, $2, 'counting', $3)
         ON CONFLICT (service_id, batch_id) DO NOTHING",
    )
    .bind(service_id)
    .bind(batch_id)
    .bind(now)
    .execute(&db.pool)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(Claim::New);
    }
    // Forgotten or abandoned claims are taken over, atomically: only one resend wins.
    let taken = sqlx::query(
        "UPDATE report_batches SET state = 'counting', received_at = $3
         WHERE service_id = $1 AND batch_id = $2
           AND (received_at < $4 OR (state = 'counting' AND received_at < $5))",
    )
    .bind(service_id)
    .bind(batch_id)
    .bind(now)
    .bind(now - REMEMBER_SECS)
    .bind(now - ABANDONED_SECS)
    .execute(&db.pool)
    .await?
    .rows_affected();
    if taken == 1 {
        return Ok(Claim::New);
    }
    let state: Option<String> = sqlx::query("SELECT state FROM report_batches WHERE service_id = $1 AND batch_id = $2")
        .bind(service_id)
        .bind(batch_id)
        .fetch_optional(&db.pool)
        .await?
        .map(|r| r.try_get("state"))
        .transpose()?;
    Ok(match state.as_deref() {
        Some("done") => Claim::Done,
        Some(_) => Claim::InProgress,
        // Forgotten between the two statements: claim it afresh.
        None => Box::pin(claim(db, service, batch_id, now)).await?,
    })
}

/// The batch is counted.
pub async fn finish(db: &Db, service: ServiceId, batch_id: &str) -> Result<()> {
    sqlx::query("UPDATE report_batches SET state = 'done' WHERE service_id = $1 AND batch_id = $2")
        .bind(service.get())
        .bind(batch_id)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Counting failed: forget the claim so that the resend counts.
pub async fn release(db: &Db, service: ServiceId, batch_id: &str) -> Result<()> {
    sqlx::query("DELETE FROM report_batches WHERE service_id = $1 AND batch_id = $2 AND state = 'counting'")
        .bind(service.get())
        .bind(batch_id)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Forgets batch ids older than [`REMEMBER_SECS`].
pub async fn forget_old(db: &Db, now: i64) -> Result<u64> {
    Ok(sqlx::query("DELETE FROM report_batches WHERE received_at < $1")
        .bind(now - REMEMBER_SECS)
        .execute(&db.pool)
        .await?
        .rows_affected())
}
