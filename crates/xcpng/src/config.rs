//! Settings → [`Config`]: the RAS keys and the CloudStack keys (`url`, `user`,
//! `verify_tls_certificate`) map onto the same struct (see the crate README for the table).

use polyvisor_core::{Capabilities, ConsoleKind, Error, Result, SecretString, Settings, TemplateStrategy};
pub use polyvisor_http::{HttpSettings, TlsMode};
use std::time::Duration;

/// Default XAPI port (HTTPS).
pub const DEFAULT_PORT: u16 = 443;

/// How templates are implemented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TemplateMode {
    /// Ordinary halted VM marked by `other_config["polyvisor_template"]="true"`; keeps its
    /// snapshots and can be cloned from any of them (RAS versioning).
    Flag,
    /// Real XAPI template (`is_a_template`); fast clones from it.
    Native,
}

impl TemplateMode {
    /// The `template_mode` setting (`flag` default, or `native`).
    pub fn from_settings(s: &Settings) -> Result<Self> {
        match s.str("template_mode").map(|m| m.to_ascii_lowercase()).as_deref() {
            None | Some("flag") => Ok(TemplateMode::Flag),
            Some("native") => Ok(TemplateMode::Native),
            Some(_) => Err(Error::invalid("setting 'template_mode' must be 'flag' or 'native'")),
        }
    }

    /// What the driver can do in this template mode.
    pub fn capabilities(self) -> Capabilities {
        let native = self == TemplateMode::Native;
        Capabilities {
            suspend: true,
            templates: if native { TemplateStrategy::Native } else { TemplateStrategy::Flag },
            // VM.clone is a fast (copy-on-write where the SR supports it) clone of any halted
            // VM, template or snapshot.
            linked_clones: true,
            snapshots: true,
            snapshot_memory: false,
            // XAPI refuses VM.snapshot on templates, so versions of a native template cannot be made.
            clone_from_snapshot: !native,
            create: true,
            consoles: vec![ConsoleKind::Url],
            task_poll_secs: 2,
            ..Default::default()
        }
    }
}

/// The resolved driver configuration.
#[derive(Clone)]
pub struct Config {
    /// `https://host:port` of the pool master (XAPI over plain http is refused).
    pub base_url: String,
    /// The configured port (a pool-master redirect keeps it).
    pub port: u16,
    /// `host:port` for messages.
    pub display_host: String,
    /// XAPI user (`root` or an AD user with a pool role).
    pub username: String,
    /// The password (secret).
    pub password: SecretString,
    /// Certificate checking and timeouts.
    pub http: HttpSettings,
    /// SR (name label or uuid) for full copies; `None`: the source's SRs.
    pub sr: Option<String>,
    /// Network (name label or uuid) for new VIFs; `None`: the template's first VIF's network.
    pub network: Option<String>,
    /// Template implementation.
    pub template_mode: TemplateMode,
    /// Clones without an explicit mode are full copies (`clone_mode=full`, CloudStack `is_full_clone`).
    pub full_by_default: bool,
    /// Graceful shutdown budget before the hard stop.
    pub shutdown_timeout: Duration,
}

impl Config {
    /// Reads settings. Errors name the key, never a value.
    pub fn from_settings(s: &Settings) -> Result<Config> {
        let host_key = s
            .key_any(&["host", "url"])
            .ok_or_else(|| Error::invalid("setting 'host' (or CloudStack 'url') is required"))?;
        let (base_url, display_host, port) = parse_host(&s.str(host_key).unwrap_or_default(), host_key)?;
        let username = s
            .str_any(&["username", "user"])
            .ok_or_else(|| Error::invalid("setting 'username' (or 'user') is required"))?;
        let password = s.secret("password").ok_or_else(|| Error::invalid("setting 'password' is required"))?;
        let verify_key = if host_key == "url" { "verify_tls_certificate" } else { "verify_tls" };
        let http = HttpSettings::from_settings(s, verify_key)?;
        let sr = s.str("sr");
        if let Some(v) = &sr {
            name_setting(v, "sr")?;
        }
        let network = s.str("network");
        if let Some(v) = &network {
            name_setting(v, "network")?;
        }
        let full_by_default = match s.str("clone_mode").map(|m| m.to_ascii_lowercase()).as_deref() {
            Some("full") => true,
            Some("linked") | Some("fast") => false,
            Some(_) => return Err(Error::invalid("setting 'clone_mode' must be 'full' or 'linked'")),
            None => s.bool("is_full_clone")?.unwrap_or(false),
        };
        Ok(Config {
            base_url,
            port,
            display_host,
            username,
            password,
            http,
            sr,
            network,
            template_mode: TemplateMode::from_settings(s)?,
            full_by_default,
            shutdown_timeout: Duration::from_secs(s.u64_or("shutdown_timeout", 60)?),
        })
    }
}

/// A name label or uuid from settings: printable, at most 255 characters.
fn name_setting(v: &str, key: &str) -> Result<()> {
    if v.chars().count() > 255 || v.chars().any(char::is_control) {
        return Err(Error::invalid(format!("setting '{key}' must be an SR/network name label or uuid")));
    }
    Ok(())
}

