//! The stand-in earns trust in its own test: `testing/hyperv/test_standin.py` drives a
//! private stand-in with pywinrm (what CloudStack's built-in Hyper-V extension uses) and
//! pypsrp over HTTPS with NTLM and Basic: shell create/command/receive/signal/delete, exit
//! codes, CLIXML error records, SOAP faults, refused credentials; and a second stand-in in
//! Strict channel-binding mode that both clients pass and pywinrm without the binding does
//! not. Run here so CI runs it.

use std::process::Command;

#[test]
fn pywinrm_and_pypsrp_drive_the_standin() {
    let script = polyvisor_test_support::bin::repo_path("testing/hyperv/test_standin.py");
    let out = Command::new("python3")
        .arg(&script)
        .output()
        .expect("python3 testing/hyperv/test_standin.py (pip install -r testing/hyperv/requirements.txt)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the stand-in's self-trust test failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("11 passed, 0 failed"), "{stdout}");
}
