//! The control plane's HTTP API, end to end over HTTP, on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failure report

use reqwest::Method;
use serde_json::{json, Value};
use tollgate::on_both_databases;
use tollgate::testing::{self as common, Backend, TestApp, ADMIN_TOKEN};

async fn count(app: &TestApp, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
}

on_both_databases! {
    async fn health_reports_schema_and_binary_versions(app: &TestApp) {
        let r = app.client.get(app.url("/health")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["status"], "ok");
        assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
        assert!(body["schema_version"].as_i64().unwrap() >= 1);
        assert_eq!(body["schema_version"], body["expected_schema_version"]);
        assert_eq!(body["counters"], "embedded");
    }

    async fn metrics_are_prometheus_text(app: &TestApp) {
        app.client.get(app.url("/health")).send().await.unwrap();
        let r = app.client.get(app.url("/metrics")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
        let text = r.text().await.unwrap();
        assert!(text.contains("# TYPE tollgate_http_requests_total counter"), "{text}");
        assert!(text.contains(r#"route="/health""#), "{text}");
    }

    async fn admin_api_needs_a_token_with_the_right_permission(app: &TestApp) {
        let no_token = app.client.get(app.url("/admin/api/services.json")).send().await.unwrap();
        assert_eq!(no_token.status(), 403);
        assert_eq!(no_token.json::<Value>().await.unwrap(), json!({"error": "Access denied"}));
        let wrong = app.client.get(app.url("/admin/api/services.json?access_token=nope")).send().await.unwrap();
        assert_eq!(wrong.status(), 403);
        let by_param = app.client.get(app.url(&format!("/admin/api/services.json?access_token={ADMIN_TOKEN}"))).send().await.unwrap();
        assert_eq!(by_param.status(), 200);

        // A read-only token reads but cannot write; its value is stored only as a hash.
        sqlx::query("INSERT INTO access_tokens (name, value_hash, scopes, permission, created_at) VALUES ('ro', $1, 'account_management', 'ro', 'now')")
            .bind(tollgate::store::auth::hash_token("ro-token"))
            .execute(&app.db.pool).await.unwrap();
        let read = app.client.get(app.url("/admin/api/services.json")).bearer_auth("ro-token").send().await.unwrap();
        assert_eq!(read.status(), 200);
        let write = app.client.post(app.url("/admin/api/services.json")).bearer_auth("ro-token").form(&[("name", "x")]).send().await.unwrap();
        assert_eq!(write.status(), 403);
        let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM access_tokens WHERE value_hash = 'ro-token' OR value_hash = $1")
            .bind(ADMIN_TOKEN).fetch_one(&app.db.pool).await.unwrap();
        assert_eq!(stored, 0);
    }

    async fn services_are_created_with_hits_a_default_rule_and_a_token(app: &TestApp) {
        let (status, body) = app.post_form("/admin/api/services.json", &[("name", "My API"), ("description", "d")]).await;
        assert_eq!(status, 201, "{body}");
        let service = &body["service"];
        assert_eq!(service["system_name"], "my_api");
        assert_eq!(service["backend_version"], "1");
        assert!(service.get("service_token").is_none(), "the token is not shown in the service");
        let id = service["id"].as_i64().unwrap();
        assert_eq!(app.service_token(id).await.len(), 64);
        assert_eq!(count(app, "metrics").await, 1);
        assert_eq!(count(app, "mapping_rules").await, 1);

        let (status, shown) = app.get_json(&format!("/admin/api/services/{id}.json")).await;
        assert_eq!(status, 200);
        assert_eq!(shown["service"]["name"], "My API");
        let (status, list) = app.get_json("/admin/api/services.json").await;
        assert_eq!(status, 200);
        assert_eq!(list["services"][0]["service"]["id"], id);
        let (status, _) = app.get_json("/admin/api/services/999.json").await;
        assert_eq!(status, 404);
    }

    async fn bad_input_is_422_naming_the_field_and_writes_nothing(app: &TestApp) {
        let (status, body) = app.post_form("/admin/api/services.json", &[("description", "no name")]).await;
        assert_eq!((status, &body), (422, &json!({"errors": {"name": ["can't be blank"]}})));
        let (status, body) = app.post_form("/admin/api/services.json", &[("name", "x"), ("system_name", "has space")]).await;
        assert_eq!(status, 422);
        assert!(body["errors"]["system_name"].is_array(), "{body}");
        let (status, body) = app.post_form("/admin/api/services.json", &[("name", "x"), ("backend_version", "9")]).await;
        assert_eq!(status, 422);
        assert!(body["errors"]["backend_version"].is_array(), "{body}");

        assert_eq!(app.post_form("/admin/api/services.json", &[("name", "Dup")]).await.0, 201);
        let (status, body) = app.post_form("/admin/api/services.json", &[("name", "Dup")]).await;
        assert_eq!((status, &body), (422, &json!({"errors": {"system_name": ["has already been taken"]}})));
        // The failed create left no metric, rule or proxy behind.
        assert_eq!(count(app, "services").await, 1);
        assert_eq!(count(app, "metrics").await, 1);
        assert_eq!(count(app, "proxies").await, 1);

        let r = app.admin(Method::POST, "/admin/api/services.json").header("content-type", "application/json").body("{broken").send().await.unwrap();
        assert_eq!(r.status(), 400);
        let (status, body) = app.post_form("/admin/api/services/1/application_plans.json", &[("name", "P"), ("setup_fee", "1.00001")]).await;
        assert_eq!(status, 422);
        assert!(body["errors"]["setup_fee"].is_array(), "{body}");
        let (status, body) = app.get_json("/admin/api/services.json?per_page=0").await;
        assert_eq!(status, 422);
        assert!(body["errors"]["per_page"].is_array(), "{body}");
    }

    async fn parameters_come_as_query_form_or_json(app: &TestApp) {
        let r = app.admin(Method::POST, "/admin/api/services.json?name=From+Query").send().await.unwrap();
        assert_eq!(r.status(), 201);
        let r = app.admin(Method::POST, "/admin/api/services.json").json(&json!({"name": "From JSON", "system_name": "json"})).send().await.unwrap();
        assert_eq!(r.status(), 201);
        let r = app.client.post(app.url("/admin/api/services.json")).form(&[("name", "From Form"), ("access_token", ADMIN_TOKEN)]).send().await.unwrap();
        assert_eq!(r.status(), 201);
        let (_, list) = app.get_json("/admin/api/services.json").await;
        let names: Vec<&str> = list["services"].as_array().unwrap().iter().map(|s| s["service"]["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["From Query", "From JSON", "From Form"]);
    }

    async fn gateways_get_promoted_configs_and_authrep_checks_keys(app: &TestApp) {
        let (service, application) = app.seed("key-1").await;
        let sid = service["service"]["id"].as_i64().unwrap();
        assert_eq!(application["application"]["state"], "live");
        let token = app.service_token(sid).await;

        let (status, configs) = app.get_json("/admin/api/account/proxy_configs/production.json").await;
        assert_eq!(status, 200);
        let content = &configs["proxy_configs"][0]["proxy_config"]["content"];
        assert_eq!(content["backend_authentication_type"], "service_token");
        assert_eq!(content["backend_authentication_value"], token.as_str());
        assert_eq!(content["proxy"]["proxy_rules"][0]["pattern"], "/");
        assert_eq!(content["proxy"]["proxy_rules"][0]["metric_system_name"], "hits");
        assert_eq!(content["metrics"][0]["system_name"], "hits");
        let (status, latest) = app.get_json(&format!("/admin/api/services/{sid}/proxy/configs/production/latest.json")).await;
        assert_eq!(status, 200);
        assert_eq!(latest["proxy_config"]["version"], 1);
        let (status, _) = app.get_json("/admin/api/account/proxy_configs/qa.json").await;
        assert_eq!(status, 404);

        let authrep = |query: String| {
            let url = app.url(&format!("/transactions/authrep.json?{query}"));
            let client = app.client.clone();
            async move {
                let r = client.get(url).send().await.unwrap();
                (r.status().as_u16(), r.json::<Value>().await.unwrap())
            }
        };
        let ok = authrep(format!("service_id={sid}&service_token={token}&user_key=key-1&usage%5Bhits%5D=1")).await;
        assert_eq!(ok, (200, json!({"authorized": true, "plan": "Basic", "usage_reports": []})));
        let (status, body) = authrep(format!("service_id={sid}&service_token={token}&user_key=nope")).await;
        assert_eq!((status, body["error"]["code"].as_str()), (403, Some("user_key_invalid")));
        let (status, body) = authrep(format!("service_id={sid}&service_token=bad&user_key=key-1")).await;
        assert_eq!((status, body["error"]["code"].as_str()), (403, Some("service_token_invalid")));
        let (status, body) = authrep(format!("service_id={sid}&service_token={token}&user_key=key-1&usage%5Bnope%5D=1")).await;
        assert_eq!((status, body["error"]["code"].as_str()), (404, Some("metric_invalid")));
        let (status, body) = authrep(format!("service_id={sid}&service_token={token}&user_key=key-1&usage%5Bhits%5D=x")).await;
        assert_eq!((status, body["error"]["code"].as_str()), (403, Some("usage_value_invalid")));
        let (status, body) = authrep(format!("service_id=999&service_token={token}&user_key=key-1")).await;
        assert_eq!((status, body["error"]["code"].as_str()), (403, Some("service_token_invalid")));
    }

    async fn proxy_settings_update_and_validate(app: &TestApp) {
        let (_, service) = app.post_form("/admin/api/services.json", &[("name", "P")]).await;
        let sid = service["service"]["id"].as_i64().unwrap();
        let r = app.admin(Method::PATCH, &format!("/admin/api/services/{sid}/proxy.json"))
            .form(&[("credentials_location", "headers"), ("error_status_auth_failed", "418")]).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let (_, proxy) = app.get_json(&format!("/admin/api/services/{sid}/proxy.json")).await;
        assert_eq!(proxy["proxy"]["credentials_location"], "headers");
        assert_eq!(proxy["proxy"]["error_status_auth_failed"], 418);
        let r = app.admin(Method::PATCH, &format!("/admin/api/services/{sid}/proxy.json"))
            .form(&[("credentials_location", "cookie")]).send().await.unwrap();
        assert_eq!(r.status(), 422);
        let body: Value = r.json().await.unwrap();
        assert!(body["errors"]["credentials_location"].is_array(), "{body}");
    }

    async fn pricing_tiers_may_not_overlap_and_money_keeps_its_digits(app: &TestApp) {
        let (_, service) = app.post_form("/admin/api/services.json", &[("name", "Priced")]).await;
        let sid = service["service"]["id"].as_i64().unwrap();
        let (_, plan) = app.post_form(&format!("/admin/api/services/{sid}/application_plans.json"), &[("name", "P"), ("cost_per_month", "12.5"), ("setup_fee", "0.0001")]).await;
        assert_eq!(plan["application_plan"]["cost_per_month"], json!(12.5), "fees are numbers");
        assert_eq!(plan["application_plan"]["setup_fee"], json!(0.0001));
        let pid = plan["application_plan"]["id"].as_i64().unwrap();
        let (_, metrics) = app.get_json(&format!("/admin/api/services/{sid}/metrics.json")).await;
        let hits = metrics["metrics"][0]["metric"]["id"].as_i64().unwrap();
        let rules = format!("/admin/api/application_plans/{pid}/metrics/{hits}/pricing_rules.json");
        let (status, first) = app.post_form(&rules, &[("min", "1"), ("max", "100"), ("cost_per_unit", "0.04")]).await;
        assert_eq!(status, 201, "{first}");
        assert_eq!(first["pricing_rule"]["cost_per_unit"], "0.04", "unit costs are decimal strings");
        assert_eq!(app.post_form(&rules, &[("min", "101"), ("cost_per_unit", "0.1")]).await.0, 201);
        let (status, body) = app.post_form(&rules, &[("min", "50"), ("max", "150"), ("cost_per_unit", "1")]).await;
        assert_eq!(status, 422);
        assert!(body["errors"]["min"][0].as_str().unwrap().contains("overlaps"), "{body}");
        let (status, body) = app.post_form(&rules, &[("min", "500"), ("max", "400"), ("cost_per_unit", "1")]).await;
        assert_eq!(status, 422, "{body}");
        assert!(body["errors"]["max"].is_array(), "{body}");
        let (status, body) = app.post_form(&rules, &[("min", "1000"), ("cost_per_unit", "0.00001")]).await;
        assert_eq!(status, 422, "{body}");
        assert!(body["errors"]["cost_per_unit"].is_array(), "{body}");
        assert_eq!(count(app, "pricing_rules").await, 2);

        let limits = format!("/admin/api/application_plans/{pid}/metrics/{hits}/limits.json");
        assert_eq!(app.post_form(&limits, &[("period", "day"), ("value", "10")]).await.0, 201);
        let (status, body) = app.post_form(&limits, &[("period", "day"), ("value", "5")]).await;
        assert_eq!((status, &body), (422, &json!({"errors": {"period": ["has already been taken"]}})));
        let (status, body) = app.post_form(&limits, &[("period", "fortnight"), ("value", "-1")]).await;
        assert_eq!(status, 422);
        assert!(body["errors"]["period"].is_array() && body["errors"]["value"].is_array(), "{body}");
    }

    async fn children_must_belong_to_their_parents(app: &TestApp) {
        let (_, a) = app.post_form("/admin/api/services.json", &[("name", "A")]).await;
        let (_, b) = app.post_form("/admin/api/services.json", &[("name", "B")]).await;
        let (a, b) = (a["service"]["id"].as_i64().unwrap(), b["service"]["id"].as_i64().unwrap());
        let (_, metrics) = app.get_json(&format!("/admin/api/services/{a}/metrics.json")).await;
        let hits_a = metrics["metrics"][0]["metric"]["id"].as_i64().unwrap();
        // A's metric is not B's: reading it through B is 404, and B's rules cannot count it.
        assert_eq!(app.get_json(&format!("/admin/api/services/{b}/metrics/{hits_a}.json")).await.0, 404);
        let (status, body) = app.post_form(&format!("/admin/api/services/{b}/proxy/mapping_rules.json"), &[("http_method", "GET"), ("pattern", "/x"), ("metric_id", &hits_a.to_string()), ("delta", "1")]).await;
        assert_eq!(status, 422);
        assert!(body["errors"]["metric_id"].is_array(), "{body}");
        let (status, body) = app.post_form(&format!("/admin/api/services/{a}/proxy/mapping_rules.json"), &[("http_method", "GET"), ("pattern", "/x/{id"), ("metric_id", &hits_a.to_string()), ("delta", "1")]).await;
        assert_eq!(status, 422);
        assert!(body["errors"]["pattern"].is_array(), "{body}");
        let (status, rule) = app.post_form(&format!("/admin/api/services/{a}/proxy/mapping_rules.json"), &[("http_method", "GET"), ("pattern", "/x/{id}$"), ("metric_id", &hits_a.to_string()), ("delta", "2")]).await;
        assert_eq!(status, 201, "{rule}");
        assert_eq!(rule["mapping_rule"]["position"], 2, "appended after the default rule");

        // Methods hang only under hits.
        let (_, custom) = app
            .post_form(&format!("/admin/api/services/{a}/metrics.json"), &[("friendly_name", "Bytes"), ("unit", "B")])
            .await;
        let custom = custom["metric"]["id"].as_i64().unwrap();
        let (status, _) = app
            .post_form(&format!("/admin/api/services/{a}/metrics/{custom}/methods.json"), &[("friendly_name", "m")])
            .await;
        assert_eq!(status, 404);
        let (status, method) = app
            .post_form(&format!("/admin/api/services/{a}/metrics/{hits_a}/methods.json"), &[("friendly_name", "Get item")])
            .await;
        assert_eq!(status, 201, "{method}");
        assert_eq!(method["method"]["system_name"], "get_item");

                // Backends' metrics carry the backend's id.
        let (_, backend) = app.post_form("/admin/api/backend_apis.json", &[("name", "Back")]).await;
        let bid = backend["backend_api"]["id"].as_i64().unwrap();
        let (_, bm) = app.get_json(&format!("/admin/api/backend_apis/{bid}/metrics.json")).await;
        assert_eq!(bm["metrics"][0]["metric"]["system_name"], format!("hits.{bid}"));

        // Deleting a service deletes what hangs off it.
        let r = app.admin(Method::DELETE, &format!("/admin/api/services/{a}.json")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM mapping_rules WHERE service_id = $1").bind(a).fetch_one(&app.db.pool).await.unwrap();
        assert_eq!(left, 0);
        assert_eq!(app.get_json(&format!("/admin/api/services/{a}.json")).await.0, 404);
    }
}

#[tokio::test]
async fn redis_counters_are_used_when_configured() {
    let url = common::redis_url();
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.redis_url = Some(url)).await;
    let health: Value = app
        .client
        .get(app.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["counters"], "redis");
    app.stop().await;
}

#[tokio::test]
async fn unreachable_redis_fails_start_with_a_clear_error() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let database = common::fresh_database(Backend::Sqlite).await;
    let config = tollgate::config::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: database.url.clone(),
        redis_url: Some(format!("redis://127.0.0.1:{port}")),
        ..Default::default()
    };
    let err = tollgate::startup::Application::build(&config)
        .await
        .err()
        .expect("start fails");
    assert!(err.to_string().starts_with("redis "), "{err}");
}
