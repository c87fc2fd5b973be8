//! Prepaid credits over HTTP (extensions in 3scale's style): settings, grants, the balance and
//! the ledger, issued credits (Apigee's) and the margin report. Rates are a catalog resource
//! ([`crate::crud`]).

use crate::error::{path_id, ApiError};
use crate::params::Params;
use crate::render::{created, decimal, wrap, wrap_list};
use crate::routes::{am, Routes};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::Json;
use serde_json::{json, Value};
use tollgate_domain::access::{Access, Section};
use tollgate_domain::credits::{month, NewGrant, NewIssuedCredit, Settings, SettingsPatch};
use tollgate_domain::form::FromForm;
use tollgate_store::credits::issued::{self, Issued};
use tollgate_store::credits::ledger::{self, Entry, EntryFilter, Grant};
use tollgate_store::credits::{self, margins};

pub fn routes(r: &mut Routes) {
    let partners = |access| am(access, Section::Partners);
    let settings = "/admin/api/settings/credits.json";
    r.get(
        settings,
        am(Access::Read, Section::Settings),
        "Prepaid credit settings: starter_credits, low_balance_threshold, purchase_url",
        show_settings,
    );
    r.put(
        settings,
        am(Access::Write, Section::Settings),
        "Update the prepaid credit settings",
        update_settings,
    );
    let grants = "/admin/api/accounts/{account_id}/credit_grants.json";
    r.get(
        grants,
        partners(Access::Read),
        "An account's credit grants",
        list_grants,
    );
    r.post(
        grants,
        partners(Access::Write),
        "Grant credits: amount (> 0), kind (purchase|manual|starter|promotional), expires_at, note",
        grant,
    );
    r.get(
        "/admin/api/accounts/{account_id}/credit_balance.json",
        partners(Access::Read),
        "Balance as enforced now, pending deductions, totals, next expiry",
        balance,
    );
    r.get(
        "/admin/api/accounts/{account_id}/credit_transactions.json",
        partners(Access::Read),
        "The credit ledger (since, until, kind; paginated), each entry with the balance after it",
        transactions,
    );
    let issued = "/admin/api/accounts/{account_id}/credits.json";
    r.get(
        issued,
        partners(Access::Read),
        "Credits issued to the developer (billing_month filter)",
        list_issued,
    );
    r.post(
        issued,
        partners(Access::Write),
        "Issue credits: amount (not 0), currency, billing_month (YYYY-MM), note, service_id, application_plan_id; prepaid: adjusts the balance, postpaid: a credit line on that month's invoice",
        issue,
    );
    r.get(
        "/admin/api/services/{service_id}/credit_margins.json",
        am(Access::Read, Section::Plans),
        "Per rated metric and month: credits charged, upstream cost, margin",
        list_margins,
    );
}

fn settings_json(s: &Settings) -> Json<Value> {
    wrap(
        "credit_settings",
        json!({
            "starter_credits": s.starter_credits.to_string(),
            "low_balance_threshold": s.low_balance_threshold.to_string(),
            "purchase_url": s.purchase_url,
        }),
    )
}

async fn show_settings(State(app): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(settings_json(&credits::settings::read(&app.db).await?))
}

async fn update_settings(State(app): State<AppState>, p: Params) -> Result<Json<Value>, ApiError> {
    Ok(settings_json(
        &credits::settings::update(&app.db, SettingsPatch::from_form(&p)?).await?,
    ))
}

fn grant_json(g: &Grant) -> Value {
    json!({
        "id": g.id, "account_id": g.account_id, "amount": g.amount.to_string(), "kind": g.kind.as_str(),
        "expires_at": g.expires_at, "note": g.note, "created_at": g.created_at,
    })
}

async fn list_grants(State(app): State<AppState>, Path(account): Path<String>) -> Result<Json<Value>, ApiError> {
    let grants = ledger::grants(&app.db, path_id(&account)?).await?;
    Ok(wrap_list(
        "credit_grants",
        "credit_grant",
        grants.iter().map(grant_json),
    ))
}

async fn grant(State(app): State<AppState>, Path(account): Path<String>, p: Params) -> Result<Response, ApiError> {
    let g = ledger::grant(&app.db, path_id(&account)?, NewGrant::from_form(&p)?).await?;
    Ok(created("credit_grant", grant_json(&g)))
}

async fn balance(State(app): State<AppState>, Path(account): Path<String>) -> Result<Json<Value>, ApiError> {
    let b = ledger::balance(&app.db, &app.counters, path_id(&account)?).await?;
    Ok(wrap(
        "credit_balance",
        json!({
            "balance": b.balance.to_string(), "pending": b.pending.to_string(),
            "total_purchased": b.total_purchased.to_string(), "total_granted": b.total_granted.to_string(),
            "expiring_next": b.expiring_next,
        }),
    ))
}

fn entry_json(e: &Entry) -> Value {
    let detail = e.detail.as_ref().map(|items| {
        items
            .iter()
            .map(|d| {
                json!({"application_id": d.application_id, "metric_id": d.metric_id, "metric": d.metric,
                       "quantity": d.quantity, "credits": decimal(d.credits), "upstream_cost": decimal(d.upstream_cost)})
            })
            .collect::<Vec<_>>()
    });
    json!({
        "id": e.id, "account_id": e.account_id, "kind": e.kind.as_str(), "amount": e.amount.to_string(),
        "balance_after": e.balance_after.to_string(), "grant_id": e.grant_id, "note": e.note,
        "detail": detail, "created_at": e.created_at,
    })
}

async fn transactions(
    State(app): State<AppState>,
    Path(account): Path<String>,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    let entries = ledger::transactions(&app.db, path_id(&account)?, &EntryFilter::from_form(&p)?).await?;
    Ok(wrap_list(
        "credit_transactions",
        "credit_transaction",
        entries.iter().map(entry_json),
    ))
}

fn issued_json(c: &Issued) -> Value {
    json!({
        "id": c.id, "account_id": c.account_id, "amount": c.amount.normalize().to_string(), "currency": c.currency,
        "billing_month": c.billing_month, "note": c.note, "service_id": c.service_id,
        "application_plan_id": c.application_plan_id,
        "applied_to": if c.transaction_id.is_some() { "balance" } else { "invoice" },
        "credit_transaction_id": c.transaction_id, "invoiced_at": c.invoiced_at, "created_at": c.created_at,
    })
}

async fn list_issued(
    State(app): State<AppState>,
    Path(account): Path<String>,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    let list = issued::list(&app.db, path_id(&account)?, p.text("billing_month")).await?;
    Ok(wrap_list("credits", "credit", list.iter().map(issued_json)))
}

async fn issue(State(app): State<AppState>, Path(account): Path<String>, p: Params) -> Result<Response, ApiError> {
    let c = issued::issue(&app.db, path_id(&account)?, NewIssuedCredit::from_form(&p)?).await?;
    Ok(created("credit", issued_json(&c)))
}

async fn list_margins(
    State(app): State<AppState>,
    Path(service): Path<String>,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    let month = month(&p, "month")?;
    let list = margins::margins(&app.db, path_id(&service)?, month.as_deref()).await?;
    Ok(wrap_list(
        "credit_margins",
        "credit_margin",
        list.iter().map(|m| {
            json!({
                "metric_id": m.metric_id, "metric": m.metric, "month": m.month,
                "credits_charged": m.credits_charged.to_string(), "upstream_cost": m.upstream_cost.to_string(),
                "margin": m.margin().to_string(),
            })
        }),
    ))
}
