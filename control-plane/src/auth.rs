//! Access tokens for the admin API (3scale §6): a value shown once and stored only as its
//! SHA-256; scopes and a read-only / read-write permission. Tokens come as the `access_token`
//! parameter or as `Authorization: Bearer`.

use crate::db::Db;
use crate::error::ApiError;
use crate::params::Params;
use axum::http::HeaderMap;
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::Row;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    AccountManagement,
    Analytics,
    Finance,
    Stats,
}

impl Scope {
    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// The admin-portal sections this scope reaches; a member needs one of them to get a
    /// token with it.
    pub fn sections(self) -> &'static [&'static str] {
        match self {
            Scope::AccountManagement => &["partners", "plans", "settings"],
            Scope::Analytics | Scope::Stats => &["monitoring"],
            Scope::Finance => &["finance"],
        }
    }

    pub const ALL: [Scope; 4] = [Scope::AccountManagement, Scope::Analytics, Scope::Finance, Scope::Stats];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::AccountManagement => "account_management",
            Scope::Analytics => "analytics",
            Scope::Finance => "finance",
            Scope::Stats => "stats",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    pub id: i64,
    /// The provider user owning the token; `None` for the bootstrap token (acts as an admin).
    pub user_id: Option<i64>,
    pub scopes: Vec<String>,
    pub permission: String,
}

impl AccessToken {
    pub fn allows(&self, scope: Scope, access: Access) -> bool {
        self.scopes.iter().any(|s| s == scope.as_str()) && (access == Access::Read || self.permission == "rw")
    }
}

pub fn hash_token(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// A fresh random token value (256 bits, hex).
pub fn generate_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Makes sure an all-scopes read-write token with this value exists (`TOLLGATE_ADMIN_TOKEN`).
pub async fn ensure_admin_token(db: &Db, value: &str) -> Result<(), sqlx::Error> {
    let scopes: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
    sqlx::query(
        "INSERT INTO access_tokens (name, value_hash, scopes, permission, created_at) VALUES ($1, $2, $3, 'rw', $4)
         ON CONFLICT (value_hash) DO UPDATE SET scopes = excluded.scopes, permission = 'rw'",
    )
    .bind("TOLLGATE_ADMIN_TOKEN")
    .bind(hash_token(value))
    .bind(scopes.join(","))
    .bind(crate::time::now())
    .execute(&db.pool)
    .await?;
    Ok(())
}

fn presented_token<'a>(headers: &'a HeaderMap, params: &'a Params) -> Option<&'a str> {
    params.get("access_token").filter(|t| !t.is_empty()).or_else(|| {
        headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
    })
}

/// The admin-portal area an endpoint belongs to; members only reach the sections they hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// Developer accounts, their users and applications.
    Partners,
    /// Services, their integration (metrics, mapping rules, proxy) and plans.
    Plans,
    /// Analytics.
    Monitoring,
    /// Billing.
    Finance,
    /// Provider settings and users: admins only.
    Settings,
    /// Endpoints any token holder may use (their own tokens).
    Any,
}

impl Section {
    pub fn as_str(self) -> &'static str {
        match self {
            Section::Partners => "partners",
            Section::Plans => "plans",
            Section::Monitoring => "monitoring",
            Section::Finance => "finance",
            Section::Settings => "settings",
            Section::Any => "",
        }
    }
}

/// A member's limits; admins (and the bootstrap token) have none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub sections: Vec<String>,
    /// `None`: every service.
    pub services: Option<Vec<i64>>,
}

/// Who is calling: their token, and their limits if they are a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub token: AccessToken,
    pub member: Option<Member>,
}

impl Principal {
    pub fn user_id(&self) -> Option<i64> {
        self.token.user_id
    }

    pub fn may_enter(&self, section: Section) -> bool {
        match (&self.member, section) {
            (None, _) | (_, Section::Any) => true,
            (Some(_), Section::Settings) => false,
            (Some(m), s) => m.sections.iter().any(|x| x == s.as_str()),
        }
    }

