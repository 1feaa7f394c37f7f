//! Name validation and generated identities (UUIDs, MACs, volume names) for clones.

use polyvisor_core::{Error, Result};
use rand::Rng;

/// Checks a new domain name: 1–64 characters of `[A-Za-z0-9._-]`, not starting with
/// `.` or `-` (libvirt itself accepts more, but names also become volume file names).
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !name.starts_with(['.', '-']);
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid guest name '{}': use 1-64 characters A-Z a-z 0-9 . _ - (not starting with . or -)",
            name.escape_default()
        )))
    }
}

/// Checks a snapshot name: 1–64 printable characters without `/`, quotes, `<`, `>`, `&`
/// or control characters.
pub fn validate_snapshot_name(name: &str) -> Result<()> {
    let ok = !name.trim().is_empty()
        && name.chars().count() <= 64
        && name.chars().all(|c| !c.is_control() && !matches!(c, '/' | '\'' | '"' | '<' | '>' | '&' | '\\'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!("invalid snapshot name '{}'", name.escape_default())))
    }
}

/// Checks a libvirt network name from a platform: 1-64 characters of `[A-Za-z0-9._-]`.
pub fn validate_network_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid network name '{}'",
            name.chars().take(80).collect::<String>().escape_default()
        )))
    }
}

/// Checks that a guest id is a UUID in libvirt's canonical form (lower-case hex,
/// 8-4-4-4-12), so no other text reaches libvirt and no two spellings name one guest.
pub fn validate_uuid(id: &str) -> Result<()> {
    let b = id.as_bytes();
    let ok = b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
        });
    if ok {
        Ok(())
    } else {
        Err(Error::not_found(format!("guest [{}]", id.chars().take(40).collect::<String>().escape_default())))
    }
}

/// A random version-4 UUID string.
pub fn new_uuid() -> String {
    let mut b: [u8; 16] = rand::rng().random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// A random MAC in QEMU's locally administered `52:54:00` range, lower-case as libvirt writes it.
pub fn new_mac() -> String {
    let b: [u8; 3] = rand::rng().random();
    format!("52:54:00:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2])
}

/// Volume name for disk `index` of a clone called `name`.
pub fn clone_volume_name(name: &str, index: usize) -> String {
    if index == 0 {
        format!("{name}.qcow2")
    } else {
        format!("{name}-disk{index}.qcow2")
    }
}

/// File-name-safe rendering of a snapshot name plus a short hash of name and `version`
/// (the snapshot's creation time), so distinct names and re-created snapshots never collide.
pub fn snapshot_base_name(template_uuid: &str, disk_index: usize, snapshot: &str, version: &str) -> String {
    let safe: String = snapshot
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .take(32)
        .collect();
    let mut h: u32 = 2166136261;
    for b in snapshot.bytes().chain([0]).chain(version.bytes()) {
        h = (h ^ u32::from(b)).wrapping_mul(16777619);
    }
    let short = template_uuid.get(..8).unwrap_or(template_uuid);
    format!("pvbase-{short}-d{disk_index}-{safe}-{h:08x}.qcow2")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        for good in ["a", "web-01", "Host_2.lab", &"x".repeat(64)] {
            validate_name(good).unwrap();
        }
        for bad in ["", "-a", ".a", "a b", "a/b", "a\0b", "ä", &"x".repeat(65), "<x>"] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        validate_snapshot_name("v1 before update").unwrap();
        assert!(validate_snapshot_name("a/b").is_err());
        assert!(validate_snapshot_name("").is_err());
        assert!(validate_snapshot_name("x\0").is_err());
    }

    #[test]
    fn uuids_and_macs_are_well_formed_and_distinct() {
        let a = new_uuid();
        validate_uuid(&a).unwrap();
        assert_ne!(a, new_uuid());
        assert_eq!(a.as_bytes()[14], b'4');
        assert!(validate_uuid("1'; drop").is_err());
        assert!(validate_uuid("6695eb01-f6a4-8304-79aa-97f2502e193f").is_ok());
        // only the canonical spelling (issue 9: "0100", "+100", " 100" resolved to one guest)
        for other in [
            "6695EB01-F6A4-8304-79AA-97F2502E193F",
            "6695eb01f6a4830479aa97f2502e193f",
            " 6695eb01-f6a4-8304-79aa-97f2502e193f",
            "6695eb01-f6a4-8304-79aa-97f2502e193f ",
            "6695eb0-1f6a4-8304-79aa-97f2502e193f",
        ] {
            assert!(validate_uuid(other).is_err(), "{other:?}");
        }
        validate_network_name("tg-net").unwrap();
        for bad in ["", "a b", "net'x", "n<et", "a/b", &"n".repeat(65)] {
            assert!(validate_network_name(bad).is_err(), "{bad:?}");
        }
        let m = new_mac();
        assert!(m.starts_with("52:54:00:") && m.len() == 17, "{m}");
        assert!(polyvisor_core::net::normalize_mac(&m).is_some());
    }

    #[test]
    fn base_names_are_safe_and_distinct() {
        let a = snapshot_base_name("6695eb01-f6a4", 0, "v 1", "100");
        let b = snapshot_base_name("6695eb01-f6a4", 0, "v_1", "100");
        assert_ne!(a, b);
        assert_ne!(a, snapshot_base_name("6695eb01-f6a4", 0, "v 1", "101"), "re-created snapshot gets a new base");
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c)), "{a}");
        assert_eq!(clone_volume_name("c1", 0), "c1.qcow2");
        assert_eq!(clone_volume_name("c1", 2), "c1-disk2.qcow2");
    }
}
