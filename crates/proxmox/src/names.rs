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

/// Maps a platform snapshot name onto a valid `pve-configid` (letter first, then letters,
/// digits, `_`, `-`; 2–40 characters; not `current`/`pending`). Deterministic, so
/// exists/delete/revert find what create made. Names already valid are unchanged.
pub fn snapshot_name(raw: &str) -> Result<String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(Error::invalid("snapshot name is empty"));
    }
    let mut out: String =
        raw.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect();
    if !out.starts_with(|c: char| c.is_ascii_alphabetic()) {
        out.insert(0, 's');
    }
    if out.len() < 2 {
        out.push('_');
    }
    if out.eq_ignore_ascii_case("current") || out.eq_ignore_ascii_case("pending") {
        out.push('_');
    }
    Ok(out.chars().take(40).collect())
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
        assert_eq!(snapshot_name("1st").unwrap(), "s1st");
        assert_eq!(snapshot_name("current").unwrap(), "current_");
        assert_eq!(snapshot_name("a").unwrap(), "a_");
        assert_eq!(snapshot_name(&"x".repeat(60)).unwrap().len(), 40);
    }

    proptest! {
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
