//! The worker's state machines played on the fake Envoy ([`crate::fake`]): misses waiting on
//! one call, workers waiting on each other (and on a worker that vanished), counting near and
//! far from the limits, the share cache's CAS retries and its bound, what a report's answer
//! does to its batch, the shutdown flush, and — as a property — that whatever the
//! interleaving, every request is let through or answered exactly once.

use crate::fake::{Process, Worker};
use crate::host::Next;
use proptest::prelude::*;

const CONFIG: &str = r#"{"control_plane":{"cluster":"cp","timeout_ms":500},"access_token":"t",
  "cache_ttl_ms":60000,"report_interval_ms":1000,"limit_headers":true}"#;

const PROXY_CONFIGS: &str = r#"{"proxy_configs":[{"proxy_config":{"id":1,"version":3,"environment":"production",
  "content":{"id":7,"backend_version":"1","backend_authentication_type":"service_token",
    "backend_authentication_value":"st","proxy":{"hosts":["api.example.com"],
    "proxy_rules":[{"http_method":"GET","pattern":"/","metric_system_name":"hits","delta":1}]}}}}]}"#;

/// `workers` VMs, configured, with the services fetched.
fn envoy(workers: usize) -> Process {
    let mut p = Process::new(CONFIG, workers);
    for w in &mut p.workers {
        w.tick();
        let fetch = w.call_to("/admin/api/account/proxy_configs");
        w.answer(fetch.token, Some("200"), PROXY_CONFIGS.as_bytes());
    }
    p
}

/// authrep's answer: `current` of `max` hits used today.
fn usage(p: &Process, authorized: bool, current: i64, max: i64) -> Vec<u8> {
    let ends_at = p.now_ms() / 1000 + 86_400;
    let reason = if authorized {
        ""
    } else {
        r#","rejection_reason":"limits_exceeded""#
    };
    format!(
        r#"{{"authorized":{authorized}{reason},"usage_reports":[{{"metric":"hits","period":"day","ends_at":{ends_at},"max_value":{max},"current_value":{current}}}]}}"#
    )
    .into_bytes()
}

fn authrep_calls(w: &Worker) -> Vec<crate::fake::Sent> {
    w.calls()
        .into_iter()
        .filter(|c| c.path().starts_with("/transactions/auth"))
        .collect()
}

#[test]
fn misses_in_one_worker_make_one_call_and_all_wait_for_it() {
    let mut p = envoy(1);
    let waiting: Vec<u32> = (0..3)
        .map(|_| {
            let (context, next) = p.workers[0].request("/items?user_key=k");
            assert_eq!(next, Next::Pause);
            context
        })
        .collect();
    p.deliver(); // the first miss woke the root context
    let calls = authrep_calls(&p.workers[0]);
    assert_eq!(calls.len(), 1, "one call for three requests: {calls:?}");
    assert!(calls[0]
        .path()
        .starts_with("/transactions/authrep.json?service_token=st&service_id=7&user_key=k"));
    let answer = usage(&p, true, 1, 100);
    p.workers[0].answer(calls[0].token, Some("200"), &answer);
    assert_eq!(p.workers[0].resumed(), waiting);
    assert!(p.workers[0].replies().is_empty());
    // The cache serves the next one at once, with the limit headers.
    let (context, next) = p.workers[0].request("/items?user_key=k");
    assert_eq!(next, Next::Continue);
    let headers = p.workers[0].respond(context, 200);
    assert!(
        headers.contains(&("ratelimit-limit".into(), "100".into())),
        "{headers:?}"
    );
    assert!(authrep_calls(&p.workers[0]).is_empty());
    p.workers[0].tick();
    assert_eq!(p.metric("tollgate.cache_misses"), 3);
    assert_eq!(p.metric("tollgate.cache_hits"), 1);
    assert_eq!(p.metric("tollgate.authrep_calls"), 1);
}

