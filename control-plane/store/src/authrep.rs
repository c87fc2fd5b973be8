//! The service-management core (apisonator's transactor): who is calling (service token and
//! application credentials), whether the call passes (key, state, limits, credits — in
//! apisonator's order), and the counters it moves. Answers are [`Status`] or [`SmError`];
//! reading requests and writing apisonator's bytes is the HTTP layer's job.

use crate::catalog::{applications, services};
use crate::counters::{Amount, CounterStore, Counters, Mode, Scope};
use crate::db::Db;
use crate::error::StoreError;
use crate::hot_cache::{Credential, HotCache, PlanView, ServiceView};
use chrono::{DateTime, Utc};
use sqlx::Row;
use std::sync::Arc;
use tollgate_domain::catalog::{Application, ApplicationState, BackendVersion, Service};
use tollgate_domain::counters::once;
use tollgate_domain::credits;
use tollgate_domain::ids::{ApplicationId, MetricId, PlanId, ServiceId};
use tollgate_domain::limits::{self, MetricNode, PlanLimit, UsageReport};
use tollgate_domain::periods::Period;

/// An apisonator error: its code, HTTP status and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} ({status}): {message}")]
pub struct SmError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl SmError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// The counters did not answer (within their timeout).
    pub fn unavailable() -> Self {
        SmError::new(503, "backend_unavailable", "usage counters are unavailable")
    }
}

impl From<StoreError> for SmError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Counters(e) => {
                tracing::warn!(error = %e, "counters unavailable");
                SmError::unavailable()
            }
            e => {
                tracing::error!(error = %e, "service-management internal error");
                SmError::new(500, "internal_error", "internal error")
            }
        }
    }
}

impl From<sqlx::Error> for SmError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::from(e).into()
    }
}

/// Why a call was denied: apisonator's reason and rejection code.
pub type Denial = (String, &'static str);

/// The answer to authorize / authrep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// `None`: authorized.
    pub denied: Option<Denial>,
    pub plan: String,
    pub reports: Vec<UsageReport>,
    /// This call's usage per metric, ancestors included (for the limit headers).
    pub usage: limits::Usage,
    /// With `hierarchy=1`: per usage report, the metric and its children's names.
    pub hierarchy: Option<Vec<(String, Vec<String>)>>,
    /// With `list_app_keys=1`: the application's id, the service's id and the keys.
    pub app_keys: Option<(String, ServiceId, Vec<String>)>,
    /// A prepaid account: where to buy more credits, if the provider says (sent with every
    /// answer, so that a gateway refusing from its cache can point there too).
    pub purchase_url: Option<String>,
    /// A prepaid account: credit units left after the call, and per metric what a unit costs
    /// (JSON answers carry them, for gateways that spend a cached balance).
    pub credits: Option<(i64, Vec<(String, i64)>)>,
}

/// The `3scale-options` extensions this implementation honours.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    pub no_body: bool,
    pub rejection_reason_header: bool,
    pub flat_usage: bool,
    pub limit_headers: bool,
    pub hierarchy: bool,
    pub list_app_keys: bool,
}

/// The database, through the hot-path cache.
pub struct Lookup<'a> {
    pub db: &'a Db,
    pub cache: &'a HotCache,
}

