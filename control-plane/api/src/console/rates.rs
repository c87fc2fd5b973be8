//! AIGNE Hub's screens over Tollgate's credit rates: Config › Model Rates (a product's rates as
//! a table, and the "Add Model Rate" dialog: model name — the metric —, rate type, providers,
//! model cost, credit rate, description, and the plan it is for; several rates per metric for
//! different plans), Billing & Credits › Settings (the credit payment link, starter credits,
//! the low-balance threshold), and the margin report (credits charged against upstream cost
//! per rated metric and month, as a table and a stacked chart).
//!
//! A rate is the catalog resource `POST /admin/api/services/{id}/credit_rates.json` writes
//! ([`rates::CREDIT_RATES`], created through the same [`store::create`]); the report is
//! [`margins::margins`], the API's `credit_margins.json`. The dialog is an HTML `<dialog>`:
//! `console.js` opens it in place, and without the script its button is a link to the page
//! with the dialog open — the same page a refusal comes back to, errors next to their fields.

use super::billing::frame;
use super::chart::{self, Chart, Series};
use super::pages::Frame;
use super::render::html;
use super::resources::{errors_of, Input};
use super::session::{query_of, respond, CreditSettings, Rates, RatesWrite, Refused, Screen, Staff, Submitted};
use crate::error::ApiError;
use crate::state::AppState;
use askama::Template;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use tollgate_domain::credits::SettingsPatch;
use tollgate_domain::form::{Form, FromForm, Page};
use tollgate_domain::ids::ServiceId;
use tollgate_store::catalog::{crud as store, metrics, plans, services};
use tollgate_store::credits::{margins, rates};

type Errors = BTreeMap<String, Vec<String>>;

/// AIGNE Hub's rate types (what a model handles).
pub const RATE_TYPES: [&str; 4] = ["Text", "Image", "Embedding", "Audio"];

/// The products `staff` may see (id, name), and the one asked for (default: the first).
async fn product_of(
    app: &AppState,
    staff: &Staff,
    q: &Form,
) -> Result<(Vec<(i64, String)>, Option<ServiceId>), ApiError> {
    let products: Vec<(i64, String)> = store::list(&app.db, &services::SERVICES, &[], None, Page::FIRST)
        .await?
        .iter()
        .filter(|s| staff.principal.may_see_service(ServiceId::new(s.id())))
        .map(|s| (s.id(), s.text("name").unwrap_or_default().to_string()))
        .collect();
    let chosen = match q.text("service_id") {
        Some(raw) => {
            let id: ServiceId = crate::error::path_id(raw)?;
            if !staff.principal.may_see_service(id) {
                return Err(ApiError::AccessDenied);
            }
            Some(id)
        }
        None => products.first().map(|(id, _)| ServiceId::new(*id)),
    };
    Ok((products, chosen))
}

/// A product's metrics and the methods of its hits, as a select offers them (id, name).
async fn metric_choices(app: &AppState, sid: ServiceId) -> Result<Vec<(String, String)>, ApiError> {
    let mut out = Vec::new();
    for m in store::list(&app.db, &metrics::METRICS, &[sid.get()], None, Page::FIRST).await? {
        out.push((
            m.id().to_string(),
            m.text("friendly_name").unwrap_or_default().to_string(),
        ));
        if m.text("system_name") == Some("hits") {
            for method in store::list(&app.db, &metrics::METHODS, &[sid.get(), m.id()], None, Page::FIRST).await? {
                let name = method.text("friendly_name").unwrap_or_default();
                out.push((method.id().to_string(), format!("↳ {name}")));
            }
        }
    }
    Ok(out)
}

/// One rate as the table shows it.
struct RateRow {
    model: String,
    rate_type: String,
    providers: String,
    model_cost: String,
    credit_rate: String,
    plan: String,
    description: String,
    delete: String,
}

#[derive(Template)]
#[template(path = "console/model_rates.html")]
struct RatesPage<'a> {
    frame: Frame<'a>,
    products: Vec<(i64, String)>,
    service: i64,
    rows: Vec<RateRow>,
    inputs: Vec<Input>,
    /// The dialog shows open (asked for without the script, or sent back refused).
    open: bool,
    refusal: String,
    notice: String,
}