    /// The services a member is limited to; `None`: every service.
    pub fn services(&self) -> Option<&[i64]> {
        self.member.as_ref().and_then(|m| m.services.as_deref())
    }

    pub fn may_see_service(&self, service_id: i64) -> bool {
        match &self.member {
            Some(Member {
                services: Some(ids), ..
            }) => ids.contains(&service_id),
            _ => true,
        }
    }

    /// 403 unless the caller may see this service.
    pub fn check_service(&self, service_id: i64) -> Result<(), ApiError> {
        if self.may_see_service(service_id) {
            Ok(())
        } else {
            Err(ApiError::AccessDenied)
        }
    }
}

/// The caller, if their token grants `scope` with `access` and they may enter `section`;
/// otherwise 403 "Access denied".
pub async fn authorize(
    db: &Db,
    headers: &HeaderMap,
    params: &Params,
    scope: Scope,
    access: Access,
    section: Section,
) -> Result<Principal, ApiError> {
    let token = token_for(db, headers, params, scope, access).await?;
    let member = match token.user_id {
        None => None,
        Some(user_id) => member_of(db, user_id).await?,
    };
    let principal = Principal { token, member };
    if principal.may_enter(section) {
        Ok(principal)
    } else {
        Err(ApiError::AccessDenied)
    }
}

/// A provider user's limits: `None` for admins; 403 for suspended or unknown users.
pub async fn member_of(db: &Db, user_id: i64) -> Result<Option<Member>, ApiError> {
    let row =
        sqlx::query("SELECT role, state, allowed_sections, allowed_service_ids FROM provider_users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(&db.pool)
            .await?
            .ok_or(ApiError::AccessDenied)?;
    if row.try_get::<String, _>("state")? == "suspended" {
        return Err(ApiError::AccessDenied);
    }
    if row.try_get::<String, _>("role")? == "admin" {
        return Ok(None);
    }
    let sections: String = row.try_get("allowed_sections")?;
    let services: Option<String> = row.try_get("allowed_service_ids")?;
    Ok(Some(Member {
        sections: sections
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        services: services.map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect()),
    }))
}

async fn token_for(
    db: &Db,
    headers: &HeaderMap,
    params: &Params,
    scope: Scope,
    access: Access,
) -> Result<AccessToken, ApiError> {
    let value = presented_token(headers, params).ok_or(ApiError::AccessDenied)?;
    let row = sqlx::query("SELECT id, user_id, scopes, permission FROM access_tokens WHERE value_hash = $1")
        .bind(hash_token(value))
        .fetch_optional(&db.pool)
        .await?
        .ok_or(ApiError::AccessDenied)?;
    let scopes: String = row.try_get("scopes")?;
    let token = AccessToken {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        scopes: scopes.split(',').map(str::to_string).collect(),
        permission: row.try_get("permission")?,
    };
    if token.allows(scope, access) {
        Ok(token)
    } else {
        Err(ApiError::AccessDenied)
    }
}

const TOKEN_COLUMNS: &str = "id, name, scopes, permission, created_at";

fn token_json(r: &crate::db::Row) -> Result<serde_json::Value, ApiError> {
    let scopes: String = r.try_get("scopes")?;
    Ok(serde_json::json!({
        "id": r.try_get::<i64, _>("id")?,
        "name": r.try_get::<String, _>("name")?,
        "scopes": scopes.split(',').filter(|s| !s.is_empty()).collect::<Vec<_>>(),
        "permission": r.try_get::<String, _>("permission")?,
        "expires_at": null,
        "created_at": r.try_get::<String, _>("created_at")?,
    }))
}

/// Tokens belong to a provider user, or to nobody (the bootstrap token and those it made);
/// `COALESCE(user_id, 0) = owner(..)` selects either (user ids start at 1).
fn owner(user_id: Option<i64>) -> i64 {
    user_id.unwrap_or(0)
}

