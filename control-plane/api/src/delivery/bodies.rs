//! What a delivery sends. 3scale's webhook gets porta's XML: `<event><action/><type/>
//! <object/></event>`, the object being the resource as the admin API's XML shows it (the
//! application for key events). Tollgate's endpoints get `{"id","type","created_at","data"}`.
//! Both are signed per Standard Webhooks: `webhook-id` (the event's stable id),
//! `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`,
//! one signature per live secret (two during a rotation's overlap).

use serde_json::{json, Value};
use tollgate_store::outbox::Event;
use tollgate_store::Db;

/// The XML body of a 3scale event, `None` for an event 3scale has no shape for.
pub async fn threescale_xml(db: &Db, event: &Event) -> Option<String> {
    let (kind, action) = tollgate_domain::notify::threescale_shape(&event.kind)?;
    let mut object = json!({ kind: event.payload.get(kind).cloned().unwrap_or(Value::Null) });
    if let Err(e) = crate::xml_answers::enrich(db, &mut object).await {
        tracing::warn!(error = %e, event = %event.uuid, "webhook object sent without its plan or users");
    }
    let doc = json!({"event": {"action": action, "type": kind, "object": object}});
    crate::xml::from_json(&doc)
}

/// The JSON body of any event.
pub fn json_body(event: &Event) -> String {
    event.json_body().to_string()
}

/// The Standard Webhooks headers for `body`, signed with each of `secrets`.
pub fn signature_headers(event_id: &str, timestamp: i64, body: &str, secrets: &[&str]) -> Vec<(&'static str, String)> {
    let signatures: Vec<String> = secrets
        .iter()
        .filter_map(|s| standardwebhooks::Webhook::new(s).ok())
        .filter_map(|w| w.sign(event_id, timestamp, body.as_bytes()).ok())
        .collect();
    vec![
        ("webhook-id", event_id.to_string()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signatures.join(" ")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_with_either_secret() {
        let (a, b) = (
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_dGVzdC1zZWNyZXQtdGVzdC1zZWNyZXQ=",
        );
        let headers = signature_headers("msg_1", chrono::Utc::now().timestamp(), "{}", &[a, b]);
        let mut map = axum::http::HeaderMap::new();
        for (k, v) in &headers {
            map.insert(*k, v.parse().unwrap_or(axum::http::HeaderValue::from_static("")));
        }
        for secret in [a, b] {
            let w = standardwebhooks::Webhook::new(secret).ok();
            assert!(w.is_some_and(|w| w.verify(b"{}", &map).is_ok()), "{secret}");
        }
        assert!(headers[2].1.starts_with("v1,"));
    }
}
