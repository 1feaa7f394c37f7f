//! The TLS/HTTP settings every HTTP driver shares, parsed once.

use polyvisor_core::{Error, Result, Settings};
use std::time::Duration;

/// The alias keys of the verification switch: RAS sends `verify_tls`, CloudStack's built-in
/// extension settings deliver `verify_tls_certificate`.
pub const VERIFY_KEYS: [&str; 2] = ["verify_tls", "verify_tls_certificate"];

/// How the server certificate is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// Public web PKI roots (default).
    Verify,
    /// Verify against the CAs in this PEM file only.
    CaFile(String),
    /// Verify against the CAs in this PEM data only (e.g. a kubeconfig's embedded
    /// `certificate-authority-data`). CA certificates are public: no secret here.
    CaPem(Vec<u8>),
    /// Accept exactly the certificate with this SHA-256 digest of its DER encoding.
    Fingerprint([u8; 32]),
    /// No verification (explicit opt-out: `verify_tls=false`).
    Insecure,
}

/// The common HTTP settings of a driver.
#[derive(Clone, Debug)]
pub struct HttpSettings {
    /// Certificate checking.
    pub tls: TlsMode,
    /// `allow_insecure_http=true`: the lab opt-in that lets [`crate::SchemePolicy::HttpsUnlessOptedIn`]
    /// clients talk plain `http://` (credentials then travel in cleartext).
    pub allow_insecure_http: bool,
    /// The settings key to name in TLS hints: the alias the platform sent, else the default
    /// the driver passed (the key of the front in use).
    pub verify_key: &'static str,
    /// TCP connect timeout (`connect_timeout`, seconds, default 3).
    pub connect_timeout: Duration,
    /// Whole-request timeout (`request_timeout`, seconds, default 10).
    pub request_timeout: Duration,
}

impl HttpSettings {
    /// Reads the common keys. `default_verify_key` is the verification key of the front in
    /// use when the settings carry none (e.g. `verify_tls_certificate` when the driver's
    /// settings came through CloudStack's key names). Errors name keys, never values.
    pub fn from_settings(s: &Settings, default_verify_key: &'static str) -> Result<HttpSettings> {
        let (verify, verify_key) = match s.bool_any(&VERIFY_KEYS)? {
            Some((v, k)) => (v, k),
            None => (true, default_verify_key),
        };
        let tls = if let Some(fp) = s.str("fingerprint") {
            TlsMode::Fingerprint(parse_fingerprint(&fp)?)
        } else if let Some(ca) = s.str("ca_file") {
            TlsMode::CaFile(ca)
        } else if verify {
            TlsMode::Verify
        } else {
            TlsMode::Insecure
        };
        Ok(HttpSettings {
            tls,
            allow_insecure_http: s.bool_or("allow_insecure_http", false)?,
            verify_key,
            connect_timeout: Duration::from_secs(s.u64_or("connect_timeout", 3)?.max(1)),
            request_timeout: Duration::from_secs(s.u64_or("request_timeout", 10)?.max(1)),
        })
    }

    /// The hint appended to TLS failures: which settings fix them.
    pub fn tls_hint(&self) -> String {
        format!("check 'ca_file', 'fingerprint' or '{}'", self.verify_key)
    }
}

/// `AB:CD:…` (32 colon-separated hex octets, any case; colons optional) → digest bytes.
pub fn parse_fingerprint(raw: &str) -> Result<[u8; 32]> {
    let hex: String = raw.chars().filter(|c| *c != ':' && !c.is_whitespace()).collect();
    let bad = || Error::invalid("setting 'fingerprint' must be a SHA-256 fingerprint (32 colon-separated hex octets)");
    if hex.len() != 64 || !hex.is_ascii() {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value, default: &'static str) -> Result<HttpSettings> {
        HttpSettings::from_settings(&Settings::from_json(&v).unwrap(), default)
    }

    #[test]
    fn modes_and_the_key_to_name() {
        let cs = parse(json!({"verify_tls_certificate": "false"}), "verify_tls").unwrap();
        assert_eq!((cs.tls.clone(), cs.verify_key), (TlsMode::Insecure, "verify_tls_certificate"));
        assert!(cs.tls_hint().contains("'verify_tls_certificate'") && !cs.tls_hint().contains("'verify_tls'"));
        let ras = parse(json!({"verify_tls": true}), "verify_tls_certificate").unwrap();
        assert_eq!((ras.tls, ras.verify_key), (TlsMode::Verify, "verify_tls"));
        let none = parse(json!({}), "verify_tls_certificate").unwrap();
        assert_eq!(none.verify_key, "verify_tls_certificate");
        assert!(!none.allow_insecure_http);
        let ca = parse(json!({"ca_file": "/x.pem", "verify_tls": false}), "verify_tls").unwrap();
        assert_eq!(ca.tls, TlsMode::CaFile("/x.pem".into()));
        assert!(parse(json!({"allow_insecure_http": "yes"}), "verify_tls").unwrap().allow_insecure_http);
        let e = parse(json!({"allow_insecure_http": "perhaps"}), "verify_tls").unwrap_err();
        assert!(e.message().contains("'allow_insecure_http'"), "{e}");
    }

    #[test]
    fn fingerprints_parse_as_proxmox_shows_them() {
        let fp = "42:62:51:D3:E1:41:7B:21:C8:6B:70:6F:2B:AB:76:DE:D0:69:58:41:95:82:8A:50:FD:7E:CA:78:7E:80:81:90";
        assert_eq!(parse_fingerprint(fp).unwrap()[0], 0x42);
        assert_eq!(parse_fingerprint(&fp.to_lowercase()).unwrap()[31], 0x90);
        assert!(parse_fingerprint("42:62").is_err());
        assert!(parse_fingerprint(&fp.replace('4', "g")).is_err());
        let e = parse(json!({"fingerprint": "S3CRET"}), "verify_tls").unwrap_err();
        assert!(e.message().contains("'fingerprint'") && !e.message().contains("S3CRET"));
    }
}
