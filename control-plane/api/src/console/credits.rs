//! Credits (Apigee's Credits page and AIGNE Hub's users): every issued credit, searchable, and
//! "+ Credit" — billing month, developer or company found as you type, product, the billing
//! currency, an amount that is never 0, a note; and each prepaid account's credits (its
//! balance, pending deductions, totals, grants and ledger, filterable by time).
//!
//! Issuing calls the same [`issued::issue`] as `POST /admin/api/accounts/{id}/credits.json`: a
//! prepaid account's balance moves at once, a postpaid account's credit waits for that
//! month's invoice. The account search is a plain GET form; `console.js` only fills the
//! suggestions as you type (the CSP allows no inline script).

use super::billing::frame;
use super::pages::Frame;
use super::render::{html, when};
use super::resources::{errors_of, refusal_text, Input};
use super::session::{query_of, respond, Credits, CreditsWrite, Refused, Screen, Staff, Submitted};
use crate::error::{path_id, ApiError};
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::Uri;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use chrono::Datelike;
use serde_json::json;
use std::collections::BTreeMap;
use tollgate_domain::credits::{NewGrant, NewIssuedCredit};
use tollgate_domain::form::{Form, FromForm, Page};
use tollgate_domain::ids::AccountId;
use tollgate_store::catalog::resource::Listing;
use tollgate_store::catalog::{accounts, crud as store, services};
use tollgate_store::credits::issued;
use tollgate_store::credits::ledger::{self, EntryFilter};

type Errors = BTreeMap<String, Vec<String>>;

const PER_PAGE: i64 = 20;

/// One issued credit as the list shows it.
struct Row {
    account_href: String,
    account: String,
    amount: String,
    month: String,
    product: String,
    plan: String,
    note: String,
    applied_to: &'static str,
    at: String,
}

#[derive(Template)]
#[template(path = "console/credits.html")]
struct ListPage<'a> {
    frame: Frame<'a>,
    rows: Vec<Row>,
    search: String,
    notice: String,
    summary: String,
    prev: Option<String>,
    next: Option<String>,
}

fn list_link(search: &str, page: i64) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("q", search)
        .append_pair("page", &page.to_string())
        .finish();
    format!("/console/finance/credits?{query}")
}

pub async fn list(State(app): State<AppState>, screen: Screen<Credits>, uri: Uri) -> Response {
    let done = async {
        let q = query_of(&uri);
        let search = q.get("q").unwrap_or("").trim().to_string();
        let page = q.parse::<i64>("page").ok().flatten().unwrap_or(1).max(1);
        let (found, total) = issued::all(
            &app.db,
            Some(search.as_str()),
            Page {
                page,
                per_page: PER_PAGE,
            },
        )
        .await?;
        let ids = |f: fn(&issued::Issued) -> Option<i64>| found.iter().filter_map(|(c, _)| f(c)).collect::<Vec<_>>();
        let products =
            tollgate_store::catalog::names::of(&app.db, ("services", "name"), &ids(|c| c.service_id.map(|s| s.get())))
                .await?;
        let plans = tollgate_store::catalog::names::of(
            &app.db,
            ("application_plans", "name"),
            &ids(|c| c.application_plan_id.map(|p| p.get())),
        )
        .await?;
        let rows = found
            .iter()
            .map(|(c, account)| Row {
                account_href: format!("/console/finance/credit_accounts/{}", c.account_id),
                account: account.clone(),
                amount: format!("{} {}", c.amount.normalize(), c.currency),
                month: c.billing_month.clone(),
                product: c
                    .service_id
                    .and_then(|s| products.get(&s.get()).cloned())
                    .unwrap_or_else(|| "All products".into()),
                plan: c
                    .application_plan_id
                    .and_then(|p| plans.get(&p.get()).cloned())
                    .unwrap_or_else(|| "All plans".into()),
                note: c.note.clone().unwrap_or_default(),
                applied_to: match c.transaction_id {
                    Some(_) => "Balance",
                    None => "Invoice",
                },
                at: when(&c.created_at),
            })
            .collect::<Vec<_>>();
        let shown_to = (page - 1) * PER_PAGE + rows.len() as i64;
        Ok(html(ListPage {
            frame: frame(&screen, "Credits"),
            summary: format!("{shown_to} of {total}"),
            prev: (page > 1).then(|| list_link(&search, page - 1)),
            next: (shown_to < total).then(|| list_link(&search, page + 1)),
            rows,
            search,
            notice: q.get("notice").unwrap_or("").to_string(),
        }))
    };
    respond(done.await)
}

