//! The XAPI JSON-RPC client (`POST /jsonrpc`, JSON-RPC 2.0, positional parameters, the
//! session reference first): login with user + password, one re-login on `SESSION_INVALID`,
//! one reconnect to the pool master on `HOST_IS_SLAVE`, read calls retried on transport
//! failures (never on TLS), and a round-trip counter (total and per driver operation).

use crate::config::{master_url, Config};
use crate::error::XapiError;
use polyvisor_core::{Error, ExposeSecret, Result, SecretString};
use polyvisor_http::{ClientOptions, CredentialedClient, SchemePolicy};
use serde_json::{json, Value};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

tokio::task_local! {
    static OP_CALLS: Cell<u64>;
}

/// Runs `fut` with its own XAPI call counter; returns the result and the count.
pub async fn count_scope<F: std::future::Future>(fut: F) -> (F::Output, u64) {
    OP_CALLS
        .scope(Cell::new(0), async move {
            let out = fut.await;
            (out, OP_CALLS.with(Cell::get))
        })
        .await
}

/// The host we talk to (the configured one, or the master it redirected us to).
#[derive(Clone)]
struct Conn {
    http: CredentialedClient,
    display: String,
}

/// The XAPI client. The only state: the connection (after a master redirect) and the session.
pub struct Rpc {
    cfg: Config,
    conn: Mutex<Conn>,
    session: Mutex<Option<SecretString>>,
    login_gate: tokio::sync::Mutex<()>,
    total: AtomicU64,
    next_id: AtomicU64,
}

const READ_RETRIES: u32 = 2;

