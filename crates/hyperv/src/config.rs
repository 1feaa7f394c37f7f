//! Settings → [`Config`] (validated; the password as [`SecretString`]). Keys (aliases after
//! `|`, the CloudStack built-in Hyper-V extension's names included): `host|url` (bare host
//! or IP; an `https://host[:port]` form is accepted), `port` (5986), `username|user`,
//! `password`, `transport` (`ntlm` default, `basic`), `verify_tls|verify_tls_certificate`,
//! `ca_file`, `fingerprint`, `connect_timeout`, `request_timeout` (polyvisor-http),
//! `vm_path`, `vhd_path`, `switch|network_switch`, `command_timeout` (s, 600),
//! `shutdown_timeout` (s, 120).

use polyvisor_core::{Error, Result, SecretString, Settings};
use polyvisor_http::HttpSettings;

/// How the WinRM listener authenticates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// NTLM (HTTP `Negotiate`), the WinRM default for local and domain accounts.
    Ntlm,
    /// HTTP Basic over HTTPS (local accounts, `Auth/Basic=true` on the listener).
    Basic,
}

/// The driver's configuration.
#[derive(Clone)]
pub struct Config {
    /// Host name or IP.
    pub host: String,
    /// WinRM HTTPS port.
    pub port: u16,
    /// Account (`user`, `DOMAIN\user` or `user@domain`).
    pub username: String,
    /// Password.
    pub password: SecretString,
    /// Auth scheme.
    pub transport: Transport,
    /// TLS and timeouts.
    pub http: HttpSettings,
    /// Where new VMs' configuration goes (`New-VM -Path`).
    pub vm_path: String,
    /// Where polyvisor's VHDX files go (and the only place it deletes files).
    pub vhd_path: String,
    /// Virtual switch for new VMs' adapters.
    pub switch: Option<String>,
    /// Bound of one remote command (clones copy disks).
    pub command_timeout: u64,
    /// Bound of a graceful shutdown.
    pub shutdown_timeout: u64,
}

/// Hyper-V's own default locations.
pub const DEFAULT_VM_PATH: &str = "C:\\ProgramData\\Microsoft\\Windows\\Hyper-V";
/// Hyper-V's default virtual hard disk folder.
pub const DEFAULT_VHD_PATH: &str = "C:\\Users\\Public\\Documents\\Hyper-V\\Virtual Hard Disks";

/// A Windows absolute path (`C:\…` or `\\server\share\…`) without control or wildcard
/// characters and without `..` components.
pub fn valid_windows_path(p: &str) -> bool {
    let b = p.as_bytes();
    let rooted = (b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && b[2] == b'\\') || p.starts_with("\\\\");
    rooted
        && p.len() <= 240
        && !p.chars().any(|c| c.is_control() || "\"<>|?*".contains(c))
        && !p.split('\\').any(|c| c == "..")
        && !p[2..].contains(':')
}

fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == ':' || c == '[' || c == ']')
}

