//! Services as gateways see them: the `content` of the control plane's proxy configs
//! (`/admin/api/account/proxy_configs/production.json`), in 3scale's shape, parsed leniently —
//! fields the filter does not use are ignored, missing ones take 3scale's defaults.

use crate::mapping::MappingRule;
use serde::Deserialize;

/// Where the application's credentials travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CredentialsLocation {
    #[default]
    Query,
    Headers,
    Authorization,
}

/// A canned response for one kind of denial.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct ErrorResponse {
    pub status: u32,
    pub content_type: String,
    pub body: String,
    /// More headers (`Retry-After`, `Link`).
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct Proxy {
    pub hosts: Vec<String>,
    pub credentials_location: CredentialsLocation,
    pub auth_user_key: String,
    pub auth_app_id: String,
    pub auth_app_key: String,
    pub error_auth_failed: String,
    pub error_status_auth_failed: u32,
    pub error_headers_auth_failed: String,
    pub error_auth_missing: String,
    pub error_status_auth_missing: u32,
    pub error_headers_auth_missing: String,
    pub error_no_match: String,
    pub error_status_no_match: u32,
    pub error_headers_no_match: String,
    pub error_limits_exceeded: String,
    pub error_status_limits_exceeded: u32,
    pub error_headers_limits_exceeded: String,
    pub proxy_rules: Vec<MappingRule>,
}

const TEXT: &str = "text/plain; charset=us-ascii";

impl Default for Proxy {
    fn default() -> Self {
        Self {
            hosts: Vec::new(),
            credentials_location: CredentialsLocation::Query,
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
            proxy_rules: Vec::new(),
        }
    }
}

impl Proxy {
    fn response(status: u32, content_type: &str, body: &str) -> ErrorResponse {
        ErrorResponse {
            status,
            content_type: content_type.into(),
            body: body.into(),
            headers: Vec::new(),
        }
    }
    pub fn auth_failed(&self) -> ErrorResponse {
        Self::response(
            self.error_status_auth_failed,
            &self.error_headers_auth_failed,
            &self.error_auth_failed,
        )
    }
    pub fn auth_missing(&self) -> ErrorResponse {
        Self::response(
            self.error_status_auth_missing,
            &self.error_headers_auth_missing,
            &self.error_auth_missing,
        )
    }
    pub fn no_match(&self) -> ErrorResponse {
        Self::response(
            self.error_status_no_match,
            &self.error_headers_no_match,
            &self.error_no_match,
        )
    }
    pub fn limits_exceeded(&self) -> ErrorResponse {
        Self::response(
            self.error_status_limits_exceeded,
            &self.error_headers_limits_exceeded,
            &self.error_limits_exceeded,
        )
    }
}

/// How applications authenticate: 3scale's `backend_version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// `backend_version` "1": one API key.
    UserKey,
    /// `backend_version` "2": application id and key.
    AppIdKey,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Service {
    pub id: u64,
    #[serde(default = "default_backend_version")]
    pub backend_version: String,
    #[serde(default)]
    pub backend_authentication_value: String,
    #[serde(default)]
    pub proxy: Proxy,
}

fn default_backend_version() -> String {
    "1".into()
}

impl Service {
    pub fn auth_mode(&self) -> AuthMode {
        if self.backend_version == "2" {
            AuthMode::AppIdKey
        } else {
            AuthMode::UserKey
        }
    }

    pub fn service_token(&self) -> &str {
        &self.backend_authentication_value
    }

    /// Whether this service answers for `authority` (the request's host, with or without port).
    pub fn serves_host(&self, authority: &str) -> bool {
        let host = strip_port(authority);
        self.proxy
            .hosts
            .iter()
            .any(|h| strip_port(h).eq_ignore_ascii_case(host))
    }
}

fn strip_port(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

/// Every service a gateway knows, as one proxy-configs document describes them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Services {
    pub version: u64,
    pub services: Vec<Service>,
    /// Only a service's own hosts select it. Set for the services a gateway's control plane
    /// pushes: that gateway routes nothing but the products' hosts, and a request for another
    /// host (a product not deployed there yet) is nobody's. A static configuration in front
    /// of the user's own routes lets its only service take any host.
    pub exact_hosts: bool,
}

