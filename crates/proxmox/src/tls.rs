//! TLS setup for the reqwest client: web PKI (default), a custom CA file, a SHA-256
//! fingerprint pin (custom rustls verifier), or an explicit insecure opt-out.

use crate::config::{Config, TlsMode};
use polyvisor_core::{Error, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Accepts exactly one certificate, identified by the SHA-256 digest of its DER encoding
/// (what Proxmox shows as the node's fingerprint). Handshake signatures are still checked.
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
            Err(rustls::Error::General("server certificate does not match the pinned fingerprint".into()))
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

/// The HTTP client for a config: TLS mode, connect/request timeouts, no redirects, no proxy.
pub fn build_client(cfg: &Config) -> Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(cfg.connect_timeout)
        .timeout(cfg.request_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .pool_idle_timeout(std::time::Duration::from_secs(30))
        .user_agent(concat!("polyvisor/", env!("CARGO_PKG_VERSION")));
    match &cfg.tls {
        TlsMode::Verify => {}
        TlsMode::Insecure => b = b.danger_accept_invalid_certs(true),
        TlsMode::CaFile(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                Error::invalid("setting 'ca_file' names a file that cannot be read").with_detail(e.to_string())
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                Error::invalid("setting 'ca_file' is not a PEM certificate file").with_detail(e.to_string())
            })?;
            if certs.is_empty() {
                return Err(Error::invalid("setting 'ca_file' contains no PEM certificate"));
            }
            b = b.tls_built_in_root_certs(false);
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        TlsMode::Fingerprint(pin) => {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let tls = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| Error::internal("TLS setup failed").with_detail(e.to_string()))?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(FingerprintVerifier::new(*pin)))
                .with_no_client_auth();
            b = b.use_preconfigured_tls(tls);
        }
    }
    b.build().map_err(|e| Error::internal("HTTP client setup failed").with_detail(e.to_string()))
}
