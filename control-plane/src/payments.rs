//! Charging invoices (SPEC §6.6): a gateway trait with two gateways — `offline` (an admin marks
//! invoices paid; charging does nothing) and Stripe (PaymentIntents, off-session, confirmed at
//! once). Card data never reaches us: an account holds the gateway's customer reference
//! (`credit_card_token`), optionally a payment-method reference, the last 4 digits and the
//! expiry. Every attempt that reached a gateway is a payment transaction; a failed one moves
//! the invoice to `unpaid`, and after the third retry (3 days apart) to `failed`.

use crate::db::Db;
use crate::error::ApiError;
use crate::invoice::State;
use crate::invoices::{self, Invoice};
use crate::params::Params;
use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use sqlx::{AnyConnection, Row};
use std::future::Future;

/// Failed attempts after which an invoice is `failed` (3scale: three retries, 3 days apart).
pub const MAX_RETRIES: i64 = 3;
pub const RETRY_DAYS: u64 = 3;

/// One charge: the invoice's total in the currency's minor unit, the customer's references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    pub amount: Decimal,
    pub currency: String,
    pub customer: String,
    pub payment_method: Option<String>,
    pub description: String,
    /// The same key for the same attempt: a retried request is not charged twice.
    pub idempotency_key: String,
}

/// What a gateway answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub success: bool,
    pub reference: Option<String>,
    pub message: String,
}

pub trait Gateway {
    fn name(&self) -> &'static str;
    fn charge(&self, charge: &Charge) -> impl Future<Output = Outcome> + Send;
}

/// Stripe's API: where (`https://api.stripe.com`, or a local stand-in in tests) and the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeConfig {
    pub api_base: String,
    pub secret_key: String,
}

pub struct Stripe {
    config: StripeConfig,
    http: reqwest::Client,
}

impl Stripe {
    pub fn new(config: StripeConfig) -> Self {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        Stripe { config, http }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.api_base.trim_end_matches('/'))
    }

    /// The customer's default payment method (`invoice_settings.default_payment_method`).
    async fn default_payment_method(&self, customer: &str) -> Result<String, Outcome> {
        let response = self
            .http
            .get(self.url(&format!("/v1/customers/{customer}")))
            .bearer_auth(&self.config.secret_key)
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(declined(&body, None));
        }
        body["invoice_settings"]["default_payment_method"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Outcome {
                success: false,
                reference: None,
                message: format!("customer {customer} has no default payment method"),
            })
    }
}

fn unreachable(e: reqwest::Error) -> Outcome {
    Outcome {
        success: false,
        reference: None,
        message: format!("payment gateway unreachable: {e}"),
    }
}

/// Stripe's error object (`{"error": {"message", "code", "decline_code", "payment_intent"}}`).
fn declined(body: &Value, fallback_reference: Option<String>) -> Outcome {
    let e = &body["error"];
    let mut message = e["message"].as_str().unwrap_or("the charge was declined").to_string();
    if let Some(code) = e["decline_code"].as_str().or(e["code"].as_str()) {
        message = format!("{message} ({code})");
    }
    Outcome {
        success: false,
        reference: e["payment_intent"]["id"]
            .as_str()
            .map(str::to_string)
            .or(fallback_reference),
        message,
    }
}

impl Gateway for Stripe {
    fn name(&self) -> &'static str {
        "stripe"
    }

    async fn charge(&self, c: &Charge) -> Outcome {
        let payment_method = match &c.payment_method {
            Some(pm) => pm.clone(),
            None => match self.default_payment_method(&c.customer).await {
                Ok(pm) => pm,
                Err(outcome) => return outcome,
            },
        };
        let Some(minor) = minor_amount(c.amount, &c.currency) else {
            return Outcome {
                success: false,
                reference: None,
                message: format!("{} {} is not an amount Stripe can charge", c.amount, c.currency),
            };
        };
        let form = [
            ("amount", minor.to_string()),
            ("currency", c.currency.to_ascii_lowercase()),
            ("customer", c.customer.clone()),
            ("payment_method", payment_method),
            ("off_session", "true".into()),
            ("confirm", "true".into()),
            ("description", c.description.clone()),
        ];
        let response = self
            .http
            .post(self.url("/v1/payment_intents"))
            .bearer_auth(&self.config.secret_key)
            .header("Idempotency-Key", &c.idempotency_key)
            .form(&form)
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) => return unreachable(e),
        };
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return declined(&body, None);
        }
        let id = body["id"].as_str().map(str::to_string);
        match body["status"].as_str() {
            Some("succeeded") => Outcome {
                success: true,
                reference: id,
                message: "Transaction approved".into(),
            },
            Some(other) => Outcome {
                success: false,
                reference: id,
                message: format!("payment intent is {other}"),
            },
            None => Outcome {
                success: false,
                reference: id,
                message: "unexpected answer from Stripe".into(),
            },
        }
    }
}

