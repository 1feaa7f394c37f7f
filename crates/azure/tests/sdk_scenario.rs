//! The stand-in earns trust from Microsoft's own Python SDK: `testing/azure/tests/sdk_scenario.py`
//! (azure-identity + azure-mgmt-compute + azure-mgmt-network, pinned in
//! `testing/azure/requirements.txt`) signs in, copies a disk, makes an OS disk from a gallery
//! image version, creates a NIC and a VM, deallocates, starts, powers off, snapshots and
//! deletes, with the SDK's own long-running-operation pollers.
//! A missing SDK fails with the install command; nothing is skipped.

mod common;

use common::StandIn;
use polyvisor_test_support::bin;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn microsoft_python_sdk_drives_the_stand_in_through_a_vm_lifecycle() {
    let probe = Command::new("python3")
        .args(["-c", "import azure.identity, azure.mgmt.compute, azure.mgmt.network"])
        .output()
        .expect("python3");
    assert!(
        probe.status.success(),
        "Microsoft's Azure SDK for Python is missing: python3 -m pip install -r scripts/ci/requirements.txt\n{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let s = StandIn::start();
    let t0 = Instant::now();
    let out = Command::new("timeout")
        .arg("300")
        .arg("python3")
        .arg(bin::repo_path("testing/azure/tests/sdk_scenario.py"))
        .arg(&s.url)
        .arg(&s.ca)
        .arg(s.config_path())
        .args(["g1", "img-spec"])
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("\"ok\": true"),
        "the SDK scenario failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(t0.elapsed() < Duration::from_secs(300));
    eprintln!("sdk scenario: {stdout} in {:?}", t0.elapsed());
}
