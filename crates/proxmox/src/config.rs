//! Settings → [`Config`]: the RAS sample keys and the CloudStack built-in keys map onto
//! the same struct, so both fronts behave alike (see the crate README for the key table).

use polyvisor_core::{
    Capabilities, ConsoleKind, Error, ExposeSecret, Result, SecretString, Settings, TemplateStrategy,
};
pub use polyvisor_http::{parse_fingerprint, HttpSettings, TlsMode};
use std::time::Duration;

/// Default PVE API port.
pub const DEFAULT_PORT: u16 = 8006;

/// How the driver authenticates.
#[derive(Clone)]
pub enum Auth {
    /// `Authorization: PVEAPIToken=<user>!<tokenid>=<secret>` on every request.
    Token {
        /// The whole header value (secret).
        header: SecretString,
    },
    /// Ticket login with user name and password (`POST /access/ticket`).
    Password {
        /// `user@realm`.
        user: String,
        /// The password (secret).
        password: SecretString,
    },
}

/// How templates are implemented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TemplateMode {
    /// Ordinary stopped VM marked by the `polyvisor-template` tag; keeps its snapshots.
    Flag,
    /// Real Proxmox template (`POST …/template`); linked clones.
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
            linked_clones: native,
            snapshots: true,
            snapshot_memory: true,
            clone_from_snapshot: !native,
            create: true,
            consoles: vec![ConsoleKind::Vnc],
            task_poll_secs: 2,
            networking: polyvisor_core::netops::NetworkCaps { vlan_nics: true, ..Default::default() },
            native_events: true,
            event_wakeup: false,
            metrics: true,
        }
    }
}

/// Default clone mode from settings (`clone_mode`, CloudStack `is_full_clone`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloneDefault {
    /// Always full copies.
    Full,
    /// Linked where the source is a native template.
    Linked,
}

/// The resolved driver configuration.
#[derive(Clone)]
pub struct Config {
    /// `https://host:port/api2/json` (Proxmox only speaks HTTPS; `http://` is refused).
    pub base_url: String,
    /// `host:port` for messages.
    pub display_host: String,
    /// Credentials.
    pub auth: Auth,
    /// Default node for creates (`node`).
    pub node: Option<String>,
    /// Target storage for full clones and new disks (`storage`).
    pub storage: Option<String>,
    /// Pool new guests join (`pool`).
    pub pool: Option<String>,
    /// Default bridge for new NICs (`network_bridge`, default `vmbr0`).
    pub bridge: String,
    /// Certificate checking and timeouts (the settings every HTTP driver shares).
    pub http: HttpSettings,
    /// Default clone mode.
    pub clone_default: CloneDefault,
    /// How long a started clone may take to report an IPv4 address.
    pub ip_wait: Duration,
    /// Template implementation.
    pub template_mode: TemplateMode,
    /// Disk size for ISO installs (`disk_size_gb`, default 64).
    pub disk_size_gb: u64,
    /// OS type for ISO installs (`iso_os_type`, default `l26`).
    pub iso_os_type: String,
    /// Graceful shutdown budget before the hard stop (`shutdown_timeout`, default 60 s).
    pub shutdown_timeout_secs: u64,
}

