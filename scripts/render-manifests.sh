#!/usr/bin/env bash
# Renders the Kubernetes manifests in control-plane/deploy/kubernetes/ to stdout, filling
# their ${…} from the environment (defaults below run as is in a cluster with the images
# pushed under these names):
#   IMAGE          the control plane's image (control-plane/deploy/Dockerfile)
#   FILTER_IMAGE   the filter's OCI image, without oci:// (control-plane/deploy/filter.Dockerfile)
#   NAMESPACE      where it all goes
#   REPLICAS       control-plane replicas (stateless: PostgreSQL and Redis hold the state)
#   GATEWAY_LABEL  the label `key: value` selecting the Envoys that run the filter
#   GATEWAY_TOKEN  the access token the gateways fetch their proxy configs with
# A variable set empty is an error (nothing is rendered half-filled).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export IMAGE="${IMAGE-ghcr.io/tollgate/tollgate:latest}"
export FILTER_IMAGE="${FILTER_IMAGE-ghcr.io/tollgate/tollgate-filter:latest}"
export NAMESPACE="${NAMESPACE-tollgate}"
export REPLICAS="${REPLICAS-3}"
export GATEWAY_LABEL="${GATEWAY_LABEL-istio: ingressgateway}"
export GATEWAY_TOKEN="${GATEWAY_TOKEN-change-me}"
python3 - "$root"/control-plane/deploy/kubernetes/*.yaml <<'PY'
import os, re, sys
out = []
for path in sys.argv[1:]:
    text = open(path).read()
    def fill(m):
        name = m.group(1)
        if name not in os.environ or os.environ[name] == "":
            sys.exit(f"render-manifests: {path}: ${{{name}}} has no value")
        return os.environ[name]
    out.append(re.sub(r"\$\{([A-Z_]+)\}", fill, text).strip())
print("\n---\n".join(out))
PY
