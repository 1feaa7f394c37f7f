//! [`PveError`]: every Proxmox failure, classified **once**, where the answer is parsed.
//!
//! Sources: an HTTP error answer (status + PVE's error body, see [`from_response`]), a
//! failed task's exit status ([`from_task_exit`]), or the transport ([`PveError::from_transport`]).
//! [`classify`] is the only place in this crate that reads PVE's wording; everything else
//! matches on variants. At the `Driver` boundary a `PveError` becomes a
//! [`polyvisor_core::Error`] (kind + message) that keeps it as its typed source, so code
//! holding a core error can still ask `e.source_as::<PveError>()`.
//!
//! Extraction order of the message (proxmox-api.md §11): body `message` → body `errors`
//! (joined as `param: text`) → HTTP reason phrase → status code.

use polyvisor_core::{Error, ErrorKind};
use polyvisor_http::TransportError;
use serde_json::Value;

/// A classified Proxmox failure. The `String`s are PVE's own (cleaned) text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PveError {
    /// The VM's configuration file does not exist (wrong node, deleted, never existed).
    #[error("{0}")]
    VmNotFound(String),
    /// `snapshot 'x' does not exist`.
    #[error("{0}")]
    SnapshotNotFound(String),
    /// Another object (storage, volume, bridge, node) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// `VM 100 already running` (start of a running VM).
    #[error("{0}")]
    AlreadyRunning(String),
    /// The operation needs a stopped VM (`VM 100 is running - destroy failed`).
    #[error("{0}")]
    IsRunning(String),
    /// The operation needs a running VM (`VM 100 not running`).
    #[error("{0}")]
    NotRunning(String),
    /// The VM config is locked (`VM is locked (clone)`, `can't lock file … got timeout`): retry later.
    #[error("{0}")]
    Locked(String),
    /// The operation is not possible on a (native) template.
    #[error("{0}")]
    IsTemplate(String),
    /// VMID, snapshot or other name already taken.
    #[error("{0}")]
    AlreadyExists(String),
    /// HTTP 400 `Parameter verification failed.` (with the per-parameter reasons).
    #[error("{0}")]
    InvalidParameter(String),
    /// HTTP 401/403, a failed login or a login that needs two factors.
    #[error("{message}")]
    Auth {
        /// HTTP status (401 triggers one re-login with ticket auth).
        status: u16,
        /// What PVE or we said.
        message: String,
    },
    /// Certificate checking failed. Never retried.
    #[error("TLS verification of Proxmox at {host} failed ({reason}); {hint}")]
    Tls {
        /// `host:port`.
        host: String,
        /// rustls's reason.
        reason: String,
        /// Which settings fix it (names the key of the front in use).
        hint: String,
    },
    /// No TCP connection.
    #[error("Proxmox at {host} is unreachable")]
    Unreachable {
        /// `host:port`.
        host: String,
    },
    /// The connection broke mid-exchange.
    #[error("connection to Proxmox at {host} failed")]
    Transport {
        /// `host:port`.
        host: String,
    },
    /// No answer within the request budget.
    #[error("Proxmox at {host} did not answer in time")]
    Timeout {
        /// `host:port`.
        host: String,
    },
    /// Transient server-side failure (502/503/504/595/596, no quorum).
    #[error("{message}")]
    Unavailable {
        /// HTTP status.
        status: u16,
        /// PVE's text or the reason phrase.
        message: String,
    },
    /// HTTP 501.
    #[error("{0}")]
    NotImplemented(String),
    /// An answer we cannot use (not JSON, no task id where one is due).
    #[error("{0}")]
    BadAnswer(String),
    /// A setting that cannot be used on the wire (e.g. a token with header-invalid characters).
    #[error("{0}")]
    Config(String),
    /// Anything else PVE refused, with its status (0 for in-task failures).
    #[error("{message}")]
    Other {
        /// HTTP status, 0 for a failed task's exit status.
        status: u16,
        /// PVE's text.
        message: String,
    },
}

impl PveError {
    /// The core kind (what the caller can do).
    pub fn kind(&self) -> ErrorKind {
        use PveError::*;
        match self {
            VmNotFound(_) | SnapshotNotFound(_) | NotFound(_) => ErrorKind::NotFound,
            AlreadyRunning(_) | IsRunning(_) | NotRunning(_) | Locked(_) | IsTemplate(_) => ErrorKind::Conflict,
            AlreadyExists(_) => ErrorKind::AlreadyExists,
            InvalidParameter(_) | Config(_) => ErrorKind::InvalidInput,
            // A rejected server certificate is failed (server) authentication: fix trust settings.
            Auth { .. } | Tls { .. } => ErrorKind::Unauthorized,
            Unreachable { .. } | Transport { .. } | Unavailable { .. } => ErrorKind::Unavailable,
            Timeout { .. } => ErrorKind::Timeout,
            NotImplemented(_) => ErrorKind::Unsupported,
            BadAnswer(_) | Other { .. } => ErrorKind::Backend,
        }
    }

