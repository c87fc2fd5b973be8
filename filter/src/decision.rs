//! The per-request decision, before any call: deny now, or ask the control plane.

use crate::authrep::{self, unavailable, Outcome};
use crate::config::FailureMode;
use crate::credentials;
use crate::mapping;
use crate::request::RequestHead;
use crate::service::{ErrorResponse, Services};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Answer now, without a call.
    Now(Outcome),
    /// Pause the request and call authrep at this path; `service_id` says whose answer it is.
    Authrep { service_id: u64, path: String },
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
        }));
    };
    let Some(usage) = mapping::usage_for(&service.proxy.proxy_rules, &req.method, &req.path) else {
        return Decision::Now(Outcome::Deny(service.proxy.no_match()));
    };
    let Some(creds) = credentials::extract(service, req) else {
        return Decision::Now(Outcome::Deny(service.proxy.auth_missing()));
    };
    Decision::Authrep {
        service_id: service.id,
        path: authrep::authrep_path(service, &creds, &usage),
    }
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
        RequestHead {
            method: method.into(),
            path: path.into(),
            authority: "x".into(),
            headers: vec![],
        }
    }

    fn status(d: Decision) -> u32 {
        match d {
            Decision::Now(Outcome::Deny(r)) => r.status,
            Decision::Now(Outcome::Allow) => 200,
            Decision::Authrep { .. } => 0,
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
        assert_eq!(
            d,
            Decision::Authrep {
                service_id: 3,
                path: "/transactions/authrep.json?service_token=st&service_id=3&user_key=k&usage%5Bhits%5D=1".into()
            }
        );
    }
}
