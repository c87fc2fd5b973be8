# Shell helpers shared by scripts/run.sh and scripts/bench-*.sh (sourced, not run).

# json KEY...: the value at that path of the JSON on stdin (numbers index arrays).
json() {
  python3 -c 'import json,sys
d=json.load(sys.stdin)
for k in sys.argv[1:]: d=d[int(k)] if k.isdigit() else d[k]
print(d)' "$@"
}

# free_port: a TCP port nothing listens on right now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# bench_tools: installs the load tools the bench scripts use, where missing.
bench_tools() {
  local as_root=()
  [ "$(id -u)" -eq 0 ] || as_root=(sudo)
  command -v wrk >/dev/null || "${as_root[@]}" apt-get install -y -q wrk >/dev/null
  command -v sqlite3 >/dev/null || "${as_root[@]}" apt-get install -y -q sqlite3 >/dev/null
  command -v oha >/dev/null || cargo install -q --locked oha
  # callgrind (BENCH_INSTRUCTIONS=1 scripts/bench-filter.sh)
  command -v valgrind >/dev/null || "${as_root[@]}" apt-get install -y -q valgrind >/dev/null
}

# paced URL RATE CONNECTIONS DURATION: "p50 p99" in ms, RATE requests/s evenly spaced
# (target/release/pace, from tests/: oha -q sends in bursts every millisecond, see pace.rs).
paced() {
  "$root/target/release/pace" "$1" --rate "$2" --connections "$3" --duration "$4" 2>/dev/null
}

# bench_control_plane LABEL DIR [REDIS_URL]: seeds (`tollgate seed demo`, the run command's seed
# path) and starts target/release/tollgate (SQLite in DIR, Redis counters if given) with an
# application allowed a trillion hits a day, its proxy config deployed and promoted. Sets cp,
# cp_pid, token, sid, plan, aid, key, stoken. BENCH_API_BACKEND: the product's api_backend;
# BENCH_XDS: host:port of the control plane's xDS server (off when unset).
bench_control_plane() {
  local label="$1" dir="$2" port seeded
  port="$(free_port)"; token="bench-token"
  seeded="$(env TOLLGATE_DATABASE_URL="sqlite://$dir/$label.db" RUST_LOG=warn target/release/tollgate seed demo \
    --service Bench --system-name bench --plan Bench --limit day=1000000000000 --org-name Bench --username bench \
    --email bench@example.com --application Bench ${BENCH_API_BACKEND:+--api-backend "$BENCH_API_BACKEND"})"
  sid="$(json service_id <<<"$seeded")"; plan="$(json plan_id <<<"$seeded")"; aid="$(json account_id <<<"$seeded")"
  key="$(json user_key <<<"$seeded")"; stoken="$(json service_token <<<"$seeded")"
  env TOLLGATE_LISTEN="127.0.0.1:$port" TOLLGATE_DATABASE_URL="sqlite://$dir/$label.db" TOLLGATE_ADMIN_TOKEN="$token" \
    TOLLGATE_LOG_FORMAT=text TOLLGATE_XDS_LISTEN="${BENCH_XDS:-off}" RUST_LOG=warn ${3:+TOLLGATE_REDIS_URL="$3"} TOLLGATE_REDIS_PREFIX="bench:$$:" \
    target/release/tollgate serve >"$dir/$label.log" 2>&1 &
  cp_pid=$!
  cp="http://127.0.0.1:$port"
  for _ in $(seq 100); do curl -fs "$cp/health" >/dev/null 2>&1 && break; sleep 0.1; done
  api() { curl -fsS -X "$1" "$cp$2" -H "Authorization: Bearer $token" "${@:3}"; }
}
