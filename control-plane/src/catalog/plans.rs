//! Application plans (3scale §20–22, §25) with their usage limits and pricing rules.

use super::behaviour::{derive, int, text};
use super::resource::{field, fixed, Kind, OnCreate, Resource, Val, Values};
use crate::error::ApiError;
use crate::params::Params;
use serde_json::{json, Value};
use sqlx::{AnyConnection, Row as _};

/// Every kind of plan has the same fees and states (SPEC §6.2: fees on application, service
/// and account plans).
const PLAN_FIELDS: &[super::resource::Field] = &[
    field("name", Kind::Text, OnCreate::Required),
    fixed("system_name", Kind::SystemName, OnCreate::Derived),
    fixed("state", Kind::OneOf(&["hidden", "published"]), OnCreate::Derived),
    field("approval_required", Kind::Bool, OnCreate::Default("false")),
    field("setup_fee", Kind::Fee, OnCreate::Default("0")),
    field("cost_per_month", Kind::Fee, OnCreate::Default("0")),
    field("trial_period_days", Kind::Count, OnCreate::Default("0")),
    // Only application plans are ever customized (for one application); see `copy`.
    fixed("custom", Kind::Bool, OnCreate::Default("false")),
];

pub const APPLICATION_PLAN: Resource = Resource {
    name: "application_plan",
    collection: "plans",
    table: "application_plans",
    scope: &["service_id"],
    fields: PLAN_FIELDS,
    unique_field: "system_name",
    transitions: &[],
};

pub const SERVICE_PLAN: Resource = Resource {
    name: "service_plan",
    collection: "plans",
    table: "service_plans",
    scope: &["service_id"],
    fields: PLAN_FIELDS,
    unique_field: "system_name",
    transitions: &[],
};

pub const ACCOUNT_PLAN: Resource = Resource {
    name: "account_plan",
    collection: "plans",
    table: "account_plans",
    scope: &[],
    fields: PLAN_FIELDS,
    unique_field: "system_name",
    transitions: &[],
};

/// Which kind of plan, and where its owner keeps the default one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanKind {
    Application,
    Service,
    Account,
}

impl PlanKind {
    pub fn resource(self) -> &'static Resource {
        match self {
            PlanKind::Application => &APPLICATION_PLAN,
            PlanKind::Service => &SERVICE_PLAN,
            PlanKind::Account => &ACCOUNT_PLAN,
        }
    }

    /// SQL selecting the default plan's id of the plan's owner; `$1` is the owner's id.
    fn default_sql(self) -> &'static str {
        match self {
            PlanKind::Application => "SELECT default_application_plan_id FROM services WHERE id = $1",
            PlanKind::Service => "SELECT default_service_plan_id FROM services WHERE id = $1",
            PlanKind::Account => "SELECT default_account_plan_id FROM provider_account WHERE id = $1",
        }
    }

    fn owner(self, plan: &Value) -> i64 {
        match self {
            PlanKind::Account => 1,
            _ => plan["service_id"].as_i64().unwrap_or_default(),
        }
    }

    /// Makes `plan` its owner's default.
    pub async fn set_default(self, conn: &mut AnyConnection, plan: &Value) -> Result<(), ApiError> {
        let sql = match self {
            PlanKind::Application => "UPDATE services SET default_application_plan_id = $1 WHERE id = $2",
            PlanKind::Service => "UPDATE services SET default_service_plan_id = $1 WHERE id = $2",
            PlanKind::Account => "UPDATE provider_account SET default_account_plan_id = $1 WHERE id = $2",
        };
        sqlx::query(sql)
            .bind(plan["id"].as_i64().unwrap_or_default())
            .bind(self.owner(plan))
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}

pub const PERIODS: &[&str] = &["minute", "hour", "day", "week", "month", "year", "eternity"];

pub const LIMIT: Resource = Resource {
    name: "limit",
    collection: "limits",
    table: "usage_limits",
    scope: &["plan_id", "metric_id"],
    fields: &[
        field("period", Kind::OneOf(PERIODS), OnCreate::Required),
        field("value", Kind::Count, OnCreate::Required),
    ],
    unique_field: "period",
    transitions: &[],
};

pub const PRICING_RULE: Resource = Resource {
    name: "pricing_rule",
    collection: "pricing_rules",
    table: "pricing_rules",
    scope: &["plan_id", "metric_id"],
    fields: &[
        field("min", Kind::Count, OnCreate::Default("1")),
        field("max", Kind::OptCount, OnCreate::Optional),
        field("cost_per_unit", Kind::Money, OnCreate::Required),
    ],
    unique_field: "min",
    transitions: &[],
};

/// Derives the system name; `state_event` (publish | hide) moves the state.
pub fn before_write(id: Option<i64>, p: &Params, values: &mut Values) -> Result<(), ApiError> {
    let state = match p.get("state_event") {
        None | Some("") => None,
        Some("publish") => Some("published"),
        Some("hide") => Some("hidden"),
        Some(_) => return Err(ApiError::invalid("state_event", "must be publish or hide")),
    };
    if id.is_none() {
        let name = text(values, "name").unwrap_or_default().to_string();
        derive(values, "system_name", || super::system_name_from(&name));
        values.push(("state", Val::Text(state.unwrap_or("hidden").into())));
    } else if let Some(state) = state {
        values.push(("state", Val::Text(state.into())));
    }
    Ok(())
}

