//! Access tokens for the admin API (3scale §6): a value shown once and stored only as its
//! SHA-256; scopes and a read-only / read-write permission. [`principal`] says who presents a
//! token; what they may do is the domain's question ([`Principal::allows`]).

use crate::db::{Db, Row};
use crate::error::{Result, StoreError};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::Row as _;
use tollgate_domain::access::{Member, Principal, Scope, Section, TokenPermission};
use tollgate_domain::catalog::{Role, UserState};
use tollgate_domain::form::{Form, FromForm};
use tollgate_domain::ids::{ProviderUserId, ServiceId, TokenId};
use tollgate_domain::Invalid;

pub fn hash_token(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// A fresh random token value (256 bits, hex).
pub fn generate_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn scopes_text(scopes: &[Scope]) -> String {
    let names: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    names.join(",")
}

/// Makes sure an all-scopes read-write token with this value exists (`TOLLGATE_ADMIN_TOKEN`).
pub async fn ensure_admin_token(db: &Db, value: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO access_tokens (name, value_hash, scopes, permission, created_at) VALUES ($1, $2, $3, 'rw', $4)
         ON CONFLICT (value_hash) DO UPDATE SET scopes = excluded.scopes, permission = 'rw'",
    )
    .bind("TOLLGATE_ADMIN_TOKEN")
    .bind(hash_token(value))
    .bind(scopes_text(&Scope::ALL))
    .bind(crate::time::now())
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Who presents the token `value`, with their limits if they are a member; denied for an
/// unknown token or a suspended user.
pub async fn principal(db: &Db, value: &str) -> Result<Principal> {
    let row = sqlx::query("SELECT id, user_id, scopes, permission FROM access_tokens WHERE value_hash = $1")
        .bind(hash_token(value))
        .fetch_optional(&db.pool)
        .await?
        .ok_or(StoreError::AccessDenied)?;
    let user_id = row.try_get::<Option<i64>, _>("user_id")?.map(ProviderUserId::new);
    let scopes: String = row.try_get("scopes")?;
    let permission: String = row.try_get("permission")?;
    let member = match user_id {
        None => None,
        Some(user) => member_of(db, user).await?,
    };
    Ok(Principal {
        token_id: TokenId::new(row.try_get("id")?),
        user_id,
        scopes: scopes.split(',').filter_map(Scope::parse).collect(),
        permission: TokenPermission::parse(&permission).unwrap_or(TokenPermission::ReadOnly),
        member,
    })
}

/// Who presents the provider account's key (3scale's `provider_key`): the account itself, an
/// admin with every scope.
pub async fn principal_by_provider_key(db: &Db, key: &str) -> Result<Principal> {
    let found: Option<i64> = sqlx::query_scalar("SELECT id FROM provider_account WHERE provider_key = $1")
        .bind(key)
        .fetch_optional(&db.pool)
        .await?;
    found.ok_or(StoreError::AccessDenied)?;
    Ok(Principal {
        token_id: TokenId::new(0),
        user_id: None,
        scopes: Scope::ALL.to_vec(),
        permission: TokenPermission::ReadWrite,
        member: None,
    })
}

/// A provider user's limits: `None` for admins; denied for suspended or unknown users.
pub async fn member_of(db: &Db, user: ProviderUserId) -> Result<Option<Member>> {
    let row =
        sqlx::query("SELECT role, state, allowed_sections, allowed_service_ids FROM provider_users WHERE id = $1")
            .bind(user.get())
            .fetch_optional(&db.pool)
            .await?
            .ok_or(StoreError::AccessDenied)?;
    if UserState::parse(&row.try_get::<String, _>("state")?) == Some(UserState::Suspended) {
        return Err(StoreError::AccessDenied);
    }
    if Role::parse(&row.try_get::<String, _>("role")?) == Some(Role::Admin) {
        return Ok(None);
    }
    let sections: String = row.try_get("allowed_sections")?;
    let services: Option<String> = row.try_get("allowed_service_ids")?;
    Ok(Some(Member {
        sections: sections.split(',').filter_map(Section::parse).collect(),
        services: services.map(|s| {
            s.split(',')
                .filter_map(|x| x.parse().ok())
                .map(ServiceId::new)
                .collect()
        }),
    }))
}

/// An access token as listed (its value is never kept: only [`NewTokenValue`] shows it once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub id: TokenId,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub permission: TokenPermission,
    pub created_at: String,
}

/// A token just created, with its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTokenValue {
    pub token: Token,
    pub value: String,
}

const TOKEN_COLUMNS: &str = "id, name, scopes, permission, created_at";

fn token(r: &Row) -> Result<Token> {
    let scopes: String = r.try_get("scopes")?;
    let permission: String = r.try_get("permission")?;
    Ok(Token {
        id: TokenId::new(r.try_get("id")?),
        name: r.try_get("name")?,
        scopes: scopes.split(',').filter_map(Scope::parse).collect(),
        permission: TokenPermission::parse(&permission).unwrap_or(TokenPermission::ReadOnly),
        created_at: r.try_get("created_at")?,
    })
}

