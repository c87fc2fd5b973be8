#!/usr/bin/env bash
# The fault soak (issue #24): two Envoys with the filter, two control-plane replicas on one
# PostgreSQL database and a Redis Cluster (3 masters, a replica each) the test starts; mixed
# traffic for TOLLGATE_SOAK_SECONDS (600) while a replica is killed and started again, a Redis
# master fails over and a gateway drains; then requests served, counted, in the usage tables
# and deducted from the prepaid balance are compared. The test command runs the same for 20 s.
#
#   scripts/soak.sh                        # ten minutes
#   TOLLGATE_SOAK_SECONDS=120 scripts/soak.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
[ -x .venv/bin/envoy ] || TOLLGATE_SETUP_SERVICES=1 scripts/setup.sh
export TOLLGATE_TEST_POSTGRES_URL="${TOLLGATE_TEST_POSTGRES_URL:-postgres://tollgate:tollgate@127.0.0.1:5432/postgres}"
scripts/build-filter.sh >/dev/null
cargo test -q -p tollgate-e2e --test soak soak_for_ten_minutes -- --ignored --nocapture
