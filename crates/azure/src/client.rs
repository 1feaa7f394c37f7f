//! The ARM client on `polyvisor-http`: client-credentials tokens (cached per process,
//! refreshed five minutes before expiry or after a 401), bounded 429 handling
//! (`Retry-After`), long-running-operation headers, and a round-trip counter.

use crate::assertion::{CertKey, ASSERTION_TYPE};
use crate::config::{Config, Credential};
use crate::error::AzError;
use polyvisor_core::{Error, ExposeSecret, Result, SecretString};
use polyvisor_http::{classify, ClientOptions, CredentialedClient, SchemePolicy};
use reqwest::header::{HeaderMap, AUTHORIZATION, RETRY_AFTER};
use reqwest::Method;
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Pinned api-versions per resource type (see README).
pub mod api {
    /// Microsoft.Compute virtualMachines (ComputeRP).
    pub const VM: &str = "2024-07-01";
    /// Microsoft.Compute disks and snapshots (DiskRP).
    pub const DISK: &str = "2024-03-02";
    /// Microsoft.Network networkInterfaces.
    pub const NIC: &str = "2024-03-01";
    /// Microsoft.Compute galleries/images/versions (GalleryRP).
    pub const GALLERY: &str = "2023-07-03";
}

/// A 429 is retried in-call only while the total wait stays under this.
const THROTTLE_BUDGET: Duration = Duration::from_secs(10);
/// Tokens are renewed this long before they expire.
const TOKEN_MARGIN: Duration = Duration::from_secs(300);

/// Where a long-running operation can be followed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lro {
    /// `Azure-AsyncOperation` (preferred) or `Location` URL.
    pub url: String,
    /// Which header it came from.
    pub async_op: bool,
}

/// An ARM answer.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Body (Null when empty).
    pub body: Value,
    /// LRO header, when the operation continues asynchronously.
    pub lro: Option<Lro>,
}

struct Token {
    value: SecretString,
    renew_at: Instant,
}

/// The ARM client.
pub struct Arm {
    cfg: Config,
    arm: CredentialedClient,
    login: CredentialedClient,
    token: tokio::sync::Mutex<Option<Token>>,
    total: AtomicU64,
    token_requests: AtomicU64,
}

fn retry_after(h: &HeaderMap) -> Option<u64> {
    h.get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok())
}

impl Arm {
    /// Builds both clients (no I/O).
    pub fn new(cfg: Config) -> Result<Arm> {
        let opts = ClientOptions::default();
        let arm = CredentialedClient::new(
            "Azure Resource Manager",
            &cfg.arm_endpoint,
            &cfg.http,
            SchemePolicy::HttpsOnly,
            &opts,
        )?;
        let login = CredentialedClient::new(
            "Microsoft Entra ID",
            &cfg.authority_host,
            &cfg.http,
            SchemePolicy::HttpsOnly,
            &opts,
        )?;
        Ok(Arm {
            cfg,
            arm,
            login,
            token: tokio::sync::Mutex::new(None),
            total: AtomicU64::new(0),
            token_requests: AtomicU64::new(0),
        })
    }

    /// The configuration.
    pub fn cfg(&self) -> &Config {
        &self.cfg
    }

