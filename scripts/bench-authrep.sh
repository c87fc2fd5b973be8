#!/usr/bin/env bash
# authrep throughput and latency on loopback, in one run, side by side:
#   - the control plane with embedded counters (SQLite),
#   - the control plane with Redis counters,
#   - redis-benchmark running the same Lua script with the same keys: the Redis path's limit.
# Each authrep checks a daily limit on hits and moves 3 counters (day, month, hour); then the
# same with usage-limit alerts configured, and with the account prepaid (credit rating on: one
# more counter, the account's).
# For each store: the saturation rate and latency (wrk), then p50 and p99 at half that rate
# (requests evenly spaced: `paced`, scripts/lib.sh). Last, the embedded control plane's memory
# (RSS) with 100k applications cached: after authreps from every one of them.
#
#   BENCH_DURATION (10s)  BENCH_CONNECTIONS (32)  BENCH_APPS (100000)
#   TOLLGATE_BENCH_REDIS_URL (redis://127.0.0.1:6379)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"
duration="${BENCH_DURATION:-10s}"
conns="${BENCH_CONNECTIONS:-32}"
apps="${BENCH_APPS:-100000}"
redis_url="${TOLLGATE_BENCH_REDIS_URL:-redis://127.0.0.1:6379}"
redis_port="${redis_url##*:}"
redis_port="${redis_port%%/*}"

bench_tools
cargo build --release -q -p tollgate -p tollgate-e2e --bin tollgate --bin pace
bin="$root/target/release/tollgate"
tmp="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT


# start LABEL [REDIS_URL]: a control plane with a seeded application; sets $url (and what
# bench_control_plane sets).
start() {
  bench_control_plane "$1" "$tmp" "${2:-}"
  pids+=("$cp_pid")
  pid=$cp_pid
  base="$cp/transactions/authrep.xml?service_id=$sid&service_token=$stoken&usage%5Bhits%5D=1"
  url="$base&user_key=$key"
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$url")" = 200 ] || { echo "bench: authrep does not answer 200" >&2; exit 1; }
}

row() { printf '| %-44s | %12s | %8s | %8s | %11s | %11s |\n' "$@"; }

# at_half RPS: "p50 p99" at RPS requests/s, evenly spaced and timed from when each was due, over
# the same connections. (Fewer connections cannot carry half the rate once the server takes
# more than connections / rate per request: the figure would measure the backlog.)
at_half() { paced "$url" "$1" "$conns" "$duration" | awk '{printf "%.2fms %.2fms\n", $1, $2}'; }

# measure LABEL: wrk against $url at full speed, then half that rate, paced; prints a row.
measure() {
  local out rps p50 p99 half
  out="$(wrk -t2 -c"$conns" -d"$duration" --latency "$url")"
  rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
  p50="$(awk '$1=="50%" {print $2}' <<<"$out")"
  p99="$(awk '$1=="99%" {print $2}' <<<"$out")"
  half="$(awk -v r="$rps" 'BEGIN {printf "%d", r / 2}')"
  read -r h50 h99 <<<"$(at_half "$half")"
  row "$1" "$rps" "$p50" "$p99" "$h50" "$h99"
}

row "authrep.xml, $duration, $conns connections" "requests/s" "p50" "p99" "p50 at half" "p99 at half"
printf '|%s|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..46})" "$(printf -- '-%.0s' {1..14})" "$(printf -- '-%.0s' {1..10})" "$(printf -- '-%.0s' {1..10})" "$(printf -- '-%.0s' {1..13})" "$(printf -- '-%.0s' {1..13})"
start embedded
measure "control plane, embedded counters"
# Usage-limit alerts configured at every level for every recipient: they are checked after
# each usage flush, off authrep's path, so this row should match the one above.
levels=""
for list in web_provider email_provider web_buyer email_buyer; do
  for l in 50 80 90 100 120 150 200 300; do levels="$levels -d notification_settings%5B$list%5D%5B%5D=$l"; done
done
# shellcheck disable=SC2086
api PUT "/admin/api/services/$sid.json" $levels >/dev/null
measure "control plane, embedded, alerts configured"
# Run to run, saturation moves by more than the 5 % an alerts row may cost, so the same
# control plane also takes alternating rounds without and with alerts (wrk only), and the
# means are compared.
alerts_off=()
alerts_on=()
for _ in $(seq "${BENCH_ALERT_ROUNDS:-3}"); do
  api PUT "/admin/api/services/$sid.json" -d "notification_settings%5Bweb_provider%5D%5B%5D=" >/dev/null
  alerts_off+=("$(wrk -t2 -c"$conns" -d"$duration" "$url" | awk '/Requests\/sec/ {print $2}')")
  # shellcheck disable=SC2086
  api PUT "/admin/api/services/$sid.json" $levels >/dev/null
  alerts_on+=("$(wrk -t2 -c"$conns" -d"$duration" "$url" | awk '/Requests\/sec/ {print $2}')")
