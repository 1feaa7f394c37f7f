//! Transport failures, classified by type from the `reqwest` error's source chain.

use std::error::Error as StdError;

/// Why an HTTP exchange failed below the HTTP layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The TLS handshake failed (untrusted or mismatching certificate, not TLS at all...).
    /// Never retried: asking again cannot fix a certificate.
    #[error("TLS verification failed: {reason}")]
    Tls {
        /// rustls's description (no secrets: certificates are public).
        reason: String,
    },
    /// The connect or the whole request ran out of its time budget.
    #[error("no answer in time")]
    Timeout,
    /// The TCP connection could not be made (refused, unreachable, DNS).
    #[error("unreachable")]
    Connect,
    /// The connection broke mid-exchange (reset, closed early, malformed HTTP).
    #[error("connection failed")]
    Broken,
}

impl TransportError {
    /// Whether the same request may succeed later (everything but TLS failures).
    pub fn retryable(&self) -> bool {
        !matches!(self, TransportError::Tls { .. })
    }
}

/// Classifies a `reqwest` error. TLS failures are recognised by finding a `rustls::Error`
/// in the source chain (also inside the `std::io::Error` that tokio-rustls wraps it in),
/// never by message text.
pub fn classify(e: &reqwest::Error) -> TransportError {
    if let Some(reason) = tls_failure(e) {
        return TransportError::Tls { reason };
    }
    if e.is_timeout() {
        TransportError::Timeout
    } else if e.is_connect() {
        TransportError::Connect
    } else {
        TransportError::Broken
    }
}

fn tls_failure(e: &(dyn StdError + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    let mut depth = 0;
    while let Some(err) = cur {
        depth += 1;
        if depth > 32 {
            return None;
        }
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(describe(r));
        }
        // `io::Error::source` skips its custom payload; look at the payload itself.
        if let Some(inner) = err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            cur = Some(inner as &(dyn StdError + 'static));
            continue;
        }
        cur = err.source();
    }
    None
}

fn describe(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(o)) => o.0.to_string(),
        rustls::Error::InvalidCertificate(c) => format!("server certificate rejected ({c:?})"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustls_errors_are_found_inside_io_errors() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert_eq!(tls_failure(&io).as_deref(), Some("server certificate rejected (UnknownIssuer)"));
        let plain = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(tls_failure(&plain), None);
        assert!(!TransportError::Tls { reason: "x".into() }.retryable());
        assert!(TransportError::Timeout.retryable() && TransportError::Broken.retryable());
    }
}
