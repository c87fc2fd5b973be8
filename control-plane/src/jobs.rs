//! What a control plane does besides answering requests: the usage flush (counters into the
//! usage tables, limit alerts for what moved, credits into the ledger, grants that expired, old
//! report batch ids) on one beat, and the daily billing schedule.

use std::time::Duration;
use tollgate_store::counters::Counters;
use tollgate_store::{alerts, batches, credits, Db};

/// Flushes every `interval` until `stop` fires, then once more (so a graceful shutdown leaves
/// nothing unflushed).
pub async fn flush_loop(db: Db, counters: Counters, interval: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = stop.changed() => true,
        };
        flush_once(&db, &counters).await;
        if stopping {
            return;
        }
    }
}

/// One beat: usage, then what prepaid accounts spent (which reads the usage tables), expiries,
/// and report batch ids older than a day. A step that fails is retried at the next beat.
pub async fn flush_once(db: &Db, counters: &Counters) {
    if let Err(e) = alerts::flush_usage(db, counters).await {
        tracing::warn!(error = %e, "usage flush failed; retrying at the next tick");
    }
    match credits::flush(db, counters).await {
        Ok(0) => {}
        Ok(n) => tracing::debug!(accounts = n, "credit deductions recorded"),
        Err(e) => tracing::warn!(error = %e, "credit flush failed; retrying at the next tick"),
    }
    match credits::expire(db, counters).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(grants = n, "credit grants expired"),
        Err(e) => tracing::warn!(error = %e, "expiring credit grants failed; retrying at the next tick"),
    }
    if let Err(e) = batches::forget_old(db, chrono::Utc::now().timestamp()).await {
        tracing::warn!(error = %e, "forgetting old report batches failed");
    }
}
