//! The Redis store: one Lua script per call checks every limit and moves every counter
//! atomically. The script is loaded once and run with EVALSHA (`redis::Script` falls back to
//! EVAL when Redis has forgotten it). Keys carry the hash tag `{app:ID}`, so one application's
//! counters share a Redis Cluster slot and the script may touch them all.

use super::store::{CounterError, CounterStore};
use redis::aio::ConnectionManager;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tollgate_domain::counters::{Amount, Mode, Op, Outcome, SeriesKey, SeriesValue, SERIES};
use tollgate_domain::ids::ApplicationId;
use tollgate_domain::periods::Period;

/// KEYS: the counters. ARGV[1]: mode; then per key: amount (`N` adds, `#N` sets), max (-1:
/// none), ttl (-1: none). Returns {authorized (1|0), value…}. Mirrors [`super::exceeds`].
const SCRIPT: &str = r#"
local mode = ARGV[1]
local function amount(i)
  local a = ARGV[i * 3 - 1]
  if string.sub(a, 1, 1) == '#' then return true, tonumber(string.sub(a, 2)) end
  return false, tonumber(a)
end
local values = {}
local ok = 1
for i = 1, #KEYS do
  local cur = tonumber(redis.call('GET', KEYS[i]) or '0')
  local set, n = amount(i)
  local max = tonumber(ARGV[i * 3])
  local new = cur + n
  if set then new = n end
  values[i] = cur
  if mode ~= 'add' and max >= 0 and new > max then ok = 0 end
end
if mode == 'add' then ok = 1 end
if mode == 'add' or (mode == 'check_and_add' and ok == 1) then
  for i = 1, #KEYS do
    local set, n = amount(i)
    local ttl = tonumber(ARGV[i * 3 + 1])
    if set then
      redis.call('SET', KEYS[i], n)
      values[i] = n
    elseif n ~= 0 then
      values[i] = redis.call('INCRBY', KEYS[i], n)
    end
    if (set or n ~= 0) and ttl > 0 then redis.call('EXPIRE', KEYS[i], ttl) end
  end
end
table.insert(values, 1, ok)
return values
"#;

/// The reply of `MULTI; TIME; GET…; EXEC`: the clock in microseconds, then the values.
fn decode_time_and_values(reply: Vec<redis::Value>) -> redis::RedisResult<(i64, Vec<Option<i64>>)> {
    use redis::FromRedisValue;
    let mut reply = reply.into_iter();
    let time = reply
        .next()
        .ok_or_else(|| redis::RedisError::from((redis::ErrorKind::TypeError, "empty reply to TIME and GET")))?;
    let (secs, micros) = <(i64, i64)>::from_redis_value(&time)?;
    let values = reply
        .map(|v| Option::<i64>::from_redis_value(&v))
        .collect::<Result<_, _>>()?;
    Ok((secs * 1_000_000 + micros, values))
}

#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    script: std::sync::Arc<redis::Script>,
    prefix: String,
    timeout: Duration,
    /// Hour counters this process moved since the usage flush last took them.
    changed: Arc<Mutex<HashSet<SeriesKey>>>,
}

impl RedisStore {
    /// `prefix` starts every key (tests use their own); `timeout` bounds every call.
    pub fn new(conn: ConnectionManager, prefix: &str, timeout: Duration) -> Self {
        Self {
            conn,
            script: std::sync::Arc::new(redis::Script::new(SCRIPT)),
            prefix: prefix.to_string(),
            timeout,
            changed: Arc::default(),
        }
    }

    /// An op's key. An account's counter (credits) sits outside the application's hash slot:
    /// one Redis runs the script, so the call stays atomic (Redis Cluster would refuse it).
    pub fn key(&self, app: ApplicationId, op: &Op) -> String {
        self.counter_key(op.owner(app), op.counter.raw(), op.period, op.start)
    }

    fn counter_key(&self, owner: i64, counter: i64, period: Period, start: i64) -> String {
        format!("{}{{app:{owner}}}:{counter}:{}:{start}", self.prefix, period.as_str())
    }

