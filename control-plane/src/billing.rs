//! Billing (SPEC §6): the provider's settings, and money in a currency. The billing run,
//! invoices and payments build on these.
//!
//! Money is `Decimal` throughout. Line items keep 4 decimals; a total is rounded half-up to its
//! currency's minor unit (USD 2, JPY 0, KWD 3, from ISO 4217 via `iso_currency`), so that an
//! invoice never shows a fraction of a cent it cannot charge.

use crate::db::Db;
use crate::error::ApiError;
use crate::params::Params;
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{json, Value};
use sqlx::Row;

/// The currency's minor units (decimal places), if it is an ISO 4217 currency that has them.
pub fn minor_units(code: &str) -> Option<u32> {
    iso_currency::Currency::from_code(code)?.exponent().map(u32::from)
}

/// A total in `currency`: half-up to its minor unit (`None`: not a currency with one).
pub fn round(amount: Decimal, currency: &str) -> Option<Decimal> {
    Some(amount.round_dp_with_strategy(minor_units(currency)?, RoundingStrategy::MidpointAwayFromZero))
}

/// A total as printed: rounded to the currency's minor unit and showing all its places
/// (`74.50`, `1235` for JPY).
pub fn display(amount: Decimal, currency: &str) -> String {
    let places = minor_units(currency).unwrap_or(2);
    let mut d = amount.round_dp_with_strategy(places, RoundingStrategy::MidpointAwayFromZero);
    d.rescale(places);
    d.to_string()
}

/// `/admin/api/billing/settings.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `prepaid` (bill the month ahead) or `postpaid` (bill the month behind).
    pub mode: String,
    pub currency: String,
    pub charging_enabled: bool,
    pub invoice_footnote: Option<String>,
    /// Shown on invoices whose VAT rate is 0.
    pub vat_zero_text: Option<String>,
    /// Friendly ids: `monthly` (`YYYY-MM-XXXXXXXX`) or `yearly` (`YYYY-XXXXXXXX`).
    pub numbering: String,
    /// `offline` (an admin marks invoices paid) or `stripe`.
    pub payment_gateway: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            mode: "postpaid".into(),
            currency: "USD".into(),
            charging_enabled: false,
            invoice_footnote: None,
            vat_zero_text: None,
            numbering: "monthly".into(),
            payment_gateway: "offline".into(),
        }
    }
}

impl Settings {
    pub fn to_json(&self) -> Value {
        json!({
            "mode": self.mode, "currency": self.currency,
            "currency_minor_units": minor_units(&self.currency),
            "charging_enabled": self.charging_enabled, "invoice_footnote": self.invoice_footnote,
            "vat_zero_text": self.vat_zero_text, "numbering": self.numbering,
            "payment_gateway": self.payment_gateway,
        })
    }
}

pub async fn settings(db: &Db) -> Result<Settings, ApiError> {
    let row = sqlx::query(
        "SELECT mode, currency, charging_enabled, invoice_footnote, vat_zero_text, numbering, payment_gateway
         FROM billing_settings WHERE id = 1",
    )
    .fetch_optional(&db.pool)
    .await?;
    let Some(r) = row else { return Ok(Settings::default()) };
    Ok(Settings {
        mode: r.try_get("mode")?,
        currency: r.try_get("currency")?,
        charging_enabled: r.try_get::<i64, _>("charging_enabled")? != 0,
        invoice_footnote: r.try_get("invoice_footnote")?,
        vat_zero_text: r.try_get("vat_zero_text")?,
        numbering: r.try_get("numbering")?,
        payment_gateway: r.try_get("payment_gateway")?,
    })
}

/// Applies the given fields (every bad one reported at once, named) and stores the result.
pub async fn update_settings(db: &Db, p: &Params) -> Result<Settings, ApiError> {
    let mut s = settings(db).await?;
    let mut errors = Vec::new();
    let mut one_of = |field: &str, allowed: &[&str], target: &mut String| {
        if let Some(v) = p.get(field).map(str::trim) {
            if allowed.contains(&v) {
                *target = v.to_string();
            } else {
                errors.push((field.to_string(), format!("must be one of {}", allowed.join(", "))));
            }
        }
    };
    one_of("mode", &["prepaid", "postpaid"], &mut s.mode);
    one_of("numbering", &["monthly", "yearly"], &mut s.numbering);
    one_of("payment_gateway", &["offline", "stripe"], &mut s.payment_gateway);
    if let Some(c) = p.get("currency").map(|c| c.trim().to_ascii_uppercase()) {
        match minor_units(&c) {
            Some(_) => s.currency = c,
            None => errors.push(("currency".into(), "must be an ISO 4217 currency code, e.g. USD".into())),
        }
    }
    match p.flag("charging_enabled") {
        Ok(Some(v)) => s.charging_enabled = v,
        Ok(None) => {}
        Err(ApiError::Invalid(mut e)) => errors.append(&mut e),
        Err(e) => return Err(e),
    }
    let text = |field: &str, target: &mut Option<String>| {
        if let Some(v) = p.get(field) {
            *target = Some(v.trim().to_string()).filter(|v| !v.is_empty());
        }
    };
    text("invoice_footnote", &mut s.invoice_footnote);
    text("vat_zero_text", &mut s.vat_zero_text);
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    sqlx::query(
        "INSERT INTO billing_settings (id, mode, currency, charging_enabled, invoice_footnote, vat_zero_text, numbering, payment_gateway, updated_at)
         VALUES (1, $1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (id) DO UPDATE SET mode = excluded.mode, currency = excluded.currency,
           charging_enabled = excluded.charging_enabled, invoice_footnote = excluded.invoice_footnote,
           vat_zero_text = excluded.vat_zero_text, numbering = excluded.numbering,
           payment_gateway = excluded.payment_gateway, updated_at = excluded.updated_at",
    )
    .bind(&s.mode)
    .bind(&s.currency)
    .bind(i64::from(s.charging_enabled))
    .bind(&s.invoice_footnote)
    .bind(&s.vat_zero_text)
    .bind(&s.numbering)
    .bind(&s.payment_gateway)
    .bind(crate::time::now())
    .execute(&db.pool)
    .await?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn totals_round_half_up_to_the_currencys_minor_unit() {
        assert_eq!(minor_units("USD"), Some(2));
        assert_eq!(minor_units("JPY"), Some(0));
        assert_eq!(minor_units("KWD"), Some(3));
        assert_eq!(minor_units("XYZ"), None);
        assert_eq!(round(d("10.005"), "USD"), Some(d("10.01")));
        assert_eq!(round(d("10.0049"), "USD"), Some(d("10.00")));
        assert_eq!(
            round(d("-10.005"), "USD"),
            Some(d("-10.01")),
            "a refund rounds like a charge"
        );
        assert_eq!(round(d("1234.5"), "JPY"), Some(d("1235")));
        assert_eq!(round(d("1.2345"), "KWD"), Some(d("1.235")));
        assert_eq!(display(d("74.5"), "EUR"), "74.50");
        assert_eq!(display(d("0"), "KWD"), "0.000");
        assert_eq!(display(d("1234.5"), "JPY"), "1235");
    }
}
