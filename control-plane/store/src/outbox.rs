//! The outbox's two steps, safe with any number of control planes on one database:
//!
//! 1. **Route**: each event not yet routed becomes one delivery per destination — an active
//!    webhook endpoint subscribed to it, a provider user whose preferences and permissions ask
//!    for its e-mail, a developer account's admins. The event is marked routed and its
//!    deliveries written in one transaction; the mark is conditional and a delivery unique per
//!    event and destination, so two routers never make two deliveries of one event.
//! 2. **Claim and finish**: a sender leases due deliveries (a conditional update: one sender
//!    per delivery), attempts them, and records the attempt: delivered, or retried later
//!    (backoff with jitter), or given up. A sender that dies mid-delivery loses its lease when
//!    it expires, and the delivery is attempted again — at least once, never lost; receivers
//!    dedupe on the event id.

use crate::db::{Db, Row};
use crate::error::{Result, StoreError};
use crate::events::Actor;
use crate::time::now;
use crate::webhooks::{self, Endpoint, Kind};
use serde_json::Value;
use sqlx::Row as _;
use tollgate_domain::access::Section;
use tollgate_domain::ids::{AccountId, ProviderUserId, ServiceId};
use tollgate_domain::notify::{self, RetryPolicy};

/// Events routed per transaction.
const ROUTE_BATCH: i64 = 200;

/// An event as the outbox holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: i64,
    /// The stable id (`msg_…`).
    pub uuid: String,
    pub kind: String,
    pub account_id: Option<AccountId>,
    pub service_id: Option<ServiceId>,
    pub actor: Actor,
    pub payload: Value,
    pub created_at: String,
}

impl Event {
    /// Tollgate's JSON body: `{"id","type","created_at","data"}`.
    pub fn json_body(&self) -> Value {
        serde_json::json!({"id": self.uuid, "type": self.kind, "created_at": self.created_at, "data": self.payload})
    }

    /// A limit alert's level, when the event is one.
    fn level(&self) -> Option<u16> {
        self.payload
            .get("alert")
            .and_then(|a| a.get("level"))
            .and_then(Value::as_u64)
            .and_then(|l| u16::try_from(l).ok())
    }

    /// Whether the event asks for e-mail to `whom` (`provider` or `buyer`): limit alerts say
    /// so (their service's e-mail levels); other events always do.
    fn wants_email(&self, whom: &str) -> bool {
        self.payload
            .get("email")
            .and_then(|e| e.get(whom))
            .and_then(Value::as_bool)
            .unwrap_or(true)
    }
}

fn event_of(r: &Row) -> Result<Event> {
    let payload: String = r.try_get("payload")?;
    let actor: String = r.try_get("actor")?;
    Ok(Event {
        id: r.try_get("id")?,
        uuid: r.try_get::<Option<String>, _>("uuid")?.unwrap_or_default(),
        kind: r.try_get("kind")?,
        account_id: r.try_get::<Option<i64>, _>("account_id")?.map(AccountId::new),
        service_id: r.try_get::<Option<i64>, _>("service_id")?.map(ServiceId::new),
        actor: Actor::parse(&actor),
        payload: serde_json::from_str(&payload).unwrap_or(Value::Null),
        created_at: r.try_get("created_at")?,
    })
}

/// One destination of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// `endpoint:<id>` or `email:<address>` (unique per event).
    pub key: String,
    pub endpoint_id: Option<i64>,
    pub email: Option<String>,
    /// The e-mail's template (`provider/<preference>`, `buyer/<mail>`).
    pub template: Option<String>,
}

/// A provider user who may be e-mailed.
#[derive(Debug, Clone)]
struct Recipient {
    email: String,
    member: Option<tollgate_domain::access::Member>,
    preferences: serde_json::Map<String, Value>,
}

impl Recipient {
    fn wants(&self, preference: &str, service: Option<ServiceId>) -> bool {
        let on = self
            .preferences
            .get(preference)
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let section = notify::preference_section(preference).unwrap_or(Section::Settings);
        on && member_receives(self.member.as_ref(), section, service)
    }
}

/// Whether a provider user (a member with these limits, or an admin: `None`) is told of
/// something in `section` about `service` (3scale Ch. 4.2).
pub fn member_receives(
    member: Option<&tollgate_domain::access::Member>,
    section: Section,
    service: Option<ServiceId>,
) -> bool {
    match member {
        None => true,
        Some(m) => {
            m.sections.contains(&section)
                && match (service, &m.services) {
                    (Some(s), Some(allowed)) => allowed.contains(&s),
                    _ => true,
                }
        }
    }
}

