//! Usage reporting: what the cache let through is counted in shared data and sent to the
//! control plane in batches, each exactly once.
//!
//! - **Counting**: every worker adds a request's usage (and its response code) to one of
//!   [`SLOTS`] slot keys, chosen by the application, with a CAS update. The slots are created
//!   empty before traffic ([`ensure_slots`]), so no update can be lost to Envoy's
//!   create-without-CAS rule.
//! - **Leading**: one worker at a time flushes. It holds a lease in shared data
//!   ([`try_lead`]); a worker that dies loses the lease when it runs out.
//! - **Freezing**: the leader empties the slots (CAS) into batches of at most `batch_size`
//!   transactions per service. Each batch gets an id, and the batches go into the outbox in
//!   shared data *before* anything is sent.
//! - **Sending**: a batch leaves the outbox only when the control plane acknowledged it (202).
//!   A failed send is retried with exponential backoff under the same id. The control plane
//!   acknowledges an id it has seen without counting it again, so a lost acknowledgement
//!   cannot double a count.
//! - **Bounds**: the outbox holds at most `max_batches`. Past that the oldest batch is dropped,
//!   and the drop is counted, so that a long control-plane outage cannot grow memory without
//!   bound.

use crate::shared::{ensure, update, SetError, SharedData};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Slot keys the usage of all applications is spread over.
pub const SLOTS: u32 = 64;
const OUTBOX: &str = "tollgate:outbox";
const LEASE: &str = "tollgate:flusher";

/// One application of one service, as credentials: the unit usage is reported for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct App {
    pub service_id: u64,
    pub credentials: crate::credentials::Credentials,
    /// Let through without anyone vouching for the credentials (failure mode `open`): reported
    /// in a batch of its own.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unverified: bool,
}

impl App {
    fn slot(&self) -> String {
        slot_name(crate::shared::spread(
            &serde_json::to_vec(self).unwrap_or_default(),
            SLOTS,
        ))
    }
}

fn slot_name(i: u32) -> String {
    format!("tollgate:usage:{i}")
}

/// Usage of one application not yet reported: per metric, and per response code.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    #[serde(rename = "u", default)]
    pub usage: BTreeMap<String, u64>,
    #[serde(rename = "c", default)]
    pub codes: BTreeMap<u16, u64>,
}

impl Pending {
    /// Adds one request: its usage and, if known, its response code.
    pub fn add(&mut self, usage: &[(String, u64)], code: Option<u16>) {
        for (metric, n) in usage {
            let v = self.usage.entry(metric.clone()).or_default();
            *v = v.saturating_add(*n);
        }
        if let Some(code) = code {
            let v = self.codes.entry(code).or_default();
            *v = v.saturating_add(1);
        }
    }

    pub fn merge(&mut self, other: Pending) {
        let usage: Vec<(String, u64)> = other.usage.into_iter().collect();
        self.add(&usage, None);
        for (code, n) in other.codes {
            let v = self.codes.entry(code).or_default();
            *v = v.saturating_add(n);
        }
    }
}

/// A slot: the pending usage of the applications hashed to it.
type Slot = Vec<(App, Pending)>;

fn decode_slot(bytes: Option<&[u8]>) -> Slot {
    bytes.and_then(|b| serde_json::from_slice(b).ok()).unwrap_or_default()
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// Creates the slots and the outbox, empty, unless they exist. Call before serving traffic.
pub fn ensure_slots(shared: &impl SharedData) -> Result<(), SetError> {
    for i in 0..SLOTS {
        ensure(shared, &slot_name(i), b"[]")?;
    }
    ensure(shared, OUTBOX, b"[]")
}

/// Counts one served request: its usage and, if known, the upstream's response code.
pub fn record(shared: &impl SharedData, app: &App, usage: &[(String, u64)], code: Option<u16>) -> Result<(), SetError> {
    let mut p = Pending::default();
    p.add(usage, code);
    record_pending(shared, app, &p)
}

/// Counts usage a worker gathered in its own memory (see [`crate::vm::Vm::count`]: workers
/// count locally and move their counts here every tick).
pub fn record_pending(shared: &impl SharedData, app: &App, pending: &Pending) -> Result<(), SetError> {
    update(shared, &app.slot(), |bytes| {
        let mut slot = decode_slot(bytes);
        match slot.iter_mut().find(|(a, _)| a == app) {
            Some((_, p)) => p.merge(pending.clone()),
            None => slot.push((app.clone(), pending.clone())),
        }
        (Some(encode(&slot)), ())
    })
}

/// The application's usage counted here and not yet reported.
pub fn pending(shared: &impl SharedData, app: &App) -> Pending {
    decode_slot(shared.get(&app.slot()).0.as_deref())
        .into_iter()
        .find(|(a, _)| a == app)
        .map(|(_, p)| p)
        .unwrap_or_default()
}

/// Takes the lease to flush for `lease_ms` if it is free, expired or already `me`'s.
pub fn try_lead(shared: &impl SharedData, me: &str, now_ms: u64, lease_ms: u64) -> bool {
    #[derive(Serialize, Deserialize)]
    struct Lease {
        owner: String,
        until_ms: u64,
    }
    update(shared, LEASE, |bytes| {
        let current: Option<Lease> = bytes.and_then(|b| serde_json::from_slice(b).ok());
        match current {
            Some(l) if l.owner != me && l.until_ms > now_ms => (None, false),
            _ => {
                let lease = Lease {
                    owner: me.to_string(),
                    until_ms: now_ms.saturating_add(lease_ms),
                };
                (Some(encode(&lease)), true)
            }
        }
    })
    .unwrap_or(false)
}

/// One report to send: a service's transactions, under an id the control plane remembers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub id: String,
    pub service_id: u64,
    pub transactions: Vec<(crate::credentials::Credentials, Pending)>,
    /// Holds one unverified application's usage, and nothing else.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unverified: bool,
    #[serde(default)]
    pub attempts: u32,
    /// Not to be sent before this time (backoff after a failure).
    #[serde(default)]
    pub not_before_ms: u64,
}

