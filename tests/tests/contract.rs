//! The filter's core and the control plane speak one protocol: batches the filter's report
//! buffer builds are counted by a real control plane, exactly once, and the cache builds its
//! entries from the control plane's real authrep answers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failure report

use std::collections::BTreeMap;
use tollgate::testing::{Backend, TestApp};
use tollgate::usage::{self, Scope};
use tollgate_filter::cache::{self, Denial, Ttl, Verdict};
use tollgate_filter::credentials::Credentials;
use tollgate_filter::report::{self, App, Limits};
use tollgate_filter::shared::Memory;

const LIMITS: Limits = Limits {
    batch_size: 100,
    max_batches: 100,
    backoff_base_ms: 100,
    backoff_max_ms: 1_000,
};

#[tokio::test]
async fn filter_batches_and_cache_entries_against_the_control_plane() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (service, application) = app.seed("contract-key").await;
    let (sid, hits) = app.limit_hits(&service, &application, "day", 10).await;
    let token = app.service_token(sid).await;
    let credentials = Credentials::UserKey("contract-key".into());

    // Usage counted in shared data, frozen into a batch, posted as the filter posts it: twice,
    // as after a lost acknowledgement.
    let shared = Memory::default();
    report::ensure_slots(&shared).unwrap();
    let who = App {
        service_id: sid as u64,
        credentials: credentials.clone(),
        unverified: false,
    };
    for code in [200, 200, 503] {
        report::record(&shared, &who, &[("hits".to_string(), 2)], Some(code)).unwrap();
    }
    let mut seq = 0;
    report::freeze(&shared, "contract", &mut seq, LIMITS).unwrap();
    let batch = report::due(&shared, 0).pop().unwrap();
    for _ in 0..2 {
        let r = app
            .client
            .post(app.url("/transactions.json"))
            .header("content-type", "application/json")
            .body(batch.body(&token))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    }
    report::acknowledged(&shared, &batch.id).unwrap();

    // The cache's view from a real authrep answer: 6 used of 10, 2 more pending here.
    report::record(&shared, &who, &[("hits".to_string(), 2)], None).unwrap();
    let pending = report::pending(&shared, &who).usage;
    let r = app
        .client
        .get(app.url(&format!(
            "/transactions/authrep.json?service_id={sid}&service_token={token}&user_key=contract-key&usage%5Bhits%5D=1"
        )))
        .header("3scale-options", "hierarchy=1")
        .send()
        .await
        .unwrap();
    let status = u32::from(r.status().as_u16());
    let body = r.bytes().await.unwrap();
    let ttl = Ttl {
        authorized_ms: 5_000,
        negative_ms: 1_000,
    };
    let now = 1_000;
    let usage = vec![("hits".to_string(), 1)];
    let entry = cache::from_authrep(status, &body, &usage, &pending, true, ttl, now).unwrap();
    assert_eq!(entry.denial, None);
    assert_eq!(
        entry.quotas[0].remaining,
        10 - 7 - 2,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let Verdict::Allow(entry) = cache::consult(Some(&entry), &usage, now) else {
        panic!()
    };
    assert!(matches!(cache::consult(Some(&entry), &usage, now), Verdict::Ask(_)));

    // An unknown key is cached as such.
    let r = app
        .client
        .get(app.url(&format!(
            "/transactions/authrep.json?service_id={sid}&service_token={token}&user_key=nobody"
        )))
        .send()
        .await
        .unwrap();
    let status = u32::from(r.status().as_u16());
    let body = r.bytes().await.unwrap();
    let entry = cache::from_authrep(status, &body, &usage, &BTreeMap::new(), true, ttl, now).unwrap();
    assert_eq!(entry.denial, Some(Denial::KeyInvalid));

    // Counted once: 6 reported + 1 authrep; the codes too.
    let hour = this_hour();
    usage::flush(&app.db, &app.counters).await.unwrap();
    let application_id: i64 = sqlx::query_scalar("SELECT id FROM applications WHERE user_key = 'contract-key'")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(
        usage::total(
            &app.db,
            Scope::Application(tollgate::domain::ids::ApplicationId::new(application_id)),
            tollgate::domain::ids::MetricId::new(hits),
            hour - 3600,
            hour + 7200
        )
        .await
        .unwrap(),
        7
    );
    let sid = tollgate::domain::ids::ServiceId::new(sid);
    let codes = usage::response_codes(&app.db, Scope::Service(sid), hour - 3600, hour + 7200)
        .await
        .unwrap();
    assert_eq!((codes["200"], codes["503"], codes["5xx"]), (2, 1, 1));
    app.stop().await;
}

/// The start of the current hour, in unix seconds.
fn this_hour() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    now / 3600 * 3600
}
