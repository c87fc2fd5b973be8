//! The plugin configuration: the JSON Envoy hands the filter in `configuration`.
//!
//! Every field has a default that runs, except the control plane's cluster and the access token,
//! which the filter cannot guess. A bad document is rejected with an error naming the field, so
//! `on_configure` can fail with one clear log line instead of serving a broken filter.

use serde::Deserialize;

/// What to do when the control plane cannot answer and nothing is cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FailureMode {
    /// Deny with 503.
    #[default]
    Closed,
    /// Let the request through.
    Open,
}

/// A gateway environment: `staging` serves the latest deployed (sandbox) configs,
/// `production` the promoted ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Staging,
    #[default]
    Production,
}

impl Environment {
    /// Where the environment's proxy configs are fetched from.
    pub fn proxy_configs_path(self) -> &'static str {
        match self {
            Environment::Staging => "/admin/api/account/proxy_configs/staging.json",
            Environment::Production => "/admin/api/account/proxy_configs/production.json",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlPlane {
    /// Name of the Envoy cluster that reaches the control plane.
    pub cluster: String,
    /// Authority (`Host`) sent with calls to the control plane.
    #[serde(default = "default_authority")]
    pub authority: String,
    /// Timeout of one call, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_authority() -> String {
    "tollgate-control-plane".to_string()
}
fn default_timeout_ms() -> u64 {
    500
}
fn default_refresh_interval_ms() -> u64 {
    10_000
}
fn default_cache_ttl_ms() -> u64 {
    5_000
}
fn default_negative_cache_ttl_ms() -> u64 {
    1_000
}
fn default_report_interval_ms() -> u64 {
    1_000
}
fn default_batch_size() -> usize {
    500
}
fn default_max_batches() -> usize {
    10_000
}
fn default_cache_max_entries() -> u32 {
    32_768
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    pub control_plane: ControlPlane,
    /// Admin access token used to fetch the proxy configurations (not needed when the control
    /// plane pushes them in `proxy_configs`).
    #[serde(default)]
    pub access_token: String,
    /// Which environment's proxy configs this gateway serves.
    #[serde(default)]
    pub environment: Environment,
    /// The services themselves, as `/admin/api/account/proxy_configs/{environment}.json` lists
    /// them: the control plane's xDS server pushes them here with every deploy or promote.
    /// Given, the filter fetches nothing and serves exactly these.
    #[serde(default)]
    pub proxy_configs: Option<Vec<crate::service::ProxyConfigItem>>,
    /// How often the services' configuration is fetched again, in milliseconds.
    #[serde(default = "default_refresh_interval_ms")]
    pub refresh_interval_ms: u64,
    #[serde(default)]
    pub failure_mode: FailureMode,
    /// How long an authorization is served from the cache before the control plane is asked
    /// again (also: how long a suspension may take to reach this gateway).
    #[serde(default = "default_cache_ttl_ms")]
    pub cache_ttl_ms: u64,
    /// How many applications the shared cache holds at most (about 300 bytes each).
    #[serde(default = "default_cache_max_entries")]
    pub cache_max_entries: u32,
    /// How long an invalid key is remembered.
    #[serde(default = "default_negative_cache_ttl_ms")]
    pub negative_cache_ttl_ms: u64,
    /// How often usage is sent to the control plane.
    #[serde(default = "default_report_interval_ms")]
    pub report_interval_ms: u64,
    /// Transactions per report (the control plane takes at most 1000).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Reports kept while the control plane is away; past that the oldest are dropped (and
    /// counted in `tollgate.usage_dropped`).
    #[serde(default = "default_max_batches")]
    pub max_batches: usize,
    /// Report the upstream's response codes (`log[code]`). Off by default, as in APIcast
    /// (`APICAST_RESPONSE_CODES`): it costs a host call per request.
    #[serde(default)]
    pub report_response_codes: bool,
    /// Add `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` to responses whose
    /// request touched a limit.
    #[serde(default)]
    pub limit_headers: bool,
}

/// A configuration error, naming the field at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid configuration: field `{}`: {}", self.field, self.message)
    }
}

