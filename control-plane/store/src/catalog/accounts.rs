//! Developer accounts and their users. `signup` creates an account with its admin user in one
//! transaction (3scale's `signup.json`, which is also how clients create accounts).

use super::crud::{self, create_in, Entity, Parent};
use super::resource::{
    event, field, fixed, owner, set, text, Behaviour, EventInput, Field, Kind, OnCreate, Record, Resource, Transition,
    Val, Values, Write,
};
use crate::db::Db;
use crate::error::{Result, StoreError};
use async_trait::async_trait;
use sqlx::{AnyConnection, Row};
use tollgate_domain::catalog::{AccountLookup, AccountState, BillingType, NewMessage, Role, UserState};
use tollgate_domain::form::Form;
use tollgate_domain::ids::{AccountId, PlanId, PROVIDER_ID};
use tollgate_domain::invoice::Address;

pub static ACCOUNT: Resource = Resource {
    name: "account",
    collection: "accounts",
    table: "accounts",
    scope: &[],
    fields: &[
        field("org_name", Kind::Text, OnCreate::Required),
        fixed("state", Kind::OneOf(AccountState::WORDS), OnCreate::Default("approved")),
        fixed("plan_id", Kind::Id, OnCreate::Derived),
        field("vat_code", Kind::Text, OnCreate::Optional),
        // Percent, e.g. 21 or 23.5 (SPEC §3.4).
        field("vat_rate", Kind::Fee, OnCreate::Default("0")),
        field(
            "billing_type",
            Kind::OneOf(BillingType::WORDS),
            OnCreate::Default("postpaid"),
        ),
        field("monthly_billing_enabled", Kind::Bool, OnCreate::Default("true")),
        field("monthly_charging_enabled", Kind::Bool, OnCreate::Default("true")),
        // Set with its own call (`set_billing_address`), shown with the account.
        fixed("billing_address", Kind::Address, OnCreate::Derived),
    ],
    unique_field: "org_name",
    transitions: &[
        event("approve", &["pending"], "approved"),
        event("reject", &["pending"], "rejected"),
        event("make_pending", &["approved", "rejected"], "pending"),
        event("suspend", &["approved"], "suspended"),
        event("resume", &["suspended"], "approved"),
    ],
};

/// Developer and provider users have the same fields and events.
pub const USER_FIELDS: &[Field] = &[
    field("username", Kind::Text, OnCreate::Required),
    field("email", Kind::Text, OnCreate::Optional),
    field("password", Kind::Password, OnCreate::Optional),
    fixed("role", Kind::OneOf(Role::WORDS), OnCreate::Default("member")),
    fixed("state", Kind::OneOf(UserState::WORDS), OnCreate::Default("pending")),
];

pub static USER: Resource = Resource {
    name: "user",
    collection: "users",
    table: "users",
    scope: &["account_id"],
    fields: USER_FIELDS,
    unique_field: "email",
    transitions: USER_EVENTS,
};

/// Users' states and roles, for developer and provider users alike.
pub const USER_EVENTS: &[Transition] = &[
    event("activate", &["pending"], "active"),
    event("suspend", &["active"], "suspended"),
    event("unsuspend", &["suspended"], "active"),
    Transition {
        event: "admin",
        column: "role",
        from: &[],
        to: "admin",
    },
    Transition {
        event: "member",
        column: "role",
        from: &[],
        to: "member",
    },
];

/// VAT is a percentage; accounts move between account plans (`change_plan`).
struct Accounts;

#[async_trait]
impl Behaviour for Accounts {
    async fn before_write(&self, w: Write<'_>) -> Result<()> {
        if let Some(rate) = text(w.values, "vat_rate") {
            let rate: rust_decimal::Decimal = rate
                .parse()
                .map_err(|_| StoreError::invalid("vat_rate", "is not a number"))?;
            if rate > rust_decimal::Decimal::ONE_HUNDRED {
                return Err(StoreError::invalid("vat_rate", "must be at most 100"));
            }
        }
        Ok(())
    }

