//! Configuration from the environment, with an optional TOML file (`TOLLGATE_CONFIG`) under it.
//! Every setting has a default that runs: SQLite in `./tollgate.db`, in-process counters.

use serde::Deserialize;
use std::net::SocketAddr;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `TOLLGATE_LISTEN`: where the HTTP API listens.
    pub listen: SocketAddr,
    /// `TOLLGATE_DATABASE_URL`: `sqlite://path` (created if missing) or `postgres://…`.
    pub database_url: String,
    /// `TOLLGATE_REDIS_URL`: counters in Redis; unset means the embedded in-process store.
    /// Several URLs separated by commas name the nodes of a Redis Cluster.
    pub redis_url: Option<String>,
    /// `TOLLGATE_REDIS_PREFIX`: the start of every Redis key (several deployments, one Redis).
    pub redis_prefix: String,
    /// `TOLLGATE_REDIS_TIMEOUT_MS`: how long an authrep waits for Redis before answering 503.
    pub redis_timeout_ms: u64,
    /// `TOLLGATE_REDIS_REPLICA_ACKS`: replicas that must hold a call's counter moves before it
    /// is answered (Redis `WAIT`, within half the timeout), so that a master's failover loses
    /// no answered call; 0 (default): answer at once.
    pub redis_replica_acks: usize,
    /// `TOLLGATE_GATEWAYS`: how many gateways serve the same accounts; each may spend only its
    /// share of a prepaid balance from its cache, which bounds what they can overdraw together
    /// (1: one gateway takes it all).
    pub gateways: u32,
    /// `TOLLGATE_CACHE_TTL_MS`: how long authrep trusts what it cached from the catalog; bounds
    /// how long another replica's admin write takes to be seen here.
    pub cache_ttl_ms: u64,
    /// `TOLLGATE_USAGE_FLUSH_MS`: how often hour counters are copied into the usage tables
    /// (and so how far behind billing and analytics may be).
    pub usage_flush_ms: u64,
    /// `TOLLGATE_ADMIN_TOKEN`: an access token with every scope, read-write, ensured at start.
    pub admin_token: Option<String>,
    /// `TOLLGATE_LOG_FORMAT`: `text` (default) or `json`.
    pub log_format: LogFormat,
    /// `TOLLGATE_STRIPE_SECRET_KEY`: Stripe's secret key, for the `stripe` payment gateway.
    pub stripe_secret_key: Option<String>,
    /// `TOLLGATE_STRIPE_API_BASE`: Stripe's API (a local stand-in in tests).
    pub stripe_api_base: String,
    /// `TOLLGATE_BILLING_HOUR`: the UTC hour the daily billing run starts (3scale: 8), or `off`.
    pub billing_hour: Option<u32>,
    /// `TOLLGATE_SMTP_URL`: where e-mail goes (`smtp://host:port`, `smtps://user:pw@host:port`);
    /// unset: no e-mail.
    pub smtp_url: Option<String>,
    /// `TOLLGATE_MAIL_FROM`: the sender of Tollgate's e-mail.
    pub mail_from: String,
    /// `TOLLGATE_WEBHOOK_RETRY_MS`: the first retry's wait; each next one doubles (capped at
    /// 240 times this), with jitter.
    pub webhook_retry_ms: u64,
    /// `TOLLGATE_WEBHOOK_MAX_ATTEMPTS`: attempts before a delivery gives up (the default keeps
    /// trying for more than 24 hours at the default retry base).
    pub webhook_max_attempts: u32,
    /// `TOLLGATE_WEBHOOK_ALLOW_PRIVATE`: `1` lets webhooks reach loopback, private and
    /// link-local addresses (local runs, tests); refused otherwise.
    pub webhook_allow_private: bool,
    /// `TOLLGATE_OUTBOX_POLL_MS`: how often an idle sender looks for new events.
    pub outbox_poll_ms: u64,
    /// `TOLLGATE_CONSOLE_IDLE_MINUTES`: a console session ends after this long without a
    /// request.
    pub console_idle_minutes: u64,
    /// `TOLLGATE_XDS_LISTEN`: where Envoy's aggregated discovery service (gRPC) listens, or
    /// `off`.
    pub xds_listen: Option<SocketAddr>,
    /// `TOLLGATE_XDS_POLL_MS`: how often the xDS server looks for new proxy-config versions
    /// (a deploy or promote on any replica reaches gateways within this).
    pub xds_poll_ms: u64,
    /// `TOLLGATE_GATEWAY_DOMAIN`: the domain of products' default public hosts
    /// (`{system_name}-staging.{domain}`, `{system_name}.{domain}`).
    pub gateway_domain: String,
    /// `TOLLGATE_STAGING_PORT`, `TOLLGATE_PRODUCTION_PORT`: the ports of the default public
    /// endpoints (where the staging and production gateways listen).
    pub staging_port: u16,
    pub production_port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            database_url: "sqlite://tollgate.db".into(),
            redis_url: None,
            redis_prefix: "tollgate:".into(),
            redis_timeout_ms: 100,
            redis_replica_acks: 0,
            gateways: 1,
            cache_ttl_ms: 5000,
            usage_flush_ms: 10_000,
            admin_token: None,
            log_format: LogFormat::Text,
            stripe_secret_key: None,
            stripe_api_base: "https://api.stripe.com".into(),
            billing_hour: Some(8),
            smtp_url: None,
            mail_from: "Tollgate <no-reply@tollgate.localhost>".into(),
            webhook_retry_ms: 30_000,
            webhook_max_attempts: 24,
            webhook_allow_private: false,
            outbox_poll_ms: 250,
            console_idle_minutes: 30,
            xds_listen: Some(SocketAddr::from(([127, 0, 0, 1], 18000))),
            xds_poll_ms: 200,
            gateway_domain: "localhost".into(),
            staging_port: 8081,
            production_port: 8080,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("config file {path}: {source}")]
    Parse { path: String, source: toml::de::Error },
    #[error("{var}: {message}")]
    Env { var: &'static str, message: String },
}

