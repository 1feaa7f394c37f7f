//! The WinRM client: a small pool of **channels**, each one `polyvisor-http` client (so one
//! pooled TLS connection, which NTLM authenticates once) plus one remote shell reused for
//! every script it runs. A call checks a channel out, so concurrent calls never share a
//! connection mid-handshake and one slow script never stalls another. Every request is
//! bounded by `request_timeout`, every script by its own deadline (then it is terminated).

use crate::config::{Config, Transport};
use crate::error::HvError;
use crate::scripts::Script;
use crate::{ntlm, wsman};
use base64::Engine;
use polyvisor_core::{ExposeSecret, Result};
use polyvisor_http::{ClientOptions, CredentialedClient, SchemePolicy};
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Idle channels kept for reuse.
const MAX_IDLE: usize = 4;

struct Channel {
    http: CredentialedClient,
    authed: bool,
    shell: Option<String>,
}

/// NTLM attempts when a handshake leg lands on a new connection (not a refused password).
const HANDSHAKE_ATTEMPTS: usize = 3;

/// The `Authorization` a request carries.
enum Auth {
    /// None (an NTLM-authenticated connection).
    None,
    /// HTTP Basic with the configured user and password (built by reqwest).
    Basic,
    /// `Negotiate <token>`: an NTLM handshake message, base64.
    Negotiate(String),
}

/// The local address of the connection that carried `r` (NTLM authenticates a connection:
/// both legs must use the same one).
fn conn_of(r: &reqwest::Response) -> Option<std::net::SocketAddr> {
    r.extensions().get::<hyper_util::client::legacy::connect::HttpInfo>().map(|i| i.local_addr())
}

/// Lets the HTTP pool take back the connection of a fully read response before the next
/// request (it is returned by a background task).
async fn settle() {
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(2)).await;
}

/// The WinRM client.
pub struct Client {
    cfg: Config,
    endpoint: String,
    idle: Mutex<Vec<Channel>>,
    round_trips: AtomicU64,
    scripts: AtomicU64,
    shells: AtomicU64,
}

/// What a finished command produced.
struct Output {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    code: i64,
}

impl Client {
    /// A client (no I/O).
    pub fn new(cfg: Config) -> Result<Client> {
        let endpoint = cfg.endpoint();
        // Fail on bad TLS settings now, not at the first call.
        Client::channel_for(&cfg, &endpoint)?;
        Ok(Client {
            cfg,
            endpoint,
            idle: Mutex::new(Vec::new()),
            round_trips: AtomicU64::new(0),
            scripts: AtomicU64::new(0),
            shells: AtomicU64::new(0),
        })
    }

    fn channel_for(cfg: &Config, endpoint: &str) -> Result<Channel> {
        let http =
            // The server certificate comes with each response: NTLM binds to it.
            CredentialedClient::new("WinRM", endpoint, &cfg.http, SchemePolicy::HttpsOnly, &ClientOptions {
                tls_info: true,
                ..ClientOptions::default()
            })?;
        Ok(Channel { http, authed: false, shell: None })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// HTTP round trips so far (handshake legs included).
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    /// Scripts run so far.
    pub fn scripts_run(&self) -> u64 {
        self.scripts.load(Ordering::Relaxed)
    }

    /// Remote shells created so far.
    pub fn shells_created(&self) -> u64 {
        self.shells.load(Ordering::Relaxed)
    }

    /// `Receive` long-poll: shorter than the request timeout so a quiet command answers in time.
    fn operation_timeout(&self) -> u64 {
        self.cfg.http.request_timeout.as_secs().saturating_sub(3).clamp(1, 20)
    }

    fn checkout(&self) -> Result<Channel> {
        if let Some(c) = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Ok(c);
        }
        Client::channel_for(&self.cfg, &self.endpoint)
    }

