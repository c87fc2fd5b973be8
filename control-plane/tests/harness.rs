//! The test harness cleans up after itself, also after a test that fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failure report

use tollgate::testing::{postgres_admin_url, Backend, TestApp};

#[tokio::test]
async fn a_panicking_test_leaves_no_postgres_database_behind() {
    let (named, name) = tokio::sync::oneshot::channel();
    let test = tokio::spawn(async move {
        let app = TestApp::spawn(Backend::Postgres).await;
        named.send(app.postgres_database().unwrap().to_string()).unwrap();
        panic!("a failing test");
    });
    assert!(test.await.unwrap_err().is_panic());
    let name = name.await.unwrap();
    let admin = sqlx::PgPool::connect(&postgres_admin_url()).await.unwrap();
    let left: Option<String> = sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_optional(&admin)
        .await
        .unwrap();
    assert_eq!(left, None, "database {name} was left behind");
}
