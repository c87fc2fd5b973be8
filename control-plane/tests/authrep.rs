//! authrep against plan limits, end to end over HTTP: on SQLite and PostgreSQL with embedded
//! counters, on Redis, and with Redis going away and coming back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failure report

use serde_json::Value;
use std::time::{Duration, Instant};
use tollgate::on_both_databases;
use tollgate::store::testing::{free_port, RedisServer};
use tollgate::testing::{Backend, TestApp};

/// Seeds an application whose plan allows 3 hits a day; returns the authrep query prefix
/// and the id of a method (child of hits).
async fn limited(app: &TestApp) -> (String, i64) {
    let (service, application) = app.seed("limited-key").await;
    let (sid, hits) = app.limit_hits(&service, &application, "day", 3).await;
    let (status, method) = app
        .post_form(
            &format!("/admin/api/services/{sid}/metrics/{hits}/methods.json"),
            &[("friendly_name", "Search")],
        )
        .await;
    assert_eq!(status, 201);
    let token = app.service_token(sid).await;
    (
        format!("/transactions/authrep.json?service_id={sid}&service_token={token}&user_key=limited-key"),
        method["method"]["id"].as_i64().unwrap(),
    )
}

async fn call(app: &TestApp, path: &str) -> (u16, Value) {
    let r = app.client.get(app.url(path)).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn limits_hold(app: &TestApp) {
    let (base, _) = limited(app).await;
    for n in 1..=2 {
        let (status, body) = call(app, &format!("{base}&usage%5Bhits%5D=1")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["usage_reports"][0]["current_value"], n);
        assert_eq!(body["usage_reports"][0]["max_value"], 3);
        assert_eq!(body["usage_reports"][0]["period"], "day");
    }
    // A method's usage counts for hits too: 2 + 1 = 3 passes, then nothing more.
    let (status, _) = call(app, &format!("{base}&usage%5Bsearch%5D=1")).await;
    assert_eq!(status, 200);
    let (status, body) = call(app, &format!("{base}&usage%5Bhits%5D=1")).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["reason"], "usage limits are exceeded");
    assert_eq!(body["rejection_reason"], "limits_exceeded");
    assert_eq!(body["usage_reports"][0]["current_value"], 3, "a denial counts nothing");
    // A call that uses nothing limited still passes.
    let (status, _) = call(app, &base).await;
    assert_eq!(status, 200);
}

async fn raw(app: &TestApp, path: &str, options: Option<&str>) -> (u16, String, reqwest::header::HeaderMap) {
    let mut req = app.client.get(app.url(path));
    if let Some(o) = options {
        req = req.header("3scale-options", o);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, r.text().await.unwrap(), headers)
}

