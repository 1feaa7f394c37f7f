//! `AzError`: every failure of an ARM or token exchange, classified once where the response
//! is parsed (HTTP status + the ARM `error.code` / OAuth `error` field), converted to the
//! core [`polyvisor_core::Error`] at the driver boundary with the source kept.

use polyvisor_core::{Error, ErrorKind};
use polyvisor_http::TransportError;
use serde_json::Value;

/// A failed Azure exchange.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AzError {
    /// Below HTTP (TLS, connect, timeout, broken connection).
    #[error("Azure did not answer: {0}")]
    Transport(TransportError),
    /// The token endpoint refused the credentials (OAuth `error` code kept).
    #[error("Azure sign-in failed ({code})")]
    SignIn {
        /// OAuth error code (`invalid_client`, `unauthorized_client`, ...).
        code: String,
    },
    /// 401/403 from ARM (`AuthorizationFailed`, `InvalidAuthenticationToken`, ...).
    #[error("Azure refused the request ({code})")]
    Forbidden {
        /// ARM error code.
        code: String,
    },
    /// 404 (`ResourceNotFound`, `NotFound`, `ResourceGroupNotFound`).
    #[error("{what} not found ({code})")]
    NotFound {
        /// What was looked up.
        what: String,
        /// ARM error code.
        code: String,
    },
    /// 409 (`Conflict`, `OperationNotAllowed`, `PropertyChangeNotAllowed`, ...).
    #[error("Azure reported a conflict ({code}): {message}")]
    Conflict {
        /// ARM error code.
        code: String,
        /// ARM message.
        message: String,
    },
    /// 429 that outlived the bounded in-call retries.
    #[error("Azure is throttling requests (retry after {retry_after_secs} s)")]
    Throttled {
        /// `Retry-After` seconds.
        retry_after_secs: u64,
    },
    /// 400 (`InvalidParameter`, `BadRequest`, ...).
    #[error("Azure rejected the request ({code}): {message}")]
    BadRequest {
        /// ARM error code.
        code: String,
        /// ARM message.
        message: String,
    },
    /// 5xx.
    #[error("Azure failed with HTTP {status} ({code})")]
    Server {
        /// HTTP status.
        status: u16,
        /// ARM error code.
        code: String,
    },
    /// A long-running operation ended `Failed`/`Canceled`.
    #[error("Azure operation {status}: {code}: {message}")]
    OperationFailed {
        /// Terminal status.
        status: String,
        /// Error code.
        code: String,
        /// Message.
        message: String,
    },
    /// The configured credential cannot be used (certificate file unreadable, no RSA key).
    #[error("Azure credential: {0}")]
    Credential(String),
    /// An answer we cannot use (not JSON, missing fields, a foreign operation URL).
    #[error("unexpected Azure answer: {0}")]
    Protocol(String),
}

/// Shortens and strips control characters from a platform message.
fn clean(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(300).collect()
}

/// `(code, message)` of an ARM error body (`{"error": {"code", "message"}}`).
pub fn arm_error_fields(body: &Value) -> (String, String) {
    let e = body.get("error").unwrap_or(body);
    let code = e.get("code").and_then(Value::as_str).unwrap_or("Unknown");
    let msg = e.get("message").and_then(Value::as_str).unwrap_or("");
    (clean(code), clean(msg))
}

impl AzError {
    /// Classifies a non-success ARM response.
    pub fn from_arm(status: u16, body: &Value, what: &str) -> AzError {
        let (code, message) = arm_error_fields(body);
        match status {
            401 | 403 => AzError::Forbidden { code },
            404 => AzError::NotFound { what: what.to_string(), code },
            409 => AzError::Conflict { code, message },
            429 => AzError::Throttled { retry_after_secs: 0 },
            400..=499 => AzError::BadRequest { code, message },
            _ => AzError::Server { status, code },
        }
    }

    /// Classifies a non-success token endpoint response (OAuth `error`).
    pub fn from_token(status: u16, body: &Value) -> AzError {
        let code = body.get("error").and_then(Value::as_str).map(clean).unwrap_or_else(|| format!("HTTP {status}"));
        match status {
            429 => AzError::Throttled { retry_after_secs: 0 },
            500..=599 => AzError::Server { status, code },
            _ => AzError::SignIn { code },
        }
    }

    /// The core kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            AzError::Transport(TransportError::Tls { .. }) => ErrorKind::Unauthorized,
            AzError::Transport(TransportError::Timeout) => ErrorKind::Timeout,
            AzError::Transport(_) => ErrorKind::Unavailable,
            AzError::SignIn { .. } | AzError::Forbidden { .. } => ErrorKind::Unauthorized,
            AzError::Credential(_) => ErrorKind::InvalidInput,
            AzError::NotFound { .. } => ErrorKind::NotFound,
            AzError::Conflict { .. } => ErrorKind::Conflict,
            AzError::Throttled { .. } => ErrorKind::Unavailable,
            AzError::BadRequest { .. } => ErrorKind::InvalidInput,
            AzError::Server { .. } => ErrorKind::Unavailable,
            AzError::OperationFailed { .. } | AzError::Protocol(_) => ErrorKind::Backend,
        }
    }

    /// Whether this is a 404.
    pub fn is_not_found(&self) -> bool {
        matches!(self, AzError::NotFound { .. })
    }

    /// The `AzError` inside a core error, if any.
    pub fn of(e: &Error) -> Option<&AzError> {
        e.source_as::<AzError>()
    }
}

impl From<AzError> for Error {
    fn from(e: AzError) -> Error {
        Error::new(e.kind(), e.to_string()).with_source(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn classified_by_status_and_code() {
        let b = |c: &str| json!({"error": {"code": c, "message": "m\u{1b}x"}});
        assert_eq!(AzError::from_arm(404, &b("ResourceNotFound"), "vm a").kind(), ErrorKind::NotFound);
        assert_eq!(AzError::from_arm(409, &b("OperationNotAllowed"), "").kind(), ErrorKind::Conflict);
        assert_eq!(AzError::from_arm(403, &b("AuthorizationFailed"), "").kind(), ErrorKind::Unauthorized);
        assert_eq!(AzError::from_arm(400, &b("InvalidParameter"), "").kind(), ErrorKind::InvalidInput);
        assert_eq!(AzError::from_arm(503, &json!("x"), "").kind(), ErrorKind::Unavailable);
        assert_eq!(AzError::from_token(401, &json!({"error": "invalid_client"})).kind(), ErrorKind::Unauthorized);
        let e: Error = AzError::from_arm(409, &b("Conflict"), "").into();
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert!(!e.message().contains('\u{1b}'));
        assert!(matches!(AzError::of(&e), Some(AzError::Conflict { .. })));
    }
}