#[test]
fn a_call_that_never_reached_a_replica_is_asked_again_once_and_one_cut_off_is_not() {
    let refused = b"upstream connect error or disconnect/reset before headers. reset reason: remote connection failure";
    let mut p = envoy(1);
    let (context, _) = p.workers[0].request("/items?user_key=k");
    p.deliver();
    let first = authrep_calls(&p.workers[0]);
    assert_eq!(first.len(), 1);
    p.workers[0].answer(first[0].token, Some("503"), refused);
    let again = authrep_calls(&p.workers[0]);
    assert_eq!(again.len(), 1, "asked again: {again:?}");
    assert_eq!(again[0].path(), first[0].path());
    assert!(p.workers[0].resumed().is_empty(), "the request still waits");
    let answer = usage(&p, true, 1, 100);
    p.workers[0].answer(again[0].token, Some("200"), &answer);
    assert_eq!(p.workers[0].resumed(), vec![context]);
    p.workers[0].tick();
    assert_eq!(p.metric("tollgate.authrep_retries"), 1);

    // Refused twice: the second answer stands (once is the most); a call cut off after it
    // was sent may have counted, so it is never asked again.
    for (answers, asked) in [
        (vec![&refused[..], &refused[..]], 2),
        (vec![&b"reset reason: connection termination"[..]], 1),
    ] {
        let mut p = envoy(1);
        let (context, _) = p.workers[0].request("/items?user_key=k");
        p.deliver();
        let mut calls = 0;
        for body in answers {
            let call = authrep_calls(&p.workers[0]);
            assert_eq!(call.len(), 1);
            calls += 1;
            p.workers[0].answer(call[0].token, Some("503"), body);
        }
        assert_eq!(calls, asked);
        assert!(authrep_calls(&p.workers[0]).is_empty(), "no third call");
        let replies = p.workers[0].replies();
        assert!(
            replies.iter().any(|r| r.context == context) || p.workers[0].resumed() == vec![context],
            "the request is settled by the failure mode: {replies:?}"
        );
    }
}

#[test]
fn a_worker_waits_for_the_call_another_worker_makes_and_follows_its_word() {
    for (authorized, expected) in [(true, None), (false, Some(429))] {
        let mut p = envoy(2);
        let (first, _) = p.workers[0].request("/?user_key=k");
        p.deliver();
        let (second, next) = p.workers[1].request("/?user_key=k");
        assert_eq!(next, Next::Pause);
        p.deliver();
        assert!(
            authrep_calls(&p.workers[1]).is_empty(),
            "worker 1 waits for worker 0's call"
        );
        p.workers[1].tick();
        assert_eq!(p.metric("tollgate.cross_worker_waits"), 1);

        let call = authrep_calls(&p.workers[0]).remove(0);
        let answer = usage(&p, authorized, if authorized { 1 } else { 5 }, 5);
        p.workers[0].answer(call.token, Some("200"), &answer);
        p.deliver(); // worker 0's word reaches worker 1
        assert!(authrep_calls(&p.workers[1]).is_empty());
        match expected {
            None => {
                assert_eq!(p.workers[0].resumed(), [first]);
                assert_eq!(p.workers[1].resumed(), [second]);
            }
            Some(status) => {
                assert_eq!(
                    p.workers[0]
                        .replies()
                        .iter()
                        .map(|r| (r.context, r.status))
                        .collect::<Vec<_>>(),
                    [(first, status)]
                );
                assert_eq!(
                    p.workers[1]
                        .replies()
                        .iter()
                        .map(|r| (r.context, r.status))
                        .collect::<Vec<_>>(),
                    [(second, status)]
                );
            }
        }
    }
}

#[test]
fn the_claim_of_a_worker_that_vanished_runs_out_and_the_waiter_asks_itself() {
    let mut p = envoy(2);
    p.workers[0].request("/?user_key=k");
    p.deliver();
    assert_eq!(
        authrep_calls(&p.workers[0]).len(),
        1,
        "worker 0 asks, and is never heard of again"
    );
    let (waiting, _) = p.workers[1].request("/?user_key=k");
    p.deliver();
    // Within the claim (the call's timeout and two ticks), worker 1 keeps waiting.
    p.advance(600);
    p.workers[1].tick();
    assert!(authrep_calls(&p.workers[1]).is_empty());
    p.advance(100);
    p.workers[1].tick();
    let calls = authrep_calls(&p.workers[1]);
    assert_eq!(calls.len(), 1, "the claim ran out: worker 1 asks");
    let answer = usage(&p, true, 1, 100);
    p.workers[1].answer(calls[0].token, Some("200"), &answer);
    assert_eq!(p.workers[1].resumed(), [waiting]);
}

#[test]
fn a_client_that_left_while_waiting_strands_nobody() {
    let mut p = envoy(1);
    let (gone, _) = p.workers[0].request("/?user_key=k");
    let (stays, _) = p.workers[0].request("/?user_key=k");
    p.deliver();
    p.workers[0].leave(gone);
    let call = authrep_calls(&p.workers[0]).remove(0);
    let answer = usage(&p, true, 1, 100);
    p.workers[0].answer(call.token, Some("200"), &answer);
    assert_eq!(p.workers[0].resumed(), [stays]);
}

