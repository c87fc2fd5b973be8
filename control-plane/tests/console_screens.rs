//! The console's working screens over HTTP, each effect checked through the API: the
//! dashboard's traffic, a plan change's proration, publishing and copying plans, a product's
//! integration (settings, deploy, promote, the mapping-rule tester), bulk actions on accounts
//! and applications, personal details and password, and deleting a token. The browser flows
//! are in tests/tests/console_browser.rs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failure report

use chrono::Utc;
use serde_json::Value;
use tollgate::on_both_databases;
use tollgate::testing::console::{browser, cookies, csrf_of, session, Console};
use tollgate::testing::{Backend, MailCatcher, TestApp};

async fn change(console: &Console, current: &str, new: &str, again: &str) -> tollgate::testing::console::Page {
    console
        .post(
            "/console/settings/personal/password",
            &[
                ("current_password", current),
                ("password", new),
                ("password_confirmation", again),
            ],
        )
        .await
}

fn id(v: &Value, kind: &str) -> i64 {
    v[kind]["id"].as_i64().unwrap_or_else(|| panic!("no {kind} id in {v}"))
}

on_both_databases! {
    async fn the_dashboard_shows_traffic_and_plan_screens_prorate_publish_and_copy(app: &TestApp) {
        let (service, application) = app.seed("dash-key").await;
        let sid = id(&service, "service");
        let token = app.service_token(sid).await;
        for _ in 0..3 {
            let r = app.client.get(app.url(&format!(
                "/transactions/authrep.json?service_id={sid}&service_token={token}&user_key=dash-key&usage%5Bhits%5D=1"
            ))).send().await.unwrap();
            assert_eq!(r.status(), 200);
        }
        tollgate_store::usage::flush(&app.db, &app.counters).await.unwrap();
        app.provider_user("ops", "correct horse", true).await;
        let console = Console::sign_in(app, "ops", "correct horse").await;
        let page = console.get("/console/").await.body;
        assert!(page.contains("Hits today") && page.matches("<td class=\"num\">3</td>").count() == 2, "{page}");

        // A plan change shows what it adds to the month: an upgrade refunds and charges.
        let plans = format!("/admin/api/services/{sid}/application_plans.json");
        let (_, silver) = app.post_form(&plans, &[("name", "Silver"), ("cost_per_month", "200")]).await;
        let (_, gold) = app.post_form(&plans, &[("name", "Gold"), ("cost_per_month", "300")]).await;
        let (silver, gold) = (id(&silver, "application_plan"), id(&gold, "application_plan"));
        let account = application["application"]["account_id"].as_i64().unwrap();
        let app_id = id(&application, "application");
        let (s, _) = app.send_form(reqwest::Method::PUT,
            &format!("/admin/api/accounts/{account}/applications/{app_id}/change_plan.json"),
            &[("plan_id", &silver.to_string())]).await;
        assert_eq!(s, 200);
        let page = console.get(&format!("/console/accounts/{account}/applications/{app_id}")).await.body;
        let lines = tollgate_domain::proration::change(200.into(), 300.into(), Utc::now().date_naive());
        let (tollgate_domain::proration::Line::Refund(refund), tollgate_domain::proration::Line::Upgrade(charge)) =
            (&lines[0], &lines[1]) else { panic!("{lines:?}") };
        let expected = format!("Gold — 300/month; today refunds {} and charges {}", (-*refund).normalize(), charge.normalize());
        assert!(page.contains(&expected), "{expected} in {page}");
        assert!(page.contains("not an upgrade: nothing refunded or charged"), "the cheaper plan: {page}");

        // Publish and hide are buttons; the state moves through the API's update.
        let plan_page = format!("/console/services/{sid}/application_plans/{gold}");
        let page = console.get(&plan_page).await.body;
        assert!(page.contains("value=\"publish\"") && !page.contains("value=\"hide\""), "{page}");
        let r = console.post(&plan_page, &[("state_event", "publish")]).await;
        assert_eq!((r.status, r.location.as_str()), (303, plan_page.as_str()));
        let (_, shown) = app.get_json(&format!("/admin/api/services/{sid}/application_plans/{gold}.json")).await;
        assert_eq!(shown["application_plan"]["state"], "published");
        assert!(console.get(&plan_page).await.body.contains("value=\"hide\""));

        // Copy: a new plan with the original's limits, opened at once.
        let (_, metrics) = app.get_json(&format!("/admin/api/services/{sid}/metrics.json")).await;
        let hits = metrics["metrics"][0]["metric"]["id"].as_i64().unwrap();
        let (s, _) = app.post_form(&format!("/admin/api/application_plans/{gold}/metrics/{hits}/limits.json"),
            &[("period", "month"), ("value", "1000")]).await;
        assert_eq!(s, 201);
        let r = console.post(&format!("{plan_page}/copy"), &[]).await;
        assert_eq!(r.status, 303);
        let copy: i64 = r.location.rsplit('/').next().unwrap().parse().unwrap();
        assert_ne!(copy, gold);
        let (_, copied) = app.get_json(&format!("/admin/api/services/{sid}/application_plans/{copy}.json")).await;
        assert_eq!(copied["application_plan"]["name"], "Gold (copy)");
        let (_, limits) = app.get_json(&format!("/admin/api/application_plans/{copy}/metrics/{hits}/limits.json")).await;
        assert_eq!(limits["limits"][0]["limit"]["value"], 1000, "{limits}");
    }

    async fn integration_settings_deploy_promote_and_the_mapping_rule_tester(app: &TestApp) {
        let (service, _) = app.seed("int-key").await;
        let sid = id(&service, "service");
        let (_, metrics) = app.get_json(&format!("/admin/api/services/{sid}/metrics.json")).await;
        let hits = metrics["metrics"][0]["metric"]["id"].as_i64().unwrap();
        let (_, search) = app.post_form(&format!("/admin/api/services/{sid}/metrics/{hits}/methods.json"),
            &[("friendly_name", "Search")]).await;
        let search = id(&search, "method").to_string();
        let rules = format!("/admin/api/services/{sid}/proxy/mapping_rules.json");
        let (s, body) = app.post_form(&rules, &[("http_method", "GET"), ("pattern", "/search?q={q}"),
            ("metric_id", &search), ("delta", "2"), ("last", "true"), ("position", "0")]).await;
        assert_eq!(s, 201, "{body}");
        app.provider_user("ops", "correct horse", true).await;
        let console = Console::sign_in(app, "ops", "correct horse").await;
        let base = format!("/console/services/{sid}/integration");
        let page = console.get(&base).await;
        assert_eq!(page.status, 200);
        assert!(console.get(&format!("/console/services/{sid}")).await.body.contains(&base), "linked from the product");

        // A bad URL is refused next to its field, and nothing is saved.
        let r = console.post(&base, &[("api_backend", "not a url"), ("error_status_no_match", "418")]).await;
        assert_eq!(r.status, 422);
        assert!(r.body.contains("id=\"e-api_backend\""), "{}", r.body);
        let (_, proxy) = app.get_json(&format!("/admin/api/services/{sid}/proxy.json")).await;
        assert_eq!(proxy["proxy"]["error_status_no_match"], 404);
        let latest = |env: &'static str| {
            let path = format!("/admin/api/services/{sid}/proxy/configs/{env}/latest.json");
            async move { app.get_json(&path).await.1["proxy_config"]["version"].as_i64() }
        };
        let before = latest("sandbox").await.unwrap_or(0);
        let r = console.post(&base, &[("error_status_no_match", "418"), ("error_no_match", "No such thing")]).await;
        assert_eq!((r.status, r.location.as_str()), (303, base.as_str()));
        let (_, proxy) = app.get_json(&format!("/admin/api/services/{sid}/proxy.json")).await;
        assert_eq!(proxy["proxy"]["error_status_no_match"], 418);
        assert!(proxy["proxy"].get("_csrf").is_none(), "the form's token is not a setting: {proxy}");
        let staging = latest("sandbox").await.unwrap();
        assert_eq!(staging, before + 1, "saving deploys to staging");
        let r = console.post(&format!("{base}/deploy"), &[]).await;
        assert_eq!(r.status, 303);
        let staging = latest("sandbox").await.unwrap();
        assert_eq!(staging, before + 2);
        let page = console.get(&base).await.body;
        assert!(page.contains(&format!("Promote v{staging} to production")), "{page}");
        let r = console.post(&format!("{base}/promote"), &[("version", &staging.to_string())]).await;
        assert_eq!(r.status, 303);
        let (_, production) = app.get_json(&format!("/admin/api/services/{sid}/proxy/configs/production/latest.json")).await;
        assert_eq!(production["proxy_config"]["content"]["proxy"]["error_status_no_match"], 418);
        assert!(!console.get(&base).await.body.contains("Promote v"), "nothing left to promote");

        // The tester: the gateway's matcher over the rules as they are.
        let page = console.get(&format!("{base}?method=GET&path=%2Fsearch%3Fq%3Dcats")).await.body;
        assert!(page.contains("id=\"test-result\"") && page.contains("<code>search</code> +2"), "{page}");
        assert!(page.contains("yes: matching stops here"), "the last rule ends the scan: {page}");
        assert!(!page.contains("<code>hits</code> +1"), "the root rule is never reached: {page}");
        let page = console.get(&format!("{base}?method=GET&path=items")).await.body;
        assert!(page.contains("<code>hits</code> +1") && page.contains("<code>GET /items</code>"), "{page}");
        let page = console.get(&format!("{base}?method=DELETE&path=%2Fitems")).await.body;
        assert!(page.contains("No mapping rule matches") && page.contains("418 No such thing"), "{page}");
    }

    async fn bulk_actions_on_accounts_and_applications_are_all_or_none(app: &TestApp) {
        let (service, application) = app.seed("bulk-key").await;
        let sid = id(&service, "service");
        let account = application["application"]["account_id"].as_i64().unwrap();
        let plan = application["application"]["plan_id"].as_i64().unwrap().to_string();
        let (_, other) = app.post_form("/admin/api/accounts.json", &[("org_name", "Beta"), ("username", "bob"),
            ("email", "bob@beta.test")]).await;
        let other = id(&other, "account");
        for a in [account, other] {
            let (s, _) = app.send_form(reqwest::Method::PUT, &format!("/admin/api/accounts/{a}/make_pending.json"), &[]).await;
            assert_eq!(s, 200);
        }
        app.provider_user("ops", "correct horse", true).await;
        let console = Console::sign_in(app, "ops", "correct horse").await;
        let listed = console.get("/console/accounts").await.body;
        assert!(listed.contains(&format!("name=\"ids\" value=\"{other}\"")) && listed.contains("id=\"bulk-approve\""));
        let (a, b) = (account.to_string(), other.to_string());
        let r = console.post("/console/accounts/bulk", &[("ids", &a), ("ids", &b), ("action", "approve")]).await;
        assert_eq!(r.status, 200);
        assert!(r.body.contains("Approved 2 accounts."), "{}", r.body);
        let state = |a: i64| async move { app.get_json(&format!("/admin/api/accounts/{a}.json")).await.1["account"]["state"].clone() };
        assert_eq!((state(account).await, state(other).await), ("approved".into(), "approved".into()));
        // One refused: none done, and the refusal names the account.
        let (s, _) = app.send_form(reqwest::Method::PUT, &format!("/admin/api/accounts/{other}/make_pending.json"), &[]).await;
        assert_eq!(s, 200);
        let r = console.post("/console/accounts/bulk", &[("ids", &b), ("ids", &a), ("action", "reject")]).await;
        assert_eq!(r.status, 422);
        assert!(r.body.contains("Nothing was changed") && r.body.contains(&format!("account {account}")), "{}", r.body);
        assert_eq!(state(other).await, "pending", "the first one was rolled back");
        let r = console.post("/console/accounts/bulk", &[("action", "approve")]).await;
        assert!(r.status == 422 && r.body.contains("Selection select at least one"), "{}", r.body);
        let r = console.post("/console/accounts/bulk", &[("ids", &a), ("ids", &b), ("action", "message"), ("subject", "Hi")]).await;
        assert!(r.status == 422 && r.body.contains("Message can"), "{}", r.body);
        let r = console.post("/console/accounts/bulk", &[("ids", &a), ("ids", &b), ("action", "message"),
            ("subject", "Maintenance"), ("body", "Sunday 02:00 UTC")]).await;
        assert!(r.body.contains("Sent the message to 2 accounts."), "{}", r.body);
        let sent: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE subject = 'Maintenance'")
            .fetch_one(&app.db.pool).await.unwrap();
        assert_eq!(sent, 2);

        // Applications: suspend both, move both, message their one account.
        let (s, second) = app.post_form(&format!("/admin/api/accounts/{account}/applications.json"),
            &[("name", "Second"), ("plan_id", &plan)]).await;
        assert_eq!(s, 201, "{second}");
        let (one, two) = (id(&application, "application").to_string(), id(&second, "application").to_string());
        let listed = console.get("/console/applications").await.body;
        assert!(listed.contains("id=\"bulk-plan\"") && listed.contains("Echo API › Basic"), "{listed}");
        let r = console.post("/console/applications/bulk", &[("ids", &one), ("ids", &two), ("action", "suspend")]).await;
        assert!(r.body.contains("Suspended 2 applications."), "{}", r.body);
        let (_, gold) = app.post_form(&format!("/admin/api/services/{sid}/application_plans.json"), &[("name", "Gold")]).await;
        let gold = id(&gold, "application_plan").to_string();
        let r = console.post("/console/applications/bulk", &[("ids", &one), ("ids", &two), ("action", "change_plan"),
            ("plan_id", &gold)]).await;
        assert!(r.body.contains("Moved 2 applications to the new plan."), "{}", r.body);
        for x in [&one, &two] {
            let (_, shown) = app.get_json(&format!("/admin/api/accounts/{account}/applications/{x}.json")).await;
            assert_eq!(shown["application"]["state"], "suspended");
            assert_eq!(shown["application"]["plan_id"].as_i64().unwrap().to_string(), gold);
        }
        let r = console.post("/console/applications/bulk", &[("ids", &one), ("ids", &two), ("action", "message"),
            ("body", "Your keys rotate")]).await;
        assert!(r.body.contains("Sent the message to 1 developer account."), "{}", r.body);

        // A member without the audience section is refused the bulk screens.
        let member = app.provider_user("member", "correct horse", false).await;
        let (s, _) = app.send_form(reqwest::Method::PUT, &format!("/admin/api/users/{member}/permissions.json"),
            &[("allowed_sections[]", "plans")]).await;
        assert_eq!(s, 200);
        let theirs = Console::sign_in(app, "member", "correct horse").await;
        let r = theirs.post("/console/applications/bulk", &[("ids", &one), ("action", "resume")]).await;
        assert_eq!(r.status, 403);
    }

    async fn personal_details_password_and_token_deletion(app: &TestApp) {
        let me = app.provider_user("ops", "correct horse", true).await;
        app.provider_user("taken", "correct horse", true).await;
        let console = Console::sign_in(app, "ops", "correct horse").await;
        let elsewhere = Console::sign_in(app, "ops", "correct horse").await;
        let page = console.get("/console/settings/personal").await.body;
        assert!(page.contains("value=\"ops\"") && page.contains("autocomplete=\"current-password\""), "{page}");

        let r = console.post("/console/settings/personal", &[("username", "taken"), ("email", "ops@provider.test")]).await;
        assert_eq!(r.status, 422);
        assert!(r.body.contains("id=\"e-username\""), "{}", r.body);
        let r = console.post("/console/settings/personal", &[("username", "ops"), ("email", "ops@new.test")]).await;
        assert_eq!((r.status, r.location.as_str()), (303, "/console/settings/personal?saved=details"));
        let (_, user) = app.get_json(&format!("/admin/api/users/{me}.json")).await;
        assert_eq!(user["user"]["email"], "ops@new.test");

        let r = change(&console, "wrong horse", "battery staple", "battery staple").await;
        assert!(r.status == 422 && r.body.contains("Current password is not your password"), "{}", r.body);
        let r = change(&console, "correct horse", "battery staple", "battery stapel").await;
        assert!(r.status == 422 && r.body.contains("id=\"e-password_confirmation\""), "{}", r.body);
        let r = change(&console, "correct horse", "short", "short").await;
        assert!(r.status == 422 && r.body.contains("New password is too short"), "{}", r.body);
        assert!(!r.body.contains("value=\"short\""), "a password is never put back into a page");
        let r = change(&console, "correct horse", "battery staple", "battery staple").await;
        assert_eq!((r.status, r.location.as_str()), (303, "/console/settings/personal?saved=password"));
        assert_eq!(console.get("/console/").await.status, 200, "this session goes on");
        assert_eq!(elsewhere.get("/console/").await.status, 303, "the other session is signed out");
        session(app, "ops", "battery staple").await;

        // A token is deleted behind a confirmation; another user's token is not found.
        let r = console.post("/console/settings/tokens", &[("name", "bot"), ("scopes[]", "stats"), ("permission", "ro")]).await;
        assert_eq!(r.status, 200);
        let token: i64 = sqlx::query_scalar("SELECT id FROM access_tokens WHERE user_id = $1")
            .bind(me).fetch_one(&app.db.pool).await.unwrap();
        let confirm = format!("/console/settings/tokens/{token}/delete");
        assert!(console.get("/console/settings/tokens").await.body.contains(&confirm));
        let page = console.get(&confirm).await;
        assert!(page.status == 200 && page.body.contains("Delete access token “bot”?"), "{}", page.body);
        let theirs = Console::sign_in(app, "taken", "correct horse").await;
        assert_eq!(theirs.get(&confirm).await.status, 404);
        assert_eq!(theirs.post(&confirm, &[]).await.status, 404);
        let r = console.post(&confirm, &[]).await;
        assert_eq!((r.status, r.location.as_str()), (303, "/console/settings/tokens"));
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM access_tokens WHERE user_id = $1")
            .bind(me).fetch_one(&app.db.pool).await.unwrap();
        assert_eq!(left, 0);
    }
}