impl Batch {
    /// The body of `POST /transactions.json`: apisonator's report plus `batch_id`; response
    /// codes as counts (`log.codes`), so one transaction carries many requests.
    pub fn body(&self, service_token: &str) -> Vec<u8> {
        use crate::credentials::Credentials;
        use serde_json::{json, Map, Value};
        let transactions: Vec<Value> = self
            .transactions
            .iter()
            .map(|(creds, p)| {
                let mut t = Map::new();
                match creds {
                    Credentials::UserKey(k) => {
                        t.insert("user_key".into(), json!(k));
                    }
                    Credentials::AppId { app_id, app_key } => {
                        t.insert("app_id".into(), json!(app_id));
                        if let Some(k) = app_key {
                            t.insert("app_key".into(), json!(k));
                        }
                    }
                }
                t.insert("usage".into(), json!(p.usage));
                if !p.codes.is_empty() {
                    t.insert("log".into(), json!({ "codes": p.codes }));
                }
                Value::Object(t)
            })
            .collect();
        encode(&json!({
            "service_id": self.service_id.to_string(),
            "service_token": service_token,
            "batch_id": self.id,
            "transactions": transactions,
        }))
    }
}

/// Settings of the flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub batch_size: usize,
    pub max_batches: usize,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
}

/// Empties every slot into new batches (ids `{id_prefix}-{n}`, n from `*seq`) appended to the
/// outbox. Returns how many batches were dropped because the outbox was full.
pub fn freeze(shared: &impl SharedData, id_prefix: &str, seq: &mut u64, limits: Limits) -> Result<usize, SetError> {
    let mut taken: BTreeMap<App, Pending> = BTreeMap::new();
    for i in 0..SLOTS {
        let slot = update(shared, &slot_name(i), |bytes| {
            let slot = decode_slot(bytes);
            if slot.is_empty() {
                (None, slot)
            } else {
                (Some(b"[]".to_vec()), slot)
            }
        })?;
        for (app, p) in slot {
            taken.entry(app).or_default().merge(p);
        }
    }
    let mut batches: Vec<Batch> = Vec::new();
    for (app, p) in taken {
        match batches.last_mut() {
            Some(b)
                if b.service_id == app.service_id
                    && !b.unverified
                    && !app.unverified
                    && b.transactions.len() < limits.batch_size.max(1) =>
            {
                b.transactions.push((app.credentials, p));
            }
            _ => {
                *seq += 1;
                batches.push(Batch {
                    id: format!("{id_prefix}-{seq}"),
                    service_id: app.service_id,
                    unverified: app.unverified,
                    transactions: vec![(app.credentials, p)],
                    attempts: 0,
                    not_before_ms: 0,
                });
            }
        }
    }
    if batches.is_empty() {
        return Ok(0);
    }
    update(shared, OUTBOX, |bytes| {
        let mut outbox = decode_outbox(bytes);
        outbox.extend(batches.iter().cloned());
        let dropped = outbox.len().saturating_sub(limits.max_batches);
        outbox.drain(..dropped);
        (Some(encode(&outbox)), dropped)
    })
}

fn decode_outbox(bytes: Option<&[u8]>) -> Vec<Batch> {
    bytes.and_then(|b| serde_json::from_slice(b).ok()).unwrap_or_default()
}