async fn recipients(db: &Db) -> Result<Vec<Recipient>> {
    let rows = sqlx::query(
        "SELECT id, email, notification_preferences FROM provider_users
         WHERE state = 'active' AND email IS NOT NULL AND email <> '' ORDER BY id",
    )
    .fetch_all(&db.pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let id = ProviderUserId::new(r.try_get("id")?);
        let prefs: String = r.try_get("notification_preferences")?;
        let member = match crate::auth::member_of(db, id).await {
            Ok(m) => m,
            Err(StoreError::AccessDenied) => continue,
            Err(e) => return Err(e),
        };
        out.push(Recipient {
            email: r.try_get("email")?,
            member,
            preferences: serde_json::from_str(&prefs).unwrap_or_default(),
        });
    }
    Ok(out)
}

async fn account_admins(db: &Db, account: AccountId) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT email FROM users WHERE account_id = $1 AND role = 'admin' AND state <> 'suspended'
           AND email IS NOT NULL AND email <> '' ORDER BY id",
    )
    .bind(account.get())
    .fetch_all(&db.pool)
    .await?)
}

/// Whether an endpoint takes an event: subscribed, and for 3scale's webhook a 3scale event
/// that, if a provider caused it, the webhook wants (`provider_actions`).
pub fn endpoint_takes(e: &Endpoint, event: &Event) -> bool {
    if !e.active || !notify::subscribed(&e.event_types, &event.kind) {
        return false;
    }
    match e.kind {
        Kind::Json => true,
        Kind::Threescale => {
            notify::threescale_shape(&event.kind).is_some() && (event.actor != Actor::Provider || e.provider_actions)
        }
    }
}

fn email_to(address: &str, template: String) -> Destination {
    Destination {
        key: format!("email:{}", address.to_ascii_lowercase()),
        endpoint_id: None,
        email: Some(address.to_string()),
        template: Some(template),
    }
}

/// Routes events not yet routed (a batch); how many were routed. E-mail destinations only
/// when `mail` (an SMTP server is configured).
pub async fn route(db: &Db, mail: bool) -> Result<usize> {
    let rows = sqlx::query(
        "SELECT id, uuid, kind, account_id, service_id, actor, payload, created_at FROM events
         WHERE routed_at IS NULL ORDER BY id LIMIT $1",
    )
    .bind(ROUTE_BATCH)
    .fetch_all(&db.pool)
    .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let events: Vec<Event> = rows.iter().map(event_of).collect::<Result<_>>()?;
    let endpoints = {
        let mut conn = db.pool.acquire().await?;
        webhooks::active(&mut conn).await?
    };
    let staff = if mail { recipients(db).await? } else { Vec::new() };
    let mut planned = Vec::with_capacity(events.len());
    for event in &events {
        let mut to: Vec<Destination> = endpoints
            .iter()
            .filter(|e| endpoint_takes(e, event))
            .map(|e| Destination {
                key: format!("endpoint:{}", e.id),
                endpoint_id: Some(e.id),
                email: None,
                template: None,
            })
            .collect();
        if mail {
            if let Some(pref) = notify::provider_preference(&event.kind, event.level()) {
                if event.wants_email("provider") {
                    for r in staff.iter().filter(|r| r.wants(pref, event.service_id)) {
                        to.push(email_to(&r.email, format!("provider/{pref}")));
                    }
                }
            }
            if let (Some(m), Some(account)) = (notify::buyer_mail(&event.kind), event.account_id) {
                if event.wants_email("buyer") {
                    for address in account_admins(db, account).await? {
                        to.push(email_to(&address, format!("buyer/{m}")));
                    }
                }
            }
        }
        to.sort_by(|a, b| a.key.cmp(&b.key));
        to.dedup_by(|a, b| a.key == b.key);
        planned.push((event.id, to));
    }
    let now_text = now();
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut tx = db.begin_write().await?;
    let mut routed = 0;
    for (event, destinations) in planned {
        let mark = sqlx::query("UPDATE events SET routed_at = $1 WHERE id = $2 AND routed_at IS NULL")
            .bind(&now_text)
            .bind(event)
            .execute(&mut *tx)
            .await?;
        if mark.rows_affected() == 0 {
            continue;
        }
        routed += 1;
        for d in destinations {
            sqlx::query(
                "INSERT INTO deliveries (event_id, destination, endpoint_id, email, template, next_attempt_ms, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id, destination) DO NOTHING",
            )
            .bind(event)
            .bind(&d.key)
            .bind(d.endpoint_id)
            .bind(&d.email)
            .bind(&d.template)
            .bind(now_ms)
            .bind(&now_text)
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    metrics::counter!("tollgate_events_routed_total").increment(routed as u64);
    Ok(routed)
}

/// Where a claimed delivery goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Webhook(Endpoint),
    Email { to: String, template: String },
}

/// A delivery a sender holds the lease of.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    pub id: i64,
    /// Attempts made before this one.
    pub attempts: u32,
    pub target: Target,
    pub event: Event,
}