    /// Whether an idempotent request may be retried (never TLS).
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            PveError::Unreachable { .. }
                | PveError::Transport { .. }
                | PveError::Timeout { .. }
                | PveError::Unavailable { .. }
        )
    }

    /// Any "does not exist".
    pub fn is_not_found(&self) -> bool {
        self.kind() == ErrorKind::NotFound
    }

    /// The typed Proxmox cause of a core error, if it has one.
    pub fn of(e: &Error) -> Option<&PveError> {
        e.source_as::<PveError>()
    }

    /// A transport failure (classified by `polyvisor-http` from the source chain).
    pub fn from_transport(t: TransportError, host: &str, tls_hint: String) -> PveError {
        let host = host.to_string();
        match t {
            TransportError::Tls { reason } => PveError::Tls { host, reason, hint: tls_hint },
            TransportError::Timeout => PveError::Timeout { host },
            TransportError::Connect => PveError::Unreachable { host },
            TransportError::Broken => PveError::Transport { host },
        }
    }
}

impl From<PveError> for Error {
    fn from(e: PveError) -> Error {
        let detail = match &e {
            PveError::Auth { status, .. } | PveError::Unavailable { status, .. } | PveError::Other { status, .. } => {
                Some(format!("HTTP {status}"))
            }
            _ => None,
        };
        let err = Error::new(e.kind(), e.to_string()).with_source(e);
        match detail {
            Some(d) => err.with_detail(d),
            None => err,
        }
    }
}

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

/// The classification table: HTTP status first, then PVE's wording (status 0 = a failed
/// task's exit status). The one place that reads PVE message text.
pub fn classify(status: u16, message: String) -> PveError {
    match status {
        401 | 403 => return PveError::Auth { status, message },
        400 => return PveError::InvalidParameter(message),
        408 | 502 | 503 | 504 | 595 | 596 => return PveError::Unavailable { status, message },
        501 => return PveError::NotImplemented(message),
        _ => {}
    }
    let m = message.to_ascii_lowercase();
    let has = |s: &str| m.contains(s);
    if (has("configuration file") && has("does not exist"))
        || has("unable to find configuration file")
        || has("could not find vm")
    {
        PveError::VmNotFound(message)
    } else if has("snapshot '") && has("does not exist") {
        PveError::SnapshotNotFound(message)
    } else if has("is locked") || has("can't lock file") {
        PveError::Locked(message)
    } else if has("it's a template")
        || has("is a template")
        || has("template to a template")
        || has("from or to template")
        || has("for template")
    {
        PveError::IsTemplate(message)
    } else if has("already running") {
        PveError::AlreadyRunning(message)
    } else if has("not running") {
        PveError::NotRunning(message)
    } else if has("is running") {
        PveError::IsRunning(message)
    } else if has("does not exist") || has("no such") || has("can't find file") {
        PveError::NotFound(message)
    } else if has("already exists") || has("already used") || has("already in use") {
        PveError::AlreadyExists(message)
    } else if has("no quorum") {
        PveError::Unavailable { status, message }
    } else {
        PveError::Other { status, message }
    }
}

/// Maps an HTTP error answer (PVE never echoes secrets in it).
pub fn from_response(status: u16, reason: Option<&str>, body: &[u8]) -> PveError {
    classify(status, extract_message(status, reason, body))
}

