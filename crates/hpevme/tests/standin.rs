//! The stand-in's own trust tests (testing/hpevme/test_standin.py: HPE's morpheus-python-sdk
//! scenario and its catalog scenario (clouds, instance types, layouts, plans, networks,
//! images, add_instance), requests the OpenAPI description rejects, response validation), run under
//! `cargo test` so CI runs them; their failure fails this test.

use std::process::Command;

#[test]
fn the_stand_in_passes_its_own_tests_with_hpes_sdk() {
    let root = polyvisor_test_support::bin::repo_root();
    let out = Command::new("python3")
        .args(["-m", "unittest", "-v", "testing/hpevme/test_standin.py"])
        .current_dir(&root)
        .output()
        .expect("python3 (pip install -r scripts/ci/requirements.txt)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "testing/hpevme/test_standin.py failed:\n{text}");
    assert!(text.contains("Ran 4 tests") && text.contains("OK"), "{text}");
}
