//! The console in a real browser: Debian's Chromium, headless, driven over WebDriver
//! (chromedriver, fantoccini) against the control plane on SQLite and on PostgreSQL. Each
//! flow leaves a screenshot in target/screenshots/ (the README shows them).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failure report

use fantoccini::{Client, ClientBuilder, Locator};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tollgate::on_both_databases;
use tollgate_e2e::{free_port, repo_root};

/// chromedriver and a headless Chromium session; both end on drop.
struct Browser {
    driver: Child,
    client: Client,
}

impl Browser {
    async fn start() -> Browser {
        let port = free_port();
        let driver = Command::new(std::env::var("TOLLGATE_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into()))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (scripts/setup.sh installs Debian's chromium-driver)");
        let url = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        while reqwest::get(format!("{url}/status")).await.is_err() {
            assert!(start.elapsed() < Duration::from_secs(20), "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                        "--window-size=1280,800", "--lang=en-US"]}),
        );
        // chromedriver is on the loopback: plain HTTP, no TLS stack.
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&url)
            .await
            .expect("a Chromium session");
        Browser { driver, client }
    }

    /// Saves what the browser shows as target/screenshots/NAME.png.
    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        let dir = repo_root().join("target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    /// The element `css` names, once the page shows it (pages load after a click).
    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
    }

    async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap();
    }

    async fn fill(&self, css: &str, value: &str) {
        let field = self.find(css).await;
        field.clear().await.unwrap();
        field.send_keys(value).await.unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

on_both_databases! {
    async fn an_admin_signs_in_sees_the_dashboard_and_signs_out(app: &TestApp) {
        app.provider_user("ops", "correct horse", true).await;
        let (s, _) = app.post_form("/admin/api/services.json", &[("name", "Payments API"), ("system_name", "payments")]).await;
        assert_eq!(s, 201);
        let b = Browser::start().await;
        let c = &b.client;

        // The console without a session: the sign-in form, remembering where to go back to.
        c.goto(&app.url("/console/")).await.unwrap();
        assert!(c.current_url().await.unwrap().as_str().contains("/console/sign_in?next=%2Fconsole%2F"));
        assert_eq!(b.text("h1").await, "Sign in to the console");

        // A wrong password: the error next to the form, the name kept.
        b.fill("#login", "ops").await;
        b.fill("#password", "wrong horse").await;
        b.click("button[type=submit]").await;
        assert_eq!(b.text("#sign-in-error").await, "Wrong user name, e-mail or password.");
        let kept = b.find("#login").await.prop("value").await.unwrap();
        assert_eq!(kept.as_deref(), Some("ops"));
        b.screenshot("console-sign-in-error").await;

        b.fill("#password", "correct horse").await;
        b.click("button[type=submit]").await;
        assert_eq!(b.text("nav [aria-current=page]").await, "Dashboard");
        assert_eq!(b.text("main h1").await, "Dashboard");
        let products = b.text("table").await;
        assert!(products.contains("Payments API") && products.contains("http://payments-staging.localhost:8081"), "{products}");
        b.screenshot("console-dashboard").await;

        // Settings › Tokens: a token without scopes is refused next to the field; one with
        // them is shown once and works against the admin API.
        b.click("nav a[href='/console/settings/tokens']").await;
        assert_eq!(b.text("main h1").await, "Access tokens");
        b.fill("#token-name", "Deploy bot").await;
        b.click("form.card button[type=submit]").await;
        assert_eq!(b.text("#scopes-error").await, "Scopes can't be blank");
        let kept = b.find("#token-name").await.prop("value").await.unwrap();
        assert_eq!(kept.as_deref(), Some("Deploy bot"), "what was typed is kept");
        b.click("input[value=account_management]").await;
        b.click("input[name=permission][value=rw]").await;
        b.click("form.card button[type=submit]").await;
        let value = b.text("#token-value").await;
        b.screenshot("console-tokens").await;
        let r = reqwest::Client::new()
            .get(app.url("/admin/api/services.json"))
            .bearer_auth(&value)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "the token the console made works");
        assert!(b.text("table").await.contains("Deploy bot"));

        // Sign out (the form carries the session's CSRF token): back to sign-in, and the
        // dashboard is gone.
        b.click("form.who button").await;
        b.find("#login").await;
        assert_eq!(b.text("h1").await, "Sign in to the console");
        c.goto(&app.url("/console/")).await.unwrap();
        assert!(c.current_url().await.unwrap().as_str().contains("/console/sign_in"));
        b.client.clone().close().await.unwrap();
    }
}
