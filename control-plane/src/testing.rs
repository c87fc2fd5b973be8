//! Test harness (feature `testing`): starts the control plane in-process on a random port
//! against a fresh database — a SQLite file in a temporary directory, or a PostgreSQL database
//! of its own (`TOLLGATE_TEST_POSTGRES_URL`, dropped afterwards) — with a bootstrap admin token.
//! The control plane's integration tests and the end-to-end tests share it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::config::Config;
use crate::startup::Application;
use reqwest::{Client, Method, RequestBuilder};
use serde_json::Value;
use std::net::SocketAddr;
use tokio::sync::oneshot;

pub mod console;

pub const ADMIN_TOKEN: &str = "test-admin-token";

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub addr: SocketAddr,
    /// Where its xDS server listens.
    pub xds_addr: Option<SocketAddr>,
    pub client: Client,
    pub db: tollgate_store::Db,
    /// The app's counter store (to flush usage without waiting for the flusher).
    pub counters: tollgate_store::counters::Counters,
    /// authrep's cache (cleared after writes that bypass the API, as the seed's).
    pub cache: std::sync::Arc<tollgate_store::hot_cache::HotCache>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    config: Config,
    /// Declared last: dropped after the server, even when the test panics.
    database: FreshDatabase,
}

/// What a started control plane hands the test.
struct Started {
    addr: SocketAddr,
    xds_addr: Option<SocketAddr>,
    db: tollgate_store::Db,
    counters: tollgate_store::counters::Counters,
    cache: std::sync::Arc<tollgate_store::hot_cache::HotCache>,
}

pub fn postgres_admin_url() -> String {
    std::env::var("TOLLGATE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://tollgate:tollgate@127.0.0.1:5432/postgres".into())
}

pub fn redis_url() -> String {
    std::env::var("TOLLGATE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn unique_name() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "tollgate_test_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst),
        nanos
    )
}

async fn admin_pg() -> sqlx::PgPool {
    sqlx::PgPool::connect(&postgres_admin_url())
        .await
        .expect("PostgreSQL for tests (run scripts/setup.sh)")
}

fn with_database(url: &str, db: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("postgres url has a database");
    format!("{base}/{db}")
}

/// A test's own database: a SQLite file in a temporary directory, or a PostgreSQL database,
/// removed when this is dropped — also when the test panics.
pub struct FreshDatabase {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    postgres: Option<String>,
}

