//! `polyvisor check ras` at every RAS template level the OpenStack driver advertises, on the
//! real loopback OpenStack of the backend contract (`scripts/ci/start-openstack.sh`):
//! flagged templates with clone-from-snapshot (Glance images) and no linked clones, so the
//! levels are `versioning` (run by `crates/cli/tests/backends.rs`), `basic` and `none`; and
//! `basic` + link clones, which the front clamps to `basic` (Nova has no linked clones).
//! Needs the `polyvisor` binary (`cargo build -p polyvisor --all-features`; `cargo test
//! --workspace` builds it). A missing contract fails (naming the script); nothing is skipped.

use polyvisor_test_support::backend::Backend;
use polyvisor_test_support::{bin, temp};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One harness at a time on the shared cloud (a single fake compute host).
static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn check_ras(level: &str, link_clones: bool) -> String {
    let _one = ONE.lock().unwrap_or_else(|p| p.into_inner());
    let b = Backend::load("openstack").unwrap_or_else(|e| panic!("{e}"));
    let exe = bin::built("polyvisor");
    let dir = temp::dir(&format!("openstack-ras-{level}"));
    let log = dir.path().join("provider.log");
    let out_file = dir.path().join("stdout.txt");
    let mut cmd = Command::new(&exe);
    cmd.args(["check", "ras", "--fast-poll", "--max-task-polls", "6000", "--request-timeout", "120"])
        .args(["--guest", &b.source_guest])
        .arg("--settings")
        .arg(b.settings_json())
        .arg("--")
        .arg(&exe)
        .arg("--log-file")
        .arg(&log)
        .args(["ras", "--driver", "openstack", "--template-method", level]);
    if link_clones {
        cmd.arg("--link-clones");
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_file).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > Duration::from_secs(600) {
            let _ = child.kill();
            panic!("check ras at {level} exceeded 600 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let ok = child.wait().unwrap().success();
    let stdout = std::fs::read_to_string(&out_file).unwrap_or_default();
    assert!(ok && stdout.contains(" 0 failed"), "check ras at {level} on driver=openstack:\n{stdout}");
    assert!(stdout.contains(&format!("at level {level}")), "the level was {level}:\n{stdout}");
    let provider_log = std::fs::read_to_string(&log).unwrap_or_default();
    for secret in b.secrets() {
        assert!(!stdout.contains(&secret) && !provider_log.contains(&secret), "a secret leaked");
    }
    stdout
}

#[test]
fn check_ras_passes_at_level_basic() {
    let out = check_ras("basic", false);
    assert!(out.contains("PASS  flows/CreateHost"), "{out}");
}

#[test]
fn check_ras_passes_at_level_none() {
    check_ras("none", false);
}

#[test]
fn link_clones_are_not_advertised_and_clamp_to_basic() {
    let out = check_ras("basic", true);
    assert!(out.contains("at level basic;"), "{out}");
}
