//! Who is signed in to the portal: a developer, by the portal's own session cookie (path
//! `/portal`, HttpOnly, SameSite=Lax, Secure over TLS) and the session's CSRF token on every
//! form — the console's rules, through the same store functions ([`Portal`] realm). Every
//! page takes a [`Developer`] (no session: to sign-in, and no data), and every record a page
//! shows is read scoped to the developer's own account: another account's id answers 404,
//! never its data.

use crate::console::session::{form_fields, same_token, Refused};
use crate::state::AppState;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum_extra::extract::cookie::CookieJar;
use tollgate_domain::form::Form;
use tollgate_domain::ids::{AccountId, UserId};
use tollgate_store::console::{Portal, Session};

/// The portal's session cookie.
pub const PORTAL_COOKIE: &str = "tollgate_portal";

/// A signed-in developer: their session, user and account.
#[derive(Debug, Clone)]
pub struct Developer {
    pub session: Session<UserId>,
    pub account: AccountId,
    pub username: String,
    pub org_name: String,
}

impl<S> FromRequestParts<S> for Developer
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
            .unwrap_or_else(|| "/portal/".into());
        let jar = CookieJar::from_headers(&parts.headers);
        let Some(cookie) = jar.get(PORTAL_COOKIE).map(|c| c.value().to_string()) else {
            return Err(Refused::PortalSignIn { next });
        };
        let now = chrono::Utc::now();
        let found = tollgate_store::console::session_in::<Portal>(&app.db, &cookie, now, app.console_idle).await?;
        let Some(session) = found else {
            return Err(Refused::PortalSignIn { next });
        };
        // A user suspended, or an account suspended, since signing in is out at once.
        let Some(who) = tollgate_store::portal::developer(&app.db, session.user_id).await? else {
            return Err(Refused::PortalSignIn { next });
        };
        Ok(Developer {
            session,
            account: who.account_id,
            username: who.username,
            org_name: who.org_name,
        })
    }
}

/// A form a signed-in developer posted from the portal, with the session's CSRF token.
pub struct Posted {
    pub developer: Developer,
    pub form: Form,
}

impl<S> FromRequest<S> for Posted
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Refused;

    async fn from_request(req: Request, state: &S) -> Result<Self, Refused> {
        let (mut parts, body) = req.into_parts();
        let developer = Developer::from_request_parts(&mut parts, state).await?;
        let form = form_fields(&parts, body).await?;
        if !same_token(form.get("_csrf"), &developer.session.csrf_token) {
            return Err(Refused::Csrf);
        }
        Ok(Posted { developer, form })
    }
}