impl PluginConfig {
    pub fn parse(bytes: &[u8]) -> Result<Self, ConfigError> {
        let de = &mut serde_json::Deserializer::from_slice(bytes);
        let config: Self = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            ConfigError {
                field: if path == "." { "(document)".into() } else { path },
                message: e.inner().to_string(),
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &str, message: &str| {
            Err(ConfigError {
                field: field.into(),
                message: message.into(),
            })
        };
        if self.control_plane.cluster.trim().is_empty() {
            return bad("control_plane.cluster", "must not be empty");
        }
        if !(1..=60_000).contains(&self.control_plane.timeout_ms) {
            return bad("control_plane.timeout_ms", "must be between 1 and 60000");
        }
        if self.access_token.trim().is_empty() && self.proxy_configs.is_none() {
            return bad("access_token", "must not be empty unless proxy_configs are given");
        }
        if self.refresh_interval_ms < 100 {
            return bad("refresh_interval_ms", "must be at least 100");
        }
        if self.cache_ttl_ms > 3_600_000 {
            return bad("cache_ttl_ms", "must be at most 3600000 (an hour)");
        }
        if self.negative_cache_ttl_ms > 3_600_000 {
            return bad("negative_cache_ttl_ms", "must be at most 3600000 (an hour)");
        }
        if !(100..=3_600_000).contains(&self.report_interval_ms) {
            return bad("report_interval_ms", "must be between 100 and 3600000");
        }
        if !(8..=1_048_576).contains(&self.cache_max_entries) {
            return bad("cache_max_entries", "must be between 8 and 1048576");
        }
        if !(1..=1000).contains(&self.batch_size) {
            return bad("batch_size", "must be between 1 and 1000");
        }
        if self.max_batches == 0 {
            return bad("max_batches", "must be at least 1");
        }
        Ok(())
    }

    pub fn ttl(&self) -> crate::cache::Ttl {
        crate::cache::Ttl {
            authorized_ms: self.cache_ttl_ms,
            negative_ms: self.negative_cache_ttl_ms,
        }
    }

    /// Bucket keys of the shared cache.
    pub fn cache_buckets(&self) -> u32 {
        (self.cache_max_entries / crate::cache::BUCKET_ENTRIES as u32).max(1)
    }

    pub fn report_limits(&self) -> crate::report::Limits {
        crate::report::Limits {
            batch_size: self.batch_size,
            max_batches: self.max_batches,
            backoff_base_ms: 500,
            backoff_max_ms: 5_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = PluginConfig::parse(br#"{"control_plane":{"cluster":"cp"},"access_token":"t"}"#).unwrap();
        assert_eq!(c.control_plane.timeout_ms, 500);
        assert_eq!(c.refresh_interval_ms, 10_000);
        assert_eq!(c.failure_mode, FailureMode::Closed);
        assert_eq!(
            (c.cache_ttl_ms, c.report_interval_ms, c.batch_size),
            (5_000, 1_000, 500)
        );
        assert!(!c.report_response_codes);
        assert_eq!(c.environment, Environment::Production);
    }

    #[test]
    fn pushed_proxy_configs_need_no_token() {
        let c = PluginConfig::parse(
            br#"{"control_plane":{"cluster":"cp"},"environment":"staging","proxy_configs":[
              {"proxy_config":{"version":2,"content":{"id":7,"proxy":{"hosts":["a.localhost"]}}}}]}"#,
        )
        .unwrap();
        assert_eq!(c.environment, Environment::Staging);
        assert_eq!(c.proxy_configs.map(|p| p.len()), Some(1));
        let err = PluginConfig::parse(br#"{"control_plane":{"cluster":"cp"},"environment":"qa","access_token":"t"}"#)
            .unwrap_err();
        assert_eq!(err.field, "environment");
    }

    #[test]
    fn errors_name_the_field() {
        let cases: &[(&[u8], &str)] = &[
            (br#"{"access_token":"t"}"#, "(document)"),
            (
                br#"{"control_plane":{"cluster":"cp","timeout_ms":"x"},"access_token":"t"}"#,
                "control_plane.timeout_ms",
            ),
            (
                br#"{"control_plane":{"cluster":"cp","timeout_ms":0},"access_token":"t"}"#,
                "control_plane.timeout_ms",
            ),
            (
                br#"{"control_plane":{"cluster":""},"access_token":"t"}"#,
                "control_plane.cluster",
            ),
            (
                br#"{"control_plane":{"cluster":"cp"},"access_token":""}"#,
                "access_token",
            ),
            (
                br#"{"control_plane":{"cluster":"cp"},"access_token":"t","failure_mode":"maybe"}"#,
                "failure_mode",
            ),
            (
                br#"{"control_plane":{"cluster":"cp"},"access_token":"t","colour":1}"#,
                "colour",
            ),
            (
                br#"{"control_plane":{"cluster":"cp"},"access_token":"t","batch_size":5000}"#,
                "batch_size",
            ),
            (
                br#"{"control_plane":{"cluster":"cp"},"access_token":"t","report_interval_ms":10}"#,
                "report_interval_ms",
            ),
        ];
        for (doc, field) in cases {
            let err = PluginConfig::parse(doc).unwrap_err();
            assert_eq!(&err.field, field, "{}", String::from_utf8_lossy(doc));
            assert!(err.to_string().contains(field));
        }
    }

    proptest! {
        #[test]
        fn no_input_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = PluginConfig::parse(&bytes);
        }
    }
}