/// An amount in the currency's minor unit (cents for USD, yen for JPY), as Stripe takes it.
pub fn minor_amount(amount: Decimal, currency: &str) -> Option<i64> {
    use rust_decimal::prelude::ToPrimitive;
    let units = crate::billing::minor_units(currency)?;
    let scaled = crate::billing::round(amount, currency)? * Decimal::from(10i64.pow(units));
    scaled.to_i64()
}

/// The account's payment method at the gateway.
#[derive(Debug, Clone)]
pub struct Card {
    pub customer: String,
    pub payment_method: Option<String>,
}

async fn card(conn: &mut AnyConnection, account_id: i64) -> Result<Option<Card>, ApiError> {
    let row = sqlx::query("SELECT credit_card_token, payment_method_ref FROM accounts WHERE id = $1")
        .bind(account_id)
        .fetch_optional(conn)
        .await?;
    let Some(r) = row else { return Ok(None) };
    let customer: Option<String> = r.try_get("credit_card_token")?;
    Ok(customer.filter(|c| !c.is_empty()).map(|customer| Card {
        customer,
        payment_method: r.try_get::<Option<String>, _>("payment_method_ref").ok().flatten(),
    }))
}

/// `PUT /admin/api/accounts/{id}/credit_card.json` (3scale's): `credit_card_token` (the
/// gateway's customer), `payment_method_id`, `credit_card_partial_number` (last 4),
/// `credit_card_expiration_year` / `_month`, and the billing address.
pub async fn set_card(db: &Db, account_id: i64, p: &Params) -> Result<Value, ApiError> {
    let token = p.required("credit_card_token")?.trim().to_string();
    let year = p.parse::<i32>("credit_card_expiration_year")?;
    let month = p.parse::<u32>("credit_card_expiration_month")?;
    let expires = match (year, month) {
        (Some(y), Some(m)) if (1..=12).contains(&m) => {
            Some(format!("{:04}-{m:02}", if y < 100 { 2000 + y } else { y }))
        }
        (None, None) => None,
        (_, Some(m)) if !(1..=12).contains(&m) => {
            return Err(ApiError::invalid("credit_card_expiration_month", "must be 1 to 12"))
        }
        _ => {
            return Err(ApiError::invalid(
                "credit_card_expiration_year",
                "give the year and the month",
            ))
        }
    };
    let partial = p
        .get("credit_card_partial_number")
        .map(str::trim)
        .filter(|s| !s.is_empty());
    if partial.is_some_and(|s| s.len() > 4 && s.bytes().all(|b| b.is_ascii_digit())) {
        return Err(ApiError::invalid(
            "credit_card_partial_number",
            "only the last 4 digits: card numbers are never stored",
        ));
    }
    let mut tx = db.begin_write().await?;
    let done = sqlx::query(
        "UPDATE accounts SET credit_card_token = $1, payment_method_ref = $2, credit_card_partial_number = $3,
           credit_card_expires_on = $4, updated_at = $5 WHERE id = $6",
    )
    .bind(&token)
    .bind(p.get("payment_method_id").map(str::trim).filter(|s| !s.is_empty()))
    .bind(partial)
    .bind(&expires)
    .bind(crate::time::now())
    .bind(account_id)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        return Err(ApiError::NotFound);
    }
    if p.get("billing_address_name").is_some() || p.get("billing_address_address").is_some() {
        let mut address = Params::default();
        for (ours, theirs) in [
            ("name", "billing_address_name"),
            ("address1", "billing_address_address"),
            ("city", "billing_address_city"),
            ("country", "billing_address_country"),
            ("state", "billing_address_state"),
            ("zip", "billing_address_zip"),
            ("phone", "billing_address_phone"),
        ] {
            if let Some(v) = p.get(theirs) {
                address.0.push((ours.to_string(), v.to_string()));
            }
        }
        crate::catalog::accounts::set_billing_address(&mut tx, account_id, &address).await?;
    }
    tx.commit().await?;
    Ok(
        json!({"account_id": account_id, "credit_card_stored": true, "credit_card_partial_number": partial,
        "credit_card_expires_on": expires}),
    )
}

