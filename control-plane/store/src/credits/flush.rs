//! What the counters spent, copied into the ledger (one deduction per account per flush, with
//! the usage behind it), and grants whose time has come, expired.

use super::ledger::{append, lock_wallet, spent, Deducted, ATTRIBUTION_WINDOW_SECS};
use super::rates;
use crate::counters::{Amount, CounterStore, Counters, Mode, Scope};
use crate::db::Db;
use crate::error::Result;
use crate::rows::decimal;
use chrono::Utc;
use sqlx::{AnyConnection, Row};
use std::collections::BTreeMap;
use tollgate_domain::credits::{charges, from_units, spent_op, to_units, unspent, EntryKind, GrantState, Rate};
use tollgate_domain::ids::{AccountId, ApplicationId, GrantId, MetricId, PlanId, ServiceId};

/// Copies what prepaid accounts spent into the ledger (one deduction entry per account per
/// flush), and sets a spent counter that fell behind the ledger (a Redis that lost its data)
/// back up to it. Idempotent: `spent_units` only grows, under a conditional update. Returns
/// the accounts with a new deduction.
pub async fn flush(db: &Db, counters: &Counters) -> Result<usize> {
    let wallets: Vec<(i64, i64)> = sqlx::query("SELECT account_id, spent_units FROM credit_wallets")
        .fetch_all(&db.pool)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("account_id")?, r.try_get("spent_units")?)))
        .collect::<Result<_, sqlx::Error>>()?;
    let mut written = 0;
    for (account, recorded) in wallets {
        let account = AccountId::new(account);
        let now_spent = spent(counters, account).await?;
        if now_spent < recorded {
            tracing::warn!(%account, now_spent, recorded, "spent counter behind the ledger; restoring it");
            counters
                .apply(
                    Scope::account(account),
                    &[spent_op(account, Amount::Set(recorded))],
                    Mode::Add,
                )
                .await?;
            continue;
        }
        if now_spent == recorded {
            continue;
        }
        let mut tx = db.begin_write().await?;
        lock_wallet(&mut tx, account).await?;
        // Read again under the lock: another replica may have copied some of it meanwhile.
        let in_ledger: i64 = sqlx::query_scalar("SELECT spent_units FROM credit_wallets WHERE account_id = $1")
            .bind(account.get())
            .fetch_one(&mut *tx)
            .await?;
        if now_spent <= in_ledger {
            continue;
        }
        sqlx::query("UPDATE credit_wallets SET spent_units = $1 WHERE account_id = $2")
            .bind(now_spent)
            .bind(account.get())
            .execute(&mut *tx)
            .await?;
        let detail = attribute(&mut tx, account).await?;
        let amount = -from_units(now_spent - in_ledger);
        append(&mut tx, account, EntryKind::Deduction, amount, None, None, Some(detail)).await?;
        tx.commit().await?;
        written += 1;
    }
    Ok(written)
}

/// The usage behind a deduction (in its transaction): per application of the account and rated
/// metric, the units the usage tables gained since the last deduction's detail, priced at the
/// rates now. The deduction's amount is the spent counter's (exact); the usage flush runs just
/// before, so the detail trails it by at most the calls of that instant, which the next
/// deduction details.
async fn attribute(tx: &mut AnyConnection, account: AccountId) -> Result<Vec<Deducted>> {
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
    .bind(account.get())
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
            e.insert(rates::for_service(tx, ServiceId::new(service)).await?);
        }
        let metric = MetricId::new(metric);
        let usage = BTreeMap::from([(metric, Amount::Add(units))]);
        let service_rates = rates.get(&service).map_or(&[][..], Vec::as_slice);
        let (credits, upstream) = charges(service_rates, PlanId::new(plan), &usage)
            .first()
            .map_or((0, 0), |(_, credit_units, upstream_units)| {
                (*credit_units, *upstream_units)
            });
        detail.push(Deducted {
            application_id: ApplicationId::new(app),
            metric_id: metric,
            metric: name,
            quantity: units,
            credits: from_units(credits),
            upstream_cost: from_units(upstream),
        });
    }
    sqlx::query("DELETE FROM credit_attributed WHERE hour_start < $1")
        .bind(from)
        .execute(&mut *tx)
        .await?;
    Ok(detail)
}

async fn mark_attributed(tx: &mut AnyConnection, app: i64, metric: i64, hour: i64, value: i64) -> Result<()> {
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

/// Expires the grants whose time has come: what each had left (see [`unspent`]) leaves the
/// balance as an `expiry` ledger entry. Idempotent: a grant is marked expired in the same
/// transaction, under the wallet lock, and only once. Returns the grants expired.
pub async fn expire(db: &Db, counters: &Counters) -> Result<usize> {
    let now = crate::time::now();
    let accounts: Vec<i64> = sqlx::query_scalar(
        "SELECT DISTINCT account_id FROM credit_grants WHERE expired_units IS NULL AND expires_at IS NOT NULL AND expires_at <= $1",
    )
    .bind(&now)
    .fetch_all(&db.pool)
    .await?;
    let mut expired = 0;
    for account in accounts {
        let account = AccountId::new(account);
        let counted = spent(counters, account).await?;
        let mut tx = db.begin_write().await?;
        lock_wallet(&mut tx, account).await?;
        let recorded: i64 = sqlx::query_scalar("SELECT spent_units FROM credit_wallets WHERE account_id = $1")
            .bind(account.get())
            .fetch_one(&mut *tx)
            .await?;
        let grants =
            sqlx::query("SELECT id, amount, expires_at, expired_units FROM credit_grants WHERE account_id = $1")
                .bind(account.get())
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| {
                    Ok(GrantState {
                        id: GrantId::new(r.try_get("id")?),
                        units: to_units(decimal(r, "amount")?).unwrap_or(0),
                        expires_at: r.try_get("expires_at")?,
                        expired_units: r.try_get("expired_units")?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
        let due: Vec<GrantId> = grants
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
                .bind(id.get())
                .execute(&mut *tx)
                .await?;
            if left > 0 {
                append(
                    &mut tx,
                    account,
                    EntryKind::Expiry,
                    -from_units(left),
                    Some(id),
                    None,
                    None,
                )
                .await?;
            }
            expired += 1;
        }
        tx.commit().await?;
    }
    Ok(expired)
}
