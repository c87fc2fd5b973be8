//! Cached authorizations: what the control plane last said about one application's
//! credentials, kept in shared data so that every worker serves from it. A hit consumes quota
//! locally and costs no call. A request is sent to the control plane (authrep) when the entry
//! is missing or expired, when a period it holds has ended, or when its local quota is used up.
//!
//! An entry holds the application's standing (authorized, or denied and why) and one quota per
//! limited metric and period: the remaining calls, and the metrics whose usage counts against
//! it (the limited metric and its children, from the `hierarchy` the control plane sends).
//! Remaining quota is computed net of usage this gateway served but has not reported yet, so
//! the local view never runs ahead of the control plane's. Several gateways share one limit.
//! Each can spend what it saw remaining, so a fleet can overshoot a limit by at most one
//! cache TTL's worth of the others' traffic. That is the price of not calling per request.

use crate::mapping::Usage;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Why the application is refused, while the entry lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Denial {
    /// Unknown application or wrong key (cached briefly: key spraying stays here).
    KeyInvalid,
    /// The application is suspended (or not yet live).
    Suspended,
    /// A prepaid account out of credits; where to buy more, if the control plane says.
    CreditsExhausted { purchase_url: Option<String> },
    /// A limit is reached (only ever the answer's verdict, see [`Quota::confirmed`]).
    LimitsExceeded,
    /// The limit reached is 0: the plan leaves the metric out (3scale's "disabled" metric).
    /// Refused as a failed authorization, as APIcast does (THREESCALE-2755), since waiting
    /// does not help. Only ever a verdict, never stored: the entry says `LimitsExceeded`.
    Disabled,
}

