//! A private XAPI stand-in per test (testing/xcpng/xapi_standin.py on a free port) and a raw
//! JSON-RPC helper to inspect it behind the driver's back.
#![allow(dead_code)]

use polyvisor_core::Settings;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A running stand-in; killed on drop.
pub struct StandIn {
    child: Child,
    /// `https://127.0.9.2:<port>`.
    pub url: String,
    /// The port every listener of this stand-in uses.
    pub port: u16,
    /// SHA-256 pin of its certificate.
    pub fingerprint: String,
    /// name label → uuid of the seeded VMs.
    pub vms: Value,
    /// The root password.
    pub password: String,
    _dir: tempfile::TempDir,
}

pub const MASTER: &str = "127.0.9.2";
pub const SLAVE: &str = "127.0.9.12";
pub const STALL: &str = "127.0.9.22";

impl StandIn {
    pub fn start() -> StandIn {
        StandIn::start_with_task_delay("0.2")
    }

    /// A stand-in whose `Async.*` tasks take `secs` seconds.
    pub fn start_with_task_delay(secs: &str) -> StandIn {
        let dir = polyvisor_test_support::temp::dir("xapi-standin");
        let script = polyvisor_test_support::bin::repo_path("testing/xcpng/xapi_standin.py");
        let password = format!("pw-{}", std::process::id());
        let mut child = Command::new("python3")
            .arg(&script)
            .args(["--host", MASTER, "--port", "0", "--slave-host", SLAVE, "--stall-host", STALL, "--task-delay", secs])
            .arg("--certdir")
            .arg(dir.path())
            .env("XAPI_STANDIN_PASSWORD", &password)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 must be installed to run the XAPI stand-in (scripts/ci/install-deps.sh)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("stand-in output");
        let info: Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("the XAPI stand-in did not start: {line:?}"));
        let url = info["listening"].as_str().unwrap().to_string();
        let port = url.rsplit(':').next().unwrap().parse().unwrap();
        StandIn {
            child,
            url,
            port,
            fingerprint: info["fingerprint"].as_str().unwrap().to_string(),
            vms: info["vms"].clone(),
            password,
            _dir: dir,
        }
    }

    pub fn uuid(&self, name: &str) -> String {
        self.vms[name].as_str().unwrap_or_else(|| panic!("no seeded VM {name}")).to_string()
    }

    /// Driver settings for `host` (one of MASTER, SLAVE, STALL) plus extra pairs.
    pub fn settings(&self, host: &str, extra: &[(&str, &str)]) -> Settings {
        let mut s = Settings::from_pairs([
            ("host", format!("{host}:{}", self.port)),
            ("username", "root".to_string()),
            ("password", self.password.clone()),
            ("fingerprint", self.fingerprint.clone()),
        ]);
        for (k, v) in extra {
            s.set(*k, *v);
        }
        s
    }

    /// One raw JSON-RPC call (own session), for checks behind the driver's back.
    pub async fn raw(&self, method: &str, args: Vec<Value>) -> Value {
        let http = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
        let rpc = |m: &str, p: Vec<Value>| {
            let body = json!({"jsonrpc": "2.0", "id": 1, "method": m, "params": p});
            http.post(format!("{}/jsonrpc", self.url)).json(&body).send()
        };
        let login: Value = rpc("session.login_with_password", vec![json!("root"), json!(self.password)])
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let s = login["result"].clone();
        let mut p = vec![s.clone()];
        p.extend(args);
        let v: Value = rpc(method, p).await.unwrap().json().await.unwrap();
        let _ = rpc("session.logout", vec![s]).await;
        assert!(v["error"].is_null(), "{method}: {v}");
        v["result"].clone()
    }

    /// The stand-in's counters: `calls`, `logouts`, live `sessions`, `tasks_dropped` (tasks
    /// destroyed with their session at logout). Not an XAPI call: it opens no session.
    pub async fn debug(&self) -> Value {
        let http = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
        http.post(format!("{}/debug/calls", self.url)).send().await.unwrap().json().await.unwrap()
    }

    /// Invalidates every session (as a host restart or an expiry would).
    pub async fn expire_sessions(&self) {
        let http = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
        http.post(format!("{}/debug/expire-sessions", self.url)).send().await.unwrap();
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
