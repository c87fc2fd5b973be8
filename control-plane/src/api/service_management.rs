//! The service-management API gateways call, compatible with 3scale's apisonator:
//! `authorize`, `authrep` (`.xml` for APIcast and 3scale's clients, `.json` for our filter),
//! batch `POST /transactions.xml` (202), `/status` and `/check.txt`. The decisions live in
//! [`crate::transactor`]; this module reads requests and writes apisonator's bytes.
//!
//! Honoured `3scale-options`: `no_body`, `rejection_reason_header`, `flat_usage`,
//! `limit_headers`, `hierarchy`, `list_app_keys`. Usage is `N` (add) or `#N` (set);
//! `log[code]` counts the response code and its class.

use super::AppState;
use crate::batches::{self, Claim};
use crate::counters::Mode;
use crate::limits::UsageReport;
use crate::params::Params;
use crate::transactor::{self, Credentials, Options, SmError, Status};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

const XML: &str = "application/vnd.3scale-v2.0+xml";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/transactions/{call}", get(authorize_or_authrep))
        .route("/transactions.xml", post(report_xml))
        .route("/transactions.json", post(report_json))
        .route("/check.txt", get(|| async { "ok" }))
        .route(
            "/status",
            get(|| async { Json(json!({"status": "ok", "version": {"backend": crate::VERSION}})) }),
        )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Xml,
    Json,
}

fn escape(s: &str, quotes: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if quotes => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
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

fn status_response(s: &Status, format: Format, options: Options) -> Response {
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
                v["credits"] = json!({"remaining_units": remaining, "weights": weights});
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
            crate::limits::limit_headers(&s.reports, &s.usage, chrono::Utc::now().timestamp());
        let h = r.headers_mut();
        h.insert("3scale-limit-remaining", HeaderValue::from(remaining));
        h.insert("3scale-limit-reset", HeaderValue::from(reset));
        if let Some(max) = max {
            h.insert("3scale-limit-max-value", HeaderValue::from(max));
        }
    }
    r
}

fn options(headers: &HeaderMap, p: &Params) -> Options {
    Options::parse(headers.get("3scale-options").and_then(|v| v.to_str().ok()), p)
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
    let result = async {
        transactor::check_utf8(&p)?;
        let lookup = app.lookup();
        let view = transactor::service(&lookup, &p).await?;
        let creds = Credentials::from(&p, str::to_string);
        let application = transactor::application(&lookup, &view.service, &creds).await?;
        let usage = transactor::usage(&p, "usage", &view.metrics)?;
        let now = chrono::Utc::now();
        transactor::authorize(
            &lookup,
            &app.counters,
            &view,
            &application,
            creds.app_key,
            &usage,
            // Only authrep reports; authorize moves nothing.
            &if mode == Mode::CheckAndAdd {
                transactor::response_codes(&p, "log")
            } else {
                vec![]
            },
            options,
            mode,
            now,
        )
        .await
    }
    .await;
    let outcome = match &result {
        Ok(s) if s.denied.is_none() => "authorized",
        Ok(_) => "denied",
        Err(_) => "error",
    };
    metrics::counter!("tollgate_service_management_calls_total", "call" => if mode == Mode::Check { "authorize" } else { "authrep" }, "outcome" => outcome).increment(1);
    match result {
        Ok(status) => status_response(&status, format, options),
        Err(e) => error_response(&e, format, options),
    }
}

async fn report(app: AppState, headers: HeaderMap, p: Params, format: Format) -> Response {
    let options = options(&headers, &p);
    let result = async {
        transactor::check_utf8(&p)?;
        let lookup = app.lookup();
        let view = transactor::service(&lookup, &p).await?;
        let now = chrono::Utc::now();
        let batch = transactor::report_batch(&lookup, &view, &p, now).await?;
        let Some(batch_id) = transactor::batch_id(&p)? else {
            transactor::count(&lookup, &app.counters, &view, &batch).await?;
            return Ok::<usize, SmError>(batch.len());
        };
        let service_id = view.service.id;
        match batches::claim(&app.db, service_id, batch_id, now.timestamp()).await? {
            Claim::Done => Ok(0),
            Claim::InProgress => Err(SmError::new(
                409,
                "batch_in_progress",
                format!("batch \"{batch_id}\" is being counted; send it again later"),
            )),
            Claim::New => match transactor::count(&lookup, &app.counters, &view, &batch).await {
                Ok(()) => {
                    batches::finish(&app.db, service_id, batch_id).await?;
                    Ok(batch.len())
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
        Err(e) => error_response(&e, format, options),
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
            metric_id: 1,
            ends_at: None,
            period_rank: crate::periods::Period::parse(period).unwrap_or(crate::periods::Period::Eternity),
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
            app_keys: Some(("app1".into(), 7, vec!["k1".into()])),
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
