#!/usr/bin/env bash
# Renders an Envoy bootstrap and runs Envoy in the foreground:
#  - TOLLGATE_GATEWAY=staging or production: envoy/gateway.yaml.tmpl, a gateway the control
#    plane configures over xDS (routes per product, clusters per backend, the filter with the
#    environment's services);
#  - unset: envoy/envoy.yaml.tmpl, the filter with a static configuration in front of one
#    upstream (bring your own Envoy routes).
#
#   TOLLGATE_GATEWAY           staging | production: an xDS-configured gateway  (unset: static)
#   TOLLGATE_XDS               host:port of the control plane's xDS server (127.0.0.1:18000)
#   TOLLGATE_NODE_ID           the gateway's name in GET /admin/api/gateways.json (host-environment-port)
#   TOLLGATE_CA_FILE           CA bundle for https backends (/etc/ssl/certs/ca-certificates.crt when present)
#   TOLLGATE_CONTROL_PLANE     host:port of the control plane      (127.0.0.1:3000); several
#                              replicas: host:port,host:port,… (the first is the authority)
#   TOLLGATE_ACCESS_TOKEN      admin token: the filter fetches its configuration with it, a gateway
#                              presents it to xDS (required)
#   TOLLGATE_UPSTREAM          host:port of the API behind Envoy   (127.0.0.1:8000; static only)
#   TOLLGATE_ENVOY_PORT        listener port                       (8080)
#   TOLLGATE_ENVOY_ADMIN_PORT  Envoy admin port                    (9901)
#   TOLLGATE_FILTER            on | off: off is the same config without the filter   (on)
#   TOLLGATE_FAILURE_MODE      closed | open                       (closed)
#   TOLLGATE_ENVOY_CONCURRENCY worker threads                      (2)
#   TOLLGATE_REFRESH_MS        how often services are re-fetched   (10000)
#   TOLLGATE_CP_TIMEOUT_MS     control-plane call timeout          (500)
#   TOLLGATE_FILTER_CACHE_TTL_MS  how long the filter serves an authorization from its cache (5000)
#   TOLLGATE_REPORT_INTERVAL_MS   how often the filter reports usage (1000)
#   TOLLGATE_FILTER_LIMIT_HEADERS true | false: RateLimit-* headers on responses (false)
#   TOLLGATE_FILTER_RESPONSE_CODES true | false: report response codes, log[code] (false)
#   TOLLGATE_WASM              the filter                          (target/tollgate_filter.wasm)
#   TOLLGATE_ENVOY_BIN         Envoy binary                        (.venv/bin/envoy, else envoy on PATH)
#   TOLLGATE_ENVOY_CONFIG_OUT  where to write the rendered config  (a temporary file)
#   TOLLGATE_LISTEN_ADDRESS    listener address                    (127.0.0.1)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

cp_addr="${TOLLGATE_CONTROL_PLANE:-127.0.0.1:3000}"
gateway="${TOLLGATE_GATEWAY:-}"
xds_addr="${TOLLGATE_XDS:-127.0.0.1:18000}"
upstream="${TOLLGATE_UPSTREAM:-127.0.0.1:8000}"
filter="${TOLLGATE_FILTER:-on}"
failure_mode="${TOLLGATE_FAILURE_MODE:-closed}"
token="${TOLLGATE_ACCESS_TOKEN:-}"
wasm="${TOLLGATE_WASM:-$root/target/tollgate_filter.wasm}"

die() { echo "envoy.sh: $*" >&2; exit 2; }
hostport() { [[ "$1" =~ ^[A-Za-z0-9._-]+:[0-9]+$ ]] || die "$2 must be host:port, not '$1'"; }
IFS=, read -r -a cp_addrs <<<"$cp_addr"
[ "${#cp_addrs[@]}" -gt 0 ] || die "TOLLGATE_CONTROL_PLANE is empty"
for a in "${cp_addrs[@]}"; do hostport "$a" TOLLGATE_CONTROL_PLANE; done
cp_authority="${cp_addrs[0]}"
cp_endpoints=""
for a in "${cp_addrs[@]}"; do
  cp_endpoints+="${cp_endpoints:+$'\n'}        - endpoint:"$'\n'"            address:"$'\n'"              socket_address: { address: ${a%:*}, port_value: ${a##*:} }"
done
hostport "$upstream" TOLLGATE_UPSTREAM
hostport "$xds_addr" TOLLGATE_XDS
case "$gateway" in ''|staging|production) ;; *) die "TOLLGATE_GATEWAY must be staging or production (or unset)" ;; esac
[ -z "$gateway" ] || [ "$filter" = on ] || die "an xDS gateway always runs the filter (TOLLGATE_FILTER=off is for the static config)"
case "$filter" in on|off) ;; *) die "TOLLGATE_FILTER must be on or off" ;; esac
case "$failure_mode" in closed|open) ;; *) die "TOLLGATE_FAILURE_MODE must be closed or open" ;; esac
limit_headers="${TOLLGATE_FILTER_LIMIT_HEADERS:-false}"
case "$limit_headers" in true|false) ;; *) die "TOLLGATE_FILTER_LIMIT_HEADERS must be true or false" ;; esac
response_codes="${TOLLGATE_FILTER_RESPONSE_CODES:-false}"
case "$response_codes" in true|false) ;; *) die "TOLLGATE_FILTER_RESPONSE_CODES must be true or false" ;; esac
for n in TOLLGATE_ENVOY_PORT TOLLGATE_ENVOY_ADMIN_PORT TOLLGATE_ENVOY_CONCURRENCY TOLLGATE_REFRESH_MS TOLLGATE_CP_TIMEOUT_MS \
  TOLLGATE_FILTER_CACHE_TTL_MS TOLLGATE_REPORT_INTERVAL_MS; do
  v="${!n:-}"; [[ -z "$v" || "$v" =~ ^[0-9]+$ ]] || die "$n must be a number"
