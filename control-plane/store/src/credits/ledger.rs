//! The credit ledger: every grant, deduction, adjustment and expiry of an account, each with the
//! balance after it; grants; the wallet row that serializes an account's entries; and the
//! balance as it is enforced right now.

use super::settings;
use crate::catalog::accounts;
use crate::counters::{Amount, CounterStore, Counters, Mode, Scope};
use crate::db::Db;
use crate::error::{Result, StoreError};
use crate::rows::decimal;
use chrono::Utc;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use tollgate_domain::catalog::BillingType;
use tollgate_domain::credits::{from_units, is_low, spent_op, to_units, EntryKind, GrantKind, NewGrant};
use tollgate_domain::form::Page;
use tollgate_domain::ids::{AccountId, ApplicationId, GrantId, MetricId};

/// One ledger entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: i64,
    pub account_id: AccountId,
    pub kind: EntryKind,
    pub amount: Decimal,
    pub balance_after: Decimal,
    pub grant_id: Option<GrantId>,
    pub note: Option<String>,
    /// A deduction's usage, per application and rated metric.
    pub detail: Option<Vec<Deducted>>,
    pub created_at: String,
}

/// The usage behind part of a deduction: what an application's use of a rated metric cost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deducted {
    pub application_id: ApplicationId,
    pub metric_id: MetricId,
    pub metric: String,
    pub quantity: i64,
    /// Credits, as decimal text.
    pub credits: Decimal,
    pub upstream_cost: Decimal,
}

/// A grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub id: GrantId,
    pub account_id: AccountId,
    pub amount: Decimal,
    pub kind: GrantKind,
    pub expires_at: Option<String>,
    pub note: Option<String>,
    pub created_at: String,
}

/// Appends one ledger entry for `account` inside `tx`, with the balance after it; the wallet
/// row is locked first, so that entries of one account are written one at a time.
pub(crate) async fn append(
    tx: &mut AnyConnection,
    account: AccountId,
    kind: EntryKind,
    amount: Decimal,
    grant_id: Option<GrantId>,
    note: Option<&str>,
    detail: Option<Vec<Deducted>>,
) -> Result<Entry> {
    lock_wallet(tx, account).await?;
    let last: Option<String> = sqlx::query_scalar(
        "SELECT balance_after FROM credit_transactions WHERE account_id = $1 ORDER BY id DESC LIMIT 1",
    )
    .bind(account.get())
    .fetch_optional(&mut *tx)
    .await?;
    let before: Decimal = last.and_then(|l| l.parse().ok()).unwrap_or_default();
    let (amount, after) = (amount.normalize(), (before + amount).normalize());
    let now = crate::time::now();
    low_balance(tx, account, after).await?;
    let detail_text = detail
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| StoreError::Internal(e.to_string()))?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO credit_transactions (account_id, kind, amount, balance_after, grant_id, note, detail, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
    )
    .bind(account.get())
    .bind(kind.as_str())
    .bind(amount.to_string())
    .bind(after.to_string())
    .bind(grant_id.map(GrantId::get))
    .bind(note)
    .bind(detail_text)
    .bind(&now)
    .fetch_one(&mut *tx)
    .await?;
    Ok(Entry {
        id,
        account_id: account,
        kind,
        amount,
        balance_after: after,
        grant_id,
        note: note.map(str::to_string),
        detail,
        created_at: now,
    })
}

/// Records a `credits.low_balance` event when the ledger's balance crosses below the
/// threshold, once per crossing: the wallet remembers it is low until the balance is back up.
async fn low_balance(tx: &mut AnyConnection, account: AccountId, balance: Decimal) -> Result<()> {
    let threshold = settings::read_in(tx).await?.low_balance_threshold;
    let low = is_low(balance, threshold);
    let flip = sqlx::query("UPDATE credit_wallets SET low_balance = $1 WHERE account_id = $2 AND low_balance <> $1")
        .bind(i64::from(low))
        .bind(account.get())
        .execute(&mut *tx)
        .await?;
    if low && flip.rows_affected() == 1 {
        let payload = serde_json::json!({"balance": balance.to_string(), "threshold": threshold.to_string()});
        crate::events::record(tx, "credits.low_balance", account, &payload).await?;
    }
    Ok(())
}

