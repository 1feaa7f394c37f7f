//! `polyvisor cloudshell exec` answers parsed with Quali's `cloudshell-cp-core` models, and
//! Quali's own Deploy request fixtures (from cloudshell-cp-openstack's test suite, in
//! `testing/cloudshell/fixtures`) parsed by cp-core and deployed on sim.
//!
//! The checker (`testing/cloudshell/cpcore_check.py`) runs in the isolated venv that
//! `scripts/ci/venv-cloudshell-cpcore.sh` creates in the CI install step. In CI (`CI=true`)
//! a missing venv fails the test; elsewhere it is skipped with a message.

use polyvisor_test_support::bin::venv_bin;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_polyvisor");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn exec_answers_parse_with_cp_core_and_quali_deploy_fixtures_deploy_on_sim() {
    let Some(venv) = venv_bin("POLYVISOR_CPCORE_VENV", "venv-cloudshell-cpcore", "python") else { return };
    let python = venv.join("python");
    let work = tempfile::tempdir().unwrap();
    let root = repo();
    let out = Command::new(python)
        .arg(root.join("testing/cloudshell/cpcore_check.py"))
        .arg(BIN)
        .arg(root.join("crates/cloudshell/tests/fixtures"))
        .arg(root.join("testing/cloudshell/fixtures"))
        .arg(work.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    for want in [
        "quali-openstack-deploy-glance-image.json: deployed on sim",
        "PrepareSandboxInfra: 3 action result(s) parse",
        "GetVmDetails: parses as cp-core VmDetailsData",
        "ApplyConnectivityChanges remove-vlan.json: 1 action result(s) parse",
        "PASS",
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
    // Everything the checker deployed was deleted again.
    let list =
        Command::new(BIN).args(["sim", "--db"]).arg(work.path().join("sim.db")).args(["list", "--json"]).output();
    let list = String::from_utf8_lossy(&list.unwrap().stdout).into_owned();
    assert!(list.contains("tpl-debian12") && !list.contains("\"cs-"), "left behind:\n{list}");
}
