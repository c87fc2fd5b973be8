//! What the developer portal reads beyond the API's own functions: who a signed-in developer
//! is (their account must still be approved, they still active), the plans a developer may
//! pick for a new application (published ones), and a new account's first user. Every other
//! read the portal makes goes through the functions the admin API uses, scoped to the
//! developer's account.

use crate::db::Db;
use crate::error::Result;
use sqlx::Row;
use tollgate_domain::ids::{AccountId, PlanId, ServiceId, UserId};

/// A signed-in developer's user and account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Developer {
    pub user_id: UserId,
    pub username: String,
    pub account_id: AccountId,
    pub org_name: String,
}

/// `user` as the portal lets them in: `None` when they are no longer active or their account
/// no longer approved (a suspension is felt at the next request).
pub async fn developer(db: &Db, user: UserId) -> Result<Option<Developer>> {
    let row = sqlx::query(
        "SELECT u.username, u.account_id, a.org_name FROM users u JOIN accounts a ON a.id = u.account_id
         WHERE u.id = $1 AND u.state = 'active' AND a.state = 'approved'",
    )
    .bind(user.get())
    .fetch_optional(&db.pool)
    .await?;
    row.map(|r| {
        Ok(Developer {
            user_id: user,
            username: r.try_get("username")?,
            account_id: AccountId::new(r.try_get("account_id")?),
            org_name: r.try_get("org_name")?,
        })
    })
    .transpose()
}

/// A plan a developer may subscribe an application to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedPlan {
    pub plan_id: PlanId,
    pub plan: String,
    pub service_id: ServiceId,
    pub service: String,
    /// Whether an application on it waits for the provider's approval.
    pub approval_required: bool,
}

/// The published application plans, by product and name.
pub async fn published_plans(db: &Db) -> Result<Vec<OfferedPlan>> {
    let rows = sqlx::query(
        "SELECT p.id, p.name, p.service_id, s.name AS service, p.approval_required
         FROM application_plans p JOIN services s ON s.id = p.service_id
         WHERE p.state = 'published' AND p.custom = 0 ORDER BY s.name, s.id, p.name, p.id",
    )
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(OfferedPlan {
                plan_id: PlanId::new(r.try_get("id")?),
                plan: r.try_get("name")?,
                service_id: ServiceId::new(r.try_get("service_id")?),
                service: r.try_get("service")?,
                approval_required: r.try_get::<i64, _>("approval_required")? != 0,
            })
        })
        .collect()
}

/// An account's first user (the admin a signup made).
pub async fn first_user(db: &Db, account: AccountId) -> Result<Option<UserId>> {
    let id: Option<i64> = sqlx::query_scalar("SELECT id FROM users WHERE account_id = $1 ORDER BY id LIMIT 1")
        .bind(account.get())
        .fetch_optional(&db.pool)
        .await?;
    Ok(id.map(UserId::new))
}
