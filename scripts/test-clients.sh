#!/usr/bin/env bash
# 3scale's own clients against Tollgate, on SQLite and on PostgreSQL — the proof that tools
# written for 3scale work unchanged:
#  - the `3scale-api` package's own integration tests (Account Management API);
#  - tests/clients/test_threescalepy.py: `ThreeScalePY` (service-management API: authrep,
#    authorize, report);
#  - tests/clients/test_analytics.py: the `3scale-api` package's analytics client (stats API).
# Also validates the served /openapi.json with openapi-spec-validator.
#
# Uses the debug `tollgate` binary (cargo build first) and the test files listed below (the
# resources Tollgate implements; the closing notes of the issues say which are out of scope).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
VERSION="0.35.4"
TESTS=(
  test_integration_services.py
  test_integration_metrics.py
  test_integration_methods.py
  test_integration_mapping_rules.py
  test_integration_application_plan.py
  test_integration_limit.py
  test_integration_pricing_rules.py
  test_integration_backends.py
  test_integration_backend_metrics.py
  test_integration_backend_methods.py
  test_integration_backend_mapping_rules.py
  test_integration_backend_usages.py
  test_integration_accounts.py
  test_integration_account_users.py
  test_integration_application.py
  test_integration_access_token.py
  test_integration_provider_account.py
  test_integration_provider_account_users.py
  test_integration_account_plans.py
  test_integration_service_plans.py
  test_integration_service_subscriptions.py
  test_integration_invoices.py
  test_integration_webhook.py
)
# Deselected, with the reason:
#  - *apicast*, *mapping_rule_endpoint*, *update_mapping_rule*, *stop_processing*: they send
#    traffic through a 3scale staging gateway (APIcast) to httpbin.org; that is the gateway's
#    job (tests/ covers it through Envoy with our filter) and this machine has no outside network.
#  - test_service_active_docs: ActiveDocs hosting is out of scope (SPEC §11).
#  - test_list_service_subscriptions: expects a new account to hold a subscription while no
#    service exists, i.e. the default "API" service every 3scale tenant starts with. Tollgate
#    starts empty; signup does subscribe accounts to each service's default service plan.
DESELECT="not apicast and not mapping_rule_endpoint_return_ok and not test_should_update_mapping_rule \
  and not stop_processing_mapping_rules and not active_docs and not test_list_service_subscriptions"
[ "$#" -gt 0 ] && TESTS=("$@")

work="$root/target/3scale-api"
if [ ! -d "$work/3scale_api-$VERSION/tests" ]; then
  mkdir -p "$work"
  .venv/bin/pip download -q --disable-pip-version-check --no-deps --no-binary :all: -d "$work" "3scale-api==$VERSION"
  tar xzf "$work/3scale_api-$VERSION.tar.gz" -C "$work"
fi
if ! .venv/bin/python -c "import threescale_api, pytest, dotenv, openapi_spec_validator, lxml, ThreeScalePY" 2>/dev/null; then
  .venv/bin/pip install -q --disable-pip-version-check "3scale-api==$VERSION" pytest python-dotenv openapi-spec-validator \
    "ThreeScalePY==2.6.0" lxml  # ThreeScalePY imports lxml without declaring it
fi
bin="$root/target/debug/tollgate"
[ -x "$bin" ] || cargo build -q -p tollgate
# Stripe, played by its stand-in (Stripe's servers can't be reached from here), so that the
# Billing API's charge path is the real one.
cargo build -q -p tollgate --features testing --bin stripe-mock
stripe_log="$(mktemp -t tollgate-stripe.XXXXXX.log)"
"$root/target/debug/stripe-mock" >"$stripe_log" 2>&1 &
stripe_pid=$!
for _ in $(seq 50); do [ -s "$stripe_log" ] && break; sleep 0.1; done
stripe_url="$(head -1 "$stripe_log")"

run_against() {
  local label="$1" database_url="$2"
  local port token="threescale-api-test-token" log
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  log="$(mktemp -t tollgate-3scale-api.XXXXXX.log)"
  TOLLGATE_LISTEN="127.0.0.1:$port" TOLLGATE_DATABASE_URL="$database_url" TOLLGATE_ADMIN_TOKEN="$token" \
    TOLLGATE_STRIPE_API_BASE="$stripe_url" TOLLGATE_STRIPE_SECRET_KEY=sk_test_tollgate TOLLGATE_BILLING_HOUR=off \
    TOLLGATE_USAGE_FLUSH_MS=100 TOLLGATE_XDS_LISTEN=off RUST_LOG=warn "$bin" serve >"$log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fs -X PUT -H "Authorization: Bearer $token" -d payment_gateway=stripe -d charging_enabled=true \
    "http://127.0.0.1:$port/admin/api/billing/settings.json" >/dev/null
  if [ "$label" = sqlite ]; then
    echo "== /openapi.json is a valid OpenAPI document"
    curl -fs "http://127.0.0.1:$port/openapi.json" | .venv/bin/python -c \
      'import json, sys; from openapi_spec_validator import validate; d = json.load(sys.stdin); validate(d); print(len(d["paths"]), "paths")'
  fi
  echo "== 3scale-api $VERSION integration tests on $label"
  local status=0
  (cd "$work/3scale_api-$VERSION" && THREESCALE_PROVIDER_URL="http://127.0.0.1:$port" THREESCALE_PROVIDER_TOKEN="$token" \
    "$root/.venv/bin/python" -m pytest -q -p no:cacheprovider -k "$DESELECT" "${TESTS[@]/#/tests/integration/}") || status=$?
  echo "== ThreeScalePY (service-management client) on $label"
  TOLLGATE_URL="http://127.0.0.1:$port" TOLLGATE_TOKEN="$token" \
    "$root/.venv/bin/python" -m pytest -q -p no:cacheprovider "$root/tests/clients/test_threescalepy.py" || status=$?
  echo "== 3scale-api's analytics client on $label"
  TOLLGATE_URL="http://127.0.0.1:$port" TOLLGATE_TOKEN="$token" \
    "$root/.venv/bin/python" -m pytest -q -p no:cacheprovider "$root/tests/clients/test_analytics.py" || status=$?
  kill "$pid"; wait "$pid" 2>/dev/null || true
  [ "$status" -eq 0 ] || { echo "control plane log: $log"; tail -20 "$log"; }
  return "$status"
}

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"; kill "$stripe_pid" 2>/dev/null || true' EXIT
run_against sqlite "sqlite://$tmp/tollgate.db"

pg_admin="${TOLLGATE_TEST_POSTGRES_URL:-postgres://tollgate:tollgate@127.0.0.1:5432/postgres}"
db="tollgate_test_3scale_api_$$"
psql "$pg_admin" -qc "CREATE DATABASE $db" >/dev/null
status=0
run_against postgresql "${pg_admin%/*}/$db" || status=$?
psql "$pg_admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null || true
exit "$status"
