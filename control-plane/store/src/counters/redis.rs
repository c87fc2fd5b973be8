//! The Redis store: one Lua script per call checks every limit and moves every counter
//! atomically. The script runs by its hash (EVALSHA); a node that does not have it — a
//! restarted Redis, a replica just promoted (script caches are not replicated) — is sent the
//! source (EVAL) on the same route, which caches it there.
//!
//! Keys carry the hash tag of the application's account, `{prefix}{acct:A}:OWNER:COUNTER:
//! PERIOD:START` (OWNER: the application's id, or the negated account id for the account's own
//! credit counter): everything one call touches — the application's counters and, on a prepaid
//! account, the account's credit counter — shares a Redis Cluster slot, so the script may touch
//! it all on a cluster as on one node. Keys written before the tag was the account's
//! (`{prefix}{app:ID}:…`) are moved by [`RedisStore::rekey`] when a control plane starts.

use super::store::{CounterError, CounterStore};
use crate::redis_nodes::Connection;
use futures_util::StreamExt;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tollgate_domain::counters::{Amount, Mode, Op, Outcome, Scope, SeriesKey, SeriesValue, SERIES};
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

/// KEYS: series counters that share a slot. Returns {seconds, microseconds, value or nil…}:
/// the values and Redis' clock at one instant (a script runs alone).
const READ_SCRIPT: &str = r#"
local t = redis.call('TIME')
local out = {tonumber(t[1]), tonumber(t[2])}
for i = 1, #KEYS do
  local v = redis.call('GET', KEYS[i])
  if v then out[i + 2] = tonumber(v) else out[i + 2] = false end
end
return out
"#;

/// KEYS: legacy keys and their new names, in pairs (one node only). Moves each value (added to
/// whatever the new key holds already) with its TTL; returns how many moved.
const REKEY_SCRIPT: &str = r#"
local moved = 0
for i = 1, #KEYS, 2 do
  local v = redis.call('GET', KEYS[i])
  if v then
    local ttl = redis.call('PTTL', KEYS[i])
    redis.call('INCRBY', KEYS[i + 1], tonumber(v))
    if ttl > 0 then redis.call('PEXPIRE', KEYS[i + 1], ttl) end
    redis.call('DEL', KEYS[i])
    moved = moved + 1
  end
end
return moved
"#;

/// A Lua script, run by hash where the node has it and by source where it does not ([`run`]).
struct Lua {
    source: &'static str,
    hash: String,
}

impl Lua {
    fn new(source: &'static str) -> Self {
        Self {
            source,
            hash: redis::Script::new(source).get_hash().to_string(),
        }
    }

    fn cmd(&self, by_hash: bool, keys: &[String], args: &[String]) -> redis::Cmd {
        let mut cmd = if by_hash {
            redis::cmd("EVALSHA").arg(&self.hash).to_owned()
        } else {
            redis::cmd("EVAL").arg(self.source).to_owned()
        };
        cmd.arg(keys.len()).arg(keys).arg(args);
        cmd
    }
}

/// Runs `lua` on the node of `keys`, then (`wait`: replicas and milliseconds) waits for that
/// many replicas in the same pipeline. A script the node does not have is sent by source to the
/// same node: `redis::Script`'s SCRIPT LOAD would go to every master of a cluster, and one
/// that just failed is still in the client's map until it refreshes.
async fn run<T: redis::FromRedisValue>(
    conn: &mut Connection,
    lua: &Lua,
    keys: &[String],
    args: &[String],
    wait: Option<(usize, u64)>,
) -> redis::RedisResult<(T, usize)> {
    match run_once(conn, lua, true, keys, args, wait).await {
        Err(e) if e.kind() == redis::ErrorKind::NoScriptError => run_once(conn, lua, false, keys, args, wait).await,
        other => other,
    }
}

