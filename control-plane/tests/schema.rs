//! SQLite and PostgreSQL, migrated from the one migration source, hold the same schema: the
//! same tables, columns, types (SQLite's 64-bit INTEGER is PostgreSQL's bigint, TEXT is text),
//! nullability, primary keys and named indexes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failure report

use sqlx::Row;
use std::collections::BTreeMap;
use tollgate::db::Db;
use tollgate::testing::{fresh_database, Backend};

/// (table, column) → (type, nullable, part of the primary key).
type Columns = BTreeMap<(String, String), (String, bool, bool)>;

async fn sqlite_schema(db: &Db) -> (Columns, Vec<String>) {
    let rows = sqlx::query(
        "SELECT m.name AS t, p.name AS c, p.type AS ty, p.\"notnull\" AS nn, p.pk AS pk
         FROM sqlite_master m JOIN pragma_table_info(m.name) p
         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name <> '_sqlx_migrations'",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let mut columns = Columns::new();
    for r in rows {
        let ty = match r.get::<String, _>("ty").to_ascii_uppercase().as_str() {
            // 64 bits in SQLite: PostgreSQL's bigint.
            "INTEGER" => "bigint".to_string(),
            "TEXT" => "text".to_string(),
            other => panic!("a column of SQLite type {other}: the one-source rules only know INTEGER and TEXT"),
        };
        // SQLite lets a primary key hold NULL unless it is INTEGER; PostgreSQL never does.
        let pk = r.get::<i64, _>("pk") > 0;
        columns.insert((r.get("t"), r.get("c")), (ty, r.get::<i64, _>("nn") == 0 && !pk, pk));
    }
    let indexes: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY name")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    (columns, indexes)
}

async fn postgres_schema(db: &Db) -> (Columns, Vec<String>) {
    let rows = sqlx::query(
        "SELECT c.table_name::text AS t, c.column_name::text AS c, c.data_type::text AS ty,
                c.is_nullable::text AS nullable,
                EXISTS (SELECT 1 FROM information_schema.table_constraints k
                        JOIN information_schema.key_column_usage u
                          ON u.constraint_name = k.constraint_name AND u.table_name = k.table_name
                        WHERE k.constraint_type = 'PRIMARY KEY' AND k.table_name = c.table_name
                          AND u.column_name = c.column_name) AS pk
         FROM information_schema.columns c
         WHERE c.table_schema = 'public' AND c.table_name <> '_sqlx_migrations'",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let mut columns = Columns::new();
    for r in rows {
        // PostgreSQL's own names: a 32-bit `integer` does not pass for SQLite's INTEGER.
        let ty: String = r.get("ty");
        columns.insert(
            (r.get("t"), r.get("c")),
            (ty, r.get::<String, _>("nullable") == "YES", r.get::<bool, _>("pk")),
        );
    }
    // Indexes created by CREATE INDEX (not those behind PRIMARY KEY and UNIQUE constraints).
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT i.indexname::text FROM pg_indexes i WHERE i.schemaname = 'public'
           AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)
         ORDER BY i.indexname",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    (columns, indexes)
}

#[tokio::test]
async fn sqlite_and_postgres_schemas_agree() {
    let (sqlite_db, postgres_db) = (
        fresh_database(Backend::Sqlite).await,
        fresh_database(Backend::Postgres).await,
    );
    let sqlite = Db::connect(&sqlite_db.url).await.unwrap();
    sqlite.migrate().await.unwrap();
    let postgres = Db::connect(&postgres_db.url).await.unwrap();
    postgres.migrate().await.unwrap();

    let (s_columns, s_indexes) = sqlite_schema(&sqlite).await;
    let (p_columns, p_indexes) = postgres_schema(&postgres).await;
    assert!(
        s_columns.len() > 100,
        "the schema was read: {} columns",
        s_columns.len()
    );
    let only = |a: &Columns, b: &Columns| -> Vec<String> {
        a.keys()
            .filter(|k| !b.contains_key(*k))
            .map(|(t, c)| format!("{t}.{c}"))
            .collect()
    };
    assert_eq!(only(&s_columns, &p_columns), Vec::<String>::new(), "only in SQLite");
    assert_eq!(only(&p_columns, &s_columns), Vec::<String>::new(), "only in PostgreSQL");
    for (key, s) in &s_columns {
        assert_eq!(
            Some(s),
            p_columns.get(key),
            "{}.{} (type, nullable, primary key)",
            key.0,
            key.1
        );
    }
    assert_eq!(s_indexes, p_indexes);
    assert_eq!(
        sqlite.schema_version().await.unwrap(),
        postgres.schema_version().await.unwrap()
    );

    sqlite.pool.close().await;
    postgres.pool.close().await;
}
