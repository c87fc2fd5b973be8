//! The control plane as Envoy's control plane, end to end: real Envoy gateways started by
//! `scripts/envoy.sh` with `TOLLGATE_GATEWAY=staging|production`, configured over xDS only —
//! products routed by host to their backends with 3scale's path replacement, deploys reaching
//! staging and promotes production without a restart, a control-plane restart under traffic
//! unnoticed by clients, and bad backend URLs refused at the API.

use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tollgate::on_both_databases;
use tollgate::testing::{TestApp, ADMIN_TOKEN};
use tollgate_e2e::{serve_demo, Envoy};

async fn demo_upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_demo(listener));
    addr
}

/// A gateway of `environment` configured by `app` over xDS.
async fn gateway(app: &TestApp, environment: &str) -> Envoy {
    let mut envoy = Envoy::start(&[
        ("TOLLGATE_GATEWAY", environment.to_string()),
        ("TOLLGATE_XDS", app.xds_addr.expect("xds is on").to_string()),
        ("TOLLGATE_CONTROL_PLANE", app.addr.to_string()),
        ("TOLLGATE_ACCESS_TOKEN", ADMIN_TOKEN.to_string()),
        ("TOLLGATE_ENVOY_CONCURRENCY", "1".to_string()),
    ])
    .unwrap();
    envoy.wait_ready(Duration::from_secs(30)).await.unwrap();
    envoy
}

/// A client that resolves every `*.localhost` name to the loopback, as browsers and curl do.
fn client(envoy: &Envoy, hosts: &[&str]) -> reqwest::Client {
    let mut b = reqwest::Client::builder();
    for h in hosts {
        b = b.resolve(h, SocketAddr::from(([127, 0, 0, 1], envoy.port)));
    }
    b.build().unwrap()
}

