//! The credentialed client: scheme policy enforced at construction, TLS mode applied.

use crate::settings::{HttpSettings, TlsMode};
use crate::tls::FingerprintVerifier;
use polyvisor_core::{Error, Result};
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
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            user_agent: concat!("polyvisor/", env!("CARGO_PKG_VERSION")).into(),
            pool_idle: std::time::Duration::from_secs(30),
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

fn build(s: &HttpSettings, opts: &ClientOptions, https_only: bool) -> Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(s.connect_timeout)
        .timeout(s.request_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .https_only(https_only)
        .pool_idle_timeout(opts.pool_idle)
        .user_agent(opts.user_agent.clone());
    match &s.tls {
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
