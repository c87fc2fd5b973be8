//! A service's proxy settings as stored, and the versioned proxy configs gateways load.
//!
//! `deploy` snapshots the service as gateways need it (metrics hierarchy, mapping rules,
//! credential settings, error responses, service token) as the next sandbox version; `promote`
//! copies a version to production. Gateways read the latest production config of every service
//! from `/admin/api/account/proxy_configs/production.json`.

use super::services;
use crate::db::Db;
use crate::error::{is_unique_violation, Result, StoreError};
use crate::time::now;
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::Row;
use tollgate_domain::catalog::{prefixed, Environment, Service};
use tollgate_domain::ids::{ProxyConfigId, ServiceId};
use tollgate_domain::proxy::ProxySettings;

const SETTINGS_SQL: &str = "SELECT p.settings AS settings, s.system_name AS system_name
     FROM proxies p JOIN services s ON s.id = p.service_id WHERE p.service_id = $1";

/// A service's settings; public endpoints not set read as the gateway defaults.
pub async fn settings(db: &Db, service_id: ServiceId) -> Result<ProxySettings> {
    let row = sqlx::query(SETTINGS_SQL)
        .bind(service_id.get())
        .fetch_optional(&db.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
    parse_settings(db, service_id, &row)
}

/// The settings in a row of [`SETTINGS_SQL`].
fn parse_settings(db: &Db, service_id: ServiceId, row: &crate::db::Row) -> Result<ProxySettings> {
    let text: String = row.try_get("settings")?;
    let system_name: String = row.try_get("system_name")?;
    let settings: ProxySettings = serde_json::from_str(&text)
        .map_err(|e| StoreError::Internal(format!("proxy settings of service {service_id}: {e}")))?;
    Ok(settings.with_default_endpoints(&system_name, &db.gateways))
}

/// Changes the settings with `change` (e.g. [`ProxySettings::update_from`] a form) and, as
/// 3scale does, deploys the result to the sandbox. One write transaction: concurrent updates
/// queue, none is lost.
pub async fn update_settings(
    db: &Db,
    service_id: ServiceId,
    change: impl FnOnce(&mut ProxySettings) -> Result<(), tollgate_domain::Invalid>,
) -> Result<ProxySettings> {
    let mut tx = db.begin_write().await?;
    let row = sqlx::query(SETTINGS_SQL)
        .bind(service_id.get())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound)?;
    let mut current = parse_settings(db, service_id, &row)?;
    change(&mut current)?;
    let text = serde_json::to_string(&current).map_err(|e| StoreError::Internal(e.to_string()))?;
    sqlx::query("UPDATE proxies SET settings = $1, updated_at = $2 WHERE service_id = $3")
        .bind(text)
        .bind(now())
        .bind(service_id.get())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    deploy(db, service_id).await?;
    Ok(current)
}

/// The `proxy` object as 3scale's API shows it (and as deployed configs hold it).
pub fn proxy_json(service: &Service, s: &ProxySettings) -> Value {
    let mut v = serde_json::to_value(s).unwrap_or_else(|_| json!({}));
    if let Value::Object(map) = &mut v {
        map.insert("service_id".into(), json!(service.id));
        map.insert("updated_at".into(), json!(service.updated_at));
    }
    v
}

/// The mapping rules gateways apply to the service, in order: the product's rules, then each
/// used backend's rules under the backend's path (as 3scale merges them: a backend used at
/// `/v2` with rule `/items` maps `/v2/items`). What a deploy sends as `proxy_rules`.
pub async fn proxy_rules(db: &Db, service_id: ServiceId) -> Result<Vec<Value>> {
    let rules = sqlx::query(
        "SELECT r.id AS id, r.http_method AS http_method, r.pattern AS pattern, r.delta AS delta, r.position AS position,
                r.last AS last, r.metric_id AS metric_id, m.system_name AS system_name, '' AS prefix,
                0 AS backend_order
         FROM mapping_rules r JOIN metrics m ON m.id = r.metric_id
         WHERE r.service_id = $1
         UNION ALL
         SELECT r.id AS id, r.http_method AS http_method, r.pattern AS pattern, r.delta AS delta, r.position AS position,
                r.last AS last, r.metric_id AS metric_id, m.system_name AS system_name, u.path AS prefix,
                u.id AS backend_order
         FROM mapping_rules r JOIN metrics m ON m.id = r.metric_id JOIN backend_usages u ON u.backend_id = r.backend_id
         WHERE u.service_id = $1
         ORDER BY backend_order, position, id",
    )
    .bind(service_id.get())
    .fetch_all(&db.pool)
    .await?;
    Ok(rules
        .iter()
        .map(|r| -> Result<Value, sqlx::Error> {
            Ok(json!({
                "id": r.try_get::<i64, _>("id")?,
                "http_method": r.try_get::<String, _>("http_method")?,
                "pattern": prefixed(&r.try_get::<String, _>("prefix")?, &r.try_get::<String, _>("pattern")?),
                "delta": r.try_get::<i64, _>("delta")?,
                "position": r.try_get::<i64, _>("position")?,
                "last": r.try_get::<i64, _>("last")? != 0,
                "metric_id": r.try_get::<i64, _>("metric_id")?,
                "metric_system_name": r.try_get::<String, _>("system_name")?,
            }))
        })
        .collect::<Result<_, _>>()?)
}

