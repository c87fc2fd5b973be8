//! The margin report (AIGNE Hub's): per rated metric and month, the credits charged against
//! what the same usage cost upstream, from the deductions' details — at the rates when they
//! were charged.

use super::ledger::Deducted;
use crate::db::Db;
use crate::error::Result;
use rust_decimal::Decimal;
use sqlx::Row;
use std::collections::BTreeMap;
use tollgate_domain::ids::{MetricId, ServiceId};

/// One rated metric's month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Margin {
    pub metric_id: MetricId,
    pub metric: String,
    pub month: String,
    pub credits_charged: Decimal,
    pub upstream_cost: Decimal,
}

impl Margin {
    /// A credit taken for one unit of the upstream cost's currency.
    pub fn margin(&self) -> Decimal {
        (self.credits_charged - self.upstream_cost).normalize()
    }
}

/// `GET /admin/api/services/{id}/credit_margins.json?month=YYYY-MM` (default: this month).
pub async fn margins(db: &Db, service: ServiceId, month: Option<&str>) -> Result<Vec<Margin>> {
    crate::catalog::services::find(db, service).await?;
    let month = month
        .map(str::to_string)
        .unwrap_or_else(|| chrono::Utc::now().format("%Y-%m").to_string());
    let first = tollgate_domain::invoice::parse_period(&month)
        .ok_or_else(|| crate::StoreError::invalid("month", "must be YYYY-MM"))?;
    let next = first
        .checked_add_months(chrono::Months::new(1))
        .ok_or_else(|| crate::StoreError::invalid("month", "is out of range"))?;
    let time = |d: chrono::NaiveDate| format!("{d}T00:00:00Z");
    let names: Vec<(i64, String)> = sqlx::query(
        "SELECT DISTINCT r.metric_id, m.system_name FROM credit_rates r JOIN metrics m ON m.id = r.metric_id
         WHERE r.service_id = $1 ORDER BY r.metric_id",
    )
    .bind(service.get())
    .fetch_all(&db.pool)
    .await?
    .iter()
    .map(|r| Ok((r.try_get("metric_id")?, r.try_get("system_name")?)))
    .collect::<Result<_, sqlx::Error>>()?;
    let details: Vec<Option<String>> = sqlx::query_scalar(
        "SELECT detail FROM credit_transactions WHERE kind = 'deduction' AND created_at >= $1 AND created_at < $2",
    )
    .bind(time(first))
    .bind(time(next))
    .fetch_all(&db.pool)
    .await?;
    let mut totals: BTreeMap<i64, (Decimal, Decimal)> = BTreeMap::new();
    for detail in details.iter().flatten() {
        let items: Vec<Deducted> = serde_json::from_str(detail).unwrap_or_default();
        for item in items
            .iter()
            .filter(|i| names.iter().any(|(id, _)| *id == i.metric_id.get()))
        {
            let t = totals.entry(item.metric_id.get()).or_default();
            t.0 += item.credits;
            t.1 += item.upstream_cost;
        }
    }
    Ok(names
        .into_iter()
        .map(|(id, name)| {
            let (charged, upstream) = totals.get(&id).copied().unwrap_or_default();
            Margin {
                metric_id: MetricId::new(id),
                metric: name,
                month: month.clone(),
                credits_charged: charged.normalize(),
                upstream_cost: upstream.normalize(),
            }
        })
        .collect())
}
