//! Billing (3scale Part IV): the invoices list, filtered by account, state and month, with the
//! earnings by month; a manual invoice and a billing run for a date; the invoice page (lines,
//! VAT, the state moves its state allows, charge now, edits while open or finalized, the PDF
//! inline and as a download, the payment transactions, the buyer's card status); the billing
//! settings (Ch. 23).
//!
//! Every figure and every change goes through the Billing API's own store functions
//! ([`tollgate_store::billing`]), so the screen and `/api/invoices…` agree by construction.

use super::pages::Frame;
use super::render::{html, invoice_figures, money, when, InvoiceFigures};
use super::resources::{errors_of, refusal_text, sentences, Input};
use super::session::{query_of, respond, Finance, FinanceWrite, Refused, Screen, Staff, Submitted};
use crate::error::{path_id, ApiError};
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use std::collections::BTreeMap;
use tollgate_domain::billing::{GatewayKind, Mode, Numbering, Settings, SettingsPatch};
use tollgate_domain::form::{Form, FromForm, Page};
use tollgate_domain::ids::{AccountId, InvoiceId, LineId};
use tollgate_domain::invoice::{self, State as InvoiceState};
use tollgate_domain::money::display;
use tollgate_store::billing::invoices::{self, AccountFrom, Filter, View};
use tollgate_store::billing::{payments, run, settings};
use tollgate_store::catalog::{accounts, crud as store};

type Errors = BTreeMap<String, Vec<String>>;

pub fn frame<'a>(staff: &'a Staff, title: &'a str) -> Frame<'a> {
    Frame {
        title,
        section: "Billing",
        username: &staff.username,
        csrf: &staff.session.csrf_token,
    }
}

/// The developer accounts, by name, for a select (id, name).
pub async fn account_choices(app: &AppState) -> Result<Vec<(String, String)>, ApiError> {
    Ok(store::list(&app.db, &accounts::ACCOUNTS, &[], None, Page::FIRST)
        .await?
        .iter()
        .map(|a| (a.id().to_string(), a.text("org_name").unwrap_or_default().to_string()))
        .collect())
}

/// What a state move is called on its button.
fn move_label(to: InvoiceState) -> &'static str {
    match to {
        InvoiceState::Open => "Reopen",
        InvoiceState::Finalized => "Finalize",
        InvoiceState::Pending => "Issue invoice",
        InvoiceState::Paid => "Mark as paid",
        InvoiceState::Unpaid => "Mark as unpaid",
        InvoiceState::Failed => "Mark as failed",
        InvoiceState::Cancelled => "Cancel invoice",
    }
}

/// The moves `from` allows (3scale's state machine; never back to open).
fn moves(from: InvoiceState) -> Vec<(&'static str, &'static str)> {
    InvoiceState::ALL
        .into_iter()
        .filter(|to| *to != InvoiceState::Open && to.reachable_from().contains(&from))
        .map(|to| (to.as_str(), move_label(to)))
        .collect()
}

/// One row of the list: link, friendly id, account, month, state, total, issued, due.
struct Row {
    href: String,
    friendly_id: String,
    account: String,
    month: String,
    state: &'static str,
    cost: String,
    issued_on: String,
    due_on: String,
}

#[derive(Template)]
#[template(path = "console/billing_invoices.html")]
struct InvoicesPage<'a> {
    frame: Frame<'a>,
    rows: Vec<Row>,
    accounts: Vec<(String, String)>,
    states: Vec<&'static str>,
    account: String,
    state: String,
    month: String,
    error: String,
    notice: String,
    /// Month, total, in process, overdue, paid (the billing currency).
    earnings: Vec<(String, String, String, String, String)>,
    currency: String,
    summary: String,
    prev: Option<String>,
    next: Option<String>,
    /// The manual invoice form and the billing-run form, as sent after a refusal.
    new_inputs: Vec<Input>,
    run_date: String,
    run_error: String,
}

/// The list's filters as sent; a bad one is said above the list (and nothing filtered by it).
fn filter_of(q: &Form) -> (Filter, String) {
    let cleaned = Form(q.0.iter().filter(|(_, v)| !v.trim().is_empty()).cloned().collect());
    match Filter::from_form(&cleaned) {
        Ok(f) => (f, String::new()),
        Err(invalid) => (Filter::default(), refusal_text(&invalid)),
    }
}

