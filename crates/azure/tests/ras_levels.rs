//! `polyvisor check ras` at every template level the Azure driver advertises, each on a
//! private stand-in: `versioning` (also run on the shared backend by
//! `crates/cli/tests/backends.rs`) and `basic`. `basic` + link clones is clamped to `basic`
//! (Azure has no linked clones), which the provider's capabilities must say.
//! Needs the `polyvisor` binary (`cargo build -p polyvisor`; `cargo test --workspace` builds it).

mod common;

use common::StandIn;
use polyvisor_test_support::bin;
use polyvisor_test_support::harness::RasCheck;
use serde_json::Value;
use std::time::Duration;

fn check_ras(level: &str, link_clones: bool) -> String {
    let s = StandIn::start();
    let exe = bin::built("polyvisor");
    let mut settings = serde_json::Map::new();
    for k in s.settings().keys() {
        settings.insert(k.to_string(), Value::String(s.settings().str(k).unwrap_or_default()));
    }
    settings.insert("driver".into(), Value::String("azure".into()));
    let mut ras_args = vec!["--template-method".to_string(), level.to_string()];
    if link_clones {
        ras_args.push("--link-clones".into());
    }
    let run = RasCheck {
        bin: &exe,
        driver: "azure",
        settings: Value::Object(settings).to_string(),
        guest: "pv-src",
        ras_args,
        bound: Duration::from_secs(400),
    }
    .run();
    run.assert_passed(&format!("at {level}"), None, &[common::SECRET.to_string()]);
    assert!(run.stdout.contains("PASS  flows/CreateHost"), "{}", run.stdout);
    run.stdout
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