/// Accounts whose name (or a user's name or e-mail) matches `term`: (id, name), at most 10.
async fn matching_accounts(app: &AppState, term: &str) -> Result<Vec<(i64, String)>, ApiError> {
    let term = term.trim();
    if term.is_empty() {
        return Ok(Vec::new());
    }
    let by_users = accounts::with_user_matching(&app.db, term).await?;
    let listing = Listing {
        search: Some(term),
        or_ids: &by_users,
        order: None,
    };
    let found = store::list_listed(
        &app.db,
        &accounts::ACCOUNTS,
        &[],
        None,
        &listing,
        Page { page: 1, per_page: 10 },
    )
    .await?;
    Ok(found
        .iter()
        .map(|a| (a.id(), a.text("org_name").unwrap_or_default().to_string()))
        .collect())
}

fn chosen_href(id: i64) -> String {
    format!("/console/finance/credits/new?account_id={id}")
}

/// The type-ahead's suggestions: `{"accounts": [{"id", "name", "href"}]}`.
pub async fn account_suggestions(State(app): State<AppState>, _screen: Screen<CreditsWrite>, uri: Uri) -> Response {
    let q = query_of(&uri);
    match matching_accounts(&app, q.get("q").unwrap_or("")).await {
        Ok(found) => {
            let list: Vec<_> = found
                .iter()
                .map(|(id, name)| json!({"id": id, "name": name, "href": chosen_href(*id)}))
                .collect();
            (super::render::SECURITY_HEADERS, Json(json!({ "accounts": list }))).into_response()
        }
        Err(e) => Refused::from(e).into_response(),
    }
}

#[derive(Template)]
#[template(path = "console/credit_form.html")]
struct FormPage<'a> {
    frame: Frame<'a>,
    account_q: String,
    /// Suggestions for the search as sent: link, name.
    matches: Vec<(String, String)>,
    searched: bool,
    /// The chosen account (id, name) and the rest of the form.
    chosen: Option<(i64, String)>,
    inputs: Vec<Input>,
    currency: String,
    refusal: String,
}

/// The billing months offered: this one and the eleven before it (value, "December 2026").
fn billing_months(today: chrono::NaiveDate) -> Vec<(String, String)> {
    let mut first = today.with_day(1).unwrap_or(today);
    let mut months = Vec::new();
    for _ in 0..12 {
        months.push((first.format("%Y-%m").to_string(), first.format("%B %Y").to_string()));
        first = (first - chrono::Duration::days(1)).with_day(1).unwrap_or(first);
    }
    months
}

