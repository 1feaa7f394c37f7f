//! The PVE HTTP client: authentication (token or ticket + CSRF, re-login on 401), bounded
//! requests, one retry layer for idempotent GETs, error mapping, and a round-trip counter.

use crate::config::{Auth, Config};
use crate::pve_error::{self, PveError};
use polyvisor_core::{ExposeSecret, Result, SecretString};
use polyvisor_http::{ClientOptions, CredentialedClient, SchemePolicy};
use reqwest::header::{HeaderValue, AUTHORIZATION, COOKIE};
use reqwest::Method;
use serde_json::Value;
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

tokio::task_local! {
    /// Round trips made by the current driver operation (see [`count_scope`]).
    static OP_ROUND_TRIPS: Cell<u64>;
}

/// Runs `fut` with its own round-trip counter; returns the result and the count.
pub async fn count_scope<F: std::future::Future>(fut: F) -> (F::Output, u64) {
    OP_ROUND_TRIPS
        .scope(Cell::new(0), async move {
            let out = fut.await;
            (out, OP_ROUND_TRIPS.with(Cell::get))
        })
        .await
}

/// A login ticket and its CSRF token.
#[derive(Clone)]
struct Ticket {
    cookie: SecretString,
    csrf: SecretString,
}

/// Request parameters: `(name, value)` pairs (query string for GET/DELETE, form for POST/PUT).
pub type Params<'a> = &'a [(&'a str, String)];

/// The PVE API client. Cheap to share; the only state is the ticket cache.
pub struct Api {
    cfg: Config,
    http: CredentialedClient,
    ticket: Mutex<Option<Ticket>>,
    total: AtomicU64,
}

const GET_RETRIES: usize = 2;

impl Api {
    /// A client for this config (no I/O).
    pub fn new(cfg: Config) -> Result<Api> {
        let http = CredentialedClient::new(
            "Proxmox",
            &cfg.base_url,
            &cfg.http,
            SchemePolicy::HttpsOnly,
            &ClientOptions::default(),
        )?;
        Ok(Api { cfg, http, ticket: Mutex::new(None), total: AtomicU64::new(0) })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// HTTP requests sent so far by this client (all operations).
    pub fn round_trips(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// `GET path?params` → `data`.
    pub async fn get(&self, path: &str, params: Params<'_>) -> Result<Value, PveError> {
        self.call(Method::GET, path, params).await
    }
    /// `POST path` (form) → `data`.
    pub async fn post(&self, path: &str, params: Params<'_>) -> Result<Value, PveError> {
        self.call(Method::POST, path, params).await
    }
    /// `PUT path` (form) → `data`.
    pub async fn put(&self, path: &str, params: Params<'_>) -> Result<Value, PveError> {
        self.call(Method::PUT, path, params).await
    }
    /// `DELETE path?params` → `data`.
    pub async fn delete(&self, path: &str, params: Params<'_>) -> Result<Value, PveError> {
        self.call(Method::DELETE, path, params).await
    }

    /// One API call: authenticated, re-login once on 401 (ticket auth), GETs retried on
    /// transport errors and transient 5xx (never on TLS failures).
    pub async fn call(&self, method: Method, path: &str, params: Params<'_>) -> Result<Value, PveError> {
        let mut relogged = false;
        let mut attempt = 0;
        loop {
            // Log in first (a failed login is final); a 401 on the request means the ticket expired.
            if self.uses_ticket() && self.cached_ticket().is_none() {
                self.login().await?;
            }
            match self.send_once(&method, path, params).await {
                Ok(v) => return Ok(v),
                Err(PveError::Auth { status: 401, .. }) if !relogged && self.uses_ticket() => {
                    tracing::debug!(path, "ticket rejected; logging in again");
                    self.clear_ticket();
                    relogged = true;
                }
                Err(e) if method == Method::GET && attempt < GET_RETRIES && e.retryable() => {
                    attempt += 1;
                    tracing::debug!(path, attempt, error = %e, "retrying GET");
                    tokio::time::sleep(Duration::from_millis(150 * attempt as u64)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn uses_ticket(&self) -> bool {
        matches!(self.cfg.auth, Auth::Password { .. })
    }

    fn clear_ticket(&self) {
        if let Ok(mut t) = self.ticket.lock() {
            *t = None;
        }
    }

    fn cached_ticket(&self) -> Option<Ticket> {
        self.ticket.lock().ok().and_then(|t| t.clone())
    }

    fn url(&self, path: &str) -> String {
        self.http.url(path)
    }

    fn count(&self) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let _ = OP_ROUND_TRIPS.try_with(|c| c.set(c.get() + 1));
    }

    /// Logs in with user + password (`POST /access/ticket`) and caches the ticket.
    async fn login(&self) -> Result<Ticket, PveError> {
        let Auth::Password { user, password } = &self.cfg.auth else {
            return Err(PveError::Config("login without password credentials".into()));
        };
        let form = [("username", user.as_str()), ("password", password.expose_secret())];
        self.count();
        let resp = self
            .http
            .http()
            .post(self.url("/access/ticket"))
            .form(&form)
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        let status = resp.status();
        let reason = reason_phrase(&resp);
        let body = resp.bytes().await.map_err(|e| self.transport_error(e))?;
        if !status.is_success() {
            return Err(match pve_error::from_response(status.as_u16(), reason.as_deref(), &body) {
                PveError::Auth { status, message } => {
                    PveError::Auth { status, message: format!("Proxmox login failed for user '{user}': {message}") }
                }
                other => other,
            });
        }
        let v: Value = serde_json::from_slice(&body)
            .map_err(|_| PveError::BadAnswer("Proxmox login answer is not JSON".into()))?;
        let data = v.get("data").cloned().unwrap_or(Value::Null);
        if data.get("NeedTFA").is_some_and(crate::lenient::truthy) {
            return Err(PveError::Auth {
                status: 200,
                message: "Proxmox login needs two-factor authentication; use an API token".into(),
            });
        }
        let ticket = data.get("ticket").and_then(Value::as_str);
        let csrf = data.get("CSRFPreventionToken").and_then(Value::as_str);
        let (Some(ticket), Some(csrf)) = (ticket, csrf) else {
            return Err(PveError::BadAnswer("Proxmox login answer has no ticket".into()));
        };
        let t = Ticket {
            cookie: SecretString::from(format!("PVEAuthCookie={ticket}")),
            csrf: SecretString::from(csrf.to_string()),
        };
        if let Ok(mut slot) = self.ticket.lock() {
            *slot = Some(t.clone());
        }
        Ok(t)
    }

    async fn send_once(&self, method: &Method, path: &str, params: Params<'_>) -> Result<Value, PveError> {
        let mut req = self.http.http().request(method.clone(), self.url(path));
        req = if matches!(*method, Method::GET | Method::DELETE) { req.query(params) } else { req.form(params) };
        match &self.cfg.auth {
            Auth::Token { header } => {
                let mut h = HeaderValue::from_str(header.expose_secret()).map_err(|_| {
                    PveError::Config("API token contains characters not allowed in an HTTP header".into())
                })?;
                h.set_sensitive(true);
                req = req.header(AUTHORIZATION, h);
            }
            Auth::Password { .. } => {
                let t = match self.cached_ticket() {
                    Some(t) => t,
                    None => self.login().await?,
                };
                let mut c = HeaderValue::from_str(t.cookie.expose_secret())
                    .map_err(|_| PveError::BadAnswer("Proxmox ticket is not a valid cookie".into()))?;
                c.set_sensitive(true);
                req = req.header(COOKIE, c);
                if *method != Method::GET {
                    let mut x = HeaderValue::from_str(t.csrf.expose_secret())
                        .map_err(|_| PveError::BadAnswer("Proxmox CSRF token is not a valid header".into()))?;
                    x.set_sensitive(true);
                    req = req.header("CSRFPreventionToken", x);
                }
            }
        }
        self.count();
        let started = std::time::Instant::now();
        let resp = req.send().await.map_err(|e| self.transport_error(e))?;
        let status = resp.status();
        let reason = reason_phrase(&resp);
        let body = resp.bytes().await.map_err(|e| self.transport_error(e))?;
        tracing::debug!(target: "polyvisor_proxmox::http", %method, path, status = status.as_u16(), ms = started.elapsed().as_millis() as u64, "PVE API call");
        if !status.is_success() {
            let e = pve_error::from_response(status.as_u16(), reason.as_deref(), &body);
            tracing::debug!(target: "polyvisor_proxmox::http", %method, path, status = status.as_u16(), error = %e, "PVE API error");
            return Err(e);
        }
        if body.is_empty() {
            return Ok(Value::Null);
        }
        let v: Value = serde_json::from_slice(&body)
            .map_err(|_| PveError::BadAnswer(format!("Proxmox answered {method} {path} with non-JSON")))?;
        Ok(v.get("data").cloned().unwrap_or(Value::Null))
    }

    /// Classified by `polyvisor-http` from the error's source chain (not its text).
    fn transport_error(&self, e: reqwest::Error) -> PveError {
        let t = polyvisor_http::classify(&e);
        // reqwest's Debug carries the URL (no secrets: tickets and tokens are headers).
        tracing::debug!(target: "polyvisor_proxmox::http", error = ?e, class = %t, "transport failure");
        PveError::from_transport(t, &self.cfg.display_host, self.cfg.http.tls_hint())
    }
}

/// The status line's reason phrase as sent (PVE <= 8.3 puts its message only there);
/// hyper keeps it when it differs from the canonical one.
fn reason_phrase(resp: &reqwest::Response) -> Option<String> {
    resp.extensions()
        .get::<hyper::ext::ReasonPhrase>()
        .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned())
        .or_else(|| resp.status().canonical_reason().map(str::to_string))
}
