//! The Analytics API (`/stats/…`) against porta's shapes, messages and bucketing, on both
//! databases: usage laid down as the usage flush writes it, and usage counted by authrep and
//! flushed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failure report

use chrono::DateTime;
use reqwest::Method;
use serde_json::Value;
use tollgate::on_both_databases;
use tollgate::testing::TestApp;
use tollgate_store::counters::{Counter, SeriesKey, SeriesValue};
use tollgate_store::usage;

fn at(s: &str) -> i64 {
    DateTime::parse_from_rfc3339(s).unwrap().timestamp()
}

/// `value` counted in the quarter starting at `when` (an absolute value, as the flush copies).
fn counted(app: i64, counter: Counter, when: &str, value: i64) -> SeriesValue {
    SeriesValue {
        key: SeriesKey {
            app,
            counter: counter.raw(),
            start: at(when),
        },
        value,
        observed_us: 1,
    }
}

struct Seeded {
    sid: i64,
    app_id: i64,
    hits: i64,
    account: i64,
    plan: i64,
}

async fn seeded(app: &TestApp) -> Seeded {
    let (service, application) = app.seed("stats-key").await;
    let sid = service["service"]["id"].as_i64().unwrap();
    let (_, metrics) = app.get_json(&format!("/admin/api/services/{sid}/metrics.json")).await;
    Seeded {
        sid,
        app_id: application["application"]["id"].as_i64().unwrap(),
        hits: metrics["metrics"][0]["metric"]["id"].as_i64().unwrap(),
        account: application["application"]["account_id"].as_i64().unwrap(),
        plan: application["application"]["plan_id"].as_i64().unwrap(),
    }
}

fn hits(s: &Seeded) -> Counter {
    Counter::Metric(tollgate_domain::ids::MetricId::new(s.hits))
}

/// Usage on 2024-05-10 and 11 (UTC): 3 at 18:15, 5 at 18:45, 7 at 10:00 the next day.
async fn history(app: &TestApp, s: &Seeded) {
    usage::write(
        &app.db,
        &[
            counted(s.app_id, hits(s), "2024-05-10T18:15:00Z", 3),
            counted(s.app_id, hits(s), "2024-05-10T18:45:00Z", 5),
            counted(s.app_id, hits(s), "2024-05-11T10:00:00Z", 7),
        ],
    )
    .await
    .unwrap();
}

async fn raw(app: &TestApp, path: &str) -> (u16, String, String) {
    let r = app.admin(Method::GET, path).send().await.unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, r.text().await.unwrap())
}

