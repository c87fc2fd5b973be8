//! E-mail: composed from the event and the templates in `templates/mail/` (plain text and
//! HTML, checked at compile time), sent by [`crate::mailer`].

pub use crate::mailer::{Composed, Mailer};
use askama::Template;
use serde_json::Value;
use tollgate_store::catalog::provider::ProviderAccount;
use tollgate_store::outbox::Event;

/// What both parts of an e-mail lay out.
struct Layout<'a> {
    heading: &'a str,
    paragraphs: &'a [String],
    facts: &'a [(String, String)],
    org: &'a str,
    support: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "mail/notice.txt", escape = "none")]
struct Text<'a> {
    m: &'a Layout<'a>,
}

#[derive(Template)]
#[template(path = "mail/notice.html")]
struct Html<'a> {
    m: &'a Layout<'a>,
}

fn s<'a>(v: &'a Value, path: &[&str]) -> String {
    let mut at: &'a Value = v;
    for p in path {
        at = at.get(*p).unwrap_or(&Value::Null);
    }
    match at {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// What an e-mail says, before the templates lay it out.
struct Notice {
    subject: String,
    heading: String,
    paragraphs: Vec<String>,
    facts: Vec<(String, String)>,
}

fn notice(subject: String, paragraphs: Vec<String>, facts: Vec<(&str, String)>) -> Notice {
    Notice {
        heading: subject.clone(),
        subject,
        paragraphs,
        facts: facts
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(l, v)| (l.to_string(), v))
            .collect(),
    }
}

fn alert(e: &Event) -> Notice {
    let p = &e.payload;
    let violation = s(p, &["alert", "kind"]) == "violation";
    let app = s(p, &["application", "name"]);
    let level = s(p, &["alert", "level"]);
    notice(
        format!(
            "Application '{app}' limit {} - limit usage is above {level}%",
            if violation { "violation" } else { "alert" }
        ),
        vec![format!(
            "The application {app} has used {} of a limit.",
            if violation { "all" } else { "most" }
        )],
        vec![
            ("Usage", s(p, &["alert", "message"])),
            ("Level", format!("{level}%")),
            ("Utilization", s(p, &["alert", "utilization"])),
        ],
    )
}

fn invoice(e: &Event, what: &str, why: &str) -> Notice {
    let p = &e.payload;
    notice(
        format!("Invoice {} {what}", s(p, &["friendly_id"])),
        vec![why.to_string()],
        vec![
            ("Invoice", s(p, &["friendly_id"])),
            (
                "Amount",
                format!("{} {}", s(p, &["cost"]), s(p, &["currency"]))
                    .trim()
                    .to_string(),
            ),
            (
                "Amount charged",
                format!("{} {}", s(p, &["amount"]), s(p, &["currency"]))
                    .trim()
                    .to_string(),
            ),
            ("Due on", s(p, &["due_on"])),
            ("Next attempt", s(p, &["retry_on"])),
        ],
    )
}

/// The object a catalog event is about, named (`Acme`, `Acme's App`).
fn object_name(e: &Event) -> String {
    let (kind, _) = tollgate_domain::notify::threescale_shape(&e.kind).unwrap_or(("", ""));
    let o = e.payload.get(kind).unwrap_or(&Value::Null);
    [s(o, &["org_name"]), s(o, &["name"]), s(o, &["username"])]
        .into_iter()
        .find(|n| !n.is_empty())
        .unwrap_or_else(|| s(o, &["id"]))
}

/// Whether a created account or application waits for approval (state `pending`).
fn awaiting(e: &Event) -> bool {
    let (kind, _) = tollgate_domain::notify::threescale_shape(&e.kind).unwrap_or(("", ""));
    s(&e.payload, &[kind, "state"]) == "pending"
}

fn compose_notice(template: &str, e: &Event) -> Notice {
    let name = object_name(e);
    let p = &e.payload;
    match template {
        "provider/limit_alert_reached_provider" | "provider/limit_violation_reached_provider" | "buyer/limit_alert" => {
            alert(e)
        }
        "buyer/upcoming_invoice_charge" => invoice(e, "issued", "A new invoice has been issued to your account."),
        "buyer/invoice_charged" => invoice(e, "paid", "Your invoice was charged successfully. Thank you."),
        "buyer/invoice_charge_failed_with_retry" | "provider/unsuccessfully_charged_invoice_provider" => invoice(
            e,
            "payment failed",
            "Charging the invoice failed. It is unpaid and will be charged again.",
        ),
        "buyer/invoice_charge_failed_without_retry" | "provider/unsuccessfully_charged_invoice_final_provider" => {
            invoice(
                e,
                "payment failed",
                "Charging the invoice failed for the last time. It is now failed.",
            )
        }
        "buyer/credit_card_expiring" | "provider/expired_credit_card_provider" => notice(
            "Credit card about to expire".into(),
            vec!["The credit card on file expires soon. Please update it to keep paying without interruption.".into()],
            vec![("Expires on", s(p, &["expires_on"]))],
        ),
        "buyer/credits_low_balance" => notice(
            "Your credit balance is low".into(),
            vec!["Your prepaid credit balance has fallen below its threshold.".into()],
            vec![("Balance", s(p, &["balance"])), ("Threshold", s(p, &["threshold"]))],
        ),
        "buyer/message" => Notice {
            subject: s(p, &["message", "subject"]),
            heading: s(p, &["message", "subject"]),
            paragraphs: s(p, &["message", "body"]).split("\n\n").map(str::to_string).collect(),
            facts: Vec::new(),
        },
        "provider/account_created" | "provider/application_created" if awaiting(e) => notice(
            format!(
                "{} awaiting approval: {name}",
                if e.kind.starts_with("account") {
                    "Account"
                } else {
                    "Application"
                }
            ),
            vec!["It waits for your approval (Audience > Accounts, or the application's page).".into()],
            vec![],
        ),
        "provider/account_created" => notice(format!("New account created: {name}"), vec![], vec![]),
        "provider/account_deleted" => notice(format!("Account deleted: {name}"), vec![], vec![]),
        "provider/application_created" => notice(format!("New application created: {name}"), vec![], vec![]),
        "provider/cinstance_cancellation" => notice(format!("Application deleted: {name}"), vec![], vec![]),
        "provider/cinstance_plan_changed" => notice(format!("Application plan changed: {name}"), vec![], vec![]),
        "provider/invoices_to_review" => invoice(
            e,
            "to review",
            "An invoice was finalized: review it before it is issued.",
        ),
        other => notice(
            format!("Notification: {}", e.kind),
            vec![],
            vec![("Template", other.to_string())],
        ),
    }
}

/// The e-mail `template` sends for `event` (`provider/<preference>` or `buyer/<mail>`).
pub fn compose(template: &str, event: &Event, provider: &ProviderAccount) -> Composed {
    let support = provider
        .settings
        .get("finance_support_email")
        .map(String::as_str)
        .filter(|s| !s.is_empty() && template.starts_with("buyer/"));
    laid_out(compose_notice(template, event), provider, support)
}

/// The e-mail inviting someone to the provider's console (sent at once, not through the
/// outbox: the link is a credential, never an event webhooks could see).
pub fn invitation(provider: &ProviderAccount, url: &str, account: Option<&str>) -> Composed {
    let to = match account {
        None => format!(
            "You are invited to the API management console of {}.",
            provider.org_name
        ),
        Some(org) => format!(
            "You are invited to join {org} in the developer portal of {}.",
            provider.org_name
        ),
    };
    let n = notice(
        format!(
            "Invitation to join {} on Tollgate",
            account.unwrap_or(&provider.org_name)
        ),
        vec![
            to,
            format!("Open this link to choose your user name and password: {url}"),
            format!(
                "The link works once, for {} days.",
                tollgate_store::invitations::VALID_DAYS
            ),
        ],
        vec![],
    );
    laid_out(n, provider, None)
}

fn laid_out(n: Notice, provider: &ProviderAccount, support: Option<&str>) -> Composed {
    let m = Layout {
        heading: &n.heading,
        paragraphs: &n.paragraphs,
        facts: &n.facts,
        org: &provider.org_name,
        support,
    };
    let text = Text { m: &m }.render().unwrap_or_default();
    let html = Html { m: &m }.render().unwrap_or_default();
    Composed {
        subject: n.subject,
        text,
        html,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn provider() -> ProviderAccount {
        ProviderAccount {
            org_name: "Acme API".into(),
            provider_key: String::new(),
            settings: BTreeMap::from([("finance_support_email".into(), "billing@acme.test".into())]),
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    fn event(kind: &str, payload: Value) -> Event {
        Event {
            id: 1,
            uuid: "msg_1".into(),
            kind: kind.into(),
            account_id: None,
            service_id: None,
            actor: tollgate_store::events::Actor::System,
            payload,
            created_at: String::new(),
        }
    }

    #[test]
    fn alerts_say_3scales_subject_and_escape_html() {
        let e = event(
            "limit.alert",
            json!({"alert": {"level": 100, "kind": "violation", "message": "hits per day: 4 of 4", "utilization": "1"},
                   "application": {"name": "<b>App</b>"}}),
        );
        let m = compose("buyer/limit_alert", &e, &provider());
        assert_eq!(
            m.subject,
            "Application '<b>App</b>' limit violation - limit usage is above 100%"
        );
        assert!(m.text.contains("Usage: hits per day: 4 of 4"), "{}", m.text);
        assert!(m.text.contains("billing@acme.test"));
        assert!(
            m.html.contains("&#60;b&#62;App&#60;/b&#62;") && !m.html.contains("<b>App"),
            "{}",
            m.html
        );
    }

    #[test]
    fn applications_awaiting_approval_say_so() {
        let e = event(
            "application.created",
            json!({"application": {"name": "App", "state": "pending"}}),
        );
        assert_eq!(
            compose("provider/application_created", &e, &provider()).subject,
            "Application awaiting approval: App"
        );
        let e = event(
            "application.created",
            json!({"application": {"name": "App", "state": "live"}}),
        );
        assert_eq!(
            compose("provider/application_created", &e, &provider()).subject,
            "New application created: App"
        );
    }
}
