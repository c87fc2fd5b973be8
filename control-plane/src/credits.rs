//! Prepaid credits (SPEC §7): a prepaid account's calls cost credits, and the balance is
//! enforced in authrep itself, not minutes later.
//!
//! - **The hot balance** is one counter per account ([`SPENT_COUNTER`], owned by the account:
//!   [`Op::account`]): what the account has spent, in [`UNITS`] per credit, limited by what it
//!   was granted. A call's cost is one more op of the call, so it is checked and deducted
//!   atomically with the limit counters (the same Lua script, the same shard locks), and a
//!   denied call deducts nothing.
//! - **The ledger** (`credit_transactions`) is the truth: grants, adjustments and expiries are
//!   written when they happen; deductions by [`flush`], which copies the spent counter's growth
//!   into the ledger. `credit_wallets.spent_units` remembers how much of the counter the ledger
//!   holds, and the copy is a conditional update, so a repeated or raced flush writes nothing
//!   twice. A counter behind the ledger (Redis lost its data) is set back up to it: the ledger
//!   wins.
//! - **Expiry**: grants that expire soonest are consumed first ([`unspent`]); when a grant's
//!   time comes, [`expire`] writes what it had left as an `expiry` entry (once: the grant is
//!   marked in the same transaction). It runs on the usage flush's beat, so a grant expires
//!   within `TOLLGATE_USAGE_FLUSH_MS` of its time, and gateways see it within the cache TTL.
//! - **Low balance**: a ledger entry that takes the balance below `low_balance_threshold`
//!   records a `credits.low_balance` event in the event log, once per crossing (the wallet
//!   remembers; a grant that lifts the balance re-arms it).
//! - **Staleness**: the spent counter is shared by every replica (Redis) or there is one replica
//!   (embedded), so deductions are exact everywhere at once. What was *granted* is read through
//!   the hot cache: the replica that took a grant sees it at once, the others within
//!   `TOLLGATE_CACHE_TTL_MS`.
//!
//! The pure parts (costs, ops, balances) are functions over these types; the rest is thin SQL.

use crate::catalog::applications::Application;
use crate::catalog::behaviour::int;
use crate::catalog::resource::{field, Kind, OnCreate, Resource, Values};
use crate::counters::{exceeds, Amount, CounterStore, Counters, Mode, Op};
use crate::db::Db;
use crate::error::ApiError;
use crate::params::Params;
use crate::periods::Period;
use chrono::Utc;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use sqlx::Row;
use std::collections::BTreeMap;

/// The reserved counter id of an account's spent credits (metric ids are positive; response
/// codes take -1..=-999, see [`crate::limits::response_code_counters`]).
pub const SPENT_COUNTER: i64 = -1000;
/// Counter units per credit: credits carry 4 decimals, counters count integers.
pub const UNITS: i64 = 10_000;

/// Credits as counter units; `None` past 4 decimals or out of range.
pub fn to_units(credits: Decimal) -> Option<i64> {
    let units = credits.checked_mul(Decimal::from(UNITS))?;
    (units.fract().is_zero()).then(|| i64::try_from(units).ok()).flatten()
}

/// Counter units as credits.
pub fn from_units(units: i64) -> Decimal {
    Decimal::new(units, 4).normalize()
}

/// What one unit of a metric costs, for every plan of the service or for one plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rate {
    pub metric_id: i64,
    pub application_plan_id: Option<i64>,
    /// Counter units per unit of the metric.
    pub units: i64,
    /// What a unit costs the provider upstream, in the same units (for the margin report).
    pub upstream_units: i64,
}

/// A prepaid account as authrep needs it, for one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wallet {
    pub account_id: i64,
    /// Everything granted, adjusted and expired, in units: the spent counter's limit.
    pub granted_units: i64,
    pub rates: Vec<Rate>,
    /// Where the developer buys more (the credit settings'), for the 402 at the gateway.
    pub purchase_url: Option<String>,
}

/// What a call's usage costs, per rated metric: (metric, credit units, upstream units). A
/// plan's own rate takes precedence over the service's general one. Sets (`#N`, corrections)
/// cost nothing.
pub fn charges(rates: &[Rate], plan_id: i64, usage: &BTreeMap<i64, Amount>) -> Vec<(i64, i64, i64)> {
    usage
        .iter()
        .filter_map(|(metric, amount)| match amount {
            Amount::Add(n) if *n > 0 => Some((*metric, *n)),
            _ => None,
        })
        .filter_map(|(metric, n)| {
            let of_metric = || rates.iter().filter(move |r| r.metric_id == metric);
            let rate = of_metric()
                .find(|r| r.application_plan_id == Some(plan_id))
                .or_else(|| of_metric().find(|r| r.application_plan_id.is_none()))?;
            Some((
                metric,
                rate.units.saturating_mul(n),
                rate.upstream_units.saturating_mul(n),
            ))
        })
        .collect()
}

/// A call's cost in units: the sum of its [`charges`].
pub fn cost(rates: &[Rate], plan_id: i64, usage: &BTreeMap<i64, Amount>) -> i64 {
    charges(rates, plan_id, usage)
        .iter()
        .fold(0i64, |sum, (_, units, _)| sum.saturating_add(*units))
}

/// The call's credit op, if the application's account is prepaid (`wallet`): its cost against
/// the account's balance. (Per-metric charges are not counted here: the margin report works
/// them out from the usage tables, and the hot path stays one counter heavier, not three.)
pub fn ops(app: &Application, wallet: Option<&Wallet>, usage: &BTreeMap<i64, Amount>) -> Vec<Op> {
    let Some(wallet) = wallet else { return Vec::new() };
    let amount = Amount::Add(cost(&wallet.rates, app.plan_id, usage));
    vec![Op {
        max: Some(wallet.granted_units),
        ..spent_op(wallet.account_id, amount)
    }]
}

/// What one unit of each of the service's metrics costs the application, its ancestors'
/// rates included (a method's call is also a call of its parent): what a gateway needs to
/// spend a cached balance exactly as authrep would. Free metrics are left out.
pub fn weights(wallet: &Wallet, plan_id: i64, metrics: &[crate::limits::MetricNode]) -> Vec<(String, i64)> {
    metrics
        .iter()
        .map(|m| {
            let one = crate::limits::expand(&[(m.id, Amount::Add(1))], metrics, false);
            (m.system_name.clone(), cost(&wallet.rates, plan_id, &one))
        })
        .filter(|(_, w)| *w > 0)
        .collect()
}

