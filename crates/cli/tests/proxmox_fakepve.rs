//! End-to-end: `polyvisor check ras -- polyvisor ras --driver proxmox …` against the real
//! fakepve simulator (PyPI `fakepve[crypto]`, started here through
//! scripts/ci/fakepve-launcher.py on its own loopback address and a free port), at every
//! level the Proxmox driver advertises, with both auth paths and TLS modes.
//! Fails (never skips) when fakepve is not installed.

use polyvisor_test_support::fakepve::{FakePve, TOKEN_SECRET as SECRET};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_polyvisor");

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pv-pve-e2e-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// The shared launcher (`polyvisor_test_support::fakepve`: own loopback address, free
/// port, certificate in a temp dir) with this suite's guests: a flag-template source 9000
/// and a running VM 100 polyvisor did not create.
fn start_fakepve() -> FakePve {
    FakePve::start_with(json!({"guests": [
        {"vmid": 9000, "name": "tpl-debian", "status": "stopped",
         "config": {"cores": "2", "memory": "2048", "scsi0": "local-lvm:vm-9000-disk-0,size=8G", "net0": "virtio=BC:24:11:00:90:00,bridge=vmbr0", "ostype": "l26", "agent": "1"}},
        {"vmid": 100, "name": "web-01", "status": "running",
         "config": {"scsi0": "local-lvm:vm-100-disk-0,size=8G", "net0": "virtio=BC:24:11:00:01:00,bridge=vmbr0", "ostype": "l26", "agent": "1"},
         "agent": {"interfaces": [{"name": "eth0", "hardware-address": "bc:24:11:00:01:00", "ip-addresses": [{"ip-address": "192.0.2.50", "ip-address-type": "ipv4", "prefix": 24}]}]}}
    ]}))
}

