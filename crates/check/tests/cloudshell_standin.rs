//! The CloudShell API stand-in `check cloudshell` serves, proved with Quali's real
//! `cloudshell-automation-api` client (testing/cloudshell/test_standin.py). Python with the
//! pinned Quali libraries comes from the CI install step (`scripts/ci/requirements.txt`);
//! `POLYVISOR_TEST_PYTHON` picks another interpreter (e.g. a venv's).

use std::process::Command;

#[test]
fn standin_answers_the_real_automation_api_client() {
    let python = std::env::var("POLYVISOR_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testing/cloudshell");
    let out = Command::new(python).args(["-m", "unittest", "-v", "test_standin"]).current_dir(dir).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("Ran 2 tests") && err.contains("OK"), "{err}");
}
