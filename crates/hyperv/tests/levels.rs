//! `polyvisor check ras` at every RAS template level the driver advertises (flagged
//! templates, linked clones, clones from checkpoints: `none`, `basic` with full clones,
//! `basic` + `--link-clones true`, `versioning`), each on a private stand-in so the shared
//! backend is not disturbed.

mod common;

use common::StandIn;
use polyvisor_test_support::harness::RasCheck;
use serde_json::json;
use std::time::Duration;

fn check_ras_at(level: &str, link: bool) {
    let s = StandIn::start();
    let bin = polyvisor_test_support::bin::built("polyvisor");
    let mut settings = json!({"driver": "hyperv", "host": s.get("host"), "port": s.get("port"),
        "username": "polyvisor", "password": s.password, "ca_file": s.get("ca_file"),
        "vhd_path": s.get("vhd_path"), "vm_path": s.get("vm_path"), "switch": s.get("switch")});
    if link {
        settings["can_link_clones"] = json!(true);
    }
    let run = RasCheck {
        bin: &bin,
        driver: "hyperv",
        settings: settings.to_string(),
        guest: &s.get("source_guest"),
        ras_args: vec!["--template-method".into(), level.into(), "--link-clones".into(), link.to_string()],
        bound: Duration::from_secs(400),
    }
    .run();
    let want = if link { format!("{level}+link-clones") } else { level.to_string() };
    run.assert_passed(
        &format!("at level {level} (link clones {link})"),
        Some(&want),
        std::slice::from_ref(&s.password),
    );
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