fn page_link(q: &Form, page: i64) -> String {
    let pairs = q.0.iter().filter(|(k, _)| k != "page" && k != "notice");
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .append_pair("page", &page.to_string())
        .finish();
    format!("/console/finance/invoices?{query}")
}

struct ListSent<'a> {
    new: Option<&'a Form>,
    errors: Errors,
    run_date: String,
    run_error: String,
}

async fn invoices_page(app: &AppState, staff: &Staff, q: &Form, sent: ListSent<'_>) -> Result<Response, ApiError> {
    let (filter, error) = filter_of(q);
    let page = q.parse::<i64>("page").ok().flatten().unwrap_or(1).max(1);
    let views = invoices::list(&app.db, &filter, page, invoices::PER_PAGE).await?;
    let ids: Vec<i64> = views.iter().map(|v| v.invoice.account_id.get()).collect();
    let names = tollgate_store::catalog::names::of(&app.db, ("accounts", "org_name"), &ids).await?;
    let rows = views
        .iter()
        .map(|v| {
            let inv = &v.invoice;
            Row {
                href: format!("/console/finance/invoices/{}", inv.id),
                friendly_id: inv.friendly_id.clone(),
                account: names.get(&inv.account_id.get()).cloned().unwrap_or_default(),
                month: inv.period.clone(),
                state: inv.state.as_str(),
                cost: money(v.totals.with_vat, &inv.currency),
                issued_on: inv.issued_on.clone().unwrap_or_default(),
                due_on: inv.due_on.clone().unwrap_or_default(),
            }
        })
        .collect::<Vec<_>>();
    let (currency, months) = invoices::earnings(&app.db, &filter, None).await?;
    let money = |d| display(d, &currency);
    let earnings = months
        .iter()
        .map(|m| {
            (
                m.month.clone(),
                money(m.total),
                money(m.in_process),
                money(m.overdue),
                money(m.paid),
            )
        })
        .collect();
    let accounts = account_choices(app).await?;
    let get = |k: &str| q.get(k).unwrap_or("").to_string();
    let sent_value = |k: &str, default: String| sent.new.and_then(|f| f.get(k)).map_or(default, str::to_string);
    let new_error = |k: &str| sent.errors.get(k).map(|e| e.join("; ")).unwrap_or_default();
    let new_inputs = vec![
        Input {
            name: "account_id",
            label: "Account".into(),
            control: "select",
            value: sent_value("account_id", get("account_id")),
            options: accounts.clone(),
            errors: new_error("account_id"),
            required: true,
        },
        Input {
            name: "period",
            label: "Month".into(),
            control: "month",
            value: sent_value("period", chrono::Utc::now().format("%Y-%m").to_string()),
            options: Vec::new(),
            errors: new_error("period"),
            required: true,
        },
    ];
    let status = match sent.errors.is_empty() && sent.run_error.is_empty() {
        true => StatusCode::OK,
        false => StatusCode::UNPROCESSABLE_ENTITY,
    };
    let full = rows.len() as i64 == invoices::PER_PAGE;
    Ok((
        status,
        html(InvoicesPage {
            frame: frame(staff, "Invoices"),
            rows,
            accounts,
            states: InvoiceState::ALL.iter().map(|s| s.as_str()).collect(),
            account: get("account_id"),
            state: get("state"),
            month: get("month"),
            error,
            notice: get("notice"),
            earnings,
            currency,
            summary: format!("Page {page}"),
            prev: (page > 1).then(|| page_link(q, page - 1)),
            next: full.then(|| page_link(q, page + 1)),
            new_inputs,
            run_date: sent.run_date,
            run_error: sent.run_error,
        }),
    )
        .into_response())
}

pub async fn to_invoices() -> Redirect {
    Redirect::to("/console/finance/invoices")
}

pub async fn invoices(State(app): State<AppState>, screen: Screen<Finance>, uri: Uri) -> Response {
    let sent = ListSent {
        new: None,
        errors: Errors::new(),
        run_date: chrono::Utc::now().format("%Y-%m-%d").to_string(),
        run_error: String::new(),
    };
    respond(invoices_page(&app, &screen, &query_of(&uri), sent).await)
}

