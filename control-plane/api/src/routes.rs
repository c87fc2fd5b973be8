//! The route table. Every area adds its routes here with the permission each one needs; the
//! router mounts each route behind a guard that enforces it, and the OpenAPI document is
//! written from the same table — what is documented is what is served.
//!
//! The guard runs before the handler: it reads the parameters (the access token may be one of
//! them), finds who presents the token, refuses what their token or their sections do not
//! allow, and — for members limited to some services — refuses a path that names another
//! service: `{service_id}` itself, or an application plan's `{plan_id}` (its service). The
//! handler then takes the [`Caller`] and the [`Params`]; it cannot skip the check, and a path
//! under a service cannot escape it, because the scope follows from the path.

use crate::error::ApiError;
use crate::params::Params;
use crate::state::AppState;
use axum::extract::{FromRequestParts, RawPathParams, Request, State};
use axum::handler::Handler;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{MethodFilter, MethodRouter};
use tollgate_domain::access::{Access, Permission, Principal, Scope, Section};
use tollgate_domain::ids::{PlanId, ServiceId};
use tollgate_store::catalog::resource::Field;

/// What a route requires of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// Anyone: health, metrics, the OpenAPI document, and the service-management API (which
    /// checks service tokens itself).
    Public,
    /// An access token that allows this.
    Token(Permission),
}

/// The account-management scope, reading or writing, in a section.
pub const fn am(access: Access, section: Section) -> Guard {
    Guard::Token(Permission::new(Scope::AccountManagement, access, section))
}

/// The finance scope (3scale's Billing API).
pub const fn finance(access: Access) -> Guard {
    Guard::Token(Permission::new(Scope::Finance, access, Section::Finance))
}

/// Which service a path names, for members limited to some services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceScope {
    None,
    /// `{service_id}`.
    Service,
    /// `/admin/api/application_plans/{plan_id}…`: the plan's service.
    ApplicationPlan,
}

impl ServiceScope {
    /// The scope a path implies.
    pub fn of(path: &str) -> ServiceScope {
        if path.contains("{service_id}") {
            ServiceScope::Service
        } else if path.starts_with("/admin/api/application_plans/{plan_id}") {
            ServiceScope::ApplicationPlan
        } else {
            ServiceScope::None
        }
    }
}

/// A request body's fields, as the document describes them.
#[derive(Debug, Clone, Copy)]
pub struct Body {
    pub fields: &'static [Field],
    /// Creating: required fields are required.
    pub create: bool,
}

pub struct Route {
    pub method: Method,
    /// The path as axum matches it (an id segment may end in `.json`).
    pub path: String,
    pub guard: Guard,
    pub summary: String,
    /// The paths as documented, when they are not [`Route::path`] with `.json` after a last
    /// parameter.
    pub documented: Vec<String>,
    pub body: Option<Body>,
    pub(crate) handler: MethodRouter<AppState>,
}

impl Route {
    /// Documented under these paths instead.
    pub fn documented(&mut self, paths: &[&str]) -> &mut Self {
        self.documented = paths.iter().map(|p| p.to_string()).collect();
        self
    }

    /// Takes a body with these fields.
    pub fn body(&mut self, fields: &'static [Field], create: bool) -> &mut Self {
        self.body = Some(Body { fields, create });
        self
    }

    /// The paths the document lists for this route.
    pub fn documented_paths(&self) -> Vec<String> {
        if !self.documented.is_empty() {
            return self.documented.clone();
        }
        let last_is_param = self.path.rsplit('/').next().is_some_and(|s| s.starts_with('{'));
        match last_is_param {
            true => vec![format!("{}.json", self.path)],
            false => vec![self.path.clone()],
        }
    }
}

/// Every route, in the order added.
#[derive(Default)]
pub struct Routes(pub Vec<Route>);

impl Routes {
    pub fn add<H, T>(
        &mut self,
        method: Method,
        path: impl Into<String>,
        guard: Guard,
        summary: impl Into<String>,
        handler: H,
    ) -> &mut Route
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone()).unwrap_or(MethodFilter::GET);
        self.0.push(Route {
            method,
            path: path.into(),
            guard,
            summary: summary.into(),
            documented: Vec::new(),
            body: None,
            handler: axum::routing::on(filter, handler),
        });
        let last = self.0.len() - 1;
        &mut self.0[last]
    }

    pub fn get<H, T>(&mut self, path: impl Into<String>, guard: Guard, summary: impl Into<String>, h: H) -> &mut Route
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.add(Method::GET, path, guard, summary, h)
    }

    pub fn post<H, T>(&mut self, path: impl Into<String>, guard: Guard, summary: impl Into<String>, h: H) -> &mut Route
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.add(Method::POST, path, guard, summary, h)
    }

    pub fn put<H, T>(&mut self, path: impl Into<String>, guard: Guard, summary: impl Into<String>, h: H) -> &mut Route
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.add(Method::PUT, path, guard, summary, h)
    }

    pub fn patch<H, T>(&mut self, path: impl Into<String>, guard: Guard, summary: impl Into<String>, h: H) -> &mut Route
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.add(Method::PATCH, path, guard, summary, h)
    }

    pub fn delete<H, T>(
        &mut self,
        path: impl Into<String>,
        guard: Guard,
        summary: impl Into<String>,
        h: H,
    ) -> &mut Route
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.add(Method::DELETE, path, guard, summary, h)
    }
}

/// Who called a guarded route (the guard put it there).
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl std::ops::Deref for Caller {
    type Target = Principal;

    fn deref(&self) -> &Principal {
        &self.0
    }
}

