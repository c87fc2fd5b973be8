//! Webhooks: 3scale's settings API (`PUT`/`PATCH /admin/api/webhooks.json`, and `GET`, which
//! 3scale lacks, showing the signing secret) and its failures list; Tollgate's endpoints
//! (several, subscribed to event types, JSON bodies) with their delivery logs, redelivery and
//! secret rotation.

use crate::error::{path_id, ApiError};
use crate::params::Params;
use crate::render::{created, wrap, wrap_list};
use crate::routes::{am, Routes};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde_json::{json, Map, Value};
use tollgate_domain::access::{Access, Section};
use tollgate_domain::form::{FromForm, Page};
use tollgate_domain::notify::THREESCALE_SWITCHES;
use tollgate_store::outbox::{self, LogEntry};
use tollgate_store::webhooks::{self, Endpoint, EndpointInput, ThreescalePatch};

/// How long a rotated-out secret keeps signing unless `overlap` says otherwise (a day).
const DEFAULT_OVERLAP_SECS: i64 = 86_400;

pub fn routes(r: &mut Routes) {
    let (read, write) = (
        am(Access::Read, Section::Settings),
        am(Access::Write, Section::Settings),
    );
    let hook = "/admin/api/webhooks.json";
    r.put(
        hook,
        write,
        "Update the webhook (url, active, provider_actions, the *_on switches)",
        update,
    );
    r.patch(hook, write, "Update the webhook", update);
    // The `3scale-api` client asks without an extension.
    r.put(
        "/admin/api/webhooks",
        write,
        "Update the webhook (as the 3scale-api client asks)",
        update,
    );
    r.get(
        hook,
        read,
        "The webhook, with its signing secret (a Tollgate extension)",
        show,
    );
    r.post(
        "/admin/api/webhooks/rotate_secret.json",
        write,
        "Rotate the webhook's signing secret (the old one signs too for `overlap` seconds)",
        rotate_threescale,
    );
    let failures = "/admin/api/webhooks/failures.json";
    r.get(failures, read, "Webhook deliveries that gave up", list_failures);
    r.delete(
        failures,
        write,
        "Forget webhook failures up to `time` (all without it)",
        delete_failures,
    );
    let endpoints = "/admin/api/webhook_endpoints.json";
    r.get(endpoints, read, "Tollgate's webhook endpoints", list_endpoints);
    r.post(
        endpoints,
        write,
        "Create an endpoint: url, event_types[] (or *), active",
        create_endpoint,
    );
    let endpoint = "/admin/api/webhook_endpoints/{endpoint_id}";
    r.get(endpoint, read, "One endpoint, with its secret", show_endpoint);
    r.put(endpoint, write, "Update an endpoint", update_endpoint);
    r.delete(endpoint, write, "Delete an endpoint", delete_endpoint);
    r.post(
        "/admin/api/webhook_endpoints/{endpoint_id}/rotate_secret.json",
        write,
        "Rotate an endpoint's secret (the old one signs too for `overlap` seconds)",
        rotate_endpoint,
    );
    r.get(
        "/admin/api/webhook_endpoints/{endpoint_id}/deliveries.json",
        read,
        "An endpoint's delivery log: each delivery with its attempts",
        deliveries,
    );
    r.post(
        "/admin/api/webhook_endpoints/{endpoint_id}/deliveries/{delivery_id}/redeliver.json",
        write,
        "Deliver again, now (the same event id)",
        redeliver,
    );
}

/// 3scale's webhook JSON (its key order), plus the signing secret when asked for.
fn threescale_json(e: &Endpoint, with_secret: bool) -> Value {
    let mut m = Map::new();
    m.insert("url".into(), json!(e.url));
    m.insert("active".into(), json!(e.active));
    m.insert("provider_actions".into(), json!(e.provider_actions));
    for (switch, _) in THREESCALE_SWITCHES {
        m.insert(switch.into(), json!(e.switch(switch)));
    }
    if with_secret {
        secrets(&mut m, e);
    }
    Value::Object(m)
}

/// The secrets that sign now: the current one, and the previous one while its overlap lasts.
fn secrets(m: &mut Map<String, Value>, e: &Endpoint) {
    let live = e.signing_secrets(&tollgate_store::time::now());
    m.insert("signing_secret".into(), json!(live[0]));
    if let Some(prev) = live.get(1) {
        m.insert("previous_signing_secret".into(), json!(prev));
        m.insert("previous_signing_secret_until".into(), json!(e.previous_secret_until));
    }
}

async fn update(State(app): State<AppState>, p: Params) -> Result<Json<Value>, ApiError> {
    let e = webhooks::put_threescale(&app.db, ThreescalePatch::from_form(&p)?).await?;
    Ok(wrap("webhook", threescale_json(&e, false)))
}

async fn show(State(app): State<AppState>) -> Result<Json<Value>, ApiError> {
    let e = match webhooks::threescale(&app.db).await? {
        Some(e) => e,
        None => webhooks::put_threescale(&app.db, ThreescalePatch::default()).await?,
    };
    Ok(wrap("webhook", threescale_json(&e, true)))
}