/// `DELETE /admin/api/accounts/{id}/credit_card.json`.
pub async fn delete_card(db: &Db, account_id: i64) -> Result<(), ApiError> {
    let done = sqlx::query(
        "UPDATE accounts SET credit_card_token = NULL, payment_method_ref = NULL, credit_card_partial_number = NULL,
           credit_card_expires_on = NULL, updated_at = $1 WHERE id = $2",
    )
    .bind(crate::time::now())
    .bind(account_id)
    .execute(&db.pool)
    .await?;
    if done.rows_affected() == 0 {
        return Err(ApiError::NotFound);
    }
    Ok(())
}

/// The provider's gateways, as configured: which one charges is a billing setting.
#[derive(Clone, Default)]
pub struct Gateways {
    pub stripe: Option<std::sync::Arc<Stripe>>,
}

impl Gateways {
    pub fn from_config(config: &crate::config::Config) -> Self {
        Gateways {
            stripe: config.stripe_secret_key.as_ref().map(|key| {
                std::sync::Arc::new(Stripe::new(StripeConfig {
                    api_base: config.stripe_api_base.clone(),
                    secret_key: key.clone(),
                }))
            }),
        }
    }
}

/// Why an invoice was not charged at all (nothing recorded).
fn not_chargeable(message: impl Into<String>) -> ApiError {
    ApiError::invalid("base", message)
}

/// Charges an invoice through the provider's gateway on `today`: records the transaction and
/// moves the invoice (`paid`; or `unpaid`, then `failed` after the last retry), with events.
/// `Err` only when no attempt was made (no gateway, no card, nothing to charge, wrong state).
pub async fn charge(db: &Db, gateways: &Gateways, id: i64, today: NaiveDate) -> Result<(Invoice, Outcome), ApiError> {
    let settings = crate::billing::settings(db).await?;
    let mut conn = db.pool.acquire().await?;
    let inv = invoices::load(&mut conn, id).await?;
    if !inv.state.chargeable() {
        return Err(ApiError::invalid(
            "state",
            format!(
                "is {}: only pending or unpaid invoices can be charged",
                inv.state.as_str()
            ),
        ));
    }
    let total = invoices::totals(&mut conn, &inv).await?.0.with_vat;
    let card = card(&mut conn, inv.account_id).await?;
    drop(conn);
    let attempt = Charge {
        amount: total,
        currency: inv.currency.clone(),
        customer: card.as_ref().map(|c| c.customer.clone()).unwrap_or_default(),
        payment_method: card.as_ref().and_then(|c| c.payment_method.clone()),
        description: format!("Invoice {}", inv.friendly_id),
        idempotency_key: format!(
            "tollgate-invoice-{}-attempt-{}-{today}",
            inv.id, inv.charging_retries_count
        ),
    };
    if card.is_none() {
        return Err(not_chargeable(
            "Failed to charge the credit card: the account has no credit card",
        ));
    }
    if total <= Decimal::ZERO {
        return Err(not_chargeable("Failed to charge the credit card: nothing to charge"));
    }
    let outcome = match (settings.payment_gateway.as_str(), &gateways.stripe) {
        ("stripe", Some(stripe)) => stripe.charge(&attempt).await,
        ("stripe", None) => {
            return Err(not_chargeable(
                "Failed to charge the credit card: Stripe is not configured (TOLLGATE_STRIPE_SECRET_KEY)",
            ))
        }
        _ => {
            return Err(not_chargeable(
                "Failed to charge the credit card: the offline gateway does not charge; mark the invoice paid",
            ))
        }
    };
    let after = record(db, &inv, &attempt, &outcome, settings.payment_gateway.as_str(), today).await?;
    Ok((after, outcome))
}

