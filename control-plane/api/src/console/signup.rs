//! Audience › Accounts › Usage rules (3scale Ch. 12): whether developers may sign up on their
//! own in the developer portal, and whether a new account waits for an admin's approval.
//! Both are provider settings (`signups_enabled`, default on; `account_approval_required`,
//! default off), written with the same update as `PUT /admin/api/provider.json`; the portal's
//! signup reads them.

use super::pages::Frame;
use super::render::html;
use super::resources::refusal_text;
use super::session::{Refused, Screen, Submitted, UsageRules};
use crate::state::AppState;
use askama::Template;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use tollgate_domain::form::{Form, FromForm};
use tollgate_store::catalog::provider::{self, ProviderPatch};

/// The settings this screen holds: name, label, what is stored when nothing is.
pub const RULES: [(&str, &str, bool); 2] = [
    (
        "signups_enabled",
        "Developers can sign up on their own in the developer portal",
        true,
    ),
    (
        "account_approval_required",
        "A new account waits for an admin's approval (Audience › Accounts: Approve)",
        false,
    ),
];

/// Whether a rule is on in the provider's settings.
pub fn rule_on(settings: &std::collections::BTreeMap<String, String>, name: &str) -> bool {
    let default = RULES.iter().find(|(n, _, _)| *n == name).is_some_and(|r| r.2);
    settings
        .get(name)
        .map(|v| matches!(v.as_str(), "true" | "1"))
        .unwrap_or(default)
}

#[derive(Template)]
#[template(path = "console/signup.html")]
struct RulesPage<'a> {
    frame: Frame<'a>,
    rules: Vec<(&'static str, &'static str, bool)>,
    saved: bool,
    error: String,
}

async fn page(app: &AppState, screen: &Screen<UsageRules>, saved: bool, error: String) -> Response {
    let account = match provider::account(&app.db).await {
        Ok(a) => a,
        Err(e) => return Refused::from(e).into_response(),
    };
    html(RulesPage {
        frame: Frame {
            title: "Usage rules",
            section: "Audience",
            username: &screen.username,
            csrf: &screen.session.csrf_token,
        },
        rules: RULES
            .iter()
            .map(|(n, l, _)| (*n, *l, rule_on(&account.settings, n)))
            .collect(),
        saved,
        error,
    })
}

pub async fn show(State(app): State<AppState>, screen: Screen<UsageRules>, uri: axum::http::Uri) -> Response {
    page(&app, &screen, uri.query() == Some("saved"), String::new()).await
}

pub async fn update(State(app): State<AppState>, sent: Submitted<UsageRules>) -> Response {
    // A checkbox not ticked is not sent: each rule is written, on or off.
    let form = Form(
        RULES
            .iter()
            .map(|(n, _, _)| {
                let on = sent.form.all(n).contains(&"1");
                (n.to_string(), on.to_string())
            })
            .collect(),
    );
    let patch = match ProviderPatch::from_form(&form) {
        Ok(p) => p,
        Err(invalid) => return page(&app, &sent.screen, false, refusal_text(&invalid)).await,
    };
    match provider::update_account(&app.db, patch).await {
        Ok(_) => Redirect::to("/console/accounts/settings?saved").into_response(),
        Err(e) => Refused::from(e).into_response(),
    }
}