/// `host`, `host:port`, `https://host[:port][/…]`, `[v6]:port` → (base URL, `host:port`, port).
/// `http://` is refused: the password would travel in cleartext.
pub fn parse_host(raw: &str, key: &str) -> Result<(String, String, u16)> {
    let bad = || Error::invalid(format!("setting '{key}' is not a valid host name, host:port or https:// URL"));
    let raw = raw.trim();
    let rest = if let Some(r) = raw.strip_prefix("https://") {
        r
    } else if raw.len() >= 7 && raw[..7].eq_ignore_ascii_case("http://") {
        return Err(Error::invalid(format!(
            "setting '{key}' uses http://, but XAPI credentials must not travel in cleartext: use https:// or host:port"
        )));
    } else if raw.contains("://") {
        return Err(bad());
    } else {
        raw
    };
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') || authority.contains(char::is_whitespace) {
        return Err(bad());
    }
    let (host, port) = split_authority(authority).ok_or_else(bad)?;
    let port = match port {
        Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad)?,
        None => DEFAULT_PORT,
    };
    let display = format!("{host}:{port}");
    Ok((format!("https://{display}"), display, port))
}

fn split_authority(a: &str) -> Option<(String, Option<&str>)> {
    if let Some(v6) = a.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((format!("[{h}]"), port));
    }
    let (h, p) = match a.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (a, None),
    };
    (!h.is_empty() && !h.contains(':')).then(|| (h.to_string(), p))
}

/// The base URL of a pool master reported by `HOST_IS_SLAVE` (an address), on our port.
pub fn master_url(master: &str, port: u16) -> Option<(String, String)> {
    let m = master.trim();
    let ok = !m.is_empty() && m.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
    if !ok {
        return None;
    }
    let host = if m.contains(':') { format!("[{m}]") } else { m.to_string() };
    let display = format!("{host}:{port}");
    Some((format!("https://{display}"), display))
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyvisor_core::ExposeSecret;
    use serde_json::json;

    #[test]
    fn hosts_parse_and_plain_http_is_refused() {
        let p = |s: &str| parse_host(s, "host").map(|x| x.0);
        assert_eq!(p("xcp.lab").unwrap(), "https://xcp.lab:443");
        assert_eq!(p("xcp.lab:8443").unwrap(), "https://xcp.lab:8443");
        assert_eq!(p("https://10.0.0.5/jsonrpc").unwrap(), "https://10.0.0.5:443");
        assert_eq!(p("[fd00::1]:8443").unwrap(), "https://[fd00::1]:8443");
        for bad in ["", "ftp://x", "x:0", "x:y", "a b", "u:p@x", "fd00::1"] {
            assert!(p(bad).is_err(), "{bad}");
        }
        let e = p("http://xcp.lab").unwrap_err();
        assert!(e.message().contains("cleartext"), "{e}");
        assert_eq!(master_url("10.0.0.7", 8443).unwrap().0, "https://10.0.0.7:8443");
        assert!(master_url("x/../y", 443).is_none());
    }

    #[test]
    fn ras_and_cloudstack_keys_give_the_same_config() {
        let ras = Settings::from_json(
            &json!({"host":"xcp:8443","username":"root","password":"S3CRET","verify_tls":"false","sr":"Local storage"}),
        )
        .unwrap();
        let cs = Settings::from_json(&json!({"url":"https://xcp:8443","user":"root","password":"S3CRET","verify_tls_certificate":"false","is_full_clone":"true"})).unwrap();
        let a = Config::from_settings(&ras).unwrap();
        let b = Config::from_settings(&cs).unwrap();
        assert_eq!(a.base_url, b.base_url);
        assert_eq!(a.http.tls, TlsMode::Insecure);
        assert_eq!(b.http.verify_key, "verify_tls_certificate");
        assert_eq!(a.password.expose_secret(), "S3CRET");
        assert!(!a.full_by_default && b.full_by_default);
        assert_eq!(a.sr.as_deref(), Some("Local storage"));
        assert_eq!(a.template_mode, TemplateMode::Flag);
    }

    #[test]
    fn errors_name_keys_not_values() {
        let s = Settings::from_json(&json!({"host":"xcp","username":"root"})).unwrap();
        assert!(Config::from_settings(&s).err().unwrap().message().contains("'password'"));
        let s = Settings::from_json(&json!({"host":"xcp","username":"root","password":"pw","fingerprint":"S3CRET"}))
            .unwrap();
        let e = Config::from_settings(&s).err().unwrap();
        assert!(e.message().contains("'fingerprint'") && !e.message().contains("S3CRET"));
        let s = Settings::from_json(&json!({"host":"xcp","username":"root","password":"pw","network":"a\nb"})).unwrap();
        assert!(Config::from_settings(&s).err().unwrap().message().contains("'network'"));
        let s = Settings::from_json(&json!({"host":"xcp","username":"root","password":"pw","template_mode":"gold"}))
            .unwrap();
        assert!(Config::from_settings(&s).is_err());
    }
}
