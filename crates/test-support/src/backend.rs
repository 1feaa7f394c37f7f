//! The backend contract: every test backend has `scripts/ci/start-<backend>.sh` (idempotent,
//! run by `scripts/ci/start-services.sh`) which, once the backend is ready, writes
//! `/run/polyvisor-test/<backend>.json`:
//!
//! ```json
//! {"settings": {"driver": "proxmox", "...": "provider/connect settings"},
//!  "cloudstack": {"extension": {}, "host": {}, "virtualmachine": {}, "untagged_networks": false},
//!  "source_guest": "<stopped guest the RAS flows may use as template source>",
//!  "template_id": "<CloudStack template id>"}
//! ```
//!
//! [`Backend::load`] reads it; a missing file is an error naming the start script.

use serde::Deserialize;
use serde_json::{Map, Value};
use std::path::PathBuf;

/// The backends the repository provides a start script for, in the order tests run them.
pub const ALL: &[&str] = &["proxmox", "libvirt", "hpevme", "azure", "xcpng", "openstack", "kubevirt", "hyperv"];

/// Directory of the contract files: `POLYVISOR_TEST_RUN_DIR`, else `/run/polyvisor-test`.
pub fn run_dir() -> PathBuf {
    std::env::var_os("POLYVISOR_TEST_RUN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/polyvisor-test"))
}

/// The CloudStack detail maps for `polyvisor check cloudstack` (`--detail`, `--host-detail`,
/// `--vm-detail`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CloudStack {
    /// `externaldetails.extension`.
    #[serde(default)]
    pub extension: Map<String, Value>,
    /// `externaldetails.host`.
    #[serde(default)]
    pub host: Map<String, Value>,
    /// `externaldetails.virtualmachine`.
    #[serde(default)]
    pub virtualmachine: Map<String, Value>,
    /// The backend's networks cannot tag VLANs: the harness sends `vlan://untagged` NICs
    /// (`polyvisor check cloudstack --untagged-networks`).
    #[serde(default)]
    pub untagged_networks: bool,
}

/// One backend's contract file.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Backend {
    /// The backend's name (`proxmox`); set by [`Backend::load`], not read from the file.
    #[serde(skip)]
    pub name: String,
    /// `provider/connect` settings, `driver` included.
    pub settings: Map<String, Value>,
    /// CloudStack details.
    pub cloudstack: CloudStack,
    /// Id of a stopped guest the RAS flows may use as their source.
    pub source_guest: String,
    /// CloudStack `template_id` for `create`.
    pub template_id: String,
}

/// Why a contract file could not be used.
#[derive(Debug)]
pub enum LoadError {
    /// No file: the backend was not started.
    Missing {
        /// The file looked for.
        path: PathBuf,
        /// The script that writes it.
        script: String,
    },
    /// The file exists but is not a valid contract.
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Missing { path, script } => {
                write!(f, "backend contract {} is missing: run `bash {script}` (as root) first", path.display())
            }
            LoadError::Invalid { path, reason } => {
                write!(f, "backend contract {} is invalid: {reason}", path.display())
            }
        }
    }
}

impl std::error::Error for LoadError {}

impl Backend {
    /// Reads `<run_dir>/<name>.json`.
    pub fn load(name: &str) -> Result<Backend, LoadError> {
        Self::load_from(&run_dir(), name)
    }