/// Creates the account's wallet row if missing and locks it for the transaction.
pub(crate) async fn lock_wallet(tx: &mut AnyConnection, account: AccountId) -> Result<()> {
    sqlx::query(
        "INSERT INTO credit_wallets (account_id, spent_units, low_balance) VALUES ($1, 0, 0) ON CONFLICT (account_id) DO NOTHING",
    )
    .bind(account.get())
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE credit_wallets SET spent_units = spent_units WHERE account_id = $1")
        .bind(account.get())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Everything granted, adjusted and expired (every ledger entry but deductions), in units.
pub(crate) async fn granted_units(db: &Db, account: AccountId) -> Result<i64> {
    let amounts: Vec<String> =
        sqlx::query_scalar("SELECT amount FROM credit_transactions WHERE account_id = $1 AND kind <> 'deduction'")
            .bind(account.get())
            .fetch_all(&db.pool)
            .await?;
    Ok(amounts
        .iter()
        .filter_map(|a| a.parse::<Decimal>().ok().and_then(to_units))
        .fold(0, i64::saturating_add))
}

/// `POST /admin/api/accounts/{id}/credit_grants.json`: the grant and its ledger entry, in one
/// transaction.
pub async fn grant(db: &Db, account: AccountId, g: NewGrant) -> Result<Grant> {
    accounts::ensure(db, account).await?;
    welcome(db, account).await?;
    let mut tx = db.begin_write().await?;
    let grant = insert_grant(&mut tx, account, &g).await?;
    crate::events::record(
        &mut tx,
        "credits.granted",
        account,
        &serde_json::json!({"grant_id": grant.id, "amount": grant.amount.to_string(), "kind": grant.kind.as_str(),
                            "expires_at": grant.expires_at, "note": grant.note}),
    )
    .await?;
    tx.commit().await?;
    Ok(grant)
}

/// The grant row and its ledger entry, inside the caller's transaction.
async fn insert_grant(tx: &mut AnyConnection, account: AccountId, g: &NewGrant) -> Result<Grant> {
    let now = crate::time::now();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO credit_grants (account_id, amount, kind, expires_at, note, created_at)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(account.get())
    .bind(g.amount.to_string())
    .bind(g.kind.as_str())
    .bind(&g.expires_at)
    .bind(&g.note)
    .bind(&now)
    .fetch_one(&mut *tx)
    .await?;
    let id = GrantId::new(id);
    append(
        tx,
        account,
        EntryKind::Grant,
        g.amount,
        Some(id),
        g.note.as_deref(),
        None,
    )
    .await?;
    Ok(Grant {
        id,
        account_id: account,
        amount: g.amount,
        kind: g.kind,
        expires_at: g.expires_at.clone(),
        note: g.note.clone(),
        created_at: now,
    })
}

/// Opens a prepaid account's wallet, with the starter credits, the first time the account is
/// seen prepaid (at signup, or at its first call or credit request after it was created or
/// switched to prepaid some other way). The wallet row is created in the same transaction as
/// the starter grant: racing callers grant once.
pub async fn welcome(db: &Db, account: AccountId) -> Result<()> {
    match accounts::billing_type(db, account).await? {
        Some(BillingType::Prepaid) => open_wallet(db, account).await,
        _ => Ok(()),
    }
}

/// How far back a deduction's detail looks for usage not detailed yet (a day of flushes missed
/// and an hour of slack).
pub(crate) const ATTRIBUTION_WINDOW_SECS: i64 = 25 * 3600;

/// [`welcome`] for an account known to be prepaid.
pub(crate) async fn open_wallet(db: &Db, account: AccountId) -> Result<()> {
    let has_wallet: Option<i64> = sqlx::query_scalar("SELECT account_id FROM credit_wallets WHERE account_id = $1")
        .bind(account.get())
        .fetch_optional(&db.pool)
        .await?;
    if has_wallet.is_some() {
        return Ok(());
    }
    let starter = settings::read(db).await?.starter_credits;
    let mut tx = db.begin_write().await?;
    let opened = sqlx::query(
        "INSERT INTO credit_wallets (account_id, spent_units, low_balance) VALUES ($1, 0, 0) ON CONFLICT (account_id) DO NOTHING",
    )
    .bind(account.get())
    .execute(&mut *tx)
    .await?;
    if opened.rows_affected() == 1 && !starter.is_zero() {
        let g = NewGrant {
            amount: starter,
            kind: GrantKind::Starter,
            expires_at: None,
            note: Some("starter credits".into()),
        };
        insert_grant(&mut tx, account, &g).await?;
    }
    if opened.rows_affected() == 1 {
        // Usage from before the account paid by credit is no deduction's.
        sqlx::query(
            "INSERT INTO credit_attributed (application_id, metric_id, hour_start, value)
             SELECT u.application_id, u.metric_id, u.hour_start, u.value FROM usage_hourly u
             JOIN applications a ON a.id = u.application_id WHERE a.account_id = $1 AND u.hour_start >= $2
             ON CONFLICT (application_id, metric_id, hour_start) DO UPDATE SET value = excluded.value",
        )
        .bind(account.get())
        .bind(Utc::now().timestamp() - ATTRIBUTION_WINDOW_SECS)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

fn grant_kind(raw: &str) -> Result<GrantKind> {
    GrantKind::parse(raw).ok_or_else(|| StoreError::Internal(format!("grant kind `{raw}`")))
}

pub async fn grants(db: &Db, account: AccountId) -> Result<Vec<Grant>> {
    accounts::ensure(db, account).await?;
    welcome(db, account).await?;
    let rows = sqlx::query(
        "SELECT id, amount, kind, expires_at, note, created_at FROM credit_grants WHERE account_id = $1 ORDER BY id",
    )
    .bind(account.get())
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Grant {
                id: GrantId::new(r.try_get("id")?),
                account_id: account,
                amount: decimal(r, "amount")?,
                kind: grant_kind(&r.try_get::<String, _>("kind")?)?,
                expires_at: r.try_get("expires_at")?,
                note: r.try_get("note")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .collect()
}

/// What `GET …/credit_transactions.json` selects: `since`, `until` (RFC 3339), `kind`, a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryFilter {
    pub since: Option<String>,
    pub until: Option<String>,
    pub kind: Option<EntryKind>,
    pub page: Page,
}

impl tollgate_domain::form::FromForm for EntryFilter {
    fn from_form(f: &tollgate_domain::form::Form) -> Result<Self, tollgate_domain::Invalid> {
        use tollgate_domain::credits::time;
        let kind = match f.text("kind") {
            None => None,
            Some(k) => Some(EntryKind::parse(k).ok_or_else(|| {
                tollgate_domain::Invalid::field("kind", "must be grant, deduction, adjustment or expiry")
            })?),
        };
        Ok(EntryFilter {
            since: time(f, "since")?,
            until: time(f, "until")?,
            kind,
            page: Page::from_form(f)?,
        })
    }
}

/// The ledger, oldest first.
pub async fn transactions(db: &Db, account: AccountId, f: &EntryFilter) -> Result<Vec<Entry>> {
    accounts::ensure(db, account).await?;
    welcome(db, account).await?;
    let rows = sqlx::query(
        "SELECT id, kind, amount, balance_after, grant_id, note, detail, created_at FROM credit_transactions
         WHERE account_id = $1 AND ($2 = '' OR created_at >= $2) AND ($3 = '' OR created_at <= $3)
           AND ($4 = '' OR kind = $4)
         ORDER BY id LIMIT $5 OFFSET $6",
    )
    .bind(account.get())
    .bind(f.since.as_deref().unwrap_or(""))
    .bind(f.until.as_deref().unwrap_or(""))
    .bind(f.kind.map_or("", EntryKind::as_str))
    .bind(f.page.per_page)
    .bind(f.page.offset())
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            let kind: String = r.try_get("kind")?;
            Ok(Entry {
                id: r.try_get("id")?,
                account_id: account,
                kind: EntryKind::parse(&kind).ok_or_else(|| StoreError::Internal(format!("entry kind `{kind}`")))?,
                amount: decimal(r, "amount")?,
                balance_after: decimal(r, "balance_after")?,
                grant_id: r.try_get::<Option<i64>, _>("grant_id")?.map(GrantId::new),
                note: r.try_get("note")?,
                detail: r
                    .try_get::<Option<String>, _>("detail")?
                    .and_then(|d| serde_json::from_str(&d).ok()),
                created_at: r.try_get("created_at")?,
            })
        })
        .collect()
}

/// An account's credits as enforced right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balance {
    /// What the gateway enforces: the ledger less what was spent since the last flush.
    pub balance: Decimal,
    /// Spent (counted by authrep and reports) but not yet in the ledger: AIGNE Hub's pending
    /// deductions.
    pub pending: Decimal,
    pub total_purchased: Decimal,
    pub total_granted: Decimal,
    /// The soonest expiry of a live grant.
    pub expiring_next: Option<String>,
}