impl Rpc {
    /// A client for this config (no I/O).
    pub fn new(cfg: Config) -> Result<Rpc> {
        let conn = Conn { http: client(&cfg, &cfg.base_url)?, display: cfg.display_host.clone() };
        Ok(Rpc {
            cfg,
            conn: Mutex::new(conn),
            session: Mutex::new(None),
            login_gate: tokio::sync::Mutex::new(()),
            total: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// XAPI calls (HTTP round trips) made so far.
    pub fn round_trips(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// `host:port` currently talked to (the master after a redirect).
    pub fn current_host(&self) -> String {
        self.conn.lock().map(|c| c.display.clone()).unwrap_or_default()
    }

    fn session(&self) -> Option<SecretString> {
        self.session.lock().ok().and_then(|s| s.clone())
    }

    fn set_session(&self, s: Option<SecretString>) {
        if let Ok(mut slot) = self.session.lock() {
            *slot = s;
        }
    }

    /// `method(session, args…)`: logs in first when needed; a `SESSION_INVALID` answer logs in
    /// again once; read calls (`get_*`) are retried on transport failures.
    pub async fn call(&self, method: &str, args: Vec<Value>) -> Result<Value, XapiError> {
        let read_only = method.rsplit('.').next().is_some_and(|m| m.starts_with("get_"));
        let mut relogged = false;
        let mut attempt = 0;
        loop {
            let session = match self.session() {
                Some(s) => s,
                None => self.login().await?,
            };
            let mut params = Vec::with_capacity(args.len() + 1);
            params.push(Value::String(session.expose_secret().to_string()));
            params.extend(args.iter().cloned());
            match self.send(method, params).await {
                Err(XapiError::SessionInvalid) if !relogged => {
                    tracing::debug!(method, "XAPI session expired; logging in again");
                    relogged = true;
                    self.drop_session(&session);
                }
                Err(e) if read_only && attempt < READ_RETRIES && e.retryable() => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(150 * u64::from(attempt))).await;
                }
                other => return other,
            }
        }
    }

    fn drop_session(&self, stale: &SecretString) {
        if let Ok(mut slot) = self.session.lock() {
            if slot.as_ref().is_some_and(|s| s.expose_secret() == stale.expose_secret()) {
                *slot = None;
            }
        }
    }

    /// Logs in (one login at a time per driver); follows one `HOST_IS_SLAVE` to the master.
    async fn login(&self) -> Result<SecretString, XapiError> {
        let _gate = self.login_gate.lock().await;
        if let Some(s) = self.session() {
            return Ok(s);
        }
        let mut redirected = false;
        loop {
            let params = vec![
                json!(self.cfg.username),
                json!(self.cfg.password.expose_secret()),
                json!("2.21"),
                json!("polyvisor"),
            ];
            match self.send("session.login_with_password", params).await {
                Ok(Value::String(s)) if s.starts_with("OpaqueRef:") => {
                    let s = SecretString::from(s);
                    self.set_session(Some(s.clone()));
                    return Ok(s);
                }
                Ok(_) => return Err(XapiError::BadAnswer("XAPI login answered without a session".into())),
                Err(XapiError::HostIsSlave { master }) if !redirected => {
                    redirected = true;
                    let (url, master_host): (String, String) = master_url(&master, self.cfg.port)
                        .ok_or_else(|| XapiError::BadAnswer("XAPI named an unusable pool master address".into()))?;
                    tracing::info!(master = %master_host, "XAPI host is a pool member; reconnecting to the pool master");
                    let http = client(&self.cfg, &url).map_err(|e| XapiError::BadAnswer(e.message().to_string()))?;
                    if let Ok(mut c) = self.conn.lock() {
                        *c = Conn { http, display: master_host };
                    }
                }
                Err(XapiError::Auth { code }) => {
                    return Err(XapiError::Auth { code: format!("{code}; login as '{}' failed", self.cfg.username) })
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Ends the session (best effort; a session left open expires on the host).
    pub async fn logout(&self) {
        if let Some(s) = self.session() {
            let _ = self.send("session.logout", vec![Value::String(s.expose_secret().to_string())]).await;
            self.drop_session(&s);
        }
    }

    fn count(&self) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let _ = OP_CALLS.try_with(|c| c.set(c.get() + 1));
    }

    /// One JSON-RPC 2.0 request.
    async fn send(&self, method: &str, params: Vec<Value>) -> Result<Value, XapiError> {
        let conn = self.conn.lock().map(|c| c.clone()).map_err(|_| XapiError::BadAnswer("client poisoned".into()))?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "method": method, "params": params, "id": id});
        self.count();
        let started = std::time::Instant::now();
        let resp = conn
            .http
            .http()
            .post(conn.http.url("/jsonrpc"))
            .json(&body)
            .send()
            .await
            .map_err(|e| self.transport_error(e, &conn.display))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| self.transport_error(e, &conn.display))?;
        tracing::debug!(target: "polyvisor_xcpng::rpc", method, status = status.as_u16(), ms = started.elapsed().as_millis() as u64, "XAPI call");
        if !status.is_success() {
            return Err(XapiError::BadAnswer(format!("XAPI answered {method} with HTTP {}", status.as_u16())));
        }
        let v: Value = serde_json::from_slice(&bytes).map_err(|_| {
            XapiError::BadAnswer(format!("XAPI answered {method} with non-JSON (no JSON-RPC on this host?)"))
        })?;
        match v.get("error") {
            Some(err) if !err.is_null() => {
                let e = XapiError::from_json(err);
                tracing::debug!(target: "polyvisor_xcpng::rpc", method, error = %e, "XAPI error");
                Err(e)
            }
            _ => Ok(v.get("result").cloned().unwrap_or(Value::Null)),
        }
    }

    fn transport_error(&self, e: reqwest::Error, host: &str) -> XapiError {
        let t = polyvisor_http::classify(&e);
        tracing::debug!(target: "polyvisor_xcpng::rpc", class = %t, "transport failure");
        XapiError::from_transport(t, host, self.cfg.http.tls_hint())
    }
}

fn client(cfg: &Config, url: &str) -> Result<CredentialedClient> {
    CredentialedClient::new("XAPI", url, &cfg.http, SchemePolicy::HttpsOnly, &ClientOptions::default())
}

/// Field readers for XAPI records (ints may arrive as numbers or strings).
pub mod rec {
    use serde_json::Value;

    /// A string field ("" when absent).
    pub fn s<'a>(v: &'a Value, k: &str) -> &'a str {
        v.get(k).and_then(Value::as_str).unwrap_or("")
    }
    /// A bool field.
    pub fn b(v: &Value, k: &str) -> bool {
        v.get(k).and_then(Value::as_bool).unwrap_or(false)
    }
    /// An int field (number or numeric string).
    pub fn i(v: &Value, k: &str) -> Option<i64> {
        match v.get(k)? {
            Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
    /// A `(string -> string) map` entry.
    pub fn map<'a>(v: &'a Value, k: &str, key: &str) -> Option<&'a str> {
        v.get(k)?.get(key)?.as_str()
    }
    /// A `ref set` field.
    pub fn refs(v: &Value, k: &str) -> Vec<String> {
        v.get(k)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect()
    }
    /// Whether a reference is set (not `OpaqueRef:NULL` / empty).
    pub fn is_ref(r: &str) -> bool {
        r.starts_with("OpaqueRef:") && r != "OpaqueRef:NULL"
    }
}

/// A core error for a failed XAPI call, with context.
pub fn err(e: XapiError, ctx: impl std::fmt::Display) -> Error {
    Error::from(e).context(ctx)
}
