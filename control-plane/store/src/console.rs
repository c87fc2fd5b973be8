//! Sign-in and sessions, for the console (a provider user) and the developer portal (a user
//! of a developer account) alike — one implementation, two [`Realm`]s: a user signs in with
//! their user name or e-mail and password; a session is a random value in a cookie, stored
//! only as its SHA-256, with the CSRF token the session's forms carry. Wrong passwords are
//! throttled per user name and per client address ([`tollgate_domain::sign_in::Throttle`]),
//! each realm counting its own. Only active users sign in; a developer's account must also be
//! approved.

use crate::auth::{generate_token, hash_token};
use crate::db::{Db, Engine};
use crate::error::{Result, StoreError};
use chrono::{DateTime, Datelike, Duration, SecondsFormat, Utc};
use sqlx::Row;
use tollgate_domain::catalog::UserState;
use tollgate_domain::ids::{ProviderUserId, UserId};
use tollgate_domain::sign_in::{session_alive, Failures, Throttle};

/// Who signs in where: the users table a login names, the sessions table, the throttle's keys.
pub trait Realm {
    type User: Copy + std::fmt::Debug + PartialEq + Eq;
    /// The sessions' table.
    const SESSIONS: &'static str;
    /// The users a login names: `id`, `password`, `state`, `email`, and `account_state` (whether
    /// their account lets them in: `approved`).
    const LOGIN: &'static str;
    /// A user's name by id.
    const USERNAME: &'static str;
    /// What the throttle's keys start with (each realm counts its own failures).
    const KEYS: &'static str;
    fn user(id: i64) -> Self::User;
    fn raw(user: Self::User) -> i64;
}

/// The console: the provider's staff.
pub struct Console;
impl Realm for Console {
    type User = ProviderUserId;
    const SESSIONS: &'static str = "console_sessions";
    const LOGIN: &'static str = "SELECT id, password, state, email, 'approved' AS account_state FROM provider_users
         WHERE username = $1 OR lower(email) = lower($1) ORDER BY id LIMIT 3";
    const USERNAME: &'static str = "SELECT username FROM provider_users WHERE id = $1";
    const KEYS: &'static str = "";
    fn user(id: i64) -> ProviderUserId {
        ProviderUserId::new(id)
    }
    fn raw(user: ProviderUserId) -> i64 {
        user.get()
    }
}

/// The developer portal: users of developer accounts.
pub struct Portal;
impl Realm for Portal {
    type User = UserId;
    const SESSIONS: &'static str = "portal_sessions";
    const LOGIN: &'static str = "SELECT u.id, u.password, u.state, u.email, a.state AS account_state
         FROM users u JOIN accounts a ON a.id = u.account_id
         WHERE u.username = $1 OR lower(u.email) = lower($1) ORDER BY u.id LIMIT 3";
    const USERNAME: &'static str = "SELECT username FROM users WHERE id = $1";
    const KEYS: &'static str = "portal:";
    fn user(id: i64) -> UserId {
        UserId::new(id)
    }
    fn raw(user: UserId) -> i64 {
        user.get()
    }
}

/// A live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session<U = ProviderUserId> {
    pub user_id: U,
    pub csrf_token: String,
}

/// A session just made: the cookie's value (shown to the browser once, kept only hashed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn<U = ProviderUserId> {
    pub cookie: String,
    pub session: Session<U>,
}

/// Why a sign-in was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Wrong name or password; `retry_at` when this failure locked the key.
    Invalid { retry_at: Option<DateTime<Utc>> },
    /// Too many wrong passwords: the password was not checked.
    Throttled { retry_at: DateTime<Utc> },
    /// The user exists and the password is right, but the user is pending or suspended.
    NotActive,
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn parse_stamp(s: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Internal(format!("stored time `{s}`: {e}")))
}

fn keys<R: Realm>(login: &str, address: &str) -> [String; 2] {
    [
        format!("{}user:{}", R::KEYS, login.trim().to_lowercase()),
        format!("{}addr:{address}", R::KEYS),
    ]
}

async fn failures(db: &Db, key: &str) -> Result<Option<Failures>> {
    let row = sqlx::query("SELECT failures, first_at, locked_until FROM sign_in_failures WHERE key = $1")
        .bind(key)
        .fetch_optional(&db.pool)
        .await?;
    row.map(|r| failures_of(&r)).transpose()
}

fn failures_of(r: &crate::db::Row) -> Result<Failures> {
    Ok(Failures {
        failures: u32::try_from(r.try_get::<i64, _>("failures")?).unwrap_or(u32::MAX),
        first_at: parse_stamp(&r.try_get::<String, _>("first_at")?)?,
        locked_until: r
            .try_get::<Option<String>, _>("locked_until")?
            .map(|s| parse_stamp(&s))
            .transpose()?,
    })
}

