//! One migration source for both engines. The files in `migrations/` are written in SQLite's
//! dialect; PostgreSQL's migrations are derived from them by three mechanical rules, so the two
//! schemas cannot drift apart (the `schema` integration test compares them column by column):
//!
//! 1. `INTEGER PRIMARY KEY AUTOINCREMENT` becomes `BIGSERIAL PRIMARY KEY`;
//! 2. every other `INTEGER` becomes `BIGINT` (SQLite's integers are 64 bits);
//! 3. a line `-- postgres: <statement>` is `<statement>` on PostgreSQL (a comment on SQLite):
//!    for the few statements only PostgreSQL needs, e.g. widening a column.
//!
//! Migrations already applied are never edited: sqlx refuses to start on a database whose
//! applied migration no longer matches its checksum. Before this module the PostgreSQL files were
//! kept by hand, and two of their columns had drifted to `INTEGER`; [`LEGACY_INTEGER`] keeps
//! those two as they were written, so that existing databases keep their checksums, and
//! migration 0010 widens them.

use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, Migrator};
use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

/// The source migrations (SQLite's dialect), embedded at compile time.
pub static SOURCE: Migrator = sqlx::migrate!("./migrations");

/// Columns that stay `INTEGER` on PostgreSQL in the migration that created them (version,
/// the column's definition as written): the hand-kept files had them so.
const LEGACY_INTEGER: &[(i64, &str)] = &[
    (4, "low_balance INTEGER NOT NULL"),
    (7, "charging_enabled INTEGER NOT NULL"),
];

const POSTGRES_ONLY: &str = "-- postgres: ";

/// A migration's SQL in PostgreSQL's dialect.
pub fn to_postgres(version: i64, sqlite: &str) -> String {
    let mut out = String::with_capacity(sqlite.len() + 64);
    for line in sqlite.split_inclusive('\n') {
        if let Some(statement) = line.strip_prefix(POSTGRES_ONLY) {
            out.push_str(statement);
            continue;
        }
        let legacy = LEGACY_INTEGER
            .iter()
            .any(|(v, column)| *v == version && line.trim_start().starts_with(column));
        if legacy {
            out.push_str(line);
        } else {
            out.push_str(&widen(
                &line.replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY"),
            ));
        }
    }
    out
}

/// `INTEGER` as a whole word becomes `BIGINT`.
fn widen(line: &str) -> String {
    const WORD: &str = "INTEGER";
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find(WORD) {
        let (before, after) = (&rest[..at], &rest[at + WORD.len()..]);
        let boundary = |c: Option<char>| c.is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        out.push_str(before);
        if boundary(before.chars().next_back()) && boundary(after.chars().next()) {
            out.push_str("BIGINT");
        } else {
            out.push_str(WORD);
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// The source migrations translated for PostgreSQL (a [`MigrationSource`] for
/// [`Migrator::new`]).
#[derive(Debug)]
struct Postgres;

impl MigrationSource<'static> for Postgres {
    fn resolve(self) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send>> {
        Box::pin(async {
            Ok(SOURCE
                .iter()
                .map(|m| {
                    Migration::new(
                        m.version,
                        m.description.clone(),
                        m.migration_type,
                        Cow::Owned(to_postgres(m.version, &m.sql)),
                        m.no_tx,
                    )
                })
                .collect())
        })
    }
}

/// PostgreSQL's migrator, derived from [`SOURCE`].
pub async fn postgres() -> Result<Migrator, sqlx::migrate::MigrateError> {
    Migrator::new(Postgres).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha384};

    /// SHA-384 of the PostgreSQL migrations as the hand-kept files had them: databases migrated
    /// before this module hold these checksums, and sqlx refuses to start if they change.
    const APPLIED: &[(i64, &str)] = &[
        (
            1,
            "2ac745174f5fe64377488f1ea579a55fae8baf6eac9a708a7eec3ef90bb6636a5d89279f0a2d2f23f71b0a0690ddf55f",
        ),
        (
            2,
            "910d260e057d1e35ac24502db95629a4b07d8db1a764b0b4a1c0d147fc6c3a82d3cc5c5a86f80d621143238331ac2d3a",
        ),
        (
            3,
            "9062d36c41faf04b43a74fc7708420041daec3992c0ebbc4a28fb45309a2bdde77d5ae2609a758c60064a1a3eeed7588",
        ),
        (
            4,
            "6bfe2fc6ad80422258c28798f9b04393b9d9bff3be2cd8c9e6843fd0690b72cc2c279f363fcb3ed62e9bb20a29b200d0",
        ),
        (
            5,
            "d58d96cc026e626b04c7cd4e6e7a49df070336ed3a4718ee25d61b75009534eccf7c8b1f8bc7b8338dfbcf002acdb915",
        ),
        (
            6,
            "0d5ccdee324188c15f81de95d8638206a80bd25d6a7e6ae76ed793e1f0b9e5358ddf52d7154640a8137053a8849bf1ce",
        ),
        (
            7,
            "2d0b6ae2977bfc34e10bc6e5f92af82afbdf4c2bfe38cd3411c5e9561b017c89a13a19fd1ff09f87c3db5ed9d4d3e268",
        ),
        (
            8,
            "51c7f61bb1a0a26d2431b4c26a24ab147b4ee01955835e1bf183d7d063486495f2ab5639e54900c298b1b24ff4e309ac",
        ),
        (
            9,
            "ab619f31ed58fbec2ff74f65fc7bdcea7779f93382343ab6cefbba778313a635a9437b79a2d8daadee880acaf6fcc8e5",
        ),
    ];

    #[test]
    fn applied_postgres_migrations_keep_their_checksums() {
        for (version, expected) in APPLIED {
            let m = SOURCE.iter().find(|m| m.version == *version).unwrap();
            let sum: String = Sha384::digest(to_postgres(m.version, &m.sql).as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(&sum, expected, "migration {version} changed for PostgreSQL");
        }
    }

    #[test]
    fn the_rules() {
        assert_eq!(
            to_postgres(
                99,
                "id INTEGER PRIMARY KEY AUTOINCREMENT,\n n INTEGER NOT NULL, x INTEGERS\n"
            ),
            "id BIGSERIAL PRIMARY KEY,\n n BIGINT NOT NULL, x INTEGERS\n"
        );
        assert_eq!(
            to_postgres(4, "    low_balance INTEGER NOT NULL\n"),
            "    low_balance INTEGER NOT NULL\n"
        );
        assert_eq!(
            to_postgres(5, "    low_balance INTEGER NOT NULL\n"),
            "    low_balance BIGINT NOT NULL\n"
        );
        assert_eq!(
            to_postgres(10, "-- postgres: ALTER TABLE t;\n-- note\n"),
            "ALTER TABLE t;\n-- note\n"
        );
    }
}
