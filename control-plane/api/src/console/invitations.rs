//! Settings › Users › Invitations (3scale Ch. 3): an admin invites someone by e-mail; the
//! invitee opens the link, chooses a user name and password, and is signed in as a member
//! with no sections until an admin grants some (on the user's page).
//!
//! The link is a credential: it is e-mailed at once over the configured SMTP server (not
//! through the outbox, whose events webhooks may see) and shown to the inviting admin this
//! once, so an invitation works without e-mail too. The acceptance form is shown before there
//! is a session, so it carries the sign-in form's double-submit CSRF token.

use super::pages::{pre_session_csrf, pre_session_csrf_ok, signed_in, Frame};
use super::render::{html, message, when};
use super::resources::{errors_of, Errors, Input};
use super::session::{form_fields, Invitations, Refused, Screen, Submitted};
use crate::error::ApiError;
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::CookieJar;
use tollgate_store::invitations::{self, Invitation};

#[derive(Template)]
#[template(path = "console/invitations.html")]
struct ListPage<'a> {
    frame: Frame<'a>,
    invitations: Vec<Invitation>,
    email: &'a str,
    error: String,
    /// Just made: the address, the link (shown this once), whether it was e-mailed.
    sent: Option<(String, String, Result<(), String>)>,
}

async fn list_page(
    app: &AppState,
    screen: &Screen<Invitations>,
    email: &str,
    error: String,
    sent: Option<(String, String, Result<(), String>)>,
) -> Response {
    let invitations = match invitations::list(&app.db).await {
        Ok(i) => i,
        Err(e) => return Refused::from(e).into_response(),
    };
    let status = match error.is_empty() {
        true => StatusCode::OK,
        false => StatusCode::UNPROCESSABLE_ENTITY,
    };
    let page = html(ListPage {
        frame: Frame {
            title: "Invitations",
            section: "Settings",
            username: &screen.username,
            csrf: &screen.session.csrf_token,
        },
        invitations,
        email,
        error,
        sent,
    });
    (status, page).into_response()
}

pub async fn list(State(app): State<AppState>, screen: Screen<Invitations>) -> Response {
    list_page(&app, &screen, "", String::new(), None).await
}

/// Where the console is, as the inviting admin's browser reached it.
fn console_origin(headers: &axum::http::HeaderMap, tls: bool) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    format!("{}://{host}", if tls { "https" } else { "http" })
}

pub async fn create(
    State(app): State<AppState>,
    headers: axum::http::HeaderMap,
    sent: Submitted<Invitations>,
) -> Response {
    let tls = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    let origin = console_origin(&headers, tls);
    let email = sent.form.get("email").unwrap_or("").to_string();
    match invitations::create(&app.db, &email).await {
        Ok((invitation, token)) => {
            let url = format!("{origin}/console/invitations/{token}");
            let mailed = match &app.mailer {
                None => Err("no SMTP server is configured (TOLLGATE_SMTP_URL)".to_string()),
                Some(mailer) => {
                    let provider = match tollgate_store::catalog::provider::account(&app.db).await {
                        Ok(p) => p,
                        Err(e) => return Refused::from(e).into_response(),
                    };
                    let mail = crate::delivery::mail::invitation(&provider, &url);
                    let attempt = mailer
                        .send(&invitation.email, &mail, &format!("invitation-{}", invitation.id))
                        .await;
                    attempt.error.map_or(Ok(()), Err)
                }
            };
            list_page(
                &app,
                &sent.screen,
                "",
                String::new(),
                Some((invitation.email, url, mailed)),
            )
            .await
        }
        Err(tollgate_store::StoreError::Invalid(invalid)) => {
            let error = errors_of(&invalid).remove("email").unwrap_or_default().join("; ");
            list_page(&app, &sent.screen, &email, error, None).await
        }
        Err(e) => Refused::from(e).into_response(),
    }
}

