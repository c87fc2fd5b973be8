//! A request's way through the cache and the control plane, as steps for the worker: a cache
//! verdict becomes serve / reply / fetch ([`on_verdict`]); an authrep answer (or its absence)
//! becomes serve / reply plus the entry to cache ([`after_authrep`]).

use crate::cache::{self, Denial, Entry, Ttl, Verdict};
use crate::config::FailureMode;
use crate::credentials::Credentials;
use crate::mapping::Usage;
use crate::service::{ErrorResponse, Service};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use std::collections::BTreeMap;

/// Everything but RFC 3986's unreserved characters is encoded.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

fn enc(s: &str) -> String {
    utf8_percent_encode(s, QUERY_VALUE).to_string()
}

/// Path and query of the call for one request: authrep (`counted`: the control plane counts the
/// request if it authorizes it), or authorize (nothing counted; see [`cache::from_authrep`]).
pub fn authrep_path(service: &Service, credentials: &Credentials, usage: &Usage, counted: bool) -> String {
    let mut q = format!(
        "/transactions/{}.json?service_token={}&service_id={}",
        if counted { "authrep" } else { "authorize" },
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

/// The answer when the control plane cannot be asked or does not answer.
pub fn unavailable(failure_mode: FailureMode) -> Outcome {
    match failure_mode {
        FailureMode::Open => Outcome::Allow,
        FailureMode::Closed => Outcome::Deny(ErrorResponse {
            status: 503,
            content_type: "text/plain; charset=us-ascii".into(),
            body: "Service Unavailable: the authorization service did not answer".into(),
            headers: Vec::new(),
        }),
    }
}

/// The response for a cached or fresh denial, with the service's own texts: 403 for keys,
/// suspended applications and disabled metrics, 429 with `Retry-After` for limits, 402 with
/// the purchase link for exhausted credits.
pub fn denial_response(service: &Service, denial: &Denial, retry_after_secs: Option<u64>) -> ErrorResponse {
    match denial {
        Denial::KeyInvalid | Denial::Suspended | Denial::Disabled => service.proxy.auth_failed(),
        Denial::LimitsExceeded => {
            let mut r = service.proxy.limits_exceeded();
            if let Some(secs) = retry_after_secs {
                r.headers.push(("retry-after".into(), secs.to_string()));
            }
            r
        }
        Denial::CreditsExhausted { purchase_url } => {
            let mut r = ErrorResponse {
                status: 402,
                content_type: "text/plain; charset=us-ascii".into(),
                body: "Payment Required: the credit balance is exhausted".into(),
                headers: Vec::new(),
            };
            if let Some(url) = purchase_url {
                r.body.push_str(&format!("; buy more at {url}"));
                r.headers.push(("link".into(), format!("<{url}>; rel=\"payment\"")));
            }
            r
        }
    }
}

/// Whether a request let through still has to be reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Count {
    /// No: authrep counted it (or it is not an application's request).
    No,
    Yes,
    /// Yes, but nobody vouched for its credentials (let through by failure mode `open`): its
    /// usage goes in a report of its own, so that a rejection cannot take others' with it.
    Unverified,
}

/// What the worker does with a request. (Serializable: a worker that asked the control plane tells
/// the workers that waited for it what it did, see [`crate::inflight`].)
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Step {
    /// Let it through.
    Serve { count: Count },
    /// Answer it here.
    Reply(ErrorResponse),
    /// Ask the control plane (one authrep call), then [`after_authrep`].
    Fetch,
}

/// The step for a request the cache lets through.
pub fn allowed() -> Step {
    Step::Serve { count: Count::Yes }
}

/// The step for a cache verdict; `Some(entry)` is to be stored (CAS) before serving.
pub fn on_verdict(service: &Service, verdict: Verdict) -> (Step, Option<Entry>) {
    match verdict {
        Verdict::Allow(next) => (allowed(), Some(next)),
        Verdict::Deny {
            denial,
            retry_after_secs,
        } => (Step::Reply(denial_response(service, &denial, retry_after_secs)), None),
        Verdict::Ask(_) => (Step::Fetch, None),
    }
}

/// A request's call to the control plane: what to send, and what is needed to read the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    pub usage: Usage,
    /// Usage of the application served here and not yet reported, when the call was made.
    pub pending: BTreeMap<String, u64>,
    /// authrep (counts the request) rather than authorize: only when nothing is pending, so
    /// that the control plane's check sees all the usage there is.
    pub counted: bool,
    /// The expired entry, if any: it serves while the control plane is away.
    pub stale: Option<Entry>,
}

/// Whether a call's answer is Envoy's own, for a call that never reached a control plane:
/// the connection to the replica Envoy picked could not be made (a replica that is gone, before
/// health checks or outlier detection take it out), or no replica is healthy. Such a call
/// counted nothing, so asking another replica cannot count twice. (A call cut off after it was
/// sent — `connection termination` — may have been counted: it is not one of these.)
pub fn never_reached(status: Option<u32>, body: &[u8]) -> bool {
    const ENVOY_SAYS: [&[u8]; 2] = [b"connection failure", b"no healthy upstream"];
    status == Some(503) && ENVOY_SAYS.iter().any(|s| body.windows(s.len()).any(|w| w == *s))
}

