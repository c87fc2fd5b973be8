//! The Billing API (3scale's `/api/invoices…`, finance scope), the billing settings, earnings,
//! and the master API's billing jobs. Thin: each handler parses, calls
//! [`tollgate_store::billing`], and renders 3scale's shapes (JSON, CSV, PDF).

use crate::error::{path_id, ApiError};
use crate::params::Params;
use crate::render::{created, money_number, wrap, wrap_list};
use crate::routes::{am, finance, Routes};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use tollgate_domain::access::{Access, Section};
use tollgate_domain::billing::{Settings, SettingsPatch};
use tollgate_domain::form::{Form, FromForm};
use tollgate_domain::ids::{AccountId, InvoiceId, PROVIDER_ID};
use tollgate_domain::invoice::{self, Line, LineType, NewLine};
use tollgate_domain::money::{display, minor_units};
use tollgate_domain::Invalid;
use tollgate_store::billing::invoices::{self, AccountFrom, Filter, View};
use tollgate_store::billing::payments::{self, PaymentTransaction};
use tollgate_store::billing::{run, settings};

pub fn routes(r: &mut Routes) {
    let (read, write) = (finance(Access::Read), finance(Access::Write));
    let settings = "/admin/api/billing/settings.json";
    r.get(
        settings,
        am(Access::Read, Section::Finance),
        "Billing settings: mode, currency (and its minor units), charging, footnote, VAT-0 text, numbering, gateway",
        show_settings,
    );
    r.put(
        settings,
        am(Access::Write, Section::Finance),
        "Update the billing settings (bad fields all reported, named)",
        update_settings,
    );
    r.get(
        "/api/invoices.json",
        read,
        "Invoices (finance scope): filters account_id, state, month; page, per_page (≤ 20)",
        list,
    );
    r.post(
        "/api/invoices.json",
        write,
        "Create a manual invoice: account_id, period (YYYY-MM, default this month)",
        create,
    );
    r.get("/api/invoices.csv", read, "Invoices as CSV (same filters)", csv);
    r.get(
        "/api/invoices/{id}",
        read,
        "One invoice, with totals (cost, cost_without_vat, vat_amount); .pdf: the invoice as a PDF, regenerated on request",
        show,
    )
    .documented(&["/api/invoices/{id}.json", "/api/invoices/{id}.pdf"]);
    r.put(
        "/api/invoices/{id}",
        write,
        "Update friendly_id or period while open or finalized",
        update,
    );
    r.put(
        "/api/invoices/{id}/state.json",
        write,
        "Change state: finalized, pending, paid, unpaid, failed, cancelled (illegal moves are 422)",
        set_state,
    );
    r.post(
        "/api/invoices/{id}/charge.json",
        write,
        "Charge a pending or unpaid invoice through the payment gateway",
        charge,
    );
    let lines = "/api/invoices/{id}/line_items.json";
    r.get(lines, read, "Line items", list_lines);
    r.post(
        lines,
        write,
        "Add a line: name, description, quantity, cost, type, metric_id, contract_id, plan_id",
        add_line,
    );
    let line = "/api/invoices/{id}/line_items/{line}";
    r.get(line, read, "One line item", show_line);
    r.delete(
        line,
        write,
        "Delete a line while the invoice is open or finalized",
        delete_line,
    );
    r.get(
        "/api/invoices/{id}/payment_transactions.json",
        read,
        "Every charge attempt: success, amount, reference, message",
        transactions,
    );
    let of_account = "/api/accounts/{account_id}/invoices.json";
    r.get(
        of_account,
        read,
        "An account's invoices (state, month filters)",
        list_for_account,
    );
    r.post(
        of_account,
        write,
        "Create a manual invoice for the account",
        create_for_account,
    );
    r.get(
        "/api/accounts/{account_id}/invoices/{id}",
        read,
        "One of the account's invoices",
        show_for_account,
    );
    r.get(
        "/admin/api/billing/earnings.json",
        read,
        "Earnings by month: total, in process, overdue, paid (month or year filter)",
        earnings,
    );
    r.post(
        "/master/api/providers/{provider_id}/billing_jobs.json",
        write,
        "Run billing for a date (YYYY-MM-DD); a date run twice changes nothing",
        billing_job,
    );
}

fn settings_json(s: &Settings) -> Json<Value> {
    wrap(
        "billing_settings",
        json!({
            "mode": s.mode.as_str(), "currency": s.currency,
            "currency_minor_units": minor_units(&s.currency),
            "charging_enabled": s.charging_enabled, "invoice_footnote": s.invoice_footnote,
            "vat_zero_text": s.vat_zero_text, "numbering": s.numbering.as_str(),
            "payment_gateway": s.payment_gateway.as_str(),
        }),
    )
}