done
alerts_ab="$(printf '%s\n' "${alerts_off[@]}" | awk '{s += $1} END {printf "%.0f", s / NR}') $(printf '%s\n' "${alerts_on[@]}" | awk '{s += $1} END {printf "%.0f", s / NR}')"
# Credit rating on: the same account prepaid, hits rated, a balance that never runs out. Each
# authrep then also reads the account's wallet (cached) and moves its spent counter.
hits_id="$(api GET "/admin/api/services/$sid/metrics.json" | json metrics 0 metric id)"
api PUT "/admin/api/accounts/$aid.json" -d billing_type=prepaid >/dev/null
api POST "/admin/api/services/$sid/credit_rates.json" -d metric_id="$hits_id" -d credits_per_unit=0.001 >/dev/null
api POST "/admin/api/accounts/$aid/credit_grants.json" -d amount=100000000 >/dev/null
measure "control plane, embedded, credit rating on"
embedded=("$pid" "$cp" "$sid" "$plan" "$aid" "$base")
start redis "$redis_url"
measure "control plane, Redis counters"

# The same script, the same three keys and arguments, straight to Redis.
sha="$("$bin" counters-script | redis-cli -p "$redis_port" -x SCRIPT LOAD)"
day=$(( $(date +%s) / 86400 * 86400 ))
rb="$(redis-benchmark -p "$redis_port" -q -c "$conns" -n 300000 EVALSHA "$sha" 3 \
  "bench:$$:{acct:1}:1:1:day:$day" "bench:$$:{acct:1}:1:1:month:0" "bench:$$:{acct:1}:1:1:hour:0" \
  check_and_add 1 1000000000000 90000 1 -1 90000 1 -1 90000 | tr '\r' '\n' | grep -E 'requests per second' | tail -1)"
rps="$(sed -E 's/.*: ([0-9.]+) requests per second.*/\1/' <<<"$rb")"
p50="$(sed -nE 's/.*p50=([0-9.]+) msec.*/\1ms/p' <<<"$rb")"
row "redis-benchmark: EVALSHA of the same script" "$rps" "${p50:--}" "-" "-" "-"
redis-cli -p "$redis_port" --scan --pattern "bench:$$:*" | xargs -r redis-cli -p "$redis_port" DEL >/dev/null

# Memory: $apps applications on the embedded control plane, each calling authrep once.
read -r pid cp sid plan aid base <<<"${embedded[*]}"
rss() { awk '/VmRSS/ {printf "%.0f MB", $2 / 1024}' "/proc/$pid/status"; }
before="$(rss)"
sqlite3 "$tmp/embedded.db" <<SQL
.timeout 10000
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $apps)
INSERT INTO applications (account_id, service_id, plan_id, name, user_key, application_id, created_at, updated_at)
SELECT $aid, $sid, $plan, 'bench ' || i, 'bench-key-' || i, 'bench-app-' || i, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z' FROM n;
SQL
cat >"$tmp/apps.lua" <<LUA
local i, done = 0, 0
request = function()
  i = i + 1
  return wrk.format(nil, "/${base#http://*/}&user_key=bench-key-" .. ((i - 1) % $apps + 1))
end
response = function(status)
  if status ~= 200 then error("authrep answered " .. status) end
  done = done + 1
  if done >= $apps then wrk.thread:stop() end
end
LUA
wrk -t1 -c"$conns" -d120s -s "$tmp/apps.lua" "$cp" >/dev/null
echo
echo "| embedded control plane, $apps applications | RSS |"
echo "|---|---|"
echo "| before they call | $before |"
echo "| after one authrep from each (cached, counted) | $(rss) |"
echo
read -r off_mean on_mean <<<"$alerts_ab"
echo "| alternating rounds, requests/s | without alerts | with alerts |"
echo "|---|---|---|"
for i in "${!alerts_off[@]}"; do echo "| round $((i + 1)) | ${alerts_off[$i]} | ${alerts_on[$i]} |"; done
echo "| mean | $off_mean | $on_mean ($(awk -v a="$off_mean" -v b="$on_mean" 'BEGIN {printf "%+.1f %%", (b - a) * 100 / a}')) |"
