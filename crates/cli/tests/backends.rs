//! The backend contract end to end: for every backend in the fixed list
//! (`polyvisor_test_support::backend::ALL`), read `/run/polyvisor-test/<backend>.json`
//! (written by `scripts/ci/start-<backend>.sh`) and run both harnesses against it:
//! `polyvisor check ras -- polyvisor ras --driver <driver>` on its `source_guest`, and
//! `polyvisor check cloudstack -- <installed wrapper>` with its CloudStack details and
//! `template_id`. A listed backend whose file is missing FAILS (the message names the start
//! script); nothing is skipped. The libvirt backend needs `--features libvirt`.

use polyvisor_test_support::backend::{detail_args, Backend, ALL};
use polyvisor_test_support::harness::run_bounded;
use polyvisor_test_support::temp;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_polyvisor");

/// One harness at a time per backend (they share its guests and, for libvirt, two CPU cores).
static PROXMOX: Mutex<()> = Mutex::new(());
#[cfg(feature = "libvirt")]
static LIBVIRT: Mutex<()> = Mutex::new(());
static HPEVME: Mutex<()> = Mutex::new(());
static AZURE: Mutex<()> = Mutex::new(());
static XCPNG: Mutex<()> = Mutex::new(());
static OPENSTACK: Mutex<()> = Mutex::new(());
static KUBEVIRT: Mutex<()> = Mutex::new(());
static HYPERV: Mutex<()> = Mutex::new(());

fn load(name: &str) -> Backend {
    Backend::load(name).unwrap_or_else(|e| panic!("{e}"))
}

fn failed_cases(report: &Path) -> Vec<Value> {
    let v: Value = std::fs::read(report).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or(Value::Null);
    v["cases"].as_array().map(|a| a.iter().filter(|c| c["outcome"] == "fail").cloned().collect()).unwrap_or_default()
}

fn assert_no_secrets(b: &Backend, texts: &[&str]) {
    for s in b.secrets() {
        for t in texts {
            assert!(!t.contains(&s), "{}: a secret from the contract leaked into output or logs", b.name);
        }
    }
}

fn check_ras(b: &Backend) {
    let dir = temp::dir(&format!("backend-ras-{}", b.name));
    let report = dir.path().join("ras.json");
    let log = dir.path().join("provider.log");
    let mut cmd = Command::new(BIN);
    // --fast-poll polls every 100 ms; the cap in polls is raised so that the wait in seconds
    // stays what RAS allows at the advertised rate (long libvirt jobs on a busy host)
    cmd.args(["check", "ras", "--fast-poll", "--max-task-polls", "6000", "--request-timeout", "120"])
        .args(["--guest", &b.source_guest])
        .arg("--settings")
        .arg(b.settings_json())
        .arg("--json")
        .arg(&report)
        .arg("--")
        .arg(BIN)
        .arg("--log-file")
        .arg(&log)
        .args(["ras", "--driver", b.driver().expect("driver")]);
    let out = run_bounded(cmd, Duration::from_secs(600), &format!("check ras on {}", b.name));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(" 0 failed"),
        "check ras on backend {} failed:\n{stdout}\nfailed: {:#?}",
        b.name,
        failed_cases(&report)
    );
    assert!(stdout.contains("PASS  flows/CreateHost"), "{}: the RAS flows ran:\n{stdout}", b.name);
    assert_no_secrets(b, &[&stdout, &std::fs::read_to_string(&log).unwrap_or_default()]);
}

fn check_cloudstack(b: &Backend) {
    let dir = temp::dir(&format!("backend-cs-{}", b.name));
    let root = dir.path().join("ext");
    let log = dir.path().join("polyvisor.log");
    let name = format!("pvbk{}", b.name);
    let out = Command::new(BIN)
        .args(["cloudstack", "install", "--name", &name, "--driver", b.driver().expect("driver"), "--root"])
        .arg(&root)
        .env("POLYVISOR_LOG_FILE", &log)
        .output()
        .expect("cloudstack install");
    assert!(out.status.success(), "install: {}", String::from_utf8_lossy(&out.stderr));
    let report = dir.path().join("cs.json");
    let mut cmd = Command::new(BIN);
    cmd.args(["check", "cloudstack", "--timeout", "600", "--custom-actions", "auto", "--template-id", &b.template_id])
        .arg("--json")
        .arg(&report)
        .arg("--scan-file")
        .arg(&log);
    for (flag, map) in [
        ("--detail", &b.cloudstack.extension),
        ("--host-detail", &b.cloudstack.host),
        ("--vm-detail", &b.cloudstack.virtualmachine),
    ] {
        for kv in detail_args(map) {
            cmd.arg(flag).arg(kv);
        }
    }
    if b.cloudstack.untagged_networks {
        cmd.arg("--untagged-networks");
    }
    cmd.arg("--").arg(root.join(format!("{name}/{name}.sh"))).env("POLYVISOR_LOG_FILE", &log);
    let out = run_bounded(cmd, Duration::from_secs(1500), &format!("check cloudstack on {}", b.name));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(" 0 failed"),
        "check cloudstack on backend {} failed:\n{stdout}\nfailed: {:#?}",
        b.name,
        failed_cases(&report)
    );
    assert!(stdout.contains("PASS  lifecycle/create"), "{}: create ran:\n{stdout}", b.name);
    assert_no_secrets(b, &[&stdout, &std::fs::read_to_string(&log).unwrap_or_default()]);
}