/// Classifies a failed task's exit status (`OK`/`WARNINGS: n` are successes, not errors).
pub fn from_task_exit(exit: &str) -> PveError {
    classify(0, clean(exit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use PveError::*;

    fn c(msg: &str) -> PveError {
        classify(500, msg.to_string())
    }

    /// One line per real PVE message (wording from PVE 8.x/9.x, as fakepve reproduces it).
    #[test]
    fn every_real_pve_message_has_its_variant() {
        type Variant = fn(String) -> PveError;
        let table: &[(&str, Variant)] = &[
            ("Configuration file 'nodes/pve/qemu-server/101.conf' does not exist", VmNotFound),
            ("unable to find configuration file for VM 101 on node 'pve'", VmNotFound),
            ("could not find VM 101", VmNotFound),
            ("snapshot 's1' does not exist", SnapshotNotFound),
            ("storage 'fast' does not exist", NotFound),
            ("bridge 'vmbr9' does not exist", NotFound),
            ("volume 'local:iso/missing.iso' does not exist", NotFound),
            ("no such cluster node 'pve9'", NotFound),
            ("VM 100 already running", AlreadyRunning),
            ("CT 200 already running", AlreadyRunning),
            ("VM 100 not running", NotRunning),
            ("VM 100 is running - destroy failed", IsRunning),
            ("you can't convert a VM to template if VM is running", IsRunning),
            ("VM is locked (clone)", Locked),
            ("VM is locked (snapshot)", Locked),
            ("can't lock file '/var/lock/qemu-server/lock-101.conf' - got timeout", Locked),
            ("you can't take a snapshot if it's a template", IsTemplate),
            ("you can't delete a snapshot if vm is a template", IsTemplate),
            ("you can't rollback if vm is a template", IsTemplate),
            ("you can't convert a template to a template", IsTemplate),
            ("you can't start a vm if it's a template", IsTemplate),
            ("unable to create VM 103: config file already exists", AlreadyExists),
            ("VM 103 already exists on node 'pve1'", AlreadyExists),
            ("snapshot name 's1' already used", AlreadyExists),
            ("clone failed: storage full", |m| Other { status: 500, message: m }),
            ("VM 100 qmp command 'guest-ping' failed - got timeout", |m| Other { status: 500, message: m }),
            ("QEMU guest agent is not running", NotRunning),
        ];
        for (msg, variant) in table {
            assert_eq!(c(msg), variant(msg.to_string()), "{msg}");
        }
        assert_eq!(
            c("cluster not ready - no quorum?"),
            Unavailable { status: 500, message: "cluster not ready - no quorum?".into() }
        );
        // Status wins over wording.
        assert!(matches!(classify(401, "VM 100 not running".into()), Auth { status: 401, .. }));
        assert!(matches!(classify(400, "x".into()), InvalidParameter(_)));
        assert!(matches!(classify(595, "No route to host".into()), Unavailable { status: 595, .. }));
        assert!(matches!(classify(501, "Method 'POST /x' not implemented".into()), NotImplemented(_)));
        // Task exit statuses go through the same table.
        assert_eq!(
            from_task_exit("snapshot 's9' does not exist\n"),
            SnapshotNotFound("snapshot 's9' does not exist".into())
        );
        assert_eq!(from_task_exit("VM is locked (backup)"), Locked("VM is locked (backup)".into()));
    }

    #[test]
    fn kinds_retries_and_the_core_error_keeps_the_source() {
        assert!(!Tls { host: "h".into(), reason: "r".into(), hint: "x".into() }.retryable());
        assert!(Unavailable { status: 503, message: "x".into() }.retryable());
        assert!(!Locked("VM is locked (clone)".into()).retryable());
        let e: Error = Locked("VM is locked (clone)".into()).into();
        let e = e.context("Snapshot of guest [101] failed");
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert_eq!(e.message(), "Snapshot of guest [101] failed: VM is locked (clone)");
        assert!(matches!(PveError::of(&e), Some(Locked(_))), "context keeps the typed source");
    }

    #[test]
    fn every_version_shape() {
        // PVE <= 8.3: only the reason phrase.
        let e = from_response(
            500,
            Some("Configuration file 'nodes/pve/qemu-server/101.conf' does not exist"),
            br#"{"data":null}"#,
        );
        assert!(matches!(&e, VmNotFound(m) if m.starts_with("Configuration file")));
        // PVE >= 8.4 / fakepve: body message with trailing newline.
        let e = from_response(
            500,
            Some("x"),
            b"{\"data\":null,\"message\":\"unable to create VM 103: config file already exists\\n\"}",
        );
        assert_eq!(e, AlreadyExists("unable to create VM 103: config file already exists".into()));
        // Parameter errors.
        let e = from_response(
            400,
            Some("Parameter verification failed."),
            b"{\"errors\":{\"vmid\":\"invalid format - value does not look like a valid VM ID\\n\"},\"data\":null}",
        );
        assert_eq!(
            e,
            InvalidParameter(
                "Parameter verification failed. (vmid: invalid format - value does not look like a valid VM ID)".into()
            )
        );
        let e = from_response(401, Some("authentication failure"), br#"{"data":null}"#);
        assert_eq!(Error::from(e.clone()).kind(), ErrorKind::Unauthorized);
        assert_eq!(Error::from(e).detail(), Some("HTTP 401"));
        // 595 with an empty body.
        let e: Error = from_response(595, None, b"").into();
        assert_eq!((e.kind(), e.message()), (ErrorKind::Unavailable, "HTTP 595"));
        // HTML from a proxy.
        let e: Error = from_response(502, Some("Bad Gateway"), b"<html>oops</html>").into();
        assert_eq!((e.kind(), e.message()), (ErrorKind::Unavailable, "Bad Gateway"));
    }
}
