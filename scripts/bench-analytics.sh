#!/usr/bin/env bash
# The Analytics API at scale (issue #19): a year (2025) of hourly usage for N applications on one
# service with 10 metrics — every application, metric and hour has a value — laid down as the
# usage flush writes it (the rows and their roll-ups), on SQLite and PostgreSQL side by side.
# Then each query of the stats API is asked BENCH_ROUNDS times over HTTP (`tollgate serve`,
# curl's time_total) and its p50/p99 printed, with the storage the usage tables take per
# application-year; then again for N/4 applications, to show how the figures grow.
#
#   scripts/bench-analytics.sh                    # 1,000 applications (and 250)
#   BENCH_APPS=200 scripts/bench-analytics.sh
#   BENCH_DATABASES=sqlite scripts/bench-analytics.sh
#
# Targets: every query <= 50 ms at p99 on the embedded default; growth linear in applications.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
apps="${BENCH_APPS:-1000}"
rounds="${BENCH_ROUNDS:-50}"
databases="${BENCH_DATABASES:-sqlite postgres}"
pg_admin="${TOLLGATE_TEST_POSTGRES_URL:-postgres://tollgate:tollgate@127.0.0.1:5432/postgres}"

cargo build -q --release -p tollgate
bin="$root/target/release/tollgate"
work="$(mktemp -d)"
pg_dbs=()
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
  rm -rf "$work"
  for db in "${pg_dbs[@]}"; do psql "$pg_admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT

# One service with hits and 9 more metrics, N accounts with an application each, and every
# hour of 2025 for every application and metric (values split over the hour's quarters).
seed_sql() {
  local n="$1" ts="'2025-01-01T00:00:00Z'"
  cat <<SQL
INSERT INTO services (name, system_name, service_token, created_at, updated_at)
  VALUES ('Bench API', 'bench_api', 'bench-token', $ts, $ts);
INSERT INTO metrics (service_id, system_name, friendly_name, created_at, updated_at)
  WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i < 9)
  SELECT s.id, CASE WHEN i = 0 THEN 'hits' ELSE 'metric_' || i END, 'Metric ' || i, $ts, $ts FROM services s, k;
INSERT INTO application_plans (service_id, name, system_name, created_at, updated_at)
  SELECT id, 'Basic', 'basic', $ts, $ts FROM services;
INSERT INTO accounts (org_name, created_at, updated_at)
  WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < $n)
  SELECT 'Account ' || i, $ts, $ts FROM k;
INSERT INTO applications (account_id, service_id, plan_id, name, application_id, user_key, created_at, updated_at)
  SELECT a.id, s.id, p.id, 'App ' || a.id, 'app' || a.id, 'key' || a.id, $ts, $ts
  FROM accounts a, services s, application_plans p;
-- Loaded first and indexed after: the same index, built in one pass.
DROP INDEX usage_hourly_by_service;
INSERT INTO usage_hourly (application_id, service_id, metric_id, hour_start, value, observed_us, q0, q1, q2, q3, o0, o1, o2, o3)
  WITH RECURSIVE h(t) AS (SELECT 1735689600 UNION ALL SELECT t + 3600 FROM h WHERE t < 1767225600 - 3600),
  v AS (SELECT a.id AS app, a.service_id AS service, m.id AS metric, h.t AS t,
               1 + (a.id * 7 + m.id * 3 + h.t / 3600) % 25 AS k
        FROM applications a, metrics m, h)
  SELECT app, service, metric, t, 4 * k, 1, k, k, k, k, 1, 1, 1, 1 FROM v ORDER BY app, metric, t;
CREATE INDEX usage_hourly_by_service ON usage_hourly (service_id, metric_id, hour_start, application_id, q0, q1, q2, q3);
INSERT INTO usage_service_hourly (service_id, metric_id, hour_start, q0, q1, q2, q3)
  SELECT service_id, metric_id, hour_start, SUM(q0), SUM(q1), SUM(q2), SUM(q3)
  FROM usage_hourly GROUP BY service_id, metric_id, hour_start;
INSERT INTO usage_service_daily (service_id, metric_id, day_start, value)
  SELECT service_id, metric_id, hour_start - hour_start % 86400, SUM(q0 + q1 + q2 + q3)
  FROM usage_service_hourly GROUP BY service_id, metric_id, hour_start - hour_start % 86400;
INSERT INTO usage_app_daily (service_id, metric_id, day_start, application_id, value)
  SELECT service_id, metric_id, hour_start - hour_start % 86400, application_id, SUM(value)
  FROM usage_hourly GROUP BY service_id, metric_id, hour_start - hour_start % 86400, application_id;
