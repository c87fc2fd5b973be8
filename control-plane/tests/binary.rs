//! The `tollgate` binary itself: migrate, serve, configuration errors, graceful SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failure report

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn tollgate(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "TOLLGATE_DATABASE_URL",
            format!("sqlite://{}", dir.join("t.db").display()),
        )
        // Tests run side by side: no fixed xDS port.
        .env("TOLLGATE_XDS_LISTEN", "off")
        .current_dir(dir);
    cmd
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn migrate_creates_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let out = tollgate(dir.path()).arg("migrate").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.path().join("t.db").exists());
}

#[test]
fn bad_configuration_exits_2_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let out = tollgate(dir.path())
        .arg("serve")
        .env("TOLLGATE_LISTEN", "not-an-address")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("TOLLGATE_LISTEN"));
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = tollgate(dir.path())
        .arg("serve")
        .env("TOLLGATE_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn billing_run_for_a_date_prints_what_it_did_and_twice_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let run = || {
        let out = tollgate(dir.path())
            .args(["billing", "run", "--date", "2026-11-01"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let first = run();
    assert_eq!(first["date"], "2026-11-01");
    assert_eq!(run()["lines_billed"], 0);
    let out = tollgate(dir.path())
        .args(["billing", "run", "--date", "yesterday"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a bad date is a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a date"));
}

#[test]
fn seed_demo_makes_the_demo_once_and_says_what_it_made() {
    let dir = tempfile::tempdir().unwrap();
    let seed = || {
        let out = tollgate(dir.path())
            .args(["seed", "demo", "--user-key", "k1"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let first = seed();
    assert_eq!(first["user_key"], "k1");
    assert!(
        first["service_token"].as_str().is_some_and(|t| t.len() == 64),
        "{first}"
    );
    assert_eq!(seed(), first, "seeding again answers what is there");
    let out = tollgate(dir.path())
        .args(["seed", "demo", "--limit", "fortnight=3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a bad limit is a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("fortnight"));
}

#[tokio::test]
async fn the_run_commands_seed_signs_the_console_admin_and_the_demo_developer_in_with_one_password() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("password");
    std::fs::write(&file, "s3cret-demo\n").unwrap();
    let out = tollgate(dir.path())
        .args(["seed", "demo", "--console-password-file"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config = tollgate::config::Config {
        database_url: format!("sqlite://{}", dir.path().join("t.db").display()),
        ..Default::default()
    };
    let db = tollgate::startup::database(&config).await.unwrap();
    let throttle = tollgate::domain::sign_in::Throttle::default();
    let now = chrono::Utc::now();
    use tollgate::store::console::{sign_in_to, Console, Portal};
    let admin = sign_in_to::<Console>(&db, &throttle, "admin", "s3cret-demo", "test", now)
        .await
        .unwrap();
    assert!(admin.is_ok(), "the console's admin: {admin:?}");
    let developer = sign_in_to::<Portal>(&db, &throttle, "demo@example.com", "s3cret-demo", "test", now)
        .await
        .unwrap();
    assert!(developer.is_ok(), "the demo developer, in the portal: {developer:?}");
}
