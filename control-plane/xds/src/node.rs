//! Who is asking: an Envoy's node, as `scripts/envoy.sh` renders it in the bootstrap.
//!
//! ```yaml
//! node:
//!   id: gw-1
//!   cluster: tollgate-staging
//!   metadata:
//!     tollgate:
//!       environment: staging            # or production
//!       wasm: /path/to/tollgate_filter.wasm
//!       ca_file: /etc/ssl/certs/ca-certificates.crt   # optional: verify https backends
//!       filter: '{"control_plane": {...}, "cache_ttl_ms": 5000, ...}'   # the filter's own settings
//! ```
//!
//! The gateway's own settings (its control-plane cluster, timeouts, cache TTL, failure mode)
//! stay with the gateway; the control plane adds the services.

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::{value, Struct};
use serde_json::Value;
use tollgate_domain::catalog::Environment;

#[derive(Debug, Clone, PartialEq)]
pub struct GatewayNode {
    pub id: String,
    pub cluster: String,
    pub environment: Environment,
    pub wasm: String,
    pub ca_file: Option<String>,
    /// The filter's settings (a JSON object), without services.
    pub filter: Value,
}

impl GatewayNode {
    /// Reads the node of a gateway's first request; the message names what is missing.
    pub fn parse(node: Option<&Node>) -> Result<GatewayNode, String> {
        let node = node.ok_or("the first request carries no node")?;
        let meta = node
            .metadata
            .as_ref()
            .and_then(|m| m.fields.get("tollgate"))
            .and_then(|v| match &v.kind {
                Some(value::Kind::StructValue(s)) => Some(s),
                _ => None,
            })
            .ok_or("node metadata has no `tollgate` object (see scripts/envoy.sh)")?;
        let environment = text(meta, "environment")
            .ok_or("node metadata `tollgate.environment` is missing")
            .and_then(|e| {
                Environment::from_segment(&e)
                    .ok_or("node metadata `tollgate.environment` must be staging or production")
            })?;
        let wasm = text(meta, "wasm").ok_or("node metadata `tollgate.wasm` (the filter's path) is missing")?;
        let filter = match text(meta, "filter") {
            None => Value::Object(Default::default()),
            Some(json) => match serde_json::from_str::<Value>(&json) {
                Ok(v @ Value::Object(_)) => v,
                Ok(_) => return Err("node metadata `tollgate.filter` must be a JSON object".into()),
                Err(e) => return Err(format!("node metadata `tollgate.filter` is not JSON: {e}")),
            },
        };
        Ok(GatewayNode {
            id: node.id.clone(),
            cluster: node.cluster.clone(),
            environment,
            wasm,
            ca_file: text(meta, "ca_file").filter(|f| !f.is_empty()),
            filter,
        })
    }

    /// `staging` or `production`, as gateways and the API name them.
    pub fn environment_name(&self) -> &'static str {
        match self.environment {
            Environment::Sandbox => "staging",
            Environment::Production => "production",
        }
    }

    /// The filter's configuration: the gateway's settings, this environment, these services.
    pub fn filter_configuration(&self, proxy_configs: &Value) -> String {
        let mut config = self.filter.clone();
        if let Value::Object(map) = &mut config {
            map.insert("environment".into(), Value::from(self.environment_name()));
            map.insert("proxy_configs".into(), proxy_configs.clone());
        }
        config.to_string()
    }
}

fn text(s: &Struct, key: &str) -> Option<String> {
    match s.fields.get(key).and_then(|v| v.kind.as_ref()) {
        Some(value::Kind::StringValue(v)) => Some(v.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::google::protobuf::Value as PbValue;

    fn string(s: &str) -> PbValue {
        PbValue {
            kind: Some(value::Kind::StringValue(s.into())),
        }
    }

    fn node(fields: &[(&str, &str)]) -> Node {
        let inner = Struct {
            fields: fields.iter().map(|(k, v)| (k.to_string(), string(v))).collect(),
        };
        Node {
            id: "gw".into(),
            metadata: Some(Struct {
                fields: [(
                    "tollgate".to_string(),
                    PbValue {
                        kind: Some(value::Kind::StructValue(inner)),
                    },
                )]
                .into(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn reads_the_environment_and_the_filter_settings() {
        let n = GatewayNode::parse(Some(&node(&[
            ("environment", "staging"),
            ("wasm", "/f.wasm"),
            ("filter", r#"{"cache_ttl_ms": 0}"#),
        ])))
        .unwrap();
        assert_eq!(n.environment, Environment::Sandbox);
        let config: Value = serde_json::from_str(&n.filter_configuration(&serde_json::json!([]))).unwrap();
        assert_eq!(config["cache_ttl_ms"], 0);
        assert_eq!(config["environment"], "staging");
        assert_eq!(config["proxy_configs"], serde_json::json!([]));
    }

    #[test]
    fn says_what_is_missing() {
        assert!(GatewayNode::parse(None).is_err());
        let e = GatewayNode::parse(Some(&node(&[("wasm", "/f")]))).unwrap_err();
        assert!(e.contains("environment"), "{e}");
        let e = GatewayNode::parse(Some(&node(&[("environment", "qa"), ("wasm", "/f")]))).unwrap_err();
        assert!(e.contains("staging or production"), "{e}");
        let e = GatewayNode::parse(Some(&node(&[("environment", "production")]))).unwrap_err();
        assert!(e.contains("wasm"), "{e}");
        let e = GatewayNode::parse(Some(&node(&[
            ("environment", "production"),
            ("wasm", "/f"),
            ("filter", "[1]"),
        ])))
        .unwrap_err();
        assert!(e.contains("JSON object"), "{e}");
    }
}