    /// Reads `<dir>/<name>.json`.
    pub fn load_from(dir: &std::path::Path, name: &str) -> Result<Backend, LoadError> {
        let path = dir.join(format!("{name}.json"));
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(LoadError::Missing { path, script: format!("scripts/ci/start-{name}.sh") })
            }
            Err(e) => return Err(LoadError::Invalid { path, reason: e.to_string() }),
        };
        let mut b: Backend = serde_json::from_str(&text)
            .map_err(|e| LoadError::Invalid { path: path.clone(), reason: e.to_string() })?;
        b.name = name.to_string();
        let invalid = |reason: &str| LoadError::Invalid { path: path.clone(), reason: reason.to_string() };
        if b.driver().is_none() {
            return Err(invalid("settings.driver is missing"));
        }
        if b.source_guest.trim().is_empty() || b.template_id.trim().is_empty() {
            return Err(invalid("source_guest and template_id must be non-empty"));
        }
        Ok(b)
    }

    /// `settings.driver`.
    pub fn driver(&self) -> Option<&str> {
        self.settings.get("driver").and_then(Value::as_str).filter(|d| !d.is_empty())
    }

    /// The settings as one JSON object (for `--settings`).
    pub fn settings_json(&self) -> String {
        Value::Object(self.settings.clone()).to_string()
    }

    /// Runs the official OpenStack client (`/usr/bin/openstack`, Debian's
    /// python3-openstackclient, installed by `scripts/ci/start-openstack.sh`) with this
    /// (OpenStack) contract's credentials, or `as_user`'s (`username`, `password`,
    /// `project_name`) when given, and nothing else from the environment.
    pub fn openstack_cli_as(&self, as_user: Option<&Value>, args: &[&str]) -> std::process::Output {
        let get = |k: &str| self.settings.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        let user = |k: &str, default: &str| {
            as_user.map(|u| u[k].as_str().unwrap_or(default).to_string()).unwrap_or_else(|| get(k))
        };
        std::process::Command::new("/usr/bin/openstack")
            .args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("OS_AUTH_URL", get("auth_url"))
            .env("OS_USERNAME", user("username", "admin"))
            .env("OS_PASSWORD", user("password", ""))
            .env("OS_PROJECT_NAME", user("project_name", "admin"))
            .env("OS_USER_DOMAIN_NAME", "Default")
            .env("OS_PROJECT_DOMAIN_NAME", "Default")
            .env("OS_REGION_NAME", get("region_name"))
            .env("OS_IDENTITY_API_VERSION", "3")
            .output()
            .expect("python3-openstackclient (/usr/bin/openstack) is installed by start-openstack.sh")
    }

    /// [`Backend::openstack_cli_as`] with the contract's own credentials.
    pub fn openstack_cli(&self, args: &[&str]) -> std::process::Output {
        self.openstack_cli_as(None, args)
    }

    /// The official client's JSON answer to `args` (`-f json` added); panics naming the
    /// command when it fails.
    pub fn openstack_json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-f", "json"]);
        let out = self.openstack_cli(&a);
        assert!(out.status.success(), "openstack {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("json")
    }

    /// The official client's sorted `ID`s of `openstack <what> list`.
    pub fn openstack_ids(&self, what: &str) -> Vec<String> {
        let rows = self.openstack_json(&[what, "list"]);
        let mut ids: Vec<String> =
            rows.as_array().into_iter().flatten().filter_map(|r| r["ID"].as_str().map(str::to_string)).collect();
        ids.sort();
        ids
    }

    /// Every secret-looking value in the contract (settings and CloudStack details whose key
    /// names a secret, password or token secret, or is `token`: a bearer token such as
    /// KubeVirt's), to assert none leaks into output.
    pub fn secrets(&self) -> Vec<String> {
        let maps = [&self.settings, &self.cloudstack.extension, &self.cloudstack.host, &self.cloudstack.virtualmachine];
        let mut out: Vec<String> = maps
            .iter()
            .flat_map(|m| m.iter())
            .filter(|(k, _)| k.contains("secret") || k.contains("password") || k.as_str() == "token")
            .filter_map(|(_, v)| v.as_str().map(str::to_string))
            .filter(|v| v.len() >= 6)
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// `KEY=VALUE` arguments of a detail map (string values as is, others as JSON).
pub fn detail_args(m: &Map<String, Value>) -> Vec<String> {
    m.iter()
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_names_the_start_script() {
        let d = crate::temp::dir("contract");
        let e = Backend::load_from(d.path(), "proxmox").unwrap_err();
        assert!(matches!(e, LoadError::Missing { .. }));
        assert!(e.to_string().contains("scripts/ci/start-proxmox.sh"), "{e}");
    }

    #[test]
    fn reads_a_contract_and_rejects_incomplete_ones() {
        let d = crate::temp::dir("contract");
        let good = serde_json::json!({
            "settings": {"driver": "proxmox", "host": "127.0.9.1:8006", "token_secret": "s3cret-value"},
            "cloudstack": {"extension": {}, "host": {"url": "https://x", "secret": "s3cret-value"}, "virtualmachine": {"is_full_clone": true}},
            "source_guest": "103", "template_id": "9000"});
        std::fs::write(d.path().join("proxmox.json"), good.to_string()).unwrap();
        let b = Backend::load_from(d.path(), "proxmox").unwrap();
        assert_eq!((b.name.as_str(), b.driver()), ("proxmox", Some("proxmox")));
        assert_eq!(b.secrets(), ["s3cret-value"]);
        assert_eq!(detail_args(&b.cloudstack.virtualmachine), ["is_full_clone=true"]);
        let mut bad = good.clone();
        bad["settings"].as_object_mut().unwrap().remove("driver");
        std::fs::write(d.path().join("x.json"), bad.to_string()).unwrap();
        assert!(Backend::load_from(d.path(), "x").unwrap_err().to_string().contains("settings.driver"));
        std::fs::write(d.path().join("y.json"), "{").unwrap();
        assert!(matches!(Backend::load_from(d.path(), "y").unwrap_err(), LoadError::Invalid { .. }));
    }
}
