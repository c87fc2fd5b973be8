//! The one error of storage and its use cases. The HTTP API maps it to responses in one place;
//! the domain's own [`Invalid`] passes through unchanged.

use crate::counters::CounterError;
use tollgate_domain::Invalid;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// What was named does not exist (or is not the caller's to see).
    #[error("not found")]
    NotFound,
    /// The input does not hold; every bad field named.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// The caller's token does not allow it (or there is no token).
    #[error("access denied")]
    AccessDenied,
    /// The counter store did not answer.
    #[error(transparent)]
    Counters(#[from] CounterError),
    #[error("database: {0}")]
    Database(sqlx::Error),
    /// Our own fault: data that should not be there.
    #[error("internal: {0}")]
    Internal(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A foreign-key violation is the client's mistake (deleting what is still used, or naming a
/// row that does not exist): invalid on `base`, as Rails reports errors of the whole record.
impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if is_foreign_key_violation(&e) {
            StoreError::Invalid(Invalid::base(
                "is still in use, or refers to something that does not exist",
            ))
        } else {
            StoreError::Database(e)
        }
    }
}

impl StoreError {
    /// Invalid on one field.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        StoreError::Invalid(Invalid::field(field, message))
    }
}

/// Whether a database error is a foreign-key violation (both engines): a row still in use.
pub fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db.is_foreign_key_violation(),
        _ => false,
    }
}

/// Whether a database error is a unique-constraint violation (both engines).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db.is_unique_violation(),
        _ => false,
    }
}