impl Lookup<'_> {
    /// A service with its metrics; `None` if there is no such service.
    pub async fn service(&self, id: ServiceId) -> Result<Option<Arc<ServiceView>>, SmError> {
        if let Some(v) = self.cache.service(id) {
            return Ok(Some(v));
        }
        let generation = self.cache.snapshot();
        let service = match services::find(self.db, id).await {
            Ok(s) => s,
            Err(StoreError::NotFound) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let view = Arc::new(ServiceView {
            metrics: load_metrics(self.db, id).await?,
            service,
        });
        self.cache.put_service(id, view.clone(), generation);
        Ok(Some(view))
    }

    /// An application by credential; unknown credentials are remembered too (briefly), so
    /// that sprayed keys do not reach the database at request rate.
    pub async fn application(&self, service: ServiceId, c: Credential) -> Result<Option<Arc<Application>>, SmError> {
        if let Some(v) = self.cache.application(service, &c) {
            return Ok(v);
        }
        let generation = self.cache.snapshot();
        let found = applications::find_by_credential(self.db, service, &c)
            .await?
            .map(Arc::new);
        self.cache.put_application(service, c, found.clone(), generation);
        Ok(found)
    }

    pub async fn plan(&self, id: PlanId) -> Result<Arc<PlanView>, SmError> {
        if let Some(v) = self.cache.plan(id) {
            return Ok(v);
        }
        let generation = self.cache.snapshot();
        let name: String = sqlx::query_scalar("SELECT name FROM application_plans WHERE id = $1")
            .bind(id.get())
            .fetch_one(&self.db.pool)
            .await?;
        let view = Arc::new(PlanView {
            name,
            limits: load_limits(self.db, id).await?,
        });
        self.cache.put_plan(id, view.clone(), generation);
        Ok(view)
    }

    /// The application's account's wallet for this service; `None` when it is postpaid.
    pub async fn wallet(&self, app: &Application) -> Result<Option<Arc<credits::Wallet>>, SmError> {
        if let Some(v) = self.cache.wallet(app.account_id, app.service_id) {
            return Ok(v);
        }
        let generation = self.cache.snapshot();
        let wallet = crate::credits::wallet::find(self.db, app.account_id, app.service_id)
            .await?
            .map(Arc::new);
        self.cache
            .put_wallet(app.account_id, app.service_id, wallet.clone(), generation);
        Ok(wallet)
    }

    pub async fn keys(&self, app: ApplicationId) -> Result<Arc<Vec<String>>, SmError> {
        if let Some(v) = self.cache.keys(app) {
            return Ok(v);
        }
        let generation = self.cache.snapshot();
        let mut conn = self.db.pool.acquire().await?;
        let keys = Arc::new(applications::keys(&mut conn, app).await?);
        self.cache.put_keys(app, keys.clone(), generation);
        Ok(keys)
    }
}

/// The service a call is for, from `service_token` + `service_id` as given.
pub async fn service(l: &Lookup<'_>, token: &str, id: &str) -> Result<Arc<ServiceView>, SmError> {
    let (token, id) = (token.trim(), id.trim());
    if token.is_empty() {
        return Err(SmError::new(
            403,
            "provider_key_or_service_token_required",
            "Provider key or service token are required",
        ));
    }
    if id.is_empty() {
        return Err(SmError::new(422, "service_id_missing", "Service ID is missing"));
    }
    let invalid = || {
        SmError::new(
            403,
            "service_token_invalid",
            format!("service token \"{token}\" or service id \"{id}\" is invalid"),
        )
    };
    let service_id: ServiceId = id.parse().map_err(|_| invalid())?;
    match l.service(service_id).await? {
        Some(v) if v.service.service_token == token => Ok(v),
        _ => Err(invalid()),
    }
}

/// Credentials of one application: a user_key, or an app_id with an optional app_key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials<'a> {
    pub user_key: Option<&'a str>,
    pub app_id: Option<&'a str>,
    pub app_key: Option<&'a str>,
}

pub async fn application(l: &Lookup<'_>, service: &Service, c: &Credentials<'_>) -> Result<Arc<Application>, SmError> {
    let by_key = service.backend_version == BackendVersion::UserKey;
    match (c.user_key, c.app_id) {
        (Some(_), Some(_)) => Err(SmError::new(
            403,
            "authentication_error",
            "either app_id or user_key is allowed, not both",
        )),
        (Some(key), None) if by_key => l
            .application(service.id, Credential::UserKey(key.to_string()))
            .await?
            .ok_or_else(|| SmError::new(403, "user_key_invalid", format!("user key \"{key}\" is invalid"))),
        (None, None) if by_key => Err(SmError::new(403, "user_key_invalid", "user key is missing")),
        (_, Some(app_id)) => l
            .application(service.id, Credential::AppId(app_id.to_string()))
            .await?
            .ok_or_else(|| {
                SmError::new(
                    404,
                    "application_not_found",
                    format!("application with id=\"{app_id}\" was not found"),
                )
            }),
        (_, None) => Err(SmError::new(404, "application_not_found", "application id is missing")),
    }
}