/// Opens an invitation link as a browser without a session: the form's token and cookie.
async fn invitation_form(app: &TestApp, link: &str) -> (u16, String, String) {
    let r = browser().get(app.url(link)).send().await.unwrap();
    let status = r.status().as_u16();
    let cookie = cookies(&r)
        .into_iter()
        .find(|(n, _)| n == "tollgate_sign_in")
        .map(|c| c.1)
        .unwrap_or_default();
    (status, csrf_of(&r.text().await.unwrap()), cookie)
}

async fn accept(app: &TestApp, link: &str, csrf: &str, cookie: &str, form: &[(&str, &str)]) -> reqwest::Response {
    let mut fields = vec![("_csrf", csrf)];
    fields.extend_from_slice(form);
    browser()
        .post(app.url(link))
        .header("cookie", format!("tollgate_sign_in={cookie}"))
        .form(&fields)
        .send()
        .await
        .unwrap()
}

/// An invitation e-mailed over SMTP, accepted once: the invitee is signed in as a member.
async fn invitations_are_emailed_and_open_once(backend: Backend) {
    let mail = MailCatcher::start().await;
    let smtp = mail.url();
    let app = TestApp::spawn_with(backend, |c| c.smtp_url = Some(smtp)).await;
    let app = &app;
    app.provider_user("ops", "correct horse", true).await;
    let console = Console::sign_in(app, "ops", "correct horse").await;
    let r = console
        .post("/console/settings/invitations", &[("email", "not an address")])
        .await;
    assert!(r.status == 422 && r.body.contains("id=\"e-email\""), "{}", r.body);
    let r = console
        .post(
            "/console/settings/invitations",
            &[("email", "new.colleague@provider.test")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("The invitation was e-mailed"), "{}", r.body);
    let url = r
        .body
        .split("<code id=\"invitation-link\">")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_string();
    let link = url
        .split_once("/console/invitations/")
        .map(|(_, t)| format!("/console/invitations/{t}"))
        .unwrap();
    let token = link.rsplit('/').next().unwrap().to_string();
    let got = mail.wait_for("the invitation", |m| !m.is_empty()).await;
    let unfolded = got[0].replace("=\r\n", "").replace("=\n", "");
    assert!(
        unfolded.contains("new.colleague@provider.test") && unfolded.contains("Invitation to join"),
        "{unfolded}"
    );
    assert!(unfolded.contains(&token), "the link is in the mail");
    let stored: String = sqlx::query_scalar("SELECT token_hash FROM invitations")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_ne!(stored, token, "only the token's hash is kept");

    // The link's form: CSRF, matching passwords, a free user name; then signed in.
    let (status, csrf, cookie) = invitation_form(app, &link).await;
    assert_eq!(status, 200);
    let r = accept(
        app,
        &link,
        "forged",
        &cookie,
        &[
            ("username", "neo"),
            ("password", "battery staple"),
            ("password_confirmation", "battery staple"),
        ],
    )
    .await;
    assert_eq!(r.status(), 403);
    let r = accept(
        app,
        &link,
        &csrf,
        &cookie,
        &[
            ("username", "neo"),
            ("password", "battery staple"),
            ("password_confirmation", "other"),
        ],
    )
    .await;
    assert_eq!(r.status(), 422);
    let r = accept(
        app,
        &link,
        &csrf,
        &cookie,
        &[
            ("username", "ops"),
            ("password", "battery staple"),
            ("password_confirmation", "battery staple"),
        ],
    )
    .await;
    assert_eq!(r.status(), 422, "the user name is taken");
    assert!(r.text().await.unwrap().contains("id=\"e-username\""));
    let r = accept(
        app,
        &link,
        &csrf,
        &cookie,
        &[
            ("username", "neo"),
            ("password", "battery staple"),
            ("password_confirmation", "battery staple"),
        ],
    )
    .await;
    assert_eq!(r.status(), 303);
    assert!(
        cookies(&r).iter().any(|(n, _)| n == "tollgate_session"),
        "signed in at once"
    );
    let (_, users) = app.get_json("/admin/api/users.json").await;
    let neo = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["user"]["username"] == "neo")
        .unwrap()
        .clone();
    assert_eq!(neo["user"]["state"], "active");
    assert_eq!(neo["user"]["role"], "member");
    assert_eq!(neo["user"]["email"], "new.colleague@provider.test");
    // Once only; the list shows it accepted.
    assert_eq!(invitation_form(app, &link).await.0, 404);
    let listed = console.get("/console/settings/invitations").await.body;
    assert!(
        listed.contains("new.colleague@provider.test") && !listed.contains("not yet"),
        "{listed}"
    );
    // A cancelled invitation stops opening.
    let r = console
        .post("/console/settings/invitations", &[("email", "second@provider.test")])
        .await;
    let second = r
        .body
        .split("/console/invitations/")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_string();
    let id: i64 = sqlx::query_scalar("SELECT id FROM invitations WHERE email = 'second@provider.test'")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(
        console
            .post(&format!("/console/settings/invitations/{id}/delete"), &[])
            .await
            .status,
        303
    );
    assert_eq!(
        invitation_form(app, &format!("/console/invitations/{second}")).await.0,
        404
    );
}

