//! The XAPI stand-in earns trust: the same scenario runs through the official Python binding
//! (PyPI `XenAPI`, XML-RPC) and Vates' JavaScript client (npm `xen-api`, JSON-RPC), and every
//! call and every returned record is checked against XAPI's own `xenapi.json`
//! (testing/xcpng/selftest/schema_check.py). The checker itself is proven to catch an unknown
//! message, a wrong arity and a missing field. A missing client FAILS, naming the install step.

mod common;

use std::process::Command;

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{what} failed:\n{text}");
    text
}

#[test]
fn the_checker_catches_unknown_messages_wrong_arity_and_missing_fields() {
    let checker = polyvisor_test_support::bin::repo_path("testing/xcpng/selftest/schema_check.py");
    let text = run(Command::new("python3").arg(&checker).arg("--self-test"), "schema_check --self-test");
    assert!(text.contains("unknown message, wrong arity, missing field"), "{text}");
}

#[test]
fn both_official_clients_drive_the_standin_within_xenapi_json() {
    let dir = polyvisor_test_support::temp::dir("xapi-selftrust");
    let root = polyvisor_test_support::bin::repo_path("testing/xcpng");
    let ok = Command::new("python3").args(["-c", "import XenAPI"]).status().is_ok_and(|s| s.success());
    assert!(ok, "PyPI XenAPI is missing: python3 -m pip install -r scripts/ci/requirements.txt");
    assert!(
        root.join("node_modules/xen-api").is_dir(),
        "npm xen-api is missing: bash scripts/ci/start-xcpng.sh (runs npm ci --prefix testing/xcpng)"
    );
    let standin = common::StandIn::start();
    let py = dir.path().join("py.json");
    let js = dir.path().join("js.json");
    let t = run(
        Command::new("python3")
            .arg(root.join("selftest/scenario_py.py"))
            .arg(&standin.url)
            .arg(&standin.password)
            .arg(&py),
        "scenario through XenAPI.py",
    );
    assert!(t.contains("scenario_py:"), "{t}");
    let t = run(
        Command::new("node")
            .arg(root.join("selftest/scenario_node.mjs"))
            .arg(&standin.url)
            .arg(&standin.password)
            .arg(&js)
            .env("NODE_NO_WARNINGS", "1"),
        "scenario through npm xen-api",
    );
    assert!(t.contains("scenario_node:"), "{t}");
    let t = run(Command::new("python3").arg(root.join("selftest/schema_check.py")).arg(&py).arg(&js), "schema check");
    assert!(t.contains("all conform"), "{t}");
}
