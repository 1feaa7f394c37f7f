//! `polyvisor check cloudstack` through the real CloudStack front with creates from the
//! provisioning catalog (`POST /api/instances`): the catalog settings as extension details,
//! the CloudStack template id a virtual image, on a private stand-in (the contract backend in
//! crates/cli/tests/backends.rs runs the clone mode).

mod common;

use common::StandIn;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn check_cloudstack_passes_with_creates_from_the_catalog() {
    let s = StandIn::start();
    let bin = polyvisor_test_support::bin::built("polyvisor");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ext");
    let log = dir.path().join("polyvisor.log");
    let name = "pvvmecat";
    let out = Command::new(&bin)
        .args(["cloudstack", "install", "--name", name, "--driver", "hpevme", "--root"])
        .arg(&root)
        .env("POLYVISOR_LOG_FILE", &log)
        .output()
        .unwrap();
    assert!(out.status.success(), "install: {}", String::from_utf8_lossy(&out.stderr));
    let mut cmd = Command::new(&bin);
    cmd.args(["check", "cloudstack", "--timeout", "600", "--custom-actions", "auto", "--untagged-networks"])
        .args(["--template-id", "80", "--scan-file"])
        .arg(&log);
    for kv in [
        format!("ca_file={}", s.ca_file),
        "group=polyvisor-ci".into(),
        "cloud=vme-cluster".into(),
        "instance_type=HPE VM".into(),
        "layout=Single HPE VM".into(),
    ] {
        cmd.arg("--detail").arg(kv);
    }
    for kv in [format!("url={}", s.url), format!("access_token={}", s.token)] {
        cmd.arg("--host-detail").arg(kv);
    }
    cmd.arg("--").arg(root.join(format!("{name}/{name}.sh"))).env("POLYVISOR_LOG_FILE", &log);
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > Duration::from_secs(900) {
            let _ = child.kill();
            panic!("check cloudstack overran");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains(" 0 failed"), "check cloudstack (catalog):\n{text}");
    assert!(text.contains("PASS  lifecycle/create"), "create ran:\n{text}");
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!text.contains(&s.token) && !log_text.contains(&s.token), "the token leaked");
    let posts = tokio::runtime::Runtime::new().unwrap().block_on(async {
        assert_eq!(s.violations().await, Vec::<serde_json::Value>::new());
        s.requests().await.into_iter().filter(|(m, p)| m == "POST" && p == "/api/instances").count()
    });
    assert!(posts >= 1, "the creates went through POST /api/instances");
}
