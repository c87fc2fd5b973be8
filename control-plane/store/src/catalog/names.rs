//! What a reference column's ids are called: a screen shows "Echo API › Basic", not
//! "service 1, plan 3". One query per column and page, whatever the page's size.

use crate::db::Db;
use crate::error::Result;
use sqlx::Row;
use std::collections::HashMap;

/// The table and name column that `field` of a record in `table` refers to, if it is a
/// reference.
pub fn target(table: &str, field: &str) -> Option<(&'static str, &'static str)> {
    Some(match (table, field) {
        ("accounts", "plan_id") => ("account_plans", "name"),
        ("service_subscriptions", "plan_id") => ("service_plans", "name"),
        (_, "plan_id") => ("application_plans", "name"),
        (_, "service_id") => ("services", "name"),
        (_, "account_id") => ("accounts", "org_name"),
        (_, "metric_id") => ("metrics", "friendly_name"),
        (_, "backend_id" | "backend_api_id") => ("backend_apis", "name"),
        _ => return None,
    })
}

/// The names of `ids` in `table` (ids that are gone are left out).
pub async fn of(db: &Db, (table, column): (&'static str, &'static str), ids: &[i64]) -> Result<HashMap<i64, String>> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let params: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT id, {column} AS name FROM {table} WHERE id IN ({})",
        params.join(", ")
    );
    let mut q = sqlx::query(&sql);
    for id in &ids {
        q = q.bind(*id);
    }
    let rows = q.fetch_all(&db.pool).await?;
    rows.iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("name")?)))
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}
