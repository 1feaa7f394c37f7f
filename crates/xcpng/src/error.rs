//! [`XapiError`]: every XAPI failure, classified **once**, where the answer is parsed.
//!
//! Sources: a JSON-RPC error (`{"message": CODE, "data": [params]}` in 2.0, `[CODE, params…]`
//! in 1.0), a failed task's `error_info` (the same list), or the transport. [`XapiError::from_codes`]
//! is the only place that looks at XAPI error codes; everything else matches on variants.
//! At the `Driver` boundary an `XapiError` becomes a [`polyvisor_core::Error`] that keeps it as
//! its typed source (`e.source_as::<XapiError>()`).

use polyvisor_core::{Error, ErrorKind};
use polyvisor_http::TransportError;

/// A classified XAPI failure.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum XapiError {
    /// `SESSION_INVALID`: the session expired or was logged out (the client logs in again once).
    #[error("XAPI session is no longer valid")]
    SessionInvalid,
    /// `SESSION_AUTHENTICATION_FAILED`, `RBAC_PERMISSION_DENIED`, `USER_IS_NOT_LOCAL_SUPERUSER`...
    #[error("XAPI refused the credentials or the permission ({code})")]
    Auth {
        /// The XAPI code.
        code: String,
    },
    /// `HOST_IS_SLAVE [master address]`: talk to the pool master instead.
    #[error("this host is a pool member, not the master (master: {master})")]
    HostIsSlave {
        /// The master's address as XAPI reports it.
        master: String,
    },
    /// `HANDLE_INVALID` / `UUID_INVALID`: the object does not exist (any more).
    #[error("{class} {id} does not exist")]
    NoSuchObject {
        /// XAPI class (`VM`, `task`, ...).
        class: String,
        /// The reference or uuid that was not found.
        id: String,
    },
    /// `VM_BAD_POWER_STATE [vm, expected, actual]`.
    #[error("the VM is {actual}, the operation needs it {expected}")]
    BadPowerState {
        /// What the operation needs.
        expected: String,
        /// What the VM is.
        actual: String,
    },
    /// `VM_IS_TEMPLATE`: the operation is not possible on a template or snapshot.
    #[error("the operation is not possible on a template")]
    IsTemplate,
    /// `OPERATION_NOT_ALLOWED`, `OTHER_OPERATION_IN_PROGRESS`, `VDI_IN_USE`, `MAP_DUPLICATE_KEY`, ...
    #[error("XAPI refused the operation in the object's current state ({code}{})", detail(params))]
    NotAllowed {
        /// The XAPI code.
        code: String,
        /// Its parameters (no secrets: XAPI never echoes passwords).
        params: Vec<String>,
    },
    /// `VALUE_NOT_SUPPORTED`, `MEMORY_CONSTRAINT_VIOLATION`, `INVALID_VALUE`, `FIELD_TYPE_ERROR`.
    #[error("XAPI rejected a value ({code}{})", detail(params))]
    InvalidValue {
        /// The XAPI code.
        code: String,
        /// Its parameters.
        params: Vec<String>,
    },
    /// `MESSAGE_METHOD_UNKNOWN` / `MESSAGE_PARAMETER_COUNT_MISMATCH`: the host's API lacks
    /// the message (an older XAPI).
    #[error("this XAPI does not know the call ({code}{})", detail(params))]
    UnknownMessage {
        /// The XAPI code.
        code: String,
        /// Its parameters.
        params: Vec<String>,
    },
    /// `SR_FULL`, `HOST_NOT_ENOUGH_FREE_MEMORY`...: the pool lacks resources.
    #[error("the pool lacks resources ({code})")]
    NoResources {
        /// The XAPI code.
        code: String,
    },
    /// A task that was cancelled.
    #[error("the XAPI task was cancelled")]
    Cancelled,
    /// Any other XAPI error code.
    #[error("XAPI error {code}{}", detail(params))]
    Other {
        /// The XAPI code.
        code: String,
        /// Its parameters.
        params: Vec<String>,
    },
    /// Certificate checking failed. Never retried.
    #[error("TLS verification of XAPI at {host} failed ({reason}); {hint}")]
    Tls {
        /// `host:port`.
        host: String,
        /// rustls's reason.
        reason: String,
        /// Which settings fix it.
        hint: String,
    },
    /// No TCP connection.
    #[error("XAPI at {host} is unreachable")]
    Unreachable {
        /// `host:port`.
        host: String,
    },
    /// The connection broke mid-exchange.
    #[error("connection to XAPI at {host} failed")]
    Transport {
        /// `host:port`.
        host: String,
    },
    /// No answer within the request budget.
    #[error("XAPI at {host} did not answer in time")]
    Timeout {
        /// `host:port`.
        host: String,
    },
    /// An answer we cannot use (not JSON-RPC, a result of the wrong type, an HTTP error status).
    #[error("{0}")]
    BadAnswer(String),
}

