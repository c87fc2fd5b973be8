//! The Billing API (3scale's `/api/invoices…`, finance scope), the account's credit card, the
//! earnings report and the master API's billing jobs. Thin: each handler authorizes and calls
//! [`crate::invoices`], [`crate::payments`] or [`crate::billing_run`].

use super::admin::json_id;
use super::{created, wrap, wrap_list, AppState};
use crate::auth::{authorize, Access, Principal, Scope, Section};
use crate::error::ApiError;
use crate::params::Params;
use crate::{invoices, payments};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{json, Value};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/invoices.json", get(list).post(create))
        .route("/api/invoices.csv", get(csv))
        .route("/api/invoices/{id}", get(show).put(update))
        .route("/api/invoices/{id}/state.json", put(set_state))
        .route("/api/invoices/{id}/charge.json", post(charge))
        .route("/api/invoices/{id}/line_items.json", get(lines).post(add_line))
        .route(
            "/api/invoices/{id}/line_items/{line}",
            get(show_line).delete(delete_line),
        )
        .route("/api/invoices/{id}/payment_transactions.json", get(transactions))
        .route(
            "/api/accounts/{account_id}/invoices.json",
            get(list_for_account).post(create_for_account),
        )
        .route("/api/accounts/{account_id}/invoices/{id}", get(show_for_account))
        .route(
            "/admin/api/accounts/{account_id}/credit_card.json",
            put(set_card).delete(delete_card),
        )
        .route("/admin/api/billing/earnings.json", get(earnings))
        .route(
            "/master/api/providers/{provider_id}/billing_jobs.json",
            post(billing_job),
        )
}

async fn finance(app: &AppState, headers: &HeaderMap, p: &Params, access: Access) -> Result<Principal, ApiError> {
    authorize(&app.db, headers, p, Scope::Finance, access, Section::Finance).await
}

/// `{id}`, `{id}.json` → the id; `Some(true)` when it ends in `.pdf`.
fn id_and_format(segment: &str) -> Result<(i64, bool), ApiError> {
    let (id, pdf) = match segment.strip_suffix(".pdf") {
        Some(id) => (id, true),
        None => (segment.strip_suffix(".json").unwrap_or(segment), false),
    };
    Ok((id.parse().map_err(|_| ApiError::NotFound)?, pdf))
}

async fn list(State(app): State<AppState>, headers: HeaderMap, p: Params) -> Result<Json<Value>, ApiError> {
    finance(&app, &headers, &p, Access::Read).await?;
    Ok(wrap_list(
        "invoices",
        "invoice",
        &invoices::list(&app.db, None, &p).await?,
    ))
}

async fn list_for_account(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    finance(&app, &headers, &p, Access::Read).await?;
    let account = json_id(&account)?;
    Ok(wrap_list(
        "invoices",
        "invoice",
        &invoices::list(&app.db, Some(account), &p).await?,
    ))
}

async fn create(State(app): State<AppState>, headers: HeaderMap, p: Params) -> Result<Response, ApiError> {
    finance(&app, &headers, &p, Access::Write).await?;
    Ok(created("invoice", &invoices::create_manual(&app.db, None, &p).await?))
}

async fn create_for_account(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    finance(&app, &headers, &p, Access::Write).await?;
    let account = json_id(&account)?;
    Ok(created(
        "invoice",
        &invoices::create_manual(&app.db, Some(account), &p).await?,
    ))
}

async fn show(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    finance(&app, &headers, &p, Access::Read).await?;
    match id_and_format(&id)? {
        (id, true) => pdf(&app, id).await,
        (id, false) => Ok(wrap("invoice", &invoices::show(&app.db, id, None).await?).into_response()),
    }
}

