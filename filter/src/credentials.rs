//! Application credentials, found where the service's proxy settings say they travel.

use crate::request::RequestHead;
use crate::service::{AuthMode, CredentialsLocation, Service};
use base64::Engine;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Credentials {
    UserKey(String),
    AppId { app_id: String, app_key: Option<String> },
}

/// The request's credentials for `service`, or `None` when they are missing.
pub fn extract(service: &Service, req: &RequestHead) -> Option<Credentials> {
    let proxy = &service.proxy;
    let (first, second) = match proxy.credentials_location {
        CredentialsLocation::Query => match service.auth_mode() {
            AuthMode::UserKey => (req.query_param(&proxy.auth_user_key), None),
            AuthMode::AppIdKey => (
                req.query_param(&proxy.auth_app_id),
                req.query_param(&proxy.auth_app_key),
            ),
        },
        CredentialsLocation::Headers => {
            let h = |name: &str| req.header(name).map(str::to_string);
            match service.auth_mode() {
                AuthMode::UserKey => (h(&proxy.auth_user_key), None),
                AuthMode::AppIdKey => (h(&proxy.auth_app_id), h(&proxy.auth_app_key)),
            }
        }
        CredentialsLocation::Authorization => match basic_auth(req) {
            Some((user, pass)) => (Some(user), Some(pass)),
            None => (None, None),
        },
    };
    let non_empty = |v: Option<String>| v.filter(|s| !s.is_empty());
    let first = non_empty(first)?;
    Some(match service.auth_mode() {
        AuthMode::UserKey => Credentials::UserKey(first),
        AuthMode::AppIdKey => Credentials::AppId {
            app_id: first,
            app_key: non_empty(second),
        },
    })
}

fn basic_auth(req: &RequestHead) -> Option<(String, String)> {
    let value = req.header("authorization")?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, pass) = text.split_once(':').unwrap_or((&text, ""));
    Some((user.to_string(), pass.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::Proxy;

    fn service(version: &str, location: CredentialsLocation) -> Service {
        Service {
            id: 1,
            backend_version: version.into(),
            backend_authentication_value: "st".into(),
            proxy: Proxy {
                credentials_location: location,
                ..Proxy::default()
            },
        }
    }

    fn req(path: &str, headers: &[(&str, &str)]) -> RequestHead {
        RequestHead::new("GET", path, "h", headers)
    }

    #[test]
    fn user_key_from_query_or_header() {
        let q = service("1", CredentialsLocation::Query);
        assert_eq!(
            extract(&q, &req("/?user_key=k", &[])),
            Some(Credentials::UserKey("k".into()))
        );
        assert_eq!(extract(&q, &req("/?user_key=", &[])), None);
        assert_eq!(extract(&q, &req("/", &[("user_key", "k")])), None);
        let h = service("1", CredentialsLocation::Headers);
        assert_eq!(
            extract(&h, &req("/", &[("user_key", "k")])),
            Some(Credentials::UserKey("k".into()))
        );
    }

    #[test]
    fn app_id_and_key_from_query_and_basic_auth() {
        let q = service("2", CredentialsLocation::Query);
        assert_eq!(
            extract(&q, &req("/?app_id=i&app_key=k", &[])),
            Some(Credentials::AppId {
                app_id: "i".into(),
                app_key: Some("k".into())
            })
        );
        assert_eq!(extract(&q, &req("/?app_key=k", &[])), None);
        let b = service("2", CredentialsLocation::Authorization);
        // "i:k" in base64
        assert_eq!(
            extract(&b, &req("/", &[("authorization", "Basic aTpr")])),
            Some(Credentials::AppId {
                app_id: "i".into(),
                app_key: Some("k".into())
            })
        );
        assert_eq!(extract(&b, &req("/", &[("authorization", "Basic !!!")])), None);
        assert_eq!(extract(&b, &req("/", &[("authorization", "Bearer x")])), None);
    }
}