/// The batches due to be sent at `now_ms`.
pub fn due(shared: &impl SharedData, now_ms: u64) -> Vec<Batch> {
    decode_outbox(shared.get(OUTBOX).0.as_deref())
        .into_iter()
        .filter(|b| b.not_before_ms <= now_ms)
        .collect()
}

/// The control plane acknowledged batch `id`: it leaves the outbox.
pub fn acknowledged(shared: &impl SharedData, id: &str) -> Result<(), SetError> {
    update(shared, OUTBOX, |bytes| {
        let mut outbox = decode_outbox(bytes);
        outbox.retain(|b| b.id != id);
        (Some(encode(&outbox)), ())
    })
}

/// Sending batch `id` failed: it is retried later, the wait doubling with every attempt.
pub fn failed(shared: &impl SharedData, id: &str, now_ms: u64, limits: Limits) -> Result<(), SetError> {
    update(shared, OUTBOX, |bytes| {
        let mut outbox = decode_outbox(bytes);
        if let Some(b) = outbox.iter_mut().find(|b| b.id == id) {
            b.attempts = b.attempts.saturating_add(1);
            let wait = limits
                .backoff_base_ms
                .saturating_mul(1u64 << b.attempts.min(20))
                .min(limits.backoff_max_ms);
            b.not_before_ms = now_ms.saturating_add(wait);
        }
        (Some(encode(&outbox)), ())
    })
}

/// What the control plane's answer to a report means for the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 202: counted (or seen before): it leaves the outbox.
    Acknowledged,
    /// Refused for good — a 4xx other than 409 (a batch id in use) and 429 (too many): an
    /// unknown key let through while the control plane was away, a service token that
    /// changed. Sending it again would not help: it leaves the outbox, counted as dropped.
    Refused,
    /// No answer, a 5xx, 409 or 429: sent again later under the same id.
    Retry,
}

/// Classifies a report answer's `:status` (`None`: no answer).
pub fn classify(status: Option<&str>) -> Answer {
    match status {
        Some("202") => Answer::Acknowledged,
        Some(code) if code.len() == 3 && code.starts_with('4') && code != "409" && code != "429" => Answer::Refused,
        _ => Answer::Retry,
    }
}