/// The gateway's view of a service now: what `deploy` snapshots.
async fn content(db: &Db, service: &Service) -> Result<Value> {
    let settings = settings(db, service.id).await?;
    // The product's own metrics and those of the backends it uses.
    let metrics = sqlx::query(
        "SELECT id, system_name, friendly_name, parent_id, unit FROM metrics
         WHERE service_id = $1 OR backend_id IN (SELECT backend_id FROM backend_usages WHERE service_id = $1)
         ORDER BY id",
    )
    .bind(service.id.get())
    .fetch_all(&db.pool)
    .await?;
    let metrics: Vec<Value> = metrics
        .iter()
        .map(|r| -> Result<Value, sqlx::Error> {
            Ok(json!({
                "id": r.try_get::<i64, _>("id")?,
                "system_name": r.try_get::<String, _>("system_name")?,
                "friendly_name": r.try_get::<String, _>("friendly_name")?,
                "parent_id": r.try_get::<Option<i64>, _>("parent_id")?,
                "unit": r.try_get::<String, _>("unit")?,
            }))
        })
        .collect::<Result<_, _>>()?;
    let rules = proxy_rules(db, service.id).await?;
    // The backends the product routes to, by usage path (3scale's routing policy rules).
    let backends = sqlx::query(
        "SELECT u.path AS path, b.id AS id, b.system_name AS system_name, b.private_endpoint AS private_endpoint
         FROM backend_usages u JOIN backend_apis b ON b.id = u.backend_id WHERE u.service_id = $1 ORDER BY u.id",
    )
    .bind(service.id.get())
    .fetch_all(&db.pool)
    .await?;
    let backends: Vec<Value> = backends
        .iter()
        .map(|r| -> Result<Value, sqlx::Error> {
            Ok(json!({
                "path": r.try_get::<String, _>("path")?,
                "backend_api": {
                    "id": r.try_get::<i64, _>("id")?,
                    "system_name": r.try_get::<String, _>("system_name")?,
                    "private_endpoint": r.try_get::<String, _>("private_endpoint")?,
                },
            }))
        })
        .collect::<Result<_, _>>()?;
    let mut proxy = proxy_json(service, &settings);
    if let Value::Object(map) = &mut proxy {
        map.insert("hosts".into(), json!(settings.hosts()));
        map.insert("proxy_rules".into(), json!(rules));
    }
    Ok(json!({
        "id": service.id,
        "name": service.name,
        "system_name": service.system_name,
        "backend_version": service.backend_version.as_str(),
        "backend_authentication_type": "service_token",
        "backend_authentication_value": service.service_token,
        "metrics": metrics,
        "backend_api_configs": backends,
        "proxy": proxy,
    }))
}

/// One version of a service's gateway configuration in one environment. The content is the
/// JSON document gateways read (see `content`).
#[derive(Debug, Clone, Serialize)]
pub struct ProxyConfig {
    pub id: ProxyConfigId,
    #[serde(skip)]
    pub service_id: ServiceId,
    pub version: i64,
    pub environment: String,
    pub content: Value,
    pub created_at: String,
}

const CONFIG_COLUMNS: &str = "id, service_id, version, environment, content, created_at";

fn config_from_row(r: &crate::db::Row) -> Result<ProxyConfig> {
    let content: String = r.try_get("content")?;
    Ok(ProxyConfig {
        id: ProxyConfigId::new(r.try_get("id")?),
        service_id: ServiceId::new(r.try_get("service_id")?),
        version: r.try_get("version")?,
        environment: r.try_get("environment")?,
        content: serde_json::from_str(&content).map_err(|e| StoreError::Internal(e.to_string()))?,
        created_at: r.try_get("created_at")?,
    })
}

