#!/usr/bin/env bash
# Runs every check and test: setup, formatting, clippy (host and wasm32), the filter's wasm build,
# then all unit, integration and end-to-end tests (SQLite and PostgreSQL, embedded and Redis,
# real Envoy), and the import-cycle check (tests/tests/layers.rs).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

scripts/setup.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy -q --workspace --all-targets -- -D warnings
echo "== filter (wasm32)"
scripts/build-filter.sh
echo "== cargo clippy (wasm32)"
scripts/build-filter.sh --clippy

export TOLLGATE_TEST_POSTGRES_URL="${TOLLGATE_TEST_POSTGRES_URL:-postgres://tollgate:tollgate@127.0.0.1:5432/postgres}"
export TOLLGATE_TEST_REDIS_URL="${TOLLGATE_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
# Databases left behind by interrupted runs.
for db in $(psql "$TOLLGATE_TEST_POSTGRES_URL" -qtAc "SELECT datname FROM pg_database WHERE datname LIKE 'tollgate_test_%'" 2>/dev/null); do
  psql "$TOLLGATE_TEST_POSTGRES_URL" -qc "DROP DATABASE IF EXISTS \"$db\"" >/dev/null 2>&1 || true
done

echo "== tests"
cargo test --workspace --no-fail-fast
echo "== 3scale-api client against Tollgate"
scripts/test-clients.sh
