//! `pace URL --rate R [--duration 3s] [--connections 32]`: HTTP/1.1 GETs at a constant rate,
//! evenly spaced, over keep-alive connections; prints `p50 p99` latency in milliseconds (and,
//! on stderr, what was sent).
//!
//! Why not `oha -q`: oha schedules each request with tokio's timer, whose resolution is one
//! millisecond, so at 13,000 requests/s they leave in bursts of 13 every millisecond and queue
//! behind each other in Envoy: latency "at half load" then measures oha's bursts. And oha times
//! a request from when it is sent, so a stall in the server that keeps requests from being sent
//! does not show in its percentiles. Here request
//! `i` is due at `start + i / rate`, to the microsecond (a `timerfd` in the same epoll set as
//! the connections), and its latency counts from that due time, not from when it was sent: a
//! request that waits for a free connection waits on the clock, as in wrk2 (no coordinated
//! omission). One thread drives all the connections through epoll: on a 2-core machine shared
//! with Envoy and the upstream, a thread per connection would put the scheduler's noise into
//! the figures it is meant to measure.

use clap::Parser;
use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "HTTP/1.1 GETs at a constant, evenly spaced rate; prints p50 and p99 in ms")]
struct Args {
    /// `http://HOST:PORT/PATH?QUERY`
    url: String,
    /// Requests per second.
    #[arg(long)]
    rate: u64,
    /// How long to send for: `3s`, `500ms`.
    #[arg(long, default_value = "3s", value_parser = duration)]
    duration: Duration,
    #[arg(long, default_value_t = 32)]
    connections: usize,
}

fn duration(s: &str) -> Result<Duration, String> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n.parse().map_err(|_| format!("not a duration: {s}"))?;
    match unit {
        "s" | "" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        _ => Err(format!("not a duration: {s} (use s or ms)")),
    }
}

/// The epoll token of the timer; a connection's is its index.
const TIMER: u64 = u64::MAX;
/// How long after the last due time answers are waited for.
const GRACE: Duration = Duration::from_secs(10);

/// One keep-alive connection and the request it carries, if any.
struct Conn {
    stream: TcpStream,
    /// The due time of the request in flight.
    due: Option<Instant>,
    buf: Vec<u8>,
    filled: usize,
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    let rest = args
        .url
        .strip_prefix("http://")
        .ok_or("url: only http:// is supported")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let request = format!("GET {path} HTTP/1.1\r\nhost: {authority}\r\n\r\n").into_bytes();
    if args.rate == 0 {
        return Err("rate: must be above 0".into());
    }
    if args.connections == 0 {
        return Err("connections: must be above 0".into());
    }
    let interval = Duration::from_nanos(1_000_000_000 / args.rate);
    let total = args.rate.saturating_mul(args.duration.as_millis() as u64) / 1000;
    let (latencies, errors) =
        run(authority, &request, args.connections, interval, total).map_err(|e| format!("pace: {e}"))?;
    let mut all = latencies;
    all.sort_unstable();
    let at = |q: f64| {
        let i = ((all.len() as f64 * q).ceil() as usize).saturating_sub(1);
        all.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    eprintln!(
        "pace: {} answered at {}/s over {} connections, {errors} errors; ms: p90 {:.3} p99.9 {:.3} max {:.3}",
        all.len(),
        args.rate,
        args.connections,
        at(0.90),
        at(0.999),
        at(1.0)
    );
    println!("{:.3} {:.3}", at(0.50), at(0.99));
    Ok(())
}

fn check(ret: i32) -> std::io::Result<i32> {
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn watch(epoll: &OwnedFd, fd: RawFd, token: u64) -> std::io::Result<()> {
    let mut event = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: token,
    };
    // SAFETY: both descriptors are open; `event` outlives the call.
    check(unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event) }).map(drop)
}

/// Arms the timer for `at` (absolute, on the monotonic clock `Instant` uses).
fn arm(timer: &OwnedFd, at: Instant, origin: (Instant, Duration)) -> std::io::Result<()> {
    let since = at.saturating_duration_since(origin.0) + origin.1;
    let spec = libc::itimerspec {
        it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
        it_value: libc::timespec {
            tv_sec: since.as_secs() as libc::time_t,
            // A zero value would disarm the timer.
            tv_nsec: (since.subsec_nanos().max(1)) as libc::c_long,
        },
    };
    // SAFETY: `timer` is an open timerfd; `spec` outlives the call.
    check(unsafe { libc::timerfd_settime(timer.as_raw_fd(), libc::TFD_TIMER_ABSTIME, &spec, std::ptr::null_mut()) })
        .map(drop)
}

