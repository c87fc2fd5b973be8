//! The event log, which is also the notifications' transactional outbox: an event is written
//! in the same transaction as the change it reports, so there is never an event for a change
//! that did not happen, nor a change without its event. The sender ([`crate::outbox`]) turns
//! each one into deliveries afterwards.
//!
//! Every event has a stable id (`msg_…`, the `webhook-id` receivers dedupe on), who caused it
//! and, when it concerns one service, that service (members are told only of theirs).

use crate::error::Result;
use sqlx::AnyConnection;
use tollgate_domain::ids::{AccountId, ServiceId};

/// Who caused an event. 3scale's webhooks send provider actions only when asked to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// A provider user, through the admin API or the console.
    Provider,
    /// A developer, through the developer portal.
    Buyer,
    /// Tollgate itself (billing, credits, alerts).
    System,
}

impl Actor {
    pub fn as_str(self) -> &'static str {
        match self {
            Actor::Provider => "provider",
            Actor::Buyer => "buyer",
            Actor::System => "system",
        }
    }

    pub fn parse(s: &str) -> Actor {
        match s {
            "provider" => Actor::Provider,
            "buyer" => Actor::Buyer,
            _ => Actor::System,
        }
    }
}

/// A new event id: `msg_` and 32 hex digits.
pub fn new_id() -> String {
    format!("msg_{:032x}", rand::random::<u128>())
}

/// Records a system event about an account.
pub async fn record(
    conn: &mut AnyConnection,
    kind: &str,
    account_id: AccountId,
    payload: &serde_json::Value,
) -> Result<String> {
    record_as(conn, kind, Some(account_id), None, Actor::System, payload).await
}

/// Records an event; its id.
pub async fn record_as(
    conn: &mut AnyConnection,
    kind: &str,
    account_id: Option<AccountId>,
    service_id: Option<ServiceId>,
    actor: Actor,
    payload: &serde_json::Value,
) -> Result<String> {
    let event = New {
        kind,
        account_id,
        service_id,
        actor,
        payload: payload.clone(),
    };
    let mut ids = record_all(conn, std::slice::from_ref(&event)).await?;
    Ok(ids.pop().unwrap_or_default())
}

/// An event to record.
#[derive(Debug, Clone)]
pub struct New<'a> {
    pub kind: &'a str,
    pub account_id: Option<AccountId>,
    pub service_id: Option<ServiceId>,
    pub actor: Actor,
    pub payload: serde_json::Value,
}

/// Records events, a multi-row statement per few thousand; their ids, in order.
pub async fn record_all(conn: &mut AnyConnection, events: &[New<'_>]) -> Result<Vec<String>> {
    let now = crate::time::now();
    let ids: Vec<String> = events.iter().map(|_| new_id()).collect();
    let rows: Vec<(&New<'_>, &String)> = events.iter().zip(&ids).collect();
    let insert = |values: &str| {
        format!("INSERT INTO events (kind, account_id, service_id, actor, uuid, payload, created_at) VALUES {values}")
    };
    crate::multirow::run(conn, &rows, 7, insert, |q, (e, uuid)| {
        q.bind(e.kind.to_string())
            .bind(e.account_id.map(AccountId::get))
            .bind(e.service_id.map(ServiceId::get))
            .bind(e.actor.as_str())
            .bind(uuid.to_string())
            .bind(e.payload.to_string())
            .bind(now.clone())
    })
    .await?;
    for e in events {
        metrics::counter!("tollgate_events_recorded_total", "kind" => e.kind.to_string()).increment(1);
    }
    Ok(ids)
}
