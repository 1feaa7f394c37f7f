//! The one error type of polyvisor. Kinds are named by what the caller can do about them;
//! every front maps [`ErrorKind`] to its platform's error form exhaustively, in one place.
//!
//! | kind | RAS | CloudStack | caller's move |
//! |---|---|---|---|
//! | `InvalidInput` | -32602 | exit 1 | fix the request |
//! | `NotFound` | -32603 (or front-specific success, e.g. stop/delete of a missing VM) | exit 1 | check the id |
//! | `AlreadyExists` | -32603 | exit 1 | pick another name / adopt |
//! | `Conflict` | -32603 | exit 1 | wait or resolve state (locked, has linked clones) |
//! | `Unsupported` | -32601 | exit 1 | do not offer the feature |
//! | `Unauthorized` | -32603 | exit 1 | fix credentials (or TLS trust settings: a rejected server certificate; never retried) |
//! | `Unavailable` | -32603 | exit 1 | retry later (retryable) |
//! | `Timeout` | -32603 | exit 1 | retry later (retryable) |
//! | `UnknownTask` | -32602 | exit 1 | the task id is not ours |
//! | `Backend` | -32603 | exit 1 | read the platform's message |
//! | `Internal` | -32603 | exit 1 | report a bug |
//!
//! The message is the *external* text: it goes verbatim into platform logs, so it must
//! carry ids and the platform's explanation but never a secret, a URL with a ticket, or a
//! full upstream body. Internal context goes to our own log via [`Error::detail`].

use std::fmt;
use std::sync::Arc;

/// The underlying cause of an [`Error`], shared so that `Error` stays `Clone`.
pub type Source = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// What kind of failure this is (what the caller can do about it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is malformed or names something invalid (bad clone name, bad value).
    InvalidInput,
    /// The guest, snapshot or other object does not exist.
    NotFound,
    /// An object with that identity already exists.
    AlreadyExists,
    /// The object is in a state that forbids the operation (locked, has linked clones).
    Conflict,
    /// The driver cannot do this at all.
    Unsupported,
    /// Authentication or authorisation failed.
    Unauthorized,
    /// The backend could not be reached or answered with a transient failure.
    Unavailable,
    /// An operation ran out of its time budget.
    Timeout,
    /// A task id that no driver issued (or that is malformed).
    UnknownTask,
    /// The backend refused or failed the operation; the message carries its explanation.
    Backend,
    /// A bug in polyvisor.
    Internal,
}

impl ErrorKind {
    /// Whether retrying the same request later may succeed.
    pub fn retryable(self) -> bool {
        matches!(self, ErrorKind::Unavailable | ErrorKind::Timeout)
    }
}

/// The polyvisor error: a kind, an external message, optional internal detail and an
/// optional typed source (a driver's own error enum, kept so callers inside the driver can
/// match on it with `downcast_ref` instead of on message text).
#[derive(Clone)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    detail: Option<String>,
    source: Option<Source>,
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Any kind with an external message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), detail: None, source: None }
    }
    /// [`ErrorKind::InvalidInput`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }
    /// [`ErrorKind::NotFound`] for a thing (`"guest [101]"`).
    pub fn not_found(what: impl fmt::Display) -> Self {
        Self::new(ErrorKind::NotFound, format!("{what} not found"))
    }
    /// [`ErrorKind::AlreadyExists`].
    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::AlreadyExists, message)
    }
    /// [`ErrorKind::Conflict`].
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }
    /// [`ErrorKind::Unsupported`] for an operation name.
    pub fn unsupported(operation: impl fmt::Display) -> Self {
        Self::new(ErrorKind::Unsupported, format!("{operation} is not supported by this driver"))
    }
    /// [`ErrorKind::Unauthorized`].
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthorized, message)
    }
    /// [`ErrorKind::Unavailable`].
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }
    /// [`ErrorKind::Timeout`].
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Timeout, message)
    }
    /// [`ErrorKind::UnknownTask`] for a task id.
    pub fn unknown_task(id: impl fmt::Display) -> Self {
        Self::new(ErrorKind::UnknownTask, format!("Unknown task id: {id}"))
    }
    /// [`ErrorKind::Backend`].
    pub fn backend(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Backend, message)
    }
    /// [`ErrorKind::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// Attaches internal detail for our own logs (never sent to a platform).
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
    /// Attaches the typed cause (kept through [`Error::context`] and clones; reported by
    /// [`std::error::Error::source`]).
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }
    /// The typed cause as `T`, if the source is one (`e.source_as::<PveError>()`).
    pub fn source_as<T: std::error::Error + 'static>(&self) -> Option<&T> {
        self.source.as_deref().and_then(|s| (s as &(dyn std::error::Error + 'static)).downcast_ref::<T>())
    }
    /// Prefixes the external message with context (`"Failed to clone guest [101]"`).
    pub fn context(mut self, ctx: impl fmt::Display) -> Self {
        self.message = format!("{ctx}: {}", self.message);
        self
    }

    /// The kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    /// The external message (safe for platform logs).
    pub fn message(&self) -> &str {
        &self.message
    }
    /// Internal detail, for polyvisor's own log file only.
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }
    /// Whether retrying later may succeed.
    pub fn retryable(&self) -> bool {
        self.kind.retryable()
    }
    /// Whether this is [`ErrorKind::NotFound`].
    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("detail", &self.detail)
            .field("source", &self.source)
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|s| s as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_prefixes_and_detail_stays_internal() {
        let e = Error::backend("disk full").with_detail("body=...").context("Failed to clone guest [101]");
        assert_eq!(e.to_string(), "Failed to clone guest [101]: disk full");
        assert_eq!(e.detail(), Some("body=..."));
        assert_eq!(e.kind(), ErrorKind::Backend);
        assert!(!e.retryable());
        assert!(Error::timeout("x").retryable());
    }

    #[derive(Debug, PartialEq)]
    struct Cause(u16);
    impl fmt::Display for Cause {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "cause {}", self.0)
        }
    }
    impl std::error::Error for Cause {}

    #[test]
    fn source_survives_context_and_clone() {
        use std::error::Error as _;
        let e = Error::conflict("VM is locked").with_source(Cause(7)).context("Snapshot of guest [101] failed");
        let c = e.clone();
        assert_eq!(c.source_as::<Cause>(), Some(&Cause(7)));
        assert_eq!(c.source().map(|s| s.to_string()).as_deref(), Some("cause 7"));
        assert!(c.source_as::<std::io::Error>().is_none());
        assert!(Error::backend("x").source().is_none());
        assert!(format!("{c:?}").contains("Cause(7)"));
    }
}
