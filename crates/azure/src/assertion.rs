//! Certificate credential: an OAuth client assertion (RFC 7523 JWT, `RS256`) signed with the
//! certificate's RSA key, carrying the certificate's SHA-256 thumbprint in the `x5t#S256`
//! header (how Microsoft Entra ID finds the registered certificate).
//!
//! Hand-rolled on `ring` (already the TLS crypto provider of the workspace) and
//! `rustls-pki-types` (PEM): a JWT library would add a second crypto stack for ~60 lines
//! of signing.

use crate::error::AzError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use sha2::{Digest, Sha256};

/// OAuth `client_assertion_type` of a JWT assertion.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Assertions live this long (Entra ID accepts up to 10 minutes).
const LIFETIME_SECS: u64 = 600;

/// The certificate's private key and thumbprint, read from a PEM file holding both (the
/// format `azure-identity`'s `CertificateCredential` reads).
pub struct CertKey {
    key: RsaKeyPair,
    x5t_s256: String,
}

fn bad(what: &str) -> AzError {
    AzError::Credential(format!("setting 'client_certificate_path': {what}"))
}

impl std::fmt::Debug for CertKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertKey").field("x5t_s256", &self.x5t_s256).finish_non_exhaustive()
    }
}

impl CertKey {
    /// Parses PEM text: the first certificate and an RSA private key (PKCS#8 or PKCS#1).
    pub fn from_pem(pem: &[u8]) -> Result<CertKey, AzError> {
        let cert = CertificateDer::pem_slice_iter(pem)
            .next()
            .ok_or_else(|| bad("no CERTIFICATE block in the PEM file"))?
            .map_err(|_| bad("the certificate PEM block cannot be read"))?;
        let key = PrivateKeyDer::from_pem_slice(pem).map_err(|_| bad("no private key in the PEM file"))?;
        let key = match &key {
            PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
            PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
            _ => return Err(bad("the private key must be RSA (PKCS#8 or PKCS#1)")),
        }
        .map_err(|_| bad("the private key is not a usable RSA key"))?;
        Ok(CertKey { key, x5t_s256: B64.encode(Sha256::digest(cert.as_ref())) })
    }

    /// Reads and parses the PEM file (encrypted keys are not supported).
    pub fn from_file(path: &std::path::Path) -> Result<CertKey, AzError> {
        let pem = std::fs::read(path).map_err(|_| bad("the file cannot be read"))?;
        CertKey::from_pem(&pem)
    }

    /// The `x5t#S256` thumbprint (base64url SHA-256 of the certificate's DER).
    pub fn thumbprint_s256(&self) -> &str {
        &self.x5t_s256
    }

    /// A signed assertion for `client_id` towards the token endpoint `audience`.
    pub fn assertion(&self, client_id: &str, audience: &str, now_unix: u64, jti: &str) -> Result<String, AzError> {
        let header = json!({"alg": "RS256", "typ": "JWT", "x5t#S256": self.x5t_s256});
        let claims = json!({"aud": audience, "iss": client_id, "sub": client_id, "jti": jti,
                            "nbf": now_unix, "iat": now_unix, "exp": now_unix + LIFETIME_SECS});
        let input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
        let mut sig = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), input.as_bytes(), &mut sig)
            .map_err(|_| AzError::Credential("signing the client assertion failed".into()))?;
        Ok(format!("{input}.{}", B64.encode(sig)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
    use serde_json::Value;

    fn pem() -> Option<(tempfile::TempDir, Vec<u8>)> {
        let d = tempfile::tempdir().ok()?;
        let ok = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=pv-test"])
            .args(["-keyout", "k.pem", "-out", "c.pem"])
            .current_dir(d.path())
            .output()
            .ok()?
            .status
            .success();
        assert!(ok, "openssl failed");
        let mut pem = std::fs::read(d.path().join("k.pem")).ok()?;
        pem.extend(std::fs::read(d.path().join("c.pem")).ok()?);
        Some((d, pem))
    }

    #[test]
    fn assertion_is_a_verifiable_rs256_jwt_with_the_thumbprint() {
        let (_d, pem) = pem().expect("openssl is needed for this test");
        let k = CertKey::from_pem(&pem).unwrap();
        let cert = CertificateDer::pem_slice_iter(&pem).next().unwrap().unwrap();
        assert_eq!(k.thumbprint_s256(), B64.encode(Sha256::digest(cert.as_ref())));
        let jwt = k.assertion("client-1", "https://login/t/oauth2/v2.0/token", 1_000, "j1").unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: Value = serde_json::from_slice(&B64.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["x5t#S256"], k.thumbprint_s256());
        let claims: Value = serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
        assert_eq!((claims["iss"].as_str(), claims["sub"].as_str()), (Some("client-1"), Some("client-1")));
        assert_eq!(claims["exp"], 1_600);
        let public = UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, k.key.public().as_ref());
        let input = format!("{}.{}", parts[0], parts[1]);
        public.verify(input.as_bytes(), &B64.decode(parts[2]).unwrap()).expect("signature verifies");
        let mut tampered = B64.decode(parts[2]).unwrap();
        tampered[0] ^= 1;
        assert!(public.verify(input.as_bytes(), &tampered).is_err());
    }

    #[test]
    fn unusable_pem_files_are_named_by_key_never_by_content() {
        let e = CertKey::from_pem(b"-----BEGIN PRIVATE KEY-----\nS3CRET\n-----END PRIVATE KEY-----\n").unwrap_err();
        assert!(e.to_string().contains("'client_certificate_path'") && !e.to_string().contains("S3CRET"), "{e}");
        let e = CertKey::from_file(std::path::Path::new("/nonexistent/pv.pem")).unwrap_err();
        assert!(e.to_string().contains("cannot be read"), "{e}");
    }
}
