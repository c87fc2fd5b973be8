//! The in-process store: counters in sharded maps, one lock per shard. One application's
//! counters live in one shard, so a call's check-and-add happens under one lock (atomic per
//! application) while other applications proceed on other shards.

use super::{exceeds, CounterError, CounterStore, Mode, Op, Outcome};
use crate::periods::Period;
use std::collections::HashMap;
use std::sync::Mutex;

const SHARDS: usize = 64;
/// Expired counters are swept from a shard every this many calls on it.
const SWEEP_EVERY: u32 = 4096;

type Key = (i64, i64, Period, i64);

#[derive(Default)]
struct Shard {
    /// (app, metric, period, start) → (value, expires at: unix seconds, or None).
    counters: HashMap<Key, (i64, Option<i64>)>,
    calls: u32,
}

pub struct EmbeddedStore {
    shards: Vec<Mutex<Shard>>,
}

impl Default for EmbeddedStore {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
        }
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl EmbeddedStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn shard(&self, app: i64) -> &Mutex<Shard> {
        let i = (app.unsigned_abs() % SHARDS as u64) as usize;
        &self.shards[i]
    }

    /// Applies the ops under the application's shard lock.
    pub fn apply_now(&self, app: i64, ops: &[Op], mode: Mode, now: i64) -> Outcome {
        // A poisoned lock only means another call panicked mid-way; the map itself is intact.
        let mut shard = self.shard(app).lock().unwrap_or_else(|e| e.into_inner());
        shard.calls = shard.calls.wrapping_add(1);
        if shard.calls.is_multiple_of(SWEEP_EVERY) {
            shard.counters.retain(|_, (_, expires)| expires.is_none_or(|e| e > now));
        }
        let key = |op: &Op| (app, op.metric_id, op.period, op.start);
        let current = |shard: &Shard, op: &Op| match shard.counters.get(&key(op)) {
            Some((v, expires)) if expires.is_none_or(|e| e > now) => *v,
            _ => 0,
        };
        let mut values: Vec<i64> = ops.iter().map(|op| current(&shard, op)).collect();
        let authorized = mode == Mode::Add || !ops.iter().zip(&values).any(|(op, cur)| exceeds(*cur, op.delta, op.max));
        if mode == Mode::Add || (mode == Mode::CheckAndAdd && authorized) {
            for (op, value) in ops.iter().zip(values.iter_mut()) {
                if op.delta != 0 {
                    *value = value.saturating_add(op.delta);
                    let expires = op.ttl.map(|t| now + t as i64);
                    shard.counters.insert(key(op), (*value, expires));
                }
            }
        }
        Outcome { authorized, values }
    }

    /// Counters held (for tests and memory figures).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|s| s.counters.len()).unwrap_or(0))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl CounterStore for EmbeddedStore {
    async fn apply(&self, app: i64, ops: &[Op], mode: Mode) -> Result<Outcome, CounterError> {
        Ok(self.apply_now(app, ops, mode, now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(delta: i64, max: Option<i64>, ttl: Option<u64>) -> Op {
        Op {
            metric_id: 1,
            period: Period::Minute,
            start: 60,
            ttl,
            delta,
            max,
        }
    }

    #[test]
    fn expired_counters_read_as_zero() {
        let s = EmbeddedStore::new();
        s.apply_now(1, &[op(5, None, Some(10))], Mode::Add, 100);
        assert_eq!(
            s.apply_now(1, &[op(0, None, Some(10))], Mode::Check, 105).values,
            vec![5]
        );
        assert_eq!(
            s.apply_now(1, &[op(0, None, Some(10))], Mode::Check, 111).values,
            vec![0]
        );
    }
}
