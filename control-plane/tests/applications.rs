//! Applications and accounts beyond CRUD: find, filtered lists, customized plans, bulk
//! operations, plan copies, billing fields, messages and state events — on both databases.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failure report

use reqwest::Method;
use serde_json::{json, Value};
use tollgate::on_both_databases;
use tollgate::testing::TestApp;

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&app.db.pool).await.unwrap()
}

on_both_databases! {
    async fn find_and_filter_applications(app: &TestApp) {
        let (service, application) = app.seed("find-me").await;
        let sid = service["service"]["id"].as_i64().unwrap();
        let a = &application["application"];
        for query in [
            "user_key=find-me".to_string(),
            format!("app_id={}", a["application_id"].as_str().unwrap()),
            format!("application_id={}", a["id"]),
        ] {
            let (status, found) = app.get_json(&format!("/admin/api/applications/find.json?{query}")).await;
            assert_eq!(status, 200, "{query}");
            assert_eq!(found["application"]["id"], a["id"]);
        }
        assert_eq!(app.get_json("/admin/api/applications/find.json?user_key=nobody").await.0, 404);
        assert_eq!(app.get_json("/admin/api/applications/find.json").await.0, 422);

        let (_, all) = app.get_json(&format!("/admin/api/applications.json?service_id={sid}&state=live")).await;
        assert_eq!(all["applications"].as_array().unwrap().len(), 1);
        let (_, none) = app.get_json("/admin/api/applications.json?state=suspended").await;
        assert_eq!(none["applications"].as_array().unwrap().len(), 0);
        let (status, body) = app.get_json("/admin/api/applications.json?state=asleep").await;
        assert_eq!(status, 422);
        assert!(body["errors"]["state"].is_array());
    }

    async fn customized_plans_stop_following_their_original(app: &TestApp) {
        let (service, application) = app.seed("custom").await;
        let sid = service["service"]["id"].as_i64().unwrap();
        let a = &application["application"];
        let (aid, app_id, plan_id) = (a["account_id"].as_i64().unwrap(), a["id"].as_i64().unwrap(), a["plan_id"].as_i64().unwrap());
        let (_, metrics) = app.get_json(&format!("/admin/api/services/{sid}/metrics.json")).await;
        let hits = metrics["metrics"][0]["metric"]["id"].as_i64().unwrap();
        let limits = |plan: i64| format!("/admin/api/application_plans/{plan}/metrics/{hits}/limits.json");
        assert_eq!(app.post_form(&limits(plan_id), &[("period", "day"), ("value", "100")]).await.0, 201);

        let (status, customized) = app.put_form(&format!("/admin/api/accounts/{aid}/applications/{app_id}/customize_plan.json"), &[]).await;
        assert_eq!(status, 200, "{customized}");
        let custom_plan = customized["application"]["plan_id"].as_i64().unwrap();
        assert_ne!(custom_plan, plan_id);
        let (_, copied) = app.get_json(&limits(custom_plan)).await;
        assert_eq!(copied["limits"][0]["limit"]["value"], 100, "limits are copied");
        // The original changes; the custom plan does not follow.
        let (_, orig) = app.get_json(&limits(plan_id)).await;
        let limit_id = orig["limits"][0]["limit"]["id"].as_i64().unwrap();
        let (status, _) = app.put_form(&format!("/admin/api/application_plans/{plan_id}/metrics/{hits}/limits/{limit_id}.json"), &[("value", "5")]).await;
        assert_eq!(status, 200);
        let (_, copied) = app.get_json(&limits(custom_plan)).await;
        assert_eq!(copied["limits"][0]["limit"]["value"], 100);

        let (status, back) = app.put_form(&format!("/admin/api/accounts/{aid}/applications/{app_id}/decustomize_plan.json"), &[]).await;
        assert_eq!(status, 200);
        assert_eq!(back["application"]["plan_id"], plan_id);
        assert_eq!(count(app, &format!("SELECT COUNT(*) FROM application_plans WHERE id = {custom_plan}")).await, 0, "the custom plan is gone");
        // The plan history saw both moves: original → custom → original, the last one open.
        let history: Vec<(i64, Option<String>)> = sqlx::query_as(
            "SELECT plan_id, ends_on FROM contract_plans WHERE contract_type = 'application' AND contract_id = $1 ORDER BY id")
            .bind(app_id).fetch_all(&app.db.pool).await.unwrap();
        let plans: Vec<i64> = history.iter().map(|(p, _)| *p).collect();
        assert_eq!(plans, vec![plan_id, custom_plan, plan_id]);
        assert!(history[0].1.is_some() && history[1].1.is_some() && history[2].1.is_none(), "{history:?}");
    }

    async fn bulk_operations_are_all_or_nothing(app: &TestApp) {
        let (service, first) = app.seed("bulk-1").await;
        let sid = service["service"]["id"].as_i64().unwrap();
        let plan = first["application"]["plan_id"].to_string();
        let aid = first["application"]["account_id"].as_i64().unwrap();
        let (_, second) = app.post_form(&format!("/admin/api/accounts/{aid}/applications.json"), &[("plan_id", plan.as_str()), ("name", "Second")]).await;
        let (one, two) = (first["application"]["id"].to_string(), second["application"]["id"].to_string());

        let (status, done) = app.post_form("/admin/api/applications/bulk/suspend.json", &[("ids[]", one.as_str()), ("ids[]", two.as_str())]).await;
        assert_eq!(status, 200, "{done}");
        assert!(done["applications"].as_array().unwrap().iter().all(|a| a["application"]["state"] == "suspended"));
        // Resume one, then a bulk suspend of both fails on the other and changes nothing.
        assert_eq!(app.post_form("/admin/api/applications/bulk/resume.json", &[("ids[]", one.as_str())]).await.0, 200);
        let (status, body) = app.post_form("/admin/api/applications/bulk/suspend.json", &[("ids[]", one.as_str()), ("ids[]", two.as_str())]).await;
        assert_eq!(status, 422, "{body}");
        assert!(body["errors"]["state"][0].as_str().unwrap().contains(&two), "{body}");
        assert_eq!(count(app, &format!("SELECT COUNT(*) FROM applications WHERE id = {one} AND state = 'live'")).await, 1);

        let (_, other_plan) = app.post_form(&format!("/admin/api/services/{sid}/application_plans.json"), &[("name", "Gold")]).await;
        let gold = other_plan["application_plan"]["id"].to_string();
        let (status, moved) = app.post_form("/admin/api/applications/bulk/change_plan.json", &[("ids[]", one.as_str()), ("plan_id", gold.as_str())]).await;
        assert_eq!(status, 200, "{moved}");
        assert_eq!(moved["applications"][0]["application"]["plan_id"].to_string(), gold);
        assert_eq!(app.post_form("/admin/api/applications/bulk/explode.json", &[("ids[]", one.as_str())]).await.0, 404);
        assert_eq!(app.post_form("/admin/api/applications/bulk/suspend.json", &[("ids[]", "x")]).await.0, 422);
    }

    async fn plans_copy_with_limits_and_pricing(app: &TestApp) {
        let (service, application) = app.seed("copy").await;
        let sid = service["service"]["id"].as_i64().unwrap();
        let plan_id = application["application"]["plan_id"].as_i64().unwrap();
        let (_, metrics) = app.get_json(&format!("/admin/api/services/{sid}/metrics.json")).await;
        let hits = metrics["metrics"][0]["metric"]["id"].as_i64().unwrap();
        app.post_form(&format!("/admin/api/application_plans/{plan_id}/metrics/{hits}/pricing_rules.json"), &[("min", "1"), ("cost_per_unit", "0.5")]).await;
        app.post_form(&format!("/admin/api/application_plans/{plan_id}/metrics/{hits}/limits.json"), &[("period", "month"), ("value", "9")]).await;
        let (status, copy) = app.post_form(&format!("/admin/api/application_plans/{plan_id}/copy.json"), &[("name", "Basic 2")]).await;
        assert_eq!(status, 201, "{copy}");
        let copy_id = copy["application_plan"]["id"].as_i64().unwrap();
        assert_eq!(copy["application_plan"]["system_name"], "basic_2");
        let (_, rules) = app.get_json(&format!("/admin/api/application_plans/{copy_id}/metrics/{hits}/pricing_rules.json")).await;
        assert_eq!(rules["pricing_rules"][0]["pricing_rule"]["cost_per_unit"], "0.5");
        let (_, limits) = app.get_json(&format!("/admin/api/application_plans/{copy_id}/metrics/{hits}/limits.json")).await;
        assert_eq!(limits["limits"][0]["limit"]["value"], 9);
        let (status, body) = app.post_form(&format!("/admin/api/application_plans/{plan_id}/copy.json"), &[("name", "Basic 2")]).await;
        assert_eq!((status, &body["errors"]["system_name"][0]), (422, &json!("has already been taken")));
        assert_eq!(app.post_form("/admin/api/application_plans/999/copy.json", &[]).await.0, 404);
    }

    async fn accounts_have_billing_fields_messages_and_states(app: &TestApp) {
        let (_, account) = app.post_form("/admin/api/signup.json", &[("org_name", "Acme"), ("username", "a"), ("email", "a@acme.test")]).await;
        let a = &account["account"];
        let id = a["id"].as_i64().unwrap();
        assert_eq!(a["billing_type"], "postpaid");
        assert_eq!(a["monthly_billing_enabled"], true);
        assert_eq!(a["vat_rate"], json!(0.0));
        let (status, updated) = app.put_form(&format!("/admin/api/accounts/{id}.json"), &[("vat_rate", "23.5"), ("vat_code", "PL123"), ("billing_type", "prepaid"), ("monthly_charging_enabled", "false")]).await;
        assert_eq!(status, 200, "{updated}");
        assert_eq!(updated["account"]["vat_rate"], json!(23.5));
        assert_eq!(updated["account"]["billing_type"], "prepaid");
        assert_eq!(updated["account"]["monthly_charging_enabled"], false);
        for (field, value) in [("vat_rate", "101"), ("vat_rate", "1.23456"), ("billing_type", "credit"), ("monthly_billing_enabled", "maybe")] {
            let (status, body) = app.put_form(&format!("/admin/api/accounts/{id}.json"), &[(field, value)]).await;
            assert_eq!(status, 422, "{field}={value}");
            assert!(body["errors"][field].is_array(), "{body}");
        }

        let (status, body) = app.put_form(&format!("/admin/api/accounts/{id}/billing_address.json"), &[("name", "Acme"), ("city", "Kraków")]).await;
        assert_eq!(status, 422);
        assert!(body["errors"]["address1"].is_array(), "{body}");
        let (status, with_address) = app.put_form(&format!("/admin/api/accounts/{id}/billing_address.json"), &[("name", "Acme"), ("address1", "Rynek 1"), ("city", "Kraków"), ("country", "PL")]).await;
        assert_eq!(status, 200);
        assert_eq!(with_address["account"]["billing_address"]["city"], "Kraków");

        let (status, message) = app.post_form(&format!("/admin/api/accounts/{id}/messages.json"), &[("subject", "Hi"), ("body", "Welcome")]).await;
        assert_eq!(status, 201);
        assert_eq!(message["message"]["body"], "Welcome");
        assert_eq!(app.post_form(&format!("/admin/api/accounts/{id}/messages.json"), &[("subject", "no body")]).await.0, 422);

        let (status, body) = app.put_form(&format!("/admin/api/accounts/{id}/approve.json"), &[]).await;
        assert_eq!(status, 422, "an approved account cannot be approved again");
        assert!(body["errors"]["state"][0].as_str().unwrap().contains("approved"), "{body}");
        assert_eq!(app.put_form(&format!("/admin/api/accounts/{id}/suspend.json"), &[]).await.1["account"]["state"], "suspended");
        assert_eq!(app.put_form(&format!("/admin/api/accounts/{id}/resume.json"), &[]).await.1["account"]["state"], "approved");
        assert_eq!(app.put_form(&format!("/admin/api/accounts/{id}/explode.json"), &[]).await.0, 404);
    }

    async fn in_use_rows_cannot_be_deleted_and_signup_uses_defaults(app: &TestApp) {
        let (service, application) = app.seed("in-use").await;
        let sid = service["service"]["id"].as_i64().unwrap();
        let plan_id = application["application"]["plan_id"].as_i64().unwrap();
        let r = app.admin(Method::DELETE, &format!("/admin/api/services/{sid}/application_plans/{plan_id}.json")).send().await.unwrap();
        assert_eq!(r.status(), 422, "a plan with applications stays");
        let body: Value = r.json().await.unwrap();
        assert!(body["errors"]["base"].is_array(), "{body}");
        assert_eq!(count(app, &format!("SELECT COUNT(*) FROM application_plans WHERE id = {plan_id}")).await, 1);

        // With a default application plan, signup gives the new account an application on it.
        let (status, _) = app.put_form(&format!("/admin/api/services/{sid}/application_plans/{plan_id}/default.json"), &[]).await;
        assert_eq!(status, 200);
        let (_, plans) = app.get_json(&format!("/admin/api/services/{sid}/application_plans.json")).await;
        assert_eq!(plans["plans"][0]["application_plan"]["default"], true);
        let (_, account) = app.post_form("/admin/api/signup.json", &[("org_name", "Newco"), ("username", "n")]).await;
        let aid = account["account"]["id"].as_i64().unwrap();
        let (_, apps) = app.get_json(&format!("/admin/api/accounts/{aid}/applications.json")).await;
        assert_eq!(apps["applications"][0]["application"]["name"], "Newco's App");
        assert_eq!(apps["applications"][0]["application"]["plan_id"], plan_id);
        let (_, subs) = app.get_json(&format!("/admin/api/accounts/{aid}/service_subscriptions.json")).await;
        assert_eq!(subs["service_subscriptions"][0]["service_subscription"]["service_id"], sid);
    }

    async fn gateway_configs_include_backends_under_their_path(app: &TestApp) {
        let (service, _) = app.seed("with-backend").await;
        let sid = service["service"]["id"].as_i64().unwrap();
        let (_, backend) = app.post_form("/admin/api/backend_apis.json", &[("name", "Items")]).await;
        let bid = backend["backend_api"]["id"].as_i64().unwrap();
        let (_, metric) = app.post_form(&format!("/admin/api/backend_apis/{bid}/metrics.json"), &[("friendly_name", "Reads"), ("unit", "read")]).await;
        let mid = metric["metric"]["id"].to_string();
        let (status, rule) = app.post_form(&format!("/admin/api/backend_apis/{bid}/mapping_rules.json"), &[("http_method", "GET"), ("pattern", "/items"), ("metric_id", mid.as_str()), ("delta", "1")]).await;
        assert_eq!(status, 201, "{rule}");
        let (status, usage) = app.post_form(&format!("/admin/api/services/{sid}/backend_usages.json"), &[("backend_api_id", &bid.to_string()), ("path", "/v2")]).await;
        assert_eq!(status, 201, "{usage}");
        assert_eq!(usage["backend_usage"]["backend_id"], bid);
        let (_, deployed) = app.post_form(&format!("/admin/api/services/{sid}/proxy/deploy.json"), &[]).await;
        let content = &deployed["proxy_config"]["content"];
        let patterns: Vec<&str> = content["proxy"]["proxy_rules"].as_array().unwrap().iter().map(|r| r["pattern"].as_str().unwrap()).collect();
        assert_eq!(patterns, ["/", "/v2/items"]);
        let metrics: Vec<&str> = content["metrics"].as_array().unwrap().iter().map(|m| m["system_name"].as_str().unwrap()).collect();
        assert!(metrics.contains(&format!("reads.{bid}").as_str()), "{metrics:?}");
        // A backend used by a product cannot be used twice by it.
        let (status, _) = app.post_form(&format!("/admin/api/services/{sid}/backend_usages.json"), &[("backend_api_id", &bid.to_string()), ("path", "/v3")]).await;
        assert_eq!(status, 422);
        let (status, body) = app.post_form(&format!("/admin/api/services/{sid}/backend_usages.json"), &[("backend_api_id", "999"), ("path", "/v3")]).await;
        assert_eq!(status, 422);
        assert!(body["errors"]["backend_api_id"].is_array(), "{body}");
    }
}

