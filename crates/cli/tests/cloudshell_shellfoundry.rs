//! The packages import the way shellfoundry packages do: Quali's `shellfoundry pack`, run on
//! the folder `polyvisor cloudshell package` wrote (L2 and L3, two shell names), builds a zip
//! with the same files, byte for byte, as the zip polyvisor built
//! (`testing/cloudshell/pack_check.py`; directory entries, which only shellfoundry writes,
//! are not compared).
//!
//! shellfoundry runs in the isolated venv that `scripts/ci/venv-shellfoundry.sh` creates in
//! the CI install step. In CI (`CI=true`) a missing venv fails the test; elsewhere it is
//! skipped with a message.

use polyvisor_test_support::bin::venv_bin;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_polyvisor");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn shellfoundry_pack_builds_the_same_package_as_polyvisor() {
    let Some(bin) = venv_bin("POLYVISOR_SHELLFOUNDRY_VENV", "venv-shellfoundry", "shellfoundry") else { return };
    for (networking, name) in [("L2", "Polyvisor Cloud Provider"), ("L3", "Acme L3 Cloud")] {
        let work = tempfile::tempdir().unwrap();
        let pkg = work.path().join("pkg");
        let out = Command::new(BIN)
            .args(["cloudshell", "package", "--networking", networking, "--name", name, "--out"])
            .arg(&pkg)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        // shellfoundry resolves `python` and friends from PATH; its own venv comes first.
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        let out = Command::new(bin.join("python"))
            .arg(repo().join("testing/cloudshell/pack_check.py"))
            .arg(bin.join("shellfoundry"))
            .arg(&pkg)
            .arg(work.path())
            .env("PATH", path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{networking}: {text}\n{}", String::from_utf8_lossy(&out.stderr));
        for want in [
            "Shell package was successfully created",
            "/shell-definition.yaml",
            "/TOSCA-Metadata/TOSCA.meta",
            ".zip/drivermetadata.xml",
            ".zip/driver.py",
            ".zip/polyvisor-clone-from-template.yaml",
            "PASS",
        ] {
            assert!(text.contains(want), "{networking}: {want} missing:\n{text}");
        }
    }
}
