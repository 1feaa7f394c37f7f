//! `polyvisor check ras` on the XCP-ng backend (`scripts/ci/start-xcpng.sh`) at every template
//! level the front can advertise besides the default `versioning` (which
//! `backends.rs::xcpng_backend_passes_check_ras` runs): `basic` + link clones, `basic`, `none`.
//! A missing contract file FAILS, naming the start script.

use polyvisor_test_support::backend::Backend;
use polyvisor_test_support::temp;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_polyvisor");

fn check_ras_at(method: &str, link: bool, expect_level: &str) {
    let b = Backend::load("xcpng").unwrap_or_else(|e| panic!("{e}"));
    let dir = temp::dir(&format!("xcpng-ras-{method}-{link}"));
    let log = dir.path().join("provider.log");
    let mut child = Command::new(BIN)
        .args(["check", "ras", "--fast-poll", "--max-task-polls", "6000", "--request-timeout", "120"])
        .args(["--guest", &b.source_guest])
        .arg("--settings")
        .arg(b.settings_json())
        .arg("--")
        .arg(BIN)
        .arg("--log-file")
        .arg(&log)
        .args(["ras", "--driver", "xcpng", "--template-method", method, "--link-clones", &link.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("check ras");
    let t0 = Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if t0.elapsed() > Duration::from_secs(600) {
            let _ = child.kill();
            panic!("check ras at {method}/{link} exceeded 600 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains(" 0 failed"), "check ras at {method}/{link}:\n{stdout}");
    assert!(stdout.contains(&format!("at level {expect_level};")), "{stdout}");
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    for s in b.secrets() {
        assert!(!stdout.contains(&s) && !logged.contains(&s), "a secret leaked");
    }
}

#[test]
fn xcpng_passes_check_ras_at_every_other_template_level() {
    check_ras_at("basic", true, "basic+link-clones");
    check_ras_at("basic", false, "basic");
    check_ras_at("none", false, "none");
}
