//! proxy-wasm adapter: reads what the core needs from Envoy and carries out its steps. The
//! decisions live in the core ([`crate::decision`], [`crate::cache`], [`crate::authrep`],
//! [`crate::report`]); this module only moves bytes between them and the host.
//!
//! Per worker VM: a root context fetches the services' configuration, moves the usage its
//! requests counted into shared data every tick, flushes usage (when it holds the flusher
//! lease), sends report batches, and makes the authorization calls. Request contexts serve from
//! the VM's own share of an application's quota ([`cache::reserve`]): no host call on the hot
//! path. A request the share cannot serve takes a new share from the shared cache. When that
//! cannot serve either, the request waits, and wakes the root context through the VM's shared
//! queue: the root makes one call per application for all the requests of its VM that wait on
//! it, or, when another worker is asking already ([`inflight`]), waits for that worker's word.
//! The root context outlives any request, so a client that leaves does not strand the others.

use crate::authrep::{self, Count, Fetch, Step};
use crate::cache::{self, Entry};
use crate::config::PluginConfig;
use crate::decision::{decide, Call, Decision};
use crate::inflight;
use crate::report::{self, App};
use crate::request::RequestHead;
use crate::service::{ErrorResponse, Service, Services};
use crate::shared::{SetError, SharedData};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType, Status};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

const PROXY_CONFIGS_PATH: &str = "/admin/api/account/proxy_configs/production.json";
/// The root context's tick: report and refresh deadlines are checked this often.
const TICK_MS: u64 = 100;
/// How long the flusher lease lasts without renewal.
const LEASE_MS: u64 = 5_000;
/// Bound on the applications a VM keeps a share for; past it, the shares are dropped (the
/// shared cache still has the entries).
const MAX_LOCAL_ENTRIES: usize = 10_000;
/// Numbers the VMs of an Envoy process, for their names (`Root::me`).
const VM_SEQUENCE: &str = "tollgate:vms";

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        Box::new(Root {
            context_id,
            ..Root::default()
        })
    });
}}

/// Shared data through the host.
struct Host;

impl SharedData for Host {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        hostcalls::get_shared_data(key).unwrap_or((None, None))
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError> {
        match hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(SetError::CasMismatch),
            Err(e) => Err(SetError::Host(format!("{e:?}"))),
        }
    }
}

fn now_nanos() -> u128 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos())
}

fn now_ms() -> u64 {
    (now_nanos() / 1_000_000) as u64
}

/// The filter's Envoy stats (`tollgate.*`), defined once per VM.
#[derive(Default, Clone, Copy)]
struct Stats {
    requests: u32,
    allowed: u32,
    denied_auth: u32,
    denied_limits: u32,
    denied_credits: u32,
    denied_other: u32,
    cache_hits: u32,
    cache_misses: u32,
    authrep_calls: u32,
    authrep_failures: u32,
    cross_worker_waits: u32,
    batches_sent: u32,
    batches_failed: u32,
    usage_dropped: u32,
    buffered_batches: u32,
}

impl Stats {
    fn define() -> Stats {
        let counter = |name: &str| hostcalls::define_metric(MetricType::Counter, name).unwrap_or(0);
        Stats {
            requests: counter("tollgate.requests"),
            allowed: counter("tollgate.allowed"),
            denied_auth: counter("tollgate.denied.auth"),
            denied_limits: counter("tollgate.denied.limits"),
            denied_credits: counter("tollgate.denied.credits"),
            denied_other: counter("tollgate.denied.other"),
            cache_hits: counter("tollgate.cache_hits"),
            cache_misses: counter("tollgate.cache_misses"),
            authrep_calls: counter("tollgate.authrep_calls"),
            authrep_failures: counter("tollgate.authrep_failures"),
            cross_worker_waits: counter("tollgate.cross_worker_waits"),
            batches_sent: counter("tollgate.batches_sent"),
            batches_failed: counter("tollgate.batches_failed"),
            usage_dropped: counter("tollgate.usage_dropped"),
            buffered_batches: hostcalls::define_metric(MetricType::Gauge, "tollgate.buffered_batches").unwrap_or(0),
        }
    }

    /// Counts one; the counts reach Envoy at the next tick ([`Stats::publish`]), so the
    /// request path makes no host call for its stats.
    fn bump(id: u32) {
        UNPUBLISHED.with(|u| {
            let mut u = u.borrow_mut();
            match u.iter_mut().find(|(i, _)| *i == id) {
                Some((_, n)) => *n += 1,
                None => u.push((id, 1)),
            }
        });
    }

    fn publish() {
        UNPUBLISHED.with(|u| {
            for (id, n) in u.borrow_mut().drain(..) {
                let _ = hostcalls::increment_metric(id, n);
            }
        });
    }

