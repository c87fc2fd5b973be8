//! Plans (3scale §20–22, §25) — application, service and account plans — with application
//! plans' usage limits and pricing rules.

use super::crud::{Entity, Parent};
use super::resource::{
    derive, field, fixed, input, int, text, Behaviour, EventInput, Extra, Field, Kind, OnCreate, Record, Resource, Val,
    Write,
};
use crate::error::{is_unique_violation, Result, StoreError};
use async_trait::async_trait;
use sqlx::{AnyConnection, Row as _};
use std::collections::HashMap;
use tollgate_domain::catalog::{overlaps, system_name_from};
use tollgate_domain::ids::{PlanId, PROVIDER_ID};
use tollgate_domain::periods::Period;

/// Every kind of plan has the same fees and states (SPEC §6.2: fees on application, service
/// and account plans).
const PLAN_FIELDS: &[Field] = &[
    field("name", Kind::Text, OnCreate::Required),
    fixed("system_name", Kind::SystemName, OnCreate::Derived),
    fixed("state", Kind::OneOf(&["hidden", "published"]), OnCreate::Derived),
    field("approval_required", Kind::Bool, OnCreate::Default("false")),
    field("setup_fee", Kind::Fee, OnCreate::Default("0")),
    field("cost_per_month", Kind::Fee, OnCreate::Default("0")),
    field("trial_period_days", Kind::Count, OnCreate::Default("0")),
    // Only application plans are ever customized (for one application); see `copy`.
    fixed("custom", Kind::Bool, OnCreate::Default("false")),
    // publish | hide: moves the state.
    input("state_event", Kind::OneOf(&["publish", "hide"])),
];

pub static APPLICATION_PLAN: Resource = Resource {
    name: "application_plan",
    collection: "plans",
    table: "application_plans",
    scope: &["service_id"],
    fields: PLAN_FIELDS,
    unique_field: "system_name",
    transitions: &[],
};

pub static SERVICE_PLAN: Resource = Resource {
    name: "service_plan",
    collection: "plans",
    table: "service_plans",
    scope: &["service_id"],
    fields: PLAN_FIELDS,
    unique_field: "system_name",
    transitions: &[],
};

pub static ACCOUNT_PLAN: Resource = Resource {
    name: "account_plan",
    collection: "plans",
    table: "account_plans",
    scope: &[],
    fields: PLAN_FIELDS,
    unique_field: "system_name",
    transitions: &[],
};

pub static LIMIT: Resource = Resource {
    name: "limit",
    collection: "limits",
    table: "usage_limits",
    scope: &["plan_id", "metric_id"],
    fields: &[
        field("period", Kind::OneOf(Period::WORDS), OnCreate::Required),
        field("value", Kind::Count, OnCreate::Required),
    ],
    unique_field: "period",
    transitions: &[],
};

pub static PRICING_RULE: Resource = Resource {
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

/// Which kind of plan, and where its owner keeps the default one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanKind {
    Application,
    Service,
    Account,
}

impl PlanKind {
    /// The owner's table and the column holding its default plan.
    fn default_column(self) -> (&'static str, &'static str) {
        match self {
            PlanKind::Application => ("services", "default_application_plan_id"),
            PlanKind::Service => ("services", "default_service_plan_id"),
            PlanKind::Account => ("provider_account", "default_account_plan_id"),
        }
    }

    /// The owner of a plan: its service, or the provider.
    fn owner(self, plan: &Record) -> i64 {
        match self {
            PlanKind::Account => PROVIDER_ID,
            _ => plan.int("service_id").unwrap_or_default(),
        }
    }
}

/// Derives the system name; `state_event` (publish | hide) moves the state; `default` makes the
/// plan its owner's default; 3scale shows whether it is.
struct Plans(PlanKind);

#[async_trait]
impl Behaviour for Plans {
    async fn before_write(&self, w: Write<'_>) -> Result<()> {
        let state = text(w.values, "state_event").map(|e| match e {
            "publish" => "published",
            _ => "hidden",
        });
        if w.id.is_none() {
            let name = text(w.values, "name").unwrap_or_default().to_string();
            derive(w.values, "system_name", || system_name_from(&name));
            w.values.push(("state", Val::Text(state.unwrap_or("hidden").into())));
        } else if let Some(state) = state {
            w.values.push(("state", Val::Text(state.into())));
        }
        Ok(())
    }

