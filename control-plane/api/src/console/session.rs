//! Who is signed in to the console, and what a page needs of them.

use super::render::message;
use crate::state::AppState;
use axum::extract::{ConnectInfo, FromRef, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use std::marker::PhantomData;
use std::net::SocketAddr;
use tollgate_domain::access::{Access, Permission, Principal, Scope, Section, TokenPermission};
use tollgate_domain::form::Form;
use tollgate_domain::ids::TokenId;
use tollgate_store::console::Session;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "tollgate_session";
/// The sign-in form's CSRF cookie (double submit: before a session there is nothing to keep
/// the token in server-side).
pub const SIGN_IN_CSRF_COOKIE: &str = "tollgate_sign_in";

/// Whether the request came over TLS (directly or through a proxy that says so): cookies are
/// `Secure` then.
pub fn over_tls(parts: &Parts) -> bool {
    parts.uri.scheme_str() == Some("https")
        || parts
            .headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// A console cookie: HttpOnly, SameSite=Lax, for `/console`, Secure over TLS.
pub fn cookie(name: &'static str, value: String, secure: bool) -> Cookie<'static> {
    cookie_for("/console", name, value, secure)
}

/// A cookie for the pages under `path` (the console's, the portal's): HttpOnly, SameSite=Lax,
/// Secure over TLS.
pub fn cookie_for(path: &'static str, name: &'static str, value: String, secure: bool) -> Cookie<'static> {
    Cookie::build((name, value))
        .path(path)
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .build()
}

/// The client's address, as the listener saw it (what sign-in throttling counts).
pub fn client_address(parts: &Parts) -> String {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// A signed-in provider user.
#[derive(Debug, Clone)]
pub struct Staff {
    pub session: Session,
    /// What they may do: the API's own type, as a read-write token with every scope, limited
    /// by the user's role, sections and services.
    pub principal: Principal,
    pub username: String,
}

/// Why a page is not shown.
pub enum Refused {
    /// No session: to sign-in, then back here.
    SignIn {
        next: String,
    },
    /// No developer session: to the portal's sign-in, then back here.
    PortalSignIn {
        next: String,
    },
    /// Signed in, but not allowed this page.
    Forbidden,
    /// No such page (or record).
    NotFound,
    /// The form did not carry the session's CSRF token.
    Csrf,
    /// The body was not a form (or over 1 MiB).
    BadForm,
    Internal(String),
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::SignIn { next } => {
                let to = format!("/console/sign_in?next={}", urlencode(&next));
                Redirect::to(&to).into_response()
            }
            Refused::PortalSignIn { next } => {
                let to = format!("/portal/sign_in?next={}", urlencode(&next));
                Redirect::to(&to).into_response()
            }
            Refused::Forbidden => message(
                StatusCode::FORBIDDEN,
                "Access denied",
                "Your role does not include this section. An admin can change your permissions in Settings › Users.",
            ),
            Refused::NotFound => message(
                StatusCode::NOT_FOUND,
                "Not found",
                "There is nothing here: it may have been deleted, or the address is mistyped.",
            ),
            Refused::Csrf => message(
                StatusCode::FORBIDDEN,
                "The form has expired",
                "The form was not sent from this session (a missing or stale security token). Go back, reload the page and try again.",
            ),
            Refused::BadForm => message(
                StatusCode::BAD_REQUEST,
                "The form could not be read",
                "The request did not carry an HTML form (application/x-www-form-urlencoded, at most 1 MiB).",
            ),
            Refused::Internal(e) => {
                tracing::error!(error = %e, "console");
                message(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", "The error is logged.")
            }
        }
    }
}

impl From<tollgate_store::StoreError> for Refused {
    fn from(e: tollgate_store::StoreError) -> Self {
        match e {
            tollgate_store::StoreError::AccessDenied => Refused::Forbidden,
            tollgate_store::StoreError::NotFound => Refused::NotFound,
            e => Refused::Internal(e.to_string()),
        }
    }
}

impl From<crate::error::ApiError> for Refused {
    fn from(e: crate::error::ApiError) -> Self {
        use crate::error::ApiError;
        match e {
            ApiError::AccessDenied => Refused::Forbidden,
            ApiError::NotFound | ApiError::NotFoundNamed(_) => Refused::NotFound,
            ApiError::BadRequest(_) => Refused::BadForm,
            e => Refused::Internal(e.to_string()),
        }
    }
}

/// A page's query string as the API's handlers take parameters.
pub fn query_of(uri: &axum::http::Uri) -> Form {
    Form(
        form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect(),
    )
}

/// A page, or why it is not shown.
pub fn respond(done: Result<Response, crate::error::ApiError>) -> Response {
    done.unwrap_or_else(|e| Refused::from(e).into_response())
}

pub fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl<S> FromRequestParts<S> for Staff
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Refused;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Refused> {
        let app = AppState::from_ref(state);
        let next = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/console/".into());
        let jar = CookieJar::from_headers(&parts.headers);
        let Some(cookie) = jar.get(SESSION_COOKIE).map(|c| c.value().to_string()) else {
            return Err(Refused::SignIn { next });
        };
        let now = chrono::Utc::now();
        let Some(session) = tollgate_store::console::session(&app.db, &cookie, now, app.console_idle).await? else {
            return Err(Refused::SignIn { next });
        };
        // A user suspended since signing in is out at once.
        let member = match tollgate_store::auth::member_of(&app.db, session.user_id).await {
            Ok(m) => m,
            Err(tollgate_store::StoreError::AccessDenied) => return Err(Refused::SignIn { next }),
            Err(e) => return Err(e.into()),
        };
        let username = tollgate_store::console::username(&app.db, session.user_id).await?;
        Ok(Staff {
            principal: Principal {
                token_id: TokenId::new(0),
                user_id: Some(session.user_id),
                scopes: Scope::ALL.to_vec(),
                permission: TokenPermission::ReadWrite,
                member,
            },
            session,
            username,
        })
    }
}

/// A page: the permission it needs.
pub trait Page {
    const PERMISSION: Permission;
}

/// A signed-in user allowed page `P`.
pub struct Screen<P: Page> {
    pub staff: Staff,
    page: PhantomData<fn() -> P>,
}

impl<P: Page> std::ops::Deref for Screen<P> {
    type Target = Staff;
    fn deref(&self) -> &Staff {
        &self.staff
    }
}

impl<P: Page, S> FromRequestParts<S> for Screen<P>
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Refused;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Refused> {
        let staff = Staff::from_request_parts(parts, state).await?;
        if !staff.principal.allows(P::PERMISSION) {
            return Err(Refused::Forbidden);
        }
        Ok(Screen {
            staff,
            page: PhantomData,
        })
    }
}

