//! The demo data, in one place: a service with a plan (optionally a limit on `hits`), a
//! developer account with an application, and the service's proxy config deployed and
//! promoted. `tollgate seed demo` (the run command and the benchmarks), and the test harness
//! all make it here, through the same resources and use cases the API calls — the same
//! validation, the same behaviours. Seeding a service whose system name exists already changes
//! nothing and answers what is there.

use serde::Serialize;
use sqlx::Row;
use tollgate_domain::catalog::Environment;
use tollgate_domain::form::Form;
use tollgate_domain::ids::{AccountId, ApplicationId, MetricId, PlanId, ServiceId};
use tollgate_domain::periods::Period;
use tollgate_store::catalog::accounts::{self, Signup};
use tollgate_store::catalog::{applications, crud, plans, proxy, services};
use tollgate_store::{Db, Result, StoreError};

/// What the demo is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Demo {
    pub service: String,
    /// Derived from the name when `None`.
    pub system_name: Option<String>,
    pub plan: String,
    /// Published (shown to developers), or hidden.
    pub publish: bool,
    /// A limit on the plan's `hits`.
    pub limit: Option<(Period, i64)>,
    pub org_name: String,
    pub username: String,
    pub email: Option<String>,
    pub application: String,
    /// Generated when `None`.
    pub user_key: Option<String>,
    /// The product's `api_backend` (where its gateways route it), e.g. the demo upstream.
    pub api_backend: Option<String>,
}

impl Default for Demo {
    /// The run command's demo: 10 calls a minute on a published plan.
    fn default() -> Self {
        Demo {
            service: "Demo API".into(),
            system_name: Some("demo".into()),
            plan: "Basic".into(),
            publish: true,
            limit: Some((Period::Minute, 10)),
            org_name: "Demo Developer".into(),
            username: "demo".into(),
            email: Some("demo@example.com".into()),
            application: "Demo App".into(),
            user_key: None,
            api_backend: None,
        }
    }
}

impl Demo {
    /// The test harness's: an unlimited, hidden plan and an application with `user_key`.
    pub fn test(user_key: &str) -> Self {
        Demo {
            service: "Echo API".into(),
            system_name: None,
            plan: "Basic".into(),
            publish: false,
            limit: None,
            org_name: "Acme".into(),
            username: "alice".into(),
            email: Some("alice@acme.test".into()),
            application: "App".into(),
            user_key: Some(user_key.into()),
            api_backend: None,
        }
    }
}

/// What was made (or found).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Seeded {
    pub service_id: ServiceId,
    pub plan_id: PlanId,
    pub hits_id: MetricId,
    pub account_id: AccountId,
    pub application_id: ApplicationId,
    pub user_key: String,
    pub service_token: String,
}

fn form(pairs: &[(&str, &str)]) -> Form {
    Form::of(pairs)
}

/// Makes the demo, unless its service exists already.
pub async fn demo(db: &Db, d: &Demo) -> Result<Seeded> {
    let system_name = d
        .system_name
        .clone()
        .unwrap_or_else(|| tollgate_domain::catalog::system_name_from(&d.service));
    if let Some(found) = existing(db, &system_name).await? {
        // A demo seeded before gateways routed products has no api_backend: given one, it
        // gets it (once), deployed and promoted.
        if let Some(url) = &d.api_backend {
            if proxy::settings(db, found.service_id).await?.api_backend.is_none() {
                let deployed = set_api_backend(db, found.service_id, url).await?;
                proxy::promote(
                    db,
                    found.service_id,
                    Environment::Sandbox,
                    deployed.version,
                    Environment::Production,
                )
                .await?;
            }
        }
        return Ok(found);
    }
    let values = services::SERVICE.values_for_create(&form(&[("name", &d.service), ("system_name", &system_name)]))?;
    let sid = ServiceId::new(crud::create(db, &services::SERVICES, &[], values).await?.id());
    let state_event = if d.publish { "publish" } else { "hide" };
    let values =
        plans::APPLICATION_PLAN.values_for_create(&form(&[("name", &d.plan), ("state_event", state_event)]))?;
    let plan = PlanId::new(
        crud::create(db, &plans::APPLICATION_PLANS, &[sid.get()], values)
            .await?
            .id(),
    );
    let hits = hits(db, sid).await?;
    if let Some((period, value)) = d.limit {
        let values =
            plans::LIMIT.values_for_create(&form(&[("period", period.as_str()), ("value", &value.to_string())]))?;
        crud::create(db, &plans::LIMITS, &[plan.get(), hits.get()], values).await?;
    }
    let mut signup = vec![("org_name", d.org_name.as_str()), ("username", d.username.as_str())];
    if let Some(email) = &d.email {
        signup.push(("email", email));
    }
    let account = accounts::signup(db, Signup::from_form(&form(&signup))?).await?;
    let account = AccountId::new(account.id());
    tollgate_store::credits::welcome(db, account).await?;
    let plan_id = plan.to_string();
    let mut app = vec![("name", d.application.as_str()), ("plan_id", plan_id.as_str())];
    if let Some(key) = &d.user_key {
        app.push(("user_key", key));
    }
    let values = applications::APPLICATION.values_for_create(&form(&app))?;
    let application = crud::create(db, &applications::APPLICATIONS, &[account.get()], values).await?;
    let deployed = match &d.api_backend {
        Some(url) => set_api_backend(db, sid, url).await?,
        None => proxy::deploy(db, sid).await?,
    };
    proxy::promote(db, sid, Environment::Sandbox, deployed.version, Environment::Production).await?;
    Ok(Seeded {
        service_id: sid,
        plan_id: plan,
        hits_id: hits,
        account_id: account,
        application_id: ApplicationId::new(application.id()),
        user_key: application.text("user_key").unwrap_or_default().to_string(),
        service_token: services::find(db, sid).await?.service_token,
    })
}