    fn events(&self) -> &'static [&'static str] {
        &["change_plan"]
    }

    async fn event(&self, conn: &mut AnyConnection, _scope: &[i64], current: &Record, e: &EventInput) -> Result<()> {
        let plan = e.plan()?;
        let found: Option<i64> = sqlx::query_scalar("SELECT id FROM account_plans WHERE id = $1")
            .bind(plan.get())
            .fetch_optional(&mut *conn)
            .await?;
        found.ok_or_else(|| StoreError::invalid("plan_id", "does not exist"))?;
        let today = chrono::Utc::now().date_naive();
        crate::contracts::change_plan(conn, crate::contracts::ContractType::Account, current.id(), plan, today).await?;
        sqlx::query("UPDATE accounts SET plan_id = $1, updated_at = $2 WHERE id = $3")
            .bind(plan.get())
            .bind(crate::time::now())
            .bind(current.id())
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}

/// An e-mail address, when one is given, looks like one.
pub struct Users;

#[async_trait]
impl Behaviour for Users {
    async fn before_write(&self, w: Write<'_>) -> Result<()> {
        check_email(w.values)
    }
}

fn check_email(values: &Values) -> Result<()> {
    match text(values, "email") {
        Some(e) if !e.contains('@') => Err(StoreError::invalid("email", "should look like an email address")),
        _ => Ok(()),
    }
}

pub static ACCOUNTS: Entity = Entity {
    resource: &ACCOUNT,
    parent: Parent::Root,
    behaviour: &Accounts,
};
pub static USERS: Entity = Entity {
    resource: &USER,
    parent: Parent::Account,
    behaviour: &Users,
};

/// A signup: the account's fields and its admin user's, validated, and the account plan
/// (`None`: the provider's default).
pub struct Signup {
    pub account: Values,
    pub user: Values,
    pub account_plan_id: Option<PlanId>,
    /// The account waits for an admin's approval (a developer's own signup, when the usage
    /// rules ask for it); else it is approved at once.
    pub pending: bool,
}

impl Signup {
    /// Every bad field of both, at once.
    pub fn from_form(form: &Form) -> Result<Signup, tollgate_domain::Invalid> {
        let mut errors = tollgate_domain::Invalid::default();
        let account = errors.collect(ACCOUNT.values_for_create(form));
        let user = errors.collect(USER.values_for_create(form));
        let plan = errors.collect(form.parse("account_plan_id"));
        match (account, user, plan) {
            (Some(account), Some(user), Some(account_plan_id)) if errors.is_empty() => Ok(Signup {
                account,
                user,
                account_plan_id,
                pending: false,
            }),
            _ => Err(errors),
        }
    }
}

/// Creates an approved (or, asked so, pending) account with its active admin user, on the
/// default account plan (or the one given), subscribed to every service's default service
/// plan, with an application on every service's default application plan.
pub async fn signup(db: &Db, s: Signup) -> Result<Record> {
    let Signup {
        mut account,
        mut user,
        account_plan_id,
        pending,
    } = s;
    check_email(&user)?;
    if pending {
        set(&mut account, "state", Val::Text(AccountState::Pending.as_str().into()));
    }
    set(&mut user, "role", Val::Text(Role::Admin.as_str().into()));
    set(&mut user, "state", Val::Text(UserState::Active.as_str().into()));
    let mut tx = db.begin_write().await?;
    let plan_id = match account_plan_id {
        Some(id) => {
            let found: Option<i64> = sqlx::query_scalar("SELECT id FROM account_plans WHERE id = $1")
                .bind(id.get())
                .fetch_optional(&mut *tx)
                .await?;
            Some(found.ok_or_else(|| StoreError::invalid("account_plan_id", "does not exist"))?)
        }
        None => {
            sqlx::query_scalar::<_, Option<i64>>("SELECT default_account_plan_id FROM provider_account WHERE id = $1")
                .bind(PROVIDER_ID)
                .fetch_optional(&mut *tx)
                .await?
                .flatten()
        }
    };
    if let Some(plan_id) = plan_id {
        account.push(("plan_id", Val::Int(plan_id)));
    }
    let org = text(&account, "org_name").unwrap_or_default().to_string();
    let created = create_in(&mut tx, &ACCOUNTS, &[], account).await?;
    let id = created.id();
    create_in(&mut tx, &USERS, &[id], user).await?;
    sqlx::query(
        "INSERT INTO service_subscriptions (account_id, service_id, plan_id, state, created_at, updated_at)
         SELECT $1, s.id, s.default_service_plan_id, 'live', $2, $2 FROM services s
         WHERE s.default_service_plan_id IS NOT NULL",
    )
    .bind(id)
    .bind(crate::time::now())
    .execute(&mut *tx)
    .await?;
    // …and an application on every default application plan (3scale's signup).
    let defaults: Vec<i64> = sqlx::query_scalar(
        "SELECT default_application_plan_id FROM services WHERE default_application_plan_id IS NOT NULL",
    )
    .fetch_all(&mut *tx)
    .await?;
    for plan_id in defaults {
        let form = Form(vec![
            ("name".into(), format!("{org}'s App")),
            ("plan_id".into(), plan_id.to_string()),
        ]);
        let values = super::applications::APPLICATION.values_for_create(&form)?;
        create_in(&mut tx, &super::applications::APPLICATIONS, &[id], values).await?;
    }
    tx.commit().await?;
    Ok(created)
}