async fn report(app: &TestApp, form: &[(&str, &str)]) -> (u16, String) {
    let r = app
        .client
        .post(app.url("/transactions.xml"))
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

on_both_databases! {
    async fn limits_hold_with_embedded_counters(app: &TestApp) {
        limits_hold(app).await;
    }

    async fn xml_authorize_authrep_and_report(app: &TestApp) {
        let (base, _) = limited(app).await;
        let xml = base.replace("authrep.json", "authrep.xml");
        let authorize = base.replace("authrep.json", "authorize.xml");
        let (status, body, headers) = raw(app, &format!("{authorize}&usage%5Bhits%5D=1"), None).await;
        assert_eq!(status, 200);
        assert_eq!(headers["content-type"], "application/vnd.3scale-v2.0+xml");
        assert!(body.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?><status><authorized>true</authorized><plan>Basic</plan><usage_reports><usage_report metric=\"hits\" period=\"day\"><period_start>"), "{body}");
        assert!(body.ends_with("<max_value>3</max_value><current_value>0</current_value></usage_report></usage_reports></status>"), "authorize counts nothing: {body}");

        // Report 2 hits in one batch, then authrep takes the third and last.
        let sid = base.split("service_id=").nth(1).unwrap().split('&').next().unwrap().to_string();
        let token = base.split("service_token=").nth(1).unwrap().split('&').next().unwrap().to_string();
        let (status, body) = report(app, &[("service_id", &sid), ("service_token", &token),
            ("transactions[0][user_key]", "limited-key"), ("transactions[0][usage][hits]", "1"),
            ("transactions[1][user_key]", "limited-key"), ("transactions[1][usage][search]", "1")]).await;
        assert_eq!((status, body.as_str()), (202, ""));
        let (status, body, _) = raw(app, &format!("{xml}&usage%5Bhits%5D=1"), None).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("<current_value>3</current_value>"), "{body}");
        let (status, body, headers) = raw(app, &format!("{xml}&usage%5Bhits%5D=1"), Some("rejection_reason_header=1")).await;
        assert_eq!(status, 409);
        assert!(body.contains("<authorized>false</authorized><reason>usage limits are exceeded</reason>"), "{body}");
        assert!(!body.contains("exceeded=\"true\""), "stored 3 of 3 is not over: {body}");
        assert_eq!(headers["3scale-rejection-reason"], "limits_exceeded");
        let (status, body, _) = raw(app, &format!("{xml}&usage%5Bhits%5D=1"), Some("no_body=1")).await;
        assert_eq!((status, body.as_str()), (409, ""));

        // A batch with one bad transaction counts nothing.
        let (status, body) = report(app, &[("service_id", &sid), ("service_token", &token),
            ("transactions[0][user_key]", "limited-key"), ("transactions[0][usage][hits]", "1"),
            ("transactions[1][user_key]", "nobody"), ("transactions[1][usage][hits]", "1")]).await;
        assert_eq!(status, 403);
        assert_eq!(body, "<?xml version=\"1.0\" encoding=\"UTF-8\"?><error code=\"user_key_invalid\">user key \"nobody\" is invalid</error>");
        let (_, body, _) = raw(app, &authorize, None).await;
        assert!(body.contains("<current_value>3</current_value>"), "{body}");
        let (status, body) = report(app, &[("service_id", &sid), ("service_token", &token)]).await;
        assert_eq!(status, 400);
        assert!(body.contains("transactions_is_blank"), "{body}");
        let (status, body) = report(app, &[("service_id", &sid), ("service_token", &token),
            ("transactions[0][user_key]", "limited-key"), ("transactions[0][timestamp]", "2001-01-01 00:00:00")]).await;
        assert_eq!(status, 403);
        assert!(body.contains("transaction_timestamp_too_old"), "{body}");
    }

    async fn apisonator_errors(app: &TestApp) {
        let (base, _) = limited(app).await;
        let xml = base.replace("authrep.json", "authrep.xml");
        let sid = base.split("service_id=").nth(1).unwrap().split('&').next().unwrap().to_string();
        for (path, status, code) in [
            (format!("/transactions/authrep.xml?service_id={sid}"), 403, "provider_key_or_service_token_required"),
            ("/transactions/authrep.xml?service_token=x".to_string(), 422, "service_id_missing"),
            (format!("/transactions/authrep.xml?service_id={sid}&service_token=wrong&user_key=k"), 403, "service_token_invalid"),
            (format!("{xml}&app_id=x"), 403, "authentication_error"),
            (format!("{xml}&usage%5Bnope%5D=1"), 404, "metric_invalid"),
            (format!("{xml}&usage%5Bhits%5D=-1"), 403, "usage_value_invalid"),
            (format!("{xml}&usage%5Bhits%5D="), 403, "usage_value_invalid"),
        ] {
            let (got, body, _) = raw(app, &path, None).await;
            assert_eq!(got, status, "{path}: {body}");
            assert!(body.contains(&format!("<error code=\"{code}\">")), "{path}: {body}");
        }
        let (status, body, _) = raw(app, "/transactions/nothing.xml", None).await;
        assert_eq!((status, body.as_str()), (404, ""));
    }
}

