//! Leases in the database: one holder at a time across replicas (the billing run, its
//! schedule), each lease expiring on its own so that a replica that died frees it.

use crate::db::Db;
use crate::error::Result;

/// Takes the named lease for `seconds` unless another holder has it; `true` if ours now.
pub async fn acquire(db: &Db, name: &str, holder: &str, seconds: i64) -> Result<bool> {
    let now = chrono::Utc::now();
    let expires = (now + chrono::Duration::seconds(seconds)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let done = sqlx::query(
        "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
         WHERE leases.expires_at < $4 OR leases.holder = excluded.holder",
    )
    .bind(name)
    .bind(holder)
    .bind(expires)
    .bind(crate::time::now())
    .execute(&db.pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn release(db: &Db, name: &str, holder: &str) -> Result<()> {
    sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
        .bind(name)
        .bind(holder)
        .execute(&db.pool)
        .await?;
    Ok(())
}