async fn show_settings(State(app): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(settings_json(&settings::get(&app.db).await?))
}

async fn update_settings(State(app): State<AppState>, p: Params) -> Result<Json<Value>, ApiError> {
    Ok(settings_json(
        &settings::update(&app.db, SettingsPatch::from_form(&p)?).await?,
    ))
}

/// The invoice as 3scale's JSON shows it.
pub fn invoice_json(v: &View) -> Value {
    let (inv, t) = (&v.invoice, &v.totals);
    let (from, to) = invoice::period_bounds(&inv.period).unzip();
    let parse = |s: &Option<String>| s.as_deref().and_then(|s| serde_json::from_str::<Value>(s).ok());
    json!({
        "id": inv.id, "account_id": inv.account_id, "friendly_id": inv.friendly_id,
        "state": inv.state.as_str(), "creation_type": inv.creation_type.as_str(),
        "period": {"from": from.map(|d| d.to_string()), "to": to.map(|d| d.to_string())},
        "month": inv.period,
        "currency": inv.currency,
        "cost": money_number(t.with_vat), "cost_without_vat": money_number(t.without_vat),
        "vat_amount": money_number(t.vat_amount),
        "vat_rate": money_number(v.vat_rate), "vat_code": inv.vat_code,
        "buyer": parse(&inv.buyer), "issuer": parse(&inv.issuer),
        "finalized_at": inv.finalized_at, "issued_on": inv.issued_on, "due_on": inv.due_on, "paid_at": inv.paid_at,
        "charging_retries_count": inv.charging_retries_count, "last_charged_on": inv.last_charged_on,
        "created_at": inv.created_at, "updated_at": inv.updated_at,
    })
}

fn line_json(invoice: InvoiceId, l: &Line) -> Value {
    json!({
        "id": l.id, "invoice_id": invoice, "name": l.name, "description": l.description,
        "quantity": money_number(l.quantity), "cost": money_number(l.cost), "type": l.kind,
        "metric_id": l.metric_id, "contract_type": l.contract_type, "contract_id": l.contract_id,
        "plan_id": l.plan_id, "created_at": l.created_at,
    })
}

/// `{id}`, `{id}.json` → the id; `true` when it ends in `.pdf`.
fn id_and_format(segment: &str) -> Result<(InvoiceId, bool), ApiError> {
    match segment.strip_suffix(".pdf") {
        Some(id) => Ok((path_id(id)?, true)),
        None => Ok((path_id(segment)?, false)),
    }
}

fn page(p: &Form) -> Result<(i64, i64), Invalid> {
    Ok((
        p.parse::<i64>("page")?.unwrap_or(1),
        p.parse::<i64>("per_page")?.unwrap_or(invoices::PER_PAGE),
    ))
}

async fn listed(app: &AppState, account: Option<AccountId>, p: &Params) -> Result<Json<Value>, ApiError> {
    let mut filter = Filter::from_form(p)?;
    if account.is_some() {
        filter.account_id = account;
    }
    let (page, per) = page(p)?;
    let list = invoices::list(&app.db, &filter, page, per).await?;
    Ok(wrap_list("invoices", "invoice", list.iter().map(invoice_json)))
}

async fn list(State(app): State<AppState>, p: Params) -> Result<Json<Value>, ApiError> {
    listed(&app, None, &p).await
}

async fn list_for_account(
    State(app): State<AppState>,
    Path(account): Path<String>,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    listed(&app, Some(path_id(&account)?), &p).await
}

fn period(p: &Form) -> Result<Option<String>, Invalid> {
    match p.text("period") {
        None => Ok(None),
        Some(s) if invoice::parse_period(s).is_some() => Ok(Some(s.to_string())),
        Some(_) => Err(Invalid::field("period", "must be a month, YYYY-MM")),
    }
}

async fn create(State(app): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let account = p
        .parse("account_id")?
        .ok_or_else(|| ApiError::invalid("account_id", "can't be blank"))?;
    let v = invoices::create_manual(&app.db, AccountFrom::Field(account), period(&p)?).await?;
    Ok(created("invoice", invoice_json(&v)))
}

async fn create_for_account(
    State(app): State<AppState>,
    Path(account): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    let v = invoices::create_manual(&app.db, AccountFrom::Path(path_id(&account)?), period(&p)?).await?;
    Ok(created("invoice", invoice_json(&v)))
}