async fn run_once<T: redis::FromRedisValue>(
    conn: &mut Connection,
    lua: &Lua,
    by_hash: bool,
    keys: &[String],
    args: &[String],
    wait: Option<(usize, u64)>,
) -> redis::RedisResult<(T, usize)> {
    let cmd = lua.cmd(by_hash, keys, args);
    match wait {
        None => Ok((cmd.query_async(conn).await?, 0)),
        Some((replicas, ms)) => {
            let mut pipe = redis::pipe();
            pipe.add_command(cmd).cmd("WAIT").arg(replicas).arg(ms);
            pipe.query_async(conn).await
        }
    }
}

/// How long calls do not wait for replicas after a `WAIT` came back short.
pub const UNREPLICATED_PAUSE: Duration = Duration::from_secs(5);

/// Series counters read in one script call, at most.
const READ_CHUNK: usize = 500;
/// Script calls in flight at once when reading series counters from a cluster.
const READ_CONCURRENCY: usize = 32;

/// The reply of [`READ_SCRIPT`]: the clock in microseconds, then the values.
fn decode_time_and_values(reply: Vec<Option<i64>>) -> Result<(i64, Vec<Option<i64>>), CounterError> {
    match reply.as_slice() {
        [Some(secs), Some(micros), values @ ..] => Ok((secs * 1_000_000 + micros, values.to_vec())),
        _ => Err(CounterError::Unavailable(
            "reading series counters: no clock in the reply".into(),
        )),
    }
}

/// What this process knows of the counters it moved.
#[derive(Default)]
struct Moved {
    /// Hour counters moved since the usage flush last took them.
    changed: HashSet<SeriesKey>,
    /// Each application's account (the hash tag of its keys), for the series keys it moved.
    accounts: HashMap<i64, i64>,
}

#[derive(Clone)]
pub struct RedisStore {
    conn: Connection,
    script: Arc<Lua>,
    read: Arc<Lua>,
    prefix: String,
    timeout: Duration,
    /// Replicas that must hold a counting call's moves before it is answered (Redis `WAIT`).
    replica_acks: usize,
    /// Until when (unix ms) not to wait: a `WAIT` came back short, so some master has fewer
    /// replicas than asked (one was promoted in a failover, say). Waiting would hold the node's
    /// one multiplexed connection for the whole wait on every call, for nothing to wait for.
    unreplicated_until: Arc<std::sync::atomic::AtomicU64>,
    moved: Arc<Mutex<Moved>>,
}

impl RedisStore {
    /// `prefix` starts every key (tests use their own); `timeout` bounds every call.
    pub fn new(conn: Connection, prefix: &str, timeout: Duration) -> Self {
        Self {
            conn,
            script: Arc::new(Lua::new(SCRIPT)),
            read: Arc::new(Lua::new(READ_SCRIPT)),
            prefix: prefix.to_string(),
            timeout,
            replica_acks: 0,
            unreplicated_until: Arc::default(),
            moved: Arc::default(),
        }
    }

    /// Answers a call that moved counters only once `replicas` replicas hold the moves (or
    /// half the timeout has passed; then the call is answered and counted in
    /// `tollgate_redis_unreplicated_total`, and calls do not wait for [`UNREPLICATED_PAUSE`]:
    /// a master without its replicas has nothing to wait for). Replication is asynchronous: without this, a
    /// master that fails right after answering takes its last moves with it; with it, a
    /// replica promoted in its place has every answered call.
    pub fn with_replica_acks(mut self, replicas: usize) -> Self {
        self.replica_acks = replicas;
        self
    }

    /// Runs the counters' script; a counting call waits for its replicas, in the same round
    /// trip (a pipeline goes to the node of its first key).
    async fn run(&self, keys: &[String], args: &[String], counting: bool) -> redis::RedisResult<Vec<i64>> {
        use std::sync::atomic::Ordering;
        let mut conn = self.conn.clone();
        let now = chrono::Utc::now().timestamp_millis().max(0) as u64;
        let wait = (counting && self.replica_acks > 0 && now >= self.unreplicated_until.load(Ordering::Relaxed))
            .then(|| (self.replica_acks, (self.timeout / 2).as_millis().max(1) as u64));
        let (values, acked): (Vec<i64>, usize) = run(&mut conn, &self.script, keys, args, wait).await?;
        if wait.is_some() && acked < self.replica_acks {
            metrics::counter!("tollgate_redis_unreplicated_total").increment(1);
            let pause = UNREPLICATED_PAUSE.as_millis() as u64;
            self.unreplicated_until.store(now + pause, Ordering::Relaxed);
        }
        Ok(values)
    }

