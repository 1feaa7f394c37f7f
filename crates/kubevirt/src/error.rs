//! The driver's typed error, classified ONCE where a response is parsed: by HTTP status and
//! the Kubernetes `Status.reason` (never by message text), converted to the core [`Error`] at
//! the `Driver` boundary with the source kept.

use polyvisor_core::{Error, ErrorKind};
use polyvisor_http::TransportError;

/// What went wrong talking to the Kubernetes API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// 401: the token is missing, wrong or expired.
    #[error("Kubernetes rejected the credentials (401 Unauthorized)")]
    Unauthenticated,
    /// 403: RBAC forbids the verb on the resource in the namespace.
    #[error("forbidden by RBAC: {message}")]
    Forbidden {
        /// The API server's message (names user, verb, resource, namespace).
        message: String,
    },
    /// 404: the object (or the API group, when KubeVirt is not installed) does not exist.
    #[error("{message}")]
    NotFound {
        /// The API server's message.
        message: String,
    },
    /// 409 `AlreadyExists`.
    #[error("{message}")]
    AlreadyExists {
        /// The API server's message.
        message: String,
    },
    /// 409 (`Conflict`: stale resourceVersion, or a subresource refusing the VM's state).
    #[error("{message}")]
    Conflict {
        /// The API server's message.
        message: String,
    },
    /// 400/422: the API server refused the object (schema, admission webhook).
    #[error("the API server rejected the request ({reason}): {message}")]
    Invalid {
        /// `Invalid`, `BadRequest`.
        reason: String,
        /// The API server's message.
        message: String,
    },
    /// 429/5xx: the API server or KubeVirt's API is overloaded or down.
    #[error("the Kubernetes API is unavailable ({status}): {message}")]
    Unavailable {
        /// HTTP status.
        status: u16,
        /// The API server's message.
        message: String,
    },
    /// Any other status.
    #[error("unexpected answer from the Kubernetes API ({status}): {message}")]
    Unexpected {
        /// HTTP status.
        status: u16,
        /// The API server's message.
        message: String,
    },
    /// Below HTTP: TLS, timeout, connect.
    #[error("{0}")]
    Transport(TransportError),
    /// The token file (projected service account token) cannot be read.
    #[error("the bearer token file cannot be read")]
    TokenFile,
    /// A 2xx body that does not parse as the expected kind.
    #[error("unreadable answer from the Kubernetes API: {0}")]
    Decode(String),
}

impl KvError {
    /// Classifies a non-2xx answer by its status code and the `Status` object's `reason`.
    pub fn from_status(status: u16, body: &[u8]) -> KvError {
        let st: Option<kube::core::Status> = serde_json::from_slice(body).ok();
        let reason = st.as_ref().map(|s| s.reason.clone()).unwrap_or_default();
        let message = st
            .as_ref()
            .map(|s| s.message.clone())
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| format!("HTTP {status}"));
        match status {
            401 => KvError::Unauthenticated,
            403 => KvError::Forbidden { message },
            404 => KvError::NotFound { message },
            409 if reason == "AlreadyExists" => KvError::AlreadyExists { message },
            409 => KvError::Conflict { message },
            400 | 422 => {
                KvError::Invalid { reason: if reason.is_empty() { status.to_string() } else { reason }, message }
            }
            429 | 500 | 502 | 503 | 504 => KvError::Unavailable { status, message },
            _ => KvError::Unexpected { status, message },
        }
    }

    /// The core kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            KvError::Unauthenticated | KvError::Forbidden { .. } | KvError::TokenFile => ErrorKind::Unauthorized,
            KvError::NotFound { .. } => ErrorKind::NotFound,
            KvError::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            KvError::Conflict { .. } => ErrorKind::Conflict,
            KvError::Invalid { .. } => ErrorKind::InvalidInput,
            KvError::Unavailable { .. } => ErrorKind::Unavailable,
            KvError::Unexpected { .. } | KvError::Decode(_) => ErrorKind::Backend,
            KvError::Transport(TransportError::Tls { .. }) => ErrorKind::Unauthorized,
            KvError::Transport(TransportError::Timeout) => ErrorKind::Timeout,
            KvError::Transport(_) => ErrorKind::Unavailable,
        }
    }

    /// Whether this is a 404.
    pub fn is_not_found(&self) -> bool {
        matches!(self, KvError::NotFound { .. })
    }
}

impl From<KvError> for Error {
    fn from(e: KvError) -> Error {
        let msg = match &e {
            KvError::Transport(TransportError::Tls { reason }) => {
                format!("TLS verification failed: {reason}; check 'ca_file', 'fingerprint' or 'verify_tls'")
            }
            KvError::Transport(TransportError::Timeout) => "the Kubernetes API did not answer in time".to_string(),
            KvError::Transport(TransportError::Connect) => "the Kubernetes API is unreachable".to_string(),
            KvError::Transport(TransportError::Broken) => "the connection to the Kubernetes API failed".to_string(),
            other => other.to_string(),
        };
        let kind = e.kind();
        Error::new(kind, msg).with_source(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, reason: &str, message: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
            "code": code, "reason": reason, "message": message}))
        .unwrap()
    }

    #[test]
    fn statuses_classify_by_code_and_reason() {
        let cases = [
            (401, "Unauthorized", ErrorKind::Unauthorized),
            (403, "Forbidden", ErrorKind::Unauthorized),
            (404, "NotFound", ErrorKind::NotFound),
            (409, "AlreadyExists", ErrorKind::AlreadyExists),
            (409, "Conflict", ErrorKind::Conflict),
            (422, "Invalid", ErrorKind::InvalidInput),
            (503, "ServiceUnavailable", ErrorKind::Unavailable),
            (418, "Teapot", ErrorKind::Backend),
        ];
        for (code, reason, kind) in cases {
            let e = KvError::from_status(code, &status(code, reason, "m"));
            assert_eq!(e.kind(), kind, "{code} {reason}");
            let core: Error = e.clone().into();
            assert_eq!(core.kind(), kind);
            assert_eq!(core.source_as::<KvError>(), Some(&e));
        }
        // A body that is no Status still classifies by code.
        assert_eq!(KvError::from_status(404, b"<html>").kind(), ErrorKind::NotFound);
    }
}