/// `GET …/credit_balance.json`.
pub async fn balance(db: &Db, counters: &Counters, account: AccountId) -> Result<Balance> {
    accounts::ensure(db, account).await?;
    welcome(db, account).await?;
    let granted = granted_units(db, account).await?;
    let recorded: i64 = sqlx::query_scalar("SELECT spent_units FROM credit_wallets WHERE account_id = $1")
        .bind(account.get())
        .fetch_optional(&db.pool)
        .await?
        .unwrap_or(0);
    let spent = spent(counters, account).await?.max(recorded);
    let totals = sqlx::query("SELECT kind, amount, expires_at, expired_units FROM credit_grants WHERE account_id = $1")
        .bind(account.get())
        .fetch_all(&db.pool)
        .await?;
    let (mut purchased, mut total) = (Decimal::ZERO, Decimal::ZERO);
    let mut expiring: Option<String> = None;
    let now = crate::time::now();
    for r in &totals {
        let amount = decimal(r, "amount")?;
        total += amount;
        if grant_kind(&r.try_get::<String, _>("kind")?)? == GrantKind::Purchase {
            purchased += amount;
        }
        let live = r.try_get::<Option<i64>, _>("expired_units")?.is_none();
        if let Some(e) = r.try_get::<Option<String>, _>("expires_at")?.filter(|_| live) {
            if e > now && expiring.as_ref().is_none_or(|x| e < *x) {
                expiring = Some(e);
            }
        }
    }
    Ok(Balance {
        balance: from_units(granted.saturating_sub(spent)),
        pending: from_units(spent - recorded),
        total_purchased: purchased.normalize(),
        total_granted: total.normalize(),
        expiring_next: expiring,
    })
}

/// What the account has spent, as its counter says now.
pub(crate) async fn spent(counters: &Counters, account: AccountId) -> Result<i64> {
    let read = counters
        .apply(
            Scope::account(account),
            &[spent_op(account, Amount::Add(0))],
            Mode::Check,
        )
        .await?;
    Ok(read.values.first().copied().unwrap_or(0))
}

/// The prepaid accounts (those that spend credits), by name, a page of them, and how many
/// there are: the console's credit users.
pub async fn prepaid_accounts(db: &Db, page: Page) -> Result<(Vec<(AccountId, String)>, i64)> {
    let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM accounts WHERE billing_type = 'prepaid'")
        .fetch_one(&db.pool)
        .await?;
    let rows = sqlx::query(
        "SELECT id, org_name FROM accounts WHERE billing_type = 'prepaid' ORDER BY org_name, id LIMIT $1 OFFSET $2",
    )
    .bind(page.per_page)
    .bind(page.offset())
    .fetch_all(&db.pool)
    .await?;
    let list = rows
        .iter()
        .map(|r| Ok((AccountId::new(r.try_get("id")?), r.try_get("org_name")?)))
        .collect::<Result<_>>()?;
    Ok((list, total))
}
