//! Where events go over HTTP: 3scale's one webhook (its settings API, its sixteen switches)
//! and Tollgate's endpoints (several, each subscribed to event types), with their signing
//! secrets, and 3scale's failures list.
//!
//! Both are rows of `webhook_endpoints`; 3scale's is the row of kind `threescale`, its
//! switches stored as the event types they enable, so one router and one sender serve both.

use crate::db::{Db, Row};
use crate::error::{Result, StoreError};
use crate::time::now;
use sqlx::{AnyConnection, Row as _};
use tollgate_domain::form::{Form, Page};
use tollgate_domain::notify::{parse_event_types, THREESCALE_SWITCHES};
use tollgate_domain::Invalid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 3scale's webhook: XML bodies.
    Threescale,
    /// Tollgate's endpoints: JSON bodies.
    Json,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Threescale => "threescale",
            Kind::Json => "json",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub id: i64,
    pub kind: Kind,
    pub url: String,
    pub description: String,
    pub active: bool,
    pub provider_actions: bool,
    pub push_application_content_type: bool,
    pub event_types: Vec<String>,
    pub secret: String,
    /// After a rotation: the secret before it, which also signs until `previous_secret_until`.
    pub previous_secret: Option<String>,
    pub previous_secret_until: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl Endpoint {
    /// The secrets that sign a delivery now: the current one, and the previous one while its
    /// overlap lasts.
    pub fn signing_secrets(&self, now: &str) -> Vec<&str> {
        let mut s = vec![self.secret.as_str()];
        if let (Some(prev), Some(until)) = (&self.previous_secret, &self.previous_secret_until) {
            if now < until.as_str() {
                s.push(prev);
            }
        }
        s
    }

    /// 3scale's switch `name` (`account_created_on`, …).
    pub fn switch(&self, name: &str) -> bool {
        THREESCALE_SWITCHES
            .iter()
            .find(|(s, _)| *s == name)
            .is_some_and(|(_, t)| self.event_types.iter().any(|e| e == t))
    }
}

/// A new `whsec_` secret: 24 random bytes, base64 (the Standard Webhooks form).
pub fn new_secret() -> String {
    use rand::RngCore;
    let mut key = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut key);
    use base64::Engine as _;
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(key))
}

const COLUMNS: &str = "id, kind, url, description, active, provider_actions, push_application_content_type,
    event_types, secret, previous_secret, previous_secret_until, created_at, updated_at";

fn from_row(r: &Row) -> Result<Endpoint> {
    let kind: String = r.try_get("kind")?;
    let types: String = r.try_get("event_types")?;
    Ok(Endpoint {
        id: r.try_get("id")?,
        kind: if kind == "threescale" {
            Kind::Threescale
        } else {
            Kind::Json
        },
        url: r.try_get("url")?,
        description: r.try_get("description")?,
        active: r.try_get::<i64, _>("active")? != 0,
        provider_actions: r.try_get::<i64, _>("provider_actions")? != 0,
        push_application_content_type: r.try_get::<i64, _>("push_application_content_type")? != 0,
        event_types: serde_json::from_str(&types).unwrap_or_default(),
        secret: r.try_get("secret")?,
        previous_secret: r.try_get("previous_secret")?,
        previous_secret_until: r.try_get("previous_secret_until")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// Every endpoint that is active (the router's view).
pub async fn active(conn: &mut AnyConnection) -> Result<Vec<Endpoint>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM webhook_endpoints WHERE active = 1 ORDER BY id"
    ))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(from_row).collect()
}

/// One of Tollgate's endpoints (the API's view: 3scale's webhook has its own calls).
pub async fn find(db: &Db, id: i64) -> Result<Endpoint> {
    by_id(db, id)
        .await?
        .filter(|e| e.kind == Kind::Json)
        .ok_or(StoreError::NotFound)
}

