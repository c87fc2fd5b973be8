//! A worker VM's root context: it fetches the services' configuration, moves the usage its
//! requests counted into shared data every tick, flushes usage (when it holds the flusher
//! lease), sends report batches, and makes the authorization calls.
//!
//! A request the cache cannot serve waits, and wakes the root context through the VM's queue.
//! The root makes one call per application for all the requests of its VM that wait on it,
//! or, when another worker is asking already ([`inflight`]), waits for that worker's word —
//! until the claim runs out, when it asks itself (the other worker may have vanished). The
//! root context outlives any request, so a client that leaves does not strand the others.

use crate::authrep::{self, Fetch, Step};
use crate::cache;
use crate::config::PluginConfig;
use crate::host::{Host, Level};
use crate::inflight;
use crate::report::{self, Answer};
use crate::service::Services;
use crate::stats::Stats;
use crate::stream::Stream;
use crate::vm::{self, SharedVm};
use std::collections::HashMap;
use std::rc::Rc;

/// The root context's tick: report and refresh deadlines are checked this often.
pub const TICK_MS: u64 = 100;
/// How long the flusher lease lasts without renewal.
const LEASE_MS: u64 = 5_000;
/// Numbers the VMs of an Envoy process, for their names (`Root::me`).
const VM_SEQUENCE: &str = "tollgate:vms";

/// An authorization call in flight.
struct Asked {
    /// The application's cache key.
    key: String,
    service_id: u64,
    /// The request the call was made for (its context): authrep counted its usage.
    first: u32,
    fetch: Fetch,
    /// The call's path, to ask again.
    path: String,
    /// Asked again already (once is the most).
    retried: bool,
}

pub struct Root<H: Host> {
    host: H,
    context_id: u32,
    vm: SharedVm,
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

impl<H: Host> Root<H> {
    pub fn new(host: H, context_id: u32) -> Root<H> {
        Root {
            host,
            context_id,
            vm: SharedVm::default(),
            me: String::new(),
            batch_seq: 0,
            fetch_in_flight: None,
            next_refresh_ms: 0,
            next_report_ms: 0,
            sending: HashMap::new(),
            asking: HashMap::new(),
            finishing: false,
        }
    }

    /// A request context of this VM.
    pub fn stream(&self, context_id: u32) -> Stream<H> {
        Stream::new(self.host.clone(), context_id, self.vm.clone())
    }

    fn config(&self) -> Option<Rc<PluginConfig>> {
        self.vm.borrow().config.clone()
    }

    fn warn(&self, message: &str) {
        self.host.log(Level::Warn, message);
    }

    /// Reads the plugin configuration and prepares the shared data; false refuses it.
    pub fn configure(&mut self) -> bool {
        let host = &self.host;
        let mut config = match PluginConfig::parse(&host.plugin_configuration()) {
            Ok(config) => config,
            Err(e) => {
                host.log(Level::Error, &format!("tollgate: {e}"));
                return false;
            }
        };
        // Every key that is updated under CAS exists before traffic (see `shared`).
        let buckets = (0..config.cache_buckets())
            .map(cache::bucket_name)
            .try_for_each(|k| crate::shared::ensure(host, &k, b"[]"));
        let slots = report::ensure_slots(host).and(inflight::ensure_slots(host));
        if let Err(e) = slots.and(buckets) {
            host.log(Level::Error, &format!("tollgate: cannot prepare shared data: {e:?}"));
            return false;
        }
        let now = host.now_ms();
        // Unique among the workers of one Envoy (a shared sequence; the time tells apart the
        // unlikely racers that both create it), and across restarts.
        let seq = crate::shared::next_in_sequence(host, VM_SEQUENCE).unwrap_or(0);
        self.me = format!("{seq}-{:x}", host.now_nanos());
        host.set_tick_period(TICK_MS);
        let queue = host.register_queue(&format!("tollgate:wake:{}", self.me));
        if let Err(e) = &queue {
            self.warn(&format!(
                "tollgate: no wake-up queue ({e}); misses wait for the next tick and are not collapsed across workers"
            ));
        }
        // Services pushed with the configuration (xDS) are served as they are, never fetched.
        let pushed = config.proxy_configs.take().map(Services::pushed);
        self.next_refresh_ms = if pushed.is_some() { u64::MAX } else { 0 };
        let mut vm = self.vm.borrow_mut();
        vm.queue = queue.ok();
        vm.stats = Stats::define(&self.host);
        vm.config = Some(Rc::new(config));
        if let Some(services) = pushed {
            self.host.log(
                Level::Info,
                &format!(
                    "tollgate: configured with {} service(s), config version {}",
                    services.services.len(),
                    services.version
                ),
            );
            vm.services = Some(Rc::new(services));
        }
        drop(vm);
        self.next_report_ms = now;
        true
    }

