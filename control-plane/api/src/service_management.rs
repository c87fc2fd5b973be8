//! The service-management API gateways call, compatible with 3scale's apisonator:
//! `authorize`, `authrep` (`.xml` for APIcast and 3scale's clients, `.json` for our filter),
//! batch `POST /transactions.xml` (202), `/status` and `/check.txt`. The decisions live in
//! [`tollgate_store::authrep`]; this module reads requests (parsing them into typed usage, codes
//! and credentials) and writes apisonator's bytes.
//!
//! Honoured `3scale-options`: `no_body`, `rejection_reason_header`, `flat_usage`,
//! `limit_headers`, `hierarchy`, `list_app_keys`. Usage is `N` (add) or `#N` (set);
//! `log[code]` counts the response code and its class.

use crate::params::Params;
use crate::routes::{Guard, Routes};
use crate::state::AppState;
use crate::xml::escape;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde_json::json;
use tollgate_domain::counters::{Amount, Mode};
use tollgate_domain::ids::MetricId;
use tollgate_domain::limits::{parse_response_code, MetricNode, UsageReport};
use tollgate_store::authrep::{self, Call, Credentials, Lookup, Options, SmError, Status, Transaction};
use tollgate_store::batches::{self, Claim};
use tollgate_store::hot_cache::ServiceView;
use tollgate_store::integration_errors;

const XML: &str = "application/vnd.3scale-v2.0+xml";

/// The service-management API is public to access tokens: every call carries its service token.
pub fn routes(r: &mut Routes) {
    r.get(
        "/transactions/{call}",
        Guard::Public,
        "Authorize, or authorize and report (service-management API; XML for 3scale's clients, JSON for the filter)",
        authorize_or_authrep,
    )
    .documented(&[
        "/transactions/authorize.xml",
        "/transactions/authorize.json",
        "/transactions/authrep.xml",
        "/transactions/authrep.json",
    ]);
    r.post(
        "/transactions.xml",
        Guard::Public,
        "Report a batch of transactions (202)",
        report_xml,
    );
    r.post(
        "/transactions.json",
        Guard::Public,
        "Report a batch of transactions with an optional batch_id, counted once (202)",
        report_json,
    );
    r.get(
        "/check.txt",
        Guard::Public,
        "Service-management API liveness",
        || async { "ok" },
    );
    r.get("/status", Guard::Public, "Service-management API status", || async {
        Json(json!({"status": "ok", "version": {"backend": crate::VERSION}}))
    });
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Xml,
    Json,
}

/// apisonator's `<status>` document, byte for byte (one line, `max_value` before
/// `current_value`, `<usage_reports>` only when the plan has limits).
pub fn status_xml(s: &Status) -> String {
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?><status>");
    match &s.denied {
        None => x.push_str("<authorized>true</authorized>"),
        Some((reason, _)) => x.push_str(&format!("<authorized>false</authorized><reason>{reason}</reason>")),
    }
    x.push_str(&format!("<plan>{}</plan>", escape(&s.plan, false)));
    if !s.reports.is_empty() {
        x.push_str("<usage_reports>");
        for r in &s.reports {
            x.push_str(&usage_report_xml(r));
        }
        x.push_str("</usage_reports>");
    }
    if let Some((app, service, keys)) = &s.app_keys {
        x.push_str(&format!("<app_keys app=\"{}\" svc=\"{service}\">", escape(app, true)));
        for k in keys {
            x.push_str(&format!("<key id=\"{}\"/>", escape(k, true)));
        }
        x.push_str("</app_keys>");
    }
    if let Some(hierarchy) = &s.hierarchy {
        x.push_str("<hierarchy>");
        for (metric, children) in hierarchy {
            x.push_str(&format!(
                "<metric name=\"{}\" children=\"{}\"/>",
                escape(metric, true),
                escape(&children.join(" "), true)
            ));
        }
        x.push_str("</hierarchy>");
    }
    x.push_str("</status>");
    x
}

