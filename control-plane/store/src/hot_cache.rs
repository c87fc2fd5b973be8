//! What authrep needs from the catalog — services with their metrics, applications by
//! credential (including "no such key"), plans with their limits, application keys — kept in
//! process so that the hot path makes no database query in the steady state.
//!
//! Freshness: every admin write in this process bumps [`HotCache::invalidate`]'s generation, so
//! this replica never answers from stale data; with Redis, the write is also published to
//! the other replicas ([`crate::invalidation`]), which forget theirs when the message arrives
//! (milliseconds). The TTL (`TOLLGATE_CACHE_TTL_MS`, default 5000 ms) stays as the bound when
//! pub/sub is down, or with no Redis at all. Each map holds at most `CAPACITY` entries; a full
//! map is emptied (re-filled from the database on demand).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
pub use tollgate_domain::catalog::Credential;
use tollgate_domain::catalog::{Application, Service};
use tollgate_domain::credits::Wallet;
use tollgate_domain::ids::{AccountId, ApplicationId, PlanId, ServiceId};
use tollgate_domain::limits::{MetricNode, PlanLimit};

const CAPACITY: usize = 200_000;

struct Entry<V> {
    value: V,
    generation: u64,
    at: Instant,
}

struct Map<K, V>(Mutex<HashMap<K, Entry<V>>>);

impl<K: Eq + Hash, V: Clone> Map<K, V> {
    fn new() -> Self {
        Map(Mutex::new(HashMap::new()))
    }

    fn get(&self, k: &K, generation: u64, ttl: Duration) -> Option<V> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(k)
            .filter(|e| e.generation == generation && e.at.elapsed() < ttl)
            .map(|e| e.value.clone())
    }

    fn put(&self, k: K, value: V, generation: u64) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= CAPACITY {
            map.clear();
        }
        map.insert(
            k,
            Entry {
                value,
                generation,
                at: Instant::now(),
            },
        );
    }
}

/// A service with its metrics (its own and its backends').
#[derive(Debug, Clone)]
pub struct ServiceView {
    pub service: Service,
    pub metrics: Vec<MetricNode>,
}

/// A plan's name and limits.
#[derive(Debug, Clone)]
pub struct PlanView {
    pub name: String,
    pub limits: Vec<PlanLimit>,
}

pub struct HotCache {
    generation: AtomicU64,
    /// Bumped by this replica's own writes only (not by other replicas' messages): what the
    /// publisher of [`crate::invalidation`] watches.
    local: tokio::sync::watch::Sender<u64>,
    ttl: Duration,
    services: Map<ServiceId, Arc<ServiceView>>,
    applications: Map<(ServiceId, Credential), Option<Arc<Application>>>,
    plans: Map<PlanId, Arc<PlanView>>,
    keys: Map<ApplicationId, Arc<Vec<String>>>,
    /// (account, service) → the account's wallet, `None` when it is postpaid.
    wallets: Map<(AccountId, ServiceId), Option<Arc<Wallet>>>,
}

impl HotCache {
    pub fn new(ttl: Duration) -> Self {
        HotCache {
            generation: AtomicU64::new(0),
            local: tokio::sync::watch::Sender::new(0),
            ttl,
            services: Map::new(),
            applications: Map::new(),
            plans: Map::new(),
            keys: Map::new(),
            wallets: Map::new(),
        }
    }

    /// Forgets everything: called after every admin write (and told to the other replicas).
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.local.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Forgets everything because another replica wrote (not told on).
    pub fn invalidate_from_elsewhere(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Changes whenever this replica's own writes invalidate the cache.
    pub fn local_writes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.local.subscribe()
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn service(&self, id: ServiceId) -> Option<Arc<ServiceView>> {
        self.services.get(&id, self.generation(), self.ttl)
    }
    /// Stores a value read at `generation` (read the generation before the database).
    pub fn put_service(&self, id: ServiceId, v: Arc<ServiceView>, generation: u64) {
        self.services.put(id, v, generation)
    }

    pub fn application(&self, service: ServiceId, c: &Credential) -> Option<Option<Arc<Application>>> {
        self.applications
            .get(&(service, c.clone()), self.generation(), self.ttl)
    }
    pub fn put_application(&self, service: ServiceId, c: Credential, v: Option<Arc<Application>>, generation: u64) {
        self.applications.put((service, c), v, generation)
    }

    pub fn plan(&self, id: PlanId) -> Option<Arc<PlanView>> {
        self.plans.get(&id, self.generation(), self.ttl)
    }
    pub fn put_plan(&self, id: PlanId, v: Arc<PlanView>, generation: u64) {
        self.plans.put(id, v, generation)
    }

    pub fn keys(&self, app: ApplicationId) -> Option<Arc<Vec<String>>> {
        self.keys.get(&app, self.generation(), self.ttl)
    }
    pub fn put_keys(&self, app: ApplicationId, v: Arc<Vec<String>>, generation: u64) {
        self.keys.put(app, v, generation)
    }

    pub fn wallet(&self, account: AccountId, service: ServiceId) -> Option<Option<Arc<Wallet>>> {
        self.wallets.get(&(account, service), self.generation(), self.ttl)
    }
    pub fn put_wallet(&self, account: AccountId, service: ServiceId, v: Option<Arc<Wallet>>, generation: u64) {
        self.wallets.put((account, service), v, generation)
    }

    /// The generation to tag a value with: read it before reading the database, so that a
    /// write racing the read leaves the value already stale.
    pub fn snapshot(&self) -> u64 {
        self.generation()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_ttl_make_entries_stale() {
        let c = HotCache::new(Duration::from_millis(50));
        let plan = Arc::new(PlanView {
            name: "p".into(),
            limits: vec![],
        });
        let (p1, a1) = (PlanId::new(1), ApplicationId::new(1));
        let g = c.snapshot();
        c.put_plan(p1, plan.clone(), g);
        assert!(c.plan(p1).is_some());
        c.invalidate();
        assert!(c.plan(p1).is_none(), "an admin write invalidates");
        c.put_plan(p1, plan, c.snapshot());
        std::thread::sleep(Duration::from_millis(60));
        assert!(c.plan(p1).is_none(), "the TTL bounds staleness from other replicas");
        // A value read before a write is stale as soon as it is stored.
        let before = c.snapshot();
        c.invalidate();
        c.put_keys(a1, Arc::new(vec![]), before);
        assert!(c.keys(a1).is_none());
    }
}
