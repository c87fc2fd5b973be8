//! Notifications end to end, on both databases: 3scale's webhook settings and XML deliveries
//! with Standard Webhooks signatures, retries with the same event id, giving up into 3scale's
//! failures list, Tollgate's JSON endpoints with their delivery log, SSRF refusal, limit
//! alerts at 50 and 100 % reaching the alerts API, an endpoint and a real SMTP server, and
//! provider users' preferences and member limits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failure report

use reqwest::Method;
use serde_json::Value;
use tollgate::config::Config;
use tollgate::testing::{Backend, MailCatcher, Receiver, TestApp};

/// Runs each test on SQLite and PostgreSQL.
macro_rules! both {
    ($($name:ident),*) => {
        $(mod $name {
            #[tokio::test]
            async fn sqlite() { super::$name(tollgate::testing::Backend::Sqlite).await }
            #[tokio::test]
            async fn postgres() { super::$name(tollgate::testing::Backend::Postgres).await }
        })*
    };
}

both!(
    threescale_webhook_gets_signed_xml,
    a_failing_receiver_gets_the_event_again_with_the_same_id,
    deliveries_that_give_up_are_3scale_failures,
    private_addresses_are_refused,
    limit_alerts_reach_the_api_an_endpoint_and_e_mail
);

async fn spawn(backend: Backend, adjust: impl FnOnce(&mut Config)) -> TestApp {
    TestApp::spawn_with(backend, |c| {
        c.webhook_allow_private = true;
        c.webhook_retry_ms = 50;
        c.outbox_poll_ms = 20;
        adjust(c);
    })
    .await
}

fn verify(secret: &str, r: &tollgate::testing::Received) {
    standardwebhooks::Webhook::new(secret)
        .unwrap()
        .verify(r.body.as_bytes(), &r.headers)
        .unwrap_or_else(|e| panic!("signature: {e}: {:?}", r.headers));
}

fn header<'a>(r: &'a tollgate::testing::Received, name: &str) -> &'a str {
    r.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

