//! [`HvError`]: every failure of the WinRM/PowerShell path, classified **once** where it is
//! parsed: HTTP status (401 → auth), a WS-Management SOAP fault (its subcode and
//! `WSManFault` code, see [`crate::wsman::Fault`]), or a PowerShell error record from the
//! command's CLIXML stderr (its `CategoryInfo` category, see [`crate::clixml::ErrorRecord`]).
//! At the `Driver` boundary it becomes a [`polyvisor_core::Error`] keeping it as typed source.

use crate::clixml::ErrorRecord;
use crate::wsman::Fault;
use polyvisor_core::{Error, ErrorKind};
use polyvisor_http::TransportError;

/// A classified Hyper-V / WinRM failure.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HvError {
    /// HTTP 401 after the NTLM/Basic exchange: user name or password refused.
    #[error("WinRM authentication failed for user '{user}' ({scheme}): check 'username' and 'password' (and that the account may use WinRM)")]
    AuthFailed {
        /// The account (never the password).
        user: String,
        /// `NTLM` or `Basic`.
        scheme: &'static str,
    },
    /// The NTLM handshake could not be completed (no or bad challenge).
    #[error("NTLM handshake failed: {0}")]
    Handshake(String),
    /// A WS-Management SOAP fault.
    #[error("WinRM fault {}: {}", .0.subcode, .0.reason)]
    Fault(Fault),
    /// A PowerShell error record (the script failed on the host).
    #[error("{}", .0.message)]
    Remote(ErrorRecord),
    /// The command did not finish within its bound (it was terminated).
    #[error("the remote command did not finish within {0} s (terminated)")]
    CommandTimeout(u64),
    /// The script exited non-zero without an error record.
    #[error("the remote command exited with code {code}: {stderr}")]
    Exit {
        /// Exit code.
        code: i64,
        /// The first stderr text (shortened).
        stderr: String,
    },
    /// HTTP status other than 200/401/500 (e.g. 400 for a malformed envelope, 503).
    #[error("WinRM answered HTTP {0}")]
    Http(u16),
    /// The exchange failed below HTTP (TLS, timeout, connect).
    #[error("{0}")]
    Transport(TransportError),
    /// A 200 answer we cannot use (not a WS-Man envelope, not JSON output).
    #[error("unexpected answer from the Hyper-V host: {0}")]
    BadAnswer(String),
}

impl HvError {
    /// From a `reqwest` failure (typed by `polyvisor-http`).
    pub fn from_transport(e: &reqwest::Error) -> HvError {
        HvError::Transport(polyvisor_http::classify(e))
    }

    /// The core kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            HvError::AuthFailed { .. } | HvError::Handshake(_) => ErrorKind::Unauthorized,
            HvError::Fault(f) => f.kind(),
            HvError::Remote(r) => r.kind(),
            HvError::CommandTimeout(_) => ErrorKind::Timeout,
            HvError::Exit { .. } | HvError::BadAnswer(_) => ErrorKind::Backend,
            HvError::Http(503) => ErrorKind::Unavailable,
            HvError::Http(_) => ErrorKind::Backend,
            HvError::Transport(TransportError::Tls { .. }) => ErrorKind::Unauthorized,
            HvError::Transport(TransportError::Timeout) => ErrorKind::Timeout,
            HvError::Transport(_) => ErrorKind::Unavailable,
        }
    }

    /// The typed source of a core error, if it is one of ours.
    pub fn of(e: &Error) -> Option<&HvError> {
        e.source_as::<HvError>()
    }
}

impl From<HvError> for Error {
    fn from(e: HvError) -> Error {
        let message = match &e {
            HvError::Transport(TransportError::Tls { reason }) => format!(
                "TLS verification of the Hyper-V host failed ({reason}); check 'ca_file', 'fingerprint' or 'verify_tls'"
            ),
            HvError::Transport(t) => format!("Hyper-V host (WinRM): {t}"),
            other => format!("Hyper-V: {other}"),
        };
        Error::new(e.kind(), message).with_source(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_messages() {
        let e = Error::from(HvError::AuthFailed { user: "pv".into(), scheme: "NTLM" });
        assert_eq!(e.kind(), ErrorKind::Unauthorized);
        assert!(e.message().contains("'pv'") && e.message().contains("'password'"), "{e}");
        assert!(HvError::of(&e).is_some());
        assert_eq!(Error::from(HvError::CommandTimeout(5)).kind(), ErrorKind::Timeout);
        assert_eq!(Error::from(HvError::Http(503)).kind(), ErrorKind::Unavailable);
        assert_eq!(Error::from(HvError::Transport(TransportError::Timeout)).kind(), ErrorKind::Timeout);
    }
}
