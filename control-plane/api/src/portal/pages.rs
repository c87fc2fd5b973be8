//! The portal's frame, sign-in and sign-out, the account's home page and self-service signup
//! (3scale Ch. 12: open when the usage rules say so; the account waits for approval when they
//! ask for it; with a default plan, its application is made with it).

use super::session::{Developer, Posted, PORTAL_COOKIE};
use crate::console::invitations;
use crate::console::pages::{next_under, pre_session_csrf_for, pre_session_csrf_ok};
use crate::console::render::{html, when};
use crate::console::resources::{errors_of, Input};
use crate::console::session::{client_address, cookie_for, form_fields, over_tls, Refused, SIGN_IN_CSRF_COOKIE};
use crate::error::ApiError;
use crate::state::AppState;
use askama::Template;
use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::CookieJar;
use std::collections::HashMap;
use tollgate_domain::catalog::BillingType;
use tollgate_domain::credits::EntryKind;
use tollgate_domain::form::{Form, Page};
use tollgate_domain::ids::{ApplicationId, ServiceId};
use tollgate_domain::sign_in::Throttle;
use tollgate_store::catalog::{accounts, applications, crud as store, provider};
use tollgate_store::console::{Portal, Refusal};
use tollgate_store::credits::ledger::{self, EntryFilter};
use tollgate_store::invitations::Accepted;

/// The frame of every signed-in portal page.
pub struct Frame<'a> {
    pub title: &'a str,
    pub org_name: &'a str,
    pub username: &'a str,
    pub csrf: &'a str,
}

impl<'a> Frame<'a> {
    pub fn of(d: &'a Developer, title: &'a str) -> Frame<'a> {
        Frame {
            title,
            org_name: &d.org_name,
            username: &d.username,
            csrf: &d.session.csrf_token,
        }
    }

    pub const LINKS: [(&'static str, &'static str); 3] = [
        ("Applications", "/portal/"),
        ("Invoices", "/portal/invoices"),
        ("Billing details", "/portal/billing"),
    ];
}

#[derive(Template)]
#[template(path = "portal/message.html")]
struct Message<'a> {
    title: &'a str,
    text: &'a str,
}

/// A portal page that only says something.
pub fn message(status: StatusCode, title: &str, text: &str) -> Response {
    (status, html(Message { title, text })).into_response()
}

/// A page's answer; what is not the developer's is not found (never "forbidden": that would
/// say it exists).
pub fn respond(done: Result<Response, ApiError>) -> Response {
    match done {
        Ok(r) => r,
        Err(ApiError::NotFound | ApiError::NotFoundNamed(_) | ApiError::AccessDenied) => message(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is nothing here in your account: it may have been deleted, or the address is mistyped.",
        ),
        Err(e) => Refused::from(e).into_response(),
    }
}

#[derive(Template)]
#[template(path = "portal/sign_in.html")]
struct SignInPage<'a> {
    csrf: &'a str,
    next: &'a str,
    login: &'a str,
    error: Option<String>,
    signup_open: bool,
}

async fn signups_open(app: &AppState) -> Result<bool, ApiError> {
    let account = provider::account(&app.db).await?;
    Ok(crate::console::signup::rule_on(&account.settings, "signups_enabled"))
}

async fn sign_in_page(
    app: &AppState,
    jar: CookieJar,
    parts: &axum::http::request::Parts,
    next: &str,
    login: &str,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let (jar, csrf) = pre_session_csrf_for("/portal", jar, parts);
    let signup_open = signups_open(app).await.unwrap_or(false);
    let page = SignInPage {
        csrf: &csrf,
        next,
        login,
        error,
        signup_open,
    };
    (status, jar, html(page)).into_response()
}

pub async fn sign_in_form(State(app): State<AppState>, jar: CookieJar, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let q: HashMap<String, String> = Query::try_from_uri(&parts.uri).map(|q| q.0).unwrap_or_default();
    let next = next_under("/portal/", q.get("next").map(String::as_str));
    sign_in_page(&app, jar, &parts, &next, "", None, StatusCode::OK).await
}