#[test]
fn every_listed_backend_has_a_start_script() {
    let ci = polyvisor_test_support::bin::repo_path("scripts/ci");
    for name in ALL {
        assert!(ci.join(format!("start-{name}.sh")).is_file(), "scripts/ci/start-{name}.sh is missing");
    }
}

#[test]
fn proxmox_backend_passes_check_ras() {
    let _one = PROXMOX.lock().unwrap_or_else(|p| p.into_inner());
    check_ras(&load("proxmox"));
}

#[test]
fn proxmox_backend_passes_check_cloudstack() {
    let _one = PROXMOX.lock().unwrap_or_else(|p| p.into_inner());
    check_cloudstack(&load("proxmox"));
}

#[cfg(feature = "libvirt")]
#[test]
fn libvirt_backend_passes_check_ras() {
    let _one = LIBVIRT.lock().unwrap_or_else(|p| p.into_inner());
    check_ras(&load("libvirt"));
}

#[cfg(feature = "libvirt")]
#[test]
fn libvirt_backend_passes_check_cloudstack() {
    let _one = LIBVIRT.lock().unwrap_or_else(|p| p.into_inner());
    check_cloudstack(&load("libvirt"));
}

#[test]
fn hpevme_backend_passes_check_ras() {
    let _one = HPEVME.lock().unwrap_or_else(|p| p.into_inner());
    check_ras(&load("hpevme"));
}

#[test]
fn hpevme_backend_passes_check_cloudstack() {
    let _one = HPEVME.lock().unwrap_or_else(|p| p.into_inner());
    check_cloudstack(&load("hpevme"));
}

#[test]
fn azure_backend_passes_check_ras() {
    let _one = AZURE.lock().unwrap_or_else(|p| p.into_inner());
    check_ras(&load("azure"));
}

#[test]
fn azure_backend_passes_check_cloudstack() {
    let _one = AZURE.lock().unwrap_or_else(|p| p.into_inner());
    check_cloudstack(&load("azure"));
}

#[test]
fn xcpng_backend_passes_check_ras() {
    let _one = XCPNG.lock().unwrap_or_else(|p| p.into_inner());
    check_ras(&load("xcpng"));
}

#[test]
fn xcpng_backend_passes_check_cloudstack() {
    let _one = XCPNG.lock().unwrap_or_else(|p| p.into_inner());
    check_cloudstack(&load("xcpng"));
}

#[test]
fn openstack_backend_passes_check_ras() {
    let _one = OPENSTACK.lock().unwrap_or_else(|p| p.into_inner());
    let b = load("openstack");
    let before = openstack_official_view(&b);
    check_ras(&b);
    assert_eq!(openstack_official_view(&b), before, "official client: check ras left a server, image or port");
}

#[test]
fn openstack_backend_passes_check_cloudstack() {
    let _one = OPENSTACK.lock().unwrap_or_else(|p| p.into_inner());
    let b = load("openstack");
    let before = openstack_official_view(&b);
    check_cloudstack(&b);
    assert_eq!(openstack_official_view(&b), before, "official client: check cloudstack left a server, image or port");
}

/// The official OpenStack client's (Debian python3-openstackclient) sorted IDs of
/// `server list`, `image list` and `port list` with the contract's credentials.
fn openstack_official_view(b: &Backend) -> Vec<Vec<String>> {
    ["server", "image", "port"].iter().map(|what| b.openstack_ids(what)).collect()
}

#[test]
fn kubevirt_backend_passes_check_ras() {
    let _one = KUBEVIRT.lock().unwrap_or_else(|p| p.into_inner());
    check_ras(&load("kubevirt"));
}

#[test]
fn kubevirt_backend_passes_check_cloudstack() {
    let _one = KUBEVIRT.lock().unwrap_or_else(|p| p.into_inner());
    check_cloudstack(&load("kubevirt"));
}

#[test]
fn hyperv_backend_passes_check_ras() {
    let _one = HYPERV.lock().unwrap_or_else(|p| p.into_inner());
    check_ras(&load("hyperv"));
}

#[test]
fn hyperv_backend_passes_check_cloudstack() {
    let _one = HYPERV.lock().unwrap_or_else(|p| p.into_inner());
    check_cloudstack(&load("hyperv"));
}
