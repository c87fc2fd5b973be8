//! The console's pages: sign-in, sign-out, the dashboard.

use super::render::{html, when};
use super::session::{
    client_address, cookie, form_fields, over_tls, same_token, Dashboard, Refused, Screen, Submitted, SESSION_COOKIE,
    SIGN_IN_CSRF_COOKIE,
};
use crate::state::AppState;
use askama::Template;
use axum::extract::{Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::CookieJar;
use std::collections::HashMap;
use tollgate_domain::sign_in::Throttle;
use tollgate_store::console::Refusal;

/// The frame every signed-in page lives in: the navigation of 3scale's admin portal.
pub struct Frame<'a> {
    pub title: &'a str,
    pub section: &'a str,
    pub username: &'a str,
    pub csrf: &'a str,
}

impl Frame<'_> {
    /// The guide's sections; `None`: not in the console yet (its screens are next; the admin
    /// API does all of it today), shown but not a link.
    pub const SECTIONS: [(&'static str, Option<&'static str>); 6] = [
        ("Dashboard", Some("/console/")),
        ("Audience", Some("/console/accounts")),
        ("Products", Some("/console/services")),
        ("Billing", Some("/console/finance/invoices")),
        ("Analytics", Some("/console/analytics/usage")),
        ("Settings", Some("/console/settings/tokens")),
    ];
}

impl Frame<'_> {
    /// The screens of each section, under its heading.
    pub fn subsections(&self) -> &'static [(&'static str, &'static str)] {
        match self.section {
            "Audience" => &[
                ("Accounts", "/console/accounts"),
                ("Applications", "/console/applications"),
                ("Usage rules", "/console/accounts/settings"),
            ],
            "Products" => &[("Products", "/console/services"), ("Backends", "/console/backend_apis")],
            "Analytics" => &[
                ("Products", "/console/analytics/usage"),
                ("Backends", "/console/analytics/backends"),
            ],
            "Billing" => &[
                ("Invoices", "/console/finance/invoices"),
                ("Credits", "/console/finance/credits"),
                ("Credit balances", "/console/finance/credit_accounts"),
                ("Model rates", "/console/finance/model_rates"),
                ("Margins", "/console/finance/margins"),
                ("Credit settings", "/console/finance/credit_settings"),
                ("Billing settings", "/console/finance/settings"),
            ],
            "Settings" => &[
                ("Personal details", "/console/settings/personal"),
                ("Notifications", "/console/settings/notifications"),
                ("Access tokens", "/console/settings/tokens"),
                ("Users", "/console/users"),
                ("Invitations", "/console/settings/invitations"),
            ],
            _ => &[],
        }
    }
}

/// The console's stylesheet, in the binary.
const CSS: &str = include_str!("../../assets/console.css");

pub async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        CSS,
    )
        .into_response()
}

/// The console's one script (progressive enhancement: every page works without it).
const JS: &str = include_str!("../../assets/console.js");

pub async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        JS,
    )
        .into_response()
}

pub async fn to_dashboard() -> Redirect {
    Redirect::permanent("/console/")
}

/// Where to go after signing in: a console path only (never another site).
fn next_of(next: Option<&str>) -> String {
    next_under("/console/", next)
}

/// `next` if it is a path under `root` (never another site), else `root`.
pub fn next_under(root: &str, next: Option<&str>) -> String {
    next.filter(|n| n.starts_with(root) && !n.starts_with("//") && !n.contains('\\'))
        .unwrap_or(root)
        .to_string()
}

#[derive(Template)]
#[template(path = "console/sign_in.html")]
struct SignInPage<'a> {
    csrf: &'a str,
    next: &'a str,
    login: &'a str,
    error: Option<String>,
}

pub async fn sign_in_form(jar: CookieJar, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let q: HashMap<String, String> = Query::try_from_uri(&parts.uri).map(|q| q.0).unwrap_or_default();
    sign_in_page(
        jar,
        &parts,
        &next_of(q.get("next").map(String::as_str)),
        "",
        None,
        StatusCode::OK,
    )
}

/// The form, with a fresh CSRF cookie (double submit).
fn sign_in_page(
    jar: CookieJar,
    parts: &axum::http::request::Parts,
    next: &str,
    login: &str,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let (jar, csrf) = pre_session_csrf(jar, parts);
    let page = SignInPage {
        csrf: &csrf,
        next,
        login,
        error,
    };
    (status, jar, html(page)).into_response()
}

/// The CSRF token of a form shown before there is a session (sign-in, an invitation's
/// acceptance): a double-submit cookie. One token per browser until it signs in: a second load
/// of the form (a prefetch, another tab) must not make the first one stale.
pub fn pre_session_csrf(jar: CookieJar, parts: &axum::http::request::Parts) -> (CookieJar, String) {
    pre_session_csrf_for("/console", jar, parts)
}