    fn checkin(&self, c: Channel) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(c);
        }
    }

    async fn post(&self, ch: &Channel, body: String, auth: Auth) -> Result<reqwest::Response, HvError> {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let mut req = ch
            .http
            .http()
            .post(ch.http.base_url())
            .header(reqwest::header::CONTENT_TYPE, "application/soap+xml;charset=UTF-8")
            .body(body);
        match auth {
            Auth::None => {}
            // reqwest builds the header and marks it sensitive.
            Auth::Basic => req = req.basic_auth(&self.cfg.username, Some(self.cfg.password.expose_secret())),
            Auth::Negotiate(token) => req = req.header(reqwest::header::AUTHORIZATION, format!("Negotiate {token}")),
        }
        req.send().await.map_err(|e| HvError::from_transport(&e))
    }

    fn auth_failed(&self) -> HvError {
        let scheme = match self.cfg.transport {
            Transport::Ntlm => "NTLM",
            Transport::Basic => "Basic",
        };
        HvError::AuthFailed { user: self.cfg.username.clone(), scheme }
    }

    /// NEGOTIATE → 401 CHALLENGE → AUTHENTICATE carrying `body`: the answer to `body`. A 401
    /// to AUTHENTICATE on the connection that got the challenge is a refused password; on
    /// another connection (the pool opened a new one) the handshake is simply repeated.
    async fn ntlm_exchange(&self, ch: &mut Channel, body: String) -> Result<reqwest::Response, HvError> {
        let b64 = base64::engine::general_purpose::STANDARD;
        for _ in 0..HANDSHAKE_ATTEMPTS {
            let r = self.post(ch, String::new(), Auth::Negotiate(b64.encode(ntlm::negotiate()?))).await?;
            if r.status().as_u16() != 401 {
                return Err(HvError::Handshake(format!("expected a 401 challenge, got HTTP {}", r.status().as_u16())));
            }
            let conn = conn_of(&r);
            // The certificate of this TLS session (the one the AUTHENTICATE leg goes over).
            let bindings = r
                .extensions()
                .get::<reqwest::tls::TlsInfo>()
                .and_then(|t| t.peer_certificate())
                .map(ntlm::channel_bindings);
            let challenge = r
                .headers()
                .get_all(reqwest::header::WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(|v| v.strip_prefix("Negotiate ").or_else(|| v.strip_prefix("NTLM ")))
                .and_then(|t| b64.decode(t.trim()).ok())
                .ok_or_else(|| HvError::Handshake("the 401 carries no NTLM challenge".into()))?;
            // Drain the body so the connection goes back to the pool for the next leg.
            let _ = r.bytes().await;
            settle().await;
            let auth = ntlm::authenticate(&challenge, &self.cfg.username, self.cfg.password.expose_secret(), bindings)?;
            let r = self.post(ch, body.clone(), Auth::Negotiate(b64.encode(auth))).await?;
            if r.status().as_u16() == 401 {
                let same = conn.is_some() && conn_of(&r) == conn;
                let _ = r.bytes().await;
                settle().await;
                if same {
                    return Err(self.auth_failed());
                }
                continue;
            }
            ch.authed = true;
            return Ok(r);
        }
        Err(HvError::Handshake("the host kept opening new connections during the NTLM handshake".into()))
    }

    /// Sends one envelope; the answer text (200) or the classified failure.
    async fn send(&self, ch: &mut Channel, env: &wsman::Envelope<'_>) -> Result<String, HvError> {
        let body = env.render();
        let resp = match self.cfg.transport {
            Transport::Basic => {
                let r = self.post(ch, body, Auth::Basic).await?;
                if r.status().as_u16() == 401 {
                    return Err(self.auth_failed());
                }
                r
            }
            Transport::Ntlm if !ch.authed => self.ntlm_exchange(ch, body).await?,
            Transport::Ntlm => {
                let r = self.post(ch, body.clone(), Auth::None).await?;
                if r.status().as_u16() == 401 {
                    // The authenticated connection was closed: authenticate a new one.
                    let _ = r.bytes().await;
                    ch.authed = false;
                    self.ntlm_exchange(ch, body).await?
                } else {
                    r
                }
            }
        };
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| HvError::from_transport(&e))?;
        settle().await;
        match status {
            200 => Ok(text),
            _ => Err(wsman::fault(&text).map(HvError::Fault).unwrap_or(HvError::Http(status))),
        }
    }

    fn env<'a>(
        &'a self,
        action: &'a str,
        shell: Option<&'a str>,
        options: &'a [(&'a str, &'a str)],
        body: String,
    ) -> wsman::Envelope<'a> {
        wsman::Envelope {
            to: &self.endpoint,
            action,
            shell_id: shell,
            timeout_secs: self.operation_timeout(),
            options,
            body,
        }
    }

    async fn ensure_shell(&self, ch: &mut Channel) -> Result<String, HvError> {
        if let Some(s) = &ch.shell {
            return Ok(s.clone());
        }
        let opts = [("WINRS_NOPROFILE", "TRUE"), ("WINRS_CODEPAGE", "65001")];
        let xml = self.send(ch, &self.env(wsman::ACTION_CREATE, None, &opts, wsman::create_body())).await?;
        let id = wsman::shell_id(&xml)?;
        self.shells.fetch_add(1, Ordering::Relaxed);
        ch.shell = Some(id.clone());
        Ok(id)
    }

    async fn start_command(&self, ch: &mut Channel, args: &[String]) -> Result<(String, String), HvError> {
        let opts = [("WINRS_CONSOLEMODE_STDIN", "TRUE"), ("WINRS_SKIP_CMD_SHELL", "TRUE")];
        for attempt in 0..2 {
            let shell = self.ensure_shell(ch).await?;
            let env = self.env(wsman::ACTION_COMMAND, Some(&shell), &opts, wsman::command_body("powershell.exe", args));
            match self.send(ch, &env).await {
                Ok(xml) => return Ok((shell, wsman::command_id(&xml)?)),
                // The host dropped the shell (idle timeout, service restart): open a new one once.
                Err(HvError::Fault(f)) if attempt == 0 && f.subcode == "InvalidSelectors" => ch.shell = None,
                Err(e) => return Err(e),
            }
        }
        Err(HvError::BadAnswer("the shell could not be reopened".into()))
    }

    async fn signal(&self, ch: &mut Channel, shell: &str, cmd: &str) -> Result<(), HvError> {
        self.send(ch, &self.env(wsman::ACTION_SIGNAL, Some(shell), &[], wsman::signal_body(cmd))).await.map(|_| ())
    }

    async fn run_on(&self, ch: &mut Channel, args: &[String], bound: Duration) -> Result<Output, HvError> {
        let deadline = Instant::now() + bound;
        let (shell, cmd) = self.start_command(ch, args).await?;
        let mut out = Output { stdout: Vec::new(), stderr: Vec::new(), code: 0 };
        let opts = [("WSMAN_CMDSHELL_OPTION_KEEPALIVE", "TRUE")];
        loop {
            if Instant::now() >= deadline {
                let _ = self.signal(ch, &shell, &cmd).await;
                return Err(HvError::CommandTimeout(bound.as_secs()));
            }
            let env = self.env(wsman::ACTION_RECEIVE, Some(&shell), &opts, wsman::receive_body(&cmd));
            match self.send(ch, &env).await {
                Ok(xml) => {
                    let r = wsman::received(&xml)?;
                    out.stdout.extend(r.stdout);
                    out.stderr.extend(r.stderr);
                    if out.stdout.len() + out.stderr.len() > 64 * 1024 * 1024 {
                        let _ = self.signal(ch, &shell, &cmd).await;
                        return Err(HvError::BadAnswer("the command's output exceeds 64 MiB".into()));
                    }
                    if let Some(code) = r.done {
                        out.code = code;
                        break;
                    }
                }
                Err(HvError::Fault(f)) if f.is_operation_timeout() => continue,
                Err(e) => return Err(e),
            }
        }
        // Release the finished command on the host (as WinRS clients do).
        self.signal(ch, &shell, &cmd).await?;
        Ok(out)
    }

    /// Runs `script` with `args` (as data), bounded by `bound`; its JSON output.
    pub async fn run(&self, script: Script, args: &Value, bound: Duration) -> Result<Value, HvError> {
        self.scripts.fetch_add(1, Ordering::Relaxed);
        let mut ch = self.checkout().map_err(|e| HvError::BadAnswer(e.message().to_string()))?;
        let argv = script.command_args(args);
        let res = self.run_on(&mut ch, &argv, bound).await;
        match &res {
            // Transport failures and timeouts may leave the connection mid-exchange: drop it.
            Ok(_) | Err(HvError::Remote(_) | HvError::Exit { .. }) => self.checkin(ch),
            Err(_) => {}
        }
        let out = res?;
        tracing::debug!(target: "polyvisor_hyperv::scripts", script = script.name(), code = out.code, "done");
        if out.code != 0 {
            let stderr = String::from_utf8_lossy(&out.stderr);
            if let Some(rec) = crate::clixml::parse_error(&stderr) {
                return Err(HvError::Remote(rec));
            }
            let short: String = stderr.chars().filter(|c| !c.is_control()).take(300).collect();
            return Err(HvError::Exit { code: out.code, stderr: short });
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let text = text.trim().trim_start_matches('\u{feff}');
        serde_json::from_str(text)
            .map_err(|_| HvError::BadAnswer(format!("the {} script did not print JSON", script.name())))
    }

    /// Deletes the idle channels' shells (at exit; best effort, bounded per request).
    pub async fn close(&self) {
        let chans: Vec<Channel> = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|p| p.into_inner()));
        for mut ch in chans {
            if let Some(shell) = ch.shell.take() {
                let env = self.env(wsman::ACTION_DELETE, Some(&shell), &[], String::new());
                let _ = self.send(&mut ch, &env).await;
            }
        }
    }
}