    fn events(&self) -> &'static [&'static str] {
        &["default"]
    }

    async fn event(
        &self,
        conn: &mut AnyConnection,
        _scope: &[i64],
        current: &Record,
        _event: &EventInput,
    ) -> Result<()> {
        let (table, column) = self.0.default_column();
        sqlx::query(&format!("UPDATE {table} SET {column} = $1 WHERE id = $2"))
            .bind(current.id())
            .bind(self.0.owner(current))
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// One query for the list: the default plan of each owner among the items.
    async fn decorate(&self, conn: &mut AnyConnection, items: &mut [Record]) -> Result<()> {
        let mut owners: Vec<i64> = items.iter().map(|p| self.0.owner(p)).collect();
        owners.sort_unstable();
        owners.dedup();
        let defaults: HashMap<i64, Option<i64>> = if owners.is_empty() {
            HashMap::new()
        } else {
            let (table, column) = self.0.default_column();
            let list: Vec<String> = owners.iter().map(i64::to_string).collect();
            sqlx::query(&format!(
                "SELECT id, {column} AS plan FROM {table} WHERE id IN ({})",
                list.join(", ")
            ))
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("plan")?)))
            .collect::<Result<_, sqlx::Error>>()?
        };
        for item in items {
            let default = defaults.get(&self.0.owner(item)).copied().flatten();
            item.put("default", Extra::Bool(default == Some(item.id())));
        }
        Ok(())
    }
}

/// Tiers: `min` ≥ 1, `max` ≥ `min` (empty = ∞), and no overlap with the metric's other tiers.
struct PricingRules;

#[async_trait]
impl Behaviour for PricingRules {
    async fn before_write(&self, w: Write<'_>) -> Result<()> {
        let (plan_id, metric_id) = match w.scope {
            [p, m] => (*p, *m),
            _ => return Err(StoreError::Internal("pricing rules need a plan and a metric".into())),
        };
        let current: Option<(i64, Option<i64>)> = match w.id {
            Some(id) => sqlx::query("SELECT min, max FROM pricing_rules WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *w.conn)
                .await?
                .map(|r| -> Result<_, sqlx::Error> { Ok((r.try_get("min")?, r.try_get("max")?)) })
                .transpose()?,
            None => None,
        };
        let min = int(w.values, "min").or(current.map(|c| c.0)).unwrap_or(1);
        let max = match w.values.iter().find(|(n, _)| *n == "max") {
            Some((_, Val::Int(m))) => Some(*m),
            Some(_) => None,
            None => current.and_then(|c| c.1),
        };
        if min < 1 {
            return Err(StoreError::invalid("min", "must be greater than or equal to 1"));
        }
        if max.is_some_and(|max| max < min) {
            return Err(StoreError::invalid("max", "must be greater than or equal to min"));
        }
        let others =
            sqlx::query("SELECT min, max FROM pricing_rules WHERE plan_id = $1 AND metric_id = $2 AND id <> $3")
                .bind(plan_id)
                .bind(metric_id)
                .bind(w.id.unwrap_or(-1))
                .fetch_all(&mut *w.conn)
                .await?;
        for r in others {
            let (o_min, o_max): (i64, Option<i64>) = (r.try_get("min")?, r.try_get("max")?);
            if overlaps((min, max), (o_min, o_max)) {
                let range =
                    |lo: i64, hi: Option<i64>| format!("{lo}–{}", hi.map(|h| h.to_string()).unwrap_or("∞".into()));
                return Err(StoreError::invalid(
                    "min",
                    format!("overlaps the tier {}", range(o_min, o_max)),
                ));
            }
        }
        Ok(())
    }
}

pub static APPLICATION_PLANS: Entity = Entity {
    resource: &APPLICATION_PLAN,
    parent: Parent::Service,
    behaviour: &Plans(PlanKind::Application),
};
pub static SERVICE_PLANS: Entity = Entity {
    resource: &SERVICE_PLAN,
    parent: Parent::Service,
    behaviour: &Plans(PlanKind::Service),
};
pub static ACCOUNT_PLANS: Entity = Entity {
    resource: &ACCOUNT_PLAN,
    parent: Parent::Root,
    behaviour: &Plans(PlanKind::Account),
};
pub static LIMITS: Entity = Entity {
    resource: &LIMIT,
    parent: Parent::PlanMetric,
    behaviour: &super::resource::Plain,
};
pub static PRICING_RULES: Entity = Entity {
    resource: &PRICING_RULE,
    parent: Parent::PlanMetric,
    behaviour: &PricingRules,
};

/// Copies an application plan with its limits and pricing rules; returns the new plan's id.
/// A `custom` copy is one application's own plan: it keeps a link to its original only so
/// that the application can go back (decustomize).
pub async fn copy(
    conn: &mut AnyConnection,
    plan: PlanId,
    name: &str,
    system_name: &str,
    custom: bool,
) -> Result<PlanId> {
    let ts = crate::time::now();
    let inserted = sqlx::query_scalar::<_, i64>(
        "INSERT INTO application_plans (service_id, name, system_name, state, approval_required, setup_fee,
           cost_per_month, trial_period_days, custom, original_id, created_at, updated_at)
         SELECT service_id, $2, $3, state, approval_required, setup_fee, cost_per_month, trial_period_days, $4,
           CASE WHEN $4 = 1 THEN id ELSE NULL END, $5, $5
         FROM application_plans WHERE id = $1 RETURNING id",
    )
    .bind(plan.get())
    .bind(name)
    .bind(system_name)
    .bind(i64::from(custom))
    .bind(&ts)
    .fetch_optional(&mut *conn)
    .await;
    let new_id = match inserted {
        Ok(Some(id)) => id,
        Ok(None) => return Err(StoreError::NotFound),
        Err(e) if is_unique_violation(&e) => return Err(StoreError::invalid("system_name", "has already been taken")),
        Err(e) => return Err(e.into()),
    };
    for table in ["usage_limits", "pricing_rules"] {
        let columns = match table {
            "usage_limits" => "metric_id, period, value",
            _ => "metric_id, min, max, cost_per_unit",
        };
        sqlx::query(&format!(
            "INSERT INTO {table} (plan_id, {columns}, created_at, updated_at)
             SELECT $2, {columns}, $3, $3 FROM {table} WHERE plan_id = $1"
        ))
        .bind(plan.get())
        .bind(new_id)
        .bind(&ts)
        .execute(&mut *conn)
        .await?;
    }
    Ok(PlanId::new(new_id))
}

