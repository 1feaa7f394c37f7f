//! The platform harnesses (`polyvisor check ras|cloudstack`) against the real binary on a
//! sim database in a temp dir. Needs the built binary (`cargo build -p polyvisor`, which
//! CI does before the tests); fails with that instruction when it is missing.

use std::path::PathBuf;
use std::process::Command;

fn binary() -> PathBuf {
    // target/<profile>/deps/<this test> → target/<profile>/polyvisor
    let exe = std::env::current_exe().expect("current exe");
    let bin = exe.parent().and_then(|d| d.parent()).map(|d| d.join("polyvisor")).expect("target dir");
    assert!(
        bin.is_file(),
        "{} is missing: build it first with `cargo build -p polyvisor` (scripts/test-all.sh does)",
        bin.display()
    );
    bin
}

fn run_check(args: &[&str]) -> String {
    let bin = binary();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(&bin)
        .arg("check")
        .args(args)
        .arg("--")
        .arg(&bin)
        .arg(args[0])
        .env("POLYVISOR_SIM_DB", dir.path().join("sim.db"))
        .env("POLYVISOR_SIM_TASK_MS", "0")
        .env("POLYVISOR_SIM_BOOT_MS", "0")
        .env_remove("POLYVISOR_LOG_FILE")
        .output()
        .expect("run polyvisor check");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "polyvisor check {} failed on sim:\n{text}", args[0]);
    text
}

#[test]
fn ras_harness_passes_on_sim() {
    let text = run_check(&["ras", "--fast-poll", "--quiet"]);
    assert!(text.contains(" 0 failed"), "{text}");
}

#[test]
fn cloudstack_harness_passes_on_sim() {
    let text = run_check(&["cloudstack", "--template-id", "9000", "--bad-template-id", "424242"]);
    assert!(text.contains(" 0 failed"), "{text}");
}
