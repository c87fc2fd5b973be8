#!/usr/bin/env bash
# Runs Tollgate locally: the control plane on its embedded default (SQLite, in-process
# counters), a demo upstream, and two Envoy gateways the control plane configures over xDS —
# production and staging —; seeds a demo product routed to the demo upstream, with a plan and
# an application (`tollgate seed demo`), and prints curl commands to try. Ctrl-C stops
# everything.
#
#   control plane       http://127.0.0.1:3000   (TOLLGATE_LISTEN), xDS on 127.0.0.1:18000
#   production gateway  http://{system_name}.localhost:8080          admin on 9901
#   staging gateway     http://{system_name}-staging.localhost:8081  admin on 9902
#   demo upstream       http://127.0.0.1:8000
#   mail catcher        smtp://127.0.0.1:2525 (aiosmtpd; every e-mail lands in ./mail/new)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"

TOLLGATE_SETUP_SERVICES=0 scripts/setup.sh
scripts/build-filter.sh
cargo build --release -q -p tollgate -p tollgate-e2e --bins

export TOLLGATE_LISTEN="${TOLLGATE_LISTEN:-127.0.0.1:3000}"
export TOLLGATE_DATABASE_URL="${TOLLGATE_DATABASE_URL:-sqlite://$root/tollgate.db}"
token_file="$root/.tollgate-admin-token"
[ -s "$token_file" ] || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$token_file"
export TOLLGATE_ADMIN_TOKEN="${TOLLGATE_ADMIN_TOKEN:-$(cat "$token_file")}"
export TOLLGATE_XDS_LISTEN="${TOLLGATE_XDS_LISTEN:-127.0.0.1:18000}"
export TOLLGATE_PRODUCTION_PORT="${TOLLGATE_PRODUCTION_PORT:-8080}" TOLLGATE_STAGING_PORT="${TOLLGATE_STAGING_PORT:-8081}"
domain="${TOLLGATE_GATEWAY_DOMAIN:-localhost}"
# E-mail goes to a local mail catcher; webhooks may reach this machine's own receivers.
smtp_port="${TOLLGATE_MAIL_CATCHER_PORT:-2525}"
export TOLLGATE_SMTP_URL="${TOLLGATE_SMTP_URL:-smtp://127.0.0.1:$smtp_port}"
export TOLLGATE_WEBHOOK_ALLOW_PRIVATE="${TOLLGATE_WEBHOOK_ALLOW_PRIVATE:-1}"
maildir="$root/mail"
upstream="127.0.0.1:${TOLLGATE_DEMO_UPSTREAM_PORT:-8000}"

# The demo (once; seeding again answers what is there): a product routed to the demo upstream,
# with a plan of 10 calls a minute, an account with an application, deployed and promoted.
# The console's admin: `admin`, with a password made once and kept in .tollgate-console-password.
password_file="$root/.tollgate-console-password"
[ -s "$password_file" ] || head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$password_file"
user_key="$(target/release/tollgate seed demo --api-backend "http://$upstream" --console-password-file "$password_file" | json user_key)"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

.venv/bin/python -m aiosmtpd -n -l "127.0.0.1:$smtp_port" -c aiosmtpd.handlers.Mailbox "$maildir" & pids+=($!)
target/release/tollgate serve & pids+=($!)
target/release/demo-upstream "$upstream" & pids+=($!)
cp="http://$TOLLGATE_LISTEN"
for _ in $(seq 100); do curl -fs "$cp/health" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fs "$cp/health" >/dev/null || { echo "run.sh: the control plane did not start" >&2; exit 1; }

# The gateways: Envoy with nothing but a listener and the way to the control plane; routes,
# clusters and the filter come over xDS, per environment.
prod="http://demo.$domain:$TOLLGATE_PRODUCTION_PORT"
staging="http://demo-staging.$domain:$TOLLGATE_STAGING_PORT"
gateway() {
  TOLLGATE_GATEWAY="$1" TOLLGATE_ENVOY_PORT="$2" TOLLGATE_ENVOY_ADMIN_PORT="$3" TOLLGATE_XDS="$TOLLGATE_XDS_LISTEN" \
    TOLLGATE_CONTROL_PLANE="$TOLLGATE_LISTEN" TOLLGATE_ACCESS_TOKEN="$TOLLGATE_ADMIN_TOKEN" scripts/envoy.sh & pids+=($!)
}
gateway production "$TOLLGATE_PRODUCTION_PORT" 9901
gateway staging "$TOLLGATE_STAGING_PORT" 9902
for url in "$prod" "$staging"; do
  for _ in $(seq 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/?user_key=$user_key")" = 200 ] && break
    sleep 0.2
  done
done
auth="Authorization: Bearer \$(cat $token_file)"

cat <<MSG

Tollgate is running.
  console             $cp/console/   (sign in as admin, password: $(cat "$password_file"))
  developer portal    $cp/portal/   (sign in as demo@example.com, the same password)
  control plane       $cp   (admin token in $token_file; xDS on $TOLLGATE_XDS_LISTEN)
  production gateway  $prod   (Envoy admin http://127.0.0.1:9901)
  staging gateway     $staging   (Envoy admin http://127.0.0.1:9902)
  demo upstream       http://$upstream
  e-mail              $TOLLGATE_SMTP_URL, caught in $maildir/new (one file per message)
(curl and browsers resolve *.localhost to this machine; other tools may need the Host header.)

Passes (200, answered by the demo upstream), through production and through staging:
  curl -i "$prod/hello?user_key=$user_key"
  curl -i "$staging/hello?user_key=$user_key"
Rejected (403, wrong key):
  curl -i "$prod/hello?user_key=wrong-key"
Rejected (401, no key):
  curl -i "$prod/hello"
Rejected (404, no mapping rule: the demo maps only GET):
  curl -i -X POST "$prod/hello?user_key=$user_key"
Rejected (429, the demo plan allows 10 calls a minute; the start-up checks used two):
  for i in \$(seq 12); do curl -s -o /dev/null -w '%{http_code} ' "$prod/hello?user_key=$user_key"; done

Your own product, staging first, then production (no Envoy file edited, no restart): the
README's "Your first product". Gateways connected and what they acknowledged:
  curl -s $cp/admin/api/gateways.json -H "$auth"

Webhooks (signed, retried; see the README's Notifications):
  curl -s -X POST "$cp/admin/api/webhook_endpoints.json" -H "$auth" \\
    -d url=http://127.0.0.1:9999/hook -d 'event_types[]=*'

Ctrl-C stops everything.
MSG
wait -n "${pids[@]}"