/// A form posted from page `P` by a signed-in user allowed it, carrying the session's CSRF
/// token (`_csrf`); its fields, as the API's handlers take them.
pub struct Submitted<P: Page> {
    pub screen: Screen<P>,
    pub form: Form,
    /// Where the form came from (what the password throttle counts by).
    pub address: String,
}

impl<P: Page, S> FromRequest<S> for Submitted<P>
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Refused;

    async fn from_request(req: Request, state: &S) -> Result<Self, Refused> {
        let (mut parts, body) = req.into_parts();
        let screen = Screen::<P>::from_request_parts(&mut parts, state).await?;
        let form = form_fields(&parts, body).await?;
        if !same_token(form.get("_csrf"), &screen.staff.session.csrf_token) {
            return Err(Refused::Csrf);
        }
        Ok(Submitted {
            screen,
            form,
            address: client_address(&parts),
        })
    }
}

/// An urlencoded form's fields, in order (at most 1 MiB).
pub async fn form_fields(parts: &Parts, body: axum::body::Body) -> Result<Form, Refused> {
    let urlencoded = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !urlencoded {
        return Err(Refused::BadForm);
    }
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .map_err(|_| Refused::BadForm)?;
    Ok(Form(form_urlencoded::parse(&bytes).into_owned().collect()))
}