    /// An op's key in `scope`.
    pub fn key(&self, scope: Scope, op: &Op) -> String {
        self.counter_key(
            scope.account.get(),
            op.owner(scope.app),
            op.counter.raw(),
            op.period,
            op.start,
        )
    }

    fn counter_key(&self, account: i64, owner: i64, counter: i64, period: Period, start: i64) -> String {
        format!(
            "{}{{acct:{account}}}:{owner}:{counter}:{}:{start}",
            self.prefix,
            period.as_str()
        )
    }

    /// The series counter a key names and the account it is tagged with, if it is one of this
    /// store's (`{prefix}{acct:A}:OWNER:COUNTER:quarter:START`).
    fn parse_series_key(&self, key: &str) -> Option<(i64, SeriesKey)> {
        let rest = key.strip_prefix(&self.prefix)?.strip_prefix("{acct:")?;
        let (account, rest) = rest.split_once("}:")?;
        let mut parts = rest.split(':');
        let (owner, counter, period, start) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if period != SERIES.as_str() || parts.next().is_some() {
            return None;
        }
        let key = SeriesKey {
            app: owner.parse().ok()?,
            counter: counter.parse().ok()?,
            start: start.parse().ok()?,
        };
        Some((account.parse().ok()?, key))
    }

    /// The key of a series counter this process moved (or found at start).
    fn series_key(&self, moved: &Moved, k: &SeriesKey) -> Option<String> {
        let account = if k.app < 0 {
            Some(-k.app)
        } else {
            moved.accounts.get(&k.app).copied()
        };
        account.map(|a| self.counter_key(a, k.app, k.counter, SERIES, k.start))
    }

    fn moved(&self) -> std::sync::MutexGuard<'_, Moved> {
        self.moved.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every key matching `pattern`, from every node that holds keys (each master of a cluster).
    async fn scan(&self, pattern: &str) -> Result<Vec<String>, CounterError> {
        let unavailable = |e: redis::RedisError| CounterError::Unavailable(e.to_string());
        let mut nodes: Vec<Connection> = Vec::new();
        match &self.conn {
            Connection::Single(_) => nodes.push(self.conn.clone()),
            Connection::Cluster(..) => {
                let mut conn = self.conn.clone();
                // The cluster client asks a node at random; one that failed may still be in
                // its map until it refreshes: another is asked.
                let mut listed = masters(&mut conn).await;
                for _ in 0..3 {
                    if listed.is_ok() {
                        break;
                    }
                    listed = masters(&mut conn).await;
                }
                for (host, port) in listed.map_err(unavailable)? {
                    nodes.push(self.conn.node(&host, port).await.map_err(unavailable)?);
                }
            }
        }
        let mut found = Vec::new();
        for mut node in nodes {
            let mut cursor: u64 = 0;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut node)
                    .await
                    .map_err(unavailable)?;
                found.extend(keys);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(found)
    }

    /// After a restart this process knows nothing it moved: marks every series counter in Redis
    /// changed, so the usage flush copies them again (it is idempotent).
    pub async fn recover_changed_series(&self) -> Result<usize, CounterError> {
        let pattern = format!("{}{{acct:*}}:*:*:{}:*", self.prefix, SERIES.as_str());
        let found: Vec<(i64, SeriesKey)> = self
            .scan(&pattern)
            .await?
            .iter()
            .filter_map(|k| self.parse_series_key(k))
            .collect();
        let n = found.len();
        let mut moved = self.moved();
        for (account, key) in found {
            moved.accounts.insert(key.app, account);
            moved.changed.insert(key);
        }
        Ok(n)
    }

