//! End-to-end: `polyvisor check ras` against `polyvisor ras --driver libvirt` on a real
//! libvirtd + QEMU (TCG) with the tiny guest, at every template level the driver
//! advertises. Needs `scripts/ci/start-libvirt.sh` (CI runs it; `--all-features` enables
//! this file); fails, never skips, when libvirtd or the tiny guest is missing.
#![cfg(feature = "libvirt")]

use polyvisor_test_support::tiny::{self, TinyGuest};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_polyvisor");
const URI: &str = "qemu:///system";
const HINT: &str = "run scripts/ci/start-libvirt.sh (as root) first";

fn virsh(args: &[&str]) -> (bool, String) {
    let o = Command::new("virsh")
        .arg("-c")
        .arg(URI)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("virsh missing ({e}); {HINT}"));
    (o.status.success(), String::from_utf8_lossy(&o.stdout).to_string())
}

/// Defines (fresh) the source VM `name` on a copy of the tiny guest disk; returns its UUID.
fn define_source(name: &str) -> String {
    let (ok, ver) = virsh(&["version"]);
    assert!(ok, "libvirtd unreachable at {URI}: {ver}; {HINT}");
    TinyGuest::from_env().require().define_copy(name).unwrap_or_else(|e| panic!("define {name}: {e}"))
}

/// Removes the source VM and the snapshot bases polyvisor exported from it.
fn remove_source(name: &str, uuid: &str) {
    tiny::remove_copy(name, uuid, &TinyGuest::from_env().pool_dir);
}

/// The tests compare the shared pool before/after, so they run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn check_ras(tag: &str, ras_flags: &[&str]) {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let name = format!("pvcli-{tag}");
    let uuid = define_source(&name);
    let before = tiny::pool_volumes();
    let dir = std::env::temp_dir().join(format!("pv-lv-ras-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("report.json");
    let settings = r#"{"driver":"libvirt","uri":"qemu:///system","pool":"polyvisor","shutdown_timeout_secs":"10"}"#;
    let t0 = Instant::now();
    let mut child = Command::new(BIN)
        .args([
            "check",
            "ras",
            "--fast-poll",
            // 100 ms polls: allow the seconds RAS allows at the advertised rate (busy hosts)
            "--max-task-polls",
            "6000",
            "--request-timeout",
            "60",
            "--guest",
            &uuid,
            "--settings",
            settings,
            "--json",
        ])
        .arg(&json)
        .arg("--")
        .args([BIN, "ras", "--driver", "libvirt"])
        .args(ras_flags)
        .arg("--log-file")
        .arg(dir.join("provider.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn polyvisor check ras");
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > Duration::from_secs(900) {
            let _ = child.kill();
            panic!("check ras ({tag}) exceeded 900 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("check ras {tag}: {:?}\n{}", t0.elapsed(), stdout.lines().last().unwrap_or(""));
    assert!(out.status.success(), "check ras {tag} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("0 failed"), "{stdout}");
    assert!(stdout.contains("PASS  flows/CreateHost"), "flows ran: {stdout}");
    remove_source(&name, &uuid);
    let mut after = tiny::pool_volumes();
    after.push(format!("{name}.qcow2"));
    after.sort();
    assert_eq!(after, before, "check ras {tag} left volumes behind");
}

#[test]
fn ras_versioning_on_real_qemu() {
    check_ras("versioning", &["--template-method", "versioning"]);
}

#[test]
fn ras_basic_link_clones_on_real_qemu() {
    check_ras("link", &["--template-method", "basic", "--link-clones"]);
}

#[test]
fn ras_basic_on_real_qemu() {
    check_ras("basic", &["--template-method", "basic"]);
}

/// `polyvisor check cloudstack -- <installed wrapper>` on a Flag template made from the
/// tiny guest: creates (linked clones that boot to an IPv4 lease), power, delete.
#[test]
fn cloudstack_wrapper_on_real_qemu() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let name = "pvcli-cs";
    let uuid = define_source(name);
    let (ok, _) = virsh(&[
        "metadata",
        name,
        "https://polyvisor.dev/xmlns/libvirt/1",
        "--key",
        "polyvisor",
        "--set",
        "<meta template=\"1\"/>",
        "--config",
    ]);
    assert!(ok, "flag the template");
    let before = tiny::pool_volumes();
    let dir = std::env::temp_dir().join(format!("pv-lv-cs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let root = dir.join("ext");
    let out = Command::new(BIN)
        .args(["cloudstack", "install", "--name", "pvlv", "--driver", "libvirt", "--root"])
        .arg(&root)
        .args(["--set", "uri=qemu:///system", "--set", "pool=polyvisor", "--set", "network=tg-net"])
        .env("POLYVISOR_LOG_FILE", dir.join("polyvisor.log"))
        .output()
        .expect("install");
    assert!(out.status.success(), "install: {}", String::from_utf8_lossy(&out.stderr));
    let t0 = Instant::now();
    let out = Command::new(BIN)
        .args(["check", "cloudstack", "--timeout", "600", "--json"])
        .arg(dir.join("cs.json"))
        .args([
            "--template-id",
            &uuid,
            "--bad-template-id",
            "00000000-0000-4000-8000-000000000000",
            "--custom-actions",
            "auto",
            "--untagged-networks",
            "--",
        ])
        .arg(root.join("pvlv/pvlv.sh"))
        .env("POLYVISOR_LOG_FILE", dir.join("polyvisor.log"))
        .stdin(Stdio::null())
        .output()
        .expect("check cloudstack");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("check cloudstack: {:?}\n{}", t0.elapsed(), stdout.lines().last().unwrap_or(""));
    assert!(out.status.success() && stdout.contains(" 0 failed"), "check cloudstack failed:\n{stdout}");
    assert!(stdout.contains("PASS  lifecycle/create"), "{stdout}");
    assert_eq!(tiny::pool_volumes(), before, "check cloudstack left volumes behind");
    remove_source(name, &uuid);
}
