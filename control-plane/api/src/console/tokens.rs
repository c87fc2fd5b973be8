//! Settings › Personal › Tokens (3scale Ch. 6): the signed-in user's access tokens, and a new
//! one — name, scopes, read-only or read-write — whose value is shown once. The same store
//! functions as `/admin/api/personal/access_tokens.json`, with the same checks (a member may
//! only hold scopes whose sections they hold).

use super::pages::Frame;
use super::render::{html, when};
use super::session::{Refused, Screen, Submitted, Tokens};
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use std::collections::BTreeMap;
use tollgate_domain::form::FromForm;
use tollgate_store::auth::{self, NewToken, Token};

#[derive(Template)]
#[template(path = "console/tokens.html")]
struct TokensPage<'a> {
    frame: Frame<'a>,
    tokens: Vec<Token>,
    /// The form as sent (after a refusal), and each field's errors.
    name: &'a str,
    scopes: Vec<&'a str>,
    permission: &'a str,
    errors: BTreeMap<String, Vec<String>>,
    /// A token just made: its name and value, shown this once.
    created: Option<(String, String)>,
}

const SCOPES: [(&str, &str); 4] = [
    ("account_management", "Account Management API"),
    ("finance", "Billing API"),
    ("stats", "Analytics API"),
    ("analytics", "Analytics API (3scale's older name)"),
];

fn scope_names(t: &Token) -> String {
    t.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}

async fn page(
    app: &AppState,
    screen: &Screen<Tokens>,
    form: Option<&tollgate_domain::form::Form>,
    errors: BTreeMap<String, Vec<String>>,
    created: Option<(String, String)>,
) -> Response {
    let tokens = match auth::list_tokens(&app.db, screen.principal.user_id).await {
        Ok(t) => t,
        Err(e) => return Refused::from(e).into_response(),
    };
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let body = html(TokensPage {
        frame: Frame {
            title: "Access tokens",
            section: "Settings",
            username: &screen.username,
            csrf: &screen.session.csrf_token,
        },
        tokens,
        name: form.and_then(|f| f.get("name")).unwrap_or(""),
        scopes: form.map(|f| f.all("scopes")).unwrap_or_default(),
        permission: form.and_then(|f| f.get("permission")).unwrap_or("ro"),
        errors,
        created,
    });
    (status, body).into_response()
}

pub async fn list(State(app): State<AppState>, screen: Screen<Tokens>) -> Response {
    page(&app, &screen, None, BTreeMap::new(), None).await
}

pub async fn create(State(app): State<AppState>, sent: Submitted<Tokens>) -> Response {
    let owner = sent.screen.principal.user_id;
    let made = match NewToken::from_form(&sent.form) {
        Ok(t) => auth::create_token(&app.db, owner, t).await,
        Err(invalid) => Err(invalid.into()),
    };
    match made {
        Ok(made) => {
            page(
                &app,
                &sent.screen,
                None,
                BTreeMap::new(),
                Some((made.token.name, made.value)),
            )
            .await
        }
        Err(tollgate_store::StoreError::Invalid(invalid)) => {
            page(
                &app,
                &sent.screen,
                Some(&sent.form),
                super::resources::errors_of(&invalid),
                None,
            )
            .await
        }
        Err(e) => Refused::from(e).into_response(),
    }
}

/// Asks before deleting a token: whatever uses it is refused from then on.
pub async fn confirm_delete(State(app): State<AppState>, screen: Screen<Tokens>, Path(id): Path<String>) -> Response {
    let shown = async {
        let id = crate::error::path_id(&id)?;
        let token = auth::find_token(&app.db, screen.principal.user_id, id).await?;
        let what = format!("access token “{}”", token.name);
        let title = format!("Delete {what}?");
        Ok::<_, crate::error::ApiError>(html(super::resources::ConfirmPage {
            frame: Frame {
                title: &title,
                section: "Settings",
                username: &screen.username,
                csrf: &screen.session.csrf_token,
            },
            what,
            consequence: "Scripts and tools that call the API with it are refused from then on.".into(),
            action: format!("/console/settings/tokens/{}/delete", id.get()),
            back: "/console/settings/tokens".into(),
        }))
    }
    .await;
    shown.unwrap_or_else(|e| Refused::from(e).into_response())
}

/// Deletes one of the user's own tokens (the API's `DELETE /personal/access_tokens/{id}`).
pub async fn delete(State(app): State<AppState>, Path(id): Path<String>, sent: Submitted<Tokens>) -> Response {
    let done = async {
        let id = crate::error::path_id(&id)?;
        auth::delete_token(&app.db, sent.screen.principal.user_id, id).await?;
        Ok::<_, crate::error::ApiError>(())
    }
    .await;
    match done {
        Ok(()) => Redirect::to("/console/settings/tokens").into_response(),
        Err(e) => Refused::from(e).into_response(),
    }
}
