//! Webhook requests that cannot be turned against the network they run in: the URL's host
//! must resolve to public addresses only (checked by our own resolver, so the address checked
//! is the address connected to: no DNS rebinding), literal addresses are checked before the
//! request, redirects are not followed, and time and the body read are bounded. Private
//! destinations are allowed only when `TOLLGATE_WEBHOOK_ALLOW_PRIVATE=1` (local runs, tests).

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tollgate_domain::notify::is_public_address;
use tollgate_store::outbox::Attempt;

/// The most of a response body kept in the delivery log.
pub const EXCERPT: usize = 1024;
/// How long one attempt may take, connecting included.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Resolves names, then drops every address a webhook may not reach.
struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_string();
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = all.into_iter().filter(|a| is_public_address(a.ip())).collect();
            if public.is_empty() {
                return Err(format!("refused: {host} resolves only to private addresses").into());
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

#[derive(Clone)]
pub struct WebhookClient {
    client: reqwest::Client,
    allow_private: bool,
}

impl WebhookClient {
    pub fn new(allow_private: bool) -> Self {
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("Tollgate-Webhooks/", env!("CARGO_PKG_VERSION")));
        if !allow_private {
            b = b.dns_resolver(Arc::new(PublicOnly));
        }
        WebhookClient {
            client: b.build().unwrap_or_default(),
            allow_private,
        }
    }

    /// Why `url` may not be called, if it may not (a literal private address).
    pub fn refusal(&self, url: &str) -> Option<String> {
        if self.allow_private {
            return None;
        }
        let parsed = reqwest::Url::parse(url).ok()?;
        let ip: IpAddr = match parsed.host()? {
            url::Host::Ipv4(v4) => v4.into(),
            url::Host::Ipv6(v6) => v6.into(),
            url::Host::Domain(_) => return None,
        };
        (!is_public_address(ip)).then(|| format!("refused: {ip} is not a public address"))
    }

    /// POSTs `body` with `headers`; the attempt as the log records it.
    pub async fn post(&self, url: &str, content_type: &str, headers: &[(&str, String)], body: String) -> Attempt {
        let started = Instant::now();
        if let Some(why) = self.refusal(url) {
            return failed(started, why);
        }
        let mut req = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, content_type);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let mut response = match req.body(body).send().await {
            Ok(r) => r,
            Err(e) => return failed(started, error_text(&e)),
        };
        let status = response.status();
        let mut excerpt = Vec::new();
        while excerpt.len() < EXCERPT {
            match response.chunk().await {
                Ok(Some(chunk)) => excerpt.extend_from_slice(&chunk[..chunk.len().min(EXCERPT - excerpt.len())]),
                _ => break,
            }
        }
        Attempt {
            ok: status.is_success(),
            status: Some(status.as_u16()),
            latency_ms: elapsed_ms(started),
            excerpt: String::from_utf8_lossy(&excerpt).into_owned(),
            error: None,
        }
    }
}

fn elapsed_ms(started: Instant) -> i64 {
    i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX)
}

fn failed(started: Instant, error: String) -> Attempt {
    Attempt {
        ok: false,
        status: None,
        latency_ms: elapsed_ms(started),
        excerpt: String::new(),
        error: Some(error),
    }
}

/// The error with its causes (reqwest's own message alone says little: "error sending request").
fn error_text(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
