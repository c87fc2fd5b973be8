//! Settings › Personal › Personal Details (3scale Ch. 4): the signed-in user's user name and
//! e-mail, and a new password. Details go through the same update as
//! `PUT /admin/api/users/{id}.json` (so the same checks: a unique user name, a valid e-mail);
//! a new password needs the current one — checked with the sign-in throttle, so a stolen
//! session cannot guess it quickly — and ends the user's other sessions.

use super::pages::Frame;
use super::render::html;
use super::resources::{errors_of, Errors, Input};
use super::session::{Personal, Refused, Screen, Submitted};
use crate::error::ApiError;
use crate::state::AppState;
use askama::Template;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use tollgate_domain::form::Form;
use tollgate_domain::sign_in::Throttle;
use tollgate_store::catalog::crud as store;
use tollgate_store::catalog::provider::PROVIDER_USERS;
use tollgate_store::console::Refusal;

#[derive(Template)]
#[template(path = "console/personal.html")]
struct PersonalPage<'a> {
    frame: Frame<'a>,
    details: Vec<Input>,
    password: Vec<Input>,
    /// What was just saved.
    saved: Option<&'static str>,
}

fn input(name: &'static str, label: &str, control: &'static str, value: String, errors: &Errors) -> Input {
    Input {
        name,
        label: label.to_string(),
        control,
        value,
        options: Vec::new(),
        errors: errors.get(name).map(|e| e.join("; ")).unwrap_or_default(),
        required: true,
    }
}

async fn render(
    app: &AppState,
    screen: &Screen<Personal>,
    sent: Option<&Form>,
    errors: Errors,
    saved: Option<&'static str>,
) -> Result<Response, ApiError> {
    let me = store::find(&app.db, &PROVIDER_USERS, &[], screen.session.user_id.get()).await?;
    let value = |name: &str| {
        sent.and_then(|f| f.get(name))
            .or_else(|| me.text(name))
            .unwrap_or_default()
            .to_string()
    };
    let details = vec![
        input("username", "User name", "text", value("username"), &errors),
        input("email", "E-mail", "email", value("email"), &errors),
    ];
    // Passwords are never put back into a page.
    let password = vec![
        input(
            "current_password",
            "Current password",
            "password",
            String::new(),
            &errors,
        ),
        input("password", "New password", "password", String::new(), &errors),
        input(
            "password_confirmation",
            "New password again",
            "password",
            String::new(),
            &errors,
        ),
    ];
    let status = match errors.is_empty() {
        true => StatusCode::OK,
        false => StatusCode::UNPROCESSABLE_ENTITY,
    };
    Ok((
        status,
        html(PersonalPage {
            frame: Frame {
                title: "Personal details",
                section: "Settings",
                username: &screen.username,
                csrf: &screen.session.csrf_token,
            },
            details,
            password,
            saved,
        }),
    )
        .into_response())
}

pub async fn show(State(app): State<AppState>, screen: Screen<Personal>, req: Request) -> Response {
    let saved = match req.uri().query() {
        Some("saved=details") => Some("Your details are saved."),
        Some("saved=password") => Some("Your password is changed; your other sessions are signed out."),
        _ => None,
    };
    render(&app, &screen, None, Errors::new(), saved)
        .await
        .unwrap_or_else(|e| Refused::from(e).into_response())
}

/// The page again with what was refused next to its field, or the error page.
async fn refused(app: &AppState, sent: &Submitted<Personal>, e: ApiError) -> Response {
    match e {
        ApiError::Invalid(invalid) => render(app, &sent.screen, Some(&sent.form), errors_of(&invalid), None)
            .await
            .unwrap_or_else(|e| Refused::from(e).into_response()),
        e => Refused::from(e).into_response(),
    }
}

pub async fn update_details(State(app): State<AppState>, sent: Submitted<Personal>) -> Response {
    let done = async {
        let only = |k: &str| k == "username" || k == "email";
        let form = Form(sent.form.0.iter().filter(|(k, _)| only(k)).cloned().collect());
        let values = PROVIDER_USERS
            .resource
            .values_for_update(&form)
            .map_err(tollgate_store::StoreError::Invalid)?;
        store::update(&app.db, &PROVIDER_USERS, &[], sent.screen.session.user_id.get(), values).await?;
        Ok::<_, ApiError>(())
    };
    match done.await {
        Ok(()) => Redirect::to("/console/settings/personal?saved=details").into_response(),
        Err(e) => refused(&app, &sent, e).await,
    }
}

pub async fn change_password(State(app): State<AppState>, sent: Submitted<Personal>) -> Response {
    let done = async {
        let field = |k: &str| sent.form.get(k).unwrap_or("");
        let user = sent.screen.session.user_id;
        if field("password") != field("password_confirmation") {
            return Err(ApiError::invalid(
                "password_confirmation",
                "doesn't match the new password",
            ));
        }
        let now = chrono::Utc::now();
        let checked = tollgate_store::console::verify_password(
            &app.db,
            &Throttle::default(),
            user,
            field("current_password"),
            &sent.address,
            now,
        )
        .await?;
        match checked {
            Ok(()) => {}
            Err(Refusal::Invalid { retry_at: None }) => {
                return Err(ApiError::invalid("current_password", "is not your password"))
            }
            Err(Refusal::Invalid { retry_at: Some(at) } | Refusal::Throttled { retry_at: at }) => {
                let secs = (at - now).num_seconds().max(1);
                return Err(ApiError::invalid(
                    "current_password",
                    format!("was wrong too many times: try again in {secs} seconds"),
                ));
            }
            Err(Refusal::NotActive) => return Err(ApiError::AccessDenied),
        }
        let values = PROVIDER_USERS
            .resource
            .values_for_update(&Form::of(&[("password", field("password"))]))
            .map_err(tollgate_store::StoreError::Invalid)?;
        store::update(&app.db, &PROVIDER_USERS, &[], user.get(), values).await?;
        tollgate_store::console::end_other_sessions(&app.db, user, &sent.screen.session.csrf_token).await?;
        Ok::<_, ApiError>(())
    };
    match done.await {
        Ok(()) => Redirect::to("/console/settings/personal?saved=password").into_response(),
        Err(e) => refused(&app, &sent, e).await,
    }
}
