//! Building and running the server: connect, migrate, ensure the bootstrap token, bind, serve,
//! and shut down gracefully (in-flight requests finish; writes are transactions, so nothing is
//! left half-written).

use crate::config::Config;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tollgate_api::AppState;
use tollgate_store::billing::payments::{Gateways, Stripe, StripeConfig};
use tollgate_store::counters::{embedded::EmbeddedStore, redis::RedisStore, Counters};
use tollgate_store::{Db, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("database {url}: {source}")]
    Database { url: String, source: sqlx::Error },
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("loading counters: {0}")]
    Counters(sqlx::Error),
    #[error("provider account: {0}")]
    Provider(StoreError),
    #[error("bootstrap admin token: {0}")]
    AdminToken(StoreError),
    #[error("redis {url}: {source}")]
    Redis { url: String, source: redis::RedisError },
    #[error("{0}")]
    Mail(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("xds: {0}")]
    Xds(StoreError),
}

pub struct Application {
    listener: TcpListener,
    state: AppState,
    usage_flush: Duration,
    /// The daily billing run's UTC hour; `None`: no schedule in this process.
    billing_hour: Option<u32>,
    /// Delivers the outbox: webhooks and e-mail.
    sender: std::sync::Arc<tollgate_api::delivery::Sender>,
    /// Envoy's aggregated discovery service, when configured.
    xds: Option<(TcpListener, tollgate_xds::Snapshots)>,
    /// With Redis: where replicas tell each other their admin writes (and the key prefix).
    invalidation: Option<(Vec<redis::Client>, String)>,
}

/// The payment gateways the configuration names.
pub fn gateways(config: &Config) -> Gateways {
    Gateways {
        stripe: config.stripe_secret_key.as_ref().map(|key| {
            std::sync::Arc::new(Stripe::new(StripeConfig {
                api_base: config.stripe_api_base.clone(),
                secret_key: key.clone(),
            }))
        }),
    }
}

/// Connects to the configured database and migrates it.
/// The outbox's sender, as configured.
pub fn sender(config: &Config, db: &Db) -> Result<std::sync::Arc<tollgate_api::delivery::Sender>, StartupError> {
    use tollgate_api::delivery::{http::WebhookClient, mail::Mailer, Sender};
    let mail = match &config.smtp_url {
        Some(url) => Some(Mailer::new(url, &config.mail_from).map_err(StartupError::Mail)?),
        None => None,
    };
    Ok(std::sync::Arc::new(Sender {
        db: db.clone(),
        http: WebhookClient::new(config.webhook_allow_private),
        mail,
        policy: tollgate_domain::notify::RetryPolicy {
            base_ms: config.webhook_retry_ms,
            max_attempts: config.webhook_max_attempts,
        },
        lease: Duration::from_secs(60),
        poll: Duration::from_millis(config.outbox_poll_ms),
    }))
}

pub async fn database(config: &Config) -> Result<Db, StartupError> {
    let db = Db::connect(&config.database_url)
        .await
        .map_err(|source| StartupError::Database {
            url: redact(&config.database_url),
            source,
        })?;
    db.migrate().await?;
    Ok(db.with_gateway_defaults(tollgate_domain::gateway::GatewayDefaults {
        domain: config.gateway_domain.clone(),
        staging_port: config.staging_port,
        production_port: config.production_port,
    }))
}

/// The configured counter store: embedded (its counters loaded from the database) or Redis.
pub async fn counters(config: &Config, db: &Db) -> Result<Counters, StartupError> {
    Ok(match &config.redis_url {
        None => Counters::Embedded(std::sync::Arc::new(
            EmbeddedStore::durable(db.clone())
                .await
                .map_err(StartupError::Counters)?,
        )),
        Some(url) => {
            let err = |source| StartupError::Redis {
                url: redact(url),
                source,
            };
            let conn = tollgate_store::redis_nodes::Connection::open(url).await.map_err(err)?;
            let store = RedisStore::new(
                conn,
                &config.redis_prefix,
                Duration::from_millis(config.redis_timeout_ms),
            )
            .with_replica_acks(config.redis_replica_acks);
            rekey(&store, db).await;
            // What the last process moved but may not have flushed is flushed again.
            match store.recover_changed_series().await {
                Ok(n) => tracing::info!(hour_counters = n, "hour counters handed to the usage flush"),
                Err(e) => {
                    tracing::warn!(error = %e, "could not list hour counters; the usage flush may miss the last moves before the restart")
                }
            }
            Counters::Redis(store)
        }
    })
}

/// Moves counters a previous version stored under the application's hash tag to the
/// account's (see `RedisStore::rekey`), so that an upgrade keeps this period's counts.
async fn rekey(store: &RedisStore, db: &Db) {
    let legacy = match store.legacy_keys().await {
        Ok(keys) if keys.is_empty() => return,
        Ok(keys) => keys,
        Err(e) => {
            tracing::warn!(error = %e, "could not look for counters under the old keys");
            return;
        }
    };
    let moved = match tollgate_store::catalog::applications::accounts(db).await {
        Ok(accounts) => store.rekey(&legacy, &accounts).await,
        Err(e) => Err(tollgate_store::counters::CounterError::Unavailable(e.to_string())),
    };
    match moved {
        Ok(n) => tracing::info!(counters = n, "counters moved to the account's hash tag"),
        Err(e) => tracing::warn!(error = %e, "could not move counters to the account's hash tag"),
    }
}

