//! What one environment's gateways should run now: the latest proxy config of every service in
//! that environment (staging: the latest deployed, production: the latest promoted), the
//! routing plan made from them, and a version naming them (`service:version,…`).
//!
//! A watcher per environment polls the proxy-config versions (one small query) and rebuilds
//! the snapshot when they move, so a deploy on any control-plane replica reaches the gateways
//! connected to every replica. A deploy or promote on this replica wakes the watchers at once
//! ([`tollgate_store::Db::proxy_configs_changed`]).

use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tollgate_domain::catalog::Environment;
use tollgate_domain::gateway::{plan, Endpoint, Plan, Product};
use tollgate_store::catalog::proxy::{self, ProxyConfig};
use tollgate_store::Db;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Snapshot {
    /// `service:version` of every config in it, by service id (`empty` when there is none).
    pub version: String,
    pub plan: Plan,
    /// The configs as `/admin/api/account/proxy_configs/{env}.json` lists them.
    pub proxy_configs: Value,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Content {
    id: i64,
    system_name: String,
    proxy: ContentProxy,
    backend_api_configs: Vec<ContentBackend>,
}
#[derive(Deserialize, Default)]
#[serde(default)]
struct ContentProxy {
    api_backend: Option<String>,
    endpoint: Option<String>,
    sandbox_endpoint: Option<String>,
}
#[derive(Deserialize, Default)]
#[serde(default)]
struct ContentBackend {
    path: String,
    backend_api: ContentBackendApi,
}
#[derive(Deserialize, Default)]
#[serde(default)]
struct ContentBackendApi {
    private_endpoint: String,
}

/// The version naming a set of configs.
pub fn version_of(versions: &[(i64, i64)]) -> String {
    if versions.is_empty() {
        return "empty".into();
    }
    versions
        .iter()
        .map(|(s, v)| format!("{s}:{v}"))
        .collect::<Vec<_>>()
        .join(",")
}

impl Snapshot {
    /// The snapshot of these configs (one per service) for `environment`.
    pub fn of(environment: Environment, configs: &[ProxyConfig]) -> Snapshot {
        let mut skipped = Vec::new();
        let products: Vec<Product> = configs.iter().map(|c| product(environment, c, &mut skipped)).collect();
        let mut plan = plan(&products);
        plan.skipped.extend(skipped);
        let versions: Vec<(i64, i64)> = configs.iter().map(|c| (c.service_id.get(), c.version)).collect();
        Snapshot {
            version: version_of(&versions),
            plan,
            proxy_configs: Value::Array(configs.iter().map(|c| json!({ "proxy_config": c })).collect()),
        }
    }
}

/// A deployed config as a product to route; URLs that do not parse (deployed before they were
/// checked) are left out and said so, never sent to Envoy.
fn product(environment: Environment, c: &ProxyConfig, skipped: &mut Vec<String>) -> Product {
    let content: Content = serde_json::from_value(c.content.clone()).unwrap_or_default();
    let service_id = c.service_id.get();
    let mut url = |what: &str, u: Option<&str>| -> Option<Endpoint> {
        let u = u.filter(|u| !u.trim().is_empty())?;
        Endpoint::parse(u)
            .map_err(|e| skipped.push(format!("service {service_id}: {what} `{u}` {e}")))
            .ok()
    };
    let public = match environment {
        Environment::Sandbox => url("sandbox_endpoint", content.proxy.sandbox_endpoint.as_deref()),
        Environment::Production => url("endpoint", content.proxy.endpoint.as_deref()),
    };
    let api_backend = url("api_backend", content.proxy.api_backend.as_deref());
    let backends = content
        .backend_api_configs
        .iter()
        .map(|b| {
            let path = tollgate_domain::gateway::usage_path(&b.path).unwrap_or_else(|_| "/".into());
            (
                path,
                url("private_endpoint", Some(b.backend_api.private_endpoint.as_str())),
            )
        })
        .collect();
    Product {
        service_id: if content.id != 0 { content.id } else { service_id },
        system_name: content.system_name,
        public,
        api_backend,
        backends,
    }
}

/// Keeps each environment's snapshot current.
#[derive(Clone)]
pub struct Snapshots {
    staging: watch::Receiver<Arc<Snapshot>>,
    production: watch::Receiver<Arc<Snapshot>>,
}

impl Snapshots {
    /// Loads both environments now and starts their watchers (polling every `poll`).
    pub async fn start(db: Db, poll: Duration) -> Result<Snapshots, tollgate_store::StoreError> {
        let staging = watcher(db.clone(), Environment::Sandbox, poll).await?;
        let production = watcher(db, Environment::Production, poll).await?;
        Ok(Snapshots { staging, production })
    }

    pub fn of(&self, environment: Environment) -> watch::Receiver<Arc<Snapshot>> {
        match environment {
            Environment::Sandbox => self.staging.clone(),
            Environment::Production => self.production.clone(),
        }
    }
}

async fn watcher(
    db: Db,
    environment: Environment,
    poll: Duration,
) -> Result<watch::Receiver<Arc<Snapshot>>, tollgate_store::StoreError> {
    let first = load(&db, environment).await?;
    let (tx, rx) = watch::channel(Arc::new(first));
    let mut written_here = db.proxy_configs.subscribe();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(poll);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // The poll (other replicas' deploys), or at once for this process' own.
            tokio::select! {
                _ = ticker.tick() => {}
                Ok(()) = written_here.changed() => {}
            }
            if tx.is_closed() {
                return;
            }
            let current = tx.borrow().version.clone();
            match proxy::latest_versions(&db, environment).await {
                Ok(versions) if version_of(&versions) == current => {}
                Ok(_) => match load(&db, environment).await {
                    Ok(next) => {
                        tracing::info!(environment = environment.as_str(), version = %next.version, skipped = ?next.plan.skipped, "xds: new gateway configuration");
                        tx.send_replace(Arc::new(next));
                    }
                    Err(e) => {
                        tracing::warn!(environment = environment.as_str(), error = %e, "xds: cannot load proxy configs")
                    }
                },
                Err(e) => {
                    tracing::warn!(environment = environment.as_str(), error = %e, "xds: cannot read proxy config versions")
                }
            }
        }
    });
    Ok(rx)
}

