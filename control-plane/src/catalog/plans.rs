//! Application plans (3scale §20): belong to a service; fees are exact decimals.

use super::{system_name_from, validate_system_name};
use crate::db::{Db, Row};
use crate::error::{is_unique_violation, ApiError};
use crate::params::Params;
use crate::time::now;
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::Row as _;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ApplicationPlan {
    pub id: i64,
    pub service_id: i64,
    pub name: String,
    pub system_name: String,
    pub state: String,
    pub approval_required: bool,
    pub setup_fee: Decimal,
    pub cost_per_month: Decimal,
    pub trial_period_days: i64,
    pub created_at: String,
    pub updated_at: String,
}

const COLUMNS: &str = "id, service_id, name, system_name, state, approval_required, setup_fee, cost_per_month, \
                       trial_period_days, created_at, updated_at";

fn decimal(r: &Row, col: &str) -> Result<Decimal, ApiError> {
    let text: String = r.try_get(col)?;
    text.parse()
        .map_err(|e| ApiError::Internal(format!("{col} `{text}`: {e}")))
}

fn from_row(r: &Row) -> Result<ApplicationPlan, ApiError> {
    Ok(ApplicationPlan {
        id: r.try_get("id")?,
        service_id: r.try_get("service_id")?,
        name: r.try_get("name")?,
        system_name: r.try_get("system_name")?,
        state: r.try_get("state")?,
        approval_required: r.try_get::<i64, _>("approval_required")? != 0,
        setup_fee: decimal(r, "setup_fee")?,
        cost_per_month: decimal(r, "cost_per_month")?,
        trial_period_days: r.try_get("trial_period_days")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// A money parameter: a non-negative decimal with at most 4 places (never silently rounded).
pub fn money(p: &Params, field: &str) -> Result<Option<Decimal>, ApiError> {
    let Some(v) = p.parse::<Decimal>(field)? else {
        return Ok(None);
    };
    if v.is_sign_negative() {
        return Err(ApiError::invalid(field, "must be greater than or equal to 0"));
    }
    if v.normalize().scale() > 4 {
        return Err(ApiError::invalid(field, "must have at most 4 decimal places"));
    }
    Ok(Some(v))
}

pub async fn create(db: &Db, service_id: i64, p: &Params) -> Result<ApplicationPlan, ApiError> {
    let name = p.required("name")?.trim().to_string();
    let system_name = p
        .get("system_name")
        .map(str::to_string)
        .unwrap_or_else(|| system_name_from(&name));
    validate_system_name("system_name", &system_name)?;
    let state = match p.get("state_event") {
        Some("publish") => "published",
        Some("hide") | None => "hidden",
        Some(_) => return Err(ApiError::invalid("state_event", "must be publish or hide")),
    };
    let setup_fee = money(p, "setup_fee")?.unwrap_or_default();
    let cost_per_month = money(p, "cost_per_month")?.unwrap_or_default();
    let trial = p.parse::<i64>("trial_period_days")?.unwrap_or(0);
    if trial < 0 {
        return Err(ApiError::invalid(
            "trial_period_days",
            "must be greater than or equal to 0",
        ));
    }
    let approval = p.flag("approval_required")?.unwrap_or(false);
    let ts = now();
    let row = sqlx::query(&format!(
        "INSERT INTO application_plans (service_id, name, system_name, state, approval_required, setup_fee,
           cost_per_month, trial_period_days, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING {COLUMNS}"
    ))
    .bind(service_id)
    .bind(&name)
    .bind(&system_name)
    .bind(state)
    .bind(i64::from(approval))
    .bind(setup_fee.to_string())
    .bind(cost_per_month.to_string())
    .bind(trial)
    .bind(ts)
    .fetch_one(&db.pool)
    .await;
    match row {
        Ok(row) => from_row(&row),
        Err(e) if is_unique_violation(&e) => Err(ApiError::invalid("system_name", "has already been taken")),
        Err(e) => Err(e.into()),
    }
}

pub async fn find(db: &Db, id: i64) -> Result<ApplicationPlan, ApiError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM application_plans WHERE id = $1"))
        .bind(id)
        .fetch_optional(&db.pool)
        .await?
        .ok_or(ApiError::NotFound)?;
    from_row(&row)
}

pub async fn list_for_service(db: &Db, service_id: i64) -> Result<Vec<ApplicationPlan>, ApiError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM application_plans WHERE service_id = $1 ORDER BY id"
    ))
    .bind(service_id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(from_row).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_keeps_four_places_and_rejects_more() {
        let p = Params::from_query("a=10.1234&b=0.00001&c=-1&d=abc&e=5.10000").unwrap();
        assert_eq!(money(&p, "a").unwrap(), Some("10.1234".parse().unwrap()));
        assert!(matches!(money(&p, "b"), Err(ApiError::Invalid(f)) if f[0].0 == "b"));
        assert!(matches!(money(&p, "c"), Err(ApiError::Invalid(f)) if f[0].0 == "c"));
        assert!(matches!(money(&p, "d"), Err(ApiError::Invalid(f)) if f[0].0 == "d"));
        assert!(money(&p, "e").is_ok());
    }
}