/// `POST /admin/api/application_plans/{id}/copy.json`: the copy, named `name` (default "… (copy)")
/// with `system_name` (default derived from the name).
pub async fn copy_plan(db: &crate::Db, plan: PlanId, name: Option<&str>, system_name: Option<&str>) -> Result<Record> {
    let mut tx = db.begin_write().await?;
    let original = APPLICATION_PLAN.find_any(&mut tx, plan.get()).await?;
    let name = name
        .map(str::to_string)
        .unwrap_or_else(|| format!("{} (copy)", original.text("name").unwrap_or_default()));
    let system_name = system_name
        .map(str::to_string)
        .unwrap_or_else(|| system_name_from(&name));
    tollgate_domain::catalog::check_system_name(&system_name).map_err(|e| StoreError::invalid("system_name", e))?;
    let id = copy(&mut tx, plan, &name, &system_name, false).await?;
    let service = original.int("service_id").unwrap_or_default();
    let copied = APPLICATION_PLAN.find(&mut tx, &[service], id.get()).await?;
    let mut copied = vec![copied];
    APPLICATION_PLANS.behaviour.decorate(&mut tx, &mut copied).await?;
    tx.commit().await?;
    copied.pop().ok_or(StoreError::NotFound)
}

/// Every application plan of every service (one page), decorated.
pub async fn all_application_plans(db: &crate::Db, services: Option<&[i64]>) -> Result<Vec<Record>> {
    let mut conn = db.pool.acquire().await?;
    let only = services.map(|ids| ("service_id", ids));
    let mut plans = APPLICATION_PLAN
        .select(&mut conn, &[], only, tollgate_domain::form::Page::FIRST)
        .await?;
    APPLICATION_PLANS.behaviour.decorate(&mut conn, &mut plans).await?;
    Ok(plans)
}