#[tokio::test]
async fn invitations_on_sqlite() {
    invitations_are_emailed_and_open_once(Backend::Sqlite).await;
}

#[tokio::test]
async fn invitations_on_postgres() {
    invitations_are_emailed_and_open_once(Backend::Postgres).await;
}

on_both_databases! {
    async fn member_permissions_notification_preferences_and_usage_rules(app: &TestApp) {
        let member = app.provider_user("member", "correct horse", false).await;
        app.provider_user("ops", "correct horse", true).await;
        let (_, mine) = app.post_form("/admin/api/services.json", &[("name", "Mine")]).await;
        let mine = id(&mine, "service").to_string();
        let console = Console::sign_in(app, "ops", "correct horse").await;
        let page = console.get(&format!("/console/users/{member}")).await.body;
        assert!(page.contains("Sections this member may use") && page.contains("value=\"monitoring\""), "{page}");
        let r = console.post(&format!("/console/users/{member}/permissions"),
            &[("allowed_sections[]", "partners"), ("allowed_sections[]", "monitoring"), ("allowed_service_ids[]", &mine)]).await;
        assert_eq!(r.status, 303);
        let (_, held) = app.get_json(&format!("/admin/api/users/{member}/permissions.json")).await;
        assert_eq!(held["permissions"]["allowed_sections"], serde_json::json!(["partners", "monitoring"]));
        assert_eq!(held["permissions"]["allowed_service_ids"], serde_json::json!([mine.parse::<i64>().unwrap()]));
        let r = console.post(&format!("/console/users/{member}/permissions"), &[("allowed_service_ids[]", "999999")]).await;
        assert!(r.status == 422 && r.body.contains("service 999999 does not exist"), "{}", r.body);
        // Nothing ticked: no sections (not "unchanged").
        let r = console.post(&format!("/console/users/{member}/permissions"), &[("allowed_service_ids[]", &mine)]).await;
        assert_eq!(r.status, 303);
        let (_, held) = app.get_json(&format!("/admin/api/users/{member}/permissions.json")).await;
        assert_eq!(held["permissions"]["allowed_sections"], serde_json::json!([]));
        assert!(!console.get("/console/users").await.body.is_empty());
        let (s, _) = app.send_form(reqwest::Method::PUT, &format!("/admin/api/users/{member}/permissions.json"),
            &[("allowed_sections[]", "monitoring")]).await;
        assert_eq!(s, 200);

        // Notifications: a member sees their sections' only; unticking turns one off.
        let theirs = Console::sign_in(app, "member", "correct horse").await;
        let page = theirs.get("/console/settings/notifications").await.body;
        assert!(page.contains("id=\"n-daily_report\"") && !page.contains("id=\"n-account_created\""), "{page}");
        let r = theirs.post("/console/settings/notifications", &[("daily_report", "0"), ("weekly_report", "0"),
            ("weekly_report", "1")]).await;
        assert_eq!((r.status, r.location.as_str()), (303, "/console/settings/notifications?saved"));
        let stored = tollgate_store::catalog::provider::notification_preferences(
            &app.db, tollgate_domain::ids::ProviderUserId::new(member)).await.unwrap();
        assert_eq!((stored["daily_report"].clone(), stored["weekly_report"].clone()), (false.into(), true.into()));
        let r = theirs.post("/console/settings/notifications", &[("account_created", "0")]).await;
        assert!(r.status == 422 && r.body.contains("not a notification your sections allow"), "{}", r.body);
        assert!(!theirs.get("/console/settings/notifications").await.body.contains("id=\"n-daily_report\" checked"));

        // Usage rules: provider settings, through the API's update; members without settings refused.
        let page = console.get("/console/accounts/settings").await.body;
        assert!(page.contains("id=\"r-signups_enabled\" checked") && !page.contains("id=\"r-account_approval_required\" checked"), "{page}");
        let r = console.post("/console/accounts/settings", &[("account_approval_required", "1")]).await;
        assert_eq!(r.status, 303);
        let (_, provider) = app.get_json("/admin/api/provider.json").await;
        assert_eq!(provider["account"]["signups_enabled"], "false");
        assert_eq!(provider["account"]["account_approval_required"], "true");
        assert_eq!(theirs.get("/console/accounts/settings").await.status, 403);
    }
}

