//! Usage-limit alerts (3scale has them only in its UI; this is its shape as an API):
//! `GET /admin/api/alerts.json` (filters `service_id`, `application_id`, `state`), mark one
//! or all read, delete one. Members see the alerts of their services only.

use crate::error::{path_id, ApiError};
use crate::params::Params;
use crate::render::{wrap, wrap_list};
use crate::routes::{am, Caller, Routes};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};
use tollgate_domain::access::{Access, Section};
use tollgate_domain::form::{FromForm, Page};
use tollgate_domain::notify::is_violation;
use tollgate_store::alerts::{self, Alert, Filter};

pub fn routes(r: &mut Routes) {
    let (read, write) = (
        am(Access::Read, Section::Monitoring),
        am(Access::Write, Section::Monitoring),
    );
    r.get(
        "/admin/api/alerts.json",
        read,
        "Usage-limit alerts, newest first (service_id, application_id, state)",
        list,
    );
    r.put(
        "/admin/api/alerts/all_read.json",
        write,
        "Mark every unread alert read (same filters)",
        all_read,
    );
    r.put(
        "/admin/api/alerts/{alert_id}/read.json",
        write,
        "Mark an alert read",
        read_one,
    );
    r.delete("/admin/api/alerts/{alert_id}", write, "Delete an alert", delete_one);
}

fn alert_json(a: &Alert) -> Value {
    let level = u16::try_from(a.level).unwrap_or(u16::MAX);
    json!({
        "id": a.id, "account_id": a.account_id, "timestamp": a.timestamp, "state": a.state,
        "application_id": a.application_id, "service_id": a.service_id, "utilization": a.utilization,
        "level": a.level, "message": a.message,
        "kind": if is_violation(level) { "violation" } else { "alert" },
    })
}

async fn list(State(app): State<AppState>, caller: Caller, p: Params) -> Result<Json<Value>, ApiError> {
    let filter = Filter::from_form(&p)?;
    let page = Page::from_form(&p)?;
    let services = caller.service_ids();
    let items = alerts::list(&app.db, &filter, services.as_deref(), page).await?;
    let total = alerts::count(&app.db, &filter, services.as_deref()).await?;
    let Json(mut body) = wrap_list("alerts", "alert", items.iter().map(alert_json));
    if let Some(m) = body.as_object_mut() {
        m.insert(
            "metadata".into(),
            json!({"per_page": page.per_page, "total_entries": total, "current_page": page.page}),
        );
    }
    Ok(Json(body))
}

async fn all_read(State(app): State<AppState>, caller: Caller, p: Params) -> Result<Json<Value>, ApiError> {
    let n = alerts::all_read(&app.db, &Filter::from_form(&p)?, caller.service_ids().as_deref()).await?;
    Ok(wrap("alerts", json!({"marked_read": n})))
}

async fn read_one(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let a = alerts::set_state(&app.db, path_id(&id)?, "read", caller.service_ids().as_deref()).await?;
    Ok(wrap("alert", alert_json(&a)))
}

async fn delete_one(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let a = alerts::set_state(&app.db, path_id(&id)?, "deleted", caller.service_ids().as_deref()).await?;
    Ok(wrap("alert", alert_json(&a)))
}