    /// Counters stored under the application's own hash tag (`{prefix}{app:ID}:…`), as before
    /// the tag was the account's. Only a single node can hold them: a cluster refused the
    /// calls that wrote them.
    pub async fn legacy_keys(&self) -> Result<Vec<String>, CounterError> {
        if self.conn.is_cluster() {
            return Ok(Vec::new());
        }
        self.scan(&format!("{}{{app:*}}:*", self.prefix)).await
    }

    /// Moves [`Self::legacy_keys`] to their keys now (each value added to what the new key
    /// holds, with its TTL); `account_of` answers an application's account (one it does not
    /// know, a deleted application's, stays). Returns how many counters moved.
    pub async fn rekey(&self, legacy: &[String], account_of: &HashMap<i64, i64>) -> Result<usize, CounterError> {
        let pairs: Vec<(&String, String)> = legacy
            .iter()
            .filter_map(|old| {
                let rest = old.strip_prefix(&self.prefix)?.strip_prefix("{app:")?;
                let (owner, rest) = rest.split_once("}:")?;
                let owner: i64 = owner.parse().ok()?;
                let account = if owner < 0 { -owner } else { *account_of.get(&owner)? };
                Some((old, format!("{}{{acct:{account}}}:{owner}:{rest}", self.prefix)))
            })
            .collect();
        let rekey = Lua::new(REKEY_SCRIPT);
        let mut conn = self.conn.clone();
        let mut moved = 0;
        for chunk in pairs.chunks(READ_CHUNK) {
            let keys: Vec<String> = chunk
                .iter()
                .flat_map(|(old, new)| [old.to_string(), new.clone()])
                .collect();
            let (n, _): (usize, usize) = run(&mut conn, &rekey, &keys, &[], None)
                .await
                .map_err(|e| CounterError::Unavailable(e.to_string()))?;
            moved += n;
        }
        Ok(moved)
    }

    /// The same store as a process that just started would have it: nothing known changed.
    pub fn with_fresh_state(&self) -> Self {
        Self {
            moved: Arc::default(),
            ..self.clone()
        }
    }

    /// The script's source, for `redis-benchmark` to run the same thing.
    pub fn script_source() -> &'static str {
        SCRIPT
    }

    /// Reads one batch of series counters (keys sharing a slot on a cluster).
    async fn read_series(&self, batch: &[(SeriesKey, String)]) -> Result<Vec<SeriesValue>, CounterError> {
        let keys: Vec<String> = batch.iter().map(|(_, key)| key.clone()).collect();
        let mut conn = self.conn.clone();
        let read = run::<Vec<Option<i64>>>(&mut conn, &self.read, &keys, &[], None);
        let (reply, _) = tokio::time::timeout(self.timeout * 10, read)
            .await
            .map_err(|_| CounterError::Unavailable("reading series counters timed out".into()))?
            .map_err(|e| CounterError::Unavailable(e.to_string()))?;
        let (observed_us, values) = decode_time_and_values(reply)?;
        Ok(batch
            .iter()
            .zip(values)
            .map(|((key, _), v)| SeriesValue {
                key: *key,
                value: v.unwrap_or(0),
                observed_us,
            })
            .collect())
    }
}

/// The addresses (host, port) of a cluster's masters, as `CLUSTER SLOTS` gives them.
async fn masters(conn: &mut Connection) -> redis::RedisResult<Vec<(String, u16)>> {
    let slots: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query_async(conn).await?;
    let mut out = Vec::new();
    for range in slots {
        let redis::Value::Array(parts) = range else { continue };
        // [start, end, [host, port, id…] (the master), replicas…]
        if let Some(redis::Value::Array(master)) = parts.get(2) {
            let host: Option<String> = master.first().and_then(|v| redis::from_redis_value(v).ok());
            let port: Option<u16> = master.get(1).and_then(|v| redis::from_redis_value(v).ok());
            if let (Some(host), Some(port)) = (host, port) {
                if !out.contains(&(host.clone(), port)) {
                    out.push((host, port));
                }
            }
        }
    }
    Ok(out)
}

