//! 3scale's Analytics API (`/stats/…`, porta's `Stats::Data::*`): usage of a service, an
//! application or a backend per metric or method, response codes, and top applications, as
//! JSON, XML or CSV, with porta's parameters, defaults, shapes and messages
//! (`tollgate_domain::analytics` reads the window; `tollgate_store::analytics` the usage).
//!
//! Also a service's integration errors (`/admin/api/services/{id}/errors.json`, Ch. 29.5).
//!
//! Access: a token with the `stats` (or `analytics`) scope, or the provider key; members need
//! the monitoring section, and see only their services (a backend only if every service using
//! it is theirs).

use crate::error::{path_id, ApiError, Format};
use crate::params::Params;
use crate::routes::{Caller, Guard, Routes};
use crate::state::AppState;
use crate::xml::Xml;
use axum::extract::{Path, State};
use axum::http::{header, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use serde_json::{json, Value};
use tollgate_domain::access::{Access, Permission, Scope, Section};
use tollgate_domain::analytics::clock::{plain, xmlschema, zone_name};
use tollgate_domain::analytics::{change, fill, Granularity, StatsError, TopWindow, Window, WindowParams};
use tollgate_domain::form::{FromForm, Page};
use tollgate_domain::ids::{ApplicationId, BackendId, ServiceId};
use tollgate_store::analytics::{self as store, AppInfo, Measure, MetricInfo, Owner};
use tollgate_store::integration_errors;

const STATS: Guard = Guard::Token(Permission::new(Scope::Stats, Access::Read, Section::Monitoring));

/// Top applications lists at most this many, as 3scale's.
const TOP: usize = 10;

pub fn routes(r: &mut Routes) {
    let errors = "/admin/api/services/{service_id}/errors.json";
    let monitoring = |access| Guard::Token(Permission::new(Scope::AccountManagement, access, Section::Monitoring));
    r.get(
        errors,
        monitoring(Access::Read),
        "A service's integration errors, newest first (page, per_page)",
        list_errors,
    );
    r.delete(
        errors,
        monitoring(Access::Write),
        "Forget a service's integration errors",
        clear_errors,
    );
    r.get(
        "/stats/services/{service_id}/applications_near_limits.json",
        STATS,
        "Every limit of the service's live applications, most used first (threshold: a percentage)",
        near_limits,
    );
    r.get(
        "/stats/credits.json",
        STATS,
        "Credits charged and their upstream cost per bucket (account_id, service_id, metric_id; window as usage)",
        credits_usage,
    );
    // With an extension, or without (JSON: the `3scale-api` package's analytics client asks so).
    for ext in [".json", ".xml", ".csv", ""] {
        r.get(
            format!("/stats/services/{{service_id}}/usage{ext}"),
            STATS,
            "A service's usage of a metric or method",
            service_usage,
        );
        r.get(
            format!("/stats/services/{{service_id}}/usage_response_code{ext}"),
            STATS,
            "A service's responses with a code (200, 404) or class (2XX, 4XX, 5XX)",
            service_usage,
        );
        r.get(
            format!("/stats/services/{{service_id}}/top_applications{ext}"),
            STATS,
            "A service's ten applications using a metric most in a period",
            top_applications,
        );
        r.get(
            format!("/stats/applications/{{application_id}}/usage{ext}"),
            STATS,
            "An application's usage of a metric or method",
            application_usage,
        );
        r.get(
            format!("/stats/applications/{{application_id}}/usage_response_code{ext}"),
            STATS,
            "An application's responses with a code or class",
            application_usage,
        );
        r.get(
            format!("/stats/backend_apis/{{backend_api_id}}/usage{ext}"),
            STATS,
            "A backend's usage of one of its metrics, over the services using it",
            backend_usage,
        );
    }
}

/// A stats answer in the format the path asks for; errors in that format too.
fn answer(format: Format, result: Result<Rendered, ApiError>) -> Response {
    match result {
        Ok(r) => match format {
            Format::Json => ([(header::CONTENT_TYPE, "application/json")], r.json.to_string()).into_response(),
            Format::Xml => ([(header::CONTENT_TYPE, "application/xml")], r.xml).into_response(),
            Format::Csv => ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], r.csv).into_response(),
        },
        Err(e) => e.into_response_as(format),
    }
}