fn detail(params: &[String]) -> String {
    let shown: Vec<String> = params.iter().filter(|p| !p.starts_with("OpaqueRef:")).take(4).map(|p| short(p)).collect();
    if shown.is_empty() {
        String::new()
    } else {
        format!(": {}", shown.join(", "))
    }
}

fn short(s: &str) -> String {
    let t: String = s.chars().filter(|c| !c.is_control()).take(120).collect();
    t
}

impl XapiError {
    /// Classifies an XAPI error list `[CODE, params…]` (the JSON-RPC error or a task's
    /// `error_info`): the one place that reads XAPI error codes.
    pub fn from_codes(code: &str, params: Vec<String>) -> XapiError {
        let p = |i: usize| params.get(i).cloned().unwrap_or_default();
        match code {
            "SESSION_INVALID" => XapiError::SessionInvalid,
            "SESSION_AUTHENTICATION_FAILED"
            | "RBAC_PERMISSION_DENIED"
            | "USER_IS_NOT_LOCAL_SUPERUSER"
            | "PERMISSION_DENIED" => XapiError::Auth { code: code.into() },
            "HOST_IS_SLAVE" => XapiError::HostIsSlave { master: p(0) },
            "HANDLE_INVALID" | "UUID_INVALID" => XapiError::NoSuchObject { class: p(0), id: p(1) },
            "VM_BAD_POWER_STATE" => XapiError::BadPowerState { expected: p(1), actual: p(2) },
            "VM_IS_TEMPLATE" => XapiError::IsTemplate,
            "OPERATION_NOT_ALLOWED"
            | "OTHER_OPERATION_IN_PROGRESS"
            | "VDI_IN_USE"
            | "MAP_DUPLICATE_KEY"
            | "DEVICE_ALREADY_EXISTS"
            | "VM_HAS_PCI_ATTACHED"
            | "OPERATION_BLOCKED" => XapiError::NotAllowed { code: code.into(), params },
            "VALUE_NOT_SUPPORTED" | "MEMORY_CONSTRAINT_VIOLATION" | "INVALID_VALUE" | "FIELD_TYPE_ERROR" => {
                XapiError::InvalidValue { code: code.into(), params }
            }
            "MESSAGE_METHOD_UNKNOWN" | "MESSAGE_PARAMETER_COUNT_MISMATCH" => {
                XapiError::UnknownMessage { code: code.into(), params }
            }
            "SR_FULL" | "HOST_NOT_ENOUGH_FREE_MEMORY" | "NO_HOSTS_AVAILABLE" => {
                XapiError::NoResources { code: code.into() }
            }
            "TASK_CANCELLED" => XapiError::Cancelled,
            _ => XapiError::Other { code: code.into(), params },
        }
    }

    /// Classifies a JSON error value: `{"message": CODE, "data": [...]}` (2.0) or `[CODE, ...]` (1.0).
    pub fn from_json(err: &serde_json::Value) -> XapiError {
        let as_strings = |v: &serde_json::Value| -> Vec<String> {
            v.as_array()
                .map(|a| a.iter().map(|x| x.as_str().map(str::to_string).unwrap_or_else(|| x.to_string())).collect())
                .unwrap_or_default()
        };
        if let Some(code) = err.get("message").and_then(|m| m.as_str()) {
            return XapiError::from_codes(code, err.get("data").map(as_strings).unwrap_or_default());
        }
        let mut list = as_strings(err);
        if list.is_empty() {
            return XapiError::BadAnswer("XAPI answered with an unreadable error".into());
        }
        let code = list.remove(0);
        XapiError::from_codes(&code, list)
    }

