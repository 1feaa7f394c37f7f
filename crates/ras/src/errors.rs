//! JSON-RPC error codes and the one exhaustive `ErrorKind` → code mapping (the table in
//! `polyvisor_core::error`).

use polyvisor_core::{Error, ErrorKind};

/// The line is not valid JSON (or not UTF-8, or too long).
pub(crate) const PARSE_ERROR: i64 = -32700;
/// Method missing, unknown, or not available at the configured level.
pub(crate) const METHOD_NOT_FOUND: i64 = -32601;
/// A required field is missing or invalid; unsupported control; bad settings; unknown task.
pub(crate) const INVALID_PARAMS: i64 = -32602;
/// Any failure inside a handler.
pub(crate) const INTERNAL_ERROR: i64 = -32603;
/// Code of the error inside a failed task (`tasks/get` → `result.error.code`).
pub(crate) const TASK_FAILED: i64 = 1;

/// A JSON-RPC error before the provider prefix is applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RpcError {
    /// JSON-RPC code.
    pub code: i64,
    /// External message without the `"<Prefix>: "`.
    pub message: String,
}

impl RpcError {
    /// Any code.
    pub(crate) fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError { code, message: message.into() }
    }
    /// `-32700`.
    pub(crate) fn parse(detail: &str) -> Self {
        Self::new(PARSE_ERROR, format!("Invalid JSON format: {detail}"))
    }
    /// `-32601`.
    pub(crate) fn method(message: impl Into<String>) -> Self {
        Self::new(METHOD_NOT_FOUND, message)
    }
    /// `-32602`.
    pub(crate) fn params(message: impl Into<String>) -> Self {
        Self::new(INVALID_PARAMS, message)
    }
    /// `-32603`.
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(INTERNAL_ERROR, message)
    }
    /// `-32602 "Missing field: <path>"`.
    pub(crate) fn missing(path: &str) -> Self {
        Self::params(format!("Missing field: {path}"))
    }
    /// `-32602 "Invalid field: <path> (<why>)"`.
    pub(crate) fn invalid_field(path: &str, why: &str) -> Self {
        Self::params(format!("Invalid field: {path} ({why})"))
    }
}

/// The JSON-RPC code for a core error kind.
pub(crate) fn code_for(kind: ErrorKind) -> i64 {
    match kind {
        ErrorKind::Unsupported => METHOD_NOT_FOUND,
        ErrorKind::InvalidInput | ErrorKind::UnknownTask => INVALID_PARAMS,
        ErrorKind::NotFound
        | ErrorKind::AlreadyExists
        | ErrorKind::Conflict
        | ErrorKind::Unauthorized
        | ErrorKind::Unavailable
        | ErrorKind::Timeout
        | ErrorKind::Backend
        | ErrorKind::Internal => INTERNAL_ERROR,
    }
}

impl From<Error> for RpcError {
    fn from(e: Error) -> Self {
        if let Some(detail) = e.detail() {
            tracing::debug!(kind = ?e.kind(), detail, "driver error detail");
        }
        RpcError::new(code_for(e.kind()), e.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_follows_the_core_table() {
        let cases = [
            (ErrorKind::InvalidInput, -32602),
            (ErrorKind::NotFound, -32603),
            (ErrorKind::AlreadyExists, -32603),
            (ErrorKind::Conflict, -32603),
            (ErrorKind::Unsupported, -32601),
            (ErrorKind::Unauthorized, -32603),
            (ErrorKind::Unavailable, -32603),
            (ErrorKind::Timeout, -32603),
            (ErrorKind::UnknownTask, -32602),
            (ErrorKind::Backend, -32603),
            (ErrorKind::Internal, -32603),
        ];
        for (k, c) in cases {
            assert_eq!(code_for(k), c, "{k:?}");
        }
        let e: RpcError = Error::backend("disk full").with_detail("internal").into();
        assert_eq!(e, RpcError::internal("disk full"));
    }
}
