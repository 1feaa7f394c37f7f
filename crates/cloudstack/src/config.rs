//! Settings for one invocation: the `--config` file (installer defaults) overlaid by the
//! payload's `externaldetails`.
//!
//! Precedence, lowest first (later levels win key by key):
//! 1. `--config` file (a flat JSON object: `{"driver":"sim","node":"pve1",…}`);
//! 2. `externaldetails.extension` (extension details);
//! 3. `externaldetails.resourcemap` (cluster registration; the built-ins ignore it, we read it);
//! 4. `externaldetails.host` (host external details);
//! 5. `External:<k>` entries of `cloudstack.vm.details.details` (the fallback spec §5.2 names);
//! 6. `externaldetails.virtualmachine` (template / offering / VM external details).
//!
//! This is the built-ins' order (host > extension; VM keys from the VM map) with the cluster
//! level added between them. The `driver` key (default `sim`) selects the backend; every
//! merged key reaches the driver, so each driver's own keys work at every level.

use crate::payload::{Payload, DETAIL_LEVELS};
use polyvisor_core::{Error, Result, Settings};
use std::path::Path;

/// Upper bound on the config file size.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Reads the `--config` file: a JSON object of settings (values strings, numbers or
/// booleans). Errors name the file, never its content.
pub fn load_file(path: &Path) -> Result<Settings> {
    let shown = path.display();
    let meta =
        std::fs::metadata(path).map_err(|_| Error::invalid(format!("config file {shown} not found or unreadable")))?;
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(Error::invalid(format!("config file {shown} is too large")));
    }
    let bytes =
        std::fs::read(path).map_err(|_| Error::invalid(format!("config file {shown} not found or unreadable")))?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        Error::invalid(format!("config file {shown}: invalid JSON (line {}, column {})", e.line(), e.column()))
    })?;
    if !value.is_object() {
        return Err(Error::invalid(format!("config file {shown}: must be a JSON object")));
    }
    Settings::from_json(&value)
}

/// Merges the config-file settings and the payload's detail levels (see the module doc).
pub fn merged(file: &Settings, payload: &Payload) -> Settings {
    let mut out = file.clone();
    for level in &DETAIL_LEVELS[..3] {
        out = out.merged_with(&payload.details(level));
    }
    out = out.merged_with(&payload.vm_external_details());
    out.merged_with(&payload.details(DETAIL_LEVELS[3]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn payload(v: serde_json::Value) -> Payload {
        Payload::parse(v.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn precedence_is_file_extension_cluster_host_vmdetails_vm() {
        let file = Settings::from_pairs([
            ("a", "file"),
            ("b", "file"),
            ("c", "file"),
            ("d", "file"),
            ("e", "file"),
            ("f", "file"),
        ]);
        let p = payload(json!({
            "externaldetails": {
                "extension": {"b": "ext", "c": "ext", "d": "ext", "e": "ext", "f": "ext"},
                "resourcemap": {"c": "cluster", "d": "cluster", "e": "cluster", "f": "cluster"},
                "host": {"d": "host", "e": "host", "f": "host"},
                "virtualmachine": {"f": "vm"}
            },
            "cloudstack.vm.details": {"details": {"External:e": "vmdetail", "External:f": "vmdetail", "e": "unprefixed-ignored"}}
        }));
        let m = merged(&file, &p);
        for (k, want) in [("a", "file"), ("b", "ext"), ("c", "cluster"), ("d", "host"), ("e", "vmdetail"), ("f", "vm")]
        {
            assert_eq!(m.str(k).as_deref(), Some(want), "key {k}");
        }
    }

    #[test]
    fn config_file_errors_are_clear_and_do_not_echo_content() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.json");
        assert!(load_file(&missing).unwrap_err().message().contains("not found"));
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{\"token\": s3cret-value").unwrap();
        let e = load_file(&bad).unwrap_err();
        assert!(e.message().contains("invalid JSON"), "{e}");
        assert!(!e.message().contains("s3cret"), "{e}");
        let arr = dir.path().join("arr.json");
        std::fs::write(&arr, "[1]").unwrap();
        assert!(load_file(&arr).unwrap_err().message().contains("object"));
        let ok = dir.path().join("ok.json");
        std::fs::write(&ok, r#"{"driver":"sim","verify_tls_certificate":false,"disk_size_gb":8}"#).unwrap();
        let s = load_file(&ok).unwrap();
        assert_eq!(s.str("driver").as_deref(), Some("sim"));
        assert_eq!(s.bool("verify_tls_certificate").unwrap(), Some(false));
        assert_eq!(s.u64("disk_size_gb").unwrap(), Some(8));
    }
}
