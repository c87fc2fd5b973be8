#!/usr/bin/env bash
# Month-end at scale (issues #6, #24), on SQLite (the embedded default) and PostgreSQL side by
# side: N accounts, each with one application on a paid plan with graduated pricing rules and
# October usage, subscribed on 2026-10-01. The October run opens their invoices (untimed);
# the timed run is 2026-11-01: October's variable costs, October finalized, November opened
# with its fee — for every account. Then the usage flush's writes for every application
# (`bench-flush`: three series each, the rows and roll-ups, then the same quarter again), and
# the engine's own floor for such writes (`timed_floor`: one INSERT and one UPDATE of two rows
# per application, seconds).
# Then the same for 2N, and the ratios. Prints wall time and peak memory (RSS).
#
#   scripts/bench-billing.sh                  # 100k and 200k, SQLite and PostgreSQL
#   BENCH_APPS=20000 scripts/bench-billing.sh
#   BENCH_DATABASES=postgres scripts/bench-billing.sh
#
# Targets: 100k applications ≤ 60 s and ≤ 512 MB; twice the applications ≤ 2.2 × the time;
# PostgreSQL within 1.5 × SQLite.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
apps="${BENCH_APPS:-100000}"
databases="${BENCH_DATABASES:-sqlite postgres}"
pg_admin="${TOLLGATE_TEST_POSTGRES_URL:-postgres://tollgate:tollgate@127.0.0.1:5432/postgres}"

cargo build -q --release -p tollgate --bins
bin="$root/target/release/tollgate"
work="$(mktemp -d)"
pg_dbs=()
cleanup() {
  rm -rf "$work"
  for db in "${pg_dbs[@]}"; do psql "$pg_admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT

seed_sql() {
  local n="$1"
  cat <<SQL
INSERT INTO services (name, system_name, service_token, created_at, updated_at)
  VALUES ('Bench API', 'bench_api', 'bench-token', '2026-10-01T00:00:00Z', '2026-10-01T00:00:00Z');
INSERT INTO metrics (service_id, system_name, friendly_name, created_at, updated_at)
  SELECT id, 'hits', 'Hits', '2026-10-01T00:00:00Z', '2026-10-01T00:00:00Z' FROM services;
INSERT INTO application_plans (service_id, name, system_name, cost_per_month, setup_fee, created_at, updated_at)
  SELECT id, 'Metered', 'metered', '31', '5', '2026-10-01T00:00:00Z', '2026-10-01T00:00:00Z' FROM services;
INSERT INTO pricing_rules (plan_id, metric_id, min, max, cost_per_unit, created_at, updated_at)
  SELECT p.id, m.id, 1, 1000, '0.01', '2026-10-01T00:00:00Z', '2026-10-01T00:00:00Z' FROM application_plans p, metrics m;
INSERT INTO pricing_rules (plan_id, metric_id, min, max, cost_per_unit, created_at, updated_at)
  SELECT p.id, m.id, 1001, NULL, '0.005', '2026-10-01T00:00:00Z', '2026-10-01T00:00:00Z' FROM application_plans p, metrics m;
INSERT INTO accounts (org_name, created_at, updated_at)
  WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $n)
  SELECT 'Account ' || i, '2026-10-01T00:00:00Z', '2026-10-01T00:00:00Z' FROM n;
INSERT INTO applications (account_id, service_id, plan_id, name, application_id, user_key, created_at, updated_at)
  SELECT a.id, s.id, p.id, 'App', 'app' || a.id, 'key' || a.id, '2026-10-01T00:00:00Z', '2026-10-01T00:00:00Z'
  FROM accounts a, services s, application_plans p;
-- 3 hours of use on 2026-10-15 (1200 to 2400 hits in all per application).
INSERT INTO usage_hourly (application_id, service_id, metric_id, hour_start, value, observed_us)
  WITH RECURSIVE h(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM h WHERE k < 2)
  SELECT a.id, a.service_id, m.id, 1792022400 + 3600 * h.k, 400 + (a.id % 400), 0 FROM applications a, metrics m, h;
SQL
}

# Runs billing for $2 on database $1; prints "seconds max_rss_mb".
timed_run() {
  local url="$1" date="$2" out
  out="$(TOLLGATE_DATABASE_URL="$url" /usr/bin/time -f "%e %M" "$bin" billing run --date "$date" 2>&1 >/dev/null | tail -1)"
  awk '{printf "%s %.0f\n", $1, $2 / 1024}' <<<"$out"
}

# Runs `bench-flush` on database $1; prints "values first_seconds again_seconds max_rss_mb".
timed_flush() {
  local out
  out="$(/usr/bin/time -f "%M" "$root/target/release/bench-flush" "$1" 2>"$work/flush.err")" || { cat "$work/flush.err" >&2; return 1; }
  echo "$out $(($(tail -1 "$work/flush.err") / 1024))"
}