/// A manual invoice (3scale's "Create invoice" on an account): on to its page.
pub async fn create_invoice(State(app): State<AppState>, sent: Submitted<FinanceWrite>) -> Response {
    let f = &sent.form;
    let made = async {
        let account: AccountId = f
            .parse("account_id")?
            .ok_or_else(|| ApiError::invalid("account_id", "can't be blank"))?;
        let period = match f.text("period") {
            None => None,
            Some(p) if invoice::parse_period(p).is_some() => Some(p.to_string()),
            Some(_) => return Err(ApiError::invalid("period", "must be a month, YYYY-MM")),
        };
        Ok(invoices::create_manual(&app.db, AccountFrom::Field(account), period).await?)
    }
    .await;
    match made {
        Ok(v) => Redirect::to(&format!("/console/finance/invoices/{}?notice=created", v.invoice.id)).into_response(),
        Err(ApiError::Invalid(invalid)) => {
            let sent_list = ListSent {
                new: Some(f),
                errors: errors_of(&invalid),
                run_date: chrono::Utc::now().format("%Y-%m-%d").to_string(),
                run_error: String::new(),
            };
            respond(invoices_page(&app, &sent.screen, &Form::default(), sent_list).await)
        }
        Err(e) => Refused::from(e).into_response(),
    }
}

/// Runs billing for a date, as the master API's billing job does (flushing the counters first).
pub async fn run_billing(State(app): State<AppState>, sent: Submitted<FinanceWrite>) -> Response {
    let date = sent.form.get("date").unwrap_or("").trim().to_string();
    let ran = async {
        let day = chrono::NaiveDate::parse_from_str(&date, "%Y-%m-%d")
            .map_err(|_| ApiError::invalid("date", "must be a date, YYYY-MM-DD"))?;
        Ok::<_, ApiError>(run::run(&app.db, Some(&app.counters), &app.gateways, day).await?)
    }
    .await;
    match ran {
        Ok(report) => {
            let notice = format!(
                "Billing ran for {}: {} accounts, {} lines billed, {} invoices created, {} issued, {} charged.",
                report.date, report.accounts, report.lines, report.invoices_created, report.issued, report.charged
            );
            let to = format!(
                "/console/finance/invoices?notice={}",
                super::session::urlencode(&notice)
            );
            Redirect::to(&to).into_response()
        }
        Err(ApiError::Invalid(invalid)) => {
            let sent_list = ListSent {
                new: None,
                errors: Errors::new(),
                run_date: date,
                run_error: refusal_text(&invalid),
            };
            respond(invoices_page(&app, &sent.screen, &Form::default(), sent_list).await)
        }
        Err(e) => Refused::from(e).into_response(),
    }
}

#[derive(Template)]
#[template(path = "console/billing_invoice.html")]
struct InvoicePage<'a> {
    frame: Frame<'a>,
    id: i64,
    facts: Vec<(&'static str, String)>,
    account_href: String,
    account_name: String,
    /// The lines (each with its delete action while editable) and totals.
    figures: InvoiceFigures,
    moves: Vec<(&'static str, &'static str)>,
    chargeable: bool,
    editable: bool,
    edit_inputs: Vec<Input>,
    line_inputs: Vec<Input>,
    /// Time, success, amount, reference, message.
    transactions: Vec<(String, bool, String, String, String)>,
    card: String,
    notice: String,
    refusal: String,
}

/// What the invoice page was sent after a refusal: which form, its fields, its errors.
#[derive(Default)]
struct Sent<'a> {
    form: Option<&'a Form>,
    errors: Errors,
    /// The refusal of a button (a state move, a charge): said at the top.
    refusal: String,
}

fn text_input(name: &'static str, label: &str, value: String, errors: &Errors) -> Input {
    Input {
        name,
        label: label.into(),
        control: "text",
        value,
        options: Vec::new(),
        errors: errors.get(name).map(|e| e.join("; ")).unwrap_or_default(),
        required: false,
    }
}

