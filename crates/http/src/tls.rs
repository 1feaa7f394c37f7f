//! The SHA-256 fingerprint pin as a rustls certificate verifier (what Proxmox shows as a
//! node's fingerprint; also what an operator can copy from `openssl x509 -fingerprint -sha256`).

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::Arc;

/// The presented certificate is not the pinned one (carried inside the rustls error, so
/// [`crate::classify`] finds it by type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FingerprintMismatch;

impl fmt::Display for FingerprintMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("server certificate does not match the pinned fingerprint")
    }
}

impl std::error::Error for FingerprintMismatch {}

/// Accepts exactly one certificate, identified by the SHA-256 digest of its DER encoding.
/// Handshake signatures are still checked.
#[derive(Debug)]
pub struct FingerprintVerifier {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl FingerprintVerifier {
    /// A verifier for this pin.
    pub fn new(pin: [u8; 32]) -> Self {
        FingerprintVerifier { pin, provider: Arc::new(rustls::crypto::ring::default_provider()) }
    }
}

impl ServerCertVerifier for FingerprintVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let digest = Sha256::digest(end_entity.as_ref());
        if digest.as_slice() == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(FingerprintMismatch)))))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
