//! Analytics › Usage (3scale Part V, Ch. 29.3 and 31–32): a product's, a backend's or an
//! application's usage of a metric or method over the last 24 hours, 7 days, 30 days, 12
//! months or a custom range, as a bar chart with its CSV, and (products, applications) its
//! responses by class (2xx, 4xx, 5xx in colours of their own); for a product also its top
//! applications, those near their limits and its integration errors.
//!
//! The figures are the Analytics API's own ([`crate::stats::chart_of`]: the same window
//! rules, the same usage tables, the same CSV); the screen only draws them
//! ([`super::chart`]). Members see their products only, and a backend or an application only
//! when they may see every product it serves (the API's rule).

use super::chart::{self, Chart, Series};
use super::pages::Frame;
use super::render::html;
use super::session::{Analytics, Refused, Screen};
use crate::error::ApiError;
use crate::params::Params;
use crate::state::AppState;
use askama::Template;
use axum::extract::State;
use axum::http::{header, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::DateTime;
use tollgate_domain::analytics::Granularity;
use tollgate_domain::form::{Form, Page};
use tollgate_domain::ids::{ApplicationId, BackendId, ServiceId};
use tollgate_store::analytics::{self, AppInfo, Owner};
use tollgate_store::catalog::crud as store;
use tollgate_store::catalog::{backends, metrics, services};

/// The periods offered, as the Analytics API names them, and how the screen says them.
pub const PERIODS: [(&str, &str); 4] = [
    ("day", "Last 24 hours"),
    ("week", "Last 7 days"),
    ("month", "Last 30 days"),
    ("year", "Last 12 months"),
];

/// Response classes, each with its colour's class.
const CLASSES: [(&str, &str); 3] = [("2XX", "c2xx"), ("4XX", "c4xx"), ("5XX", "c5xx")];

#[derive(Template)]
#[template(path = "console/analytics.html")]
struct UsagePage<'a> {
    frame: Frame<'a>,
    /// `product`, `backend` or `application`, the parameter naming it and its id.
    of: &'static str,
    param: &'static str,
    owner_id: i64,
    backends: Vec<(i64, String)>,
    /// An application's page (when the usage is an application's).
    application_link: String,
    products: Vec<(i64, String)>,
    service: i64,
    metrics: Vec<(String, String)>,
    metric: String,
    period: String,
    since: String,
    until: String,
    /// The metric's name, its total, its chart, the CSV link.
    name: String,
    total: i64,
    usage: Chart,
    csv: String,
    /// Responses by class: (class, its colour class, total), and their chart.
    has_codes: bool,
    codes: Vec<(&'static str, &'static str, i64)>,
    codes_chart: Chart,
    error: String,
    /// The window's top applications by the metric: link, name, account, used.
    top: Vec<(String, String, String, i64)>,
    /// The newest integration errors (when, kind, message) and how many are kept.
    integration_errors: Vec<(String, String, String)>,
    error_count: i64,
    /// Limits near their end: link, application, metric, period, current, max, used.
    near: Vec<(String, String, String, &'static str, i64, i64, String)>,
    width: f64,
    height: f64,
}

/// Whose usage the page shows.
enum Of {
    Product(ServiceId),
    Backend(BackendId),
    Application(AppInfo),
}

impl Of {
    fn owner(&self) -> Owner {
        match self {
            Of::Product(s) => Owner::Service(*s),
            Of::Backend(b) => Owner::Backend(*b),
            Of::Application(a) => Owner::Application(a.id),
        }
    }

    /// The query parameter that names it.
    fn param(&self) -> (&'static str, i64) {
        match self {
            Of::Product(s) => ("service_id", s.get()),
            Of::Backend(b) => ("backend_api_id", b.get()),
            Of::Application(a) => ("application_id", a.id.get()),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Of::Product(_) => "product",
            Of::Backend(_) => "backend",
            Of::Application(_) => "application",
        }
    }
}

/// What the page was asked for, with its defaults: the first product seen, `hits`, 30 days.
struct Asked {
    form: Form,
    of: Of,
}

/// Whose usage `form` asks for, if `staff` may see it (`None`: no product to show yet).
async fn of_asked(app: &AppState, screen: &Screen<Analytics>, form: &Form) -> Result<Option<Of>, ApiError> {
    let may_see = |id: ServiceId| match screen.principal.may_see_service(id) {
        true => Ok(()),
        false => Err(ApiError::AccessDenied),
    };
    if let Some(raw) = form.text("application_id") {
        let id: ApplicationId = crate::error::path_id(raw)?;
        let info = analytics::application(&app.db, id).await?.ok_or(ApiError::NotFound)?;
        may_see(info.service_id)?;
        return Ok(Some(Of::Application(info)));
    }
    if let Some(raw) = form.text("backend_api_id") {
        let id: BackendId = crate::error::path_id(raw)?;
        if !analytics::backend_exists(&app.db, id).await? {
            return Err(ApiError::NotFound);
        }
        for service in analytics::backend_services(&app.db, id).await? {
            may_see(service)?;
        }
        return Ok(Some(Of::Backend(id)));
    }
    if let Some(raw) = form.text("service_id") {
        let id: ServiceId = crate::error::path_id(raw)?;
        may_see(id)?;
        return Ok(Some(Of::Product(id)));
    }
    let first = store::list(&app.db, &services::SERVICES, &[], None, Page::FIRST)
        .await?
        .iter()
        .map(|s| ServiceId::new(s.id()))
        .find(|id| screen.principal.may_see_service(*id));
    Ok(first.map(Of::Product))
}

async fn asked(app: &AppState, screen: &Screen<Analytics>, uri: &Uri) -> Result<Option<Asked>, ApiError> {
    let mut form = super::session::query_of(uri);
    let Some(of) = of_asked(app, screen, &form).await? else {
        return Ok(None);
    };
    // One owner per page: the other owners' parameters are dropped.
    let (param, id) = of.param();
    form.0
        .retain(|(k, _)| !matches!(k.as_str(), "service_id" | "backend_api_id" | "application_id"));
    form.0.push((param.to_string(), id.to_string()));
    let custom = form.get("since").is_some_and(|s| !s.is_empty());
    let mut defaults = vec![("metric_name", "hits")];
    if !custom {
        defaults.push(("period", "month"));
    }
    for (k, v) in defaults {
        if form.get(k).is_none_or(str::is_empty) {
            form.0.retain(|(n, _)| n != k);
            form.0.push((k.to_string(), v.to_string()));
        }
    }
    if custom {
        form.0.retain(|(n, _)| n != "period");
        if form.get("until").is_none_or(str::is_empty) {
            form.0.retain(|(n, _)| n != "until");
            form.0
                .push(("until".into(), chrono::Utc::now().format("%Y-%m-%d").to_string()));
        }
        // A range's buckets: hours for up to two days, days for up to three months, else months.
        if form.get("granularity").is_none_or(str::is_empty) {
            let day = |k: &str| {
                form.get(k)
                    .and_then(|v| chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").ok())
            };
            if let (Some(since), Some(until)) = (day("since"), day("until")) {
                let granularity = match (until - since).num_days() {
                    ..=1 => "hour",
                    2..=92 => "day",
                    _ => "month",
                };
                form.0.retain(|(n, _)| n != "granularity");
                form.0.push(("granularity".into(), granularity.into()));
            }
        }
    }
    Ok(Some(Asked { form, of }))
}

fn application_link(a: &tollgate_store::analytics::AppInfo) -> String {
    format!("/console/accounts/{}/applications/{}", a.account_id, a.id.get())
}

/// The Analytics API's parameters for what the page shows: a range's `until` date is the
/// whole day (the API reads a bare date as its first second).
fn api_params(form: &Form) -> Params {
    let mut form = form.clone();
    for (k, v) in form.0.iter_mut() {
        if k == "until" && chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").is_ok() {
            v.push_str(" 23:59:59");
        }
    }
    Params(form)
}

/// A bucket's start as its axis shows it: hours for a day, days for a month, months for a year.
fn bucket_label(start: i64, g: Granularity, tz: chrono_tz::Tz) -> String {
    let t = DateTime::from_timestamp(start, 0)
        .unwrap_or_default()
        .with_timezone(&tz);
    match g {
        Granularity::Hour | Granularity::SixHours => t.format("%-d %b %H:%M").to_string(),
        Granularity::Day => t.format("%-d %b").to_string(),
        Granularity::Month | Granularity::Eternity => t.format("%b %Y").to_string(),
    }
}

pub async fn usage(State(app): State<AppState>, screen: Screen<Analytics>, uri: Uri) -> Response {
    match usage_page(&app, &screen, &uri).await {
        Ok(r) => r,
        Err(e) => Refused::from(e).into_response(),
    }
}

/// The metrics (and the methods of `hits`) of a product or a backend, as the metric select
/// offers them: (system name, friendly name).
async fn metric_choices(app: &AppState, of: &Of) -> Result<Vec<(String, String)>, ApiError> {
    let (metrics_of, methods_of, scope) = match of {
        Of::Product(s) => (&metrics::METRICS, &metrics::METHODS, s.get()),
        Of::Application(a) => (&metrics::METRICS, &metrics::METHODS, a.service_id.get()),
        Of::Backend(b) => (&metrics::BACKEND_METRICS, &metrics::BACKEND_METHODS, b.get()),
    };
    let mut choices = Vec::new();
    for m in store::list(&app.db, metrics_of, &[scope], None, Page::FIRST).await? {
        let system = m.text("system_name").unwrap_or_default().to_string();
        choices.push((system.clone(), m.text("friendly_name").unwrap_or_default().to_string()));
        if system == "hits" {
            for method in store::list(&app.db, methods_of, &[scope, m.id()], None, Page::FIRST).await? {
                let name = method.text("friendly_name").unwrap_or_default();
                choices.push((
                    method.text("system_name").unwrap_or_default().to_string(),
                    format!("↳ {name}"),
                ));
            }
        }
    }
    Ok(choices)
}

/// (id, name) of every record of `entity` `staff` may see, for a select.
async fn choices_of(
    app: &AppState,
    entity: &'static tollgate_store::catalog::crud::Entity,
    visible: impl Fn(i64) -> bool,
) -> Result<Vec<(i64, String)>, ApiError> {
    Ok(store::list(&app.db, entity, &[], None, Page::FIRST)
        .await?
        .iter()
        .filter(|r| visible(r.id()))
        .map(|r| (r.id(), r.text("name").unwrap_or_default().to_string()))
        .collect())
}

async fn usage_page(app: &AppState, screen: &Screen<Analytics>, uri: &Uri) -> Result<Response, ApiError> {
    let Some(asked) = asked(app, screen, uri).await? else {
        return Ok(super::render::message(
            axum::http::StatusCode::OK,
            "No products yet",
            "Analytics shows a product's traffic: create a product (Products › New product) and send it calls.",
        ));
    };
    let of = &asked.of;
    let title = match of {
        Of::Product(_) => "Usage".to_string(),
        Of::Backend(_) => "Backend usage".to_string(),
        Of::Application(a) => format!("Usage of {} ({})", a.name, a.account_name),
    };
    let frame = Frame {
        title: &title,
        section: "Analytics",
        username: &screen.username,
        csrf: &screen.session.csrf_token,
    };
    let products = choices_of(app, &services::SERVICES, |id| {
        screen.principal.may_see_service(ServiceId::new(id))
    })
    .await?;
    let backends = match of {
        Of::Backend(_) => choices_of(app, &backends::BACKENDS, |_| true).await?,
        _ => Vec::new(),
    };
    let metric_choices = metric_choices(app, of).await?;
    let get = |k: &str| asked.form.get(k).unwrap_or("").to_string();
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(asked.form.0.iter())
        .finish();
    let params = api_params(&asked.form);
    // Responses are counted per product and application, not per backend.
    let codes_asked: &[&str] = match of {
        Of::Backend(_) => &[],
        _ => &CLASSES.map(|(code, _)| code),
    };
    let (name, total, usage, codes, codes_chart, error, top) =
        match crate::stats::chart_of(app, of.owner(), &params, codes_asked).await {
            Ok(c) => {
                let w = &c.usage.window;
                let labels: Vec<String> = w
                    .buckets
                    .iter()
                    .map(|(s, _)| bucket_label(*s, w.granularity, w.tz))
                    .collect();
                let usage = chart::bars(
                    &labels,
                    &[Series {
                        class: "usage",
                        name: &c.name,
                        values: &c.usage.values,
                    }],
                    6,
                );
                let by_class: Vec<_> = CLASSES
                    .iter()
                    .zip(&c.by_code)
                    .map(|((class, css), values)| (*class, *css, values))
                    .collect();
                let series: Vec<Series<'_>> = by_class
                    .iter()
                    .map(|(class, css, values)| Series {
                        class: css,
                        name: class,
                        values,
                    })
                    .collect();
                let codes_chart = chart::bars(&labels, &series, 6);
                let codes = by_class.iter().map(|(c, css, v)| (*c, *css, v.iter().sum())).collect();
                let top = match of {
                    Of::Product(sid) => {
                        let (from, to) = c.usage.window.range();
                        crate::stats::top_of(app, *sid, c.metric, from, to)
                            .await?
                            .into_iter()
                            .map(|(a, used)| (application_link(&a), a.name, a.account_name, used))
                            .collect()
                    }
                    _ => Vec::new(),
                };
                (c.name, c.usage.total, usage, codes, codes_chart, String::new(), top)
            }
            // A window or metric the API would refuse: said above an empty chart.
            Err(ApiError::Stats(e)) => {
                let none = chart::bars(&[], &[], 1);
                let also = chart::bars(&[], &[], 1);
                (get("metric_name"), 0, none, Vec::new(), also, e.to_string(), Vec::new())
            }
            Err(e) => return Err(e),
        };
    let (mut near, mut integration_errors, mut error_count) = (Vec::new(), Vec::new(), 0);
    if let Of::Product(sid) = of {
        // Limits 80 % used or more, now (3scale's "applications near their limits").
        near = crate::stats::near_limits_of(app, *sid, rust_decimal::Decimal::from(80), 10)
            .await?
            .into_iter()
            .map(|(a, u)| {
                let used = rust_decimal::Decimal::new(u.used_per_10k(), 2);
                (
                    application_link(&a),
                    a.name,
                    u.metric,
                    u.period.as_str(),
                    u.current,
                    u.max,
                    format!("{used}%"),
                )
            })
            .collect();
        // What went wrong between gateways and the control plane (Ch. 29.5), newest first.
        let (errors, count) =
            tollgate_store::integration_errors::list(&app.db, *sid, Page { page: 1, per_page: 10 }).await?;
        integration_errors = errors
            .into_iter()
            .map(|e| (super::render::when(&e.timestamp), e.kind, e.message))
            .collect();
        error_count = count;
    }
    let (param, owner_id) = of.param();
    let (service, application_link_back) = match of {
        Of::Product(s) => (s.get(), String::new()),
        Of::Application(a) => (a.service_id.get(), application_link(a)),
        Of::Backend(_) => (0, String::new()),
    };
    Ok(html(UsagePage {
        frame,
        of: of.kind(),
        param,
        owner_id,
        backends,
        application_link: application_link_back,
        top,
        near,
        integration_errors,
        error_count,
        products,
        service,
        metrics: metric_choices,
        metric: get("metric_name"),
        period: get("period"),
        since: get("since"),
        until: get("until"),
        name,
        total,
        usage,
        csv: format!("/console/analytics/usage.csv?{query}"),
        has_codes: !codes_asked.is_empty(),
        codes,
        codes_chart,
        error,
        width: chart::WIDTH,
        height: chart::HEIGHT,
    }))
}

/// The chart's figures as the Analytics API's CSV.
pub async fn usage_csv(State(app): State<AppState>, screen: Screen<Analytics>, uri: Uri) -> Response {
    let done = async {
        let Some(asked) = asked(&app, &screen, &uri).await? else {
            return Err(ApiError::NotFound);
        };
        let charted = crate::stats::chart_of(&app, asked.of.owner(), &api_params(&asked.form), &[]).await?;
        Ok::<_, ApiError>((asked.of, charted.csv))
    }
    .await;
    match done {
        Ok((of, csv)) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"usage-{}-{}.csv\"", of.kind(), of.param().1),
                ),
            ],
            csv,
        )
            .into_response(),
        Err(ApiError::Stats(e)) => (axum::http::StatusCode::UNPROCESSABLE_ENTITY, e.to_string()).into_response(),
        Err(e) => Refused::from(e).into_response(),
    }
}

pub async fn to_usage() -> Redirect {
    Redirect::to("/console/analytics/usage")
}

/// Analytics › Backends: the first backend's usage (the page's select leads to the others).
pub async fn to_backends(State(app): State<AppState>, _screen: Screen<Analytics>) -> Response {
    match store::list(&app.db, &backends::BACKENDS, &[], None, Page { page: 1, per_page: 1 }).await {
        Ok(list) => match list.first() {
            Some(b) => Redirect::to(&format!("/console/analytics/usage?backend_api_id={}", b.id())).into_response(),
            None => super::render::message(
                axum::http::StatusCode::OK,
                "No backends yet",
                "A backend's usage is the calls every product using it sent it: add one in Products › Backends.",
            ),
        },
        Err(e) => Refused::from(e).into_response(),
    }
}
