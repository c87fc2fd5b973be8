//! The provider's credit settings: starter credits for new prepaid accounts, the low-balance
//! threshold, and where to buy more.

use crate::db::Db;
use crate::error::Result;
use crate::rows::decimal;
use sqlx::Row;
use tollgate_domain::credits::{Settings, SettingsPatch};

pub async fn read(db: &Db) -> Result<Settings> {
    let mut conn = db.pool.acquire().await?;
    read_in(&mut conn).await
}

pub(super) async fn read_in(conn: &mut sqlx::AnyConnection) -> Result<Settings> {
    let row =
        sqlx::query("SELECT starter_credits, low_balance_threshold, purchase_url FROM credit_settings WHERE id = 1")
            .fetch_optional(&mut *conn)
            .await?;
    Ok(match row {
        Some(r) => Settings {
            starter_credits: decimal(&r, "starter_credits")?,
            low_balance_threshold: decimal(&r, "low_balance_threshold")?,
            purchase_url: r.try_get("purchase_url")?,
        },
        None => Settings::default(),
    })
}

pub async fn update(db: &Db, patch: SettingsPatch) -> Result<Settings> {
    let mut tx = db.begin_write().await?;
    let mut s = read_in(&mut tx).await?;
    s.apply(patch);
    sqlx::query(
        "INSERT INTO credit_settings (id, starter_credits, low_balance_threshold, purchase_url, updated_at)
         VALUES (1, $1, $2, $3, $4)
         ON CONFLICT (id) DO UPDATE SET starter_credits = excluded.starter_credits,
           low_balance_threshold = excluded.low_balance_threshold, purchase_url = excluded.purchase_url,
           updated_at = excluded.updated_at",
    )
    .bind(s.starter_credits.to_string())
    .bind(s.low_balance_threshold.to_string())
    .bind(s.purchase_url.clone())
    .bind(crate::time::now())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(s)
}
