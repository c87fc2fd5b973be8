//! What every handler shares: the database, the counters, the hot-path cache, the payment
//! gateways.

use std::sync::Arc;
use tollgate_store::authrep::Lookup;
use tollgate_store::billing::payments::Gateways;
use tollgate_store::counters::Counters;
use tollgate_store::hot_cache::HotCache;
use tollgate_store::Db;

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub counters: Counters,
    pub cache: Arc<HotCache>,
    pub gateways: Gateways,
    /// The Envoy gateways connected over xDS (`GET /admin/api/gateways.json`).
    pub gateway_registry: Arc<tollgate_store::gateway_registry::GatewayRegistry>,
    /// How long a console session lives without a request (`TOLLGATE_CONSOLE_IDLE_MINUTES`).
    pub console_idle: chrono::Duration,
    /// SMTP, when configured (`TOLLGATE_SMTP_URL`): what the console sends invitations with.
    pub mailer: Option<crate::mailer::Mailer>,
    /// How many gateways share a prepaid balance (`TOLLGATE_GATEWAYS`): each is told its share
    /// ([`tollgate_domain::credits::gateway_share`]).
    pub gateways_sharing: u32,
}

impl AppState {
    /// The database through the hot-path cache.
    pub fn lookup(&self) -> Lookup<'_> {
        Lookup {
            db: &self.db,
            cache: &self.cache,
        }
    }
}