/// Usage counted by authrep is in the stats at once: a stats read flushes what moved first
/// (the usage beat of this test app runs every 10 s, far later).
async fn authrep_then_stats(app: &TestApp) {
    let (service, application) = app.seed("fresh-key").await;
    let sid = service["service"]["id"].as_i64().unwrap();
    let app_id = application["application"]["id"].as_i64().unwrap();
    let token = app.service_token(sid).await;
    let (_, metrics) = app.get_json(&format!("/admin/api/services/{sid}/metrics.json")).await;
    let hits = metrics["metrics"][0]["metric"]["id"].as_i64().unwrap();
    let (status, method) = app
        .post_form(
            &format!("/admin/api/services/{sid}/metrics/{hits}/methods.json"),
            &[("friendly_name", "Search")],
        )
        .await;
    assert_eq!(status, 201, "{method}");
    app.cache.invalidate();
    for usage in ["usage%5Bhits%5D=2"; 5].into_iter().chain(["usage%5Bsearch%5D=3"]) {
        let r = app
            .client
            .get(app.url(&format!("/transactions/authrep.json?service_id={sid}&service_token={token}&user_key=fresh-key&{usage}&log%5Bcode%5D=200")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let (_, body) = app
        .get_json(&format!("/stats/services/{sid}/usage.json?metric_name=hits&period=day"))
        .await;
    assert_eq!(body["total"], 13, "a method's parent counts it: {body}");
    let (_, body) = app
        .get_json(&format!(
            "/stats/services/{sid}/usage.json?metric_name=search&period=day"
        ))
        .await;
    assert_eq!(
        (body["total"].as_i64(), body["metric"]["unit"].as_str()),
        (Some(3), Some("hit")),
        "{body}"
    );
    let (_, body) = app
        .get_json(&format!(
            "/stats/applications/{app_id}/usage_response_code.json?response_code=2XX&period=day"
        ))
        .await;
    assert_eq!(body["total"], 6, "{body}");
    // A flush repeated changes nothing.
    usage::flush(&app.db, &app.counters).await.unwrap();
    let (_, body) = app
        .get_json(&format!(
            "/stats/services/{sid}/usage.json?metric_name=hits&period=eternity"
        ))
        .await;
    assert_eq!(body["total"], 13);
}

#[tokio::test]
async fn usage_counted_on_redis_is_in_the_stats_at_once() {
    let app = TestApp::spawn_on_redis().await;
    authrep_then_stats(&app).await;
    app.stop().await;
}

on_both_databases! {
    async fn service_usage_by_hour_day_and_zone(app: &TestApp) {
        let s = seeded(app).await;
        history(app, &s).await;
        let base = format!("/stats/services/{}/usage.json?metric_name=hits", s.sid);
        let (status, body) = app.get_json(&format!("{base}&period=day&since=2024-05-10")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["values"].as_array().unwrap().len(), 24);
        assert_eq!((body["total"].as_i64(), body["values"][18].as_i64()), (Some(8), Some(8)));
        assert_eq!(body["period"]["timezone"], "Etc/UTC");
        assert_eq!(body["period"]["since"], "2024-05-10T00:00:00Z");
        assert_eq!(body["period"]["until"], "2024-05-10T23:59:59Z");
        assert_eq!(body["period"]["granularity"], "hour");
        assert_eq!(body["metric"]["system_name"], "hits");
        assert!(body.get("change").is_none(), "no change unless asked");
        let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["metric", "period", "total", "values"], "porta's key order");

        // Asia/Kolkata's day starts at 18:30 UTC: 3 falls on the 10th, 5 on the 11th, exactly.
        let (_, kolkata) = app.get_json(&format!("{base}&period=day&since=2024-05-10&timezone=Asia/Kolkata")).await;
        assert_eq!((kolkata["total"].as_i64(), kolkata["values"][23].as_i64()), (Some(3), Some(3)));
        assert_eq!(kolkata["period"]["since"], "2024-05-10T00:00:00+05:30");
        let (_, next) = app.get_json(&format!("{base}&period=day&since=2024-05-11&timezone=Asia/Kolkata")).await;
        assert_eq!((next["total"].as_i64(), next["values"][0].as_i64()), (Some(12), Some(5)));

        // A month by day, with the change from the month before.
        let (_, month) = app
            .get_json(&format!("{base}&period=month&since=2024-05-01&skip_change=false"))
            .await;
        assert_eq!(month["values"].as_array().unwrap().len(), 31);
        assert_eq!((month["values"][9].as_i64(), month["values"][10].as_i64()), (Some(8), Some(7)));
        assert_eq!((month["previous_total"].as_i64(), month["change"].as_f64()), (Some(0), Some(100.0)));
        // A week in six-hour buckets; since/until by day; eternity.
        let (_, week) = app.get_json(&format!("{base}&period=week&since=2024-05-10")).await;
        assert_eq!((week["values"].as_array().unwrap().len(), week["period"]["granularity"].as_i64()), (28, Some(21600)));
        assert_eq!((week["values"][3].as_i64(), week["values"][5].as_i64()), (Some(8), Some(7)));
        let (_, range) = app
            .get_json(&format!("{base}&granularity=day&since=2024-05-09&until=2024-05-12"))
            .await;
        assert_eq!(range["values"], serde_json::json!([0, 8, 7, 0]));
        assert_eq!(range["period"]["name"], Value::Null);
        let (_, eternity) = app.get_json(&format!("{base}&period=eternity")).await;
        assert_eq!((eternity["values"].clone(), eternity["total"].as_i64()), (serde_json::json!([15]), Some(15)));

        // The provider's zone is the default.
        let (status, _) = app.put_form("/admin/api/provider.json", &[("timezone", "Asia/Kolkata")]).await;
        assert_eq!(status, 200);
        let (_, default_zone) = app.get_json(&format!("{base}&period=day&since=2024-05-10")).await;
        assert_eq!((default_zone["total"].as_i64(), default_zone["period"]["timezone"].as_str()), (Some(3), Some("Asia/Kolkata")));
        let (status, bad) = app.put_form("/admin/api/provider.json", &[("timezone", "Mars/Olympus")]).await;
        assert_eq!(status, 422, "{bad}");
        assert_eq!(bad["errors"]["timezone"][0], "is not a known IANA time zone name");
    }

    async fn application_usage_xml_and_csv(app: &TestApp) {
        let s = seeded(app).await;
        history(app, &s).await;
        let (status, body) = app
            .get_json(&format!("/stats/applications/{}/usage.json?metric_name=hits&period=day&since=2024-05-10", s.app_id))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["total"], 8);
        let a = &body["application"];
        assert_eq!((a["id"].as_i64(), a["plan"]["id"].as_i64(), a["account"]["id"].as_i64()), (Some(s.app_id), Some(s.plan), Some(s.account)));
        assert_eq!((a["state"].as_str(), a["service"]["id"].as_i64()), (Some("live"), Some(s.sid)));

        let (status, ct, xml) = raw(app, &format!("/stats/applications/{}/usage.xml?metric_name=hits&period=day&since=2024-05-10&skip_change=false", s.app_id)).await;
        assert_eq!((status, ct.as_str()), (200, "application/xml"));
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?><usage><metric><id>"), "{xml}");
        assert!(xml.contains("<period><since>2024-05-10 00:00:00 UTC</since><until>2024-05-10 23:59:59 UTC</until><name>day</name><granularity>hour</granularity></period>"), "{xml}");
        assert!(xml.contains("<data><total>8</total><values length=\"24\">0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,8,0,0,0,0,0</values></data>"), "{xml}");
        assert!(xml.contains("<account><name>Acme</name>"), "name before id: {xml}");
        assert!(!xml.contains("change"), "never a change in XML");

        let (status, ct, csv) = raw(app, &format!("/stats/services/{}/usage.csv?metric_name=hits&period=day&since=2024-05-10", s.sid)).await;
        assert_eq!(status, 200);
        assert!(ct.starts_with("text/csv"));
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "Metric System Name,Metric Name,Date,Value");
        assert_eq!(lines.len(), 25);
        assert_eq!(lines[19], "hits,Hits,2024-05-10 18:00:00 UTC,8");
    }

    async fn porta_errors(app: &TestApp) {
        let s = seeded(app).await;
        let usage = format!("/stats/services/{}/usage", s.sid);
        let (status, ct, text) = raw(app, &format!("{usage}.json?period=day")).await;
        assert_eq!((status, text.as_str()), (400, "Required parameter missing: metric_name"));
        assert!(ct.starts_with("text/plain"));
        let (status, _, text) = raw(app, &format!("{usage}.xml?metric_name=hits")).await;
        assert_eq!((status, text.as_str()), (400, "Required parameter missing: granularity"), "plain text even for .xml");
        let (status, body) = app.get_json(&format!("{usage}.json?metric_name=xxxx&period=day")).await;
        assert_eq!((status, body), (400, serde_json::json!({"error": "metric xxxx not found"})));
        let (status, body) = app.get_json(&format!("{usage}.json?metric_name=hits&period=XSScript")).await;
        assert_eq!(status, 400);
        assert_eq!(body["error"], r#"Period must be one of ["eternity", "year", "month", "week", "day"] not "XSScript""#);
        let (status, body) = app.get_json(&format!("{usage}.json?metric_name=hits&granularity=hour&since=2024-01-01&until=2024-06-01")).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("Time range for the granularity must be less than 90 days")));
        let (status, body) = app.get_json(&format!("{usage}.json?metric_name=hits&period=day&granularity=week")).await;
        assert_eq!(status, 400, "porta answers 500 here: {body}");
        let (status, body) = app.get_json(&format!("{usage}.json?metric_name=hits&period=day&since=someday")).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("Date parameters should have valid date/time format.")));
        let (status, _, xml) = raw(app, &format!("{usage}.xml?metric_name=xxxx&period=day")).await;
        assert_eq!((status, xml.as_str()), (400, "<?xml version=\"1.0\" encoding=\"UTF-8\"?><error>metric xxxx not found</error>"));
        let (status, body) = app.get_json("/stats/services/999999/usage.json?metric_name=hits&period=day").await;
        assert_eq!((status, body), (404, serde_json::json!({"error": "Service not found"})));
        let (status, body) = app.get_json("/stats/applications/999999/usage.json?metric_name=hits&period=day").await;
        assert_eq!((status, body), (404, serde_json::json!({"error": "Application not found"})));
        let (status, _) = app.get_json("/stats/backend_apis/999999/usage.json?metric_name=hits&period=day").await;
        assert_eq!(status, 404);
        let (status, _, text) = raw(app, &format!("/stats/services/{}/top_applications.json?metric_name=hits&period=month", s.sid)).await;
        assert_eq!((status, text.as_str()), (400, "Required parameter missing: since"));
    }

    async fn who_may_read_stats(app: &TestApp) {
        let s = seeded(app).await;
        let path = format!("/stats/services/{}/usage.json?metric_name=hits&period=day", s.sid);
        let r = app.client.get(app.url(&path)).send().await.unwrap();
        assert_eq!(r.status(), 403);
        assert_eq!(r.json::<Value>().await.unwrap(), serde_json::json!({"error": "Access denied"}));
        let r = app.client.get(app.url(&path.replace(".json", ".xml"))).send().await.unwrap();
        assert_eq!(r.status(), 403);
        assert_eq!(r.text().await.unwrap(), "<?xml version=\"1.0\" encoding=\"UTF-8\"?><error>Access denied</error>");

        // The provider key: shown to admins, accepted as a parameter or as HTTP Basic, on the
        // stats API and the admin API.
        let (_, provider) = app.get_json("/admin/api/provider.json").await;
        let key = provider["account"]["provider_key"].as_str().unwrap().to_string();
        assert!(key.len() >= 16);
        let r = app.client.get(app.url(&format!("{path}&provider_key={key}"))).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let r = app.client.get(app.url(&path)).basic_auth("", Some(&key)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let r = app.client.get(app.url(&format!("/admin/api/services.json?provider_key={key}"))).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let r = app.client.get(app.url(&format!("{path}&provider_key=wrong"))).send().await.unwrap();
        assert_eq!(r.status(), 403);

        // Tokens: the stats scope (or analytics) is needed; members need monitoring and the service.
        let token = |scopes: &'static str| async move {
            let (status, body) = app
                .post_form("/admin/api/personal/access_tokens.json", &[("name", "t"), ("scopes[]", scopes), ("permission", "ro")])
                .await;
            assert_eq!(status, 201, "{body}");
            body["access_token"]["value"].as_str().unwrap().to_string()
        };
        for (scopes, expected) in [("stats", 200), ("analytics", 200), ("account_management", 403)] {
            let t = token(scopes).await;
            let r = app.client.get(app.url(&path)).bearer_auth(&t).send().await.unwrap();
            assert_eq!(r.status().as_u16(), expected, "{scopes}");
        }
        let member = |name: &'static str, sections: &'static [&'static str], services: Vec<i64>| async move {
            let (status, user) = app
                .post_form("/admin/api/users.json", &[("username", name), ("email", &format!("{name}@x.test")), ("password", "secret123")])
                .await;
            assert_eq!(status, 201, "{user}");
            let uid = user["user"]["id"].as_i64().unwrap();
            let mut form: Vec<(&str, String)> = sections.iter().map(|s| ("allowed_sections[]", s.to_string())).collect();
            form.extend(services.iter().map(|s| ("allowed_service_ids[]", s.to_string())));
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (status, body) = app.put_form(&format!("/admin/api/users/{uid}/permissions.json"), &form).await;
            assert_eq!(status, 200, "{body}");
            let (status, t) = app
                .post_form(&format!("/admin/api/users/{uid}/access_tokens.json"), &[("name", "m"), ("scopes[]", "stats"), ("scopes[]", "account_management"), ("permission", "ro")])
                .await;
            assert_eq!(status, 201, "{t}");
            t["access_token"]["value"].as_str().unwrap().to_string()
        };
        let with_monitoring = member("watcher", &["monitoring", "partners"], vec![s.sid]).await;
        let r = app.client.get(app.url(&path)).bearer_auth(&with_monitoring).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let (status, other) = app.post_form("/admin/api/services.json", &[("name", "Other")]).await;
        assert_eq!(status, 201, "{other}");
        let elsewhere = member("elsewhere", &["monitoring", "partners"], vec![other["service"]["id"].as_i64().unwrap()]).await;
        let r = app.client.get(app.url(&path)).bearer_auth(&elsewhere).send().await.unwrap();
        assert_eq!(r.status(), 403, "another service's member");
        let app_path = format!("/stats/applications/{}/usage.json?metric_name=hits&period=day", s.app_id);
        let r = app.client.get(app.url(&app_path)).bearer_auth(&elsewhere).send().await.unwrap();
        assert_eq!(r.status(), 403, "an application of another service");
        let r = app.client.get(app.url("/admin/api/provider.json")).bearer_auth(&with_monitoring).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let provider: Value = r.json().await.unwrap();
        assert!(provider["account"]["org_name"].is_string() && provider["account"].get("provider_key").is_none(), "members never see the provider key: {provider}");
    }

    async fn response_codes_top_applications_and_backends(app: &TestApp) {
        let s = seeded(app).await;
        let (status, other) = app
            .post_form(&format!("/admin/api/accounts/{}/applications.json", s.account), &[("plan_id", &s.plan.to_string()), ("name", "Second"), ("user_key", "second-key")])
            .await;
        assert_eq!(status, 201, "{other}");
        let other_id = other["application"]["id"].as_i64().unwrap();
        usage::write(
            &app.db,
            &[
                counted(s.app_id, hits(&s), "2024-05-03T10:00:00Z", 4),
                counted(other_id, hits(&s), "2024-05-20T10:00:00Z", 9),
                counted(other_id, hits(&s), "2024-06-01T00:00:00Z", 50),
                counted(s.app_id, Counter::ResponseCode(404), "2024-05-03T10:00:00Z", 2),
                counted(s.app_id, Counter::ResponseClass(4), "2024-05-03T10:00:00Z", 3),
                counted(other_id, Counter::ResponseClass(4), "2024-05-03T11:00:00Z", 1),
            ],
        )
        .await
        .unwrap();
        let codes = format!("/stats/services/{}/usage_response_code.json?period=day&since=2024-05-03", s.sid);
        let (status, body) = app.get_json(&format!("{codes}&response_code=4XX")).await;
        assert_eq!((status, body["total"].as_i64()), (200, Some(4)), "{body}");
        assert_eq!(body["response_code"]["code"], "4XX");
        let (_, body) = app.get_json(&format!("{codes}&response_code=404")).await;
        assert_eq!(body["total"], 2);
        let (_, body) = app
            .get_json(&format!("/stats/applications/{other_id}/usage_response_code.json?period=day&since=2024-05-03&response_code=4XX"))
            .await;
        assert_eq!((body["total"].as_i64(), body["application"]["name"].as_str()), (Some(1), Some("Second")));
        let (status, _, text) = raw(app, &format!("/stats/services/{}/usage_response_code.xml?period=day&since=2024-05-03&response_code=4XX", s.sid)).await;
        assert_eq!(status, 200, "porta answers 500 here");
        assert!(text.contains("<response_code><code>4XX</code></response_code>"), "{text}");

        let top = format!("/stats/services/{}/top_applications", s.sid);
        let (status, body) = app.get_json(&format!("{top}.json?metric_name=hits&period=month&since=2024-05-17")).await;
        assert_eq!(status, 200, "{body}");
        let apps = body["applications"].as_array().unwrap();
        assert_eq!(apps.len(), 2);
        assert_eq!((apps[0]["id"].as_i64(), apps[0]["value"].as_str()), (Some(other_id), Some("9")));
        assert_eq!((apps[1]["id"].as_i64(), apps[1]["value"].as_str()), (Some(s.app_id), Some("4")));
        assert_eq!(body["period"]["since"], "2024-05-01T00:00:00Z", "since snaps to the month");
        assert_eq!(apps[0]["plan"]["id"], s.plan);
        // In a zone where June starts on May 31 at 18:30 UTC, the 50 of June 1st 00:00 UTC
        // belongs to June: May is unchanged.
        let (_, kolkata) = app.get_json(&format!("{top}.json?metric_name=hits&period=month&since=2024-05-17&timezone=Asia/Kolkata")).await;
        assert_eq!(kolkata["applications"][0]["value"], "9");
        let (_, june) = app.get_json(&format!("{top}.json?metric_name=hits&period=month&since=2024-06-01&timezone=Asia/Kolkata")).await;
        assert_eq!(june["applications"][0]["value"], "50");
        let (_, _, csv) = raw(app, &format!("{top}.csv?metric_name=hits&period=month&since=2024-05-17")).await;
        assert_eq!(csv.lines().next(), Some("Application Name,Application ID,Plan Name,Plan ID,Account Name,Account ID,Total"));
        assert_eq!(csv.lines().nth(1), Some(format!("Second,{other_id},Basic,{},Acme,{},9", s.plan, s.account).as_str()));
        let (_, _, xml) = raw(app, &format!("{top}.xml?metric_name=hits&period=month&since=2024-05-17")).await;
        assert!(xml.contains(&format!("<application><value>9</value><id>{other_id}</id><name>Second</name>")), "{xml}");

        // A backend's usage: its own metric, over the services using it.
        let (status, backend) = app.post_form("/admin/api/backend_apis.json", &[("name", "Storage"), ("private_endpoint", "http://127.0.0.1:9")]).await;
        assert_eq!(status, 201, "{backend}");
        let bid = backend["backend_api"]["id"].as_i64().unwrap();
        let (_, metrics) = app.get_json(&format!("/admin/api/backend_apis/{bid}/metrics.json")).await;
        let backend_hits = metrics["metrics"][0]["metric"]["id"].as_i64().unwrap();
        let (status, body) = app.post_form(&format!("/admin/api/services/{}/backend_usages.json", s.sid), &[("backend_api_id", &bid.to_string()), ("path", "/storage")]).await;
        assert_eq!(status, 201, "{body}");
        usage::write(&app.db, &[counted(s.app_id, Counter::Metric(tollgate_domain::ids::MetricId::new(backend_hits)), "2024-05-03T10:00:00Z", 6)])
            .await
            .unwrap();
        let (status, body) = app.get_json(&format!("/stats/backend_apis/{bid}/usage.json?metric_name=hits&period=day&since=2024-05-03")).await;
        assert_eq!((status, body["total"].as_i64()), (200, Some(6)), "{body}");
        assert_eq!(body["metric"]["system_name"], format!("hits.{bid}"));
        let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["total", "values", "metric", "period"], "a backend's key order is porta's own");
    }

    async fn usage_counted_by_authrep_is_in_the_stats_at_once(app: &TestApp) {
        authrep_then_stats(app).await;
    }

    async fn applications_near_their_limits_and_credits_charged(app: &TestApp) {
        let (service, application) = app.seed("near-key").await;
        let (sid, _hits) = app.limit_hits(&service, &application, "day", 10).await;
        let app_id = application["application"]["id"].as_i64().unwrap();
        let token = app.service_token(sid).await;
        let r = app
            .client
            .get(app.url(&format!("/transactions/authrep.json?service_id={sid}&service_token={token}&user_key=near-key&usage%5Bhits%5D=7")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let near = format!("/stats/services/{sid}/applications_near_limits.json");
        let (status, body) = app.get_json(&near).await;
        assert_eq!(status, 200, "{body}");
        let first = &body["applications_near_limits"][0];
        assert_eq!((first["application"]["id"].as_i64(), first["period"].as_str()), (Some(app_id), Some("day")));
        assert_eq!((first["current_value"].as_i64(), first["max_value"].as_i64(), first["utilization"].as_str()), (Some(7), Some(10), Some("70.00")));
        let (_, above) = app.get_json(&format!("{near}?threshold=80")).await;
        assert_eq!(above["applications_near_limits"], serde_json::json!([]));
        let (status, bad) = app.get_json(&format!("{near}?threshold=lots")).await;
        assert_eq!((status, bad["errors"]["threshold"].is_array()), (422, true), "{bad}");

        // Credits charged and upstream cost, from deductions' details.
        let account = application["application"]["account_id"].as_i64().unwrap();
        let detail = format!(r#"[{{"application_id":{app_id},"metric_id":1,"metric":"hits","quantity":3,"credits":"1.5","upstream_cost":"0.25"}}]"#);
        for (at, d) in [("2024-05-03T10:00:00Z", detail.clone()), ("2024-05-04T10:00:00Z", detail.clone()), ("2024-06-04T10:00:00Z", detail)] {
            sqlx::query("INSERT INTO credit_transactions (account_id, kind, amount, balance_after, detail, created_at) VALUES ($1, 'deduction', '-1.5', '0', $2, $3)")
                .bind(account)
                .bind(d)
                .bind(at)
                .execute(&app.db.pool)
                .await
                .unwrap();
        }
        let (status, body) = app.get_json(&format!("/stats/credits.json?account_id={account}&period=month&since=2024-05-01")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!((body["credits"]["total"].as_str(), body["upstream_cost"]["total"].as_str()), (Some("3"), Some("0.5")));
        assert_eq!((body["credits"]["values"][2].as_str(), body["credits"]["values"][3].as_str()), (Some("1.5"), Some("1.5")));
        let (_, other) = app.get_json(&format!("/stats/credits.json?service_id={sid}&metric_id=2&period=month&since=2024-05-01")).await;
        assert_eq!(other["credits"]["total"], "0", "another metric");
        let (_, year) = app.get_json(&format!("/stats/credits.json?service_id={sid}&period=year&since=2024-01-01")).await;
        assert_eq!((year["credits"]["values"][4].as_str(), year["credits"]["values"][5].as_str()), (Some("3"), Some("1.5")));
    }

    /// The roll-ups are the sums of the rows, whatever the flushes wrote and in which order:
    /// random batches over several applications, quarters and days, with later readings
    /// replacing earlier ones (and stale ones ignored), compared with the rows themselves.
    async fn roll_ups_are_the_sums_of_the_rows(app: &TestApp) {
        let s = seeded(app).await;
        let mut ids = vec![s.app_id];
        for i in 0..3 {
            let (status, a) = app
                .post_form(&format!("/admin/api/accounts/{}/applications.json", s.account), &[("plan_id", &s.plan.to_string()), ("name", &format!("R{i}"))])
                .await;
            assert_eq!(status, 201, "{a}");
            ids.push(a["application"]["id"].as_i64().unwrap());
        }
        let mut seed: u64 = 0x5eed;
        let mut next = move |n: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        let base = at("2024-05-01T00:00:00Z");
        for round in 0..8 {
            let batch: Vec<SeriesValue> = (0..60)
                .map(|_| SeriesValue {
                    key: SeriesKey {
                        app: ids[next(4) as usize],
                        counter: hits(&s).raw(),
                        start: base + next(3 * 96) as i64 * 900,
                    },
                    value: next(100) as i64,
                    observed_us: round * 10 + next(15) as i64,
                })
                .collect();
            usage::write(&app.db, &batch).await.unwrap();
        }
        let sum = |sql: &'static str| async move {
            let v: Option<i64> = sqlx::query_scalar(sql).fetch_one(&app.db.pool).await.unwrap();
            v.unwrap_or(0)
        };
        let rows = sum("SELECT CAST(SUM(value) AS BIGINT) FROM usage_hourly").await;
        let quarters = sum("SELECT CAST(SUM(q0 + q1 + q2 + q3) AS BIGINT) FROM usage_hourly").await;
        let service = sum("SELECT CAST(SUM(q0 + q1 + q2 + q3) AS BIGINT) FROM usage_service_hourly").await;
        let daily = sum("SELECT CAST(SUM(value) AS BIGINT) FROM usage_app_daily").await;
        let service_daily = sum("SELECT CAST(SUM(value) AS BIGINT) FROM usage_service_daily").await;
        assert!(rows > 0);
        assert_eq!((quarters, service, daily, service_daily), (rows, rows, rows, rows));
        let mismatched = sum(
            "SELECT COUNT(*) FROM usage_service_hourly r WHERE q0 + q1 + q2 + q3 <>
               (SELECT SUM(value) FROM usage_hourly u WHERE u.service_id = r.service_id AND u.metric_id = r.metric_id AND u.hour_start = r.hour_start)",
        )
        .await;
        assert_eq!(mismatched, 0, "every service hour is its applications' sum");
        // What the API answers adds up the same way, in any zone and through top applications.
        let (_, total) = app.get_json(&format!("/stats/services/{}/usage.json?metric_name=hits&granularity=day&since=2024-04-30&until=2024-05-04&timezone=Asia/Kathmandu", s.sid)).await;
        assert_eq!(total["total"].as_i64(), Some(rows));
        let (_, top) = app.get_json(&format!("/stats/services/{}/top_applications.json?metric_name=hits&period=month&since=2024-05-01&timezone=Asia/Kolkata", s.sid)).await;
        let mut per_app = 0;
        for a in top["applications"].as_array().unwrap() {
            let id = a["id"].as_i64().unwrap();
            let (_, u) = app
                .get_json(&format!("/stats/applications/{id}/usage.json?metric_name=hits&period=month&since=2024-05-01&timezone=Asia/Kolkata"))
                .await;
            assert_eq!(a["value"].as_str().unwrap().parse::<i64>().unwrap(), u["total"].as_i64().unwrap(), "top and usage agree for {id}");
            per_app += u["total"].as_i64().unwrap();
        }
        let (_, month) = app.get_json(&format!("/stats/services/{}/usage.json?metric_name=hits&period=month&since=2024-05-01&timezone=Asia/Kolkata", s.sid)).await;
        assert_eq!(month["total"].as_i64(), Some(per_app), "the applications add up to the service");
    }

    async fn integration_errors_are_kept_newest_first(app: &TestApp) {
        let (service, _) = app.seed("errors-key").await;
        let sid = service["service"]["id"].as_i64().unwrap();
        let token = app.service_token(sid).await;
        let authrep = format!("/transactions/authrep.json?service_id={sid}&service_token={token}");
        for (query, status) in [
            ("&user_key=errors-key&usage%5Bnope%5D=1", 404),
            ("&user_key=errors-key&usage%5Bhits%5D=abc", 403),
            ("&user_key=unknown-key", 403),
            ("&user_key=errors-key", 200),
        ] {
            let r = app.client.get(app.url(&format!("{authrep}{query}"))).send().await.unwrap();
            assert_eq!(r.status().as_u16(), status, "{query}");
        }
        let r = app.client.get(app.url("/transactions/authrep.json?service_id=999999&service_token=x&user_key=k")).send().await.unwrap();
        assert_eq!(r.status(), 403, "an unknown service has no list to keep it in");
        let (status, body) = app.get_json(&format!("/admin/api/services/{sid}/errors.json")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["count"], 3);
        let kinds: Vec<&str> = body["errors"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["user_key_invalid", "usage_value_invalid", "metric_invalid"], "newest first");
        assert_eq!(body["errors"][2]["message"], "metric \"nope\" is invalid");
        assert!(body["errors"][0]["timestamp"].as_str().unwrap().ends_with('Z'));
        let (_, page) = app.get_json(&format!("/admin/api/services/{sid}/errors.json?per_page=1&page=2")).await;
        assert_eq!(page["errors"][0]["kind"], "usage_value_invalid");
        let r = app.admin(Method::DELETE, &format!("/admin/api/services/{sid}/errors.json")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let (_, body) = app.get_json(&format!("/admin/api/services/{sid}/errors.json")).await;
        assert_eq!(body["count"], 0);
    }
}

/// The guide's export script (3scale Ch. 30), step by step as written: every application from
/// `applications.xml` pages with the provider key (stopping when `current_page` is
/// `total_pages`), those on a plan, each one's daily hits from `usage.xml`'s `values`, and its
/// account's user from `accounts/{id}.xml`.
mod export_script {
    use super::*;

    struct App {
        id: String,
        plan_name: String,
        service_id: String,
        account_id: String,
        created_at: String,
    }

    async fn get(app: &TestApp, path: &str) -> roxmltree::Document<'static> {
        let r = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "Wrong response code in request {path}");
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/xml"));
        let text: &'static str = Box::leak(r.text().await.unwrap().into_boxed_str());
        roxmltree::Document::parse(text).unwrap()
    }

    fn text(node: roxmltree::Node, path: &[&str]) -> String {
        let mut at = Some(node);
        for name in path {
            at = at.and_then(|n| n.children().find(|c| c.has_tag_name(*name)));
        }
        at.and_then(|n| n.text()).unwrap_or("").to_string()
    }

    async fn api_call_applications_list(app: &TestApp, provider_key: &str, per_page: usize) -> (Vec<App>, usize) {
        let (mut res, mut page, mut pages) = (Vec::new(), 1, 0);
        loop {
            let doc = get(
                app,
                &format!("/admin/api/applications.xml?provider_key={provider_key}&page={page}&per_page={per_page}"),
            )
            .await;
            page += 1;
            pages += 1;
            let root = doc.root_element();
            let done = root.attribute("current_page").unwrap_or("") == root.attribute("total_pages").unwrap_or("");
            for item in doc.descendants().filter(|n| n.has_tag_name("application")) {
                res.push(App {
                    created_at: text(item, &["created_at"]),
                    plan_name: text(item, &["plan", "name"]),
                    service_id: text(item, &["plan", "service_id"]),
                    account_id: text(item, &["user_account_id"]),
                    id: text(item, &["id"]),
                });
            }
            if done {
                return (res, pages);
            }
        }
    }

    async fn api_call_application_usage(app: &TestApp, key: &str, id: &str, from: &str, to: &str) -> Vec<String> {
        let doc = get(app, &format!("/stats/applications/{id}/usage.xml?provider_key={key}&metric_name=hits&since={from}&until={to}&granularity=day")).await;
        let values = doc
            .descendants()
            .find(|n| n.has_tag_name("values"))
            .and_then(|n| n.text())
            .unwrap_or("");
        values.split(',').map(str::to_string).collect()
    }

    async fn api_call_account_read(app: &TestApp, key: &str, account_id: &str) -> (String, String) {
        let doc = get(app, &format!("/admin/api/accounts/{account_id}.xml?provider_key={key}")).await;
        let user = doc
            .descendants()
            .find(|n| n.has_tag_name("users"))
            .and_then(|u| u.children().find(|c| c.has_tag_name("user")))
            .unwrap();
        (
            text(user, &["email"]),
            format!("{} {}", text(user, &["first_name"]), text(user, &["last_name"])),
        )
    }

    on_both_databases! {
        async fn runs_as_written(app: &TestApp) {
            let s = seeded(app).await;
            let (_, provider) = app.get_json("/admin/api/provider.json").await;
            let key = provider["account"]["provider_key"].as_str().unwrap().to_string();
            let (status, trial) = app.post_form(&format!("/admin/api/services/{}/application_plans.json", s.sid), &[("name", "Evaluation")]).await;
            assert_eq!(status, 201, "{trial}");
            let trial_id = trial["application_plan"]["id"].as_i64().unwrap();
            let mut trial_apps = Vec::new();
            for i in 0..3 {
                let (status, a) = app
                    .post_form(&format!("/admin/api/accounts/{}/applications.json", s.account), &[("plan_id", &trial_id.to_string()), ("name", &format!("Trial {i}"))])
                    .await;
                assert_eq!(status, 201, "{a}");
                trial_apps.push(a["application"]["id"].as_i64().unwrap());
            }
            // Trial 0 used the API on the first two days and stopped; trial 1 keeps using it.
            let mut used = vec![
                counted(trial_apps[0], hits(&s), "2024-05-01T09:00:00Z", 5),
                counted(trial_apps[0], hits(&s), "2024-05-02T09:00:00Z", 2),
            ];
            for day in 1..=10 {
                used.push(counted(trial_apps[1], hits(&s), &format!("2024-05-{day:02}T12:00:00Z"), day));
            }
            usage::write(&app.db, &used).await.unwrap();

            for per_page in [100, 2] {
                let (all, pages) = api_call_applications_list(app, &key, per_page).await;
                assert_eq!((all.len(), pages), (4, 4usize.div_ceil(per_page)), "every application, page by page");
                let trials: Vec<&App> = all.iter().filter(|a| a.plan_name == "Evaluation").collect();
                assert_eq!(trials.len(), 3);
                for a in &trials {
                    assert_eq!((a.service_id.as_str(), a.account_id.as_str()), (s.sid.to_string().as_str(), s.account.to_string().as_str()));
                    assert!(DateTime::parse_from_rfc3339(&a.created_at).is_ok(), "{}", a.created_at);
                }
                let mut groups = (0, 0, 0);
                for a in trials {
                    let values: Vec<i64> = api_call_application_usage(app, &key, &a.id, "2024-05-01", "2024-05-10").await.iter().map(|v| v.parse().unwrap()).collect();
                    assert_eq!(values.len(), 10);
                    match (values.iter().sum::<i64>(), values[5..].iter().sum::<i64>()) {
                        (0, _) => groups.0 += 1,
                        (_, 0) => groups.1 += 1,
                        _ => groups.2 += 1,
                    }
                    let (email, _name) = api_call_account_read(app, &key, &a.account_id).await;
                    assert_eq!(email, "alice@acme.test");
                }
                assert_eq!(groups, (1, 1, 1), "never used, tried and stopped, still using");
            }
        }
    }
}