async fn form_page(
    app: &AppState,
    staff: &Staff,
    q: &Form,
    sent: Option<&Form>,
    errors: Errors,
) -> Result<Response, ApiError> {
    let account_q = q.get("account_q").unwrap_or("").to_string();
    let matches = matching_accounts(app, &account_q)
        .await?
        .into_iter()
        .map(|(id, name)| (chosen_href(id), name))
        .collect();
    let chosen = match q.parse::<i64>("account_id").ok().flatten() {
        Some(id) => {
            let account = store::find(&app.db, &accounts::ACCOUNTS, &[], id).await?;
            Some((id, account.text("org_name").unwrap_or_default().to_string()))
        }
        None => None,
    };
    let currency = tollgate_store::billing::settings::get(&app.db).await?.currency;
    let value = |k: &str, default: &str| sent.and_then(|f| f.get(k)).unwrap_or(default).to_string();
    let error = |k: &str| errors.get(k).map(|e| e.join("; ")).unwrap_or_default();
    let mut products = vec![(String::new(), "All products".to_string())];
    products.extend(
        store::list(&app.db, &services::SERVICES, &[], None, Page::FIRST)
            .await?
            .iter()
            .map(|s| (s.id().to_string(), s.text("name").unwrap_or_default().to_string())),
    );
    let months = billing_months(chrono::Utc::now().date_naive());
    let this_month = months.first().map(|m| m.0.clone()).unwrap_or_default();
    let inputs = vec![
        Input {
            name: "billing_month",
            label: "Billing month".into(),
            control: "select",
            value: value("billing_month", &this_month),
            options: months,
            errors: error("billing_month"),
            required: true,
        },
        Input {
            name: "service_id",
            label: "Product bundle".into(),
            control: "select",
            value: value("service_id", ""),
            options: products,
            errors: error("service_id"),
            required: true,
        },
        Input {
            name: "amount",
            label: "Amount".into(),
            control: "text",
            value: value("amount", ""),
            options: Vec::new(),
            errors: error("amount"),
            required: true,
        },
        Input {
            name: "note",
            label: "Note".into(),
            control: "text",
            value: value("note", ""),
            options: Vec::new(),
            errors: error("note"),
            required: false,
        },
    ];
    let shown = ["billing_month", "service_id", "amount", "note"];
    let status = crate::console::resources::status_for(&errors);
    Ok((
        status,
        html(FormPage {
            frame: frame(staff, "New credit"),
            searched: !account_q.trim().is_empty(),
            account_q,
            matches,
            chosen,
            inputs,
            currency,
            refusal: super::resources::unshown(&errors, &shown),
        }),
    )
        .into_response())
}

pub async fn new_form(State(app): State<AppState>, screen: Screen<CreditsWrite>, uri: Uri) -> Response {
    respond(form_page(&app, &screen, &query_of(&uri), None, Errors::new()).await)
}

/// "+ Credit" sent: issued in the billing currency, or the form again with what was refused
/// next to its field (an amount of 0 among them).
pub async fn issue(State(app): State<AppState>, sent: Submitted<CreditsWrite>) -> Response {
    let f = &sent.form;
    let done = async {
        let account: AccountId = f
            .parse("account_id")?
            .ok_or_else(|| ApiError::invalid("account_id", "choose a developer or company"))?;
        let currency = tollgate_store::billing::settings::get(&app.db).await?.currency;
        let mut form = Form(f.0.iter().filter(|(k, _)| k != "currency").cloned().collect());
        form.0.push(("currency".into(), currency));
        if form.get("service_id") == Some("") {
            form.0.retain(|(k, _)| k != "service_id");
        }
        Ok::<_, ApiError>(issued::issue(&app.db, account, NewIssuedCredit::from_form(&form)?).await?)
    };
    match done.await {
        Ok(c) => {
            let notice = format!("Credit of {} {} issued for {}.", c.amount, c.currency, c.billing_month);
            Redirect::to(&format!(
                "/console/finance/credits?notice={}",
                super::session::urlencode(&notice)
            ))
            .into_response()
        }
        Err(ApiError::Invalid(invalid)) => {
            let q = Form(f.0.iter().filter(|(k, _)| k == "account_id").cloned().collect());
            respond(form_page(&app, &sent.screen, &q, Some(f), errors_of(&invalid)).await)
        }
        Err(e) => Refused::from(e).into_response(),
    }
}

#[derive(Template)]
#[template(path = "console/credit_accounts.html")]
struct AccountsPage<'a> {
    frame: Frame<'a>,
    /// Link, name, balance, pending, total purchased.
    rows: Vec<(String, String, String, String, String)>,
    summary: String,
    prev: Option<String>,
    next: Option<String>,
}