#[tokio::test]
async fn limits_hold_with_redis_counters() {
    let app = TestApp::spawn_on_redis().await;
    limits_hold(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn redis_going_away_gives_fast_503s_and_recovery() {
    let port = free_port();
    let redis = RedisServer::start(port, None);
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.redis_url = Some(format!("redis://127.0.0.1:{}", redis.port));
        c.redis_timeout_ms = 100;
    })
    .await;
    let (base, _) = limited(&app).await;
    let path = format!("{base}&usage%5Bhits%5D=1");
    assert_eq!(call(&app, &path).await.0, 200);

    drop(redis);
    for _ in 0..3 {
        let started = Instant::now();
        let (status, body) = call(&app, &path).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["code"], "backend_unavailable");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "answered in {:?}",
            started.elapsed()
        );
    }

    // Back on the same port: authreps pass again without restarting the control plane.
    let _redis = RedisServer::start(port, None);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, _) = call(&app, &path).await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "did not recover: {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.stop().await;
}

/// Hundreds of malformed requests (a deterministic generator mixing real and broken
/// credentials, odd usage keys and values, bad percent-encoding): never a 5xx.
#[tokio::test]
async fn malformed_requests_never_get_a_5xx() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (base, _) = limited(&app).await;
    let real: Vec<&str> = base.split('?').nth(1).unwrap().split('&').collect();
    let keys = [
        "usage%5Bhits%5D",
        "usage%5B",
        "usage%5B%5D%5Bx%5D",
        "usage",
        "app_id",
        "app_key",
        "user_key",
        "%FF",
        "log%5Bcode%5D",
        "no_body",
    ];
    let values = [
        "1",
        "-1",
        "",
        "%FF%FE",
        "#5",
        "99999999999999999999",
        "a%20b",
        "%",
        "1%00",
        "[]",
    ];
    let mut seed: u64 = 0x5eed;
    let mut next = |n: usize| {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) as usize % n
    };
    for i in 0..300 {
        let mut parts: Vec<String> = real.iter().filter(|_| next(4) != 0).map(|s| s.to_string()).collect();
        for _ in 0..next(4) {
            parts.push(format!("{}={}", keys[next(keys.len())], values[next(values.len())]));
        }
        let endpoint = ["authrep.xml", "authorize.xml", "authrep.json"][i % 3];
        let url = app.url(&format!("/transactions/{endpoint}?{}", parts.join("&")));
        let status = app.client.get(&url).send().await.unwrap().status().as_u16();
        assert!(status < 500, "{status} for {url}");
    }
    let r = app
        .client
        .post(app.url("/transactions.xml"))
        .body("transactions%5B%5D=%FF&&=")
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert!(r.status().as_u16() < 500);
    app.stop().await;
}