async fn insert_config(
    db: &Db,
    service_id: ServiceId,
    environment: Environment,
    content: &Value,
) -> Result<ProxyConfig> {
    // Version numbers are per service and environment; the unique key turns a concurrent
    // deploy into a retry instead of a duplicate version.
    for _ in 0..5 {
        let inserted = sqlx::query(&format!(
            "INSERT INTO proxy_configs (service_id, environment, version, content, created_at)
             SELECT $1, $2, COALESCE(MAX(version), 0) + 1, $3, $4 FROM proxy_configs WHERE service_id = $1 AND environment = $2
             RETURNING {CONFIG_COLUMNS}"
        ))
        .bind(service_id.get())
        .bind(environment.as_str())
        .bind(content.to_string())
        .bind(now())
        .fetch_one(&db.pool)
        .await;
        match inserted {
            Ok(row) => {
                db.proxy_configs_changed();
                return config_from_row(&row);
            }
            Err(e) if is_unique_violation(&e) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::Internal("could not allocate a proxy config version".into()))
}

/// `deploy`: the service as it is now becomes the next sandbox version.
pub async fn deploy(db: &Db, service_id: ServiceId) -> Result<ProxyConfig> {
    let service = services::find(db, service_id).await?;
    let content = content(db, &service).await?;
    insert_config(db, service_id, Environment::Sandbox, &content).await
}

/// Every version of a service's config in one environment, oldest first.
pub async fn list_configs(db: &Db, service_id: ServiceId, environment: Environment) -> Result<Vec<ProxyConfig>> {
    services::find(db, service_id).await?;
    let rows = sqlx::query(&format!(
        "SELECT {CONFIG_COLUMNS} FROM proxy_configs WHERE service_id = $1 AND environment = $2 ORDER BY version"
    ))
    .bind(service_id.get())
    .bind(environment.as_str())
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(config_from_row).collect()
}

/// One version (`None`: the latest).
pub async fn find_config(
    db: &Db,
    service_id: ServiceId,
    environment: Environment,
    version: Option<i64>,
) -> Result<ProxyConfig> {
    let row = sqlx::query(&format!(
        "SELECT {CONFIG_COLUMNS} FROM proxy_configs
         WHERE service_id = $1 AND environment = $2 AND ($3 < 0 OR version = $3)
         ORDER BY version DESC LIMIT 1"
    ))
    .bind(service_id.get())
    .bind(environment.as_str())
    .bind(version.unwrap_or(-1))
    .fetch_optional(&db.pool)
    .await?
    .ok_or(StoreError::NotFound)?;
    config_from_row(&row)
}

/// `promote`: copies a version of one environment to the other (sandbox → production).
pub async fn promote(
    db: &Db,
    service_id: ServiceId,
    environment: Environment,
    version: i64,
    to: Environment,
) -> Result<ProxyConfig> {
    if environment == to {
        return Err(StoreError::invalid(
            "to",
            "must differ from the environment promoted from",
        ));
    }
    let source = find_config(db, service_id, environment, Some(version)).await?;
    insert_config(db, service_id, to, &source.content).await
}

/// The latest config of every service in `environment`.
pub async fn latest_of_all(db: &Db, environment: Environment) -> Result<Vec<ProxyConfig>> {
    let rows = sqlx::query(
        "SELECT c.id, c.service_id, c.version, c.environment, c.content, c.created_at FROM proxy_configs c
         WHERE c.environment = $1 AND c.version =
           (SELECT MAX(version) FROM proxy_configs x WHERE x.service_id = c.service_id AND x.environment = $1)
         ORDER BY c.service_id",
    )
    .bind(environment.as_str())
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(config_from_row).collect()
}

/// The latest version of every service's config in `environment`, by service id: what tells
/// a gateway's configuration has moved (one small query, polled by the xDS server).
pub async fn latest_versions(db: &Db, environment: Environment) -> Result<Vec<(i64, i64)>> {
    let rows = sqlx::query(
        "SELECT service_id, MAX(version) AS version FROM proxy_configs WHERE environment = $1
         GROUP BY service_id ORDER BY service_id",
    )
    .bind(environment.as_str())
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get::<i64, _>("service_id")?, r.try_get::<i64, _>("version")?)))
        .collect()
}
