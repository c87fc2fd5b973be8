//! The service-management core (apisonator's transactor): who is calling (service token and
//! application credentials), whether the call passes (key, state, limits — in apisonator's
//! order), and the counters it moves. Answers are [`Status`] or [`SmError`]; rendering them as
//! XML or JSON is the API layer's job.

use crate::catalog::applications::{self, Application};
use crate::catalog::services;
use crate::counters::{Amount, CounterStore, Counters, Mode};
use crate::db::Db;
use crate::error::ApiError;
use crate::hot_cache::{Credential, HotCache, PlanView, ServiceView};
use crate::limits::{self, MetricNode, PlanLimit, UsageReport};
use crate::params::Params;
use crate::periods::Period;
use chrono::{DateTime, Utc};
use sqlx::Row;
use std::sync::Arc;

/// An apisonator error: its code, HTTP status and message.
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

impl From<ApiError> for SmError {
    fn from(e: ApiError) -> Self {
        tracing::error!(error = %e, "service-management internal error");
        SmError::new(500, "internal_error", "internal error")
    }
}

impl From<sqlx::Error> for SmError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::from(e).into()
    }
}

/// The answer to authorize / authrep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// `None`: authorized; else (reason, rejection code).
    pub denied: Option<(String, &'static str)>,
    pub plan: String,
    pub reports: Vec<UsageReport>,
    /// This call's usage per metric, ancestors included (for the limit headers).
    pub usage: std::collections::BTreeMap<i64, Amount>,
    /// With `hierarchy=1`: per usage report, the metric and its children's names.
    pub hierarchy: Option<Vec<(String, Vec<String>)>>,
    /// With `list_app_keys=1`: the application's id, the service's id and the keys.
    pub app_keys: Option<(String, i64, Vec<String>)>,
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

impl Options {
    /// From the `3scale-options` header (query syntax; a flag is on when it is `1`) and the
    /// deprecated `no_body` query parameter (anything but `0`/`false`).
    pub fn parse(header: Option<&str>, p: &Params) -> Options {
        let h = header.and_then(|h| Params::from_query(h).ok()).unwrap_or_default();
        let on = |name| h.get(name) == Some("1");
        Options {
            no_body: on("no_body") || p.get("no_body").is_some_and(|v| v != "0" && v != "false"),
            rejection_reason_header: on("rejection_reason_header"),
            flat_usage: on("flat_usage"),
            limit_headers: on("limit_headers"),
            hierarchy: on("hierarchy"),
            list_app_keys: on("list_app_keys"),
        }
    }
}

/// apisonator's `not_valid_data`: the request carried bytes that are not UTF-8. The form
/// decoder replaces them with U+FFFD, so that is what gives them away.
pub fn check_utf8(p: &Params) -> Result<(), SmError> {
    if p.0
        .iter()
        .any(|(k, v)| k.contains('\u{FFFD}') || v.contains('\u{FFFD}'))
    {
        return Err(SmError::new(422, "not_valid_data", "all data must be valid UTF8"));
    }
    Ok(())
}

/// The transaction indices of a report (`transactions[N][…]`), in numeric order, at most 1000.
pub fn report_indices(p: &Params) -> Result<Vec<String>, SmError> {
    let mut indices: Vec<String> =
        p.0.iter()
            .filter_map(|(k, _)| {
                k.strip_prefix("transactions[")
                    .and_then(|r| r.split(']').next())
                    .map(str::to_string)
            })
            .collect();
    indices.sort_by_key(|i| (i.parse::<u64>().unwrap_or(u64::MAX), i.clone()));
    indices.dedup();
    if indices.is_empty() {
        return Err(SmError::new(
            400,
            "transactions_is_blank",
            "transactions parameter is blank",
        ));
    }
    if indices.len() > 1000 {
        return Err(SmError::new(
            400,
            "transactions_format_invalid",
            "transactions format is invalid: at most 1000 per report",
        ));
    }
    Ok(indices)
}

/// The database, through the hot-path cache.
pub struct Lookup<'a> {
    pub db: &'a Db,
    pub cache: &'a HotCache,
}