/// The accounts with a user whose user name or e-mail contains `term` (the console's account
/// search), at most 500.
pub async fn with_user_matching(db: &Db, term: &str) -> Result<Vec<i64>> {
    let like = super::resource::like_pattern(term);
    Ok(sqlx::query_scalar(
        "SELECT DISTINCT account_id FROM users
         WHERE LOWER(username) LIKE $1 OR LOWER(COALESCE(email, '')) LIKE $1 LIMIT 500",
    )
    .bind(like)
    .fetch_all(&db.pool)
    .await?)
}

/// `find.json`: the account with a user of this username or e-mail, or this user id.
pub async fn find(db: &Db, lookup: &AccountLookup) -> Result<Record> {
    let id: Option<i64> = match lookup {
        AccountLookup::Username(u) => {
            sqlx::query_scalar("SELECT account_id FROM users WHERE username = $1 ORDER BY id LIMIT 1")
                .bind(u)
                .fetch_optional(&db.pool)
                .await?
        }
        AccountLookup::Email(e) => {
            sqlx::query_scalar("SELECT account_id FROM users WHERE email = $1 ORDER BY id LIMIT 1")
                .bind(e)
                .fetch_optional(&db.pool)
                .await?
        }
        AccountLookup::UserId(id) => {
            sqlx::query_scalar("SELECT account_id FROM users WHERE id = $1")
                .bind(id.get())
                .fetch_optional(&db.pool)
                .await?
        }
    };
    crud::find(db, &ACCOUNTS, &[], id.ok_or(StoreError::NotFound)?).await
}

/// The account's account plan.
pub async fn plan(db: &Db, account: AccountId) -> Result<Record> {
    let found = crud::find(db, &ACCOUNTS, &[], account.get()).await?;
    let plan = found.int("plan_id").ok_or(StoreError::NotFound)?;
    crud::find(db, &super::plans::ACCOUNT_PLANS, &[], plan).await
}

/// `PUT /accounts/{id}/billing_address.json`; the account as it is then.
pub async fn set_billing_address(db: &Db, account: AccountId, address: &Address) -> Result<Record> {
    let mut tx = db.begin_write().await?;
    write_billing_address(&mut tx, account, address).await?;
    let item = ACCOUNT.find(&mut tx, &[], account.get()).await?;
    tx.commit().await?;
    Ok(item)
}

/// Stores the billing address inside `conn`'s transaction (not found: no such account).
pub async fn write_billing_address(conn: &mut AnyConnection, account: AccountId, address: &Address) -> Result<()> {
    let text = serde_json::to_string(address).map_err(|e| StoreError::Internal(e.to_string()))?;
    let done = sqlx::query("UPDATE accounts SET billing_address = $1, updated_at = $2 WHERE id = $3")
        .bind(text)
        .bind(crate::time::now())
        .bind(account.get())
        .execute(&mut *conn)
        .await?;
    match done.rows_affected() {
        0 => Err(StoreError::NotFound),
        _ => Ok(()),
    }
}