/// Signs `signed` in to the portal: its cookie set, the pre-session token dropped, on to `next`.
fn signed_in(
    jar: CookieJar,
    parts: &axum::http::request::Parts,
    signed: tollgate_store::console::SignedIn<tollgate_domain::ids::UserId>,
    next: &str,
) -> Response {
    let tls = over_tls(parts);
    let jar = jar
        .remove(cookie_for("/portal", SIGN_IN_CSRF_COOKIE, String::new(), tls))
        .add(cookie_for("/portal", PORTAL_COOKIE, signed.cookie, tls));
    (jar, Redirect::to(next)).into_response()
}

pub async fn sign_in(State(app): State<AppState>, jar: CookieJar, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let fields = match form_fields(&parts, body).await {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    if !pre_session_csrf_ok(&jar, &fields) {
        return Refused::Csrf.into_response();
    }
    let next = next_under("/portal/", fields.get("next"));
    let (login, password) = (
        fields.get("login").unwrap_or("").trim(),
        fields.get("password").unwrap_or(""),
    );
    if login.is_empty() || password.is_empty() {
        let error = Some("Enter your e-mail (or user name) and your password.".to_string());
        return sign_in_page(&app, jar, &parts, &next, login, error, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    let now = chrono::Utc::now();
    let address = client_address(&parts);
    let outcome =
        tollgate_store::console::sign_in_to::<Portal>(&app.db, &Throttle::default(), login, password, &address, now)
            .await;
    let (status, error) = match outcome {
        Ok(Ok(signed)) => return signed_in(jar, &parts, signed, &next),
        Err(e) => return Refused::from(e).into_response(),
        Ok(Err(Refusal::Invalid { retry_at: None })) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "Wrong e-mail, user name or password.".to_string(),
        ),
        Ok(Err(Refusal::Invalid { retry_at: Some(at) } | Refusal::Throttled { retry_at: at })) => (
            StatusCode::TOO_MANY_REQUESTS,
            format!("Too many wrong passwords. Try again at {} UTC.", at.format("%H:%M:%S")),
        ),
        Ok(Err(Refusal::NotActive)) => (
            StatusCode::FORBIDDEN,
            "Your account is not active yet (waiting for approval) or is suspended.".to_string(),
        ),
    };
    sign_in_page(&app, jar, &parts, &next, login, Some(error), status).await
}

pub async fn sign_out(State(app): State<AppState>, jar: CookieJar, _posted: Posted) -> Response {
    if let Some(c) = jar.get(PORTAL_COOKIE) {
        if let Err(e) = tollgate_store::console::sign_out_of::<Portal>(&app.db, c.value()).await {
            return Refused::from(e).into_response();
        }
    }
    let jar = jar.remove(cookie_for("/portal", PORTAL_COOKIE, String::new(), false));
    (jar, Redirect::to("/portal/sign_in")).into_response()
}

/// An application as the home page lists it.
pub struct AppRow {
    pub href: String,
    pub name: String,
    pub product: String,
    pub plan: String,
    pub state: String,
    /// The user key, or the app id (with its keys on its page).
    pub credential: String,
}

/// A prepaid account's credits as the home page shows them.
pub struct Credits {
    pub balance: String,
    pub pending: String,
    /// The provider's purchase link (empty: none set).
    pub link: String,
    /// The last 30 days' deductions, newest first: time, credits, what for.
    pub recent: Vec<(String, String, String)>,
}

#[derive(Template)]
#[template(path = "portal/home.html")]
struct HomePage<'a> {
    frame: Frame<'a>,
    applications: Vec<AppRow>,
    credits: Option<Credits>,
    notice: String,
}

pub async fn home(State(app): State<AppState>, d: Developer, uri: axum::http::Uri) -> Response {
    let done = async {
        let list = store::list(
            &app.db,
            &applications::APPLICATIONS,
            &[d.account.get()],
            None,
            Page::FIRST,
        )
        .await?;
        let ids = |f: &str| list.iter().filter_map(|a| a.int(f)).collect::<Vec<_>>();
        let plans = tollgate_store::catalog::names::of(&app.db, ("application_plans", "name"), &ids("plan_id")).await?;
        let products = tollgate_store::catalog::names::of(&app.db, ("services", "name"), &ids("service_id")).await?;
        let applications = list
            .iter()
            .map(|a| AppRow {
                href: format!("/portal/applications/{}", a.id()),
                name: a.text("name").unwrap_or_default().to_string(),
                product: a
                    .int("service_id")
                    .and_then(|s| products.get(&s).cloned())
                    .unwrap_or_default(),
                plan: a
                    .int("plan_id")
                    .and_then(|p| plans.get(&p).cloned())
                    .unwrap_or_default(),
                state: a.text("state").unwrap_or_default().to_string(),
                credential: a
                    .text("user_key")
                    .or(a.text("application_id"))
                    .unwrap_or_default()
                    .to_string(),
            })
            .collect();
        let credits = match accounts::billing_type(&app.db, d.account).await? {
            Some(BillingType::Prepaid) => {
                let b = ledger::balance(&app.db, &app.counters, d.account).await?;
                let link = tollgate_store::credits::settings::read(&app.db)
                    .await?
                    .purchase_url
                    .unwrap_or_default();
                let since = (chrono::Utc::now() - chrono::Duration::days(30))
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                let filter = EntryFilter {
                    since: Some(since),
                    until: None,
                    kind: Some(EntryKind::Deduction),
                    page: Page::FIRST,
                };
                let recent = ledger::transactions(&app.db, d.account, &filter)
                    .await?
                    .iter()
                    .rev()
                    .take(5)
                    .map(|e| (when(&e.created_at), e.amount.to_string(), detail_text(e)))
                    .collect();
                Some(Credits {
                    balance: b.balance.to_string(),
                    pending: b.pending.to_string(),
                    link,
                    recent,
                })
            }
            _ => None,
        };
        let q = crate::console::session::query_of(&uri);
        Ok(html(HomePage {
            frame: Frame::of(&d, &d.org_name),
            applications,
            credits,
            notice: q.get("notice").unwrap_or("").to_string(),
        }))
    };
    respond(done.await)
}

/// What a deduction paid for: "hits × 4".
fn detail_text(e: &ledger::Entry) -> String {
    e.detail
        .iter()
        .flatten()
        .map(|d| format!("{} × {}", d.metric, d.quantity))
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Template)]
#[template(path = "portal/signup.html")]
struct SignupPage<'a> {
    csrf: &'a str,
    inputs: Vec<Input>,
    refusal: String,
}