/// Whether a denied call was denied for its credits: its credit op would pass the balance.
pub fn exhausted(ops: &[Op], values: &[i64]) -> bool {
    ops.iter()
        .zip(values)
        .any(|(op, value)| op.metric_id == SPENT_COUNTER && exceeds(*value, op.amount, op.max))
}

/// One grant, for working out what of it is still unspent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantState {
    pub id: i64,
    pub units: i64,
    /// RFC 3339; `None`: never expires.
    pub expires_at: Option<String>,
    /// Units that left the balance when it expired; `None`: not expired.
    pub expired_units: Option<i64>,
}

/// Each live grant's unspent units, when `spent` units have been spent in all: grants that
/// expire soonest are consumed first (those that never expire last, oldest first). An expired
/// grant consumed what it did not give up at expiry.
pub fn unspent(grants: &[GrantState], spent: i64) -> Vec<(i64, i64)> {
    let mut left = grants
        .iter()
        .filter_map(|g| Some(g.units - g.expired_units?))
        .fold(spent, i64::saturating_sub)
        .max(0);
    let mut live: Vec<&GrantState> = grants.iter().filter(|g| g.expired_units.is_none()).collect();
    // `None` sorts first for Option; never-expiring grants go last.
    live.sort_by(|a, b| match (&a.expires_at, &b.expires_at) {
        (Some(x), Some(y)) => x.cmp(y).then(a.id.cmp(&b.id)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.id.cmp(&b.id),
    });
    live.into_iter()
        .map(|g| {
            let used = left.min(g.units);
            left -= used;
            (g.id, g.units - used)
        })
        .collect()
}

/// The op that reads (or, with `amount`, moves) an account's spent counter.
pub fn spent_op(account_id: i64, amount: Amount) -> Op {
    Op {
        metric_id: SPENT_COUNTER,
        period: Period::Eternity,
        start: 0,
        ttl: None,
        amount,
        max: None,
        account: Some(account_id),
    }
}

/// Which amounts of credits a field takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sign {
    /// Grants: more than 0.
    Positive,
    /// Issued credits: either way, never 0.
    NonZero,
    /// Settings: 0 or more.
    NonNegative,
}

/// An amount of credits from a parameter: a decimal with at most 4 places, of the `sign` the
/// field takes. Errors name the field.
pub fn parse_credits(p: &Params, field: &str, sign: Sign) -> Result<Option<Decimal>, ApiError> {
    let Some(value) = p.parse::<Decimal>(field)? else {
        return Ok(None);
    };
    if to_units(value).is_none() {
        return Err(ApiError::invalid(field, "must have at most 4 decimal places"));
    }
    let (negative, zero) = (value.is_sign_negative() && !value.is_zero(), value.is_zero());
    match sign {
        Sign::Positive if negative || zero => Err(ApiError::invalid(field, "must be greater than 0")),
        Sign::NonZero if zero => Err(ApiError::invalid(field, "must not be 0")),
        Sign::NonNegative if negative => Err(ApiError::invalid(field, "must not be negative")),
        _ => Ok(Some(value)),
    }
}

// ---- rates ----

/// `/admin/api/services/{service_id}/credit_rates.json`: what a unit of a metric costs, for
/// every plan of the service or (`application_plan_id`) one plan.
pub const CREDIT_RATE: Resource = Resource {
    name: "credit_rate",
    collection: "credit_rates",
    table: "credit_rates",
    scope: &["service_id"],
    fields: &[
        field("metric_id", Kind::Id, OnCreate::Required),
        field("credits_per_unit", Kind::Money, OnCreate::Required),
        field("upstream_cost_per_unit", Kind::Money, OnCreate::Default("0")),
        field("rate_type", Kind::Text, OnCreate::Optional),
        field("description", Kind::Text, OnCreate::Optional),
        field("application_plan_id", Kind::Id, OnCreate::Optional),
    ],
    unique_field: "metric_id",
    transitions: &[],
};

/// A rate's metric must be the service's (its own or a backend's it uses), and its plan one of
/// the service's application plans.
pub async fn rate_before_write(conn: &mut sqlx::AnyConnection, scope: &[i64], values: &Values) -> Result<(), ApiError> {
    let Some(&service_id) = scope.first() else {
        return Err(ApiError::Internal("credit rates need a service".into()));
    };
    if let Some(metric) = int(values, "metric_id") {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM metrics WHERE id = $1 AND (service_id = $2
               OR backend_id IN (SELECT backend_id FROM backend_usages WHERE service_id = $2))",
        )
        .bind(metric)
        .bind(service_id)
        .fetch_optional(&mut *conn)
        .await?;
        found.ok_or_else(|| ApiError::invalid("metric_id", "is not a metric of this service"))?;
    }
    if let Some(plan) = int(values, "application_plan_id") {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT id FROM application_plans WHERE id = $1 AND service_id = $2")
                .bind(plan)
                .bind(service_id)
                .fetch_optional(&mut *conn)
                .await?;
        found.ok_or_else(|| ApiError::invalid("application_plan_id", "is not an application plan of this service"))?;
    }
    Ok(())
}

// ---- settings ----

/// `/admin/api/settings/credits.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub starter_credits: Decimal,
    pub low_balance_threshold: Decimal,
    pub purchase_url: Option<String>,
}

impl Settings {
    pub fn to_json(&self) -> Value {
        json!({
            "starter_credits": self.starter_credits.to_string(),
            "low_balance_threshold": self.low_balance_threshold.to_string(),
            "purchase_url": self.purchase_url,
        })
    }
}

use crate::db::decimal;

pub async fn settings(db: &Db) -> Result<Settings, ApiError> {
    let row =
        sqlx::query("SELECT starter_credits, low_balance_threshold, purchase_url FROM credit_settings WHERE id = 1")
            .fetch_optional(&db.pool)
            .await?;
    Ok(match row {
        Some(r) => Settings {
            starter_credits: decimal(&r, "starter_credits")?,
            low_balance_threshold: decimal(&r, "low_balance_threshold")?,
            purchase_url: r.try_get("purchase_url")?,
        },
        None => Settings {
            starter_credits: Decimal::ZERO,
            low_balance_threshold: Decimal::ZERO,
            purchase_url: None,
        },
    })
}

