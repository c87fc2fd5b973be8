//! Analytics › Usage (3scale Part V, Ch. 29.3 and 31–32): a product's usage of a metric or
//! method over the last 24 hours, 7 days, 30 days, 12 months or a custom range, as a bar
//! chart with its CSV, and its responses by class (2xx, 4xx, 5xx in colours of their own).
//!
//! The figures are the Analytics API's own ([`crate::stats::service_chart`]: the same window
//! rules, the same usage tables, the same CSV); the screen only draws them
//! ([`super::chart`]). Members see their products only.

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
use tollgate_domain::ids::ServiceId;
use tollgate_store::catalog::crud as store;
use tollgate_store::catalog::{metrics, services};

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

/// What the page was asked for, with its defaults: the first product seen, `hits`, 30 days.
struct Asked {
    form: Form,
    service: ServiceId,
}

async fn asked(app: &AppState, screen: &Screen<Analytics>, uri: &Uri) -> Result<Option<Asked>, ApiError> {
    let mut form = Form(
        form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect(),
    );
    let visible: Vec<i64> = store::list(&app.db, &services::SERVICES, &[], None, Page::FIRST)
        .await?
        .iter()
        .map(|s| s.id())
        .filter(|id| screen.principal.may_see_service(ServiceId::new(*id)))
        .collect();
    let service = match form.get("service_id").filter(|v| !v.is_empty()) {
        Some(raw) => {
            let id: ServiceId = crate::error::path_id(raw)?;
            if !screen.principal.may_see_service(id) {
                return Err(ApiError::AccessDenied);
            }
            id
        }
        None => match visible.first() {
            Some(id) => ServiceId::new(*id),
            None => return Ok(None),
        },
    };
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
    Ok(Some(Asked { form, service }))
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

async fn usage_page(app: &AppState, screen: &Screen<Analytics>, uri: &Uri) -> Result<Response, ApiError> {
    let frame = Frame {
        title: "Usage",
        section: "Analytics",
        username: &screen.username,
        csrf: &screen.session.csrf_token,
    };
    let Some(asked) = asked(app, screen, uri).await? else {
        return Ok(super::render::message(
            axum::http::StatusCode::OK,
            "No products yet",
            "Analytics shows a product's traffic: create a product (Products › New product) and send it calls.",
        ));
    };
    let sid = asked.service;
    let products = store::list(&app.db, &services::SERVICES, &[], None, Page::FIRST)
        .await?
        .iter()
        .filter(|s| screen.principal.may_see_service(ServiceId::new(s.id())))
        .map(|s| (s.id(), s.text("name").unwrap_or_default().to_string()))
        .collect();
    let mut metric_choices = Vec::new();
    for m in store::list(&app.db, &metrics::METRICS, &[sid.get()], None, Page::FIRST).await? {
        let system = m.text("system_name").unwrap_or_default().to_string();
        metric_choices.push((system.clone(), m.text("friendly_name").unwrap_or_default().to_string()));
        if system == "hits" {
            for method in store::list(&app.db, &metrics::METHODS, &[sid.get(), m.id()], None, Page::FIRST).await? {
                let name = method.text("friendly_name").unwrap_or_default();
                metric_choices.push((
                    method.text("system_name").unwrap_or_default().to_string(),
                    format!("↳ {name}"),
                ));
            }
        }
    }
    let get = |k: &str| asked.form.get(k).unwrap_or("").to_string();
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(asked.form.0.iter().filter(|(k, _)| k != "service_id"))
        .finish();
    let params = api_params(&asked.form);
    let (name, total, usage, codes, codes_chart, error, top) =
        match crate::stats::service_chart(app, sid, &params, &CLASSES.map(|(code, _)| code)).await {
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
                let (from, to) = c.usage.window.range();
                let top = crate::stats::top_of(app, sid, c.metric, from, to).await?;
                let top = top
                    .into_iter()
                    .map(|(a, used)| (application_link(&a), a.name, a.account_name, used))
                    .collect();
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
    // Limits 80 % used or more, now (3scale's "applications near their limits").
    let near = crate::stats::near_limits_of(app, sid, rust_decimal::Decimal::from(80), 10)
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
    let (errors, error_count) =
        tollgate_store::integration_errors::list(&app.db, sid, Page { page: 1, per_page: 10 }).await?;
    let integration_errors = errors
        .into_iter()
        .map(|e| (super::render::when(&e.timestamp), e.kind, e.message))
        .collect();
    Ok(html(UsagePage {
        frame,
        top,
        near,
        integration_errors,
        error_count,
        products,
        service: sid.get(),
        metrics: metric_choices,
        metric: get("metric_name"),
        period: get("period"),
        since: get("since"),
        until: get("until"),
        name,
        total,
        usage,
        csv: format!("/console/analytics/usage.csv?service_id={}&{query}", sid.get()),
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
        let charted = crate::stats::service_chart(&app, asked.service, &api_params(&asked.form), &[]).await?;
        Ok::<_, ApiError>((asked.service, charted.csv))
    }
    .await;
    match done {
        Ok((sid, csv)) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"usage-{}.csv\"", sid.get()),
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