/// Records an attempt and its consequences in one transaction.
async fn record(
    db: &Db,
    inv: &Invoice,
    attempt: &Charge,
    outcome: &Outcome,
    gateway: &str,
    today: NaiveDate,
) -> Result<Invoice, ApiError> {
    let mut tx = db.begin_write().await?;
    sqlx::query(
        "INSERT INTO payment_transactions (invoice_id, account_id, success, amount, currency, gateway, reference, message, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(inv.id)
    .bind(inv.account_id)
    .bind(i64::from(outcome.success))
    .bind(attempt.amount.to_string())
    .bind(&attempt.currency)
    .bind(gateway)
    .bind(&outcome.reference)
    .bind(&outcome.message)
    .bind(crate::time::now())
    .execute(&mut *tx)
    .await?;
    let after = if outcome.success {
        let paid = invoices::change_state(&mut tx, inv.id, State::Paid, today).await?;
        crate::events::record(
            &mut tx,
            "invoice.charged",
            inv.account_id,
            &json!({"invoice_id": inv.id, "friendly_id": inv.friendly_id, "amount": attempt.amount.to_string(),
                    "currency": attempt.currency, "reference": outcome.reference}),
        )
        .await?;
        paid
    } else {
        let retries: i64 = sqlx::query_scalar(
            "UPDATE invoices SET charging_retries_count = charging_retries_count + 1, last_charged_on = $1
             WHERE id = $2 RETURNING charging_retries_count",
        )
        .bind(today.to_string())
        .bind(inv.id)
        .fetch_one(&mut *tx)
        .await?;
        let give_up = retries > MAX_RETRIES;
        let next = if give_up { State::Failed } else { State::Unpaid };
        let current = invoices::load(&mut tx, inv.id).await?;
        let after = if current.state == next {
            current
        } else {
            invoices::change_state(&mut tx, inv.id, next, today).await?
        };
        let retry_on = (!give_up).then(|| (today + chrono::Days::new(RETRY_DAYS)).to_string());
        crate::events::record(
            &mut tx,
            if give_up {
                "invoice.charge_failed"
            } else {
                "invoice.charge_failed_will_retry"
            },
            inv.account_id,
            &json!({"invoice_id": inv.id, "friendly_id": inv.friendly_id, "amount": attempt.amount.to_string(),
                    "message": outcome.message, "attempt": retries, "retry_on": retry_on}),
        )
        .await?;
        after
    };
    tx.commit().await?;
    Ok(after)
}

/// `GET /api/invoices/{id}/payment_transactions.json`.
pub async fn transactions(db: &Db, invoice_id: i64) -> Result<Vec<Value>, ApiError> {
    let mut conn = db.pool.acquire().await?;
    invoices::load(&mut conn, invoice_id).await?;
    let rows = sqlx::query(
        "SELECT id, invoice_id, account_id, success, amount, currency, gateway, reference, message, created_at
         FROM payment_transactions WHERE invoice_id = $1 ORDER BY id",
    )
    .bind(invoice_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            let created: String = r.try_get("created_at")?;
            let amount: String = r.try_get("amount")?;
            Ok(json!({
                "id": r.try_get::<i64, _>("id")?, "invoice_id": r.try_get::<i64, _>("invoice_id")?,
                "account_id": r.try_get::<i64, _>("account_id")?,
                "success": r.try_get::<i64, _>("success")? != 0,
                "amount": crate::catalog::resource::money_number(&amount),
                "currency": r.try_get::<String, _>("currency")?, "action": "purchase",
                "gateway": r.try_get::<String, _>("gateway")?,
                "reference": r.try_get::<Option<String>, _>("reference")?,
                "message": r.try_get::<String, _>("message")?, "test": false,
                "created_at": created, "updated_at": created,
            }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn stripe_takes_minor_units() {
        let d = |s| Decimal::from_str(s).unwrap();
        assert_eq!(minor_amount(d("10.005"), "USD"), Some(1001));
        assert_eq!(minor_amount(d("1200"), "JPY"), Some(1200));
        assert_eq!(minor_amount(d("1.2345"), "KWD"), Some(1235));
        assert_eq!(minor_amount(d("1"), "XXX"), None);
    }

    #[test]
    fn stripe_errors_become_messages() {
        let body = json!({"error": {"type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds",
            "message": "Your card has insufficient funds.", "payment_intent": {"id": "pi_1", "status": "requires_payment_method"}}});
        let o = declined(&body, None);
        assert!(!o.success);
        assert_eq!(o.reference.as_deref(), Some("pi_1"));
        assert_eq!(o.message, "Your card has insufficient funds. (insufficient_funds)");
    }
}
