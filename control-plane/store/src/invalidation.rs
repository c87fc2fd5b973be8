//! Cache invalidation across replicas, through Redis pub/sub. Every replica publishes its own
//! admin writes on one channel (`{prefix}hot-cache`) with its replica id, and forgets what it
//! cached when another replica's message arrives: a suspension, a key regenerated, a plan
//! changed on one replica is felt by every replica's authrep within milliseconds instead of the
//! cache's TTL.
//!
//! Pub/sub delivers at most once and only to subscribers connected at the time: a replica
//! whose subscription is down misses messages, so the TTL stays the bound then — and each
//! (re)subscription starts by forgetting everything, since what was missed is unknown.

use crate::hot_cache::HotCache;
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How long a broken connection waits before it is tried again (doubling to 5 s).
const RETRY: Duration = Duration::from_millis(200);

/// The nodes of a Redis (one) or a Redis Cluster (several), tried in turn: a message published
/// on any node of a cluster reaches the subscribers on every node, so one that answers will do.
struct Nodes {
    clients: Vec<redis::Client>,
    next: usize,
}

impl Nodes {
    fn new(clients: Vec<redis::Client>) -> Self {
        Self { clients, next: 0 }
    }

    /// The node to try now: the one after the last tried.
    fn next(&mut self) -> &redis::Client {
        let i = self.next % self.clients.len().max(1);
        self.next = self.next.wrapping_add(1);
        &self.clients[i]
    }
}

/// The channel a deployment's replicas share.
pub fn channel(prefix: &str) -> String {
    format!("{prefix}hot-cache")
}

/// A random id for this replica: its messages carry it, so it skips its own.
pub fn replica_id() -> String {
    crate::auth::generate_token()[..16].to_string()
}

/// Publishes this replica's writes and applies the others' until `stopped` turns true.
pub async fn run(nodes: Vec<redis::Client>, prefix: String, cache: Arc<HotCache>, mut stopped: watch::Receiver<bool>) {
    let me = replica_id();
    let channel = channel(&prefix);
    let publisher = publish(Nodes::new(nodes.clone()), channel.clone(), me.clone(), cache.clone());
    let subscriber = subscribe(Nodes::new(nodes), channel, me, cache);
    tokio::select! {
        _ = publisher => {}
        _ = subscriber => {}
        _ = stopped.wait_for(|s| *s) => {}
    }
}

/// Sends one message per burst of local writes (the watch coalesces them).
async fn publish(mut nodes: Nodes, channel: String, me: String, cache: Arc<HotCache>) {
    let mut writes = cache.local_writes();
    let mut wait = RETRY;
    loop {
        let mut conn = match nodes.next().get_multiplexed_async_connection().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cache invalidation: cannot publish; other replicas wait for their TTL");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        wait = RETRY;
        loop {
            if writes.changed().await.is_err() {
                return;
            }
            let sent: redis::RedisResult<i64> = redis::cmd("PUBLISH")
                .arg(&channel)
                .arg(&me)
                .query_async(&mut conn)
                .await;
            if let Err(e) = sent {
                tracing::warn!(error = %e, "cache invalidation: a publish failed; other replicas wait for their TTL");
                break;
            }
        }
    }
}

/// Applies other replicas' messages; forgets everything on every (re)subscription.
async fn subscribe(mut nodes: Nodes, channel: String, me: String, cache: Arc<HotCache>) {
    let mut wait = RETRY;
    loop {
        let mut pubsub = match nodes.next().get_async_pubsub().await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "cache invalidation: cannot subscribe; this replica relies on its TTL");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if let Err(e) = pubsub.subscribe(&channel).await {
            tracing::warn!(error = %e, "cache invalidation: cannot subscribe; this replica relies on its TTL");
            tokio::time::sleep(wait).await;
            continue;
        }
        wait = RETRY;
        cache.invalidate_from_elsewhere();
        let mut messages = pubsub.on_message();
        while let Some(message) = messages.next().await {
            let from: String = message.get_payload().unwrap_or_default();
            if from != me {
                cache.invalidate_from_elsewhere();
                metrics::counter!("tollgate_cache_invalidations_received_total").increment(1);
            }
        }
        tracing::warn!("cache invalidation: the subscription ended; subscribing again");
    }
}