/// AIGNE Hub's users: each prepaid account's balance, pending deductions and total purchased.
pub async fn accounts(State(app): State<AppState>, screen: Screen<Credits>, uri: Uri) -> Response {
    let done = async {
        let page = query_of(&uri).parse::<i64>("page").ok().flatten().unwrap_or(1).max(1);
        let (found, total) = ledger::prepaid_accounts(
            &app.db,
            Page {
                page,
                per_page: PER_PAGE,
            },
        )
        .await?;
        let mut rows = Vec::new();
        for (id, name) in &found {
            let b = ledger::balance(&app.db, &app.counters, *id).await?;
            rows.push((
                format!("/console/finance/credit_accounts/{id}"),
                name.clone(),
                b.balance.to_string(),
                b.pending.to_string(),
                b.total_purchased.to_string(),
            ));
        }
        let shown_to = (page - 1) * PER_PAGE + rows.len() as i64;
        let link = |p: i64| format!("/console/finance/credit_accounts?page={p}");
        Ok(html(AccountsPage {
            frame: frame(&screen, "Credit balances"),
            rows,
            summary: format!("{shown_to} of {total}"),
            prev: (page > 1).then(|| link(page - 1)),
            next: (shown_to < total).then(|| link(page + 1)),
        }))
    };
    respond(done.await)
}

/// One ledger entry as the account's page lists it, with what a deduction paid for.
struct EntryRow {
    at: String,
    kind: &'static str,
    amount: String,
    balance_after: String,
    note: String,
    /// Metric, quantity, credits.
    detail: Vec<(String, i64, String)>,
}

#[derive(Template)]
#[template(path = "console/credit_account.html")]
struct AccountPage<'a> {
    frame: Frame<'a>,
    id: i64,
    balance: String,
    pending: String,
    total_purchased: String,
    total_granted: String,
    expiring_next: String,
    /// Granted, kind, amount, expires, note.
    grants: Vec<(String, &'static str, String, String, String)>,
    entries: Vec<EntryRow>,
    since: String,
    until: String,
    filter_error: String,
    grant_inputs: Vec<Input>,
    notice: String,
}

/// The ledger filter of the screen's dates: from the first second of `since` to the last of
/// `until` (UTC).
fn entry_filter(q: &Form) -> Result<EntryFilter, tollgate_domain::Invalid> {
    let mut f = Form::default();
    for (k, suffix) in [("since", "T00:00:00Z"), ("until", "T23:59:59Z")] {
        if let Some(day) = q.text(k) {
            if chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").is_err() {
                return Err(tollgate_domain::Invalid::field(k, "must be a date, YYYY-MM-DD"));
            }
            f.0.push((k.into(), format!("{day}{suffix}")));
        }
    }
    f.0.push(("per_page".into(), "500".into()));
    EntryFilter::from_form(&f)
}

