//! A developer's applications: a new one on a published plan, its credentials (the user key,
//! regenerated; or the app id and its keys, one added), and its usage against each limit of
//! its plan this period — the live counters authrep enforces, not a report.

use super::pages::{own_application, respond, service_of, Frame};
use super::session::{Developer, Posted};
use crate::console::render::html;
use crate::console::resources::{errors_of, Errors, Input};
use crate::error::{path_id, ApiError};
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use tollgate_domain::form::Form;
use tollgate_domain::ids::ApplicationId;
use tollgate_store::catalog::{applications, crud as store};
use tollgate_store::portal::published_plans;

#[derive(Template)]
#[template(path = "portal/application.html")]
struct AppPage<'a> {
    frame: Frame<'a>,
    id: i64,
    product: String,
    plan: String,
    state: String,
    description: String,
    user_key: Option<String>,
    app_id: Option<String>,
    keys: Vec<String>,
    /// Metric, period, used, limit, percent used (0–100, for the bar).
    limits: Vec<(String, &'static str, i64, i64, i64)>,
    notice: String,
}

async fn app_page(app: &AppState, d: &Developer, id: ApplicationId, notice: &str) -> Result<Response, ApiError> {
    let record = own_application(app, d, id).await?;
    let sid = service_of(&record);
    let names = |table, column, id: Option<i64>| async move {
        let ids: Vec<i64> = id.into_iter().collect();
        let found = tollgate_store::catalog::names::of(&app.db, (table, column), &ids).await?;
        Ok::<_, ApiError>(id.and_then(|i| found.get(&i).cloned()).unwrap_or_default())
    };
    let product = names("services", "name", record.int("service_id")).await?;
    // The credentials the product's gateway asks for: a user key, or an app id with keys.
    let by_user_key = tollgate_store::catalog::services::find(&app.db, sid)
        .await?
        .backend_version
        == tollgate_domain::catalog::BackendVersion::UserKey;
    let plan = names("application_plans", "name", record.int("plan_id")).await?;
    let keys = applications::account_keys(&app.db, d.account, id).await?;
    let limits = tollgate_store::analytics::limit_uses_of(&app.db, &app.counters, sid, Some(&[id]), chrono::Utc::now())
        .await?
        .into_iter()
        .map(|u| {
            let percent = (u.used_per_10k() / 100).clamp(0, 100);
            (u.metric, u.period.as_str(), u.current, u.max, percent)
        })
        .collect();
    let name = record.text("name").unwrap_or_default().to_string();
    let notice = match notice {
        "created" => "The application is created.".to_string(),
        "regenerated" => "A new user key: the old one no longer works.".to_string(),
        "key" => "The key is added.".to_string(),
        _ => String::new(),
    };
    Ok(html(AppPage {
        frame: Frame::of(d, &name),
        id: id.get(),
        product,
        plan,
        state: record.text("state").unwrap_or_default().to_string(),
        description: record.text("description").unwrap_or_default().to_string(),
        user_key: record
            .text("user_key")
            .filter(|k| by_user_key && !k.is_empty())
            .map(str::to_string),
        app_id: record
            .text("application_id")
            .filter(|k| !by_user_key && !k.is_empty())
            .map(str::to_string),
        keys,
        limits,
        notice,
    }))
}

pub async fn show(State(app): State<AppState>, d: Developer, Path(id): Path<String>, uri: axum::http::Uri) -> Response {
    let notice = uri
        .query()
        .and_then(|q| q.strip_prefix("notice="))
        .unwrap_or("")
        .to_string();
    let done = async { app_page(&app, &d, path_id(&id)?, &notice).await };
    respond(done.await)
}

#[derive(Template)]
#[template(path = "portal/new_application.html")]
struct NewPage<'a> {
    frame: Frame<'a>,
    inputs: Vec<Input>,
    refusal: String,
}