pub async fn update_settings(db: &Db, p: &Params) -> Result<Settings, ApiError> {
    let mut s = settings(db).await?;
    if let Some(v) = parse_credits(p, "starter_credits", Sign::NonNegative)? {
        s.starter_credits = v;
    }
    if let Some(v) = parse_credits(p, "low_balance_threshold", Sign::NonNegative)? {
        s.low_balance_threshold = v;
    }
    if let Some(url) = p.get("purchase_url") {
        let url = url.trim();
        if !(url.is_empty() || url.starts_with("https://") || url.starts_with("http://")) {
            return Err(ApiError::invalid("purchase_url", "must be an http(s) URL"));
        }
        s.purchase_url = (!url.is_empty()).then(|| url.to_string());
    }
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
    .execute(&db.pool)
    .await?;
    Ok(s)
}

// ---- the wallet authrep reads ----

/// The account's `billing_type` (`None`: no such account).
async fn billing_type(db: &Db, account_id: i64) -> Result<Option<String>, ApiError> {
    Ok(sqlx::query_scalar("SELECT billing_type FROM accounts WHERE id = $1")
        .bind(account_id)
        .fetch_optional(&db.pool)
        .await?)
}

/// An optional RFC 3339 time parameter, normalized to how the database stores times (UTC,
/// seconds); anything else is a 422 naming the field.
fn time_param(p: &Params, field: &str) -> Result<Option<String>, ApiError> {
    match p.get(field).map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .map(|t| {
                Some(
                    t.with_timezone(&chrono::Utc)
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                )
            })
            .map_err(|_| ApiError::invalid(field, "must be an RFC 3339 time")),
        None => Ok(None),
    }
}

/// The account's wallet for calls to `service_id`; `None` for a postpaid account.
pub async fn wallet(db: &Db, account_id: i64, service_id: i64) -> Result<Option<Wallet>, ApiError> {
    let billing = billing_type(db, account_id).await?;
    if billing.as_deref() != Some("prepaid") {
        return Ok(None);
    }
    open_wallet(db, account_id).await?;
    let rates = service_rates(&mut *db.pool.acquire().await?, service_id).await?;
    Ok(Some(Wallet {
        account_id,
        granted_units: granted_units(db, account_id).await?,
        rates,
        purchase_url: settings(db).await?.purchase_url,
    }))
}

/// The service's credit rates.
async fn service_rates(conn: &mut sqlx::AnyConnection, service_id: i64) -> Result<Vec<Rate>, ApiError> {
    sqlx::query("SELECT metric_id, application_plan_id, credits_per_unit, upstream_cost_per_unit FROM credit_rates WHERE service_id = $1")
        .bind(service_id)
        .fetch_all(conn)
        .await?
        .iter()
        .map(|r| {
            Ok(Rate {
                metric_id: r.try_get("metric_id")?,
                application_plan_id: r.try_get("application_plan_id")?,
                units: to_units(decimal(r, "credits_per_unit")?).unwrap_or(i64::MAX),
                upstream_units: to_units(decimal(r, "upstream_cost_per_unit")?).unwrap_or(0),
            })
        })
        .collect()
}

/// Everything granted, adjusted and expired (every ledger entry but deductions), in units.
async fn granted_units(db: &Db, account_id: i64) -> Result<i64, ApiError> {
    let amounts: Vec<String> =
        sqlx::query_scalar("SELECT amount FROM credit_transactions WHERE account_id = $1 AND kind <> 'deduction'")
            .bind(account_id)
            .fetch_all(&db.pool)
            .await?;
    Ok(amounts
        .iter()
        .filter_map(|a| a.parse::<Decimal>().ok().and_then(to_units))
        .fold(0, i64::saturating_add))
}

// ---- the ledger ----

/// Appends one ledger entry for `account_id` inside `tx`, with the balance after it; the
/// wallet row is locked first, so that entries of one account are written one at a time.
/// `detail`: a deduction's usage (see [`attribute`]).
async fn append(
    tx: &mut sqlx::AnyConnection,
    account_id: i64,
    kind: &str,
    amount: Decimal,
    grant_id: Option<i64>,
    note: Option<&str>,
    detail: Option<&Value>,
) -> Result<Value, ApiError> {
    lock_wallet(tx, account_id).await?;
    let last: Option<String> = sqlx::query_scalar(
        "SELECT balance_after FROM credit_transactions WHERE account_id = $1 ORDER BY id DESC LIMIT 1",
    )
    .bind(account_id)
    .fetch_optional(&mut *tx)
    .await?;
    let before: Decimal = last.and_then(|l| l.parse().ok()).unwrap_or_default();
    let (amount, after) = (amount.normalize(), (before + amount).normalize());
    let now = crate::time::now();
    low_balance(tx, account_id, after).await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO credit_transactions (account_id, kind, amount, balance_after, grant_id, note, detail, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
    )
    .bind(account_id)
    .bind(kind)
    .bind(amount.to_string())
    .bind(after.to_string())
    .bind(grant_id)
    .bind(note)
    .bind(detail.map(Value::to_string))
    .bind(&now)
    .fetch_one(&mut *tx)
    .await?;
    Ok(json!({
        "id": id, "account_id": account_id, "kind": kind, "amount": amount.to_string(),
        "balance_after": after.to_string(), "grant_id": grant_id, "note": note, "detail": detail,
        "created_at": now,
    }))
}

/// Whether a balance is low: below the threshold (a threshold of 0 turns the event off).
pub fn is_low(balance: Decimal, threshold: Decimal) -> bool {
    !threshold.is_zero() && balance < threshold
}