impl Config {
    /// Reads settings. Errors name the key, never a value.
    pub fn from_settings(s: &Settings) -> Result<Config> {
        let host_key = s
            .key_any(&["host", "url"])
            .ok_or_else(|| Error::invalid("setting 'host' (or CloudStack 'url') is required"))?;
        let raw_host = s.str(host_key).unwrap_or_default();
        let (base_url, display_host) = parse_host_key(&raw_host, host_key)?;
        let user = s.str_any(&["username", "user"]);
        let token_name = s.str_any(&["token_name", "token"]);
        let token_secret = s.secret_any(&["token_secret", "secret"]);
        let password = s.secret("password");
        let auth = match (token_name, token_secret, password) {
            (Some(name), Some(secret), _) => {
                let id = if name.contains('!') {
                    name
                } else {
                    let user = user
                        .clone()
                        .ok_or_else(|| Error::invalid("setting 'username' (or 'user') is required with a token"))?;
                    format!("{user}!{name}")
                };
                Auth::Token { header: SecretString::from(format!("PVEAPIToken={id}={}", secret.expose_secret())) }
            }
            (None, None, Some(password)) | (Some(_), None, Some(password)) | (None, Some(_), Some(password)) => {
                let mut user = user.ok_or_else(|| Error::invalid("setting 'username' (or 'user') is required"))?;
                if !user.contains('@') {
                    user.push_str("@pam");
                }
                Auth::Password { user, password }
            }
            (Some(_), None, None) => {
                return Err(Error::invalid("setting 'token_secret' (or 'secret') is required with a token"))
            }
            (None, Some(_), None) => {
                return Err(Error::invalid("setting 'token_name' (or 'token') is required with a token secret"))
            }
            (None, None, None) => {
                return Err(Error::invalid(
                    "credentials missing: set 'token_name' + 'token_secret' (or 'token' + 'secret'), or 'password'",
                ))
            }
        };
        // CloudStack names its host key `url` and its TLS switch `verify_tls_certificate`.
        let verify_key = if host_key == "url" { "verify_tls_certificate" } else { "verify_tls" };
        let http = HttpSettings::from_settings(s, verify_key)?;
        let clone_default = match s.str("clone_mode").map(|m| m.to_ascii_lowercase()).as_deref() {
            Some("full") => CloneDefault::Full,
            Some("linked") | Some("link") => CloneDefault::Linked,
            Some(_) => return Err(Error::invalid("setting 'clone_mode' must be 'full' or 'linked'")),
            None => match s.bool("is_full_clone")? {
                Some(false) | None => CloneDefault::Linked,
                Some(true) => CloneDefault::Full,
            },
        };
        let template_mode = TemplateMode::from_settings(s)?;
        // Everything below ends up in property strings or paths: checked before any request.
        let node = s.str("node");
        if let Some(n) = &node {
            crate::validate::node(n, "setting 'node'")?;
        }
        let storage = s.str("storage");
        if let Some(st) = &storage {
            crate::validate::storage_id(st, "setting 'storage'")?;
        }
        let pool = s.str("pool");
        if let Some(p) = &pool {
            crate::validate::pool(p, "setting 'pool'")?;
        }
        let bridge = s.str("network_bridge").unwrap_or_else(|| "vmbr0".into());
        crate::validate::bridge(&bridge, "setting 'network_bridge'")?;
        let iso_os_type = s.str("iso_os_type").unwrap_or_else(|| "l26".into());
        crate::validate::os_type(&iso_os_type, "setting 'iso_os_type'")?;
        Ok(Config {
            base_url,
            display_host,
            auth,
            node,
            storage,
            pool,
            bridge,
            http,
            clone_default,
            ip_wait: Duration::from_secs(s.u64_or("ip_wait_timeout", 300)?),
            template_mode,
            disk_size_gb: s.u64_or("disk_size_gb", 64)?,
            iso_os_type,
            shutdown_timeout_secs: s.u64_or("shutdown_timeout", 60)?,
        })
    }
}

/// `host`, `host:port`, `https://host[:port][/…]`, `[v6]:port` → (base URL, `host:port`).
/// `http://` is refused: Proxmox only speaks HTTPS, and a plain URL would send the API
/// token or the password in cleartext.
pub fn parse_host(raw: &str) -> Result<(String, String)> {
    parse_host_key(raw, "host")
}