async fn pdf(app: &AppState, id: i64) -> Result<Response, ApiError> {
    let bytes = invoices::pdf(&app.db, id).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/pdf".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"invoice-{id}.pdf\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

async fn show_for_account(
    State(app): State<AppState>,
    Path((account, id)): Path<(String, String)>,
    headers: HeaderMap,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    finance(&app, &headers, &p, Access::Read).await?;
    let (account, id) = (json_id(&account)?, json_id(&id)?);
    Ok(wrap("invoice", &invoices::show(&app.db, id, Some(account)).await?))
}

async fn update(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    finance(&app, &headers, &p, Access::Write).await?;
    Ok(wrap("invoice", &invoices::update(&app.db, json_id(&id)?, &p).await?))
}

async fn set_state(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    finance(&app, &headers, &p, Access::Write).await?;
    Ok(wrap("invoice", &invoices::set_state(&app.db, json_id(&id)?, &p).await?))
}

/// Charges now. A declined charge is recorded (a payment transaction, the invoice unpaid) and
/// answered 422 with the gateway's message, as 3scale does.
async fn charge(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    finance(&app, &headers, &p, Access::Write).await?;
    let today = chrono::Utc::now().date_naive();
    let (inv, outcome) = payments::charge(&app.db, &app.gateways, json_id(&id)?, today).await?;
    if !outcome.success {
        return Err(ApiError::invalid(
            "base",
            format!("Failed to charge the credit card: {}", outcome.message),
        ));
    }
    let mut conn = app.db.pool.acquire().await?;
    Ok(wrap("invoice", &invoices::to_json(&mut conn, &inv).await?))
}

async fn lines(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    finance(&app, &headers, &p, Access::Read).await?;
    Ok(wrap_list(
        "line_items",
        "line_item",
        &invoices::list_lines(&app.db, json_id(&id)?).await?,
    ))
}

async fn add_line(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    finance(&app, &headers, &p, Access::Write).await?;
    Ok(created(
        "line_item",
        &invoices::create_line(&app.db, json_id(&id)?, &p).await?,
    ))
}

async fn show_line(
    State(app): State<AppState>,
    Path((id, line)): Path<(String, String)>,
    headers: HeaderMap,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    finance(&app, &headers, &p, Access::Read).await?;
    Ok(wrap(
        "line_item",
        &invoices::show_line(&app.db, json_id(&id)?, json_id(&line)?).await?,
    ))
}

async fn delete_line(
    State(app): State<AppState>,
    Path((id, line)): Path<(String, String)>,
    headers: HeaderMap,
    p: Params,
) -> Result<StatusCode, ApiError> {
    finance(&app, &headers, &p, Access::Write).await?;
    invoices::delete_line(&app.db, json_id(&id)?, json_id(&line)?).await?;
    Ok(StatusCode::OK)
}

async fn transactions(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    finance(&app, &headers, &p, Access::Read).await?;
    Ok(wrap_list(
        "payment_transactions",
        "payment_transaction",
        &payments::transactions(&app.db, json_id(&id)?).await?,
    ))
}

async fn csv(State(app): State<AppState>, headers: HeaderMap, p: Params) -> Result<Response, ApiError> {
    finance(&app, &headers, &p, Access::Read).await?;
    let body = invoices::csv(&app.db, &p).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"invoices.csv\""),
        ],
        body,
    )
        .into_response())
}

async fn earnings(State(app): State<AppState>, headers: HeaderMap, p: Params) -> Result<Json<Value>, ApiError> {
    finance(&app, &headers, &p, Access::Read).await?;
    Ok(wrap_list("earnings", "month", &invoices::earnings(&app.db, &p).await?))
}

async fn set_card(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    authorize(
        &app.db,
        &headers,
        &p,
        Scope::AccountManagement,
        Access::Write,
        Section::Partners,
    )
    .await?;
    Ok(wrap(
        "account",
        &payments::set_card(&app.db, json_id(&account)?, &p).await?,
    ))
}

async fn delete_card(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Result<StatusCode, ApiError> {
    authorize(
        &app.db,
        &headers,
        &p,
        Scope::AccountManagement,
        Access::Write,
        Section::Partners,
    )
    .await?;
    payments::delete_card(&app.db, json_id(&account)?).await?;
    Ok(StatusCode::OK)
}

/// `POST /master/api/providers/{provider_id}/billing_jobs.json` with `date` (3scale's master
/// API): runs billing for that date now and answers what it did.
async fn billing_job(
    State(app): State<AppState>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    finance(&app, &headers, &p, Access::Write).await?;
    if json_id(&provider)? != crate::catalog::provider::PROVIDER_ID {
        return Err(ApiError::NotFound);
    }
    let date = p.required("date")?.trim();
    let date = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .map_err(|_| ApiError::invalid("date", "must be a date, YYYY-MM-DD"))?;
    let report = crate::billing_run::run(&app.db, &app.gateways, date).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"billing_job": report.to_json()}))).into_response())
}
