//! A private fakepve (PyPI `fakepve[crypto]`, AGPL, run as a separate process through
//! `scripts/ci/fakepve-launcher.py`) on its own loopback address and a free port, for one
//! test; talks to it over stdin/stdout for fault injection and exits when dropped.
//! (The long-running shared instance of the backend contract is `scripts/ci/start-proxmox.sh`.)

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// API token id the launcher registers.
pub const TOKEN_ID: &str = "root@pam!ci";
/// Its secret.
pub const TOKEN_SECRET: &str = "5e3c1b2a-0000-4c55-9c3e-5e7a6b1d2e3f";

/// A running fakepve; killed on drop.
pub struct FakePve {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    /// `https://host:port`.
    pub url: String,
    /// The loopback address it listens on.
    pub host: String,
    /// PEM file of its self-signed certificate.
    pub ca_file: String,
    /// SHA-256 fingerprint of the certificate (`AB:CD:...`).
    pub fingerprint: String,
    _dir: tempfile::TempDir,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// The default guest set (template 9000, VMs 100-103, a container 200).
pub fn guests() -> Value {
    json!({"guests": [
      {"vmid": 9000, "name": "tpl-ubuntu", "status": "stopped", "template": true,
       "config": {"scsi0": "local-lvm:base-9000-disk-0,size=8G", "net0": "virtio=BC:24:11:00:90:00,bridge=vmbr0", "ostype": "l26", "agent": "1"}},
      {"vmid": 100, "name": "web-01", "status": "running",
       "config": {"scsi0": "local-lvm:vm-100-disk-0,size=8G", "net0": "virtio=BC:24:11:00:01:00,bridge=vmbr0", "ostype": "win11", "agent": "1", "cores": "2", "memory": "2048"},
       "agent": {"interfaces": [{"name": "eth0", "hardware-address": "bc:24:11:00:01:00",
                                 "ip-addresses": [{"ip-address": "192.0.2.50", "ip-address-type": "ipv4", "prefix": 24}]}]}},
      {"vmid": 101, "name": "noagent", "status": "stopped", "config": {"scsi0": "local-lvm:vm-101-disk-0,size=8G", "net0": "virtio=BC:24:11:00:01:01,bridge=vmbr0", "ostype": "l26"}},
      {"vmid": 102, "name": "paused", "status": "running", "qmpstatus": "paused", "config": {}, "node": "pve2"},
      {"vmid": 103, "name": "base-vm", "status": "stopped", "config": {"scsi0": "local-lvm:vm-103-disk-0,size=8G", "net0": "virtio=BC:24:11:00:01:03,bridge=vmbr0", "ostype": "l26", "agent": "1"}},
      {"vmid": 200, "type": "lxc", "name": "ct", "status": "running", "ostemplate": "local:vztmpl/debian.tar.zst"}
    ]})
}

impl FakePve {
    /// Starts one with [`guests`].
    pub fn start() -> FakePve {
        Self::start_with(guests())
    }

    /// Starts one with the given `{"guests": [...]}`.
    pub fn start_with(guests: Value) -> FakePve {
        Self::start_with_launcher(&crate::bin::repo_path("scripts/ci/fakepve-launcher.py"), guests)
    }

    /// Starts one with the given guests through the launcher at `launcher` (the bench takes
    /// its path from the command line).
    pub fn start_with_launcher(launcher: &std::path::Path, guests: Value) -> FakePve {
        let dir = tempfile::tempdir().expect("tempdir");
        let gfile = dir.path().join("guests.json");
        std::fs::write(&gfile, guests.to_string()).expect("write guests");
        let n = SEQ.fetch_add(1, Ordering::Relaxed) + std::process::id() % 200;
        let host = format!("127.0.{}.{}", 40 + n / 250, n % 250 + 2);
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let mut child = Command::new(&python)
            .arg(launcher)
            .arg("--guests")
            .arg(&gfile)
            .arg("--host")
            .arg(&host)
            .arg("--certdir")
            .arg(dir.path().join("pki"))
            .arg("--token")
            .arg(format!("{TOKEN_ID}={TOKEN_SECRET}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {python} (needed for fakepve): {e}"));
        let stdout: ChildStdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                panic!(
                    "fakepve did not start. Install it with: python3 -m pip install -r scripts/ci/requirements.txt \
                     (fakepve[crypto]); stderr: {err}"
                );
            }
        };
        let v: Value = serde_json::from_str(&first).unwrap_or_else(|_| panic!("unexpected launcher output: {first}"));
        let stdin = child.stdin.take().expect("stdin");
        FakePve {
            url: v["listening"].as_str().expect("url").to_string(),
            ca_file: v["ca_file"].as_str().expect("ca").to_string(),
            fingerprint: v["fingerprint"].as_str().expect("fp").to_string(),
            host,
            child,
            stdin,
            lines: rx,
            _dir: dir,
        }
    }

    /// `host:port` without scheme (as the RAS `host` setting).
    pub fn host_port(&self) -> String {
        self.url.trim_start_matches("https://").to_string()
    }

    /// Sends one launcher command; returns its `ok` answer (panics on an error answer).
    pub fn cmd(&mut self, c: Value) -> Value {
        writeln!(self.stdin, "{c}").expect("write to launcher");
        self.stdin.flush().expect("flush");
        let line = self.lines.recv_timeout(Duration::from_secs(20)).expect("launcher answer");
        let v: Value = serde_json::from_str(&line).expect("json answer");
        if let Some(e) = v.get("error") {
            panic!("launcher command {c} failed: {e}");
        }
        v["ok"].clone()
    }

    /// The VMs as fakepve holds them.
    pub fn vms(&mut self) -> Vec<Value> {
        self.cmd(json!({"vms": true})).as_array().cloned().unwrap_or_default()
    }

    /// Driver settings with API-token auth and the fingerprint pin.
    pub fn token_settings(&self) -> Value {
        json!({"host": self.host_port(), "username": "root@pam", "token_name": "ci", "token_secret": TOKEN_SECRET,
               "fingerprint": self.fingerprint, "ip_wait_timeout": 1})
    }

    /// Driver settings with ticket (password) auth and the CA file.
    pub fn ticket_settings(&self) -> Value {
        json!({"host": self.host_port(), "username": "root@pam", "password": "secret", "ca_file": self.ca_file, "ip_wait_timeout": 1})
    }
}

impl Drop for FakePve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