fn overlap(p: &Params) -> Result<i64, ApiError> {
    Ok(p.parse::<i64>("overlap")?.unwrap_or(DEFAULT_OVERLAP_SECS))
}

async fn rotate_threescale(State(app): State<AppState>, p: Params) -> Result<Json<Value>, ApiError> {
    if webhooks::threescale(&app.db).await?.is_none() {
        webhooks::put_threescale(&app.db, ThreescalePatch::default()).await?;
    }
    let e = webhooks::rotate_secret(&app.db, None, overlap(&p)?).await?;
    Ok(wrap("webhook", threescale_json(&e, true)))
}

async fn list_failures(State(app): State<AppState>) -> Result<Json<Value>, ApiError> {
    let failures = webhooks::failures(&app.db).await?;
    Ok(wrap_list(
        "webhooks-failures",
        "webhooks-failure",
        failures
            .iter()
            .map(|f| json!({"id": f.id, "time": f.time, "error": f.error, "url": f.url, "event": f.event})),
    ))
}

async fn delete_failures(State(app): State<AppState>, p: Params) -> Result<StatusCode, ApiError> {
    let time = match p.get("time").filter(|t| !t.is_empty()) {
        None => None,
        Some(t) => Some(
            chrono::DateTime::parse_from_rfc3339(t)
                .map(|t| {
                    t.with_timezone(&chrono::Utc)
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                })
                .map_err(|_| ApiError::BadRequest("invalid time".into()))?,
        ),
    };
    webhooks::delete_failures(&app.db, time.as_deref()).await?;
    Ok(StatusCode::OK)
}

fn endpoint_json(e: &Endpoint) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(e.id));
    m.insert("url".into(), json!(e.url));
    m.insert("description".into(), json!(e.description));
    m.insert("active".into(), json!(e.active));
    m.insert("event_types".into(), json!(e.event_types));
    secrets(&mut m, e);
    m.insert("created_at".into(), json!(e.created_at));
    m.insert("updated_at".into(), json!(e.updated_at));
    Value::Object(m)
}

async fn list_endpoints(State(app): State<AppState>, p: Params) -> Result<Json<Value>, ApiError> {
    let items = webhooks::list(&app.db, Page::from_form(&p)?).await?;
    Ok(wrap_list(
        "webhook_endpoints",
        "webhook_endpoint",
        items.iter().map(endpoint_json),
    ))
}

async fn create_endpoint(State(app): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let e = webhooks::create(&app.db, EndpointInput::from_form(&p)?).await?;
    Ok(created("webhook_endpoint", endpoint_json(&e)))
}

async fn show_endpoint(State(app): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let e = webhooks::find(&app.db, path_id(&id)?).await?;
    Ok(wrap("webhook_endpoint", endpoint_json(&e)))
}

async fn update_endpoint(
    State(app): State<AppState>,
    Path(id): Path<String>,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    let e = webhooks::update(&app.db, path_id(&id)?, EndpointInput::from_form(&p)?).await?;
    Ok(wrap("webhook_endpoint", endpoint_json(&e)))
}

async fn delete_endpoint(State(app): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    webhooks::delete(&app.db, path_id(&id)?).await?;
    Ok(StatusCode::OK)
}

async fn rotate_endpoint(
    State(app): State<AppState>,
    Path(id): Path<String>,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    let e = webhooks::rotate_secret(&app.db, Some(path_id(&id)?), overlap(&p)?).await?;
    Ok(wrap("webhook_endpoint", endpoint_json(&e)))
}

fn log_json(d: &LogEntry) -> Value {
    json!({
        "id": d.id, "event_id": d.event_id, "event_type": d.event_type, "state": d.state,
        "attempts": d.attempts, "last_error": d.last_error, "created_at": d.created_at,
        "delivered_at": d.delivered_at,
        "next_attempt_at": (d.state == "pending").then(|| chrono::DateTime::from_timestamp_millis(d.next_attempt_ms)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))).flatten(),
        "attempt_log": d.tries.iter().map(|a| json!({
            "attempt": a.attempt, "at": a.at, "status": a.status, "latency_ms": a.latency_ms,
            "response_excerpt": a.response_excerpt, "error": a.error,
        })).collect::<Vec<_>>(),
    })
}

async fn deliveries(State(app): State<AppState>, Path(id): Path<String>, p: Params) -> Result<Json<Value>, ApiError> {
    let endpoint = webhooks::find(&app.db, path_id(&id)?).await?;
    let log = outbox::log(&app.db, endpoint.id, Page::from_form(&p)?).await?;
    Ok(wrap_list("deliveries", "delivery", log.iter().map(log_json)))
}

async fn redeliver(
    State(app): State<AppState>,
    Path((endpoint, delivery)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let delivery: i64 = path_id(&delivery)?;
    outbox::redeliver(&app.db, path_id(&endpoint)?, delivery).await?;
    Ok(wrap("delivery", json!({"id": delivery, "state": "pending"})))
}