async fn invoice_page(
    app: &AppState,
    staff: &Staff,
    id: InvoiceId,
    notice: &str,
    sent: Sent<'_>,
) -> Result<Response, ApiError> {
    let v: View = invoices::show(&app.db, id, None).await?;
    let inv = &v.invoice;
    let lines = invoices::list_lines(&app.db, id).await?;
    let editable = inv.state.editable();
    let mut figures = invoice_figures(&v, &lines);
    if editable {
        for (row, l) in figures.lines.iter_mut().zip(&lines) {
            row.delete = Some(format!(
                "/console/finance/invoices/{}/line_items/{}/delete",
                inv.id, l.id
            ));
        }
    }
    let account_name = tollgate_store::catalog::names::of(&app.db, ("accounts", "org_name"), &[inv.account_id.get()])
        .await?
        .remove(&inv.account_id.get())
        .unwrap_or_default();
    let card = match payments::card_status(&app.db, inv.account_id).await {
        Ok(Some(c)) => super::render::card_text(&c),
        Ok(None) => "No card stored".into(),
        Err(tollgate_store::StoreError::NotFound) => "The account is deleted".into(),
        Err(e) => return Err(e.into()),
    };
    let opt = |o: &Option<String>| o.as_deref().map(when).unwrap_or_else(|| "—".into());
    let facts = vec![
        ("Friendly ID", inv.friendly_id.clone()),
        ("State", inv.state.as_str().to_string()),
        ("Month", inv.period.clone()),
        (
            "Made by",
            match inv.creation_type {
                invoice::CreationType::Manual => "hand",
                _ => "the billing run",
            }
            .to_string(),
        ),
        ("Issued on", opt(&inv.issued_on)),
        ("Due on", opt(&inv.due_on)),
        ("Paid at", opt(&inv.paid_at)),
        ("Charging retries", inv.charging_retries_count.to_string()),
        ("Last charged on", opt(&inv.last_charged_on)),
    ];
    let from_sent = |form: &str, k: &str, stored: String| {
        sent.form
            .filter(|f| f.get("_form") == Some(form))
            .and_then(|f| f.get(k))
            .map_or(stored, str::to_string)
    };
    let edit_inputs = vec![
        text_input(
            "friendly_id",
            "Friendly ID",
            from_sent("edit", "friendly_id", inv.friendly_id.clone()),
            &sent.errors,
        ),
        Input {
            control: "month",
            ..text_input(
                "period",
                "Month",
                from_sent("edit", "period", inv.period.clone()),
                &sent.errors,
            )
        },
    ];
    let line_inputs = vec![
        Input {
            required: true,
            ..text_input("name", "Name", from_sent("line", "name", String::new()), &sent.errors)
        },
        text_input(
            "description",
            "Description",
            from_sent("line", "description", String::new()),
            &sent.errors,
        ),
        text_input(
            "quantity",
            "Quantity",
            from_sent("line", "quantity", "1".into()),
            &sent.errors,
        ),
        text_input("cost", "Cost", from_sent("line", "cost", String::new()), &sent.errors),
    ];
    let transactions = payments::transactions(&app.db, id)
        .await?
        .iter()
        .map(|t| {
            (
                when(&t.created_at),
                t.success,
                money(t.amount, &t.currency),
                t.reference.clone().unwrap_or_default(),
                t.message.clone(),
            )
        })
        .collect();
    let status = match sent.errors.is_empty() && sent.refusal.is_empty() {
        true => StatusCode::OK,
        false => StatusCode::UNPROCESSABLE_ENTITY,
    };
    let title = format!("Invoice {}", inv.friendly_id);
    let notice = match notice {
        "created" => "The invoice is created. Add its lines, then finalize and issue it.".to_string(),
        "charged" => "The invoice is charged and paid.".to_string(),
        "" => String::new(),
        other => format!("Done: {other}."),
    };
    Ok((
        status,
        html(InvoicePage {
            frame: frame(staff, &title),
            id: inv.id.get(),
            facts,
            account_href: format!("/console/accounts/{}", inv.account_id),
            account_name,
            figures,
            moves: moves(inv.state),
            chargeable: inv.state.chargeable(),
            editable,
            edit_inputs,
            line_inputs,
            transactions,
            card,
            notice,
            refusal: sent.refusal,
        }),
    )
        .into_response())
}

pub async fn invoice(
    State(app): State<AppState>,
    screen: Screen<Finance>,
    Path(id): Path<String>,
    uri: Uri,
) -> Response {
    let done = async {
        let q = query_of(&uri);
        invoice_page(
            &app,
            &screen,
            path_id(&id)?,
            q.get("notice").unwrap_or(""),
            Sent::default(),
        )
        .await
    };
    respond(done.await)
}