fn signup_inputs(sent: Option<&Form>, errors: &crate::console::resources::Errors) -> Vec<Input> {
    let input = |name: &'static str, label: &str, control: &'static str| Input {
        name,
        label: label.into(),
        control,
        value: match control {
            "password" => String::new(),
            _ => sent.and_then(|f| f.get(name)).unwrap_or("").to_string(),
        },
        options: Vec::new(),
        errors: errors.get(name).map(|e| e.join("; ")).unwrap_or_default(),
        required: true,
    };
    vec![
        input("org_name", "Organization", "text"),
        input("username", "User name", "text"),
        input("email", "E-mail", "email"),
        input("password", "Password", "password"),
    ]
}

async fn signup_page(
    app: &AppState,
    jar: CookieJar,
    parts: &axum::http::request::Parts,
    sent: Option<&Form>,
    errors: crate::console::resources::Errors,
) -> Result<Response, ApiError> {
    if !signups_open(app).await? {
        return Ok(message(
            StatusCode::NOT_FOUND,
            "Signup is closed",
            "This provider creates developer accounts itself. Ask them for an account.",
        ));
    }
    let (jar, csrf) = pre_session_csrf_for("/portal", jar, parts);
    let shown = ["org_name", "username", "email", "password"];
    let refusal = crate::console::resources::unshown(&errors, &shown);
    let status = crate::console::resources::status_for(&errors);
    let page = SignupPage {
        csrf: &csrf,
        inputs: signup_inputs(sent, &errors),
        refusal,
    };
    Ok((status, jar, html(page)).into_response())
}

pub async fn signup_form(State(app): State<AppState>, jar: CookieJar, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    respond(signup_page(&app, jar, &parts, None, Default::default()).await)
}