# The engine's own cost of the flush's row writes, with no client involved: one statement
# inserting two response_codes_hourly rows per application (from a temporary table) for an hour
# nothing else writes, then one updating them. On database $1 ($2: sqlite or postgres); prints
# "insert_seconds update_seconds".
floor_sql='CREATE TEMP TABLE floor AS SELECT a.id AS app, a.service_id AS service, c.code
    FROM applications a, (SELECT '"'200'"' AS code UNION ALL SELECT '"'2xx'"') c;
  INSERT INTO response_codes_hourly (application_id, service_id, code, hour_start, value, observed_us, q0, o0)
    SELECT app, service, code, 1800000000, 3, 5, 3, 5 FROM floor;
  UPDATE response_codes_hourly SET q0 = q0 + 1, value = value + 1 WHERE hour_start = 1800000000;'
timed_floor() {
  if [ "$2" = postgres ]; then
    { echo '\timing on'; echo "$floor_sql"; } | psql "$1" -q -v ON_ERROR_STOP=1 |
      awk '/^Time:/ { n++; if (n > 1) printf "%.2f ", $2 / 1000 } END { print "" }'
  else
    python3 - "$work/bench-$3.db" "$floor_sql" <<'PY'
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1])
c.execute("PRAGMA journal_mode = WAL"); c.execute("PRAGMA synchronous = NORMAL")
out = []
for i, statement in enumerate(s for s in sys.argv[2].split(";") if s.strip()):
    clock = time.time(); c.execute(statement); c.commit()
    if i > 0: out.append("%.2f" % (time.time() - clock))
print(" ".join(out))
PY
  fi
}

row() { printf "%-9s %-10s %8s %14s %9s %12s %10s %12s %12s %9s %12s %12s\n" "$@"; }

bench() {
  local n="$1" database="$2" url
  if [ "$database" = postgres ]; then
    local db="tollgate_bench_billing_$$_$n"
    pg_dbs+=("$db")
    psql "$pg_admin" -qc "CREATE DATABASE $db" >/dev/null
    url="${pg_admin%/*}/$db"
    TOLLGATE_DATABASE_URL="$url" "$bin" migrate >/dev/null 2>&1
    seed_sql "$n" | psql "$url" -q -v ON_ERROR_STOP=1 >/dev/null
    psql "$url" -qc "VACUUM ANALYZE accounts, applications, usage_hourly" >/dev/null
  else
    url="sqlite://$work/bench-$n.db"
    TOLLGATE_DATABASE_URL="$url" "$bin" migrate >/dev/null 2>&1
    seed_sql "$n" | python3 -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.executescript(sys.stdin.read()); c.commit(); c.execute("ANALYZE")' "$work/bench-$n.db"
  fi
  read -r open_s open_mb < <(timed_run "$url" 2026-10-01)
  read -r end_s end_mb < <(timed_run "$url" 2026-11-01)
  read -r again_s _ < <(timed_run "$url" 2026-11-01)
  read -r values flush_s flush_again_s flush_mb < <(timed_flush "$url")
  read -r floor_insert_s floor_update_s < <(timed_floor "$url" "$database" "$n")
  row "$n" "$database" "$open_s" "$end_s" "$end_mb" "$again_s" "$values" "$flush_s" "$flush_again_s" "$flush_mb" \
    "$floor_insert_s" "$floor_update_s"
  echo "$end_s" >"$work/run-$database-$n"
  echo "$flush_s" >"$work/flush-$database-$n"
  echo "$floor_insert_s" >"$work/floor-insert-$database-$n"
  echo "$floor_update_s" >"$work/floor-update-$database-$n"
}

ratio() { awk -v a="$(cat "$1")" -v b="$(cat "$2")" 'BEGIN { printf "%.2f", b / a }'; }

echo "month-end on $(nproc) cores; seconds (wall) and peak RSS (MB); the Nov 1 run is the timed one"
row "apps" "database" "Oct 1" "Nov 1 (timed)" "peak MB" "Nov 1 again" "flush rows" "flush (s)" "again (s)" "peak MB" \
  "floor ins." "floor upd."
for n in "$apps" "$((apps * 2))"; do
  for database in $databases; do bench "$n" "$database"; done
done
for database in $databases; do
  echo "$database, twice the applications: billing $(ratio "$work/run-$database-$apps" "$work/run-$database-$((apps * 2))") x," \
    "flush $(ratio "$work/flush-$database-$apps" "$work/flush-$database-$((apps * 2))") x the time (target <= 2.2)"
done
if [[ " $databases " == *" sqlite "* && " $databases " == *" postgres "* ]]; then
  for n in "$apps" "$((apps * 2))"; do
    echo "$n applications, PostgreSQL / SQLite: billing $(ratio "$work/run-sqlite-$n" "$work/run-postgres-$n") x," \
      "flush $(ratio "$work/flush-sqlite-$n" "$work/flush-postgres-$n") x (target <= 1.5);" \
      "the engine's floor: insert $(ratio "$work/floor-insert-sqlite-$n" "$work/floor-insert-postgres-$n") x," \
      "update $(ratio "$work/floor-update-sqlite-$n" "$work/floor-update-postgres-$n") x"
  done
fi
