#!/usr/bin/env bash
# Builds the proxy-wasm filter and writes target/tollgate_filter.wasm. For the benchmark:
#   --noop    the no-op filter it compares against (filter/noop) -> target/noop_filter.wasm
#   --timing  the filter with per-step timings (feature `timing`) -> target/timing_filter.wasm
#   --head-only  reads the request head and does nothing else -> target/head_only_filter.wasm
#   --floor, --floor-head, --floor-lean  filters without the SDK (filter/floor)
#                -> target/floor_filter.wasm, floor_head_filter.wasm, floor_lean_filter.wasm
#   --clippy  builds nothing: clippy -D warnings on the wasm32 build of the filter crates (the
#             glue is only compiled there)
#
# rustup cannot fetch the wasm32 target on our machines, so this uses Debian's Rust
# (rustc-web, cargo-web, rust-web-src: std sources at /usr/lib/rustlib/src) and rebuilds std
# for wasm32 with -Zbuild-std, linking with the rustup toolchain's rust-lld.
# scripts/setup.sh installs what this needs.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

lld="$(ls -1 "$HOME"/.rustup/toolchains/*/lib/rustlib/*/bin/rust-lld 2>/dev/null | head -n1 || true)"
[ -z "$lld" ] && lld="$(command -v rust-lld || command -v wasm-ld || true)"
if [ -z "$lld" ] || [ ! -x /usr/bin/rustc ] || [ ! -d /usr/lib/rustlib/src/rust/library ]; then
  echo "build-filter: missing toolchain pieces (run scripts/setup.sh)" >&2
  exit 1
fi

# The export dropper (filter/exports) is a host tool: built with the host toolchain, in the
# workspace's target directory.
[ "${1:-}" = --clippy ] || cargo build -q --release -p tollgate-wasm-exports
drop_exports="$root/target/release/drop-wasm-exports"

export RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER="$lld"
export CARGO_TARGET_DIR="$root/target/wasm"
# Keep host-only flags (e.g. from the user's environment) away from the wasm build.
unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS

wasm=(-Zbuild-std=std,panic_abort --target wasm32-unknown-unknown --profile wasm-release)
crate=tollgate-filter; built=tollgate_filter; name=tollgate_filter; features=()
case "${1:-}" in
  --clippy)
    # Debian's clippy (rust-web-clippy) for Debian's rustc; cargo-clippy runs the cargo it is
    # given, not the rustup proxy first on PATH.
    exec env CARGO=/usr/bin/cargo PATH="/usr/bin:$PATH" /usr/bin/cargo-clippy clippy -q \
      -p tollgate-filter -p tollgate-noop-filter -p tollgate-floor-filter "${wasm[@]}" -- -D warnings ;;
  --noop) crate=tollgate-noop-filter; built=noop_filter; name=noop_filter ;;
  --timing) features=(--features timing); name=timing_filter ;;
  --head-only) features=(--features head-only); name=head_only_filter ;;
  --floor) crate=tollgate-floor-filter; built=floor_filter; name=floor_filter ;;
  --floor-head) crate=tollgate-floor-filter; built=floor_filter; features=(--features head); name=floor_head_filter ;;
  --floor-lean) crate=tollgate-floor-filter; built=floor_filter; features=(--features lean); name=floor_lean_filter ;;
  "") ;;
  *) echo "build-filter: unknown option $1" >&2; exit 2 ;;
esac
/usr/bin/cargo build -q -p "$crate" "${features[@]}" "${wasm[@]}"

# Callbacks the filter does not implement: without their exports Envoy makes no call into the
# VM for them (a response body chunk, the access log, ...). See filter/exports.
unused=(
  proxy_on_request_body proxy_on_request_trailers proxy_on_response_body proxy_on_response_trailers
  proxy_on_log proxy_on_new_connection proxy_on_downstream_data proxy_on_downstream_connection_close
  proxy_on_upstream_data proxy_on_upstream_connection_close
)
# filter/floor exports only what it implements.
[ "$crate" = tollgate-floor-filter ] && unused=()
out="$root/target/$name.wasm"
"$drop_exports" "$CARGO_TARGET_DIR/wasm32-unknown-unknown/wasm-release/$built.wasm" "$out" "${unused[@]}"
echo "build-filter: $out ($(stat -c %s "$out") bytes)"