on_both_databases! {
    async fn user_keys_regenerate_rules_list_by_position_and_accounts_take_a_billing_address(app: &TestApp) {
        let (service, application) = app.seed("old-key").await;
        let sid = id(&service, "service");
        let account = application["application"]["account_id"].as_i64().unwrap();
        let app_id = id(&application, "application");
        app.provider_user("ops", "correct horse", true).await;
        let console = Console::sign_in(app, "ops", "correct horse").await;

        // Regenerate: a new random key, the old one refused by authrep.
        let page = format!("/console/accounts/{account}/applications/{app_id}");
        assert!(console.get(&page).await.body.contains("Regenerate user key"));
        let r = console.post(&format!("{page}/user_key"), &[]).await;
        assert_eq!((r.status, r.location.as_str()), (303, page.as_str()));
        let (_, shown) = app.get_json(&format!("/admin/api/accounts/{account}/applications/{app_id}.json")).await;
        let new = shown["application"]["user_key"].as_str().unwrap().to_string();
        assert!(new != "old-key" && new.len() >= 32, "{new}");
        let token = app.service_token(sid).await;
        let authrep = |key: String| {
            let url = app.url(&format!("/transactions/authrep.json?service_id={sid}&service_token={token}&user_key={key}"));
            async move { app.client.get(url).send().await.unwrap().status().as_u16() }
        };
        assert_eq!(authrep("old-key".into()).await, 403);
        assert_eq!(authrep(new).await, 200);

        // Mapping rules are listed in the order they are matched.
        let rules = format!("/admin/api/services/{sid}/proxy/mapping_rules.json");
        let (_, metrics) = app.get_json(&format!("/admin/api/services/{sid}/metrics.json")).await;
        let hits = metrics["metrics"][0]["metric"]["id"].as_i64().unwrap().to_string();
        for (pattern, position) in [("/zebra", "0"), ("/aardvark", "9")] {
            let (s, body) = app.post_form(&rules, &[("http_method", "GET"), ("pattern", pattern), ("metric_id", &hits),
                ("delta", "1"), ("position", position)]).await;
            assert_eq!(s, 201, "{body}");
        }
        let listed = console.get(&format!("/console/services/{sid}/proxy/mapping_rules")).await.body;
        let (zebra, aardvark) = (listed.find("/zebra").unwrap(), listed.find("/aardvark").unwrap());
        assert!(zebra < aardvark, "position 0 before position 9");

        // A billing address: refused next to its field, then saved as the API shows it.
        let account_page = format!("/console/accounts/{account}");
        assert!(console.get(&account_page).await.body.contains("id=\"address-h\""));
        let r = console.post(&format!("{account_page}/billing_address"),
            &[("name", "Acme Ltd"), ("address1", "1 Main St"), ("city", "Kyoto"), ("country", "")]).await;
        assert_eq!(r.status, 422);
        assert!(r.body.contains("id=\"e-country\"") && r.body.contains("value=\"Kyoto\""), "{}", r.body);
        let r = console.post(&format!("{account_page}/billing_address"),
            &[("name", "Acme Ltd"), ("address1", "1 Main St"), ("city", "Kyoto"), ("country", "Japan"), ("zip", "600-8216")]).await;
        assert_eq!((r.status, r.location.as_str()), (303, account_page.as_str()));
        let (_, shown) = app.get_json(&format!("/admin/api/accounts/{account}.json")).await;
        assert_eq!(shown["account"]["billing_address"]["city"], "Kyoto", "{shown}");
        assert_eq!(shown["account"]["billing_address"]["zip"], "600-8216");
        assert!(console.get(&account_page).await.body.contains("value=\"600-8216\""));
    }
}

