//! Names Proxmox accepts: VM names are DNS names, snapshot names are `pve-configid`s.

use polyvisor_core::{Error, Result};

/// Makes a guest name DNS-valid: lower-case, invalid characters → `-`, no leading or
/// trailing `-`/`.`, at most 63 characters. Nothing usable left → `InvalidInput`.
pub fn dns_name(raw: &str) -> Result<String> {
    let mut out = String::new();
    for c in raw.trim().chars() {
        let c = c.to_ascii_lowercase();
        let c = if c.is_ascii_alphanumeric() || c == '.' { c } else { '-' };
        if (c == '-' || c == '.') && (out.ends_with('-') || out.ends_with('.')) {
            continue;
        }
        out.push(c);
    }
    let mut out: String = out.trim_matches(|c| c == '-' || c == '.').chars().take(63).collect();
    while out.ends_with('-') || out.ends_with('.') {
        out.pop();
    }
    if out.is_empty() || !out.chars().any(|c| c.is_ascii_alphanumeric()) {
        return Err(Error::invalid(format!(
            "guest name '{}' has no characters usable in a DNS name",
            raw.chars().take(80).collect::<String>()
        )));
    }
    Ok(out)
}

/// The RAS link-clone label, the one platform snapshot name that is not a `pve-configid`.
pub const LINK_LABEL: &str = "RAS Template Snapshot";
/// What [`LINK_LABEL`] is stored as (reserved: the literal name is refused, so the
/// mapping stays one-to-one).
pub const LINK_STORED: &str = "RAS_Template_Snapshot";

/// The Proxmox name of a platform snapshot name, **one-to-one**: a valid `pve-configid`
/// (letter first, then letters, digits, `_`, `-`; 2–40 characters; not `current`/`pending`)
/// is used unchanged, [`LINK_LABEL`] maps to [`LINK_STORED`], anything else is refused
/// (rewriting would let two names reach one snapshot: `a/../../x` used to become `a_______x`).
pub fn snapshot_name(raw: &str) -> Result<String> {
    if raw == LINK_LABEL {
        return Ok(LINK_STORED.to_string());
    }
    let b = raw.as_bytes();
    let valid = (2..=40).contains(&b.len())
        && b[0].is_ascii_alphabetic()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-'))
        && !raw.eq_ignore_ascii_case("current")
        && !raw.eq_ignore_ascii_case("pending")
        && raw != LINK_STORED;
    if valid {
        Ok(raw.to_string())
    } else {
        Err(Error::invalid(format!(
            "snapshot name '{}' is not usable on Proxmox: 2-40 letters, digits, '_' or '-', starting with a letter \
             (not 'current', 'pending' or '{LINK_STORED}')",
            crate::validate::shown(raw)
        )))
    }
}

/// The platform name of a stored snapshot (inverse of [`snapshot_name`]).
pub fn platform_snapshot_name(stored: &str) -> String {
    if stored == LINK_STORED {
        LINK_LABEL.to_string()
    } else {
        stored.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn dns_names() {
        assert_eq!(dns_name("Clone of 101").unwrap(), "clone-of-101");
        assert_eq!(dns_name("  RAS_Pool--VM_01 ").unwrap(), "ras-pool-vm-01");
        assert_eq!(dns_name("web.example.com").unwrap(), "web.example.com");
        assert_eq!(dns_name(&"a".repeat(80)).unwrap().len(), 63);
        assert!(dns_name("___").is_err());
        assert!(dns_name("").is_err());
    }

    #[test]
    fn snapshot_names() {
        assert_eq!(snapshot_name("RAS_TEMPLATE_VERSION_1").unwrap(), "RAS_TEMPLATE_VERSION_1");
        assert_eq!(snapshot_name("RAS Template Snapshot").unwrap(), "RAS_Template_Snapshot");
        assert_eq!(platform_snapshot_name("RAS_Template_Snapshot"), "RAS Template Snapshot");
        // Regression (issue 9): these were rewritten, so two names could reach one snapshot.
        for bad in ["a/../../x", "a_______x ", "1st", "current", "a", "RAS_Template_Snapshot", "x y", ""] {
            assert!(snapshot_name(bad).is_err(), "{bad:?}");
        }
        assert!(snapshot_name(&"x".repeat(41)).is_err());
        assert_eq!(snapshot_name("a_______x").unwrap(), "a_______x");
    }

    proptest! {
        #[test]
        fn snapshot_names_are_one_to_one(a in ".{0,45}", b in ".{0,45}") {
            if let (Ok(x), Ok(y)) = (snapshot_name(&a), snapshot_name(&b)) {
                prop_assert_eq!(x == y, a == b);
                prop_assert_eq!(platform_snapshot_name(&x), a);
            }
        }

        #[test]
        fn dns_names_are_valid(s in ".{0,100}") {
            if let Ok(n) = dns_name(&s) {
                prop_assert!(n.len() <= 63 && !n.is_empty());
                prop_assert!(n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.'));
                prop_assert!(!n.starts_with(['-', '.']) && !n.ends_with(['-', '.']));
            }
        }
    }
}
