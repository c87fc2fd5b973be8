//! Services (API products): created with the built-in `hits` metric, 3scale's default mapping
//! rule (`GET /` → hits), default proxy settings and a service token for gateways.

use super::proxy::ProxySettings;
use super::{system_name_from, validate_system_name, Page};
use crate::auth::generate_token;
use crate::db::{Db, Row};
use crate::error::{is_unique_violation, ApiError};
use crate::params::Params;
use crate::time::now;
use serde::Serialize;
use sqlx::Row as _;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Service {
    pub id: i64,
    pub name: String,
    pub system_name: String,
    pub description: String,
    pub backend_version: String,
    pub state: String,
    #[serde(skip)]
    pub service_token: String,
    pub default_application_plan_id: Option<i64>,
    pub created_at: String,
    pub updated_at: String,
}

const COLUMNS: &str = "id, name, system_name, description, backend_version, state, service_token, \
                       default_application_plan_id, created_at, updated_at";

fn from_row(r: &Row) -> Result<Service, sqlx::Error> {
    Ok(Service {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        system_name: r.try_get("system_name")?,
        description: r.try_get("description")?,
        backend_version: r.try_get("backend_version")?,
        state: r.try_get("state")?,
        service_token: r.try_get("service_token")?,
        default_application_plan_id: r.try_get("default_application_plan_id")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

pub struct NewService {
    pub name: String,
    pub system_name: String,
    pub description: String,
    pub backend_version: String,
}

impl NewService {
    pub fn from_params(p: &Params) -> Result<Self, ApiError> {
        let name = p.required("name")?.trim().to_string();
        let system_name = p
            .get("system_name")
            .map(str::to_string)
            .unwrap_or_else(|| system_name_from(&name));
        validate_system_name("system_name", &system_name)?;
        let backend_version = p.get("backend_version").unwrap_or("1").to_string();
        if !matches!(backend_version.as_str(), "1" | "2" | "oidc") {
            return Err(ApiError::invalid(
                "backend_version",
                "must be 1 (user_key), 2 (app_id/app_key) or oidc",
            ));
        }
        Ok(Self {
            name,
            system_name,
            description: p.get("description").unwrap_or("").to_string(),
            backend_version,
        })
    }
}

/// Creates the service with everything that hangs off a new one, in one transaction.
pub async fn create(db: &Db, new: NewService) -> Result<Service, ApiError> {
    let mut tx = db.pool.begin().await?;
    let ts = now();
    let inserted = sqlx::query(&format!(
        "INSERT INTO services (name, system_name, description, backend_version, service_token, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING {COLUMNS}"
    ))
    .bind(&new.name)
    .bind(&new.system_name)
    .bind(&new.description)
    .bind(&new.backend_version)
    .bind(generate_token())
    .bind(&ts)
    .fetch_one(&mut *tx)
    .await;
    let service = match inserted {
        Ok(row) => from_row(&row)?,
        Err(e) if is_unique_violation(&e) => return Err(ApiError::invalid("system_name", "has already been taken")),
        Err(e) => return Err(e.into()),
    };
    let hits_id: i64 = sqlx::query_scalar(
        "INSERT INTO metrics (service_id, system_name, friendly_name, unit, description, created_at, updated_at)
         VALUES ($1, 'hits', 'Hits', 'hit', 'Number of API hits', $2, $2) RETURNING id",
    )
    .bind(service.id)
    .bind(&ts)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO mapping_rules (service_id, metric_id, http_method, pattern, delta, position, last, created_at, updated_at)
         VALUES ($1, $2, 'GET', '/', 1, 1, 0, $3, $3)",
    )
    .bind(service.id)
    .bind(hits_id)
    .bind(&ts)
    .execute(&mut *tx)
    .await?;
    let settings = serde_json::to_string(&ProxySettings::default()).map_err(|e| ApiError::Internal(e.to_string()))?;
    sqlx::query("INSERT INTO proxies (service_id, settings, updated_at) VALUES ($1, $2, $3)")
        .bind(service.id)
        .bind(settings)
        .bind(&ts)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(service)
}

pub async fn find(db: &Db, id: i64) -> Result<Service, ApiError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM services WHERE id = $1"))
        .bind(id)
        .fetch_optional(&db.pool)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(from_row(&row)?)
}

pub async fn list(db: &Db, page: Page) -> Result<Vec<Service>, ApiError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM services ORDER BY id LIMIT $1 OFFSET $2"
    ))
    .bind(page.per_page)
    .bind(page.offset())
    .fetch_all(&db.pool)
    .await?;
    Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
}
