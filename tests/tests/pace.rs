//! `pace`, the benchmarks' constant-rate load, against the demo upstream: every request due is
//! sent and answered, and what it prints is what the bench scripts read (`p50 p99` in ms).

use std::process::Command;

async fn demo_upstream() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(tollgate_e2e::serve_demo(listener));
    format!("http://{addr}/bench?user_key=k")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pace_sends_every_request_due_and_prints_p50_and_p99() {
    let url = demo_upstream().await;
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_pace"))
            .args([
                url.as_str(),
                "--rate",
                "1000",
                "--duration",
                "500ms",
                "--connections",
                "4",
            ])
            .output()
            .expect("pace runs")
    })
    .await
    .expect("joined");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "pace failed: {stderr}");
    assert!(
        stderr.contains("500 answered at 1000/s over 4 connections, 0 errors"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let figures: Vec<f64> = stdout
        .split_whitespace()
        .map(|f| f.parse().expect("a number"))
        .collect();
    assert!(
        matches!(figures[..], [p50, p99] if 0.0 < p50 && p50 <= p99),
        "not `p50 p99`: {stdout}"
    );
}

#[test]
fn pace_refuses_what_it_cannot_do() {
    for (args, says) in [
        (vec!["https://example.com/", "--rate", "10"], "only http://"),
        (vec!["http://127.0.0.1:1/", "--rate", "0"], "rate: must be above 0"),
        (
            vec!["http://127.0.0.1:1/", "--rate", "10", "--duration", "3m"],
            "not a duration",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_pace"))
            .args(&args)
            .output()
            .expect("pace runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(says), "{args:?}: {stderr}");
    }
}
