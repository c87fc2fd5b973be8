//! The provider: the one account that runs Tollgate (3scale's tenant), its settings, and its
//! users — admins, or members limited to some sections and services.

use super::accounts::{Users, USER_EVENTS, USER_FIELDS};
use super::crud::{Entity, Parent};
use super::resource::Resource;
use crate::auth::generate_token;
use crate::db::Db;
use crate::error::{Result, StoreError};
use crate::time::now;
use sqlx::{AnyConnection, Row};
use std::collections::BTreeMap;
use tollgate_domain::access::Section;
use tollgate_domain::catalog::Role;
use tollgate_domain::form::Form;
use tollgate_domain::ids::{ProviderUserId, ServiceId, PROVIDER_ID};
use tollgate_domain::Invalid;

pub static PROVIDER_USER: Resource = Resource {
    name: "user",
    collection: "users",
    table: "provider_users",
    scope: &[],
    fields: USER_FIELDS,
    unique_field: "username",
    transitions: USER_EVENTS,
};

pub static PROVIDER_USERS: Entity = Entity {
    resource: &PROVIDER_USER,
    parent: Parent::Root,
    behaviour: &Users,
};

/// Makes sure the provider and a default account plan exist (first start).
pub async fn ensure(db: &Db) -> Result<()> {
    let mut tx = db.begin_write().await?;
    let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM provider_account WHERE id = $1")
        .bind(PROVIDER_ID)
        .fetch_optional(&mut *tx)
        .await?;
    if exists.is_none() {
        let ts = now();
        let settings = BTreeMap::from([("site_access_code".to_string(), generate_token()[..10].to_string())]);
        let plan: i64 = sqlx::query_scalar(
            "INSERT INTO account_plans (name, system_name, state, created_at, updated_at)
             VALUES ('Default', 'default', 'published', $1, $1) RETURNING id",
        )
        .bind(&ts)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO provider_account (id, org_name, settings, default_account_plan_id, created_at, updated_at)
             VALUES ($1, 'Provider', $2, $3, $4, $4)",
        )
        .bind(PROVIDER_ID)
        .bind(settings_text(&settings)?)
        .bind(plan)
        .bind(&ts)
        .execute(&mut *tx)
        .await?;
    }
    // Databases from before migration 0011 have no provider key yet.
    sqlx::query("UPDATE provider_account SET provider_key = $1 WHERE id = $2 AND provider_key IS NULL")
        .bind(generate_token())
        .bind(PROVIDER_ID)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// The provider account: its name and its settings (plain `name=value` strings, 3scale's:
/// `site_access_code`, `support_email`, the legal address for invoices, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderAccount {
    pub org_name: String,
    /// 3scale's `provider_key`: admin credentials for the admin and stats APIs.
    pub provider_key: String,
    pub settings: BTreeMap<String, String>,
    pub created_at: String,
    pub updated_at: String,
}

fn settings_text(settings: &BTreeMap<String, String>) -> Result<String> {
    serde_json::to_string(settings).map_err(|e| StoreError::Internal(e.to_string()))
}

/// Stored settings are a JSON object; a value that is not a string is shown as its JSON.
fn parse_settings(text: &str) -> BTreeMap<String, String> {
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text).unwrap_or_default();
    map.into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect()
}

pub async fn account(db: &Db) -> Result<ProviderAccount> {
    let mut conn = db.pool.acquire().await?;
    account_in(&mut conn).await
}