pub async fn delete(State(app): State<AppState>, Path(id): Path<String>, _sent: Submitted<Invitations>) -> Response {
    let done = async {
        let id: i64 = id.parse().map_err(|_| ApiError::NotFound)?;
        invitations::delete(&app.db, id).await?;
        Ok::<_, ApiError>(())
    }
    .await;
    match done {
        Ok(()) => Redirect::to("/console/settings/invitations").into_response(),
        Err(e) => Refused::from(e).into_response(),
    }
}

#[derive(Template)]
#[template(path = "console/invitation.html")]
struct AcceptPage<'a> {
    csrf: &'a str,
    action: &'a str,
    email: &'a str,
    inputs: Vec<Input>,
}

fn closed() -> Response {
    message(
        StatusCode::NOT_FOUND,
        "This invitation does not open",
        "It was used already, cancelled, or is older than its validity. Ask an admin to invite you again.",
    )
}

fn accept_page(
    jar: CookieJar,
    parts: &axum::http::request::Parts,
    invitation: &Invitation,
    sent: Option<&tollgate_domain::form::Form>,
    errors: Errors,
) -> Response {
    let (jar, csrf) = pre_session_csrf(jar, parts);
    let field = |name: &'static str, label: &str, control: &'static str| Input {
        name,
        label: label.to_string(),
        control,
        value: match control {
            "password" => String::new(),
            _ => sent.and_then(|f| f.get(name)).unwrap_or("").to_string(),
        },
        options: Vec::new(),
        errors: errors.get(name).map(|e| e.join("; ")).unwrap_or_default(),
        required: true,
    };
    let status = match errors.is_empty() {
        true => StatusCode::OK,
        false => StatusCode::UNPROCESSABLE_ENTITY,
    };
    let page = html(AcceptPage {
        csrf: &csrf,
        action: parts.uri.path(),
        email: &invitation.email,
        inputs: vec![
            field("username", "User name", "text"),
            field("password", "Password", "password"),
            field("password_confirmation", "Password again", "password"),
        ],
    });
    (status, jar, page).into_response()
}

pub async fn accept_form(
    State(app): State<AppState>,
    jar: CookieJar,
    Path(token): Path<String>,
    req: Request,
) -> Response {
    let (parts, _) = req.into_parts();
    match invitations::open(&app.db, &token, chrono::Utc::now()).await {
        Ok(Some(invitation)) => accept_page(jar, &parts, &invitation, None, Errors::new()),
        Ok(None) => closed(),
        Err(e) => Refused::from(e).into_response(),
    }
}

pub async fn accept(State(app): State<AppState>, jar: CookieJar, Path(token): Path<String>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let form = match form_fields(&parts, body).await {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    if !pre_session_csrf_ok(&jar, &form) {
        return Refused::Csrf.into_response();
    }
    let now = chrono::Utc::now();
    let invitation = match invitations::open(&app.db, &token, now).await {
        Ok(Some(i)) => i,
        Ok(None) => return closed(),
        Err(e) => return Refused::from(e).into_response(),
    };
    let field = |k: &str| form.get(k).unwrap_or("");
    if field("password") != field("password_confirmation") {
        let errors = Errors::from([(
            "password_confirmation".to_string(),
            vec!["doesn't match the password".to_string()],
        )]);
        return accept_page(jar, &parts, &invitation, Some(&form), errors);
    }
    match invitations::accept(&app.db, &token, field("username").trim(), field("password"), now).await {
        Ok(user) => match tollgate_store::console::start(&app.db, user, now).await {
            Ok(signed) => signed_in(jar, &parts, signed, "/console/"),
            Err(e) => Refused::from(e).into_response(),
        },
        Err(tollgate_store::StoreError::Invalid(invalid)) => {
            accept_page(jar, &parts, &invitation, Some(&form), errors_of(&invalid))
        }
        Err(tollgate_store::StoreError::NotFound) => closed(),
        Err(e) => Refused::from(e).into_response(),
    }
}
