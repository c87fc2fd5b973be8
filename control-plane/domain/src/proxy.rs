//! A service's gateway settings (3scale's "proxy"), stored as one document per service:
//! where the API is, where the gateways serve it, how they read credentials, and what they
//! answer when they refuse a request.

use crate::form::Form;
use crate::gateway::{Endpoint, GatewayDefaults};
use crate::Invalid;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
    pub other: BTreeMap<String, String>,
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

/// The settings with fields of their own (the others go to [`ProxySettings::other`]).
const KNOWN: &[&str] = &[
    "api_backend",
    "endpoint",
    "sandbox_endpoint",
    "credentials_location",
    "auth_user_key",
    "auth_app_id",
    "auth_app_key",
    "error_auth_failed",
    "error_status_auth_failed",
    "error_headers_auth_failed",
    "error_auth_missing",
    "error_status_auth_missing",
    "error_headers_auth_missing",
    "error_no_match",
    "error_status_no_match",
    "error_headers_no_match",
    "error_limits_exceeded",
    "error_status_limits_exceeded",
    "error_headers_limits_exceeded",
];

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
            other: BTreeMap::new(),
        }
    }
}

impl ProxySettings {
    /// Applies the parameters of `PATCH /proxy.json`; a bad value is invalid, named.
    pub fn update_from(&mut self, p: &Form) -> Result<(), Invalid> {
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
        for (target, name) in [
            (&mut self.api_backend, "api_backend"),
            (&mut self.endpoint, "endpoint"),
            (&mut self.sandbox_endpoint, "sandbox_endpoint"),
        ] {
            if let Some(url) = p.get(name).filter(|v| !v.is_empty()) {
                Endpoint::parse(url).map_err(|e| Invalid::field(name, e))?;
            }
            opt(target, name);
        }
        if let Some(v) = p.get("credentials_location") {
            if !matches!(v, "query" | "headers" | "authorization") {
                return Err(Invalid::field(
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
                    return Err(Invalid::field(name, "must be an HTTP status (100-599)"));
                }
                *target = status;
            }
        }
        for (name, value) in &p.0 {
            let plain = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if plain && !NOT_SETTINGS.contains(&name.as_str()) && !KNOWN.contains(&name.as_str()) {
                self.other.insert(name.clone(), value.clone());
            }
        }
        Ok(())
    }

    /// Hosts a gateway serves the service under: the endpoints' host parts.
    pub fn hosts(&self) -> Vec<String> {
        [&self.endpoint, &self.sandbox_endpoint]
            .into_iter()
            .flatten()
            .filter_map(|url| Endpoint::parse(url).ok().map(|e| e.host))
            .collect()
    }

    /// The settings with the public endpoints a gateway serves the service under when none
    /// are set (3scale gives every new product a staging and a production URL).
    pub fn with_default_endpoints(mut self, system_name: &str, defaults: &GatewayDefaults) -> Self {
        self.endpoint.get_or_insert_with(|| defaults.endpoint(system_name));
        self.sandbox_endpoint
            .get_or_insert_with(|| defaults.sandbox_endpoint(system_name));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_update_validates_fields() {
        let mut s = ProxySettings::default();
        let p = Form::of(&[
            ("credentials_location", "headers"),
            ("error_status_auth_failed", "418"),
            ("endpoint", "https://api.example.com:443/x"),
            ("support_email", "a@b.c"),
            ("access_token", "never stored"),
        ]);
        s.update_from(&p).unwrap();
        assert_eq!(s.credentials_location, "headers");
        assert_eq!(s.error_status_auth_failed, 418);
        assert_eq!(s.hosts(), vec!["api.example.com".to_string()]);
        assert_eq!(s.other.keys().collect::<Vec<_>>(), vec!["support_email"]);
        let bad = Form::of(&[("credentials_location", "cookie")]);
        assert!(matches!(s.update_from(&bad), Err(Invalid(f)) if f[0].field == "credentials_location"));
        let bad = Form::of(&[("api_backend", "ftp://files.example.com")]);
        assert!(matches!(s.update_from(&bad), Err(Invalid(f)) if f[0].field == "api_backend"));
        let bad = Form::of(&[("sandbox_endpoint", "http://x:70000")]);
        assert!(matches!(s.update_from(&bad), Err(Invalid(f)) if f[0].field == "sandbox_endpoint"));
        let bad = Form::of(&[("error_status_no_match", "99")]);
        assert!(matches!(s.update_from(&bad), Err(Invalid(f)) if f[0].field == "error_status_no_match"));
    }

    #[test]
    fn every_own_field_is_known() {
        let fields = ["api_backend", "error_headers_limits_exceeded", "auth_app_key"];
        assert!(fields.iter().all(|f| KNOWN.contains(f)));
        assert_eq!(KNOWN.len(), 19, "one per field of ProxySettings but `other`");
    }
}
