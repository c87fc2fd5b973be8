//! The account's billing details: the billing address invoices print (set as the admin API's
//! `billing_address.json` sets it, refusals next to their fields) and the card on file as
//! far as it may be shown (last 4 digits, expiry).

use super::pages::{respond, Frame};
use super::session::{Developer, Posted};
use crate::console::render::{card_text, html};
use crate::console::resources::{address_inputs, errors_of, Errors, Input};
use crate::error::ApiError;
use crate::state::AppState;
use askama::Template;
use axum::extract::State;
use axum::http::Uri;
use axum::response::{IntoResponse, Redirect, Response};
use tollgate_domain::form::{Form, FromForm};
use tollgate_domain::invoice::Address;
use tollgate_store::billing::payments;
use tollgate_store::catalog::{accounts, crud as store};

#[derive(Template)]
#[template(path = "portal/billing.html")]
struct BillingPage<'a> {
    frame: Frame<'a>,
    inputs: Vec<Input>,
    card: String,
    saved: bool,
}

async fn page(
    app: &AppState,
    d: &Developer,
    sent: Option<&Form>,
    errors: Errors,
    saved: bool,
) -> Result<Response, ApiError> {
    let record = store::find(&app.db, &accounts::ACCOUNTS, &[], d.account.get()).await?;
    let card = match payments::card_status(&app.db, d.account).await? {
        Some(c) => card_text(&c),
        None => "No card on file.".into(),
    };
    let status = crate::console::resources::status_for(&errors);
    Ok((
        status,
        html(BillingPage {
            frame: Frame::of(d, "Billing details"),
            inputs: address_inputs(&record, sent, &errors),
            card,
            saved,
        }),
    )
        .into_response())
}

pub async fn show(State(app): State<AppState>, d: Developer, uri: Uri) -> Response {
    respond(page(&app, &d, None, Errors::new(), uri.query() == Some("saved")).await)
}

pub async fn update(State(app): State<AppState>, posted: Posted) -> Response {
    let d = &posted.developer;
    let done = async {
        let address = Address::from_form(&posted.form)?;
        accounts::set_billing_address(&app.db, d.account, &address).await?;
        Ok::<_, ApiError>(())
    };
    match done.await {
        Ok(()) => Redirect::to("/portal/billing?saved").into_response(),
        Err(ApiError::Invalid(invalid)) => {
            let errors = errors_of(&invalid)
                .into_iter()
                .map(|(k, v)| (format!("address.{k}"), v))
                .collect();
            respond(page(&app, d, Some(&posted.form), errors, false).await)
        }
        Err(e) => respond(Err(e)),
    }
}