    pub fn tick(&mut self) {
        let Some(config) = self.config() else { return };
        let now = self.host.now_ms();
        self.vm.borrow_mut().move_usage(&self.host);
        Stats::publish(&self.host);
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

    /// Messages on this VM's queue: words from workers it waited for (the wake-ups of its own
    /// requests carry none), then the calls its waiting requests need.
    pub fn queue_ready(&mut self, queue: u32) {
        while let Some(bytes) = self.host.dequeue(queue) {
            let Some((key, step)) = inflight::read_word(&bytes) else {
                continue;
            };
            // A word after the wait ran out finds the application asked about here already.
            if self.vm.borrow_mut().remote.remove(&key).is_some() {
                self.settle(&key, None, &step);
            }
        }
        self.ask_all();
    }

    /// Envoy is stopping this VM: what was counted goes out now. True when nothing is left in
    /// flight; otherwise the host is told ([`Host::done`]) when the last report is answered.
    pub fn stop(&mut self) -> bool {
        self.vm.borrow_mut().move_usage(&self.host);
        Stats::publish(&self.host);
        self.finishing = true;
        self.flush(u64::MAX);
        self.host.log(
            Level::Info,
            &format!("tollgate: stopping; {} report(s) in flight", self.sending.len()),
        );
        self.sending.is_empty()
    }

    /// The answer to a call this root context made.
    pub fn call_answered(&mut self, token: u32, body_size: usize) {
        if let Some(mut asked) = self.asking.remove(&token) {
            let status = self.host.call_status().and_then(|s| s.parse::<u32>().ok());
            let body = self.host.call_body(body_size);
            // Never reached a replica (a dead one, before Envoy ejected it): another is asked,
            // once; nothing was counted, so nothing counts twice.
            if !asked.retried && authrep::never_reached(status, &body) {
                asked.retried = true;
                if let Ok(token) = self.dispatch_authrep(&asked.path) {
                    Stats::bump(self.vm.borrow().stats.authrep_retries);
                    self.asking.insert(token, asked);
                    return;
                }
            }
            return self.answered(&asked, status, &body);
        }
        if let Some(batch) = self.sending.remove(&token) {
            self.report_answered(&batch, body_size);
            if self.finishing && self.sending.is_empty() {
                self.host.done();
            }
            return;
        }
        if self.fetch_in_flight == Some(token) {
            self.fetch_in_flight = None;
            self.services_answered(body_size);
        }
    }

    /// Asks the control plane about every application whose requests wait for a call, unless
    /// another worker is asking already: then this VM waits for its word (see [`inflight`]).
    fn ask_all(&mut self) {
        let asks = std::mem::take(&mut self.vm.borrow_mut().asks);
        let Some(config) = self.config().filter(|_| !asks.is_empty()) else {
            return;
        };
        let now = self.host.now_ms();
        let until = now + config.control_plane.timeout_ms + 2 * TICK_MS;
        for key in asks {
            let (queue, stats) = {
                let vm = self.vm.borrow();
                if !vm.waiting.contains_key(&key) || vm.remote.contains_key(&key) {
                    continue;
                }
                (vm.queue, vm.stats)
            };
            if let Some(queue) = queue {
                if let Ok(inflight::Claim::Wait { until_ms }) = inflight::claim(&self.host, &key, queue, now, until) {
                    Stats::bump(stats.cross_worker_waits);
                    self.vm.borrow_mut().remote.insert(key, until_ms);
                    continue;
                }
            }
            self.ask(&config, key);
        }
    }

    /// One call about the application `key`, made for the first request waiting for it.
    fn ask(&mut self, config: &PluginConfig, key: String) {
        let (stats, first) = {
            let vm = self.vm.borrow();
            let first = vm
                .waiting
                .get(&key)
                .and_then(|w| w.first())
                .map(|w| (w.context_id, w.call.clone()));
            (vm.stats, first)
        };
        let Some((first, call)) = first else { return };
        let services = vm::services(&self.vm);
        let Some(service) = vm::find(&services, call.service_id) else {
            // The service went away with a configuration change: let them through, as before.
            return self.settle(&key, None, &Step::Fetch);
        };
        let app = call.app(false);
        let mut pending = report::pending(&self.host, &app);
        if let Some(mine) = self.vm.borrow().usage.get(&app) {
            pending.merge(mine.clone());
        }
        let pending = pending.usage;
        let (bucket, _) = self.host.get(&cache::bucket_key(&key, config.cache_buckets()));
        let fetch = Fetch {
            usage: call.usage.clone(),
            counted: pending.is_empty(),
            pending,
            stale: cache::lookup(&cache::decode_bucket(bucket.as_deref()), &key),
        };
        let path = authrep::authrep_path(service, &call.credentials, &call.usage, fetch.counted);
        Stats::bump(stats.authrep_calls);
        let dispatched = self.dispatch_authrep(&path);
        let asked = Asked {
            key,
            service_id: call.service_id,
            first,
            fetch,
            path,
            retried: false,
        };
        match dispatched {
            Ok(token) => {
                self.asking.insert(token, asked);
            }
            Err(_) => self.answered(&asked, None, b""),
        }
    }

    /// Sends an authrep call to the control plane's cluster (any of its replicas).
    fn dispatch_authrep(&self, path: &str) -> Result<u32, String> {
        let Some(config) = self.config() else {
            return Err("no configuration".into());
        };
        let headers = [
            (":method", "GET"),
            (":path", path),
            (":authority", config.control_plane.authority.as_str()),
            ("3scale-options", "hierarchy=1"),
        ];
        self.host.dispatch(
            &config.control_plane.cluster,
            &headers,
            None,
            config.control_plane.timeout_ms,
        )
    }

    /// The control plane answered a call (`status` `None`: it did not). Stores the answer, tells
    /// the workers that waited for it, and settles this VM's waiting requests.
    fn answered(&mut self, asked: &Asked, status: Option<u32>, body: &[u8]) {
        let Some(config) = self.config() else { return };
        let (stats, queue) = {
            let vm = self.vm.borrow();
            (vm.stats, vm.queue)
        };
        if status.is_none_or(|s| s >= 500) {
            Stats::bump(stats.authrep_failures);
        }
        let services = vm::services(&self.vm);
        let Some(service) = vm::find(&services, asked.service_id) else {
            return self.settle(&asked.key, None, &Step::Fetch);
        };
        let (step, entry) = authrep::after_authrep(
            service,
            config.failure_mode,
            &asked.fetch,
            status,
            body,
            config.ttl(),
            self.host.now_ms(),
        );
        if let Some(e) = &entry {
            // A fresh answer replaces whatever is cached, this VM's share included.
            vm::put_entry(&self.host, &self.vm, &asked.key, e);
        }
        if let Some(queue) = queue {
            match inflight::release(&self.host, &asked.key, queue) {
                Ok(others) if !others.is_empty() => {
                    let word = inflight::word(&asked.key, &step);
                    for other in others {
                        self.host.enqueue(other, &word);
                    }
                }
                Ok(_) => {}
                // The waiting workers ask on their own once their wait runs out.
                Err(e) => self.warn(&format!("tollgate: releasing a claim failed: {e:?}")),
            }
        }
        self.settle(&asked.key, Some((asked.first, &step)), &step);
    }

    /// Settles this VM's requests waiting on `key`, each in its own context: `first` (the request
    /// the call was made for) with its step; the others from the cache, following `fetcher` (the
    /// step of the request whose call they waited for) where the cache cannot serve them. Those
    /// the cache sends to the control plane once more (a gateway's share of a prepaid balance
    /// used up) wait for a call of their own: each call settles at least its first request.
    fn settle(&self, key: &str, first: Option<(u32, &Step)>, fetcher: &Step) {
        let Some(waiters) = self.vm.borrow_mut().waiting.remove(key) else {
            return;
        };
        let stats = self.vm.borrow().stats;
        let services = vm::services(&self.vm);
        let host = &self.host;
        let mut again = Vec::new();
        for w in waiters {
            let (step, exact) = match (first, vm::find(&services, w.call.service_id)) {
                (Some((id, step)), _) if id == w.context_id => (step.clone(), true),
                (_, Some(service)) => {
                    let looked = vm::from_cache(host, &self.vm, service, key, &w.call.usage, Some(fetcher));
                    if looked.step == Step::Fetch && *fetcher != Step::Fetch {
                        again.push(w);
                        continue;
                    }
                    (looked.step, looked.exact)
                }
                (_, None) => (Step::Fetch, false),
            };
            if !host.enter(w.context_id) {
                continue; // gone meanwhile (client closed)
            }
            // (`Fetch` here: nothing to decide with; let it through as if the filter were not there.)
            if vm::carry_out(host, &self.vm, Some(&w.call), &w.served, &step, exact, stats) || step == Step::Fetch {
                host.resume();
            }
        }
        host.enter(self.context_id);
        if !again.is_empty() {
            let mut vm = self.vm.borrow_mut();
            vm.waiting.entry(key.to_string()).or_default().extend(again);
            vm.asks.push(key.to_string());
            // Asked from the queue (failing that, the next tick), not from within this answer.
            if let Some(queue) = vm.queue {
                host.enqueue(queue, b"ask");
            }
        }
    }

    /// Waits for other workers' answers that ran out: this VM asks on its own.
    fn expire_waits(&mut self, now: u64) {
        let mut vm = self.vm.borrow_mut();
        let expired: Vec<String> = vm
            .remote
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(key, _)| key.clone())
            .collect();
        for key in expired {
            vm.remote.remove(&key);
            vm.asks.push(key);
        }
    }

