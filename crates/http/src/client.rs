//! The credentialed client: scheme policy enforced at construction, TLS mode applied.

use crate::settings::{HttpSettings, TlsMode};
use crate::tls::FingerprintVerifier;
use polyvisor_core::{Error, ExposeSecret, Result, SecretString};
use std::sync::Arc;

/// Which URL schemes may carry credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchemePolicy {
    /// `https` only, no opt-out (backends that only speak HTTPS, e.g. Proxmox).
    HttpsOnly,
    /// `https`, or `http` when the operator set `allow_insecure_http=true` (labs that serve
    /// e.g. Keystone over plain HTTP). Every client built that way logs a warning.
    HttpsUnlessOptedIn,
}

/// Client knobs a driver chooses (the operator's knobs are in [`HttpSettings`]).
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// `User-Agent` header.
    pub user_agent: String,
    /// How long idle pooled connections are kept.
    pub pool_idle: std::time::Duration,
    /// A client certificate to present (mutual TLS), in every TLS mode.
    pub identity: Option<ClientIdentity>,
    /// Attach the server's certificate to each response (`reqwest::tls::TlsInfo`), for
    /// protocols that bind to the TLS channel (NTLM with Extended Protection).
    pub tls_info: bool,
}

/// A client certificate for mutual TLS (e.g. a kubeconfig's `client-certificate-data` /
/// `client-key-data`): the PEM certificate chain and its PEM private key (secret).
#[derive(Clone)]
pub struct ClientIdentity {
    /// PEM certificate chain, leaf first.
    pub cert_pem: Vec<u8>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_pem: SecretString,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("cert_pem", &format_args!("{} bytes", self.cert_pem.len()))
            .finish_non_exhaustive()
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            user_agent: concat!("polyvisor/", env!("CARGO_PKG_VERSION")).into(),
            pool_idle: std::time::Duration::from_secs(30),
            identity: None,
            tls_info: false,
        }
    }
}

/// A `reqwest` client that may carry credentials to one base URL: the scheme was checked
/// against the policy, certificates are checked as configured, redirects and proxies are
/// off (a redirect must never carry a token elsewhere), every request is bounded.
#[derive(Clone, Debug)]
pub struct CredentialedClient {
    http: reqwest::Client,
    base: String,
}

impl CredentialedClient {
    /// Checks `base_url` against `policy` and builds the client. `service` names the
    /// backend in messages (`"Proxmox"`). The URL is never echoed (it may carry user info).
    pub fn new(
        service: &str,
        base_url: &str,
        settings: &HttpSettings,
        policy: SchemePolicy,
        opts: &ClientOptions,
    ) -> Result<CredentialedClient> {
        let url = reqwest::Url::parse(base_url)
            .map_err(|_| Error::invalid(format!("the {service} URL is not a valid URL")))?;
        let https = match url.scheme() {
            "https" => true,
            "http" => match policy {
                SchemePolicy::HttpsOnly => {
                    return Err(Error::invalid(format!(
                        "{service} only speaks HTTPS: use an https:// URL (plain http:// would send credentials in cleartext)"
                    )))
                }
                SchemePolicy::HttpsUnlessOptedIn if settings.allow_insecure_http => {
                    tracing::warn!(
                        service,
                        host = url.host_str().unwrap_or_default(),
                        "allow_insecure_http=true: credentials are sent over plain http (lab use only)"
                    );
                    false
                }
                SchemePolicy::HttpsUnlessOptedIn => {
                    return Err(Error::invalid(format!(
                        "refusing plain http:// to {service}: credentials would travel in cleartext; use https://, \
                         or set 'allow_insecure_http=true' (lab deployments only)"
                    )))
                }
            },
            _ => return Err(Error::invalid(format!("the {service} URL must start with https://"))),
        };
        let http = build(settings, opts, https)?;
        Ok(CredentialedClient { http, base: base_url.trim_end_matches('/').to_string() })
    }

    /// The underlying client (build requests with [`CredentialedClient::url`]).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// `base_url` + `path` (`path` starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The checked base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }
}

/// Trusts exactly the PEM certificates in `pem` (`what` names their origin in errors).
fn trust_only(mut b: reqwest::ClientBuilder, pem: &[u8], what: &str) -> Result<reqwest::ClientBuilder> {
    let certs = reqwest::Certificate::from_pem_bundle(pem)
        .map_err(|e| Error::invalid(format!("{what} is not a PEM certificate file")).with_detail(e.to_string()))?;
    if certs.is_empty() {
        return Err(Error::invalid(format!("{what} contains no PEM certificate")));
    }
    b = b.tls_built_in_root_certs(false);
    for c in certs {
        b = b.add_root_certificate(c);
    }
    Ok(b)
}

fn build(s: &HttpSettings, opts: &ClientOptions, https_only: bool) -> Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(s.connect_timeout)
        .timeout(s.request_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .https_only(https_only)
        .pool_idle_timeout(opts.pool_idle)
        .tls_info(opts.tls_info)
        .user_agent(opts.user_agent.clone());
    let bad_identity = |e: String| Error::invalid("the client certificate or key is not valid PEM").with_detail(e);
    if let (Some(id), false) = (&opts.identity, matches!(s.tls, TlsMode::Fingerprint(_))) {
        let mut pem = id.cert_pem.clone();
        pem.push(b'\n');
        pem.extend_from_slice(id.key_pem.expose_secret().as_bytes());
        b = b.identity(reqwest::Identity::from_pem(&pem).map_err(|e| bad_identity(e.to_string()))?);
    }
    match &s.tls {
        TlsMode::Verify => {}
        TlsMode::Insecure => b = b.danger_accept_invalid_certs(true),
        TlsMode::CaFile(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                Error::invalid("setting 'ca_file' names a file that cannot be read").with_detail(e.to_string())
            })?;
            b = trust_only(b, &pem, "setting 'ca_file'")?;
        }
        TlsMode::CaPem(pem) => b = trust_only(b, pem, "the embedded CA data")?,
        TlsMode::Fingerprint(pin) => {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let tls = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| Error::internal("TLS setup failed").with_detail(e.to_string()))?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(FingerprintVerifier::new(*pin)));
            let tls = match &opts.identity {
                None => tls.with_no_client_auth(),
                Some(id) => {
                    use rustls::pki_types::pem::PemObject;
                    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
                    let chain = CertificateDer::pem_slice_iter(&id.cert_pem)
                        .collect::<std::result::Result<Vec<_>, _>>()
                        .map_err(|e| bad_identity(e.to_string()))?;
                    let key = PrivateKeyDer::from_pem_slice(id.key_pem.expose_secret().as_bytes())
                        .map_err(|e| bad_identity(e.to_string()))?;
                    tls.with_client_auth_cert(chain, key).map_err(|e| bad_identity(e.to_string()))?
                }
            };
            b = b.use_preconfigured_tls(tls);
        }
    }
    b.build().map_err(|e| Error::internal("HTTP client setup failed").with_detail(e.to_string()))
}
