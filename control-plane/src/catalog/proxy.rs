//! A service's gateway settings (3scale's "proxy") and the versioned proxy configs gateways load.
//!
//! `deploy` snapshots the service as gateways need it (metrics hierarchy, mapping rules,
//! credential settings, error responses, service token) as the next sandbox version; `promote`
//! copies a version to production. Gateways read the latest production config of every service
//! from `/admin/api/account/proxy_configs/production.json`.

use super::services::{self, Service};
use crate::db::Db;
use crate::error::ApiError;
use crate::params::Params;
use crate::time::now;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::Row;

/// The proxy settings, stored as one JSON document per service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProxySettings {
    pub api_backend: Option<String>,
    pub endpoint: Option<String>,
    pub sandbox_endpoint: Option<String>,
    pub credentials_location: String,
    pub auth_user_key: String,
    pub auth_app_id: String,
    pub auth_app_key: String,
    pub error_auth_failed: String,
    pub error_status_auth_failed: u16,
    pub error_headers_auth_failed: String,
    pub error_auth_missing: String,
    pub error_status_auth_missing: u16,
    pub error_headers_auth_missing: String,
    pub error_no_match: String,
    pub error_status_no_match: u16,
    pub error_headers_no_match: String,
    pub error_limits_exceeded: String,
    pub error_status_limits_exceeded: u16,
    pub error_headers_limits_exceeded: String,
    /// Other settings 3scale keeps (`api_test_path`, `support_email`, …), as given.
    #[serde(flatten)]
    pub other: serde_json::Map<String, Value>,
}

/// Parameters that are never settings: identity, timestamps, and what clients echo back.
const NOT_SETTINGS: &[&str] = &[
    "id",
    "service_id",
    "created_at",
    "updated_at",
    "links",
    "lock_version",
    "access_token",
    "hosts",
    "proxy_rules",
];

const TEXT: &str = "text/plain; charset=us-ascii";

impl Default for ProxySettings {
    fn default() -> Self {
        Self {
            api_backend: None,
            endpoint: None,
            sandbox_endpoint: None,
            credentials_location: "query".into(),
            auth_user_key: "user_key".into(),
            auth_app_id: "app_id".into(),
            auth_app_key: "app_key".into(),
            error_auth_failed: "Authentication failed".into(),
            error_status_auth_failed: 403,
            error_headers_auth_failed: TEXT.into(),
            error_auth_missing: "Authentication parameters missing".into(),
            error_status_auth_missing: 401,
            error_headers_auth_missing: TEXT.into(),
            error_no_match: "No Mapping Rule matched".into(),
            error_status_no_match: 404,
            error_headers_no_match: TEXT.into(),
            error_limits_exceeded: "Usage limit exceeded".into(),
            error_status_limits_exceeded: 429,
            error_headers_limits_exceeded: TEXT.into(),
            other: serde_json::Map::new(),
        }
    }
}

impl ProxySettings {
    /// Applies the parameters of `PATCH /proxy.json`; each bad value is a 422 naming its field.
    pub fn update_from(&mut self, p: &Params) -> Result<(), ApiError> {
        let text = |target: &mut String, name: &str| {
            if let Some(v) = p.get(name) {
                *target = v.to_string();
            }
        };
        let opt = |target: &mut Option<String>, name: &str| {
            if let Some(v) = p.get(name) {
                *target = (!v.is_empty()).then(|| v.to_string());
            }
        };
        opt(&mut self.api_backend, "api_backend");
        opt(&mut self.endpoint, "endpoint");
        opt(&mut self.sandbox_endpoint, "sandbox_endpoint");
        if let Some(v) = p.get("credentials_location") {
            if !matches!(v, "query" | "headers" | "authorization") {
                return Err(ApiError::invalid(
                    "credentials_location",
                    "must be query, headers or authorization",
                ));
            }
            self.credentials_location = v.to_string();
        }
        for (target, name) in [
            (&mut self.auth_user_key, "auth_user_key"),
            (&mut self.auth_app_id, "auth_app_id"),
            (&mut self.auth_app_key, "auth_app_key"),
            (&mut self.error_auth_failed, "error_auth_failed"),
            (&mut self.error_headers_auth_failed, "error_headers_auth_failed"),
            (&mut self.error_auth_missing, "error_auth_missing"),
            (&mut self.error_headers_auth_missing, "error_headers_auth_missing"),
            (&mut self.error_no_match, "error_no_match"),
            (&mut self.error_headers_no_match, "error_headers_no_match"),
            (&mut self.error_limits_exceeded, "error_limits_exceeded"),
            (&mut self.error_headers_limits_exceeded, "error_headers_limits_exceeded"),
        ] {
            text(target, name);
        }
        for (target, name) in [
            (&mut self.error_status_auth_failed, "error_status_auth_failed"),
            (&mut self.error_status_auth_missing, "error_status_auth_missing"),
            (&mut self.error_status_no_match, "error_status_no_match"),
            (&mut self.error_status_limits_exceeded, "error_status_limits_exceeded"),
        ] {
            if let Some(status) = p.parse::<u16>(name)? {
                if !(100..=599).contains(&status) {
                    return Err(ApiError::invalid(name, "must be an HTTP status (100-599)"));
                }
                *target = status;
            }
        }
        let known = serde_json::to_value(Self::default()).unwrap_or_default();
        for (name, value) in &p.0 {
            let plain = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if plain && !NOT_SETTINGS.contains(&name.as_str()) && known.get(name).is_none() {
                self.other.insert(name.clone(), Value::String(value.clone()));
            }
        }
        Ok(())
    }