async fn new_page(app: &AppState, d: &Developer, sent: Option<&Form>, errors: Errors) -> Result<Response, ApiError> {
    let plans = published_plans(&app.db)
        .await?
        .into_iter()
        .map(|p| {
            let wait = if p.approval_required { " (needs approval)" } else { "" };
            (p.plan_id.to_string(), format!("{} › {}{wait}", p.service, p.plan))
        })
        .collect::<Vec<_>>();
    let value = |k: &str| sent.and_then(|f| f.get(k)).unwrap_or("").to_string();
    let error = |k: &str| errors.get(k).map(|e| e.join("; ")).unwrap_or_default();
    let inputs = vec![
        Input {
            name: "plan_id",
            label: "Plan".into(),
            control: "select",
            value: value("plan_id"),
            options: plans,
            errors: error("plan_id"),
            required: true,
        },
        Input {
            name: "name",
            label: "Name".into(),
            control: "text",
            value: value("name"),
            options: Vec::new(),
            errors: error("name"),
            required: true,
        },
        Input {
            name: "description",
            label: "Description".into(),
            control: "text",
            value: value("description"),
            options: Vec::new(),
            errors: error("description"),
            required: false,
        },
    ];
    let refusal = crate::console::resources::sentences(
        errors
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "plan_id" | "name" | "description")),
    );
    let status = crate::console::resources::status_for(&errors);
    Ok((
        status,
        html(NewPage {
            frame: Frame::of(d, "New application"),
            inputs,
            refusal,
        }),
    )
        .into_response())
}

pub async fn new_form(State(app): State<AppState>, d: Developer) -> Response {
    respond(new_page(&app, &d, None, Errors::new()).await)
}

/// A new application on a published plan (any other plan is refused as if it did not exist).
pub async fn create(State(app): State<AppState>, posted: Posted) -> Response {
    let (d, f) = (&posted.developer, &posted.form);
    let done = async {
        let plan: Option<i64> = f.parse("plan_id")?;
        let plan = plan.ok_or_else(|| ApiError::invalid("plan_id", "choose a plan"))?;
        if !published_plans(&app.db).await?.iter().any(|p| p.plan_id.get() == plan) {
            return Err(ApiError::invalid("plan_id", "is not a plan you can choose"));
        }
        let form = Form(
            f.0.iter()
                .filter(|(k, _)| matches!(k.as_str(), "plan_id" | "name" | "description"))
                .cloned()
                .collect(),
        );
        let values = applications::APPLICATION.values_for_create(&form)?;
        Ok::<_, ApiError>(store::create(&app.db, &applications::APPLICATIONS, &[d.account.get()], values).await?)
    };
    match done.await {
        Ok(created) => Redirect::to(&format!("/portal/applications/{}?notice=created", created.id())).into_response(),
        Err(ApiError::Invalid(invalid)) => respond(new_page(&app, d, Some(f), errors_of(&invalid)).await),
        Err(e) => respond(Err(e)),
    }
}

/// A new user key (the old one stops working at once), through the admin API's update.
pub async fn regenerate_user_key(State(app): State<AppState>, Path(id): Path<String>, posted: Posted) -> Response {
    let d = &posted.developer;
    let done = async {
        let id: ApplicationId = path_id(&id)?;
        own_application(&app, d, id).await?;
        let key = tollgate_store::auth::generate_token();
        let values = applications::APPLICATION
            .values_for_update(&Form::of(&[("user_key", &key)]))
            .map_err(tollgate_store::StoreError::Invalid)?;
        store::update(
            &app.db,
            &applications::APPLICATIONS,
            &[d.account.get()],
            id.get(),
            values,
        )
        .await?;
        Ok::<_, ApiError>(id)
    };
    match done.await {
        Ok(id) => Redirect::to(&format!("/portal/applications/{id}?notice=regenerated")).into_response(),
        Err(e) => respond(Err(e)),
    }
}

/// A new application key (app id mode), generated.
pub async fn add_key(State(app): State<AppState>, Path(id): Path<String>, posted: Posted) -> Response {
    let d = &posted.developer;
    let done = async {
        let id: ApplicationId = path_id(&id)?;
        let key = tollgate_store::auth::generate_token()[..32].to_string();
        applications::create_key(&app.db, d.account, id, &key).await?;
        Ok::<_, ApiError>(id)
    };
    match done.await {
        Ok(id) => Redirect::to(&format!("/portal/applications/{id}?notice=key")).into_response(),
        Err(e) => respond(Err(e)),
    }
}
