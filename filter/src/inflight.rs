//! Calls to the control plane in flight, across the worker VMs of one Envoy: concurrent misses
//! on one application in different workers make one call, not one per worker.
//!
//! Within a VM the root context keeps its own waiting lists. Across VMs there is only shared data and
//! shared queues, so a worker that misses first *claims* the application here: a marker naming
//! its wake-up queue and until when it will answer. A worker that misses while a live marker
//! stands adds its own queue to the marker and waits. When the claimant has its answer it
//! stores the cache entry, *releases* the marker and enqueues the outcome to every waiter's
//! queue; each waiter then settles its requests from the fresh cache entry.
//!
//! Markers live in [`SLOTS`] fixed keys (created before traffic by [`ensure_slots`]), each
//! holding at most [`PER_SLOT`] markers: memory stays bounded whatever the key spraying. A full
//! slot, or a claim that keeps losing CAS races, just means no collapse (the worker asks on its
//! own), never a lost request. A marker whose claimant vanished expires at its `until`; the
//! next claim replaces it.

use crate::authrep::Step;
use crate::shared::{self, SetError, SharedData};
use serde::{Deserialize, Serialize};

/// Marker slots: enough that slots rarely fill, few enough to create at start.
pub const SLOTS: u32 = 64;
/// Markers per slot at most (live ones; expired ones are dropped on every write).
pub const PER_SLOT: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Marker {
    /// The cache key of the application asked for.
    k: String,
    /// The claimant's queue.
    o: u32,
    /// Until when (ms since the epoch) the claimant answers; past it the marker is dead.
    u: u64,
    /// The waiting workers' queues.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    w: Vec<u32>,
}

/// What [`claim`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Ask the control plane; then [`release`].
    Lead,
    /// Another worker is asking; wait for its word on your queue, at most until `until_ms`.
    Wait { until_ms: u64 },
}

/// The slot key for a cache key.
pub fn slot_key(key: &str) -> String {
    slot_name(shared::spread(key.as_bytes(), SLOTS))
}

fn slot_name(i: u32) -> String {
    format!("tollgate:inflight:{i}")
}

/// Creates every slot (before traffic: see [`shared::ensure`]).
pub fn ensure_slots(host: &impl SharedData) -> Result<(), SetError> {
    (0..SLOTS).try_for_each(|i| shared::ensure(host, &slot_name(i), b"[]"))
}

fn decode(bytes: Option<&[u8]>) -> Vec<Marker> {
    bytes.and_then(|b| serde_json::from_slice(b).ok()).unwrap_or_default()
}

fn encode(markers: &[Marker]) -> Vec<u8> {
    serde_json::to_vec(markers).unwrap_or_default()
}

/// Claims `key` for the worker whose queue is `me`, or joins the live claim of another worker.
/// `until_ms`: when this worker's call will have been answered at the latest.
pub fn claim(host: &impl SharedData, key: &str, me: u32, now_ms: u64, until_ms: u64) -> Result<Claim, SetError> {
    shared::update(host, &slot_key(key), |bytes| {
        let mut markers = decode(bytes);
        markers.retain(|m| m.u > now_ms);
        if let Some(m) = markers.iter_mut().find(|m| m.k == key) {
            if m.o == me {
                // This worker's own claim (asked again after its wait ran out).
                return (None, Claim::Lead);
            }
            let claim = Claim::Wait { until_ms: m.u };
            if m.w.contains(&me) {
                return (None, claim);
            }
            m.w.push(me);
            return (Some(encode(&markers)), claim);
        }
        if markers.len() >= PER_SLOT {
            // Full: ask without a marker (no collapse for this one).
            return (None, Claim::Lead);
        }
        markers.push(Marker {
            k: key.to_string(),
            o: me,
            u: until_ms,
            w: Vec::new(),
        });
        (Some(encode(&markers)), Claim::Lead)
    })
}

/// Ends this worker's claim on `key`; returns the queues of the workers that wait for it.
pub fn release(host: &impl SharedData, key: &str, me: u32) -> Result<Vec<u32>, SetError> {
    shared::update(host, &slot_key(key), |bytes| {
        let mut markers = decode(bytes);
        match markers.iter().position(|m| m.k == key && m.o == me) {
            Some(i) => {
                let waiters = markers.remove(i).w;
                (Some(encode(&markers)), waiters)
            }
            None => (None, Vec::new()),
        }
    })
}

