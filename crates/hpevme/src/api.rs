//! The Morpheus HTTP client over `polyvisor-http`: bearer auth (static token, or OAuth
//! password grant cached in memory and fetched again once on a 401), bounded requests, a
//! bounded back-off on 429, error classification ([`VmeError`]) and round-trip counters.

use crate::config::{Auth, Config};
use crate::error::VmeError;
use polyvisor_core::{ExposeSecret, Result, SecretString};
use polyvisor_http::{ClientOptions, CredentialedClient, SchemePolicy};
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::Method;
use serde_json::Value;
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

tokio::task_local! {
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

/// Attempts per request while the API answers 429 (the waits between them are bounded).
const RATE_LIMIT_ATTEMPTS: u32 = 3;
/// Longest wait honoured from a `Retry-After` header.
const MAX_BACKOFF: Duration = Duration::from_secs(4);

/// A `Retry-After` value: delay seconds or an HTTP date (RFC 9110 §10.2.3); a date in the
/// past is no wait. The caller caps it at [`MAX_BACKOFF`].
pub fn retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(std::time::SystemTime::now()).unwrap_or(Duration::ZERO))
}

/// Query parameters.
pub type Query<'a> = &'a [(&'a str, String)];

/// The API client; the only state is the cached OAuth token.
pub struct Api {
    cfg: Config,
    http: CredentialedClient,
    token: Mutex<Option<SecretString>>,
    total: AtomicU64,
    grants: AtomicU64,
}

impl Api {
    /// A client (no I/O).
    pub fn new(cfg: Config) -> Result<Api> {
        let http = CredentialedClient::new(
            "HPE VM Essentials",
            &cfg.base_url,
            &cfg.http,
            SchemePolicy::HttpsOnly,
            &ClientOptions::default(),
        )?;
        Ok(Api { cfg, http, token: Mutex::new(None), total: AtomicU64::new(0), grants: AtomicU64::new(0) })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// HTTP requests sent so far (token requests included).
    pub fn round_trips(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// OAuth password grants made so far.
    pub fn grants(&self) -> u64 {
        self.grants.load(Ordering::Relaxed)
    }

    fn count(&self) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let _ = OP_ROUND_TRIPS.try_with(|c| c.set(c.get() + 1));
    }

    /// `GET`.
    pub async fn get(&self, path: &str, query: Query<'_>) -> Result<Value, VmeError> {
        self.call(Method::GET, path, query, None).await
    }
    /// `PUT` with a JSON body (or none).
    pub async fn put(&self, path: &str, body: Option<&Value>) -> Result<Value, VmeError> {
        self.call(Method::PUT, path, &[], body).await
    }
    /// `POST` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, VmeError> {
        self.call(Method::POST, path, &[], Some(body)).await
    }
    /// `DELETE`.
    pub async fn delete(&self, path: &str, query: Query<'_>) -> Result<Value, VmeError> {
        self.call(Method::DELETE, path, query, None).await
    }

    async fn bearer(&self, fresh: bool) -> Result<SecretString, VmeError> {
        match &self.cfg.auth {
            Auth::Token(t) => Ok(t.clone()),
            Auth::Password { username, password } => {
                if !fresh {
                    if let Some(t) = self.token.lock().ok().and_then(|g| g.clone()) {
                        return Ok(t);
                    }
                }
                let t = self.grant(username, password).await?;
                if let Ok(mut g) = self.token.lock() {
                    *g = Some(t.clone());
                }
                Ok(t)
            }
        }
    }

    /// `POST /oauth/token?client_id=morph-api&grant_type=password&scope=write`.
    async fn grant(&self, username: &str, password: &SecretString) -> Result<SecretString, VmeError> {
        self.count();
        self.grants.fetch_add(1, Ordering::Relaxed);
        let body = format!(
            "username={}&password={}",
            urlencoding::encode(username),
            urlencoding::encode(password.expose_secret())
        );
        let resp = self
            .http
            .http()
            .post(self.http.url("/oauth/token"))
            .query(&[("client_id", "morph-api"), ("grant_type", "password"), ("scope", "write")])
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| VmeError::from_transport(&e))?;
        let status = resp.status().as_u16();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if status >= 400 {
            // A refused grant is a credentials problem whatever status the server chose.
            return Err(match VmeError::from_response(status, &v) {
                VmeError::Refused(m) | VmeError::Unauthorized(m) => VmeError::Forbidden(m),
                other => other,
            });
        }
        v.get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(|t| SecretString::from(t.to_string()))
            .ok_or_else(|| VmeError::BadAnswer("the token answer carries no access_token".into()))
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        query: Query<'_>,
        body: Option<&Value>,
    ) -> Result<Value, VmeError> {
        let mut refreshed = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let token = self.bearer(false).await?;
            let mut auth = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
                .map_err(|_| VmeError::Forbidden("the access token is not a valid header value".into()))?;
            auth.set_sensitive(true);
            let mut req = self.http.http().request(method.clone(), self.http.url(path)).header(AUTHORIZATION, auth);
            if !query.is_empty() {
                req = req.query(query);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            self.count();
            let resp = req.send().await.map_err(|e| VmeError::from_transport(&e))?;
            let status = resp.status().as_u16();
            let retry_after = resp.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(retry_after);
            let text = resp.text().await.map_err(|e| VmeError::from_transport(&e))?;
            let v: Value =
                if text.trim().is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::Null) };
            if status == 401 && !refreshed && matches!(self.cfg.auth, Auth::Password { .. }) {
                refreshed = true;
                if let Ok(mut g) = self.token.lock() {
                    *g = None;
                }
                tracing::debug!(target: "polyvisor_hpevme", "401: fetching a new token");
                continue;
            }
            if status == 429 && attempt < RATE_LIMIT_ATTEMPTS {
                let wait = retry_after.unwrap_or(Duration::from_millis(500 * u64::from(attempt)));
                tokio::time::sleep(wait.min(MAX_BACKOFF)).await;
                continue;
            }
            if status >= 400 {
                return Err(VmeError::from_response(status, &v));
            }
            if !(200..300).contains(&status) {
                return Err(VmeError::BadAnswer(format!("HTTP {status}")));
            }
            if v.get("success") == Some(&Value::Bool(false)) {
                return Err(VmeError::from_response(400, &v));
            }
            if v.is_null() {
                return Err(VmeError::BadAnswer("the answer is not JSON".into()));
            }
            return Ok(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        assert_eq!(retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO), "a past date: no wait");
        let soon = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(30));
        let d = retry_after(&soon).unwrap();
        assert!(d > Duration::from_secs(25) && d <= Duration::from_secs(30), "{d:?}");
        assert_eq!(retry_after("soon"), None);
        assert_eq!(retry_after("-1"), None);
    }
}