fn monotonic_now() -> Duration {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a valid timespec to write.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Sends `total` requests, one every `interval`; the latencies of the 2xx answers and the count
/// of everything else.
fn run(
    authority: &str,
    request: &[u8],
    connections: usize,
    interval: Duration,
    total: u64,
) -> std::io::Result<(Vec<Duration>, u64)> {
    // SAFETY: plain constructors; each result is checked before it is owned.
    let epoll = unsafe { OwnedFd::from_raw_fd(check(libc::epoll_create1(libc::EPOLL_CLOEXEC))?) };
    let timer = unsafe {
        OwnedFd::from_raw_fd(check(libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
        ))?)
    };
    watch(&epoll, timer.as_raw_fd(), TIMER)?;
    let mut conns = Vec::with_capacity(connections);
    for i in 0..connections {
        let stream = TcpStream::connect(authority)?;
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        watch(&epoll, stream.as_raw_fd(), i as u64)?;
        conns.push(Conn {
            stream,
            due: None,
            buf: vec![0; 64 * 1024],
            filled: 0,
        });
    }
    let mut idle: Vec<usize> = (0..connections).rev().collect();
    // Due requests that found no free connection, oldest first.
    let mut waiting: VecDeque<Instant> = VecDeque::new();
    let mut latencies = Vec::with_capacity(total as usize);
    let mut errors = 0u64;
    let origin = (Instant::now(), monotonic_now());
    let start = origin.0 + Duration::from_millis(50);
    let end = start + interval * u32::try_from(total).unwrap_or(u32::MAX) + GRACE;
    let mut sent = 0u64;
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; connections + 1];
    arm(&timer, start, origin)?;
    while (sent < total || idle.len() < connections || !waiting.is_empty()) && Instant::now() < end {
        // SAFETY: `events` has room for `events.len()` entries.
        let ready =
            check(unsafe { libc::epoll_wait(epoll.as_raw_fd(), events.as_mut_ptr(), events.len() as i32, 1000) })
                .or_else(|e| {
                    if e.kind() == ErrorKind::Interrupted {
                        Ok(0)
                    } else {
                        Err(e)
                    }
                })?;
        for event in events.iter().take(ready as usize) {
            let token = event.u64;
            if token == TIMER {
                let mut expirations = [0u8; 8];
                // SAFETY: reading 8 bytes into an 8-byte buffer.
                unsafe { libc::read(timer.as_raw_fd(), expirations.as_mut_ptr().cast(), 8) };
                let now = Instant::now();
                while sent < total {
                    let due = start + interval * sent as u32;
                    if due > now {
                        arm(&timer, due, origin)?;
                        break;
                    }
                    sent += 1;
                    waiting.push_back(due);
                }
            } else if let Some(conn) = conns.get_mut(token as usize) {
                match receive(conn) {
                    Ok(None) => continue,
                    Ok(Some(ok)) => {
                        let due = conn.due.take().ok_or_else(|| {
                            std::io::Error::new(
                                ErrorKind::InvalidData,
                                format!("connection {token}: an answer nothing asked for"),
                            )
                        })?;
                        if ok {
                            latencies.push(due.elapsed());
                        } else {
                            errors += 1;
                        }
                        idle.push(token as usize);
                    }
                    Err(e) => return Err(std::io::Error::new(e.kind(), format!("connection {token}: {e}"))),
                }
            }
        }
        while let (Some(&due), Some(&i)) = (waiting.front(), idle.last()) {
            let Some(conn) = conns.get_mut(i) else { break };
            waiting.pop_front();
            idle.pop();
            // A request this small goes into an idle socket's buffer whole.
            conn.stream.write_all(request)?;
            conn.due = Some(due);
            conn.filled = 0;
        }
    }
    errors += waiting.len() as u64 + (connections - idle.len()) as u64 + (total - sent);
    Ok((latencies, errors))
}

/// Reads what the socket has; `Some(is 2xx)` once the whole response (with `content-length`)
/// is in.
fn receive(conn: &mut Conn) -> std::io::Result<Option<bool>> {
    let bad = |what: &str| std::io::Error::new(ErrorKind::InvalidData, what.to_string());
    loop {
        let room = conn
            .buf
            .get_mut(conn.filled..)
            .filter(|r| !r.is_empty())
            .ok_or_else(|| bad("response too large"))?;
        match conn.stream.read(room) {
            Ok(0) => return Err(bad("connection closed")),
            Ok(n) => conn.filled += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(conn.buf.get(..conn.filled).unwrap_or_default()) {
        Ok(httparse::Status::Complete(head)) => head,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(bad("bad response")),
    };
    let length = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse::<usize>().ok())
        .ok_or_else(|| bad("no content-length"))?;
    if conn.filled < head + length {
        return Ok(None);
    }
    if conn.filled > head + length {
        return Err(bad("more than one response"));
    }
    Ok(Some(response.code.is_some_and(|c| (200..300).contains(&c))))
}
