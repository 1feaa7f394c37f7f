//! A private stand-in (`testing/hyperv/standin.py`) per test, on a random loopback port with
//! its own certificate, so tests never share an estate.

#![allow(dead_code)]

use polyvisor_core::Settings;
use polyvisor_hyperv::HyperV;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub struct StandIn {
    child: Child,
    pub ready: Value,
    pub password: String,
    _dir: tempfile::TempDir,
}

impl StandIn {
    pub fn start() -> StandIn {
        StandIn::start_with(&[])
    }

    /// A stand-in started with extra options (`--require-channel-binding`).
    pub fn start_with(extra: &[&str]) -> StandIn {
        let dir = polyvisor_test_support::temp::dir("hyperv-standin");
        let script = polyvisor_test_support::bin::repo_path("testing/hyperv/standin.py");
        let password = "drv-test-password-s3cret".to_string();
        let mut child = Command::new("python3")
            .arg(&script)
            .args(["--host", "127.0.0.1", "--port", "0", "--username", "polyvisor", "--basic"])
            .args(["--password", &password, "--certdir"])
            .arg(dir.path().join("pki"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 testing/hyperv/standin.py (pip install -r testing/hyperv/requirements.txt)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let ready: Value = serde_json::from_str(&line)
            .unwrap_or_else(|_| panic!("the stand-in did not start (pip install -r testing/hyperv/requirements.txt)"));
        StandIn { ready, child, password, _dir: dir }
    }

    pub fn get(&self, k: &str) -> String {
        match &self.ready[k] {
            Value::String(s) => s.clone(),
            v => v.to_string(),
        }
    }

    pub fn settings_with(&self, extra: Value) -> Settings {
        let mut v = json!({
            "host": self.get("host"), "port": self.get("port"), "username": "polyvisor",
            "password": self.password, "ca_file": self.get("ca_file"), "vhd_path": self.get("vhd_path"),
            "vm_path": self.get("vm_path"), "switch": self.get("switch"),
        });
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        Settings::from_json(&v).unwrap()
    }

    pub fn driver(&self) -> HyperV {
        polyvisor_hyperv::open_driver(&self.settings_with(json!({}))).unwrap()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