/// The service's metrics and those of the backends it uses, with their hierarchy.
async fn load_metrics(db: &Db, service: ServiceId) -> Result<Vec<MetricNode>, SmError> {
    let rows = sqlx::query(
        "SELECT id, system_name, parent_id FROM metrics
         WHERE service_id = $1 OR backend_id IN (SELECT backend_id FROM backend_usages WHERE service_id = $1)",
    )
    .bind(service.get())
    .fetch_all(&db.pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(MetricNode {
            id: MetricId::new(r.try_get("id")?),
            system_name: r.try_get("system_name")?,
            parent_id: r.try_get::<Option<i64>, _>("parent_id")?.map(MetricId::new),
        });
    }
    Ok(out)
}

async fn load_limits(db: &Db, plan: PlanId) -> Result<Vec<PlanLimit>, SmError> {
    let rows = sqlx::query("SELECT metric_id, period, value FROM usage_limits WHERE plan_id = $1")
        .bind(plan.get())
        .fetch_all(&db.pool)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let period: String = r.try_get("period")?;
        let period =
            Period::parse(&period).ok_or_else(|| SmError::from(StoreError::Internal(format!("period `{period}`"))))?;
        out.push(PlanLimit {
            metric_id: MetricId::new(r.try_get("metric_id")?),
            period,
            max: r.try_get("value")?,
        });
    }
    Ok(out)
}

/// One call: the application key given, what it uses per metric, the response codes it logs,
/// its options, whether it only checks (authorize) or also counts (authrep), and when.
pub struct Call<'a> {
    pub app_key: Option<&'a str>,
    pub usage: &'a [(MetricId, Amount)],
    pub codes: &'a [(u16, i64)],
    pub options: Options,
    pub mode: Mode,
    pub now: DateTime<Utc>,
}

