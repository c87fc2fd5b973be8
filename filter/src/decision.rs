//! The per-request decision, before any call: deny now, or ask the control plane.

use crate::authrep::{unavailable, Outcome};
use crate::config::FailureMode;
use crate::credentials::{self, Credentials};
use crate::mapping::{self, Usage};
use crate::request::RequestHead;
use crate::service::{ErrorResponse, Services};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Answer now, without a call.
    Now(Outcome),
    /// Authorize this application's use: from the cache, or by calling authrep at `path`.
    Authorize(Call),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub service_id: u64,
    pub credentials: Credentials,
    pub usage: Usage,
}

impl Call {
    /// The application this call's usage is counted for; `unverified`: let through without
    /// the control plane vouching for it.
    pub fn app(&self, unverified: bool) -> crate::report::App {
        crate::report::App {
            service_id: self.service_id,
            credentials: self.credentials.clone(),
            unverified,
        }
    }
}

pub fn decide(services: Option<&Services>, failure_mode: FailureMode, req: &RequestHead) -> Decision {
    let Some(services) = services else {
        // No configuration fetched yet: the same as the control plane being unreachable.
        return Decision::Now(unavailable(failure_mode));
    };
    let Some(service) = services.for_authority(&req.authority) else {
        return Decision::Now(Outcome::Deny(ErrorResponse {
            status: 404,
            content_type: "text/plain; charset=us-ascii".into(),
            body: "No service is configured for this host".into(),
            headers: Vec::new(),
        }));
    };
    let Some(usage) = mapping::usage_for(&service.proxy.proxy_rules, &req.method, &req.path) else {
        return Decision::Now(Outcome::Deny(service.proxy.no_match()));
    };
    let Some(creds) = credentials::extract(service, req) else {
        return Decision::Now(Outcome::Deny(service.proxy.auth_missing()));
    };
    Decision::Authorize(Call {
        service_id: service.id,
        credentials: creds,
        usage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn services() -> Services {
        Services::parse_proxy_configs(
            br#"{"proxy_configs":[{"proxy_config":{"version":1,"content":{"id":3,"backend_authentication_value":"st",
              "proxy":{"proxy_rules":[{"http_method":"GET","pattern":"/","metric_system_name":"hits","delta":1}]}}}}]}"#,
        )
        .unwrap()
    }

    fn req(method: &str, path: &str) -> RequestHead {
        RequestHead::new(method, path, "x", &[])
    }

    fn status(d: Decision) -> u32 {
        match d {
            Decision::Now(Outcome::Deny(r)) => r.status,
            Decision::Now(Outcome::Allow) => 200,
            Decision::Authorize(_) => 0,
        }
    }

    #[test]
    fn denies_what_needs_no_call() {
        let s = services();
        assert_eq!(status(decide(None, FailureMode::Closed, &req("GET", "/"))), 503);
        assert_eq!(status(decide(None, FailureMode::Open, &req("GET", "/"))), 200);
        assert_eq!(
            status(decide(Some(&s), FailureMode::Closed, &req("POST", "/?user_key=k"))),
            404
        );
        assert_eq!(status(decide(Some(&s), FailureMode::Closed, &req("GET", "/"))), 401);
    }

    #[test]
    fn asks_the_control_plane_with_usage() {
        let d = decide(Some(&services()), FailureMode::Closed, &req("GET", "/a?user_key=k"));
        let Decision::Authorize(call) = d else { panic!("{d:?}") };
        assert_eq!(call.service_id, 3);
        assert_eq!(call.credentials, Credentials::UserKey("k".into()));
        assert_eq!(call.usage, vec![("hits".to_string(), 1)]);
    }
}
