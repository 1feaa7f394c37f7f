//! `polyvisor check ras` at every RAS template level the driver advertises (flagged
//! templates without clone-from-snapshot: `none` and `basic`; `versioning` is clamped to
//! `basic`, which crates/cli/tests/backends.rs also runs on the contract backend), each on a
//! private stand-in so the shared backend is not disturbed.

mod common;

use common::StandIn;
use polyvisor_test_support::harness::RasCheck;
use std::time::Duration;

fn check_ras_at(level: &str) {
    let s = StandIn::start();
    let bin = polyvisor_test_support::bin::built("polyvisor");
    let settings = serde_json::json!({"driver": "hpevme", "url": s.url, "username": "polyvisor",
        "password": s.password, "ca_file": s.ca_file});
    let run = RasCheck {
        bin: &bin,
        driver: "hpevme",
        settings: settings.to_string(),
        guest: &s.id("source_guest"),
        ras_args: vec!["--template-method".into(), level.into()],
        bound: Duration::from_secs(400),
    }
    .run();
    run.assert_passed(&format!("at level {level}"), Some(level), std::slice::from_ref(&s.password));
}

#[test]
fn check_ras_passes_at_level_none() {
    check_ras_at("none");
}

#[test]
fn check_ras_passes_at_level_basic() {
    check_ras_at("basic");
}