/// [`pre_session_csrf`] for the pages under `path`.
pub fn pre_session_csrf_for(
    path: &'static str,
    jar: CookieJar,
    parts: &axum::http::request::Parts,
) -> (CookieJar, String) {
    let csrf = jar
        .get(SIGN_IN_CSRF_COOKIE)
        .map(|c| c.value().to_string())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(tollgate_store::auth::generate_token);
    let jar = jar.add(super::session::cookie_for(
        path,
        SIGN_IN_CSRF_COOKIE,
        csrf.clone(),
        over_tls(parts),
    ));
    (jar, csrf)
}

/// Whether a form sent before there is a session carries its cookie's token.
pub fn pre_session_csrf_ok(jar: &CookieJar, form: &tollgate_domain::form::Form) -> bool {
    let expected = jar
        .get(SIGN_IN_CSRF_COOKIE)
        .map(|c| c.value().to_string())
        .unwrap_or_default();
    same_token(form.get("_csrf"), &expected)
}

/// Signs `signed` in: the session cookie set, the pre-session token dropped, on to `next`.
pub fn signed_in(
    jar: CookieJar,
    parts: &axum::http::request::Parts,
    signed: tollgate_store::console::SignedIn,
    next: &str,
) -> Response {
    let jar = jar
        .remove(cookie(SIGN_IN_CSRF_COOKIE, String::new(), over_tls(parts)))
        .add(cookie(SESSION_COOKIE, signed.cookie, over_tls(parts)));
    (jar, Redirect::to(next)).into_response()
}

pub async fn sign_in(State(app): State<AppState>, jar: CookieJar, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let fields = match form_fields(&parts, body).await {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    let field = |k: &str| fields.get(k).unwrap_or("");
    let next = next_of(fields.get("next"));
    if !pre_session_csrf_ok(&jar, &fields) {
        return Refused::Csrf.into_response();
    }
    let (login, password) = (field("login").trim(), field("password"));
    if login.is_empty() || password.is_empty() {
        let error = Some("Enter your user name or e-mail and your password.".to_string());
        return sign_in_page(jar, &parts, &next, login, error, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let now = chrono::Utc::now();
    let address = client_address(&parts);
    let outcome = tollgate_store::console::sign_in(&app.db, &Throttle::default(), login, password, &address, now).await;
    let refusal = match outcome {
        Ok(Ok(signed)) => return signed_in(jar, &parts, signed, &next),
        Ok(Err(r)) => r,
        Err(e) => return Refused::from(e).into_response(),
    };
    let wait = |at: chrono::DateTime<chrono::Utc>| {
        let secs = (at - now).num_seconds().max(1);
        format!(
            "Too many wrong passwords. Try again in {secs} seconds (at {} UTC).",
            at.format("%H:%M:%S")
        )
    };
    let (status, error, retry) = match refusal {
        Refusal::Invalid { retry_at: None } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "Wrong user name, e-mail or password.".to_string(),
            None,
        ),
        Refusal::Invalid { retry_at: Some(at) } | Refusal::Throttled { retry_at: at } => (
            StatusCode::TOO_MANY_REQUESTS,
            wait(at),
            Some((at - now).num_seconds().max(1)),
        ),
        Refusal::NotActive => (
            StatusCode::FORBIDDEN,
            "Your user is not active (pending activation or suspended). Ask an admin of this provider.".to_string(),
            None,
        ),
    };
    let mut response = sign_in_page(jar, &parts, &next, login, Some(error), status);
    if let Some(secs) = retry {
        if let Ok(v) = secs.to_string().parse() {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    response
}

pub async fn sign_out(State(app): State<AppState>, jar: CookieJar, _form: Submitted<Dashboard>) -> Response {
    if let Some(c) = jar.get(SESSION_COOKIE) {
        if let Err(e) = tollgate_store::console::sign_out(&app.db, c.value()).await {
            return Refused::from(e).into_response();
        }
    }
    let jar = jar.remove(cookie(SESSION_COOKIE, String::new(), false));
    (jar, Redirect::to("/console/sign_in")).into_response()
}

#[derive(Template)]
#[template(path = "console/dashboard.html")]
struct DashboardPage<'a> {
    frame: Frame<'a>,
    d: tollgate_store::console::Dashboard,
}

pub async fn dashboard(State(app): State<AppState>, screen: Screen<Dashboard>) -> Response {
    let d = match tollgate_store::console::dashboard(&app.db, screen.principal.services(), chrono::Utc::now()).await {
        Ok(d) => d,
        Err(e) => return Refused::from(e).into_response(),
    };
    html(DashboardPage {
        frame: Frame {
            title: "Dashboard",
            section: "Dashboard",
            username: &screen.username,
            csrf: &screen.session.csrf_token,
        },
        d,
    })
}