/// The invoice as a PDF: inline (the page frames it), or as a download with `?download`.
pub async fn invoice_pdf(
    State(app): State<AppState>,
    _screen: Screen<Finance>,
    Path(id): Path<String>,
    uri: Uri,
) -> Response {
    let done = async {
        let id: InvoiceId = path_id(&id)?;
        Ok::<_, ApiError>(crate::pdf::render(&invoices::document(&app.db, id).await?))
    };
    let pdf = match done.await {
        Ok(p) => p,
        Err(e) => return Refused::from(e).into_response(),
    };
    let disposition = match query_of(&uri).get("download") {
        Some(_) => "attachment",
        None => "inline",
    };
    (
        [
            (header::CONTENT_TYPE, "application/pdf".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("{disposition}; filename=\"invoice-{id}.pdf\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_string()),
            // Framed by the invoice page only.
            (header::X_FRAME_OPTIONS, "SAMEORIGIN".to_string()),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; frame-ancestors 'self'".to_string(),
            ),
        ],
        pdf,
    )
        .into_response()
}

/// After a form on the invoice page: back to it with a notice, or the page again with what
/// was refused (next to the field, or at the top for a button).
async fn after(
    app: &AppState,
    sent: &Submitted<FinanceWrite>,
    id: InvoiceId,
    done: Result<&str, ApiError>,
) -> Response {
    match done {
        Ok(notice) => Redirect::to(&format!(
            "/console/finance/invoices/{id}?notice={}",
            super::session::urlencode(notice)
        ))
        .into_response(),
        Err(ApiError::Invalid(invalid)) => {
            // A form's fields get their errors next to them; anything else is said at the top.
            let shown: &[&str] = match sent.form.get("_form") {
                Some(_) => &["friendly_id", "period", "name", "description", "quantity", "cost"],
                None => &[],
            };
            let (near, top): (Errors, Errors) = errors_of(&invalid)
                .into_iter()
                .partition(|(k, _)| shown.contains(&k.as_str()));
            let refusal = match top.is_empty() {
                true => String::new(),
                false => format!("Nothing was changed: {}.", sentences(top.iter())),
            };
            let page_sent = Sent {
                form: Some(&sent.form),
                errors: near,
                refusal,
            };
            respond(invoice_page(app, &sent.screen, id, "", page_sent).await)
        }
        Err(e) => Refused::from(e).into_response(),
    }
}

pub async fn change_state(
    State(app): State<AppState>,
    Path(id): Path<String>,
    sent: Submitted<FinanceWrite>,
) -> Response {
    let Ok(id) = path_id::<InvoiceId>(&id) else {
        return Refused::NotFound.into_response();
    };
    let done = async {
        let to = sent
            .form
            .get("state")
            .and_then(InvoiceState::parse)
            .filter(|s| *s != InvoiceState::Open)
            .ok_or_else(|| ApiError::invalid("state", "is not a state an invoice can be moved to"))?;
        invoices::set_state(&app.db, id, to).await?;
        Ok(to.as_str())
    }
    .await;
    after(&app, &sent, id, done).await
}

/// Charges now, through the provider's gateway; a decline is recorded and said on the page.
pub async fn charge(State(app): State<AppState>, Path(id): Path<String>, sent: Submitted<FinanceWrite>) -> Response {
    let Ok(id) = path_id::<InvoiceId>(&id) else {
        return Refused::NotFound.into_response();
    };
    let done = async {
        let today = chrono::Utc::now().date_naive();
        let (_, outcome) = payments::charge(&app.db, &app.gateways, id, today).await?;
        match outcome.success {
            true => Ok("charged"),
            false => Err(ApiError::invalid(
                "base",
                format!("Failed to charge the credit card: {}", outcome.message),
            )),
        }
    }
    .await;
    after(&app, &sent, id, done).await
}

pub async fn update_invoice(
    State(app): State<AppState>,
    Path(id): Path<String>,
    sent: Submitted<FinanceWrite>,
) -> Response {
    let Ok(id) = path_id::<InvoiceId>(&id) else {
        return Refused::NotFound.into_response();
    };
    let done = async {
        let f = &sent.form;
        let mut errors = tollgate_domain::Invalid::default();
        let friendly_id = f.text("friendly_id");
        if friendly_id.is_some_and(|v| !invoice::is_friendly_id(v)) {
            errors.push("friendly_id", "must be YYYY-MM-XXXXXXXX or YYYY-XXXXXXXX");
        }
        let period = f.text("period");
        if period.is_some_and(|p| invoice::parse_period(p).is_none()) {
            errors.push("period", "must be a month, YYYY-MM");
        }
        errors.or(())?;
        invoices::update(&app.db, id, friendly_id, period).await?;
        Ok("saved")
    }
    .await;
    after(&app, &sent, id, done).await
}

pub async fn add_line(State(app): State<AppState>, Path(id): Path<String>, sent: Submitted<FinanceWrite>) -> Response {
    let Ok(id) = path_id::<InvoiceId>(&id) else {
        return Refused::NotFound.into_response();
    };
    let done = async {
        let line = crate::billing::new_line(&sent.form)?;
        invoices::create_line(&app.db, id, &line).await?;
        Ok("line added")
    }
    .await;
    after(&app, &sent, id, done).await
}

pub async fn delete_line(
    State(app): State<AppState>,
    Path((id, line)): Path<(String, String)>,
    sent: Submitted<FinanceWrite>,
) -> Response {
    let (Ok(id), Ok(line)) = (path_id::<InvoiceId>(&id), path_id::<LineId>(&line)) else {
        return Refused::NotFound.into_response();
    };
    let done = async {
        invoices::delete_line(&app.db, id, line).await?;
        Ok("line deleted")
    }
    .await;
    after(&app, &sent, id, done).await
}

#[derive(Template)]
#[template(path = "console/billing_settings.html")]
struct SettingsPage<'a> {
    frame: Frame<'a>,
    inputs: Vec<Input>,
    saved: bool,
}