/// 3scale shows whether the plan is its service's default, and whether it is customized.
pub async fn decorate(kind: PlanKind, conn: &mut AnyConnection, item: &mut Value) -> Result<(), ApiError> {
    let default: Option<Option<i64>> = sqlx::query_scalar(kind.default_sql())
        .bind(kind.owner(item))
        .fetch_optional(&mut *conn)
        .await?;
    let default = default.flatten();
    item["default"] = json!(default.is_some() && default == item["id"].as_i64());
    Ok(())
}

/// Tiers: `min` ≥ 1, `max` ≥ `min` (empty = ∞), and no overlap with the metric's other tiers.
pub async fn pricing_rule_before_write(
    conn: &mut AnyConnection,
    scope: &[i64],
    id: Option<i64>,
    values: &mut Values,
) -> Result<(), ApiError> {
    let (plan_id, metric_id) = match scope {
        [p, m] => (*p, *m),
        _ => return Err(ApiError::Internal("pricing rules need a plan and a metric".into())),
    };
    let current: Option<(i64, Option<i64>)> = match id {
        Some(id) => sqlx::query("SELECT min, max FROM pricing_rules WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
            .map(|r| -> Result<_, sqlx::Error> { Ok((r.try_get("min")?, r.try_get("max")?)) })
            .transpose()?,
        None => None,
    };
    let min = int(values, "min").or(current.map(|c| c.0)).unwrap_or(1);
    let max = match values.iter().find(|(n, _)| *n == "max") {
        Some((_, Val::Int(m))) => Some(*m),
        Some(_) => None,
        None => current.and_then(|c| c.1),
    };
    if min < 1 {
        return Err(ApiError::invalid("min", "must be greater than or equal to 1"));
    }
    if let Some(max) = max {
        if max < min {
            return Err(ApiError::invalid("max", "must be greater than or equal to min"));
        }
    }
    let others = sqlx::query("SELECT min, max FROM pricing_rules WHERE plan_id = $1 AND metric_id = $2 AND id <> $3")
        .bind(plan_id)
        .bind(metric_id)
        .bind(id.unwrap_or(-1))
        .fetch_all(&mut *conn)
        .await?;
    for r in others {
        let (o_min, o_max): (i64, Option<i64>) = (r.try_get("min")?, r.try_get("max")?);
        if overlaps((min, max), (o_min, o_max)) {
            let range = |lo: i64, hi: Option<i64>| format!("{lo}–{}", hi.map(|h| h.to_string()).unwrap_or("∞".into()));
            return Err(ApiError::invalid(
                "min",
                format!("overlaps the tier {}", range(o_min, o_max)),
            ));
        }
    }
    Ok(())
}

/// Whether two closed ranges (`None` = unbounded above) share a unit.
pub fn overlaps(a: (i64, Option<i64>), b: (i64, Option<i64>)) -> bool {
    let a_hi = a.1.unwrap_or(i64::MAX);
    let b_hi = b.1.unwrap_or(i64::MAX);
    a.0 <= b_hi && b.0 <= a_hi
}

/// Copies an application plan with its limits and pricing rules; returns the new plan's id.
/// A `custom` copy is one application's own plan: it keeps a link to its original only so
/// that the application can go back (decustomize).
pub async fn copy(
    conn: &mut AnyConnection,
    plan_id: i64,
    name: &str,
    system_name: &str,
    custom: bool,
) -> Result<i64, ApiError> {
    let ts = crate::time::now();
    let inserted = sqlx::query_scalar::<_, i64>(
        "INSERT INTO application_plans (service_id, name, system_name, state, approval_required, setup_fee,
           cost_per_month, trial_period_days, custom, original_id, created_at, updated_at)
         SELECT service_id, $2, $3, state, approval_required, setup_fee, cost_per_month, trial_period_days, $4,
           CASE WHEN $4 = 1 THEN id ELSE NULL END, $5, $5
         FROM application_plans WHERE id = $1 RETURNING id",
    )
    .bind(plan_id)
    .bind(name)
    .bind(system_name)
    .bind(i64::from(custom))
    .bind(&ts)
    .fetch_optional(&mut *conn)
    .await;
    let new_id = match inserted {
        Ok(Some(id)) => id,
        Ok(None) => return Err(ApiError::NotFound),
        Err(e) if crate::error::is_unique_violation(&e) => {
            return Err(ApiError::invalid("system_name", "has already been taken"))
        }
        Err(e) => return Err(e.into()),
    };
    sqlx::query(
        "INSERT INTO usage_limits (plan_id, metric_id, period, value, created_at, updated_at)
         SELECT $2, metric_id, period, value, $3, $3 FROM usage_limits WHERE plan_id = $1",
    )
    .bind(plan_id)
    .bind(new_id)
    .bind(&ts)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO pricing_rules (plan_id, metric_id, min, max, cost_per_unit, created_at, updated_at)
         SELECT $2, metric_id, min, max, cost_per_unit, $3, $3 FROM pricing_rules WHERE plan_id = $1",
    )
    .bind(plan_id)
    .bind(new_id)
    .bind(&ts)
    .execute(&mut *conn)
    .await?;
    Ok(new_id)
}

#[cfg(test)]
mod tests {
    use super::overlaps;

    #[test]
    fn tier_overlaps() {
        assert!(!overlaps((1, Some(100)), (101, None)));
        assert!(overlaps((1, Some(100)), (100, Some(200))));
        assert!(overlaps((1, None), (5000, Some(6000))));
        assert!(!overlaps((501, None), (101, Some(500))));
    }
}