fn parse_host_key(raw: &str, key: &str) -> Result<(String, String)> {
    let bad = || Error::invalid(format!("setting '{key}' is not a valid host name, host:port or https:// URL"));
    let raw = raw.trim();
    let (scheme, rest) = if let Some(r) = raw.strip_prefix("https://") {
        ("https", r)
    } else if raw.len() >= 7 && raw[..7].eq_ignore_ascii_case("http://") {
        return Err(Error::invalid(format!(
            "setting '{key}' uses http://, but Proxmox only speaks HTTPS (plain http would send credentials in \
             cleartext): use https:// or just host:port"
        )));
    } else if raw.contains("://") {
        return Err(bad());
    } else {
        ("https", raw)
    };
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') || authority.contains(char::is_whitespace) {
        return Err(bad());
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(bad)?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(bad()),
        };
        (format!("[{h}]"), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    if host.is_empty() || host.contains(':') && !host.starts_with('[') {
        return Err(bad());
    }
    let port: u16 = match port {
        Some(p) => p.parse().ok().filter(|p| *p > 0).ok_or_else(bad)?,
        None => DEFAULT_PORT,
    };
    let display = format!("{host}:{port}");
    Ok((format!("{scheme}://{display}/api2/json"), display))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hosts_with_and_without_port_and_scheme() {
        let p = |s: &str| parse_host(s).unwrap().0;
        assert_eq!(p("pve.lab"), "https://pve.lab:8006/api2/json");
        assert_eq!(p("pve.lab:8443"), "https://pve.lab:8443/api2/json");
        assert_eq!(p("https://10.0.0.5:8006/"), "https://10.0.0.5:8006/api2/json");
        assert_eq!(p("https://10.0.0.5/api2/json"), "https://10.0.0.5:8006/api2/json");
        assert_eq!(p("[fd00::1]:8006"), "https://[fd00::1]:8006/api2/json");
        assert_eq!(p("[fd00::1]"), "https://[fd00::1]:8006/api2/json");
        for bad in ["", "ftp://x", "host:notaport", "host:0", "a b", "user:pw@host", "fd00::1"] {
            assert!(parse_host(bad).is_err(), "{bad}");
        }
        // Regression (issue 9 item 3): http:// used to be accepted and sent the token in cleartext.
        for plain in ["http://127.0.0.1:9", "HTTP://pve.lab:8006/api2/json"] {
            let e = parse_host(plain).unwrap_err();
            assert!(e.message().contains("only speaks HTTPS"), "{e}");
        }
        let cs = Settings::from_json(&json!({"url":"http://pve","user":"root@pam","token":"ci","secret":"S"})).unwrap();
        let e = Config::from_settings(&cs).err().unwrap();
        assert!(e.message().contains("setting 'url' uses http://"), "{e}");
    }

    #[test]
    fn ras_and_cloudstack_keys_give_the_same_config() {
        let ras = Settings::from_json(&json!({"host":"pve:8006","username":"root@pam","token_name":"ci","token_secret":"S3CRET","verify_tls":"false"})).unwrap();
        let cs = Settings::from_json(&json!({"url":"pve","user":"root@pam","token":"ci","secret":"S3CRET","verify_tls_certificate":"false","network_bridge":"vmbr1","is_full_clone":"true"})).unwrap();
        let a = Config::from_settings(&ras).unwrap();
        let b = Config::from_settings(&cs).unwrap();
        assert_eq!(a.base_url, b.base_url);
        assert_eq!(a.http.tls, TlsMode::Insecure);
        assert_eq!(a.http.verify_key, "verify_tls");
        assert_eq!(b.http.tls, TlsMode::Insecure);
        assert_eq!(b.http.verify_key, "verify_tls_certificate", "CloudStack's key is named in TLS hints");
        assert_eq!(b.bridge, "vmbr1");
        assert_eq!(b.clone_default, CloneDefault::Full);
        match (&a.auth, &b.auth) {
            (Auth::Token { header: x }, Auth::Token { header: y }) => {
                assert_eq!(x.expose_secret(), "PVEAPIToken=root@pam!ci=S3CRET");
                assert_eq!(x.expose_secret(), y.expose_secret());
            }
            _ => panic!("token auth expected"),
        }
    }

    #[test]
    fn property_string_settings_are_validated_before_any_request() {
        let base = json!({"host":"pve","username":"root@pam","token_name":"ci","token_secret":"S"});
        let with = |k: &str, v: &str| {
            let mut b = base.clone();
            b[k] = json!(v);
            Config::from_settings(&Settings::from_json(&b).unwrap())
        };
        // Regression (issue 9 item 5): this value was pasted into net0 unchecked.
        let e = with("network_bridge", "vmbr0,link_down=1,rate=1").err().unwrap();
        assert_eq!(e.kind(), polyvisor_core::ErrorKind::InvalidInput);
        assert!(e.message().contains("'network_bridge'"), "{e}");
        for (k, v) in
            [("storage", "local-lvm,size=999"), ("pool", "p,x=1"), ("node", "pve1/../x"), ("iso_os_type", "l26,x")]
        {
            assert!(with(k, v).is_err(), "{k}={v}");
        }
        assert_eq!(with("network_bridge", "vmbr1").ok().unwrap().bridge, "vmbr1");
    }

    #[test]
    fn errors_name_keys_not_values() {
        let s = Settings::from_json(&json!({"host":"pve","username":"root@pam","token_name":"ci","token_secret":"S3CRET","fingerprint":"S3CRET"})).unwrap();
        let e = Config::from_settings(&s).err().unwrap();
        assert!(e.message().contains("'fingerprint'") && !e.message().contains("S3CRET"));
        let s = Settings::from_json(&json!({"host":"pve"})).unwrap();
        assert!(Config::from_settings(&s).is_err());
        let s = Settings::from_json(&json!({"host":"pve","username":"root","password":"pw","template_mode":"native"}))
            .unwrap();
        let c = Config::from_settings(&s).unwrap();
        assert!(matches!(c.auth, Auth::Password { ref user, .. } if user == "root@pam"));
        assert_eq!(c.template_mode, TemplateMode::Native);
    }
}
