//! UPIDs: `UPID:<node>:<pid>:<pstart>:<starttime>:<type>:<id>:<user>:`.

use polyvisor_core::{Error, Result};

/// A validated UPID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upid {
    /// The full string (trailing colon included).
    pub raw: String,
    /// The node that runs the task (`split(':')[1]`).
    pub node: String,
}

impl Upid {
    /// Parses and validates (`UPID:` prefix, ≥ 8 fields, non-empty node).
    pub fn parse(raw: &str) -> Result<Upid> {
        let raw = raw.trim();
        let fields: Vec<&str> = raw.split(':').collect();
        if fields.first() != Some(&"UPID") || fields.len() < 8 || fields[1].is_empty() {
            return Err(Error::backend("Proxmox returned a malformed task id"));
        }
        Ok(Upid { raw: raw.to_string(), node: fields[1].to_string() })
    }

    /// The task's start time (Unix seconds, PVE's clock), from the hex `starttime` field.
    pub fn starttime(&self) -> Option<u64> {
        u64::from_str_radix(self.raw.split(':').nth(4)?, 16).ok()
    }

    /// `/nodes/{node}/tasks/{urlencoded upid}/status`.
    pub fn status_path(&self) -> String {
        format!("/nodes/{}/tasks/{}/status", enc(&self.node), urlencoding::encode(&self.raw))
    }
}

/// URL-encodes one path segment.
pub fn enc(s: &str) -> String {
    urlencoding::encode(s).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_encodes() {
        let u = Upid::parse("UPID:pve1:000A1B2C:0123ABCD:65F0A1B2:qmclone:101:root@pam!automation:").unwrap();
        assert_eq!(u.node, "pve1");
        assert_eq!(u.status_path(), "/nodes/pve1/tasks/UPID%3Apve1%3A000A1B2C%3A0123ABCD%3A65F0A1B2%3Aqmclone%3A101%3Aroot%40pam%21automation%3A/status");
        for bad in ["", "UPID:pve1:vncproxy:100:", "XPID:a:b:c:d:e:f:g:", "UPID::1:2:3:4:5:6:"] {
            assert!(Upid::parse(bad).is_err(), "{bad}");
        }
    }
}