    /// A transport failure (classified by `polyvisor-http` from the source chain).
    pub fn from_transport(t: TransportError, host: &str, tls_hint: String) -> XapiError {
        let host = host.to_string();
        match t {
            TransportError::Tls { reason } => XapiError::Tls { host, reason, hint: tls_hint },
            TransportError::Timeout => XapiError::Timeout { host },
            TransportError::Connect => XapiError::Unreachable { host },
            TransportError::Broken => XapiError::Transport { host },
        }
    }

    /// The core kind (what the caller can do).
    pub fn kind(&self) -> ErrorKind {
        use XapiError::*;
        match self {
            SessionInvalid | Auth { .. } | Tls { .. } => ErrorKind::Unauthorized,
            HostIsSlave { .. } | Unreachable { .. } | Transport { .. } => ErrorKind::Unavailable,
            NoSuchObject { .. } => ErrorKind::NotFound,
            BadPowerState { .. } | IsTemplate | NotAllowed { .. } => ErrorKind::Conflict,
            InvalidValue { .. } => ErrorKind::InvalidInput,
            UnknownMessage { .. } => ErrorKind::Unsupported,
            Timeout { .. } => ErrorKind::Timeout,
            NoResources { .. } | Cancelled | Other { .. } | BadAnswer(_) => ErrorKind::Backend,
        }
    }

    /// Whether an idempotent (read) call may be retried: transport failures but TLS.
    pub fn retryable(&self) -> bool {
        matches!(self, XapiError::Unreachable { .. } | XapiError::Transport { .. } | XapiError::Timeout { .. })
    }

    /// The typed XAPI cause of a core error, if it has one.
    pub fn of(e: &Error) -> Option<&XapiError> {
        e.source_as::<XapiError>()
    }
}

impl From<XapiError> for Error {
    fn from(e: XapiError) -> Error {
        Error::new(e.kind(), e.to_string()).with_source(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn codes_are_classified_once_into_kinds() {
        let e = XapiError::from_json(
            &json!({"code": 1, "message": "VM_BAD_POWER_STATE", "data": ["OpaqueRef:1", "halted", "running"]}),
        );
        assert_eq!(e, XapiError::BadPowerState { expected: "halted".into(), actual: "running".into() });
        assert_eq!(e.kind(), ErrorKind::Conflict);
        // JSON-RPC 1.0 form.
        let e = XapiError::from_json(&json!(["HOST_IS_SLAVE", "10.0.0.1"]));
        assert_eq!(e, XapiError::HostIsSlave { master: "10.0.0.1".into() });
        for (code, kind) in [
            ("SESSION_INVALID", ErrorKind::Unauthorized),
            ("SESSION_AUTHENTICATION_FAILED", ErrorKind::Unauthorized),
            ("HANDLE_INVALID", ErrorKind::NotFound),
            ("UUID_INVALID", ErrorKind::NotFound),
            ("VM_IS_TEMPLATE", ErrorKind::Conflict),
            ("OPERATION_NOT_ALLOWED", ErrorKind::Conflict),
            ("MEMORY_CONSTRAINT_VIOLATION", ErrorKind::InvalidInput),
            ("MESSAGE_METHOD_UNKNOWN", ErrorKind::Unsupported),
            ("SR_FULL", ErrorKind::Backend),
            ("SOMETHING_NEW", ErrorKind::Backend),
        ] {
            assert_eq!(XapiError::from_codes(code, vec![]).kind(), kind, "{code}");
        }
        let core: Error = XapiError::from_codes("UUID_INVALID", vec!["VM".into(), "abc".into()]).into();
        assert!(core.is_not_found());
        assert!(matches!(XapiError::of(&core), Some(XapiError::NoSuchObject { .. })));
        assert!(XapiError::from_json(&json!(null)).to_string().contains("unreadable"));
    }

    #[test]
    fn messages_hide_references_and_bound_parameters() {
        let e = XapiError::from_codes("SOMETHING", vec!["OpaqueRef:abc".into(), "x".repeat(500)]);
        let m = e.to_string();
        assert!(!m.contains("OpaqueRef") && m.len() < 200, "{m}");
    }
}