async fn rates_page(
    app: &AppState,
    staff: &Staff,
    q: &Form,
    sent: Option<&Form>,
    errors: Errors,
) -> Result<Response, ApiError> {
    let (products, chosen) = product_of(app, staff, q).await?;
    let Some(sid) = chosen else {
        return Ok(super::render::message(
            StatusCode::OK,
            "No products yet",
            "Model rates price a product's metrics in credits: create a product first (Products › New product).",
        ));
    };
    let list = store::list(&app.db, &rates::CREDIT_RATES, &[sid.get()], None, Page::FIRST).await?;
    let ids = |field: &str| list.iter().filter_map(|r| r.int(field)).collect::<Vec<_>>();
    let metric_names =
        tollgate_store::catalog::names::of(&app.db, ("metrics", "friendly_name"), &ids("metric_id")).await?;
    let plan_names =
        tollgate_store::catalog::names::of(&app.db, ("application_plans", "name"), &ids("application_plan_id")).await?;
    let money =
        |r: &tollgate_store::catalog::resource::Record, f: &str| r.money(f).unwrap_or_default().normalize().to_string();
    let rows = list
        .iter()
        .map(|r| RateRow {
            model: r
                .int("metric_id")
                .and_then(|m| metric_names.get(&m).cloned())
                .unwrap_or_default(),
            rate_type: r.text("rate_type").unwrap_or_default().to_string(),
            providers: r.text("providers").unwrap_or_default().to_string(),
            model_cost: money(r, "upstream_cost_per_unit"),
            credit_rate: money(r, "credits_per_unit"),
            plan: r
                .int("application_plan_id")
                .and_then(|p| plan_names.get(&p).cloned())
                .unwrap_or_else(|| "All plans".into()),
            description: r.text("description").unwrap_or_default().to_string(),
            delete: format!("/console/services/{}/credit_rates/{}/delete", sid, r.id()),
        })
        .collect();
    let mut plan_choices = vec![(String::new(), "All plans".to_string())];
    plan_choices.extend(
        store::list(&app.db, &plans::APPLICATION_PLANS, &[sid.get()], None, Page::FIRST)
            .await?
            .iter()
            .map(|p| (p.id().to_string(), p.text("name").unwrap_or_default().to_string())),
    );
    let value = |k: &str, default: &str| sent.and_then(|f| f.get(k)).unwrap_or(default).to_string();
    let input = |name: &'static str, label: &str, control: &'static str, options: Vec<(String, String)>| Input {
        name,
        label: label.into(),
        control,
        value: value(name, if name == "rate_type" { "Text" } else { "" }),
        options,
        errors: errors.get(name).map(|e| e.join("; ")).unwrap_or_default(),
        required: matches!(
            name,
            "metric_id" | "credits_per_unit" | "rate_type" | "application_plan_id"
        ),
    };
    let inputs = vec![
        input("metric_id", "Model name", "select", metric_choices(app, sid).await?),
        input(
            "rate_type",
            "Rate type",
            "select",
            RATE_TYPES.iter().map(|t| (t.to_string(), t.to_string())).collect(),
        ),
        input("providers", "Providers", "text", Vec::new()),
        input(
            "upstream_cost_per_unit",
            "Model cost (per unit, upstream)",
            "text",
            Vec::new(),
        ),
        input("credits_per_unit", "Credit rate (credits per unit)", "text", Vec::new()),
        input("application_plan_id", "For plan", "select", plan_choices),
        input("description", "Description", "text", Vec::new()),
    ];
    let shown = [
        "metric_id",
        "rate_type",
        "providers",
        "upstream_cost_per_unit",
        "credits_per_unit",
        "application_plan_id",
        "description",
    ];
    let status = crate::console::resources::status_for(&errors);
    Ok((
        status,
        html(RatesPage {
            frame: frame(staff, "Model rates"),
            products,
            service: sid.get(),
            rows,
            inputs,
            open: q.get("add").is_some() || !errors.is_empty(),
            refusal: super::resources::unshown(&errors, &shown),
            notice: q.get("notice").unwrap_or("").to_string(),
        }),
    )
        .into_response())
}

pub async fn list(State(app): State<AppState>, screen: Screen<Rates>, uri: Uri) -> Response {
    respond(rates_page(&app, &screen, &query_of(&uri), None, Errors::new()).await)
}