#[test]
fn requests_past_a_gateways_share_of_a_prepaid_balance_ask_the_control_plane_one_by_one() {
    let mut p = envoy(1);
    let waiting: Vec<u32> = (0..3).map(|_| p.workers[0].request("/?user_key=k").0).collect();
    p.deliver();
    // The first request's call serves it; one credit is left, of which this gateway's share
    // (of two gateways) is none.
    let call = authrep_calls(&p.workers[0]).remove(0);
    let answer = br#"{"authorized":true,"usage_reports":[],"purchase_url":"https://buy",
        "credits":{"remaining_units":1,"share_units":0,"weights":{"hits":1}}}"#;
    p.workers[0].answer(call.token, Some("200"), answer);
    assert_eq!(p.workers[0].resumed(), [waiting[0]]);
    assert!(p.workers[0].replies().is_empty(), "no 429 for a share used up");
    // The two others wait for a call of their own: the next is served, the last finds the
    // balance spent.
    p.deliver();
    let call = authrep_calls(&p.workers[0]);
    assert_eq!(call.len(), 1, "{call:?}");
    let last = br#"{"authorized":true,"usage_reports":[],"purchase_url":"https://buy",
        "credits":{"remaining_units":0,"share_units":0,"weights":{"hits":1}}}"#;
    p.workers[0].answer(call[0].token, Some("200"), last);
    assert_eq!(p.workers[0].resumed(), [waiting[0], waiting[1]]);
    p.deliver();
    let call = authrep_calls(&p.workers[0]);
    assert_eq!(call.len(), 1, "{call:?}");
    let spent = br#"{"authorized":false,"rejection_reason":"credits_exhausted","purchase_url":"https://buy",
        "usage_reports":[],"credits":{"remaining_units":0,"share_units":0,"weights":{"hits":1}}}"#;
    p.workers[0].answer(call[0].token, Some("409"), spent);
    let replies: Vec<(u32, u32)> = p.workers[0].replies().iter().map(|r| (r.context, r.status)).collect();
    assert_eq!(replies, [(waiting[2], 402)]);
    assert!(p.workers[0].replies()[0].body.contains("https://buy"));
    p.deliver();
    assert!(authrep_calls(&p.workers[0]).is_empty(), "nothing more to ask");
}

/// Caches an authorization for key `k` with `current` of `max` used: the first request's call,
/// answered.
fn cached(p: &mut Process, key: &str, current: i64, max: i64) {
    p.workers[0].request(&format!("/?user_key={key}"));
    p.deliver();
    let call = authrep_calls(&p.workers[0]).remove(0);
    let answer = usage(p, true, current, max);
    p.workers[0].answer(call.token, Some("200"), &answer);
}

fn pending_hits(p: &Process, key: &str) -> u64 {
    let app = crate::report::App {
        service_id: 7,
        credentials: crate::credentials::Credentials::UserKey(key.into()),
        unverified: false,
    };
    crate::report::pending(&p.workers[0].host, &app)
        .usage
        .get("hits")
        .copied()
        .unwrap_or(0)
}

#[test]
fn far_from_its_limits_a_request_is_counted_in_the_vm_close_to_them_in_shared_data_at_once() {
    let mut p = envoy(1);
    cached(&mut p, "far", 1, 10_000);
    cached(&mut p, "near", 1, 20);
    for key in ["far", "near"] {
        assert_eq!(p.workers[0].request(&format!("/?user_key={key}")).1, Next::Continue);
    }
    assert_eq!(pending_hits(&p, "far"), 0, "in the VM's memory until the tick");
    assert_eq!(pending_hits(&p, "near"), 1, "the next call must see every unit");
    p.workers[0].tick();
    assert_eq!(pending_hits(&p, "far"), 1);
}

#[test]
fn taking_a_share_retries_when_another_worker_wrote_first_and_asks_when_it_keeps_losing() {
    let mut p = envoy(1);
    cached(&mut p, "k", 1, 10_000);
    p.conflict(5);
    assert_eq!(
        p.workers[0].request("/?user_key=k").1,
        Next::Continue,
        "five lost writes, then the share"
    );
    assert!(authrep_calls(&p.workers[0]).is_empty());

    let mut p = envoy(1);
    cached(&mut p, "k", 1, 10_000);
    p.conflict(u32::try_from(crate::shared::MAX_RETRIES).unwrap());
    assert_eq!(
        p.workers[0].request("/?user_key=k").1,
        Next::Pause,
        "every write lost: ask"
    );
    p.deliver();
    assert_eq!(authrep_calls(&p.workers[0]).len(), 1);
}

