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

/// The caller's token, if it grants `scope` with `access`; otherwise 403 "Access denied".
pub async fn authorize(
    db: &Db,
    headers: &HeaderMap,
    params: &Params,
    scope: Scope,
    access: Access,
) -> Result<AccessToken, ApiError> {
    let value = presented_token(headers, params).ok_or(ApiError::AccessDenied)?;
    let row = sqlx::query("SELECT id, scopes, permission FROM access_tokens WHERE value_hash = $1")
        .bind(hash_token(value))
        .fetch_optional(&db.pool)
        .await?
        .ok_or(ApiError::AccessDenied)?;
    let scopes: String = row.try_get("scopes")?;
    let token = AccessToken {
        id: row.try_get("id")?,
        scopes: scopes.split(',').map(str::to_string).collect(),
        permission: row.try_get("permission")?,
    };
    if token.allows(scope, access) {
        Ok(token)
    } else {
        Err(ApiError::AccessDenied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions() {
        let ro = AccessToken {
            id: 1,
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