/// Any endpoint, 3scale's webhook included (the sender's view).
pub async fn by_id(db: &Db, id: i64) -> Result<Option<Endpoint>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM webhook_endpoints WHERE id = $1"))
        .bind(id)
        .fetch_optional(&db.pool)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// 3scale's webhook, if it was ever set.
pub async fn threescale(db: &Db) -> Result<Option<Endpoint>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM webhook_endpoints WHERE kind = 'threescale' ORDER BY id LIMIT 1"
    ))
    .fetch_optional(&db.pool)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Whether `url` is an http(s) URL (3scale's `URI::DEFAULT_PARSER.make_regexp(%w[http https])`,
/// at most 255 characters). Where it may point is the sender's check, made at each delivery.
pub fn valid_url(url: &str) -> bool {
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
    let host = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or(""));
    url.len() <= 255
        && host.is_some_and(|h| {
            let h = h.rsplit_once('@').map_or(h, |(_, h)| h);
            !h.is_empty() && !h.starts_with(':') && !h.contains(char::is_whitespace)
        })
}

/// `PUT /admin/api/webhooks.json`: 3scale's parameters, top level or under `web_hook[…]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThreescalePatch {
    pub url: Option<String>,
    pub active: Option<bool>,
    pub provider_actions: Option<bool>,
    pub switches: Vec<(&'static str, bool)>,
}

impl tollgate_domain::form::FromForm for ThreescalePatch {
    fn from_form(f: &Form) -> Result<Self, Invalid> {
        let get = |name: &str| {
            f.get(&format!("web_hook[{name}]"))
                .or_else(|| f.get(&format!("webhook[{name}]")))
                .or_else(|| f.get(name))
        };
        let flag = |name: &str| -> Result<Option<bool>, Invalid> {
            match get(name).map(str::trim) {
                None => Ok(None),
                Some("true" | "1") => Ok(Some(true)),
                Some("false" | "0" | "") => Ok(Some(false)),
                Some(_) => Err(Invalid::field(name, "must be true or false")),
            }
        };
        let mut switches = Vec::new();
        for (s, _) in THREESCALE_SWITCHES {
            if let Some(v) = flag(s)? {
                switches.push((s, v));
            }
        }
        Ok(ThreescalePatch {
            url: get("url").map(str::to_string),
            active: flag("active")?,
            provider_actions: flag("provider_actions")?,
            switches,
        })
    }
}

/// Applies `patch` to 3scale's webhook, creating it (with a secret) on the first call.
pub async fn put_threescale(db: &Db, patch: ThreescalePatch) -> Result<Endpoint> {
    let mut tx = db.begin_write().await?;
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM webhook_endpoints WHERE kind = 'threescale' ORDER BY id LIMIT 1"
    ))
    .fetch_optional(&mut *tx)
    .await?;
    let current = row.as_ref().map(from_row).transpose()?;
    let mut e = current.clone().unwrap_or_else(|| Endpoint {
        id: 0,
        kind: Kind::Threescale,
        url: String::new(),
        description: String::new(),
        active: false,
        provider_actions: false,
        push_application_content_type: true,
        event_types: Vec::new(),
        secret: new_secret(),
        previous_secret: None,
        previous_secret_until: None,
        created_at: now(),
        updated_at: now(),
    });
    if let Some(url) = patch.url {
        e.url = url.trim().to_string();
    }
    if let Some(a) = patch.active {
        e.active = a;
    }
    if let Some(p) = patch.provider_actions {
        e.provider_actions = p;
    }
    for (switch, on) in patch.switches {
        let Some((_, t)) = THREESCALE_SWITCHES.iter().find(|(s, _)| *s == switch) else {
            continue;
        };
        e.event_types.retain(|x| x != t);
        if on {
            e.event_types.push(t.to_string());
        }
    }
    // 3scale's order, whatever order the switches came in.
    e.event_types = THREESCALE_SWITCHES
        .iter()
        .filter(|(_, t)| e.event_types.iter().any(|x| x == t))
        .map(|(_, t)| t.to_string())
        .collect();
    if e.active && !valid_url(&e.url) {
        return Err(StoreError::invalid("url", "is invalid"));
    }
    if e.url.len() > 255 {
        return Err(StoreError::invalid("url", "is too long (maximum is 255 characters)"));
    }
    save(&mut tx, &mut e, current.is_none()).await?;
    tx.commit().await?;
    Ok(e)
}