#[test]
fn past_its_bound_a_vm_drops_its_shares_and_takes_them_again_from_the_shared_cache() {
    let p = envoy(1);
    let host = p.workers[0].host.clone();
    let vm = crate::vm::SharedVm::default();
    vm.borrow_mut().config = Some(std::rc::Rc::new(
        crate::config::PluginConfig::parse(CONFIG.as_bytes()).unwrap(),
    ));
    let services = crate::service::Services::parse_proxy_configs(PROXY_CONFIGS.as_bytes()).unwrap();
    let service = &services.services[0];
    let usage = vec![("hits".to_string(), 1)];
    let entry = crate::cache::Entry {
        denial: None,
        expires_at_ms: p.now_ms() + 60_000,
        quotas: vec![crate::cache::Quota {
            metrics: vec!["hits".into()],
            ends_at_ms: None,
            max: 1_000_000,
            remaining: 1_000_000,
            confirmed: false,
            weights: vec![],
        }],
    };
    for i in 0..=crate::vm::MAX_LOCAL_ENTRIES {
        let key = format!("7/k{i}");
        crate::vm::put_entry(&host, &vm, &key, &entry);
        let looked = crate::vm::from_cache(&host, &vm, service, &key, &usage, None);
        assert_eq!(looked.step, crate::authrep::allowed());
    }
    assert_eq!(
        vm.borrow().local.len(),
        1,
        "cleared at the bound, then the newest share"
    );
    let looked = crate::vm::from_cache(&host, &vm, service, "7/k0", &usage, None);
    assert_eq!(
        looked.step,
        crate::authrep::allowed(),
        "an evicted share comes back from the shared cache"
    );
}

/// Serves `n` requests from the cache, counts them into shared data and makes the report due:
/// the report call in flight.
fn report_in_flight(p: &mut Process, n: usize) -> crate::fake::Sent {
    p.workers[0].request("/?user_key=k");
    p.deliver();
    let call = authrep_calls(&p.workers[0]).remove(0);
    let answer = usage(p, true, 1, 1000);
    p.workers[0].answer(call.token, Some("200"), &answer);
    for _ in 0..n {
        assert_eq!(p.workers[0].request("/?user_key=k").1, Next::Continue);
    }
    p.advance(1000);
    p.workers[0].tick();
    p.workers[0].call_to("/transactions.json")
}