/// Counts one more wrong password against `key` (one transaction, the row locked, so
/// concurrent guesses all count); when the key is locked now.
async fn fail(db: &Db, policy: &Throttle, key: &str, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
    let mut tx = db.begin_write().await?;
    sqlx::query(
        "INSERT INTO sign_in_failures (key, failures, first_at, locked_until) VALUES ($1, 0, $2, NULL)
         ON CONFLICT (key) DO NOTHING",
    )
    .bind(key)
    .bind(stamp(now))
    .execute(&mut *tx)
    .await?;
    let lock = if db.engine == Engine::Postgres {
        " FOR UPDATE"
    } else {
        ""
    };
    let row = sqlx::query(&format!(
        "SELECT failures, first_at, locked_until FROM sign_in_failures WHERE key = $1{lock}"
    ))
    .bind(key)
    .fetch_one(&mut *tx)
    .await?;
    let next = policy.after_failure(Some(&failures_of(&row)?), now);
    sqlx::query("UPDATE sign_in_failures SET failures = $1, first_at = $2, locked_until = $3 WHERE key = $4")
        .bind(i64::from(next.failures))
        .bind(stamp(next.first_at))
        .bind(next.locked_until.map(stamp))
        .bind(key)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(next.locked_until)
}

/// Signs `login` (user name or e-mail) in to the console with `password`, from `address`.
pub async fn sign_in(
    db: &Db,
    policy: &Throttle,
    login: &str,
    password: &str,
    address: &str,
    now: DateTime<Utc>,
) -> Result<std::result::Result<SignedIn, Refusal>> {
    sign_in_to::<Console>(db, policy, login, password, address, now).await
}

/// A user a login names, as signing in reads them.
struct Named {
    id: i64,
    password: Option<String>,
    state: String,
    account_state: String,
}

/// The user `login` names: the one whose e-mail it is, else the only one with that user name
/// (developers of two accounts may share a name: then the e-mail is needed).
fn named(rows: &[crate::db::Row], login: &str) -> Result<Option<Named>> {
    let by_email = |r: &crate::db::Row| {
        r.try_get::<Option<String>, _>("email")
            .ok()
            .flatten()
            .is_some_and(|e| e.eq_ignore_ascii_case(login.trim()))
    };
    let row = match rows.iter().find(|r| by_email(r)) {
        Some(r) => r,
        None if rows.len() == 1 => &rows[0],
        None => return Ok(None),
    };
    Ok(Some(Named {
        id: row.try_get("id")?,
        password: row.try_get("password")?,
        state: row.try_get("state")?,
        account_state: row.try_get("account_state")?,
    }))
}

/// Signs `login` in to realm `R`.
pub async fn sign_in_to<R: Realm>(
    db: &Db,
    policy: &Throttle,
    login: &str,
    password: &str,
    address: &str,
    now: DateTime<Utc>,
) -> Result<std::result::Result<SignedIn<R::User>, Refusal>> {
    let keys = keys::<R>(login, address);
    if let Some(retry_at) = locked_until(db, policy, &keys, now).await? {
        return Ok(Err(Refusal::Throttled { retry_at }));
    }
    let rows = sqlx::query(R::LOGIN).bind(login.trim()).fetch_all(&db.pool).await?;
    let found = named(&rows, login)?;
    let right = matches_hash(password, found.as_ref().and_then(|f| f.password.clone())).await?;
    match found {
        Some(Named {
            id,
            state,
            account_state,
            ..
        }) if right => {
            sqlx::query("DELETE FROM sign_in_failures WHERE key = $1")
                .bind(&keys[0])
                .execute(&db.pool)
                .await?;
            if UserState::parse(&state) != Some(UserState::Active) || account_state != "approved" {
                return Ok(Err(Refusal::NotActive));
            }
            Ok(Ok(start_in::<R>(db, R::user(id), now).await?))
        }
        _ => Ok(Err(Refusal::Invalid {
            retry_at: fail_all(db, policy, &keys, now).await?,
        })),
    }
}

/// When the first of `keys` that is locked out opens again (`None`: none is).
async fn locked_until(
    db: &Db,
    policy: &Throttle,
    keys: &[String],
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>> {
    let mut locked = None;
    for key in keys {
        locked = locked.max(policy.retry_at(failures(db, key).await?.as_ref(), now));
    }
    Ok(locked)
}

/// A wrong password counted against every key; when they may try again, if locked out now.
async fn fail_all(db: &Db, policy: &Throttle, keys: &[String], now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
    let mut retry_at = None;
    for key in keys {
        retry_at = retry_at.max(fail(db, policy, key, now).await?);
    }
    Ok(retry_at)
}

/// Whether `password` is the one `stored` hashes (no user: the same work, then no). The hash
/// is checked off the async threads (tens of milliseconds of CPU, by design).
async fn matches_hash(password: &str, stored: Option<String>) -> Result<bool> {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || match stored {
        Some(stored) => crate::passwords::verify(&password, &stored),
        None => {
            crate::passwords::verify_nobody(&password);
            false
        }
    })
    .await
    .map_err(|e| StoreError::Internal(e.to_string()))
}