on_both_databases! {
    async fn analytics_charts_the_apis_figures_with_their_csv(app: &TestApp) {
        let (service, application) = app.seed("stats-key").await;
        let sid = id(&service, "service");
        app.limit_hits(&service, &application, "day", 7).await;
        app.provider_user("ops", "correct horse", true).await;
        let console = Console::sign_in(app, "ops", "correct horse").await;
        let page = console.get("/console/analytics/usage").await;
        assert_eq!(page.status, 200);
        assert!(page.body.contains("There is no data available for the selected period"), "{}", page.body);
        assert!(page.body.contains("No integration errors"), "{}", page.body);
        tollgate_store::integration_errors::record(&app.db, tollgate_domain::ids::ServiceId::new(sid), "report",
            "usage of unknown metric `frobs`").await.unwrap();
        let listed = console.get("/console/analytics/usage").await.body;
        let errors = listed.split("id=\"integration-errors\"").nth(1).expect("the integration errors table");
        assert!(errors.contains("usage of unknown metric `frobs`") && errors.contains("<code>report</code>"), "{errors}");

        let token = app.service_token(sid).await;
        for code in ["200", "200", "404"] {
            let path = format!("/transactions/authrep.json?service_id={sid}&service_token={token}&user_key=stats-key\
                &usage%5Bhits%5D=2&log%5Bcode%5D={code}");
            assert_eq!(app.client.get(app.url(&path)).send().await.unwrap().status(), 200);
        }
        let page = console.get(&format!("/console/analytics/usage?service_id={sid}&metric_name=hits&period=day")).await.body;
        assert!(page.contains("<span id=\"usage-total\">6</span>") && page.contains("<svg"), "{page}");
        assert!(page.contains("class=\"c2xx\"") && page.contains("class=\"c4xx\""), "classes in their colours: {page}");
        assert!(page.contains("2XX <strong>2</strong>") && page.contains("4XX <strong>1</strong>"), "{page}");
        // Top applications and limits near their end, as the API ranks them.
        let top = page.split("id=\"top-applications\"").nth(1).expect("the top applications table");
        assert!(top.contains(">App</a>") && top.contains("<td class=\"num\">6</td>"), "{top}");
        let near = page.split("id=\"near-limits\"").nth(1).expect("6 of 7 a day is near its limit");
        assert!(near.contains("<td class=\"num\">7</td>") && near.contains("85.71%"), "{near}");
        // The chart agrees with the API; its CSV is the API's CSV.
        let (_, api) = app.get_json(&format!("/stats/services/{sid}/usage.json?metric_name=hits&period=day")).await;
        assert_eq!(api["total"], 6, "{api}");
        let csv = console.get(&format!("/console/analytics/usage.csv?service_id={sid}&metric_name=hits&period=day")).await;
        assert_eq!(csv.status, 200);
        let r = app.admin(reqwest::Method::GET, &format!("/stats/services/{sid}/usage.csv?metric_name=hits&period=day"))
            .send().await.unwrap().text().await.unwrap();
        assert_eq!(csv.body, r);
        assert!(csv.body.starts_with("Metric System Name,Metric Name,Date,Value"));
        // A custom range, and a bad one said on the page.
        let today = chrono::Utc::now().format("%Y-%m-%d");
        let page = console.get(&format!("/console/analytics/usage?service_id={sid}&metric_name=hits&since={today}")).await.body;
        assert!(page.contains("<span id=\"usage-total\">6</span>"), "{page}");
        assert!(page.contains("2XX <strong>2</strong>"), "the classes cover the same whole days: {page}");
        let page = console.get(&format!("/console/analytics/usage?service_id={sid}&metric_name=nope")).await;
        assert!(page.status == 200 && page.body.contains("id=\"analytics-error\""), "{}", page.body);

        // Members: their products only.
        let member = app.provider_user("member", "correct horse", false).await;
        let (_, other) = app.post_form("/admin/api/services.json", &[("name", "Other")]).await;
        let other = id(&other, "service").to_string();
        let (s, _) = app.send_form(reqwest::Method::PUT, &format!("/admin/api/users/{member}/permissions.json"),
            &[("allowed_sections[]", "monitoring"), ("allowed_service_ids[]", &other)]).await;
        assert_eq!(s, 200);
        let theirs = Console::sign_in(app, "member", "correct horse").await;
        assert_eq!(theirs.get(&format!("/console/analytics/usage?service_id={sid}")).await.status, 403);
        assert_eq!(theirs.get(&format!("/console/analytics/usage.csv?service_id={sid}&metric_name=hits")).await.status, 403);
        assert!(!theirs.get("/console/analytics/usage").await.body.contains("Echo API"));
    }
}

