#!/usr/bin/env bash
# Writes the filter as an OCI image layout that Istio's WasmPlugin can pull once pushed
# (`skopeo copy oci:target/filter-image:latest docker://REGISTRY/tollgate-filter:TAG`, or
# `oras`): the "compat" image — one gzipped tar layer holding plugin.wasm — that
# control-plane/deploy/filter.Dockerfile builds with Docker, made here without one.
#   scripts/build-filter-image.sh [WASM [OUT]]   (defaults: target/tollgate_filter.wasm,
#                                                  target/filter-image)
# Reproducible: the same module gives the same digests (tar and gzip times are zero).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
wasm="${1:-$root/target/tollgate_filter.wasm}"
out="${2:-$root/target/filter-image}"
[ -f "$wasm" ] || { echo "build-filter-image: $wasm is missing (run scripts/build-filter.sh)" >&2; exit 1; }
python3 - "$wasm" "$out" <<'PY'
import gzip, hashlib, io, json, os, shutil, sys, tarfile
wasm, out = sys.argv[1], sys.argv[2]
shutil.rmtree(out, ignore_errors=True)
blobs = os.path.join(out, "blobs", "sha256")
os.makedirs(blobs)

def blob(data):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, digest), "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + digest, "size": len(data)}

module = open(wasm, "rb").read()
tar = io.BytesIO()
with tarfile.open(fileobj=tar, mode="w", format=tarfile.PAX_FORMAT) as t:
    info = tarfile.TarInfo("plugin.wasm")
    info.size, info.mode, info.mtime = len(module), 0o644, 0
    t.addfile(info, io.BytesIO(module))
layer_tar = tar.getvalue()
layer = blob(gzip.compress(layer_tar, mtime=0))
config = blob(json.dumps({
    "architecture": "wasm", "os": "wasip1",
    "config": {},
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer_tar).hexdigest()]},
}, sort_keys=True).encode())
manifest = blob(json.dumps({
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer}],
    "annotations": {"module.wasm.image/variant": "compat",
                    "org.opencontainers.image.title": "tollgate-filter"},
}, sort_keys=True).encode())
with open(os.path.join(out, "oci-layout"), "w") as f:
    json.dump({"imageLayoutVersion": "1.0.0"}, f)
with open(os.path.join(out, "index.json"), "w") as f:
    json.dump({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
               "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", **manifest,
                              "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}, f)
print(manifest["digest"])
PY
