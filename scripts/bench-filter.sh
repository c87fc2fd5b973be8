#!/usr/bin/env bash
# What the filter costs, side by side in one run, rounds alternating, same upstream, same load:
#   - plain Envoy (TOLLGATE_FILTER=off: the same config without the filter),
#   - Envoy + filter on the cached path (cache TTL 60 s),
#   - Envoy + filter on the miss path (cache TTL 0: one control-plane call per request).
# Saturation with wrk, then p50/p99 at half of plain Envoy's rate with oha (constant rate),
# then the control-plane calls the cached path made per request served.
#
#   BENCH_DURATION (8s)  BENCH_CONNECTIONS (32)  BENCH_ROUNDS (2)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"
duration="${BENCH_DURATION:-8s}"
conns="${BENCH_CONNECTIONS:-32}"
rounds="${BENCH_ROUNDS:-2}"

bench_tools
[ -f target/tollgate_filter.wasm ] || scripts/build-filter.sh
cargo build --release -q -p tollgate -p tollgate-e2e --bins
tmp="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

# The control plane (embedded counters) with one application allowed plenty.
bench_control_plane cp "$tmp"
pids+=("$cp_pid")
cp_port="${cp##*:}"

upstream="127.0.0.1:$(free_port)"
target/release/demo-upstream "$upstream" >/dev/null 2>&1 & pids+=($!)

# envoy NAME FILTER CACHE_TTL_MS: starts an Envoy; sets port_NAME and admin_NAME.
envoy() {
  local port admin
  port="$(free_port)"; admin="$(free_port)"
  TOLLGATE_CONTROL_PLANE="127.0.0.1:$cp_port" TOLLGATE_ACCESS_TOKEN="$token" TOLLGATE_UPSTREAM="$upstream" \
    TOLLGATE_ENVOY_PORT="$port" TOLLGATE_ENVOY_ADMIN_PORT="$admin" TOLLGATE_FILTER="$2" \
    TOLLGATE_FILTER_CACHE_TTL_MS="$3" TOLLGATE_REFRESH_MS=2000 TOLLGATE_ENVOY_CONFIG_OUT="$tmp/$1.yaml" \
    scripts/envoy.sh >"$tmp/$1.log" 2>&1 & pids+=($!)
  printf -v "port_$1" '%s' "$port"; printf -v "admin_$1" '%s' "$admin"
  for _ in $(seq 150); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/bench?user_key=$key")" = 200 ] && return
    sleep 0.2
  done
  echo "bench-filter: Envoy $1 did not serve" >&2; cat "$tmp/$1.log" >&2; exit 1
}
envoy plain off 0
envoy cached on 60000
envoy miss on 0
url() { local p="port_$1"; echo "http://127.0.0.1:${!p}/bench?user_key=$key"; }
stat() { local a="admin_$1"; curl -s "http://127.0.0.1:${!a}/stats?filter=tollgate.$2" | awk -F': ' 'NR==1 {print $2}'; }

declare -A rps_sum
for round in $(seq "$rounds"); do
  for name in plain cached miss; do
    r="$(wrk -t2 -c"$conns" -d"$duration" "$(url "$name")" | awk '/Requests\/sec/ {print $2}')"
    echo "round $round: $name $r requests/s" >&2
    rps_sum[$name]="$(awk -v a="${rps_sum[$name]:-0}" -v b="$r" 'BEGIN {print a + b}')"
  done
done
mean() { awk -v s="${rps_sum[$1]}" -v n="$rounds" 'BEGIN {printf "%.0f", s / n}'; }
half="$(awk -v r="$(mean plain)" 'BEGIN {printf "%d", r / 2}')"
latency() {
  oha -z "$duration" -q "$half" -c "$conns" --no-tui --output-format json "$(url "$1")" |
    python3 -c 'import json,sys; p=json.load(sys.stdin)["latencyPercentiles"]; print("%.3f %.3f" % (p["p50"] * 1000, p["p99"] * 1000))'
}
read -r plain50 plain99 <<<"$(latency plain)"
read -r cached50 cached99 <<<"$(latency cached)"
requests="$(stat cached requests)"; calls="$(stat cached authrep_calls)"

printf '| %-40s | %12s | %9s | %12s | %12s |\n' "wrk $conns connections, $duration x $rounds" "requests/s" "vs plain" "p50 at half" "p99 at half"
printf '|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..42})" "$(printf -- '-%.0s' {1..14})" "$(printf -- '-%.0s' {1..11})" "$(printf -- '-%.0s' {1..14})" "$(printf -- '-%.0s' {1..14})"
ratio() { awk -v a="$(mean "$1")" -v b="$(mean plain)" 'BEGIN {printf "%.2f", a / b}'; }
printf '| %-40s | %12s | %9s | %12s | %12s |\n' "plain Envoy" "$(mean plain)" "1.00" "${plain50}ms" "${plain99}ms"
printf '| %-40s | %12s | %9s | %12s | %12s |\n' "Envoy + filter, cached path" "$(mean cached)" "$(ratio cached)" "${cached50}ms" "${cached99}ms"
printf '| %-40s | %12s | %9s | %12s | %12s |\n' "Envoy + filter, miss path (TTL 0)" "$(mean miss)" "$(ratio miss)" "-" "-"
echo
awk -v a="$cached50" -v b="$plain50" -v c="$cached99" -v d="$plain99" \
  'BEGIN {printf "added by the cached path at half load: p50 %.0f us, p99 %.0f us\n", (a - b) * 1000, (c - d) * 1000}'
awk -v c="$calls" -v r="$requests" 'BEGIN {printf "control-plane calls on the cached path: %d for %d requests (%.3f %%)\n", c, r, 100 * c / r}'
