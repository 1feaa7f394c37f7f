//! The KubeVirt backend (`scripts/ci/start-kubevirt.sh`, kmock) beyond `backends.rs`:
//! `polyvisor check ras` at every other template level the front can be asked for. KubeVirt
//! advertises `versioning` (run by `backends.rs`) and `basic`; `none` must pass too; `basic`
//! with link clones is clamped to `basic` (KubeVirt clones are full `VirtualMachineClone`
//! copies, `linked_clones: false`), which the provider's capabilities must say. Every object
//! the harness makes the driver send is validated against the KubeVirt schema by the emulator:
//! a violation fails here. A missing contract file FAILS, naming the start script.

use polyvisor_test_support::backend::{run_dir, Backend};
use polyvisor_test_support::harness::RasCheck;
use std::path::Path;
use std::sync::Mutex;

const BIN: &str = env!("CARGO_BIN_EXE_polyvisor");

/// One harness at a time on the shared emulator.
static ONE: Mutex<()> = Mutex::new(());

fn violations() -> usize {
    std::fs::read_to_string(run_dir().join("kubevirt/violations.jsonl")).map(|t| t.lines().count()).unwrap_or(0)
}

fn check_ras_at(method: &str, link: bool, expect_level: &str) {
    let b = Backend::load("kubevirt").unwrap_or_else(|e| panic!("{e}"));
    let before = violations();
    let run = RasCheck::for_backend(Path::new(BIN), &b, method, link).run();
    run.assert_passed(&format!("at {method}/{link}"), Some(expect_level), &b.secrets());
    assert_eq!(violations(), before, "objects the KubeVirt schema rejects were sent at {method}/{link}");
}

#[test]
fn kubevirt_passes_check_ras_at_every_other_template_level() {
    let _one = ONE.lock().unwrap_or_else(|p| p.into_inner());
    check_ras_at("basic", false, "basic");
    check_ras_at("basic", true, "basic");
    check_ras_at("none", false, "none");
}
