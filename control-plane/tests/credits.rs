//! Prepaid credits end to end over HTTP: settings, rates, grants, enforcement in authrep, the
//! ledger and its reconciliation; on SQLite and PostgreSQL, and on Redis counters.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failure report

use rust_decimal::Decimal;
use serde_json::Value;
use tollgate::counters::{Amount, Counters};
use tollgate::on_both_databases;
use tollgate::testing::TestApp;

async fn call(app: &TestApp, path: &str) -> (u16, Value) {
    let r = app.client.get(app.url(path)).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// A prepaid account whose application pays `per_hit` credits a hit (no limits); returns the
/// account id and the authrep URL for one hit.
async fn prepaid(app: &TestApp, per_hit: &str) -> (i64, String) {
    let (service, application) = app.seed("prepaid-key").await;
    let sid = service["service"]["id"].as_i64().unwrap();
    let aid = application["application"]["account_id"].as_i64().unwrap();
    let (_, metrics) = app.get_json(&format!("/admin/api/services/{sid}/metrics.json")).await;
    let hits = metrics["metrics"][0]["metric"]["id"].to_string();
    let rate = app
        .make_prepaid(
            sid,
            aid,
            &hits,
            &[
                ("credits_per_unit", per_hit),
                ("upstream_cost_per_unit", "0.2"),
                ("rate_type", "text"),
            ],
        )
        .await;
    let shown: Decimal = rate["credit_rate"]["credits_per_unit"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(shown, per_hit.parse::<Decimal>().unwrap(), "{rate}");
    let token = app.service_token(sid).await;
    let url = format!(
        "/transactions/authrep.json?service_id={sid}&service_token={token}&user_key=prepaid-key&usage%5Bhits%5D=1"
    );
    (aid, url)
}

async fn balance(app: &TestApp, aid: i64) -> Value {
    let (status, body) = app
        .get_json(&format!("/admin/api/accounts/{aid}/credit_balance.json"))
        .await;
    assert_eq!(status, 200, "{body}");
    body["credit_balance"].clone()
}

async fn ledger(app: &TestApp, aid: i64) -> Vec<(String, String, String)> {
    let (status, body) = app
        .get_json(&format!("/admin/api/accounts/{aid}/credit_transactions.json"))
        .await;
    assert_eq!(status, 200, "{body}");
    body["credit_transactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let t = &t["credit_transaction"];
            (
                t["kind"].as_str().unwrap().to_string(),
                t["amount"].as_str().unwrap().to_string(),
                t["balance_after"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn entry(kind: &str, amount: &str, after: &str) -> (String, String, String) {
    (kind.into(), amount.into(), after.into())
}

on_both_databases! {
    async fn a_prepaid_balance_is_enforced_and_ledgered(app: &TestApp) {
        let (status, settings) = app.put_form("/admin/api/settings/credits.json",
            &[("starter_credits", "5"), ("purchase_url", "https://buy.test/credits")]).await;
        assert_eq!(status, 200, "{settings}");
        assert_eq!(settings["credit_settings"]["starter_credits"], "5");
        let (aid, url) = prepaid(app, "0.5").await;
        let b = balance(app, aid).await;
        assert_eq!((b["balance"].as_str(), b["total_granted"].as_str()), (Some("5"), Some("5")), "starter credits: {b}");
        let (status, grant) = app.post_form(&format!("/admin/api/accounts/{aid}/credit_grants.json"),
            &[("amount", "2.5"), ("kind", "purchase"), ("note", "order 17")]).await;
        assert_eq!(status, 201, "{grant}");
        assert_eq!(balance(app, aid).await["balance"], "7.5");

        // 7.5 credits at 0.5 a hit: 15 calls pass, the 16th is refused and deducts nothing.
        for n in 1..=15 {
            let (status, body) = call(app, &url).await;
            assert_eq!(status, 200, "call {n}: {body}");
            // What a gateway needs to spend the balance from its cache, in ten-thousandths.
            assert_eq!(body["credits"]["remaining_units"], 75_000 - n * 5_000, "{body}");
            assert_eq!(body["credits"]["weights"]["hits"], 5_000, "{body}");
        }
        let (status, body) = call(app, &url).await;
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["rejection_reason"], "credits_exhausted");
        assert_eq!(body["reason"], "credit balance is insufficient");
        assert_eq!(body["purchase_url"], "https://buy.test/credits");
        let b = balance(app, aid).await;
        assert_eq!((b["balance"].as_str(), b["pending"].as_str()), (Some("0"), Some("7.5")), "{b}");
        assert_eq!(b["total_purchased"], "2.5");

        // The flush puts the deduction in the ledger, once, with the usage behind it.
        tollgate::usage::flush(&app.db, &app.counters).await.unwrap();
        assert_eq!(tollgate::credits::flush(&app.db, &app.counters).await.unwrap(), 1);
        assert_eq!(tollgate::credits::flush(&app.db, &app.counters).await.unwrap(), 0);
        assert_eq!(balance(app, aid).await["pending"], "0");
        assert_eq!(ledger(app, aid).await, vec![
            entry("grant", "5", "5"),
            entry("grant", "2.5", "7.5"),
            entry("deduction", "-7.5", "0"),
        ]);
        let (_, deductions) = app.get_json(&format!("/admin/api/accounts/{aid}/credit_transactions.json?kind=deduction")).await;
        assert_eq!(deductions["credit_transactions"].as_array().unwrap().len(), 1);
        let detail = &deductions["credit_transactions"][0]["credit_transaction"]["detail"];
        assert_eq!(detail.as_array().map(Vec::len), Some(1), "{deductions}");
        assert_eq!((detail[0]["metric"].as_str(), detail[0]["quantity"].as_i64(), detail[0]["credits"].as_str()),
            (Some("hits"), Some(15), Some("7.5")), "{detail}");
        assert!(detail[0]["application_id"].is_i64());

        // Spending it all crossed the (default 0: off) threshold without an event.
        let events: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE kind = 'credits.low_balance'").fetch_one(&app.db.pool).await.unwrap();
        assert_eq!(events, 0);
        // A new grant is enforced at once by this replica.
        app.post_form(&format!("/admin/api/accounts/{aid}/credit_grants.json"), &[("amount", "1")]).await;
        assert_eq!(call(app, &url).await.0, 200);
        assert_eq!(call(app, &url).await.0, 200);
        assert_eq!(call(app, &url).await.0, 409);
    }

    async fn a_grant_expires_with_what_it_had_left_and_is_spent_first(app: &TestApp) {
        let (aid, url) = prepaid(app, "1").await;
        let grants = format!("/admin/api/accounts/{aid}/credit_grants.json");
        let soon = (chrono::Utc::now() + chrono::Duration::seconds(2))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        assert_eq!(app.post_form(&grants, &[("amount", "10")]).await.0, 201);
        assert_eq!(app.post_form(&grants, &[("amount", "5"), ("kind", "promotional"), ("expires_at", &soon)]).await.0, 201);
        assert_eq!(balance(app, aid).await["expiring_next"], soon.as_str());
        for _ in 0..2 {
            assert_eq!(call(app, &url).await.0, 200);
        }
        assert_eq!(tollgate::credits::expire(&app.db, &app.counters).await.unwrap(), 0, "not yet");
        tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
        // The 2 spent came out of the expiring grant: 3 of it expire; twice is once.
        assert_eq!(tollgate::credits::expire(&app.db, &app.counters).await.unwrap(), 1);
        assert_eq!(tollgate::credits::expire(&app.db, &app.counters).await.unwrap(), 0);
        tollgate::credits::flush(&app.db, &app.counters).await.unwrap();
        assert_eq!(ledger(app, aid).await, vec![
            entry("grant", "10", "10"),
            entry("grant", "5", "15"),
            entry("expiry", "-3", "12"),
            entry("deduction", "-2", "10"),
        ]);
        let b = balance(app, aid).await;
        assert_eq!((b["balance"].as_str(), b["expiring_next"].is_null()), (Some("10"), true), "{b}");
    }

    async fn issued_credits_adjust_a_prepaid_balance_and_wait_for_a_postpaid_invoice(app: &TestApp) {
        let (aid, _) = prepaid(app, "1").await;
        let issue = format!("/admin/api/accounts/{aid}/credits.json");
        let (status, credit) = app.post_form(&issue, &[("amount", "7.50"), ("billing_month", "2026-10"), ("note", "outage")]).await;
        assert_eq!(status, 201, "{credit}");
        assert_eq!(credit["credit"]["applied_to"], "balance");
        let (status, _) = app.post_form(&issue, &[("amount", "-2.5")]).await;
        assert_eq!(status, 201);
        assert_eq!(balance(app, aid).await["balance"], "5");
        assert_eq!(ledger(app, aid).await, vec![
            entry("adjustment", "7.5", "7.5"),
            entry("adjustment", "-2.5", "5"),
        ]);
        for (form, field) in [
            (vec![("amount", "0")], "amount"),
            (vec![("amount", "1"), ("billing_month", "2026-13")], "billing_month"),
            (vec![("amount", "1"), ("currency", "dollars")], "currency"),
            (vec![("amount", "1"), ("service_id", "999999")], "service_id"),
        ] {
            let (status, body) = app.post_form(&issue, &form).await;
            assert_eq!((status, body["errors"][field].is_array()), (422, true), "{form:?}: {body}");
        }
        let (_, list) = app.get_json(&format!("{issue}?billing_month=2026-10")).await;
        assert_eq!(list["credits"].as_array().unwrap().len(), 1, "{list}");

        let (_, postpaid) = app.post_form("/admin/api/signup.json",
            &[("org_name", "Postpaid Co"), ("username", "bob"), ("email", "bob@post.test")]).await;
        let pid = postpaid["account"]["id"].as_i64().unwrap();
        let (status, credit) = app.post_form(&format!("/admin/api/accounts/{pid}/credits.json"),
            &[("amount", "7.5"), ("currency", "EUR")]).await;
        assert_eq!(status, 201, "{credit}");
        assert_eq!(credit["credit"]["applied_to"], "invoice");
        assert_eq!(ledger(app, pid).await, vec![], "a postpaid account has no wallet");
        // The billing run puts it on that month's invoice as a line of -7.50, once.
        let today = chrono::Utc::now().date_naive().to_string();
        for _ in 0..2 {
            let (status, job) = app.post_form("/master/api/providers/1/billing_jobs.json", &[("date", &today)]).await;
            assert_eq!(status, 202, "{job}");
        }
        let (_, invoices) = app.get_json(&format!("/api/accounts/{pid}/invoices.json")).await;
        let invoices = invoices["invoices"].as_array().unwrap();
        assert_eq!(invoices.len(), 1, "{invoices:?}");
        let id = invoices[0]["invoice"]["id"].as_i64().unwrap();
        assert_eq!(invoices[0]["invoice"]["month"], chrono::Utc::now().format("%Y-%m").to_string());
        let (_, lines) = app.get_json(&format!("/api/invoices/{id}/line_items.json")).await;
        let line = &lines["line_items"][0]["line_item"];
        assert_eq!((line["type"].as_str(), line["cost"].as_f64()), (Some("credit"), Some(-7.5)), "{lines}");
        let (_, list) = app.get_json(&format!("/admin/api/accounts/{pid}/credits.json")).await;
        assert!(list["credits"][0]["credit"]["invoiced_at"].is_string(), "{list}");
    }

    async fn crossing_the_low_balance_threshold_is_one_event(app: &TestApp) {
        app.put_form("/admin/api/settings/credits.json", &[("low_balance_threshold", "3")]).await;
        let (aid, url) = prepaid(app, "1").await;
        let grants = format!("/admin/api/accounts/{aid}/credit_grants.json");
        app.post_form(&grants, &[("amount", "5")]).await;
        let low_events = || async {
            sqlx::query_scalar::<_, String>("SELECT payload FROM events WHERE kind = 'credits.low_balance' AND account_id = $1 ORDER BY id")
                .bind(aid)
                .fetch_all(&app.db.pool)
                .await
                .unwrap()
        };
        // 5 → 2 (below 3: one event) → 1 (still low: none).
        for _ in 0..3 {
            assert_eq!(call(app, &url).await.0, 200);
        }
        tollgate::credits::flush(&app.db, &app.counters).await.unwrap();
        assert_eq!(call(app, &url).await.0, 200);
        tollgate::credits::flush(&app.db, &app.counters).await.unwrap();
        let events = low_events().await;
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(events[0].contains("\"balance\":\"2\""), "{events:?}");
        // Topped up, then down again: a second crossing.
        app.post_form(&grants, &[("amount", "10")]).await;
        for _ in 0..9 {
            assert_eq!(call(app, &url).await.0, 200);
        }
        tollgate::credits::flush(&app.db, &app.counters).await.unwrap();
        assert_eq!(low_events().await.len(), 2);
    }

    async fn a_restarted_control_plane_neither_loses_nor_repeats_a_deduction(app: &TestApp) {
        let (aid, url) = prepaid(app, "1").await;
        app.post_form(&format!("/admin/api/accounts/{aid}/credit_grants.json"), &[("amount", "5")]).await;
        for _ in 0..2 {
            assert_eq!(call(app, &url).await.0, 200);
        }
        tollgate::credits::flush(&app.db, &app.counters).await.unwrap();
        assert_eq!(call(app, &url).await.0, 200);
        // What a restart finds: the embedded store as the database kept it.
        let restarted = Counters::Embedded(std::sync::Arc::new(
            tollgate::counters::embedded::EmbeddedStore::durable(app.db.clone()).await.unwrap(),
        ));
        let b = tollgate::credits::balance(&app.db, &restarted, tollgate::domain::ids::AccountId::new(aid)).await.unwrap();
        assert_eq!((b.balance.to_string(), b.pending.to_string()), ("2".to_string(), "1".to_string()), "{b:?}");
        assert_eq!(tollgate::credits::flush(&app.db, &restarted).await.unwrap(), 1);
        assert_eq!(tollgate::credits::flush(&app.db, &app.counters).await.unwrap(), 0, "not twice");
        assert_eq!(ledger(app, aid).await, vec![
            entry("grant", "5", "5"),
            entry("deduction", "-2", "3"),
            entry("deduction", "-1", "2"),
        ]);
    }

    async fn the_margin_report_sets_credits_charged_against_upstream_cost(app: &TestApp) {
        let (aid, url) = prepaid(app, "1").await;
        app.post_form(&format!("/admin/api/accounts/{aid}/credit_grants.json"), &[("amount", "10")]).await;
        for _ in 0..4 {
            assert_eq!(call(app, &url).await.0, 200);
        }
        tollgate::usage::flush(&app.db, &app.counters).await.unwrap();
        tollgate::credits::flush(&app.db, &app.counters).await.unwrap();
        let (_, services) = app.get_json("/admin/api/services.json").await;
        let sid = services["services"][0]["service"]["id"].as_i64().unwrap();
        // Rates changed afterwards don't rewrite what was charged.
        let (_, rates) = app.get_json(&format!("/admin/api/services/{sid}/credit_rates.json")).await;
        let rate = rates["credit_rates"][0]["credit_rate"]["id"].as_i64().unwrap();
        let (status, body) = app.put_form(&format!("/admin/api/services/{sid}/credit_rates/{rate}.json"),
            &[("credits_per_unit", "3"), ("upstream_cost_per_unit", "1")]).await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = app.get_json(&format!("/admin/api/services/{sid}/credit_margins.json")).await;
        assert_eq!(status, 200, "{body}");
        let m = &body["credit_margins"][0]["credit_margin"];
        assert_eq!(m["metric"], "hits", "{body}");
        // 4 hits at 1 credit, upstream 0.2 each: the rates when they were charged.
        assert_eq!((m["credits_charged"].as_str(), m["upstream_cost"].as_str(), m["margin"].as_str()),
            (Some("4"), Some("0.8"), Some("3.2")), "{body}");
        let (status, body) = app.get_json(&format!("/admin/api/services/{sid}/credit_margins.json?month=2026-13")).await;
        assert_eq!((status, body["errors"]["month"].is_array()), (422, true), "{body}");
        let (_, other) = app.get_json(&format!("/admin/api/services/{sid}/credit_margins.json?month=2020-01")).await;
        assert_eq!(other["credit_margins"][0]["credit_margin"]["credits_charged"], "0");
    }

    async fn bad_credit_input_names_the_field_and_writes_nothing(app: &TestApp) {
        let (aid, _) = prepaid(app, "1").await;
        let grants = format!("/admin/api/accounts/{aid}/credit_grants.json");
        for (form, field) in [
            (vec![("amount", "0")], "amount"),
            (vec![("amount", "-3")], "amount"),
            (vec![("amount", "1.00001")], "amount"),
            (vec![("amount", "ten")], "amount"),
            (vec![], "amount"),
            (vec![("amount", "1"), ("kind", "gift")], "kind"),
            (vec![("amount", "1"), ("expires_at", "tomorrow")], "expires_at"),
        ] {
            let (status, body) = app.post_form(&grants, &form).await;
            assert_eq!(status, 422, "{form:?}: {body}");
            assert!(body["errors"][field].is_array(), "{form:?} names {field}: {body}");
        }
        let (status, _) = app.post_form("/admin/api/accounts/999999/credit_grants.json", &[("amount", "1")]).await;
        assert_eq!(status, 404);
        assert_eq!(ledger(app, aid).await, vec![], "nothing half-written");
        let (status, body) = app.put_form("/admin/api/settings/credits.json", &[("starter_credits", "-1")]).await;
        assert_eq!((status, body["errors"]["starter_credits"].is_array()), (422, true), "{body}");
        let (status, _) = app.get_json("/admin/api/services/999999/credit_margins.json").await;
        assert_eq!(status, 404);
        let (status, body) = app.put_form("/admin/api/settings/credits.json", &[("purchase_url", "ftp://x")]).await;
        assert_eq!((status, body["errors"]["purchase_url"].is_array()), (422, true), "{body}");
        let (_, other) = app.post_form("/admin/api/services.json", &[("name", "Other")]).await;
        let other = other["service"]["id"].as_i64().unwrap();
        let (_, metrics) = app.get_json(&format!("/admin/api/services/{other}/metrics.json")).await;
        let foreign = metrics["metrics"][0]["metric"]["id"].to_string();
        let (status, body) = app.post_form("/admin/api/services/1/credit_rates.json",
            &[("metric_id", &foreign), ("credits_per_unit", "1")]).await;
        assert_eq!((status, body["errors"]["metric_id"].is_array()), (422, true), "{body}");
        let (status, body) = app.get_json(&format!("/admin/api/accounts/{aid}/credit_transactions.json?since=yesterday")).await;
        assert_eq!((status, body["errors"]["since"].is_array()), (422, true), "{body}");
    }
}

#[tokio::test]
async fn on_redis_concurrent_calls_spend_exactly_the_balance_and_the_ledger_restores_a_lost_counter() {
    concurrent_calls_spend_exactly_the_balance(TestApp::spawn_on_redis().await).await;
}

/// On a Redis Cluster the account's credit counter shares its applications' slot: the one
/// script that checks the limits spends the credits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_concurrent_calls_spend_exactly_the_balance() {
    concurrent_calls_spend_exactly_the_balance(TestApp::spawn_on_cluster(tollgate::testing::Backend::Postgres).await)
        .await;
}

async fn concurrent_calls_spend_exactly_the_balance(app: TestApp) {
    let (aid, url) = prepaid(&app, "1").await;
    app.post_form(
        &format!("/admin/api/accounts/{aid}/credit_grants.json"),
        &[("amount", "10")],
    )
    .await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..30 {
        let (client, url) = (app.client.clone(), app.url(&url));
        tasks.spawn(async move { client.get(url).send().await.unwrap().status().as_u16() });
    }
    let mut passed = 0;
    while let Some(status) = tasks.join_next().await {
        passed += usize::from(status.unwrap() == 200);
    }
    assert_eq!(passed, 10);
    assert_eq!(balance(&app, aid).await["balance"], "0");
    tollgate::credits::flush(&app.db, &app.counters).await.unwrap();

    // Redis loses the spent counter: the ledger puts it back, and the balance stays spent.
    let Counters::Redis(store) = &app.counters else {
        panic!("on Redis")
    };
    let account = tollgate::domain::ids::AccountId::new(aid);
    let key = store.key(
        tollgate::domain::counters::Scope::account(account),
        &tollgate::domain::credits::spent_op(account, Amount::Add(0)),
    );
    let mut conn = app.redis().await;
    let deleted: i64 = redis::cmd("DEL").arg(&key).query_async(&mut conn).await.unwrap();
    assert_eq!(deleted, 1, "{key}");
    tollgate::credits::flush(&app.db, &app.counters).await.unwrap();
    assert_eq!(call(&app, &url).await.0, 409);
    let b = balance(&app, aid).await;
    assert_eq!(
        (b["balance"].as_str(), b["pending"].as_str()),
        (Some("0"), Some("0")),
        "{b}"
    );
    assert_eq!(
        ledger(&app, aid).await,
        vec![entry("grant", "10", "10"), entry("deduction", "-10", "0")]
    );
    app.stop().await;
}

/// AIGNE Hub's pending deductions: what authrep and reports counted but the ledger does not hold
/// yet (no credit flush has run) shows as pending, and the balance already net of it; listing
/// the grants works too.
#[tokio::test]
async fn the_balance_shows_what_is_counted_but_not_yet_in_the_ledger_as_pending() {
    let app = TestApp::spawn_with(tollgate::testing::Backend::Sqlite, |c| c.usage_flush_ms = 3_600_000).await;
    let (aid, url) = prepaid(&app, "0.5").await;
    app.post_form(
        &format!("/admin/api/accounts/{aid}/credit_grants.json"),
        &[("amount", "100")],
    )
    .await;
    for _ in 0..4 {
        assert_eq!(call(&app, &url).await.0, 200);
    }
    let sid = url
        .split("service_id=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_string();
    let token = app.service_token(sid.parse().unwrap()).await;
    let report = serde_json::json!({"service_id": sid, "service_token": token,
        "transactions": [{"user_key": "prepaid-key", "usage": {"hits": 6}}]});
    let r = app
        .client
        .post(app.url("/transactions.json"))
        .json(&report)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let b = balance(&app, aid).await;
    assert_eq!(
        (b["pending"].as_str(), b["balance"].as_str()),
        (Some("5"), Some("95")),
        "{b}"
    );
    assert_eq!(ledger(&app, aid).await.len(), 1, "only the grant is in the ledger");
    let (status, grants) = app
        .get_json(&format!("/admin/api/accounts/{aid}/credit_grants.json"))
        .await;
    assert_eq!(status, 200, "listing grants: {grants}");
    assert_eq!(grants["credit_grants"][0]["credit_grant"]["amount"], "100");
    tollgate::credits::flush(&app.db, &app.counters).await.unwrap();
    let b = balance(&app, aid).await;
    assert_eq!(
        (b["pending"].as_str(), b["balance"].as_str()),
        (Some("0"), Some("95")),
        "{b}"
    );
    app.stop().await;
}