async fn load(db: &Db, environment: Environment) -> Result<Snapshot, tollgate_store::StoreError> {
    let configs = proxy::latest_of_all(db, environment).await?;
    Ok(Snapshot::of(environment, &configs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_domain::ids::{ProxyConfigId, ServiceId};

    fn config(service: i64, version: i64, content: Value) -> ProxyConfig {
        ProxyConfig {
            id: ProxyConfigId::new(1),
            service_id: ServiceId::new(service),
            version,
            environment: "sandbox".into(),
            content,
            created_at: String::new(),
        }
    }

    #[test]
    fn staging_serves_the_sandbox_endpoint_and_skips_bad_urls() {
        let c = config(
            4,
            2,
            json!({"id": 4, "system_name": "shop", "proxy": {
                "endpoint": "http://shop.localhost:8080", "sandbox_endpoint": "http://shop-staging.localhost:8081",
                "api_backend": "http://127.0.0.1:1"},
              "backend_api_configs": [
                {"path": "/a", "backend_api": {"private_endpoint": "http://127.0.0.1:2/x"}},
                {"path": "/b", "backend_api": {"private_endpoint": "gopher://old"}}]}),
        );
        let s = Snapshot::of(Environment::Sandbox, std::slice::from_ref(&c));
        assert_eq!(s.version, "4:2");
        assert_eq!(s.plan.virtual_hosts[0].domains, ["shop-staging.localhost"]);
        assert_eq!(s.plan.virtual_hosts[0].routes.len(), 2, "/a and api_backend");
        assert_eq!(s.plan.skipped.len(), 1, "{:?}", s.plan.skipped);
        let p = Snapshot::of(Environment::Production, &[c]);
        assert_eq!(p.plan.virtual_hosts[0].domains, ["shop.localhost"]);
        assert_eq!(p.proxy_configs[0]["proxy_config"]["version"], 2);
        assert_eq!(Snapshot::of(Environment::Production, &[]).version, "empty");
    }
}
