//! The KubeVirt backend (`scripts/ci/start-kubevirt.sh`, kmock) beyond `backends.rs`:
//! `polyvisor check ras` at every other template level the front can be asked for. KubeVirt
//! advertises `versioning` (run by `backends.rs`) and `basic`; `none` must pass too; `basic`
//! with link clones is clamped to `basic` (KubeVirt clones are full `VirtualMachineClone`
//! copies, `linked_clones: false`), which the provider's capabilities must say. Every object
//! the harness makes the driver send is validated against the KubeVirt schema by the emulator:
//! a violation fails here. A missing contract file FAILS, naming the start script.

use polyvisor_test_support::backend::{run_dir, Backend};
use polyvisor_test_support::temp;
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_polyvisor");

/// One harness at a time on the shared emulator.
static ONE: Mutex<()> = Mutex::new(());

fn bounded(mut cmd: Command, what: &str) -> Output {
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect(what);
    let t0 = Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if t0.elapsed() > Duration::from_secs(900) {
            let _ = child.kill();
            panic!("{what} exceeded 900 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().unwrap()
}

fn violations() -> usize {
    std::fs::read_to_string(run_dir().join("kubevirt/violations.jsonl")).map(|t| t.lines().count()).unwrap_or(0)
}

fn check_ras_at(method: &str, link: bool, expect_level: &str) {
    let b = Backend::load("kubevirt").unwrap_or_else(|e| panic!("{e}"));
    let before = violations();
    let dir = temp::dir(&format!("kubevirt-ras-{method}-{link}"));
    let log = dir.path().join("provider.log");
    let mut cmd = Command::new(BIN);
    cmd.args(["check", "ras", "--fast-poll", "--max-task-polls", "6000", "--request-timeout", "120"])
        .args(["--guest", &b.source_guest])
        .arg("--settings")
        .arg(b.settings_json())
        .arg("--")
        .arg(BIN)
        .arg("--log-file")
        .arg(&log)
        .args(["ras", "--driver", "kubevirt", "--template-method", method, "--link-clones", &link.to_string()]);
    let out = bounded(cmd, &format!("check ras at {method}/{link}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains(" 0 failed"), "check ras at {method}/{link}:\n{stdout}");
    assert!(stdout.contains(&format!("at level {expect_level};")), "{stdout}");
    assert_eq!(violations(), before, "objects the KubeVirt schema rejects were sent at {method}/{link}");
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    for s in b.secrets() {
        assert!(!stdout.contains(&s) && !logged.contains(&s), "a secret leaked");
    }
}

#[test]
fn kubevirt_passes_check_ras_at_every_other_template_level() {
    let _one = ONE.lock().unwrap_or_else(|p| p.into_inner());
    check_ras_at("basic", false, "basic");
    check_ras_at("basic", true, "basic");
    check_ras_at("none", false, "none");
}
