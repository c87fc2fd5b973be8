//! The filter's Envoy stats (`tollgate.*`). Requests count into this VM's memory; the counts
//! reach Envoy at the root context's next tick ([`Stats::publish`]), so the request path makes
//! no host call for its stats.

use crate::host::{Host, MetricKind};
use crate::service::ErrorResponse;
use std::cell::RefCell;

/// The metric ids, defined once per VM.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub requests: u32,
    pub allowed: u32,
    pub denied_auth: u32,
    pub denied_limits: u32,
    pub denied_credits: u32,
    pub denied_other: u32,
    pub cache_hits: u32,
    pub cache_misses: u32,
    pub authrep_calls: u32,
    pub authrep_failures: u32,
    pub authrep_retries: u32,
    pub cross_worker_waits: u32,
    pub batches_sent: u32,
    pub batches_failed: u32,
    pub usage_dropped: u32,
    pub buffered_batches: u32,
}

thread_local! {
    /// Counter increments not yet handed to Envoy, per metric id: a dozen at most, so a list
    /// beats hashing. (A VM is one thread.)
    static UNPUBLISHED: RefCell<Vec<(u32, i64)>> = const { RefCell::new(Vec::new()) };
}

impl Stats {
    pub fn define(host: &impl Host) -> Stats {
        let counter = |name: &str| host.define_metric(MetricKind::Counter, name);
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
            authrep_retries: counter("tollgate.authrep_retries"),
            cross_worker_waits: counter("tollgate.cross_worker_waits"),
            batches_sent: counter("tollgate.batches_sent"),
            batches_failed: counter("tollgate.batches_failed"),
            usage_dropped: counter("tollgate.usage_dropped"),
            buffered_batches: host.define_metric(MetricKind::Gauge, "tollgate.buffered_batches"),
        }
    }

    /// Counts one, in memory.
    pub fn bump(id: u32) {
        UNPUBLISHED.with(|u| {
            let mut u = u.borrow_mut();
            match u.iter_mut().find(|(i, _)| *i == id) {
                Some((_, n)) => *n += 1,
                None => u.push((id, 1)),
            }
        });
    }

    /// Hands the counts to Envoy.
    pub fn publish(host: &impl Host) {
        UNPUBLISHED.with(|u| {
            for (id, n) in u.borrow_mut().drain(..) {
                host.increment_metric(id, n);
            }
        });
    }

    /// Counts a request answered here, by why.
    pub fn denied(&self, r: &ErrorResponse) {
        Self::bump(match r.status {
            401 | 403 => self.denied_auth,
            429 => self.denied_limits,
            402 => self.denied_credits,
            _ => self.denied_other,
        });
    }
}
