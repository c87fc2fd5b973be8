//! Invitations to the provider's staff (3scale Ch. 3 "Invite a user") and to a developer
//! account (Ch. 14): an admin names an e-mail address (and, for a developer, the account); the
//! invitee gets a link with a random token (kept only as its SHA-256), picks a user name and
//! password, and becomes an active member — of the staff, with no sections until an admin
//! grants some, or of the developer account, signing in to the portal. A token opens once, and
//! only for [`VALID_DAYS`].
//!
//! The user is created with the API's own create (the same checks: a unique user name, the
//! password rules, the hash), in the same transaction that marks the invitation accepted, so
//! two tabs accepting one link make one user.

use crate::auth::{generate_token, hash_token};
use crate::catalog::accounts::USERS;
use crate::catalog::crud;
use crate::catalog::provider::PROVIDER_USERS;
use crate::catalog::resource::EventInput;
use crate::db::Db;
use crate::error::{Result, StoreError};
use chrono::{DateTime, Duration, Utc};
use sqlx::Row;
use tollgate_domain::form::Form;
use tollgate_domain::ids::{AccountId, ProviderUserId, UserId};

/// How long an invitation opens.
pub const VALID_DAYS: i64 = 14;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitation {
    pub id: i64,
    pub email: String,
    /// The developer account the invitee joins; `None`: the provider's staff.
    pub account_id: Option<AccountId>,
    pub created_at: String,
    pub accepted_at: Option<String>,
}

/// Whom an accepted invitation made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    Staff(ProviderUserId),
    Developer(UserId),
}

const COLUMNS: &str = "id, email, account_id, created_at, accepted_at";

fn of_row(r: &crate::db::Row) -> Result<Invitation> {
    Ok(Invitation {
        id: r.try_get("id")?,
        email: r.try_get("email")?,
        account_id: r.try_get::<Option<i64>, _>("account_id")?.map(AccountId::new),
        created_at: r.try_get("created_at")?,
        accepted_at: r.try_get("accepted_at")?,
    })
}

/// A plausible address: one `@` with something either side, a dot in the domain, no spaces.
fn check_email(email: &str) -> std::result::Result<(), &'static str> {
    let plausible = match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && domain.contains('.') && !domain.contains('@') && !domain.starts_with('.')
        }
        None => false,
    };
    match plausible && !email.chars().any(char::is_whitespace) && email.len() <= 254 {
        true => Ok(()),
        false => Err("is not an e-mail address"),
    }
}

/// A new invitation for `email` to the staff (`account`: `None`) or to a developer account,
/// and the token its link carries (shown or sent once).
pub async fn create(db: &Db, email: &str, account: Option<AccountId>) -> Result<(Invitation, String)> {
    let email = email.trim();
    check_email(email).map_err(|e| StoreError::invalid("email", e))?;
    if let Some(account) = account {
        crate::catalog::accounts::ensure(db, account).await?;
    }
    let token = generate_token();
    let row = sqlx::query(&format!(
        "INSERT INTO invitations (email, token_hash, created_at, account_id) VALUES ($1, $2, $3, $4)
         RETURNING {COLUMNS}"
    ))
    .bind(email)
    .bind(hash_token(&token))
    .bind(crate::time::now())
    .bind(account.map(AccountId::get))
    .fetch_one(&db.pool)
    .await?;
    Ok((of_row(&row)?, token))
}

/// Every invitation to the staff (`None`) or to one developer account, newest first.
pub async fn list(db: &Db, account: Option<AccountId>) -> Result<Vec<Invitation>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM invitations WHERE COALESCE(account_id, 0) = $1 ORDER BY id DESC"
    ))
    .bind(account.map_or(0, AccountId::get))
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(of_row).collect()
}

/// Cancels an invitation to the staff (its link stops opening).
pub async fn delete(db: &Db, id: i64) -> Result<()> {
    let done = sqlx::query("DELETE FROM invitations WHERE id = $1 AND account_id IS NULL")
        .bind(id)
        .execute(&db.pool)
        .await?;
    match done.rows_affected() {
        0 => Err(StoreError::NotFound),
        _ => Ok(()),
    }
}

fn still_valid(created_at: &str, now: DateTime<Utc>) -> bool {
    DateTime::parse_from_rfc3339(created_at).is_ok_and(|t| now - t.with_timezone(&Utc) < Duration::days(VALID_DAYS))
}

/// The invitation a link's token opens now: not accepted, not expired.
pub async fn open(db: &Db, token: &str, now: DateTime<Utc>) -> Result<Option<Invitation>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM invitations WHERE token_hash = $1 AND accepted_at IS NULL"
    ))
    .bind(hash_token(token))
    .fetch_optional(&db.pool)
    .await?;
    Ok(row
        .map(|r| of_row(&r))
        .transpose()?
        .filter(|i| still_valid(&i.created_at, now)))
}

/// Accepts the invitation `token` opens with the chosen `username` and `password`: an active
/// member of the staff or of the developer account, made by the API's create. `NotFound`:
/// the link does not open (used, cancelled, expired).
pub async fn accept(db: &Db, token: &str, username: &str, password: &str, now: DateTime<Utc>) -> Result<Accepted> {
    let invitation = open(db, token, now).await?.ok_or(StoreError::NotFound)?;
    let mut tx = db.begin_write().await?;
    let claimed = sqlx::query("UPDATE invitations SET accepted_at = $1 WHERE id = $2 AND accepted_at IS NULL")
        .bind(crate::time::now())
        .bind(invitation.id)
        .execute(&mut *tx)
        .await?;
    if claimed.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    let form = Form::of(&[
        ("username", username),
        ("password", password),
        ("email", &invitation.email),
    ]);
    let activate = EventInput {
        name: "activate".into(),
        plan_id: None,
    };
    let accepted = match invitation.account_id {
        None => {
            let values = PROVIDER_USERS.resource.values_for_create(&form)?;
            let user = crud::create_in(&mut tx, &PROVIDER_USERS, &[], values).await?;
            crud::event_in(&mut tx, &PROVIDER_USERS, &[], user.id(), &activate).await?;
            sqlx::query("UPDATE invitations SET user_id = $1 WHERE id = $2")
                .bind(user.id())
                .bind(invitation.id)
                .execute(&mut *tx)
                .await?;
            Accepted::Staff(ProviderUserId::new(user.id()))
        }
        Some(account) => {
            let scope = [account.get()];
            let values = USERS.resource.values_for_create(&form)?;
            let user = crud::create_in(&mut tx, &USERS, &scope, values).await?;
            crud::event_in(&mut tx, &USERS, &scope, user.id(), &activate).await?;
            Accepted::Developer(UserId::new(user.id()))
        }
    };
    tx.commit().await?;
    Ok(accepted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        for ok in ["a@b.co", "first.last+tag@example.com"] {
            assert!(check_email(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a", "a@b", "@b.co", "a@.co", "a b@c.co", "a@b@c.co"] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_invitation_opens_for_its_days_only() {
        let now = Utc::now();
        let at = |days: i64| (now - Duration::days(days)).to_rfc3339();
        assert!(still_valid(&at(0), now) && still_valid(&at(VALID_DAYS - 1), now));
        assert!(!still_valid(&at(VALID_DAYS), now) && !still_valid("garbage", now));
    }
}
