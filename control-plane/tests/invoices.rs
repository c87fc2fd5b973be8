//! Invoices, payments and the billing run over HTTP, on SQLite and PostgreSQL, with Stripe
//! played by the local stand-in (`tollgate::stripe_mock`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failure report

use chrono::Datelike;
use reqwest::Method;
use serde_json::Value;
use tollgate::stripe_mock::{StripeMock, SECRET_KEY};
use tollgate::testing::{Backend, TestApp};

async fn spawn(backend: Backend) -> (TestApp, StripeMock) {
    let stripe = StripeMock::default();
    let base = stripe.spawn().await.unwrap();
    let app = TestApp::spawn_with(backend, |c| {
        c.stripe_api_base = base;
        c.stripe_secret_key = Some(SECRET_KEY.into());
    })
    .await;
    (app, stripe)
}

async fn send(app: &TestApp, method: Method, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let r = app.admin(method, path).form(form).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn account(app: &TestApp, name: &str) -> i64 {
    let (s, body) = app
        .post_form(
            "/admin/api/signup.json",
            &[
                ("org_name", name),
                ("username", name),
                ("email", &format!("{name}@example.test")),
            ],
        )
        .await;
    assert_eq!(s, 201, "{body}");
    body["account"]["id"].as_i64().unwrap()
}

async fn invoice(app: &TestApp, account: i64, period: &str) -> Value {
    let (s, body) = app
        .post_form(
            "/api/invoices.json",
            &[("account_id", &account.to_string()), ("period", period)],
        )
        .await;
    assert_eq!(s, 201, "{body}");
    body["invoice"].clone()
}

async fn state(app: &TestApp, id: i64, to: &str) -> (u16, Value) {
    send(
        app,
        Method::PUT,
        &format!("/api/invoices/{id}/state.json"),
        &[("state", to)],
    )
    .await
}

async fn line(app: &TestApp, id: i64, name: &str, cost: &str) -> (u16, Value) {
    app.post_form(
        &format!("/api/invoices/{id}/line_items.json"),
        &[("name", name), ("cost", cost), ("quantity", "1")],
    )
    .await
}

async fn manual_invoices_lines_states_and_documents(backend: Backend) {
    let (app, _) = spawn(backend).await;
    let acme = account(&app, "acme").await;
    let first = invoice(&app, acme, "2026-11").await;
    assert_eq!(first["friendly_id"], "2026-11-00000001");
    assert_eq!(
        (first["state"].as_str(), first["creation_type"].as_str()),
        (Some("open"), Some("manual"))
    );
    assert_eq!(first["period"]["to"], "2026-11-30");
    let id = first["id"].as_i64().unwrap();
    assert_eq!(invoice(&app, acme, "2026-11").await["friendly_id"], "2026-11-00000002");

    // Bad input is a 422 naming the field; nothing is created.
    let (s, body) = app.post_form("/api/invoices.json", &[("account_id", "999999")]).await;
    assert_eq!(s, 422, "{body}");
    assert!(body["errors"]["account_id"].is_array(), "{body}");
    let (s, _) = app.post_form("/api/accounts/999999/invoices.json", &[]).await;
    assert_eq!(s, 404, "an account named by the path that is not there");
    let (s, body) = app
        .post_form(
            "/api/invoices.json",
            &[("account_id", &acme.to_string()), ("period", "2026-13")],
        )
        .await;
    assert_eq!(s, 422, "{body}");
    assert!(body["errors"]["period"].is_array(), "{body}");
    let (s, body) = app.get_json("/api/invoices.json?month=11-2026").await;
    assert_eq!(s, 422, "{body}");

    // Lines: 4 decimals kept, the total rounded half-up; VAT on the unrounded subtotal.
    let (s, body) = send(
        &app,
        Method::PUT,
        &format!("/admin/api/accounts/{acme}.json"),
        &[("vat_rate", "10")],
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let (s, l1) = line(&app, id, "Consulting", "10.0049").await;
    assert_eq!(s, 201, "{l1}");
    let (s, _) = line(&app, id, "Support", "5.0001").await;
    assert_eq!(s, 201);
    let (s, body) = line(&app, id, "", "x").await;
    assert_eq!(s, 422, "{body}");
    assert!(
        body["errors"]["name"].is_array() && body["errors"]["cost"].is_array(),
        "{body}"
    );
    let (_, read) = app.get_json(&format!("/api/invoices/{id}.json")).await;
    let inv = &read["invoice"];
    assert_eq!(
        (
            inv["cost_without_vat"].as_f64(),
            inv["vat_amount"].as_f64(),
            inv["cost"].as_f64()
        ),
        (Some(15.01), Some(1.5), Some(16.51)),
        "{inv}"
    );
    let l1_id = l1["line_item"]["id"].as_i64().unwrap();
    let (s, _) = send(
        &app,
        Method::DELETE,
        &format!("/api/invoices/{id}/line_items/{l1_id}.json"),
        &[],
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = app
        .get_json(&format!("/api/invoices/{id}/line_items/{l1_id}.json"))
        .await;
    assert_eq!(s, 404);
    let (_, lines) = app.get_json(&format!("/api/invoices/{id}/line_items.json")).await;
    assert_eq!(lines["line_items"].as_array().unwrap().len(), 1, "{lines}");

    // Edits while open; the friendly id is unique.
    let (s, body) = send(
        &app,
        Method::PUT,
        &format!("/api/invoices/{id}.json"),
        &[("friendly_id", "1111-11111111")],
    )
    .await;
    assert_eq!(
        (s, body["invoice"]["friendly_id"].as_str()),
        (200, Some("1111-11111111")),
        "{body}"
    );
    let second = invoice(&app, acme, "2026-12").await["id"].as_i64().unwrap();
    let (s, body) = send(
        &app,
        Method::PUT,
        &format!("/api/invoices/{second}.json"),
        &[("friendly_id", "1111-11111111")],
    )
    .await;
    assert_eq!(s, 422, "{body}");
    assert!(body["errors"]["friendly_id"].is_array());

    // States: illegal moves are 422 naming the state; issuing freezes VAT and the parties.
    let (s, body) = state(&app, id, "paid").await;
    assert_eq!(s, 422, "{body}");
    assert!(body["errors"]["state"][0].as_str().unwrap().contains("open"), "{body}");
    let (s, body) = state(&app, id, "pending").await;
    assert_eq!(s, 200, "{body}");
    let issued = &body["invoice"];
    assert_eq!(issued["issued_on"], chrono::Utc::now().date_naive().to_string());
    assert_eq!(issued["buyer"]["org_name"], "acme");
    let (s, body) = line(&app, id, "Late", "1").await;
    assert_eq!(s, 422, "lines of an issued invoice are final: {body}");
    let (s, body) = send(
        &app,
        Method::PUT,
        &format!("/admin/api/accounts/{acme}.json"),
        &[("vat_rate", "20")],
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let (_, read) = app.get_json(&format!("/api/invoices/{id}.json")).await;
    assert_eq!(read["invoice"]["vat_rate"].as_f64(), Some(10.0), "frozen when issued");

    // Listing and filters.
    let (_, all) = app.get_json("/api/invoices.json").await;
    assert_eq!(all["invoices"].as_array().unwrap().len(), 3);
    let (_, pending) = app
        .get_json(&format!("/api/accounts/{acme}/invoices.json?state=pending"))
        .await;
    assert_eq!(pending["invoices"].as_array().unwrap().len(), 1);
    let (_, december) = app.get_json("/api/invoices.json?month=2026-12").await;
    assert_eq!(december["invoices"][0]["invoice"]["id"].as_i64(), Some(second));
    let other = account(&app, "other").await;
    let (s, _) = app.get_json(&format!("/api/accounts/{other}/invoices/{id}.json")).await;
    assert_eq!(s, 404, "another account's invoice is not found");

    // Earnings by month and the CSV export.
    let (s, earnings) = app.get_json("/admin/api/billing/earnings.json").await;
    assert_eq!(s, 200, "{earnings}");
    let november = earnings["earnings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["month"]["month"] == "2026-11")
        .unwrap();
    assert_eq!(november["month"]["in_process"].as_f64(), Some(5.5), "{earnings}");
    let csv = app
        .admin(Method::GET, "/api/invoices.csv")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(csv.lines().count(), 4, "{csv}");
    assert!(csv.contains("1111-11111111,") && csv.contains(",pending,"), "{csv}");

    // The PDF is a real one: poppler renders it.
    let pdf = app
        .admin(Method::GET, &format!("/api/invoices/{id}.pdf"))
        .send()
        .await
        .unwrap();
    assert_eq!(pdf.headers()["content-type"], "application/pdf");
    let bytes = pdf.bytes().await.unwrap();
    assert!(bytes.starts_with(b"%PDF-"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("i.pdf"), &bytes).unwrap();
    let out = std::process::Command::new("pdftotext")
        .arg(dir.path().join("i.pdf"))
        .arg("-")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "Invoice 1111-11111111",
        "Support",
        "Total without VAT",
        "5.50 USD",
        "acme",
    ] {
        assert!(text.contains(expected), "{expected} not in the PDF: {text}");
    }
    let png = std::process::Command::new("pdftoppm")
        .args(["-png", "-r", "50", "-singlefile"])
        .arg(dir.path().join("i.pdf"))
        .arg(dir.path().join("page"))
        .status()
        .unwrap();
    assert!(png.success() && dir.path().join("page.png").exists());

    // Cancelled invoices leave the earnings; paid ones count as paid.
    let (s, _) = state(&app, second, "cancelled").await;
    assert_eq!(s, 200);
    let (s, _) = state(&app, id, "paid").await;
    assert_eq!(s, 200);
    let (_, earnings) = app.get_json("/admin/api/billing/earnings.json?month=2026-11").await;
    assert_eq!(
        earnings["earnings"][0]["month"]["paid"].as_f64(),
        Some(5.5),
        "{earnings}"
    );
    app.stop().await;
}

async fn friendly_ids_are_unique_and_gapless_under_concurrency(backend: Backend) {
    let (app, _) = spawn(backend).await;
    let acme = account(&app, "acme").await;
    let app = std::sync::Arc::new(app);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            app.post_form(
                "/api/invoices.json",
                &[("account_id", &acme.to_string()), ("period", "2027-01")],
            )
            .await
        }));
    }
    let mut ids: Vec<String> = Vec::new();
    for t in tasks {
        let (s, body) = t.await.unwrap();
        assert_eq!(s, 201, "{body}");
        ids.push(body["invoice"]["friendly_id"].as_str().unwrap().to_string());
    }
    ids.sort();
    let expected: Vec<String> = (1..=16).map(|n| format!("2027-01-{n:08}")).collect();
    assert_eq!(ids, expected);
}

async fn stripe_charges_record_every_attempt(backend: Backend) {
    let (app, stripe) = spawn(backend).await;
    let (s, body) = send(
        &app,
        Method::PUT,
        "/admin/api/billing/settings.json",
        &[("payment_gateway", "stripe"), ("charging_enabled", "true")],
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let mut results = Vec::new();
    for (name, customer) in [
        ("ok", Some("cus_ok")),
        ("declined", Some("cus_declined")),
        ("sca", Some("cus_3ds")),
        ("nobody", Some("fake")),
        ("nocard", None),
    ] {
        let acc = account(&app, name).await;
        if let Some(customer) = customer {
            let (s, body) = send(
                &app,
                Method::PUT,
                &format!("/admin/api/accounts/{acc}/credit_card.json"),
                &[
                    ("credit_card_token", customer),
                    ("credit_card_expiration_year", "2030"),
                    ("credit_card_expiration_month", "4"),
                    ("credit_card_partial_number", "4242"),
                ],
            )
            .await;
            assert_eq!(s, 200, "{body}");
        }
        let id = invoice(&app, acc, "2026-11").await["id"].as_i64().unwrap();
        assert_eq!(line(&app, id, "Plan", "12.345").await.0, 201);
        assert_eq!(state(&app, id, "pending").await.0, 200);
        let (s, body) = app.post_form(&format!("/api/invoices/{id}/charge.json"), &[]).await;
        let (_, tx) = app
            .get_json(&format!("/api/invoices/{id}/payment_transactions.json"))
            .await;
        let (_, read) = app.get_json(&format!("/api/invoices/{id}.json")).await;
        results.push((
            name,
            s,
            body,
            tx["payment_transactions"].clone(),
            read["invoice"]["state"].clone(),
        ));
    }
    let (_, s, _, tx, st) = &results[0];
    assert_eq!((*s, st.as_str()), (200, Some("paid")));
    assert_eq!(
        (
            tx[0]["payment_transaction"]["success"].as_bool(),
            tx[0]["payment_transaction"]["amount"].as_f64()
        ),
        (Some(true), Some(12.35)),
        "{tx}"
    );
    assert!(tx[0]["payment_transaction"]["message"]
        .as_str()
        .unwrap()
        .contains("Transaction approved"));
    for (i, expected) in [
        (1, "card was declined"),
        (2, "requires authentication"),
        (3, "No such customer: 'fake'"),
    ] {
        let (name, s, body, tx, st) = &results[i];
        assert_eq!(*s, 422, "{name}: {body}");
        assert!(
            body["errors"]["base"][0]
                .as_str()
                .unwrap()
                .starts_with("Failed to charge the credit card"),
            "{body}"
        );
        assert_eq!(st.as_str(), Some("unpaid"), "{name}");
        let t = &tx[0]["payment_transaction"];
        assert_eq!(t["success"].as_bool(), Some(false), "{name}: {tx}");
        assert!(t["message"].as_str().unwrap().contains(expected), "{name}: {tx}");
    }
    let (_, s, _, tx, st) = &results[4];
    assert_eq!(
        (*s, st.as_str(), tx.as_array().map(Vec::len)),
        (422, Some("pending"), Some(0)),
        "no card: no attempt"
    );
    // Stripe got amounts in cents, off-session, confirmed — and never card data.
    let intents = stripe.intents();
    assert_eq!(intents[0]["amount"], "1235");
    assert_eq!(
        (intents[0]["off_session"].as_str(), intents[0]["confirm"].as_str()),
        ("true", "true")
    );
    assert!(intents.iter().all(|i| !i.keys().any(|k| k.contains("card[number]"))));
    let events: Vec<String> = sqlx::query_scalar("SELECT kind FROM events ORDER BY id")
        .fetch_all(&app.db.pool)
        .await
        .unwrap();
    assert!(
        events.contains(&"invoice.charged".to_string())
            && events.contains(&"invoice.charge_failed_will_retry".to_string()),
        "{events:?}"
    );
}

/// A charge the gateway takes while an admin cancels the invoice: the money taken is recorded
/// (it used to roll back with the state change that failed), and the invoice is flagged.
async fn money_taken_is_recorded_even_when_the_invoice_moved_meanwhile(backend: Backend) {
    let (app, stripe) = spawn(backend).await;
    let (s, _) = send(
        &app,
        Method::PUT,
        "/admin/api/billing/settings.json",
        &[("payment_gateway", "stripe"), ("charging_enabled", "true")],
    )
    .await;
    assert_eq!(s, 200);
    let acc = account(&app, "racer").await;
    let (s, _) = send(
        &app,
        Method::PUT,
        &format!("/admin/api/accounts/{acc}/credit_card.json"),
        &[("credit_card_token", "cus_ok")],
    )
    .await;
    assert_eq!(s, 200);
    let id = invoice(&app, acc, "2026-11").await["id"].as_i64().unwrap();
    assert_eq!(line(&app, id, "Plan", "20").await.0, 201);
    assert_eq!(state(&app, id, "pending").await.0, 200);
    let (arrived, release) = stripe.hold_next_intent();
    let charging = {
        let (client, url) = (app.client.clone(), app.url(&format!("/api/invoices/{id}/charge.json")));
        tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(tollgate::testing::ADMIN_TOKEN)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    arrived.await.unwrap();
    assert_eq!(
        state(&app, id, "cancelled").await.0,
        200,
        "cancelled while the card is charged"
    );
    release.send(()).unwrap();
    assert_eq!(charging.await.unwrap(), 200, "the charge succeeded");
    let (_, tx) = app
        .get_json(&format!("/api/invoices/{id}/payment_transactions.json"))
        .await;
    let t = &tx["payment_transactions"][0]["payment_transaction"];
    assert_eq!(
        (t["success"].as_bool(), t["amount"].as_f64()),
        (Some(true), Some(20.0)),
        "{tx}"
    );
    let (_, read) = app.get_json(&format!("/api/invoices/{id}.json")).await;
    assert_eq!(read["invoice"]["state"], "cancelled", "the admin's move stands");
    let flagged: Vec<String> =
        sqlx::query_scalar("SELECT payload FROM events WHERE kind = 'invoice.payment_unreconciled'")
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(flagged.len(), 1, "flagged for someone to refund");
    assert!(flagged[0].contains("\"state\":\"cancelled\""), "{flagged:?}");
}

/// As a new user tries it: 150 hits by authrep, then the billing job for the 1st of next month,
/// before any usage flush has run. The run flushes first, so it bills all 150.
async fn a_billing_run_bills_every_call_counted_before_it(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.usage_flush_ms = 3_600_000).await;
    let (service, application) = app.seed("metered").await;
    let sid = service["service"]["id"].as_i64().unwrap();
    let (plan, aid) = (
        application["application"]["plan_id"].as_i64().unwrap(),
        application["application"]["account_id"].as_i64().unwrap(),
    );
    let (_, metrics) = app.get_json(&format!("/admin/api/services/{sid}/metrics.json")).await;
    let hits = metrics["metrics"][0]["metric"]["id"].as_i64().unwrap();
    let (s, body) = app
        .post_form(
            &format!("/admin/api/application_plans/{plan}/metrics/{hits}/pricing_rules.json"),
            &[("min", "1"), ("cost_per_unit", "0.01")],
        )
        .await;
    assert_eq!(s, 201, "{body}");
    let token = app.service_token(sid).await;
    let url = app.url(&format!(
        "/transactions/authrep.xml?service_token={token}&service_id={sid}&user_key=metered&usage%5Bhits%5D=1"
    ));
    for _ in 0..150 {
        assert_eq!(app.client.get(&url).send().await.unwrap().status(), 200);
    }
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM usage_hourly")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(rows, 0, "no flush has run yet");
    let today = chrono::Utc::now().date_naive();
    let next = today
        .with_day(1)
        .unwrap()
        .checked_add_months(chrono::Months::new(1))
        .unwrap();
    run(&app, &next.to_string()).await;
    let month = today.format("%Y-%m").to_string();
    let (_, list) = app
        .get_json(&format!("/api/accounts/{aid}/invoices.json?month={month}"))
        .await;
    let id = list["invoices"][0]["invoice"]["id"].as_i64().unwrap();
    let (_, lines) = app.get_json(&format!("/api/invoices/{id}/line_items.json")).await;
    let variable: Vec<(f64, f64)> = lines["line_items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| &l["line_item"])
        .filter(|l| l["type"] == "variable_cost")
        .map(|l| (l["quantity"].as_f64().unwrap(), l["cost"].as_f64().unwrap()))
        .collect();
    assert_eq!(variable, vec![(150.0, 1.5)], "{lines}");
    app.stop().await;
}

async fn run(app: &TestApp, date: &str) -> Value {
    let (s, body) = app
        .post_form("/master/api/providers/1/billing_jobs.json", &[("date", date)])
        .await;
    assert_eq!(s, 202, "{body}");
    body["billing_job"].clone()
}

/// Every application subscribed on 2026-10-01 (its plan's contract history left to the run).
async fn subscribed_on_october_1(app: &TestApp) {
    sqlx::query("UPDATE applications SET created_at = '2026-10-01T09:00:00Z'")
        .execute(&app.db.pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM contract_plans")
        .execute(&app.db.pool)
        .await
        .unwrap();
}

/// (period, state, [(type, cost)]) of every background invoice, by id.
async fn background(app: &TestApp, account: i64) -> Vec<(String, String, Vec<(String, f64)>)> {
    let (_, list) = app.get_json(&format!("/api/accounts/{account}/invoices.json")).await;
    let mut out = Vec::new();
    for i in list["invoices"].as_array().unwrap() {
        let i = &i["invoice"];
        if i["creation_type"] != "background" {
            continue;
        }
        let (_, lines) = app
            .get_json(&format!("/api/invoices/{}/line_items.json", i["id"]))
            .await;
        let lines = lines["line_items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l["line_item"]["type"].as_str().unwrap().to_string(),
                    l["line_item"]["cost"].as_f64().unwrap(),
                )
            })
            .collect();
        out.push((
            i["month"].as_str().unwrap().to_string(),
            i["state"].as_str().unwrap().to_string(),
            lines,
        ));
    }
    out
}

async fn the_daily_run_bills_from_facts_once_per_date(backend: Backend) {
    let (app, stripe) = spawn(backend).await;
    let (s, body) = send(
        &app,
        Method::PUT,
        "/admin/api/billing/settings.json",
        &[
            ("mode", "postpaid"),
            ("payment_gateway", "stripe"),
            ("charging_enabled", "true"),
        ],
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let (_, service) = app
        .post_form("/admin/api/services.json", &[("name", "Metered API")])
        .await;
    let sid = service["service"]["id"].as_i64().unwrap();
    let plan = |name: &'static str, fee: &'static str| {
        let app = &app;
        async move {
            let (s, p) = app
                .post_form(
                    &format!("/admin/api/services/{sid}/application_plans.json"),
                    &[("name", name), ("cost_per_month", fee), ("setup_fee", "5")],
                )
                .await;
            assert_eq!(s, 201, "{p}");
            p["application_plan"]["id"].as_i64().unwrap()
        }
    };
    let (metered, pro) = (plan("Metered", "31").await, plan("Pro", "62").await);
    let (_, metrics) = app.get_json(&format!("/admin/api/services/{sid}/metrics.json")).await;
    let hits = metrics["metrics"][0]["metric"]["id"].as_i64().unwrap();
    let rules = format!("/admin/api/application_plans/{metered}/metrics/{hits}/pricing_rules.json");
    assert_eq!(
        app.post_form(&rules, &[("min", "1"), ("max", "1000"), ("cost_per_unit", "0.01")])
            .await
            .0,
        201
    );
    assert_eq!(
        app.post_form(&rules, &[("min", "1001"), ("cost_per_unit", "0.005")])
            .await
            .0,
        201
    );
    let acme = account(&app, "acme").await;
    let (s, body) = send(
        &app,
        Method::PUT,
        &format!("/admin/api/accounts/{acme}/credit_card.json"),
        &[("credit_card_token", "cus_ok")],
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let (s, application) = app
        .post_form(
            &format!("/admin/api/accounts/{acme}/applications.json"),
            &[
                ("plan_id", &metered.to_string()),
                ("name", "App"),
                ("user_key", "run-key"),
            ],
        )
        .await;
    assert_eq!(s, 201, "{application}");
    let app_id = application["application"]["id"].as_i64().unwrap();
    // The facts: subscribed on 2026-10-01; 1500 hits in October.
    subscribed_on_october_1(&app).await;
    let october_15 = chrono::NaiveDate::from_ymd_opt(2026, 10, 15)
        .unwrap()
        .and_hms_opt(10, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp();
    sqlx::query("INSERT INTO usage_hourly (application_id, service_id, metric_id, hour_start, value, observed_us) VALUES ($1, $2, $3, $4, 1500, 0)")
        .bind(app_id).bind(sid).bind(hits).bind(october_15).execute(&app.db.pool).await.unwrap();

    let report = run(&app, "2026-10-01").await;
    assert_eq!(
        (report["lines_billed"].as_u64(), report["invoices_created"].as_u64()),
        (Some(2), Some(1)),
        "{report}"
    );
    assert_eq!(
        run(&app, "2026-10-01").await["lines_billed"].as_u64(),
        Some(0),
        "a date run twice bills once"
    );
    assert_eq!(
        background(&app, acme).await,
        vec![(
            "2026-10".into(),
            "open".into(),
            vec![("plan_cost".into(), 31.0), ("setup_fee".into(), 5.0)]
        )]
    );

    // The 1st: October's variable costs (1000 × 0.01 + 500 × 0.005), October finalized,
    // November opened with its fee.
    run(&app, "2026-11-01").await;
    assert_eq!(run(&app, "2026-11-01").await["lines_billed"].as_u64(), Some(0));
    let invoices = background(&app, acme).await;
    assert_eq!(
        invoices[0],
        (
            "2026-10".into(),
            "finalized".into(),
            vec![
                ("plan_cost".into(), 31.0),
                ("setup_fee".into(), 5.0),
                ("variable_cost".into(), 12.5)
            ]
        )
    );
    assert_eq!(
        invoices[1],
        ("2026-11".into(), "open".into(), vec![("plan_cost".into(), 31.0)])
    );

    // Issued two days later, due two days after that, charged then.
    assert_eq!(run(&app, "2026-11-03").await["invoices_issued"].as_u64(), Some(1));
    let (_, list) = app
        .get_json(&format!("/api/accounts/{acme}/invoices.json?state=pending"))
        .await;
    let issued = &list["invoices"][0]["invoice"];
    assert_eq!(
        (issued["issued_on"].as_str(), issued["due_on"].as_str()),
        (Some("2026-11-03"), Some("2026-11-05"))
    );
    assert_eq!(
        run(&app, "2026-11-04").await["invoices_charged"].as_u64(),
        Some(0),
        "not due yet"
    );
    assert_eq!(run(&app, "2026-11-05").await["invoices_charged"].as_u64(), Some(1));
    assert_eq!(
        run(&app, "2026-11-05").await["invoices_charged"].as_u64(),
        Some(0),
        "charged once"
    );
    assert_eq!(stripe.intents().len(), 1);
    assert_eq!(stripe.intents()[0]["amount"], "4850");
    assert_eq!(background(&app, acme).await[0].1, "paid");

    // Upgraded to Pro on the 16th (30-day month): -15.50 and +31 on November's open invoice.
    let (s, body) = send(
        &app,
        Method::PUT,
        &format!("/admin/api/accounts/{acme}/applications/{app_id}/change_plan.json"),
        &[("plan_id", &pro.to_string())],
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let today = chrono::Utc::now().date_naive().to_string();
    sqlx::query("UPDATE contract_plans SET ends_on = '2026-11-16' WHERE ends_on = $1")
        .bind(&today)
        .execute(&app.db.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE contract_plans SET starts_on = '2026-11-16' WHERE starts_on = $1")
        .bind(&today)
        .execute(&app.db.pool)
        .await
        .unwrap();
    run(&app, "2026-11-17").await;
    assert_eq!(run(&app, "2026-11-17").await["lines_billed"].as_u64(), Some(0));
    let invoices = background(&app, acme).await;
    assert_eq!(
        invoices[1],
        (
            "2026-11".into(),
            "open".into(),
            vec![
                ("plan_cost".into(), 31.0),
                ("refund".into(), -15.5),
                ("upgrade".into(), 31.0)
            ]
        )
    );
    // December: Pro's fee, no second setup fee; Pro has no pricing rules.
    run(&app, "2026-12-01").await;
    let invoices = background(&app, acme).await;
    assert_eq!(
        invoices[2],
        ("2026-12".into(), "open".into(), vec![("plan_cost".into(), 62.0)])
    );
    let events: Vec<String> = sqlx::query_scalar("SELECT kind FROM events ORDER BY id")
        .fetch_all(&app.db.pool)
        .await
        .unwrap();
    for kind in ["invoice.finalized", "invoice.issued", "invoice.paid", "invoice.charged"] {
        assert!(events.iter().any(|e| e == kind), "{kind}: {events:?}");
    }

    // Manual invoices are never touched by the run; a deleted application is billed no more.
    let manual = invoice(&app, acme, "2026-12").await["id"].as_i64().unwrap();
    let (s, _) = send(
        &app,
        Method::DELETE,
        &format!("/admin/api/accounts/{acme}/applications/{app_id}.json"),
        &[],
    )
    .await;
    assert_eq!(s, 200);
    run(&app, "2027-01-01").await;
    let (_, m) = app.get_json(&format!("/api/invoices/{manual}.json")).await;
    assert_eq!(m["invoice"]["state"], "open");
    let invoices = background(&app, acme).await;
    assert_eq!(invoices.len(), 3, "no January invoice: {invoices:?}");
    assert_eq!(invoices[2].1, "finalized");

    // One run at a time: a held lease is a 422, not a second run.
    sqlx::query(
        "INSERT INTO leases (name, holder, expires_at) VALUES ('billing-run', 'elsewhere', '2999-01-01T00:00:00Z')",
    )
    .execute(&app.db.pool)
    .await
    .unwrap();
    let (s, body) = app
        .post_form("/master/api/providers/1/billing_jobs.json", &[("date", "2027-01-02")])
        .await;
    assert_eq!(s, 422, "{body}");
    let (s, body) = app
        .post_form("/master/api/providers/1/billing_jobs.json", &[("date", "01/02/2027")])
        .await;
    assert_eq!(s, 422, "{body}");
    assert!(body["errors"]["date"].is_array());
}

/// An account whose changes fail is rolled back alone: the others in its chunk are billed,
/// it keeps nothing half-written (no invoice, no number taken), and the next run bills it.
async fn an_account_that_fails_is_rolled_back_alone(backend: Backend) {
    let (app, _stripe) = spawn(backend).await;
    let (_, service) = app.post_form("/admin/api/services.json", &[("name", "Paid API")]).await;
    let sid = service["service"]["id"].as_i64().unwrap();
    let (s, plan) = app
        .post_form(
            &format!("/admin/api/services/{sid}/application_plans.json"),
            &[("name", "Monthly"), ("cost_per_month", "10")],
        )
        .await;
    assert_eq!(s, 201, "{plan}");
    let plan = plan["application_plan"]["id"].as_i64().unwrap().to_string();
    let mut accounts = Vec::new();
    for name in ["alpha", "bravo", "charlie"] {
        let id = account(&app, name).await;
        let (s, body) = app
            .post_form(
                &format!("/admin/api/accounts/{id}/applications.json"),
                &[("plan_id", plan.as_str()), ("name", "App")],
            )
            .await;
        assert_eq!(s, 201, "{body}");
        accounts.push((id, body["application"]["id"].as_i64().unwrap()));
    }
    subscribed_on_october_1(&app).await;
    // The database refuses bravo's lines, as a constraint or a full disk would.
    let bravo_app = accounts[1].1;
    let refuse: Vec<String> = match backend {
        Backend::Sqlite => vec![format!(
            "CREATE TRIGGER refuse_line BEFORE INSERT ON line_items WHEN NEW.contract_id = {bravo_app}
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )],
        Backend::Postgres => vec![
            format!(
                "CREATE FUNCTION refuse_line() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
                   IF NEW.contract_id = {bravo_app} THEN RAISE EXCEPTION 'refused by the test'; END IF;
                   RETURN NEW; END $$"
            ),
            "CREATE TRIGGER refuse_line BEFORE INSERT ON line_items FOR EACH ROW EXECUTE FUNCTION refuse_line()".into(),
        ],
    };
    for sql in refuse {
        sqlx::query(&sql).execute(&app.db.pool).await.unwrap();
    }
    let report = run(&app, "2026-10-01").await;
    assert_eq!(
        (
            report["failed_accounts"].as_u64(),
            report["invoices_created"].as_u64(),
            report["lines_billed"].as_u64()
        ),
        (Some(1), Some(2), Some(2)),
        "{report}"
    );
    assert!(
        background(&app, accounts[1].0).await.is_empty(),
        "nothing half-written for bravo"
    );
    let numbers = |app: &TestApp| {
        let pool = app.db.pool.clone();
        async move {
            sqlx::query_scalar::<_, String>("SELECT friendly_id FROM invoices ORDER BY friendly_id")
                .fetch_all(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        numbers(&app).await,
        vec!["2026-10-00000001", "2026-10-00000002"],
        "no number lost to bravo"
    );

    sqlx::query("DROP TRIGGER refuse_line ON line_items")
        .execute(&app.db.pool)
        .await
        .ok();
    sqlx::query("DROP TRIGGER refuse_line").execute(&app.db.pool).await.ok();
    let report = run(&app, "2026-10-01").await;
    assert_eq!(
        (report["failed_accounts"].as_u64(), report["invoices_created"].as_u64()),
        (Some(0), Some(1)),
        "{report}"
    );
    let bravo = background(&app, accounts[1].0).await;
    assert_eq!(
        bravo,
        vec![("2026-10".into(), "open".into(), vec![("plan_cost".into(), 10.0)])]
    );
    assert_eq!(numbers(&app).await.len(), 3);
    app.stop().await;
}

macro_rules! both {
    ($($name:ident),*) => {
        $(
            mod $name {
                #[tokio::test]
                async fn sqlite() {
                    super::$name(tollgate::testing::Backend::Sqlite).await
                }
                #[tokio::test]
                async fn postgres() {
                    super::$name(tollgate::testing::Backend::Postgres).await
                }
            }
        )*
    };
}

both!(
    manual_invoices_lines_states_and_documents,
    friendly_ids_are_unique_and_gapless_under_concurrency,
    stripe_charges_record_every_attempt,
    money_taken_is_recorded_even_when_the_invoice_moved_meanwhile,
    a_billing_run_bills_every_call_counted_before_it,
    the_daily_run_bills_from_facts_once_per_date,
    an_account_that_fails_is_rolled_back_alone
);
