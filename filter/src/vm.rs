//! What one worker VM holds, shared by its root context and its requests: the configuration,
//! the requests waiting for a call, this VM's shares of the cached authorizations, the usage
//! it counted; and the steps both kinds of context take with it (serving from the cache,
//! counting, carrying out a step).
//!
//! Request contexts serve from the VM's own share of an application's quota
//! ([`crate::cache::reserve`]): no host call on the hot path. A request the share cannot serve
//! takes a new share from the shared cache (CAS, retried on conflicts); when that cannot serve
//! either, it waits for the root context's call ([`crate::root`]).
//!
//! The state sits in an `Rc<RefCell<…>>` held by the root and every request. No borrow is held
//! across a host call that may call back into the VM (a local reply, resuming a request).

use crate::authrep::{self, Count, Step};
use crate::cache::{self, Entry};
use crate::config::PluginConfig;
use crate::decision::Call;
use crate::host::{Host, Level};
use crate::mapping::Usage;
use crate::report::{self, App};
use crate::service::{Service, Services};
use crate::shared::SetError;
use crate::stats::Stats;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Bound on the applications a VM keeps a share for; past it, the shares are dropped (the
/// shared cache still has the entries).
pub const MAX_LOCAL_ENTRIES: usize = 10_000;

/// A request waiting for another request's call on the same application.
pub struct Waiter {
    pub context_id: u32,
    pub call: Call,
    pub served: Served,
}

/// Set when a request is let through: `Some(unverified)`; its response code is counted when
/// it completes.
pub type Served = Rc<RefCell<Option<bool>>>;

/// What the root context shares with the request contexts of its VM.
#[derive(Default)]
pub struct Vm {
    pub config: Option<Rc<PluginConfig>>,
    pub services: Option<Rc<Services>>,
    pub stats: Stats,
    /// Per cache key with a call in flight in this VM: the requests waiting for its answer.
    pub waiting: HashMap<String, Vec<Waiter>>,
    /// This VM's shares of the shared entries, per cache key, with what the shared entry held
    /// beyond each share when it was taken (for the `RateLimit-*` headers).
    pub local: HashMap<String, (Entry, Vec<i64>)>,
    /// Usage served by this VM and not yet moved to shared data.
    pub usage: HashMap<App, report::Pending>,
    /// Cache keys whose waiting requests need a call (the root context makes it).
    pub asks: Vec<String>,
    /// Cache keys another worker is asking the control plane about, with until when its
    /// answer is awaited (see [`crate::inflight`]).
    pub remote: HashMap<String, u64>,
    /// This VM's wake-up queue (the root context's), if the host gave one.
    pub queue: Option<u32>,
}

pub type SharedVm = Rc<RefCell<Vm>>;

impl Vm {
    /// Moves this VM's counted usage into the shared slots (what fails stays for the next tick).
    pub fn move_usage(&mut self, host: &impl Host) {
        self.usage
            .retain(|app, pending| match report::record_pending(host, app, pending) {
                Ok(()) => false,
                Err(e) => {
                    host.log(
                        Level::Warn,
                        &format!("tollgate: counting usage failed: {e:?}; retrying"),
                    );
                    true
                }
            });
    }

    /// Counts a request let through, when it is let through (a request still upstream is
    /// counted already). Far from the limits, in this VM's memory, moved to shared data every
    /// tick. Close to them (`exact`), straight into shared data, with whatever this VM counted
    /// for the application before: the next call to the control plane must see every unit.
    pub fn count(&mut self, host: &impl Host, call: &Call, count: Count, exact: bool) {
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
        if report::record_pending(host, &app, &pending).is_ok() {
            return;
        }
        host.log(
            Level::Warn,
            "tollgate: counting usage in shared data failed; counting it locally",
        );
        self.usage.insert(app, pending);
    }

    fn buckets(&self) -> u32 {
        self.config.as_ref().map_or(1, |c| c.cache_buckets())
    }
}

/// Stores a fresh entry in the shared cache (CAS: the bucket holds other applications too),
/// replacing this VM's share.
pub fn put_entry(host: &impl Host, vm: &SharedVm, key: &str, entry: &Entry) {
    let buckets = vm.borrow().buckets();
    let now = host.now_ms();
    let stored = crate::shared::update(host, &cache::bucket_key(key, buckets), |bytes| {
        let mut bucket = cache::decode_bucket(bytes);
        cache::store(&mut bucket, key, entry.clone(), now);
        (Some(cache::encode_bucket(&bucket)), ())
    });
    if let Err(e) = stored {
        host.log(
            Level::Warn,
            &format!("tollgate: caching an authorization failed: {e:?}"),
        );
    }
    vm.borrow_mut().local.remove(key);
}

/// The current configuration, for finding a service in it without copying it.
pub fn services(vm: &SharedVm) -> Option<Rc<Services>> {
    vm.borrow().services.clone()
}

pub fn find(services: &Option<Rc<Services>>, id: u64) -> Option<&Service> {
    services.as_ref()?.services.iter().find(|s| s.id == id)
}

/// `RateLimit-Limit`, `-Remaining`, `-Reset`.
pub type Rate = Option<(i64, i64, u64)>;

/// What the cache said about one request.
pub struct Looked {
    pub step: Step,
    /// The shared entry is close to its limits (see [`cache::SHARE_ABOVE`]).
    pub exact: bool,
    /// `RateLimit-*` values, when the request touches a limit.
    pub rate: Rate,
}

/// Serves from this VM's share if it can, else takes a new share from the shared entry (CAS,
/// retried on conflicts). `waited`: the step of the request whose call this one waited for.
pub fn from_cache(
    host: &impl Host,
    vm: &SharedVm,
    service: &Service,
    key: &str,
    usage: &Usage,
    waited: Option<&Step>,
) -> Looked {
    let now = host.now_ms();
    let decide = |verdict| match waited {
        Some(fetcher) => authrep::after_waiting(service, verdict, fetcher),
        None => authrep::on_verdict(service, verdict),
    };
    let looked = |step, exact, rate| Looked { step, exact, rate };
    if let Some((local, more)) = vm.borrow_mut().local.get_mut(key) {
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
    let bucket_key = cache::bucket_key(key, vm.borrow().buckets());
    for _ in 0..crate::shared::MAX_RETRIES {
        let (bytes, cas) = host.get(&bucket_key);
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
            match host.set(&bucket_key, &cache::encode_bucket(&bucket), cas) {
                Ok(()) => {}
                Err(SetError::CasMismatch) => continue,
                Err(_) => return looked(Step::Fetch, true, None),
            }
        }
        let (step, next) = decide(cache::consult(Some(&share), usage, now));
        let local = next.unwrap_or(share);
        let rate = cache::rate_limit(&local, &more, usage, now);
        let mut vm = vm.borrow_mut();
        if vm.local.len() >= MAX_LOCAL_ENTRIES {
            vm.local.clear();
        }
        vm.local.insert(key.to_string(), (local, more));
        return looked(step, exact, rate);
    }
    looked(Step::Fetch, true, None)
}

/// Carries out a step for the request in the host's current context: counts and marks it
/// served, or answers it here (Envoy runs a local reply through the response callbacks too,
/// which add the `RateLimit-*` headers). True when the request goes on upstream.
pub fn carry_out(
    host: &impl Host,
    vm: &SharedVm,
    call: Option<&Call>,
    served: &Served,
    step: &Step,
    exact: bool,
    stats: Stats,
) -> bool {
    match step {
        Step::Serve { count } => {
            if let Some(call) = call {
                vm.borrow_mut().count(host, call, *count, exact);
                *served.borrow_mut() = Some(*count == Count::Unverified);
            }
            Stats::bump(stats.allowed);
            true
        }
        Step::Reply(r) => {
            stats.denied(r);
            let mut headers: Vec<(&str, &str)> = vec![("content-type", r.content_type.as_str())];
            headers.extend(r.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            host.reply(r.status, &headers, r.body.as_bytes());
            false
        }
        Step::Fetch => false,
    }
}
