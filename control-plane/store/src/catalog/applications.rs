//! Applications: an account's subscription to a service's plan, with its credentials —
//! a `user_key` (backend_version 1) or an `application_id` with keys (backend_version 2).

use super::crud::{event_in, Entity, Parent};
use super::plans::{self, APPLICATION_PLAN};
use super::resource::{
    derive, event, field, fixed, input, owner, text, Behaviour, EventInput, Kind, OnCreate, Record, Resource, Val,
    Values, Write,
};
use super::subscriptions::{change_plan, terms_from_plan};
use crate::auth::generate_token;
use crate::contracts::ContractType;
use crate::db::{Db, Row};
use crate::error::{is_unique_violation, Result, StoreError};
use crate::time::now;
use async_trait::async_trait;
use sqlx::{AnyConnection, Row as _};
use tollgate_domain::catalog::{Application, ApplicationState};
use tollgate_domain::form::Page;
use tollgate_domain::ids::{AccountId, ApplicationId, PlanId, ServiceId};

pub static APPLICATION: Resource = Resource {
    name: "application",
    collection: "applications",
    table: "applications",
    scope: &["account_id"],
    fields: &[
        field("name", Kind::Text, OnCreate::Required),
        field("description", Kind::Text, OnCreate::Default("")),
        fixed("plan_id", Kind::Id, OnCreate::Required),
        fixed("service_id", Kind::Id, OnCreate::Derived),
        fixed("state", Kind::OneOf(ApplicationState::WORDS), OnCreate::Derived),
        field("user_key", Kind::Text, OnCreate::Derived),
        fixed("application_id", Kind::Text, OnCreate::Derived),
        // A key given with the new application becomes its first key.
        input("application_key", Kind::Text),
    ],
    unique_field: "user_key",
    transitions: &[
        event("accept", &["pending"], "live"),
        event("suspend", &["live"], "suspended"),
        event("resume", &["suspended"], "live"),
    ],
};

/// On create: the plan decides the service and whether the application waits for approval;
/// credentials are generated unless given. Plans change with `change_plan`, `customize_plan`
/// and `decustomize_plan`.
struct Applications;

#[async_trait]
impl Behaviour for Applications {
    async fn before_write(&self, w: Write<'_>) -> Result<()> {
        if let Some(key) = text(w.values, "user_key") {
            if key.trim().is_empty() || key.len() > 256 {
                return Err(StoreError::invalid("user_key", "must be 1 to 256 characters"));
            }
        }
        if w.id.is_some() {
            return Ok(());
        }
        terms_from_plan(w.conn, "application_plans", w.values).await?;
        derive(w.values, "user_key", generate_token);
        if text(w.values, "application_id").is_some_and(|id| id.is_empty()) {
            w.values.retain(|(n, _)| *n != "application_id");
        }
        derive(w.values, "application_id", || generate_token()[..8].to_string());
        Ok(())
    }

    async fn after_create(&self, conn: &mut AnyConnection, created: &Record, values: &Values) -> Result<()> {
        if let Some(key) = text(values, "application_key").filter(|k| !k.is_empty()) {
            add_key(conn, ApplicationId::new(created.id()), key).await?;
        }
        Ok(())
    }

    fn events(&self) -> &'static [&'static str] {
        &["change_plan", "customize_plan", "decustomize_plan"]
    }

    async fn event(&self, conn: &mut AnyConnection, scope: &[i64], current: &Record, e: &EventInput) -> Result<()> {
        let id = ApplicationId::new(current.id());
        let plan = PlanId::new(current.int("plan_id").unwrap_or_default());
        match e.name.as_str() {
            "change_plan" => change_plan(conn, ContractType::Application, owner(scope)?, id.get(), e.plan()?).await,
            "customize_plan" => customize_plan(conn, id, plan).await,
            _ => decustomize_plan(conn, id, plan).await,
        }
    }
}

pub static APPLICATIONS: Entity = Entity {
    resource: &APPLICATION,
    parent: Parent::Account,
    behaviour: &Applications,
};

pub async fn add_key(conn: &mut AnyConnection, application: ApplicationId, value: &str) -> Result<()> {
    if value.is_empty() || value.len() > 256 {
        return Err(StoreError::invalid("key", "must be 1 to 256 characters"));
    }
    let inserted = sqlx::query("INSERT INTO application_keys (application_id, value, created_at) VALUES ($1, $2, $3)")
        .bind(application.get())
        .bind(value)
        .bind(now())
        .execute(&mut *conn)
        .await;
    match inserted {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => Err(StoreError::invalid("key", "has already been taken")),
        Err(e) => Err(e.into()),
    }
}