impl Caller {
    /// Denied unless the caller may see `service` (for what a path does not name: a found
    /// application's service).
    pub fn check_service(&self, service: ServiceId) -> Result<(), ApiError> {
        match self.may_see_service(service) {
            true => Ok(()),
            false => Err(ApiError::AccessDenied),
        }
    }

    /// The services a member is limited to, as raw ids for a query's `IN` (`None`: all).
    pub fn service_ids(&self) -> Option<Vec<i64>> {
        self.services().map(|ids| ids.iter().map(|s| s.get()).collect())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::Internal("a handler asked for its caller on a route without a guard".into()))
    }
}

/// What one route's guard checks.
#[derive(Clone)]
pub(crate) struct Guarded {
    pub app: AppState,
    pub permission: Permission,
    pub scope: ServiceScope,
}

/// Request bodies the guard reads, at most (a report of 1000 transactions fits many times).
const BODY_LIMIT: usize = 4 * 1024 * 1024;

/// The credentials a request presents, as 3scale reads them: `access_token` or
/// `provider_key` among the parameters, else a bearer token, else HTTP Basic (whichever of
/// user and password is not blank: a token, or the provider key).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Credentials {
    Token(String),
    ProviderKey(String),
    /// Basic: a token or the provider key.
    Either(String),
}

fn presented(headers: &HeaderMap, params: &Params) -> Option<Credentials> {
    let param = |name| params.get(name).filter(|t| !t.is_empty()).map(str::to_string);
    if let Some(token) = param("access_token") {
        return Some(Credentials::Token(token));
    }
    if let Some(key) = param("provider_key") {
        return Some(Credentials::ProviderKey(key));
    }
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())?;
    if let Some(token) = authorization
        .strip_prefix("Bearer ")
        .or_else(|| authorization.strip_prefix("bearer "))
    {
        return Some(Credentials::Token(token.trim().to_string()));
    }
    let encoded = authorization
        .strip_prefix("Basic ")
        .or_else(|| authorization.strip_prefix("basic "))?;
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':').unwrap_or((&decoded, ""));
    let value = [user, password].into_iter().find(|s| !s.trim().is_empty())?.to_string();
    Some(Credentials::Either(value))
}

async fn principal_of(db: &tollgate_store::db::Db, credentials: Credentials) -> Result<Principal, ApiError> {
    use tollgate_store::auth::{principal, principal_by_provider_key};
    Ok(match credentials {
        Credentials::Token(t) => principal(db, &t).await?,
        Credentials::ProviderKey(k) => principal_by_provider_key(db, &k).await?,
        Credentials::Either(v) => match principal(db, &v).await {
            Ok(p) => p,
            Err(_) => principal_by_provider_key(db, &v).await?,
        },
    })
}

pub(crate) async fn guard(State(g): State<Guarded>, req: Request, next: Next) -> Response {
    let format = crate::error::Format::of_path(req.uri().path());
    match authorized(&g, req).await {
        Ok(req) => next.run(req).await,
        Err(e) => e.into_response_as(format),
    }
}

async fn authorized(g: &Guarded, req: Request) -> Result<Request, ApiError> {
    let (mut parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .map_err(|_| ApiError::BadRequest(format!("the body is over {BODY_LIMIT} bytes")))?;
    let mut params = Params::from_query(parts.uri.query().unwrap_or(""))?;
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    params.extend_from_body(&content_type, &bytes)?;
    let credentials = presented(&parts.headers, &params).ok_or(ApiError::AccessDenied)?;
    let principal = principal_of(&g.app.db, credentials).await?;
    if !principal.allows(g.permission) {
        return Err(ApiError::AccessDenied);
    }
    check_path_service(&g.app.db, &principal, g.scope, &mut parts).await?;
    let mut req = Request::from_parts(parts, axum::body::Body::empty());
    req.extensions_mut().insert(params);
    req.extensions_mut().insert(Caller(principal));
    Ok(req)
}

/// For members limited to some services: refuses a path that names another service — its
/// `{service_id}`, or its application plan's (the API's guard and the console's).
pub(crate) async fn check_path_service(
    db: &tollgate_store::db::Db,
    principal: &Principal,
    scope: ServiceScope,
    parts: &mut Parts,
) -> Result<(), ApiError> {
    if principal.services().is_none() || scope == ServiceScope::None {
        return Ok(());
    }
    let path = RawPathParams::from_request_parts(parts, &())
        .await
        .map_err(|_| ApiError::NotFound)?;
    let param = |name: &str| path.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string());
    let service = match scope {
        ServiceScope::Service => Some(crate::error::path_id::<ServiceId>(
            &param("service_id").unwrap_or_default(),
        )?),
        ServiceScope::ApplicationPlan => {
            let plan: PlanId = crate::error::path_id(&param("plan_id").unwrap_or_default())?;
            let mut conn = db.pool.acquire().await.map_err(tollgate_store::StoreError::from)?;
            tollgate_store::catalog::services::of_plan(&mut conn, plan).await?
        }
        ServiceScope::None => None,
    };
    match service.is_some_and(|s| !principal.may_see_service(s)) {
        true => Err(ApiError::AccessDenied),
        false => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_names_its_service() {
        assert_eq!(
            ServiceScope::of("/admin/api/services/{service_id}/credit_margins.json"),
            ServiceScope::Service
        );
        assert_eq!(
            ServiceScope::of("/admin/api/application_plans/{plan_id}/metrics/{metric_id}/limits.json"),
            ServiceScope::ApplicationPlan
        );
        assert_eq!(ServiceScope::of("/admin/api/accounts.json"), ServiceScope::None);
    }
}