#[tokio::test]
async fn limit_headers_hierarchy_and_app_keys() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (base, _) = limited(&app).await;
    let xml = base.replace("authrep.json", "authrep.xml");
    let (status, body, headers) = raw(
        &app,
        &format!("{xml}&usage%5Bsearch%5D=1"),
        Some("limit_headers=1&hierarchy=1&list_app_keys=1"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // 3 a day, 1 used by this call: 2 more such calls.
    assert_eq!(headers["3scale-limit-remaining"], "2");
    assert_eq!(headers["3scale-limit-max-value"], "3");
    let reset: i64 = headers["3scale-limit-reset"].to_str().unwrap().parse().unwrap();
    assert!((0..=86_400).contains(&reset), "{reset}");
    assert!(
        body.contains("<hierarchy><metric name=\"hits\" children=\"search\"/></hierarchy>"),
        "{body}"
    );
    assert!(body.contains("<app_keys app=\""), "{body}");
    // A call with no usage: every report counts, none limits it (-1), the longest gives reset and max.
    let (_, _, headers) = raw(&app, &xml, Some("limit_headers=1")).await;
    assert_eq!(headers["3scale-limit-remaining"], "-1");
    assert_eq!(headers["3scale-limit-max-value"], "3");
    app.stop().await;
}

/// The steady state of authrep makes no catalog query: with Redis counters and the database
/// pool closed after a warm-up, authreps are still answered (from the hot cache and Redis).
/// (Embedded counters write every counted call to the database by design; with the database
/// gone they answer 503 rather than count what they could not store.)
#[tokio::test]
async fn steady_state_authrep_needs_no_database() {
    let app = TestApp::spawn_on_redis().await;
    let (base, _) = limited(&app).await;
    let xml = base.replace("authrep.json", "authrep.xml");
    assert_eq!(raw(&app, &format!("{xml}&usage%5Bhits%5D=1"), None).await.0, 200);
    assert_eq!(
        raw(
            &app,
            "/transactions/authrep.xml?service_id=1&service_token=x&user_key=y",
            None
        )
        .await
        .0,
        403
    );
    app.db.pool.close().await;
    // Calls 2 and 3 of 3 a day pass; the 4th is over the limit.
    for _ in 0..2 {
        assert_eq!(raw(&app, &format!("{xml}&usage%5Bhits%5D=1"), None).await.0, 200);
    }
    let (status, body, _) = raw(&app, &format!("{xml}&usage%5Bhits%5D=1"), None).await;
    assert_eq!(status, 409, "limits still hold: {body}");
    assert_eq!(
        raw(
            &app,
            "/transactions/authrep.xml?service_id=1&service_token=x&user_key=y",
            None
        )
        .await
        .0,
        403
    );
    app.stop().await;
}

/// An admin write is seen by the very next authrep of this control plane.
#[tokio::test]
async fn suspension_applies_at_once() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (base, _) = limited(&app).await;
    assert_eq!(call(&app, &base).await.0, 200);
    let (_, apps) = app.get_json("/admin/api/applications.json").await;
    let a = &apps["applications"][0]["application"];
    let path = format!(
        "/admin/api/accounts/{}/applications/{}/suspend.json",
        a["account_id"], a["id"]
    );
    let r = app.admin(reqwest::Method::PUT, &path).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (status, body) = call(&app, &base).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["rejection_reason"], "application_not_active");
    app.stop().await;
}

/// Embedded counters survive a restart: what a response counted is in the database. With the
/// database gone, a counted call fails instead of counting what was not stored.
#[tokio::test]
async fn embedded_counters_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.database_url = url.clone()).await;
    let (base, _) = limited(&app).await;
    for _ in 0..2 {
        assert_eq!(call(&app, &format!("{base}&usage%5Bhits%5D=1")).await.0, 200);
    }
    app.stop().await;

    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.database_url = url.clone()).await;
    let (status, body) = call(&app, &format!("{base}&usage%5Bhits%5D=1")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["usage_reports"][0]["current_value"], 3, "2 before the restart + 1");
    assert_eq!(call(&app, &format!("{base}&usage%5Bhits%5D=1")).await.0, 409);
    app.db.pool.close().await;
    let (status, body) = call(&app, &base).await;
    assert_eq!(status, 200, "a call that counts nothing needs no write: {body}");
    app.stop().await;
}