    fn fetch_services(&mut self) {
        let Some(config) = self.config() else { return };
        if self.fetch_in_flight.is_some() {
            return;
        }
        let auth = format!("Bearer {}", config.access_token);
        let headers = [
            (":method", "GET"),
            (":path", config.environment.proxy_configs_path()),
            (":authority", config.control_plane.authority.as_str()),
            ("authorization", auth.as_str()),
        ];
        match self.host.dispatch(
            &config.control_plane.cluster,
            &headers,
            None,
            config.control_plane.timeout_ms,
        ) {
            Ok(token) => self.fetch_in_flight = Some(token),
            Err(e) => self.warn(&format!("tollgate: cannot fetch proxy configs: {e}")),
        }
    }

    fn services_answered(&mut self, body_size: usize) {
        let status = self.host.call_status();
        let body = self.host.call_body(body_size);
        if status.as_deref() != Some("200") {
            return self.warn(&format!(
                "tollgate: proxy configs fetch answered {status:?}; keeping the last good config"
            ));
        }
        match Services::parse_proxy_configs(&body) {
            Ok(services) => {
                let mut vm = self.vm.borrow_mut();
                let changed = vm.services.as_ref().map(|s| s.version) != Some(services.version);
                if changed {
                    self.host.log(
                        Level::Info,
                        &format!(
                            "tollgate: loaded {} service(s), config version {}",
                            services.services.len(),
                            services.version
                        ),
                    );
                }
                vm.services = Some(Rc::new(services));
            }
            Err(e) => self.warn(&format!(
                "tollgate: bad proxy configs ({e}); keeping the last good config"
            )),
        }
    }