/// Tokens belong to a provider user, or to nobody (the bootstrap token and those it made);
/// `COALESCE(user_id, 0) = owner(..)` selects either (user ids start at 1).
fn owner(user: Option<ProviderUserId>) -> i64 {
    user.map_or(0, ProviderUserId::get)
}

pub async fn list_tokens(db: &Db, user: Option<ProviderUserId>) -> Result<Vec<Token>> {
    let rows = sqlx::query(&format!(
        "SELECT {TOKEN_COLUMNS} FROM access_tokens WHERE COALESCE(user_id, 0) = $1 ORDER BY id"
    ))
    .bind(owner(user))
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(token).collect()
}

pub async fn find_token(db: &Db, user: Option<ProviderUserId>, id: TokenId) -> Result<Token> {
    let row = sqlx::query(&format!(
        "SELECT {TOKEN_COLUMNS} FROM access_tokens WHERE id = $1 AND COALESCE(user_id, 0) = $2"
    ))
    .bind(id.get())
    .bind(owner(user))
    .fetch_optional(&db.pool)
    .await?
    .ok_or(StoreError::NotFound)?;
    token(&row)
}

pub async fn delete_token(db: &Db, user: Option<ProviderUserId>, id: TokenId) -> Result<()> {
    let done = sqlx::query("DELETE FROM access_tokens WHERE id = $1 AND COALESCE(user_id, 0) = $2")
        .bind(id.get())
        .bind(owner(user))
        .execute(&db.pool)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// A token to create: its name, scopes and permission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    pub name: String,
    pub scopes: Vec<Scope>,
    pub permission: TokenPermission,
}

impl FromForm for NewToken {
    fn from_form(p: &Form) -> Result<Self, Invalid> {
        let name = p.required("name")?.trim().to_string();
        let permission = TokenPermission::parse(p.required("permission")?)
            .ok_or_else(|| Invalid::field("permission", "must be ro or rw"))?;
        let mut scopes = Vec::new();
        for s in p.all("scopes").into_iter().filter(|s| !s.is_empty()) {
            let scope = Scope::parse(s).ok_or_else(|| {
                Invalid::field(
                    "scopes",
                    format!("unknown scope `{s}` (account_management, analytics, finance, stats)"),
                )
            })?;
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        if scopes.is_empty() {
            return Err(Invalid::field("scopes", "can't be blank"));
        }
        Ok(NewToken {
            name,
            scopes,
            permission,
        })
    }
}

/// Creates a token for `owner` (a provider user, or `None`: owner-less like the bootstrap
/// token). The value is in this answer only; the database keeps its hash. A member may only
/// hold scopes whose sections they hold.
pub async fn create_token(db: &Db, owner: Option<ProviderUserId>, t: NewToken) -> Result<NewTokenValue> {
    let member = match owner {
        Some(user) => {
            let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM provider_users WHERE id = $1")
                .bind(user.get())
                .fetch_optional(&db.pool)
                .await?;
            exists.ok_or(StoreError::NotFound)?;
            member_of(db, user).await?
        }
        None => None,
    };
    if let Some(member) = &member {
        if let Some(s) = t
            .scopes
            .iter()
            .find(|s| !member.sections.iter().any(|x| s.sections().contains(x)))
        {
            let needed: Vec<&str> = s.sections().iter().map(|x| x.as_str()).collect();
            return Err(StoreError::invalid(
                "scopes",
                format!("`{}` needs the {} section", s.as_str(), needed.join(" or ")),
            ));
        }
    }
    let value = generate_token();
    let row = sqlx::query(&format!(
        "INSERT INTO access_tokens (user_id, name, value_hash, scopes, permission, created_at)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {TOKEN_COLUMNS}"
    ))
    .bind(owner.map(ProviderUserId::get))
    .bind(&t.name)
    .bind(hash_token(&value))
    .bind(scopes_text(&t.scopes))
    .bind(t.permission.as_str())
    .bind(crate::time::now())
    .fetch_one(&db.pool)
    .await?;
    Ok(NewTokenValue {
        token: token(&row)?,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_hashed_and_random() {
        assert_eq!(hash_token("abc").len(), 64);
        assert_ne!(hash_token("abc"), "abc");
        assert_ne!(generate_token(), generate_token());
    }

    #[test]
    fn new_tokens_name_their_bad_fields() {
        let bad = |pairs: &[(&str, &str)]| {
            NewToken::from_form(&Form::of(pairs))
                .err()
                .map(|e| e.0[0].field.clone())
        };
        assert_eq!(
            bad(&[("permission", "rw"), ("scopes[]", "finance")]).as_deref(),
            Some("name")
        );
        assert_eq!(
            bad(&[("name", "t"), ("permission", "x"), ("scopes[]", "finance")]).as_deref(),
            Some("permission")
        );
        assert_eq!(
            bad(&[("name", "t"), ("permission", "ro"), ("scopes[]", "nope")]).as_deref(),
            Some("scopes")
        );
        assert_eq!(bad(&[("name", "t"), ("permission", "ro")]).as_deref(), Some("scopes"));
    }
}
