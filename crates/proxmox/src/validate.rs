//! Every value that ends up inside a Proxmox **property string** (`net0`, `ide2`, `scsi0`,
//! tags) or a path segment is checked here against the PVE schema's formats before any
//! request is made. A comma or `=` in a bridge name would otherwise add options of its own
//! choosing (`vmbr0,link_down=1,rate=1`). Invalid values are `InvalidInput` errors that
//! name the setting or field; values are echoed only capped (they come from platforms).

use polyvisor_core::{Error, Result};

/// A value for messages: at most 64 characters, control characters replaced.
pub fn shown(v: &str) -> String {
    let mut s: String = v.chars().take(64).map(|c| if c.is_control() { '?' } else { c }).collect();
    if v.chars().count() > 64 {
        s.push('…');
    }
    s
}

fn all(v: &str, ok: impl Fn(char) -> bool) -> bool {
    !v.is_empty() && v.chars().all(ok)
}

/// `pve-bridge-id`: letters, digits, `-`, `_`, `.`.
pub fn bridge(v: &str, what: &str) -> Result<()> {
    if all(v, |c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) && v.len() <= 64 {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{what} '{}' is not a valid Proxmox bridge name (letters, digits, '-', '_', '.')",
            shown(v)
        )))
    }
}

fn is_storage_id(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() >= 2
        && b.len() <= 64
        && b[0].is_ascii_alphabetic()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// `pve-storage-id`: a letter, then letters, digits, `-`, `_`, `.`, ending alphanumeric.
pub fn storage_id(v: &str, what: &str) -> Result<()> {
    if is_storage_id(v) {
        Ok(())
    } else {
        Err(Error::invalid(format!("{what} '{}' is not a valid Proxmox storage id", shown(v))))
    }
}

/// `pve-volume-id` (`storage:path`), restricted to characters that cannot break out of a
/// property string: letters, digits, `.`, `_`, `-`, `+`, `/` (no `..` segments).
pub fn volume_id(v: &str, what: &str) -> Result<()> {
    let ok = match v.split_once(':') {
        Some((store, rest)) => {
            is_storage_id(store)
                && all(rest, |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+' | '/'))
                && !rest.starts_with('/')
                && !rest.split('/').any(|seg| seg == ".." || seg.is_empty())
                && v.len() <= 255
        }
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{what} '{}' is not a Proxmox volume id (storage:path, e.g. local:iso/debian.iso)",
            shown(v)
        )))
    }
}

/// `pve-node`: a DNS label.
pub fn node(v: &str, what: &str) -> Result<()> {
    let b = v.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!("{what} '{}' is not a valid Proxmox node name", shown(v))))
    }
}

/// `pve-poolid`: up to three `/`-separated levels of letters, digits, `.`, `-`, `_`.
pub fn pool(v: &str, what: &str) -> Result<()> {
    let parts: Vec<&str> = v.split('/').collect();
    if parts.len() <= 3 && parts.iter().all(|p| all(p, |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))) {
        Ok(())
    } else {
        Err(Error::invalid(format!("{what} '{}' is not a valid Proxmox pool id", shown(v))))
    }
}

/// The `ostype` enum of the PVE schema.
pub const OS_TYPES: [&str; 13] =
    ["other", "wxp", "w2k", "w2k3", "w2k8", "wvista", "win7", "win8", "win10", "win11", "l24", "l26", "solaris"];

/// `ostype`: one of [`OS_TYPES`].
pub fn os_type(v: &str, what: &str) -> Result<()> {
    if OS_TYPES.contains(&v) {
        Ok(())
    } else {
        Err(Error::invalid(format!("{what} '{}' is not a Proxmox OS type ({})", shown(v), OS_TYPES.join(", "))))
    }
}

/// A NIC VLAN tag (`tag`, 1–4094).
pub fn vlan(tag: u32, what: &str) -> Result<()> {
    if (1..=4094).contains(&tag) {
        Ok(())
    } else {
        Err(Error::invalid(format!("{what} VLAN {tag} is outside 1-4094")))
    }
}

/// `pve-tag`.
pub fn tag(v: &str) -> Result<()> {
    let mut cs = v.chars();
    let ok = cs.next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && cs.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!("tag '{}' is not a valid Proxmox tag", shown(v))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn property_string_breakouts_are_refused() {
        // Regression (issue 9 item 5): this bridge was pasted into net0 and applied.
        assert!(bridge("vmbr0,link_down=1,rate=1", "setting 'network_bridge'").is_err());
        for bad in ["", "vmbr0 ", "vm=br", "a;b", "vmbr0\n"] {
            assert!(bridge(bad, "b").is_err(), "{bad:?}");
        }
        for ok in ["vmbr0", "vmbr0.100", "br_lab-1"] {
            bridge(ok, "b").unwrap();
        }
        for bad in ["local-lvm,size=1", "1local", "a", "local-", "lo cal"] {
            assert!(storage_id(bad, "s").is_err(), "{bad:?}");
        }
        storage_id("local-lvm", "s").unwrap();
        for bad in [
            "local:iso/debian.iso,media=disk",
            "local:iso/x.iso,file=/etc/shadow",
            "/var/lib/vz/template/iso/x.iso",
            "local:../../etc/passwd",
            "local:iso/a b.iso",
            "debian.iso",
        ] {
            assert!(volume_id(bad, "iso").is_err(), "{bad:?}");
        }
        volume_id("local:iso/debian-12.5.0-amd64+netinst.iso", "iso").unwrap();
        assert!(node("pve1,x", "n").is_err() && node("-pve", "n").is_err());
        node("pve1", "n").unwrap();
        assert!(pool("a,b", "p").is_err() && pool("a/b/c/d", "p").is_err());
        pool("lab/ci", "p").unwrap();
        assert!(os_type("l26,foo=1", "o").is_err());
        os_type("win11", "o").unwrap();
        assert!(vlan(0, "nic").is_err() && vlan(4095, "nic").is_err());
        vlan(4094, "nic").unwrap();
        assert!(tag("a;b").is_err() && tag("-a").is_err());
        tag("pvkey-69").unwrap();
        let long = "x".repeat(1_000_000);
        assert!(bridge(&long, "b").unwrap_err().message().len() < 200, "echo is capped");
    }
}