/// Records a `credits.low_balance` event when the ledger's balance crosses below the
/// threshold, once per crossing: the wallet remembers it is low until the balance is back up.
async fn low_balance(tx: &mut sqlx::AnyConnection, account_id: i64, balance: Decimal) -> Result<(), ApiError> {
    let threshold: Option<String> =
        sqlx::query_scalar("SELECT low_balance_threshold FROM credit_settings WHERE id = 1")
            .fetch_optional(&mut *tx)
            .await?;
    let threshold = threshold.and_then(|t| t.parse().ok()).unwrap_or(Decimal::ZERO);
    let low = is_low(balance, threshold);
    let flip = sqlx::query("UPDATE credit_wallets SET low_balance = $1 WHERE account_id = $2 AND low_balance <> $1")
        .bind(i64::from(low))
        .bind(account_id)
        .execute(&mut *tx)
        .await?;
    if low && flip.rows_affected() == 1 {
        let payload = json!({"balance": balance.to_string(), "threshold": threshold.to_string()});
        crate::events::record(tx, "credits.low_balance", account_id, &payload).await?;
    }
    Ok(())
}

/// Creates the account's wallet row if missing and locks it for the transaction.
async fn lock_wallet(tx: &mut sqlx::AnyConnection, account_id: i64) -> Result<(), ApiError> {
    sqlx::query(
        "INSERT INTO credit_wallets (account_id, spent_units, low_balance) VALUES ($1, 0, 0) ON CONFLICT (account_id) DO NOTHING",
    )
    .bind(account_id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE credit_wallets SET spent_units = spent_units WHERE account_id = $1")
        .bind(account_id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

const GRANT_KINDS: &[&str] = &["purchase", "manual", "starter", "promotional"];

/// `POST /admin/api/accounts/{id}/credit_grants.json`: the grant and its ledger entry, in one
/// transaction.
pub async fn grant(db: &Db, account_id: i64, p: &Params) -> Result<Value, ApiError> {
    let amount =
        parse_credits(p, "amount", Sign::Positive)?.ok_or_else(|| ApiError::invalid("amount", "can't be blank"))?;
    let kind = p
        .get("kind")
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .unwrap_or("manual");
    if !GRANT_KINDS.contains(&kind) {
        return Err(ApiError::invalid(
            "kind",
            format!("must be one of {}", GRANT_KINDS.join(", ")),
        ));
    }
    let expires_at = time_param(p, "expires_at")?;
    let note = p.get("note").map(str::trim).filter(|n| !n.is_empty());
    insert_grant(db, account_id, amount, kind, expires_at.as_deref(), note).await
}

async fn insert_grant(
    db: &Db,
    account_id: i64,
    amount: Decimal,
    kind: &str,
    expires_at: Option<&str>,
    note: Option<&str>,
) -> Result<Value, ApiError> {
    ensure_account(db, account_id).await?;
    welcome(db, account_id).await?;
    let mut tx = db.pool.begin().await?;
    let grant = insert_grant_in(&mut tx, account_id, amount, kind, expires_at, note).await?;
    tx.commit().await?;
    Ok(grant)
}

/// The grant row and its ledger entry, inside the caller's transaction.
async fn insert_grant_in(
    tx: &mut sqlx::AnyConnection,
    account_id: i64,
    amount: Decimal,
    kind: &str,
    expires_at: Option<&str>,
    note: Option<&str>,
) -> Result<Value, ApiError> {
    let now = crate::time::now();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO credit_grants (account_id, amount, kind, expires_at, note, created_at)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(account_id)
    .bind(amount.to_string())
    .bind(kind)
    .bind(expires_at)
    .bind(note)
    .bind(&now)
    .fetch_one(&mut *tx)
    .await?;
    append(tx, account_id, "grant", amount, Some(id), note, None).await?;
    Ok(json!({
        "id": id, "account_id": account_id, "amount": amount.to_string(), "kind": kind,
        "expires_at": expires_at, "note": note, "created_at": now,
    }))
}

async fn ensure_account(db: &Db, account_id: i64) -> Result<(), ApiError> {
    let found: Option<i64> = sqlx::query_scalar("SELECT id FROM accounts WHERE id = $1")
        .bind(account_id)
        .fetch_optional(&db.pool)
        .await?;
    found.map(|_| ()).ok_or(ApiError::NotFound)
}

/// Opens a prepaid account's wallet, with the starter credits, the first time the account is
/// seen prepaid (at signup, or at its first call or credit request after it was created or
/// switched to prepaid some other way). The wallet row is created in the same transaction as
/// the starter grant: racing callers grant once.
pub async fn welcome(db: &Db, account_id: i64) -> Result<(), ApiError> {
    match billing_type(db, account_id).await?.as_deref() {
        Some("prepaid") => open_wallet(db, account_id).await,
        _ => Ok(()),
    }
}

/// [`welcome`] for an account known to be prepaid.
async fn open_wallet(db: &Db, account_id: i64) -> Result<(), ApiError> {
    let has_wallet: Option<i64> = sqlx::query_scalar("SELECT account_id FROM credit_wallets WHERE account_id = $1")
        .bind(account_id)
        .fetch_optional(&db.pool)
        .await?;
    if has_wallet.is_some() {
        return Ok(());
    }
    let starter = settings(db).await?.starter_credits;
    let mut tx = db.pool.begin().await?;
    let opened = sqlx::query(
        "INSERT INTO credit_wallets (account_id, spent_units, low_balance) VALUES ($1, 0, 0) ON CONFLICT (account_id) DO NOTHING",
    )
    .bind(account_id)
    .execute(&mut *tx)
    .await?;
    if opened.rows_affected() == 1 && !starter.is_zero() {
        insert_grant_in(&mut tx, account_id, starter, "starter", None, Some("starter credits")).await?;
    }
    if opened.rows_affected() == 1 {
        // Usage from before the account paid by credit is no deduction's.
        sqlx::query(
            "INSERT INTO credit_attributed (application_id, metric_id, hour_start, value)
             SELECT u.application_id, u.metric_id, u.hour_start, u.value FROM usage_hourly u
             JOIN applications a ON a.id = u.application_id WHERE a.account_id = $1 AND u.hour_start >= $2
             ON CONFLICT (application_id, metric_id, hour_start) DO UPDATE SET value = excluded.value",
        )
        .bind(account_id)
        .bind(Utc::now().timestamp() - ATTRIBUTION_WINDOW_SECS)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub async fn grants(db: &Db, account_id: i64) -> Result<Vec<Value>, ApiError> {
    ensure_account(db, account_id).await?;
    welcome(db, account_id).await?;
    let rows = sqlx::query(
        "SELECT id, amount, kind, expires_at, note, created_at FROM credit_grants WHERE account_id = $1 ORDER BY id",
    )
    .bind(account_id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(json!({
                "id": r.try_get::<i64, _>("id")?, "account_id": account_id,
                "amount": r.try_get::<String, _>("amount")?, "kind": r.try_get::<String, _>("kind")?,
                "expires_at": r.try_get::<Option<String>, _>("expires_at")?,
                "note": r.try_get::<Option<String>, _>("note")?,
                "detail": r.try_get::<Option<String>, _>("detail")?
                    .and_then(|d| serde_json::from_str::<Value>(&d).ok()),
                "created_at": r.try_get::<String, _>("created_at")?,
            }))
        })
        .collect()
}

/// `GET …/credit_transactions.json`: the ledger, oldest first; filters `since`, `until`
/// (RFC 3339) and `kind`, paginated.
pub async fn transactions(db: &Db, account_id: i64, p: &Params) -> Result<Vec<Value>, ApiError> {
    ensure_account(db, account_id).await?;
    welcome(db, account_id).await?;
    let page = crate::catalog::Page::from_params(p)?;
    let since = time_param(p, "since")?.unwrap_or_default();
    let until = time_param(p, "until")?.unwrap_or_default();
    let kind = p.get("kind").map(str::trim).unwrap_or("");
    if !["", "grant", "deduction", "adjustment", "expiry"].contains(&kind) {
        return Err(ApiError::invalid(
            "kind",
            "must be grant, deduction, adjustment or expiry",
        ));
    }
    let rows = sqlx::query(
        "SELECT id, kind, amount, balance_after, grant_id, note, detail, created_at FROM credit_transactions
         WHERE account_id = $1 AND ($2 = '' OR created_at >= $2) AND ($3 = '' OR created_at <= $3)
           AND ($4 = '' OR kind = $4)
         ORDER BY id LIMIT $5 OFFSET $6",
    )
    .bind(account_id)
    .bind(&since)
    .bind(&until)
    .bind(kind)
    .bind(page.per_page)
    .bind(page.offset())
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(json!({
                "id": r.try_get::<i64, _>("id")?, "account_id": account_id,
                "kind": r.try_get::<String, _>("kind")?, "amount": r.try_get::<String, _>("amount")?,
                "balance_after": r.try_get::<String, _>("balance_after")?,
                "grant_id": r.try_get::<Option<i64>, _>("grant_id")?,
                "note": r.try_get::<Option<String>, _>("note")?,
                "detail": r.try_get::<Option<String>, _>("detail")?
                    .and_then(|d| serde_json::from_str::<Value>(&d).ok()),
                "created_at": r.try_get::<String, _>("created_at")?,
            }))
        })
        .collect()
}

/// `GET …/credit_balance.json`: the balance the gateway enforces right now (the ledger less
/// what was spent since the last flush), what is `pending` (spent, not yet in the ledger), the
/// totals, and the next expiry.
pub async fn balance(db: &Db, counters: &Counters, account_id: i64) -> Result<Value, ApiError> {
    ensure_account(db, account_id).await?;
    welcome(db, account_id).await?;
    let granted = granted_units(db, account_id).await?;
    let recorded: i64 = sqlx::query_scalar("SELECT spent_units FROM credit_wallets WHERE account_id = $1")
        .bind(account_id)
        .fetch_optional(&db.pool)
        .await?
        .unwrap_or(0);
    let spent = spent(counters, account_id).await?.max(recorded);
    let totals = sqlx::query("SELECT kind, amount, expires_at, expired_units FROM credit_grants WHERE account_id = $1")
        .bind(account_id)
        .fetch_all(&db.pool)
        .await?;
    let (mut purchased, mut total) = (Decimal::ZERO, Decimal::ZERO);
    let mut expiring: Option<String> = None;
    let now = crate::time::now();
    for r in &totals {
        let amount = decimal(r, "amount")?;
        total += amount;
        if r.try_get::<String, _>("kind")? == "purchase" {
            purchased += amount;
        }
        let live = r.try_get::<Option<i64>, _>("expired_units")?.is_none();
        if let Some(e) = r.try_get::<Option<String>, _>("expires_at")?.filter(|_| live) {
            if e > now && expiring.as_ref().is_none_or(|x| e < *x) {
                expiring = Some(e);
            }
        }
    }
    Ok(json!({
        "balance": from_units(granted.saturating_sub(spent)).to_string(),
        "pending": from_units(spent - recorded).to_string(),
        "total_purchased": purchased.normalize().to_string(),
        "total_granted": total.normalize().to_string(),
        "expiring_next": expiring,
    }))
}

async fn spent(counters: &Counters, account_id: i64) -> Result<i64, ApiError> {
    let read = counters
        .apply(0, &[spent_op(account_id, Amount::Add(0))], Mode::Check)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(read.values.first().copied().unwrap_or(0))
}

/// How far back a deduction's detail looks for usage not detailed yet (a day of flushes missed
/// and an hour of slack).
const ATTRIBUTION_WINDOW_SECS: i64 = 25 * 3600;

/// The usage behind a deduction (in its transaction): per application of the account and rated
/// metric, the units the usage tables gained since the last deduction's detail, priced at the
/// rates now. The deduction's amount is the spent counter's (exact); the usage flush runs just
/// before, so the detail trails it by at most the calls of that instant, which the next
/// deduction details.
async fn attribute(tx: &mut sqlx::AnyConnection, account_id: i64) -> Result<Value, ApiError> {
    let from = Utc::now().timestamp() - ATTRIBUTION_WINDOW_SECS;
    let rows = sqlx::query(
        "SELECT u.application_id, u.metric_id, u.hour_start, u.value, COALESCE(c.value, 0) AS attributed,
                a.plan_id, a.service_id, m.system_name
         FROM applications a
         JOIN usage_hourly u ON u.application_id = a.id
         JOIN metrics m ON m.id = u.metric_id
         LEFT JOIN credit_attributed c
           ON c.application_id = u.application_id AND c.metric_id = u.metric_id AND c.hour_start = u.hour_start
         WHERE a.account_id = $1 AND u.hour_start >= $2 AND u.value > COALESCE(c.value, 0)
           AND u.metric_id IN (SELECT metric_id FROM credit_rates WHERE service_id = a.service_id)",
    )
    .bind(account_id)
    .bind(from)
    .fetch_all(&mut *tx)
    .await?;
    // (application, metric) → (plan, service, name, units gained)
    let mut gained: BTreeMap<(i64, i64), (i64, i64, String, i64)> = BTreeMap::new();
    for r in &rows {
        let (app, metric, hour, value): (i64, i64, i64, i64) = (
            r.try_get("application_id")?,
            r.try_get("metric_id")?,
            r.try_get("hour_start")?,
            r.try_get("value")?,
        );
        let before: i64 = r.try_get("attributed")?;
        let entry = gained.entry((app, metric)).or_insert((
            r.try_get("plan_id")?,
            r.try_get("service_id")?,
            r.try_get("system_name")?,
            0,
        ));
        entry.3 += value - before;
        mark_attributed(tx, app, metric, hour, value).await?;
    }
    let mut rates: BTreeMap<i64, Vec<Rate>> = BTreeMap::new();
    let mut detail = Vec::new();
    for ((app, metric), (plan, service, name, units)) in gained {
        if let std::collections::btree_map::Entry::Vacant(e) = rates.entry(service) {
            e.insert(service_rates(tx, service).await?);
        }
        let usage = BTreeMap::from([(metric, Amount::Add(units))]);
        let (credits, upstream) = charges(rates.get(&service).map_or(&[][..], Vec::as_slice), plan, &usage)
            .first()
            .map_or((0, 0), |(_, credit_units, upstream_units)| {
                (*credit_units, *upstream_units)
            });
        detail.push(json!({
            "application_id": app, "metric_id": metric, "metric": name, "quantity": units,
            "credits": from_units(credits).normalize().to_string(),
            "upstream_cost": from_units(upstream).normalize().to_string(),
        }));
    }
    sqlx::query("DELETE FROM credit_attributed WHERE hour_start < $1")
        .bind(from)
        .execute(&mut *tx)
        .await?;
    Ok(Value::Array(detail))
}

async fn mark_attributed(
    tx: &mut sqlx::AnyConnection,
    app: i64,
    metric: i64,
    hour: i64,
    value: i64,
) -> Result<(), ApiError> {
    sqlx::query(
        "INSERT INTO credit_attributed (application_id, metric_id, hour_start, value) VALUES ($1, $2, $3, $4)
         ON CONFLICT (application_id, metric_id, hour_start) DO UPDATE SET value = excluded.value",
    )
    .bind(app)
    .bind(metric)
    .bind(hour)
    .bind(value)
    .execute(tx)
    .await?;
    Ok(())
}

/// Copies what prepaid accounts spent into the ledger (one deduction entry per account per
/// flush), and sets a spent counter that fell behind the ledger (a Redis that lost its data)
/// back up to it. Idempotent: `spent_units` only grows, under a conditional update.
pub async fn flush(db: &Db, counters: &Counters) -> Result<usize, ApiError> {
    let wallets: Vec<(i64, i64)> = sqlx::query("SELECT account_id, spent_units FROM credit_wallets")
        .fetch_all(&db.pool)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("account_id")?, r.try_get("spent_units")?)))
        .collect::<Result<_, sqlx::Error>>()?;
    let mut written = 0;
    for (account_id, recorded) in wallets {
        let now_spent = spent(counters, account_id).await?;
        if now_spent < recorded {
            tracing::warn!(
                account_id,
                now_spent,
                recorded,
                "spent counter behind the ledger; restoring it"
            );
            counters
                .apply(0, &[spent_op(account_id, Amount::Set(recorded))], Mode::Add)
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            continue;
        }
        if now_spent == recorded {
            continue;
        }
        let mut tx = db.pool.begin().await?;
        lock_wallet(&mut tx, account_id).await?;
        // Read again under the lock: another replica may have copied some of it meanwhile.
        let in_ledger: i64 = sqlx::query_scalar("SELECT spent_units FROM credit_wallets WHERE account_id = $1")
            .bind(account_id)
            .fetch_one(&mut *tx)
            .await?;
        if now_spent <= in_ledger {
            continue;
        }
        sqlx::query("UPDATE credit_wallets SET spent_units = $1 WHERE account_id = $2")
            .bind(now_spent)
            .bind(account_id)
            .execute(&mut *tx)
            .await?;
        let detail = attribute(&mut tx, account_id).await?;
        append(
            &mut tx,
            account_id,
            "deduction",
            -from_units(now_spent - in_ledger),
            None,
            None,
            Some(&detail),
        )
        .await?;
        tx.commit().await?;
        written += 1;
    }
    Ok(written)
}