/// A database of its own for a test on `backend`.
pub async fn fresh_database(backend: Backend) -> FreshDatabase {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("tollgate.db").display());
            FreshDatabase {
                url,
                _dir: Some(dir),
                postgres: None,
            }
        }
        Backend::Postgres => {
            let name = unique_name();
            sqlx::query(&format!("CREATE DATABASE \"{name}\""))
                .execute(&admin_pg().await)
                .await
                .unwrap();
            FreshDatabase {
                url: with_database(&postgres_admin_url(), &name),
                _dir: None,
                postgres: Some(name),
            }
        }
    }
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        let Some(name) = self.postgres.take() else { return };
        // Drop may run on a test's runtime (or while it unwinds): a thread of its own, with a
        // runtime of its own, drops the database. FORCE ends what is still connected.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async move {
                let admin = sqlx::PgPool::connect(&postgres_admin_url())
                    .await
                    .map_err(std::io::Error::other)?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .execute(&admin)
                    .await
                    .map_err(std::io::Error::other)?;
                admin.close().await;
                Ok::<(), std::io::Error>(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("testing: could not drop a test database: {dropped:?}");
        }
    }
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> TestApp {
        // The app's logs in the test's output, filtered by RUST_LOG (none by default).
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .try_init();
        let database = fresh_database(backend).await;
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            database_url: database.url.clone(),
            admin_token: Some(ADMIN_TOKEN.into()),
            // Billing runs only when a test asks for a date.
            billing_hour: None,
            xds_listen: Some("127.0.0.1:0".parse().unwrap()),
            ..Config::default()
        };
        adjust(&mut config);
        Self::started(config, database).await
    }

    /// Starts a control plane on `config`, over `database`.
    async fn started(config: Config, database: FreshDatabase) -> TestApp {
        let (app, stop, server) = Self::start(&config).await;
        TestApp {
            addr: app.addr,
            xds_addr: app.xds_addr,
            client: Client::new(),
            db: app.db,
            counters: app.counters,
            cache: app.cache,
            stop: Some(stop),
            server: Some(server),
            config,
            database,
        }
    }

    async fn start(
        config: &Config,
    ) -> (
        Started,
        oneshot::Sender<()>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    ) {
        let app = Application::build(config).await.expect("application starts");
        let started = Started {
            addr: app.local_addr(),
            xds_addr: app.xds_addr(),
            db: app.state().db.clone(),
            counters: app.state().counters.clone(),
            cache: app.state().cache.clone(),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        }));
        (started, stop, server)
    }

    /// Stops the control plane (gracefully) and starts it again on the same ports and database.
    pub async fn restart(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
        let mut config = self.config.clone();
        config.listen = self.addr;
        config.xds_listen = self.xds_addr;
        let (app, stop, server) = Self::start(&config).await;
        self.db = app.db;
        self.counters = app.counters;
        self.cache = app.cache;
        self.stop = Some(stop);
        self.server = Some(server);
    }

    /// Another replica: a second control plane on this one's database and counters (its own
    /// ports, its own hot cache), as N `tollgate serve` behind one load balancer. Drop it first.
    pub async fn replica(&self, adjust: impl FnOnce(&mut Config)) -> TestApp {
        let mut config = self.config.clone();
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.xds_listen = Some("127.0.0.1:0".parse().unwrap());
        adjust(&mut config);
        // Not its own: the first replica drops the database.
        let database = FreshDatabase {
            url: self.database.url.clone(),
            _dir: None,
            postgres: None,
        };
        Self::started(config, database).await
    }

    /// A replica in a runtime of its own, on a thread of its own: [`KillableReplica::kill`]
    /// drops the runtime with everything in it — listener, connections, requests in flight —
    /// at once, as when its process is killed.
    pub fn killable_replica(&self) -> KillableReplica {
        self.killable_replica_at("127.0.0.1:0".parse().unwrap())
    }

    /// [`Self::killable_replica`] listening on `listen` (a killed one's, to restart it there).
    pub fn killable_replica_at(&self, listen: SocketAddr) -> KillableReplica {
        let mut config = self.config.clone();
        config.listen = listen;
        config.xds_listen = Some("127.0.0.1:0".parse().unwrap());
        let (started, addr) = std::sync::mpsc::channel();
        let (kill, killed) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("a runtime for the replica");
            // Held until the kill: dropping `stop` would stop the server gracefully.
            let (app, _stop, _server) = runtime.block_on(Self::start(&config));
            let _ = started.send(app.addr);
            let _ = killed.recv();
            runtime.shutdown_background();
        });
        KillableReplica {
            addr: addr.recv().expect("the replica starts"),
            kill: Some(kill),
            thread: Some(thread),
        }
    }

    /// The URL of the test's database (another control plane may share it).
    pub fn database_url(&self) -> &str {
        &self.database.url
    }

    /// The name of the test's PostgreSQL database (`None` on SQLite).
    pub fn postgres_database(&self) -> Option<&str> {
        self.database.postgres.as_deref()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A request with the admin token as a Bearer header.
    pub fn admin(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path)).bearer_auth(ADMIN_TOKEN)
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let r = self.admin(Method::GET, path).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// An admin request with a form body: its status and its JSON answer (`Null` if none).
    pub async fn send_form(&self, method: Method, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let r = self.admin(method, path).form(form).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        self.send_form(Method::POST, path, form).await
    }

    pub async fn put_form(&self, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        self.send_form(Method::PUT, path, form).await
    }

    /// A provider user made as 3scale's API makes one (`POST /admin/api/users.json` with a
    /// password, e-mail `{username}@provider.test`, then activated), an admin when `admin`;
    /// its id.
    pub async fn provider_user(&self, username: &str, password: &str, admin: bool) -> i64 {
        let email = format!("{username}@provider.test");
        let (s, user) = self
            .post_form(
                "/admin/api/users.json",
                &[("username", username), ("email", &email), ("password", password)],
            )
            .await;
        assert_eq!(s, 201, "{user}");
        assert!(user["user"].get("password").is_none(), "never shown: {user}");
        let id = user["user"]["id"].as_i64().unwrap();
        let events: &[&str] = if admin { &["activate", "admin"] } else { &["activate"] };
        for event in events {
            let (s, _) = self.put_form(&format!("/admin/api/users/{id}/{event}.json"), &[]).await;
            assert_eq!(s, 200, "{event}");
        }
        id
    }

    /// The demo of [`crate::seed`] with an application holding `user_key` (a service, a plan,
    /// an account and the application; the service deployed and promoted). Returns (service,
    /// application) as the API shows them.
    pub async fn seed(&self, user_key: &str) -> (Value, Value) {
        let seeded = crate::seed::demo(&self.db, &crate::seed::Demo::test(user_key))
            .await
            .expect("the demo seeds");
        self.cache.invalidate();
        let (s, service) = self
            .get_json(&format!("/admin/api/services/{}.json", seeded.service_id))
            .await;
        assert_eq!(s, 200, "{service}");
        let (s, application) = self
            .get_json(&format!(
                "/admin/api/accounts/{}/applications/{}.json",
                seeded.account_id, seeded.application_id
            ))
            .await;
        assert_eq!(s, 200, "{application}");
        (service, application)
    }

    /// Deploys service `sid`'s proxy settings to the sandbox and promotes them to production.
    pub async fn deploy_to_production(&self, sid: i64) {
        let (s, deployed) = self
            .post_form(&format!("/admin/api/services/{sid}/proxy/deploy.json"), &[])
            .await;
        assert_eq!(s, 201, "{deployed}");
        let version = deployed["proxy_config"]["version"].as_i64().unwrap();
        let (s, promoted) = self
            .post_form(
                &format!("/admin/api/services/{sid}/proxy/configs/sandbox/{version}/promote.json"),
                &[("to", "production")],
            )
            .await;
        assert_eq!(s, 201, "{promoted}");
    }

    /// The control plane on Redis counters, under a key prefix of its own.
    pub async fn spawn_on_redis() -> TestApp {
        let prefix = format!("test:{}:", unique_name());
        TestApp::spawn_with(Backend::Sqlite, |c| {
            c.redis_url = Some(redis_url());
            c.redis_prefix = prefix;
        })
        .await
    }

    /// The control plane on a Redis Cluster (the test binary's own: three masters started on
    /// first use, see `tollgate_store::testing`), under a key prefix of its own.
    pub async fn spawn_on_cluster(backend: Backend) -> TestApp {
        let url = tokio::task::spawn_blocking(tollgate_store::testing::shared_cluster_url)
            .await
            .expect("the cluster starts");
        let prefix = format!("test:{}:", unique_name());
        TestApp::spawn_with(backend, |c| {
            c.redis_url = Some(url);
            c.redis_prefix = prefix;
        })
        .await
    }

    /// A connection to the Redis (or cluster) the control plane counts on.
    pub async fn redis(&self) -> tollgate_store::redis_nodes::Connection {
        let url = self.config.redis_url.as_deref().expect("a control plane on Redis");
        tollgate_store::redis_nodes::Connection::open(url)
            .await
            .expect("Redis answers")
    }

    /// Makes account `aid` prepaid, a unit of metric `metric` of service `sid` costing the
    /// credits the `rate` fields say (`credits_per_unit`, …); returns the rate as created.
    pub async fn make_prepaid(&self, sid: i64, aid: i64, metric: &str, rate: &[(&str, &str)]) -> Value {
        let (status, body) = self
            .put_form(
                &format!("/admin/api/accounts/{aid}.json"),
                &[("billing_type", "prepaid")],
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let mut form = vec![("metric_id", metric)];
        form.extend_from_slice(rate);
        let (status, rate) = self
            .post_form(&format!("/admin/api/services/{sid}/credit_rates.json"), &form)
            .await;
        assert_eq!(status, 201, "{rate}");
        rate
    }

    /// Limits hits on the seeded application's plan to `value` per `period`; returns the
    /// service's id and its hits metric's id.
    pub async fn limit_hits(&self, service: &Value, application: &Value, period: &str, value: i64) -> (i64, i64) {
        let sid = service["service"]["id"].as_i64().unwrap();
        let plan = application["application"]["plan_id"].as_i64().unwrap();
        let (_, metrics) = self.get_json(&format!("/admin/api/services/{sid}/metrics.json")).await;
        let hits = metrics["metrics"][0]["metric"]["id"].as_i64().unwrap();
        let (status, body) = self
            .post_form(
                &format!("/admin/api/application_plans/{plan}/metrics/{hits}/limits.json"),
                &[("period", period), ("value", &value.to_string())],
            )
            .await;
        assert_eq!(status, 201, "{body}");
        (sid, hits)
    }

    pub async fn service_token(&self, service_id: i64) -> String {
        sqlx::query_scalar("SELECT service_token FROM services WHERE id = $1")
            .bind(service_id)
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }

    /// Stops the server gracefully; its database goes with it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
        self.db.pool.close().await;
    }
}

