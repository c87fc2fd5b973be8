//! The catalog's events for 3scale's webhooks: accounts, their users and applications
//! created, updated, deleted, changing plan, suspended, and an application's keys. The CRUD
//! engine calls [`changed`] inside each write's transaction, so the event commits with the
//! change or not at all. The event carries the record as the admin API shows it (taken before
//! a delete), which becomes the webhook's `<object>`.
//!
//! Writes through the admin API are provider actions (3scale's `provider_actions` switch
//! decides whether they reach its webhook).

use super::resource::Record;
use crate::error::Result;
use crate::events::{record_as, Actor};
use serde_json::json;
use sqlx::AnyConnection;
use tollgate_domain::ids::{AccountId, ServiceId};

/// The webhook type of a table's records (`account`, `user`, `application`), if it has one.
pub fn type_of(table: &str) -> Option<&'static str> {
    match table {
        "accounts" => Some("account"),
        "users" => Some("user"),
        "applications" => Some("application"),
        _ => None,
    }
}

/// What a state event is, as a webhook action.
pub fn action_of_event(kind: &str, event: &str) -> &'static str {
    match (kind, event) {
        (_, "change_plan" | "customize_plan" | "decustomize_plan") => "plan_changed",
        ("application", "suspend") => "suspended",
        _ => "updated",
    }
}

/// Records `action` on `item`, if its table has webhook events.
pub async fn changed(conn: &mut AnyConnection, action: &str, item: &Record) -> Result<()> {
    let Some(kind) = type_of(item.resource.table) else {
        return Ok(());
    };
    emit(conn, kind, action, item).await
}

/// Records `action` on a record of webhook type `kind`.
pub async fn emit(conn: &mut AnyConnection, kind: &str, action: &str, item: &Record) -> Result<()> {
    let mut object = super::json::record(item);
    if action == "deleted" {
        // 3scale's deleted objects omit their keys.
        if let Some(m) = object.as_object_mut() {
            m.remove("keys");
        }
    }
    // The events of a deleted account go with it (the log cascades), so its own deletion is
    // recorded without it.
    let account = match (kind, action) {
        ("account", "deleted") => None,
        ("account", _) => Some(item.id()),
        _ => item.int("account_id"),
    };
    let service = item.int("service_id").filter(|_| kind == "application");
    record_as(
        conn,
        &format!("{kind}.{action}"),
        account.map(AccountId::new),
        service.map(ServiceId::new),
        Actor::Provider,
        &json!({ kind: object }),
    )
    .await?;
    Ok(())
}
