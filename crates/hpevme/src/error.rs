//! [`VmeError`]: every Morpheus failure, classified **once**, where the answer is parsed
//! ([`VmeError::from_response`]: HTTP status + the API's error body `msg`/`error_description`;
//! [`VmeError::from_transport`]). Nothing else in this crate reads the API's wording. At the
//! `Driver` boundary it becomes a [`polyvisor_core::Error`] that keeps it as typed source.

use polyvisor_core::{Error, ErrorKind};
use polyvisor_http::TransportError;
use serde_json::Value;

/// A classified Morpheus API failure. Strings are the API's own (shortened) message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VmeError {
    /// HTTP 401: the token is missing, expired or revoked (a password-grant client gets a new one once).
    #[error("authentication failed: {0}")]
    Unauthorized(String),
    /// HTTP 403 or a refused password grant.
    #[error("access denied: {0}")]
    Forbidden(String),
    /// HTTP 404: the instance, snapshot or process does not exist.
    #[error("{0}")]
    NotFound(String),
    /// HTTP 409/423: the object is busy or locked.
    #[error("{0}")]
    Conflict(String),
    /// HTTP 429 after the bounded back-off gave up.
    #[error("rate limited by HPE VM Essentials: {0}")]
    RateLimited(String),
    /// HTTP 400/422: the API refused the request (also `{"success": false}` on 200).
    #[error("{0}")]
    Refused(String),
    /// HTTP 5xx.
    #[error("server error {status}: {message}")]
    Server {
        /// HTTP status.
        status: u16,
        /// The API's message.
        message: String,
    },
    /// The exchange failed below HTTP (TLS, timeout, connect).
    #[error("{0}")]
    Transport(TransportError),
    /// A 2xx answer we cannot use (not JSON, a field missing).
    #[error("unexpected answer from HPE VM Essentials: {0}")]
    BadAnswer(String),
}

/// The API's message in a body (`msg`, OAuth `error_description`, `error`), at most 200 chars.
fn message_of(body: &Value) -> Option<String> {
    let raw = ["msg", "error_description", "error"].iter().find_map(|k| body.get(*k).and_then(Value::as_str))?;
    let clean: String = raw.chars().filter(|c| !c.is_control()).take(200).collect();
    (!clean.trim().is_empty()).then(|| clean.trim().to_string())
}

impl VmeError {
    /// Classifies an error answer (`status` ≥ 400) or a 2xx answer with `success: false`.
    pub fn from_response(status: u16, body: &Value) -> VmeError {
        let msg = message_of(body).unwrap_or_else(|| format!("HTTP {status}"));
        match status {
            401 => VmeError::Unauthorized(msg),
            403 => VmeError::Forbidden(msg),
            404 | 410 => VmeError::NotFound(msg),
            409 | 423 => VmeError::Conflict(msg),
            429 => VmeError::RateLimited(msg),
            500..=599 => VmeError::Server { status, message: msg },
            _ => VmeError::Refused(msg),
        }
    }

    /// From a `reqwest` failure (typed by `polyvisor-http`).
    pub fn from_transport(e: &reqwest::Error) -> VmeError {
        VmeError::Transport(polyvisor_http::classify(e))
    }

    /// The core kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            VmeError::Unauthorized(_) | VmeError::Forbidden(_) => ErrorKind::Unauthorized,
            VmeError::NotFound(_) => ErrorKind::NotFound,
            VmeError::Conflict(_) => ErrorKind::Conflict,
            VmeError::RateLimited(_) => ErrorKind::Unavailable,
            VmeError::Server { status: 502..=504, .. } => ErrorKind::Unavailable,
            VmeError::Server { .. } | VmeError::Refused(_) | VmeError::BadAnswer(_) => ErrorKind::Backend,
            VmeError::Transport(TransportError::Tls { .. }) => ErrorKind::Unauthorized,
            VmeError::Transport(TransportError::Timeout) => ErrorKind::Timeout,
            VmeError::Transport(_) => ErrorKind::Unavailable,
        }
    }

    /// The typed source of a core error, if it is one of ours.
    pub fn of(e: &Error) -> Option<&VmeError> {
        e.source_as::<VmeError>()
    }
}

impl From<VmeError> for Error {
    fn from(e: VmeError) -> Error {
        let message = match &e {
            VmeError::Transport(TransportError::Tls { reason }) => format!(
                "TLS verification of HPE VM Essentials failed ({reason}); check 'ca_file', 'fingerprint' or 'verify_tls'"
            ),
            VmeError::Transport(t) => format!("HPE VM Essentials: {t}"),
            other => other.to_string(),
        };
        Error::new(e.kind(), message).with_source(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn statuses_are_classified_once_with_the_api_message() {
        let e = VmeError::from_response(404, &json!({"msg": "Specified Resource Not Found"}));
        assert_eq!(e, VmeError::NotFound("Specified Resource Not Found".into()));
        assert_eq!(Error::from(e).kind(), ErrorKind::NotFound);
        for (status, kind) in [
            (401, ErrorKind::Unauthorized),
            (403, ErrorKind::Unauthorized),
            (409, ErrorKind::Conflict),
            (429, ErrorKind::Unavailable),
            (400, ErrorKind::Backend),
            (500, ErrorKind::Backend),
            (503, ErrorKind::Unavailable),
        ] {
            let err = Error::from(VmeError::from_response(status, &json!({})));
            assert_eq!(err.kind(), kind, "{status}");
            assert!(err.message().contains(&status.to_string()), "{status}: {}", err.message());
            assert!(VmeError::of(&err).is_some());
        }
        let oauth =
            VmeError::from_response(400, &json!({"error": "invalid_grant", "error_description": "Bad credentials"}));
        assert_eq!(oauth, VmeError::Refused("Bad credentials".into()));
        let long = VmeError::from_response(400, &json!({"msg": "x\u{1b}".repeat(500)}));
        assert!(long.to_string().len() <= 200 && !long.to_string().contains('\u{1b}'));
    }
}
