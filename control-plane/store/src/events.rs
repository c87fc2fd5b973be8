//! The event log (credits' low balance, billing's invoice events, …) that the notifications work
//! delivers from. An event is written in the same transaction as the change it reports, so
//! there is never an event for a change that did not happen, nor a change without its event.

use crate::error::Result;
use sqlx::AnyConnection;
use tollgate_domain::ids::AccountId;

pub async fn record(
    conn: &mut AnyConnection,
    kind: &str,
    account_id: AccountId,
    payload: &serde_json::Value,
) -> Result<()> {
    sqlx::query("INSERT INTO events (kind, account_id, payload, created_at) VALUES ($1, $2, $3, $4)")
        .bind(kind)
        .bind(account_id.get())
        .bind(payload.to_string())
        .bind(crate::time::now())
        .execute(conn)
        .await?;
    Ok(())
}