    /// Hosts a gateway serves the service under: the endpoints' host parts.
    pub fn hosts(&self) -> Vec<String> {
        [&self.endpoint, &self.sandbox_endpoint]
            .into_iter()
            .flatten()
            .filter_map(|url| {
                let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
                let host = rest.split(['/', ':']).next().unwrap_or("");
                (!host.is_empty()).then(|| host.to_string())
            })
            .collect()
    }
}

pub async fn settings(db: &Db, service_id: i64) -> Result<ProxySettings, ApiError> {
    let text: String = sqlx::query_scalar("SELECT settings FROM proxies WHERE service_id = $1")
        .bind(service_id)
        .fetch_optional(&db.pool)
        .await?
        .ok_or(ApiError::NotFound)?;
    serde_json::from_str(&text).map_err(|e| ApiError::Internal(format!("proxy settings of service {service_id}: {e}")))
}

/// Updates the settings and, as 3scale does, deploys the result to the sandbox.
pub async fn update_settings(db: &Db, service_id: i64, p: &Params) -> Result<ProxySettings, ApiError> {
    let mut current = settings(db, service_id).await?;
    current.update_from(p)?;
    let text = serde_json::to_string(&current).map_err(|e| ApiError::Internal(e.to_string()))?;
    sqlx::query("UPDATE proxies SET settings = $1, updated_at = $2 WHERE service_id = $3")
        .bind(text)
        .bind(now())
        .bind(service_id)
        .execute(&db.pool)
        .await?;
    deploy(db, service_id).await?;
    Ok(current)
}

/// The `proxy` object as 3scale's API shows it.
pub fn proxy_json(service: &Service, s: &ProxySettings) -> Value {
    let mut v = serde_json::to_value(s).unwrap_or_else(|_| json!({}));
    if let Value::Object(map) = &mut v {
        map.insert("service_id".into(), json!(service.id));
        map.insert("updated_at".into(), json!(service.updated_at));
    }
    v
}

/// The gateway's view of a service now: what `deploy` snapshots.
async fn content(db: &Db, service: &Service) -> Result<Value, ApiError> {
    let settings = settings(db, service.id).await?;
    // The product's own metrics and those of the backends it uses.
    let metrics = sqlx::query(
        "SELECT id, system_name, friendly_name, parent_id, unit FROM metrics
         WHERE service_id = $1 OR backend_id IN (SELECT backend_id FROM backend_usages WHERE service_id = $1)
         ORDER BY id",
    )
    .bind(service.id)
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
    // The product's rules, then each used backend's rules under the backend's path (as 3scale
    // merges them): a backend used at `/v2` with rule `/items` maps `/v2/items`.
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
    .bind(service.id)
    .fetch_all(&db.pool)
    .await?;
    let rules: Vec<Value> = rules
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
        "backend_version": service.backend_version,
        "backend_authentication_type": "service_token",
        "backend_authentication_value": service.service_token,
        "metrics": metrics,
        "proxy": proxy,
    }))
}