struct Rendered {
    json: Value,
    xml: String,
    csv: String,
}

fn window_params(p: &Params) -> WindowParams<'_> {
    WindowParams {
        period: p.get("period"),
        granularity: p.get("granularity"),
        since: p.get("since"),
        until: p.get("until"),
        timezone: p.get("timezone"),
        skip_change: p.get("skip_change"),
    }
}

fn required<'a>(p: &'a Params, name: &'static str) -> Result<&'a str, ApiError> {
    p.get(name)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or(ApiError::Stats(StatsError::Missing(name)))
}

async fn zone(app: &AppState) -> Result<Tz, ApiError> {
    Ok(tollgate_store::catalog::provider::account(&app.db).await?.timezone())
}

fn now() -> DateTime<Utc> {
    Utc::now()
}

/// `response_code` as 3scale takes it (`200`, `2XX`), as the usage tables keep it (`200`,
/// `2xx`).
fn response_code(raw: &str) -> Result<(String, String), ApiError> {
    let code = raw.trim();
    let stored = code.to_ascii_lowercase();
    let valid = stored.len() == 3
        && stored.as_bytes()[0].is_ascii_digit()
        && (stored[1..].bytes().all(|b| b.is_ascii_digit()) || &stored[1..] == "xx");
    match valid {
        true => Ok((code.to_string(), stored)),
        false => Err(ApiError::Stats(StatsError::Bad(format!(
            "response_code must be a status (200, 404) or a class (2XX, 4XX, 5XX), not {code:?}"
        )))),
    }
}

/// What a usage answer shows of what is counted.
enum Subject {
    Metric(MetricInfo),
    Code(String),
}

/// A window's values, total and (unless skipped) previous total.
pub(crate) struct Usage {
    pub(crate) window: Window,
    pub(crate) values: Vec<i64>,
    pub(crate) total: i64,
    previous_total: Option<i64>,
}

/// Usage as the console's Analytics charts it — a service's, an application's or a backend's:
/// the API's own answer (window, values, CSV) for `metric_name`, and in the same window the
/// responses with each of `codes` (`2XX`…), read after one flush.
pub(crate) struct Charted {
    pub(crate) usage: Usage,
    pub(crate) metric: tollgate_domain::ids::MetricId,
    pub(crate) name: String,
    pub(crate) csv: String,
    /// Each code's values, in the order asked.
    pub(crate) by_code: Vec<Vec<i64>>,
}

pub(crate) async fn chart_of(app: &AppState, owner: Owner, p: &Params, codes: &[&str]) -> Result<Charted, ApiError> {
    let metric = metric_named(app, owner, p).await?;
    let usage = usage_of(app, owner, &Measure::Metric(metric.id), p).await?;
    let mut by_code = Vec::with_capacity(codes.len());
    for code in codes {
        let (_, stored) = response_code(code)?;
        by_code.push(usage_in(app, owner, &Measure::ResponseCode(stored), p).await?.values);
    }
    let (id, name) = (metric.id, metric.friendly_name.clone());
    let backend = match owner {
        Owner::Backend(b) => Some(b),
        _ => None,
    };
    let csv = render_usage(&usage, &Subject::Metric(metric), None, backend).csv;
    Ok(Charted {
        usage,
        metric: id,
        name,
        csv,
        by_code,
    })
}

/// Copies what the counters hold into the usage tables before a read, so that a stats answer
/// includes every call counted before it was asked (as 3scale's stats follow its reports).
/// A failed flush is logged; the answer is then what the tables hold, and the usage beat
/// retries.
async fn flush_first(app: &AppState) {
    if let Err(e) = tollgate_store::alerts::flush_usage(&app.db, &app.counters).await {
        tracing::warn!(error = %e, "usage flush before a stats read failed; answering from the usage tables");
    }
}

