//! PVE error bodies across versions → [`polyvisor_core::Error`].
//!
//! Extraction order (proxmox-api.md §11): body `message` → body `errors` (joined as
//! `param: text`) → HTTP reason phrase → status code. Classification by status, then by
//! PVE's wording.

use polyvisor_core::{Error, ErrorKind};
use serde_json::Value;

/// The human message of a PVE error answer.
pub fn extract_message(status: u16, reason: Option<&str>, body: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let message =
        parsed.as_ref().and_then(|v| v.get("message")).and_then(Value::as_str).map(clean).filter(|m| !m.is_empty());
    let errors = parsed.as_ref().and_then(|v| v.get("errors")).and_then(Value::as_object).map(|m| {
        m.iter()
            .map(|(k, v)| format!("{k}: {}", v.as_str().map(clean).unwrap_or_else(|| v.to_string())))
            .collect::<Vec<_>>()
            .join("; ")
    });
    let reason = reason.map(clean).filter(|r| !r.is_empty());
    match (message, errors) {
        (Some(m), Some(e)) if !e.is_empty() => format!("{m} ({e})"),
        (Some(m), _) => m,
        (None, Some(e)) if !e.is_empty() => match reason {
            Some(r) => format!("{r} ({e})"),
            None => e,
        },
        _ => reason.unwrap_or_else(|| format!("HTTP {status}")),
    }
}

fn clean(s: &str) -> String {
    s.trim().replace('\n', " ").split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The error kind for a PVE message (also used for in-task exit statuses).
pub fn classify_message(message: &str) -> ErrorKind {
    let m = message.to_ascii_lowercase();
    if m.contains("does not exist") || m.contains("no such") {
        ErrorKind::NotFound
    } else if m.contains("already exists") || m.contains("already used") {
        ErrorKind::AlreadyExists
    } else if is_lock_message(&m)
        || m.contains("is running")
        || m.contains("is a template")
        || m.contains("if it's a template")
    {
        ErrorKind::Conflict
    } else {
        ErrorKind::Backend
    }
}

/// Whether a message means "the VM config lock is held; retry later".
pub fn is_lock_message(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("is locked") || m.contains("can't lock file") || m.contains("got timeout")
}

/// Maps an HTTP error answer to our error (message without secrets: PVE never echoes them).
pub fn from_response(status: u16, reason: Option<&str>, body: &[u8]) -> Error {
    let msg = extract_message(status, reason, body);
    let kind = match status {
        401 | 403 => ErrorKind::Unauthorized,
        400 => ErrorKind::InvalidInput,
        408 | 502 | 503 | 504 | 595 | 596 => ErrorKind::Unavailable,
        501 => ErrorKind::Unsupported,
        _ => classify_message(&msg),
    };
    Error::new(kind, msg).with_detail(format!("HTTP {status}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_version_shape() {
        // PVE <= 8.3: only the reason phrase.
        let e = from_response(
            500,
            Some("Configuration file 'nodes/pve/qemu-server/101.conf' does not exist"),
            br#"{"data":null}"#,
        );
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.message().starts_with("Configuration file"));
        // PVE >= 8.4 / fakepve: body message with trailing newline.
        let e = from_response(
            500,
            Some("x"),
            b"{\"data\":null,\"message\":\"unable to create VM 103: config file already exists\\n\"}",
        );
        assert_eq!(e.kind(), ErrorKind::AlreadyExists);
        assert_eq!(e.message(), "unable to create VM 103: config file already exists");
        // Parameter errors.
        let e = from_response(
            400,
            Some("Parameter verification failed."),
            b"{\"errors\":{\"vmid\":\"invalid format - value does not look like a valid VM ID\\n\"},\"data\":null}",
        );
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert_eq!(
            e.message(),
            "Parameter verification failed. (vmid: invalid format - value does not look like a valid VM ID)"
        );
        let e = from_response(401, Some("authentication failure"), br#"{"data":null}"#);
        assert_eq!(e.kind(), ErrorKind::Unauthorized);
        // 595 with an empty body.
        let e = from_response(595, None, b"");
        assert_eq!((e.kind(), e.message()), (ErrorKind::Unavailable, "HTTP 595"));
        // HTML from a proxy.
        let e = from_response(502, Some("Bad Gateway"), b"<html>oops</html>");
        assert_eq!((e.kind(), e.message()), (ErrorKind::Unavailable, "Bad Gateway"));
        let e = from_response(500, None, b"{\"data\":null,\"message\":\"VM is locked (clone)\\n\"}");
        assert_eq!(e.kind(), ErrorKind::Conflict);
    }

    #[test]
    fn lock_wording() {
        assert!(is_lock_message("VM is locked (snapshot)"));
        assert!(is_lock_message("can't lock file '/var/lock/qemu-server/lock-101.conf' - got timeout"));
        assert!(!is_lock_message("VM 100 already running"));
    }
}