    /// HTTP requests sent so far (ARM and token endpoint).
    pub fn round_trips(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Token requests sent so far.
    pub fn token_requests(&self) -> u64 {
        self.token_requests.load(Ordering::Relaxed)
    }

    fn transport(&self, e: &reqwest::Error) -> AzError {
        AzError::Transport(classify(e))
    }

    /// The cached token, or a new one. `stale` is a token ARM just refused: it is replaced
    /// unless another request already did. One sign-in at a time (the lock is held across
    /// the token request), so concurrent calls never sign in twice.
    async fn bearer(&self, stale: Option<&SecretString>) -> Result<SecretString, AzError> {
        let mut guard = self.token.lock().await;
        if let Some(t) = guard.as_ref() {
            let refused = stale.is_some_and(|s| s.expose_secret() == t.value.expose_secret());
            if !refused && Instant::now() < t.renew_at {
                return Ok(t.value.clone());
            }
        }
        let url = self.login.url(&format!("/{}/oauth2/v2.0/token", urlencoding::encode(&self.cfg.tenant_id)));
        let mut form = vec![
            ("grant_type", "client_credentials".to_string()),
            ("client_id", self.cfg.client_id.clone()),
            ("scope", self.cfg.scope.clone()),
        ];
        match &self.cfg.credential {
            Credential::Secret(x) => form.push(("client_secret", x.expose_secret().to_string())),
            Credential::Certificate(path) => {
                // Read at each sign-in (about hourly): a renewed certificate file is picked up.
                let key = CertKey::from_file(path)?;
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let mut jti = [0u8; 16];
                ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut jti)
                    .map_err(|_| AzError::Credential("no randomness for the assertion id".into()))?;
                let jti: String = jti.iter().map(|b| format!("{b:02x}")).collect();
                form.push(("client_assertion_type", ASSERTION_TYPE.to_string()));
                form.push(("client_assertion", key.assertion(&self.cfg.client_id, &url, now, &jti)?));
            }
        }
        self.total.fetch_add(1, Ordering::Relaxed);
        self.token_requests.fetch_add(1, Ordering::Relaxed);
        let resp = self.login.http().post(url).form(&form).send().await.map_err(|e| self.transport(&e))?;
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status != 200 {
            return Err(AzError::from_token(status, &body));
        }
        let value = body
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| AzError::Protocol("token answer without access_token".into()))?;
        let expires = body
            .get("expires_in")
            .and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok())))
            .unwrap_or(3600);
        let life = Duration::from_secs(expires);
        let renew_at = Instant::now() + life.saturating_sub(TOKEN_MARGIN).max(life / 2);
        let value = SecretString::from(value.to_string());
        *guard = Some(Token { value: value.clone(), renew_at });
        Ok(value)
    }

    /// One ARM request to `path_or_url` (a path below the endpoint, or an operation URL
    /// that must start with the endpoint). Retries: once after a 401 with a fresh token,
    /// and 429s while the `Retry-After` waits fit [`THROTTLE_BUDGET`].
    pub async fn call(
        &self,
        method: Method,
        path_or_url: &str,
        body: Option<&Value>,
        what: &str,
    ) -> Result<Answer, AzError> {
        let url = if path_or_url.starts_with('/') {
            self.arm.url(path_or_url)
        } else if self.owns_url(path_or_url) {
            path_or_url.to_string()
        } else {
            return Err(AzError::Protocol("an operation URL outside the configured resource manager endpoint".into()));
        };
        let mut waited = Duration::ZERO;
        let mut refused: Option<SecretString> = None;
        loop {
            let token = self.bearer(refused.as_ref()).await?;
            let mut req = self
                .arm
                .http()
                .request(method.clone(), &url)
                .header(AUTHORIZATION, format!("Bearer {}", token.expose_secret()));
            if let Some(b) = body {
                req = req.json(b);
            }
            self.total.fetch_add(1, Ordering::Relaxed);
            let resp = req.send().await.map_err(|e| self.transport(&e))?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let text = resp.text().await.map_err(|e| self.transport(&e))?;
            let parsed: Value =
                if text.trim().is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::Null) };
            match status {
                200..=299 => {
                    let lro = header_url(&headers, "azure-asyncoperation")
                        .map(|url| Lro { url, async_op: true })
                        .or_else(|| header_url(&headers, "location").map(|url| Lro { url, async_op: false }))
                        .filter(|l| self.owns_url(&l.url));
                    return Ok(Answer { status, body: parsed, lro });
                }
                401 if refused.is_none() => refused = Some(token),
                429 => {
                    let secs = retry_after(&headers).unwrap_or(5);
                    let wait = Duration::from_secs(secs.max(1));
                    if waited + wait > THROTTLE_BUDGET {
                        return Err(AzError::Throttled { retry_after_secs: secs });
                    }
                    tracing::debug!(secs, "azure: throttled, waiting Retry-After");
                    tokio::time::sleep(wait).await;
                    waited += wait;
                }
                _ => return Err(AzError::from_arm(status, &parsed, what)),
            }
        }
    }

    /// Whether `url` lies below the configured ARM endpoint (tokens never go elsewhere).
    pub fn owns_url(&self, url: &str) -> bool {
        let base = self.arm.base_url();
        url.strip_prefix(base).is_some_and(|rest| rest.starts_with('/'))
    }

    /// `GET` → body.
    pub async fn get(&self, path: &str, what: &str) -> Result<Value, AzError> {
        Ok(self.call(Method::GET, path, None, what).await?.body)
    }

    /// `GET`, with 404 as `None`.
    pub async fn get_opt(&self, path: &str, what: &str) -> Result<Option<Value>, AzError> {
        match self.get(path, what).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Follows every `nextLink` of a list (bounded to 50 pages).
    pub async fn list(&self, path: &str, what: &str) -> Result<Vec<Value>, AzError> {
        let mut out = Vec::new();
        let mut next = Some(path.to_string());
        let mut pages = 0;
        while let Some(p) = next.take() {
            pages += 1;
            if pages > 50 {
                return Err(AzError::Protocol("more than 50 pages in a list".into()));
            }
            let v = self.get(&p, what).await?;
            if let Some(items) = v.get("value").and_then(Value::as_array) {
                out.extend(items.iter().cloned());
            }
            next = v.get("nextLink").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
        }
        Ok(out)
    }

    /// Resource path below the resource group: `{group}/providers/{provider}/{name}?api-version=`.
    pub fn path(&self, provider_type: &str, name: &str, api_version: &str) -> String {
        format!(
            "{}/providers/{provider_type}/{}?api-version={api_version}",
            self.cfg.group_path(),
            urlencoding::encode(name)
        )
    }

    /// The resource id (no query) of `name` of `provider_type` in the group.
    pub fn id(&self, provider_type: &str, name: &str) -> String {
        format!("{}/providers/{provider_type}/{name}", self.cfg.group_path())
    }
}

fn header_url(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .filter(|s| s.starts_with("https://") || s.starts_with("http://"))
}

/// State of a long-running operation read from its URL.
#[derive(Debug, Clone, PartialEq)]
pub enum OpState {
    /// Still going.
    Running,
    /// Finished successfully.
    Succeeded,
    /// Failed or canceled.
    Failed(AzError),
}

impl Arm {
    /// Reads an operation (`Azure-AsyncOperation`: body `status`; `Location`: 202 = running,
    /// 200/204 = done).
    pub async fn op_state(&self, lro: &Lro) -> Result<OpState, AzError> {
        let a = self.call(Method::GET, &lro.url, None, "operation").await?;
        if !lro.async_op {
            return Ok(if a.status == 202 { OpState::Running } else { OpState::Succeeded });
        }
        let status = a.body.get("status").and_then(Value::as_str).unwrap_or("InProgress");
        Ok(match status {
            "Succeeded" => OpState::Succeeded,
            "Failed" | "Canceled" | "Cancelled" => {
                let (code, message) = crate::error::arm_error_fields(&a.body);
                OpState::Failed(AzError::OperationFailed { status: status.to_string(), code, message })
            }
            _ => OpState::Running,
        })
    }
}

/// Converts an [`AzError`] with a context prefix.
pub fn ctx(e: AzError, what: impl std::fmt::Display) -> Error {
    Error::from(e).context(what)
}