fn run(dir: &Path, settings: &Value, ras_flags: &[&str]) -> (Output, Value) {
    let json = dir.join("report.json");
    let log = dir.join("provider.log");
    let mut cmd = Command::new(BIN);
    cmd.args(["check", "ras", "--fast-poll", "--request-timeout", "30", "--json"])
        .arg(&json)
        .arg("--settings")
        .arg(settings.to_string())
        .arg("--")
        .args([BIN, "--log-level", "debug", "--log-file"])
        .arg(&log)
        .args(["ras", "--driver", "proxmox"])
        .args(ras_flags)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn polyvisor check ras");
    let start = Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if start.elapsed() > Duration::from_secs(240) {
            let _ = child.kill();
            panic!("`polyvisor check ras` on fakepve exceeded 240 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    let report = std::fs::read(&json).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or(Value::Null);
    (out, report)
}

fn assert_pass(tag: &str, out: &Output, report: &Value, dir: &Path) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let failed: Vec<&Value> =
        report["cases"].as_array().map(|a| a.iter().filter(|c| c["outcome"] == "fail").collect()).unwrap_or_default();
    assert!(out.status.success(), "{tag}: harness failed on fakepve:\n{stdout}\nfailed: {failed:#?}");
    const FLOWS: [&str; 4] = ["CreateTemplate", "EnterMaintenance", "ExitMaintenance", "CreateHost"];
    let passed = report["cases"].as_array().map(|a| {
        a.iter()
            .filter(|c| c["group"] == "flows" && c["outcome"] == "pass" && FLOWS.iter().any(|f| c["name"] == *f))
            .count()
    });
    assert_eq!(passed, Some(4), "{tag}: all four RAS flows must pass:\n{stdout}");
    let log = std::fs::read_to_string(dir.join("provider.log")).unwrap_or_default();
    assert!(log.contains("polyvisor_proxmox::round_trips"), "{tag}: round trips are logged");
    for secret in [SECRET, "\"secret\""] {
        assert!(!stdout.contains(secret) && !log.contains(secret), "{tag}: a secret leaked into the report or log");
    }
}

#[test]
fn ras_versioning_with_ticket_auth_and_ca_file() {
    let dir = temp_dir("versioning");
    let pve = start_fakepve();
    let settings = json!({"host": pve.host_port(), "username": "root@pam", "password": "secret", "ca_file": pve.ca_file, "ip_wait_timeout": "1"});
    let (out, report) = run(&dir, &settings, &["--template-method", "versioning"]);
    assert_pass("versioning", &out, &report, &dir);
}

/// Level `basic` with token auth and a fingerprint pin. (Level basic + link clones needs
/// `template_mode=native`, whose template→VM conversion fakepve 0.5.0 cannot show: its
/// `PUT config template=0` keeps the flag — known gap 4; the native path is covered at the
/// driver level in crates/proxmox/tests/fakepve_driver.rs.)
#[test]
fn ras_basic_with_token_and_fingerprint() {
    let dir = temp_dir("basic");
    let pve = start_fakepve();
    let settings = json!({"host": pve.host_port(), "username": "root@pam", "token_name": "ci", "token_secret": SECRET,
                          "fingerprint": pve.fingerprint, "ip_wait_timeout": "1"});
    let (out, report) = run(&dir, &settings, &["--template-method", "basic"]);
    assert_pass("basic", &out, &report, &dir);
}

#[test]
fn ras_versioning_survives_expired_tickets_and_slow_tasks() {
    let dir = temp_dir("faults");
    let mut pve = start_fakepve();
    // Tasks take real time (0.02 s per PVE second) and tickets expire after 3 s, so the run
    // crosses several re-logins and running → stopped task transitions.
    pve.cmd(json!({"set": "time_scale", "value": 0.02}));
    pve.cmd(json!({"set": "ticket_ttl", "value": 3}));
    let settings = json!({"host": pve.host_port(), "username": "root@pam", "password": "secret", "ca_file": pve.ca_file, "ip_wait_timeout": "1"});
    let (out, report) = run(&dir, &settings, &["--template-method", "versioning"]);
    assert_pass("faults", &out, &report, &dir);
}

/// `polyvisor check cloudstack -- <installed wrapper>` with the CloudStack built-in keys
/// (`url` bare host:port, `user`, `token`, `secret`, `node`, full clones), the template
/// 9000 turned into a native template first so the built-in default (linked) also works.
#[test]
fn cloudstack_wrapper_on_fakepve_passes_the_harness() {
    let dir = temp_dir("cloudstack");
    let mut pve = start_fakepve();
    pve.cmd(json!({"vm": 9000, "set": "template", "value": true}));
    let root = dir.join("extensions");
    let log = dir.join("polyvisor.log");
    let out = Command::new(BIN)
        .args(["cloudstack", "install", "--name", "pvepve", "--driver", "proxmox", "--root"])
        .arg(&root)
        .arg("--set")
        .arg(format!("ca_file={}", pve.ca_file))
        .env("POLYVISOR_LOG_FILE", &log)
        .output()
        .expect("run install");
    assert!(
        out.status.success(),
        "install: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let entry = root.join("pvepve/pvepve.sh");
    let json_path = dir.join("cs-report.json");
    let url = format!("url={}", pve.host_port());
    let secret = format!("secret={SECRET}");
    let mut child = Command::new(BIN)
        .args(["check", "cloudstack", "--timeout", "60", "--json"])
        .arg(&json_path)
        .args(["--template-id", "9000", "--bad-template-id", "4242", "--vm-detail", "is_full_clone=true"])
        .args(["--host-detail", &url, "--host-detail", "user=root@pam", "--host-detail", "token=ci"])
        .args(["--host-detail", &secret, "--host-detail", "node=pve1", "--custom-actions", "auto", "--"])
        .arg(&entry)
        .env("POLYVISOR_LOG_FILE", &log)
        .env("POLYVISOR_LOG_LEVEL", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn check cloudstack");
    let start = Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if start.elapsed() > Duration::from_secs(240) {
            let _ = child.kill();
            panic!("`polyvisor check cloudstack` on fakepve exceeded 240 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value =
        std::fs::read(&json_path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or(Value::Null);
    let failed: Vec<&Value> =
        report["cases"].as_array().map(|a| a.iter().filter(|c| c["outcome"] == "fail").collect()).unwrap_or_default();
    assert!(out.status.success(), "check cloudstack failed on fakepve:\n{stdout}\nfailed: {failed:#?}");
    let logtext = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!stdout.contains(SECRET) && !logtext.contains(SECRET), "secret leaked");
    // Nothing half-created: only the seeded guests remain (the harness deletes what it made).
    let vms = pve.cmd(json!({"vms": true}));
    assert_eq!(vms.as_array().map(Vec::len), Some(2), "guests left behind: {vms}");
}

/// One `polyvisor ras --driver proxmox <flags>` process fed `lines`; one reply per line.
fn ras_session(dir: &Path, flags: &[&str], lines: &[String]) -> Vec<Value> {
    let mut child = Command::new(BIN)
        .args(["--log-file"])
        .arg(dir.join("session.log"))
        .args(["ras", "--driver", "proxmox", "--request-timeout", "30"])
        .args(flags)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn polyvisor ras");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = lines.join("\n") + "\n";
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let start = Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("`polyvisor ras` on fakepve exceeded 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    writer.join().expect("writer").expect("write requests");
    let out = child.wait_with_output().expect("output");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let replies: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("reply is JSON")).collect();
    assert_eq!(replies.len(), lines.len(), "one reply per request: {text}");
    replies
}

/// RAS's link-clone level reaches the Proxmox driver as typed open options (native
/// templates), not as an injected `template_mode` setting: `provider/initialize` (no
/// credentials) advertises link clones, and the connected driver treats templates as
/// native (the link-clone snapshot label is virtual: exists ⇔ the guest is a template).
/// Other levels ask for flag templates, and an explicit `template_mode` setting wins.
#[test]
fn ras_link_clone_level_selects_native_templates_through_typed_options() {
    let dir = temp_dir("typed-options");
    let mut pve = start_fakepve();
    pve.cmd(json!({"vm": 9000, "set": "template", "value": true}));
    let connect = |extra: Value| {
        let mut s =
            json!({"host": pve.host_port(), "username": "root@pam", "password": "secret", "ca_file": pve.ca_file});
        s.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        json!({"method": "provider/connect", "params": {"settings": s}}).to_string()
    };
    let exists = |id: &str| {
        json!({"method": "guests/snapshots/exists", "params": {"id": id, "name": "RAS Template Snapshot"}}).to_string()
    };
    let init = r#"{"method":"provider/initialize"}"#.to_string();
    let link = ["--template-method", "basic", "--link-clones", "true"];

    let r = ras_session(&dir, &link, &[init.clone(), connect(json!({})), exists("9000"), exists("100")]);
    let caps = &r[0]["result"]["capabilities"];
    assert_eq!((caps["template_method"].clone(), caps["can_link_clones"].clone()), (json!("basic"), json!(true)));
    assert!(r[1]["result"]["message"].as_str().is_some_and(|m| m.starts_with("Proxmox: Connected")), "{}", r[1]);
    assert_eq!(r[2], json!({"result": true}), "native: the template answers the virtual label");
    assert_eq!(r[3], json!({"result": false}), "native: a VM is not a template");

    // Versioning asks for flag templates (they keep their snapshots).
    let r = ras_session(&dir, &["--template-method", "versioning"], std::slice::from_ref(&init));
    let caps = &r[0]["result"]["capabilities"];
    assert_eq!((caps["template_method"].clone(), caps["can_link_clones"].clone()), (json!("versioning"), json!(false)));

    // The operator's explicit setting wins over the level's preference: flag templates
    // have no linked clones, so the level falls back to basic without snapshots.
    let r = ras_session(&dir, &link, &[connect(json!({"template_mode": "flag"})), exists("9000")]);
    assert!(r[0]["result"]["message"].is_string(), "{}", r[0]);
    assert_eq!(r[1]["error"]["code"], -32601, "{}", r[1]);
}