impl Quota {
    /// Whether a limit of 0 (a disabled metric) refuses the request, rather than a used-up one.
    pub fn disables(&self) -> bool {
        self.confirmed && self.max == 0 && !self.is_credits()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    /// The metrics whose usage counts against this quota.
    #[serde(rename = "m")]
    pub metrics: Vec<String>,
    /// When the period ends (ms since the epoch); `None`: eternity.
    #[serde(rename = "e", default)]
    pub ends_at_ms: Option<u64>,
    #[serde(rename = "x")]
    pub max: i64,
    /// What this gateway may still let through in the period.
    #[serde(rename = "r")]
    pub remaining: i64,
    /// The control plane refused a call for this quota: no need to ask again before the
    /// period ends or the entry expires.
    #[serde(rename = "c", default)]
    pub confirmed: bool,
    /// A prepaid account's credits rather than a limit: what one unit of each of `metrics`
    /// costs, in the control plane's credit units (`max` and `remaining` are in them too).
    #[serde(rename = "w", default, skip_serializing_if = "Vec::is_empty")]
    pub weights: Vec<i64>,
}

impl Quota {
    pub fn is_credits(&self) -> bool {
        !self.weights.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// `None`: the application is authorized (within its quotas).
    #[serde(rename = "d", default)]
    pub denial: Option<Denial>,
    #[serde(rename = "t")]
    pub expires_at_ms: u64,
    #[serde(rename = "q", default)]
    pub quotas: Vec<Quota>,
}

/// Why the control plane must be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    Missing,
    Expired,
    PeriodEnded,
    QuotaUsedUp,
    /// This gateway's share of a prepaid balance is used up: the balance itself may hold more
    /// (the other gateways' shares), so only the control plane can say.
    ShareUsedUp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed from the cache: store this entry (its quotas consumed) and serve.
    Allow(Entry),
    /// Refused from the cache. `retry_after_secs` for limits: until the period ends.
    Deny {
        denial: Denial,
        retry_after_secs: Option<u64>,
    },
    /// Ask the control plane (one authrep), then [`from_authrep`].
    Ask(Miss),
}

/// Units of `usage` that count against `quota` (weighted, for credits).
fn need(quota: &Quota, usage: &Usage) -> i64 {
    usage
        .iter()
        .filter_map(|(metric, n)| {
            let i = quota.metrics.iter().position(|m| m == metric)?;
            let weight = quota.weights.get(i).copied().unwrap_or(1);
            Some(i64::try_from(*n).unwrap_or(i64::MAX).saturating_mul(weight))
        })
        .fold(0i64, i64::saturating_add)
}

fn secs_until(ends_at_ms: Option<u64>, now_ms: u64) -> Option<u64> {
    ends_at_ms.map(|end| end.saturating_sub(now_ms).div_ceil(1000))
}

/// What the cached entry (if any) says about a request using `usage`, at `now_ms`.
pub fn consult(entry: Option<&Entry>, usage: &Usage, now_ms: u64) -> Verdict {
    let Some(entry) = entry else {
        return Verdict::Ask(Miss::Missing);
    };
    if let Some(refused) = refusal(entry, usage, now_ms) {
        return refused;
    }
    let mut next = entry.clone();
    spend(&mut next, usage);
    Verdict::Allow(next)
}

/// Why `entry` cannot serve a request using `usage` at `now_ms` (a [`Verdict::Deny`] or
/// [`Verdict::Ask`]); `None`: it can, and [`spend`] takes the request off it. A worker spends
/// its own share in place this way, without a copy of the entry per request.
pub fn refusal(entry: &Entry, usage: &Usage, now_ms: u64) -> Option<Verdict> {
    if now_ms >= entry.expires_at_ms {
        return Some(Verdict::Ask(Miss::Expired));
    }
    if let Some(denial) = &entry.denial {
        // Limits and credits are decided per quota (a call that uses neither still passes).
        let per_quota = *denial == Denial::LimitsExceeded
            || (matches!(denial, Denial::CreditsExhausted { .. }) && entry.quotas.iter().any(Quota::is_credits));
        if !per_quota {
            return Some(Verdict::Deny {
                denial: denial.clone(),
                retry_after_secs: None,
            });
        }
    }
    if entry
        .quotas
        .iter()
        .any(|q| q.ends_at_ms.is_some_and(|end| now_ms >= end))
    {
        return Some(Verdict::Ask(Miss::PeriodEnded));
    }
    let short = entry.quotas.iter().find(|q| {
        let n = need(q, usage);
        n > 0 && n > q.remaining
    })?;
    Some(if short.confirmed && short.is_credits() {
        Verdict::Deny {
            denial: match &entry.denial {
                Some(d @ Denial::CreditsExhausted { .. }) => d.clone(),
                _ => Denial::CreditsExhausted { purchase_url: None },
            },
            retry_after_secs: None,
        }
    } else if short.disables() {
        Verdict::Deny {
            denial: Denial::Disabled,
            retry_after_secs: None,
        }
    } else if short.confirmed {
        Verdict::Deny {
            denial: Denial::LimitsExceeded,
            retry_after_secs: secs_until(short.ends_at_ms, now_ms),
        }
    } else if short.is_credits() {
        Verdict::Ask(Miss::ShareUsedUp)
    } else {
        Verdict::Ask(Miss::QuotaUsedUp)
    })
}

/// Takes a request using `usage` off `entry`, which [`refusal`] found able to serve it.
pub fn spend(entry: &mut Entry, usage: &Usage) {
    if entry.denial == Some(Denial::LimitsExceeded) {
        entry.denial = None;
    }
    for quota in &mut entry.quotas {
        quota.remaining -= need(quota, usage);
    }
}

/// Below this much remaining quota, shares are exactly what each request needs.
pub const SHARE_ABOVE: i64 = 64;

/// A worker's share of the shared entry, spent without touching shared data: the hot path
/// of one worker is a lookup in its own memory. Taking a share moves quota from the shared
/// entry to the worker's local copy (CAS on the shared entry), so that the workers together
/// never spend more than the shared entry held. A share is a quarter of what remains (only
/// what the request needs below [`SHARE_ABOVE`]), and at least what the request needs. The
/// other workers keep the rest. `None`: the shared entry
/// cannot serve the request (it is missing, expired, out of quota: ask the control plane).
pub fn reserve(shared: &Entry, usage: &Usage, now_ms: u64) -> Option<(Entry, Entry)> {
    match consult(Some(shared), usage, now_ms) {
        Verdict::Ask(_) => return None,
        Verdict::Deny { .. } => return Some((shared.clone(), shared.clone())),
        Verdict::Allow(_) => {}
    }
    let mut rest = shared.clone();
    let mut share = shared.clone();
    for (r, s) in rest.quotas.iter_mut().zip(share.quotas.iter_mut()) {
        // Little left: no more than the request needs, so that no worker sits on quota
        // another could use (and every unit goes through the shared entry).
        let quarter = if r.remaining >= SHARE_ABOVE { r.remaining / 4 } else { 0 };
        let take = quarter.max(need(r, usage)).min(r.remaining);
        r.remaining -= take;
        s.remaining = take;
    }
    Some((rest, share))
}

/// The `RateLimit-Limit`, `-Remaining` and `-Reset` (seconds) values for a request using
/// `usage`: of the quotas it touches, the one with the fewest units left. `more` holds, per
/// quota of `entry`, units known to remain beyond it (the shared entry's rest when `entry` is a
/// worker's share). `None`: the request touches no limited metric.
pub fn rate_limit(entry: &Entry, more: &[i64], usage: &Usage, now_ms: u64) -> Option<(i64, i64, u64)> {
    entry
        .quotas
        .iter()
        .enumerate()
        .filter(|(_, q)| !q.is_credits() && need(q, usage) > 0)
        .map(|(i, q)| {
            let left = q.remaining.saturating_add(more.get(i).copied().unwrap_or(0));
            (
                q.max,
                left.clamp(0, q.max.max(0)),
                secs_until(q.ends_at_ms, now_ms).unwrap_or(0),
            )
        })
        .min_by_key(|(_, left, _)| *left)
}

/// The JSON authrep answer (`/transactions/authrep.json`, with `3scale-options: hierarchy=1`).
#[derive(Debug, Default, Deserialize)]
struct Answer {
    #[serde(default)]
    authorized: bool,
    #[serde(default)]
    rejection_reason: String,
    #[serde(default)]
    usage_reports: Vec<Report>,
    #[serde(default)]
    hierarchy: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    purchase_url: Option<String>,
    /// A prepaid account's credits: left after this call, and what a unit of each metric costs.
    #[serde(default)]
    credits: Option<Credits>,
}

#[derive(Debug, Deserialize)]
struct Credits {
    remaining_units: i64,
    /// This gateway's share of them, when several gateways serve the account.
    #[serde(default)]
    share_units: Option<i64>,
    #[serde(default)]
    weights: BTreeMap<String, i64>,
}

#[derive(Debug, Deserialize)]
struct Report {
    metric: String,
    /// Unix seconds when the period ends; absent for eternity.
    #[serde(default)]
    ends_at: Option<u64>,
    max_value: i64,
    current_value: i64,
}

/// How long entries live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttl {
    pub authorized_ms: u64,
    /// For invalid keys (short: a key created a moment later must work soon).
    pub negative_ms: u64,
}