// ---- margins ----

/// A `YYYY-MM` parameter (default: this month) as the unix seconds of its first instant and of
/// the next month's.
fn month_param(p: &Params, field: &str) -> Result<(String, i64, i64), ApiError> {
    let month = match p.get(field).map(str::trim).filter(|m| !m.is_empty()) {
        Some(m) => m.to_string(),
        None => Utc::now().format("%Y-%m").to_string(),
    };
    let first = crate::invoice::parse_period(&month).ok_or_else(|| ApiError::invalid(field, "must be YYYY-MM"))?;
    let next = first
        .checked_add_months(chrono::Months::new(1))
        .ok_or_else(|| ApiError::invalid(field, "is out of range"))?;
    let ts = |d: chrono::NaiveDate| d.and_hms_opt(0, 0, 0).map_or(0, |t| t.and_utc().timestamp());
    Ok((month, ts(first), ts(next)))
}

/// `GET /admin/api/services/{id}/credit_margins.json?month=YYYY-MM`: per rated metric, the
/// credits that month's usage of prepaid accounts' applications was charged, what the same
/// usage cost upstream, and the margin (a credit taken for one unit of the upstream cost's
/// currency). Worked out from `usage_hourly` (usage up the hierarchy, as authrep rates it) at
/// today's rates, for the accounts prepaid today.
pub async fn margins(db: &Db, service_id: i64, p: &Params) -> Result<Vec<Value>, ApiError> {
    let (month, from, to) = month_param(p, "month")?;
    crate::catalog::services::find(db, service_id).await?;
    let names: Vec<(i64, String)> = sqlx::query(
        "SELECT DISTINCT r.metric_id, m.system_name FROM credit_rates r JOIN metrics m ON m.id = r.metric_id
         WHERE r.service_id = $1 ORDER BY r.metric_id",
    )
    .bind(service_id)
    .fetch_all(&db.pool)
    .await?
    .iter()
    .map(|r| Ok((r.try_get("metric_id")?, r.try_get("system_name")?)))
    .collect::<Result<_, sqlx::Error>>()?;
    let time = |ts: i64| {
        chrono::DateTime::from_timestamp(ts, 0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default()
    };
    let details: Vec<Option<String>> = sqlx::query_scalar(
        "SELECT detail FROM credit_transactions WHERE kind = 'deduction' AND created_at >= $1 AND created_at < $2",
    )
    .bind(time(from))
    .bind(time(to))
    .fetch_all(&db.pool)
    .await?;
    let mut totals: BTreeMap<i64, (Decimal, Decimal)> = BTreeMap::new();
    for detail in details.iter().flatten() {
        let items: Vec<Value> = serde_json::from_str(detail).unwrap_or_default();
        for item in items {
            let Some(metric) = item["metric_id"]
                .as_i64()
                .filter(|m| names.iter().any(|(id, _)| id == m))
            else {
                continue;
            };
            let amount = |k: &str| {
                item[k]
                    .as_str()
                    .and_then(|v| v.parse::<Decimal>().ok())
                    .unwrap_or_default()
            };
            let t = totals.entry(metric).or_default();
            t.0 += amount("credits");
            t.1 += amount("upstream_cost");
        }
    }
    Ok(names
        .into_iter()
        .map(|(id, name)| {
            let (charged, upstream) = totals.get(&id).copied().unwrap_or_default();
            json!({
                "metric_id": id, "metric": name, "month": month,
                "credits_charged": charged.normalize().to_string(),
                "upstream_cost": upstream.normalize().to_string(),
                "margin": (charged - upstream).normalize().to_string(),
            })
        })
        .collect())
}

// ---- issued credits (Apigee's) ----

/// `POST /admin/api/accounts/{id}/credits.json`: credits issued to a developer for a billing
/// month. `amount` positive or negative, never 0; `currency` ISO 4217 (default USD);
/// `billing_month` `YYYY-MM` (default this month); `note`; `service_id`,
/// `application_plan_id`. A prepaid account's balance moves at once (an `adjustment` entry);
/// a postpaid account's credit waits for that month's invoice, where it is a line of minus the
/// amount.
pub async fn issue(db: &Db, account_id: i64, p: &Params) -> Result<Value, ApiError> {
    let amount =
        parse_credits(p, "amount", Sign::NonZero)?.ok_or_else(|| ApiError::invalid("amount", "can't be blank"))?;
    let currency = p
        .get("currency")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .unwrap_or("USD");
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ApiError::invalid("currency", "must be an ISO 4217 code, e.g. USD"));
    }
    let (month, _, _) = month_param(p, "billing_month")?;
    let note = p.get("note").map(str::trim).filter(|n| !n.is_empty());
    let (service_id, plan_id) = (p.parse::<i64>("service_id")?, p.parse::<i64>("application_plan_id")?);
    ensure_account(db, account_id).await?;
    let billing = billing_type(db, account_id).await?.unwrap_or_default();
    if billing == "prepaid" {
        open_wallet(db, account_id).await?;
    }
    let mut tx = db.pool.begin().await?;
    for (field, table, id) in [
        ("service_id", "services", service_id),
        ("application_plan_id", "application_plans", plan_id),
    ] {
        if let Some(id) = id {
            let found: Option<i64> = sqlx::query_scalar(&format!("SELECT id FROM {table} WHERE id = $1"))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            found.ok_or_else(|| ApiError::invalid(field, "does not exist"))?;
        }
    }
    let ledger = match billing.as_str() {
        "prepaid" => Some(append(&mut tx, account_id, "adjustment", amount, None, note, None).await?),
        _ => None,
    };
    let transaction_id = ledger.as_ref().and_then(|l| l["id"].as_i64());
    let now = crate::time::now();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO issued_credits (account_id, amount, currency, billing_month, note, service_id, application_plan_id, transaction_id, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
    )
    .bind(account_id)
    .bind(amount.normalize().to_string())
    .bind(currency)
    .bind(&month)
    .bind(note)
    .bind(service_id)
    .bind(plan_id)
    .bind(transaction_id)
    .bind(&now)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(issued_json(
        id,
        account_id,
        amount,
        currency,
        &month,
        note,
        service_id,
        plan_id,
        transaction_id,
        None,
        &now,
    ))
}