on_both_databases! {
    /// Catalog writes read before they write (the URL's parents, the current row, the next
    /// position): concurrent writers queue for the database and all get their answer — never a
    /// 500 for losing a lock upgrade (SQLite's deferred transactions did).
    async fn concurrent_catalog_writers_get_answers_not_500s(app: &TestApp) {
        let (service, application) = app.seed("busy").await;
        let sid = service["service"]["id"].as_i64().unwrap();
        let plan = application["application"]["plan_id"].as_i64().unwrap();
        let (_, metrics) = app.get_json(&format!("/admin/api/services/{sid}/metrics.json")).await;
        let hits = metrics["metrics"][0]["metric"]["id"].to_string();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..48 {
            let (client, base) = (app.client.clone(), app.url(""));
            let hits = hits.clone();
            tasks.spawn(async move {
                let request = match i % 4 {
                    0 => client
                        .post(format!("{base}/admin/api/services/{sid}/metrics.json"))
                        .form(&[("friendly_name", format!("m{i}")), ("unit", "u".into())]),
                    1 => client.put(format!("{base}/admin/api/services/{sid}/application_plans/{plan}/default.json")),
                    2 => client
                        .post(format!("{base}/admin/api/services/{sid}/proxy/mapping_rules.json"))
                        .form(&[("http_method", "GET"), ("pattern", &format!("/r{i}")), ("metric_id", &hits), ("delta", "1")]),
                    _ => client
                        .put(format!("{base}/admin/api/services/{sid}/application_plans/{plan}.json"))
                        .form(&[("name", format!("Basic {i}"))]),
                };
                let r = request.bearer_auth(tollgate::testing::ADMIN_TOKEN).send().await.unwrap();
                (i, r.status().as_u16(), r.text().await.unwrap())
            });
        }
        while let Some(done) = tasks.join_next().await {
            let (i, status, body) = done.unwrap();
            assert!((200..300).contains(&status), "writer {i}: {status} {body}");
        }
        let (_, rules) = app.get_json(&format!("/admin/api/services/{sid}/proxy/mapping_rules.json")).await;
        assert_eq!(rules["mapping_rules"].as_array().unwrap().len(), 13, "the default rule and 12 new ones");
    }
}
