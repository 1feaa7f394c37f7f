//! `polyvisor check ras` at every template level the Azure driver advertises, each on a
//! private stand-in: `versioning` (also run on the shared backend by
//! `crates/cli/tests/backends.rs`) and `basic`. `basic` + link clones is clamped to `basic`
//! (Azure has no linked clones), which the provider's capabilities must say.
//! Needs the `polyvisor` binary (`cargo build -p polyvisor`; `cargo test --workspace` builds it).

mod common;

use common::StandIn;
use polyvisor_test_support::{bin, temp};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn check_ras(level: &str, link_clones: bool) -> String {
    let s = StandIn::start();
    let exe = bin::built("polyvisor");
    let dir = temp::dir(&format!("azure-ras-{level}"));
    let log = dir.path().join("provider.log");
    let mut settings = serde_json::Map::new();
    for k in s.settings().keys() {
        settings.insert(k.to_string(), Value::String(s.settings().str(k).unwrap_or_default()));
    }
    settings.insert("driver".into(), Value::String("azure".into()));
    let mut cmd = Command::new(&exe);
    cmd.args([
        "check",
        "ras",
        "--fast-poll",
        "--max-task-polls",
        "6000",
        "--request-timeout",
        "120",
        "--guest",
        "pv-src",
    ])
    .arg("--settings")
    .arg(Value::Object(settings).to_string())
    .arg("--")
    .arg(&exe)
    .arg("--log-file")
    .arg(&log)
    .args(["ras", "--driver", "azure", "--template-method", level]);
    if link_clones {
        cmd.arg("--link-clones");
    }
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > Duration::from_secs(400) {
            let _ = child.kill();
            panic!("check ras at {level} exceeded 400 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success() && stdout.contains(" 0 failed"), "check ras at {level}:\n{stdout}");
    assert!(stdout.contains("PASS  flows/CreateHost"), "{stdout}");
    assert!(
        !stdout.contains(common::SECRET) && !std::fs::read_to_string(&log).unwrap_or_default().contains(common::SECRET)
    );
    stdout
}

#[test]
fn check_ras_passes_at_basic() {
    let out = check_ras("basic", false);
    assert!(out.contains("at level basic"), "{out}");
}

#[test]
fn link_clones_are_not_advertised_and_clamp_to_basic() {
    let out = check_ras("basic", true);
    assert!(out.contains("at level basic;"), "{out}");
}
