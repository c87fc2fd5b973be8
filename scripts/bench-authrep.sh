#!/usr/bin/env bash
# authrep throughput and latency on loopback, in one run, side by side:
#   - the control plane with embedded counters (SQLite),
#   - the control plane with Redis counters,
#   - redis-benchmark running the same Lua script with the same keys: the Redis path's limit.
# Each authrep checks a daily limit on hits and moves 3 counters (day, month, hour).
#
#   BENCH_DURATION (10s)  BENCH_CONNECTIONS (32)  TOLLGATE_BENCH_REDIS_URL (redis://127.0.0.1:6379)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"
duration="${BENCH_DURATION:-10s}"
conns="${BENCH_CONNECTIONS:-32}"
redis_url="${TOLLGATE_BENCH_REDIS_URL:-redis://127.0.0.1:6379}"
redis_port="${redis_url##*:}"
redis_port="${redis_port%%/*}"

command -v wrk >/dev/null || { sudo_() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }; sudo_ apt-get install -y -q wrk >/dev/null; }
cargo build --release -q -p tollgate
bin="$root/target/release/tollgate"
tmp="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT


# start LABEL [REDIS_URL]: a control plane with a seeded application; sets $url.
start() {
  local label="$1" port token="bench-token"
  port="$(free_port)"
  env TOLLGATE_LISTEN="127.0.0.1:$port" TOLLGATE_DATABASE_URL="sqlite://$tmp/$label.db" TOLLGATE_ADMIN_TOKEN="$token" \
    TOLLGATE_LOG_FORMAT=text RUST_LOG=warn ${2:+TOLLGATE_REDIS_URL="$2"} TOLLGATE_REDIS_PREFIX="bench:$$:" \
    "$bin" serve >"$tmp/$label.log" 2>&1 &
  pids+=($!)
  local cp="http://127.0.0.1:$port"
  for _ in $(seq 100); do curl -fs "$cp/health" >/dev/null 2>&1 && break; sleep 0.1; done
  api() { curl -fsS -X "$1" "$cp$2" -H "Authorization: Bearer $token" "${@:3}"; }
  local sid plan hits aid key stoken
  sid="$(api POST /admin/api/services.json -d name=Bench | json service id)"
  plan="$(api POST "/admin/api/services/$sid/application_plans.json" -d name=Bench | json application_plan id)"
  hits="$(api GET "/admin/api/services/$sid/metrics.json" | json metrics 0 metric id)"
  api POST "/admin/api/application_plans/$plan/metrics/$hits/limits.json" -d period=day -d value=1000000000000 >/dev/null
  aid="$(api POST /admin/api/signup.json -d org_name=Bench -d username=bench | json account id)"
  key="$(api POST "/admin/api/accounts/$aid/applications.json" -d plan_id="$plan" -d name=Bench | json application user_key)"
  stoken="$(api POST "/admin/api/services/$sid/proxy/deploy.json" | json proxy_config content backend_authentication_value)"
  url="$cp/transactions/authrep.xml?service_id=$sid&service_token=$stoken&user_key=$key&usage%5Bhits%5D=1"
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$url")" = 200 ] || { echo "bench: authrep does not answer 200" >&2; exit 1; }
}

# measure LABEL: wrk against $url; prints a table row.
measure() {
  local out rps p50 p99
  out="$(wrk -t2 -c"$conns" -d"$duration" --latency "$url")"
  rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
  p50="$(awk '$1=="50%" {print $2}' <<<"$out")"
  p99="$(awk '$1=="99%" {print $2}' <<<"$out")"
  printf '| %-44s | %12s | %8s | %8s |\n' "$1" "$rps" "$p50" "$p99"
}

printf '| %-44s | %12s | %8s | %8s |\n' "authrep.xml, $conns connections, $duration" "requests/s" "p50" "p99"
printf '|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..46})" "$(printf -- '-%.0s' {1..14})" "$(printf -- '-%.0s' {1..10})" "$(printf -- '-%.0s' {1..10})"
start embedded
measure "control plane, embedded counters"
start redis "$redis_url"
measure "control plane, Redis counters"

# The same script, the same three keys and arguments, straight to Redis.
sha="$("$bin" counters-script | redis-cli -p "$redis_port" -x SCRIPT LOAD)"
day=$(( $(date +%s) / 86400 * 86400 ))
rb="$(redis-benchmark -p "$redis_port" -q -c "$conns" -n 300000 EVALSHA "$sha" 3 \
  "bench:$$:{app:1}:1:day:$day" "bench:$$:{app:1}:1:month:0" "bench:$$:{app:1}:1:hour:0" \
  check_and_add 1 1000000000000 90000 1 -1 90000 1 -1 90000 | tr '\r' '\n' | grep -E 'requests per second' | tail -1)"
rps="$(sed -E 's/.*: ([0-9.]+) requests per second.*/\1/' <<<"$rb")"
p50="$(sed -nE 's/.*p50=([0-9.]+) msec.*/\1ms/p' <<<"$rb")"
printf '| %-44s | %12s | %8s | %8s |\n' "redis-benchmark: EVALSHA of the same script" "$rps" "${p50:--}" "-"
redis-cli -p "$redis_port" --scan --pattern "bench:$$:*" | xargs -r redis-cli -p "$redis_port" DEL >/dev/null
