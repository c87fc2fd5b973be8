//! Bulk operations on the Audience lists (3scale Ch. 10): tick accounts or applications,
//! then approve, reject, suspend or resume them, move applications to another plan, or send
//! their developers a message — all of the selection or, if one is refused, none of it (the
//! store's bulk functions run in one transaction, as the API's `applications/bulk`).
//!
//! The answer is the same list again, with what was done (or refused) above it.

use super::guard::{guard, Clearance, Cleared};
use super::resources::{accounts_mount, list_page, refusal_text, Notice, ACCOUNT_ACTIONS, ALL_APPLICATIONS};
use super::session::Refused;
use crate::error::ApiError;
use crate::routes::ServiceScope;
use crate::state::AppState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use std::collections::HashMap;
use tollgate_domain::catalog::NewMessage;
use tollgate_domain::form::FromForm;
use tollgate_domain::ids::{AccountId, ApplicationId, ServiceId};
use tollgate_store::catalog::applications::BulkAction;
use tollgate_store::catalog::{accounts, applications};

pub fn router(app: AppState) -> Router<AppState> {
    Router::new()
        .route("/console/accounts/bulk", post(on_accounts))
        .route("/console/applications/bulk", post(on_applications))
        .layer(axum::middleware::from_fn_with_state(
            Clearance {
                app,
                section: tollgate_domain::access::Section::Partners,
                scope: ServiceScope::None,
            },
            guard,
        ))
}

fn done_text(action: &str, n: usize, noun: &str) -> String {
    let noun = if n == 1 { noun.to_string() } else { format!("{noun}s") };
    match action {
        "message" => format!("Sent the message to {n} {noun}."),
        "change_plan" => format!("Moved {n} {noun} to the new plan."),
        other => {
            let past = match other {
                "approve" => "Approved",
                "reject" => "Rejected",
                "suspend" => "Suspended",
                _ => "Resumed",
            };
            format!("{past} {n} {noun}.")
        }
    }
}

/// The ticked ids; none is the user's mistake, named.
fn ids<T: std::str::FromStr>(c: &Cleared) -> Result<Vec<T>, ApiError> {
    let raw = c.form.all("ids");
    if raw.is_empty() {
        return Err(ApiError::invalid("ids", "select at least one"));
    }
    raw.iter()
        .map(|r| {
            r.parse()
                .map_err(|_| ApiError::invalid("ids", format!("`{r}` is not an id")))
        })
        .collect()
}

fn action_of(c: &Cleared) -> &str {
    c.form.get("action").unwrap_or("")
}

/// The list again, with the outcome above it.
async fn answer(
    app: &AppState,
    c: &Cleared,
    m: &'static crate::crud::Mount,
    done: Result<String, ApiError>,
) -> Response {
    let notice = match done {
        Ok(text) => Notice::Done(text),
        Err(ApiError::Invalid(invalid)) => Notice::Refused(format!("Nothing was changed. {}", refusal_text(&invalid))),
        Err(e) => return Refused::from(e).into_response(),
    };
    list_page(m, app, c, &HashMap::new(), Some(notice))
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn on_accounts(State(app): State<AppState>, c: Cleared) -> Response {
    let done = async {
        let ids: Vec<AccountId> = ids(&c)?;
        let action = action_of(&c);
        match action {
            "message" => {
                accounts::send_messages(&app.db, &ids, &NewMessage::from_form(&c.form)?).await?;
            }
            a if ACCOUNT_ACTIONS.iter().any(|(v, _)| *v == a) => {
                accounts::bulk(&app.db, &ids, a).await?;
            }
            _ => return Err(ApiError::invalid("action", "is not an action on accounts")),
        }
        Ok(done_text(action, ids.len(), "account"))
    }
    .await;
    answer(&app, &c, accounts_mount(), done).await
}

async fn on_applications(State(app): State<AppState>, c: Cleared) -> Response {
    let principal = c.staff.principal.clone();
    let may_see = move |s: ServiceId| principal.may_see_service(s);
    let done = async {
        let ids: Vec<ApplicationId> = ids(&c)?;
        let action = action_of(&c);
        if action == "message" {
            let to = applications::accounts_of(&app.db, &ids, &may_see).await?;
            accounts::send_messages(&app.db, &to, &NewMessage::from_form(&c.form)?).await?;
            return Ok(done_text(action, to.len(), "developer account"));
        }
        let bulk = BulkAction::parse(action, &c.form)?
            .ok_or_else(|| ApiError::invalid("action", "is not an action on applications"))?;
        applications::bulk(&app.db, &ids, bulk, &may_see).await?;
        Ok(done_text(action, ids.len(), "application"))
    }
    .await;
    answer(&app, &c, &ALL_APPLICATIONS, done).await
}
