//! The developers' portal under `/portal/`: a developer (a user of a developer account) signs
//! in and sees their own account only — its applications and their credentials, usage against
//! each limit, the credit balance with the purchase link, invoices with their PDFs, billing
//! details — and, when the provider's usage rules allow it, signs up.
//!
//! Server-rendered like the console, with the console's session and CSRF rules through the
//! same store functions (a [`Portal`](tollgate_store::console::Portal) realm of its own, its
//! own cookie on `/portal`). Every page takes a [`Developer`](session::Developer), and every
//! record it reads is read with the developer's account as its scope, so a tampered id is
//! simply not found.

mod account;
mod applications;
mod invoices;
mod pages;
mod session;

use crate::state::AppState;
use axum::response::Redirect;
use axum::routing::{get, post};
use axum::Router;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/portal", get(|| async { Redirect::permanent("/portal/") }))
        .route("/portal/", get(pages::home))
        .route("/portal/sign_in", get(pages::sign_in_form).post(pages::sign_in))
        .route("/portal/sign_out", post(pages::sign_out))
        .route("/portal/signup", get(pages::signup_form).post(pages::signup))
        .route(
            "/portal/invitations/{token}",
            get(pages::invitation_form).post(pages::accept_invitation),
        )
        .route("/portal/applications", post(applications::create))
        .route("/portal/applications/new", get(applications::new_form))
        .route("/portal/applications/{id}", get(applications::show))
        .route(
            "/portal/applications/{id}/user_key",
            post(applications::regenerate_user_key),
        )
        .route("/portal/applications/{id}/keys", post(applications::add_key))
        .route("/portal/invoices", get(invoices::list))
        .route("/portal/invoices/{id}", get(invoices::show))
        .route("/portal/invoices/{id}/pdf", get(invoices::pdf))
        .route("/portal/billing", get(account::show).post(account::update))
}