/// The dialog sent: a rate made by the API's own create, or the dialog again, refused by field.
pub async fn add(State(app): State<AppState>, sent: Submitted<RatesWrite>) -> Response {
    let f = &sent.form;
    let q = Form(f.0.iter().filter(|(k, _)| k == "service_id").cloned().collect());
    let done = async {
        let (_, chosen) = product_of(&app, &sent.screen, &q).await?;
        let sid = chosen.ok_or(ApiError::NotFound)?;
        let form = Form(
            f.0.iter()
                .filter(|(k, v)| k != "service_id" && !(k == "application_plan_id" && v.is_empty()))
                .cloned()
                .collect(),
        );
        let values = rates::CREDIT_RATES.resource.values_for_create(&form)?;
        store::create(&app.db, &rates::CREDIT_RATES, &[sid.get()], values).await?;
        Ok::<_, ApiError>(sid)
    };
    match done.await {
        Ok(sid) => Redirect::to(&format!(
            "/console/finance/model_rates?service_id={sid}&notice={}",
            super::session::urlencode("The model rate is added.")
        ))
        .into_response(),
        Err(ApiError::Invalid(invalid)) => {
            respond(rates_page(&app, &sent.screen, &q, Some(f), errors_of(&invalid)).await)
        }
        Err(e) => Refused::from(e).into_response(),
    }
}

#[derive(Template)]
#[template(path = "console/margins.html")]
struct MarginsPage<'a> {
    frame: Frame<'a>,
    products: Vec<(i64, String)>,
    service: i64,
    month: String,
    /// Metric, credits charged, upstream cost, margin, margin as a share of the charge.
    rows: Vec<(String, String, String, String, String)>,
    chart: Chart,
    months: Vec<(String, String, String, String)>,
    error: String,
    width: f64,
    height: f64,
}

/// Ten-thousandths of a credit, as the chart takes amounts.
fn units(d: Decimal) -> i64 {
    use rust_decimal::prelude::ToPrimitive;
    (d * Decimal::from(10_000)).round().to_i64().unwrap_or(0)
}

fn share(part: Decimal, whole: Decimal) -> String {
    match whole.is_zero() {
        true => "—".into(),
        false => format!("{}%", (part * Decimal::ONE_HUNDRED / whole).round_dp(1).normalize()),
    }
}

/// The months a report offers: the asked one and the five before it, oldest first.
fn months_to(last: chrono::NaiveDate) -> Vec<String> {
    (0..6u32)
        .rev()
        .filter_map(|back| last.checked_sub_months(chrono::Months::new(back)))
        .map(|d| d.format("%Y-%m").to_string())
        .collect()
}

async fn margins_page(app: &AppState, staff: &Staff, q: &Form) -> Result<Response, ApiError> {
    let (products, chosen) = product_of(app, staff, q).await?;
    let Some(sid) = chosen else {
        return Ok(super::render::message(
            StatusCode::OK,
            "No products yet",
            "The margin report compares the credits a product's rated metrics charged with their upstream cost.",
        ));
    };
    let this_month = chrono::Utc::now().format("%Y-%m").to_string();
    let asked = q.text("month").unwrap_or(&this_month).to_string();
    let (month, error) = match tollgate_domain::invoice::parse_period(&asked) {
        Some(_) => (asked, String::new()),
        None => (this_month.clone(), "Month must be YYYY-MM.".to_string()),
    };
    let rows = margins::margins(&app.db, sid, Some(&month))
        .await?
        .iter()
        .map(|m| {
            (
                m.metric.clone(),
                m.credits_charged.normalize().to_string(),
                m.upstream_cost.normalize().to_string(),
                m.margin().to_string(),
                share(m.margin(), m.credits_charged),
            )
        })
        .collect();
    // The chart: each month's charge as its upstream cost with the margin on top.
    let first = tollgate_domain::invoice::parse_period(&month).unwrap_or_default();
    let mut labels = Vec::new();
    let (mut costs, mut gains) = (Vec::new(), Vec::new());
    let mut months = Vec::new();
    for m in months_to(first) {
        let all = margins::margins(&app.db, sid, Some(&m)).await?;
        let charged: Decimal = all.iter().map(|x| x.credits_charged).sum();
        let cost: Decimal = all.iter().map(|x| x.upstream_cost).sum();
        costs.push(units(cost.min(charged).max(Decimal::ZERO)));
        gains.push(units((charged - cost).max(Decimal::ZERO)));
        months.push((
            m.clone(),
            charged.normalize().to_string(),
            cost.normalize().to_string(),
            (charged - cost).normalize().to_string(),
        ));
        labels.push(m);
    }
    let chart = chart::scaled_bars(
        &labels,
        &[
            Series {
                class: "cost",
                name: "upstream cost",
                values: &costs,
            },
            Series {
                class: "margin",
                name: "margin",
                values: &gains,
            },
        ],
        6,
        4,
    );
    Ok(html(MarginsPage {
        frame: frame(staff, "Margin report"),
        products,
        service: sid.get(),
        month,
        rows,
        chart,
        months,
        error,
        width: chart::WIDTH,
        height: chart::HEIGHT,
    }))
}