pub async fn account_in(conn: &mut AnyConnection) -> Result<ProviderAccount> {
    let row = sqlx::query(
        "SELECT org_name, COALESCE(provider_key, '') AS provider_key, settings, created_at, updated_at
         FROM provider_account WHERE id = $1",
    )
    .bind(PROVIDER_ID)
    .fetch_one(&mut *conn)
    .await?;
    Ok(ProviderAccount {
        org_name: row.try_get("org_name")?,
        provider_key: row.try_get("provider_key")?,
        settings: parse_settings(&row.try_get::<String, _>("settings")?),
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// A change to the provider account: its name, and plain settings (lower-case names of
/// letters, digits and `_`) as given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderPatch {
    pub org_name: Option<String>,
    pub settings: Vec<(String, String)>,
}

impl tollgate_domain::form::FromForm for ProviderPatch {
    fn from_form(form: &Form) -> Result<Self, Invalid> {
        let mut patch = ProviderPatch::default();
        for (name, value) in &form.0 {
            let plain = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            match name.as_str() {
                "org_name" if value.trim().is_empty() => return Err(Invalid::field("org_name", "can't be blank")),
                "org_name" => patch.org_name = Some(value.clone()),
                "id" | "state" | "created_at" | "updated_at" | "access_token" | "provider_key" => {}
                "timezone" if tollgate_domain::analytics::clock::parse_zone(value).is_none() => {
                    return Err(Invalid::field("timezone", "is not a known IANA time zone name"))
                }
                _ if plain => patch.settings.push((name.clone(), value.clone())),
                _ => {}
            }
        }
        Ok(patch)
    }
}

impl ProviderAccount {
    /// The zone stats are shown in unless a request names one: the `timezone` setting (an
    /// IANA name), else UTC.
    pub fn timezone(&self) -> chrono_tz::Tz {
        self.settings
            .get("timezone")
            .and_then(|z| tollgate_domain::analytics::clock::parse_zone(z))
            .unwrap_or(chrono_tz::Tz::UTC)
    }
}

pub async fn update_account(db: &Db, patch: ProviderPatch) -> Result<ProviderAccount> {
    let mut tx = db.begin_write().await?;
    let mut current = account_in(&mut tx).await?;
    if let Some(name) = patch.org_name {
        current.org_name = name;
    }
    current.settings.extend(patch.settings);
    sqlx::query("UPDATE provider_account SET org_name = $1, settings = $2, updated_at = $3 WHERE id = $4")
        .bind(&current.org_name)
        .bind(settings_text(&current.settings)?)
        .bind(now())
        .bind(PROVIDER_ID)
        .execute(&mut *tx)
        .await?;
    let updated = account_in(&mut tx).await?;
    tx.commit().await?;
    Ok(updated)
}

/// What a provider user may see: admins everything; members their sections and services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    pub user_id: ProviderUserId,
    pub role: Role,
    /// Section names (the stored ones; admins: every grantable section).
    pub sections: Vec<String>,
    /// `None`: every service.
    pub services: Option<Vec<ServiceId>>,
}

pub async fn permissions(conn: &mut AnyConnection, user: ProviderUserId) -> Result<Permissions> {
    let row = sqlx::query("SELECT role, allowed_sections, allowed_service_ids FROM provider_users WHERE id = $1")
        .bind(user.get())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(StoreError::NotFound)?;
    let role: String = row.try_get("role")?;
    let role = Role::parse(&role).ok_or_else(|| StoreError::Internal(format!("role `{role}`")))?;
    let sections: String = row.try_get("allowed_sections")?;
    let services: Option<String> = row.try_get("allowed_service_ids")?;
    Ok(match role {
        Role::Admin => Permissions {
            user_id: user,
            role,
            sections: Section::GRANTABLE.iter().map(|s| s.as_str().to_string()).collect(),
            services: None,
        },
        Role::Member => Permissions {
            user_id: user,
            role,
            sections: sections
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            services: Some(
                services
                    .as_deref()
                    .unwrap_or("")
                    .split(',')
                    .filter_map(|s| s.parse().ok())
                    .collect(),
            ),
        },
    })
}

/// A change to a member's permissions: what is not given stays; an empty list empties it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PermissionsPatch {
    pub sections: Option<Vec<Section>>,
    pub services: Option<Vec<ServiceId>>,
}