impl Application {
    pub async fn build(config: &Config) -> Result<Self, StartupError> {
        let db = database(config).await?;
        tollgate_store::catalog::provider::ensure(&db)
            .await
            .map_err(StartupError::Provider)?;
        if let Some(token) = &config.admin_token {
            tollgate_store::auth::ensure_admin_token(&db, token)
                .await
                .map_err(StartupError::AdminToken)?;
        }
        let counters = counters(config, &db).await?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartupError::Bind {
                addr: config.listen,
                source,
            })?;
        let xds = match config.xds_listen {
            None => None,
            Some(addr) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartupError::Bind { addr, source })?;
                let snapshots = tollgate_xds::Snapshots::start(db.clone(), Duration::from_millis(config.xds_poll_ms))
                    .await
                    .map_err(StartupError::Xds)?;
                Some((listener, snapshots))
            }
        };
        tollgate_api::metrics::handle();
        let sender = sender(config, &db)?;
        let mailer = sender.mail.clone();
        let invalidation = match &config.redis_url {
            Some(url) => Some((
                tollgate_store::redis_nodes::clients(url).map_err(|source| StartupError::Redis {
                    url: redact(url),
                    source,
                })?,
                config.redis_prefix.clone(),
            )),
            None => None,
        };
        Ok(Self {
            sender,
            xds,
            invalidation,
            listener,
            usage_flush: Duration::from_millis(config.usage_flush_ms),
            state: AppState {
                db,
                counters,
                cache: std::sync::Arc::new(tollgate_store::hot_cache::HotCache::new(Duration::from_millis(
                    config.cache_ttl_ms,
                ))),
                gateways: gateways(config),
                gateway_registry: Default::default(),
                console_idle: chrono::Duration::minutes(config.console_idle_minutes as i64),
                mailer,
                gateways_sharing: config.gateways,
            },
            billing_hour: config.billing_hour,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Where xDS listens (`None`: off).
    pub fn xds_addr(&self) -> Option<SocketAddr> {
        self.xds.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish and flushes
    /// usage one last time.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        tracing::info!(addr = %self.local_addr(), database = ?self.state.db.engine, counters = self.state.counters.backend(), "tollgate listening");
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let flusher = tokio::spawn(crate::jobs::flush_loop(
            self.state.db.clone(),
            self.state.counters.clone(),
            self.usage_flush,
            stopped,
        ));
        let sender = tokio::spawn(self.sender.clone().run(stop.subscribe()));
        // Other replicas' admin writes reach this one's hot cache at once (the TTL is the bound
        // only while pub/sub is down).
        let invalidation = self.invalidation.map(|(client, prefix)| {
            tokio::spawn(tollgate_store::invalidation::run(
                client,
                prefix,
                self.state.cache.clone(),
                stop.subscribe(),
            ))
        });
        let schedule = self.billing_hour.map(|hour| {
            tokio::spawn(tollgate_store::billing::run::schedule(
                self.state.db.clone(),
                self.state.counters.clone(),
                self.state.gateways.clone(),
                hour,
                stop.subscribe(),
            ))
        });
        let xds = self.xds.map(|(listener, snapshots)| {
            tracing::info!(addr = ?listener.local_addr().ok(), "xds listening");
            let xds = tollgate_xds::Xds {
                db: self.state.db.clone(),
                snapshots,
                registry: self.state.gateway_registry.clone(),
                stopping: stop.subscribe(),
            };
            let mut stopped = stop.subscribe();
            tokio::spawn(tollgate_xds::serve(listener, xds, async move {
                let _ = stopped.wait_for(|s| *s).await;
            }))
        });
        let app = tollgate_api::router(self.state.clone());
        // The client's address reaches handlers (the console throttles sign-ins by it).
        let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        let served = axum::serve(self.listener, app).with_graceful_shutdown(shutdown).await;
        let _ = stop.send(true);
        if let Some(schedule) = schedule {
            let _ = schedule.await;
        }
        let _ = sender.await;
        if let Some(invalidation) = invalidation {
            let _ = invalidation.await;
        }
        if let Some(xds) = xds {
            match xds.await {
                Ok(Err(e)) => tracing::error!(error = %e, "xds server failed"),
                Err(e) => tracing::error!(error = %e, "xds server failed"),
                Ok(Ok(())) => {}
            }
        }
        if let Err(e) = flusher.await {
            tracing::error!(error = %e, "usage flusher failed");
        }
        served?;
        self.state.db.pool.close().await;
        tracing::info!("tollgate stopped");
        Ok(())
    }
}

/// A future that completes on SIGTERM or SIGINT. The handlers are registered when this is
/// called, not when the future is first polled: call it before binding, so that a signal that
/// arrives while the server starts is not fatal.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let (mut term, mut int) = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let term = async {
                match term.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            };
            let int = async {
                match int.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = term => {},
                _ = int => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutdown requested; finishing in-flight requests");
    }
}

/// A URL without its password, for logs and errors.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..scheme + 3], user, &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(super::redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(super::redact("sqlite://x.db"), "sqlite://x.db");
    }
}