pub async fn margins(State(app): State<AppState>, screen: Screen<Rates>, uri: Uri) -> Response {
    respond(margins_page(&app, &screen, &query_of(&uri)).await)
}

#[derive(Template)]
#[template(path = "console/credit_settings.html")]
struct SettingsPage<'a> {
    frame: Frame<'a>,
    inputs: Vec<Input>,
    saved: bool,
}

fn settings_inputs(s: &tollgate_domain::credits::Settings, sent: Option<&Form>, errors: &Errors) -> Vec<Input> {
    let input = |name: &'static str, label: &str, stored: String| Input {
        name,
        label: label.into(),
        control: if name == "purchase_url" { "url" } else { "text" },
        value: sent.and_then(|f| f.get(name)).map_or(stored, str::to_string),
        options: Vec::new(),
        errors: errors.get(name).map(|e| e.join("; ")).unwrap_or_default(),
        required: false,
    };
    vec![
        input(
            "purchase_url",
            "Credit payment link",
            s.purchase_url.clone().unwrap_or_default(),
        ),
        input(
            "starter_credits",
            "Starter credits (a new prepaid account's first grant)",
            s.starter_credits.to_string(),
        ),
        input(
            "low_balance_threshold",
            "Low balance threshold (the developer is told, with the link)",
            s.low_balance_threshold.to_string(),
        ),
    ]
}

pub async fn settings(State(app): State<AppState>, screen: Screen<CreditSettings>, uri: Uri) -> Response {
    let done = async {
        let s = tollgate_store::credits::settings::read(&app.db).await?;
        Ok(html(SettingsPage {
            frame: frame(&screen, "Credit settings"),
            inputs: settings_inputs(&s, None, &Errors::new()),
            saved: uri.query() == Some("saved"),
        }))
    };
    respond(done.await)
}

pub async fn update_settings(State(app): State<AppState>, sent: Submitted<CreditSettings>) -> Response {
    let done = async {
        match SettingsPatch::from_form(&sent.form) {
            Ok(patch) => {
                tollgate_store::credits::settings::update(&app.db, patch).await?;
                Ok(Redirect::to("/console/finance/credit_settings?saved").into_response())
            }
            Err(invalid) => {
                let s = tollgate_store::credits::settings::read(&app.db).await?;
                Ok((
                    StatusCode::UNPROCESSABLE_ENTITY,
                    html(SettingsPage {
                        frame: frame(&sent.screen, "Credit settings"),
                        inputs: settings_inputs(&s, Some(&sent.form), &errors_of(&invalid)),
                        saved: false,
                    }),
                )
                    .into_response())
            }
        }
    };
    respond(done.await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_looks_back_six_months() {
        let last = chrono::NaiveDate::from_ymd_opt(2026, 2, 1).unwrap_or_default();
        assert_eq!(
            months_to(last),
            ["2025-09", "2025-10", "2025-11", "2025-12", "2026-01", "2026-02"]
        );
        assert_eq!(units(Decimal::new(12345, 4)), 12345);
        assert_eq!(share(Decimal::ONE, Decimal::from(3)), "33.3%");
        assert_eq!(share(Decimal::ONE, Decimal::ZERO), "—");
    }
}