async fn show(State(app): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    match id_and_format(&id)? {
        (id, true) => {
            let document = invoices::document(&app.db, id).await?;
            Ok((
                [
                    (header::CONTENT_TYPE, "application/pdf".to_string()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("inline; filename=\"invoice-{id}.pdf\""),
                    ),
                ],
                crate::pdf::render(&document),
            )
                .into_response())
        }
        (id, false) => Ok(wrap("invoice", invoice_json(&invoices::show(&app.db, id, None).await?)).into_response()),
    }
}

async fn show_for_account(
    State(app): State<AppState>,
    Path((account, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let v = invoices::show(&app.db, path_id(&id)?, Some(path_id(&account)?)).await?;
    Ok(wrap("invoice", invoice_json(&v)))
}

async fn update(State(app): State<AppState>, Path(id): Path<String>, p: Params) -> Result<Json<Value>, ApiError> {
    let period = period(&p)?;
    let friendly_id = p.text("friendly_id");
    if friendly_id.is_some_and(|f| !invoice::is_friendly_id(f)) {
        return Err(ApiError::invalid(
            "friendly_id",
            "must be YYYY-MM-XXXXXXXX or YYYY-XXXXXXXX",
        ));
    }
    let v = invoices::update(&app.db, path_id(&id)?, friendly_id, period.as_deref()).await?;
    Ok(wrap("invoice", invoice_json(&v)))
}

async fn set_state(State(app): State<AppState>, Path(id): Path<String>, p: Params) -> Result<Json<Value>, ApiError> {
    use tollgate_domain::invoice::State as InvoiceState;
    let to = InvoiceState::parse(p.required("state")?.trim())
        .filter(|s| *s != InvoiceState::Open)
        .ok_or_else(|| {
            ApiError::invalid(
                "state",
                "must be one of finalized, pending, paid, unpaid, failed, cancelled",
            )
        })?;
    let v = invoices::set_state(&app.db, path_id(&id)?, to).await?;
    Ok(wrap("invoice", invoice_json(&v)))
}

/// Charges now. A declined charge is recorded (a payment transaction, the invoice unpaid) and
/// answered 422 with the gateway's message, as 3scale does.
async fn charge(State(app): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let today = chrono::Utc::now().date_naive();
    let (inv, outcome) = payments::charge(&app.db, &app.gateways, path_id(&id)?, today).await?;
    if !outcome.success {
        return Err(ApiError::invalid(
            "base",
            format!("Failed to charge the credit card: {}", outcome.message),
        ));
    }
    let v = invoices::show(&app.db, inv.id, None).await?;
    Ok(wrap("invoice", invoice_json(&v)))
}

/// A line an admin adds: every bad field named.
pub(crate) fn new_line(p: &Form) -> Result<NewLine, Invalid> {
    let mut errors = Invalid::default();
    let name = p.get("name").map(str::trim).unwrap_or("");
    if name.is_empty() {
        errors.push("name", "can't be blank");
    }
    let mut amount = |field: &str, default: Decimal| match p.text(field) {
        None => default,
        Some(v) => match v.parse::<Decimal>() {
            Ok(d) if d.normalize().scale() <= 4 => d.normalize(),
            _ => {
                errors.push(field, format!("must be a number with at most 4 decimals, not `{v}`"));
                default
            }
        },
    };
    let quantity = amount("quantity", Decimal::ONE);
    let cost = amount("cost", Decimal::ZERO);
    let kind = match p.text("type") {
        None => LineType::Custom,
        Some(t) => LineType::parse(t).unwrap_or_else(|| {
            errors.push(
                "type",
                "must be one of LineItem::PlanCost, LineItem::VariableCost, plan_cost, variable_cost, setup_fee, refund, upgrade, credit, custom",
            );
            LineType::Custom
        }),
    };
    let mut id = |field: &str| -> Option<i64> {
        p.parse::<i64>(field).unwrap_or_else(|_| {
            errors.push(field, "must be an id");
            None
        })
    };
    let (metric, contract, plan) = (id("metric_id"), id("contract_id"), id("plan_id"));
    errors.or(NewLine {
        name: name.to_string(),
        description: p.get("description").unwrap_or("").to_string(),
        quantity,
        cost,
        kind,
        metric_id: metric.map(tollgate_domain::ids::MetricId::new),
        contract_type: contract.map(|_| "application".to_string()),
        contract_id: contract,
        plan_id: plan.map(tollgate_domain::ids::PlanId::new),
        billing_key: None,
    })
}

async fn list_lines(State(app): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let id = path_id(&id)?;
    let lines = invoices::list_lines(&app.db, id).await?;
    Ok(wrap_list(
        "line_items",
        "line_item",
        lines.iter().map(|l| line_json(id, l)),
    ))
}

async fn add_line(State(app): State<AppState>, Path(id): Path<String>, p: Params) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let line = invoices::create_line(&app.db, id, &new_line(&p)?).await?;
    Ok(created("line_item", line_json(id, &line)))
}

async fn show_line(
    State(app): State<AppState>,
    Path((id, line)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(&id)?;
    let line = invoices::show_line(&app.db, id, path_id(&line)?).await?;
    Ok(wrap("line_item", line_json(id, &line)))
}

async fn delete_line(
    State(app): State<AppState>,
    Path((id, line)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    invoices::delete_line(&app.db, path_id(&id)?, path_id(&line)?).await?;
    Ok(StatusCode::OK)
}

fn transaction_json(t: &PaymentTransaction) -> Value {
    json!({
        "id": t.id, "invoice_id": t.invoice_id, "account_id": t.account_id, "success": t.success,
        "amount": money_number(t.amount), "currency": t.currency, "action": "purchase",
        "gateway": t.gateway, "reference": t.reference, "message": t.message, "test": false,
        "created_at": t.created_at, "updated_at": t.created_at,
    })
}

async fn transactions(State(app): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let list = payments::transactions(&app.db, path_id(&id)?).await?;
    Ok(wrap_list(
        "payment_transactions",
        "payment_transaction",
        list.iter().map(transaction_json),
    ))
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// `GET /api/invoices.csv`: every invoice matching the list's filters, one row each.
async fn csv(State(app): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let mut out = String::from(
        "id,friendly_id,account_id,buyer,period,state,creation_type,currency,cost_without_vat,vat_rate,vat_amount,cost,issued_on,due_on,paid_at\n",
    );
    for (v, buyer) in invoices::export(&app.db, &Filter::from_form(&p)?).await? {
        let (inv, t) = (&v.invoice, &v.totals);
        let row = [
            inv.id.to_string(),
            inv.friendly_id.clone(),
            inv.account_id.to_string(),
            buyer.unwrap_or_default(),
            inv.period.clone(),
            inv.state.as_str().to_string(),
            inv.creation_type.as_str().to_string(),
            inv.currency.clone(),
            display(t.without_vat, &inv.currency),
            v.vat_rate.normalize().to_string(),
            display(t.vat_amount, &inv.currency),
            display(t.with_vat, &inv.currency),
            inv.issued_on.clone().unwrap_or_default(),
            inv.due_on.clone().unwrap_or_default(),
            inv.paid_at.clone().unwrap_or_default(),
        ];
        let row: Vec<String> = row.iter().map(|s| csv_field(s)).collect();
        out.push_str(&row.join(","));
        out.push('\n');
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"invoices.csv\""),
        ],
        out,
    )
        .into_response())
}

async fn earnings(State(app): State<AppState>, p: Params) -> Result<Json<Value>, ApiError> {
    let year = p.text("year");
    if year.is_some_and(|y| y.len() != 4 || !y.bytes().all(|b| b.is_ascii_digit())) {
        return Err(ApiError::invalid("year", "must be a year, YYYY"));
    }
    let (currency, months) = invoices::earnings(&app.db, &Filter::from_form(&p)?, year).await?;
    Ok(wrap_list(
        "earnings",
        "month",
        months.iter().map(|m| {
            json!({
                "month": m.month, "currency": currency, "total": money_number(m.total),
                "in_process": money_number(m.in_process), "overdue": money_number(m.overdue),
                "paid": money_number(m.paid),
            })
        }),
    ))
}

/// `POST /master/api/providers/{provider_id}/billing_jobs.json` with `date` (3scale's master
/// API): runs billing for that date now (after flushing what the counters hold) and answers
/// what it did.
async fn billing_job(
    State(app): State<AppState>,
    Path(provider): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    if path_id::<i64>(&provider)? != PROVIDER_ID {
        return Err(ApiError::NotFound);
    }
    let date = p.required("date")?.trim();
    let date = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .map_err(|_| ApiError::invalid("date", "must be a date, YYYY-MM-DD"))?;
    let report = run::run(&app.db, Some(&app.counters), &app.gateways, date).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"billing_job": report.to_json()}))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_it() {
        assert_eq!(csv_field("Acme"), "Acme");
        assert_eq!(csv_field("Acme, Inc. \"the\""), "\"Acme, Inc. \"\"the\"\"\"");
    }
}
