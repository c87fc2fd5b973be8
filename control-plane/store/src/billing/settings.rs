//! The provider's billing settings (`/admin/api/billing/settings.json`): one row.

use crate::db::Db;
use crate::error::{Result, StoreError};
use sqlx::{AnyConnection, Row};
use tollgate_domain::billing::{GatewayKind, Mode, Numbering, Settings, SettingsPatch};

pub async fn get(db: &Db) -> Result<Settings> {
    let mut conn = db.pool.acquire().await?;
    get_in(&mut conn).await
}

pub async fn get_in(conn: &mut AnyConnection) -> Result<Settings> {
    let row = sqlx::query(
        "SELECT mode, currency, charging_enabled, invoice_footnote, vat_zero_text, numbering, payment_gateway
         FROM billing_settings WHERE id = 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    let Some(r) = row else { return Ok(Settings::default()) };
    let word = |column: &str, raw: String| StoreError::Internal(format!("billing_settings.{column} holds `{raw}`"));
    let mode: String = r.try_get("mode")?;
    let numbering: String = r.try_get("numbering")?;
    let gateway: String = r.try_get("payment_gateway")?;
    Ok(Settings {
        mode: Mode::parse(&mode).ok_or_else(|| word("mode", mode.clone()))?,
        currency: r.try_get("currency")?,
        charging_enabled: r.try_get::<i64, _>("charging_enabled")? != 0,
        invoice_footnote: r.try_get("invoice_footnote")?,
        vat_zero_text: r.try_get("vat_zero_text")?,
        numbering: Numbering::parse(&numbering).ok_or_else(|| word("numbering", numbering.clone()))?,
        payment_gateway: GatewayKind::parse(&gateway).ok_or_else(|| word("payment_gateway", gateway.clone()))?,
    })
}

/// Applies the patch (its fields all valid: see [`SettingsPatch`]) and stores the result.
pub async fn update(db: &Db, patch: SettingsPatch) -> Result<Settings> {
    let mut tx = db.begin_write().await?;
    let mut s = get_in(&mut tx).await?;
    s.apply(patch);
    sqlx::query(
        "INSERT INTO billing_settings (id, mode, currency, charging_enabled, invoice_footnote, vat_zero_text, numbering, payment_gateway, updated_at)
         VALUES (1, $1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (id) DO UPDATE SET mode = excluded.mode, currency = excluded.currency,
           charging_enabled = excluded.charging_enabled, invoice_footnote = excluded.invoice_footnote,
           vat_zero_text = excluded.vat_zero_text, numbering = excluded.numbering,
           payment_gateway = excluded.payment_gateway, updated_at = excluded.updated_at",
    )
    .bind(s.mode.as_str())
    .bind(&s.currency)
    .bind(i64::from(s.charging_enabled))
    .bind(&s.invoice_footnote)
    .bind(&s.vat_zero_text)
    .bind(s.numbering.as_str())
    .bind(s.payment_gateway.as_str())
    .bind(crate::time::now())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(s)
}