impl tollgate_domain::form::FromForm for PermissionsPatch {
    /// `allowed_sections[]` and `allowed_service_ids[]`; the value `[]` empties a list (as
    /// 3scale's clients send it).
    fn from_form(form: &Form) -> Result<Self, Invalid> {
        let given = |name| -> Option<Vec<&str>> {
            let all: Vec<&str> = form
                .all(name)
                .into_iter()
                .map(|v| if v == "[]" { "" } else { v })
                .collect();
            (!all.is_empty()).then(|| all.into_iter().filter(|s| !s.is_empty()).collect())
        };
        let sections = given("allowed_sections")
            .map(|list| {
                list.into_iter()
                    .map(|s| {
                        Section::parse(s)
                            .ok_or_else(|| Invalid::field("allowed_sections", format!("unknown section `{s}`")))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        let services = given("allowed_service_ids")
            .map(|list| {
                list.into_iter()
                    .map(|s| {
                        s.parse()
                            .map_err(|_| Invalid::field("allowed_service_ids", format!("`{s}` is not an id")))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        Ok(PermissionsPatch { sections, services })
    }
}

pub async fn update_permissions(db: &Db, user: ProviderUserId, patch: PermissionsPatch) -> Result<Permissions> {
    let mut tx = db.begin_write().await?;
    permissions(&mut tx, user).await?;
    if let Some(sections) = &patch.sections {
        let joined: Vec<&str> = sections.iter().map(|s| s.as_str()).collect();
        set_user_column(&mut tx, user, "allowed_sections", joined.join(",")).await?;
    }
    if let Some(services) = &patch.services {
        for id in services {
            let found: Option<i64> = sqlx::query_scalar("SELECT id FROM services WHERE id = $1")
                .bind(id.get())
                .fetch_optional(&mut *tx)
                .await?;
            found.ok_or_else(|| StoreError::invalid("allowed_service_ids", format!("service {id} does not exist")))?;
        }
        let ids: Vec<String> = services.iter().map(|s| s.to_string()).collect();
        set_user_column(&mut tx, user, "allowed_service_ids", ids.join(",")).await?;
    }
    let after = permissions(&mut tx, user).await?;
    tx.commit().await?;
    Ok(after)
}

async fn set_user_column(conn: &mut AnyConnection, user: ProviderUserId, column: &str, value: String) -> Result<()> {
    sqlx::query(&format!(
        "UPDATE provider_users SET {column} = $1, updated_at = $2 WHERE id = $3"
    ))
    .bind(value)
    .bind(now())
    .bind(user.get())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A provider user's e-mail notification preferences as stored: the ones they set (what is
/// not there is on).
pub async fn notification_preferences(
    db: &Db,
    user: ProviderUserId,
) -> Result<serde_json::Map<String, serde_json::Value>> {
    let text: Option<String> = sqlx::query_scalar("SELECT notification_preferences FROM provider_users WHERE id = $1")
        .bind(user.get())
        .fetch_optional(&db.pool)
        .await?;
    let text = text.ok_or(StoreError::NotFound)?;
    Ok(serde_json::from_str(&text).unwrap_or_default())
}

/// Sets some preferences, keeping the others; the stored preferences then.
pub async fn set_notification_preferences(
    db: &Db,
    user: ProviderUserId,
    changes: &[(String, bool)],
) -> Result<serde_json::Map<String, serde_json::Value>> {
    let mut tx = db.begin_write().await?;
    let text: Option<String> = sqlx::query_scalar("SELECT notification_preferences FROM provider_users WHERE id = $1")
        .bind(user.get())
        .fetch_optional(&mut *tx)
        .await?;
    let mut prefs: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&text.ok_or(StoreError::NotFound)?).unwrap_or_default();
    for (name, on) in changes {
        prefs.insert(name.clone(), serde_json::Value::Bool(*on));
    }
    sqlx::query("UPDATE provider_users SET notification_preferences = $1, updated_at = $2 WHERE id = $3")
        .bind(serde_json::Value::Object(prefs.clone()).to_string())
        .bind(now())
        .bind(user.get())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(prefs)
}
