//! The developer portal over HTTP against the real app, on both databases: a developer of one
//! account sees their applications, keys, usage against limits, credits, invoices and billing
//! details — and none of another account's, asked by its ids (URL tampering); the session and
//! CSRF rules are the console's; self-service signup follows the usage rules.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failure report

use reqwest::Method;
use serde_json::Value;
use tollgate::on_both_databases;
use tollgate::testing::console::{browser, sign_in_at, Console};
use tollgate::testing::TestApp;

/// A developer user with a password, activated, on `account`.
async fn developer(app: &TestApp, account: i64, username: &str, password: &str) -> i64 {
    let (s, user) = app
        .post_form(
            &format!("/admin/api/accounts/{account}/users.json"),
            &[
                ("username", username),
                ("email", &format!("{username}@dev.test")),
                ("password", password),
            ],
        )
        .await;
    assert_eq!(s, 201, "{user}");
    let id = user["user"]["id"].as_i64().unwrap();
    let (s, body) = app
        .send_form(
            Method::PUT,
            &format!("/admin/api/accounts/{account}/users/{id}/activate.json"),
            &[],
        )
        .await;
    assert_eq!(s, 200, "{body}");
    id
}

/// A manual invoice for `account` with one line, moved to `state`.
async fn invoice(app: &TestApp, account: i64, cost: &str, state: Option<&str>) -> i64 {
    let (s, inv) = app
        .post_form(
            "/api/invoices.json",
            &[("account_id", &account.to_string()), ("period", "2026-11")],
        )
        .await;
    assert_eq!(s, 201, "{inv}");
    let id = inv["invoice"]["id"].as_i64().unwrap();
    let (s, _) = app
        .post_form(
            &format!("/api/invoices/{id}/line_items.json"),
            &[("name", "Support"), ("cost", cost)],
        )
        .await;
    assert_eq!(s, 201);
    if let Some(state) = state {
        let (s, body) = app
            .send_form(
                Method::PUT,
                &format!("/api/invoices/{id}/state.json"),
                &[("state", state)],
            )
            .await;
        assert_eq!(s, 200, "{body}");
    }
    id
}

fn id_of(v: &Value, kind: &str) -> i64 {
    v[kind]["id"].as_i64().unwrap_or_else(|| panic!("no {kind} id in {v}"))
}

