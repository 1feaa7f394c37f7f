//! `cloud=NAME`: the named entry of `clouds.yaml` (and `secure.yaml`), found where the
//! OpenStack client and SDK look for it, flattened into driver settings.
//!
//! Search order (the first file that exists wins; `secure.yaml` beside it is merged in, its
//! values winning, as openstacksdk does): `$OS_CLIENT_CONFIG_FILE`, `./clouds.yaml`,
//! `$XDG_CONFIG_HOME/openstack/clouds.yaml` (default `~/.config/openstack`),
//! `/etc/openstack/clouds.yaml`. Only the keys the driver reads are taken; nothing from the
//! file is ever logged or put in an error message except the cloud's name and the path.

use polyvisor_core::{Error, Result};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// Keys taken from `clouds.<name>.auth`.
const AUTH_KEYS: [&str; 9] = [
    "auth_url",
    "username",
    "password",
    "project_name",
    "project_id",
    "user_domain_name",
    "project_domain_name",
    "application_credential_id",
    "application_credential_secret",
];
/// Keys taken from `clouds.<name>`.
const CLOUD_KEYS: [&str; 4] = ["region_name", "interface", "verify", "cacert"];

/// Candidate `clouds.yaml` paths, in search order.
pub fn search_paths(env: &impl Fn(&str) -> Option<String>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(f) = env("OS_CLIENT_CONFIG_FILE").filter(|f| !f.trim().is_empty()) {
        out.push(PathBuf::from(f));
    }
    out.push(PathBuf::from("clouds.yaml"));
    let config_home = env("XDG_CONFIG_HOME")
        .filter(|d| !d.trim().is_empty())
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| Path::new(&h).join(".config")));
    if let Some(d) = config_home {
        out.push(d.join("openstack").join("clouds.yaml"));
    }
    out.push(PathBuf::from("/etc/openstack/clouds.yaml"));
    out
}

/// The settings of cloud `name` from the first `clouds.yaml` in `paths` (plus its
/// `secure.yaml`). An absent cloud or file, or a file that is not valid YAML, is a clear
/// `InvalidInput` naming the cloud and the path, never the file's content.
pub fn load(name: &str, paths: &[PathBuf]) -> Result<Map<String, Value>> {
    let name = name.trim();
    let Some(path) = paths.iter().find(|p| p.is_file()) else {
        let tried: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        return Err(Error::invalid(format!(
            "setting 'cloud' names '{name}', but no clouds.yaml was found (looked in: {})",
            tried.join(", ")
        )));
    };
    let mut entry = read_entry(path, name)?.ok_or_else(|| {
        Error::invalid(format!("cloud '{name}' is not defined in {} (setting 'cloud')", path.display()))
    })?;
    let secure = path.with_file_name("secure.yaml");
    if secure.is_file() {
        if let Some(extra) = read_entry(&secure, name)? {
            merge(&mut entry, extra);
        }
    }
    Ok(flatten(&entry))
}

/// `clouds.<name>` of one YAML file, `None` when the file has no such cloud.
fn read_entry(path: &Path, name: &str) -> Result<Option<Map<String, Value>>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::invalid(format!("cannot read {} (setting 'cloud')", path.display())).with_source(e))?;
    // the parser's message may quote the file (secrets): report only where it is
    let doc: Value = serde_saphyr::from_str(&text)
        .map_err(|_| Error::invalid(format!("{} is not valid YAML (setting 'cloud')", path.display())))?;
    Ok(doc.get("clouds").and_then(|c| c.get(name)).and_then(Value::as_object).cloned())
}

/// Deep merge: values in `extra` win.
fn merge(base: &mut Map<String, Value>, extra: Map<String, Value>) {
    for (k, v) in extra {
        match (base.get_mut(&k), v) {
            (Some(Value::Object(b)), Value::Object(e)) => merge(b, e),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Flat driver settings from one cloud entry.
fn flatten(entry: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    let scalar = |v: &Value| matches!(v, Value::String(_) | Value::Bool(_) | Value::Number(_));
    if let Some(auth) = entry.get("auth").and_then(Value::as_object) {
        for k in AUTH_KEYS {
            if let Some(v) = auth.get(k).filter(|v| scalar(v)) {
                out.insert(k.to_string(), v.clone());
            }
        }
    }
    for k in CLOUD_KEYS {
        if let Some(v) = entry.get(k).filter(|v| scalar(v)) {
            out.insert(k.to_string(), v.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLOUDS: &str = r#"
clouds:
  lab:
    auth:
      auth_url: https://keystone.lab:5000/v3
      username: ops
      project_name: vdi
      user_domain_name: Corp
    region_name: RegionTwo
    interface: internal
    verify: false
  other:
    auth:
      auth_url: https://other:5000
"#;

    fn dir_with(files: &[(&str, &str)]) -> PathBuf {
        let d = std::env::temp_dir().join(format!("pv-clouds-{}-{}", std::process::id(), files.len()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        for (n, t) in files {
            std::fs::write(d.join(n), t).unwrap();
        }
        d
    }

    #[test]
    fn the_named_cloud_is_flattened_and_secure_yaml_wins() {
        let d = dir_with(&[
            ("clouds.yaml", CLOUDS),
            ("secure.yaml", "clouds:\n  lab:\n    auth:\n      password: s3cret\n    region_name: RegionThree\n"),
        ]);
        let m = load("lab", &[d.join("missing.yaml"), d.join("clouds.yaml")]).unwrap();
        assert_eq!(m["auth_url"], "https://keystone.lab:5000/v3");
        assert_eq!(m["username"], "ops");
        assert_eq!(m["password"], "s3cret");
        assert_eq!(m["user_domain_name"], "Corp");
        assert_eq!(m["region_name"], "RegionThree");
        assert_eq!(m["interface"], "internal");
        assert_eq!(m["verify"], false);
        assert!(!m.contains_key("project_domain_name"));
    }

    #[test]
    fn unknown_cloud_missing_file_and_bad_yaml_are_clear_and_quote_nothing() {
        let d = dir_with(&[("clouds.yaml", "clouds: [password: hunter2\n")]);
        let e = load("lab", &[d.join("clouds.yaml")]).unwrap_err();
        assert_eq!(e.kind(), polyvisor_core::ErrorKind::InvalidInput);
        assert!(e.message().contains("not valid YAML") && !e.message().contains("hunter2"), "{}", e.message());
        let e = load("lab", &[d.join("nope.yaml")]).unwrap_err();
        assert!(e.message().contains("no clouds.yaml was found"), "{}", e.message());
        std::fs::write(d.join("clouds.yaml"), CLOUDS).unwrap();
        let e = load("prod", &[d.join("clouds.yaml")]).unwrap_err();
        assert!(e.message().contains("cloud 'prod' is not defined"), "{}", e.message());
    }

    #[test]
    fn search_order_follows_the_openstack_client() {
        let env = |k: &str| match k {
            "OS_CLIENT_CONFIG_FILE" => Some("/x/my.yaml".to_string()),
            "HOME" => Some("/home/op".to_string()),
            _ => None,
        };
        let p = search_paths(&env);
        let p: Vec<String> = p.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(
            p,
            ["/x/my.yaml", "clouds.yaml", "/home/op/.config/openstack/clouds.yaml", "/etc/openstack/clouds.yaml"]
        );
    }
}