/// A message sent to an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: i64,
    pub account_id: AccountId,
    pub subject: String,
    pub body: String,
    pub created_at: String,
}

/// Stores a message to an account.
pub async fn send_message(db: &Db, account: AccountId, m: &NewMessage) -> Result<Message> {
    let mut tx = db.begin_write().await?;
    let sent = send_message_in(&mut tx, account, m).await?;
    tx.commit().await?;
    Ok(sent)
}

/// Sends the same message to every account of `ids` (3scale Ch. 10's bulk "Send email"):
/// to all of them or, if one is gone, to none.
pub async fn send_messages(db: &Db, ids: &[AccountId], m: &NewMessage) -> Result<Vec<Message>> {
    let mut tx = db.begin_write().await?;
    let mut sent = Vec::with_capacity(ids.len());
    for &account in ids {
        sent.push(
            send_message_in(&mut tx, account, m)
                .await
                .map_err(|e| missing_in_ids(e, account))?,
        );
    }
    tx.commit().await?;
    Ok(sent)
}

/// Moves every account of `ids` by `event` (approve, reject, suspend, resume…): all of them
/// or none, in one transaction; a refusal names the account.
pub async fn bulk(db: &Db, ids: &[AccountId], event: &str) -> Result<Vec<Record>> {
    let input = EventInput {
        name: event.to_string(),
        plan_id: None,
    };
    let mut tx = db.begin_write().await?;
    let mut done = Vec::with_capacity(ids.len());
    for &id in ids {
        let item = crud::event_in(&mut tx, &ACCOUNTS, &[], id.get(), &input)
            .await
            .map_err(|e| match missing_in_ids(e, id) {
                StoreError::Invalid(invalid) => StoreError::Invalid(invalid.prefixed(&format!("account {id}: "))),
                other => other,
            })?;
        done.push(item);
    }
    tx.commit().await?;
    Ok(done)
}

/// A bulk action's missing account is the request's mistake: named under `ids`.
fn missing_in_ids(e: StoreError, account: AccountId) -> StoreError {
    match e {
        StoreError::NotFound => StoreError::invalid("ids", format!("account {account} does not exist")),
        other => other,
    }
}

async fn send_message_in(conn: &mut AnyConnection, account: AccountId, m: &NewMessage) -> Result<Message> {
    ACCOUNT.find(conn, &[], account.get()).await?;
    let row = sqlx::query(
        "INSERT INTO messages (account_id, subject, body, created_at) VALUES ($1, $2, $3, $4)
         RETURNING id, subject, body, created_at",
    )
    .bind(account.get())
    .bind(&m.subject)
    .bind(&m.body)
    .bind(crate::time::now())
    .fetch_one(&mut *conn)
    .await?;
    let id: i64 = row.try_get("id")?;
    crate::events::record_as(
        conn,
        "message.sent",
        Some(account),
        None,
        crate::events::Actor::Provider,
        &serde_json::json!({"message": {"id": id, "subject": m.subject, "body": m.body}}),
    )
    .await?;
    Ok(Message {
        id,
        account_id: account,
        subject: row.try_get("subject")?,
        body: row.try_get("body")?,
        created_at: row.try_get("created_at")?,
    })
}

/// An account's billing type (`None`: no such account).
pub async fn billing_type(db: &Db, account: AccountId) -> Result<Option<BillingType>> {
    let t: Option<String> = sqlx::query_scalar("SELECT billing_type FROM accounts WHERE id = $1")
        .bind(account.get())
        .fetch_optional(&db.pool)
        .await?;
    Ok(t.as_deref().and_then(BillingType::parse))
}

/// Not found unless the account exists.
pub async fn ensure(db: &Db, account: AccountId) -> Result<()> {
    let found: Option<i64> = sqlx::query_scalar("SELECT id FROM accounts WHERE id = $1")
        .bind(account.get())
        .fetch_optional(&db.pool)
        .await?;
    found.map(|_| ()).ok_or(StoreError::NotFound)
}

/// The first scope value of a user route: the account.
pub fn account_of(scope: &[i64]) -> Result<AccountId> {
    owner(scope).map(AccountId::new)
}