    /// The series counter a key names, if it is one of this store's
    /// (`{prefix}{app:A}:M:quarter:S`).
    fn parse_series_key(&self, key: &str) -> Option<SeriesKey> {
        let rest = key.strip_prefix(&self.prefix)?.strip_prefix("{app:")?;
        let (app, rest) = rest.split_once("}:")?;
        let mut parts = rest.split(':');
        let (metric, period, start) = (parts.next()?, parts.next()?, parts.next()?);
        if period != SERIES.as_str() || parts.next().is_some() {
            return None;
        }
        Some(SeriesKey {
            app: app.parse().ok()?,
            counter: metric.parse().ok()?,
            start: start.parse().ok()?,
        })
    }

    fn changed(&self) -> std::sync::MutexGuard<'_, HashSet<SeriesKey>> {
        self.changed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// After a restart this process knows nothing it moved: marks every series counter in Redis
    /// changed, so the usage flush copies them again (it is idempotent).
    pub async fn recover_changed_series(&self) -> Result<usize, CounterError> {
        let mut conn = self.conn.clone();
        let pattern = format!("{}{{app:*}}:*:{}:*", self.prefix, SERIES.as_str());
        let mut found = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(|e| CounterError::Unavailable(e.to_string()))?;
            found.extend(keys.iter().filter_map(|k| self.parse_series_key(k)));
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let n = found.len();
        self.changed().extend(found);
        Ok(n)
    }

    /// The same store as a process that just started would have it: nothing known changed.
    pub fn with_fresh_state(&self) -> Self {
        Self {
            changed: Arc::default(),
            ..self.clone()
        }
    }

    /// The script's source, for `redis-benchmark` to run the same thing.
    pub fn script_source() -> &'static str {
        SCRIPT
    }
}

impl CounterStore for RedisStore {
    async fn apply(&self, app: ApplicationId, ops: &[Op], mode: Mode) -> Result<Outcome, CounterError> {
        let mut invocation = self.script.prepare_invoke();
        invocation.arg(match mode {
            Mode::Check => "check",
            Mode::CheckAndAdd => "check_and_add",
            Mode::Add => "add",
        });
        for op in ops {
            invocation.key(self.key(app, op));
            let amount = match op.amount {
                Amount::Add(n) => n.to_string(),
                Amount::Set(n) => format!("#{n}"),
            };
            invocation
                .arg(amount)
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
        let authorized = *authorized == 1;
        if mode == Mode::Add || (mode == Mode::CheckAndAdd && authorized) {
            let moved = ops.iter().filter(|op| op.period == SERIES && !op.amount.is_noop());
            self.changed().extend(moved.map(|op| SeriesKey {
                app: op.owner(app),
                counter: op.counter.raw(),
                start: op.start,
            }));
        }
        Ok(Outcome {
            authorized,
            values: values.to_vec(),
        })
    }

    async fn take_changed_series(&self) -> Result<Vec<SeriesValue>, CounterError> {
        let keys: Vec<SeriesKey> = self.changed().drain().collect();
        let mut out = Vec::with_capacity(keys.len());
        let mut conn = self.conn.clone();
        for chunk in keys.chunks(500) {
            // MULTI … EXEC: the clock and the values are read at one instant.
            let mut pipe = redis::pipe();
            pipe.atomic().cmd("TIME");
            for k in chunk {
                pipe.get(self.counter_key(k.app, k.counter, SERIES, k.start));
            }
            let read = tokio::time::timeout(self.timeout * 10, pipe.query_async::<Vec<redis::Value>>(&mut conn))
                .await
                .map(|r| r.and_then(decode_time_and_values));
            match read {
                Ok(Ok((observed_us, values))) => out.extend(chunk.iter().zip(values).map(|(k, v)| SeriesValue {
                    key: *k,
                    value: v.unwrap_or(0),
                    observed_us,
                })),
                failed => {
                    // Nothing is lost: what was not read is marked changed again.
                    self.mark_changed_series(keys);
                    return Err(CounterError::Unavailable(match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => "reading series counters timed out".into(),
                    }));
                }
            }
        }
        Ok(out)
    }

    fn mark_changed_series(&self, keys: Vec<SeriesKey>) {
        self.changed().extend(keys);
    }
}