/// POSTs a JSON report (as our filter sends them) to `/transactions.json`.
async fn report_json(app: &TestApp, body: &Value) -> (u16, String) {
    let r = app
        .client
        .post(app.url("/transactions.json"))
        .json(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Sets, response codes, batch ids and the usage tables, through the HTTP API.
async fn usage_reaches_the_usage_tables(app: &TestApp) {
    use tollgate::domain::ids::{ApplicationId, MetricId, ServiceId};
    use tollgate::usage::{self, Scope};
    let (base, _) = limited(app).await;
    let sid: i64 = base
        .split("service_id=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let token = base
        .split("service_token=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_string();
    let application: i64 = sqlx::query_scalar("SELECT id FROM applications WHERE user_key = 'limited-key'")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    let hits: i64 = sqlx::query_scalar("SELECT id FROM metrics WHERE service_id = $1 AND system_name = 'hits'")
        .bind(sid)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();

    // authrep with a response code; a method's hit is a hit too.
    let (status, body) = call(app, &format!("{base}&usage%5Bhits%5D=1&log%5Bcode%5D=200")).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = call(app, &format!("{base}&usage%5Bsearch%5D=1&log%5Bcode%5D=404")).await;
    assert_eq!(status, 200);
    // A denied authrep logs nothing; authorize never does.
    let (status, _) = call(app, &format!("{base}&usage%5Bhits%5D=5&log%5Bcode%5D=500")).await;
    assert_eq!(status, 409);
    let authorize = base.replace("authrep.json", "authorize.json");
    let (status, _) = call(app, &format!("{authorize}&usage%5Bhits%5D=1&log%5Bcode%5D=500")).await;
    assert_eq!(status, 200);

    // A JSON report with a batch id, sent twice, counts once.
    let batch = serde_json::json!({
        "service_id": sid.to_string(), "service_token": token, "batch_id": "b-1",
        "transactions": [
            {"user_key": "limited-key", "usage": {"hits": 3}, "log": {"code": 503}},
            {"user_key": "limited-key", "usage": {"hits": 2}, "log": {"code": 201}},
        ]
    });
    assert_eq!(report_json(app, &batch).await, (202, String::new()));
    assert_eq!(
        report_json(app, &batch).await,
        (202, String::new()),
        "acknowledged again"
    );
    let (_, body) = call(app, &authorize).await;
    assert_eq!(
        body["usage_reports"][0]["current_value"], 7,
        "2 authreps + 5 reported, once: {body}"
    );
    let mut other = batch.clone();
    other["batch_id"] = "b-2".into();
    other["transactions"] =
        serde_json::json!([{"user_key": "limited-key", "usage": {"hits": 1}, "log": {"codes": {"500": 3, "abc": 1}}}]);
    assert_eq!(report_json(app, &other).await.0, 202);
    let mut long = other.clone();
    long["batch_id"] = "x".repeat(201).into();
    let (status, body) = report_json(app, &long).await;
    assert_eq!(status, 422);
    assert!(body.contains("batch_id_invalid"), "{body}");

    // The flush copies it all; flushing again changes nothing.
    let hour = chrono::Utc::now().timestamp() / 3600 * 3600;
    let (from, to) = (hour - 7200, hour + 7200);
    for _ in 0..2 {
        usage::flush(&app.db, &app.counters).await.unwrap();
        assert_eq!(
            usage::total(
                &app.db,
                Scope::Application(ApplicationId::new(application)),
                MetricId::new(hits),
                from,
                to
            )
            .await
            .unwrap(),
            8
        );
        assert_eq!(
            usage::total(
                &app.db,
                Scope::Service(ServiceId::new(sid)),
                MetricId::new(hits),
                from,
                to
            )
            .await
            .unwrap(),
            8
        );
        let codes = usage::response_codes(&app.db, Scope::Service(ServiceId::new(sid)), from, to)
            .await
            .unwrap();
        let codes: Vec<(&str, i64)> = codes.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(
            codes,
            vec![
                ("200", 1),
                ("201", 1),
                ("2xx", 2),
                ("404", 1),
                ("4xx", 1),
                ("500", 3),
                ("503", 1),
                ("5xx", 4)
            ]
        );
    }

    // For the filter's cache: when each period ends, and which methods count against a metric.
    let r = app
        .client
        .get(app.url(&authorize))
        .header("3scale-options", "hierarchy=1")
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["hierarchy"]["hits"], serde_json::json!(["search"]), "{body}");
    let ends_at = body["usage_reports"][0]["ends_at"].as_i64().unwrap();
    assert_eq!(ends_at % 86_400, 0, "a day ends at midnight UTC");

    // `#N` sets the counter (here: every counter of hits, the hour one too).
    let (status, body) = call(app, &format!("{base}&usage%5Bhits%5D=%232")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["usage_reports"][0]["current_value"], 2);
    let (status, _) = call(app, &format!("{base}&usage%5Bhits%5D=%234")).await;
    assert_eq!(status, 409, "a set past the max is denied");
    usage::flush(&app.db, &app.counters).await.unwrap();
    assert_eq!(
        usage::total(
            &app.db,
            Scope::Application(ApplicationId::new(application)),
            MetricId::new(hits),
            from,
            to
        )
        .await
        .unwrap(),
        2
    );
}

on_both_databases! {
    async fn usage_tables_on_embedded_counters(app: &TestApp) {
        usage_reaches_the_usage_tables(app).await;
    }
}

#[tokio::test]
async fn usage_tables_on_redis_counters() {
    let app = TestApp::spawn_on_redis().await;
    usage_reaches_the_usage_tables(&app).await;
    app.stop().await;
}

/// A report batch that fails part-way — Redis stops answering while it is being counted — is
/// counted exactly once when the gateway sends it again: each transaction's mark moves in the
/// same atomic call as its counters, so the resend counts only what the first try had not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_cut_short_by_redis_counts_exactly_once_when_resent() {
    use tollgate::counters::{Counter, Op, Scope};
    use tollgate::domain::ids::{AccountId, ApplicationId, MetricId};
    let redis = std::sync::Arc::new(RedisServer::start(free_port(), None));
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.redis_url = Some(redis.url());
        c.redis_timeout_ms = 100;
    })
    .await;
    let (service, application) = app.seed("batch-key").await;
    let (sid, hits) = app.limit_hits(&service, &application, "eternity", 1_000_000).await;
    let token = app.service_token(sid).await;
    let id = application["application"]["id"].as_i64().unwrap();
    let account = application["application"]["account_id"].as_i64().unwrap();
    let tollgate::counters::Counters::Redis(store) = &app.counters else {
        panic!("on Redis")
    };
    let key = store.key(
        Scope::new(ApplicationId::new(id), AccountId::new(account)),
        &Op {
            counter: Counter::Metric(MetricId::new(hits)),
            period: tollgate::domain::periods::Period::Eternity,
            start: 0,
            ttl: None,
            amount: tollgate::counters::Amount::Add(0),
            max: None,
            account: None,
        },
    );
    const N: usize = 1000; // the most a report may carry
    let transactions: Vec<Value> = (0..N)
        .map(|_| serde_json::json!({"user_key": "batch-key", "usage": {"hits": 1}}))
        .collect();
    let batch = serde_json::json!({
        "service_id": sid.to_string(), "service_token": token, "batch_id": "cut-short", "transactions": transactions,
    });
    let counted = |conn: redis::aio::MultiplexedConnection| {
        let key = key.clone();
        async move {
            let mut conn = conn;
            let v: Option<i64> = redis::cmd("GET").arg(&key).query_async(&mut conn).await.unwrap();
            v.unwrap_or(0)
        }
    };
    let conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();

    // Redis hangs once part of the batch is counted; the report fails.
    let first = {
        let (client, url, batch) = (app.client.clone(), app.url("/transactions.json"), batch.clone());
        tokio::spawn(async move { client.post(url).json(&batch).send().await.unwrap().status().as_u16() })
    };
    let before_the_cut = loop {
        let n = counted(conn.clone()).await;
        if n > 0 || first.is_finished() {
            break n;
        }
        tokio::task::yield_now().await;
    };
    redis.pause();
    let status = first.await.unwrap();
    redis.resume();
    let after_the_cut = counted(conn.clone()).await;
    assert_eq!(status, 503, "the first try fails part-way");
    assert!(
        before_the_cut > 0 && (after_the_cut as usize) < N,
        "cut at {before_the_cut}..{after_the_cut} of {N}"
    );

    // Sent again (once the claim is released): every transaction counted once, no more.
    assert_eq!(report_json(&app, &batch).await, (202, String::new()));
    assert_eq!(
        counted(conn.clone()).await,
        N as i64,
        "first try counted {after_the_cut}"
    );
    assert_eq!(
        report_json(&app, &batch).await,
        (202, String::new()),
        "acknowledged again"
    );
    assert_eq!(counted(conn).await, N as i64);
    eprintln!("a batch of {N} cut after {after_the_cut} transactions, resent: {N} counted");
    app.stop().await;
}