on_both_databases! {
    async fn analytics_of_an_application_and_of_a_backend(app: &TestApp) {
        use tollgate_store::counters::{Counter, SeriesKey, SeriesValue};
        let (service, application) = app.seed("owner-key").await;
        let sid = id(&service, "service");
        let app_id = id(&application, "application");
        let account = application["application"]["account_id"].as_i64().unwrap();
        let token = app.service_token(sid).await;
        for code in ["200", "503"] {
            let path = format!("/transactions/authrep.json?service_id={sid}&service_token={token}&user_key=owner-key\
                &usage%5Bhits%5D=3&log%5Bcode%5D={code}");
            assert_eq!(app.client.get(app.url(&path)).send().await.unwrap().status(), 200);
        }
        app.provider_user("ops", "correct horse", true).await;
        let console = Console::sign_in(app, "ops", "correct horse").await;

        // An application's usage, linked from its page; its CSV is the API's.
        let item = console.get(&format!("/console/accounts/{account}/applications/{app_id}")).await.body;
        let link = format!("/console/analytics/usage?application_id={app_id}");
        assert!(item.contains(&link), "{item}");
        let page = console.get(&format!("{link}&metric_name=hits&period=day")).await.body;
        assert!(page.contains("<span id=\"usage-total\">6</span>") && page.contains("5XX <strong>1</strong>"), "{page}");
        assert!(page.contains("Usage of App (Acme)") && !page.contains("id=\"top-applications\""), "{page}");
        let csv = console.get(&format!("/console/analytics/usage.csv?application_id={app_id}&metric_name=hits&period=day")).await;
        let api = app.admin(reqwest::Method::GET, &format!("/stats/applications/{app_id}/usage.csv?metric_name=hits&period=day"))
            .send().await.unwrap().text().await.unwrap();
        assert_eq!(csv.body, api);

        // A backend's usage: its own metric over the products using it, no response classes.
        assert!(console.get("/console/analytics/backends").await.body.contains("No backends yet"));
        let (s, backend) = app.post_form("/admin/api/backend_apis.json", &[("name", "Storage"), ("private_endpoint", "http://127.0.0.1:9")]).await;
        assert_eq!(s, 201, "{backend}");
        let bid = backend["backend_api"]["id"].as_i64().unwrap();
        let (_, metrics) = app.get_json(&format!("/admin/api/backend_apis/{bid}/metrics.json")).await;
        let backend_hits = metrics["metrics"][0]["metric"]["id"].as_i64().unwrap();
        let (s, body) = app.post_form(&format!("/admin/api/services/{sid}/backend_usages.json"),
            &[("backend_api_id", &bid.to_string()), ("path", "/storage")]).await;
        assert_eq!(s, 201, "{body}");
        let now = Utc::now().timestamp();
        tollgate_store::usage::write(&app.db, &[SeriesValue {
            key: SeriesKey { app: app_id, counter: Counter::Metric(tollgate_domain::ids::MetricId::new(backend_hits)).raw(), start: now - now % 900 },
            value: 4,
            observed_us: 1,
        }]).await.unwrap();
        let r = console.get("/console/analytics/backends").await;
        assert_eq!((r.status, r.location.as_str()), (303, format!("/console/analytics/usage?backend_api_id={bid}").as_str()));
        let page = console.get(&format!("/console/analytics/usage?backend_api_id={bid}&metric_name=hits&period=day")).await.body;
        assert!(page.contains("<span id=\"usage-total\">4</span>") && page.contains("id=\"a-backend\""), "{page}");
        assert!(page.contains("Response codes are counted per product") && !page.contains("id=\"codes-h\""), "{page}");
        let csv = console.get(&format!("/console/analytics/usage.csv?backend_api_id={bid}&metric_name=hits&period=day")).await;
        let api = app.admin(reqwest::Method::GET, &format!("/stats/backend_apis/{bid}/usage.csv?metric_name=hits&period=day"))
            .send().await.unwrap().text().await.unwrap();
        assert_eq!(csv.body, api);
        assert!(csv.body.contains(&format!("hits.{bid}")), "{}", csv.body);

        // A member limited to another product sees neither.
        let member = app.provider_user("member", "correct horse", false).await;
        let (_, other) = app.post_form("/admin/api/services.json", &[("name", "Other")]).await;
        let other = id(&other, "service").to_string();
        let (s, _) = app.send_form(reqwest::Method::PUT, &format!("/admin/api/users/{member}/permissions.json"),
            &[("allowed_sections[]", "monitoring"), ("allowed_service_ids[]", &other)]).await;
        assert_eq!(s, 200);
        let theirs = Console::sign_in(app, "member", "correct horse").await;
        assert_eq!(theirs.get(&link).await.status, 403);
        assert_eq!(theirs.get(&format!("/console/analytics/usage?backend_api_id={bid}")).await.status, 403);
    }
}