/// The entry to cache from the control plane's answer for a request using `usage`. `pending`
/// is usage of this application served here and not yet reported (the answer does not include
/// it). `counted`: the answer is authrep's, which counted the request if it authorized it;
/// otherwise it is authorize's (asked while usage is pending: authrep would check the limit
/// without the pending usage), and the request must still fit what remains net of `pending`.
/// `None`: nothing to cache (the control plane failed or answered something unexpected).
pub fn from_authrep(
    status: u32,
    body: &[u8],
    usage: &Usage,
    pending: &BTreeMap<String, u64>,
    counted: bool,
    ttl: Ttl,
    now_ms: u64,
) -> Option<Entry> {
    let expires = |ms: u64| now_ms.saturating_add(ms);
    match status {
        200 | 409 => {}
        403 | 404 => {
            return Some(Entry {
                denial: Some(Denial::KeyInvalid),
                expires_at_ms: expires(ttl.negative_ms),
                quotas: vec![],
            })
        }
        _ => return None,
    }
    let answer: Answer = serde_json::from_slice(body).ok()?;
    let mut denial = match (answer.authorized, answer.rejection_reason.as_str()) {
        (true, _) => None,
        (false, "limits_exceeded") => Some(Denial::LimitsExceeded),
        (false, "application_not_active") => Some(Denial::Suspended),
        (false, "credits_exhausted") => Some(Denial::CreditsExhausted {
            purchase_url: answer.purchase_url.clone(),
        }),
        (false, _) => Some(Denial::KeyInvalid),
    };
    let unreported: Vec<(String, u64)> = pending.iter().map(|(m, n)| (m.clone(), *n)).collect();
    let mut quotas: Vec<Quota> = answer
        .usage_reports
        .iter()
        .map(|r| {
            let mut metrics = vec![r.metric.clone()];
            metrics.extend(answer.hierarchy.get(&r.metric).into_iter().flatten().cloned());
            let mut quota = Quota {
                metrics,
                ends_at_ms: r.ends_at.map(|s| s.saturating_mul(1000)),
                max: r.max_value,
                remaining: 0,
                confirmed: false,
                weights: Vec::new(),
            };
            quota.remaining = r
                .max_value
                .saturating_sub(r.current_value)
                .saturating_sub(need(&quota, &unreported))
                .max(0);
            quota
        })
        .collect();
    if let Some(c) = answer.credits.as_ref().filter(|c| !c.weights.is_empty()) {
        let mine = c.share_units.unwrap_or(c.remaining_units).min(c.remaining_units);
        let mut quota = Quota {
            metrics: c.weights.keys().cloned().collect(),
            weights: c.weights.values().copied().collect(),
            ends_at_ms: None,
            max: mine,
            remaining: 0,
            confirmed: false,
        };
        quota.remaining = mine.saturating_sub(need(&quota, &unreported)).max(0);
        quotas.push(quota);
    }
    if !counted && denial.is_none() {
        if let Some(q) = quotas.iter().find(|q| need(q, usage) > q.remaining) {
            denial = Some(match q.is_credits() {
                true => Denial::CreditsExhausted {
                    purchase_url: answer.purchase_url.clone(),
                },
                false => Denial::LimitsExceeded,
            });
        } else {
            for q in &mut quotas {
                q.remaining -= need(q, usage);
            }
        }
    }
    for q in &mut quotas {
        // Refused for this quota: the request did not fit what was left.
        let refused_here = match &denial {
            Some(Denial::LimitsExceeded) => !q.is_credits(),
            Some(Denial::CreditsExhausted { .. }) => q.is_credits(),
            _ => false,
        };
        q.confirmed = refused_here && need(q, usage) > q.remaining;
    }
    let ttl_ms = match denial {
        Some(Denial::KeyInvalid) => ttl.negative_ms,
        _ => ttl.authorized_ms,
    };
    Some(Entry {
        denial,
        expires_at_ms: expires(ttl_ms),
        quotas,
    })
}