/// Checks a signed-in user's current password before it is changed, throttled as signing in
/// is (a stolen session cannot guess the password faster than a sign-in form could).
pub async fn verify_password(
    db: &Db,
    policy: &Throttle,
    user: ProviderUserId,
    password: &str,
    address: &str,
    now: DateTime<Utc>,
) -> Result<std::result::Result<(), Refusal>> {
    let row = sqlx::query("SELECT username, password FROM provider_users WHERE id = $1")
        .bind(user.get())
        .fetch_optional(&db.pool)
        .await?
        .ok_or(StoreError::AccessDenied)?;
    let keys = keys::<Console>(&row.try_get::<String, _>("username")?, address);
    if let Some(retry_at) = locked_until(db, policy, &keys, now).await? {
        return Ok(Err(Refusal::Throttled { retry_at }));
    }
    if matches_hash(password, row.try_get("password")?).await? {
        return Ok(Ok(()));
    }
    Ok(Err(Refusal::Invalid {
        retry_at: fail_all(db, policy, &keys, now).await?,
    }))
}

/// Ends every session of `user` but the one with `csrf_token` (after a password change).
pub async fn end_other_sessions(db: &Db, user: ProviderUserId, csrf_token: &str) -> Result<u64> {
    let done = sqlx::query("DELETE FROM console_sessions WHERE user_id = $1 AND csrf_token <> $2")
        .bind(user.get())
        .bind(csrf_token)
        .execute(&db.pool)
        .await?;
    Ok(done.rows_affected())
}

/// A new console session for `user`.
pub async fn start(db: &Db, user: ProviderUserId, now: DateTime<Utc>) -> Result<SignedIn> {
    start_in::<Console>(db, user, now).await
}

/// A new session of realm `R` for `user`.
pub async fn start_in<R: Realm>(db: &Db, user: R::User, now: DateTime<Utc>) -> Result<SignedIn<R::User>> {
    let (cookie, csrf_token) = (generate_token(), generate_token());
    sqlx::query(&format!(
        "INSERT INTO {} (id_hash, user_id, csrf_token, created_at, last_seen_at) VALUES ($1, $2, $3, $4, $4)",
        R::SESSIONS
    ))
    .bind(hash_token(&cookie))
    .bind(R::raw(user))
    .bind(&csrf_token)
    .bind(stamp(now))
    .execute(&db.pool)
    .await?;
    Ok(SignedIn {
        cookie,
        session: Session {
            user_id: user,
            csrf_token,
        },
    })
}

/// The live console session a cookie holds, seen now (its idle time starts again); `None`
/// for an unknown cookie or one idle for `idle` or longer (which ends it).
pub async fn session(db: &Db, cookie: &str, now: DateTime<Utc>, idle: Duration) -> Result<Option<Session>> {
    session_in::<Console>(db, cookie, now, idle).await
}

/// [`session`] of realm `R`.
pub async fn session_in<R: Realm>(
    db: &Db,
    cookie: &str,
    now: DateTime<Utc>,
    idle: Duration,
) -> Result<Option<Session<R::User>>> {
    let id_hash = hash_token(cookie);
    let row = sqlx::query(&format!(
        "SELECT user_id, csrf_token, last_seen_at FROM {} WHERE id_hash = $1",
        R::SESSIONS
    ))
    .bind(&id_hash)
    .fetch_optional(&db.pool)
    .await?;
    let Some(r) = row else { return Ok(None) };
    let last_seen = parse_stamp(&r.try_get::<String, _>("last_seen_at")?)?;
    if !session_alive(last_seen, now, idle) {
        sign_out_of::<R>(db, cookie).await?;
        return Ok(None);
    }
    // Touched at most once a minute: a page's requests do not each write.
    if now - last_seen >= Duration::minutes(1) {
        sqlx::query(&format!(
            "UPDATE {} SET last_seen_at = $1 WHERE id_hash = $2",
            R::SESSIONS
        ))
        .bind(stamp(now))
        .bind(&id_hash)
        .execute(&db.pool)
        .await?;
    }
    Ok(Some(Session {
        user_id: R::user(r.try_get("user_id")?),
        csrf_token: r.try_get("csrf_token")?,
    }))
}

/// Ends the console session a cookie holds (nothing if there is none).
pub async fn sign_out(db: &Db, cookie: &str) -> Result<()> {
    sign_out_of::<Console>(db, cookie).await
}

