//! The stand-in (`testing/hpevme/standin.py`) started by a test on a random loopback port
//! with TLS and short transition delays; its own control endpoints (`/__standin/...`).

#![allow(dead_code)]

use polyvisor_core::{Settings, TaskId};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct StandIn {
    child: Child,
    pub ready: Value,
    pub url: String,
    pub ca_file: String,
    pub token: String,
    pub password: String,
    _dir: tempfile::TempDir,
}

impl StandIn {
    pub fn start() -> StandIn {
        let dir = polyvisor_test_support::temp::dir("hpevme-standin");
        let script = polyvisor_test_support::bin::repo_path("testing/hpevme/standin.py");
        let token = "drv-test-token-0123456789".to_string();
        let password = "drv-test-password-s3cret".to_string();
        let mut child = Command::new("python3")
            .arg(&script)
            .args(["--host", "127.0.0.1", "--port", "0", "--delay", "0.2", "--username", "polyvisor"])
            .args(["--token", &token, "--password", &password, "--certdir"])
            .arg(dir.path().join("pki"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 testing/hpevme/standin.py (pip install -r scripts/ci/requirements.txt)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let ready: Value = serde_json::from_str(&line)
            .unwrap_or_else(|_| panic!("the stand-in did not start (pip install -r scripts/ci/requirements.txt)"));
        StandIn {
            url: ready["listening"].as_str().unwrap().to_string(),
            ca_file: ready["ca_file"].as_str().unwrap().to_string(),
            ready,
            child,
            token,
            password,
            _dir: dir,
        }
    }

    pub fn token_settings(&self) -> Settings {
        Settings::from_json(&json!({"url": self.url, "access_token": self.token, "ca_file": self.ca_file})).unwrap()
    }

    pub fn password_settings(&self) -> Settings {
        Settings::from_json(
            &json!({"url": self.url, "username": "polyvisor", "password": self.password, "ca_file": self.ca_file}),
        )
        .unwrap()
    }

    pub fn id(&self, which: &str) -> String {
        self.ready[which].as_str().unwrap().to_string()
    }

    fn client(&self) -> reqwest::Client {
        let pem = std::fs::read(&self.ca_file).unwrap();
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    }

    pub async fn control(&self, path: &str, body: Option<Value>) -> Value {
        let c = self.client();
        let url = format!("{}/__standin/{path}", self.url);
        let r = match body {
            Some(b) => c.post(url).json(&b).send().await,
            None => c.get(url).send().await,
        };
        r.unwrap().json().await.unwrap()
    }

    pub async fn fault(&self, method: &str, path: &str, status: Value, count: u32, retry_after: Option<u64>) {
        self.control(
            "fault",
            Some(json!({"method": method, "path": path, "status": status, "count": count, "retry_after": retry_after})),
        )
        .await;
    }

    pub async fn violations(&self) -> Vec<Value> {
        self.control("violations", None).await["violations"].as_array().cloned().unwrap_or_default()
    }

    /// A new stopped instance of this name (with optional tags), made through the control API.
    pub async fn add(&self, name: &str, status: &str, tags: Value) -> String {
        let v = self.control("instances", Some(json!({"name": name, "status": status, "tags": tags}))).await;
        v["id"].as_u64().unwrap().to_string()
    }

    /// `(method, path)` of every API request so far.
    pub async fn requests(&self) -> Vec<(String, String)> {
        let v = self.control("requests", None).await;
        v["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r[0].as_str().unwrap().to_string(), r[1].as_str().unwrap().to_string()))
            .collect()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (bounded) for a task.
pub async fn wait(d: &dyn polyvisor_core::Driver, t: &TaskId) -> polyvisor_core::Result<polyvisor_core::TaskOutput> {
    polyvisor_core::task::wait(d, t, Duration::from_secs(60), Duration::from_millis(100)).await
}
