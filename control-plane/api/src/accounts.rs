//! Developer accounts beyond CRUD: signup (an account with its admin user and applications on
//! the default plans), finding one, its account plan, billing address, messages and credit card.

use crate::error::{path_id, ApiError};
use crate::params::Params;
use crate::render::{self, created, wrap};
use crate::routes::{am, Routes};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde_json::{json, Value};
use tollgate_domain::access::{Access, Section};
use tollgate_domain::catalog::{AccountLookup, NewMessage};
use tollgate_domain::form::FromForm;
use tollgate_domain::ids::AccountId;
use tollgate_domain::invoice::Address;
use tollgate_store::billing::payments::{self, CardInput};
use tollgate_store::catalog::accounts::{self, Signup};
use tollgate_store::credits;

pub fn routes(r: &mut Routes) {
    let (read, write) = (
        am(Access::Read, Section::Partners),
        am(Access::Write, Section::Partners),
    );
    r.post(
        "/admin/api/signup.json",
        write,
        "Create a developer account with its admin user",
        signup,
    );
    r.get(
        "/admin/api/accounts/find.json",
        read,
        "Find an account by username, email or user_id",
        find,
    );
    r.get(
        "/admin/api/accounts/{account_id}/plan.json",
        read,
        "The account's account plan",
        plan,
    );
    r.put(
        "/admin/api/accounts/{account_id}/billing_address.json",
        write,
        "Set the account's billing address",
        billing_address,
    );
    r.post(
        "/admin/api/accounts/{account_id}/messages.json",
        write,
        "Send a message to an account",
        message,
    );
    r.put(
        "/admin/api/accounts/{account_id}/credit_card.json",
        write,
        "Store the gateway's customer reference (credit_card_token), payment_method_id, last 4 digits, expiry",
        set_card,
    );
    r.delete(
        "/admin/api/accounts/{account_id}/credit_card.json",
        write,
        "Forget the account's payment method",
        delete_card,
    );
}

async fn signup(State(app): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let account = accounts::signup(&app.db, Signup::from_form(&p)?).await?;
    credits::welcome(&app.db, AccountId::new(account.id())).await?;
    Ok(created("account", render::record(&account)))
}

async fn find(State(app): State<AppState>, p: Params) -> Result<Json<Value>, ApiError> {
    let account = accounts::find(&app.db, &AccountLookup::from_form(&p)?).await?;
    Ok(render::one(&account))
}

async fn plan(State(app): State<AppState>, Path(account): Path<String>) -> Result<Json<Value>, ApiError> {
    let plan = accounts::plan(&app.db, path_id(&account)?).await?;
    Ok(wrap("account_plan", render::record(&plan)))
}

async fn billing_address(
    State(app): State<AppState>,
    Path(account): Path<String>,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    let address = Address::from_form(&p)?;
    let account = accounts::set_billing_address(&app.db, path_id(&account)?, &address).await?;
    Ok(render::one(&account))
}

async fn message(State(app): State<AppState>, Path(account): Path<String>, p: Params) -> Result<Response, ApiError> {
    let m = accounts::send_message(&app.db, path_id(&account)?, &NewMessage::from_form(&p)?).await?;
    Ok(created(
        "message",
        json!({"id": m.id, "account_id": m.account_id, "subject": m.subject, "body": m.body,
               "state": "sent", "created_at": m.created_at}),
    ))
}

async fn set_card(
    State(app): State<AppState>,
    Path(account): Path<String>,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    let card = payments::set_card(&app.db, path_id(&account)?, &CardInput::from_form(&p)?).await?;
    Ok(wrap(
        "account",
        json!({"account_id": card.account_id, "credit_card_stored": true,
               "credit_card_partial_number": card.partial, "credit_card_expires_on": card.expires_on}),
    ))
}

async fn delete_card(State(app): State<AppState>, Path(account): Path<String>) -> Result<StatusCode, ApiError> {
    payments::delete_card(&app.db, path_id(&account)?).await?;
    Ok(StatusCode::OK)
}