/// A developer's own signup: the admin API's signup (account, its admin user, an application
/// on each default plan), pending when the usage rules ask for approval; signed in at once
/// when not.
pub async fn signup(State(app): State<AppState>, jar: CookieJar, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let form = match form_fields(&parts, body).await {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    if !pre_session_csrf_ok(&jar, &form) {
        return Refused::Csrf.into_response();
    }
    let done = async {
        if !signups_open(&app).await? {
            return Err(ApiError::NotFound);
        }
        if form.text("password").is_none_or(|p| p.chars().count() < 6) {
            return Err(ApiError::invalid("password", "must be at least 6 characters"));
        }
        let fields = Form(
            form.0
                .iter()
                .filter(|(k, _)| matches!(k.as_str(), "org_name" | "username" | "email" | "password"))
                .cloned()
                .collect(),
        );
        let mut s = accounts::Signup::from_form(&fields)?;
        let settings = provider::account(&app.db).await?.settings;
        s.pending = crate::console::signup::rule_on(&settings, "account_approval_required");
        let account = accounts::signup(&app.db, s).await?;
        // The starter credits, as the admin API's signup grants them.
        ledger::welcome(&app.db, tollgate_domain::ids::AccountId::new(account.id())).await?;
        Ok::<_, ApiError>(account)
    };
    match done.await {
        Ok(account) if account.text("state") == Some("approved") => {
            let started = async {
                let user =
                    tollgate_store::portal::first_user(&app.db, tollgate_domain::ids::AccountId::new(account.id()))
                        .await?
                        .ok_or(ApiError::NotFound)?;
                Ok::<_, ApiError>(tollgate_store::console::start_in::<Portal>(&app.db, user, chrono::Utc::now()).await?)
            };
            match started.await {
                Ok(signed) => signed_in(jar, &parts, signed, "/portal/?notice=welcome"),
                Err(e) => Refused::from(e).into_response(),
            }
        }
        Ok(_) => message(
            StatusCode::OK,
            "Thank you for signing up",
            "Your account waits for the provider's approval: you can sign in once it is approved.",
        ),
        Err(ApiError::Invalid(invalid)) => {
            respond(signup_page(&app, jar, &parts, Some(&form), errors_of(&invalid)).await)
        }
        Err(e) => Refused::from(e).into_response(),
    }
}

/// Whether the developer may see application `id` (it is their account's): its record, or 404.
pub async fn own_application(
    app: &AppState,
    d: &Developer,
    id: ApplicationId,
) -> Result<tollgate_store::catalog::resource::Record, ApiError> {
    Ok(store::find(&app.db, &applications::APPLICATIONS, &[d.account.get()], id.get()).await?)
}

/// The product an application belongs to.
pub fn service_of(record: &tollgate_store::catalog::resource::Record) -> ServiceId {
    ServiceId::new(record.int("service_id").unwrap_or_default())
}

/// A developer account's invitation (3scale Ch. 14), opened from its e-mailed link.
pub async fn invitation_form(
    State(app): State<AppState>,
    jar: CookieJar,
    axum::extract::Path(token): axum::extract::Path<String>,
    req: Request,
) -> Response {
    let (parts, _) = req.into_parts();
    match tollgate_store::invitations::open(&app.db, &token, chrono::Utc::now()).await {
        Ok(Some(invitation)) if invitation.account_id.is_some() => {
            invitations::accept_page("/portal", jar, &parts, &invitation, None, Default::default())
        }
        Ok(_) => message(StatusCode::NOT_FOUND, invitations::CLOSED.0, invitations::CLOSED.1),
        Err(e) => respond(Err(e.into())),
    }
}

/// The invitation accepted: a member of the account, signed in to the portal at once.
pub async fn accept_invitation(
    State(app): State<AppState>,
    jar: CookieJar,
    axum::extract::Path(token): axum::extract::Path<String>,
    req: Request,
) -> Response {
    use invitations::NotAccepted;
    let (parts, body) = req.into_parts();
    let closed = || message(StatusCode::NOT_FOUND, invitations::CLOSED.0, invitations::CLOSED.1);
    match invitations::accepted(&app, &jar, &parts, body, &token, |i| i.account_id.is_some()).await {
        Ok(Accepted::Developer(user)) => {
            match tollgate_store::console::start_in::<Portal>(&app.db, user, chrono::Utc::now()).await {
                Ok(signed) => signed_in(jar, &parts, signed, "/portal/"),
                Err(e) => Refused::from(e).into_response(),
            }
        }
        Err((Some(invitation), NotAccepted::Form(form, errors))) => {
            invitations::accept_page("/portal", jar, &parts, &invitation, Some(&form), errors)
        }
        Err((_, NotAccepted::Refused(r))) => r.into_response(),
        Ok(Accepted::Staff(_)) | Err((_, NotAccepted::Closed)) | Err((None, NotAccepted::Form(..))) => closed(),
    }
}