/// The word a claimant sends to a waiting worker's queue: the application's cache key and what
/// the claimant did with its own request (the waiters follow it when the cache cannot serve
/// them, as within a VM: [`crate::authrep::after_waiting`]).
pub fn word(key: &str, step: &Step) -> Vec<u8> {
    serde_json::to_vec(&(key, step)).unwrap_or_default()
}

/// Reads a [`word`]; `None` for anything else.
pub fn read_word(bytes: &[u8]) -> Option<(String, Step)> {
    serde_json::from_slice(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authrep::Count;
    use crate::shared::Memory;

    fn host() -> Memory {
        let host = Memory::default();
        ensure_slots(&host).unwrap();
        host
    }

    #[test]
    fn the_first_worker_leads_and_the_others_wait_once() {
        let host = host();
        assert_eq!(claim(&host, "k", 1, 0, 500), Ok(Claim::Lead));
        assert_eq!(claim(&host, "k", 2, 10, 510), Ok(Claim::Wait { until_ms: 500 }));
        assert_eq!(claim(&host, "k", 2, 20, 520), Ok(Claim::Wait { until_ms: 500 }));
        assert_eq!(claim(&host, "k", 3, 20, 520), Ok(Claim::Wait { until_ms: 500 }));
        // Other applications are not held up.
        assert_eq!(claim(&host, "other", 2, 20, 520), Ok(Claim::Lead));
        assert_eq!(release(&host, "k", 1), Ok(vec![2, 3]));
        // Released: the next miss leads again, and nobody is told twice.
        assert_eq!(release(&host, "k", 1), Ok(vec![]));
        assert_eq!(claim(&host, "k", 3, 30, 530), Ok(Claim::Lead));
    }

    #[test]
    fn a_vanished_claimant_is_replaced_after_its_deadline() {
        let host = host();
        assert_eq!(claim(&host, "k", 1, 0, 500), Ok(Claim::Lead));
        assert_eq!(claim(&host, "k", 2, 499, 999), Ok(Claim::Wait { until_ms: 500 }));
        assert_eq!(claim(&host, "k", 2, 500, 1000), Ok(Claim::Lead));
        // The old claimant's late release does not end the new claim.
        assert_eq!(release(&host, "k", 1), Ok(vec![]));
        assert_eq!(claim(&host, "k", 3, 600, 1100), Ok(Claim::Wait { until_ms: 1000 }));
        assert_eq!(release(&host, "k", 2), Ok(vec![3]));
    }

    #[test]
    fn a_worker_asking_again_keeps_its_own_claim() {
        let host = host();
        assert_eq!(claim(&host, "k", 1, 0, 500), Ok(Claim::Lead));
        assert_eq!(claim(&host, "k", 1, 10, 510), Ok(Claim::Lead));
        assert_eq!(claim(&host, "k", 2, 10, 510), Ok(Claim::Wait { until_ms: 500 }));
    }

    #[test]
    fn words_carry_the_claimants_step() {
        let step = Step::Serve {
            count: Count::Unverified,
        };
        assert_eq!(read_word(&word("k", &step)), Some(("k".to_string(), step)));
        let denial = Step::Reply(crate::service::Proxy::default().limits_exceeded());
        assert_eq!(read_word(&word("k", &denial)), Some(("k".to_string(), denial)));
        assert_eq!(read_word(b"garbage"), None);
    }

    #[test]
    fn slots_stay_bounded() {
        let host = host();
        for i in 0..(SLOTS as usize * PER_SLOT * 4) {
            claim(&host, &format!("key-{i}"), 1, 0, 500).unwrap();
        }
        for i in 0..SLOTS {
            let (bytes, _) = host.get(&slot_name(i));
            assert!(decode(bytes.as_deref()).len() <= PER_SLOT);
        }
        // Expired markers make room.
        assert_eq!(claim(&host, "late", 2, 501, 1000), Ok(Claim::Lead));
        assert_eq!(claim(&host, "late", 3, 502, 1000), Ok(Claim::Wait { until_ms: 1000 }));
    }
}
