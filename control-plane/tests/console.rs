//! The console's sign-in and sessions over HTTP (the browser flows are in
//! tests/tests/console_browser.rs): passwords set through the API, hashed; sessions in the
//! database; CSRF refused; wrong passwords throttled per user and per address; a page asked
//! for without a session shows nothing; members refused what their role does not hold.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failure report

use tollgate::on_both_databases;
use tollgate::testing::console::{browser, cookies, session, sign_in, sign_in_form};

on_both_databases! {
    async fn lists_page_sort_and_search_and_the_sign_in_form_keeps_its_token(app: &TestApp) {
        app.provider_user("ops", "correct horse", true).await;
        for i in 1..=25 {
            let (s, _) = app.post_form("/admin/api/services.json", &[("name", &format!("Product {i:02}"))]).await;
            assert_eq!(s, 201);
        }
        let cookie = session(app, "ops", "correct horse").await;
        let get = |path: &str| browser().get(app.url(path)).header("cookie", format!("tollgate_session={cookie}")).send();
        let page = get("/console/services").await.unwrap().text().await.unwrap();
        assert!(page.contains("1–20 of 25") && page.contains("rel=\"next\""), "{page}");
        assert!(page.contains("Product 01") && !page.contains("Product 21"), "id order, 20 a page");
        let page = get("/console/services?sort=-name").await.unwrap().text().await.unwrap();
        assert!(page.contains("Product 25") && !page.contains("Product 05"), "by name, descending");
        assert!(page.contains("aria-sort=\"descending\""));
        let page = get("/console/services?sort=-name&page=2").await.unwrap().text().await.unwrap();
        assert!(page.contains("21–25 of 25") && page.contains("Product 01"), "{page}");
        let page = get("/console/services?q=product%201").await.unwrap().text().await.unwrap();
        assert!(page.contains("1–10 of 10") && page.contains("Product 10") && !page.contains("Product 20"), "{page}");
        let r = get("/console/services?sort=name;DROP%20TABLE%20services&page=x").await.unwrap();
        assert_eq!(r.status(), 200, "an unknown order or page is ignored, never put in SQL");

        // A second load of the sign-in form (another tab, a prefetch) leaves the first valid.
        let (token, first) = sign_in_form(app).await;
        let again = browser().get(app.url("/console/sign_in")).header("cookie", format!("tollgate_sign_in={first}"))
            .send().await.unwrap();
        let kept = cookies(&again).into_iter().find(|(n, _)| n == "tollgate_sign_in").unwrap().1;
        assert_eq!(kept, first);
        let r = browser().post(app.url("/console/sign_in")).header("cookie", format!("tollgate_sign_in={kept}"))
            .form(&[("_csrf", token.as_str()), ("login", "ops"), ("password", "correct horse"), ("next", "/console/")])
            .send().await.unwrap();
        assert_eq!(r.status(), 303, "the first form's token still signs in");
    }

    async fn sign_in_makes_a_session_and_sign_out_ends_it(app: &TestApp) {
        app.provider_user("ops", "correct horse", true).await;
        // No session: to sign-in, and no data in the answer.
        let r = browser().get(app.url("/console/")).send().await.unwrap();
        assert_eq!(r.status(), 303);
        assert_eq!(r.headers()["location"], "/console/sign_in?next=%2Fconsole%2F");
        assert!(r.text().await.unwrap().is_empty());

        // By user name, and by e-mail; the cookie is HttpOnly and SameSite=Lax.
        let r = sign_in(app, "ops", "correct horse").await;
        let set = r.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_string()).collect::<Vec<_>>();
        let session_cookie = set.iter().find(|c| c.starts_with("tollgate_session=")).unwrap();
        assert!(session_cookie.contains("HttpOnly") && session_cookie.contains("SameSite=Lax"), "{session_cookie}");
        assert!(!session_cookie.contains("Secure"), "plain HTTP here");
        let cookie = session(app, "ops@provider.test", "correct horse").await;
        let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM console_sessions").fetch_one(&app.db.pool).await.unwrap();
        assert_eq!(stored, 2, "sessions live in the database");
        let hash: String = sqlx::query_scalar("SELECT password FROM provider_users WHERE username = 'ops'")
            .fetch_one(&app.db.pool).await.unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");

        let r = browser().get(app.url("/console/")).header("cookie", format!("tollgate_session={cookie}")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["cache-control"], "no-store");
        assert!(r.headers()["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
        let page = r.text().await.unwrap();
        assert!(page.contains("<h1>Dashboard</h1>") && page.contains("ops"), "{page}");
        let csrf = page.split("name=\"_csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();

        // A session idle for longer than TOLLGATE_CONSOLE_IDLE_MINUTES (30) has ended.
        let idle = session(app, "ops", "correct horse").await;
        sqlx::query("UPDATE console_sessions SET last_seen_at = '2000-01-01T00:00:00Z' WHERE id_hash = $1")
            .bind(tollgate::store::auth::hash_token(&idle))
            .execute(&app.db.pool).await.unwrap();
        let r = browser().get(app.url("/console/")).header("cookie", format!("tollgate_session={idle}")).send().await.unwrap();
        assert_eq!(r.status(), 303, "idle too long");

        // Sign-out without the form's token is refused, and changes nothing.
        let r = browser().post(app.url("/console/sign_out")).header("cookie", format!("tollgate_session={cookie}"))
            .form(&[("_csrf", "forged")]).send().await.unwrap();
        assert_eq!(r.status(), 403);
        let r = browser().get(app.url("/console/")).header("cookie", format!("tollgate_session={cookie}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "still signed in");
        let r = browser().post(app.url("/console/sign_out")).header("cookie", format!("tollgate_session={cookie}"))
            .form(&[("_csrf", csrf.as_str())]).send().await.unwrap();
        assert_eq!(r.status(), 303);
        let r = browser().get(app.url("/console/")).header("cookie", format!("tollgate_session={cookie}")).send().await.unwrap();
        assert_eq!(r.status(), 303, "signed out");
    }

    async fn the_sign_in_form_needs_its_csrf_token(app: &TestApp) {
        app.provider_user("ops", "correct horse", true).await;
        let (token, _) = sign_in_form(app).await;
        // The token without its cookie (a form posted from another site) is refused.
        let r = browser().post(app.url("/console/sign_in"))
            .form(&[("_csrf", token.as_str()), ("login", "ops"), ("password", "correct horse")])
            .send().await.unwrap();
        assert_eq!(r.status(), 403);
        assert!(cookies(&r).iter().all(|(n, _)| n != "tollgate_session"));
        // A body that is not a form is a 400 that says so, not a CSRF refusal.
        let r = browser().post(app.url("/console/sign_in")).json(&serde_json::json!({"login": "ops"})).send().await.unwrap();
        assert_eq!(r.status(), 400);
        assert!(r.text().await.unwrap().contains("The form could not be read"));
    }

    async fn wrong_passwords_are_throttled_per_user_and_address(app: &TestApp) {
        app.provider_user("ops", "correct horse", true).await;
        app.provider_user("pending", "correct horse", false).await;
        for i in 0..5 {
            let r = sign_in(app, "ops", "wrong horse").await;
            assert_eq!(r.status(), 422, "try {i}");
            assert!(r.text().await.unwrap().contains("Wrong user name, e-mail or password."));
        }
        let r = sign_in(app, "ops", "wrong horse").await;
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "30");
        assert!(r.text().await.unwrap().contains("Try again in 30 seconds"));
        // Locked: even the right password is not checked now.
        let r = sign_in(app, "ops", "correct horse").await;
        assert_eq!(r.status(), 429);
        // The address is locked too: another user from here waits as well.
        let r = sign_in(app, "pending", "correct horse").await;
        assert_eq!(r.status(), 429);
        // Once the lock has passed (moved back in the database), the right password works.
        sqlx::query("UPDATE sign_in_failures SET locked_until = '2000-01-01T00:00:00Z'")
            .execute(&app.db.pool).await.unwrap();
        session(app, "ops", "correct horse").await;
    }

    async fn members_see_only_what_their_role_allows(app: &TestApp) {
        let id = app.provider_user("member", "correct horse", false).await;
        let (_, s1) = app.post_form("/admin/api/services.json", &[("name", "Mine")]).await;
        let (_, s2) = app.post_form("/admin/api/services.json", &[("name", "Theirs")]).await;
        let mine = s1["service"]["id"].as_i64().unwrap().to_string();
        let theirs = s2["service"]["id"].as_i64().unwrap().to_string();
        let (s, _) = app.send_form(reqwest::Method::PUT, &format!("/admin/api/users/{id}/permissions.json"),
            &[("allowed_service_ids[]", &mine), ("allowed_sections[]", "plans")]).await;
        assert_eq!(s, 200);
        let cookie = session(app, "member", "correct horse").await;
        let page = browser().get(app.url("/console/")).header("cookie", format!("tollgate_session={cookie}"))
            .send().await.unwrap().text().await.unwrap();
        assert!(page.contains("Mine") && !page.contains("Theirs"), "only their services: {page}");
        // A foreign service's pages are refused, not merely unlisted; so is a section they lack.
        let get = |path: String| browser().get(app.url(&path)).header("cookie", format!("tollgate_session={cookie}")).send();
        let r = get(format!("/console/services/{mine}")).await.unwrap();
        assert_eq!(r.status(), 200);
        for path in [format!("/console/services/{theirs}"), format!("/console/services/{theirs}/metrics"),
                     format!("/console/services/{theirs}/application_plans/new"), "/console/accounts".to_string()] {
            let r = get(path.clone()).await.unwrap();
            assert_eq!(r.status(), 403, "{path}");
            assert!(!r.text().await.unwrap().contains("Theirs"), "{path} shows nothing of it");
        }
        let listed = get("/console/services".into()).await.unwrap().text().await.unwrap();
        assert!(listed.contains("Mine") && !listed.contains("Theirs"), "{listed}");
        // Their own tokens, with the API's checks: a scope outside their sections is refused
        // next to its field; a form without the session's token is refused.
        let csrf = page.split("name=\"_csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
        let post = |form: Vec<(&'static str, String)>| {
            browser().post(app.url("/console/settings/tokens")).header("cookie", format!("tollgate_session={cookie}")).form(&form).send()
        };
        let r = post(vec![("_csrf", csrf.clone()), ("name", "bot".into()), ("scopes[]", "finance".into()), ("permission", "ro".into())]).await.unwrap();
        assert_eq!(r.status(), 422);
        assert!(r.text().await.unwrap().contains("Scopes `finance` needs the finance section"));
        let r = post(vec![("name", "bot".into()), ("scopes[]", "account_management".into()), ("permission", "ro".into())]).await.unwrap();
        assert_eq!(r.status(), 403, "no CSRF token");
        let r = post(vec![("_csrf", csrf.clone()), ("name", "bot".into()), ("scopes[]", "account_management".into()), ("permission", "ro".into())]).await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("id=\"token-value\""));
        let owned: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM access_tokens WHERE user_id = $1").bind(id)
            .fetch_one(&app.db.pool).await.unwrap();
        assert_eq!(owned, 1, "one token, the member's own");

        // A suspended user's session ends at once.
        let (s, _) = app.send_form(reqwest::Method::PUT, &format!("/admin/api/users/{id}/suspend.json"), &[]).await;
        assert_eq!(s, 200);
        let r = browser().get(app.url("/console/")).header("cookie", format!("tollgate_session={cookie}")).send().await.unwrap();
        assert_eq!(r.status(), 303);
    }

    async fn pending_users_and_bad_passwords(app: &TestApp) {
        let (s, user) = app.post_form("/admin/api/users.json", &[("username", "new"), ("password", "123456")]).await;
        assert_eq!(s, 201, "{user}");
        let r = sign_in(app, "new", "123456").await;
        assert_eq!(r.status(), 403, "pending");
        assert!(r.text().await.unwrap().contains("not active"));
        let (s, body) = app.post_form("/admin/api/users.json", &[("username", "short"), ("password", "12345")]).await;
        assert_eq!(s, 422);
        assert_eq!(body["errors"]["password"][0], "is too short (minimum is 6 characters)", "{body}");
        let (_, users) = app.get_json("/admin/api/users.json").await;
        assert!(!users.to_string().contains("\"short\""), "nothing half-written: {users}");
    }
}