    fn denied(&self, r: &ErrorResponse) {
        Self::bump(match r.status {
            401 | 403 => self.denied_auth,
            429 => self.denied_limits,
            402 => self.denied_credits,
            _ => self.denied_other,
        });
    }
}

thread_local! {
    /// Counter increments not yet handed to Envoy, per metric id: a dozen at most, so a list
    /// beats hashing.
    static UNPUBLISHED: RefCell<Vec<(u32, i64)>> = const { RefCell::new(Vec::new()) };
}

/// A request waiting for another request's call on the same application.
struct Waiter {
    context_id: u32,
    call: Call,
    served: Served,
}

/// Set when a request is let through: `Some(unverified)`; its response code is counted when
/// it completes.
type Served = Rc<RefCell<Option<bool>>>;

/// What the root context shares with the request contexts of its VM.
#[derive(Default)]
struct Shared {
    config: Option<Rc<PluginConfig>>,
    services: Option<Rc<Services>>,
    stats: Stats,
    /// Per cache key with a call in flight in this VM: the requests waiting for its answer.
    waiting: HashMap<String, Vec<Waiter>>,
    /// This VM's shares of the shared entries, per cache key, with what the shared entry held
    /// beyond each share when it was taken (for the `RateLimit-*` headers).
    local: HashMap<String, (Entry, Vec<i64>)>,
    /// Usage served by this VM and not yet moved to shared data.
    usage: HashMap<App, report::Pending>,
    /// Cache keys whose waiting requests need a call (the root context makes it).
    asks: Vec<String>,
    /// Cache keys another worker is asking the control plane about, with until when its
    /// answer is awaited (see [`inflight`]).
    remote: HashMap<String, u64>,
    /// This VM's wake-up queue (the root context's), if the host gave one.
    queue: Option<u32>,
}

impl Shared {
    /// Moves this VM's counted usage into the shared slots (what fails stays for the next tick).
    fn move_usage(&mut self) {
        self.usage
            .retain(|app, pending| match report::record_pending(&Host, app, pending) {
                Ok(()) => false,
                Err(e) => {
                    log::warn(&format!("tollgate: counting usage failed: {e:?}; retrying"));
                    true
                }
            });
    }

    /// Counts a request let through, when it is let through (a request still upstream is
    /// counted already). Far from the limits, in this VM's memory, moved to shared data every
    /// tick. Close to them (`exact`), straight into shared data, with whatever this VM counted
    /// for the application before: the next call to the control plane must see every unit.
    fn count(&mut self, call: &Call, count: Count, exact: bool) {
        if count == Count::No {
            return;
        }
        let app = call.app(count == Count::Unverified);
        if !exact {
            // The hot path: one lookup.
            self.usage.entry(app).or_default().add(&call.usage, None);
            return;
        }
        let mut pending = self.usage.remove(&app).unwrap_or_default();
        pending.add(&call.usage, None);
        if report::record_pending(&Host, &app, &pending).is_ok() {
            return;
        }
        log::warn("tollgate: counting usage in shared data failed; counting it locally");
        self.usage.insert(app, pending);
    }
}

/// An authorization call in flight.
struct Asked {
    /// The application's cache key.
    key: String,
    service_id: u64,
    /// The request the call was made for (its context): authrep counted its usage.
    first: u32,
    fetch: Fetch,
}

#[derive(Default)]
struct Root {
    context_id: u32,
    shared: Rc<RefCell<Shared>>,
    /// This VM's name in leases and batch ids.
    me: String,
    batch_seq: u64,
    fetch_in_flight: Option<u32>,
    next_refresh_ms: u64,
    next_report_ms: u64,
    /// Report calls in flight: token → batch id.
    sending: HashMap<u32, String>,
    /// Authorization calls in flight, by token.
    asking: HashMap<u32, Asked>,
    /// `on_done` was called: flush everything, then tell the host.
    finishing: bool,
}

impl Root {
    fn config(&self) -> Option<Rc<PluginConfig>> {
        self.shared.borrow().config.clone()
    }

    /// Asks the control plane about every application whose requests wait for a call, unless
    /// another worker is asking already: then this VM waits for its word (see [`inflight`]).
    fn ask_all(&mut self) {
        let asks = std::mem::take(&mut self.shared.borrow_mut().asks);
        let Some(config) = self.config().filter(|_| !asks.is_empty()) else {
            return;
        };
        let now = now_ms();
        let until = now + config.control_plane.timeout_ms + 2 * TICK_MS;
        for key in asks {
            let (queue, stats) = {
                let shared = self.shared.borrow();
                if !shared.waiting.contains_key(&key) || shared.remote.contains_key(&key) {
                    continue;
                }
                (shared.queue, shared.stats)
            };
            if let Some(queue) = queue {
                if let Ok(inflight::Claim::Wait { until_ms }) = inflight::claim(&Host, &key, queue, now, until) {
                    Stats::bump(stats.cross_worker_waits);
                    self.shared.borrow_mut().remote.insert(key, until_ms);
                    continue;
                }
            }
            self.ask(&config, key);
        }
    }