pub async fn list_tokens(db: &Db, user_id: Option<i64>) -> Result<Vec<serde_json::Value>, ApiError> {
    let rows = sqlx::query(&format!(
        "SELECT {TOKEN_COLUMNS} FROM access_tokens WHERE COALESCE(user_id, 0) = $1 ORDER BY id"
    ))
    .bind(owner(user_id))
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(token_json).collect()
}

pub async fn find_token(db: &Db, user_id: Option<i64>, token_id: i64) -> Result<serde_json::Value, ApiError> {
    let row = sqlx::query(&format!(
        "SELECT {TOKEN_COLUMNS} FROM access_tokens WHERE id = $1 AND COALESCE(user_id, 0) = $2"
    ))
    .bind(token_id)
    .bind(owner(user_id))
    .fetch_optional(&db.pool)
    .await?
    .ok_or(ApiError::NotFound)?;
    token_json(&row)
}

pub async fn delete_token(db: &Db, user_id: Option<i64>, token_id: i64) -> Result<(), ApiError> {
    let done = sqlx::query("DELETE FROM access_tokens WHERE id = $1 AND COALESCE(user_id, 0) = $2")
        .bind(token_id)
        .bind(owner(user_id))
        .execute(&db.pool)
        .await?;
    if done.rows_affected() == 0 {
        return Err(ApiError::NotFound);
    }
    Ok(())
}

/// Creates a token for `owner` (a provider user, or `None`: owner-less like the bootstrap
/// token). The value is in this answer only; the database keeps its hash. A member may only
/// hold scopes whose sections they hold.
pub async fn create_token(db: &Db, owner: Option<i64>, p: &Params) -> Result<serde_json::Value, ApiError> {
    let name = p.required("name")?.trim().to_string();
    let permission = p.required("permission")?;
    if !matches!(permission, "ro" | "rw") {
        return Err(ApiError::invalid("permission", "must be ro or rw"));
    }
    let mut scopes = Vec::new();
    for s in p.all("scopes").into_iter().filter(|s| !s.is_empty()) {
        let scope = Scope::parse(s).ok_or_else(|| {
            ApiError::invalid(
                "scopes",
                format!("unknown scope `{s}` (account_management, analytics, finance, stats)"),
            )
        })?;
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    if scopes.is_empty() {
        return Err(ApiError::invalid("scopes", "can't be blank"));
    }
    let member = match owner {
        Some(user_id) => member_of(db, user_id).await?,
        None => None,
    };
    if let Some(member) = &member {
        if let Some(s) = scopes
            .iter()
            .find(|s| !member.sections.iter().any(|x| s.sections().contains(&x.as_str())))
        {
            let needed = s.sections().join(" or ");
            return Err(ApiError::invalid(
                "scopes",
                format!("`{}` needs the {needed} section", s.as_str()),
            ));
        }
    }
    let value = generate_token();
    let joined: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    let row = sqlx::query(&format!(
        "INSERT INTO access_tokens (user_id, name, value_hash, scopes, permission, created_at)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {TOKEN_COLUMNS}"
    ))
    .bind(owner)
    .bind(name)
    .bind(hash_token(&value))
    .bind(joined.join(","))
    .bind(permission)
    .bind(crate::time::now())
    .fetch_one(&db.pool)
    .await?;
    let mut token = token_json(&row)?;
    token["value"] = serde_json::Value::String(value);
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions() {
        let ro = AccessToken {
            id: 1,
            user_id: None,
            scopes: vec!["account_management".into()],
            permission: "ro".into(),
        };
        assert!(ro.allows(Scope::AccountManagement, Access::Read));
        assert!(!ro.allows(Scope::AccountManagement, Access::Write));
        assert!(!ro.allows(Scope::Finance, Access::Read));
        let rw = AccessToken {
            permission: "rw".into(),
            ..ro
        };
        assert!(rw.allows(Scope::AccountManagement, Access::Write));
    }

    #[test]
    fn tokens_are_hashed_and_random() {
        assert_eq!(hash_token("abc").len(), 64);
        assert_ne!(hash_token("abc"), "abc");
        assert_ne!(generate_token(), generate_token());
    }
}
