//! Helpers for the end-to-end tests and the demo: the demo upstream, and a harness that starts
//! the real processes (control plane in-process, Envoy through `scripts/envoy.sh`).

use axum::extract::Request;
use axum::routing::any;
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// The demo API behind Envoy: answers every request with a JSON echo of it.
pub fn demo_router() -> Router {
    Router::new().fallback(any(echo))
}

async fn echo(req: Request) -> Json<Value> {
    let headers: serde_json::Map<String, Value> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_str().unwrap_or("").to_string())))
        .collect();
    Json(json!({
        "upstream": "tollgate-demo",
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "query": req.uri().query(),
        "headers": headers,
    }))
}

/// Serves the demo upstream on `listener` until the task is dropped.
pub async fn serve_demo(listener: TcpListener) -> std::io::Result<()> {
    axum::serve(listener, demo_router()).await
}

/// A TCP proxy to `target` that holds every chunk a client sends for `delay` before passing it
/// on: a slow control plane, so that requests pile up behind one call. Runs until the runtime
/// stops.
pub async fn delaying_proxy(target: std::net::SocketAddr, delay: std::time::Duration) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
    let addr = listener.local_addr().expect("the proxy's address");
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let upstream = async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n @ 1..) = client_read.read(&mut buf).await {
                        tokio::time::sleep(delay).await;
                        if server_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                };
                let downstream = async move {
                    let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                };
                tokio::join!(upstream, downstream);
            });
        }
    });
    addr
}

/// Real Envoy, started through `scripts/envoy.sh` (the same script users run), stopped on drop.
pub struct Envoy {
    child: std::process::Child,
    pub port: u16,
    pub admin_port: u16,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

impl Envoy {
    /// Starts Envoy with `env` (TOLLGATE_* variables) on fresh ports. Panics with Envoy's log if
    /// it does not come up.
    pub fn start(env: &[(&str, String)]) -> std::io::Result<Envoy> {
        let wasm = repo_root().join("target/tollgate_filter.wasm");
        if !wasm.exists() {
            return Err(std::io::Error::other(format!(
                "{} is missing: run scripts/build-filter.sh",
                wasm.display()
            )));
        }
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("envoy.log");
        let (port, admin_port) = (free_port(), free_port());
        let mut cmd = std::process::Command::new(repo_root().join("scripts/envoy.sh"));
        cmd.env("TOLLGATE_ENVOY_PORT", port.to_string())
            .env("TOLLGATE_ENVOY_ADMIN_PORT", admin_port.to_string())
            .env("TOLLGATE_ENVOY_CONFIG_OUT", dir.path().join("envoy.yaml"))
            .env("TOLLGATE_WASM", &wasm)
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::File::create(dir.path().join("envoy.err"))?);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn()?;
        Ok(Envoy {
            child,
            port,
            admin_port,
            log,
            _dir: dir,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// Envoy's own output so far (for assertion messages).
    pub fn output(&self) -> String {
        let err = self.log.with_file_name("envoy.err");
        format!(
            "{}{}",
            std::fs::read_to_string(&self.log).unwrap_or_default(),
            std::fs::read_to_string(err).unwrap_or_default()
        )
    }

    /// Waits until Envoy's admin says it is live, or the process exits.
    pub async fn wait_ready(&mut self, timeout: std::time::Duration) -> Result<(), String> {
        let deadline = std::time::Instant::now() + timeout;
        let ready = format!("http://127.0.0.1:{}/ready", self.admin_port);
        let client = reqwest::Client::new();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("envoy exited ({status}):\n{}", self.output()));
            }
            if let Ok(r) = client.get(&ready).send().await {
                if r.status() == 200 {
                    return Ok(());
                }
            }
            if std::time::Instant::now() > deadline {
                return Err(format!("envoy not ready after {timeout:?}:\n{}", self.output()));
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// The filter's stats as Envoy shows them (`wasmcustom.tollgate.*`), by short name (empty
    /// when the admin does not answer).
    pub async fn filter_stats(&self) -> std::collections::HashMap<String, u64> {
        let url = format!("http://127.0.0.1:{}/stats?filter=tollgate", self.admin_port);
        let text = match reqwest::get(url).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        text.lines()
            .filter_map(|l| {
                let (name, value) = l.split_once(": ")?;
                let name = name.split("tollgate.").nth(1)?;
                Some((name.to_string(), value.trim().parse().ok()?))
            })
            .collect()
    }

    /// Asks Envoy to shut down the way an operator does (`POST /quitquitquit` on its admin) and
    /// waits for it to exit.
    pub async fn quit(&mut self, timeout: std::time::Duration) -> Option<std::process::ExitStatus> {
        let _ = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/quitquitquit", self.admin_port))
            .send()
            .await;
        self.wait_exit(timeout).await
    }

    /// Waits for the process to exit by itself; its exit status, or None on timeout.
    pub async fn wait_exit(&mut self, timeout: std::time::Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        None
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