pub async fn keys(conn: &mut AnyConnection, application: ApplicationId) -> Result<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT value FROM application_keys WHERE application_id = $1 ORDER BY id")
            .bind(application.get())
            .fetch_all(&mut *conn)
            .await?,
    )
}

/// The application of an account, or not found.
async fn of_account(conn: &mut AnyConnection, account: AccountId, application: ApplicationId) -> Result<()> {
    let found: Option<i64> = sqlx::query_scalar("SELECT id FROM applications WHERE id = $1 AND account_id = $2")
        .bind(application.get())
        .bind(account.get())
        .fetch_optional(&mut *conn)
        .await?;
    found.map(|_| ()).ok_or(StoreError::NotFound)
}

/// An account's application's keys.
pub async fn account_keys(db: &Db, account: AccountId, application: ApplicationId) -> Result<Vec<String>> {
    let mut conn = db.pool.acquire().await?;
    of_account(&mut conn, account, application).await?;
    keys(&mut conn, application).await
}

/// Adds a key to an account's application; the application as it is then.
pub async fn create_key(db: &Db, account: AccountId, application: ApplicationId, key: &str) -> Result<Record> {
    let mut tx = db.begin_write().await?;
    of_account(&mut tx, account, application).await?;
    add_key(&mut tx, application, key).await?;
    let item = APPLICATION.find(&mut tx, &[account.get()], application.get()).await?;
    super::webhook_events::emit(&mut tx, "application", "key_created", &item).await?;
    tx.commit().await?;
    Ok(item)
}

pub async fn delete_key(db: &Db, account: AccountId, application: ApplicationId, key: &str) -> Result<()> {
    let mut tx = db.begin_write().await?;
    of_account(&mut tx, account, application).await?;
    let done = sqlx::query("DELETE FROM application_keys WHERE application_id = $1 AND value = $2")
        .bind(application.get())
        .bind(key)
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    let item = APPLICATION.find(&mut tx, &[account.get()], application.get()).await?;
    super::webhook_events::emit(&mut tx, "application", "key_deleted", &item).await?;
    tx.commit().await?;
    Ok(())
}

const COLUMNS: &str = "id, account_id, service_id, plan_id, state, user_key, application_id";

fn from_row(r: &Row) -> Result<Application> {
    let state: String = r.try_get("state")?;
    Ok(Application {
        id: ApplicationId::new(r.try_get("id")?),
        account_id: AccountId::new(r.try_get("account_id")?),
        service_id: ServiceId::new(r.try_get("service_id")?),
        plan_id: PlanId::new(r.try_get("plan_id")?),
        state: ApplicationState::parse(&state)
            .ok_or_else(|| StoreError::Internal(format!("application state `{state}`")))?,
        user_key: r.try_get("user_key")?,
        application_id: r.try_get("application_id")?,
    })
}

/// An application by credential (the service-management API's lookup).
pub async fn find_by_credential(
    db: &Db,
    service: ServiceId,
    credential: &tollgate_domain::catalog::Credential,
) -> Result<Option<Application>> {
    use tollgate_domain::catalog::Credential;
    let (column, value) = match credential {
        Credential::UserKey(k) => ("user_key", k),
        Credential::AppId(id) => ("application_id", id),
    };
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM applications WHERE service_id = $1 AND {column} = $2"
    ))
    .bind(service.get())
    .bind(value)
    .fetch_optional(&db.pool)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Gives the application its own copy of its plan; changes to the original no longer apply.
async fn customize_plan(conn: &mut AnyConnection, id: ApplicationId, plan_id: PlanId) -> Result<()> {
    let plan = sqlx::query("SELECT name, system_name, custom FROM application_plans WHERE id = $1")
        .bind(plan_id.get())
        .fetch_one(&mut *conn)
        .await?;
    if plan.try_get::<i64, _>("custom")? != 0 {
        return Ok(());
    }
    let name = format!("{} (custom)", plan.try_get::<String, _>("name")?);
    let system_name = format!("{}_custom_{id}", plan.try_get::<String, _>("system_name")?);
    let custom = plans::copy(conn, plan_id, &name, &system_name, true).await?;
    move_to(conn, id, custom).await
}