#[derive(Deserialize)]
struct ProxyConfigsDoc {
    proxy_configs: Vec<ProxyConfigItem>,
}
/// One entry of a proxy-configs list.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ProxyConfigItem {
    proxy_config: ProxyConfig,
}
#[derive(Debug, Clone, PartialEq, Deserialize)]
struct ProxyConfig {
    #[serde(default)]
    version: u64,
    content: Service,
}

impl Services {
    /// Parses `/admin/api/account/proxy_configs/{env}.json`.
    pub fn parse_proxy_configs(bytes: &[u8]) -> Result<Self, String> {
        let de = &mut serde_json::Deserializer::from_slice(bytes);
        let doc: ProxyConfigsDoc =
            serde_path_to_error::deserialize(de).map_err(|e| format!("field `{}`: {}", e.path(), e.inner()))?;
        Ok(Self::from_items(doc.proxy_configs))
    }

    /// The services of a proxy-configs list.
    pub fn from_items(items: Vec<ProxyConfigItem>) -> Self {
        let version = items.iter().map(|p| p.proxy_config.version).sum();
        let services = items.into_iter().map(|p| p.proxy_config.content).collect();
        Self {
            version,
            services,
            exact_hosts: false,
        }
    }

    /// [`Services::from_items`], pushed by the control plane with a gateway's routes.
    pub fn pushed(items: Vec<ProxyConfigItem>) -> Self {
        Self {
            exact_hosts: true,
            ..Self::from_items(items)
        }
    }

    /// The service for a request's authority: the one listing the host, else the only one
    /// (unless hosts are [exact](Services::exact_hosts)).
    pub fn for_authority(&self, authority: &str) -> Option<&Service> {
        self.services
            .iter()
            .find(|s| s.serves_host(authority))
            .or(match self.services.as_slice() {
                [only] if !self.exact_hosts => Some(only),
                _ => None,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"{"proxy_configs":[{"proxy_config":{"id":1,"version":3,"environment":"production",
      "content":{"id":7,"backend_version":"1","backend_authentication_type":"service_token",
        "backend_authentication_value":"st","proxy":{"hosts":["api.example.com"],
        "proxy_rules":[{"http_method":"GET","pattern":"/","metric_system_name":"hits","delta":1}]}}}}]}"#;

    #[test]
    fn parses_proxy_configs_with_3scale_defaults() {
        let s = Services::parse_proxy_configs(DOC.as_bytes()).unwrap();
        assert_eq!(s.version, 3);
        let svc = &s.services[0];
        assert_eq!(svc.id, 7);
        assert_eq!(svc.service_token(), "st");
        assert_eq!(svc.auth_mode(), AuthMode::UserKey);
        assert_eq!(svc.proxy.auth_user_key, "user_key");
        assert_eq!(svc.proxy.auth_failed().status, 403);
        assert_eq!(svc.proxy.auth_missing().status, 401);
        assert_eq!(svc.proxy.proxy_rules.len(), 1);
    }

    #[test]
    fn picks_service_by_host_or_the_only_one() {
        let s = Services::parse_proxy_configs(DOC.as_bytes()).unwrap();
        assert_eq!(s.for_authority("api.example.com:8080").map(|s| s.id), Some(7));
        assert_eq!(s.for_authority("other").map(|s| s.id), Some(7));
        let pushed = Services {
            exact_hosts: true,
            ..s.clone()
        };
        assert_eq!(pushed.for_authority("api.example.com").map(|s| s.id), Some(7));
        assert_eq!(pushed.for_authority("other"), None, "a product not deployed here");
        let mut two = s.clone();
        two.services.push(Service {
            id: 8,
            ..s.services[0].clone()
        });
        two.services[1].proxy.hosts = vec!["b.example.com".into()];
        assert_eq!(two.for_authority("b.example.com").map(|s| s.id), Some(8));
        assert_eq!(two.for_authority("nobody.example.com"), None);
    }

    #[test]
    fn host_matching_handles_ports_and_ipv6() {
        assert_eq!(strip_port("a.b:80"), "a.b");
        assert_eq!(strip_port("a.b"), "a.b");
        assert_eq!(strip_port("[::1]:80"), "::1");
        assert_eq!(strip_port("[::1]"), "::1");
    }

    #[test]
    fn bad_documents_are_errors_not_panics() {
        assert!(Services::parse_proxy_configs(b"{}").is_err());
        assert!(Services::parse_proxy_configs(b"not json").is_err());
    }
}
