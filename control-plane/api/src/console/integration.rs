//! Products › Integration (3scale Ch. 18–19, "[product] > Integration > Configuration"): the
//! gateway settings (where the API is, where the gateways serve it, how credentials travel,
//! what a refusal says), the staging and production versions with deploy and promote, and a
//! mapping-rule tester.
//!
//! The tester runs a method and path through the gateway's own matcher
//! ([`tollgate_filter::mapping`], the code the filter runs in Envoy) over the rules the next
//! deploy sends ([`proxy::proxy_rules`]): what it says is what a gateway will count, not a
//! second reading of the rules. Settings go through [`ProxySettings::update_from`], as the
//! API's `PATCH /proxy.json`, and deploy to staging as 3scale does.

use super::guard::{guard, Clearance, Cleared};
use super::pages::Frame;
use super::render::{html, when};
use super::resources::{errors_of, Errors, Input};
use super::session::Refused;
use crate::error::ApiError;
use crate::routes::ServiceScope;
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use std::collections::BTreeMap;
use tollgate_domain::catalog::Environment;
use tollgate_domain::form::Form;
use tollgate_domain::ids::ServiceId;
use tollgate_domain::proxy::ProxySettings;
use tollgate_filter::mapping::{self, MappingRule};
use tollgate_store::catalog::{proxy, services};

const BASE: &str = "/console/services/{service_id}/integration";

pub fn router(app: AppState) -> Router<AppState> {
    Router::new()
        .route(BASE, get(page).post(update))
        .route(&format!("{BASE}/deploy"), post(deploy))
        .route(&format!("{BASE}/promote"), post(promote))
        .layer(axum::middleware::from_fn_with_state(
            Clearance {
                app,
                // The API's proxy endpoints are the plans section's (3scale: integration).
                section: tollgate_domain::access::Section::Plans,
                scope: ServiceScope::Service,
            },
            guard,
        ))
}

/// The settings the form shows, in 3scale's order, and the control each takes.
const SETTINGS: &[(&str, &str, &str)] = &[
    ("api_backend", "Private base URL", "url"),
    ("sandbox_endpoint", "Staging public base URL", "url"),
    ("endpoint", "Production public base URL", "url"),
    ("credentials_location", "Credentials location", "select"),
    ("auth_user_key", "User key parameter", "text"),
    ("auth_app_id", "App ID parameter", "text"),
    ("auth_app_key", "App key parameter", "text"),
    ("error_status_auth_failed", "Authentication failed: status", "number"),
    ("error_auth_failed", "Authentication failed: message", "text"),
    ("error_status_auth_missing", "Authentication missing: status", "number"),
    ("error_auth_missing", "Authentication missing: message", "text"),
    ("error_status_no_match", "No match: status", "number"),
    ("error_no_match", "No match: message", "text"),
    ("error_status_limits_exceeded", "Usage limit exceeded: status", "number"),
    ("error_limits_exceeded", "Usage limit exceeded: message", "text"),
];

const LOCATIONS: &[(&str, &str)] = &[
    (
        "query",
        "As query parameters (GET) or body parameters (POST/PUT/DELETE)",
    ),
    ("headers", "As HTTP headers"),
    ("authorization", "As HTTP Basic Authentication"),
];

/// A deployed version: its number and when.
pub struct Version {
    pub version: i64,
    pub at: String,
}

/// A mapping-rule test: what was asked, the rules that counted, and the usage.
pub struct Test {
    pub method: String,
    pub path: String,
    /// Verb, pattern, metric, delta, last — in the order they counted.
    pub rules: Vec<(String, String, String, u64, bool)>,
    pub usage: Vec<(String, u64)>,
}

#[derive(Template)]
#[template(path = "console/integration.html")]
struct IntegrationPage<'a> {
    frame: Frame<'a>,
    back: String,
    action: String,
    inputs: Vec<Input>,
    staging: Option<Version>,
    production: Option<Version>,
    /// Staging runs what production does not (yet).
    unpromoted: bool,
    methods: &'static [&'static str],
    test: Option<Test>,
    no_match: String,
}

fn service_of(path: &BTreeMap<String, String>) -> Result<ServiceId, ApiError> {
    crate::error::path_id(path.get("service_id").map(String::as_str).unwrap_or_default())
}