impl CounterStore for RedisStore {
    async fn apply(&self, scope: Scope, ops: &[Op], mode: Mode) -> Result<Outcome, CounterError> {
        let mode_arg = match mode {
            Mode::Check => "check",
            Mode::CheckAndAdd => "check_and_add",
            Mode::Add => "add",
        };
        let keys: Vec<String> = ops.iter().map(|op| self.key(scope, op)).collect();
        let mut args = Vec::with_capacity(1 + ops.len() * 3);
        args.push(mode_arg.to_string());
        for op in ops {
            args.push(match op.amount {
                Amount::Add(n) => n.to_string(),
                Amount::Set(n) => format!("#{n}"),
            });
            args.push(op.max.unwrap_or(-1).to_string());
            args.push(op.ttl.map(|t| t as i64).unwrap_or(-1).to_string());
        }
        let counting = mode != Mode::Check;
        let reply: Vec<i64> = tokio::time::timeout(self.timeout, self.run(&keys, &args, counting))
            .await
            .map_err(|_| CounterError::Unavailable(format!("no answer within {:?}", self.timeout)))?
            .map_err(|e| CounterError::Unavailable(e.to_string()))?;
        let (authorized, values) = reply
            .split_first()
            .ok_or_else(|| CounterError::Unavailable("empty reply".into()))?;
        let authorized = *authorized == 1;
        if mode == Mode::Add || (mode == Mode::CheckAndAdd && authorized) {
            let mut moved = ops
                .iter()
                .filter(|op| op.period == SERIES && !op.amount.is_noop())
                .peekable();
            if moved.peek().is_some() {
                let mut known = self.moved();
                known.accounts.insert(scope.app.get(), scope.account.get());
                known.changed.extend(moved.map(|op| SeriesKey {
                    app: op.owner(scope.app),
                    counter: op.counter.raw(),
                    start: op.start,
                }));
            }
        }
        Ok(Outcome {
            authorized,
            values: values.to_vec(),
        })
    }

    async fn take_changed_series(&self) -> Result<Vec<SeriesValue>, CounterError> {
        let (keys, batches) = {
            let mut moved = self.moved();
            let keys: Vec<SeriesKey> = moved.changed.drain().collect();
            let named: Vec<(SeriesKey, String)> = keys
                .iter()
                .filter_map(|k| Some((*k, self.series_key(&moved, k)?)))
                .collect();
            (keys, batches(named, self.conn.is_cluster()))
        };
        let reads = futures_util::stream::iter(batches.into_iter().map(|batch| {
            let store = self.clone();
            async move { store.read_series(&batch).await }
        }))
        .buffer_unordered(if self.conn.is_cluster() { READ_CONCURRENCY } else { 1 });
        let results: Vec<Result<Vec<SeriesValue>, CounterError>> = reads.collect().await;
        let mut out = Vec::with_capacity(keys.len());
        for read in results {
            match read {
                Ok(values) => out.extend(values),
                Err(e) => {
                    // Nothing is lost: what was taken is marked changed again.
                    self.mark_changed_series(keys);
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    fn mark_changed_series(&self, keys: Vec<SeriesKey>) {
        self.moved().changed.extend(keys);
    }
}

/// Series keys in batches for [`READ_SCRIPT`]: on a cluster, one account's keys per batch (a
/// script's keys must share a slot); on one node, any keys.
fn batches(mut named: Vec<(SeriesKey, String)>, cluster: bool) -> Vec<Vec<(SeriesKey, String)>> {
    if !cluster {
        return named.chunks(READ_CHUNK).map(<[_]>::to_vec).collect();
    }
    let tag = |key: &str| key.split_once('}').map(|(t, _)| t.to_string()).unwrap_or_default();
    named.sort_by_cached_key(|(_, key)| tag(key));
    let mut out: Vec<Vec<(SeriesKey, String)>> = Vec::new();
    for item in named {
        match out.last_mut() {
            Some(last) if last.len() < READ_CHUNK && last.first().map(|(_, k)| tag(k)) == Some(tag(&item.1)) => {
                last.push(item)
            }
            _ => out.push(vec![item]),
        }
    }
    out
}
