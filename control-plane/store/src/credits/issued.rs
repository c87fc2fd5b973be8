//! Credits issued to a developer for a billing month (Apigee's): positive or negative, never
//! 0. A prepaid account's balance moves at once (an `adjustment` entry); a postpaid account's
//! credit waits for that month's invoice, where the billing run puts it as a line of minus the
//! amount.

use super::ledger::{append, open_wallet};
use crate::catalog::accounts;
use crate::db::Db;
use crate::error::{Result, StoreError};
use crate::rows::decimal;
use rust_decimal::Decimal;
use sqlx::Row;
use tollgate_domain::catalog::BillingType;
use tollgate_domain::credits::{EntryKind, NewIssuedCredit};
use tollgate_domain::ids::{AccountId, PlanId, ServiceId};

/// An issued credit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub id: i64,
    pub account_id: AccountId,
    pub amount: Decimal,
    pub currency: String,
    pub billing_month: String,
    pub note: Option<String>,
    pub service_id: Option<ServiceId>,
    pub application_plan_id: Option<PlanId>,
    /// The ledger entry it made (prepaid), else it goes on an invoice (postpaid).
    pub transaction_id: Option<i64>,
    pub invoiced_at: Option<String>,
    pub created_at: String,
}

fn this_month() -> String {
    chrono::Utc::now().format("%Y-%m").to_string()
}

/// `POST /admin/api/accounts/{id}/credits.json`.
pub async fn issue(db: &Db, account: AccountId, c: NewIssuedCredit) -> Result<Issued> {
    accounts::ensure(db, account).await?;
    let prepaid = accounts::billing_type(db, account).await? == Some(BillingType::Prepaid);
    if prepaid {
        open_wallet(db, account).await?;
    }
    let month = c.billing_month.clone().unwrap_or_else(this_month);
    let mut tx = db.begin_write().await?;
    for (field, table, id) in [
        ("service_id", "services", c.service_id.map(ServiceId::get)),
        (
            "application_plan_id",
            "application_plans",
            c.application_plan_id.map(PlanId::get),
        ),
    ] {
        if let Some(id) = id {
            let found: Option<i64> = sqlx::query_scalar(&format!("SELECT id FROM {table} WHERE id = $1"))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            found.ok_or_else(|| StoreError::invalid(field, "does not exist"))?;
        }
    }
    let transaction_id = match prepaid {
        true => Some(
            append(
                &mut tx,
                account,
                EntryKind::Adjustment,
                c.amount,
                None,
                c.note.as_deref(),
                None,
            )
            .await?
            .id,
        ),
        false => None,
    };
    let now = crate::time::now();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO issued_credits (account_id, amount, currency, billing_month, note, service_id, application_plan_id, transaction_id, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
    )
    .bind(account.get())
    .bind(c.amount.normalize().to_string())
    .bind(&c.currency)
    .bind(&month)
    .bind(&c.note)
    .bind(c.service_id.map(ServiceId::get))
    .bind(c.application_plan_id.map(PlanId::get))
    .bind(transaction_id)
    .bind(&now)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Issued {
        id,
        account_id: account,
        amount: c.amount.normalize(),
        currency: c.currency,
        billing_month: month,
        note: c.note,
        service_id: c.service_id,
        application_plan_id: c.application_plan_id,
        transaction_id,
        invoiced_at: None,
        created_at: now,
    })
}

/// `GET /admin/api/accounts/{id}/credits.json` (optionally of one billing month).
pub async fn list(db: &Db, account: AccountId, month: Option<&str>) -> Result<Vec<Issued>> {
    accounts::ensure(db, account).await?;
    let rows = sqlx::query(
        "SELECT id, amount, currency, billing_month, note, service_id, application_plan_id, transaction_id, invoiced_at, created_at
         FROM issued_credits WHERE account_id = $1 AND ($2 = '' OR billing_month = $2) ORDER BY id",
    )
    .bind(account.get())
    .bind(month.unwrap_or(""))
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(|r| from_row(r, account)).collect()
}

fn from_row(r: &sqlx::any::AnyRow, account: AccountId) -> Result<Issued> {
    Ok(Issued {
        id: r.try_get("id")?,
        account_id: account,
        amount: decimal(r, "amount")?,
        currency: r.try_get("currency")?,
        billing_month: r.try_get("billing_month")?,
        note: r.try_get("note")?,
        service_id: r.try_get::<Option<i64>, _>("service_id")?.map(ServiceId::new),
        application_plan_id: r.try_get::<Option<i64>, _>("application_plan_id")?.map(PlanId::new),
        transaction_id: r.try_get("transaction_id")?,
        invoiced_at: r.try_get("invoiced_at")?,
        created_at: r.try_get("created_at")?,
    })
}

/// Every account's issued credits, newest first, with the account's name (the console's
/// Credits page): `search` matches the account's name or the note.
pub async fn all(
    db: &Db,
    search: Option<&str>,
    page: tollgate_domain::form::Page,
) -> Result<(Vec<(Issued, String)>, i64)> {
    let pattern = search
        .filter(|s| !s.trim().is_empty())
        .map(crate::catalog::resource::like_pattern)
        .unwrap_or_default();
    const MATCHING: &str = "FROM issued_credits c JOIN accounts a ON a.id = c.account_id
         WHERE ($1 = '' OR LOWER(a.org_name) LIKE $1 OR LOWER(COALESCE(c.note, '')) LIKE $1)";
    let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) {MATCHING}"))
        .bind(&pattern)
        .fetch_one(&db.pool)
        .await?;
    let rows = sqlx::query(&format!(
        "SELECT c.id, c.account_id, a.org_name, c.amount, c.currency, c.billing_month, c.note, c.service_id,
           c.application_plan_id, c.transaction_id, c.invoiced_at, c.created_at {MATCHING}
         ORDER BY c.id DESC LIMIT $2 OFFSET $3"
    ))
    .bind(&pattern)
    .bind(page.per_page)
    .bind(page.offset())
    .fetch_all(&db.pool)
    .await?;
    let list = rows
        .iter()
        .map(|r| {
            Ok((
                from_row(r, AccountId::new(r.try_get("account_id")?))?,
                r.try_get("org_name")?,
            ))
        })
        .collect::<Result<_>>()?;
    Ok((list, total))
}