done
if [ "$filter" = on ]; then
  [ -n "$token" ] || die "TOLLGATE_ACCESS_TOKEN is required when the filter is on"
  [[ "$token" =~ ^[A-Za-z0-9._~-]+$ ]] || die "TOLLGATE_ACCESS_TOKEN may only hold letters, digits and ._~-"
  [ -f "$wasm" ] || die "no filter at $wasm (run scripts/build-filter.sh)"
fi

envoy="${TOLLGATE_ENVOY_BIN:-}"
if [ -z "$envoy" ]; then
  if [ -x "$root/.venv/bin/envoy" ]; then envoy="$root/.venv/bin/envoy"; else envoy="$(command -v envoy || true)"; fi
fi
[ -n "$envoy" ] || die "no Envoy found (run scripts/setup.sh)"

out="${TOLLGATE_ENVOY_CONFIG_OUT:-$(mktemp -t tollgate-envoy.XXXXXX.yaml)}"
if [ -n "$gateway" ]; then
  template="$root/envoy/gateway.yaml.tmpl"
else
  template="$root/envoy/envoy.yaml.tmpl"
fi
if [ "$filter" = off ]; then
  config="$(sed '/# BEGIN tollgate-filter/,/# END tollgate-filter/d' "$template")"
else
  config="$(cat "$template")"
fi
# The filter's own settings, one JSON document: the static config carries it as the plugin
# configuration; a gateway hands it to the control plane in its node metadata, and gets it
# back with the environment's services.
filter_json="{\"control_plane\": {\"cluster\": \"tollgate_control_plane\", \"authority\": \"$cp_authority\", \"timeout_ms\": ${TOLLGATE_CP_TIMEOUT_MS:-500}},"
[ -n "$gateway" ] || filter_json+=" \"access_token\": \"$token\", \"refresh_interval_ms\": ${TOLLGATE_REFRESH_MS:-10000},"
filter_json+=" \"cache_ttl_ms\": ${TOLLGATE_FILTER_CACHE_TTL_MS:-5000}, \"report_interval_ms\": ${TOLLGATE_REPORT_INTERVAL_MS:-1000},"
filter_json+=" \"limit_headers\": $limit_headers, \"report_response_codes\": $response_codes, \"failure_mode\": \"$failure_mode\"}"
ca_file="${TOLLGATE_CA_FILE:-}"
[ -n "$ca_file" ] || [ ! -f /etc/ssl/certs/ca-certificates.crt ] || ca_file=/etc/ssl/certs/ca-certificates.crt
shopt -u patsub_replacement 2>/dev/null || true
subst() { config="${config//@$1@/$2}"; }
subst ADMIN_PORT "${TOLLGATE_ENVOY_ADMIN_PORT:-9901}"
subst ENVOY_PORT "${TOLLGATE_ENVOY_PORT:-8080}"
subst LISTEN_ADDRESS "${TOLLGATE_LISTEN_ADDRESS:-127.0.0.1}"
subst UPSTREAM_HOST "${upstream%:*}"
subst UPSTREAM_PORT "${upstream##*:}"
subst CP_ENDPOINTS "$cp_endpoints"
subst CP_AUTHORITY "$cp_authority"
subst FILTER_JSON "$filter_json"
subst ACCESS_TOKEN "$token"
subst ENVIRONMENT "$gateway"
subst NODE_ID "${TOLLGATE_NODE_ID:-$(hostname)-$gateway-${TOLLGATE_ENVOY_PORT:-8080}}"
subst CA_FILE "$ca_file"
subst XDS_HOST "${xds_addr%:*}"
subst XDS_PORT "${xds_addr##*:}"
subst WASM "$wasm"
printf '%s\n' "$config" > "$out"

echo "envoy.sh: ${gateway:+gateway=$gateway xds=$xds_addr }filter=$filter listen=:${TOLLGATE_ENVOY_PORT:-8080} admin=:${TOLLGATE_ENVOY_ADMIN_PORT:-9901} upstream=$upstream control-plane=$cp_addr config=$out" >&2
exec "$envoy" -c "$out" --concurrency "${TOLLGATE_ENVOY_CONCURRENCY:-2}" --disable-hot-restart \
  --log-level "${TOLLGATE_ENVOY_LOG_LEVEL:-warn}" --component-log-level "wasm:info"
