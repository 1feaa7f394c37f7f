//! Test helper (feature `testing`): a TLS-terminating front for plain-HTTP mock servers
//! such as wiremock, so driver tests exercise the same https-only client as production.
//! The certificate is a fixture for `127.0.0.1`/`localhost` signed by a test CA; trust it
//! with [`TlsFront::fingerprint`] or a `ca_file` written by [`TlsFront::write_ca_file`].

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The test CA (PEM).
pub const CA_PEM: &str = include_str!("testing/ca.pem");
const LEAF_PEM: &str = include_str!("testing/leaf.pem");
const LEAF_KEY_PEM: &str = include_str!("testing/leaf.key.pem");
/// The CA a [`TlsFront::start_requiring_client_cert`] front trusts for client certificates.
pub const CLIENT_CA_PEM: &str = include_str!("testing/client-ca.pem");
/// A client certificate signed by [`CLIENT_CA_PEM`] (CN `system:serviceaccount:polyvisor:tester`).
pub const CLIENT_CERT_PEM: &str = include_str!("testing/client.pem");
/// Its private key (a test fixture, not a secret of any real system).
pub const CLIENT_KEY_PEM: &str = include_str!("testing/client.key.pem");

/// A TLS listener on `127.0.0.1` that forwards each connection's plaintext to `backend`.
pub struct TlsFront {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TlsFront {
    /// Starts the front (needs a running tokio runtime).
    pub async fn start(backend: SocketAddr) -> std::io::Result<TlsFront> {
        TlsFront::start_with(backend, false).await
    }

    /// Starts a front that completes the handshake only for clients presenting a
    /// certificate signed by [`CLIENT_CA_PEM`] (mutual TLS, as a Kubernetes API server does).
    pub async fn start_requiring_client_cert(backend: SocketAddr) -> std::io::Result<TlsFront> {
        TlsFront::start_with(backend, true).await
    }

    async fn start_with(backend: SocketAddr, mtls: bool) -> std::io::Result<TlsFront> {
        let certs = vec![CertificateDer::from_pem_slice(LEAF_PEM.as_bytes()).map_err(std::io::Error::other)?];
        let key = PrivateKeyDer::from_pem_slice(LEAF_KEY_PEM.as_bytes()).map_err(std::io::Error::other)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(std::io::Error::other)?;
        let builder = if mtls {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_slice(CLIENT_CA_PEM.as_bytes()).map_err(std::io::Error::other)?)
                .map_err(std::io::Error::other)?;
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(std::io::Error::other)?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let cfg = builder.with_single_cert(certs, key).map_err(std::io::Error::other)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(sock).await else { return };
                    let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await else { return };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        Ok(TlsFront { addr, task })
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The served certificate's SHA-256 fingerprint (`AB:CD:…`, as Proxmox shows it).
    pub fn fingerprint() -> String {
        let der = CertificateDer::from_pem_slice(LEAF_PEM.as_bytes()).expect("fixture certificate");
        Sha256::digest(der.as_ref()).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
    }

    /// Writes the test CA to `dir/ca.pem` (for `ca_file`).
    pub fn write_ca_file(dir: &Path) -> std::io::Result<PathBuf> {
        let p = dir.join("ca.pem");
        std::fs::write(&p, CA_PEM)?;
        Ok(p)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}