on_both_databases! {
    async fn a_developer_sees_their_own_account_and_nothing_of_another(app: &TestApp) {
        let (service, application) = app.seed("portal-key").await;
        let sid = id_of(&service, "service");
        let acme = application["application"]["account_id"].as_i64().unwrap();
        let acme_app = id_of(&application, "application");
        let plan = application["application"]["plan_id"].as_i64().unwrap();
        app.limit_hits(&service, &application, "day", 10).await;
        developer(app, acme, "dana", "dana's secret").await;
        // Another account, with its own developer, application and invoice.
        let (s, globex) = app.post_form("/admin/api/signup.json", &[
            ("org_name", "Globex"), ("username", "gus"), ("email", "gus@globex.test"), ("password", "gus's secret"),
        ]).await;
        assert_eq!(s, 201, "{globex}");
        let globex = id_of(&globex, "account");
        let (s, theirs) = app.post_form(&format!("/admin/api/accounts/{globex}/applications.json"),
            &[("name", "Globex App"), ("plan_id", &plan.to_string())]).await;
        assert_eq!(s, 201, "{theirs}");
        let their_app = id_of(&theirs, "application");
        let their_key = theirs["application"]["user_key"].as_str().unwrap().to_string();
        let their_invoice = invoice(app, globex, "99", Some("pending")).await;
        let mine = invoice(app, acme, "12.5", Some("pending")).await;
        let draft = invoice(app, acme, "1", None).await;

        // Signing in: wrong passwords refused; a provider user is not a developer.
        assert_eq!(sign_in_at(app, "/portal", "dana@dev.test", "wrong").await.status(), 422);
        app.provider_user("ops", "correct horse", true).await;
        assert_eq!(sign_in_at(app, "/portal", "ops", "correct horse").await.status(), 422);
        assert_eq!(browser().get(app.url("/portal/")).send().await.unwrap().status(), 303, "no session: to sign-in");
        let dana = Console::developer(app, "dana@dev.test", "dana's secret").await;

        // Home: Acme's application with its key, not Globex's.
        let home = dana.get("/portal/").await.body;
        assert!(home.contains("portal-key") && home.contains("Acme · Developer portal"), "{home}");
        assert!(!home.contains("Globex") && !home.contains(&their_key), "{home}");

        // The application: its key, its usage against its limit, the key regenerated.
        let token = app.service_token(sid).await;
        for _ in 0..3 {
            let r = app.client.get(app.url(&format!(
                "/transactions/authrep.json?service_id={sid}&service_token={token}&user_key=portal-key&usage%5Bhits%5D=1"
            ))).send().await.unwrap();
            assert_eq!(r.status(), 200);
        }
        let page = dana.get(&format!("/portal/applications/{acme_app}")).await.body;
        assert!(page.contains("id=\"user-key\">portal-key<"), "{page}");
        assert!(page.contains("<td class=\"num\">3</td><td class=\"num\">10</td>") && page.contains("value=\"30\""), "{page}");
        let r = dana.post(&format!("/portal/applications/{acme_app}/user_key"), &[]).await;
        assert_eq!(r.status, 303);
        let (_, shown) = app.get_json(&format!("/admin/api/accounts/{acme}/applications/{acme_app}.json")).await;
        assert_ne!(shown["application"]["user_key"], "portal-key");
        // The old key stops at once (the portal's writes clear authrep's cache as the API's do).
        let old = app.client.get(app.url(&format!(
            "/transactions/authrep.json?service_id={sid}&service_token={token}&user_key=portal-key&usage%5Bhits%5D=1"
        ))).send().await.unwrap();
        assert_ne!(old.status(), 200, "the regenerated key's predecessor still works");

        // Another account's application, by its id: not found, and nothing changes.
        assert_eq!(dana.get(&format!("/portal/applications/{their_app}")).await.status, 404);
        assert_eq!(dana.post(&format!("/portal/applications/{their_app}/user_key"), &[]).await.status, 404);
        assert_eq!(dana.post(&format!("/portal/applications/{their_app}/keys"), &[]).await.status, 404);
        let (_, still) = app.get_json(&format!("/admin/api/accounts/{globex}/applications/{their_app}.json")).await;
        assert_eq!(still["application"]["user_key"], their_key.as_str());

        // Invoices: issued ones of the account, with their PDF; not a draft, not another's.
        let list = dana.get("/portal/invoices").await.body;
        assert!(list.contains(&format!("/portal/invoices/{mine}")) && !list.contains(&format!("/portal/invoices/{draft}\"")), "{list}");
        assert!(!list.contains(&format!("/portal/invoices/{their_invoice}\"")), "{list}");
        assert!(dana.get(&format!("/portal/invoices/{mine}")).await.body.contains("12.50 USD"));
        let pdf = browser().get(app.url(&format!("/portal/invoices/{mine}/pdf")))
            .header("cookie", format!("tollgate_portal={}", dana.cookie)).send().await.unwrap();
        assert_eq!(pdf.headers()["content-type"], "application/pdf");
        assert!(pdf.bytes().await.unwrap().starts_with(b"%PDF-"));
        for path in [format!("/portal/invoices/{their_invoice}"), format!("/portal/invoices/{their_invoice}/pdf"),
                     format!("/portal/invoices/{draft}"), "/portal/invoices/999999".to_string(), "/portal/invoices/nope".to_string()] {
            let r = dana.get(&path).await;
            assert_eq!(r.status, 404, "{path}");
            assert!(!r.body.contains("99.00"), "{path}: {}", r.body);
        }

        // A new application: on a published plan only.
        let (s, hidden) = app.post_form(&format!("/admin/api/services/{sid}/application_plans.json"), &[("name", "Secret")]).await;
        assert_eq!(s, 201);
        let hidden = id_of(&hidden, "application_plan");
        assert!(!dana.get("/portal/applications/new").await.body.contains("Secret"));
        let r = dana.post("/portal/applications", &[("plan_id", &hidden.to_string()), ("name", "Sneaky")]).await;
        assert_eq!(r.status, 422);
        assert!(r.body.contains("id=\"e-plan_id\""), "{}", r.body);
        let (s, _) = app.send_form(Method::PUT, &format!("/admin/api/services/{sid}/application_plans/{plan}.json"), &[("state_event", "publish")]).await;
        assert_eq!(s, 200);
        let r = dana.post("/portal/applications", &[("plan_id", &plan.to_string()), ("name", "")]).await;
        assert_eq!(r.status, 422);
        assert!(r.body.contains("id=\"e-name\""), "{}", r.body);
        let r = dana.post("/portal/applications", &[("plan_id", &plan.to_string()), ("name", "Second"), ("description", "for staging")]).await;
        assert_eq!(r.status, 303, "{}", r.body);
        let (_, apps) = app.get_json(&format!("/admin/api/accounts/{acme}/applications.json")).await;
        assert_eq!(apps["applications"].as_array().unwrap().len(), 2, "{apps}");

        // Billing details: the address refused by field, then saved; the card's last 4 only.
        let r = dana.post("/portal/billing", &[("name", "Acme Ltd"), ("address1", "1 Main St"), ("city", "Kyoto")]).await;
        assert_eq!(r.status, 422);
        assert!(r.body.contains("id=\"e-country\""), "{}", r.body);
        let r = dana.post("/portal/billing", &[("name", "Acme Ltd"), ("address1", "1 Main St"), ("city", "Kyoto"), ("country", "Japan")]).await;
        assert_eq!((r.status, r.location.as_str()), (303, "/portal/billing?saved"));
        let (_, shown) = app.get_json(&format!("/admin/api/accounts/{acme}.json")).await;
        assert_eq!(shown["account"]["billing_address"]["city"], "Kyoto");
        let (s, _) = app.send_form(Method::PUT, &format!("/admin/api/accounts/{acme}/credit_card.json"), &[
            ("credit_card_token", "cus_1"), ("credit_card_partial_number", "4242"),
            ("credit_card_expiration_year", "2030"), ("credit_card_expiration_month", "4"),
        ]).await;
        assert_eq!(s, 200);
        let billing = dana.get("/portal/billing").await.body;
        assert!(billing.contains("Card ending 4242, expires 2030-04") && !billing.contains("cus_1"), "{billing}");

        // Credits (prepaid): the balance with the purchase link.
        let (s, _) = app.put_form("/admin/api/settings/credits.json", &[("starter_credits", "5"), ("purchase_url", "https://buy.test/credits")]).await;
        assert_eq!(s, 200);
        let (s, _) = app.put_form(&format!("/admin/api/accounts/{acme}.json"), &[("billing_type", "prepaid")]).await;
        assert_eq!(s, 200);
        let home = dana.get("/portal/").await.body;
        assert!(home.contains("id=\"balance\">5<") && home.contains("href=\"https://buy.test/credits\""), "{home}");

        // The console's rules: a form without the session's token is refused; sign-out ends it.
        let r = browser().post(app.url("/portal/applications")).header("cookie", format!("tollgate_portal={}", dana.cookie))
            .form(&[("plan_id", plan.to_string()), ("name", "Forged".to_string())]).send().await.unwrap();
        assert_eq!(r.status(), 403);
        // A console session is no portal session, and the other way round.
        let ops = Console::sign_in(app, "ops", "correct horse").await;
        let r = browser().get(app.url("/portal/")).header("cookie", format!("tollgate_portal={}", ops.cookie)).send().await.unwrap();
        assert_eq!(r.status(), 303);
        let r = browser().get(app.url("/console/")).header("cookie", format!("tollgate_session={}", dana.cookie)).send().await.unwrap();
        assert_eq!(r.status(), 303);
        // Suspending the account ends its developers' sessions at the next request.
        let (s, _) = app.send_form(Method::PUT, &format!("/admin/api/accounts/{acme}/suspend.json"), &[]).await;
        assert_eq!(s, 200);
        assert_eq!(dana.get("/portal/").await.status, 303);
        let (s, _) = app.send_form(Method::PUT, &format!("/admin/api/accounts/{acme}/resume.json"), &[]).await;
        assert_eq!(s, 200);
        assert_eq!(dana.get("/portal/").await.status, 200);
        assert_eq!(dana.post("/portal/sign_out", &[]).await.status, 303);
        assert_eq!(dana.get("/portal/").await.status, 303);
    }

    async fn developers_sign_up_as_the_usage_rules_say(app: &TestApp) {
        let (service, application) = app.seed("signup-key").await;
        let sid = id_of(&service, "service");
        let plan = application["application"]["plan_id"].as_i64().unwrap();
        let (s, body) = app.send_form(Method::PUT, &format!("/admin/api/services/{sid}/application_plans/{plan}/default.json"), &[]).await;
        assert_eq!(s, 200, "{body}");
        let signup = |org: &'static str, user: &'static str| async move {
            let (token, cookie) = tollgate::testing::console::sign_in_form_at(app, "/portal").await;
            browser().post(app.url("/portal/signup")).header("cookie", format!("tollgate_sign_in={cookie}"))
                .form(&[("_csrf", token.as_str()), ("org_name", org), ("username", user),
                        ("email", &format!("{user}@{org}.test")), ("password", "a good secret")])
                .send().await.unwrap()
        };

        // Open (the default): the account, its admin and an application on the default plan,
        // signed in at once.
        let page = browser().get(app.url("/portal/signup")).send().await.unwrap().text().await.unwrap();
        assert!(page.contains("id=\"f-org_name\""), "{page}");
        let r = signup("Initech", "peter").await;
        assert_eq!(r.status(), 303);
        assert_eq!(r.headers()["location"], "/portal/?notice=welcome");
        let (_, found) = app.get_json("/admin/api/accounts/find.json?email=peter@Initech.test").await;
        let initech = id_of(&found, "account");
        assert_eq!(found["account"]["state"], "approved");
        let (_, apps) = app.get_json(&format!("/admin/api/accounts/{initech}/applications.json")).await;
        assert_eq!(apps["applications"][0]["application"]["plan_id"], plan, "{apps}");
        let peter = Console::developer(app, "peter", "a good secret").await;
        let home = peter.get("/portal/").await.body;
        assert!(home.contains("Initech&#39;s App"), "{home}");

        // A bad field is said next to it, and nothing is made.
        let (token, cookie) = tollgate::testing::console::sign_in_form_at(app, "/portal").await;
        let r = browser().post(app.url("/portal/signup")).header("cookie", format!("tollgate_sign_in={cookie}"))
            .form(&[("_csrf", token.as_str()), ("org_name", ""), ("username", "x"), ("email", "x@x.test"), ("password", "short")])
            .send().await.unwrap();
        assert_eq!(r.status(), 422);
        assert!(r.text().await.unwrap().contains("id=\"e-password\""));

        // Approval required: the account waits, its developer cannot sign in yet.
        let (s, _) = app.put_form("/admin/api/provider.json", &[("account_approval_required", "true")]).await;
        assert_eq!(s, 200);
        let r = signup("Hooli", "gavin").await;
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("waits for the provider"));
        let (_, found) = app.get_json("/admin/api/accounts/find.json?email=gavin@Hooli.test").await;
        assert_eq!(found["account"]["state"], "pending");
        assert_eq!(sign_in_at(app, "/portal", "gavin", "a good secret").await.status(), 403);
        let hooli = id_of(&found, "account");
        let (s, _) = app.send_form(Method::PUT, &format!("/admin/api/accounts/{hooli}/approve.json"), &[]).await;
        assert_eq!(s, 200);
        assert_eq!(sign_in_at(app, "/portal", "gavin", "a good secret").await.status(), 303);

        // Closed: no form, no account.
        let (s, _) = app.put_form("/admin/api/provider.json", &[("signups_enabled", "false")]).await;
        assert_eq!(s, 200);
        assert_eq!(browser().get(app.url("/portal/signup")).send().await.unwrap().status(), 404);
        assert_eq!(signup("Umbrella", "alice2").await.status(), 404);
        let (s, _) = app.get_json("/admin/api/accounts/find.json?email=alice2@Umbrella.test").await;
        assert_eq!(s, 404);
    }

    async fn a_developer_joins_an_account_by_invitation(app: &TestApp) {
        let (_, application) = app.seed("invite-key").await;
        let acme = application["application"]["account_id"].as_i64().unwrap();
        app.provider_user("ops", "correct horse", true).await;
        let ops = Console::sign_in(app, "ops", "correct horse").await;
        let account_page = ops.get(&format!("/console/accounts/{acme}")).await.body;
        assert!(account_page.contains(&format!("action=\"/console/accounts/{acme}/invitations\"")), "{account_page}");
        let r = ops.post(&format!("/console/accounts/{acme}/invitations"), &[("email", "not an address")]).await;
        assert_eq!(r.status, 422);
        let r = ops.post(&format!("/console/accounts/{acme}/invitations"), &[("email", "erin@acme.test")]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let link = r.body.split("id=\"invitation-link\">").nth(1).and_then(|t| t.split('<').next()).unwrap().to_string();
        assert!(link.contains("/portal/invitations/"), "{link}");
        let path = &link[link.find("/portal/").unwrap()..];
        // Not a staff invitation: the console's door does not open it, nor lists it.
        let token = path.rsplit('/').next().unwrap();
        assert_eq!(browser().get(app.url(&format!("/console/invitations/{token}"))).send().await.unwrap().status(), 404);
        assert!(!ops.get("/console/settings/invitations").await.body.contains("erin@acme.test"));

        let form = browser().get(app.url(path)).send().await.unwrap();
        let cookie = tollgate::testing::console::cookies(&form).into_iter().find(|(n, _)| n == "tollgate_sign_in").unwrap().1;
        let page = form.text().await.unwrap();
        assert!(page.contains("Join your team in the developer portal") && page.contains("erin@acme.test"), "{page}");
        let csrf = tollgate::testing::console::csrf_of(&page);
        let post = |fields: Vec<(&'static str, &'static str)>| {
            let (csrf, cookie) = (csrf.clone(), cookie.clone());
            async move {
                let mut all = vec![("_csrf", csrf.as_str())];
                all.extend(fields);
                browser().post(app.url(path)).header("cookie", format!("tollgate_sign_in={cookie}"))
                    .form(&all).send().await.unwrap()
            }
        };
        let r = post(vec![("username", "erin"), ("password", "erin's secret"), ("password_confirmation", "other")]).await;
        assert_eq!(r.status(), 422);
        let r = post(vec![("username", "erin"), ("password", "erin's secret"), ("password_confirmation", "erin's secret")]).await;
        assert_eq!(r.status(), 303);
        assert_eq!(r.headers()["location"], "/portal/");
        let session = tollgate::testing::console::cookies(&r).into_iter().find(|(n, _)| n == "tollgate_portal").unwrap().1;
        let home = browser().get(app.url("/portal/")).header("cookie", format!("tollgate_portal={session}")).send().await.unwrap();
        assert!(home.text().await.unwrap().contains("invite-key"), "a member of Acme");
        let (_, users) = app.get_json(&format!("/admin/api/accounts/{acme}/users.json")).await;
        let erin = users["users"].as_array().unwrap().iter().find(|u| u["user"]["username"] == "erin").expect("erin").clone();
        assert_eq!((erin["user"]["state"].as_str(), erin["user"]["role"].as_str()), (Some("active"), Some("member")));
        // The link opened once.
        assert_eq!(browser().get(app.url(path)).send().await.unwrap().status(), 404);
        let again = post(vec![("username", "erin2"), ("password", "erin's secret"), ("password_confirmation", "erin's secret")]).await;
        assert_eq!(again.status(), 404);
    }
}
