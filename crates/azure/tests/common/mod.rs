//! A private ARM stand-in per test (testing/azure/armstandin.py on 127.0.9.5, port chosen by
//! the OS) with its own CA, so fault injection never disturbs the shared CI instance.

#![allow(dead_code)]

use polyvisor_azure::Azure;
use polyvisor_core::{Driver, Settings, TaskId, TaskOutput, TaskStatus};
use polyvisor_test_support::{bin, temp};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SECRET: &str = "standin-Secret-4711";

pub struct StandIn {
    child: Child,
    pub url: String,
    pub ca: String,
    pub subnet: String,
    _dir: tempfile::TempDir,
    http: reqwest::Client,
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl (apt-get install openssl)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl StandIn {
    /// Starts a fresh stand-in with pv-src (deallocated), pv-tpl (a plain VM, a create source by name) and web-01 (running).
    pub fn start() -> StandIn {
        StandIn::start_with(None)
    }

    /// Like [`StandIn::start`], recording every ARM request/response pair into `traffic`
    /// (oav's traffic format).
    pub fn start_recording(traffic: &std::path::Path) -> StandIn {
        StandIn::start_with(Some(traffic))
    }

    fn start_with(traffic: Option<&std::path::Path>) -> StandIn {
        let dir = temp::dir("azure-standin");
        let d = dir.path();
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
        );
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=127.0.9.5",
                "-keyout",
                "key.pem",
                "-out",
                "leaf.csr",
            ],
        );
        std::fs::write(d.join("leaf.ext"), "subjectAltName=IP:127.0.9.5\nbasicConstraints=critical,CA:FALSE\n")
            .unwrap();
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "leaf.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "leaf.ext",
                "-out",
                "cert.pem",
            ],
        );
        // The service principal's certificate (registered: its public part goes into the
        // stand-in's config) and a second one that is not registered.
        for name in ["client", "rogue"] {
            let (key, cert) = (format!("{name}.key"), format!("{name}-cert.pem"));
            openssl(
                d,
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=pv-sp",
                    "-keyout",
                    &key,
                    "-out",
                    &cert,
                ],
            );
            let mut pem = std::fs::read(d.join(&key)).unwrap();
            pem.extend(std::fs::read(d.join(&cert)).unwrap());
            std::fs::write(d.join(format!("{name}.pem")), pem).unwrap();
        }
        let conf = json!({"client_certificate": "client-cert.pem", "subscription_id": "00000000-0000-0000-0000-0000000000aa", "tenant_id": "tenant-1",
            "client_id": "client-1", "client_secret": SECRET, "resource_group": "rg-test", "location": "westeurope",
            "op_delay": 0.2,
            "guests": [{"name": "pv-src", "power": "deallocated"},
                       {"name": "pv-tpl", "power": "deallocated"},
                       {"name": "web-01", "power": "running"}],
            "galleries": [{"gallery": "g1", "image": "img-spec", "osState": "Specialized", "versions": ["1.0.0"]},
                          {"gallery": "g1", "image": "img-gen", "osState": "Generalized", "versions": ["1.0.0"]},
                          {"gallery": "g1", "image": "web-01", "osState": "Specialized", "versions": []}]});
        std::fs::write(d.join("config.json"), conf.to_string()).unwrap();
        let script = bin::repo_path("testing/azure/armstandin.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .args([
                "--host",
                "127.0.9.5",
                "--port",
                "0",
                "--cert",
                "cert.pem",
                "--key",
                "key.pem",
                "--config",
                "config.json",
            ])
            .args(traffic.map(|t| vec!["--traffic-dir".to_string(), t.display().to_string()]).unwrap_or_default())
            .current_dir(d)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("ready line");
        let ready: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("stand-in did not start: {line:?}"));
        let ca = d.join("ca.pem").display().to_string();
        let pem = std::fs::read(&ca).unwrap();
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        StandIn {
            child,
            url: ready["listening"].as_str().unwrap().to_string(),
            ca,
            subnet: ready["subnet"].as_str().unwrap().to_string(),
            _dir: dir,
            http,
        }
    }

    /// The stand-in's own config file (ids and the client secret).
    pub fn config_path(&self) -> std::path::PathBuf {
        self._dir.path().join("config.json")
    }

    /// A gallery image version id of the seeded gallery `g1`.
    pub fn gallery_version(&self, image: &str) -> String {
        format!(
            "/subscriptions/00000000-0000-0000-0000-0000000000aa/resourceGroups/rg-test/providers/Microsoft.Compute/galleries/g1/images/{image}/versions/1.0.0"
        )
    }

    pub fn settings(&self) -> Settings {
        Settings::from_json(&json!({
            "tenant_id": "tenant-1", "client_id": "client-1", "client_secret": SECRET,
            "subscription_id": "00000000-0000-0000-0000-0000000000aa", "resource_group": "rg-test", "location": "westeurope",
            "authority_host": self.url, "resource_manager_endpoint": self.url, "ca_file": self.ca,
        }))
        .unwrap()
    }

    /// Settings with the certificate credential `name` (`client` is registered, `rogue` not).
    pub fn cert_settings(&self, name: &str) -> Settings {
        Settings::from_json(&json!({
            "tenant_id": "tenant-1", "client_id": "client-1",
            "client_certificate_path": self._dir.path().join(format!("{name}.pem")).display().to_string(),
            "subscription_id": "00000000-0000-0000-0000-0000000000aa", "resource_group": "rg-test", "location": "westeurope",
            "authority_host": self.url, "resource_manager_endpoint": self.url, "ca_file": self.ca,
        }))
        .unwrap()
    }

    pub fn driver(&self) -> Azure {
        polyvisor_azure::open_driver(&self.settings()).unwrap()
    }

    pub fn driver_with(&self, extra: Value) -> Azure {
        let extra = Settings::from_json(&extra).unwrap();
        polyvisor_azure::open_driver(&self.settings().merged_with(&extra)).unwrap()
    }

    pub async fn faults(&self, v: Value) {
        let r = self.http.post(format!("{}/_standin/faults", self.url)).json(&v).send().await.unwrap();
        assert!(r.status().is_success());
    }

    pub async fn expire_tokens(&self) {
        self.http.post(format!("{}/_standin/expire-tokens", self.url)).send().await.unwrap();
    }

    pub async fn stats(&self) -> Value {
        self.http.get(format!("{}/_standin/stats", self.url)).send().await.unwrap().json().await.unwrap()
    }

    /// Resource ids (lower-cased) the stand-in holds.
    pub async fn resources(&self) -> Vec<String> {
        self.stats().await["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_ascii_lowercase())
            .collect()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls a task to its end (bounded: 60 s).
pub async fn wait(d: &dyn Driver, task: &TaskId) -> Result<TaskOutput, polyvisor_core::Error> {
    let t0 = Instant::now();
    loop {
        match d.task_status(task).await? {
            TaskStatus::Completed(o) => return Ok(o),
            TaskStatus::Failed(e) => return Err(e),
            TaskStatus::Running => {}
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "task {task} did not finish in 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