/// The plan history, then the move.
async fn move_to(conn: &mut AnyConnection, id: ApplicationId, plan: PlanId) -> Result<()> {
    let today = chrono::Utc::now().date_naive();
    crate::contracts::change_plan(conn, ContractType::Application, id.get(), plan, today).await?;
    sqlx::query("UPDATE applications SET plan_id = $1, updated_at = $2 WHERE id = $3")
        .bind(plan.get())
        .bind(now())
        .bind(id.get())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Puts the application back on the plan its custom plan was copied from; the custom plan goes.
async fn decustomize_plan(conn: &mut AnyConnection, id: ApplicationId, plan_id: PlanId) -> Result<()> {
    let original: Option<Option<i64>> =
        sqlx::query_scalar("SELECT original_id FROM application_plans WHERE id = $1 AND custom = 1")
            .bind(plan_id.get())
            .fetch_optional(&mut *conn)
            .await?;
    let Some(original) = original else { return Ok(()) };
    let original = original.ok_or_else(|| StoreError::invalid("plan_id", "the original plan no longer exists"))?;
    move_to(conn, id, PlanId::new(original)).await?;
    sqlx::query(
        "DELETE FROM application_plans WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM applications WHERE plan_id = $1)",
    )
    .bind(plan_id.get())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The filters of `/admin/api/applications.json` and `find.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub service_id: Option<ServiceId>,
    pub plan_id: Option<PlanId>,
    pub account_id: Option<AccountId>,
    /// The numeric id.
    pub id: Option<ApplicationId>,
    /// The `app_id` credential.
    pub app_id: Option<String>,
    pub user_key: Option<String>,
    pub state: Option<ApplicationState>,
}

impl tollgate_domain::form::FromForm for Filter {
    fn from_form(f: &tollgate_domain::form::Form) -> Result<Self, tollgate_domain::Invalid> {
        let state = match f.get("state").filter(|v| !v.is_empty()) {
            None => None,
            Some(v) => Some(
                ApplicationState::parse(v)
                    .ok_or_else(|| tollgate_domain::Invalid::field("state", "must be pending, live or suspended"))?,
            ),
        };
        Ok(Filter {
            service_id: f.parse("service_id")?,
            plan_id: f.parse("plan_id")?,
            account_id: f.parse("account_id")?,
            id: f.parse("application_id")?,
            app_id: f.get("app_id").filter(|v| !v.is_empty()).map(str::to_string),
            user_key: f.get("user_key").filter(|v| !v.is_empty()).map(str::to_string),
            state,
        })
    }
}

impl Filter {
    fn conditions(&self) -> Vec<(&'static str, Val)> {
        let mut c = Vec::new();
        let mut int = |column, v: Option<i64>| {
            if let Some(v) = v {
                c.push((column, Val::Int(v)));
            }
        };
        int("service_id", self.service_id.map(ServiceId::get));
        int("plan_id", self.plan_id.map(PlanId::get));
        int("account_id", self.account_id.map(AccountId::get));
        int("id", self.id.map(ApplicationId::get));
        if let Some(v) = &self.app_id {
            c.push(("application_id", Val::Text(v.clone())));
        }
        if let Some(v) = &self.user_key {
            c.push(("user_key", Val::Text(v.clone())));
        }
        if let Some(v) = self.state {
            c.push(("state", Val::Text(v.as_str().into())));
        }
        c
    }

    /// Whether it names one application (`find.json` needs an id or a credential).
    pub fn names_one(&self) -> bool {
        self.id.is_some() || self.app_id.is_some() || self.user_key.is_some()
    }
}

/// All applications matching `filter`, limited to `services` when given, one page.
pub async fn select(db: &Db, filter: &Filter, services: Option<&[i64]>, page: Page) -> Result<Vec<Record>> {
    let mut conn = db.pool.acquire().await?;
    let only = services.map(|ids| ("service_id", ids));
    APPLICATION.select(&mut conn, &filter.conditions(), only, page).await
}

/// How many applications [`select`] pages through.
pub async fn count(db: &Db, filter: &Filter, services: Option<&[i64]>) -> Result<i64> {
    let mut conn = db.pool.acquire().await?;
    let only = services.map(|ids| ("service_id", ids));
    APPLICATION.count(&mut conn, &filter.conditions(), only).await
}

/// What `POST /admin/api/applications/bulk/{action}.json` does to each application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkAction {
    Approve,
    Suspend,
    Resume,
    ChangePlan(PlanId),
}

impl BulkAction {
    /// The action named `action` (`approve`, `suspend`, `resume`, `change_plan` with the form's
    /// `plan_id`); `None` for a name that is not one.
    pub fn parse(
        action: &str,
        form: &tollgate_domain::form::Form,
    ) -> Result<Option<BulkAction>, tollgate_domain::Invalid> {
        Ok(Some(match action {
            "approve" => BulkAction::Approve,
            "suspend" => BulkAction::Suspend,
            "resume" => BulkAction::Resume,
            "change_plan" => BulkAction::ChangePlan(
                form.parse("plan_id")?
                    .ok_or_else(|| tollgate_domain::Invalid::field("plan_id", "can't be blank"))?,
            ),
            _ => return Ok(None),
        }))
    }
}

/// Applies `action` to every application of `ids`, all of them or none (one transaction).
/// `may_see` checks each application's service for the caller.
pub async fn bulk(
    db: &Db,
    ids: &[ApplicationId],
    action: BulkAction,
    may_see: impl Fn(ServiceId) -> bool,
) -> Result<Vec<Record>> {
    let event = match action {
        BulkAction::Approve => EventInput {
            name: "accept".into(),
            plan_id: None,
        },
        BulkAction::Suspend | BulkAction::Resume => EventInput {
            name: if action == BulkAction::Suspend {
                "suspend"
            } else {
                "resume"
            }
            .into(),
            plan_id: None,
        },
        BulkAction::ChangePlan(plan) => EventInput {
            name: "change_plan".into(),
            plan_id: Some(plan),
        },
    };
    let mut tx = db.begin_write().await?;
    let mut done = Vec::with_capacity(ids.len());
    for id in ids {
        let current = named_in_ids(&mut tx, *id, &may_see).await?;
        let scope = [current.int("account_id").unwrap_or_default()];
        let item = event_in(&mut tx, &APPLICATIONS, &scope, id.get(), &event)
            .await
            .map_err(|e| match e {
                StoreError::Invalid(invalid) => StoreError::Invalid(invalid.prefixed(&format!("application {id}: "))),
                other => other,
            })?;
        done.push(item);
    }
    tx.commit().await?;
    Ok(done)
}

/// An application a bulk request names: missing is the request's mistake (under `ids`), on a
/// service the caller does not see is refused.
async fn named_in_ids(
    conn: &mut AnyConnection,
    id: ApplicationId,
    may_see: &impl Fn(ServiceId) -> bool,
) -> Result<Record> {
    let current = APPLICATION.find_any(conn, id.get()).await.map_err(|e| match e {
        StoreError::NotFound => StoreError::invalid("ids", format!("application {id} does not exist")),
        other => other,
    })?;
    if !may_see(ServiceId::new(current.int("service_id").unwrap_or_default())) {
        return Err(StoreError::AccessDenied);
    }
    Ok(current)
}

/// The accounts owning the applications of `ids`, each once, in the order named (who a bulk
/// message to applications goes to), checked as [`bulk`] checks them.
pub async fn accounts_of(
    db: &Db,
    ids: &[ApplicationId],
    may_see: impl Fn(ServiceId) -> bool,
) -> Result<Vec<AccountId>> {
    let mut conn = db.pool.acquire().await?;
    let mut out: Vec<AccountId> = Vec::new();
    for &id in ids {
        let account = AccountId::new(
            named_in_ids(&mut conn, id, &may_see)
                .await?
                .int("account_id")
                .unwrap_or_default(),
        );
        if !out.contains(&account) {
            out.push(account);
        }
    }
    Ok(out)
}

/// The plan an application is on, as a record (for `find`-style answers).
pub async fn plan_of(conn: &mut AnyConnection, app: &Record) -> Result<Record> {
    APPLICATION_PLAN
        .find_any(conn, app.int("plan_id").unwrap_or_default())
        .await
}

/// Every application's account (application id → account id): where the counter store tags
/// an application's keys.
pub async fn accounts(db: &Db) -> Result<std::collections::HashMap<i64, i64>> {
    let rows = sqlx::query("SELECT id, account_id FROM applications")
        .fetch_all(&db.pool)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("account_id")?)))
        .collect()
}
