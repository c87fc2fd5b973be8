//! Contracts' plan history (SPEC §6): every plan an application, a service subscription or an
//! account has been on, from which day, with the plan's fees and trial as they were then. The
//! billing run bills any month from these rows, never from the plans' current state.
//!
//! A plan change records itself (the old row ends on the day, a new one starts, the trial end
//! carried over: upgrades don't reset a trial). [`sync_all`] covers everything else before each
//! billing run: contracts with no history yet (created before this table, or by paths that
//! don't record) start on their creation day, contracts that are gone end, and a plan changed
//! by any other path is recorded on the day it is noticed.

use crate::db::Db;
use crate::error::{Result, StoreError};
use chrono::NaiveDate;
use sqlx::{AnyConnection, Row};
pub use tollgate_domain::contracts::{ContractType, PlanPeriod};
use tollgate_domain::ids::{AccountId, PlanId};

/// The contracts' table, its plans' table, and the columns naming the account and plan.
fn tables(kind: ContractType) -> (&'static str, &'static str, &'static str) {
    match kind {
        ContractType::Application => ("applications", "application_plans", "account_id"),
        ContractType::Service => ("service_subscriptions", "service_plans", "account_id"),
        ContractType::Account => ("accounts", "account_plans", "id"),
    }
}

fn day(s: &str) -> Result<NaiveDate> {
    crate::time::day(s).ok_or_else(|| StoreError::Internal(format!("`{s}` is not a date")))
}

/// The plan's name, fees and trial days now.
async fn plan_terms(
    conn: &mut AnyConnection,
    kind: ContractType,
    plan_id: PlanId,
) -> Result<(String, String, String, i64)> {
    let (_, plans, _) = tables(kind);
    let row = sqlx::query(&format!(
        "SELECT name, setup_fee, cost_per_month, trial_period_days FROM {plans} WHERE id = $1"
    ))
    .bind(plan_id.get())
    .fetch_optional(&mut *conn)
    .await?;
    Ok(match row {
        Some(r) => (
            r.try_get("name")?,
            r.try_get("setup_fee")?,
            r.try_get("cost_per_month")?,
            r.try_get("trial_period_days")?,
        ),
        None => ("(deleted plan)".into(), "0".into(), "0".into(), 0),
    })
}

