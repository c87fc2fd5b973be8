//! Settings › Personal › Notification preferences (3scale Ch. 4.3): which e-mails the
//! signed-in user receives, one switch per notification their sections allow, grouped by
//! section. The same rules as `/admin/api/personal/notification_preferences.json`
//! ([`tollgate_domain::notify::visible_preferences`] and
//! [`preference_changes`](tollgate_domain::notify::preference_changes)).

use super::pages::Frame;
use super::render::html;
use super::resources::refusal_text;
use super::session::{Personal, Refused, Screen, Submitted};
use crate::state::AppState;
use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use tollgate_domain::access::Section;
use tollgate_domain::notify;
use tollgate_store::catalog::provider;

/// One section's switches: heading, then (name, label, on).
pub type Group = (&'static str, Vec<(&'static str, String, bool)>);

#[derive(Template)]
#[template(path = "console/notifications.html")]
struct NotificationsPage<'a> {
    frame: Frame<'a>,
    groups: Vec<Group>,
    saved: bool,
    error: String,
}

fn heading(s: Section) -> &'static str {
    match s {
        Section::Partners => "Audience: accounts and applications",
        Section::Finance => "Billing",
        Section::Monitoring => "Analytics and limits",
        Section::Plans => "Products",
        _ => "Other",
    }
}

/// A preference's name as a sentence ("cinstance_plan_changed" → "Application plan changed").
fn label(name: &str) -> String {
    let words = name
        .trim_end_matches("_provider")
        .replace("cinstance", "application")
        .replace("csv", "CSV")
        .replace('_', " ");
    let mut chars = words.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().collect::<String>() + chars.as_str())
        .unwrap_or_default()
}

async fn page(app: &AppState, screen: &Screen<Personal>, saved: bool, error: String) -> Response {
    let stored = match provider::notification_preferences(&app.db, screen.session.user_id).await {
        Ok(s) => s,
        Err(e) => return Refused::from(e).into_response(),
    };
    let mut groups: Vec<Group> = Vec::new();
    for (name, section, on) in
        notify::visible_preferences(&screen.principal, |n| stored.get(n).and_then(|v| v.as_bool()))
    {
        let h = heading(section);
        match groups.iter_mut().find(|(g, _)| *g == h) {
            Some((_, items)) => items.push((name, label(name), on)),
            None => groups.push((h, vec![(name, label(name), on)])),
        }
    }
    let status = match error.is_empty() {
        true => StatusCode::OK,
        false => StatusCode::UNPROCESSABLE_ENTITY,
    };
    let body = html(NotificationsPage {
        frame: Frame {
            title: "Notification preferences",
            section: "Settings",
            username: &screen.username,
            csrf: &screen.session.csrf_token,
        },
        groups,
        saved,
        error,
    });
    (status, body).into_response()
}

pub async fn show(State(app): State<AppState>, screen: Screen<Personal>, uri: axum::http::Uri) -> Response {
    page(&app, &screen, uri.query() == Some("saved"), String::new()).await
}

pub async fn update(State(app): State<AppState>, sent: Submitted<Personal>) -> Response {
    let pairs = sent.form.0.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    let changes = match notify::preference_changes(&sent.screen.principal, pairs) {
        Ok(c) => c,
        Err(invalid) => return page(&app, &sent.screen, false, refusal_text(&invalid)).await,
    };
    match provider::set_notification_preferences(&app.db, sent.screen.session.user_id, &changes).await {
        Ok(_) => Redirect::to("/console/settings/notifications?saved").into_response(),
        Err(e) => Refused::from(e).into_response(),
    }
}
