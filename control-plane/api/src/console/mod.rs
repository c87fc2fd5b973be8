//! The provider console under `/console/`: server-rendered pages (askama templates, checked
//! at compile time), a stylesheet compiled into the binary, nothing fetched from elsewhere.
//!
//! Every page takes a [`Screen`] extractor naming the permission it needs: the extractor
//! finds the session (no session: a redirect to sign-in, and no data), builds the same
//! [`Principal`](tollgate_domain::access::Principal) the API's guard builds for a token, and
//! refuses what the user's role, sections or services do not allow — a handler cannot forget
//! the check, since the page's data comes through the extractor. Forms carry the session's
//! CSRF token, and [`Submitted`] refuses a form without it. The pages call the same store
//! functions as the API.

mod analytics;
mod billing;
mod bulk;
mod chart;
mod credits;
mod guard;
mod integration;
pub(crate) mod invitations;
mod notifications;
pub(crate) mod pages;
mod personal;
mod rates;
pub(crate) mod render;
pub(crate) mod resources;
pub(crate) mod session;
pub(crate) mod signup;
mod tokens;
mod users;

pub use session::{Screen, Staff, Submitted};

use crate::state::AppState;
use axum::routing::{get, post};
use axum::Router;

/// The console's routes (outside the API's route table and its OpenAPI document: the
/// [`Screen`] extractor is their guard).
pub fn router(app: AppState) -> Router<AppState> {
    resources::router(app.clone())
        .merge(integration::router(app.clone()))
        .merge(bulk::router(app))
        .route("/console", get(pages::to_dashboard))
        .route("/console/", get(pages::dashboard))
        .route("/console/sign_in", get(pages::sign_in_form).post(pages::sign_in))
        .route("/console/sign_out", post(pages::sign_out))
        .route("/console/settings/tokens", get(tokens::list).post(tokens::create))
        .route(
            "/console/settings/tokens/{token_id}/delete",
            get(tokens::confirm_delete).post(tokens::delete),
        )
        .route(
            "/console/settings/personal",
            get(personal::show).post(personal::update_details),
        )
        .route("/console/settings/personal/password", post(personal::change_password))
        .route("/console/accounts/settings", get(signup::show).post(signup::update))
        .route("/console/analytics", get(analytics::to_usage))
        .route("/console/analytics/usage", get(analytics::usage))
        .route("/console/analytics/usage.csv", get(analytics::usage_csv))
        .route("/console/analytics/backends", get(analytics::to_backends))
        .route(
            "/console/settings/notifications",
            get(notifications::show).post(notifications::update),
        )
        .route(
            "/console/settings/invitations",
            get(invitations::list).post(invitations::create),
        )
        .route("/console/settings/invitations/{id}/delete", post(invitations::delete))
        .route(
            "/console/accounts/{account_id}/invitations",
            post(invitations::invite_developer),
        )
        .route(
            "/console/invitations/{token}",
            get(invitations::accept_form).post(invitations::accept),
        )
        .route("/console/finance", get(billing::to_invoices))
        .route(
            "/console/finance/invoices",
            get(billing::invoices).post(billing::create_invoice),
        )
        .route("/console/finance/billing_runs", post(billing::run_billing))
        .route(
            "/console/finance/invoices/{id}",
            get(billing::invoice).post(billing::update_invoice),
        )
        .route("/console/finance/invoices/{id}/pdf", get(billing::invoice_pdf))
        .route("/console/finance/invoices/{id}/state", post(billing::change_state))
        .route("/console/finance/invoices/{id}/charge", post(billing::charge))
        .route("/console/finance/invoices/{id}/line_items", post(billing::add_line))
        .route(
            "/console/finance/invoices/{id}/line_items/{line}/delete",
            post(billing::delete_line),
        )
        .route("/console/finance/credits", get(credits::list).post(credits::issue))
        .route("/console/finance/credits/new", get(credits::new_form))
        .route("/console/finance/credits/accounts", get(credits::account_suggestions))
        .route("/console/finance/credit_accounts", get(credits::accounts))
        .route("/console/finance/credit_accounts/{id}", get(credits::account))
        .route("/console/finance/credit_accounts/{id}/grants", post(credits::grant))
        .route("/console/finance/model_rates", get(rates::list).post(rates::add))
        .route("/console/finance/margins", get(rates::margins))
        .route(
            "/console/finance/credit_settings",
            get(rates::settings).post(rates::update_settings),
        )
        .route(
            "/console/finance/settings",
            get(billing::show_settings).post(billing::update_settings),
        )
        .route("/console/assets/console.css", get(pages::stylesheet))
        .route("/console/assets/console.js", get(pages::script))
}