impl Lookup<'_> {
    /// A service with its metrics; `None` if there is no such service.
    pub async fn service(&self, id: i64) -> Result<Option<Arc<ServiceView>>, SmError> {
        if let Some(v) = self.cache.service(id) {
            return Ok(Some(v));
        }
        let generation = self.cache.snapshot();
        let service = match services::find(self.db, id).await {
            Ok(s) => s,
            Err(ApiError::NotFound) => return Ok(None),
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
    pub async fn application(&self, service_id: i64, c: Credential) -> Result<Option<Arc<Application>>, SmError> {
        if let Some(v) = self.cache.application(service_id, &c) {
            return Ok(v);
        }
        let generation = self.cache.snapshot();
        let found = match &c {
            Credential::UserKey(k) => applications::find_by_user_key(self.db, service_id, k).await?,
            Credential::AppId(id) => applications::find_by_app_id(self.db, service_id, id).await?,
        };
        let found = found.map(Arc::new);
        self.cache.put_application(service_id, c, found.clone(), generation);
        Ok(found)
    }

    pub async fn plan(&self, id: i64) -> Result<Arc<PlanView>, SmError> {
        if let Some(v) = self.cache.plan(id) {
            return Ok(v);
        }
        let generation = self.cache.snapshot();
        let name: String = sqlx::query_scalar("SELECT name FROM application_plans WHERE id = $1")
            .bind(id)
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
    pub async fn wallet(&self, app: &Application) -> Result<Option<Arc<crate::credits::Wallet>>, SmError> {
        if let Some(v) = self.cache.wallet(app.account_id, app.service_id) {
            return Ok(v);
        }
        let generation = self.cache.snapshot();
        let wallet = crate::credits::wallet(self.db, app.account_id, app.service_id)
            .await?
            .map(Arc::new);
        self.cache
            .put_wallet(app.account_id, app.service_id, wallet.clone(), generation);
        Ok(wallet)
    }

    pub async fn keys(&self, app: i64) -> Result<Arc<Vec<String>>, SmError> {
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

/// The service a call is for, from `service_token` + `service_id`.
pub async fn service(l: &Lookup<'_>, p: &Params) -> Result<Arc<ServiceView>, SmError> {
    let token = p.get("service_token").unwrap_or("").trim();
    let id = p.get("service_id").unwrap_or("").trim();
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
    let service_id: i64 = id.parse().map_err(|_| invalid())?;
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

impl<'a> Credentials<'a> {
    /// From `p`, reading `{prefix}user_key` etc. (`transactions[0][user_key]` in reports).
    pub fn from(p: &'a Params, name: impl Fn(&str) -> String) -> Self {
        let get = |n: &str| p.get(&name(n)).filter(|v| !v.is_empty());
        Credentials {
            user_key: get("user_key"),
            app_id: get("app_id"),
            app_key: get("app_key"),
        }
    }
}

pub async fn application(
    l: &Lookup<'_>,
    service: &services::Service,
    c: &Credentials<'_>,
) -> Result<Arc<Application>, SmError> {
    match (c.user_key, c.app_id) {
        (Some(_), Some(_)) => Err(SmError::new(
            403,
            "authentication_error",
            "either app_id or user_key is allowed, not both",
        )),
        (Some(key), None) if service.backend_version == "1" => l
            .application(service.id, Credential::UserKey(key.to_string()))
            .await?
            .ok_or_else(|| SmError::new(403, "user_key_invalid", format!("user key \"{key}\" is invalid"))),
        (None, None) if service.backend_version == "1" => {
            Err(SmError::new(403, "user_key_invalid", "user key is missing"))
        }
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
async fn load_metrics(db: &Db, service_id: i64) -> Result<Vec<MetricNode>, SmError> {
    let rows = sqlx::query(
        "SELECT id, system_name, parent_id FROM metrics
         WHERE service_id = $1 OR backend_id IN (SELECT backend_id FROM backend_usages WHERE service_id = $1)",
    )
    .bind(service_id)
    .fetch_all(&db.pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(MetricNode {
            id: r.try_get("id")?,
            system_name: r.try_get("system_name")?,
            parent_id: r.try_get("parent_id")?,
        });
    }
    Ok(out)
}

async fn load_limits(db: &Db, plan_id: i64) -> Result<Vec<PlanLimit>, SmError> {
    let rows = sqlx::query("SELECT metric_id, period, value FROM usage_limits WHERE plan_id = $1")
        .bind(plan_id)
        .fetch_all(&db.pool)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let period: String = r.try_get("period")?;
        let period =
            Period::parse(&period).ok_or_else(|| SmError::from(ApiError::Internal(format!("period `{period}`"))))?;
        out.push(PlanLimit {
            metric_id: r.try_get("metric_id")?,
            period,
            max: r.try_get("value")?,
        });
    }
    Ok(out)
}

/// `usage[metric]=N` (add N) and `usage[metric]=#N` (set the counter to N) pairs, under
/// `prefix` (e.g. `transactions[0][usage]`), as (metric id, amount). Unknown metrics and values
/// that are not whole numbers are apisonator's errors; adding 0 is dropped.
pub fn usage(p: &Params, prefix: &str, metrics: &[MetricNode]) -> Result<Vec<(i64, Amount)>, SmError> {
    let open = format!("{prefix}[");
    let mut out = Vec::new();
    for (name, value) in &p.0 {
        let Some(metric) = name.strip_prefix(&open).and_then(|m| m.strip_suffix(']')) else {
            continue;
        };
        let node = metrics
            .iter()
            .find(|m| m.system_name == metric)
            .ok_or_else(|| SmError::new(404, "metric_invalid", format!("metric \"{metric}\" is invalid")))?;
        let trimmed = value.trim();
        if trimmed.is_empty() {
            return Err(SmError::new(
                403,
                "usage_value_invalid",
                format!("usage value for metric \"{metric}\" can not be empty"),
            ));
        }
        let (set, digits) = match trimmed.strip_prefix('#') {
            Some(rest) => (true, rest),
            None => (false, trimmed),
        };
        let n = digits
            .parse::<i64>()
            .ok()
            .filter(|_| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()));
        let n = n.ok_or_else(|| {
            SmError::new(
                403,
                "usage_value_invalid",
                format!("usage value \"{value}\" for metric \"{metric}\" is invalid"),
            )
        })?;
        match (set, n) {
            (true, n) => out.push((node.id, Amount::Set(n))),
            (false, 0) => {}
            (false, n) => out.push((node.id, Amount::Add(n))),
        }
    }
    Ok(out)
}

/// authorize (`Mode::Check`) or authrep (`Mode::CheckAndAdd`) for one application.
#[allow(clippy::too_many_arguments)]
pub async fn authorize(
    l: &Lookup<'_>,
    counters: &Counters,
    view: &ServiceView,
    app: &Application,
    app_key: Option<&str>,
    usage: &[(i64, Amount)],
    codes: &[(u16, i64)],
    options: Options,
    mode: Mode,
    now: DateTime<Utc>,
) -> Result<Status, SmError> {
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
    if service.backend_version != "1" {
        let keys = l.keys(app.id).await?;
        match app_key {
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
    if app.state != "live" {
        return Ok(deny("application is not active".into(), "application_not_active"));
    }
    let expanded = limits::expand(usage, metrics, options.flat_usage);
    let mut ops = limits::ops(&plan.limits, &expanded, codes, now);
    // Prepaid accounts: the call's cost, deducted atomically with the limits.
    let wallet = l.wallet(app).await?;
    ops.extend(crate::credits::ops(app, wallet.as_deref(), &expanded));
    let outcome = counters.apply(app.id, &ops, mode).await.map_err(|e| {
        tracing::warn!(error = %e, "counters unavailable");
        SmError::new(503, "backend_unavailable", "usage counters are unavailable")
    })?;
    let reports = limits::reports(&ops, &outcome.values, metrics, now);
    let denied = (!outcome.authorized).then(|| {
        if crate::credits::exhausted(&ops, &outcome.values) {
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
            let i = ops
                .iter()
                .position(|op| op.metric_id == crate::credits::SPENT_COUNTER)?;
            let spent = outcome.values.get(i).copied()?;
            Some((
                w.granted_units.saturating_sub(spent).max(0),
                crate::credits::weights(w, app.plan_id, metrics),
            ))
        }),
        purchase_url: wallet.as_ref().and_then(|w| w.purchase_url.clone()),
        denied,
    })
}

/// One transaction of a report, validated: the application, its usage, the response codes it
/// logs and when it happened.
pub struct Transaction {
    pub app: Arc<Application>,
    pub usage: Vec<(i64, Amount)>,
    pub codes: Vec<(u16, i64)>,
    pub at: DateTime<Utc>,
}

/// The response codes a transaction logs: apisonator's `log[code]` (one request), and our
/// filter's `log[codes][NNN]=N` (N requests of one transaction). Malformed ones count nothing.
pub fn response_codes(p: &Params, prefix: &str) -> Vec<(u16, i64)> {
    let mut out: Vec<(u16, i64)> = limits::parse_response_code(p.get(&format!("{prefix}[code]")))
        .map(|c| (c, 1))
        .into_iter()
        .collect();
    let open = format!("{prefix}[codes][");
    for (name, value) in &p.0 {
        let Some(code) = name.strip_prefix(&open).and_then(|c| c.strip_suffix(']')) else {
            continue;
        };
        let n = value.trim().parse::<i64>().ok().filter(|n| *n > 0);
        if let (Some(code), Some(n)) = (limits::parse_response_code(Some(code)), n) {
            out.push((code, n));
        }
    }
    out
}

/// Reports take timestamps from 24 h back to 1 h ahead.
pub fn timestamp(raw: Option<&str>, now: DateTime<Utc>) -> Result<DateTime<Utc>, SmError> {
    let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
        return Ok(now);
    };
    let parsed = raw
        .parse::<i64>()
        .ok()
        .and_then(|secs| DateTime::from_timestamp(secs, 0))
        .or_else(|| {
            DateTime::parse_from_str(raw, "%Y-%m-%d %H:%M:%S %z")
                .ok()
                .map(|t| t.with_timezone(&Utc))
        })
        .or_else(|| {
            DateTime::parse_from_str(raw, "%Y-%m-%d %H:%M:%S %:z")
                .ok()
                .map(|t| t.with_timezone(&Utc))
        })
        .or_else(|| {
            chrono::NaiveDateTime::parse_from_str(raw, "%Y-%m-%d %H:%M:%S")
                .ok()
                .map(|t| t.and_utc())
        })
        .ok_or_else(|| SmError::new(400, "transactions_format_invalid", "transactions format is invalid"))?;
    if parsed < now - chrono::Duration::seconds(86_400) {
        return Err(SmError::new(
            403,
            "transaction_timestamp_too_old",
            "reporting transactions older than 86400 seconds is not allowed",
        ));
    }
    if parsed > now + chrono::Duration::seconds(3600) {
        return Err(SmError::new(
            403,
            "transaction_timestamp_too_new",
            "reporting transactions more than 3600 seconds in the future is not allowed",
        ));
    }
    Ok(parsed)
}

/// A report's optional `batch_id` (at most 200 characters; blank is none).
pub fn batch_id(p: &Params) -> Result<Option<&str>, SmError> {
    match p.get("batch_id").map(str::trim).filter(|b| !b.is_empty()) {
        Some(b) if b.chars().count() > 200 => Err(SmError::new(
            422,
            "batch_id_invalid",
            "batch_id is invalid: at most 200 characters",
        )),
        b => Ok(b),
    }
}

/// Validates a whole report batch (`transactions[N][…]`, at most 1000) before anything counts:
/// one bad transaction rejects the batch, so nothing is half-reported.
pub async fn report_batch(
    l: &Lookup<'_>,
    view: &ServiceView,
    p: &Params,
    now: DateTime<Utc>,
) -> Result<Vec<Transaction>, SmError> {
    let indices = report_indices(p)?;
    let metrics = view.metrics.as_slice();
    let mut out = Vec::with_capacity(indices.len());
    for i in indices {
        let name = |field: &str| format!("transactions[{i}][{field}]");
        let creds = Credentials::from(p, name);
        let app = application(l, &view.service, &creds).await?;
        let usage = usage(p, &format!("transactions[{i}][usage]"), metrics)?;
        let at = timestamp(p.get(&name("timestamp")), now)?;
        let codes = response_codes(p, &format!("transactions[{i}][log]"));
        out.push(Transaction { app, usage, codes, at });
    }
    Ok(out)
}

/// Counts a validated batch: every transaction's usage, up the hierarchy, in its own period,
/// in the plan's limited counters as well as the month and hour ones.
pub async fn count(
    l: &Lookup<'_>,
    counters: &Counters,
    view: &ServiceView,
    batch: &[Transaction],
) -> Result<(), SmError> {
    for t in batch {
        let plan = l.plan(t.app.plan_id).await?;
        let expanded = limits::expand(&t.usage, &view.metrics, false);
        let mut ops = limits::ops(&plan.limits, &expanded, &t.codes, t.at);
        // Usage a gateway served from its cached share is paid for, like any other (see
        // `credits` on how far that can take a balance).
        let wallet = l.wallet(&t.app).await?;
        ops.extend(crate::credits::ops(&t.app, wallet.as_deref(), &expanded));
        counters.apply(t.app.id, &ops, Mode::Add).await.map_err(|e| {
            tracing::warn!(error = %e, "counters unavailable");
            SmError::new(503, "backend_unavailable", "usage counters are unavailable")
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_timestamps() {
        let now = DateTime::parse_from_rfc3339("2026-11-22T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(timestamp(None, now).unwrap(), now);
        assert_eq!(
            timestamp(Some("2026-11-22 11:00:00"), now).unwrap().to_rfc3339(),
            "2026-11-22T11:00:00+00:00"
        );
        assert_eq!(
            timestamp(Some("2026-11-22 13:30:00 +02:00"), now).unwrap().to_rfc3339(),
            "2026-11-22T11:30:00+00:00"
        );
        assert_eq!(timestamp(Some("1795348800"), now).unwrap().timestamp(), 1795348800);
        assert_eq!(
            timestamp(Some("2026-11-20 11:00:00"), now).unwrap_err().code,
            "transaction_timestamp_too_old"
        );
        assert_eq!(
            timestamp(Some("2026-11-22 14:00:01"), now).unwrap_err().code,
            "transaction_timestamp_too_new"
        );
        assert_eq!(
            timestamp(Some("yesterday"), now).unwrap_err().code,
            "transactions_format_invalid"
        );
    }

    use proptest::prelude::*;

    proptest! {
        /// Whatever the query, parsing it, reading usage and report indices answers — an
        /// error maybe, never a panic.
        #[test]
        fn no_query_panics(q in "[a-z_\\[\\]0-9%&=#+ -]{0,80}") {
            if let Ok(p) = Params::from_query(&q) {
                let metrics = [MetricNode { id: 1, system_name: "hits".into(), parent_id: None }];
                let _ = usage(&p, "usage", &metrics);
                let _ = usage(&p, "transactions[0][usage]", &metrics);
                let _ = report_indices(&p);
                let _ = check_utf8(&p);
                let _ = Options::parse(Some(&q), &p);
                let _ = Credentials::from(&p, str::to_string);
            }
        }

        #[test]
        fn usage_accepts_exactly_whole_numbers(v in "[ 0-9a-z#-]{0,6}") {
            let metrics = [MetricNode { id: 1, system_name: "hits".into(), parent_id: None }];
            let p = Params(vec![("usage[hits]".into(), v.clone())]);
            let ok = usage(&p, "usage", &metrics).is_ok();
            let t = v.trim();
            let digits = t.strip_prefix('#').unwrap_or(t);
            prop_assert_eq!(ok, !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && digits.parse::<i64>().is_ok());
        }
    }

    #[test]
    fn invalid_utf8_and_indices() {
        let p = Params::from_query("user_key=%FF%FE").unwrap();
        assert_eq!(check_utf8(&p).unwrap_err().code, "not_valid_data");
        let p = Params::from_query(
            "transactions[10][usage][hits]=1&transactions[2][user_key]=a&transactions[2][usage][hits]=1",
        )
        .unwrap();
        assert_eq!(report_indices(&p).unwrap(), vec!["2".to_string(), "10".to_string()]);
        assert_eq!(
            report_indices(&Params::default()).unwrap_err().code,
            "transactions_is_blank"
        );
    }

    #[test]
    fn options_header() {
        let o = Options::parse(
            Some("no_body=1&rejection_reason_header=1&flat_usage=0"),
            &Params::default(),
        );
        assert_eq!(
            o,
            Options {
                no_body: true,
                rejection_reason_header: true,
                ..Options::default()
            }
        );
        let q = Params::from_query("no_body=true").unwrap();
        assert!(Options::parse(None, &q).no_body);
        assert!(!Options::parse(Some("no_body=0"), &Params::default()).no_body);
    }
}