/// Batches in the outbox and the transactions in them (for stats).
pub fn buffered(shared: &impl SharedData) -> (usize, usize) {
    let outbox = decode_outbox(shared.get(OUTBOX).0.as_deref());
    (outbox.len(), outbox.iter().map(|b| b.transactions.len()).sum())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::Credentials;
    use crate::shared::Memory;
    use proptest::prelude::*;

    const LIMITS: Limits = Limits {
        batch_size: 2,
        max_batches: 100,
        backoff_base_ms: 100,
        backoff_max_ms: 1_000,
    };

    #[test]
    fn report_answers_are_classified_by_status() {
        assert_eq!(classify(Some("202")), Answer::Acknowledged);
        for refused in ["400", "403", "404", "422"] {
            assert_eq!(classify(Some(refused)), Answer::Refused, "{refused}");
        }
        for retried in [
            None,
            Some("200"),
            Some("409"),
            Some("429"),
            Some("500"),
            Some("503"),
            Some("4"),
        ] {
            assert_eq!(classify(retried), Answer::Retry, "{retried:?}");
        }
    }

    fn app(service_id: u64, key: &str) -> App {
        App {
            service_id,
            credentials: Credentials::UserKey(key.into()),
            unverified: false,
        }
    }

    fn hits(n: u64) -> Vec<(String, u64)> {
        vec![("hits".to_string(), n)]
    }

    /// Sums what the outbox holds, per application and metric.
    fn outbox_totals(m: &Memory) -> BTreeMap<(u64, String), u64> {
        let mut out = BTreeMap::new();
        for b in due(m, u64::MAX) {
            for (creds, p) in b.transactions {
                let Credentials::UserKey(k) = creds else { continue };
                *out.entry((b.service_id, k)).or_default() += p.usage.get("hits").copied().unwrap_or(0);
            }
        }
        out
    }

    #[test]
    fn counts_freeze_into_batches_that_leave_once_acknowledged() {
        let m = Memory::default();
        ensure_slots(&m).unwrap();
        record(&m, &app(1, "a"), &hits(1), Some(200)).unwrap();
        record(&m, &app(1, "a"), &hits(2), Some(404)).unwrap();
        record(&m, &app(1, "b"), &hits(1), None).unwrap();
        record(&m, &app(1, "c"), &hits(1), None).unwrap();
        record(&m, &app(2, "a"), &hits(5), None).unwrap();
        assert_eq!(pending(&m, &app(1, "a")).usage["hits"], 3);
        let mut seq = 0;
        assert_eq!(freeze(&m, "vm1", &mut seq, LIMITS).unwrap(), 0);
        assert_eq!(
            pending(&m, &app(1, "a")),
            Pending::default(),
            "frozen usage is no longer pending"
        );
        let batches = due(&m, 0);
        // Service 1 has three applications: two batches of at most 2; service 2 one more.
        assert_eq!(
            batches
                .iter()
                .map(|b| (b.service_id, b.transactions.len()))
                .collect::<Vec<_>>(),
            vec![(1, 2), (1, 1), (2, 1)]
        );
        let body: serde_json::Value = serde_json::from_slice(&batches[0].body("st")).unwrap();
        assert_eq!(body["batch_id"], "vm1-1");
        assert_eq!(body["transactions"][0]["usage"]["hits"], 3);
        assert_eq!(body["transactions"][0]["log"]["codes"]["404"], 1);
        assert_eq!(body["transactions"][0]["user_key"], "a");

        failed(&m, "vm1-1", 1_000, LIMITS).unwrap();
        assert_eq!(due(&m, 1_000).len(), 2, "backing off");
        assert_eq!(due(&m, 1_200).len(), 3);
        for b in due(&m, 1_200) {
            acknowledged(&m, &b.id).unwrap();
        }
        assert_eq!(buffered(&m), (0, 0));
        assert_eq!(freeze(&m, "vm1", &mut seq, LIMITS).unwrap(), 0, "nothing new: no batch");
        assert_eq!(buffered(&m), (0, 0));
    }

    #[test]
    fn unverified_usage_travels_alone() {
        let m = Memory::default();
        ensure_slots(&m).unwrap();
        let stranger = App {
            unverified: true,
            ..app(1, "b")
        };
        record(&m, &app(1, "a"), &hits(1), None).unwrap();
        record(&m, &stranger, &hits(1), None).unwrap();
        record(&m, &app(1, "c"), &hits(1), None).unwrap();
        let mut seq = 0;
        freeze(
            &m,
            "vm",
            &mut seq,
            Limits {
                batch_size: 10,
                ..LIMITS
            },
        )
        .unwrap();
        let batches = due(&m, 0);
        let shape: Vec<(bool, usize)> = batches.iter().map(|b| (b.unverified, b.transactions.len())).collect();
        assert_eq!(shape.len(), 3, "{shape:?}");
        assert!(shape.contains(&(true, 1)) && shape.iter().filter(|(u, _)| !u).map(|(_, n)| n).sum::<usize>() == 2);
    }

    #[test]
    fn a_full_outbox_drops_the_oldest_and_says_so() {
        let m = Memory::default();
        ensure_slots(&m).unwrap();
        let limits = Limits {
            max_batches: 2,
            batch_size: 1,
            ..LIMITS
        };
        let mut seq = 0;
        for key in ["a", "b", "c"] {
            record(&m, &app(1, key), &hits(1), None).unwrap();
        }
        assert_eq!(freeze(&m, "vm", &mut seq, limits).unwrap(), 1);
        assert_eq!(
            due(&m, 0).iter().map(|b| b.id.as_str()).collect::<Vec<_>>(),
            vec!["vm-2", "vm-3"]
        );
    }

    #[test]
    fn one_leader_at_a_time() {
        let m = Memory::default();
        assert!(try_lead(&m, "a", 0, 1_000));
        assert!(!try_lead(&m, "b", 500, 1_000));
        assert!(try_lead(&m, "a", 900, 1_000), "the leader renews");
        assert!(try_lead(&m, "b", 2_000, 1_000), "an expired lease is taken over");
    }

    proptest! {
        /// Records interleaved with freezes: every unit recorded ends up in exactly one batch.
        #[test]
        fn nothing_lost_nothing_doubled(ops in proptest::collection::vec((0u64..3, 0u8..4, 1u64..5, any::<bool>()), 0..60)) {
            let m = Memory::default();
            ensure_slots(&m).unwrap();
            let mut seq = 0;
            let mut expected: BTreeMap<(u64, String), u64> = BTreeMap::new();
            for (service, key, n, freeze_now) in ops {
                let key = format!("k{key}");
                record(&m, &app(service, &key), &hits(n), None).unwrap();
                *expected.entry((service, key)).or_default() += n;
                if freeze_now {
                    freeze(&m, "vm", &mut seq, LIMITS).unwrap();
                }
            }
            freeze(&m, "vm", &mut seq, LIMITS).unwrap();
            prop_assert_eq!(outbox_totals(&m), expected);
        }
    }
}
