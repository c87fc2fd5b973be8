//! The console's Billing section over HTTP, each effect checked through the Billing and
//! credits APIs: invoices (manual, lines, state moves, charge, edits, PDF, filters, earnings,
//! a billing run), the billing settings, the card's status, issued credits ("+ Credit" with
//! its account search), an account's credits, model rates (the "Add Model Rate" dialog), the
//! credit settings and the margin report. Who may not see them is refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failure report

use reqwest::Method;
use serde_json::Value;
use tollgate::on_both_databases;
use tollgate::testing::console::{browser, Console};
use tollgate::testing::TestApp;

fn account_of(application: &Value) -> i64 {
    application["application"]["account_id"].as_i64().unwrap()
}

async fn invoice_json(app: &TestApp, id: i64) -> Value {
    let (s, v) = app.get_json(&format!("/api/invoices/{id}.json")).await;
    assert_eq!(s, 200, "{v}");
    v["invoice"].clone()
}

on_both_databases! {
    async fn invoices_are_made_moved_charged_printed_and_listed(app: &TestApp) {
        let (_, application) = app.seed("bill-key").await;
        let account = account_of(&application);
        app.provider_user("ops", "correct horse", true).await;
        let console = Console::sign_in(app, "ops", "correct horse").await;
        assert_eq!(console.get("/console/finance").await.location, "/console/finance/invoices");
        let list = console.get("/console/finance/invoices").await;
        assert_eq!(list.status, 200);
        assert!(list.body.contains("id=\"no-invoices\""), "{}", list.body);

        // A manual invoice: a bad month is refused next to its field, and nothing is made.
        let r = console.post("/console/finance/invoices", &[("account_id", &account.to_string()), ("period", "Nov")]).await;
        assert_eq!(r.status, 422);
        assert!(r.body.contains("id=\"e-period\""), "{}", r.body);
        assert_eq!(app.get_json("/api/invoices.json").await.1["invoices"].as_array().unwrap().len(), 0);
        let r = console.post("/console/finance/invoices", &[("account_id", &account.to_string()), ("period", "2026-11")]).await;
        assert_eq!(r.status, 303, "{}", r.body);
        let page = r.location.split('?').next().unwrap().to_string();
        let id: i64 = page.rsplit('/').next().unwrap().parse().unwrap();
        assert_eq!(invoice_json(app, id).await["state"], "open");

        // Lines: a bad cost is refused next to it; a good one counts in the totals the API shows.
        let r = console.post(&format!("{page}/line_items"), &[("_form", "line"), ("name", "Support"), ("cost", "ten")]).await;
        assert_eq!(r.status, 422);
        assert!(r.body.contains("id=\"e-cost\"") && r.body.contains("value=\"Support\""), "kept as sent: {}", r.body);
        let r = console.post(&format!("{page}/line_items"), &[("_form", "line"), ("name", "Support"), ("quantity", "2"), ("cost", "12.50")]).await;
        assert_eq!(r.status, 303);
        let r = console.post(&format!("{page}/line_items"), &[("_form", "line"), ("name", "Mistake"), ("cost", "99")]).await;
        assert_eq!(r.status, 303);
        let (_, lines) = app.get_json(&format!("/api/invoices/{id}/line_items.json")).await;
        let mistake = lines["line_items"][1]["line_item"]["id"].as_i64().unwrap();
        let r = console.post(&format!("{page}/line_items/{mistake}/delete"), &[]).await;
        assert_eq!(r.status, 303);
        assert_eq!(invoice_json(app, id).await["cost"], 12.5);
        let shown = console.get(&page).await.body;
        assert!(shown.contains("Support") && !shown.contains("Mistake") && shown.contains("12.50 USD"), "{shown}");

        // Edit while open: a bad friendly id is refused next to its field.
        let r = console.post(&page, &[("_form", "edit"), ("friendly_id", "nope"), ("period", "2026-11")]).await;
        assert_eq!(r.status, 422);
        assert!(r.body.contains("id=\"e-friendly_id\""), "{}", r.body);
        let r = console.post(&page, &[("_form", "edit"), ("friendly_id", "2026-11-00000042"), ("period", "2026-11")]).await;
        assert_eq!(r.status, 303);
        assert_eq!(invoice_json(app, id).await["friendly_id"], "2026-11-00000042");

        // The moves its state allows, and only those; a move it does not allow says why.
        let shown = console.get(&page).await.body;
        assert!(shown.contains("id=\"to-finalized\"") && shown.contains("id=\"to-pending\"") && !shown.contains("id=\"to-paid\""), "{shown}");
        assert_eq!(console.post(&format!("{page}/state"), &[("state", "finalized")]).await.status, 303);
        assert_eq!(console.post(&format!("{page}/state"), &[("state", "pending")]).await.status, 303);
        let r = console.post(&format!("{page}/state"), &[("state", "finalized")]).await;
        assert_eq!(r.status, 422);
        assert!(r.body.contains("id=\"refusal\"") && r.body.contains("Nothing was changed"), "{}", r.body);
        assert_eq!(invoice_json(app, id).await["state"], "pending");

        // Charging without a card is recorded and said; the card's status shows (never the number).
        let shown = console.get(&page).await.body;
        assert!(shown.contains("id=\"charge\"") && shown.contains("No card stored"), "{shown}");
        let (s, body) = app.send_form(Method::PUT, &format!("/admin/api/accounts/{account}/credit_card.json"), &[
            ("credit_card_token", "cus_offline"), ("credit_card_expiration_year", "2030"),
            ("credit_card_expiration_month", "4"), ("credit_card_partial_number", "4242"),
        ]).await;
        assert_eq!(s, 200, "{body}");
        let shown = console.get(&page).await.body;
        assert!(shown.contains("Card ending 4242, expires 2030-04"), "{shown}");
        assert!(console.get(&format!("/console/accounts/{account}")).await.body.contains("Card ending 4242"));
        assert_eq!(console.post(&format!("{page}/state"), &[("state", "paid")]).await.status, 303);
        let paid = invoice_json(app, id).await;
        assert_eq!(paid["state"], "paid");
        assert!(!console.get(&page).await.body.contains("id=\"add-line\""), "a paid invoice is not edited");

        // The PDF: inline for the page's frame, or as a download; framed by the console only.
        let pdf = browser().get(app.url(&format!("{page}/pdf")))
            .header("cookie", format!("tollgate_session={}", console.cookie)).send().await.unwrap();
        assert_eq!(pdf.status(), 200);
        assert_eq!(pdf.headers()["content-type"], "application/pdf");
        assert!(pdf.headers()["content-disposition"].to_str().unwrap().starts_with("inline"));
        assert_eq!(pdf.headers()["x-frame-options"], "SAMEORIGIN");
        assert!(pdf.bytes().await.unwrap().starts_with(b"%PDF-"));
        let download = browser().get(app.url(&format!("{page}/pdf?download")))
            .header("cookie", format!("tollgate_session={}", console.cookie)).send().await.unwrap();
        assert!(download.headers()["content-disposition"].to_str().unwrap().starts_with("attachment"));
        assert_eq!(browser().get(app.url(&format!("{page}/pdf"))).send().await.unwrap().status(), 303, "signed in only");

        // The list filters by state, account and month; the earnings agree with the API's.
        let with = |q: &str| format!("/console/finance/invoices?{q}");
        assert!(console.get(&with("state=paid")).await.body.contains("2026-11-00000042"));
        assert!(!console.get(&with("state=open")).await.body.contains("2026-11-00000042"));
        assert!(console.get(&with(&format!("account_id={account}&month=2026-11"))).await.body.contains("2026-11-00000042"));
        assert!(!console.get(&with("month=2026-10")).await.body.contains("2026-11-00000042"));
        let bad = console.get(&with("month=November")).await.body;
        assert!(bad.contains("id=\"filter-error\"") && bad.contains("must be a month"), "{bad}");
        let (_, earnings) = app.get_json("/admin/api/billing/earnings.json").await;
        assert_eq!(earnings["earnings"][0]["month"]["paid"], 12.5, "{earnings}");
        let listed = console.get(&with("")).await.body;
        assert!(listed.contains("<td>2026-11</td><td class=\"num\">12.50</td><td class=\"num\">0.00</td><td class=\"num\">0.00</td><td class=\"num\">12.50</td>"), "{listed}");

        // A billing run for a date, as the master API's job; a bad date is refused next to it.
        let r = console.post("/console/finance/billing_runs", &[("date", "tomorrow")]).await;
        assert_eq!(r.status, 422);
        assert!(r.body.contains("id=\"run-error\""), "{}", r.body);
        let r = console.post("/console/finance/billing_runs", &[("date", "2026-12-01")]).await;
        assert_eq!(r.status, 303);
        assert!(console.get(&r.location).await.body.contains("Billing ran for 2026-12-01"));

        // A member without the finance section sees none of it.
        app.provider_user("member", "correct horse", false).await;
        let member = Console::sign_in(app, "member", "correct horse").await;
        assert_eq!(member.get("/console/finance/invoices").await.status, 403);
        assert_eq!(member.get(&page).await.status, 403);
        assert_eq!(member.post(&format!("{page}/state"), &[("state", "cancelled")]).await.status, 403);
        assert_eq!(invoice_json(app, id).await["state"], "paid");
    }

    async fn billing_settings_are_saved_or_refused_by_field(app: &TestApp) {
        app.provider_user("ops", "correct horse", true).await;
        let console = Console::sign_in(app, "ops", "correct horse").await;
        let r = console.post("/console/finance/settings", &[("currency", "XYZ"), ("mode", "weekly")]).await;
        assert_eq!(r.status, 422);
        assert!(r.body.contains("id=\"e-currency\"") && r.body.contains("id=\"e-mode\""), "{}", r.body);
        assert_eq!(app.get_json("/admin/api/billing/settings.json").await.1["billing_settings"]["currency"], "USD");
        let r = console.post("/console/finance/settings", &[
            ("mode", "prepaid"), ("currency", "eur"), ("charging_enabled", "0"), ("charging_enabled", "1"),
            ("payment_gateway", "offline"), ("numbering", "yearly"), ("invoice_footnote", "Thank you"), ("vat_zero_text", ""),
        ]).await;
        assert_eq!((r.status, r.location.as_str()), (303, "/console/finance/settings?saved"));
        let (_, s) = app.get_json("/admin/api/billing/settings.json").await;
        let s = &s["billing_settings"];
        assert_eq!((s["mode"].as_str(), s["currency"].as_str(), s["charging_enabled"].as_bool()), (Some("prepaid"), Some("EUR"), Some(true)));
        assert_eq!((s["numbering"].as_str(), s["invoice_footnote"].as_str()), (Some("yearly"), Some("Thank you")));
        let page = console.get("/console/finance/settings?saved").await.body;
        assert!(page.contains("The billing settings are saved") && page.contains("value=\"EUR\""), "{page}");
    }

    async fn credits_are_issued_through_the_form_and_listed(app: &TestApp) {
        let (_, application) = app.seed("credit-key").await;
        let account = account_of(&application);
        let (s, body) = app.put_form(&format!("/admin/api/accounts/{account}.json"), &[("billing_type", "prepaid")]).await;
        assert_eq!(s, 200, "{body}");
        let (_, shown) = app.get_json(&format!("/admin/api/accounts/{account}.json")).await;
        let name = shown["account"]["org_name"].as_str().unwrap().to_string();
        app.provider_user("ops", "correct horse", true).await;
        let console = Console::sign_in(app, "ops", "correct horse").await;
        let before = app.get_json(&format!("/admin/api/accounts/{account}/credit_balance.json")).await.1["credit_balance"]["balance"]
            .as_str().unwrap().parse::<rust_decimal::Decimal>().unwrap();

        // The account is found as you type (the JSON the script reads), or by the plain form.
        let term = &name[..3];
        let r = console.get(&format!("/console/finance/credits/accounts?q={term}")).await;
        let found: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(found["accounts"][0]["name"], name.as_str(), "{found}");
        let href = found["accounts"][0]["href"].as_str().unwrap().to_string();
        assert!(console.get("/console/finance/credits/accounts?q=zzzz-nobody").await.body.contains("\"accounts\":[]"));
        let page = console.get(&format!("/console/finance/credits/new?account_q={term}")).await.body;
        assert!(page.contains(&href.replace('&', "&amp;")) && !page.contains("id=\"credit-form\""), "the rest waits for a choice: {page}");
        let page = console.get(&href).await.body;
        assert!(page.contains("id=\"credit-form\"") && page.contains("id=\"currency\">USD<") && page.contains("All products"), "{page}");

        // 0 is refused next to the amount, and nothing is issued.
        let form = |amount: &'static str| vec![
            ("account_id", account.to_string()), ("billing_month", chrono::Utc::now().format("%Y-%m").to_string()),
            ("service_id", String::new()), ("amount", amount.to_string()), ("note", "Goodwill".to_string()),
        ];
        let console = &console;
        let send = |f: Vec<(&'static str, String)>| async move {
            let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
            console.post("/console/finance/credits", &f).await
        };
        let r = send(form("0")).await;
        assert_eq!(r.status, 422);
        assert!(r.body.contains("id=\"e-amount\"") && r.body.contains("must not be 0") && r.body.contains("value=\"Goodwill\""), "{}", r.body);
        assert_eq!(app.get_json(&format!("/admin/api/accounts/{account}/credits.json")).await.1["credits"].as_array().unwrap().len(), 0);
        let r = send(form("25.5")).await;
        assert_eq!(r.status, 303, "{}", r.body);
        let (_, credits) = app.get_json(&format!("/admin/api/accounts/{account}/credits.json")).await;
        assert_eq!(credits["credits"][0]["credit"]["amount"], "25.5", "{credits}");
        assert_eq!(credits["credits"][0]["credit"]["applied_to"], "balance");
        let after = app.get_json(&format!("/admin/api/accounts/{account}/credit_balance.json")).await.1["credit_balance"]["balance"]
            .as_str().unwrap().parse::<rust_decimal::Decimal>().unwrap();
        assert_eq!(after - before, rust_decimal::Decimal::new(255, 1));

        // The list: every credit, searchable by recipient or note.
        let listed = console.get(&r.location).await.body;
        assert!(listed.contains("Credit of 25.5 USD issued") && listed.contains(&name) && listed.contains("25.5 USD") && listed.contains("Balance")
            && listed.contains("All products") && listed.contains("All plans"), "{listed}");
        assert!(console.get("/console/finance/credits?q=goodwill").await.body.contains("25.5 USD"));
        assert!(console.get("/console/finance/credits?q=nothing-like-it").await.body.contains("No credit matches"));

        // The account's credits: its balance, and the adjustment in its ledger.
        let balances = console.get("/console/finance/credit_accounts").await.body;
        assert!(balances.contains(&name) && balances.contains(&after.to_string()), "{balances}");
        let mine = console.get(&format!("/console/finance/credit_accounts/{account}")).await.body;
        assert!(mine.contains(&format!("id=\"balance\">{after}<")) && mine.contains("adjustment") && mine.contains("Goodwill"), "{mine}");
        let bad = console.get(&format!("/console/finance/credit_accounts/{account}?since=yesterday")).await.body;
        assert!(bad.contains("must be a date"), "{bad}");
        let later = console.get(&format!("/console/finance/credit_accounts/{account}?since=2999-01-01")).await.body;
        assert!(later.contains("No transaction in the period"), "{later}");
        let r = console.post(&format!("/console/finance/credit_accounts/{account}/grants"), &[("amount", "-1"), ("kind", "manual")]).await;
        assert_eq!(r.status, 422);
        assert!(r.body.contains("id=\"e-amount\""), "{}", r.body);
        let r = console.post(&format!("/console/finance/credit_accounts/{account}/grants"), &[("amount", "10"), ("kind", "purchase"), ("note", "Wire")]).await;
        assert_eq!(r.status, 303, "{}", r.body);
        let (_, b) = app.get_json(&format!("/admin/api/accounts/{account}/credit_balance.json")).await;
        assert_eq!(b["credit_balance"]["total_purchased"], "10");

        // A member without the partners section can neither see nor issue.
        app.provider_user("member", "correct horse", false).await;
        let member = Console::sign_in(app, "member", "correct horse").await;
        assert_eq!(member.get("/console/finance/credits").await.status, 403);
        assert_eq!(member.get(&format!("/console/finance/credits/accounts?q={term}")).await.status, 403);
        let f: Vec<(String, String)> = form("5").into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(member.post("/console/finance/credits", &f).await.status, 403);
        assert_eq!(app.get_json(&format!("/admin/api/accounts/{account}/credits.json")).await.1["credits"].as_array().unwrap().len(), 1);

        // A postpaid account's credit waits for its invoice: the billing run puts it there as a line.
        let (s, postpaid) = app.post_form("/admin/api/signup.json",
            &[("org_name", "Postpaid Co"), ("username", "bob"), ("email", "bob@post.test")]).await;
        assert_eq!(s, 201, "{postpaid}");
        let pid = postpaid["account"]["id"].as_i64().unwrap();
        let mut f = form("4.25");
        f[0].1 = pid.to_string();
        let r = send(f).await;
        assert_eq!(r.status, 303, "{}", r.body);
        assert!(console.get(&r.location).await.body.contains("Credit of 4.25 USD issued"));
        let (_, credits) = app.get_json(&format!("/admin/api/accounts/{pid}/credits.json")).await;
        assert_eq!(credits["credits"][0]["credit"]["applied_to"], "invoice", "{credits}");
        let today = chrono::Utc::now().date_naive().to_string();
        let r = console.post("/console/finance/billing_runs", &[("date", &today)]).await;
        assert_eq!(r.status, 303, "{}", r.body);
        let (_, invoices) = app.get_json(&format!("/api/accounts/{pid}/invoices.json")).await;
        let invoice = invoices["invoices"][0]["invoice"]["id"].as_i64().unwrap();
        let page = console.get(&format!("/console/finance/invoices/{invoice}")).await.body;
        assert!(page.contains("Goodwill") && page.contains("-4.25 USD"), "the credit is a line of the invoice: {page}");
    }

    async fn model_rates_price_calls_and_the_margin_report_shows_them(app: &TestApp) {
        let (service, application) = app.seed("rate-key").await;
        let sid = service["service"]["id"].as_i64().unwrap();
        let account = account_of(&application);
        let plan = application["application"]["plan_id"].as_i64().unwrap();
        let (_, metrics) = app.get_json(&format!("/admin/api/services/{sid}/metrics.json")).await;
        let hits = metrics["metrics"][0]["metric"]["id"].as_i64().unwrap().to_string();
        app.provider_user("ops", "correct horse", true).await;
        let console = Console::sign_in(app, "ops", "correct horse").await;

        // Billing & Credits › Settings: starter credits and the payment link, refused by field.
        let r = console.post("/console/finance/credit_settings", &[("starter_credits", "-1"), ("purchase_url", "https://buy.test/credits")]).await;
        assert_eq!(r.status, 422);
        assert!(r.body.contains("id=\"e-starter_credits\"") && r.body.contains("value=\"https://buy.test/credits\""), "{}", r.body);
        let r = console.post("/console/finance/credit_settings", &[("starter_credits", "10"), ("purchase_url", "https://buy.test/credits"), ("low_balance_threshold", "1")]).await;
        assert_eq!((r.status, r.location.as_str()), (303, "/console/finance/credit_settings?saved"));
        let (_, settings) = app.get_json("/admin/api/settings/credits.json").await;
        assert_eq!((settings["credit_settings"]["starter_credits"].as_str(), settings["credit_settings"]["purchase_url"].as_str()),
            (Some("10"), Some("https://buy.test/credits")));

        // Model rates: the dialog open without the script, a bad rate refused next to its field.
        let page = console.get(&format!("/console/finance/model_rates?service_id={sid}&add")).await.body;
        assert!(page.contains("<dialog id=\"rate-dialog\" aria-labelledby=\"rate-h\" open>") && page.contains("No model rate yet"), "{page}");
        let rate = |credits: &'static str, plan: String| vec![
            ("service_id", sid.to_string()), ("metric_id", hits.clone()), ("rate_type", "Text".to_string()),
            ("providers", "OpenAI, Azure".to_string()), ("upstream_cost_per_unit", "0.2".to_string()),
            ("credits_per_unit", credits.to_string()), ("application_plan_id", plan), ("description", "GPT-4o".to_string()),
        ];
        let send = |f: Vec<(&'static str, String)>| {
            let console = &console;
            async move {
                let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
                console.post("/console/finance/model_rates", &f).await
            }
        };
        let r = send(rate("lots", String::new())).await;
        assert_eq!(r.status, 422);
        assert!(r.body.contains("id=\"e-credits_per_unit\"") && r.body.contains(" open>"), "the dialog stays open: {}", r.body);
        let r = send(rate("0.5", String::new())).await;
        assert_eq!(r.status, 303, "{}", r.body);
        // A second rate for the same metric, for one plan (AIGNE's per-group rates).
        let r = send(rate("0.75", plan.to_string())).await;
        assert_eq!(r.status, 303, "{}", r.body);
        let (_, rates) = app.get_json(&format!("/admin/api/services/{sid}/credit_rates.json")).await;
        let rates = rates["credit_rates"].as_array().unwrap();
        assert_eq!(rates.len(), 2);
        assert_eq!(rates[0]["credit_rate"]["providers"], "OpenAI, Azure");
        let listed = console.get(&format!("/console/finance/model_rates?service_id={sid}")).await.body;
        assert!(listed.contains("All plans") && listed.contains("Basic") && listed.contains("OpenAI, Azure") && listed.contains(">0.75<"), "{listed}");

        // Calls priced at the plan's rate: in the account's ledger and in the margin report.
        let (s, body) = app.put_form(&format!("/admin/api/accounts/{account}.json"), &[("billing_type", "prepaid")]).await;
        assert_eq!(s, 200, "{body}");
        let token = app.service_token(sid).await;
        for _ in 0..4 {
            let r = app.client.get(app.url(&format!(
                "/transactions/authrep.json?service_id={sid}&service_token={token}&user_key=rate-key&usage%5Bhits%5D=1"
            ))).send().await.unwrap();
            assert_eq!(r.status(), 200);
        }
        let mine = console.get(&format!("/console/finance/credit_accounts/{account}")).await.body;
        assert!(mine.contains("id=\"pending\">3<"), "4 calls at 0.75, not yet in the ledger: {mine}");
        tollgate::usage::flush(&app.db, &app.counters).await.unwrap();
        tollgate::credits::flush(&app.db, &app.counters).await.unwrap();
        let mine = console.get(&format!("/console/finance/credit_accounts/{account}")).await.body;
        assert!(mine.contains("id=\"balance\">7<") && mine.contains("deduction"), "{mine}");
        assert!(mine.contains("<td>hits</td><td class=\"num\">4</td><td class=\"num\">3</td>"), "the deduction's metric, quantity and credits: {mine}");
        let report = console.get(&format!("/console/finance/margins?service_id={sid}")).await.body;
        assert!(report.contains("<td>hits</td><td class=\"num\">3</td><td class=\"num\">0.8</td><td class=\"num\">2.2</td><td class=\"num\">73.3%</td>"), "{report}");
        assert!(report.contains("<svg") && report.contains("class=\"margin\""), "{report}");
        let (_, api) = app.get_json(&format!("/admin/api/services/{sid}/credit_margins.json")).await;
        assert_eq!(api["credit_margins"][0]["credit_margin"]["margin"], "2.2", "the API agrees: {api}");

        // A member without the plans section gets neither the rates nor the report.
        app.provider_user("member", "correct horse", false).await;
        let member = Console::sign_in(app, "member", "correct horse").await;
        assert_eq!(member.get("/console/finance/model_rates").await.status, 403);
        assert_eq!(member.get("/console/finance/margins").await.status, 403);
        assert_eq!(member.get("/console/finance/credit_settings").await.status, 403);
    }
}
