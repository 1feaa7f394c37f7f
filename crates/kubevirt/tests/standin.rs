//! The KubeVirt stand-in's own trust: `testing/kubevirt/selftest.py` drives a private instance
//! with the official Kubernetes Python client and validates every answer against KubeVirt's
//! OpenAPI schema. This test runs it and fails when it fails (a missing Python package fails
//! with the install step, never a skip).

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn the_stand_in_passes_its_self_test() {
    let script = polyvisor_test_support::bin::repo_path("testing/kubevirt/selftest.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let t0 = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if t0.elapsed() > Duration::from_secs(300) {
            let _ = child.kill();
            panic!("the stand-in self-test exceeded 300 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "testing/kubevirt/selftest.py failed (install: python3 -m pip install -r scripts/ci/requirements.txt):\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("all passed"), "{stdout}");
}
