//! The Redis store: one Lua script per call checks every limit and moves every counter
//! atomically. The script is loaded once and run with EVALSHA (`redis::Script` falls back to
//! EVAL when Redis has forgotten it). Keys carry the hash tag `{app:ID}`, so one application's
//! counters share a Redis Cluster slot and the script may touch them all.

use super::{CounterError, CounterStore, Mode, Op, Outcome};
use redis::aio::ConnectionManager;
use std::time::Duration;

/// KEYS: the counters. ARGV[1]: mode; then per key: delta, max (-1: none), ttl (-1: none).
/// Returns {authorized (1|0), value…}. Mirrors `super::exceeds`.
const SCRIPT: &str = r#"
local mode = ARGV[1]
local values = {}
local ok = 1
for i = 1, #KEYS do
  local cur = tonumber(redis.call('GET', KEYS[i]) or '0')
  local delta = tonumber(ARGV[i * 3 - 1])
  local max = tonumber(ARGV[i * 3])
  values[i] = cur
  if mode ~= 'add' and max >= 0 and cur + delta > max then ok = 0 end
end
if mode == 'add' then ok = 1 end
if mode == 'add' or (mode == 'check_and_add' and ok == 1) then
  for i = 1, #KEYS do
    local delta = tonumber(ARGV[i * 3 - 1])
    local ttl = tonumber(ARGV[i * 3 + 1])
    if delta ~= 0 then
      values[i] = redis.call('INCRBY', KEYS[i], delta)
      if ttl > 0 then redis.call('EXPIRE', KEYS[i], ttl) end
    end
  end
end
table.insert(values, 1, ok)
return values
"#;

#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    script: std::sync::Arc<redis::Script>,
    prefix: String,
    timeout: Duration,
}

impl RedisStore {
    /// `prefix` starts every key (tests use their own); `timeout` bounds every call.
    pub fn new(conn: ConnectionManager, prefix: &str, timeout: Duration) -> Self {
        Self {
            conn,
            script: std::sync::Arc::new(redis::Script::new(SCRIPT)),
            prefix: prefix.to_string(),
            timeout,
        }
    }

    pub fn key(&self, app: i64, op: &Op) -> String {
        format!(
            "{}{{app:{app}}}:{}:{}:{}",
            self.prefix,
            op.metric_id,
            op.period.as_str(),
            op.start
        )
    }

    /// The script's source, for `redis-benchmark` to run the same thing.
    pub fn script_source() -> &'static str {
        SCRIPT
    }
}

impl CounterStore for RedisStore {
    async fn apply(&self, app: i64, ops: &[Op], mode: Mode) -> Result<Outcome, CounterError> {
        let mut invocation = self.script.prepare_invoke();
        invocation.arg(match mode {
            Mode::Check => "check",
            Mode::CheckAndAdd => "check_and_add",
            Mode::Add => "add",
        });
        for op in ops {
            invocation.key(self.key(app, op));
            invocation
                .arg(op.delta)
                .arg(op.max.unwrap_or(-1))
                .arg(op.ttl.map(|t| t as i64).unwrap_or(-1));
        }
        let mut conn = self.conn.clone();
        let reply: Vec<i64> = tokio::time::timeout(self.timeout, invocation.invoke_async(&mut conn))
            .await
            .map_err(|_| CounterError::Unavailable(format!("no answer within {:?}", self.timeout)))?
            .map_err(|e| CounterError::Unavailable(e.to_string()))?;
        let (authorized, values) = reply
            .split_first()
            .ok_or_else(|| CounterError::Unavailable("empty reply".into()))?;
        Ok(Outcome {
            authorized: *authorized == 1,
            values: values.to_vec(),
        })
    }
}