#[allow(clippy::too_many_arguments)]
fn issued_json(
    id: i64,
    account_id: i64,
    amount: Decimal,
    currency: &str,
    month: &str,
    note: Option<&str>,
    service_id: Option<i64>,
    plan_id: Option<i64>,
    transaction_id: Option<i64>,
    invoiced_at: Option<&str>,
    created_at: &str,
) -> Value {
    json!({
        "id": id, "account_id": account_id, "amount": amount.normalize().to_string(), "currency": currency,
        "billing_month": month, "note": note, "service_id": service_id, "application_plan_id": plan_id,
        "applied_to": if transaction_id.is_some() { "balance" } else { "invoice" },
        "credit_transaction_id": transaction_id, "invoiced_at": invoiced_at, "created_at": created_at,
    })
}

/// `GET /admin/api/accounts/{id}/credits.json` (optional `billing_month`).
pub async fn issued(db: &Db, account_id: i64, p: &Params) -> Result<Vec<Value>, ApiError> {
    ensure_account(db, account_id).await?;
    let month = p.get("billing_month").map(str::trim).unwrap_or("");
    let rows = sqlx::query(
        "SELECT id, amount, currency, billing_month, note, service_id, application_plan_id, transaction_id, invoiced_at, created_at
         FROM issued_credits WHERE account_id = $1 AND ($2 = '' OR billing_month = $2) ORDER BY id",
    )
    .bind(account_id)
    .bind(month)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(issued_json(
                r.try_get("id")?,
                account_id,
                decimal(r, "amount")?,
                &r.try_get::<String, _>("currency")?,
                &r.try_get::<String, _>("billing_month")?,
                r.try_get::<Option<String>, _>("note")?.as_deref(),
                r.try_get("service_id")?,
                r.try_get("application_plan_id")?,
                r.try_get("transaction_id")?,
                r.try_get::<Option<String>, _>("invoiced_at")?.as_deref(),
                &r.try_get::<String, _>("created_at")?,
            ))
        })
        .collect()
}