fn usage_report_xml(r: &UsageReport) -> String {
    let exceeded = if r.exceeded { " exceeded=\"true\"" } else { "" };
    let mut x = format!(
        "<usage_report metric=\"{}\" period=\"{}\"{exceeded}>",
        escape(&r.metric, true),
        r.period
    );
    if let (Some(start), Some(end)) = (&r.period_start, &r.period_end) {
        x.push_str(&format!(
            "<period_start>{start}</period_start><period_end>{end}</period_end>"
        ));
    }
    x.push_str(&format!(
        "<max_value>{}</max_value><current_value>{}</current_value></usage_report>",
        r.max_value, r.current_value
    ));
    x
}

pub fn error_xml(e: &SmError) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><error code=\"{}\">{}</error>",
        e.code,
        escape(&e.message, false)
    )
}

fn respond(status: u16, format: Format, body: String, options: Options) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let content_type = match format {
        Format::Xml => XML,
        Format::Json => "application/json",
    };
    let body = if options.no_body { String::new() } else { body };
    let mut r = (code, body).into_response();
    r.headers_mut()
        .insert(axum::http::header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn error_response(e: &SmError, format: Format, options: Options) -> Response {
    let body = match format {
        Format::Xml => error_xml(e),
        Format::Json => json!({"error": {"code": e.code, "message": e.message}}).to_string(),
    };
    respond(e.status, format, body, options)
}

/// authrep's answer; `gateways`: how many gateways share a prepaid balance (each is told its
/// share of what remains).
fn status_response(s: &Status, format: Format, options: Options, gateways: u32) -> Response {
    let body = match format {
        Format::Xml => status_xml(s),
        Format::Json => {
            let mut v = json!({"authorized": s.denied.is_none(), "plan": s.plan, "usage_reports": s.reports});
            if let Some((reason, code)) = &s.denied {
                v["reason"] = json!(reason);
                v["rejection_reason"] = json!(code);
            }
            if let Some(url) = &s.purchase_url {
                v["purchase_url"] = json!(url);
            }
            if let Some((remaining, weights)) = &s.credits {
                let weights: serde_json::Map<String, serde_json::Value> =
                    weights.iter().map(|(m, w)| (m.clone(), json!(w))).collect();
                v["credits"] = json!({
                    "remaining_units": remaining,
                    "share_units": tollgate_domain::credits::gateway_share(*remaining, gateways),
                    "weights": weights,
                });
            }
            if let Some(hierarchy) = &s.hierarchy {
                let map: serde_json::Map<String, serde_json::Value> = hierarchy
                    .iter()
                    .map(|(m, children)| (m.clone(), json!(children)))
                    .collect();
                v["hierarchy"] = serde_json::Value::Object(map);
            }
            v.to_string()
        }
    };
    let mut r = respond(if s.denied.is_some() { 409 } else { 200 }, format, body, options);
    if let (Some((_, code)), true) = (&s.denied, options.rejection_reason_header) {
        r.headers_mut()
            .insert("3scale-rejection-reason", HeaderValue::from_static(code));
    }
    let limited = matches!(&s.denied, None | Some((_, "limits_exceeded")));
    if options.limit_headers && limited {
        let (remaining, reset, max) =
            tollgate_domain::limits::limit_headers(&s.reports, &s.usage, Utc::now().timestamp());
        let h = r.headers_mut();
        h.insert("3scale-limit-remaining", HeaderValue::from(remaining));
        h.insert("3scale-limit-reset", HeaderValue::from(reset));
        if let Some(max) = max {
            h.insert("3scale-limit-max-value", HeaderValue::from(max));
        }
    }
    r
}

/// The service a call is for, from `service_token` + `service_id`.
async fn service(l: &Lookup<'_>, p: &Params) -> Result<std::sync::Arc<ServiceView>, SmError> {
    authrep::service(
        l,
        p.get("service_token").unwrap_or(""),
        p.get("service_id").unwrap_or(""),
    )
    .await
}

fn options(headers: &HeaderMap, p: &Params) -> Options {
    parse_options(headers.get("3scale-options").and_then(|v| v.to_str().ok()), p)
}

/// The `3scale-options` header (query syntax; a flag is on when it is `1`) and the deprecated
/// `no_body` query parameter (anything but `0`/`false`).
fn parse_options(header: Option<&str>, p: &Params) -> Options {
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

/// apisonator's `not_valid_data`: the request carried bytes that are not UTF-8. The form
/// decoder replaces them with U+FFFD, so that is what gives them away.
pub fn check_utf8(p: &Params) -> Result<(), SmError> {
    if p.0
         .0
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
        p.0 .0
            .iter()
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

/// An application's credentials from `p`, reading `{prefix}user_key` etc.
/// (`transactions[0][user_key]` in reports).
fn credentials<'a>(p: &'a Params, name: impl Fn(&str) -> String) -> Credentials<'a> {
    let get = |n: &str| p.get(&name(n)).filter(|v| !v.is_empty());
    Credentials {
        user_key: get("user_key"),
        app_id: get("app_id"),
        app_key: get("app_key"),
    }
}

/// `usage[metric]=N` (add N) and `usage[metric]=#N` (set the counter to N) pairs, under
/// `prefix` (e.g. `transactions[0][usage]`), as (metric id, amount). Unknown metrics and values
/// that are not whole numbers are apisonator's errors; adding 0 is dropped.
pub fn usage(p: &Params, prefix: &str, metrics: &[MetricNode]) -> Result<Vec<(MetricId, Amount)>, SmError> {
    let open = format!("{prefix}[");
    let mut out = Vec::new();
    for (name, value) in &p.0 .0 {
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

/// The response codes a transaction logs: apisonator's `log[code]` (one request), and our
/// filter's `log[codes][NNN]=N` (N requests of one transaction). Malformed ones count nothing.
pub fn response_codes(p: &Params, prefix: &str) -> Vec<(u16, i64)> {
    let mut out: Vec<(u16, i64)> = parse_response_code(p.get(&format!("{prefix}[code]")))
        .map(|c| (c, 1))
        .into_iter()
        .collect();
    let open = format!("{prefix}[codes][");
    for (name, value) in &p.0 .0 {
        let Some(code) = name.strip_prefix(&open).and_then(|c| c.strip_suffix(']')) else {
            continue;
        };
        let n = value.trim().parse::<i64>().ok().filter(|n| *n > 0);
        if let (Some(code), Some(n)) = (parse_response_code(Some(code)), n) {
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
async fn report_batch(
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
        let creds = credentials(p, name);
        let app = authrep::application(l, &view.service, &creds).await?;
        let usage = usage(p, &format!("transactions[{i}][usage]"), metrics)?;
        let at = timestamp(p.get(&name("timestamp")), now)?;
        let codes = response_codes(p, &format!("transactions[{i}][log]"));
        out.push(Transaction { app, usage, codes, at });
    }
    Ok(out)
}

async fn authorize_or_authrep(
    State(app): State<AppState>,
    Path(call): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Response {
    let (mode, format) = match call.as_str() {
        "authorize.xml" => (Mode::Check, Format::Xml),
        "authorize.json" => (Mode::Check, Format::Json),
        "authrep.xml" => (Mode::CheckAndAdd, Format::Xml),
        "authrep.json" => (Mode::CheckAndAdd, Format::Json),
        _ => return (StatusCode::NOT_FOUND, [(axum::http::header::CONTENT_TYPE, XML)]).into_response(),
    };
    let options = options(&headers, &p);
    let mut service_id = None;
    let result = async {
        check_utf8(&p)?;
        let lookup = app.lookup();
        let view = service(&lookup, &p).await?;
        service_id = Some(view.service.id);
        let creds = credentials(&p, str::to_string);
        let application = authrep::application(&lookup, &view.service, &creds).await?;
        let usage = usage(&p, "usage", &view.metrics)?;
        // Only authrep reports; authorize moves nothing.
        let codes = match mode {
            Mode::CheckAndAdd => response_codes(&p, "log"),
            _ => vec![],
        };
        let call = Call {
            app_key: creds.app_key,
            usage: &usage,
            codes: &codes,
            options,
            mode,
            now: Utc::now(),
        };
        authrep::authorize(&lookup, &app.counters, &view, &application, call).await
    }
    .await;
    let outcome = match &result {
        Ok(s) if s.denied.is_none() => "authorized",
        Ok(_) => "denied",
        Err(_) => "error",
    };
    metrics::counter!("tollgate_service_management_calls_total", "call" => if mode == Mode::Check { "authorize" } else { "authrep" }, "outcome" => outcome).increment(1);
    if let Err(e) = &result {
        keep_integration_error(&app, service_id, e).await;
    }
    match result {
        Ok(status) => status_response(&status, format, options, app.gateways_sharing),
        Err(e) => error_response(&e, format, options),
    }
}

async fn report(app: AppState, headers: HeaderMap, p: Params, format: Format) -> Response {
    let options = options(&headers, &p);
    let mut service_id = None;
    let result = async {
        check_utf8(&p)?;
        let lookup = app.lookup();
        let view = service(&lookup, &p).await?;
        service_id = Some(view.service.id);
        let now = Utc::now();
        let batch = report_batch(&lookup, &view, &p, now).await?;
        let Some(batch_id) = batch_id(&p)? else {
            return authrep::count(&lookup, &app.counters, &view, &batch, None).await;
        };
        let service_id = view.service.id;
        match batches::claim(&app.db, service_id, batch_id, now.timestamp()).await? {
            Claim::Done => Ok(0),
            Claim::InProgress => Err(SmError::new(
                409,
                "batch_in_progress",
                format!("batch \"{batch_id}\" is being counted; send it again later"),
            )),
            Claim::New => match authrep::count(&lookup, &app.counters, &view, &batch, Some(batch_id)).await {
                Ok(counted) => {
                    batches::finish(&app.db, service_id, batch_id).await?;
                    Ok(counted)
                }
                Err(e) => {
                    batches::release(&app.db, service_id, batch_id).await?;
                    Err(e)
                }
            },
        }
    }
    .await;
    match result {
        Ok(n) => {
            metrics::counter!("tollgate_reported_transactions_total").increment(n as u64);
            respond(202, format, String::new(), options)
        }
        Err(e) => {
            keep_integration_error(&app, service_id, &e).await;
            error_response(&e, format, options)
        }
    }
}

/// A call a known service could not take for how it was made is kept for its integrator
/// (before answering, so what the gateway was told is listed when it reads the list).
async fn keep_integration_error(app: &AppState, service: Option<tollgate_domain::ids::ServiceId>, e: &SmError) {
    let Some(service) = service.filter(|_| integration_errors::is_integration_error(e.code)) else {
        return;
    };
    if let Err(err) = integration_errors::record(&app.db, service, e.code, &e.message).await {
        tracing::warn!(error = %err, "an integration error could not be kept");
    }
}

async fn report_xml(State(app): State<AppState>, headers: HeaderMap, p: Params) -> Response {
    report(app, headers, p, Format::Xml).await
}

async fn report_json(State(app): State<AppState>, headers: HeaderMap, p: Params) -> Response {
    report(app, headers, p, Format::Json).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(period: &'static str, start: Option<&str>, end: Option<&str>, max: i64, cur: i64) -> UsageReport {
        UsageReport {
            metric_id: MetricId::new(1),
            ends_at: None,
            period_rank: tollgate_domain::periods::Period::parse(period)
                .unwrap_or(tollgate_domain::periods::Period::Eternity),
            metric: "hits".into(),
            period,
            period_start: start.map(str::to_string),
            period_end: end.map(str::to_string),
            max_value: max,
            current_value: cur,
            exceeded: cur > max,
        }
    }

    #[test]
    fn authorized_status_is_apisonators_bytes() {
        let s = Status {
            denied: None,
            plan: "Basic".into(),
            usage: Default::default(),
            hierarchy: None,
            app_keys: None,
            purchase_url: None,
            credits: None,
            reports: vec![
                report(
                    "month",
                    Some("2010-05-01 00:00:00 +0000"),
                    Some("2010-06-01 00:00:00 +0000"),
                    10000,
                    6,
                ),
                report(
                    "day",
                    Some("2010-05-15 00:00:00 +0000"),
                    Some("2010-05-16 00:00:00 +0000"),
                    100,
                    3,
                ),
            ],
        };
        assert_eq!(
            status_xml(&s),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><status><authorized>true</authorized><plan>Basic</plan><usage_reports><usage_report metric=\"hits\" period=\"month\"><period_start>2010-05-01 00:00:00 +0000</period_start><period_end>2010-06-01 00:00:00 +0000</period_end><max_value>10000</max_value><current_value>6</current_value></usage_report><usage_report metric=\"hits\" period=\"day\"><period_start>2010-05-15 00:00:00 +0000</period_start><period_end>2010-05-16 00:00:00 +0000</period_end><max_value>100</max_value><current_value>3</current_value></usage_report></usage_reports></status>"
        );
    }

    #[test]
    fn denied_status_and_eternity_and_errors() {
        let s = Status {
            denied: Some(("usage limits are exceeded".into(), "limits_exceeded")),
            plan: "Basic".into(),
            usage: Default::default(),
            hierarchy: None,
            app_keys: None,
            purchase_url: None,
            credits: None,
            reports: vec![report(
                "minute",
                Some("2010-05-15 13:41:00 +0000"),
                Some("2010-05-15 13:42:00 +0000"),
                5,
                6,
            )],
        };
        assert_eq!(
            status_xml(&s),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><status><authorized>false</authorized><reason>usage limits are exceeded</reason><plan>Basic</plan><usage_reports><usage_report metric=\"hits\" period=\"minute\" exceeded=\"true\"><period_start>2010-05-15 13:41:00 +0000</period_start><period_end>2010-05-15 13:42:00 +0000</period_end><max_value>5</max_value><current_value>6</current_value></usage_report></usage_reports></status>"
        );
        assert_eq!(
            usage_report_xml(&report("eternity", None, None, 1000, 10)),
            "<usage_report metric=\"hits\" period=\"eternity\"><max_value>1000</max_value><current_value>10</current_value></usage_report>"
        );
        let no_limits = Status {
            denied: None,
            plan: "A & B".into(),
            reports: vec![],
            usage: Default::default(),
            hierarchy: Some(vec![("hits".into(), vec!["a".into(), "b".into()])]),
            app_keys: Some((
                "app1".into(),
                tollgate_domain::ids::ServiceId::new(7),
                vec!["k1".into()],
            )),
            purchase_url: None,
            credits: None,
        };
        assert_eq!(
            status_xml(&no_limits),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><status><authorized>true</authorized><plan>A &amp; B</plan><app_keys app=\"app1\" svc=\"7\"><key id=\"k1\"/></app_keys><hierarchy><metric name=\"hits\" children=\"a b\"/></hierarchy></status>"
        );
        let e = SmError::new(403, "user_key_invalid", "user key \"<b>\" is invalid");
        assert_eq!(
            error_xml(&e),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><error code=\"user_key_invalid\">user key \"&lt;b&gt;\" is invalid</error>"
        );
    }
}

#[cfg(test)]
mod parsing_tests {
    use super::*;
    use tollgate_domain::form::Form;

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
                let metrics = [MetricNode { id: MetricId::new(1), system_name: "hits".into(), parent_id: None }];
                let _ = usage(&p, "usage", &metrics);
                let _ = usage(&p, "transactions[0][usage]", &metrics);
                let _ = report_indices(&p);
                let _ = check_utf8(&p);
                let _ = parse_options(Some(&q), &p);
                let _ = credentials(&p, str::to_string);
            }
        }

        #[test]
        fn usage_accepts_exactly_whole_numbers(v in "[ 0-9a-z#-]{0,6}") {
            let metrics = [MetricNode { id: MetricId::new(1), system_name: "hits".into(), parent_id: None }];
            let p = Params(Form(vec![("usage[hits]".into(), v.clone())]));
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
        let o = parse_options(
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
        assert!(parse_options(None, &q).no_body);
        assert!(!parse_options(Some("no_body=0"), &Params::default()).no_body);
    }
}