SQL
}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# "p50 p99" in milliseconds of $rounds GETs of $1.
timed() {
  local url="$1"
  for _ in $(seq "$rounds"); do curl -s -o /dev/null -w "%{http_code} %{time_total}\n" "$url"; done |
    python3 -c '
import sys
rows = [line.split() for line in sys.stdin]
bad = [r for r in rows if r[0] != "200"]
if bad: sys.exit("HTTP %s" % bad[0][0])
t = sorted(float(r[1]) * 1000 for r in rows)
print("%.1f %.1f" % (t[len(t) // 2], t[min(len(t) - 1, int(len(t) * 0.99))]))'
}

# Seeds N applications on database $2, serves it, and times the queries: one line per query.
bench() {
  local n="$1" database="$2" url bytes seeded_at
  seeded_at=$SECONDS
  if [ "$database" = postgres ]; then
    local db="tollgate_bench_analytics_$$_$n"
    pg_dbs+=("$db")
    psql "$pg_admin" -qc "CREATE DATABASE $db" >/dev/null
    url="${pg_admin%/*}/$db"
    TOLLGATE_DATABASE_URL="$url" "$bin" migrate >/dev/null 2>&1
    # Bulk-load settings, and the primary key built after the load rather than row by row.
    {
      echo "SET work_mem = '1GB'; SET maintenance_work_mem = '1GB';"
      echo "ALTER TABLE usage_hourly DROP CONSTRAINT usage_hourly_pkey;"
      seed_sql "$n"
      echo "ALTER TABLE usage_hourly ADD PRIMARY KEY (application_id, metric_id, hour_start);"
    } | psql "$url" -q -v ON_ERROR_STOP=1 >/dev/null
    psql "$url" -qc "VACUUM ANALYZE usage_hourly, usage_service_hourly, usage_service_daily, usage_app_daily, applications" >/dev/null
    bytes="$(psql "$url" -qtAc "SELECT SUM(pg_total_relation_size(t)) FROM unnest(ARRAY['usage_hourly','usage_service_hourly','usage_service_daily','usage_app_daily']) t")"
  else
    url="sqlite://$work/bench-$n.db"
    TOLLGATE_DATABASE_URL="$url" "$bin" migrate >/dev/null 2>&1
    seed_sql "$n" | python3 -c '
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.execute("PRAGMA cache_size = -4000000")
c.executescript(sys.stdin.read())
c.commit()
c.execute("ANALYZE")
c.close()' "$work/bench-$n.db"
    # The usage tables' pages (dbstat when the sqlite3 build has it, else the whole file).
    bytes="$(python3 -c '
import sqlite3, sys, os
c = sqlite3.connect(sys.argv[1])
try:
    print(c.execute("SELECT SUM(pgsize) FROM dbstat WHERE name LIKE \"usage_%\" OR name LIKE \"sqlite_autoindex_usage_%\"").fetchone()[0])
except sqlite3.Error:
    print(os.path.getsize(sys.argv[1]))' "$work/bench-$n.db")"
  fi
  echo "($database, $n applications: seeded $((n * 87600)) hourly rows in $((SECONDS - seeded_at)) s)" >&2
  local port
  port="$(free_port)"
  TOLLGATE_DATABASE_URL="$url" TOLLGATE_LISTEN="127.0.0.1:$port" TOLLGATE_XDS_LISTEN=off RUST_LOG=warn "$bin" serve >"$work/serve.log" 2>&1 &
  server=$!
  local base="http://127.0.0.1:$port"
  for _ in $(seq 200); do curl -sf "$base/health" >/dev/null && break; sleep 0.05; done
  local key sid app
  if [ "$database" = postgres ]; then
    key="$(psql "$url" -qtAc "SELECT provider_key FROM provider_account")"
    sid="$(psql "$url" -qtAc "SELECT id FROM services")"
    app="$(psql "$url" -qtAc "SELECT MIN(id) FROM applications")"
  else
    read -r key sid app < <(python3 -c '
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
print(c.execute("SELECT provider_key FROM provider_account").fetchone()[0],
      c.execute("SELECT id FROM services").fetchone()[0],
      c.execute("SELECT MIN(id) FROM applications").fetchone()[0])' "$work/bench-$n.db")
  fi
  local q="provider_key=$key&metric_name=hits"
  printf "%-8s %-9s %-34s %8s %8s\n" "$database" "$n" "service: a year by month" $(timed "$base/stats/services/$sid/usage.json?$q&period=year&since=2025-01-01")
  printf "%-8s %-9s %-34s %8s %8s\n" "$database" "$n" "service: a month by day" $(timed "$base/stats/services/$sid/usage.json?$q&period=month&since=2025-06-01")
  printf "%-8s %-9s %-34s %8s %8s\n" "$database" "$n" "service: a year, Asia/Kolkata" $(timed "$base/stats/services/$sid/usage.json?$q&period=year&since=2025-01-01&timezone=Asia/Kolkata")
  printf "%-8s %-9s %-34s %8s %8s\n" "$database" "$n" "service: a day by hour" $(timed "$base/stats/services/$sid/usage.json?$q&period=day&since=2025-06-15")
  printf "%-8s %-9s %-34s %8s %8s\n" "$database" "$n" "service: a month, Asia/Kolkata" $(timed "$base/stats/services/$sid/usage.json?$q&period=month&since=2025-06-01&timezone=Asia/Kolkata")
  printf "%-8s %-9s %-34s %8s %8s\n" "$database" "$n" "application: a month by day" $(timed "$base/stats/applications/$app/usage.json?$q&period=month&since=2025-06-01")
  printf "%-8s %-9s %-34s %8s %8s\n" "$database" "$n" "application: a year, Europe/Madrid" $(timed "$base/stats/applications/$app/usage.json?$q&period=year&since=2025-01-01&timezone=Europe/Madrid")
  printf "%-8s %-9s %-34s %8s %8s\n" "$database" "$n" "top applications: a month" $(timed "$base/stats/services/$sid/top_applications.json?$q&period=month&since=2025-06-01")
  printf "%-8s %-9s %-34s %8s %8s\n" "$database" "$n" "top applications: a month, Kolkata" $(timed "$base/stats/services/$sid/top_applications.json?$q&period=month&since=2025-06-01&timezone=Asia/Kolkata")
  printf "%-8s %-9s %-34s %17s\n" "$database" "$n" "storage bytes per application-year" "$((bytes / n))"
  kill "$server"
  wait "$server" 2>/dev/null || true
  server=""
}

echo "stats API over HTTP, $(nproc) cores, $rounds rounds a query; milliseconds"
printf "%-8s %-9s %-34s %8s %8s\n" "database" "apps" "query" "p50" "p99"
for database in $databases; do
  bench "$((apps / 4))" "$database"
  bench "$apps" "$database"
done