async fn usage_of(app: &AppState, owner: Owner, measure: &Measure, p: &Params) -> Result<Usage, ApiError> {
    flush_first(app).await;
    usage_in(app, owner, measure, p).await
}

/// [`usage_of`] from the usage tables as they are (a read just after a flush).
async fn usage_in(app: &AppState, owner: Owner, measure: &Measure, p: &Params) -> Result<Usage, ApiError> {
    let window = Window::parse(&window_params(p), zone(app).await?, now())?;
    let rows = store::series(&app.db, owner, measure, &window.buckets).await?;
    let values = fill(&window.buckets, &rows);
    let previous_total = match window.previous() {
        Some(previous) => {
            let rows = store::series(&app.db, owner, measure, &[previous]).await?;
            Some(fill(&[previous], &rows)[0])
        }
        None => None,
    };
    Ok(Usage {
        total: values.iter().sum(),
        previous_total,
        values,
        window,
    })
}

#[derive(Serialize)]
struct MetricJson<'a> {
    id: i64,
    name: &'a str,
    system_name: String,
    unit: &'a str,
}

fn metric_json(m: &MetricInfo, system_name: String) -> MetricJson<'_> {
    MetricJson {
        id: m.id.get(),
        name: &m.friendly_name,
        system_name,
        unit: &m.unit,
    }
}

fn granularity_json(g: Granularity) -> Value {
    match g {
        Granularity::SixHours => json!(21600),
        g => json!(g.name()),
    }
}

fn period_json(w: &Window) -> Value {
    json!({
        "name": w.period.map(|p| p.as_str()),
        "since": xmlschema(w.since),
        "until": xmlschema(w.until),
        "timezone": zone_name(w.tz),
        "granularity": granularity_json(w.granularity),
    })
}

/// The JSON of a usage answer, in porta's key order.
fn usage_json(
    u: &Usage,
    subject: &Subject,
    system_name: String,
    application: Option<&AppInfo>,
    backend: bool,
) -> Value {
    let subject_entry = match subject {
        Subject::Metric(m) => ("metric", json!(metric_json(m, system_name))),
        Subject::Code(c) => ("response_code", json!({"code": c})),
    };
    let mut fields: Vec<(&str, Value)> = Vec::new();
    if !backend {
        fields.push(subject_entry.clone());
        fields.push(("period", period_json(&u.window)));
    }
    fields.push(("total", json!(u.total)));
    fields.push(("values", json!(u.values)));
    if let Some(previous) = u.previous_total {
        fields.push(("previous_total", json!(previous)));
        fields.push(("change", json!(change(u.total, previous))));
    }
    if let Some(a) = application {
        fields.push(("application", application_json(a)));
    }
    if backend {
        fields.push(subject_entry);
        fields.push(("period", period_json(&u.window)));
    }
    ordered(fields)
}

