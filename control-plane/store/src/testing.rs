//! Redis servers the tests start for themselves: a single `redis-server` on a free port (for a
//! test that kills it), and a Redis Cluster of real `redis-server --cluster-enabled yes`
//! processes joined by `redis-cli --cluster create` (for the cluster conformance run and the
//! failover test). Every server is started by one thread that lives as long as the test binary
//! and dies with it (`PR_SET_PDEATHSIG` fires when the thread that forked exits), so a test
//! that panics or a binary that exits leaves none behind.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test harness: a panic is a failure report

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A port that is free now, whose cluster bus port (+10000) is free as well.
pub fn free_port() -> u16 {
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if port < 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// Starts `cmd` from the one thread that lives until the binary exits, killed when it does.
fn spawn_for_good(mut cmd: Command) -> std::io::Result<Child> {
    type Request = (Command, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::spawn(move || {
            // Ends only with the binary: while it lives, so do the servers it started.
            for (mut cmd, reply) in rx {
                let _ = reply.send(cmd.spawn());
            }
            loop {
                std::thread::park();
            }
        });
        Mutex::new(tx)
    });
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
    let (reply, answer) = mpsc::channel();
    spawner
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((cmd, reply))
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))?;
    answer
        .recv()
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))?
}

/// Waits for `ready` (polling, 20 ms apart) or fails after `limit` saying `what`.
fn wait_until(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One `redis-server` process.
pub struct RedisServer {
    child: Child,
    pub port: u16,
}

impl RedisServer {
    /// A server on `port`; `cluster_dir`: a cluster node keeping its node file there.
    pub fn start(port: u16, cluster_dir: Option<&Path>) -> RedisServer {
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]);
        if let Some(dir) = cluster_dir {
            cmd.args(["--cluster-enabled", "yes", "--cluster-node-timeout", "1000"])
                .arg("--cluster-config-file")
                .arg(dir.join(format!("nodes-{port}.conf")))
                .arg("--dir")
                .arg(dir);
        }
        cmd.stdout(Stdio::null());
        let child = spawn_for_good(cmd).expect("redis-server (scripts/setup.sh installs it)");
        wait_until("redis-server starting", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        RedisServer { child, port }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops the server answering without losing what it holds (SIGSTOP: a hung node).
    pub fn pause(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    /// Lets a paused server answer again (SIGCONT).
    pub fn resume(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signalling redis-server");
    }

    /// Kills the server at once (SIGKILL: no chance to tell anyone).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis Cluster on loopback: `masters` masters with `replicas` replicas each.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    pub fn start(masters: usize, replicas: usize) -> RedisCluster {
        let dir = tempfile::tempdir().unwrap();
        let nodes: Vec<RedisServer> = (0..masters * (1 + replicas))
            .map(|_| RedisServer::start(free_port(), Some(dir.path())))
            .collect();
        let status = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli (scripts/setup.sh installs it)");
        assert!(status.success(), "redis-cli --cluster create failed");
        let cluster = RedisCluster { nodes, _dir: dir };
        for node in &cluster.nodes {
            let port = node.port;
            wait_until("the cluster agreeing on its slots", Duration::from_secs(30), || {
                cluster_info(port).is_some_and(|info| info.contains("cluster_state:ok"))
            });
        }
        // A replica serves its master's slots only once it has synced with it.
        let expected = masters * replicas;
        wait_until("the replicas syncing", Duration::from_secs(30), || {
            cluster
                .nodes
                .iter()
                .filter(|n| role(n.port).as_deref() == Some("slave:synced"))
                .count()
                >= expected
        });
        cluster
    }

    /// The URL Tollgate takes for it: every node, comma-separated.
    pub fn url(&self) -> String {
        self.nodes.iter().map(RedisServer::url).collect::<Vec<_>>().join(",")
    }

    /// The node serving `key` as master now, as the first node that answers sees it.
    pub fn master_of(&self, key: &str) -> usize {
        self.serving(key).expect("a master serving the key's slot")
    }

    /// The node serving `key` as master now, if one does (none while a master is failing).
    fn serving(&self, key: &str) -> Option<usize> {
        let port = self
            .nodes
            .iter()
            .map(|n| n.port)
            .find(|p| cluster_info(*p).is_some())
            .expect("a node that answers");
        let reply = redis_cli(port, &["CLUSTER", "KEYSLOT", key]);
        let slot: u16 = reply.trim().parse().unwrap();
        let nodes = redis_cli(port, &["CLUSTER", "NODES"]);
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let serves = fields[8..].iter().any(|range| match range.split_once('-') {
                Some((a, b)) => (a.parse::<u16>().unwrap_or(1)..=b.parse::<u16>().unwrap_or(0)).contains(&slot),
                None => range.parse::<u16>().ok() == Some(slot),
            });
            if serves {
                let port: u16 = fields[1].split(['@', ':']).nth(1).and_then(|p| p.parse().ok()).unwrap();
                return self.nodes.iter().position(|n| n.port == port);
            }
        }
        None
    }

    /// Waits until a replica has taken over `key`'s slot from the killed master `killed` and
    /// the cluster is whole again.
    pub fn wait_for_failover(&self, key: &str, killed: usize, limit: Duration) {
        let alive: Vec<u16> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != killed)
            .map(|(_, n)| n.port)
            .collect();
        wait_until("a replica taking over", limit, || {
            self.serving(key).is_some_and(|m| m != killed)
                && alive
                    .iter()
                    .all(|p| cluster_info(*p).is_some_and(|info| info.contains("cluster_state:ok")))
        });
    }
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn cluster_info(port: u16) -> Option<String> {
    let info = redis_cli(port, &["CLUSTER", "INFO"]);
    (!info.is_empty()).then_some(info)
}

/// `master`, or `slave:synced` / `slave:syncing` for a replica.
fn role(port: u16) -> Option<String> {
    let info = redis_cli(port, &["INFO", "replication"]);
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
    };
    match field("role:")?.as_str() {
        "slave" => Some(format!(
            "slave:{}",
            if field("master_link_status:").as_deref() == Some("up") {
                "synced"
            } else {
                "syncing"
            }
        )),
        other => Some(other.to_string()),
    }
}

/// One 3-master cluster for a whole test binary, started by the first test that asks: its
/// servers live on a thread of their own until the binary exits (tests share it with their
/// own key prefixes).
pub fn shared_cluster_url() -> String {
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    // Never dropped: its servers die with the binary.
    CLUSTER.get_or_init(|| RedisCluster::start(3, 0)).url()
}
