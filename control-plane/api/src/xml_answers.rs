//! The admin API in XML, as 3scale serves it: every `/admin/api/….json` route also answers
//! `….xml` (mounted twice by the router), and this layer writes the JSON answer as XML with the
//! one converter ([`crate::xml::from_json`]). Handlers know nothing of it.
//!
//! Two documents carry more in 3scale's XML than in its JSON (porta's `to_xml`), and the layer
//! adds them from the store: an application's `user_account_id` and its `<plan>`, and an
//! account's `<users>`. The guide's export script (Ch. 30) reads exactly those.

use crate::error::Format;
use crate::render::record;
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use tollgate_domain::form::Page;
use tollgate_store::catalog::accounts::USERS;
use tollgate_store::catalog::crud;
use tollgate_store::catalog::plans::APPLICATION_PLAN;

/// Answers larger than this are not rewritten (no admin answer comes near it).
const LIMIT: usize = 64 * 1024 * 1024;

/// Whether a request asks the admin API for XML.
pub fn wants_xml(path: &str) -> bool {
    path.starts_with("/admin/api/") && Format::of_path(path) == Format::Xml
}

pub async fn layer(State(app): State<AppState>, req: Request, next: Next) -> Response {
    if !wants_xml(req.uri().path()) {
        return next.run(req).await;
    }
    let response = next.run(req).await;
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, LIMIT).await else {
        return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "answer too large").into_response();
    };
    let Ok(mut value) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    };
    if parts.status.is_success() {
        if let Err(e) = enrich(&app.db, &mut value).await {
            return crate::error::ApiError::from(e).into_response_as(Format::Xml);
        }
    }
    let xml = crate::xml::from_json(&value).unwrap_or_default();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml; charset=utf-8"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(xml))
}

/// The applications of an answer (one, or a list's items).
fn applications(value: &mut Value) -> Vec<&mut Map<String, Value>> {
    let Value::Object(root) = value else {
        return Vec::new();
    };
    let single = root.contains_key("application");
    match (
        single,
        root.get_mut(if single { "application" } else { "applications" }),
    ) {
        (true, Some(Value::Object(one))) => vec![one],
        (false, Some(Value::Array(items))) => items
            .iter_mut()
            .filter_map(|i| i.get_mut("application").and_then(Value::as_object_mut))
            .collect(),
        _ => Vec::new(),
    }
}

/// Adds to an answer what 3scale's XML carries beyond its JSON (also a webhook's object).
pub async fn enrich(db: &tollgate_store::Db, value: &mut Value) -> Result<(), tollgate_store::StoreError> {
    let mut apps = applications(value);
    if !apps.is_empty() {
        let mut ids: Vec<i64> = apps
            .iter()
            .filter_map(|a| a.get("plan_id").and_then(Value::as_i64))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let mut conn = db.pool.acquire().await?;
        let plans = APPLICATION_PLAN
            .select(&mut conn, &[], Some(("id", &ids)), Page::FIRST)
            .await?;
        for a in apps.iter_mut() {
            let plan = a
                .get("plan_id")
                .and_then(Value::as_i64)
                .and_then(|id| plans.iter().find(|p| p.id() == id))
                .map(|p| with_type(record(p), "application_plan"));
            let fields = std::mem::take(*a);
            for (k, v) in fields {
                let after_state = k == "state";
                let after_service = k == "service_id";
                a.insert(k, v);
                if after_state {
                    let owner = a.get("account_id").cloned().unwrap_or(Value::Null);
                    a.insert("user_account_id".into(), owner);
                }
                if after_service {
                    if let Some(p) = &plan {
                        a.insert("plan".into(), p.clone());
                    }
                }
            }
        }
        return Ok(());
    }
    if let Some(account) = value.get_mut("account").and_then(Value::as_object_mut) {
        let Some(id) = account.get("id").and_then(Value::as_i64) else {
            return Ok(());
        };
        let users = crud::list(db, &USERS, &[id], None, Page::FIRST).await?;
        let users: Vec<Value> = users.iter().map(|u| serde_json::json!({"user": record(u)})).collect();
        account.insert("users".into(), Value::Array(users));
    }
    Ok(())
}

fn with_type(mut plan: Value, kind: &str) -> Value {
    if let Value::Object(m) = &mut plan {
        m.insert("type".into(), Value::String(kind.into()));
    }
    plan
}
