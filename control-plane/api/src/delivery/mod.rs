//! The sender: routes the outbox's events to deliveries, leases the due ones and attempts
//! them — webhooks over HTTP, e-mail over SMTP — then records each attempt (the store decides
//! retry or give-up from the [`RetryPolicy`]). Any number of control planes may run it on one
//! database; each delivery is leased to one at a time ([`tollgate_store::outbox`]).
//!
//! Guarantee: **at least once**, with the event's stable id in `webhook-id` (and the
//! e-mail's `Message-ID`) for receivers to dedupe; no per-endpoint ordering.

pub mod bodies;
pub mod http;
pub mod mail;

use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tollgate_domain::notify::RetryPolicy;
use tollgate_store::outbox::{self, Attempt, Claimed, Target};
use tollgate_store::webhooks::Kind;
use tollgate_store::Db;

/// Deliveries attempted at once by one control plane.
const CONCURRENCY: i64 = 16;

#[derive(Clone)]
pub struct Sender {
    pub db: Db,
    pub http: http::WebhookClient,
    pub mail: Option<mail::Mailer>,
    pub policy: RetryPolicy,
    /// How long a claimed delivery is ours: longer than an attempt can take.
    pub lease: Duration,
    /// How often the outbox is polled when idle.
    pub poll: Duration,
}

impl Sender {
    /// One round: route what is new, attempt what is due. How many deliveries were attempted.
    pub async fn round(&self) -> tollgate_store::Result<usize> {
        outbox::route(&self.db, self.mail.is_some()).await?;
        let lease_ms = i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX);
        let claimed = outbox::claim(&self.db, CONCURRENCY, lease_ms).await?;
        let n = claimed.len();
        let mut running = JoinSet::new();
        for c in claimed {
            let me = self.clone();
            running.spawn(async move { me.deliver(c).await });
        }
        while let Some(done) = running.join_next().await {
            if let Ok(Err(e)) = done {
                tracing::warn!(error = %e, "recording a delivery failed; it is attempted again when its lease ends");
            }
        }
        Ok(n)
    }

    async fn deliver(&self, c: Claimed) -> tollgate_store::Result<()> {
        let (attempt, body) = match &c.target {
            Target::Webhook(endpoint) => {
                let (body, content_type) = match endpoint.kind {
                    Kind::Threescale => match bodies::threescale_xml(&self.db, &c.event).await {
                        Some(xml) => (xml, "application/xml"),
                        None => (bodies::json_body(&c.event), "application/json"),
                    },
                    Kind::Json => (bodies::json_body(&c.event), "application/json"),
                };
                let now = tollgate_store::time::now();
                let headers = bodies::signature_headers(
                    &c.event.uuid,
                    chrono::Utc::now().timestamp(),
                    &body,
                    &endpoint.signing_secrets(&now),
                );
                let attempt = self
                    .http
                    .post(&endpoint.url, content_type, &headers, body.clone())
                    .await;
                (attempt, body)
            }
            Target::Email { to, template } => match &self.mail {
                Some(m) => {
                    let provider = tollgate_store::catalog::provider::account(&self.db).await?;
                    let composed = mail::compose(template, &c.event, &provider);
                    (m.send(to, &composed, &c.event.uuid).await, String::new())
                }
                None => (
                    Attempt {
                        ok: false,
                        status: None,
                        latency_ms: 0,
                        excerpt: String::new(),
                        error: Some("no SMTP server is configured (TOLLGATE_SMTP_URL)".into()),
                    },
                    String::new(),
                ),
            },
        };
        let fate = outbox::finish(&self.db, &c, &attempt, self.policy, &body).await?;
        tracing::debug!(delivery = c.id, event = %c.event.uuid, kind = %c.event.kind, ?fate, error = ?attempt.error, status = ?attempt.status, "delivery attempted");
        Ok(())
    }

    /// Rounds until `stop` fires; a round that found work is followed at once by the next.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            let busy = match self.round().await {
                Ok(n) => n > 0,
                Err(e) => {
                    tracing::warn!(error = %e, "the outbox round failed; trying again");
                    false
                }
            };
            if busy {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.poll) => {}
                _ = stop.changed() => return,
            }
        }
    }
}