/// A JSON object with its keys in the order given.
fn ordered(fields: Vec<(&str, Value)>) -> Value {
    Value::Object(fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn application_json(a: &AppInfo) -> Value {
    json!({
        "id": a.id.get(),
        "name": a.name,
        "state": a.state,
        "link": format!("/p/admin/applications/{}", a.id.get()),
        "description": a.description,
        "plan": {"id": a.plan_id, "name": a.plan_name},
        "account": {"id": a.account_id, "name": a.account_name, "link": format!("/buyers/accounts/{}", a.account_id)},
        "service": {"id": a.service_id.get()},
    })
}

/// porta's `usage.xml.builder`: no zone, never a change.
fn usage_xml(u: &Usage, subject: &Subject, system_name: &str, application: Option<&AppInfo>) -> String {
    let mut x = Xml::document();
    x.open("usage", &[]);
    match subject {
        Subject::Metric(m) => {
            x.open("metric", &[])
                .leaf("id", m.id.get())
                .leaf("name", &m.friendly_name)
                .leaf("system_name", system_name)
                .leaf("unit", &m.unit)
                .close("metric");
        }
        Subject::Code(c) => {
            x.open("response_code", &[]).leaf("code", c).close("response_code");
        }
    }
    x.open("period", &[])
        .leaf("since", plain(u.window.since))
        .leaf("until", plain(u.window.until))
        .leaf("name", u.window.period.map_or("", |p| p.as_str()))
        .leaf("granularity", u.window.granularity.name())
        .close("period");
    let values: Vec<String> = u.values.iter().map(i64::to_string).collect();
    x.open("data", &[])
        .leaf("total", u.total)
        .leaf_with("values", &[("length", u.values.len().to_string())], values.join(","))
        .close("data");
    if let Some(a) = application {
        x.open("application", &[])
            .leaf("id", a.id.get())
            .leaf("name", &a.name)
            .open("plan", &[])
            .leaf("id", a.plan_id)
            .leaf("name", &a.plan_name)
            .close("plan")
            .open("account", &[])
            .leaf("name", &a.account_name)
            .leaf("id", a.account_id)
            .close("account")
            .close("application");
    }
    x.close("usage");
    x.finish()
}

/// A CSV field, quoted when it must be.
fn csv_field(s: &str) -> String {
    match s.contains([',', '"', '\n', '\r']) {
        true => format!("\"{}\"", s.replace('"', "\"\"")),
        false => s.to_string(),
    }
}

/// porta's usage CSV: a row per bucket, dated by its start in the window's zone.
fn usage_csv(u: &Usage, system_name: &str, name: &str) -> String {
    let mut out = String::from("Metric System Name,Metric Name,Date,Value\n");
    for (&(start, _), value) in u.window.buckets.iter().zip(&u.values) {
        let date = DateTime::from_timestamp(start, 0)
            .unwrap_or_default()
            .with_timezone(&u.window.tz);
        out.push_str(&format!(
            "{},{},{},{value}\n",
            csv_field(system_name),
            csv_field(name),
            plain(date)
        ));
    }
    out
}

fn render_usage(u: &Usage, subject: &Subject, application: Option<&AppInfo>, backend: Option<BackendId>) -> Rendered {
    let system_name = match (subject, backend) {
        (Subject::Metric(m), Some(b)) => {
            let suffix = format!(".{}", b.get());
            match m.system_name.ends_with(&suffix) {
                true => m.system_name.clone(),
                false => format!("{}{suffix}", m.system_name),
            }
        }
        (Subject::Metric(m), None) => m.system_name.clone(),
        (Subject::Code(c), _) => c.clone(),
    };
    let name = match subject {
        Subject::Metric(m) => m.friendly_name.clone(),
        Subject::Code(c) => c.clone(),
    };
    Rendered {
        json: usage_json(u, subject, system_name.clone(), application, backend.is_some()),
        xml: usage_xml(u, subject, &system_name, application),
        csv: usage_csv(u, &system_name, &name),
    }
}

/// A metric's usage, rendered: what the three usage routes answer once they know the owner.
async fn metric_usage(
    app: &AppState,
    owner: Owner,
    p: &Params,
    application: Option<&AppInfo>,
    backend: Option<BackendId>,
) -> Result<Rendered, ApiError> {
    let metric = metric_named(app, owner, p).await?;
    let usage = usage_of(app, owner, &Measure::Metric(metric.id), p).await?;
    Ok(render_usage(&usage, &Subject::Metric(metric), application, backend))
}

async fn metric_named(app: &AppState, owner: Owner, p: &Params) -> Result<MetricInfo, ApiError> {
    let name = required(p, "metric_name")?;
    store::metric(&app.db, owner, name)
        .await?
        .ok_or_else(|| ApiError::Stats(StatsError::Bad(format!("metric {name} not found"))))
}

async fn service(app: &AppState, raw: &str) -> Result<ServiceId, ApiError> {
    let id: ServiceId = path_id(raw).map_err(|_| ApiError::NotFoundNamed("Service not found"))?;
    match store::service_exists(&app.db, id).await? {
        true => Ok(id),
        false => Err(ApiError::NotFoundNamed("Service not found")),
    }
}

async fn application(app: &AppState, caller: &Caller, raw: &str) -> Result<AppInfo, ApiError> {
    let id: ApplicationId = path_id(raw).map_err(|_| ApiError::NotFoundNamed("Application not found"))?;
    let info = store::application(&app.db, id)
        .await?
        .ok_or(ApiError::NotFoundNamed("Application not found"))?;
    caller.check_service(info.service_id)?;
    Ok(info)
}

/// What a usage path asks for: a metric's usage, or responses with a code
/// (`…/usage_response_code.json`).
fn wants_codes(uri: &Uri) -> bool {
    uri.path()
        .rsplit('/')
        .next()
        .is_some_and(|last| last.starts_with("usage_response_code"))
}

async fn service_usage(State(app): State<AppState>, Path(id): Path<String>, uri: Uri, p: Params) -> Response {
    answer(
        Format::of_path(uri.path()),
        async {
            let owner = Owner::Service(service(&app, &id).await?);
            match wants_codes(&uri) {
                true => response_codes(&app, owner, &p, None).await,
                false => metric_usage(&app, owner, &p, None, None).await,
            }
        }
        .await,
    )
}

async fn application_usage(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    uri: Uri,
    p: Params,
) -> Response {
    answer(
        Format::of_path(uri.path()),
        async {
            let info = application(&app, &caller, &id).await?;
            let owner = Owner::Application(info.id);
            match wants_codes(&uri) {
                true => response_codes(&app, owner, &p, Some(&info)).await,
                false => metric_usage(&app, owner, &p, Some(&info), None).await,
            }
        }
        .await,
    )
}

async fn backend_usage(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    uri: Uri,
    p: Params,
) -> Response {
    answer(
        Format::of_path(uri.path()),
        async {
            let backend: BackendId = path_id(&id)?;
            if !store::backend_exists(&app.db, backend).await? {
                return Err(ApiError::NotFound);
            }
            for service in store::backend_services(&app.db, backend).await? {
                caller.check_service(service)?;
            }
            metric_usage(&app, Owner::Backend(backend), &p, None, Some(backend)).await
        }
        .await,
    )
}

async fn response_codes(
    app: &AppState,
    owner: Owner,
    p: &Params,
    application: Option<&AppInfo>,
) -> Result<Rendered, ApiError> {
    let (shown, stored) = response_code(required(p, "response_code")?)?;
    let usage = usage_of(app, owner, &Measure::ResponseCode(stored), p).await?;
    Ok(render_usage(&usage, &Subject::Code(shown), application, None))
}

async fn top_applications(State(app): State<AppState>, Path(id): Path<String>, uri: Uri, p: Params) -> Response {
    answer(
        Format::of_path(uri.path()),
        async {
            let service = service(&app, &id).await?;
            required(&p, "metric_name")?;
            required(&p, "period")?;
            required(&p, "since")?;
            let metric = metric_named(&app, Owner::Service(service), &p).await?;
            let window = TopWindow::parse(&window_params(&p), zone(&app).await?)?;
            let (from, to) = window.range();
            flush_first(&app).await;
            let ranked = top_of(&app, service, metric.id, from, to).await?;
            let top: Vec<(&AppInfo, i64)> = ranked.iter().map(|(i, v)| (i, *v)).collect();
            Ok(render_top(&top, &metric, &window))
        }
        .await,
    )
}

/// The service's [`TOP`] applications by `metric` in `[from, to)`, most first, with what
/// they used (the API's top applications and the console's).
pub(crate) async fn top_of(
    app: &AppState,
    service: ServiceId,
    metric: tollgate_domain::ids::MetricId,
    from: i64,
    to: i64,
) -> Result<Vec<(AppInfo, i64)>, ApiError> {
    let ranked = store::top_applications(&app.db, service, metric, from, to, TOP).await?;
    let ids: Vec<ApplicationId> = ranked.iter().map(|(a, _)| *a).collect();
    let infos = store::applications(&app.db, &ids).await?;
    Ok(ranked
        .iter()
        .filter_map(|(id, v)| infos.iter().find(|i| i.id == *id).map(|i| (i.clone(), *v)))
        .collect())
}

/// The service's limits used at least `threshold` percent now, most used first, at most
/// `count`, each with its application (the API's applications near limits and the console's).
pub(crate) async fn near_limits_of(
    app: &AppState,
    service: ServiceId,
    threshold: rust_decimal::Decimal,
    count: usize,
) -> Result<Vec<(AppInfo, store::LimitUse)>, ApiError> {
    let mut uses = store::limit_uses(&app.db, &app.counters, service, now()).await?;
    uses.retain(|u| rust_decimal::Decimal::new(u.used_per_10k(), 2) >= threshold);
    uses.sort_by(|a, b| {
        b.used_per_10k()
            .cmp(&a.used_per_10k())
            .then(a.application.get().cmp(&b.application.get()))
    });
    uses.truncate(count);
    let ids: Vec<ApplicationId> = uses.iter().map(|u| u.application).collect();
    let infos = store::applications(&app.db, &ids).await?;
    Ok(uses
        .into_iter()
        .filter_map(|u| infos.iter().find(|i| i.id == u.application).map(|i| (i.clone(), u)))
        .collect())
}

fn render_top(top: &[(&AppInfo, i64)], metric: &MetricInfo, w: &TopWindow) -> Rendered {
    // porta's value is the string Redis gave back in a whole-hour zone, a number otherwise;
    // clients read both, and the string is what its tests pin.
    let applications: Vec<Value> = top
        .iter()
        .map(|(a, v)| {
            ordered(vec![
                ("name", json!(a.name)),
                ("id", json!(a.id.get())),
                ("value", json!(v.to_string())),
                ("account", json!({"id": a.account_id, "name": a.account_name})),
                ("plan", json!({"id": a.plan_id, "name": a.plan_name})),
                ("service", json!({"id": a.service_id.get()})),
            ])
        })
        .collect();
    let json = ordered(vec![
        ("applications", Value::Array(applications)),
        ("metric", json!(metric_json(metric, metric.system_name.clone()))),
        (
            "period",
            ordered(vec![
                ("name", json!(w.period.as_str())),
                ("since", json!(xmlschema(w.since))),
                ("until", json!(xmlschema(w.until))),
            ]),
        ),
    ]);
    let mut x = Xml::document();
    x.open("top", &[])
        .open("metric", &[])
        .leaf("id", metric.id.get())
        .leaf("name", &metric.friendly_name)
        .leaf("system_name", &metric.system_name)
        .leaf("unit", &metric.unit)
        .close("metric")
        .open("period", &[])
        .leaf("name", w.period.as_str())
        .leaf("since", plain(w.since))
        .leaf("until", plain(w.until))
        .close("period")
        .open("applications", &[]);
    let mut csv = String::from("Application Name,Application ID,Plan Name,Plan ID,Account Name,Account ID,Total\n");
    for (a, v) in top {
        x.open("application", &[])
            .leaf("value", v)
            .leaf("id", a.id.get())
            .leaf("name", &a.name)
            .open("plan", &[])
            .leaf("id", a.plan_id)
            .leaf("name", &a.plan_name)
            .close("plan")
            .open("account", &[])
            .leaf("name", &a.account_name)
            .leaf("id", a.account_id)
            .close("account")
            .close("application");
        csv.push_str(&format!(
            "{},{},{},{},{},{},{v}\n",
            csv_field(&a.name),
            a.id.get(),
            csv_field(&a.plan_name),
            a.plan_id,
            csv_field(&a.account_name),
            a.account_id
        ));
    }
    x.close("applications").close("top");
    Rendered {
        json,
        xml: x.finish(),
        csv,
    }
}

async fn list_errors(State(app): State<AppState>, Path(id): Path<String>, p: Params) -> Result<Response, ApiError> {
    let service: ServiceId = path_id(&id)?;
    if !store::service_exists(&app.db, service).await? {
        return Err(ApiError::NotFound);
    }
    let page: Page = Page::from_form(&p)?;
    let (errors, count) = integration_errors::list(&app.db, service, page).await?;
    let errors: Vec<Value> = errors
        .iter()
        .map(|e| {
            ordered(vec![
                ("timestamp", json!(e.timestamp)),
                ("kind", json!(e.kind)),
                ("message", json!(e.message)),
            ])
        })
        .collect();
    Ok(axum::Json(ordered(vec![("errors", Value::Array(errors)), ("count", json!(count))])).into_response())
}

async fn clear_errors(State(app): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let service: ServiceId = path_id(&id)?;
    if !store::service_exists(&app.db, service).await? {
        return Err(ApiError::NotFound);
    }
    integration_errors::clear(&app.db, service).await?;
    Ok(axum::http::StatusCode::OK.into_response())
}

/// Applications near their limits: each limit of each live application with its use this
/// period, highest first (`threshold`: only those at least that many percent used; `per_page`:
/// how many, 20 unless given).
async fn near_limits(
    State(app): State<AppState>,
    Path(id): Path<String>,
    p: Params,
) -> Result<axum::Json<Value>, ApiError> {
    let service = service(&app, &id).await?;
    let threshold = p.0.parse::<rust_decimal::Decimal>("threshold")?.unwrap_or_default();
    let count = match p.get("per_page") {
        None => 20,
        Some(_) => Page::from_form(&p)?.per_page,
    };
    let near = near_limits_of(&app, service, threshold, count as usize).await?;
    let items: Vec<Value> = near
        .iter()
        .map(|(info, u)| {
            ordered(vec![
                ("application", application_json(info)),
                ("metric", json!({"id": u.metric_id.get(), "system_name": u.metric})),
                ("period", json!(u.period.as_str())),
                ("current_value", json!(u.current)),
                ("max_value", json!(u.max)),
                (
                    "utilization",
                    json!(rust_decimal::Decimal::new(u.used_per_10k(), 2).to_string()),
                ),
            ])
        })
        .collect();
    Ok(axum::Json(ordered(vec![(
        "applications_near_limits",
        Value::Array(items),
    )])))
}

/// Credits and cost analytics (AIGNE Hub's "usage and cost"): what deductions charged, and
/// what the same usage cost upstream, per bucket of a usage window, for an account, a service
/// and a rated metric (each optional). Members limited to some services see those only.
async fn credits_usage(State(app): State<AppState>, caller: Caller, p: Params) -> Result<axum::Json<Value>, ApiError> {
    let id = |name: &str| p.0.parse::<i64>(name);
    let (account, service, metric) = (id("account_id")?, id("service_id")?, id("metric_id")?);
    if let Some(s) = service {
        caller.check_service(ServiceId::new(s))?;
    }
    let window = Window::parse(&window_params(&p), zone(&app).await?, now())?;
    let (from, to) = window.range();
    let charged = store::charged(&app.db, account.map(tollgate_domain::ids::AccountId::new), from, to).await?;
    let mut credits = vec![rust_decimal::Decimal::ZERO; window.buckets.len()];
    let mut cost = credits.clone();
    for c in charged.iter().filter(|c| {
        service.is_none_or(|s| c.service.get() == s)
            && metric.is_none_or(|m| c.metric_id.get() == m)
            && caller.may_see_service(c.service)
    }) {
        if let Some(slot) = tollgate_domain::analytics::series::bucket_of(&window.buckets, c.at) {
            credits[slot] += c.credits;
            cost[slot] += c.upstream_cost;
        }
    }
    let series = |values: &[rust_decimal::Decimal]| {
        let total: rust_decimal::Decimal = values.iter().sum();
        ordered(vec![
            ("total", json!(total.normalize().to_string())),
            (
                "values",
                json!(values.iter().map(|v| v.normalize().to_string()).collect::<Vec<_>>()),
            ),
        ])
    };
    Ok(axum::Json(ordered(vec![
        ("period", period_json(&window)),
        ("account_id", json!(account)),
        ("service_id", json!(service)),
        ("metric_id", json!(metric)),
        ("credits", series(&credits)),
        ("upstream_cost", series(&cost)),
    ])))
}
