//! The console in a real browser: Debian's Chromium, headless, driven over WebDriver
//! (chromedriver, fantoccini) against the control plane on SQLite and on PostgreSQL. Each
//! flow leaves a screenshot in target/screenshots/ (the README shows them).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failure report

use chrono::Datelike;
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
                                        "--window-size=1280,1100", "--lang=en-US"]}),
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
        match self
            .client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(e) => e,
            Err(e) => {
                self.screenshot("failure").await;
                let url = self
                    .client
                    .current_url()
                    .await
                    .map(|u| u.to_string())
                    .unwrap_or_default();
                let source = self.client.source().await.unwrap_or_default();
                panic!("{css}: {e} (at {url}; the page is in target/screenshots/failure.png)\n{source}")
            }
        }
    }

    async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap();
    }

    /// Clicks what leads to another page (a link, a submit button) and waits for that page.
    async fn go(&self, css: &str) {
        let old = self.client.find(Locator::Css("html")).await.unwrap();
        self.click(css).await;
        let start = Instant::now();
        while old.tag_name().await.is_ok() {
            assert!(start.elapsed() < Duration::from_secs(10), "{css} led nowhere");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Signs `login` in through the sign-in form.
    async fn sign_in(&self, app: &tollgate::testing::TestApp, login: &str, password: &str) {
        self.client.goto(&app.url("/console/sign_in")).await.unwrap();
        self.fill("#login", login).await;
        self.fill("#password", password).await;
        self.go("button[type=submit]").await;
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

/// The last path segment of the page the browser shows (the id of a record just made).
async fn shown_id(c: &Client) -> String {
    let url = c.current_url().await.unwrap();
    url.path().rsplit('/').next().unwrap().to_string()
}

on_both_databases! {
    async fn a_product_an_account_and_an_application_made_and_managed_in_the_console(app: &TestApp) {
        app.provider_user("ops", "correct horse", true).await;
        let b = Browser::start().await;
        let c = &b.client;
        b.sign_in(app, "ops", "correct horse").await;
        b.find("nav [aria-current=page]").await;

        // Products › a new product (its name is required: refused next to the field first).
        b.go("nav a[href='/console/services']").await;
        b.go("a.button[href='/console/services/new']").await;
        b.go("form.card button[type=submit]").await;
        assert_eq!(b.text("#e-name").await, "Name can't be blank");
        b.fill("#f-name", "Weather API").await;
        b.fill("#f-system_name", "weather").await;
        b.go("form.card button[type=submit]").await;
        assert!(b.text("main h1").await.contains("Weather API"));
        let sid = shown_id(c).await;

        // A metric, and a method under hits (Ch. 19).
        c.goto(&app.url(&format!("/console/services/{sid}/metrics/new"))).await.unwrap();
        b.fill("#f-friendly_name", "Forecasts").await;
        b.fill("#f-system_name", "forecasts").await;
        b.fill("#f-unit", "call").await;
        b.go("form.card button[type=submit]").await;
        let forecasts = shown_id(c).await;
        let (_, metrics) = app.get_json(&format!("/admin/api/services/{sid}/metrics.json")).await;
        let hits = metrics["metrics"].as_array().unwrap().iter()
            .find(|m| m["metric"]["system_name"] == "hits").unwrap()["metric"]["id"].as_i64().unwrap();
        c.goto(&app.url(&format!("/console/services/{sid}/metrics/{hits}/methods/new"))).await.unwrap();
        b.fill("#f-friendly_name", "Daily").await;
        b.fill("#f-system_name", "daily").await;
        b.go("form.card button[type=submit]").await;
        let daily = shown_id(c).await;

        // A mapping rule counting the metric.
        c.goto(&app.url(&format!("/console/services/{sid}/proxy/mapping_rules/new"))).await.unwrap();
        b.find("#f-http_method").await.select_by_value("GET").await.unwrap();
        b.fill("#f-pattern", "/forecast").await;
        b.find("#f-metric_id").await.select_by_label("Forecasts (forecasts)").await.unwrap();
        b.fill("#f-delta", "2").await;
        b.go("form.card button[type=submit]").await;
        let (_, rules) = app.get_json(&format!("/admin/api/services/{sid}/proxy/mapping_rules.json")).await;
        let rule = rules["mapping_rules"].as_array().unwrap().iter()
            .find(|r| r["mapping_rule"]["pattern"] == "/forecast").expect("the rule, through the API");
        assert_eq!(rule["mapping_rule"]["metric_id"].as_i64().unwrap().to_string(), forecasts);
        assert_eq!(rule["mapping_rule"]["delta"], 2);

        // Two plans; on Basic a daily limit and a pricing rule on the metric (Ch. 20–22).
        let mut plan_ids = Vec::new();
        for name in ["Basic", "Pro"] {
            c.goto(&app.url(&format!("/console/services/{sid}/application_plans/new"))).await.unwrap();
            b.fill("#f-name", name).await;
            b.fill("#f-cost_per_month", if name == "Pro" { "49" } else { "0" }).await;
            b.go("form.card button[type=submit]").await;
            plan_ids.push(shown_id(c).await);
        }
        let (basic, pro) = (&plan_ids[0], &plan_ids[1]);
        c.goto(&app.url(&format!("/console/services/{sid}/application_plans/{basic}"))).await.unwrap();
        b.go(&format!("a[href='/console/application_plans/{basic}/metrics/{forecasts}/limits']")).await;
        b.go("a.button").await;
        b.find("#f-period").await.select_by_value("day").await.unwrap();
        b.fill("#f-value", "-1").await;
        b.go("form.card button[type=submit]").await;
        assert_eq!(b.text("#e-value").await, "Value must be greater than or equal to 0");
        b.fill("#f-value", "5").await;
        b.go("form.card button[type=submit]").await;
        c.goto(&app.url(&format!("/console/application_plans/{basic}/metrics/{forecasts}/pricing_rules/new"))).await.unwrap();
        b.fill("#f-min", "1").await;
        b.fill("#f-cost_per_unit", "0.05").await;
        b.go("form.card button[type=submit]").await;
        let (_, limits) = app.get_json(&format!("/admin/api/application_plans/{basic}/metrics/{forecasts}/limits.json")).await;
        assert_eq!(limits["limits"][0]["limit"]["value"], 5, "{limits}");
        assert_eq!(limits["limits"][0]["limit"]["period"], "day", "{limits}");
        let (_, rules) = app.get_json(&format!("/admin/api/application_plans/{basic}/metrics/{forecasts}/pricing_rules.json")).await;
        assert_eq!(rules["pricing_rules"][0]["pricing_rule"]["cost_per_unit"], "0.05", "{rules}");
        let _ = daily;

        // Audience › a new account, signed up with its admin user (Ch. 7), and an application.
        c.goto(&app.url("/console/accounts/new")).await.unwrap();
        b.fill("#f-org_name", "Acme").await;
        b.fill("#f-username", "acme").await;
        b.fill("#f-email", "ops@acme.test").await;
        b.fill("#f-password", "secret123").await;
        b.go("form.card button[type=submit]").await;
        let aid = shown_id(c).await;
        let (s, found) = app.get_json("/admin/api/accounts/find.json?email=ops%40acme.test").await;
        assert_eq!(s, 200, "{found}");
        assert_eq!(found["account"]["id"].as_i64().unwrap().to_string(), aid);
        b.go(&format!("a[href='/console/accounts/{aid}/applications']")).await;
        b.go("a.button").await;
        b.fill("#f-name", "Acme Forecasts").await;
        b.find("#f-plan_id").await.select_by_value(basic).await.unwrap();
        b.go("form.card button[type=submit]").await;
        let app_id = shown_id(c).await;
        let key = b.find("#f-user_key").await.prop("value").await.unwrap().unwrap();
        let token = app.service_token(sid.parse().unwrap()).await;
        let authrep = |key: String| {
            let url = app.url(&format!(
                "/transactions/authrep.xml?service_token={token}&service_id={sid}&user_key={key}&usage%5Bforecasts%5D=1"));
            async move { reqwest::get(url).await.unwrap().status().as_u16() }
        };
        assert_eq!(authrep(key.clone()).await, 200, "the new application's key works");

        // Audience › Applications: found by its key (Ch. 13).
        b.go("nav a[href='/console/accounts']").await;
        b.go("nav.sub a[href='/console/applications']").await;
        b.fill("#q", &key).await;
        b.go("form[role=search] button").await;
        let table = b.text("table tbody").await;
        assert!(table.contains("Acme Forecasts") && table.contains(&key), "{table}");
        b.screenshot("console-applications").await;
        b.go("table tbody a").await;
        assert_eq!(shown_id(c).await, app_id);

        // Change its plan (Ch. 16), then suspend it (Ch. 9): both seen through the API, and
        // the suspension through authrep.
        b.find("form[action$='/events/change_plan'] select").await.select_by_value(pro).await.unwrap();
        b.go("form[action$='/events/change_plan'] button").await;
        b.find("form[action$='/events/suspend']").await;
        b.screenshot("console-application").await;
        let path = format!("/admin/api/accounts/{aid}/applications/{app_id}.json");
        let (_, shown) = app.get_json(&path).await;
        assert_eq!(shown["application"]["plan_id"].as_i64().unwrap().to_string(), *pro, "{shown}");
        b.go("form[action$='/events/suspend'] button").await;
        b.find("form[action$='/events/resume']").await;
        let (_, shown) = app.get_json(&path).await;
        assert_eq!(shown["application"]["state"], "suspended", "{shown}");
        assert_eq!(authrep(key.clone()).await, 409, "a suspended application is refused");

        // Deleting asks first; cancelling keeps it.
        b.go("a.button.danger").await;
        assert!(b.text("#confirm-h").await.starts_with("Delete Application"));
        b.screenshot("console-confirm-delete").await;
        b.go("section[role=alertdialog] a").await;
        assert_eq!(app.get_json(&path).await.0, 200);
        b.client.clone().close().await.unwrap();
    }
}

on_both_databases! {
    async fn a_product_integrated_applications_handled_in_bulk_and_a_colleague_invited(app: &TestApp) {
        let (service, application) = app.seed("bulk-browser-key").await;
        let sid = service["service"]["id"].as_i64().unwrap();
        let account = application["application"]["account_id"].as_i64().unwrap();
        let plan = application["application"]["plan_id"].as_i64().unwrap().to_string();
        let (s, second) = app.post_form(&format!("/admin/api/accounts/{account}/applications.json"),
            &[("name", "Second App"), ("plan_id", &plan)]).await;
        assert_eq!(s, 201, "{second}");
        app.provider_user("ops", "correct horse", true).await;
        let b = Browser::start().await;
        let c = &b.client;
        b.sign_in(app, "ops", "correct horse").await;

        // Products › the product › Integration: test a path, change a setting, promote.
        c.goto(&app.url(&format!("/console/services/{sid}"))).await.unwrap();
        b.go(&format!("a[href='/console/services/{sid}/integration']")).await;
        b.find("#t-method").await.select_by_value("GET").await.unwrap();
        b.fill("#t-path", "/weather?city=Kyoto").await;
        b.go("form[method=get] button").await;
        let result = b.text("#test-result").await;
        assert!(result.contains("GET /weather?city=Kyoto counts hits +1"), "{result}");
        b.screenshot("console-integration").await;
        b.fill("#f-error_status_no_match", "418").await;
        b.go("form.card button[type=submit]").await;
        b.go("form[action$='/integration/promote'] button").await;
        let (_, production) = app.get_json(&format!("/admin/api/services/{sid}/proxy/configs/production/latest.json")).await;
        assert_eq!(production["proxy_config"]["content"]["proxy"]["error_status_no_match"], 418, "{production}");

        // Analytics › Usage: calls made through authrep, charted with their response classes.
        let token = app.service_token(sid).await;
        for code in ["200", "200", "200", "201", "404", "503"] {
            let url = app.url(&format!("/transactions/authrep.json?service_id={sid}&service_token={token}\
                &user_key=bulk-browser-key&usage%5Bhits%5D=1&log%5Bcode%5D={code}"));
            assert_eq!(reqwest::get(url).await.unwrap().status(), 200);
        }
        b.go("nav a[href='/console/analytics/usage']").await;
        b.find("#a-period").await.select_by_value("day").await.unwrap();
        b.go("form.filters button").await;
        assert_eq!(b.text("#usage-total").await, "6");
        b.find("svg.chart rect.c5xx").await;
        b.screenshot("console-analytics").await;
        c.execute("document.getElementById('codes-h').scrollIntoView()", vec![]).await.unwrap();
        b.screenshot("console-analytics-codes").await;
        let csv = b.find("#csv-link").await.attr("href").await.unwrap().unwrap();
        assert!(csv.starts_with("/console/analytics/usage.csv?"), "{csv}");

        // Audience › Applications: tick both, suspend both (Ch. 10).
        c.goto(&app.url("/console/applications")).await.unwrap();
        for row in b.client.find_all(Locator::Css("input[name=ids]")).await.unwrap() {
            row.click().await.unwrap();
        }
        b.go("#bulk-suspend").await;
        assert_eq!(b.text("#notice").await, "Suspended 2 applications.");
        b.screenshot("console-bulk").await;
        let (_, all) = app.get_json("/admin/api/applications.json").await;
        let states: Vec<_> = all["applications"].as_array().unwrap().iter().map(|a| a["application"]["state"].clone()).collect();
        assert_eq!(states, vec![serde_json::json!("suspended"); 2]);

        // Settings › Invitations: the link (no SMTP here) opens once, for the invitee.
        c.goto(&app.url("/console/settings/invitations")).await.unwrap();
        b.fill("#invite-email", "kim@provider.test").await;
        b.go("form[action='/console/settings/invitations'] button").await;
        let link = b.text("#invitation-link").await;
        b.screenshot("console-invitations").await;
        b.go("form.who button").await;
        c.goto(&link).await.unwrap();
        b.fill("#f-username", "kim").await;
        b.fill("#f-password", "kim's secret").await;
        b.fill("#f-password_confirmation", "kim's secret").await;
        b.go("form button[type=submit]").await;
        assert_eq!(b.text("form.who span").await, "kim", "the invitee is signed in");
        let (_, users) = app.get_json("/admin/api/users.json").await;
        assert!(users["users"].as_array().unwrap().iter().any(|u| u["user"]["username"] == "kim"), "{users}");
        b.client.clone().close().await.unwrap();
    }
}

on_both_databases! {
    async fn billing_run_an_invoice_and_its_pdf_a_credit_with_the_type_ahead_and_a_model_rate_charged(app: &TestApp) {
        let (service, application) = app.seed("billing-browser-key").await;
        let sid = service["service"]["id"].as_i64().unwrap();
        let account = application["application"]["account_id"].as_i64().unwrap();
        let plan = application["application"]["plan_id"].as_i64().unwrap();
        let (s, body) = app.put_form(&format!("/admin/api/services/{sid}/application_plans/{plan}.json"),
            &[("cost_per_month", "31")]).await;
        assert_eq!(s, 200, "{body}");
        app.provider_user("ops", "correct horse", true).await;
        let b = Browser::start().await;
        let c = &b.client;
        b.sign_in(app, "ops", "correct horse").await;

        // Billing › Invoices: run billing for the first of next month (postpaid: this month).
        b.go("nav a[href='/console/finance/invoices']").await;
        let today = chrono::Utc::now().date_naive();
        let next = chrono::NaiveDate::from_ymd_opt(today.year() + i32::from(today.month() == 12), today.month() % 12 + 1, 1).unwrap();
        // A date input takes what is typed in the browser's locale (en-US: mm/dd/yyyy).
        c.execute("document.getElementById('run-date').value = arguments[0]", vec![next.to_string().into()]).await.unwrap();
        b.go("#run-billing").await;
        assert!(b.text("#notice").await.starts_with(&format!("Billing ran for {next}")), "the run's report");
        b.find("#earnings").await;
        b.screenshot("console-invoices").await;
        b.go("#invoices tbody tr:first-child a").await;
        let total = b.text("#total").await;
        assert!(total.ends_with("USD") && total != "0.00 USD", "{total}");
        let lines = b.text("#lines").await;
        assert!(lines.contains("Basic"), "the plan's fee is a line: {lines}");
        let (_, invoices) = app.get_json(&format!("/api/invoices.json?account_id={account}")).await;
        let cost = invoices["invoices"][0]["invoice"]["cost"].as_f64().unwrap();
        assert_eq!(total, format!("{cost:.2} USD"), "the page and the API agree");
        // The PDF the page frames is the invoice (fetched with the browser's own session).
        let src = b.find("iframe#pdf").await.attr("src").await.unwrap().unwrap();
        let session = c.get_named_cookie("tollgate_session").await.unwrap();
        let pdf = reqwest::Client::new().get(app.url(&src)).header("cookie", format!("tollgate_session={}", session.value()))
            .send().await.unwrap().bytes().await.unwrap();
        assert!(pdf.starts_with(b"%PDF-"), "a PDF");
        b.screenshot("console-invoice").await;

        // Billing › Credits › + Credit: the account found by typing, 0 refused, then issued.
        let (s, body) = app.put_form(&format!("/admin/api/accounts/{account}.json"), &[("billing_type", "prepaid")]).await;
        assert_eq!(s, 200, "{body}");
        b.go("nav.sub a[href='/console/finance/credits']").await;
        b.go("#new-credit").await;
        b.find("#account-q").await.send_keys("acm").await.unwrap();
        let suggestion = b.find("#account-options li a").await;
        assert_eq!(suggestion.text().await.unwrap(), "Acme");
        b.screenshot("console-credit-type-ahead").await;
        b.go("#account-options li a").await;
        assert_eq!(b.text("#chosen-account").await, "Acme");
        assert_eq!(b.text("#currency").await, "USD");
        b.fill("#f-amount", "0").await;
        b.fill("#f-note", "Outage on the 2nd").await;
        b.go("#issue-credit").await;
        assert!(b.text("#e-amount").await.contains("must not be 0"));
        b.screenshot("console-credit-refused").await;
        b.fill("#f-amount", "25").await;
        b.go("#issue-credit").await;
        assert_eq!(b.text("#notice").await, format!("Credit of 25 USD issued for {}.", today.format("%Y-%m")));
        assert!(b.text("#credits").await.contains("Outage on the 2nd"));
        b.screenshot("console-credits").await;
        b.go("#credits tbody tr:first-child a").await;
        let (_, balance) = app.get_json(&format!("/admin/api/accounts/{account}/credit_balance.json")).await;
        assert_eq!(b.text("#balance").await, balance["credit_balance"]["balance"].as_str().unwrap(), "the page and the API agree");
        assert!(b.text("#transactions").await.contains("adjustment"));
        b.screenshot("console-credit-account").await;

        // Billing › Model rates › Add Model Rate: the dialog, then calls charged at its rate.
        b.go("nav.sub a[href='/console/finance/model_rates']").await;
        b.click("#add-rate").await;
        b.find("#rate-dialog[open]").await;
        let (_, metrics) = app.get_json(&format!("/admin/api/services/{sid}/metrics.json")).await;
        let hits = metrics["metrics"][0]["metric"]["id"].as_i64().unwrap().to_string();
        b.find("#f-metric_id").await.select_by_value(&hits).await.unwrap();
        b.fill("#f-providers", "OpenAI").await;
        b.fill("#f-upstream_cost_per_unit", "0.2").await;
        b.fill("#f-credits_per_unit", "0.5").await;
        b.fill("#f-description", "gpt-4o, per call").await;
        b.screenshot("console-model-rate-dialog").await;
        b.go("#save-rate").await;
        assert_eq!(b.text("#notice").await, "The model rate is added.");
        assert!(b.text("#rates").await.contains("OpenAI"));
        b.screenshot("console-model-rates").await;
        let token = app.service_token(sid).await;
        for _ in 0..4 {
            let url = app.url(&format!("/transactions/authrep.json?service_id={sid}&service_token={token}\
                &user_key=billing-browser-key&usage%5Bhits%5D=1"));
            assert_eq!(reqwest::get(url).await.unwrap().status(), 200);
        }
        tollgate::usage::flush(&app.db, &app.counters).await.unwrap();
        tollgate::credits::flush(&app.db, &app.counters).await.unwrap();
        c.goto(&app.url(&format!("/console/finance/credit_accounts/{account}"))).await.unwrap();
        let detail = b.text("#transactions tr.detail").await;
        assert!(detail.contains("hits") && detail.ends_with("4 2"), "4 hits at 0.5 credits: {detail}");
        let (_, balance) = app.get_json(&format!("/admin/api/accounts/{account}/credit_balance.json")).await;
        assert_eq!(b.text("#balance").await, balance["credit_balance"]["balance"].as_str().unwrap());
        b.screenshot("console-credit-deductions").await;
        b.go("nav.sub a[href='/console/finance/margins']").await;
        b.find("svg.chart rect.margin").await;
        b.screenshot("console-margins").await;
        b.client.clone().close().await.unwrap();
    }
}

on_both_databases! {
    async fn a_developer_signs_in_to_the_portal_sees_their_key_and_balance_and_not_another_accounts_invoice(app: &TestApp) {
        let (service, application) = app.seed("portal-browser-key").await;
        let account = application["application"]["account_id"].as_i64().unwrap();
        let app_id = application["application"]["id"].as_i64().unwrap();
        app.limit_hits(&service, &application, "day", 100).await;
        let (s, user) = app.post_form(&format!("/admin/api/accounts/{account}/users.json"),
            &[("username", "dana"), ("email", "dana@acme.test"), ("password", "dana's secret")]).await;
        assert_eq!(s, 201, "{user}");
        let user = user["user"]["id"].as_i64().unwrap();
        let (s, _) = app.send_form(reqwest::Method::PUT, &format!("/admin/api/accounts/{account}/users/{user}/activate.json"), &[]).await;
        assert_eq!(s, 200);
        let (s, _) = app.put_form("/admin/api/settings/credits.json", &[("starter_credits", "20"), ("purchase_url", "https://buy.test/credits")]).await;
        assert_eq!(s, 200);
        let (s, _) = app.put_form(&format!("/admin/api/accounts/{account}.json"), &[("billing_type", "prepaid")]).await;
        assert_eq!(s, 200);
        // An invoice of each account, issued.
        let mut invoices = Vec::new();
        for org in ["Acme", "Globex"] {
            let id = if org == "Acme" { account } else {
                let (s, g) = app.post_form("/admin/api/signup.json", &[("org_name", "Globex"), ("username", "gus"), ("email", "gus@globex.test")]).await;
                assert_eq!(s, 201, "{g}");
                g["account"]["id"].as_i64().unwrap()
            };
            let (_, inv) = app.post_form("/api/invoices.json", &[("account_id", &id.to_string()), ("period", "2026-11")]).await;
            let inv = inv["invoice"]["id"].as_i64().unwrap();
            app.post_form(&format!("/api/invoices/{inv}/line_items.json"), &[("name", "Support"), ("cost", "40")]).await;
            app.send_form(reqwest::Method::PUT, &format!("/api/invoices/{inv}/state.json"), &[("state", "pending")]).await;
            invoices.push(inv);
        }
        let b = Browser::start().await;
        let c = &b.client;
        c.goto(&app.url("/portal/sign_in")).await.unwrap();
        b.fill("#login", "dana@acme.test").await;
        b.fill("#password", "wrong").await;
        b.go("button[type=submit]").await;
        assert!(b.text("#sign-in-error").await.contains("Wrong"));
        b.screenshot("portal-sign-in").await;
        b.fill("#password", "dana's secret").await;
        b.go("button[type=submit]").await;
        let apps = b.text("#applications").await;
        assert!(apps.contains("portal-browser-key"), "the key: {apps}");
        assert_eq!(b.text("#balance").await, "20");
        assert_eq!(b.find("#buy-credits").await.attr("href").await.unwrap().as_deref(), Some("https://buy.test/credits"));
        b.screenshot("portal-home").await;
        b.go(&format!("#applications a[href='/portal/applications/{app_id}']")).await;
        assert_eq!(b.text("#user-key").await, "portal-browser-key");
        b.find("#limits meter").await;
        b.screenshot("portal-application").await;
        b.go("nav a[href='/portal/invoices']").await;
        b.go(&format!("#invoices a[href='/portal/invoices/{}']", invoices[0])).await;
        assert_eq!(b.text("#total").await, "40.00 USD");
        b.screenshot("portal-invoice").await;
        // Another account's invoice, by its id in the address bar: not found.
        c.goto(&app.url(&format!("/portal/invoices/{}", invoices[1]))).await.unwrap();
        assert_eq!(b.text("h1").await, "Not found");
        b.screenshot("portal-not-found").await;

        // Self-service signup (open by default): a new account, signed in, with an application on
        // the default plan.
        let (s, body) = app.send_form(reqwest::Method::PUT, &format!("/admin/api/services/{}/application_plans/{}/default.json",
            service["service"]["id"], application["application"]["plan_id"]), &[]).await;
        assert_eq!(s, 200, "{body}");
        c.goto(&app.url("/portal/")).await.unwrap();
        b.go("form.who button[type=submit]").await;
        c.goto(&app.url("/portal/signup")).await.unwrap();
        b.fill("#f-org_name", "Initech").await;
        b.fill("#f-username", "peter").await;
        b.fill("#f-email", "peter@initech.test").await;
        b.fill("#f-password", "short").await;
        b.go("#sign-up").await;
        assert!(b.text("#e-password").await.contains("at least 6 characters"), "the password's rule, next to it");
        assert_eq!(b.find("#f-org_name").await.prop("value").await.unwrap().as_deref(), Some("Initech"), "kept");
        b.screenshot("portal-signup-refused").await;
        b.fill("#f-password", "a good secret").await;
        b.go("#sign-up").await;
        assert!(b.text("#notice").await.starts_with("Welcome!"));
        assert!(b.text("#applications").await.contains("Basic"), "an application on the default plan");
        b.screenshot("portal-signed-up").await;
        b.client.clone().close().await.unwrap();
    }
}