    /// Freezes counted usage into batches (as the lease holder) and sends what is due.
    fn flush(&mut self, now: u64) {
        let Some(config) = self.config() else { return };
        let host = &self.host;
        if !self.finishing && !report::try_lead(host, &self.me, now, LEASE_MS) {
            return;
        }
        let stats = self.vm.borrow().stats;
        match report::freeze(host, &self.me, &mut self.batch_seq, config.report_limits()) {
            Ok(0) => {}
            Ok(dropped) => {
                host.increment_metric(stats.usage_dropped, i64::try_from(dropped).unwrap_or(i64::MAX));
                self.warn(&format!("tollgate: report buffer full; dropped {dropped} batch(es)"));
            }
            Err(e) => self.warn(&format!("tollgate: freezing usage failed: {e:?}")),
        }
        let services = vm::services(&self.vm);
        for batch in report::due(host, now) {
            if self.sending.values().any(|id| *id == batch.id) {
                continue;
            }
            let token = services
                .as_ref()
                .and_then(|s| s.services.iter().find(|s| s.id == batch.service_id))
                .map(|s| s.service_token().to_string());
            let Some(token) = token else { continue };
            let body = batch.body(&token);
            let headers = [
                (":method", "POST"),
                (":path", "/transactions.json"),
                (":authority", config.control_plane.authority.as_str()),
                ("content-type", "application/json"),
            ];
            match host.dispatch(
                &config.control_plane.cluster,
                &headers,
                Some(&body),
                config.control_plane.timeout_ms,
            ) {
                Ok(call) => {
                    self.sending.insert(call, batch.id);
                }
                Err(e) => {
                    self.warn(&format!("tollgate: cannot send report {}: {e}", batch.id));
                    let _ = report::failed(host, &batch.id, now, config.report_limits());
                }
            }
        }
        let (batches, _) = report::buffered(host);
        host.record_metric(stats.buffered_batches, u64::try_from(batches).unwrap_or(u64::MAX));
    }

    /// The control plane's answer to report `batch`.
    fn report_answered(&mut self, batch: &str, body_size: usize) {
        let stats = self.vm.borrow().stats;
        let status = self.host.call_status();
        match report::classify(status.as_deref()) {
            Answer::Acknowledged => {
                let _ = report::acknowledged(&self.host, batch);
                Stats::bump(stats.batches_sent);
            }
            Answer::Refused => {
                let body = self.host.call_body(body_size);
                let _ = report::acknowledged(&self.host, batch);
                Stats::bump(stats.usage_dropped);
                self.warn(&format!(
                    "tollgate: report {batch} refused ({}): {}; dropped",
                    status.unwrap_or_default(),
                    String::from_utf8_lossy(&body)
                ));
            }
            Answer::Retry => {
                let Some(config) = self.config() else { return };
                let _ = report::failed(&self.host, batch, self.host.now_ms(), config.report_limits());
                Stats::bump(stats.batches_failed);
                self.warn(&format!("tollgate: report {batch} answered {status:?}; will retry"));
            }
        }
    }
}