#[test]
fn a_reports_answer_acknowledges_drops_or_retries_its_batch() {
    // 202: acknowledged, gone from the outbox.
    let mut p = envoy(1);
    let report = report_in_flight(&mut p, 3);
    let body = String::from_utf8(report.body.clone().unwrap_or_default()).unwrap();
    assert!(body.contains(r#""hits":3"#), "{body}");
    p.workers[0].answer(report.token, Some("202"), b"");
    p.advance(10_000);
    p.workers[0].tick();
    assert!(
        p.workers[0].calls().iter().all(|c| c.path() != "/transactions.json"),
        "nothing left to send"
    );
    assert_eq!(p.metric("tollgate.batches_sent"), 1);

    // A 4xx for good: dropped, and counted as dropped.
    let mut p = envoy(1);
    let report = report_in_flight(&mut p, 2);
    p.workers[0].answer(report.token, Some("403"), b"service_token_invalid");
    p.advance(10_000);
    p.workers[0].tick();
    assert!(p.workers[0].calls().iter().all(|c| c.path() != "/transactions.json"));
    assert_eq!(p.metric("tollgate.usage_dropped"), 1);
    assert!(p
        .logs()
        .iter()
        .any(|l| l.contains("refused (403): service_token_invalid")));

    // No answer, a 5xx, 409, 429: the same batch again, later.
    for status in [None, Some("500"), Some("409"), Some("429")] {
        let mut p = envoy(1);
        let report = report_in_flight(&mut p, 2);
        p.workers[0].answer(report.token, status, b"");
        p.workers[0].tick();
        assert!(
            p.workers[0].calls().iter().all(|c| c.path() != "/transactions.json"),
            "backs off first"
        );
        p.advance(5_000);
        p.workers[0].tick();
        let again = p.workers[0].call_to("/transactions.json");
        assert_eq!(again.body, report.body, "{status:?}: the same batch, under the same id");
        assert_eq!(p.metric("tollgate.batches_failed"), 1);
    }
}

#[test]
fn stopping_sends_what_was_counted_and_tells_envoy_when_it_is_answered() {
    let mut p = envoy(1);
    assert!(p.workers[0].root.stop(), "nothing counted: done at once");

    let mut p = envoy(1);
    p.workers[0].request("/?user_key=k");
    p.deliver();
    let call = authrep_calls(&p.workers[0]).remove(0);
    let answer = usage(&p, true, 1, 1000);
    p.workers[0].answer(call.token, Some("200"), &answer);
    p.workers[0].request("/?user_key=k");
    p.workers[0].request("/?user_key=k");
    // No tick since: the usage is still in the VM's memory, and the report not due.
    assert!(!p.workers[0].root.stop(), "a report is in flight");
    let report = p.workers[0].call_to("/transactions.json");
    assert!(String::from_utf8_lossy(report.body.as_deref().unwrap_or_default()).contains(r#""hits":2"#));
    assert!(!p.workers[0].is_done());
    p.workers[0].answer(report.token, Some("202"), b"");
    assert!(p.workers[0].is_done());
}

/// What the test does next.
#[derive(Debug, Clone)]
enum Op {
    Request {
        worker: usize,
        key: u8,
    },
    Deliver,
    /// Answers the oldest call of `worker` to the control plane, as `answer` says.
    Answer {
        worker: usize,
        answer: u8,
    },
    Tick {
        worker: usize,
    },
    Advance {
        ms: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..2usize, 0..3u8).prop_map(|(worker, key)| Op::Request { worker, key }),
        2 => Just(Op::Deliver),
        2 => (0..2usize, 0..4u8).prop_map(|(worker, answer)| Op::Answer { worker, answer }),
        1 => (0..2usize).prop_map(|worker| Op::Tick { worker }),
        1 => (0..800u64).prop_map(|ms| Op::Advance { ms }),
    ]
}

/// The answer numbered `n`: allowed, over the limit, a key the control plane does not know,
/// no answer at all.
fn answer_for(p: &Process, n: u8) -> (Option<&'static str>, Vec<u8>) {
    match n {
        0 => (Some("200"), usage(p, true, 1, 100)),
        1 => (Some("200"), usage(p, false, 100, 100)),
        2 => (
            Some("403"),
            br#"{"authorized":false,"rejection_reason":"user_key_invalid"}"#.to_vec(),
        ),
        _ => (None, Vec::new()),
    }
}

fn answer_oldest(p: &mut Process, worker: usize, n: u8) -> bool {
    let Some(call) = p.workers[worker].calls().into_iter().next() else {
        return false;
    };
    let (status, body) = match call.path() {
        path if path.starts_with("/transactions/auth") => answer_for(p, n),
        "/transactions.json" => (Some("202"), Vec::new()),
        _ => (Some("200"), PROXY_CONFIGS.as_bytes().to_vec()),
    };
    p.workers[worker].answer(call.token, status, &body);
    true
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the order of requests, answers, queue deliveries, ticks and time across two
    /// workers, every request ends let through or answered, exactly once, and none is left
    /// waiting once the calls are answered and the claims have run out.
    #[test]
    fn every_request_is_let_through_or_answered_exactly_once(ops in proptest::collection::vec(op(), 1..60)) {
        let mut p = envoy(2);
        let mut continued: Vec<Vec<u32>> = vec![Vec::new(), Vec::new()];
        let mut requests: Vec<Vec<u32>> = vec![Vec::new(), Vec::new()];
        for op in ops {
            match op {
                Op::Request { worker, key } => {
                    let (context, next) = p.workers[worker].request(&format!("/?user_key=k{key}"));
                    requests[worker].push(context);
                    if next == Next::Continue {
                        continued[worker].push(context);
                    }
                }
                Op::Deliver => p.deliver(),
                Op::Answer { worker, answer } => {
                    answer_oldest(&mut p, worker, answer);
                }
                Op::Tick { worker } => p.workers[worker].tick(),
                Op::Advance { ms } => p.advance(ms),
            }
        }
        // Drain: deliver, answer everything (allowed), let claims run out, tick.
        for _ in 0..10 {
            p.deliver();
            for worker in 0..2 {
                while answer_oldest(&mut p, worker, 0) {}
            }
            p.advance(1_000);
            for worker in 0..2 {
                p.workers[worker].tick();
            }
        }
        for worker in 0..2 {
            let w = &p.workers[worker];
            let (resumed, replies) = (w.resumed(), w.replies());
            for context in &requests[worker] {
                let times = continued[worker].iter().filter(|c| *c == context).count()
                    + resumed.iter().filter(|c| *c == context).count()
                    + replies.iter().filter(|r| r.context == *context).count();
                prop_assert_eq!(times, 1, "worker {} request {}: continued {:?} resumed {:?} replies {:?}",
                    worker, context, continued[worker], resumed, replies);
            }
        }
    }
}