/// The shared cache's bounded layout. Shared data cannot delete keys, and a key per
/// credential would let sprayed keys grow it without bound. Entries therefore live in a fixed
/// number of bucket keys, created empty before traffic, each holding at most
/// [`BUCKET_ENTRIES`] entries. A full bucket evicts what expired, then what expires first.
pub const BUCKET_ENTRIES: usize = 8;

/// One bucket: (cache key, entry) pairs.
pub type Bucket = Vec<(String, Entry)>;

/// The bucket key for a cache key, among `buckets`.
pub fn bucket_key(key: &str, buckets: u32) -> String {
    bucket_name(crate::shared::spread(key.as_bytes(), buckets))
}

/// The name of bucket `i`.
pub fn bucket_name(i: u32) -> String {
    format!("tollgate:cache:{i}")
}

/// A bucket's bytes; anything that is not a bucket reads as empty (shared data outlives filter
/// versions).
pub fn decode_bucket(bytes: Option<&[u8]>) -> Bucket {
    bytes.and_then(|b| serde_json::from_slice(b).ok()).unwrap_or_default()
}

pub fn encode_bucket(bucket: &Bucket) -> Vec<u8> {
    serde_json::to_vec(bucket).unwrap_or_default()
}

/// The entry for `key` in a bucket.
pub fn lookup(bucket: &Bucket, key: &str) -> Option<Entry> {
    bucket.iter().find(|(k, _)| k == key).map(|(_, e)| e.clone())
}

