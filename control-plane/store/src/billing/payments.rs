//! Charging invoices (SPEC §6.6): a gateway trait with two gateways — `offline` (an admin marks
//! invoices paid; charging does nothing) and Stripe (PaymentIntents, off-session, confirmed at
//! once). Card data never reaches us: an account holds the gateway's customer reference
//! (`credit_card_token`), optionally a payment-method reference, the last 4 digits and the
//! expiry. Every attempt that reached a gateway is a payment transaction, recorded whatever
//! happened to the invoice meanwhile: money taken is never lost. A failed attempt moves the
//! invoice to `unpaid`, and after the third retry (3 days apart) to `failed`.

use super::invoices;
use super::settings;
use crate::db::Db;
use crate::error::{Result, StoreError};
use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use sqlx::{AnyConnection, Row};
use std::future::Future;
use tollgate_domain::billing::GatewayKind;
use tollgate_domain::billing_plan::{MAX_RETRIES, RETRY_DAYS};
use tollgate_domain::form::{Form, FromForm};
use tollgate_domain::ids::{AccountId, InvoiceId};
use tollgate_domain::invoice::{Address, Invoice, State};
use tollgate_domain::Invalid;

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
        let Some(minor) = tollgate_domain::money::minor_amount(c.amount, &c.currency) else {
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

/// The account's payment method at the gateway.
#[derive(Debug, Clone)]
pub struct Card {
    pub customer: String,
    pub payment_method: Option<String>,
}

async fn card(conn: &mut AnyConnection, account: AccountId) -> Result<Option<Card>> {
    let row = sqlx::query("SELECT credit_card_token, payment_method_ref FROM accounts WHERE id = $1")
        .bind(account.get())
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardInput {
    pub token: String,
    pub payment_method: Option<String>,
    /// The last 4 digits at most: card numbers are never stored.
    pub partial: Option<String>,
    /// `YYYY-MM`.
    pub expires: Option<String>,
    pub address: Option<Address>,
}

impl FromForm for CardInput {
    fn from_form(p: &Form) -> Result<Self, Invalid> {
        let token = p.required("credit_card_token")?.trim().to_string();
        let year = p.parse::<i32>("credit_card_expiration_year")?;
        let month = p.parse::<u32>("credit_card_expiration_month")?;
        let expires = match (year, month) {
            (Some(y), Some(m)) if (1..=12).contains(&m) => {
                Some(format!("{:04}-{m:02}", if y < 100 { 2000 + y } else { y }))
            }
            (None, None) => None,
            (_, Some(m)) if !(1..=12).contains(&m) => {
                return Err(Invalid::field("credit_card_expiration_month", "must be 1 to 12"))
            }
            _ => {
                return Err(Invalid::field(
                    "credit_card_expiration_year",
                    "give the year and the month",
                ))
            }
        };
        let partial = p.text("credit_card_partial_number").map(str::to_string);
        if partial
            .as_deref()
            .is_some_and(|s| s.len() > 4 && s.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(Invalid::field(
                "credit_card_partial_number",
                "only the last 4 digits: card numbers are never stored",
            ));
        }
        let address = match p.get("billing_address_name").is_some() || p.get("billing_address_address").is_some() {
            false => None,
            true => {
                let mut pairs = Vec::new();
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
                        pairs.push((ours.to_string(), v.to_string()));
                    }
                }
                Some(Address::from_form(&Form(pairs))?)
            }
        };
        Ok(CardInput {
            token,
            payment_method: p.text("payment_method_id").map(str::to_string),
            partial,
            expires,
            address,
        })
    }
}

/// What the account's card is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardStatus {
    pub account_id: AccountId,
    pub partial: Option<String>,
    pub expires_on: Option<String>,
}

pub async fn set_card(db: &Db, account: AccountId, c: &CardInput) -> Result<CardStatus> {
    let mut tx = db.begin_write().await?;
    let done = sqlx::query(
        "UPDATE accounts SET credit_card_token = $1, payment_method_ref = $2, credit_card_partial_number = $3,
           credit_card_expires_on = $4, updated_at = $5 WHERE id = $6",
    )
    .bind(&c.token)
    .bind(&c.payment_method)
    .bind(&c.partial)
    .bind(&c.expires)
    .bind(crate::time::now())
    .bind(account.get())
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    if let Some(address) = &c.address {
        crate::catalog::accounts::write_billing_address(&mut tx, account, address).await?;
    }
    tx.commit().await?;
    Ok(CardStatus {
        account_id: account,
        partial: c.partial.clone(),
        expires_on: c.expires.clone(),
    })
}