/// [`sign_out`] of realm `R`.
pub async fn sign_out_of<R: Realm>(db: &Db, cookie: &str) -> Result<()> {
    sqlx::query(&format!("DELETE FROM {} WHERE id_hash = $1", R::SESSIONS))
        .bind(hash_token(cookie))
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// A provider user's name, as the console shows who is signed in.
pub async fn username(db: &Db, user: ProviderUserId) -> Result<String> {
    username_in::<Console>(db, user).await
}

/// A user's name in realm `R`.
pub async fn username_in<R: Realm>(db: &Db, user: R::User) -> Result<String> {
    sqlx::query_scalar(R::USERNAME)
        .bind(R::raw(user))
        .fetch_optional(&db.pool)
        .await?
        .ok_or(StoreError::AccessDenied)
}

/// What the dashboard shows (3scale's: the provider's day at a glance), for a user who sees
/// `services` (`None`: all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dashboard {
    /// Products the user sees, by name.
    pub products: Vec<DashboardProduct>,
    pub signups_this_month: i64,
    pub accounts_pending: i64,
    pub applications_pending: i64,
    /// The latest events: kind, when.
    pub recent_events: Vec<(String, String)>,
}

/// A product on the dashboard: where it is called and its traffic (flushed `hits`, UTC day
/// and month so far — what Analytics shows for the same periods).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardProduct {
    pub id: i64,
    pub name: String,
    pub system_name: String,
    pub staging: String,
    pub production: String,
    pub hits_today: i64,
    pub hits_this_month: i64,
}

pub async fn dashboard(
    db: &Db,
    services: Option<&[tollgate_domain::ids::ServiceId]>,
    now: DateTime<Utc>,
) -> Result<Dashboard> {
    let visible = |id: i64| services.is_none_or(|s| s.iter().any(|x| x.get() == id));
    let rows = sqlx::query("SELECT id, name, system_name FROM services ORDER BY name, id")
        .fetch_all(&db.pool)
        .await?;
    let (day, month) = (
        now.date_naive().and_time(chrono::NaiveTime::MIN).and_utc().timestamp(),
        now.date_naive()
            .with_day(1)
            .unwrap_or(now.date_naive())
            .and_time(chrono::NaiveTime::MIN)
            .and_utc()
            .timestamp(),
    );
    let until = now.timestamp() + 1;
    let mut products = Vec::new();
    for r in &rows {
        let id: i64 = r.try_get("id")?;
        if !visible(id) {
            continue;
        }
        let service = tollgate_domain::ids::ServiceId::new(id);
        let proxy = crate::catalog::proxy::settings(db, service).await?;
        let hits = crate::analytics::metric(db, crate::analytics::Owner::Service(service), "hits")
            .await?
            .map(|m| m.id);
        let total = |from: i64| async move {
            match hits {
                Some(m) => crate::usage::total(db, crate::usage::Scope::Service(service), m, from, until).await,
                None => Ok(0),
            }
        };
        products.push(DashboardProduct {
            id,
            name: r.try_get("name")?,
            system_name: r.try_get("system_name")?,
            staging: proxy.sandbox_endpoint.unwrap_or_default(),
            production: proxy.endpoint.unwrap_or_default(),
            hits_today: total(day).await?,
            hits_this_month: total(month).await?,
        });
    }
    let month_start = format!("{}-01", now.format("%Y-%m"));
    let count = |sql: &'static str| async move {
        sqlx::query_scalar::<_, i64>(sql)
            .bind(month_start.clone())
            .fetch_one(&db.pool)
            .await
    };
    let signups_this_month = count("SELECT COUNT(*) FROM accounts WHERE created_at >= $1").await?;
    let accounts_pending = sqlx::query_scalar("SELECT COUNT(*) FROM accounts WHERE state = 'pending'")
        .fetch_one(&db.pool)
        .await?;
    let applications_pending = sqlx::query_scalar("SELECT COUNT(*) FROM applications WHERE state = 'pending'")
        .fetch_one(&db.pool)
        .await?;
    // Members see the events of their services only (as their notifications).
    let recent_events = sqlx::query("SELECT kind, created_at, service_id FROM events ORDER BY id DESC LIMIT 200")
        .fetch_all(&db.pool)
        .await?
        .iter()
        .filter(|r| {
            let service: Option<i64> = r.try_get("service_id").unwrap_or(None);
            services.is_none() || service.is_some_and(visible)
        })
        .take(10)
        .map(|r| Ok((r.try_get("kind")?, r.try_get("created_at")?)))
        .collect::<Result<_>>()?;
    Ok(Dashboard {
        products,
        signups_this_month,
        accounts_pending,
        applications_pending,
        recent_events,
    })
}