async fn signup(app: &TestApp, org: &str) -> Value {
    let (status, body) = app
        .post_form(
            "/admin/api/signup.json",
            &[
                ("org_name", org),
                ("username", &org.to_lowercase()),
                ("email", &format!("{}@dev.test", org.to_lowercase())),
            ],
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body
}

async fn threescale_webhook_gets_signed_xml(backend: Backend) {
    let app = spawn(backend, |_| {}).await;
    let receiver = Receiver::start(0).await;
    let (status, body) = app
        .put_form("/admin/api/webhooks.json", &[("url", "example"), ("active", "true")])
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body, serde_json::json!({"errors": {"url": ["is invalid"]}}));
    let url = receiver.url();
    let (status, body) = app
        .put_form(
            "/admin/api/webhooks.json",
            &[
                ("web_hook[url]", url.as_str()),
                ("web_hook[active]", "true"),
                ("web_hook[provider_actions]", "true"),
                ("web_hook[account_created_on]", "true"),
                ("web_hook[application_created_on]", "true"),
                ("web_hook[application_suspended_on]", "true"),
                ("web_hook[application_key_created_on]", "true"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let hook = &body["webhook"];
    assert_eq!(hook["url"], url.as_str());
    assert_eq!(hook["account_created_on"], true);
    assert_eq!(hook["account_updated_on"], false);
    assert_eq!(hook.as_object().unwrap().len(), 19, "{hook}");
    assert!(hook.get("signing_secret").is_none());
    let (_, shown) = app.get_json("/admin/api/webhooks.json").await;
    let secret = shown["webhook"]["signing_secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));

    let (_, application) = app.seed("xml-key").await;
    let account = application["application"]["account_id"].as_i64().unwrap();
    let app_id = application["application"]["id"].as_i64().unwrap();
    let r = app
        .admin(
            Method::PUT,
            &format!("/admin/api/accounts/{account}/applications/{app_id}/suspend.json"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (status, _) = app
        .post_form(
            &format!("/admin/api/accounts/{account}/applications/{app_id}/keys.json"),
            &[("key", "k-123")],
        )
        .await;
    assert_eq!(status, 201);
    signup(&app, "Globex").await;
    let got = receiver
        .wait_for(
            "account created (twice), application created, suspended, key created",
            |r| r.len() >= 5,
        )
        .await;
    for r in &got {
        assert_eq!(header(r, "content-type"), "application/xml");
        assert!(header(r, "webhook-id").starts_with("msg_"));
        verify(&secret, r);
        assert!(
            r.body
                .starts_with(r#"<?xml version="1.0" encoding="UTF-8"?><event><action>"#),
            "{}",
            r.body
        );
    }
    let bodies: Vec<&str> = got.iter().map(|r| r.body.as_str()).collect();
    let has = |needle: &str| bodies.iter().any(|b| b.contains(needle));
    assert!(
        has("<action>created</action><type>account</type><object><account>"),
        "{bodies:#?}"
    );
    assert!(has(
        "<action>suspended</action><type>application</type><object><application>"
    ));
    assert!(has("<action>key_created</action><type>application</type>"));
    let created = bodies
        .iter()
        .find(|b| b.contains("<action>created</action><type>application</type>"))
        .unwrap();
    assert!(
        created.contains("<user_key>xml-key</user_key>") && created.contains("<plan>"),
        "{created}"
    );
    assert!(has("<org_name>Globex</org_name>"));
    // Updates are not switched on: none was sent.
    assert!(!has("<action>updated</action>"));

    // Without provider_actions, the admin API's changes are not sent.
    app.put_form("/admin/api/webhooks.json", &[("provider_actions", "false")])
        .await;
    signup(&app, "Initech").await;
    until("Initech's event routed", async || {
        count(&app.db, "SELECT COUNT(*) FROM events WHERE routed_at IS NULL").await == 0
    })
    .await;
    app.put_form("/admin/api/webhooks.json", &[("provider_actions", "true")])
        .await;
    signup(&app, "Umbrella").await;
    let got = receiver
        .wait_for("Umbrella", |r| r.iter().any(|r| r.body.contains("Umbrella")))
        .await;
    assert!(!got.iter().any(|r| r.body.contains("Initech")));

    // A rotated secret: both sign during the overlap.
    let (status, rotated) = app.post_form("/admin/api/webhooks/rotate_secret.json", &[]).await;
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["webhook"]["signing_secret"].as_str().unwrap().to_string();
    assert_eq!(rotated["webhook"]["previous_signing_secret"], secret.as_str());
    signup(&app, "Hooli").await;
    let got = receiver
        .wait_for("Hooli", |r| r.iter().any(|r| r.body.contains("Hooli")))
        .await;
    let last = got.iter().find(|r| r.body.contains("Hooli")).unwrap();
    verify(&new, last);
    verify(&secret, last);
    app.stop().await;
}

async fn endpoint(app: &TestApp, url: &str, types: &[&str]) -> Value {
    let mut form = vec![("url", url.to_string())];
    form.extend(types.iter().map(|t| ("event_types[]", t.to_string())));
    let r = app
        .admin(Method::POST, "/admin/api/webhook_endpoints.json")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.unwrap()["webhook_endpoint"].clone()
}

async fn a_failing_receiver_gets_the_event_again_with_the_same_id(backend: Backend) {
    let app = spawn(backend, |_| {}).await;
    let receiver = Receiver::start(2).await;
    let (status, bad) = app
        .post_form(
            "/admin/api/webhook_endpoints.json",
            &[("url", "nope"), ("event_types[]", "x.y")],
        )
        .await;
    assert_eq!(status, 422, "{bad}");
    assert!(
        bad["errors"]["url"].is_array() && bad["errors"]["event_types"].is_array(),
        "{bad}"
    );
    let e = endpoint(&app, &receiver.url(), &["account.created"]).await;
    let secret = e["signing_secret"].as_str().unwrap();
    signup(&app, "Acme").await;
    let got = receiver.wait_for("three attempts", |r| r.len() >= 3).await;
    assert_eq!(got.iter().map(|r| r.status).collect::<Vec<_>>(), vec![500, 500, 200]);
    let ids: Vec<&str> = got.iter().map(|r| header(r, "webhook-id")).collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    for r in &got {
        verify(secret, r);
    }
    let body: Value = serde_json::from_str(&got[2].body).unwrap();
    assert_eq!(body["id"], ids[0]);
    assert_eq!(body["type"], "account.created");
    assert_eq!(body["data"]["account"]["org_name"], "Acme");
    let id = e["id"].as_i64().unwrap();
    let log = wait_log(&app, id, |d| d["state"] == "delivered").await;
    let attempts: Vec<i64> = log["attempt_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].as_i64().unwrap())
        .collect();
    assert_eq!(attempts, vec![500, 500, 200]);
    assert_eq!(log["attempt_log"][2]["response_excerpt"], "ok");
    // Redelivered on request, with the same id.
    let delivery = log["id"].as_i64().unwrap();
    let (status, _) = app
        .post_form(
            &format!("/admin/api/webhook_endpoints/{id}/deliveries/{delivery}/redeliver.json"),
            &[],
        )
        .await;
    assert_eq!(status, 200);
    let got = receiver.wait_for("the redelivery", |r| r.len() >= 4).await;
    assert_eq!(header(&got[3], "webhook-id"), ids[0]);
    app.stop().await;
}

/// The endpoint's latest delivery once `done` holds of it.
async fn wait_log(app: &TestApp, endpoint: i64, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (status, log) = app
            .get_json(&format!("/admin/api/webhook_endpoints/{endpoint}/deliveries.json"))
            .await;
        assert_eq!(status, 200, "{log}");
        if let Some(d) = log["deliveries"].get(0).map(|d| d["delivery"].clone()) {
            if done(&d) {
                return d;
            }
        }
        assert!(std::time::Instant::now() < deadline, "delivery log: {log}");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

async fn deliveries_that_give_up_are_3scale_failures(backend: Backend) {
    let app = spawn(backend, |c| c.webhook_max_attempts = 2).await;
    let receiver = Receiver::start(usize::MAX).await;
    let url = receiver.url();
    app.put_form(
        "/admin/api/webhooks.json",
        &[
            ("url", url.as_str()),
            ("active", "true"),
            ("provider_actions", "true"),
            ("account_created_on", "true"),
        ],
    )
    .await;
    signup(&app, "Acme").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let failures = loop {
        let (status, f) = app.get_json("/admin/api/webhooks/failures.json").await;
        assert_eq!(status, 200);
        if f["webhooks-failures"].as_array().is_some_and(|a| !a.is_empty()) {
            break f;
        }
        assert!(std::time::Instant::now() < deadline, "no failure recorded: {f}");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    };
    assert_eq!(receiver.received().len(), 2);
    let f = &failures["webhooks-failures"][0]["webhooks-failure"];
    assert_eq!(f["url"], url.as_str());
    assert!(
        f["event"].as_str().unwrap().contains("<org_name>Acme</org_name>"),
        "{f}"
    );
    assert!(f["error"].as_str().unwrap().contains("500"), "{f}");
    let xml = app
        .admin(Method::GET, "/admin/api/webhooks/failures.xml")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(xml.contains("<webhooks-failures><webhooks-failure><id>"), "{xml}");
    let r = app
        .admin(Method::DELETE, "/admin/api/webhooks/failures.json?time=nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = app
        .admin(Method::DELETE, "/admin/api/webhooks/failures.json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, f) = app.get_json("/admin/api/webhooks/failures.json").await;
    assert_eq!(f["webhooks-failures"], serde_json::json!([]));
    app.stop().await;
}

async fn private_addresses_are_refused(backend: Backend) {
    let app = spawn(backend, |c| c.webhook_allow_private = false).await;
    let receiver = Receiver::start(0).await;
    let port = receiver.addr.port();
    let literal = endpoint(&app, &receiver.url(), &["account.created"]).await;
    let named = endpoint(&app, &format!("http://localhost:{port}/hook"), &["account.created"]).await;
    signup(&app, "Acme").await;
    for (e, why) in [
        (literal, "is not a public address"),
        (named, "resolves only to private addresses"),
    ] {
        let id = e["id"].as_i64().unwrap();
        let d = wait_log(&app, id, |d| d["attempts"].as_i64() >= Some(1)).await;
        let error = d["attempt_log"][0]["error"].as_str().unwrap_or_default().to_string();
        assert!(error.contains(why), "{error}");
    }
    assert!(receiver.received().is_empty());
    app.stop().await;
}

async fn member(app: &TestApp, name: &str, sections: &[&str], admin: bool) -> (i64, String) {
    let (status, body) = app
        .post_form(
            "/admin/api/users.json",
            &[("username", name), ("email", &format!("{name}@provider.test"))],
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["user"]["id"].as_i64().unwrap();
    for event in ["activate"].into_iter().chain(admin.then_some("admin")) {
        let r = app
            .admin(Method::PUT, &format!("/admin/api/users/{id}/{event}.json"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    if !admin {
        let form: Vec<(&str, &str)> = sections.iter().map(|s| ("allowed_sections[]", *s)).collect();
        let r = app
            .admin(Method::PUT, &format!("/admin/api/users/{id}/permissions.json"))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let (status, body) = app
        .post_form(
            &format!("/admin/api/users/{id}/access_tokens.json"),
            &[("name", "t"), ("permission", "rw"), ("scopes[]", "account_management")],
        )
        .await;
    assert_eq!(status, 201, "{body}");
    (id, body["access_token"]["value"].as_str().unwrap().to_string())
}

async fn limit_alerts_reach_the_api_an_endpoint_and_e_mail(backend: Backend) {
    let mail = MailCatcher::start().await;
    let smtp = mail.url();
    let app = spawn(backend, |c| c.smtp_url = Some(smtp)).await;
    let receiver = Receiver::start(0).await;
    endpoint(&app, &receiver.url(), &["limit.alert"]).await;
    app.put_form(
        "/admin/api/provider.json",
        &[("finance_support_email", "billing@provider.test")],
    )
    .await;
    let (_, ops_token) = member(&app, "ops", &[], true).await;
    let (_, quiet_token) = member(&app, "quiet", &[], true).await;
    let (_, sales_token) = member(&app, "sales", &["partners"], false).await;
    // Preferences: a member sees only what their sections allow and cannot set the rest.
    let prefs = |token: String| {
        let client = app.client.clone();
        let url = app.url("/admin/api/personal/notification_preferences.json");
        async move {
            let r = client.get(url).bearer_auth(token).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()["notification_preferences"]["preferences"].clone()
        }
    };
    let sales = prefs(sales_token.clone()).await;
    assert_eq!(sales["account_created"], true);
    assert!(sales.get("limit_violation_reached_provider").is_none(), "{sales}");
    let r = app
        .client
        .patch(app.url("/admin/api/personal/notification_preferences.json"))
        .bearer_auth(&sales_token)
        .form(&[("limit_violation_reached_provider", "true")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let r = app
        .client
        .patch(app.url("/admin/api/personal/notification_preferences.json"))
        .bearer_auth(&quiet_token)
        .form(&[("limit_violation_reached_provider", "false")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(prefs(quiet_token).await["limit_violation_reached_provider"], false);
    assert_eq!(prefs(ops_token).await["limit_violation_reached_provider"], true);

    let (service, application) = app.seed("alert-key").await;
    let (sid, _) = app.limit_hits(&service, &application, "day", 4).await;
    let (status, bad) = app
        .put_form(
            &format!("/admin/api/services/{sid}.json"),
            &[("notification_settings[web_provider][]", "55")],
        )
        .await;
    assert_eq!(status, 422, "{bad}");
    let (status, updated) = app
        .put_form(
            &format!("/admin/api/services/{sid}.json"),
            &[
                ("notification_settings[web_provider][]", "50"),
                ("notification_settings[web_provider][]", "100"),
                ("notification_settings[email_provider][]", "100"),
                ("notification_settings[email_buyer][]", "50"),
                ("notification_settings[email_buyer][]", "100"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(
        updated["service"]["notification_settings"],
        serde_json::json!({"web_provider": [50, 100], "email_provider": [100], "web_buyer": [], "email_buyer": [50, 100]})
    );
    app.cache.invalidate();
    let token = app.service_token(sid).await;
    let call = || async {
        app.client
            .get(app.url(&format!(
                "/transactions/authrep.json?service_id={sid}&service_token={token}&user_key=alert-key&usage%5Bhits%5D=1"
            )))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    for _ in 0..2 {
        assert_eq!(call().await, 200);
    }
    tollgate::jobs::flush_once(&app.db, &app.counters).await;
    let (_, alerts) = app.get_json("/admin/api/alerts.json").await;
    assert_eq!(alerts["alerts"].as_array().unwrap().len(), 1, "{alerts}");
    assert_eq!(alerts["alerts"][0]["alert"]["level"], 50);
    assert_eq!(alerts["alerts"][0]["alert"]["message"], "hits per day: 2 of 4");
    assert_eq!(alerts["alerts"][0]["alert"]["utilization"], "0.5");
    // The same level is not raised twice in a period.
    tollgate::jobs::flush_once(&app.db, &app.counters).await;
    for _ in 0..2 {
        assert_eq!(call().await, 200);
    }
    tollgate::jobs::flush_once(&app.db, &app.counters).await;
    let (_, alerts) = app.get_json("/admin/api/alerts.json").await;
    let items = alerts["alerts"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{alerts}");
    let violation = &items[0]["alert"];
    assert_eq!(violation["level"], 100);
    assert_eq!(violation["kind"], "violation");
    assert_eq!(violation["message"], "hits per day: 4 of 4");

    let got = receiver.wait_for("two limit.alert events", |r| r.len() >= 2).await;
    let levels: Vec<i64> = got
        .iter()
        .map(|r| {
            serde_json::from_str::<Value>(&r.body).unwrap()["data"]["alert"]["level"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(
        levels.iter().copied().collect::<std::collections::BTreeSet<_>>(),
        [50, 100].into()
    );

    let alerts_only = |m: &[String]| -> Vec<String> {
        m.iter()
            .filter(|m| m.contains("limit usage is above"))
            .cloned()
            .collect()
    };
    let mails = mail
        .wait_for("buyer mails at 50 and 100, the provider's at 100", |m| {
            alerts_only(m).len() >= 3
        })
        .await;
    let mails = alerts_only(&mails);
    let to = |who: &str| mails.iter().filter(|m| m.contains(&format!("To: {who}"))).count();
    assert_eq!(to("alice@acme.test"), 2, "{mails:#?}");
    assert_eq!(to("ops@provider.test"), 1, "{mails:#?}");
    assert_eq!(to("quiet@provider.test") + to("sales@provider.test"), 0, "{mails:#?}");
    let violation_mail = mails
        .iter()
        .find(|m| m.contains("To: alice@acme.test") && m.contains("limit violation"))
        .unwrap();
    assert!(violation_mail.contains("Subject: Application 'App' limit violation - limit usage is above 100%"));
    assert!(violation_mail.contains("text/plain") && violation_mail.contains("text/html"));
    assert!(violation_mail.contains("billing@provider.test"));

    // Read, all read, delete.
    let id = violation["id"].as_i64().unwrap();
    let r = app
        .admin(Method::PUT, &format!("/admin/api/alerts/{id}/read.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, unread) = app.get_json("/admin/api/alerts.json?state=unread").await;
    assert_eq!(unread["alerts"].as_array().unwrap().len(), 1);
    app.put_form("/admin/api/alerts/all_read.json", &[]).await;
    let (_, unread) = app.get_json("/admin/api/alerts.json?state=unread").await;
    assert_eq!(unread["alerts"], serde_json::json!([]));
    let r = app
        .admin(Method::DELETE, &format!("/admin/api/alerts/{id}.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, left) = app.get_json("/admin/api/alerts.json").await;
    assert_eq!(left["alerts"].as_array().unwrap().len(), 1);

    // A message to the account reaches its admin by e-mail.
    let account = application["application"]["account_id"].as_i64().unwrap();
    let (status, _) = app
        .post_form(
            &format!("/admin/api/accounts/{account}/messages.json"),
            &[
                ("subject", "Maintenance on Sunday"),
                ("body", "We will be down for an hour."),
            ],
        )
        .await;
    assert_eq!(status, 201);
    mail.wait_for("the message", |m| {
        m.iter().any(|m| m.contains("Subject: Maintenance on Sunday"))
    })
    .await;
    app.stop().await;
}

both!(a_control_plane_killed_mid_delivery_delivers_after_restart_once_per_event);

/// `tollgate serve` on `url`, with webhooks to loopback and quick retries.
fn serve(url: &str, port: u16) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .arg("serve")
        .env("TOLLGATE_DATABASE_URL", url)
        .env("TOLLGATE_LISTEN", format!("127.0.0.1:{port}"))
        .env("TOLLGATE_ADMIN_TOKEN", tollgate::testing::ADMIN_TOKEN)
        .env("TOLLGATE_BILLING_HOUR", "off")
        .env("TOLLGATE_XDS_LISTEN", "off")
        .env("TOLLGATE_WEBHOOK_ALLOW_PRIVATE", "1")
        .env("TOLLGATE_WEBHOOK_RETRY_MS", "100")
        .env("TOLLGATE_OUTBOX_POLL_MS", "20")
        .env_remove("TOLLGATE_REDIS_URL")
        .env_remove("TOLLGATE_SMTP_URL")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// A count the test polls for.
async fn count(db: &tollgate::store::Db, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&db.pool).await.unwrap()
}

/// Polls `done` (up to 30 s).
async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !done().await {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

async fn a_control_plane_killed_mid_delivery_delivers_after_restart_once_per_event(backend: Backend) {
    let database = tollgate::testing::fresh_database(backend).await;
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (port, hook_port) = (free(), free());
    let mut child = serve(&database.url, port);
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    until("the control plane starts", async || {
        client.get(format!("{base}/health")).send().await.is_ok()
    })
    .await;
    let admin = |m: Method, path: &str| {
        client
            .request(m, format!("{base}{path}"))
            .bearer_auth(tollgate::testing::ADMIN_TOKEN)
    };
    let r = admin(Method::POST, "/admin/api/webhook_endpoints.json")
        .form(&[
            ("url", format!("http://127.0.0.1:{hook_port}/hook")),
            ("event_types[]", "account.created".into()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    for org in ["Acme", "Globex", "Initech"] {
        let r = admin(Method::POST, "/admin/api/signup.json")
            .form(&[("org_name", org), ("username", &org.to_lowercase())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let db = tollgate::store::Db::connect(&database.url).await.unwrap();
    until("each delivery failed once (nobody listens)", async || {
        count(
            &db,
            "SELECT COUNT(*) FROM deliveries WHERE attempts >= 1 AND state = 'pending'",
        )
        .await
            == 3
    })
    .await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();

    let receiver = Receiver::start_on(
        tokio::net::TcpListener::bind(("127.0.0.1", hook_port)).await.unwrap(),
        0,
    );
    let mut child = serve(&database.url, port);
    until("every delivery after the restart", async || {
        count(&db, "SELECT COUNT(*) FROM deliveries WHERE state = 'delivered'").await == 3
    })
    .await;
    let got = receiver.received();
    let ids: std::collections::BTreeSet<&str> = got.iter().map(|r| header(r, "webhook-id")).collect();
    assert_eq!((got.len(), ids.len()), (3, 3), "{got:#?}");
    let _ = child.kill();
    child.wait().unwrap();
    db.pool.close().await;
}

both!(two_control_planes_on_one_database_send_each_event_once);

async fn two_control_planes_on_one_database_send_each_event_once(backend: Backend) {
    let first = spawn(backend, |_| {}).await;
    let url = first.database_url().to_string();
    let second = spawn(backend, |c| c.database_url = url).await;
    let receiver = Receiver::start(0).await;
    endpoint(&first, &receiver.url(), &["account.created"]).await;
    for i in 0..20 {
        let app = if i % 2 == 0 { &first } else { &second };
        signup(app, &format!("Org{i}")).await;
    }
    receiver.wait_for("20 events", |r| r.len() >= 20).await;
    until("every delivery done", async || {
        count(&first.db, "SELECT COUNT(*) FROM deliveries WHERE state <> 'delivered'").await == 0
    })
    .await;
    let got = receiver.received();
    let ids: std::collections::BTreeSet<&str> = got.iter().map(|r| header(r, "webhook-id")).collect();
    assert_eq!((got.len(), ids.len()), (20, 20));
    second.stop().await;
    first.stop().await;
}
