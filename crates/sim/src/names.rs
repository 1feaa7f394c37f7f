//! Validation of names and ids that arrive from platforms.

use polyvisor_core::{Error, Result};

/// Longest guest name accepted.
pub(crate) const MAX_NAME: usize = 63;
/// Longest snapshot name accepted.
pub(crate) const MAX_SNAPSHOT_NAME: usize = 128;

/// A guest name: 1-63 letters, digits, `-`, `_`, `.`, starting with a letter or digit.
pub(crate) fn check_guest_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid guest name [{}]: use 1-{MAX_NAME} letters, digits, '-', '_' or '.', starting with a letter or digit",
            shown(name)
        )))
    }
}

/// A snapshot name: 1-128 printable characters without control characters.
pub(crate) fn check_snapshot_name(name: &str) -> Result<()> {
    let ok =
        !name.trim().is_empty() && name.chars().count() <= MAX_SNAPSHOT_NAME && !name.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid snapshot name [{}]: use 1-{MAX_SNAPSHOT_NAME} printable characters",
            shown(name)
        )))
    }
}

/// A guest id as the sim stores it (a positive integer); anything else cannot exist.
pub(crate) fn parse_id(id: &str) -> Result<i64> {
    id.trim().parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| Error::not_found(format!("guest [{}]", shown(id))))
}

/// Input echoed in an error message: bounded and free of control characters.
pub(crate) fn shown(s: &str) -> String {
    let mut out: String = s.chars().filter(|c| !c.is_control()).take(64).collect();
    if s.chars().count() > 64 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyvisor_core::ErrorKind;

    #[test]
    fn guest_names() {
        for ok in ["a", "web-01", "A_b.c", "9", &"x".repeat(63)] {
            assert!(check_guest_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", ".a", "_a", "a b", "a/b", "ä", &"x".repeat(64), "a\n"] {
            let e = check_guest_name(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad}");
        }
    }

    #[test]
    fn ids_and_snapshot_names() {
        assert_eq!(parse_id("100").unwrap(), 100);
        assert_eq!(parse_id("abc").unwrap_err().kind(), ErrorKind::NotFound);
        assert_eq!(parse_id("0").unwrap_err().message(), "guest [0] not found");
        assert!(check_snapshot_name("RAS_TEMPLATE_VERSION_1").is_ok());
        assert!(check_snapshot_name("before upgrade").is_ok());
        assert!(check_snapshot_name("  ").is_err());
        assert!(check_snapshot_name("a\u{7}").is_err());
        assert_eq!(shown(&"y".repeat(100)).chars().count(), 65);
    }
}
