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

# bench_control_plane LABEL DIR [REDIS_URL]: starts target/release/tollgate (SQLite in DIR, Redis
# counters if given) with an application allowed a trillion hits a day, its proxy config
# deployed and promoted. Sets cp, cp_pid, token, sid, plan, aid, key, stoken.
bench_control_plane() {
  local label="$1" dir="$2" port hits ver
  port="$(free_port)"; token="bench-token"
  env TOLLGATE_LISTEN="127.0.0.1:$port" TOLLGATE_DATABASE_URL="sqlite://$dir/$label.db" TOLLGATE_ADMIN_TOKEN="$token" \
    TOLLGATE_LOG_FORMAT=text RUST_LOG=warn ${3:+TOLLGATE_REDIS_URL="$3"} TOLLGATE_REDIS_PREFIX="bench:$$:" \
    target/release/tollgate serve >"$dir/$label.log" 2>&1 &
  cp_pid=$!
  cp="http://127.0.0.1:$port"
  for _ in $(seq 100); do curl -fs "$cp/health" >/dev/null 2>&1 && break; sleep 0.1; done
  api() { curl -fsS -X "$1" "$cp$2" -H "Authorization: Bearer $token" "${@:3}"; }
  sid="$(api POST /admin/api/services.json -d name=Bench | json service id)"
  plan="$(api POST "/admin/api/services/$sid/application_plans.json" -d name=Bench | json application_plan id)"
  hits="$(api GET "/admin/api/services/$sid/metrics.json" | json metrics 0 metric id)"
  api POST "/admin/api/application_plans/$plan/metrics/$hits/limits.json" -d period=day -d value=1000000000000 >/dev/null
  aid="$(api POST /admin/api/signup.json -d org_name=Bench -d username=bench | json account id)"
  key="$(api POST "/admin/api/accounts/$aid/applications.json" -d plan_id="$plan" -d name=Bench | json application user_key)"
  ver="$(api POST "/admin/api/services/$sid/proxy/deploy.json" | json proxy_config version)"
  stoken="$(api GET "/admin/api/services/$sid/proxy/configs/sandbox/$ver.json" | json proxy_config content backend_authentication_value)"
  api POST "/admin/api/services/$sid/proxy/configs/sandbox/$ver/promote.json" -d to=production >/dev/null
}