/// The account's card as a screen may show it (last 4 digits, expiry; never the gateway's
/// references): `None` when no card is stored.
pub async fn card_status(db: &Db, account: AccountId) -> Result<Option<CardStatus>> {
    let row = sqlx::query(
        "SELECT credit_card_token, credit_card_partial_number, credit_card_expires_on FROM accounts WHERE id = $1",
    )
    .bind(account.get())
    .fetch_optional(&db.pool)
    .await?
    .ok_or(StoreError::NotFound)?;
    let stored = row
        .try_get::<Option<String>, _>("credit_card_token")?
        .is_some_and(|t| !t.is_empty());
    Ok(match stored {
        true => Some(CardStatus {
            account_id: account,
            partial: row.try_get("credit_card_partial_number")?,
            expires_on: row.try_get("credit_card_expires_on")?,
        }),
        false => None,
    })
}

/// `DELETE /admin/api/accounts/{id}/credit_card.json`.
pub async fn delete_card(db: &Db, account: AccountId) -> Result<()> {
    let done = sqlx::query(
        "UPDATE accounts SET credit_card_token = NULL, payment_method_ref = NULL, credit_card_partial_number = NULL,
           credit_card_expires_on = NULL, updated_at = $1 WHERE id = $2",
    )
    .bind(crate::time::now())
    .bind(account.get())
    .execute(&db.pool)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// The provider's gateways, as configured: which one charges is a billing setting.
#[derive(Clone, Default)]
pub struct Gateways {
    pub stripe: Option<std::sync::Arc<Stripe>>,
}

/// Why an invoice was not charged.
#[derive(Debug, thiserror::Error)]
pub enum ChargeError {
    /// No attempt was made (no gateway, no card, nothing to charge, a state that is not
    /// chargeable): the invoice waits, e.g. for an admin to mark it paid.
    #[error("not charged: {0}")]
    NotChargeable(Invalid),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ChargeError {
    fn from(e: sqlx::Error) -> Self {
        ChargeError::Store(e.into())
    }
}

fn not_chargeable(field: &str, message: impl Into<String>) -> ChargeError {
    ChargeError::NotChargeable(Invalid::field(field, message))
}

/// Charges an invoice through the provider's gateway on `today`: records the transaction and
/// moves the invoice (`paid`; or `unpaid`, then `failed` after the last retry), with events.
pub async fn charge(
    db: &Db,
    gateways: &Gateways,
    id: InvoiceId,
    today: NaiveDate,
) -> Result<(Invoice, Outcome), ChargeError> {
    let settings = settings::get(db).await?;
    let mut conn = db.pool.acquire().await?;
    let inv = invoices::load(&mut conn, id).await?;
    if !inv.state.chargeable() {
        return Err(not_chargeable(
            "state",
            format!(
                "is {}: only pending or unpaid invoices can be charged",
                inv.state.as_str()
            ),
        ));
    }
    let total = invoices::view(&mut conn, inv.clone()).await?.totals.with_vat;
    let card = card(&mut conn, inv.account_id).await?;
    drop(conn);
    let Some(card) = card else {
        return Err(not_chargeable(
            "base",
            "Failed to charge the credit card: the account has no credit card",
        ));
    };
    if total <= Decimal::ZERO {
        return Err(not_chargeable(
            "base",
            "Failed to charge the credit card: nothing to charge",
        ));
    }
    let attempt = Charge {
        amount: total,
        currency: inv.currency.clone(),
        customer: card.customer.clone(),
        payment_method: card.payment_method.clone(),
        description: format!("Invoice {}", inv.friendly_id),
        idempotency_key: format!(
            "tollgate-invoice-{}-attempt-{}-{today}",
            inv.id, inv.charging_retries_count
        ),
    };
    let outcome = match (settings.payment_gateway, &gateways.stripe) {
        (GatewayKind::Stripe, Some(stripe)) => stripe.charge(&attempt).await,
        (GatewayKind::Stripe, None) => {
            return Err(not_chargeable(
                "base",
                "Failed to charge the credit card: Stripe is not configured (TOLLGATE_STRIPE_SECRET_KEY)",
            ))
        }
        (GatewayKind::Offline, _) => {
            return Err(not_chargeable(
                "base",
                "Failed to charge the credit card: the offline gateway does not charge; mark the invoice paid",
            ))
        }
    };
    let after = record(db, &inv, &attempt, &outcome, settings.payment_gateway, today).await?;
    Ok((after, outcome))
}

/// Records an attempt and its consequences in one transaction. The payment transaction is
/// written whatever the invoice did meanwhile: if it moved while the gateway was charging (an
/// admin marked it paid or cancelled it), the state change is skipped, and the invoice is
/// flagged with an `invoice.payment_unreconciled` event for someone to settle (a refund, or a
/// double payment to return). Money taken is always recorded.
async fn record(
    db: &Db,
    inv: &Invoice,
    attempt: &Charge,
    outcome: &Outcome,
    gateway: GatewayKind,
    today: NaiveDate,
) -> Result<Invoice> {
    let mut tx = db.begin_write().await?;
    sqlx::query(
        "INSERT INTO payment_transactions (invoice_id, account_id, success, amount, currency, gateway, reference, message, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(inv.id.get())
    .bind(inv.account_id.get())
    .bind(i64::from(outcome.success))
    .bind(attempt.amount.to_string())
    .bind(&attempt.currency)
    .bind(gateway.as_str())
    .bind(&outcome.reference)
    .bind(&outcome.message)
    .bind(crate::time::now())
    .execute(&mut *tx)
    .await?;
    let moved = if outcome.success {
        let paid = invoices::change_state(&mut tx, inv.id, State::Paid, today).await;
        if paid.is_ok() {
            crate::events::record(
                &mut tx,
                "invoice.charged",
                inv.account_id,
                &json!({"invoice_id": inv.id, "friendly_id": inv.friendly_id, "amount": attempt.amount.to_string(),
                        "currency": attempt.currency, "reference": outcome.reference}),
            )
            .await?;
        }
        paid
    } else {
        failed(&mut tx, inv, attempt, outcome, today).await
    };
    let after = match moved {
        Ok(after) => after,
        // The invoice is no longer where the charge found it.
        Err(StoreError::Invalid(why)) => {
            let current = invoices::load(&mut tx, inv.id).await?;
            tracing::error!(invoice = %inv.id, state = current.state.as_str(), success = outcome.success, %why,
                "a charge came back after the invoice moved; recorded, and flagged for review");
            crate::events::record(
                &mut tx,
                "invoice.payment_unreconciled",
                inv.account_id,
                &json!({"invoice_id": inv.id, "friendly_id": inv.friendly_id, "state": current.state.as_str(),
                        "success": outcome.success, "amount": attempt.amount.to_string(),
                        "currency": attempt.currency, "reference": outcome.reference}),
            )
            .await?;
            current
        }
        Err(e) => return Err(e),
    };
    tx.commit().await?;
    Ok(after)
}

/// A failed attempt: one more retry counted; `unpaid`, or `failed` after the last.
async fn failed(
    conn: &mut AnyConnection,
    inv: &Invoice,
    attempt: &Charge,
    outcome: &Outcome,
    today: NaiveDate,
) -> Result<Invoice> {
    let retries: i64 = sqlx::query_scalar(
        "UPDATE invoices SET charging_retries_count = charging_retries_count + 1, last_charged_on = $1
         WHERE id = $2 RETURNING charging_retries_count",
    )
    .bind(today.to_string())
    .bind(inv.id.get())
    .fetch_one(&mut *conn)
    .await?;
    let give_up = retries > MAX_RETRIES;
    let next = if give_up { State::Failed } else { State::Unpaid };
    let current = invoices::load(conn, inv.id).await?;
    let after = if current.state == next {
        current
    } else {
        invoices::change_state(conn, inv.id, next, today).await?
    };
    let retry_on = (!give_up).then(|| (today + chrono::Days::new(RETRY_DAYS)).to_string());
    crate::events::record(
        conn,
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
    Ok(after)
}

/// One charge attempt, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentTransaction {
    pub id: i64,
    pub invoice_id: InvoiceId,
    pub account_id: AccountId,
    pub success: bool,
    pub amount: Decimal,
    pub currency: String,
    pub gateway: String,
    pub reference: Option<String>,
    pub message: String,
    pub created_at: String,
}

/// `GET /api/invoices/{id}/payment_transactions.json`.
pub async fn transactions(db: &Db, invoice: InvoiceId) -> Result<Vec<PaymentTransaction>> {
    let mut conn = db.pool.acquire().await?;
    invoices::load(&mut conn, invoice).await?;
    let rows = sqlx::query(
        "SELECT id, invoice_id, account_id, success, amount, currency, gateway, reference, message, created_at
         FROM payment_transactions WHERE invoice_id = $1 ORDER BY id",
    )
    .bind(invoice.get())
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(PaymentTransaction {
                id: r.try_get("id")?,
                invoice_id: InvoiceId::new(r.try_get("invoice_id")?),
                account_id: AccountId::new(r.try_get("account_id")?),
                success: r.try_get::<i64, _>("success")? != 0,
                amount: crate::rows::decimal(r, "amount")?,
                currency: r.try_get("currency")?,
                gateway: r.try_get("gateway")?,
                reference: r.try_get("reference")?,
                message: r.try_get("message")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
