//! The gateways connected to this control plane over xDS, in memory: who they are, which
//! environment they serve, the version of each resource type they acknowledged, and the last
//! error one reported (a NACK). `GET /admin/api/gateways.json` shows it; a gateway that
//! disconnects leaves it.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GatewayError {
    /// `clusters`, `routes` or `filter`.
    pub resource: String,
    pub version: String,
    pub message: String,
    pub at: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GatewayStatus {
    pub id: String,
    pub cluster: String,
    pub environment: String,
    pub address: String,
    pub connected_at: String,
    /// The version the control plane offers this gateway now.
    pub offered_version: String,
    /// The version every resource type acknowledged, when they agree.
    pub version: Option<String>,
    /// The acknowledged version per resource type.
    pub versions: BTreeMap<String, String>,
    pub last_error: Option<GatewayError>,
}

#[derive(Debug, Default)]
pub struct GatewayRegistry {
    next: AtomicU64,
    gateways: Mutex<BTreeMap<u64, GatewayStatus>>,
}

impl GatewayRegistry {
    /// Registers a connected gateway; the key is for its updates and its leaving.
    pub fn connect(&self, status: GatewayStatus) -> u64 {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        self.with(|g| {
            g.insert(key, status);
        });
        key
    }

    pub fn offered(&self, key: u64, version: &str) {
        self.update(key, |s| s.offered_version = version.to_string());
    }

    pub fn acknowledged(&self, key: u64, resource: &str, version: &str) {
        self.update(key, |s| {
            s.versions.insert(resource.to_string(), version.to_string());
            let mut all = s.versions.values();
            let first = all.next().cloned();
            s.version = first.filter(|f| all.all(|v| v == f));
        });
    }

    pub fn refused(&self, key: u64, error: GatewayError) {
        self.update(key, |s| s.last_error = Some(error));
    }

    pub fn disconnect(&self, key: u64) {
        self.with(|g| {
            g.remove(&key);
        });
    }

    /// Every connected gateway, in order of connection.
    pub fn list(&self) -> Vec<GatewayStatus> {
        self.with(|g| g.values().cloned().collect())
    }

    fn update(&self, key: u64, f: impl FnOnce(&mut GatewayStatus)) {
        self.with(|g| {
            if let Some(s) = g.get_mut(&key) {
                f(s)
            }
        });
    }

    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<u64, GatewayStatus>) -> T) -> T {
        // A panic while holding the lock cannot leave a half-made entry: every change is one
        // insert, remove or field assignment.
        let mut guard = match self.gateways.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_acks_and_errors_until_disconnect() {
        let r = GatewayRegistry::default();
        let k = r.connect(GatewayStatus {
            id: "g".into(),
            cluster: "c".into(),
            environment: "staging".into(),
            address: "127.0.0.1:1".into(),
            connected_at: "now".into(),
            offered_version: "1:1".into(),
            version: None,
            versions: BTreeMap::new(),
            last_error: None,
        });
        r.acknowledged(k, "clusters", "1:1");
        assert_eq!(r.list()[0].version.as_deref(), Some("1:1"));
        r.acknowledged(k, "routes", "1:2");
        assert_eq!(r.list()[0].version, None);
        r.acknowledged(k, "clusters", "1:2");
        assert_eq!(r.list()[0].version.as_deref(), Some("1:2"));
        r.refused(
            k,
            GatewayError {
                resource: "routes".into(),
                version: "1:3".into(),
                message: "bad".into(),
                at: "now".into(),
            },
        );
        assert_eq!(r.list()[0].last_error.as_ref().map(|e| e.message.as_str()), Some("bad"));
        r.disconnect(k);
        assert!(r.list().is_empty());
    }
}