/// authorize (`Mode::Check`) or authrep (`Mode::CheckAndAdd`) for one application.
pub async fn authorize(
    l: &Lookup<'_>,
    counters: &Counters,
    view: &ServiceView,
    app: &Application,
    call: Call<'_>,
) -> Result<Status, SmError> {
    let (options, mode, now) = (call.options, call.mode, call.now);
    let (service, metrics) = (&view.service, view.metrics.as_slice());
    let plan = l.plan(app.plan_id).await?;
    let deny = |reason: String, code| Status {
        denied: Some((reason, code)),
        plan: plan.name.clone(),
        reports: vec![],
        usage: Default::default(),
        hierarchy: None,
        app_keys: None,
        purchase_url: None,
        credits: None,
    };
    // Key, State, Limits: apisonator's validators, in its order.
    if service.backend_version != BackendVersion::UserKey {
        let keys = l.keys(app.id).await?;
        match call.app_key {
            None if !keys.is_empty() => {
                return Ok(deny("application key is missing".into(), "application_key_invalid"))
            }
            Some(k) if !keys.is_empty() && !keys.iter().any(|x| x == k) => {
                return Ok(deny(
                    format!("application key \"{k}\" is invalid"),
                    "application_key_invalid",
                ))
            }
            _ => {}
        }
    }
    if app.state != ApplicationState::Live {
        return Ok(deny("application is not active".into(), "application_not_active"));
    }
    let expanded = limits::expand(call.usage, metrics, options.flat_usage);
    let mut ops = limits::ops(&plan.limits, &expanded, call.codes, now);
    // Prepaid accounts: the call's cost, deducted atomically with the limits.
    let wallet = l.wallet(app).await?;
    ops.extend(credits::ops(app.plan_id, wallet.as_deref(), &expanded));
    let outcome = counters
        .apply(Scope::new(app.id, app.account_id), &ops, mode)
        .await
        .map_err(|e| SmError::from(StoreError::from(e)))?;
    let reports = limits::reports(&ops, &outcome.values, metrics, now);
    let denied = (!outcome.authorized).then(|| {
        if credits::exhausted(&ops, &outcome.values) {
            ("credit balance is insufficient".to_string(), "credits_exhausted")
        } else {
            ("usage limits are exceeded".to_string(), "limits_exceeded")
        }
    });
    let hierarchy = options.hierarchy.then(|| {
        reports
            .iter()
            .map(|r| {
                let children = metrics
                    .iter()
                    .filter(|m| m.parent_id == Some(r.metric_id))
                    .map(|m| m.system_name.clone());
                (r.metric.clone(), children.collect())
            })
            .collect()
    });
    let app_keys = if options.list_app_keys {
        let mut keys = l.keys(app.id).await?.to_vec();
        keys.truncate(256);
        Some((app.application_id.clone(), service.id, keys))
    } else {
        None
    };
    Ok(Status {
        plan: plan.name.clone(),
        reports,
        usage: expanded,
        hierarchy,
        app_keys,
        credits: wallet.as_ref().and_then(|w| {
            let remaining = credits::remaining(&ops, &outcome.values, w)?;
            Some((remaining, credits::weights(w, app.plan_id, metrics)))
        }),
        purchase_url: wallet.as_ref().and_then(|w| w.purchase_url.clone()),
        denied,
    })
}

/// One transaction of a report, validated: the application, its usage, the response codes it
/// logs and when it happened.
pub struct Transaction {
    pub app: Arc<Application>,
    pub usage: Vec<(MetricId, Amount)>,
    pub codes: Vec<(u16, i64)>,
    pub at: DateTime<Utc>,
}

/// Counts a validated batch: every transaction's usage, up the hierarchy, in its own period,
/// in the plan's limited counters as well as the month and hour ones. With a batch id
/// (`batch`: the service's id and the gateway's), each transaction counts exactly once
/// however often the batch is sent ([`once`]); returns how many counted now.
pub async fn count(
    l: &Lookup<'_>,
    counters: &Counters,
    view: &ServiceView,
    batch: &[Transaction],
    batch_id: Option<&str>,
) -> Result<usize, SmError> {
    let mut counted = 0;
    for (i, t) in batch.iter().enumerate() {
        let plan = l.plan(t.app.plan_id).await?;
        let expanded = limits::expand(&t.usage, &view.metrics, false);
        let mut ops = limits::ops(&plan.limits, &expanded, &t.codes, t.at);
        // Usage a gateway served from its cached share is paid for, like any other (see
        // `credits` on how far that can take a balance).
        let wallet = l.wallet(&t.app).await?;
        ops.extend(credits::ops(t.app.plan_id, wallet.as_deref(), &expanded));
        let (ops, mode) = match batch_id {
            Some(id) => (once(ops, mark(view.service.id, id, i)), Mode::CheckAndAdd),
            None => (ops, Mode::Add),
        };
        let outcome = counters
            .apply(Scope::new(t.app.id, t.app.account_id), &ops, mode)
            .await
            .map_err(|e| SmError::from(StoreError::from(e)))?;
        counted += usize::from(outcome.authorized);
    }
    Ok(counted)
}

/// The mark of transaction `index` of batch `batch_id` of `service`: the first 8 bytes of a
/// SHA-256 of the three (a collision would need 2^32 transactions marked within a day).
fn mark(service: ServiceId, batch_id: &str, index: usize) -> i64 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{}\n{batch_id}\n{index}", service.get()));
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}