/// A backend rule's pattern under the backend's path in the product (`/v2` + `/items`).
pub fn prefixed(path: &str, pattern: &str) -> String {
    let prefix = path.trim_end_matches('/');
    if prefix.is_empty() {
        pattern.to_string()
    } else {
        format!("{prefix}{pattern}")
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ProxyConfig {
    pub id: i64,
    pub version: i64,
    pub environment: String,
    pub content: Value,
    pub created_at: String,
}

fn config_from_row(r: &crate::db::Row) -> Result<ProxyConfig, ApiError> {
    let content: String = r.try_get("content")?;
    Ok(ProxyConfig {
        id: r.try_get("id")?,
        version: r.try_get("version")?,
        environment: r.try_get("environment")?,
        content: serde_json::from_str(&content).map_err(|e| ApiError::Internal(e.to_string()))?,
        created_at: r.try_get("created_at")?,
    })
}

async fn insert_config(db: &Db, service_id: i64, environment: &str, content: &Value) -> Result<ProxyConfig, ApiError> {
    // Version numbers are per service and environment; the unique key turns a concurrent
    // deploy into a retry instead of a duplicate version.
    for _ in 0..5 {
        let inserted = sqlx::query(
            "INSERT INTO proxy_configs (service_id, environment, version, content, created_at)
             SELECT $1, $2, COALESCE(MAX(version), 0) + 1, $3, $4 FROM proxy_configs WHERE service_id = $1 AND environment = $2
             RETURNING id, version, environment, content, created_at",
        )
        .bind(service_id)
        .bind(environment)
        .bind(content.to_string())
        .bind(now())
        .fetch_one(&db.pool)
        .await;
        match inserted {
            Ok(row) => return config_from_row(&row),
            Err(e) if crate::error::is_unique_violation(&e) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Internal("could not allocate a proxy config version".into()))
}

/// `deploy`: the service as it is now becomes the next sandbox version.
pub async fn deploy(db: &Db, service_id: i64) -> Result<ProxyConfig, ApiError> {
    let service = services::find(db, service_id).await?;
    let content = content(db, &service).await?;
    insert_config(db, service_id, "sandbox", &content).await
}

/// `sandbox` (also called `staging`) or `production`.
pub fn validate_environment(env: &str) -> Result<&'static str, ApiError> {
    match env {
        "sandbox" | "staging" => Ok("sandbox"),
        "production" => Ok("production"),
        _ => Err(ApiError::NotFound),
    }
}

/// Every version of a service's config in one environment, oldest first.
pub async fn list_configs(db: &Db, service_id: i64, environment: &str) -> Result<Vec<ProxyConfig>, ApiError> {
    let rows = sqlx::query(
        "SELECT id, version, environment, content, created_at FROM proxy_configs
         WHERE service_id = $1 AND environment = $2 ORDER BY version",
    )
    .bind(service_id)
    .bind(environment)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(config_from_row).collect()
}

pub async fn find_config(
    db: &Db,
    service_id: i64,
    environment: &str,
    version: Option<i64>,
) -> Result<ProxyConfig, ApiError> {
    let row = sqlx::query(
        "SELECT id, version, environment, content, created_at FROM proxy_configs
         WHERE service_id = $1 AND environment = $2 AND ($3 < 0 OR version = $3)
         ORDER BY version DESC LIMIT 1",
    )
    .bind(service_id)
    .bind(environment)
    .bind(version.unwrap_or(-1))
    .fetch_optional(&db.pool)
    .await?
    .ok_or(ApiError::NotFound)?;
    config_from_row(&row)
}

/// `promote`: copies a version of one environment to the next (sandbox → production).
pub async fn promote(
    db: &Db,
    service_id: i64,
    environment: &str,
    version: i64,
    to: &str,
) -> Result<ProxyConfig, ApiError> {
    if environment == to {
        return Err(ApiError::invalid(
            "to",
            "must differ from the environment promoted from",
        ));
    }
    validate_environment(to).map_err(|_| ApiError::invalid("to", "must be sandbox or production"))?;
    let source = find_config(db, service_id, environment, Some(version)).await?;
    insert_config(db, service_id, to, &source.content).await
}

/// The latest config of every service in `environment`.
pub async fn latest_of_all(db: &Db, environment: &str) -> Result<Vec<ProxyConfig>, ApiError> {
    let rows = sqlx::query(
        "SELECT c.id, c.version, c.environment, c.content, c.created_at FROM proxy_configs c
         WHERE c.environment = $1 AND c.version =
           (SELECT MAX(version) FROM proxy_configs x WHERE x.service_id = c.service_id AND x.environment = $1)
         ORDER BY c.service_id",
    )
    .bind(environment)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(config_from_row).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_rules_go_under_the_usage_path() {
        assert_eq!(prefixed("/", "/items"), "/items");
        assert_eq!(prefixed("/v2", "/items"), "/v2/items");
        assert_eq!(prefixed("/v2/", "/items$"), "/v2/items$");
    }

    #[test]
    fn settings_update_validates_fields() {
        let mut s = ProxySettings::default();
        let p = Params::from_query(
            "credentials_location=headers&error_status_auth_failed=418&endpoint=https://api.example.com:443/x",
        )
        .unwrap();
        s.update_from(&p).unwrap();
        assert_eq!(s.credentials_location, "headers");
        assert_eq!(s.error_status_auth_failed, 418);
        assert_eq!(s.hosts(), vec!["api.example.com".to_string()]);
        let bad = Params::from_query("credentials_location=cookie").unwrap();
        assert!(matches!(s.update_from(&bad), Err(ApiError::Invalid(f)) if f[0].0 == "credentials_location"));
        let bad = Params::from_query("error_status_no_match=99").unwrap();
        assert!(matches!(s.update_from(&bad), Err(ApiError::Invalid(f)) if f[0].0 == "error_status_no_match"));
    }
}