#[allow(clippy::too_many_arguments)]
async fn open_row(
    conn: &mut AnyConnection,
    kind: ContractType,
    contract_id: i64,
    account_id: AccountId,
    service_id: Option<i64>,
    plan_id: PlanId,
    starts_on: NaiveDate,
    trial_ends_on: Option<NaiveDate>,
) -> Result<()> {
    let (name, setup, monthly, trial_days) = plan_terms(conn, kind, plan_id).await?;
    let trial_ends_on = trial_ends_on.unwrap_or(starts_on + chrono::Days::new(trial_days.max(0) as u64));
    sqlx::query(
        "INSERT INTO contract_plans (contract_type, contract_id, account_id, service_id, plan_id, plan_name, setup_fee,
           cost_per_month, trial_ends_on, starts_on, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(kind.as_str())
    .bind(contract_id)
    .bind(account_id.get())
    .bind(service_id)
    .bind(plan_id.get())
    .bind(name)
    .bind(setup)
    .bind(monthly)
    .bind(trial_ends_on.to_string())
    .bind(starts_on.to_string())
    .bind(crate::time::now())
    .execute(conn)
    .await?;
    Ok(())
}

/// The contract as it is now: account, service, plan, creation day. `None`: gone.
async fn current(
    conn: &mut AnyConnection,
    kind: ContractType,
    contract_id: i64,
) -> Result<Option<(AccountId, Option<i64>, Option<PlanId>, NaiveDate)>> {
    let (table, _, account) = tables(kind);
    let service = if kind == ContractType::Account {
        "NULL"
    } else {
        "service_id"
    };
    let row = sqlx::query(&format!(
        "SELECT {account} AS account_id, {service} AS service_id, plan_id, created_at FROM {table} WHERE id = $1"
    ))
    .bind(contract_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(r) = row else { return Ok(None) };
    Ok(Some((
        AccountId::new(r.try_get("account_id")?),
        r.try_get("service_id")?,
        r.try_get::<Option<i64>, _>("plan_id")?.map(PlanId::new),
        day(&r.try_get::<String, _>("created_at")?)?,
    )))
}

/// The open row of a contract: (id, plan, trial end).
async fn open_of(
    conn: &mut AnyConnection,
    kind: ContractType,
    contract_id: i64,
) -> Result<Option<(i64, PlanId, NaiveDate)>> {
    let row = sqlx::query(
        "SELECT id, plan_id, trial_ends_on FROM contract_plans
         WHERE contract_type = $1 AND contract_id = $2 AND ends_on IS NULL ORDER BY id DESC LIMIT 1",
    )
    .bind(kind.as_str())
    .bind(contract_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(r) = row else { return Ok(None) };
    Ok(Some((
        r.try_get("id")?,
        PlanId::new(r.try_get("plan_id")?),
        day(&r.try_get::<String, _>("trial_ends_on")?)?,
    )))
}

/// Before a contract moves to another plan (call it before the update, in its transaction):
/// makes sure its current plan has a row, ends that row on `on` and opens one for `new_plan`.
pub async fn change_plan(
    conn: &mut AnyConnection,
    kind: ContractType,
    contract_id: i64,
    new_plan: PlanId,
    on: NaiveDate,
) -> Result<()> {
    let Some((account_id, service_id, plan_id, created)) = current(conn, kind, contract_id).await? else {
        return Ok(());
    };
    if plan_id == Some(new_plan) {
        return Ok(());
    }
    if let (None, Some(plan)) = (open_of(conn, kind, contract_id).await?, plan_id) {
        open_row(conn, kind, contract_id, account_id, service_id, plan, created, None).await?;
    }
    switch(conn, kind, contract_id, account_id, service_id, new_plan, on).await
}

/// Ends the contract's open row on `on` and opens one for `plan`, keeping the trial's end.
async fn switch(
    conn: &mut AnyConnection,
    kind: ContractType,
    contract_id: i64,
    account_id: AccountId,
    service_id: Option<i64>,
    plan: PlanId,
    on: NaiveDate,
) -> Result<()> {
    let trial = match open_of(conn, kind, contract_id).await? {
        Some((row, _, trial)) => {
            close(conn, row, on).await?;
            Some(trial)
        }
        None => None,
    };
    open_row(conn, kind, contract_id, account_id, service_id, plan, on, trial).await
}

async fn close(conn: &mut AnyConnection, row: i64, on: NaiveDate) -> Result<()> {
    sqlx::query("UPDATE contract_plans SET ends_on = $1 WHERE id = $2")
        .bind(on.to_string())
        .bind(row)
        .execute(conn)
        .await?;
    Ok(())
}

/// Brings every contract's history up to date on `today` (see the module doc), with a few
/// statements per contract type rather than queries per contract.
pub async fn sync_all(db: &Db, today: NaiveDate) -> Result<()> {
    let mut tx = db.begin_write().await?;
    let now = crate::time::now();
    for kind in ContractType::ALL {
        let (table, plans, account) = tables(kind);
        let service = if kind == ContractType::Account {
            "NULL"
        } else {
            "c.service_id"
        };
        let trial_end = db.add_days_sql("c.created_at", "p.trial_period_days");
        let t = kind.as_str();
        // Contracts with no history: from their creation day.
        sqlx::query(&format!(
            "INSERT INTO contract_plans (contract_type, contract_id, account_id, service_id, plan_id, plan_name, setup_fee,
               cost_per_month, trial_ends_on, starts_on, created_at)
             SELECT '{t}', c.id, c.{account}, {service}, p.id, p.name, p.setup_fee, p.cost_per_month, {trial_end},
               substr(c.created_at, 1, 10), $1
             FROM {table} c JOIN {plans} p ON p.id = c.plan_id
             WHERE NOT EXISTS (SELECT 1 FROM contract_plans cp
                               WHERE cp.contract_type = '{t}' AND cp.contract_id = c.id AND cp.ends_on IS NULL)"
        ))
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        // Contracts that are gone end today.
        sqlx::query(&format!(
            "UPDATE contract_plans SET ends_on = $1 WHERE contract_type = '{t}' AND ends_on IS NULL
               AND NOT EXISTS (SELECT 1 FROM {table} c WHERE c.id = contract_plans.contract_id)"
        ))
        .bind(today.to_string())
        .execute(&mut *tx)
        .await?;
        // Plans changed by a path that does not record: noticed today.
        let moved = sqlx::query(&format!(
            "SELECT c.id, c.{account} AS account_id, {service} AS service_id, c.plan_id FROM {table} c
             JOIN contract_plans cp ON cp.contract_type = '{t}' AND cp.contract_id = c.id AND cp.ends_on IS NULL
             WHERE cp.plan_id <> c.plan_id"
        ))
        .fetch_all(&mut *tx)
        .await?;
        for r in moved {
            let (id, account_id, service_id, plan): (i64, AccountId, Option<i64>, PlanId) = (
                r.try_get("id")?,
                AccountId::new(r.try_get("account_id")?),
                r.try_get("service_id")?,
                PlanId::new(r.try_get("plan_id")?),
            );
            switch(&mut tx, kind, id, account_id, service_id, plan, today).await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Every contract's history, by account, oldest first.
pub async fn all(conn: &mut AnyConnection) -> Result<Vec<PlanPeriod>> {
    let rows = sqlx::query(
        "SELECT id, contract_type, contract_id, account_id, plan_id, plan_name, setup_fee, cost_per_month, trial_ends_on,
                starts_on, ends_on
         FROM contract_plans ORDER BY account_id, id",
    )
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            let kind: String = r.try_get("contract_type")?;
            let ends: Option<String> = r.try_get("ends_on")?;
            Ok(PlanPeriod {
                id: r.try_get("id")?,
                contract_type: ContractType::parse(&kind)
                    .ok_or_else(|| StoreError::Internal(format!("contract type `{kind}`")))?,
                contract_id: r.try_get("contract_id")?,
                account_id: AccountId::new(r.try_get("account_id")?),
                plan_id: PlanId::new(r.try_get("plan_id")?),
                plan_name: r.try_get("plan_name")?,
                setup_fee: crate::rows::decimal(r, "setup_fee")?,
                cost_per_month: crate::rows::decimal(r, "cost_per_month")?,
                trial_ends_on: day(&r.try_get::<String, _>("trial_ends_on")?)?,
                starts_on: day(&r.try_get::<String, _>("starts_on")?)?,
                ends_on: ends.as_deref().map(day).transpose()?,
            })
        })
        .collect()
}