fn latest(
    found: Result<proxy::ProxyConfig, tollgate_store::StoreError>,
) -> Result<Option<proxy::ProxyConfig>, ApiError> {
    match found {
        Ok(c) => Ok(Some(c)),
        Err(tollgate_store::StoreError::NotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A setting's value as the form shows it.
fn setting(settings: &ProxySettings, name: &str) -> String {
    match serde_json::to_value(settings).ok().and_then(|v| v.get(name).cloned()) {
        Some(serde_json::Value::String(s)) => s,
        Some(serde_json::Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

async fn render(
    app: &AppState,
    c: &Cleared,
    path: &BTreeMap<String, String>,
    sent: Option<&Form>,
    errors: Errors,
) -> Result<Response, ApiError> {
    let sid = service_of(path)?;
    let service = services::find(&app.db, sid).await?;
    let settings = proxy::settings(&app.db, sid).await?;
    let inputs = SETTINGS
        .iter()
        .map(|&(name, text, control)| Input {
            name,
            label: text.to_string(),
            control,
            value: sent
                .and_then(|f| f.get(name))
                .map(str::to_string)
                .unwrap_or_else(|| setting(&settings, name)),
            options: match name {
                "credentials_location" => LOCATIONS.iter().map(|(v, l)| (v.to_string(), l.to_string())).collect(),
                _ => Vec::new(),
            },
            errors: errors.get(name).map(|e| e.join("; ")).unwrap_or_default(),
            required: name == "credentials_location",
        })
        .collect();
    let staging = latest(proxy::find_config(&app.db, sid, Environment::Sandbox, None).await)?;
    let production = latest(proxy::find_config(&app.db, sid, Environment::Production, None).await)?;
    let unpromoted = match (&staging, &production) {
        (Some(s), Some(p)) => s.content != p.content,
        (Some(_), None) => true,
        _ => false,
    };
    let test = match (c.form.get("method"), c.form.get("path")) {
        (Some(method), Some(tested)) if sent.is_none() => Some(run_test(app, sid, method, tested).await?),
        _ => None,
    };
    let version = |c: &proxy::ProxyConfig| Version {
        version: c.version,
        at: c.created_at.clone(),
    };
    let title = format!("Integration of “{}”", service.name);
    let status = match errors.is_empty() {
        true => StatusCode::OK,
        false => StatusCode::UNPROCESSABLE_ENTITY,
    };
    Ok((
        status,
        html(IntegrationPage {
            frame: Frame {
                title: &title,
                section: "Products",
                username: &c.staff.username,
                csrf: &c.staff.session.csrf_token,
            },
            back: format!("/console/services/{}", sid.get()),
            action: format!("/console/services/{}/integration", sid.get()),
            inputs,
            staging: staging.as_ref().map(version),
            production: production.as_ref().map(version),
            unpromoted,
            methods: &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
            test,
            no_match: format!("{} {}", settings.error_status_no_match, settings.error_no_match),
        }),
    )
        .into_response())
}

/// Runs `method path` through the gateway's matcher over the rules the next deploy sends.
async fn run_test(app: &AppState, sid: ServiceId, method: &str, tested: &str) -> Result<Test, ApiError> {
    let rules = proxy::proxy_rules(&app.db, sid).await?;
    let rules: Vec<MappingRule> = serde_json::from_value(serde_json::Value::Array(rules))
        .map_err(|e| ApiError::Internal(format!("mapping rules of service {sid}: {e}")))?;
    let tested = match tested.trim() {
        t if t.starts_with('/') => t.to_string(),
        t => format!("/{t}"),
    };
    let counted = mapping::matching(&rules, method, &tested);
    Ok(Test {
        method: method.to_string(),
        usage: mapping::usage_for(&rules, method, &tested).unwrap_or_default(),
        rules: counted
            .iter()
            .map(|r| {
                (
                    r.http_method.clone(),
                    r.pattern.clone(),
                    r.metric_system_name.clone(),
                    r.delta,
                    r.last,
                )
            })
            .collect(),
        path: tested,
    })
}

async fn page(State(app): State<AppState>, c: Cleared, Path(path): Path<BTreeMap<String, String>>) -> Response {
    render(&app, &c, &path, None, Errors::new())
        .await
        .unwrap_or_else(|e| Refused::from(e).into_response())
}

/// Saves the settings (and so deploys them to staging), or shows what was refused.
async fn update(State(app): State<AppState>, c: Cleared, Path(path): Path<BTreeMap<String, String>>) -> Response {
    let done = async {
        let sid = service_of(&path)?;
        // Only the settings: the CSRF token is not a setting to keep.
        let form = Form(c.form.0.iter().filter(|(k, _)| !k.starts_with('_')).cloned().collect());
        proxy::update_settings(&app.db, sid, |s| s.update_from(&form)).await?;
        Ok::<_, ApiError>(sid)
    }
    .await;
    match done {
        Ok(sid) => Redirect::to(&format!("/console/services/{}/integration", sid.get())).into_response(),
        Err(ApiError::Invalid(invalid)) => render(&app, &c, &path, Some(&c.form), errors_of(&invalid))
            .await
            .unwrap_or_else(|e| Refused::from(e).into_response()),
        Err(e) => Refused::from(e).into_response(),
    }
}

async fn deploy(State(app): State<AppState>, Path(path): Path<BTreeMap<String, String>>, _c: Cleared) -> Response {
    let done = async {
        let sid = service_of(&path)?;
        proxy::deploy(&app.db, sid).await?;
        Ok::<_, ApiError>(sid)
    }
    .await;
    match done {
        Ok(sid) => Redirect::to(&format!("/console/services/{}/integration", sid.get())).into_response(),
        Err(e) => Refused::from(e).into_response(),
    }
}

/// Promotes the staging version the page showed (not whatever is latest by now).
async fn promote(State(app): State<AppState>, c: Cleared, Path(path): Path<BTreeMap<String, String>>) -> Response {
    let done = async {
        let sid = service_of(&path)?;
        let version: i64 = c
            .form
            .get("version")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| ApiError::invalid("version", "must be a staging version"))?;
        proxy::promote(&app.db, sid, Environment::Sandbox, version, Environment::Production).await?;
        Ok::<_, ApiError>(sid)
    }
    .await;
    match done {
        Ok(sid) => Redirect::to(&format!("/console/services/{}/integration", sid.get())).into_response(),
        Err(e) => Refused::from(e).into_response(),
    }
}
