//! [`OsError`]: every OpenStack failure, classified **once**, where the answer is parsed.
//!
//! Sources: an HTTP error answer ([`from_response`]: the status code, then the fault name
//! of Nova's `{"<faultName>": {"code", "message"}}` body — never the message text), or the
//! transport ([`OsError::from_transport`]). At the `Driver` boundary an `OsError` becomes a
//! [`polyvisor_core::Error`] that keeps it as its typed source
//! (`e.source_as::<OsError>()`).

use polyvisor_core::{Error, ErrorKind};
use polyvisor_http::TransportError;
use serde_json::Value;

/// A classified OpenStack failure. The `String`s are the service's own (shortened) text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OsError {
    /// 404 (`itemNotFound`): the server, image, port or flavor does not exist.
    #[error("{0}")]
    NotFound(String),
    /// 409 (`conflictingRequest`): the object is in a state that forbids the action
    /// (`Cannot 'stop' instance ... while it is in task_state powering-on`).
    #[error("{0}")]
    Conflict(String),
    /// 400 (`badRequest`) or 422: the request was refused as invalid.
    #[error("{0}")]
    BadRequest(String),
    /// 401 (token missing, expired or revoked; a bad password at login).
    #[error("{0}")]
    Unauthorized(String),
    /// 403 (`forbidden`): policy refuses the call for these credentials.
    #[error("{0}")]
    Forbidden(String),
    /// 413 or 403 `overLimit`: a quota is exhausted.
    #[error("{0}")]
    OverLimit(String),
    /// 406 / 400 on `OpenStack-API-Version`: the microversion is not offered.
    #[error("{0}")]
    VersionNotSupported(String),
    /// 501 `HTTPNotImplemented`.
    #[error("{0}")]
    NotImplemented(String),
    /// 5xx: a transient server-side failure.
    #[error("{message}")]
    Unavailable {
        /// HTTP status.
        status: u16,
        /// The service's text or the reason phrase.
        message: String,
    },
    /// Certificate checking failed. Never retried.
    #[error("TLS verification of OpenStack {service} failed ({reason}); {hint}")]
    Tls {
        /// Which service (`identity`, `compute`, ...).
        service: String,
        /// rustls's reason.
        reason: String,
        /// Which settings fix it.
        hint: String,
    },
    /// No TCP connection.
    #[error("OpenStack {service} is unreachable")]
    Unreachable {
        /// Which service.
        service: String,
    },
    /// The connection broke mid-exchange.
    #[error("connection to OpenStack {service} failed")]
    Transport {
        /// Which service.
        service: String,
    },
    /// No answer within the request budget.
    #[error("OpenStack {service} did not answer in time")]
    Timeout {
        /// Which service.
        service: String,
    },
    /// The catalog has no endpoint for a service type on the configured interface/region.
    #[error("{0}")]
    NoEndpoint(String),
    /// An answer we cannot use (not JSON, a missing field).
    #[error("{0}")]
    BadAnswer(String),
    /// Anything else the service refused, with its status.
    #[error("{message}")]
    Other {
        /// HTTP status.
        status: u16,
        /// The service's text.
        message: String,
    },
}

impl OsError {
    /// The core kind (what the caller can do).
    pub fn kind(&self) -> ErrorKind {
        use OsError::*;
        match self {
            NotFound(_) => ErrorKind::NotFound,
            Conflict(_) => ErrorKind::Conflict,
            BadRequest(_) => ErrorKind::InvalidInput,
            Unauthorized(_) | Forbidden(_) | Tls { .. } => ErrorKind::Unauthorized,
            OverLimit(_) | Other { .. } | BadAnswer(_) => ErrorKind::Backend,
            VersionNotSupported(_) | NotImplemented(_) | NoEndpoint(_) => ErrorKind::Unsupported,
            Unavailable { .. } | Unreachable { .. } | Transport { .. } => ErrorKind::Unavailable,
            Timeout { .. } => ErrorKind::Timeout,
        }
    }

    /// Whether the same idempotent request may succeed when sent again.
    pub fn retryable(&self) -> bool {
        matches!(self, OsError::Unavailable { .. } | OsError::Unreachable { .. } | OsError::Transport { .. })
    }

    /// From a classified transport failure.
    pub fn from_transport(t: TransportError, service: &str, hint: String) -> OsError {
        let service = service.to_string();
        match t {
            TransportError::Tls { reason } => OsError::Tls { service, reason, hint },
            TransportError::Timeout => OsError::Timeout { service },
            TransportError::Connect => OsError::Unreachable { service },
            TransportError::Broken => OsError::Transport { service },
        }
    }