/// Defines a test once and runs it on both databases: `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! on_both_databases {
    ($($(#[$meta:meta])* async fn $name:ident($app:ident: &TestApp) $body:block)*) => {
        $(
            $(#[$meta])*
            mod $name {
                use super::*;
                use $crate::testing::{Backend, TestApp};
                async fn run($app: &TestApp) $body
                #[tokio::test]
                async fn sqlite() {
                    let app = TestApp::spawn(Backend::Sqlite).await;
                    run(&app).await;
                    app.stop().await;
                }
                #[tokio::test]
                async fn postgres() {
                    let app = TestApp::spawn(Backend::Postgres).await;
                    run(&app).await;
                    app.stop().await;
                }
            }
        )*
    };
}

/// A replica that can be killed: see [`TestApp::killable_replica`].
pub struct KillableReplica {
    pub addr: SocketAddr,
    kill: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl KillableReplica {
    /// Ends the replica at once: nothing it was doing finishes.
    pub fn kill(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for KillableReplica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A request a [`Receiver`] took.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: axum::http::HeaderMap,
    pub body: String,
    /// The status it was answered with.
    pub status: u16,
}

/// A webhook receiver on a loopback port: records every request and answers 500 to the first
/// `fail_first`, 200 after.
pub struct Receiver {
    pub addr: SocketAddr,
    got: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
    server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start(fail_first: usize) -> Receiver {
        Self::start_on(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(), fail_first)
    }

    /// On a listener already bound (a port chosen before the receiver runs).
    pub fn start_on(listener: tokio::net::TcpListener, fail_first: usize) -> Receiver {
        let addr = listener.local_addr().unwrap();
        let got: std::sync::Arc<std::sync::Mutex<Vec<Received>>> = Default::default();
        let seen = got.clone();
        let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap, body: String| {
            let seen = seen.clone();
            async move {
                let mut seen = seen.lock().unwrap();
                let status = if seen.len() < fail_first { 500 } else { 200 };
                seen.push(Received { headers, body, status });
                (axum::http::StatusCode::from_u16(status).unwrap(), "ok")
            }
        });
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { addr, got, server }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits (polling, up to 20 s) until `done` holds of what was received; what was received.
    pub async fn wait_for(&self, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let got = self.received();
            if done(&got) {
                return got;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "receiver: timed out waiting for {what}; got {got:#?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The project's Python (its `.venv`, where `scripts/setup.sh` installs aiosmtpd).
pub fn python() -> String {
    std::env::var("TOLLGATE_TEST_PYTHON")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/python").to_string())
}

/// A real SMTP server (aiosmtpd) on a loopback port, keeping what it receives in a Maildir.
pub struct MailCatcher {
    pub port: u16,
    dir: tempfile::TempDir,
    child: std::process::Child,
}

impl MailCatcher {
    pub async fn start() -> MailCatcher {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(python())
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(dir.path().join("mail"))
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("aiosmtpd (run scripts/setup.sh)");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(std::time::Instant::now() < deadline, "aiosmtpd did not start");
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        MailCatcher { port, dir, child }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received, raw (headers and MIME parts).
    pub fn messages(&self) -> Vec<String> {
        let new = self.dir.path().join("mail").join("new");
        let mut files: Vec<_> = std::fs::read_dir(new)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        files.iter().filter_map(|f| std::fs::read_to_string(f).ok()).collect()
    }

    /// Waits (polling, up to 20 s) until `done` holds of the messages; the messages.
    pub async fn wait_for(&self, what: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let got = self.messages();
            if done(&got) {
                return got;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "mail catcher: timed out waiting for {what}; got {got:#?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }
}

impl Drop for MailCatcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