async fn save(conn: &mut AnyConnection, e: &mut Endpoint, insert: bool) -> Result<()> {
    let types = serde_json::to_string(&e.event_types).map_err(|x| StoreError::Internal(x.to_string()))?;
    e.updated_at = now();
    if insert {
        e.id = sqlx::query_scalar(
            "INSERT INTO webhook_endpoints (kind, url, description, active, provider_actions,
               push_application_content_type, event_types, secret, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING id",
        )
        .bind(e.kind.as_str())
        .bind(&e.url)
        .bind(&e.description)
        .bind(i64::from(e.active))
        .bind(i64::from(e.provider_actions))
        .bind(i64::from(e.push_application_content_type))
        .bind(types)
        .bind(&e.secret)
        .bind(&e.updated_at)
        .fetch_one(&mut *conn)
        .await?;
        e.created_at = e.updated_at.clone();
    } else {
        sqlx::query(
            "UPDATE webhook_endpoints SET url = $1, description = $2, active = $3, provider_actions = $4,
               event_types = $5, secret = $6, previous_secret = $7, previous_secret_until = $8, updated_at = $9
             WHERE id = $10",
        )
        .bind(&e.url)
        .bind(&e.description)
        .bind(i64::from(e.active))
        .bind(i64::from(e.provider_actions))
        .bind(types)
        .bind(&e.secret)
        .bind(&e.previous_secret)
        .bind(&e.previous_secret_until)
        .bind(&e.updated_at)
        .bind(e.id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// A Tollgate endpoint's fields as a form gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointInput {
    pub url: Option<String>,
    pub description: Option<String>,
    pub active: Option<bool>,
    pub event_types: Option<Vec<String>>,
}

impl tollgate_domain::form::FromForm for EndpointInput {
    fn from_form(f: &Form) -> Result<Self, Invalid> {
        let mut errors = Invalid::default();
        let url = f.get("url").map(|u| u.trim().to_string());
        if url.as_deref().is_some_and(|u| !valid_url(u)) {
            errors.push("url", "is invalid");
        }
        let types = f.all("event_types");
        let event_types = match types.is_empty() {
            true => None,
            false => errors.collect(parse_event_types(&types)),
        };
        let active = errors.collect(f.flag("active")).flatten();
        errors.or(EndpointInput {
            url,
            description: f.get("description").map(str::to_string),
            active,
            event_types,
        })
    }
}

/// Tollgate's endpoints, one page.
pub async fn list(db: &Db, page: Page) -> Result<Vec<Endpoint>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM webhook_endpoints WHERE kind = 'json' ORDER BY id LIMIT $1 OFFSET $2"
    ))
    .bind(page.per_page)
    .bind(page.offset())
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(from_row).collect()
}

pub async fn create(db: &Db, input: EndpointInput) -> Result<Endpoint> {
    let mut errors = Invalid::default();
    if input.url.is_none() {
        errors.push("url", "can't be blank");
    }
    if input.event_types.is_none() {
        errors.push("event_types", "can't be blank");
    }
    errors.or(())?;
    let mut e = Endpoint {
        id: 0,
        kind: Kind::Json,
        url: input.url.unwrap_or_default(),
        description: input.description.unwrap_or_default(),
        active: input.active.unwrap_or(true),
        provider_actions: true,
        push_application_content_type: true,
        event_types: input.event_types.unwrap_or_default(),
        secret: new_secret(),
        previous_secret: None,
        previous_secret_until: None,
        created_at: String::new(),
        updated_at: String::new(),
    };
    let mut tx = db.begin_write().await?;
    save(&mut tx, &mut e, true).await?;
    tx.commit().await?;
    Ok(e)
}