/// Stores `entry` for `key`, evicting (expired first, then soonest to expire) to stay within
/// [`BUCKET_ENTRIES`].
pub fn store(bucket: &mut Bucket, key: &str, entry: Entry, now_ms: u64) {
    bucket.retain(|(k, e)| k != key && e.expires_at_ms > now_ms);
    while bucket.len() >= BUCKET_ENTRIES {
        let Some(soonest) = bucket
            .iter()
            .enumerate()
            .min_by_key(|(_, (_, e))| e.expires_at_ms)
            .map(|(i, _)| i)
        else {
            break;
        };
        bucket.remove(soonest);
    }
    bucket.push((key.to_string(), entry));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TTL: Ttl = Ttl {
        authorized_ms: 5_000,
        negative_ms: 1_000,
    };

    fn usage(pairs: &[(&str, u64)]) -> Usage {
        pairs.iter().map(|(m, n)| (m.to_string(), *n)).collect()
    }

    /// The entry for an authorized answer with `current` of 10 hits used, at `now`.
    fn granted(current: i64, now: u64) -> Entry {
        from_authrep(
            200,
            &answer(true, "", current),
            &usage(&[]),
            &BTreeMap::new(),
            true,
            TTL,
            now,
        )
        .unwrap()
    }

    fn answer(authorized: bool, reason: &str, current: i64) -> Vec<u8> {
        serde_json::json!({
            "authorized": authorized, "rejection_reason": reason, "plan": "Basic",
            "usage_reports": [{"metric": "hits", "period": "minute", "ends_at": 1_060, "max_value": 10, "current_value": current}],
            "hierarchy": {"hits": ["search"]},
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn hits_consume_quota_then_ask_then_deny_until_the_period_ends() {
        let now = 1_057_000;
        let e = from_authrep(
            200,
            &answer(true, "", 7),
            &usage(&[("hits", 1)]),
            &BTreeMap::new(),
            true,
            TTL,
            now,
        )
        .unwrap();
        assert_eq!(e.quotas[0].remaining, 3);
        assert_eq!(e.quotas[0].metrics, vec!["hits", "search"]);
        // A method's use counts against its parent's quota.
        let Verdict::Allow(e) = consult(Some(&e), &usage(&[("search", 2)]), now + 10) else {
            panic!()
        };
        let Verdict::Allow(e) = consult(Some(&e), &usage(&[("hits", 1)]), now + 20) else {
            panic!()
        };
        assert_eq!(e.quotas[0].remaining, 0);
        assert_eq!(
            consult(Some(&e), &usage(&[("hits", 1)]), now + 30),
            Verdict::Ask(Miss::QuotaUsedUp)
        );
        assert!(
            matches!(consult(Some(&e), &usage(&[("other", 1)]), now + 30), Verdict::Allow(_)),
            "unlimited metrics pass"
        );
        // The control plane refuses: refused locally until the minute ends.
        let e = from_authrep(
            409,
            &answer(false, "limits_exceeded", 10),
            &usage(&[("hits", 1)]),
            &BTreeMap::new(),
            true,
            TTL,
            now + 40,
        )
        .unwrap();
        assert_eq!(
            consult(Some(&e), &usage(&[("hits", 1)]), now + 50),
            Verdict::Deny {
                denial: Denial::LimitsExceeded,
                retry_after_secs: Some(3)
            }
        );
        assert!(matches!(
            consult(Some(&e), &usage(&[("other", 1)]), now + 50),
            Verdict::Allow(_)
        ));
        assert_eq!(
            consult(Some(&e), &usage(&[("hits", 1)]), 1_060_000),
            Verdict::Ask(Miss::PeriodEnded)
        );
        assert_eq!(
            consult(Some(&e), &usage(&[("hits", 1)]), now + 5_040),
            Verdict::Ask(Miss::Expired)
        );
        assert_eq!(consult(None, &usage(&[]), now), Verdict::Ask(Miss::Missing));
    }

    #[test]
    fn unreported_usage_is_not_spent_twice() {
        let pending = BTreeMap::from([("search".to_string(), 2)]);
        let e = from_authrep(
            200,
            &answer(true, "", 5),
            &usage(&[("hits", 1)]),
            &pending,
            true,
            TTL,
            0,
        )
        .unwrap();
        assert_eq!(e.quotas[0].remaining, 3);
        // authorize's answer (nothing counted): the request takes its unit here, if it fits.
        let e = from_authrep(
            200,
            &answer(true, "", 5),
            &usage(&[("hits", 1)]),
            &pending,
            false,
            TTL,
            0,
        )
        .unwrap();
        assert_eq!((e.denial, e.quotas[0].remaining), (None, 2));
        let e = from_authrep(
            200,
            &answer(true, "", 8),
            &usage(&[("hits", 1)]),
            &pending,
            false,
            TTL,
            0,
        )
        .unwrap();
        assert_eq!(
            e.denial,
            Some(Denial::LimitsExceeded),
            "8 counted + 2 pending: no room, whatever authorize said"
        );
        assert!(e.quotas[0].confirmed);
    }

    #[test]
    fn refusals_are_cached_with_their_reason() {
        let e = from_authrep(403, b"", &usage(&[]), &BTreeMap::new(), true, TTL, 0).unwrap();
        assert_eq!((e.denial.clone(), e.expires_at_ms), (Some(Denial::KeyInvalid), 1_000));
        let suspended = from_authrep(
            409,
            &answer(false, "application_not_active", 0),
            &usage(&[]),
            &BTreeMap::new(),
            true,
            TTL,
            0,
        )
        .unwrap();
        assert_eq!(
            consult(Some(&suspended), &usage(&[("other", 1)]), 1),
            Verdict::Deny {
                denial: Denial::Suspended,
                retry_after_secs: None
            }
        );
        let body = br#"{"authorized":false,"rejection_reason":"credits_exhausted","purchase_url":"https://buy"}"#;
        let broke = from_authrep(409, body, &usage(&[]), &BTreeMap::new(), true, TTL, 0).unwrap();
        assert_eq!(
            broke.denial,
            Some(Denial::CreditsExhausted {
                purchase_url: Some("https://buy".into())
            })
        );
        assert_eq!(
            from_authrep(503, b"", &usage(&[]), &BTreeMap::new(), true, TTL, 0),
            None
        );
        assert_eq!(
            from_authrep(200, b"<xml/>", &usage(&[]), &BTreeMap::new(), true, TTL, 0),
            None
        );
    }

    #[test]
    fn spending_in_place_is_what_consult_allows() {
        let now = 1_057_001;
        // An overdrawn quota refuses nothing to a request that does not touch it.
        let mut over = granted(10, 1_057_000);
        over.quotas[0].remaining = -2;
        let other = usage(&[("other", 1)]);
        assert_eq!(refusal(&over, &other, now), None);
        let mut spent = over.clone();
        spend(&mut spent, &other);
        assert_eq!(consult(Some(&over), &other, now), Verdict::Allow(spent));
        // Within the quota: spent in place exactly as consult's copy.
        let fresh = granted(3, 1_057_000);
        let search = usage(&[("search", 2)]);
        let mut spent = fresh.clone();
        spend(&mut spent, &search);
        assert_eq!(spent.quotas[0].remaining, fresh.quotas[0].remaining - 2);
        assert_eq!(consult(Some(&fresh), &search, now), Verdict::Allow(spent));
        assert_eq!(refusal(&over, &search, now), Some(Verdict::Ask(Miss::QuotaUsedUp)));
    }

    #[test]
    fn a_gateway_spends_only_its_share_of_the_credits() {
        let answer = |share: Option<i64>| {
            let mut credits = serde_json::json!({"remaining_units": 10, "weights": {"hits": 1}});
            if let Some(share) = share {
                credits["share_units"] = share.into();
            }
            serde_json::json!({"authorized": true, "plan": "Prepaid", "usage_reports": [], "credits": credits})
                .to_string()
                .into_bytes()
        };
        let none = BTreeMap::new();
        let hit = usage(&[("hits", 1)]);
        let served_from = |body: &[u8]| {
            let mut entry = from_authrep(200, body, &hit, &none, true, TTL, 0).unwrap();
            let mut served = 0;
            while let Verdict::Allow(next) = consult(Some(&entry), &hit, 1) {
                entry = next;
                served += 1;
            }
            served
        };
        assert_eq!(served_from(&answer(None)), 10, "alone: all of it");
        assert_eq!(served_from(&answer(Some(3))), 3, "one of three gateways: its share");
        assert_eq!(served_from(&answer(Some(50))), 10, "never more than remains");
    }

    #[test]
    fn credits_are_a_weighted_quota_and_their_refusal_spares_free_calls() {
        // 3 credits' worth of units left; a hit costs 1, a search 2 (hits' own rate included).
        let body = |authorized: bool, remaining: i64| {
            let mut v = serde_json::json!({
                "authorized": authorized, "plan": "Prepaid", "usage_reports": [],
                "credits": {"remaining_units": remaining, "weights": {"hits": 1, "search": 2}},
            });
            if !authorized {
                v["rejection_reason"] = "credits_exhausted".into();
                v["purchase_url"] = "https://buy".into();
            }
            v.to_string().into_bytes()
        };
        let none = BTreeMap::new();
        let entry = from_authrep(200, &body(true, 3), &usage(&[("hits", 1)]), &none, true, TTL, 0).unwrap();
        let Verdict::Allow(entry) = consult(Some(&entry), &usage(&[("search", 1)]), 1) else {
            panic!()
        };
        let Verdict::Allow(entry) = consult(Some(&entry), &usage(&[("hits", 1)]), 1) else {
            panic!()
        };
        assert_eq!(
            consult(Some(&entry), &usage(&[("hits", 1)]), 1),
            Verdict::Ask(Miss::ShareUsedUp)
        );
        assert!(
            rate_limit(&entry, &[], &usage(&[("hits", 1)]), 1).is_none(),
            "credits are no RateLimit"
        );

        // Refused for credits: calls that cost something get 402 from the cache, free ones pass.
        let broke = from_authrep(409, &body(false, 0), &usage(&[("hits", 1)]), &none, true, TTL, 0).unwrap();
        let purchase_url = Some("https://buy".to_string());
        assert_eq!(
            consult(Some(&broke), &usage(&[("hits", 1)]), 1),
            Verdict::Deny {
                denial: Denial::CreditsExhausted { purchase_url },
                retry_after_secs: None
            }
        );
        assert!(matches!(
            consult(Some(&broke), &usage(&[("free", 1)]), 1),
            Verdict::Allow(_)
        ));
        // Unreported usage is paid from what remains, at its weight.
        let pending = BTreeMap::from([("search".to_string(), 1)]);
        let entry = from_authrep(200, &body(true, 3), &usage(&[("hits", 1)]), &pending, true, TTL, 0).unwrap();
        assert_eq!(entry.quotas[0].remaining, 1);
    }

    #[test]
    fn entries_are_small() {
        let e = granted(7, 1_700_000_000_000);
        let mut bucket = Bucket::new();
        store(
            &mut bucket,
            "tollgate:auth:1:u:0123456789abcdef0123456789abcdef",
            e.clone(),
            0,
        );
        let bytes = encode_bucket(&bucket);
        assert!(bytes.len() <= 512, "{} bytes", bytes.len());
        assert_eq!(decode_bucket(Some(&bytes)), bucket);
        assert_eq!(decode_bucket(Some(b"garbage")), Bucket::new(), "never trusted blindly");
    }

    #[test]
    fn a_share_is_a_quarter_and_at_least_the_need() {
        let big = |current: i64| {
            let body = serde_json::json!({"authorized": true, "usage_reports": [{"metric": "hits", "period": "day", "ends_at": 86_400, "max_value": 1000, "current_value": current}]});
            from_authrep(
                200,
                body.to_string().as_bytes(),
                &usage(&[]),
                &BTreeMap::new(),
                true,
                TTL,
                0,
            )
            .unwrap()
        };
        let (rest, share) = reserve(&big(0), &usage(&[("hits", 1)]), 1).unwrap();
        assert_eq!((rest.quotas[0].remaining, share.quotas[0].remaining), (750, 250));
        let (rest, share) = reserve(&big(950), &usage(&[("hits", 1)]), 1).unwrap();
        assert_eq!(
            (rest.quotas[0].remaining, share.quotas[0].remaining),
            (49, 1),
            "little left: just the need"
        );
        let e = granted(2, 0);
        let (_, share) = reserve(&e, &usage(&[("hits", 5)]), 1).unwrap();
        assert_eq!(share.quotas[0].remaining, 5);
        assert_eq!(reserve(&e, &usage(&[("hits", 9)]), 1), None, "more than remains: ask");
    }

    #[test]
    fn rate_limit_headers_follow_the_tightest_quota() {
        let e = granted(7, 1_000_000);
        assert_eq!(
            rate_limit(&e, &[], &usage(&[("search", 1)]), 1_000_000),
            Some((10, 3, 60))
        );
        assert_eq!(
            rate_limit(&e, &[2], &usage(&[("hits", 1)]), 1_030_000),
            Some((10, 5, 30))
        );
        assert_eq!(rate_limit(&e, &[], &usage(&[("other", 1)]), 0), None);
    }

    #[test]
    fn buckets_stay_bounded_and_keep_what_lives_longest() {
        let entry = |expires_at_ms| Entry {
            denial: Some(Denial::KeyInvalid),
            expires_at_ms,
            quotas: vec![],
        };
        let mut bucket = Bucket::new();
        for i in 0..20u64 {
            store(&mut bucket, &format!("k{i}"), entry(1_000 + i), 10);
        }
        assert_eq!(bucket.len(), BUCKET_ENTRIES);
        assert_eq!(lookup(&bucket, "k19").map(|e| e.expires_at_ms), Some(1_019));
        assert_eq!(lookup(&bucket, "k0"), None, "the soonest to expire went first");
        store(&mut bucket, "k19", entry(5_000), 10);
        assert_eq!(bucket.len(), BUCKET_ENTRIES, "replaced, not added");
        store(&mut bucket, "new", entry(9_000), 1_015);
        assert!(
            bucket.iter().all(|(_, e)| e.expires_at_ms > 1_015),
            "expired ones go first"
        );
        assert_eq!(decode_bucket(Some(&encode_bucket(&bucket))), bucket);
        assert_eq!(bucket_key("a", 16), bucket_key("a", 16));
    }

    proptest! {
        /// Workers taking shares and spending them never spend more than the shared entry held.
        #[test]
        fn shares_never_spend_more_than_there_was(current in 0i64..20, calls in proptest::collection::vec((0usize..3, 0u64..4), 0..60)) {
            let body = answer(true, "", current);
            let mut shared = from_authrep(200, &body, &usage(&[]), &BTreeMap::new(), true, TTL, 0).unwrap();
            let mut locals: Vec<Option<Entry>> = vec![None, None, None];
            let mut passed = 0i64;
            for (worker, n) in calls {
                let u = usage(&[("hits", n)]);
                let local = &mut locals[worker];
                // As the VM does (`vm::from_cache`): a worker's own share is spent in place.
                if let Some(l) = local.as_mut().filter(|l| refusal(l, &u, 1).is_none()) {
                    spend(l, &u);
                    passed += n as i64;
                    continue;
                }
                if let Some((rest, share)) = reserve(&shared, &u, 1) {
                    shared = rest;
                    if let Verdict::Allow(next) = consult(Some(&share), &u, 1) {
                        passed += n as i64;
                        *local = Some(next);
                    }
                }
            }
            prop_assert!(passed <= (10 - current).max(0));
        }

        /// However requests arrive, the cache never lets more through than the control plane
        /// said remained.
        #[test]
        fn never_more_than_remaining(current in 0i64..20, calls in proptest::collection::vec(0u64..4, 0..40)) {
            let body = answer(true, "", current);
            let mut entry = from_authrep(200, &body, &usage(&[]), &BTreeMap::new(), true, TTL, 0).unwrap();
            let mut passed = 0i64;
            for n in calls {
                if let Verdict::Allow(next) = consult(Some(&entry), &usage(&[("search", n)]), 1) {
                    passed += n as i64;
                    entry = next;
                }
            }
            prop_assert!(passed <= (10 - current).max(0));
        }

        #[test]
        fn no_answer_panics(status in 100u32..600, body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = from_authrep(status, &body, &usage(&[("hits", 1)]), &BTreeMap::new(), true, TTL, 0);
            let _ = decode_bucket(Some(&body));
        }
    }
}