/// What one request's call decided. `status` is `None` when the call failed or timed out;
/// with nothing cached at all the failure mode decides. Returns the step and the entry to
/// store.
pub fn after_authrep(
    service: &Service,
    failure_mode: FailureMode,
    fetch: &Fetch,
    status: Option<u32>,
    body: &[u8],
    ttl: Ttl,
    now_ms: u64,
) -> (Step, Option<Entry>) {
    let (usage, stale) = (&fetch.usage, fetch.stale.as_ref());
    let answer = status.and_then(|s| cache::from_authrep(s, body, usage, &fetch.pending, fetch.counted, ttl, now_ms));
    if let Some(entry) = answer {
        let step = match &entry.denial {
            // authrep counted this request already; authorize did not.
            None => Step::Serve {
                count: if fetch.counted { Count::No } else { Count::Yes },
            },
            Some(Denial::LimitsExceeded) if entry.quotas.iter().any(|q| q.disables()) => {
                Step::Reply(denial_response(service, &Denial::Disabled, None))
            }
            Some(denial) => {
                let retry = entry
                    .quotas
                    .iter()
                    .filter(|q| q.confirmed)
                    .filter_map(|q| q.ends_at_ms)
                    .min()
                    .map(|end| end.saturating_sub(now_ms).div_ceil(1000));
                Step::Reply(denial_response(service, denial, retry))
            }
        };
        return (step, Some(entry));
    }
    // No usable answer: the last known entry, kept alive until the control plane is back.
    if let Some(stale) = stale {
        let mut alive = stale.clone();
        alive.expires_at_ms = alive.expires_at_ms.max(now_ms.saturating_add(1));
        match cache::consult(Some(&alive), usage, now_ms) {
            Verdict::Ask(_) => {}
            verdict => {
                let (step, next) = on_verdict(service, verdict);
                // Stored with its old expiry: the next request asks the control plane again.
                return (
                    step,
                    next.map(|mut e| {
                        e.expires_at_ms = stale.expires_at_ms;
                        e
                    }),
                );
            }
        }
    }
    match unavailable(failure_mode) {
        Outcome::Allow => (
            Step::Serve {
                count: Count::Unverified,
            },
            None,
        ),
        Outcome::Deny(r) => (Step::Reply(r), None),
    }
}

/// The step for a request that waited for another request's call on the same application:
/// the fresh entry decides. Its quota used up means the control plane, a moment ago, had no
/// room left for it either: 429. Its share of a prepaid balance used up says nothing of the
/// balance (other gateways hold shares of it): [`Step::Fetch`], it asks on its own. Anything
/// else the entry cannot say goes as the fetcher went.
pub fn after_waiting(service: &Service, verdict: Verdict, fetcher: &Step) -> (Step, Option<Entry>) {
    match verdict {
        Verdict::Ask(crate::cache::Miss::QuotaUsedUp) => (Step::Reply(service.proxy.limits_exceeded()), None),
        Verdict::Ask(crate::cache::Miss::ShareUsedUp) => (Step::Fetch, None),
        Verdict::Ask(_) => match fetcher {
            Step::Serve {
                count: Count::Unverified,
            } => (
                Step::Serve {
                    count: Count::Unverified,
                },
                None,
            ),
            Step::Serve { .. } => (Step::Serve { count: Count::Yes }, None),
            other => (other.clone(), None),
        },
        verdict => on_verdict(service, verdict),
    }
}