/// Compares a token in constant time.
pub fn same_token(given: Option<&str>, expected: &str) -> bool {
    use subtle::ConstantTimeEq;
    given.is_some_and(|g| !expected.is_empty() && bool::from(g.as_bytes().ct_eq(expected.as_bytes())))
}

/// The dashboard: anyone signed in.
pub struct Dashboard;
impl Page for Dashboard {
    const PERMISSION: Permission = Permission::new(Scope::AccountManagement, Access::Read, Section::Any);
}

/// Settings › Users › Invitations: who may manage users (the settings section, writing).
pub struct Invitations;
impl Page for Invitations {
    const PERMISSION: Permission = Permission::new(Scope::AccountManagement, Access::Write, Section::Settings);
}

/// Audience › Accounts › Usage rules: the provider's settings (the settings section).
pub struct UsageRules;
impl Page for UsageRules {
    const PERMISSION: Permission = Permission::new(Scope::AccountManagement, Access::Write, Section::Settings);
}

/// Analytics: the stats scope, reading, in the monitoring section (as the Analytics API).
pub struct Analytics;
impl Page for Analytics {
    const PERMISSION: Permission = Permission::new(Scope::Stats, Access::Read, Section::Monitoring);
}

/// Settings › Personal › Personal details: anyone signed in, for themselves.
pub struct Personal;
impl Page for Personal {
    const PERMISSION: Permission = Permission::new(Scope::AccountManagement, Access::Write, Section::Any);
}

/// Settings › Personal › Tokens: anyone signed in, for their own tokens (as the API's
/// `/admin/api/personal/access_tokens`).
pub struct Tokens;
impl Page for Tokens {
    const PERMISSION: Permission = Permission::new(Scope::AccountManagement, Access::Write, Section::Any);
}

/// Billing: the finance scope, reading, in the finance section (as the Billing API).
pub struct Finance;
impl Page for Finance {
    const PERMISSION: Permission = Permission::new(Scope::Finance, Access::Read, Section::Finance);
}

/// Billing, changing invoices and settings.
pub struct FinanceWrite;
impl Page for FinanceWrite {
    const PERMISSION: Permission = Permission::new(Scope::Finance, Access::Write, Section::Finance);
}

/// Credits: developer accounts' credits (the partners section, as the credits API).
pub struct Credits;
impl Page for Credits {
    const PERMISSION: Permission = Permission::new(Scope::AccountManagement, Access::Read, Section::Partners);
}

/// Issuing and granting credits.
pub struct CreditsWrite;
impl Page for CreditsWrite {
    const PERMISSION: Permission = Permission::new(Scope::AccountManagement, Access::Write, Section::Partners);
}

/// Model rates and the margin report: a product's pricing (the plans section, as the credit
/// rates resource).
pub struct Rates;
impl Page for Rates {
    const PERMISSION: Permission = Permission::new(Scope::AccountManagement, Access::Read, Section::Plans);
}

/// Adding a model rate.
pub struct RatesWrite;
impl Page for RatesWrite {
    const PERMISSION: Permission = Permission::new(Scope::AccountManagement, Access::Write, Section::Plans);
}

/// Billing & Credits › Settings: the provider's settings (admins, as the credit settings API).
pub struct CreditSettings;
impl Page for CreditSettings {
    const PERMISSION: Permission = Permission::new(Scope::AccountManagement, Access::Write, Section::Settings);
}

/// Inviting a user to a developer account (the partners section, writing).
pub struct DeveloperInvitations;
impl Page for DeveloperInvitations {
    const PERMISSION: Permission = Permission::new(Scope::AccountManagement, Access::Write, Section::Partners);
}
