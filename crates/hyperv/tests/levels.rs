//! `polyvisor check ras` at every RAS template level the driver advertises (flagged
//! templates, linked clones, clones from checkpoints: `none`, `basic` with full clones,
//! `basic` + `--link-clones true`, `versioning`), each on a private stand-in so the shared
//! backend is not disturbed.

mod common;

use common::StandIn;
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn check_ras_at(level: &str, link: bool) {
    let s = StandIn::start();
    let bin = polyvisor_test_support::bin::built("polyvisor");
    let dir = tempfile::tempdir().unwrap();
    let mut settings = json!({"driver": "hyperv", "host": s.get("host"), "port": s.get("port"),
        "username": "polyvisor", "password": s.password, "ca_file": s.get("ca_file"),
        "vhd_path": s.get("vhd_path"), "vm_path": s.get("vm_path"), "switch": s.get("switch")});
    if link {
        settings["can_link_clones"] = json!(true);
    }
    let mut child = Command::new(&bin)
        .args(["check", "ras", "--fast-poll", "--max-task-polls", "6000", "--request-timeout", "120", "--guest"])
        .arg(s.get("source_guest"))
        .arg("--settings")
        .arg(settings.to_string())
        .arg("--")
        .arg(&bin)
        .arg("--log-file")
        .arg(dir.path().join("provider.log"))
        .args(["ras", "--driver", "hyperv", "--template-method", level, "--link-clones", &link.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > Duration::from_secs(400) {
            let _ = child.kill();
            panic!("check ras at {level} overran");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains(" 0 failed"), "check ras at level {level}:\n{text}");
    assert!(text.contains(&format!("at level {level}")), "the level was {level}:\n{text}");
    let log = std::fs::read_to_string(dir.path().join("provider.log")).unwrap_or_default();
    assert!(!text.contains(&s.password) && !log.contains(&s.password), "the password leaked");
}

#[test]
fn check_ras_passes_at_level_none() {
    check_ras_at("none", false);
}

#[test]
fn check_ras_passes_at_level_basic_with_full_clones() {
    check_ras_at("basic", false);
}

#[test]
fn check_ras_passes_at_level_basic_with_link_clones() {
    check_ras_at("basic", true);
}

#[test]
fn check_ras_passes_at_level_versioning() {
    check_ras_at("versioning", false);
}