/// Leases up to `limit` due deliveries for `lease_ms`.
pub async fn claim(db: &Db, limit: i64, lease_ms: i64) -> Result<Vec<Claimed>> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let due: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM deliveries WHERE state = 'pending' AND next_attempt_ms <= $1 AND lease_until_ms <= $1
         ORDER BY next_attempt_ms, id LIMIT $2",
    )
    .bind(now_ms)
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    let mut claimed = Vec::with_capacity(due.len());
    for id in due {
        let won = sqlx::query(
            "UPDATE deliveries SET lease_until_ms = $1
             WHERE id = $2 AND state = 'pending' AND next_attempt_ms <= $3 AND lease_until_ms <= $3",
        )
        .bind(now_ms + lease_ms)
        .bind(id)
        .bind(now_ms)
        .execute(&db.pool)
        .await?;
        if won.rows_affected() == 0 {
            continue;
        }
        if let Some(c) = load(db, id).await? {
            claimed.push(c);
        }
    }
    Ok(claimed)
}

/// A delivery with its event and target (`None`: its endpoint is gone).
async fn load(db: &Db, id: i64) -> Result<Option<Claimed>> {
    let row = sqlx::query(
        "SELECT d.attempts, d.endpoint_id, d.email, d.template,
                e.id, e.uuid, e.kind, e.account_id, e.service_id, e.actor, e.payload, e.created_at
         FROM deliveries d JOIN events e ON e.id = d.event_id WHERE d.id = $1",
    )
    .bind(id)
    .fetch_optional(&db.pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let event = event_of(&row)?;
    let target = match row.try_get::<Option<i64>, _>("endpoint_id")? {
        Some(endpoint) => match webhooks::by_id(db, endpoint).await? {
            Some(e) => Target::Webhook(e),
            None => return Ok(None),
        },
        None => Target::Email {
            to: row.try_get::<Option<String>, _>("email")?.unwrap_or_default(),
            template: row.try_get::<Option<String>, _>("template")?.unwrap_or_default(),
        },
    };
    Ok(Some(Claimed {
        id,
        attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
        target,
        event,
    }))
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub ok: bool,
    pub status: Option<u16>,
    pub latency_ms: i64,
    /// The start of the response body (bounded by the sender).
    pub excerpt: String,
    pub error: Option<String>,
}

/// What became of a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Delivered,
    RetryInMs(u64),
    GaveUp,
}

/// Records an attempt and its consequence, releasing the lease. `body` is what was sent
/// (3scale's failures keep the event XML).
pub async fn finish(db: &Db, c: &Claimed, a: &Attempt, policy: RetryPolicy, body: &str) -> Result<Fate> {
    let attempts = c.attempts + 1;
    let fate = match a.ok {
        true => Fate::Delivered,
        false => match policy.next_delay_ms(attempts, rand::random::<u64>() % notify::JITTER_PERMILLE) {
            Some(ms) => Fate::RetryInMs(ms),
            None => Fate::GaveUp,
        },
    };
    let now_text = now();
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut tx = db.begin_write().await?;
    sqlx::query(
        "INSERT INTO delivery_attempts (delivery_id, attempt, at, status, latency_ms, response_excerpt, error)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(c.id)
    .bind(i64::from(attempts))
    .bind(&now_text)
    .bind(a.status.map(i64::from))
    .bind(a.latency_ms)
    .bind(&a.excerpt)
    .bind(&a.error)
    .execute(&mut *tx)
    .await?;
    let (state, next) = match fate {
        Fate::Delivered => ("delivered", now_ms),
        Fate::RetryInMs(ms) => ("pending", now_ms.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX))),
        Fate::GaveUp => ("failed", now_ms),
    };
    let error = a
        .error
        .clone()
        .or_else(|| a.status.map(|s| format!("the endpoint answered {s}")));
    sqlx::query(
        "UPDATE deliveries SET state = $1, attempts = $2, next_attempt_ms = $3, lease_until_ms = 0,
           last_error = $4, delivered_at = $5 WHERE id = $6",
    )
    .bind(state)
    .bind(i64::from(attempts))
    .bind(next)
    .bind(if a.ok { None } else { error.clone() })
    .bind(if a.ok { Some(now_text.clone()) } else { None })
    .bind(c.id)
    .execute(&mut *tx)
    .await?;
    if let (Fate::GaveUp, Target::Webhook(e)) = (fate, &c.target) {
        if e.kind == Kind::Threescale {
            webhooks::add_failure(
                &mut tx,
                &webhooks::Failure {
                    id: format!("{}-{}", c.event.uuid, c.id),
                    time: now_text,
                    error: error.unwrap_or_default(),
                    url: e.url.clone(),
                    event: body.to_string(),
                },
            )
            .await?;
        }
    }
    tx.commit().await?;
    let outcome = match fate {
        Fate::Delivered => "delivered",
        Fate::RetryInMs(_) => "retry",
        Fate::GaveUp => "failed",
    };
    let channel = match c.target {
        Target::Webhook(_) => "webhook",
        Target::Email { .. } => "email",
    };
    metrics::counter!("tollgate_deliveries_total", "channel" => channel, "outcome" => outcome).increment(1);
    Ok(fate)
}

