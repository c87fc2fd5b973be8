# The filter as an OCI image Istio's WasmPlugin pulls (the "compat" layout: one layer holding
# plugin.wasm). Build the module first with scripts/build-filter.sh, then, from the root:
#   docker build -f control-plane/deploy/filter.Dockerfile -t tollgate-filter .
# Without Docker, scripts/build-filter-image.sh writes the same image as an OCI layout
# (push it with `skopeo copy oci:target/filter-image docker://…` or `oras`).
FROM scratch
COPY target/tollgate_filter.wasm ./plugin.wasm
