//! Kubernetes object names for what platforms name freely (guests, snapshots).

use sha2::{Digest, Sha256};

/// A DNS-1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters (VM and namespace names).
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// The VM object name for a platform guest name: the name itself when it is a DNS-1123 label,
/// else its lower-cased form with other characters replaced by `-` and a short hash of the
/// original (so `Web_01` and `web-01` stay distinct). `None` when nothing usable remains.
pub fn vm_object_name(display: &str) -> Option<String> {
    if is_dns_label(display) {
        return Some(display.to_string());
    }
    let base = sanitize(display, 50);
    if base.is_empty() {
        return None;
    }
    Some(format!("{base}-{}", short_hash(display)))
}

/// The `VirtualMachineSnapshot` name for snapshot `name` of VM `vm`: deterministic, so a
/// snapshot is found by name without a list (`<vm>-<name>-<hash>`, ≤ 63 characters).
pub fn snapshot_object_name(vm: &str, name: &str) -> String {
    let hash = short_hash(&format!("{vm}\n{name}"));
    let mut base = sanitize(&format!("{vm}-{name}"), 63 - 1 - hash.len());
    if base.is_empty() {
        base = "snap".into();
    }
    format!("{base}-{hash}")
}

fn sanitize(s: &str, max: usize) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.truncate(max);
    out.trim_matches('-').to_string()
}

fn short_hash(s: &str) -> String {
    let d = Sha256::digest(s.as_bytes());
    d[..4].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_valid_labels() {
        assert!(is_dns_label("pvc12345h1"));
        assert!(!is_dns_label("Web_01") && !is_dns_label("-a") && !is_dns_label(""));
        assert_eq!(vm_object_name("web-01").as_deref(), Some("web-01"));
        let a = vm_object_name("Web_01").unwrap();
        assert!(is_dns_label(&a) && a.starts_with("web-01-"), "{a}");
        assert_ne!(a, vm_object_name("web_01").unwrap());
        assert_eq!(vm_object_name("___"), None);
        let long = "x".repeat(200);
        for s in [
            snapshot_object_name("vm", "Version 1"),
            snapshot_object_name(&long, &long),
            snapshot_object_name("v", "!!"),
        ] {
            assert!(is_dns_label(&s), "{s}");
        }
        assert_ne!(snapshot_object_name("a", "b-c"), snapshot_object_name("a-b", "c"));
    }
}
