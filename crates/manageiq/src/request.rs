//! The connection request read from stdin (spec §8.2):
//! `{"platform", "endpoint": {"hostname", "port", "verify_ssl", "ca"}, "auth": {"userid", "password", ...}, "options": {...}}`
//! turned into driver [`Settings`] without naming any driver: `platform` → `driver`,
//! `hostname[:port]` → `host`, `verify_ssl` → `verify_tls`, `ca` → `ca_file`,
//! `auth.userid` → `username`, `auth.password` → `password`, any other `auth` or `options`
//! key verbatim (e.g. `token_name`/`token_secret`, `node`, `sim_db`).

use polyvisor_core::{Error, Result, Settings};
use serde::Deserialize;
use serde_json::{Map, Value};

/// The stdin document.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// polyvisor driver name (`sim`, `proxmox`, `libvirt`, ...).
    pub platform: String,
    /// Where the backend is.
    #[serde(default)]
    pub endpoint: Endpoint,
    /// Credentials.
    #[serde(default)]
    pub auth: Map<String, Value>,
    /// Further driver settings.
    #[serde(default)]
    pub options: Map<String, Value>,
    /// The ManageIQ EMS id (for the persister format).
    #[serde(default)]
    pub ems_id: Option<u64>,
}

/// The endpoint part.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// Host name or address.
    #[serde(default)]
    pub hostname: Option<String>,
    /// TCP port.
    #[serde(default)]
    pub port: Option<u16>,
    /// Verify the server certificate (default true).
    #[serde(default)]
    pub verify_ssl: Option<bool>,
    /// CA file path.
    #[serde(default)]
    pub ca: Option<String>,
}

impl Request {
    /// Parses stdin; `InvalidInput` naming the problem (never echoing values).
    pub fn parse(text: &str) -> Result<Request> {
        if text.trim().is_empty() {
            return Err(Error::invalid("no connection JSON on stdin"));
        }
        serde_json::from_str(text).map_err(|e| {
            Error::invalid(format!(
                "stdin is not a valid connection document (line {}, column {}: {})",
                e.line(),
                e.column(),
                match e.classify() {
                    serde_json::error::Category::Data => "unexpected field or type",
                    serde_json::error::Category::Syntax => "syntax error",
                    serde_json::error::Category::Eof => "truncated",
                    serde_json::error::Category::Io => "read error",
                }
            ))
        })
    }

    /// The driver settings.
    pub fn settings(&self) -> Result<Settings> {
        let mut s = Settings::new();
        for (k, v) in &self.options {
            s.set(k.clone(), scalar(k, v)?);
        }
        if let Some(h) = self.endpoint.hostname.as_deref().filter(|h| !h.is_empty()) {
            let host = match self.endpoint.port {
                Some(p) => format!("{h}:{p}"),
                None => h.to_string(),
            };
            s.set("host", host);
        }
        if let Some(v) = self.endpoint.verify_ssl {
            s.set("verify_tls", v.to_string());
        }
        if let Some(ca) = self.endpoint.ca.as_deref().filter(|c| !c.is_empty()) {
            s.set("ca_file", ca.to_string());
        }
        for (k, v) in &self.auth {
            let key = match k.as_str() {
                "userid" => "username",
                other => other,
            };
            if v.is_null() {
                continue;
            }
            s.set(key.to_string(), scalar(k, v)?);
        }
        s.set("driver", self.platform.clone());
        Ok(s)
    }
}

fn scalar(key: &str, v: &Value) -> Result<Value> {
    match v {
        Value::String(_) => Ok(v.clone()),
        Value::Bool(b) => Ok(Value::String(b.to_string())),
        Value::Number(n) => Ok(Value::String(n.to_string())),
        _ => Err(Error::invalid(format!("connection field '{key}' must be a string, number or boolean"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_the_spec_document_to_settings() {
        let r = Request::parse(
            r#"{"platform":"proxmox","endpoint":{"hostname":"pve.lab","port":8006,"verify_ssl":true,"ca":null},
                "auth":{"userid":"root@pam","token_name":"ci","token_secret":"s3"},"options":{"node":"pve1","ip_wait_timeout":1}}"#,
        )
        .unwrap();
        let s = r.settings().unwrap();
        assert_eq!(s.str("driver").as_deref(), Some("proxmox"));
        assert_eq!(s.str("host").as_deref(), Some("pve.lab:8006"));
        assert_eq!(s.str("username").as_deref(), Some("root@pam"));
        assert_eq!(s.str("token_name").as_deref(), Some("ci"));
        assert_eq!(s.str("ip_wait_timeout").as_deref(), Some("1"));
        assert_eq!(s.str("verify_tls").as_deref(), Some("true"));
        assert!(!s.has("ca_file"));
    }

    #[test]
    fn bad_documents_are_invalid_input_without_echo() {
        for bad in ["", "{", r#"{"platform":1}"#, r#"{"platform":"sim","extra":1}"#, "[]"] {
            let e = Request::parse(bad).unwrap_err();
            assert_eq!(e.kind(), polyvisor_core::ErrorKind::InvalidInput, "{bad}");
        }
        let e =
            Request::parse(r#"{"platform":"sim","auth":{"password":{"x":"secret"}}}"#).unwrap().settings().unwrap_err();
        assert!(!e.message().contains("secret"));
    }
}
