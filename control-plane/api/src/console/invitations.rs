//! Settings › Users › Invitations (3scale Ch. 3): an admin invites someone by e-mail; the
//! invitee opens the link, chooses a user name and password, and is signed in as a member
//! with no sections until an admin grants some (on the user's page).
//!
//! The link is a credential: it is e-mailed at once over the configured SMTP server (not
//! through the outbox, whose events webhooks may see) and shown to the inviting admin this
//! once, so an invitation works without e-mail too. The acceptance form is shown before there
//! is a session, so it carries the sign-in form's double-submit CSRF token.

use super::pages::{pre_session_csrf_for, pre_session_csrf_ok, signed_in, Frame};
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
use tollgate_domain::form::Form;
use tollgate_store::invitations::{self, Accepted, Invitation};

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
    let invitations = match invitations::list(&app.db, None).await {
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
fn console_origin(headers: &axum::http::HeaderMap) -> String {
    let tls = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    format!("{}://{host}", if tls { "https" } else { "http" })
}

/// An invitation just made: its link (under the console or the portal), e-mailed at once when
/// SMTP is configured. `Err`: why it was not e-mailed (the link is shown instead).
async fn send(
    app: &AppState,
    headers: &axum::http::HeaderMap,
    invitation: &Invitation,
    token: &str,
    account: Option<&str>,
) -> Result<(String, Result<(), String>), ApiError> {
    let door = match account {
        None => "console",
        Some(_) => "portal",
    };
    let url = format!("{}/{door}/invitations/{token}", console_origin(headers));
    let mailed = match &app.mailer {
        None => Err("no SMTP server is configured (TOLLGATE_SMTP_URL)".to_string()),
        Some(mailer) => {
            let provider = tollgate_store::catalog::provider::account(&app.db).await?;
            let mail = crate::delivery::mail::invitation(&provider, &url, account);
            let attempt = mailer
                .send(&invitation.email, &mail, &format!("invitation-{}", invitation.id))
                .await;
            attempt.error.map_or(Ok(()), Err)
        }
    };
    Ok((url, mailed))
}

pub async fn create(
    State(app): State<AppState>,
    headers: axum::http::HeaderMap,
    sent: Submitted<Invitations>,
) -> Response {
    let email = sent.form.get("email").unwrap_or("").to_string();
    match invitations::create(&app.db, &email, None).await {
        Ok((invitation, token)) => {
            let (url, mailed) = match send(&app, &headers, &invitation, &token, None).await {
                Ok(sent) => sent,
                Err(e) => return Refused::from(e).into_response(),
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
    heading: &'a str,
    csrf: &'a str,
    action: &'a str,
    email: &'a str,
    inputs: Vec<Input>,
}

/// What a link that does not open says.
pub const CLOSED: (&str, &str) = (
    "This invitation does not open",
    "It was used already, cancelled, or is older than its validity. Ask an admin to invite you again.",
);

fn closed() -> Response {
    message(StatusCode::NOT_FOUND, CLOSED.0, CLOSED.1)
}

/// The acceptance form under `root` (`/console`, `/portal`), with its pre-session CSRF token.
pub fn accept_page(
    root: &'static str,
    jar: CookieJar,
    parts: &axum::http::request::Parts,
    invitation: &Invitation,
    sent: Option<&Form>,
    errors: Errors,
) -> Response {
    let (jar, csrf) = pre_session_csrf_for(root, jar, parts);
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
    let heading = match invitation.account_id {
        None => "Join the console",
        Some(_) => "Join your team in the developer portal",
    };
    let page = html(AcceptPage {
        heading,
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
        Ok(Some(invitation)) if invitation.account_id.is_none() => {
            accept_page("/console", jar, &parts, &invitation, None, Errors::new())
        }
        Ok(_) => closed(),
        Err(e) => Refused::from(e).into_response(),
    }
}

/// Why an acceptance did not make a user: the form again (refused by field), or the link closed.
pub enum NotAccepted {
    Form(Form, Errors),
    Closed,
    Refused(Refused),
}

/// Accepts the invitation `token` opens, if `door` takes it (staff at the console, a developer
/// account's at the portal), with the posted form (its pre-session CSRF token checked).
pub async fn accepted(
    app: &AppState,
    jar: &CookieJar,
    parts: &axum::http::request::Parts,
    body: axum::body::Body,
    token: &str,
    door: impl Fn(&Invitation) -> bool,
) -> Result<Accepted, (Option<Invitation>, NotAccepted)> {
    let form = form_fields(parts, body)
        .await
        .map_err(|r| (None, NotAccepted::Refused(r)))?;
    if !pre_session_csrf_ok(jar, &form) {
        return Err((None, NotAccepted::Refused(Refused::Csrf)));
    }
    let now = chrono::Utc::now();
    let invitation = match invitations::open(&app.db, token, now).await {
        Ok(Some(i)) if door(&i) => i,
        Ok(_) => return Err((None, NotAccepted::Closed)),
        Err(e) => return Err((None, NotAccepted::Refused(e.into()))),
    };
    let field = |k: &str| form.get(k).unwrap_or("");
    if field("password") != field("password_confirmation") {
        let errors = Errors::from([(
            "password_confirmation".to_string(),
            vec!["doesn't match the password".to_string()],
        )]);
        return Err((Some(invitation), NotAccepted::Form(form, errors)));
    }
    match invitations::accept(&app.db, token, field("username").trim(), field("password"), now).await {
        Ok(accepted) => Ok(accepted),
        Err(tollgate_store::StoreError::Invalid(invalid)) => {
            Err((Some(invitation), NotAccepted::Form(form, errors_of(&invalid))))
        }
        Err(tollgate_store::StoreError::NotFound) => Err((None, NotAccepted::Closed)),
        Err(e) => Err((None, NotAccepted::Refused(e.into()))),
    }
}

pub async fn accept(State(app): State<AppState>, jar: CookieJar, Path(token): Path<String>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    match accepted(&app, &jar, &parts, body, &token, |i| i.account_id.is_none()).await {
        Ok(Accepted::Staff(user)) => match tollgate_store::console::start(&app.db, user, chrono::Utc::now()).await {
            Ok(signed) => signed_in(jar, &parts, signed, "/console/"),
            Err(e) => Refused::from(e).into_response(),
        },
        Ok(Accepted::Developer(_)) | Err((_, NotAccepted::Closed)) => closed(),
        Err((Some(invitation), NotAccepted::Form(form, errors))) => {
            accept_page("/console", jar, &parts, &invitation, Some(&form), errors)
        }
        Err((_, NotAccepted::Refused(r))) => r.into_response(),
        Err((None, NotAccepted::Form(..))) => closed(),
    }
}

/// Audience › Accounts › an account › Invite a user (3scale Ch. 14): the invitee joins that
/// developer account and signs in to the portal. The link is e-mailed and shown this once.
pub async fn invite_developer(
    State(app): State<AppState>,
    headers: axum::http::HeaderMap,
    Path(account): Path<String>,
    sent: Submitted<super::session::DeveloperInvitations>,
) -> Response {
    let done = async {
        let account: tollgate_domain::ids::AccountId = crate::error::path_id(&account)?;
        let email = sent.form.get("email").unwrap_or("").to_string();
        let org = tollgate_store::catalog::crud::find(
            &app.db,
            &tollgate_store::catalog::accounts::ACCOUNTS,
            &[],
            account.get(),
        )
        .await?
        .text("org_name")
        .unwrap_or_default()
        .to_string();
        let (invitation, token) = invitations::create(&app.db, &email, Some(account)).await?;
        let (url, mailed) = send(&app, &headers, &invitation, &token, Some(&org)).await?;
        Ok::<_, ApiError>((account, org, invitation, url, mailed))
    };
    match done.await {
        Ok((account, org, invitation, url, mailed)) => html(DeveloperInvited {
            frame: Frame {
                title: "Invitation sent",
                section: "Audience",
                username: &sent.screen.username,
                csrf: &sent.screen.session.csrf_token,
            },
            account: account.get(),
            org,
            email: invitation.email,
            url,
            mailed,
        }),
        Err(ApiError::Invalid(invalid)) => message(
            StatusCode::UNPROCESSABLE_ENTITY,
            "The invitation was not sent",
            &super::resources::refusal_text(&invalid),
        ),
        Err(e) => Refused::from(e).into_response(),
    }
}

#[derive(Template)]
#[template(path = "console/developer_invited.html")]
struct DeveloperInvited<'a> {
    frame: Frame<'a>,
    account: i64,
    org: String,
    email: String,
    url: String,
    mailed: Result<(), String>,
}