/// Expires the grants whose time has come: what each had left (see [`unspent`]) leaves the
/// balance as an `expiry` ledger entry. Idempotent: a grant is marked expired in the same
/// transaction, under the wallet lock, and only once. Returns the grants expired.
pub async fn expire(db: &Db, counters: &Counters) -> Result<usize, ApiError> {
    let now = crate::time::now();
    let accounts: Vec<i64> = sqlx::query_scalar(
        "SELECT DISTINCT account_id FROM credit_grants WHERE expired_units IS NULL AND expires_at IS NOT NULL AND expires_at <= $1",
    )
    .bind(&now)
    .fetch_all(&db.pool)
    .await?;
    let mut expired = 0;
    for account_id in accounts {
        let counted = spent(counters, account_id).await?;
        let mut tx = db.pool.begin().await?;
        lock_wallet(&mut tx, account_id).await?;
        let recorded: i64 = sqlx::query_scalar("SELECT spent_units FROM credit_wallets WHERE account_id = $1")
            .bind(account_id)
            .fetch_one(&mut *tx)
            .await?;
        let grants =
            sqlx::query("SELECT id, amount, expires_at, expired_units FROM credit_grants WHERE account_id = $1")
                .bind(account_id)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| {
                    Ok(GrantState {
                        id: r.try_get("id")?,
                        units: to_units(decimal(r, "amount")?).unwrap_or(0),
                        expires_at: r.try_get("expires_at")?,
                        expired_units: r.try_get("expired_units")?,
                    })
                })
                .collect::<Result<Vec<_>, ApiError>>()?;
        let due: Vec<i64> = grants
            .iter()
            .filter(|g| g.expired_units.is_none() && g.expires_at.as_ref().is_some_and(|e| *e <= now))
            .map(|g| g.id)
            .collect();
        for (id, left) in unspent(&grants, counted.max(recorded)) {
            if !due.contains(&id) {
                continue;
            }
            sqlx::query("UPDATE credit_grants SET expired_units = $1 WHERE id = $2 AND expired_units IS NULL")
                .bind(left)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            if left > 0 {
                append(&mut tx, account_id, "expiry", -from_units(left), Some(id), None, None).await?;
            }
            expired += 1;
        }
        tx.commit().await?;
    }
    Ok(expired)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn the_soonest_expiring_grant_is_spent_first() {
        let g = |id, units, expires: Option<&str>, expired| GrantState {
            id,
            units,
            expires_at: expires.map(String::from),
            expired_units: expired,
        };
        let grants = [
            g(1, 10, None, None),
            g(2, 5, Some("2026-12-01T00:00:00Z"), None),
            g(3, 5, Some("2026-11-25T00:00:00Z"), None),
        ];
        assert_eq!(unspent(&grants, 7), vec![(3, 0), (2, 3), (1, 10)]);
        assert_eq!(unspent(&grants, 30), vec![(3, 0), (2, 0), (1, 0)]);
        // Grant 3 expired with 4 unspent: it consumed 1 of the 7.
        let after = [
            grants[0].clone(),
            grants[1].clone(),
            g(3, 5, Some("2026-11-25T00:00:00Z"), Some(4)),
        ];
        assert_eq!(unspent(&after, 7), vec![(2, 0), (1, 9)]);
    }

    fn rate(metric_id: i64, plan: Option<i64>, credits: &str) -> Rate {
        Rate {
            metric_id,
            application_plan_id: plan,
            units: to_units(Decimal::from_str(credits).unwrap()).unwrap(),
            upstream_units: 1,
        }
    }

    #[test]
    fn a_methods_weight_includes_its_parents_rate() {
        use crate::limits::MetricNode;
        let node = |id, name: &str, parent| MetricNode {
            id,
            system_name: name.into(),
            parent_id: parent,
        };
        let metrics = [node(1, "hits", None), node(2, "search", Some(1)), node(3, "free", None)];
        let wallet = Wallet {
            account_id: 1,
            granted_units: 0,
            rates: vec![rate(1, None, "0.5"), rate(2, None, "1")],
            purchase_url: None,
        };
        assert_eq!(
            weights(&wallet, 7, &metrics),
            vec![("hits".to_string(), 5_000), ("search".to_string(), 15_000)]
        );
    }

    #[test]
    fn units_keep_four_decimals_exactly() {
        assert_eq!(to_units(Decimal::from_str("0.0001").unwrap()), Some(1));
        assert_eq!(to_units(Decimal::from_str("12.5").unwrap()), Some(125_000));
        assert_eq!(to_units(Decimal::from_str("0.00001").unwrap()), None);
        assert_eq!(from_units(125_000).to_string(), "12.5");
        assert_eq!(from_units(-3).to_string(), "-0.0003");
    }

    #[test]
    fn a_plans_own_rate_wins_and_unrated_metrics_are_free() {
        let rates = [rate(1, None, "0.5"), rate(1, Some(7), "0.25"), rate(2, None, "2")];
        let usage: BTreeMap<i64, Amount> = [(1, Amount::Add(4)), (2, Amount::Add(1)), (3, Amount::Add(100))].into();
        assert_eq!(cost(&rates, 7, &usage), to_units(Decimal::from(3)).unwrap());
        assert_eq!(cost(&rates, 8, &usage), to_units(Decimal::from(4)).unwrap());
        let corrections: BTreeMap<i64, Amount> = [(1, Amount::Set(4))].into();
        assert_eq!(cost(&rates, 7, &corrections), 0, "a set corrects, it does not consume");
    }

    #[test]
    fn a_credit_op_that_passes_the_balance_is_exhaustion() {
        let op = |metric_id, max| Op {
            metric_id,
            period: Period::Eternity,
            start: 0,
            ttl: None,
            amount: Amount::Add(5),
            max: Some(max),
            account: None,
        };
        assert!(exhausted(&[op(1, 100), op(SPENT_COUNTER, 10)], &[0, 6]));
        assert!(
            !exhausted(&[op(1, 3), op(SPENT_COUNTER, 10)], &[0, 5]),
            "the limit denied it"
        );
    }
}