/// Sets the service's `api_backend`; the update deploys it (as 3scale's proxy update does):
/// the sandbox config made.
async fn set_api_backend(db: &Db, service: ServiceId, url: &str) -> Result<proxy::ProxyConfig> {
    proxy::update_settings(db, service, |p| p.update_from(&form(&[("api_backend", url)]))).await?;
    proxy::find_config(db, service, Environment::Sandbox, None).await
}

async fn hits(db: &Db, service: ServiceId) -> Result<MetricId> {
    let id: i64 = sqlx::query_scalar("SELECT id FROM metrics WHERE service_id = $1 AND system_name = 'hits'")
        .bind(service.get())
        .fetch_one(&db.pool)
        .await?;
    Ok(MetricId::new(id))
}

/// The demo already made for this system name: its service and first application.
async fn existing(db: &Db, system_name: &str) -> Result<Option<Seeded>> {
    let row = sqlx::query(
        "SELECT s.id AS service_id, s.service_token, a.id AS application_id, a.account_id, a.plan_id, a.user_key
         FROM services s JOIN applications a ON a.service_id = s.id
         WHERE s.system_name = $1 ORDER BY a.id LIMIT 1",
    )
    .bind(system_name)
    .fetch_optional(&db.pool)
    .await?;
    let Some(r) = row else { return Ok(None) };
    let service = ServiceId::new(r.try_get("service_id")?);
    Ok(Some(Seeded {
        service_id: service,
        plan_id: PlanId::new(r.try_get("plan_id")?),
        hits_id: hits(db, service).await?,
        account_id: AccountId::new(r.try_get("account_id")?),
        application_id: ApplicationId::new(r.try_get("application_id")?),
        user_key: r
            .try_get::<Option<String>, _>("user_key")?
            .ok_or_else(|| StoreError::Internal("the demo application has no user key".into()))?,
        service_token: r.try_get("service_token")?,
    }))
}

/// Makes sure the provider has an active admin `username` who signs in to the console with
/// `password` (created once; an existing user keeps their password). Made through the same
/// resource as `POST /admin/api/users.json`.
pub async fn console_admin(db: &Db, username: &str, password: &str) -> Result<()> {
    let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM provider_users WHERE username = $1")
        .bind(username)
        .fetch_optional(&db.pool)
        .await?;
    if exists.is_some() {
        return Ok(());
    }
    let values = tollgate_store::catalog::provider::PROVIDER_USER.values_for_create(&form(&[
        ("username", username),
        ("password", password),
        ("role", "admin"),
        ("state", "active"),
    ]))?;
    crud::create(db, &tollgate_store::catalog::provider::PROVIDER_USERS, &[], values).await?;
    Ok(())
}

/// Gives the demo account's developer `username` a password to sign in to the developer
/// portal with, unless they have one already.
pub async fn portal_developer(db: &Db, account: AccountId, username: &str, password: &str) -> Result<()> {
    let hash = tollgate_store::passwords::hash(password).map_err(|e| StoreError::Internal(e.to_string()))?;
    sqlx::query("UPDATE users SET password = $1 WHERE account_id = $2 AND username = $3 AND password IS NULL")
        .bind(hash)
        .bind(account.get())
        .bind(username)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// `PERIOD=N` (`minute=10`), as `tollgate seed demo --limit` takes it.
pub fn parse_limit(s: &str) -> std::result::Result<(Period, i64), String> {
    let (period, value) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: give PERIOD=N, e.g. minute=10"))?;
    let period = Period::parse(period).ok_or_else(|| format!("`{period}`: one of {}", Period::WORDS.join(", ")))?;
    let value = value.parse().map_err(|_| format!("`{value}` is not a number"))?;
    Ok((period, value))
}
