//! The deployment, checked without a cluster: the Kubernetes manifests rendered by
//! scripts/render-manifests.sh and validated against the Kubernetes API's own schemas (and
//! Istio's WasmPlugin fields), with the filter's configuration in them parsed by the filter's
//! own parser; the filter's OCI image (scripts/build-filter-image.sh) built from the module
//! the test command built, and its layout checked; the Dockerfiles' stages and paths.
//! tests/deploy/check.py does the checks (PyYAML, jsonschema, kubernetes-validate: the
//! project's .venv, scripts/setup.sh installs them).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failure report

use std::process::{Command, Output};
use tollgate_e2e::repo_root;

fn python() -> String {
    repo_root().join(".venv/bin/python").to_string_lossy().into_owned()
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn render(vars: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(repo_root().join("scripts/render-manifests.sh"));
    for (k, v) in vars {
        cmd.env(k, v);
    }
    run(&mut cmd)
}

#[test]
fn the_kubernetes_manifests_are_valid_and_the_filter_takes_their_configuration() {
    let rendered = ok(
        render(&[
            ("NAMESPACE", "apis"),
            ("REPLICAS", "4"),
            ("IMAGE", "registry.test/tollgate:1.2.3"),
        ]),
        "render-manifests",
    );
    assert!(rendered.contains("image: registry.test/tollgate:1.2.3") && rendered.contains("replicas: 4"));
    assert!(!rendered.contains("${"), "nothing left unfilled:\n{rendered}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("manifests.yaml");
    std::fs::write(&file, &rendered).unwrap();
    let config = ok(
        run(Command::new(python())
            .arg(repo_root().join("tests/deploy/check.py"))
            .arg("manifests")
            .arg(&file)),
        "the manifests' check",
    );
    let parsed = tollgate_filter::config::PluginConfig::parse(config.trim().as_bytes())
        .unwrap_or_else(|e| panic!("the WasmPlugin's pluginConfig: {e}\n{config}"));
    assert_eq!(
        parsed.control_plane.cluster,
        "outbound|3000||tollgate.apis.svc.cluster.local"
    );

    // A manifest the API would refuse fails the check, naming the field.
    std::fs::write(
        &file,
        rendered.replacen("      maxSurge: 1", "      maxSurge: 1\n      surge: 2", 1),
    )
    .unwrap();
    let refused = run(Command::new(python())
        .arg(repo_root().join("tests/deploy/check.py"))
        .arg("manifests")
        .arg(&file));
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("'surge' was unexpected"),
        "{refused:?}"
    );

    // A value left empty is an error, not a half-filled manifest.
    let empty = render(&[("NAMESPACE", "")]);
    assert!(!empty.status.success() && String::from_utf8_lossy(&empty.stderr).contains("${NAMESPACE} has no value"));
}

#[test]
fn the_filter_image_holds_the_module_as_plugin_wasm_and_is_reproducible() {
    let wasm = repo_root().join("target/tollgate_filter.wasm");
    assert!(
        wasm.exists(),
        "the test command builds the filter first (scripts/build-filter.sh)"
    );
    let dir = tempfile::tempdir().unwrap();
    let build = |out: &std::path::Path| {
        ok(
            run(Command::new(repo_root().join("scripts/build-filter-image.sh"))
                .arg(&wasm)
                .arg(out)),
            "build-filter-image",
        )
    };
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let digest = build(&a);
    assert_eq!(build(&b), digest, "the same module, the same image");
    let checked = ok(
        run(Command::new(python())
            .arg(repo_root().join("tests/deploy/check.py"))
            .arg("image")
            .arg(&a)
            .arg(&wasm)),
        "the image's check",
    );
    assert_eq!(checked, digest);
}

#[test]
fn the_dockerfiles_build_the_binary_and_the_module_the_repository_makes() {
    ok(
        run(Command::new(python())
            .arg(repo_root().join("tests/deploy/check.py"))
            .arg("dockerfiles")
            .arg(repo_root())),
        "the Dockerfiles' check",
    );
}
