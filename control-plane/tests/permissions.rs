//! The permission matrix: for each token scope × ro/rw × kind of provider user (admin, member
//! of `partners`, member of `plans` limited to one service), which admin calls are allowed and
//! which are denied with 403 — on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failure report

use reqwest::Method;
use serde_json::Value;
use tollgate::on_both_databases;
use tollgate::testing::TestApp;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    Admin,
    PartnersMember,
    /// Member of `plans`, allowed service A only.
    PlansMemberOfA,
}

struct Call {
    name: &'static str,
    method: Method,
    path: String,
    form: Vec<(&'static str, String)>,
    section: &'static str,
    write: bool,
    /// The service the call touches (B is outside the plans member's services).
    service_b: bool,
}

fn allowed(who: Who, scope: &str, permission: &str, call: &Call) -> bool {
    if scope != "account_management" || (call.write && permission != "rw") {
        return false;
    }
    match who {
        Who::Admin => true,
        Who::PartnersMember => call.section == "partners",
        Who::PlansMemberOfA => call.section == "plans" && !call.service_b,
    }
}

async fn user(app: &TestApp, name: &str, sections: &[&str], services: Option<i64>, admin: bool) -> i64 {
    let (status, body) = app
        .post_form(
            "/admin/api/users.json",
            &[("username", name), ("email", &format!("{name}@provider.test"))],
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["user"]["id"].as_i64().unwrap();
    if admin {
        let r = app
            .admin(Method::PUT, &format!("/admin/api/users/{id}/admin.json"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let mut form: Vec<(&str, String)> = sections.iter().map(|s| ("allowed_sections[]", s.to_string())).collect();
    if let Some(s) = services {
        form.push(("allowed_service_ids[]", s.to_string()));
    }
    let r = app
        .admin(Method::PUT, &format!("/admin/api/users/{id}/permissions.json"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    id
}

async fn token(app: &TestApp, user: i64, scope: &str, permission: &str) -> String {
    let (status, body) = app
        .post_form(
            &format!("/admin/api/users/{user}/access_tokens.json"),
            &[("name", "t"), ("permission", permission), ("scopes[]", scope)],
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["access_token"]["value"].as_str().unwrap().to_string()
}

on_both_databases! {
    async fn permission_matrix(app: &TestApp) {
        let (service_a, _) = app.seed("key").await;
        let a = service_a["service"]["id"].as_i64().unwrap();
        let (_, service_b) = app.post_form("/admin/api/services.json", &[("name", "B")]).await;
        let b = service_b["service"]["id"].as_i64().unwrap();

        let users = [
            (Who::Admin, user(app, "boss", &[], None, true).await),
            (Who::PartnersMember, user(app, "sales", &["partners", "monitoring", "finance"], None, false).await),
            (Who::PlansMemberOfA, user(app, "ops", &["plans", "monitoring", "finance"], Some(a), false).await),
        ];
        let calls = [
            Call { name: "list accounts", method: Method::GET, path: "/admin/api/accounts.json".into(), form: vec![], section: "partners", write: false, service_b: false },
            Call { name: "sign up", method: Method::POST, path: "/admin/api/signup.json".into(), form: vec![("org_name", "X".into()), ("username", "x".into())], section: "partners", write: true, service_b: false },
            Call { name: "read service A", method: Method::GET, path: format!("/admin/api/services/{a}.json"), form: vec![], section: "plans", write: false, service_b: false },
            Call { name: "read service B", method: Method::GET, path: format!("/admin/api/services/{b}.json"), form: vec![], section: "plans", write: false, service_b: true },
            Call { name: "add metric to A", method: Method::POST, path: format!("/admin/api/services/{a}/metrics.json"), form: vec![("friendly_name", "m".into()), ("unit", "u".into())], section: "plans", write: true, service_b: false },
            Call { name: "read B's proxy", method: Method::GET, path: format!("/admin/api/services/{b}/proxy.json"), form: vec![], section: "plans", write: false, service_b: true },
            // Once readable by any plans member, whatever their services (the path's service is
            // now checked by the route guard for every route under a service).
            Call { name: "read B's credit margins", method: Method::GET, path: format!("/admin/api/services/{b}/credit_margins.json"), form: vec![], section: "plans", write: false, service_b: true },
            Call { name: "read A's credit margins", method: Method::GET, path: format!("/admin/api/services/{a}/credit_margins.json"), form: vec![], section: "plans", write: false, service_b: false },
            Call { name: "list provider users", method: Method::GET, path: "/admin/api/users.json".into(), form: vec![], section: "settings", write: false, service_b: false },
        ];
        let mut checked = 0;
        for (who, user_id) in users {
            for scope in ["account_management", "analytics", "finance", "stats"] {
                for permission in ["ro", "rw"] {
                    let value = token(app, user_id, scope, permission).await;
                    for (i, call) in calls.iter().enumerate() {
                        let mut form = call.form.clone();
                        if call.name == "sign up" || call.name == "add metric to A" {
                            // Unique names per attempt, so only permissions decide.
                            let n = format!("{checked}-{i}");
                            form = form.into_iter().map(|(k, v)| (k, format!("{v}{n}"))).collect();
                        }
                        let r = app.client.request(call.method.clone(), app.url(&call.path)).bearer_auth(&value).form(&form).send().await.unwrap();
                        let status = r.status().as_u16();
                        let expected = allowed(who, scope, permission, call);
                        if expected {
                            assert!((200..300).contains(&status), "{who:?} {scope}/{permission} `{}`: {status} {}", call.name, r.text().await.unwrap());
                        } else {
                            assert_eq!(status, 403, "{who:?} {scope}/{permission} `{}` must be denied", call.name);
                        }
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 3 * 4 * 2 * calls.len());

        // Lists are filtered to the member's services.
        let ops = users[2].1;
        let ops_token = token(app, ops, "account_management", "ro").await;
        let list: Value = app.client.get(app.url("/admin/api/services.json")).bearer_auth(&ops_token).send().await.unwrap().json().await.unwrap();
        let ids: Vec<i64> = list["services"].as_array().unwrap().iter().map(|s| s["service"]["id"].as_i64().unwrap()).collect();
        assert_eq!(ids, vec![a]);
        let configs: Value = app.client.get(app.url("/admin/api/account/proxy_configs/production.json")).bearer_auth(&ops_token).send().await.unwrap().json().await.unwrap();
        assert!(configs["proxy_configs"].as_array().unwrap().iter().all(|c| c["proxy_config"]["content"]["id"] == a));

        // A member gets no token for a section they do not hold; the value is shown once.
        let (status, body) = app.post_form(&format!("/admin/api/users/{ops}/access_tokens.json"), &[("name", "t"), ("permission", "ro"), ("scopes[]", "account_management")]).await;
        assert_eq!(status, 201, "{body}");
        let sales = users[1].1;
        let r = app.admin(Method::PUT, &format!("/admin/api/users/{sales}/permissions.json")).form(&[("allowed_sections[]", "[]")]).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let (status, body) = app.post_form(&format!("/admin/api/users/{sales}/access_tokens.json"), &[("name", "t"), ("permission", "ro"), ("scopes[]", "finance")]).await;
        assert_eq!(status, 422, "{body}");
        assert!(body["errors"]["scopes"].is_array(), "{body}");
        let (_, listed) = app.get_json("/admin/api/personal/access_tokens.json").await;
        assert!(listed["access_tokens"].as_array().unwrap().iter().all(|t| t["access_token"].get("value").is_none()));

        // A suspended user's tokens stop working.
        let admin_token = token(app, users[0].1, "account_management", "ro").await;
        let r = app.admin(Method::PUT, &format!("/admin/api/users/{}/activate.json", users[0].1)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let r = app.admin(Method::PUT, &format!("/admin/api/users/{}/suspend.json", users[0].1)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let r = app.client.get(app.url("/admin/api/accounts.json")).bearer_auth(&admin_token).send().await.unwrap();
        assert_eq!(r.status(), 403);
    }
}

on_both_databases! {
    async fn a_members_pages_hold_only_their_services(app: &TestApp) {
        for name in ["X", "Y"] {
            app.post_form("/admin/api/services.json", &[("name", name)]).await;
        }
        let (_, z) = app.post_form("/admin/api/services.json", &[("name", "Z")]).await;
        let z = z["service"]["id"].as_i64().unwrap();
        let ops = user(app, "pager", &["plans", "partners"], Some(z), false).await;
        let value = token(app, ops, "account_management", "ro").await;
        for path in ["/admin/api/services.json?page=1&per_page=1", "/admin/api/applications.json?page=1&per_page=1"] {
            let r = app.client.get(app.url(path)).bearer_auth(&value).send().await.unwrap();
            assert_eq!(r.status(), 200, "{path}");
            let body: Value = r.json().await.unwrap();
            if path.contains("services") {
                let ids: Vec<i64> =
                    body["services"].as_array().unwrap().iter().map(|s| s["service"]["id"].as_i64().unwrap()).collect();
                assert_eq!(ids, vec![z], "the first page is the member's first service, not an empty page");
            } else {
                assert_eq!(body["applications"].as_array().unwrap().len(), 0);
            }
        }
    }
}

/// Every route of the table is guarded but the few public ones: without a token, or with a
/// token of another scope, each refuses before its handler runs (so no handler can forget).
#[tokio::test]
async fn every_guarded_route_refuses_a_missing_or_foreign_token() {
    use tollgate::api::routes::Guard;
    let app = TestApp::spawn(tollgate::testing::Backend::Sqlite).await;
    let (status, body) = app
        .post_form(
            "/admin/api/personal/access_tokens.json",
            &[("name", "stats"), ("permission", "rw"), ("scopes[]", "stats")],
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let stats_only = body["access_token"]["value"].as_str().unwrap().to_string();
    let mut public = Vec::new();
    let table = tollgate::api::table();
    for route in &table.0 {
        let path: String = route
            .path
            .split('/')
            .map(|seg| if seg.starts_with('{') { "1" } else { seg })
            .collect::<Vec<_>>()
            .join("/");
        let Guard::Token(permission) = route.guard else {
            public.push(route.path.clone());
            continue;
        };
        let bare = app
            .client
            .request(route.method.clone(), app.url(&path))
            .send()
            .await
            .unwrap();
        assert_eq!(bare.status(), 403, "{} {} without a token", route.method, route.path);
        if permission.scope != tollgate::domain::access::Scope::Stats {
            let foreign = app
                .client
                .request(route.method.clone(), app.url(&path))
                .bearer_auth(&stats_only)
                .send()
                .await
                .unwrap();
            assert_eq!(
                foreign.status(),
                403,
                "{} {} with a stats token",
                route.method,
                route.path
            );
        }
    }
    public.sort();
    public.dedup();
    assert_eq!(
        public,
        [
            "/check.txt",
            "/health",
            "/metrics",
            "/openapi.json",
            "/status",
            "/transactions.json",
            "/transactions.xml",
            "/transactions/{call}"
        ]
    );
    assert!(table.0.len() > 150, "{} routes", table.0.len());
    app.stop().await;
}