/// A delivery as its endpoint's log shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    pub id: i64,
    pub event_id: String,
    pub event_type: String,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_ms: i64,
    pub last_error: Option<String>,
    pub created_at: String,
    pub delivered_at: Option<String>,
    pub tries: Vec<LoggedAttempt>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedAttempt {
    pub attempt: i64,
    pub at: String,
    pub status: Option<i64>,
    pub latency_ms: i64,
    pub response_excerpt: String,
    pub error: Option<String>,
}

/// An endpoint's deliveries, newest first, with their attempts (one page).
pub async fn log(db: &Db, endpoint: i64, page: tollgate_domain::form::Page) -> Result<Vec<LogEntry>> {
    let rows = sqlx::query(
        "SELECT d.id, e.uuid, e.kind, d.state, d.attempts, d.next_attempt_ms, d.last_error, d.created_at, d.delivered_at
         FROM deliveries d JOIN events e ON e.id = d.event_id WHERE d.endpoint_id = $1
         ORDER BY d.id DESC LIMIT $2 OFFSET $3",
    )
    .bind(endpoint)
    .bind(page.per_page)
    .bind(page.offset())
    .fetch_all(&db.pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let id: i64 = r.try_get("id")?;
        let tries = sqlx::query(
            "SELECT attempt, at, status, latency_ms, response_excerpt, error FROM delivery_attempts
             WHERE delivery_id = $1 ORDER BY attempt",
        )
        .bind(id)
        .fetch_all(&db.pool)
        .await?
        .iter()
        .map(|a| {
            Ok(LoggedAttempt {
                attempt: a.try_get("attempt")?,
                at: a.try_get("at")?,
                status: a.try_get("status")?,
                latency_ms: a.try_get("latency_ms")?,
                response_excerpt: a.try_get("response_excerpt")?,
                error: a.try_get("error")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
        out.push(LogEntry {
            id,
            event_id: r.try_get::<Option<String>, _>("uuid")?.unwrap_or_default(),
            event_type: r.try_get("kind")?,
            state: r.try_get("state")?,
            attempts: r.try_get("attempts")?,
            next_attempt_ms: r.try_get("next_attempt_ms")?,
            last_error: r.try_get("last_error")?,
            created_at: r.try_get("created_at")?,
            delivered_at: r.try_get("delivered_at")?,
            tries,
        });
    }
    Ok(out)
}

/// Sends a delivery of `endpoint` again now, with a fresh schedule (the same event id).
pub async fn redeliver(db: &Db, endpoint: i64, delivery: i64) -> Result<()> {
    let done = sqlx::query(
        "UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_ms = $1, lease_until_ms = 0
         WHERE id = $2 AND endpoint_id = $3",
    )
    .bind(chrono::Utc::now().timestamp_millis())
    .bind(delivery)
    .bind(endpoint)
    .execute(&db.pool)
    .await?;
    match done.rows_affected() {
        0 => Err(StoreError::NotFound),
        _ => Ok(()),
    }
}

/// Deliveries waiting (pending), for the metrics.
pub async fn backlog(db: &Db) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE state = 'pending'")
            .fetch_one(&db.pool)
            .await?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_domain::access::Member;

    #[test]
    fn members_hear_of_their_sections_and_services_only() {
        let m = Member {
            sections: vec![Section::Monitoring],
            services: Some(vec![ServiceId::new(1)]),
        };
        assert!(member_receives(None, Section::Finance, Some(ServiceId::new(9))));
        assert!(member_receives(Some(&m), Section::Monitoring, Some(ServiceId::new(1))));
        assert!(!member_receives(Some(&m), Section::Monitoring, Some(ServiceId::new(2))));
        assert!(!member_receives(Some(&m), Section::Finance, None));
    }
}