async fn account_page(
    app: &AppState,
    staff: &Staff,
    id: AccountId,
    q: &Form,
    sent: Option<&Form>,
    errors: Errors,
) -> Result<Response, ApiError> {
    let account = store::find(&app.db, &accounts::ACCOUNTS, &[], id.get()).await?;
    let b = ledger::balance(&app.db, &app.counters, id).await?;
    let grants = ledger::grants(&app.db, id)
        .await?
        .iter()
        .map(|g| {
            (
                when(&g.created_at),
                g.kind.as_str(),
                g.amount.to_string(),
                g.expires_at.as_deref().map(when).unwrap_or_default(),
                g.note.clone().unwrap_or_default(),
            )
        })
        .collect();
    let (filter, filter_error) = match entry_filter(q) {
        Ok(f) => (f, String::new()),
        Err(invalid) => (entry_filter(&Form::default())?, refusal_text(&invalid)),
    };
    let mut entries: Vec<EntryRow> = ledger::transactions(&app.db, id, &filter)
        .await?
        .iter()
        .map(|e| EntryRow {
            at: when(&e.created_at),
            kind: e.kind.as_str(),
            amount: e.amount.to_string(),
            balance_after: e.balance_after.to_string(),
            note: e.note.clone().unwrap_or_default(),
            detail: e
                .detail
                .iter()
                .flatten()
                .map(|d| (d.metric.clone(), d.quantity, d.credits.normalize().to_string()))
                .collect(),
        })
        .collect();
    entries.reverse();
    let value = |k: &str, default: &str| sent.and_then(|f| f.get(k)).unwrap_or(default).to_string();
    let error = |k: &str| errors.get(k).map(|e| e.join("; ")).unwrap_or_default();
    let input = |name: &'static str, label: &str, control: &'static str, default: &str, options| Input {
        name,
        label: label.into(),
        control,
        value: value(name, default),
        options,
        errors: error(name),
        required: name == "amount",
    };
    let kinds = tollgate_domain::credits::GrantKind::WORDS
        .iter()
        .map(|w| (w.to_string(), w.to_string()))
        .collect();
    let grant_inputs = vec![
        input("amount", "Credits", "text", "", Vec::new()),
        input("kind", "Kind", "select", "manual", kinds),
        input("expires_at", "Expires at (RFC 3339)", "text", "", Vec::new()),
        input("note", "Note", "text", "", Vec::new()),
    ];
    let title = format!("Credits of {}", account.text("org_name").unwrap_or_default());
    let status = crate::console::resources::status_for(&errors);
    Ok((
        status,
        html(AccountPage {
            frame: frame(staff, &title),
            id: id.get(),
            balance: b.balance.to_string(),
            pending: b.pending.to_string(),
            total_purchased: b.total_purchased.to_string(),
            total_granted: b.total_granted.to_string(),
            expiring_next: b.expiring_next.as_deref().map(when).unwrap_or_else(|| "—".into()),
            grants,
            entries,
            since: q.get("since").unwrap_or("").to_string(),
            until: q.get("until").unwrap_or("").to_string(),
            filter_error,
            grant_inputs,
            notice: q.get("notice").unwrap_or("").to_string(),
        }),
    )
        .into_response())
}

pub async fn account(
    State(app): State<AppState>,
    screen: Screen<Credits>,
    Path(id): Path<String>,
    uri: Uri,
) -> Response {
    let done = async { account_page(&app, &screen, path_id(&id)?, &query_of(&uri), None, Errors::new()).await };
    respond(done.await)
}

/// Credits granted by hand (a purchase recorded, a promotion): the API's grant.
pub async fn grant(State(app): State<AppState>, Path(id): Path<String>, sent: Submitted<CreditsWrite>) -> Response {
    let Ok(id) = path_id::<AccountId>(&id) else {
        return Refused::NotFound.into_response();
    };
    let done = async { Ok::<_, ApiError>(ledger::grant(&app.db, id, NewGrant::from_form(&sent.form)?).await?) };
    match done.await {
        Ok(g) => Redirect::to(&format!(
            "/console/finance/credit_accounts/{id}?notice={}",
            super::session::urlencode(&format!("{} credits granted.", g.amount))
        ))
        .into_response(),
        Err(ApiError::Invalid(invalid)) => respond(
            account_page(
                &app,
                &sent.screen,
                id,
                &Form::default(),
                Some(&sent.form),
                errors_of(&invalid),
            )
            .await,
        ),
        Err(e) => Refused::from(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn billing_months_run_back_a_year_from_this_one() {
        let day = chrono::NaiveDate::from_ymd_opt(2026, 3, 31).unwrap_or_default();
        let months = billing_months(day);
        assert_eq!(months.len(), 12);
        assert_eq!(months[0], ("2026-03".to_string(), "March 2026".to_string()));
        assert_eq!(months[1].0, "2026-02");
        assert_eq!(months[11].0, "2025-04");
    }

    #[test]
    fn a_day_range_covers_whole_days() {
        let f = entry_filter(&Form::of(&[("since", "2026-12-01"), ("until", "2026-12-03")]));
        assert!(matches!(&f, Ok(f) if f.since.as_deref() == Some("2026-12-01T00:00:00Z")));
        assert!(matches!(&f, Ok(f) if f.until.as_deref() == Some("2026-12-03T23:59:59Z")));
        assert!(entry_filter(&Form::of(&[("since", "yesterday")])).is_err());
    }
}