impl Config {
    /// Defaults, then the file named by `TOLLGATE_CONFIG` (if any), then `TOLLGATE_*` variables.
    pub fn load() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut config = match env("TOLLGATE_CONFIG").filter(|p| !p.is_empty()) {
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                toml::from_str(&text).map_err(|source| ConfigError::Parse { path, source })?
            }
            None => Config::default(),
        };
        let set = |var: &str| env(var).filter(|v| !v.is_empty());
        if let Some(v) = set("TOLLGATE_LISTEN") {
            config.listen = v.parse().map_err(|e| ConfigError::Env {
                var: "TOLLGATE_LISTEN",
                message: format!("`{v}` is not an address like 127.0.0.1:3000 ({e})"),
            })?;
        }
        if let Some(v) = set("TOLLGATE_DATABASE_URL") {
            config.database_url = v;
        }
        if let Some(v) = set("TOLLGATE_REDIS_URL") {
            config.redis_url = Some(v);
        }
        if let Some(v) = set("TOLLGATE_REDIS_PREFIX") {
            config.redis_prefix = v;
        }
        if let Some(v) = set("TOLLGATE_REDIS_TIMEOUT_MS") {
            config.redis_timeout_ms = v.parse().ok().filter(|ms| *ms > 0).ok_or_else(|| ConfigError::Env {
                var: "TOLLGATE_REDIS_TIMEOUT_MS",
                message: format!("`{v}` is not a number of milliseconds"),
            })?;
        }
        if let Some(v) = set("TOLLGATE_REDIS_REPLICA_ACKS") {
            config.redis_replica_acks = v.parse().map_err(|_| ConfigError::Env {
                var: "TOLLGATE_REDIS_REPLICA_ACKS",
                message: format!("`{v}` is not a number of replicas"),
            })?;
        }
        if let Some(v) = set("TOLLGATE_GATEWAYS") {
            config.gateways = v.parse().ok().filter(|n| *n > 0).ok_or_else(|| ConfigError::Env {
                var: "TOLLGATE_GATEWAYS",
                message: format!("`{v}` is not a number of gateways (1 or more)"),
            })?;
        }
        if let Some(v) = set("TOLLGATE_CACHE_TTL_MS") {
            config.cache_ttl_ms = v.parse().map_err(|_| ConfigError::Env {
                var: "TOLLGATE_CACHE_TTL_MS",
                message: format!("`{v}` is not a number of milliseconds"),
            })?;
        }
        if let Some(v) = set("TOLLGATE_USAGE_FLUSH_MS") {
            config.usage_flush_ms = v.parse().ok().filter(|ms| *ms > 0).ok_or_else(|| ConfigError::Env {
                var: "TOLLGATE_USAGE_FLUSH_MS",
                message: format!("`{v}` is not a number of milliseconds"),
            })?;
        }
        if let Some(v) = set("TOLLGATE_ADMIN_TOKEN") {
            config.admin_token = Some(v);
        }
        if let Some(v) = set("TOLLGATE_LOG_FORMAT") {
            config.log_format = match v.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => {
                    return Err(ConfigError::Env {
                        var: "TOLLGATE_LOG_FORMAT",
                        message: format!("`{v}`: use text or json"),
                    })
                }
            };
        }
        if let Some(v) = set("TOLLGATE_STRIPE_SECRET_KEY") {
            config.stripe_secret_key = Some(v);
        }
        if let Some(v) = set("TOLLGATE_STRIPE_API_BASE") {
            config.stripe_api_base = v;
        }
        if let Some(v) = set("TOLLGATE_BILLING_HOUR") {
            config.billing_hour = match v.as_str() {
                "off" => None,
                _ => Some(v.parse().ok().filter(|h| *h < 24).ok_or_else(|| ConfigError::Env {
                    var: "TOLLGATE_BILLING_HOUR",
                    message: format!("`{v}`: an hour 0-23, or off"),
                })?),
            };
        }
        if let Some(v) = set("TOLLGATE_SMTP_URL") {
            config.smtp_url = Some(v);
        }
        if let Some(v) = set("TOLLGATE_MAIL_FROM") {
            config.mail_from = v;
        }
        let number = |var: &'static str, v: String| -> Result<u64, ConfigError> {
            v.parse().ok().filter(|n| *n > 0).ok_or_else(|| ConfigError::Env {
                var,
                message: format!("`{v}` is not a positive number"),
            })
        };
        if let Some(v) = set("TOLLGATE_WEBHOOK_RETRY_MS") {
            config.webhook_retry_ms = number("TOLLGATE_WEBHOOK_RETRY_MS", v)?;
        }
        if let Some(v) = set("TOLLGATE_WEBHOOK_MAX_ATTEMPTS") {
            config.webhook_max_attempts =
                u32::try_from(number("TOLLGATE_WEBHOOK_MAX_ATTEMPTS", v)?).unwrap_or(u32::MAX);
        }
        if let Some(v) = set("TOLLGATE_WEBHOOK_ALLOW_PRIVATE") {
            config.webhook_allow_private = matches!(v.as_str(), "1" | "true" | "yes");
        }
        if let Some(v) = set("TOLLGATE_OUTBOX_POLL_MS") {
            config.outbox_poll_ms = number("TOLLGATE_OUTBOX_POLL_MS", v)?;
        }
        if let Some(v) = set("TOLLGATE_CONSOLE_IDLE_MINUTES") {
            // A year at most (and so a Duration that fits).
            config.console_idle_minutes = number("TOLLGATE_CONSOLE_IDLE_MINUTES", v)?.min(525_600);
        }
        if let Some(v) = set("TOLLGATE_XDS_LISTEN") {
            config.xds_listen = match v.as_str() {
                "off" => None,
                _ => Some(v.parse().map_err(|e| ConfigError::Env {
                    var: "TOLLGATE_XDS_LISTEN",
                    message: format!("`{v}` is not an address like 127.0.0.1:18000, or off ({e})"),
                })?),
            };
        }
        if let Some(v) = set("TOLLGATE_XDS_POLL_MS") {
            config.xds_poll_ms = number("TOLLGATE_XDS_POLL_MS", v)?;
        }
        if let Some(v) = set("TOLLGATE_GATEWAY_DOMAIN") {
            tollgate_domain::gateway::Endpoint::parse(&format!("http://{v}")).map_err(|e| ConfigError::Env {
                var: "TOLLGATE_GATEWAY_DOMAIN",
                message: format!("`{v}`: {e}"),
            })?;
            config.gateway_domain = v;
        }
        let port = |var: &'static str, v: String| -> Result<u16, ConfigError> {
            v.parse().ok().filter(|n| *n > 0).ok_or_else(|| ConfigError::Env {
                var,
                message: format!("`{v}` is not a port (1-65535)"),
            })
        };
        if let Some(v) = set("TOLLGATE_STAGING_PORT") {
            config.staging_port = port("TOLLGATE_STAGING_PORT", v)?;
        }
        if let Some(v) = set("TOLLGATE_PRODUCTION_PORT") {
            config.production_port = port("TOLLGATE_PRODUCTION_PORT", v)?;
        }
        if !(config.database_url.starts_with("sqlite:") || config.database_url.starts_with("postgres")) {
            return Err(ConfigError::Env {
                var: "TOLLGATE_DATABASE_URL",
                message: "use sqlite://PATH or postgres://…".into(),
            });
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_run_embedded() {
        let c = load(&[]).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:3000");
        assert_eq!(c.database_url, "sqlite://tollgate.db");
        assert_eq!(c.redis_url, None);
    }

    #[test]
    fn environment_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:4000\"\ndatabase_url = \"postgres://x/y\"\n",
        )
        .unwrap();
        let c = load(&[
            ("TOLLGATE_CONFIG", path.to_str().unwrap()),
            ("TOLLGATE_LISTEN", "127.0.0.1:5000"),
        ])
        .unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:5000");
        assert_eq!(c.database_url, "postgres://x/y");
    }

    #[test]
    fn bad_values_name_the_variable() {
        let e = load(&[("TOLLGATE_LISTEN", "nope")]).unwrap_err().to_string();
        assert!(e.contains("TOLLGATE_LISTEN"), "{e}");
        let e = load(&[("TOLLGATE_XDS_LISTEN", "18000")]).unwrap_err().to_string();
        assert!(e.contains("TOLLGATE_XDS_LISTEN"), "{e}");
        let e = load(&[("TOLLGATE_GATEWAY_DOMAIN", "a b")]).unwrap_err().to_string();
        assert!(e.contains("TOLLGATE_GATEWAY_DOMAIN"), "{e}");
        let e = load(&[("TOLLGATE_STAGING_PORT", "0")]).unwrap_err().to_string();
        assert!(e.contains("TOLLGATE_STAGING_PORT"), "{e}");
        assert_eq!(load(&[("TOLLGATE_XDS_LISTEN", "off")]).unwrap().xds_listen, None);
        let e = load(&[("TOLLGATE_DATABASE_URL", "mysql://x")]).unwrap_err().to_string();
        assert!(e.contains("TOLLGATE_DATABASE_URL"), "{e}");
        for (var, bad) in [
            ("TOLLGATE_GATEWAYS", "0"),
            ("TOLLGATE_GATEWAYS", "two"),
            ("TOLLGATE_REDIS_REPLICA_ACKS", "-1"),
        ] {
            let e = load(&[(var, bad)]).unwrap_err().to_string();
            assert!(e.contains(var), "{var}={bad}: {e}");
        }
        let c = load(&[("TOLLGATE_GATEWAYS", "3"), ("TOLLGATE_REDIS_REPLICA_ACKS", "1")]).unwrap();
        assert_eq!((c.gateways, c.redis_replica_acks), (3, 1));
    }
}