/// GETs until `done` holds for the answer (status, body), at most 15 s; the last answer.
async fn until(client: &reqwest::Client, url: &str, done: impl Fn(u16, &Value) -> bool) -> (u16, Value, Duration) {
    let start = Instant::now();
    loop {
        let (status, body) = match client.get(url).send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                let text = r.text().await.unwrap_or_default();
                (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
            }
            Err(e) => (0, Value::String(e.to_string())),
        };
        if done(status, &body) || start.elapsed() > Duration::from_secs(15) {
            return (status, body, start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The seeded service with backends `a` and `b` used at `/a` and `/b`; returns its id, its
/// system name and the user key.
async fn product_with_two_backends(app: &TestApp, a: SocketAddr, b: SocketAddr) -> (i64, String) {
    let (service, _) = app.seed("xds-key").await;
    let sid = service["service"]["id"].as_i64().unwrap();
    for (name, endpoint, path) in [
        ("Backend A", format!("http://{a}/base"), "/a"),
        ("Backend B", format!("http://{b}"), "/b"),
    ] {
        let (s, backend) = app
            .post_form(
                "/admin/api/backend_apis.json",
                &[("name", name), ("private_endpoint", &endpoint)],
            )
            .await;
        assert_eq!(s, 201, "{backend}");
        let bid = backend["backend_api"]["id"].as_i64().unwrap().to_string();
        let (s, usage) = app
            .post_form(
                &format!("/admin/api/services/{sid}/backend_usages.json"),
                &[("backend_api_id", &bid), ("path", path)],
            )
            .await;
        assert_eq!(s, 201, "{usage}");
    }
    app.deploy_to_production(sid).await;
    let system_name = service["service"]["system_name"].as_str().unwrap().replace('_', "-");
    (sid, system_name)
}

on_both_databases! {
    async fn products_are_routed_to_their_backends_with_the_path_replaced(app: &TestApp) {
        let (a, b) = (demo_upstream().await, demo_upstream().await);
        let (_, name) = product_with_two_backends(app, a, b).await;
        let host = format!("{name}-staging.localhost");
        let envoy = gateway(app, "staging").await;
        let c = client(&envoy, &[&host]);
        let url = |path: &str| format!("http://{host}:{}{path}?user_key=xds-key", envoy.port);

        let (s, body, _) = until(&c, &url("/a/items/7"), |s, _| s == 200).await;
        assert_eq!(s, 200, "{body}\n{}", envoy.output());
        assert_eq!(body["path"], "/base/items/7", "{body}");
        assert_eq!(body["headers"]["host"], a.to_string(), "the backend's own host");
        let (s, body, _) = until(&c, &url("/a"), |s, _| s == 200).await;
        assert_eq!((s, body["path"].as_str()), (200, Some("/base")));
        let (s, body, _) = until(&c, &url("/b/x"), |s, _| s == 200).await;
        assert_eq!((s, body["path"].as_str()), (200, Some("/x")), "{body}");
        assert_eq!(body["headers"]["host"], b.to_string());
        // Slashes merged, as in APIcast: `/a//items` is `/a/items`.
        let (s, body, _) = until(&c, &url("/a//items/7"), |s, _| s == 200).await;
        assert_eq!((s, body["path"].as_str()), (200, Some("/base/items/7")), "{body}");
        // `/ab` is neither `/a` nor below it; nothing routes it.
        let (s, _, _) = until(&c, &url("/ab"), |_, _| true).await;
        assert_eq!(s, 404);
        // A host no product here has is nobody's, even with a single product (the key is not
        // tried against it).
        let other = client(&envoy, &["elsewhere.localhost"]);
        let (s, body, _) = until(&other, &format!("http://elsewhere.localhost:{}/a/x?user_key=xds-key", envoy.port), |_, _| true).await;
        assert_eq!(s, 404, "{body}");
        // The filter is on every route: a wrong key is refused before any backend.
        let (s, _, _) = until(&c, &format!("http://{host}:{}/a/x?user_key=nope", envoy.port), |_, _| true).await;
        assert_eq!(s, 403);

        // The gateway is listed with what it acknowledged.
        let (s, list) = app.get_json("/admin/api/gateways.json").await;
        assert_eq!(s, 200);
        let g = &list["gateways"][0]["gateway"];
        assert_eq!(g["environment"], "staging", "{list}");
        assert_eq!(g["version"], g["offered_version"], "{list}");
        assert!(g["last_error"].is_null(), "{list}");
        drop(envoy);
    }

    async fn a_deploy_reaches_staging_and_production_waits_for_promote(app: &TestApp) {
        let (a, b) = (demo_upstream().await, demo_upstream().await);
        let (sid, name) = product_with_two_backends(app, a, b).await;
        let (staging, production) = (gateway(app, "staging").await, gateway(app, "production").await);
        let staging_host = format!("{name}-staging.localhost");
        let production_host = format!("{name}.localhost");
        let (cs, cp) = (client(&staging, &[&staging_host]), client(&production, &[&production_host]));
        let staging_url = |p: &str| format!("http://{staging_host}:{}{p}?user_key=xds-key", staging.port);
        let production_url = |p: &str| format!("http://{production_host}:{}{p}?user_key=xds-key", production.port);
        for (c, u) in [(&cs, staging_url("/b/free")), (&cp, production_url("/b/free"))] {
            let (s, body, _) = until(c, &u, |s, _| s == 200).await;
            assert_eq!(s, 200, "{body}");
        }

        // Only GET /b/paid is mapped now: deployed to staging, not promoted.
        let (_, rules) = app.get_json(&format!("/admin/api/services/{sid}/proxy/mapping_rules.json")).await;
        for r in rules["mapping_rules"].as_array().unwrap() {
            let id = r["mapping_rule"]["id"].as_i64().unwrap();
            let (s, _) = app
                .send_form(reqwest::Method::DELETE, &format!("/admin/api/services/{sid}/proxy/mapping_rules/{id}.json"), &[])
                .await;
            assert_eq!(s, 200);
        }
        let (_, metrics) = app.get_json(&format!("/admin/api/services/{sid}/metrics.json")).await;
        let hits = metrics["metrics"][0]["metric"]["id"].as_i64().unwrap().to_string();
        let (s, rule) = app
            .post_form(
                &format!("/admin/api/services/{sid}/proxy/mapping_rules.json"),
                &[("http_method", "GET"), ("pattern", "/b/paid"), ("delta", "1"), ("metric_id", &hits)],
            )
            .await;
        assert_eq!(s, 201, "{rule}");
        let pid = std::process::id(); // the same processes before and after
        let (s, _) = app.post_form(&format!("/admin/api/services/{sid}/proxy/deploy.json"), &[]).await;
        assert_eq!(s, 201);
        let (s, _, took) = until(&cs, &staging_url("/b/free"), |s, _| s == 404).await;
        assert_eq!(s, 404, "staging enforces the new rules\n{}", staging.output());
        eprintln!("deploy reached staging in {took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
        let (s, _, _) = until(&cs, &staging_url("/b/paid"), |s, _| s == 200).await;
        assert_eq!(s, 200);
        let (s, _, _) = until(&cp, &production_url("/b/free"), |_, _| true).await;
        assert_eq!(s, 200, "production keeps the promoted config");

        let (_, latest) = app.get_json(&format!("/admin/api/services/{sid}/proxy/configs/sandbox/latest.json")).await;
        let version = latest["proxy_config"]["version"].as_i64().unwrap();
        let (s, _) = app
            .post_form(
                &format!("/admin/api/services/{sid}/proxy/configs/sandbox/{version}/promote.json"),
                &[("to", "production")],
            )
            .await;
        assert_eq!(s, 201);
        let (s, _, took) = until(&cp, &production_url("/b/free"), |s, _| s == 404).await;
        assert_eq!(s, 404, "promoted\n{}", production.output());
        eprintln!("promote reached production in {took:?}");
        assert_eq!(std::process::id(), pid);
        let (s, list) = app.get_json("/admin/api/gateways.json").await;
        assert_eq!(s, 200);
        assert_eq!(list["gateways"].as_array().unwrap().len(), 2, "{list}");

        // A backend taken out of the product: staging stops routing to it (its cluster goes
        // once Envoy has acknowledged routes without it), /b keeps working, nothing is refused.
        let (_, usages) = app.get_json(&format!("/admin/api/services/{sid}/backend_usages.json")).await;
        let usage_a = usages["backend_usages"]
            .as_array()
            .or(usages.as_array())
            .unwrap_or_else(|| panic!("{usages}"))
            .iter()
            .map(|u| &u["backend_usage"])
            .find(|u| u["path"] == "/a")
            .unwrap_or_else(|| panic!("{usages}"))["id"]
            .as_i64()
            .unwrap();
        let (s, _) = app
            .send_form(reqwest::Method::DELETE, &format!("/admin/api/services/{sid}/backend_usages/{usage_a}.json"), &[])
            .await;
        assert_eq!(s, 200);
        let (s, _) = app.post_form(&format!("/admin/api/services/{sid}/proxy/deploy.json"), &[]).await;
        assert_eq!(s, 201);
        let (s, _, _) = until(&cs, &staging_url("/a/x"), |s, _| s == 404).await;
        assert_eq!(s, 404, "no route to the backend removed
{}", staging.output());
        let (s, _, _) = until(&cs, &staging_url("/b/paid"), |_, _| true).await;
        assert_eq!(s, 200);
        let start = Instant::now();
        let staging_entry = loop {
            let (_, list) = app.get_json("/admin/api/gateways.json").await;
            let g = list["gateways"]
                .as_array()
                .unwrap()
                .iter()
                .map(|g| g["gateway"].clone())
                .find(|g| g["environment"] == "staging")
                .unwrap();
            if g["versions"]["clusters"] == g["offered_version"] || start.elapsed() > Duration::from_secs(10) {
                break g;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(staging_entry["versions"]["clusters"], staging_entry["offered_version"], "the kept cluster dropped: {staging_entry}");
        assert!(staging_entry["last_error"].is_null(), "{staging_entry}");
        drop((staging, production));
    }
}

#[tokio::test]
async fn a_control_plane_restart_under_traffic_changes_nothing_for_clients() {
    let mut app = TestApp::spawn(tollgate::testing::Backend::Sqlite).await;
    let (a, b) = (demo_upstream().await, demo_upstream().await);
    let (_, name) = product_with_two_backends(&app, a, b).await;
    let host = format!("{name}.localhost");
    let envoy = gateway(&app, "production").await;
    let c = client(&envoy, &[&host]);
    let url = format!("http://{host}:{}/a/x?user_key=xds-key", envoy.port);
    let (s, _, _) = until(&c, &url, |s, _| s == 200).await;
    assert_eq!(s, 200, "{}", envoy.output());

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let (c, url, stop) = (c.clone(), url.clone(), stop.clone());
        tokio::spawn(async move {
            let mut answers = std::collections::BTreeMap::<u16, u32>::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let s = c.get(&url).send().await.map(|r| r.status().as_u16()).unwrap_or(0);
                *answers.entry(s).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            answers
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    app.restart().await;
    // Envoy reconnects to xDS on its own.
    let start = Instant::now();
    loop {
        let (_, list) = app.get_json("/admin/api/gateways.json").await;
        if list["gateways"]
            .as_array()
            .is_some_and(|g| g.len() == 1 && !g[0]["gateway"]["version"].is_null())
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the gateway did not reconnect: {list}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answers = traffic.await.unwrap();
    eprintln!("answers during the restart: {answers:?}");
    assert_eq!(
        answers.keys().copied().collect::<Vec<_>>(),
        [200],
        "{answers:?}\n{}",
        envoy.output()
    );
    drop(envoy);
    app.stop().await;
}

#[tokio::test]
async fn bad_backend_urls_and_paths_are_refused_at_the_api() {
    let app = TestApp::spawn(tollgate::testing::Backend::Sqlite).await;
    let (service, _) = app.seed("k").await;
    let sid = service["service"]["id"].as_i64().unwrap();
    for url in [
        "ftp://files.example.com",
        "not a url",
        "http://x:99999",
        "http://h/?q=1",
    ] {
        let (s, body) = app
            .post_form(
                "/admin/api/backend_apis.json",
                &[("name", "Bad"), ("private_endpoint", url)],
            )
            .await;
        assert_eq!(s, 422, "{url}: {body}");
        assert!(body["errors"]["private_endpoint"].is_array(), "{body}");
    }
    for field in ["api_backend", "endpoint", "sandbox_endpoint"] {
        let (s, body) = app
            .put_form(
                &format!("/admin/api/services/{sid}/proxy.json"),
                &[(field, "gopher://x")],
            )
            .await;
        assert_eq!(s, 422, "{field}: {body}");
        assert!(body["errors"][field].is_array(), "{body}");
    }
    let (s, backend) = app
        .post_form(
            "/admin/api/backend_apis.json",
            &[("name", "Good"), ("private_endpoint", "https://api.example.com/v1")],
        )
        .await;
    assert_eq!(s, 201, "{backend}");
    let bid = backend["backend_api"]["id"].as_i64().unwrap().to_string();
    let (s, body) = app
        .post_form(
            &format!("/admin/api/services/{sid}/backend_usages.json"),
            &[("backend_api_id", &bid), ("path", "/v1?x")],
        )
        .await;
    assert_eq!(s, 422, "{body}");
    let (s, usage) = app
        .post_form(
            &format!("/admin/api/services/{sid}/backend_usages.json"),
            &[("backend_api_id", &bid), ("path", "v1/")],
        )
        .await;
    assert_eq!(
        (s, usage["backend_usage"]["path"].as_str()),
        (201, Some("/v1")),
        "{usage}"
    );
    // The default public endpoints name the product.
    let (_, proxy) = app.get_json(&format!("/admin/api/services/{sid}/proxy.json")).await;
    let name = service["service"]["system_name"].as_str().unwrap().replace('_', "-");
    assert_eq!(
        proxy["proxy"]["sandbox_endpoint"],
        format!("http://{name}-staging.localhost:8081")
    );
    assert_eq!(proxy["proxy"]["endpoint"], format!("http://{name}.localhost:8080"));
    app.stop().await;
}