    /// One call about the application `key`, made for the first request waiting for it.
    fn ask(&mut self, config: &PluginConfig, key: String) {
        let (stats, first) = {
            let shared = self.shared.borrow();
            let first = shared
                .waiting
                .get(&key)
                .and_then(|w| w.first())
                .map(|w| (w.context_id, w.call.clone()));
            (shared.stats, first)
        };
        let Some((first, call)) = first else { return };
        let services = services(&self.shared);
        let Some(service) = find(&services, call.service_id) else {
            // The service went away with a configuration change: let them through, as before.
            return self.settle(&key, None, &Step::Fetch);
        };
        let app = call.app(false);
        let mut pending = report::pending(&Host, &app);
        if let Some(mine) = self.shared.borrow().usage.get(&app) {
            pending.merge(mine.clone());
        }
        let pending = pending.usage;
        let (bucket, _) = Host.get(&cache::bucket_key(&key, config.cache_buckets()));
        let fetch = Fetch {
            usage: call.usage.clone(),
            counted: pending.is_empty(),
            pending,
            stale: cache::lookup(&cache::decode_bucket(bucket.as_deref()), &key),
        };
        let path = authrep::authrep_path(service, &call.credentials, &call.usage, fetch.counted);
        let headers = vec![
            (":method", "GET"),
            (":path", path.as_str()),
            (":authority", config.control_plane.authority.as_str()),
            ("3scale-options", "hierarchy=1"),
        ];
        Stats::bump(stats.authrep_calls);
        let asked = Asked {
            key,
            service_id: call.service_id,
            first,
            fetch,
        };
        match self.dispatch_http_call(&config.control_plane.cluster, headers, None, vec![], config.timeout()) {
            Ok(token) => {
                self.asking.insert(token, asked);
            }
            Err(_) => self.answered(&asked, None, b""),
        }
    }

    /// The control plane answered a call (`status` `None`: it did not). Stores the answer, tells
    /// the workers that waited for it, and settles this VM's waiting requests.
    fn answered(&mut self, asked: &Asked, status: Option<u32>, body: &[u8]) {
        let Some(config) = self.config() else { return };
        let (stats, queue) = {
            let shared = self.shared.borrow();
            (shared.stats, shared.queue)
        };
        if status.is_none_or(|s| s >= 500) {
            Stats::bump(stats.authrep_failures);
        }
        let services = services(&self.shared);
        let Some(service) = find(&services, asked.service_id) else {
            return self.settle(&asked.key, None, &Step::Fetch);
        };
        let (step, entry) = authrep::after_authrep(
            service,
            config.failure_mode,
            &asked.fetch,
            status,
            body,
            config.ttl(),
            now_ms(),
        );
        if let Some(e) = &entry {
            // A fresh answer replaces whatever is cached, this VM's share included.
            put_entry(&self.shared, &asked.key, e);
        }
        if let Some(queue) = queue {
            match inflight::release(&Host, &asked.key, queue) {
                Ok(others) if !others.is_empty() => {
                    let word = inflight::word(&asked.key, &step);
                    for other in others {
                        let _ = hostcalls::enqueue_shared_queue(other, Some(&word));
                    }
                }
                Ok(_) => {}
                // The waiting workers ask on their own once their wait runs out.
                Err(e) => log::warn(&format!("tollgate: releasing a claim failed: {e:?}")),
            }
        }
        self.settle(&asked.key, Some((asked.first, &step)), &step);
    }

    /// Settles this VM's requests waiting on `key`, each in its own context: `first` (the request
    /// the call was made for) with its step; the others from the cache, following `fetcher` (the
    /// step of the request whose call they waited for) where the cache cannot serve them.
    fn settle(&self, key: &str, first: Option<(u32, &Step)>, fetcher: &Step) {
        let Some(waiters) = self.shared.borrow_mut().waiting.remove(key) else {
            return;
        };
        let stats = self.shared.borrow().stats;
        let services = services(&self.shared);
        for w in waiters {
            let (step, exact) = match (first, find(&services, w.call.service_id)) {
                (Some((id, step)), _) if id == w.context_id => (step.clone(), true),
                (_, Some(service)) => {
                    let looked = from_cache(&self.shared, service, key, &w.call.usage, Some(fetcher));
                    (looked.step, looked.exact)
                }
                (_, None) => (Step::Fetch, false),
            };
            if hostcalls::set_effective_context(w.context_id).is_err() {
                continue; // gone meanwhile (client closed)
            }
            // (`Fetch` here: nothing to decide with; let it through as if the filter were not there.)
            if carry_out(&self.shared, Some(&w.call), &w.served, &step, exact, stats) || step == Step::Fetch {
                let _ = hostcalls::resume_http_request();
            }
        }
        let _ = hostcalls::set_effective_context(self.context_id);
    }

