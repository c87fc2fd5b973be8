//! The call to the control plane's service-management API (`/transactions/authrep.json`) and
//! what its answer means for the request.

use crate::config::FailureMode;
use crate::credentials::Credentials;
use crate::mapping::Usage;
use crate::service::{ErrorResponse, Service};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;

/// Everything but RFC 3986's unreserved characters is encoded.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

fn enc(s: &str) -> String {
    utf8_percent_encode(s, QUERY_VALUE).to_string()
}

/// Path and query of the authrep call for one request.
pub fn authrep_path(service: &Service, credentials: &Credentials, usage: &Usage) -> String {
    let mut q = format!(
        "/transactions/authrep.json?service_token={}&service_id={}",
        enc(service.service_token()),
        service.id
    );
    match credentials {
        Credentials::UserKey(k) => q.push_str(&format!("&user_key={}", enc(k))),
        Credentials::AppId { app_id, app_key } => {
            q.push_str(&format!("&app_id={}", enc(app_id)));
            if let Some(k) = app_key {
                q.push_str(&format!("&app_key={}", enc(k)));
            }
        }
    }
    for (metric, delta) in usage {
        q.push_str(&format!("&{}={}", enc(&format!("usage[{metric}]")), delta));
    }
    q
}

/// What to do with the paused request once the control plane answered (or did not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Allow,
    Deny(ErrorResponse),
}

#[derive(Deserialize)]
struct Denied {
    #[serde(default)]
    rejection_reason: String,
}

/// Interprets the authrep answer. `status` is `None` when the call failed or timed out.
pub fn outcome(service: &Service, failure_mode: FailureMode, status: Option<u32>, body: &[u8]) -> Outcome {
    match status {
        Some(200) => Outcome::Allow,
        Some(409) => {
            let reason = serde_json::from_slice::<Denied>(body)
                .map(|d| d.rejection_reason)
                .unwrap_or_default();
            match reason.as_str() {
                "limits_exceeded" => Outcome::Deny(service.proxy.limits_exceeded()),
                _ => Outcome::Deny(service.proxy.auth_failed()),
            }
        }
        // apisonator answers unknown or invalid keys with 403/404 and an error code.
        Some(403) | Some(404) => Outcome::Deny(service.proxy.auth_failed()),
        _ => unavailable(failure_mode),
    }
}

/// The answer when the control plane cannot be asked or does not answer.
pub fn unavailable(failure_mode: FailureMode) -> Outcome {
    match failure_mode {
        FailureMode::Open => Outcome::Allow,
        FailureMode::Closed => Outcome::Deny(ErrorResponse {
            status: 503,
            content_type: "text/plain; charset=us-ascii".into(),
            body: "Service Unavailable: the authorization service did not answer".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::Proxy;

    fn service() -> Service {
        Service {
            id: 9,
            backend_version: "1".into(),
            backend_authentication_value: "s t".into(),
            proxy: Proxy::default(),
        }
    }

    #[test]
    fn builds_an_encoded_authrep_path() {
        let p = authrep_path(
            &service(),
            &Credentials::UserKey("a&b".into()),
            &vec![("hits".into(), 1), ("m".into(), 3)],
        );
        assert_eq!(
            p,
            "/transactions/authrep.json?service_token=s%20t&service_id=9&user_key=a%26b&usage%5Bhits%5D=1&usage%5Bm%5D=3"
        );
    }

    #[test]
    fn maps_answers_to_outcomes() {
        let s = service();
        assert_eq!(outcome(&s, FailureMode::Closed, Some(200), b""), Outcome::Allow);
        let denied = |st, body: &[u8]| match outcome(&s, FailureMode::Closed, Some(st), body) {
            Outcome::Deny(r) => r.status,
            Outcome::Allow => 0,
        };
        assert_eq!(denied(403, b"{}"), 403);
        assert_eq!(denied(404, b"{}"), 403);
        assert_eq!(
            denied(409, br#"{"authorized":false,"rejection_reason":"limits_exceeded"}"#),
            429
        );
        assert_eq!(denied(409, b"garbage"), 403);
        assert_eq!(denied(500, b""), 503);
        assert_eq!(
            outcome(&s, FailureMode::Closed, None, b""),
            unavailable(FailureMode::Closed)
        );
        assert_eq!(outcome(&s, FailureMode::Open, None, b""), Outcome::Allow);
    }
}
