//! The guard of the console's catalog screens, one per mounted resource: the screens are
//! declared from the API's [`MOUNTS`](crate::crud::MOUNTS), so their permission is declared
//! with them (the mount's section; reading for `GET`, writing otherwise) and checked here,
//! before the handler runs — with the API's own check that a member limited to some services
//! is refused a path naming another service. A write also needs the session's CSRF token.
//! The handler takes what the guard cleared ([`Cleared`]); without the guard it has nothing.

use super::session::{form_fields, same_token, Refused, Staff};
use crate::routes::{check_path_service, ServiceScope};
use crate::state::AppState;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tollgate_domain::access::{Access, Permission, Scope, Section};
use tollgate_domain::form::Form;

/// What one screen's guard checks.
#[derive(Clone)]
pub struct Clearance {
    pub app: AppState,
    pub section: Section,
    pub scope: ServiceScope,
}

/// A request the guard let through: who, and the parameters (the query for a `GET`, the
/// form for a `POST`).
#[derive(Clone)]
pub struct Cleared {
    pub staff: Staff,
    pub form: Form,
}

pub async fn guard(State(c): State<Clearance>, req: Request, next: Next) -> Response {
    match cleared(&c, req).await {
        Ok(req) => next.run(req).await,
        Err(r) => r.into_response(),
    }
}

async fn cleared(c: &Clearance, req: Request) -> Result<Request, Refused> {
    let (mut parts, body) = req.into_parts();
    let staff = Staff::from_request_parts(&mut parts, &c.app).await?;
    let reading = parts.method == Method::GET || parts.method == Method::HEAD;
    let access = if reading { Access::Read } else { Access::Write };
    if !staff
        .principal
        .allows(Permission::new(Scope::AccountManagement, access, c.section))
    {
        return Err(Refused::Forbidden);
    }
    check_path_service(&c.app.db, &staff.principal, c.scope, &mut parts).await?;
    let form = if reading {
        let query = parts.uri.query().unwrap_or("");
        Form(form_urlencoded::parse(query.as_bytes()).into_owned().collect())
    } else {
        let form = form_fields(&parts, body).await?;
        if !same_token(form.get("_csrf"), &staff.session.csrf_token) {
            return Err(Refused::Csrf);
        }
        form
    };
    let mut req = Request::from_parts(parts, axum::body::Body::empty());
    req.extensions_mut().insert(Cleared { staff, form });
    Ok(req)
}

impl<S: Send + Sync> FromRequestParts<S> for Cleared {
    type Rejection = Refused;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Refused> {
        parts
            .extensions
            .get::<Cleared>()
            .cloned()
            .ok_or_else(|| Refused::Internal("a console screen without its guard".into()))
    }
}