    /// Waits for other workers' answers that ran out: this VM asks on its own.
    fn expire_waits(&mut self, now: u64) {
        let mut shared = self.shared.borrow_mut();
        let expired: Vec<String> = shared
            .remote
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(key, _)| key.clone())
            .collect();
        for key in expired {
            shared.remote.remove(&key);
            shared.asks.push(key);
        }
    }

    fn fetch_services(&mut self) {
        let Some(config) = self.config() else { return };
        if self.fetch_in_flight.is_some() {
            return;
        }
        let auth = format!("Bearer {}", config.access_token);
        let headers = vec![
            (":method", "GET"),
            (":path", PROXY_CONFIGS_PATH),
            (":authority", config.control_plane.authority.as_str()),
            ("authorization", auth.as_str()),
        ];
        match self.dispatch_http_call(&config.control_plane.cluster, headers, None, vec![], config.timeout()) {
            Ok(token) => self.fetch_in_flight = Some(token),
            Err(status) => log::warn(&format!("tollgate: cannot fetch proxy configs: {status:?}")),
        }
    }

    /// Freezes counted usage into batches (as the lease holder) and sends what is due.
    fn flush(&mut self, now: u64) {
        let Some(config) = self.config() else { return };
        if !self.finishing && !report::try_lead(&Host, &self.me, now, LEASE_MS) {
            return;
        }
        let stats = self.shared.borrow().stats;
        match report::freeze(&Host, &self.me, &mut self.batch_seq, config.report_limits()) {
            Ok(0) => {}
            Ok(dropped) => {
                let _ = hostcalls::increment_metric(stats.usage_dropped, dropped as i64);
                log::warn(&format!("tollgate: report buffer full; dropped {dropped} batch(es)"));
            }
            Err(e) => log::warn(&format!("tollgate: freezing usage failed: {e:?}")),
        }
        let services = self.shared.borrow().services.clone();
        for batch in report::due(&Host, now) {
            if self.sending.values().any(|id| *id == batch.id) {
                continue;
            }
            let token = services
                .as_ref()
                .and_then(|s| s.services.iter().find(|s| s.id == batch.service_id))
                .map(|s| s.service_token().to_string());
            let Some(token) = token else { continue };
            let body = batch.body(&token);
            let headers = vec![
                (":method", "POST"),
                (":path", "/transactions.json"),
                (":authority", config.control_plane.authority.as_str()),
                ("content-type", "application/json"),
            ];
            match self.dispatch_http_call(
                &config.control_plane.cluster,
                headers,
                Some(&body),
                vec![],
                config.timeout(),
            ) {
                Ok(call) => {
                    self.sending.insert(call, batch.id);
                }
                Err(e) => {
                    log::warn(&format!("tollgate: cannot send report {}: {e:?}", batch.id));
                    let _ = report::failed(&Host, &batch.id, now, config.report_limits());
                }
            }
        }
        let (batches, _) = report::buffered(&Host);
        let _ = hostcalls::record_metric(stats.buffered_batches, batches as u64);
    }
}

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, body_size: usize, _trailers: usize) {
        if let Some(asked) = self.asking.remove(&token) {
            let status = self
                .get_http_call_response_header(":status")
                .and_then(|s| s.parse::<u32>().ok());
            let body = self.get_http_call_response_body(0, body_size).unwrap_or_default();
            self.answered(&asked, status, &body);
            return;
        }
        let status = self.get_http_call_response_header(":status");
        if let Some(batch) = self.sending.remove(&token) {
            let stats = self.shared.borrow().stats;
            match (status.as_deref(), self.config()) {
                (Some("202"), _) => {
                    let _ = report::acknowledged(&Host, &batch);
                    Stats::bump(stats.batches_sent);
                }
                // Refused for good (an unknown key let through while the control plane was
                // away, a service token that changed): sending it again would not help.
                (Some(code), _) if code.starts_with('4') && code != "409" && code != "429" => {
                    let body = self.get_http_call_response_body(0, body_size).unwrap_or_default();
                    let _ = report::acknowledged(&Host, &batch);
                    Stats::bump(stats.usage_dropped);
                    log::warn(&format!(
                        "tollgate: report {batch} refused ({code}): {}; dropped",
                        String::from_utf8_lossy(&body)
                    ));
                }
                (_, Some(config)) => {
                    let _ = report::failed(&Host, &batch, now_ms(), config.report_limits());
                    Stats::bump(stats.batches_failed);
                    log::warn(&format!("tollgate: report {batch} answered {status:?}; will retry"));
                }
                _ => {}
            }
            if self.finishing && self.sending.is_empty() {
                self.done();
            }
            return;
        }
        if self.fetch_in_flight != Some(token) {
            return;
        }
        self.fetch_in_flight = None;
        let body = self.get_http_call_response_body(0, body_size).unwrap_or_default();
        if status.as_deref() != Some("200") {
            log::warn(&format!(
                "tollgate: proxy configs fetch answered {status:?}; keeping the last good config"
            ));
            return;
        }
        match Services::parse_proxy_configs(&body) {
            Ok(services) => {
                let mut shared = self.shared.borrow_mut();
                let changed = shared.services.as_ref().map(|s| s.version) != Some(services.version);
                if changed {
                    log::info(&format!(
                        "tollgate: loaded {} service(s), config version {}",
                        services.services.len(),
                        services.version
                    ));
                }
                shared.services = Some(Rc::new(services));
            }
            Err(e) => log::warn(&format!(
                "tollgate: bad proxy configs ({e}); keeping the last good config"
            )),
        }
    }

    fn on_done(&mut self) -> bool {
        // Envoy is stopping this VM: what was counted goes out now.
        self.shared.borrow_mut().move_usage();
        Stats::publish();
        self.finishing = true;
        self.flush(u64::MAX);
        log::info(&format!(
            "tollgate: stopping; {} report(s) in flight",
            self.sending.len()
        ));
        self.sending.is_empty()
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        match PluginConfig::parse(&bytes) {
            Ok(config) => {
                // Every key that is updated under CAS exists before traffic (see `shared`).
                let buckets = (0..config.cache_buckets())
                    .map(cache::bucket_name)
                    .try_for_each(|k| crate::shared::ensure(&Host, &k, b"[]"));
                let slots = report::ensure_slots(&Host).and(inflight::ensure_slots(&Host));
                if let Err(e) = slots.and(buckets) {
                    log::error(&format!("tollgate: cannot prepare shared data: {e:?}"));
                    return false;
                }
                let now = now_ms();
                // Unique among the workers of one Envoy (a shared sequence; the time tells
                // apart the unlikely racers that both create it), and across restarts.
                let seq = crate::shared::next_in_sequence(&Host, VM_SEQUENCE).unwrap_or(0);
                self.me = format!("{seq}-{:x}", now_nanos());
                self.set_tick_period(std::time::Duration::from_millis(TICK_MS));
                let queue = hostcalls::register_shared_queue(&format!("tollgate:wake:{}", self.me));
                if let Err(e) = &queue {
                    log::warn(&format!(
                        "tollgate: no wake-up queue ({e:?}); misses wait for the next tick and are not collapsed across workers"
                    ));
                }
                {
                    let mut shared = self.shared.borrow_mut();
                    shared.queue = queue.ok();
                    shared.stats = Stats::define();
                    shared.config = Some(Rc::new(config));
                }
                self.next_refresh_ms = 0;
                self.next_report_ms = now;
                true
            }
            Err(e) => {
                log::error(&format!("tollgate: {e}"));
                false
            }
        }
    }

    fn on_tick(&mut self) {
        let Some(config) = self.config() else { return };
        let now = now_ms();
        self.shared.borrow_mut().move_usage();
        Stats::publish();
        self.expire_waits(now);
        self.ask_all();
        if now >= self.next_refresh_ms {
            self.next_refresh_ms = now + config.refresh_interval_ms;
            self.fetch_services();
        }
        if now >= self.next_report_ms {
            self.next_report_ms = now + config.report_interval_ms;
            self.flush(now);
        }
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        // Words from workers this VM waited for; the wake-ups of this VM's requests carry none.
        while let Ok(Some(bytes)) = hostcalls::dequeue_shared_queue(queue_id) {
            let Some((key, step)) = inflight::read_word(&bytes) else {
                continue;
            };
            // A word after the wait ran out finds the application asked about here already.
            if self.shared.borrow_mut().remote.remove(&key).is_some() {
                self.settle(&key, None, &step);
            }
        }
        self.ask_all();
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request {
            context_id,
            shared: self.shared.clone(),
            call: None,
            served: Rc::new(RefCell::new(None)),
            rate: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Request {
    context_id: u32,
    shared: Rc<RefCell<Shared>>,
    /// The application and usage this request is authorized for.
    call: Option<Call>,
    served: Served,
    /// `RateLimit-Limit`, `-Remaining`, `-Reset` for the response, if configured.
    rate: Option<(i64, i64, u64)>,
}

/// Stores a fresh entry in the shared cache (CAS: the bucket holds other applications too).
fn put_entry(shared: &Rc<RefCell<Shared>>, key: &str, entry: &Entry) {
    let buckets = shared.borrow().config.as_ref().map_or(1, |c| c.cache_buckets());
    let now = now_ms();
    let stored = crate::shared::update(&Host, &cache::bucket_key(key, buckets), |bytes| {
        let mut bucket = cache::decode_bucket(bytes);
        cache::store(&mut bucket, key, entry.clone(), now);
        (Some(cache::encode_bucket(&bucket)), ())
    });
    if let Err(e) = stored {
        log::warn(&format!("tollgate: caching an authorization failed: {e:?}"));
    }
    shared.borrow_mut().local.remove(key);
}

/// The current configuration, for finding a service in it without copying it.
fn services(shared: &Rc<RefCell<Shared>>) -> Option<Rc<Services>> {
    shared.borrow().services.clone()
}

fn find(services: &Option<Rc<Services>>, id: u64) -> Option<&Service> {
    services.as_ref()?.services.iter().find(|s| s.id == id)
}

/// What the cache said about one request.
struct Looked {
    step: Step,
    /// The shared entry is close to its limits (see [`cache::SHARE_ABOVE`]).
    exact: bool,
    /// `RateLimit-*` values, when the request touches a limit.
    rate: Option<(i64, i64, u64)>,
}

/// Serves from this VM's share if it can, else takes a new share from the shared entry (CAS,
/// retried on conflicts). `waited`: the step of the request whose call this one waited for.
fn from_cache(
    shared: &Rc<RefCell<Shared>>,
    service: &Service,
    key: &str,
    usage: &crate::mapping::Usage,
    waited: Option<&Step>,
) -> Looked {
    let now = now_ms();
    let decide = |verdict| match waited {
        Some(fetcher) => authrep::after_waiting(service, verdict, fetcher),
        None => authrep::on_verdict(service, verdict),
    };
    let looked = |step, exact, rate| Looked { step, exact, rate };
    if let Some((local, more)) = shared.borrow_mut().local.get_mut(key) {
        let verdict = match cache::refusal(local, usage, now) {
            // The hot path: this worker's share serves, spent in place.
            None if waited.is_none() => {
                cache::spend(local, usage);
                let rate = cache::rate_limit(local, more, usage, now);
                return looked(authrep::allowed(), false, rate);
            }
            None => cache::consult(Some(local), usage, now),
            Some(refused) => refused,
        };
        if !matches!(verdict, cache::Verdict::Ask(_)) {
            let (step, next) = decide(verdict);
            if let Some(next) = next {
                *local = next;
            }
            let rate = cache::rate_limit(local, more, usage, now);
            return looked(step, false, rate);
        }
    }
    let buckets = shared.borrow().config.as_ref().map_or(1, |c| c.cache_buckets());
    let bucket_key = cache::bucket_key(key, buckets);
    for _ in 0..crate::shared::MAX_RETRIES {
        let (bytes, cas) = Host.get(&bucket_key);
        let mut bucket = cache::decode_bucket(bytes.as_deref());
        let entry = cache::lookup(&bucket, key);
        let exact = entry
            .as_ref()
            .is_some_and(|e| e.quotas.iter().any(|q| q.remaining < cache::SHARE_ABOVE));
        let Some((rest, share)) = entry.as_ref().and_then(|e| cache::reserve(e, usage, now)) else {
            let verdict = cache::consult(entry.as_ref(), usage, now);
            let rate = entry.as_ref().and_then(|e| cache::rate_limit(e, &[], usage, now));
            return looked(decide(verdict).0, true, rate);
        };
        let more: Vec<i64> = rest.quotas.iter().map(|q| q.remaining).collect();
        if Some(&rest) != entry.as_ref() {
            cache::store(&mut bucket, key, rest, now);
            match Host.set(&bucket_key, &cache::encode_bucket(&bucket), cas) {
                Ok(()) => {}
                Err(SetError::CasMismatch) => continue,
                Err(_) => return looked(Step::Fetch, true, None),
            }
        }
        let (step, next) = decide(cache::consult(Some(&share), usage, now));
        let local = next.unwrap_or(share);
        let rate = cache::rate_limit(&local, &more, usage, now);
        let mut shared = shared.borrow_mut();
        if shared.local.len() >= MAX_LOCAL_ENTRIES {
            shared.local.clear();
        }
        shared.local.insert(key.to_string(), (local, more));
        return looked(step, exact, rate);
    }
    looked(Step::Fetch, true, None)
}

impl Request {
    /// `log[code]` for a request let through, when the configuration asks for it.
    fn count_code(&self) {
        let (Some(unverified), Some(call)) = (*self.served.borrow(), self.call.as_ref()) else {
            return;
        };
        let report_codes = self
            .shared
            .borrow()
            .config
            .as_ref()
            .is_some_and(|c| c.report_response_codes);
        let Some(code) = report_codes
            .then(|| self.get_http_response_header(":status"))
            .flatten()
            .and_then(|s| s.parse::<u16>().ok())
        else {
            return;
        };
        self.shared
            .borrow_mut()
            .usage
            .entry(call.app(unverified))
            .or_default()
            .add(&[], Some(code));
    }

    /// The request head, from one host call: the header map as Envoy serializes it, read in
    /// place (the SDK's `get_http_request_headers` copies every header into two `String`s).
    fn head(&self) -> RequestHead {
        RequestHead::from_header_map(raw::request_header_map())
    }

    /// Carries out a step for this request (the current context); `exact`: see [`Shared::count`].
    fn apply(&self, step: Step, stats: Stats, exact: bool) -> Action {
        match carry_out(&self.shared, self.call.as_ref(), &self.served, &step, exact, stats) {
            true => Action::Continue,
            false => Action::Pause,
        }
    }
}

/// Carries out a step for the request in the host's current context: counts and marks it
/// served, or answers it here (Envoy runs a local reply through `on_http_response_headers` too,
/// which adds the `RateLimit-*` headers). True when the request goes on upstream.
fn carry_out(
    shared: &Rc<RefCell<Shared>>,
    call: Option<&Call>,
    served: &Served,
    step: &Step,
    exact: bool,
    stats: Stats,
) -> bool {
    match step {
        Step::Serve { count } => {
            if let Some(call) = call {
                shared.borrow_mut().count(call, *count, exact);
                *served.borrow_mut() = Some(*count == Count::Unverified);
            }
            Stats::bump(stats.allowed);
            true
        }
        Step::Reply(r) => {
            stats.denied(r);
            let mut headers: Vec<(&str, &str)> = vec![("content-type", r.content_type.as_str())];
            headers.extend(r.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let _ = hostcalls::send_http_response(r.status, headers, Some(r.body.as_bytes()));
            false
        }
        Step::Fetch => false,
    }
}

/// The `RateLimit-*` headers for these values.
fn rate_headers(rate: Option<(i64, i64, u64)>) -> Vec<(&'static str, String)> {
    match rate {
        Some((limit, remaining, reset)) => vec![
            ("ratelimit-limit", limit.to_string()),
            ("ratelimit-remaining", remaining.to_string()),
            ("ratelimit-reset", reset.to_string()),
        ],
        None => Vec::new(),
    }
}

impl HttpContext for Request {
    /// Adds the `RateLimit-*` headers, and counts the response code of a request let through
    /// (the upstream's, or Envoy's own when the upstream failed). Read here rather than in
    /// `on_log`: the filter exports no `proxy_on_log`, so Envoy makes one call fewer into the
    /// VM per request (see `scripts/build-filter.sh`).
    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        for (name, value) in rate_headers(self.rate) {
            self.add_http_response_header(name, &value);
        }
        self.count_code();
        Action::Continue
    }

    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let (config, services, stats) = {
            let shared = self.shared.borrow();
            (shared.config.clone(), shared.services.clone(), shared.stats)
        };
        let Some(config) = config else { return Action::Continue };
        Stats::bump(stats.requests);
        let mut timer = timing::Timer::start();
        let head = self.head();
        if cfg!(feature = "head-only") {
            std::hint::black_box(&head);
            return Action::Continue;
        }
        timer.lap(timing::Step::Head);
        let decision = decide(services.as_deref(), config.failure_mode, &head);
        timer.lap(timing::Step::Decide);
        let call = match decision {
            Decision::Now(authrep::Outcome::Allow) => {
                return self.apply(Step::Serve { count: Count::No }, stats, false)
            }
            Decision::Now(authrep::Outcome::Deny(r)) => return self.apply(Step::Reply(r), stats, false),
            Decision::Authorize(call) => call,
        };
        let Some(service) = find(&services, call.service_id) else {
            return Action::Continue;
        };
        let key = authrep::cache_key(call.service_id, &call.credentials);
        let Looked { step, exact, rate } = from_cache(&self.shared, service, &key, &call.usage, None);
        timer.lap(timing::Step::Cache);
        if config.limit_headers {
            self.rate = rate;
        }
        if step != Step::Fetch {
            // The hit path: the call is kept, not copied.
            self.call = Some(call);
            Stats::bump(stats.cache_hits);
            let action = self.apply(step, stats, exact);
            timer.lap(timing::Step::Count);
            timer.done();
            return action;
        }
        Stats::bump(stats.cache_misses);
        // The root context asks the control plane (it outlives any one request) and settles
        // every request of this VM waiting for the application; this one is the first, or joins.
        let mut shared = self.shared.borrow_mut();
        let first = !shared.waiting.contains_key(&key);
        shared.waiting.entry(key.clone()).or_default().push(Waiter {
            context_id: self.context_id,
            call: call.clone(),
            served: self.served.clone(),
        });
        if first {
            shared.asks.push(key);
            // Wakes the root context at once (failing that, its next tick asks).
            if let Some(queue) = shared.queue {
                let _ = hostcalls::enqueue_shared_queue(queue, Some(b"ask"));
            }
        }
        drop(shared);
        self.call = Some(call);
        Action::Pause
    }
}

impl Context for Request {}

/// Where a cached request's time goes inside the VM, step by step (feature `timing`, for
/// `BENCH_TIMING=1 scripts/bench-filter.sh`): the bench cannot resolve microseconds on shared
/// cores, the host clock inside the VM can. Each lap reads the clock, a host call (about 1 µs)
/// counted in the step it ends. Without the feature the timer is empty and compiles to nothing.
mod timing {
    #[derive(Clone, Copy)]
    pub enum Step {
        /// Reading the request head from Envoy.
        Head,
        /// Service, mapping rules and credentials.
        Decide,
        /// Cache key, this worker's share, the verdict.
        Cache,
        /// Counting the request let through.
        Count,
    }

    #[cfg(feature = "timing")]
    mod on {
        use super::Step;
        use std::cell::RefCell;

        /// Requests per VM between reports.
        const EVERY: u64 = 10_000;

        thread_local! {
            /// Nanoseconds per step, and the requests timed, since the last report.
            static TOTALS: RefCell<([u64; 4], u64)> = const { RefCell::new(([0; 4], 0)) };
        }

        pub struct Timer(u128);

        impl Timer {
            pub fn start() -> Timer {
                Timer(super::super::now_nanos())
            }

            pub fn lap(&mut self, step: Step) {
                let now = super::super::now_nanos();
                let spent = u64::try_from(now.saturating_sub(self.0)).unwrap_or(u64::MAX);
                TOTALS.with(|t| {
                    if let Some(total) = t.borrow_mut().0.get_mut(step as usize) {
                        *total = total.saturating_add(spent);
                    }
                });
                self.0 = now;
            }

            /// One cached request timed; every [`EVERY`] of them, a log line with the means.
            pub fn done(self) {
                TOTALS.with(|t| {
                    let mut t = t.borrow_mut();
                    t.1 += 1;
                    if t.1 >= EVERY {
                        let [head, decide, cache, count] = t.0.map(|ns| ns / t.1);
                        super::super::log::info(&format!(
                            "tollgate timing: {} cached requests, mean ns: head {head} decide {decide} cache {cache} count {count}",
                            t.1
                        ));
                        *t = ([0; 4], 0);
                    }
                });
            }
        }
    }

    #[cfg(not(feature = "timing"))]
    mod on {
        pub struct Timer;

        impl Timer {
            pub fn start() -> Timer {
                Timer
            }
            pub fn lap(&mut self, _step: super::Step) {}
            pub fn done(self) {}
        }
    }

    pub use on::Timer;
}

/// The one host call the SDK has no borrowing form of.
mod raw {
    use proxy_wasm::types::{MapType, Status};

    #[link(wasm_import_module = "env")]
    extern "C" {
        fn proxy_get_header_map_pairs(map_type: MapType, data: *mut *mut u8, size: *mut usize) -> Status;
    }

    /// The request's header map, serialized (see [`crate::request::HeaderMap`]); empty when
    /// Envoy has none to give.
    pub fn request_header_map() -> Vec<u8> {
        let mut data: *mut u8 = std::ptr::null_mut();
        let mut size: usize = 0;
        // SAFETY: the host allocates `size` bytes with the SDK's allocator (its
        // `proxy_on_memory_allocate` export, a `Vec<u8>` of that capacity) and hands their
        // ownership over, as in the SDK's own `hostcalls::get_map`.
        unsafe {
            match proxy_get_header_map_pairs(MapType::HttpRequestHeaders, &mut data, &mut size) {
                Status::Ok if !data.is_null() => Vec::from_raw_parts(data, size, size),
                _ => Vec::new(),
            }
        }
    }
}

/// Logging through the host, ignoring the (impossible to act on) failure to log.
mod log {
    use proxy_wasm::hostcalls;
    use proxy_wasm::types::LogLevel;

    pub fn info(msg: &str) {
        let _ = hostcalls::log(LogLevel::Info, msg);
    }
    pub fn warn(msg: &str) {
        let _ = hostcalls::log(LogLevel::Warn, msg);
    }
    pub fn error(msg: &str) {
        let _ = hostcalls::log(LogLevel::Error, msg);
    }
}
