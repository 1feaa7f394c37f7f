//! End-to-end: `polyvisor check ras` against `polyvisor ras --driver libvirt` on a real
//! libvirtd + QEMU (TCG) with the tiny guest, at every template level the driver
//! advertises. Needs `scripts/ci/start-libvirt.sh` (CI runs it; `--all-features` enables
//! this file); fails, never skips, when libvirtd or the tiny guest is missing.
#![cfg(feature = "libvirt")]

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

fn pool_volumes() -> Vec<String> {
    virsh(&["pool-refresh", "polyvisor"]);
    let mut v: Vec<String> = virsh(&["vol-list", "polyvisor"])
        .1
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    v.sort();
    v
}

/// Defines (fresh) the source VM `name` on a copy of the tiny guest disk; returns its UUID.
fn define_source(name: &str) -> String {
    let (ok, ver) = virsh(&["version"]);
    assert!(ok, "libvirtd unreachable at {URI}: {ver}; {HINT}");
    let tiny = std::env::var("POLYVISOR_TINY_DIR").unwrap_or_else(|_| "/var/lib/polyvisor-tiny".into());
    let pooldir = std::env::var("POLYVISOR_POOL_DIR").unwrap_or_else(|_| "/var/lib/polyvisor-pool".into());
    let shared = std::env::var("POLYVISOR_SHARED_DIR")
        .unwrap_or_else(|_| format!("{}/../../../shared", env!("CARGO_MANIFEST_DIR")));
    assert!(std::path::Path::new(&format!("{tiny}/template.qcow2")).exists(), "tiny guest missing in {tiny}; {HINT}");
    if virsh(&["domuuid", name]).0 {
        virsh(&["destroy", name]);
        virsh(&["undefine", name, "--snapshots-metadata"]);
    }
    let disk = format!("{pooldir}/{name}.qcow2");
    std::fs::copy(format!("{tiny}/template.qcow2"), &disk).expect("copy tiny disk");
    let xml = std::fs::read_to_string(format!("{shared}/tools/tiny-guest/domain.xml.tmpl"))
        .expect("tiny-guest domain.xml.tmpl")
        .replace("@NAME@", name)
        .replace("@MEM_MIB@", "128")
        .replace("@VMLINUZ@", &format!("{tiny}/vmlinuz"))
        .replace("@INITRD@", &format!("{tiny}/initrd.img"))
        .replace("@CMDLINE_EXTRA@", "")
        .replace("@DISK@", &disk)
        .replace("@NETWORK@", "tg-net")
        .replace("@SERIAL_LOG@", &format!("/var/log/libvirt/qemu/{name}-serial.log"));
    let f = std::env::temp_dir().join(format!("{name}.xml"));
    std::fs::write(&f, xml).unwrap();
    assert!(virsh(&["define", f.to_str().unwrap()]).0, "define {name}");
    virsh(&["pool-refresh", "polyvisor"]);
    virsh(&["domuuid", name]).1.trim().to_string()
}

/// Removes the source VM and the snapshot bases polyvisor exported from it.
fn remove_source(name: &str, uuid: &str) {
    let prefix = format!("pvbase-{}-", &uuid[..8]);
    for v in pool_volumes().into_iter().filter(|v| v.starts_with(&prefix)) {
        virsh(&["vol-delete", &v, "--pool", "polyvisor"]);
    }
    virsh(&["destroy", name]);
    virsh(&["undefine", name, "--snapshots-metadata"]);
    let _ = std::fs::remove_file(format!("/var/lib/polyvisor-pool/{name}.qcow2"));
    virsh(&["pool-refresh", "polyvisor"]);
}

/// The tests compare the shared pool before/after, so they run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn check_ras(tag: &str, ras_flags: &[&str]) {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let name = format!("pvcli-{tag}");
    let uuid = define_source(&name);
    let before = pool_volumes();
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
        if t0.elapsed() > Duration::from_secs(240) {
            let _ = child.kill();
            panic!("check ras ({tag}) exceeded 240 s");
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
    let mut after = pool_volumes();
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
    let before = pool_volumes();
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
        .args(["check", "cloudstack", "--timeout", "60", "--json"])
        .arg(dir.join("cs.json"))
        .args([
            "--template-id",
            &uuid,
            "--bad-template-id",
            "00000000-0000-4000-8000-000000000000",
            "--custom-actions",
            "auto",
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
    assert_eq!(pool_volumes(), before, "check cloudstack left volumes behind");
    remove_source(name, &uuid);
}