fn choice(words: &[&str]) -> Vec<(String, String)> {
    words.iter().map(|w| (w.to_string(), w.to_string())).collect()
}

fn settings_inputs(s: &Settings, sent: Option<&Form>, errors: &Errors) -> Vec<Input> {
    let value = |k: &str, stored: String| sent.and_then(|f| f.get(k)).map_or(stored, str::to_string);
    let input = |name: &'static str, label: &str, control: &'static str, stored: String, options| Input {
        name,
        label: label.into(),
        control,
        value: value(name, stored),
        options,
        errors: errors.get(name).map(|e| e.join("; ")).unwrap_or_default(),
        required: control == "select",
    };
    vec![
        input(
            "mode",
            "Billing mode",
            "select",
            s.mode.as_str().into(),
            choice(Mode::WORDS),
        ),
        input("currency", "Currency", "text", s.currency.clone(), Vec::new()),
        input(
            "charging_enabled",
            "Charge credit cards automatically",
            "checkbox",
            if s.charging_enabled { "1" } else { "0" }.into(),
            Vec::new(),
        ),
        input(
            "payment_gateway",
            "Payment gateway",
            "select",
            s.payment_gateway.as_str().into(),
            choice(GatewayKind::WORDS),
        ),
        input(
            "numbering",
            "Invoice numbering",
            "select",
            s.numbering.as_str().into(),
            choice(Numbering::WORDS),
        ),
        input(
            "invoice_footnote",
            "Invoice footnote",
            "text",
            s.invoice_footnote.clone().unwrap_or_default(),
            Vec::new(),
        ),
        input(
            "vat_zero_text",
            "Text on invoices with 0% VAT",
            "text",
            s.vat_zero_text.clone().unwrap_or_default(),
            Vec::new(),
        ),
    ]
}

pub async fn show_settings(State(app): State<AppState>, screen: Screen<FinanceWrite>, uri: Uri) -> Response {
    let done = async {
        let s = settings::get(&app.db).await?;
        Ok(html(SettingsPage {
            frame: frame(&screen, "Billing settings"),
            inputs: settings_inputs(&s, None, &Errors::new()),
            saved: uri.query() == Some("saved"),
        }))
    };
    respond(done.await)
}

pub async fn update_settings(State(app): State<AppState>, sent: Submitted<FinanceWrite>) -> Response {
    let done = async {
        match SettingsPatch::from_form(&sent.form) {
            Ok(patch) => {
                settings::update(&app.db, patch).await?;
                Ok(Redirect::to("/console/finance/settings?saved").into_response())
            }
            Err(invalid) => {
                let s = settings::get(&app.db).await?;
                Ok((
                    StatusCode::UNPROCESSABLE_ENTITY,
                    html(SettingsPage {
                        frame: frame(&sent.screen, "Billing settings"),
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
    fn an_invoice_offers_the_moves_its_state_allows() {
        let words = |s| moves(s).iter().map(|(w, _)| *w).collect::<Vec<_>>();
        assert_eq!(words(InvoiceState::Open), ["finalized", "pending", "cancelled"]);
        assert_eq!(words(InvoiceState::Pending), ["paid", "unpaid", "failed", "cancelled"]);
        assert!(words(InvoiceState::Paid).is_empty());
        assert!(words(InvoiceState::Cancelled).is_empty());
    }
}