/// The shared-data key of an application's cached authorization. Built on every request:
/// joined from its parts in one allocation, without the formatting machinery.
pub fn cache_key(service_id: u64, credentials: &Credentials) -> String {
    let mut id = itoa::Buffer::new();
    let id = id.format(service_id);
    match credentials {
        Credentials::UserKey(k) => ["tollgate:auth:", id, ":u:", k].concat(),
        // The id's length keeps ("ab", "c") apart from ("a", "bc").
        Credentials::AppId { app_id, app_key } => {
            let mut len = itoa::Buffer::new();
            let len = len.format(app_id.len());
            [
                "tollgate:auth:",
                id,
                ":a:",
                len,
                ":",
                app_id,
                app_key.as_deref().unwrap_or(""),
            ]
            .concat()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_envoys_own_refusals_count_as_never_reached() {
        let refused = b"upstream connect error or disconnect/reset before headers. reset reason: remote connection failure, transport failure reason: delayed connect error: Connection refused";
        assert!(never_reached(Some(503), refused));
        assert!(never_reached(Some(503), b"no healthy upstream"));
        let cut = b"upstream connect error or disconnect/reset before headers. reset reason: connection termination";
        assert!(!never_reached(Some(503), cut), "may have been counted");
        assert!(!never_reached(
            Some(503),
            br#"{"error":{"code":"backend_unavailable"}}"#
        ));
        assert!(!never_reached(None, b""));
        assert!(!never_reached(Some(200), b"no healthy upstream"));
    }
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
            true,
        );
        assert_eq!(
            p,
            "/transactions/authrep.json?service_token=s%20t&service_id=9&user_key=a%26b&usage%5Bhits%5D=1&usage%5Bm%5D=3"
        );
    }

    const TTL: Ttl = Ttl {
        authorized_ms: 5_000,
        negative_ms: 1_000,
    };

    fn flow(status: Option<u32>, body: &[u8], stale: Option<&Entry>, mode: FailureMode) -> (Step, Option<Entry>) {
        let fetch = Fetch {
            usage: vec![("hits".to_string(), 1)],
            pending: BTreeMap::new(),
            counted: true,
            stale: stale.cloned(),
        };
        after_authrep(&service(), mode, &fetch, status, body, TTL, 1_000)
    }

    fn reply_status(step: &Step) -> u32 {
        match step {
            Step::Reply(r) => r.status,
            Step::Serve { .. } => 200,
            Step::Fetch => 0,
        }
    }

    #[test]
    fn answers_become_steps() {
        let ok = br#"{"authorized":true,"usage_reports":[{"metric":"hits","period":"day","ends_at":86400,"max_value":5,"current_value":1}]}"#;
        let (step, entry) = flow(Some(200), ok, None, FailureMode::Closed);
        assert_eq!(step, Step::Serve { count: Count::No }, "authrep counted it");
        let entry = entry.unwrap();
        assert_eq!(entry.quotas[0].remaining, 4);
        assert_eq!(reply_status(&flow(Some(403), b"{}", None, FailureMode::Closed).0), 403);
        assert_eq!(reply_status(&flow(Some(404), b"{}", None, FailureMode::Closed).0), 403);
        let limited = br#"{"authorized":false,"rejection_reason":"limits_exceeded","usage_reports":[{"metric":"hits","period":"day","ends_at":86400,"max_value":5,"current_value":5}]}"#;
        let (step, _) = flow(Some(409), limited, None, FailureMode::Closed);
        let Step::Reply(r) = step else { panic!() };
        assert_eq!(
            (r.status, r.headers.clone()),
            (429, vec![("retry-after".into(), "86399".into())])
        );
        // A limit of 0 disables the metric: a failed authorization, not a wait (APIcast's), and
        // so is the cached entry's next verdict.
        let disabled = br#"{"authorized":false,"rejection_reason":"limits_exceeded","usage_reports":[{"metric":"hits","period":"month","ends_at":86400,"max_value":0,"current_value":0}]}"#;
        let (step, cached) = flow(Some(409), disabled, None, FailureMode::Closed);
        let Step::Reply(r) = step else { panic!() };
        assert_eq!((r.status, r.headers.is_empty()), (403, true), "{r:?}");
        let usage = vec![("hits".to_string(), 1)];
        assert_eq!(
            crate::cache::consult(cached.as_ref(), &usage, 1),
            crate::cache::Verdict::Deny {
                denial: Denial::Disabled,
                retry_after_secs: None
            }
        );
        let broke = br#"{"authorized":false,"rejection_reason":"credits_exhausted","purchase_url":"https://b"}"#;
        let Step::Reply(r) = flow(Some(409), broke, None, FailureMode::Closed).0 else {
            panic!()
        };
        assert_eq!(r.status, 402);
        assert!(r.body.contains("https://b") && r.headers[0].0 == "link");
        // The control plane away: the failure mode decides when nothing is cached...
        assert_eq!(reply_status(&flow(None, b"", None, FailureMode::Closed).0), 503);
        assert_eq!(
            flow(Some(500), b"", None, FailureMode::Open).0,
            Step::Serve {
                count: Count::Unverified
            }
        );
        // ...and the last entry serves when there is one, spending its quota.
        let stale = Entry {
            expires_at_ms: 500,
            ..entry
        };
        let (step, next) = flow(None, b"", Some(&stale), FailureMode::Closed);
        assert_eq!(step, Step::Serve { count: Count::Yes });
        let next = next.unwrap();
        assert_eq!((next.quotas[0].remaining, next.expires_at_ms), (3, 500));
    }

    #[test]
    fn cache_keys_keep_credentials_apart() {
        let a = cache_key(
            1,
            &Credentials::AppId {
                app_id: "ab".into(),
                app_key: Some("c".into()),
            },
        );
        let b = cache_key(
            1,
            &Credentials::AppId {
                app_id: "a".into(),
                app_key: Some("bc".into()),
            },
        );
        assert_ne!(a, b);
        assert_ne!(
            cache_key(1, &Credentials::UserKey("k".into())),
            cache_key(2, &Credentials::UserKey("k".into()))
        );
    }
}
