//! The XCP-ng backend (`scripts/ci/start-xcpng.sh`) beyond `backends.rs`: `polyvisor check ras`
//! at every template level the front can advertise besides the default `versioning` (`basic` +
//! link clones, `basic`, `none`), and `polyvisor check cloudstack` with the cases that need
//! backend knowledge (a foreign running VM the provider must never reach, a template id that
//! does not exist). A missing contract file FAILS, naming the start script.

use polyvisor_test_support::backend::Backend;
use polyvisor_test_support::temp;
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_polyvisor");

/// One harness at a time on the shared stand-in.
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

fn check_ras_at(method: &str, link: bool, expect_level: &str) {
    let b = Backend::load("xcpng").unwrap_or_else(|e| panic!("{e}"));
    let dir = temp::dir(&format!("xcpng-ras-{method}-{link}"));
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
        .args(["ras", "--driver", "xcpng", "--template-method", method, "--link-clones", &link.to_string()]);
    let out = bounded(cmd, &format!("check ras at {method}/{link}"));
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
    let _one = ONE.lock().unwrap_or_else(|p| p.into_inner());
    check_ras_at("basic", true, "basic+link-clones");
    check_ras_at("basic", false, "basic");
    check_ras_at("none", false, "none");
}

#[test]
fn xcpng_passes_check_cloudstack_with_a_foreign_vm_and_a_bad_template() {
    let _one = ONE.lock().unwrap_or_else(|p| p.into_inner());
    let b = Backend::load("xcpng").unwrap_or_else(|e| panic!("{e}"));
    let dir = temp::dir("xcpng-cs-safety");
    let root = dir.path().join("ext");
    let log = dir.path().join("polyvisor.log");
    let out = Command::new(BIN)
        .args(["cloudstack", "install", "--name", "pvxcpsafe", "--driver", "xcpng", "--root"])
        .arg(&root)
        .env("POLYVISOR_LOG_FILE", &log)
        .output()
        .unwrap();
    assert!(out.status.success(), "install: {}", String::from_utf8_lossy(&out.stderr));
    let mut cmd = Command::new(BIN);
    cmd.args(["check", "cloudstack", "--timeout", "600", "--custom-actions", "auto", "--untagged-networks"])
        .args(["--template-id", &b.template_id, "--foreign-vm", "web-01"])
        .args(["--bad-template-id", "00000000-0000-4000-8000-000000000000"])
        .arg("--scan-file")
        .arg(&log);
    for (flag, map) in [
        ("--detail", &b.cloudstack.extension),
        ("--host-detail", &b.cloudstack.host),
        ("--vm-detail", &b.cloudstack.virtualmachine),
    ] {
        for kv in polyvisor_test_support::backend::detail_args(map) {
            cmd.arg(flag).arg(kv);
        }
    }
    cmd.arg("--").arg(root.join("pvxcpsafe/pvxcpsafe.sh")).env("POLYVISOR_LOG_FILE", &log);
    let out = bounded(cmd, "check cloudstack (safety cases)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains(" 0 failed"), "{stdout}");
    for case in ["safety/foreign-vm", "robustness/failed-create-cleans-up"] {
        assert!(stdout.lines().any(|l| l.starts_with("PASS") && l.contains(case)), "{case} ran:\n{stdout}");
    }
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    for s in b.secrets() {
        assert!(!stdout.contains(&s) && !logged.contains(&s), "a secret leaked");
    }
}