    /// The typed source of a core error, if it is one.
    pub fn of(e: &Error) -> Option<&OsError> {
        e.source_as::<OsError>()
    }
}

impl From<OsError> for Error {
    fn from(e: OsError) -> Error {
        Error::new(e.kind(), e.to_string()).with_source(e)
    }
}

/// Longest service message kept (bodies can be HTML pages or tracebacks).
const MAX_MESSAGE: usize = 300;

/// The service's message from an error body: Nova/Glance-v2-fault style
/// `{"<faultName>": {"message": ...}}`, Keystone `{"error": {"message"}}`, Neutron
/// `{"NeutronError": {"message"}}`, else the first line of a text body. Also the fault
/// name when there is one.
fn message_of(body: &[u8]) -> (Option<String>, Option<String>) {
    if let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(body) {
        if m.len() == 1 {
            if let Some((name, inner)) = m.iter().next() {
                let msg = inner.get("message").and_then(Value::as_str).map(str::to_string);
                return (Some(name.clone()), msg);
            }
        }
        let msg = m.get("message").and_then(Value::as_str).map(str::to_string);
        return (None, msg);
    }
    // Glance v2 answers errors as text/html: "<html><head><title>404 Not Found</title>...".
    let text = String::from_utf8_lossy(body);
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('<') && !l.starts_with("{"))
        .map(str::to_string);
    (None, line)
}

fn clip(s: String) -> String {
    let s = s.trim().to_string();
    if s.len() <= MAX_MESSAGE {
        return s;
    }
    let mut end = MAX_MESSAGE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// Classifies an HTTP error answer of `service` by status code and fault name.
pub fn from_response(service: &str, status: u16, body: &[u8]) -> OsError {
    let (fault, msg) = message_of(body);
    let message = clip(msg.unwrap_or_else(|| format!("OpenStack {service} answered HTTP {status}")));
    match (status, fault.as_deref()) {
        (404, _) => OsError::NotFound(message),
        (409, _) => OsError::Conflict(message),
        (401, _) => OsError::Unauthorized(message),
        (403, Some("overLimit")) | (413, _) => OsError::OverLimit(message),
        (403, _) => OsError::Forbidden(message),
        (406, _) => OsError::VersionNotSupported(message),
        (400 | 422, _) => OsError::BadRequest(message),
        (501, _) => OsError::NotImplemented(message),
        (500..=599, _) => OsError::Unavailable { status, message },
        _ => OsError::Other { status, message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nova_faults_are_classified_by_status_and_name() {
        let b = br#"{"conflictingRequest": {"code": 409, "message": "Cannot 'stop' instance 1 while it is in task_state powering-on"}}"#;
        let e = from_response("compute", 409, b);
        assert_eq!(e, OsError::Conflict("Cannot 'stop' instance 1 while it is in task_state powering-on".into()));
        assert_eq!(Error::from(e.clone()).kind(), ErrorKind::Conflict);
        let nf = from_response(
            "compute",
            404,
            br#"{"itemNotFound": {"code": 404, "message": "Instance x could not be found."}}"#,
        );
        assert_eq!(nf.kind(), ErrorKind::NotFound);
        let over = from_response("compute", 403, br#"{"overLimit": {"code": 403, "message": "Quota exceeded"}}"#);
        assert!(matches!(over, OsError::OverLimit(_)));
        let forb = from_response("compute", 403, br#"{"forbidden": {"code": 403, "message": "Policy doesn't allow"}}"#);
        assert_eq!(forb.kind(), ErrorKind::Unauthorized);
        let ks = from_response("identity", 401, br#"{"error": {"code": 401, "message": "The request you have made requires authentication.", "title": "Unauthorized"}}"#);
        assert_eq!(ks, OsError::Unauthorized("The request you have made requires authentication.".into()));
        let glance = from_response("image", 404, b"<html>\n <head>\n  <title>404 Not Found</title>\n </head>\n <body>\n  <h1>404 Not Found</h1>\n  No image found with ID x<br /><br />\n </body>\n</html>");
        assert_eq!(glance.kind(), ErrorKind::NotFound);
        let u = from_response("compute", 503, b"");
        assert!(u.retryable() && u.to_string().contains("503"));
        let core = Error::from(u);
        assert!(OsError::of(&core).is_some());
    }

    #[test]
    fn long_bodies_are_clipped() {
        let long = format!(r#"{{"badRequest": {{"message": "{}"}}}}"#, "x".repeat(5000));
        let e = from_response("compute", 400, long.as_bytes());
        assert!(e.to_string().len() < 400);
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }
}
