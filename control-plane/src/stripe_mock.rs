//! A local stand-in for Stripe's API, speaking its documented wire format (form-encoded
//! requests, Bearer secret key, `Idempotency-Key`, JSON objects and error objects), for tests
//! of the Stripe gateway: Stripe's servers can't be reached from here.
//!
//! Customers: `cus_ok` (default payment method `pm_card_visa`), `cus_declined`
//! (`pm_card_chargeDeclined`), `cus_3ds` (`pm_card_authenticationRequired`), `cus_nodefault`
//! (none); any other customer does not exist. Payment methods behave as Stripe's test cards of
//! those names.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub const SECRET_KEY: &str = "sk_test_tollgate";

#[derive(Default)]
struct Inner {
    /// Answers by idempotency key: the same request again gets the same answer.
    answered: HashMap<String, (u16, Value)>,
    /// Every payment intent request (its form), in order.
    intents: Vec<HashMap<String, String>>,
    /// The next payment intent is held: told it arrived, it waits to be released.
    hold: Option<(tokio::sync::oneshot::Sender<()>, tokio::sync::oneshot::Receiver<()>)>,
}

#[derive(Clone, Default)]
pub struct StripeMock {
    inner: Arc<Mutex<Inner>>,
}

impl StripeMock {
    /// How many payment intents were requested (repeats of one idempotency key count once).
    pub fn intents(&self) -> Vec<HashMap<String, String>> {
        self.inner.lock().map(|i| i.intents.clone()).unwrap_or_default()
    }

    /// Holds the next payment intent until `release` is sent (or dropped): the returned
    /// receiver fires when it arrives. For races between a charge and the invoice moving.
    pub fn hold_next_intent(&self) -> (tokio::sync::oneshot::Receiver<()>, tokio::sync::oneshot::Sender<()>) {
        let (arrived_tx, arrived) = tokio::sync::oneshot::channel();
        let (release, release_rx) = tokio::sync::oneshot::channel();
        if let Ok(mut inner) = self.inner.lock() {
            inner.hold = Some((arrived_tx, release_rx));
        }
        (arrived, release)
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/customers/{id}", get(customer))
            .route("/v1/payment_intents", post(payment_intent))
            .with_state(self.clone())
    }

    /// Serves on a free local port; returns the API base URL.
    pub async fn spawn(&self) -> std::io::Result<String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = self.router();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(format!("http://{addr}"))
    }
}

fn error(status: StatusCode, error: Value) -> Response {
    (status, Json(json!({ "error": error }))).into_response()
}

fn authorized(headers: &HeaderMap) -> Result<(), Box<Response>> {
    let ok = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {SECRET_KEY}"));
    if ok {
        Ok(())
    } else {
        Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            json!({"type": "invalid_request_error", "message": "Invalid API Key provided"}),
        )))
    }
}

fn default_method(customer: &str) -> Option<Option<&'static str>> {
    match customer {
        "cus_ok" => Some(Some("pm_card_visa")),
        "cus_declined" => Some(Some("pm_card_chargeDeclined")),
        "cus_3ds" => Some(Some("pm_card_authenticationRequired")),
        "cus_nodefault" => Some(None),
        _ => None,
    }
}

fn no_such_customer(id: &str, param: &str) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        json!({"type": "invalid_request_error", "code": "resource_missing", "param": param,
               "message": format!("No such customer: '{id}'")}),
    )
}

async fn customer(State(_): State<StripeMock>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Err(r) = authorized(&headers) {
        return *r;
    }
    match default_method(&id) {
        Some(pm) => Json(json!({"id": id, "object": "customer", "invoice_settings": {"default_payment_method": pm}}))
            .into_response(),
        None => {
            let mut r = no_such_customer(&id, "id");
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
    }
}

async fn payment_intent(
    State(mock): State<StripeMock>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Err(r) = authorized(&headers) {
        return *r;
    }
    let hold = mock.inner.lock().ok().and_then(|mut i| i.hold.take());
    if let Some((arrived, release)) = hold {
        let _ = arrived.send(());
        let _ = release.await;
    }
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let Ok(mut inner) = mock.inner.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    if let Some((status, body)) = key.as_ref().and_then(|k| inner.answered.get(k)) {
        return (
            StatusCode::from_u16(*status).unwrap_or(StatusCode::OK),
            Json(body.clone()),
        )
            .into_response();
    }
    inner.intents.push(form.clone());
    let id = format!("pi_{}", inner.intents.len());
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let amount: i64 = field("amount").parse().unwrap_or(0);
    let (status, body) = if amount <= 0 {
        (
            400,
            json!({"error": {"type": "invalid_request_error", "param": "amount", "message": "Invalid positive integer"}}),
        )
    } else if field("confirm") != "true" || field("off_session") != "true" {
        (
            400,
            json!({"error": {"type": "invalid_request_error", "message": "this stand-in only confirms off-session"}}),
        )
    } else if default_method(field("customer")).is_none() {
        (
            400,
            json!({"error": {"type": "invalid_request_error", "code": "resource_missing", "param": "customer",
            "message": format!("No such customer: '{}'", field("customer"))}}),
        )
    } else {
        let intent = |status: &str| {
            json!({"id": id, "object": "payment_intent", "amount": amount, "currency": field("currency"),
                   "customer": field("customer"), "payment_method": field("payment_method"), "status": status})
        };
        match field("payment_method") {
            "pm_card_visa" => (200, intent("succeeded")),
            "pm_card_chargeDeclined" => (
                402,
                json!({"error": {"type": "card_error", "code": "card_declined",
                "decline_code": "generic_decline", "message": "Your card was declined.",
                "payment_intent": intent("requires_payment_method")}}),
            ),
            "pm_card_authenticationRequired" => (
                402,
                json!({"error": {"type": "card_error",
                "code": "authentication_required", "decline_code": "authentication_required",
                "message": "Your card was declined. This transaction requires authentication.",
                "payment_intent": intent("requires_payment_method")}}),
            ),
            other => (
                400,
                json!({"error": {"type": "invalid_request_error", "code": "resource_missing",
                "param": "payment_method", "message": format!("No such PaymentMethod: '{other}'")}}),
            ),
        }
    };
    if let Some(k) = key {
        inner.answered.insert(k, (status, body.clone()));
    }
    (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), Json(body)).into_response()
}