impl Config {
    /// Parses and validates the settings. Errors name keys, never values.
    pub fn from_settings(s: &Settings) -> Result<Config> {
        let raw = s
            .str_any(&["host", "url"])
            .ok_or_else(|| Error::invalid("setting 'host' is required (the Hyper-V host's name or IP)"))?;
        let mut port = None;
        let host = if raw.contains("://") {
            let u =
                reqwest::Url::parse(&raw).map_err(|_| Error::invalid("setting 'host' is not a valid host or URL"))?;
            if u.scheme() != "https" {
                return Err(Error::invalid(
                    "setting 'host' must be a host name or an https:// URL (WinRM credentials never travel over plain http)",
                ));
            }
            if !u.username().is_empty() || u.password().is_some() {
                return Err(Error::invalid("setting 'host' must not carry credentials"));
            }
            port = u.port();
            u.host_str().unwrap_or_default().to_string()
        } else {
            raw
        };
        if !valid_host(&host) {
            return Err(Error::invalid("setting 'host' is not a valid host name or IP"));
        }
        let port = match s.u64("port")? {
            Some(p) if (1..=65535).contains(&p) => p as u16,
            Some(_) => return Err(Error::invalid("setting 'port' must be 1..65535")),
            None => port.unwrap_or(5986),
        };
        let username =
            s.str_any(&["username", "user"]).ok_or_else(|| Error::invalid("setting 'username' is required"))?;
        if username.len() > 256 || username.chars().any(|c| c.is_control() || c == ':') {
            return Err(Error::invalid("setting 'username' is not a valid account name"));
        }
        let password = s.secret("password").ok_or_else(|| Error::invalid("setting 'password' is required"))?;
        let transport = match s.str("transport").as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("ntlm") | Some("negotiate") => Transport::Ntlm,
            Some("basic") => Transport::Basic,
            Some("kerberos") => {
                return Err(Error::invalid(
                    "setting 'transport': kerberos is not supported yet (use 'ntlm' or 'basic' over HTTPS)",
                ))
            }
            Some(_) => return Err(Error::invalid("setting 'transport' must be 'ntlm' or 'basic'")),
        };
        let path = |key: &str, default: &str| -> Result<String> {
            let p = s.str(key).unwrap_or_else(|| default.to_string());
            let p = p.trim_end_matches('\\').to_string();
            if valid_windows_path(&p) {
                Ok(p)
            } else {
                Err(Error::invalid(format!("setting '{key}' must be an absolute Windows path (C:\\…)")))
            }
        };
        let switch = s.str_any(&["switch", "network_switch"]);
        if let Some(sw) = &switch {
            if sw.is_empty() || sw.len() > 100 || sw.chars().any(|c| c.is_control()) {
                return Err(Error::invalid("setting 'switch' is not a valid virtual switch name"));
            }
        }
        Ok(Config {
            host,
            port,
            username,
            password,
            transport,
            http: HttpSettings::from_settings(s, "verify_tls")?,
            vm_path: path("vm_path", DEFAULT_VM_PATH)?,
            vhd_path: path("vhd_path", DEFAULT_VHD_PATH)?,
            switch,
            command_timeout: s.u64_or("command_timeout", 600)?.clamp(5, 24 * 3600),
            shutdown_timeout: s.u64_or("shutdown_timeout", 120)?.clamp(1, 3600),
        })
    }

    /// `https://host:port/wsman`.
    pub fn endpoint(&self) -> String {
        format!("https://{}:{}/wsman", self.host, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg(v: serde_json::Value) -> Result<Config> {
        Config::from_settings(&Settings::from_json(&v).unwrap())
    }

    #[test]
    fn cloudstack_keys_and_defaults() {
        let c = cfg(json!({"url": "hv1.lab", "username": "pv", "password": "s3cret", "network_switch": "LAN",
                           "vhd_path": "D:\\VHD\\", "vm_path": "D:\\VMs", "verify_tls_certificate": "false"}))
        .unwrap();
        assert_eq!((c.host.as_str(), c.port, c.transport), ("hv1.lab", 5986, Transport::Ntlm));
        assert_eq!((c.vhd_path.as_str(), c.switch.as_deref()), ("D:\\VHD", Some("LAN")));
        assert_eq!(c.endpoint(), "https://hv1.lab:5986/wsman");
        let u = cfg(json!({"host": "https://10.0.0.5:6000", "username": "pv", "password": "x", "transport": "basic"}))
            .unwrap();
        assert_eq!((u.host.as_str(), u.port, u.transport), ("10.0.0.5", 6000, Transport::Basic));
        assert_eq!(u.vhd_path, DEFAULT_VHD_PATH);
    }

    #[test]
    fn bad_values_are_refused_without_echo() {
        for bad in [
            json!({"username": "pv", "password": "s3cret"}),
            json!({"host": "http://h", "username": "pv", "password": "s3cret"}),
            json!({"host": "h; rm", "username": "pv", "password": "s3cret"}),
            json!({"host": "h", "password": "s3cret"}),
            json!({"host": "h", "username": "pv"}),
            json!({"host": "h", "username": "pv", "password": "s3cret", "transport": "kerberos"}),
            json!({"host": "h", "username": "pv", "password": "s3cret", "vhd_path": "C:\\a\\..\\Windows"}),
            json!({"host": "h", "username": "pv", "password": "s3cret", "vm_path": "relative\\x"}),
            json!({"host": "h", "username": "pv", "password": "s3cret", "port": 70000}),
        ] {
            let e = cfg(bad.clone()).err().unwrap_or_else(|| panic!("{bad}"));
            assert_eq!(e.kind(), polyvisor_core::ErrorKind::InvalidInput, "{bad}");
            assert!(!e.message().contains("s3cret"));
        }
    }
}