pub async fn update(db: &Db, id: i64, input: EndpointInput) -> Result<Endpoint> {
    let mut e = find(db, id).await?;
    if let Some(u) = input.url {
        e.url = u;
    }
    if let Some(d) = input.description {
        e.description = d;
    }
    if let Some(a) = input.active {
        e.active = a;
    }
    if let Some(t) = input.event_types {
        e.event_types = t;
    }
    let mut tx = db.begin_write().await?;
    save(&mut tx, &mut e, false).await?;
    tx.commit().await?;
    Ok(e)
}

pub async fn delete(db: &Db, id: i64) -> Result<()> {
    let done = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1 AND kind = 'json'")
        .bind(id)
        .execute(&db.pool)
        .await?;
    match done.rows_affected() {
        0 => Err(StoreError::NotFound),
        _ => Ok(()),
    }
}

/// A new secret; the old one keeps signing (beside the new) for `overlap_secs`, so receivers
/// can switch without losing a delivery. `id` 0 is 3scale's webhook.
pub async fn rotate_secret(db: &Db, id: Option<i64>, overlap_secs: i64) -> Result<Endpoint> {
    let mut e = match id {
        Some(id) => find(db, id).await?,
        None => threescale(db).await?.ok_or(StoreError::NotFound)?,
    };
    let until = chrono::Utc::now() + chrono::Duration::seconds(overlap_secs.clamp(0, 7 * 86_400));
    e.previous_secret = Some(std::mem::replace(&mut e.secret, new_secret()));
    e.previous_secret_until = Some(until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let mut tx = db.begin_write().await?;
    save(&mut tx, &mut e, false).await?;
    tx.commit().await?;
    Ok(e)
}

/// One of 3scale's webhook failures: a delivery that gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub id: String,
    pub time: String,
    pub error: String,
    pub url: String,
    pub event: String,
}

pub async fn add_failure(conn: &mut AnyConnection, f: &Failure) -> Result<()> {
    sqlx::query("INSERT INTO webhook_failures (id, time, error, url, event) VALUES ($1, $2, $3, $4, $5)")
        .bind(&f.id)
        .bind(&f.time)
        .bind(&f.error)
        .bind(&f.url)
        .bind(&f.event)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The failures, oldest first (bounded).
pub async fn failures(db: &Db) -> Result<Vec<Failure>> {
    let rows = sqlx::query("SELECT id, time, error, url, event FROM webhook_failures ORDER BY time, id LIMIT 1000")
        .fetch_all(&db.pool)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Failure {
                id: r.try_get("id")?,
                time: r.try_get("time")?,
                error: r.try_get("error")?,
                url: r.try_get("url")?,
                event: r.try_get("event")?,
            })
        })
        .collect()
}

/// Forgets failures up to `time` (RFC 3339, inclusive), or all of them.
pub async fn delete_failures(db: &Db, time: Option<&str>) -> Result<u64> {
    let done = match time {
        Some(t) => {
            sqlx::query("DELETE FROM webhook_failures WHERE time <= $1")
                .bind(t)
                .execute(&db.pool)
                .await?
        }
        None => sqlx::query("DELETE FROM webhook_failures").execute(&db.pool).await?,
    };
    Ok(done.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_http_or_https_with_a_host() {
        assert!(valid_url("http://example.com"));
        assert!(valid_url("https://user:pw@example.com:8443/hook?x=1"));
        assert!(!valid_url("example"));
        assert!(!valid_url("ftp://example.com"));
        assert!(!valid_url("http://"));
        assert!(!valid_url(&format!("http://e.com/{}", "a".repeat(255))));
    }

    #[test]
    fn secrets_are_standard_webhooks_secrets() {
        let s = new_secret();
        assert!(s.starts_with("whsec_") && s.len() == 6 + 32, "{s}");
    }
}
