"""Checks Tollgate's deployment without a cluster (tests/tests/deploy.rs runs it).

  check.py manifests FILE      the rendered manifests: every Kubernetes object against the API's
                               own schema (kubernetes-validate, strict: an unknown field fails),
                               the WasmPlugin against tests/deploy/wasmplugin.schema.json, and
                               what Tollgate needs of them (probes on /health, /metrics scraped,
                               replicas, ports that exist); prints the filter's pluginConfig as
                               JSON for the filter's own parser.
  check.py image DIR WASM      an OCI image layout (scripts/build-filter-image.sh): digests and
                               sizes, media types, the one layer holding WASM as plugin.wasm.
  check.py dockerfiles ROOT    control-plane/deploy's Dockerfiles: stages, what they copy
                               exists or is built, an unprivileged user, the ports served.
"""
import gzip, hashlib, io, json, os, re, sys, tarfile

import jsonschema
import kubernetes_validate
import yaml

KUBERNETES = "1.31"


def fail(message):
    sys.exit(f"deploy check: {message}")


def manifests(path):
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    kinds = {}
    schema = json.load(open(os.path.join(os.path.dirname(__file__), "wasmplugin.schema.json")))
    for doc in docs:
        kind = doc.get("kind")
        kinds.setdefault(kind, []).append(doc)
        if kind == "WasmPlugin":
            try:
                jsonschema.validate(doc, schema)
            except jsonschema.ValidationError as e:
                fail(f"WasmPlugin: {e.message} at {list(e.absolute_path)}")
        else:
            try:
                kubernetes_validate.validate(doc, KUBERNETES, strict=True)
            except kubernetes_validate.ValidationError as e:
                fail(f"{kind} {doc['metadata'].get('name')}: {e.message} at {list(e.path)}")
    for needed in ["Deployment", "Service", "PodDisruptionBudget", "ServiceAccount", "WasmPlugin"]:
        if needed not in kinds:
            fail(f"no {needed}")
    deployment = kinds["Deployment"][0]
    spec = deployment["spec"]
    if spec["replicas"] < 2:
        fail("fewer than 2 control-plane replicas")
    pod = spec["template"]
    if spec["selector"]["matchLabels"].items() - pod["metadata"]["labels"].items():
        fail("the Deployment's selector does not match its pods")
    container = pod["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ["readinessProbe", "livenessProbe"]:
        get = container[probe]["httpGet"]
        if get["path"] != "/health" or ports.get(get["port"]) != 3000:
            fail(f"{probe} is not GET /health on the HTTP port")
    notes = pod["metadata"]["annotations"]
    if notes.get("prometheus.io/scrape") != "true" or notes.get("prometheus.io/path") != "/metrics" \
            or int(notes["prometheus.io/port"]) not in ports.values():
        fail("/metrics is not scraped from a port the container serves")
    env = {e["name"] for e in container["env"]}
    for name in ["TOLLGATE_DATABASE_URL", "TOLLGATE_REDIS_URL", "TOLLGATE_LISTEN", "TOLLGATE_XDS_LISTEN"]:
        if name not in env:
            fail(f"the control plane is not given {name}")
    if not pod["spec"]["securityContext"].get("runAsNonRoot"):
        fail("the control plane may run as root")
    for service in kinds["Service"]:
        if service["spec"]["selector"].items() - pod["metadata"]["labels"].items():
            fail(f"Service {service['metadata']['name']} selects no control-plane pod")
        for p in service["spec"]["ports"]:
            if p["targetPort"] not in ports:
                fail(f"Service port {p['name']} targets {p['targetPort']}, which the pod does not name")
    budget = kinds["PodDisruptionBudget"][0]["spec"]
    if budget["minAvailable"] >= spec["replicas"]:
        fail("the disruption budget leaves no replica to drain")
    plugin = kinds["WasmPlugin"][0]["spec"]
    cluster = plugin["pluginConfig"]["control_plane"]["cluster"]
    name, namespace = kinds["Service"][0]["metadata"]["name"], kinds["Service"][0]["metadata"]["namespace"]
    if cluster != f"outbound|3000||{name}.{namespace}.svc.cluster.local":
        fail(f"the filter calls {cluster}, not the control plane's Service")
    print(json.dumps(plugin["pluginConfig"]))


def digest_of(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def read_blob(root, descriptor):
    algo, hexdigest = descriptor["digest"].split(":")
    data = open(os.path.join(root, "blobs", algo, hexdigest), "rb").read()
    if digest_of(data) != descriptor["digest"] or len(data) != descriptor["size"]:
        fail(f"blob {descriptor['digest']} does not match its digest or size")
    return data


def image(root, wasm):
    if json.load(open(os.path.join(root, "oci-layout"))) != {"imageLayoutVersion": "1.0.0"}:
        fail("not an OCI image layout")
    index = json.load(open(os.path.join(root, "index.json")))
    if len(index["manifests"]) != 1:
        fail("the layout holds more than one image")
    entry = index["manifests"][0]
    manifest = json.loads(read_blob(root, entry))
    if manifest["mediaType"] != "application/vnd.oci.image.manifest.v1+json" or manifest["schemaVersion"] != 2:
        fail("not an OCI image manifest")
    config = json.loads(read_blob(root, manifest["config"]))
    if len(manifest["layers"]) != 1:
        fail("Istio's compat image has exactly one layer")
    layer = manifest["layers"][0]
    if layer["mediaType"] != "application/vnd.oci.image.layer.v1.tar+gzip":
        fail(f"layer media type {layer['mediaType']}")
    tar_bytes = gzip.decompress(read_blob(root, layer))
    if config["rootfs"]["diff_ids"] != [digest_of(tar_bytes)]:
        fail("the config's diff_id is not the layer's")
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as t:
        names = t.getnames()
        if names != ["plugin.wasm"]:
            fail(f"the layer holds {names}, not plugin.wasm alone")
        module = t.extractfile("plugin.wasm").read()
    if module != open(wasm, "rb").read():
        fail("plugin.wasm is not the filter's module")
    if not module.startswith(b"\0asm"):
        fail("plugin.wasm is not WebAssembly")
    print(entry["digest"])


def stages(path):
    """A Dockerfile's instructions, per stage: [(name, [(INSTRUCTION, args)])]."""
    text = re.sub(r"\\\n", " ", open(path).read())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        op, _, args = line.partition(" ")
        op = op.upper()
        if op == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?", args, re.I)
            out.append((m.group(2), m.group(1), []))
        elif not out:
            fail(f"{path}: {op} before FROM")
        else:
            out[-1][2].append((op, args.strip()))
    return out


def dockerfiles(root):
    deploy = os.path.join(root, "control-plane", "deploy")
    cp = stages(os.path.join(deploy, "Dockerfile"))
    if len(cp) != 2 or cp[0][0] != "build":
        fail("control-plane Dockerfile: a build stage, then the image")
    build = " ".join(a for op, a in cp[0][2] if op == "RUN")
    m = re.search(r"cargo build --release --locked -p (\S+) --bin (\S+)", build)
    if not m:
        fail("the build stage does not build the binary in release")
    cargo = open(os.path.join(root, "control-plane", "Cargo.toml")).read()
    if not re.search(rf'^name = "{re.escape(m.group(1))}"', cargo, re.M):
        fail(f"no package {m.group(1)} in control-plane/Cargo.toml")
    final = dict()
    for op, args in cp[1][2]:
        final.setdefault(op, []).append(args)
    copy = final["COPY"][0]
    if copy != f"--from=build /src/target/release/{m.group(2)} /usr/local/bin/tollgate":
        fail(f"the image copies {copy}")
    if final.get("USER", ["0"])[-1] in ("0", "root"):
        fail("the image runs as root")
    if set(" ".join(final["EXPOSE"]).split()) != {"3000", "18000"}:
        fail("the image does not expose the HTTP API and xDS")
    if json.loads(final["ENTRYPOINT"][0]) != ["/usr/local/bin/tollgate"] or json.loads(final["CMD"][0]) != ["serve"]:
        fail("the image does not run `tollgate serve`")
    ignore = open(os.path.join(deploy, "Dockerfile.dockerignore")).read().split()
    if "target" not in ignore or ".venv" not in ignore:
        fail("the build context would carry target/ or .venv")
    f = stages(os.path.join(deploy, "filter.Dockerfile"))
    if len(f) != 1 or f[0][1] != "scratch" or f[0][2] != [("COPY", "target/tollgate_filter.wasm ./plugin.wasm")]:
        fail("filter.Dockerfile: FROM scratch with plugin.wasm alone")
    build_filter = open(os.path.join(root, "scripts", "build-filter.sh")).read()
    if "target/tollgate_filter.wasm" not in build_filter:
        fail("scripts/build-filter.sh no longer writes target/tollgate_filter.wasm")
    print("ok")


if __name__ == "__main__":
    what = sys.argv[1]
    {"manifests": lambda: manifests(sys.argv[2]),
     "image": lambda: image(sys.argv[2], sys.argv[3]),
     "dockerfiles": lambda: dockerfiles(sys.argv[2])}[what]()
