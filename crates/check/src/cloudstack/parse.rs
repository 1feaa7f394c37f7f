//! How the management server interprets an extension's output (spec §4.7, §4.8, §4.9,
//! §7.4), reproduced so that the harness judges exactly what CloudStack would see.

use serde_json::{Map, Value};

/// CloudStack's power states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    /// `PowerOn`.
    On,
    /// `PowerOff`.
    Off,
    /// `PowerUnknown`.
    Unknown,
}

fn power_word(s: &str) -> Power {
    if s.eq_ignore_ascii_case("PowerOn") {
        Power::On
    } else if s.eq_ignore_ascii_case("PowerOff") {
        Power::Off
    } else {
        Power::Unknown
    }
}

/// `status` output → power state (exit code handled by the caller: ≠ 0 is unknown).
pub fn status_power(text: &str) -> Power {
    let t = text.trim();
    if t.is_empty() {
        return Power::Unknown;
    }
    if !t.starts_with('{') {
        return power_word(t);
    }
    match serde_json::from_str::<Value>(t) {
        Ok(Value::Object(m)) => m.get("power_state").and_then(Value::as_str).map_or(Power::Unknown, power_word),
        _ => Power::Unknown,
    }
}

/// `statuses` output → map of VM name to power state, or why it is unusable.
pub fn statuses_map(text: &str) -> Result<Vec<(String, Power)>, String> {
    let v: Value = serde_json::from_str(text.trim()).map_err(|e| format!("not one JSON document: {e}"))?;
    let m = v.get("power_state").and_then(Value::as_object).ok_or("`power_state` is not an object keyed by VM name")?;
    Ok(m.iter().map(|(k, v)| (k.clone(), v.as_str().map_or(Power::Unknown, power_word))).collect())
}

/// A console answer as CloudStack reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum Console {
    /// Console-proxy mode (`vnc` or any non-`direct` protocol).
    Proxy {
        /// `host`.
        host: String,
        /// `port` (string or number).
        port: i64,
        /// Whether a password was given (never the value: it is a secret).
        has_password: bool,
        /// `passwordonetimeuseonly`.
        one_time: bool,
    },
    /// `protocol: direct` with a URL.
    Direct {
        /// The URL (may carry a ticket; the caller must not print it).
        url: String,
    },
}

fn as_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// `getconsole` output → console, or CloudStack's error text.
pub fn console(text: &str) -> Result<Console, String> {
    let v: Value = serde_json::from_str(text.trim()).map_err(|e| format!("output is not JSON: {e}"))?;
    let c = v.get("console").and_then(Value::as_object).ok_or("Missing console object in output")?;
    let url = as_text(c.get("url"));
    let host = as_text(c.get("host"));
    let port = as_text(c.get("port"));
    let protocol = as_text(c.get("protocol")).unwrap_or_default();
    if url.is_none() && (host.is_none() || port.is_none()) {
        return Err("Missing required fields in output".into());
    }
    if protocol.eq_ignore_ascii_case("direct") {
        return url.map(|url| Console::Direct { url }).ok_or_else(|| "protocol direct without url".into());
    }
    let host = host.ok_or("Missing required fields in output (host)")?;
    let port = port.ok_or("Missing required fields in output (port)")?;
    let port: i64 = port.trim().parse().map_err(|_| format!("port {port:?} is not an integer"))?;
    if host.trim().is_empty() || !(1..=65535).contains(&port) {
        return Err(format!("unusable console address {host:?}:{port}"));
    }
    let one_time = c.get("passwordonetimeuseonly").and_then(Value::as_bool).unwrap_or(false);
    let has_password = as_text(c.get("password")).is_some_and(|p| !p.is_empty());
    Ok(Console::Proxy { host, port, has_password, one_time })
}

/// A custom action's output as the UI renders it: with `printmessage` true (bool or
/// case-insensitive string), `message` must be an object or an array of objects.
pub fn table(text: &str) -> Result<Vec<Map<String, Value>>, String> {
    let v: Value = serde_json::from_str(text.trim()).map_err(|e| format!("output is not JSON: {e}"))?;
    let pm = match v.get("printmessage") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    };
    if !pm {
        return Err("no `printmessage: \"true\"`: the UI would not render a table".into());
    }
    match v.get("message") {
        Some(Value::Array(a)) => a
            .iter()
            .map(|e| e.as_object().cloned().ok_or_else(|| "`message` array holds a non-object".to_string()))
            .collect(),
        Some(Value::Object(o)) => Ok(vec![o.clone()]),
        Some(Value::String(_)) => Err("`message` is a string: the 4.22 UI never shows it with printmessage".into()),
        _ => Err("`message` missing".into()),
    }
}

/// Whether the trimmed output is exactly one JSON object (the convention every in-tree
/// extension follows; stderr noise breaks it because the streams are merged).
pub fn is_one_json_object(text: &str) -> bool {
    matches!(serde_json::from_str::<Value>(text.trim()), Ok(Value::Object(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_parsing_matches_the_management_server() {
        assert_eq!(status_power(r#"{"status":"success","power_state":"poweron"}"#), Power::On);
        assert_eq!(status_power(r#"{"power_state":"PowerOff"}"#), Power::Off);
        assert_eq!(status_power("PowerOn\n"), Power::On);
        assert_eq!(status_power(r#"{"power_state":"running"}"#), Power::Unknown);
        assert_eq!(status_power("warning: x\n{\"power_state\":\"poweron\"}"), Power::Unknown);
        assert_eq!(status_power("{not json"), Power::Unknown);
        assert_eq!(status_power(""), Power::Unknown);
    }

    #[test]
    fn statuses_needs_an_object() {
        let m = statuses_map(r#"{"status":"success","power_state":{"i-2-45-VM":"poweron","x":"unknown"}}"#).unwrap();
        assert!(m.contains(&("i-2-45-VM".into(), Power::On)));
        assert!(statuses_map(r#"{"power_state":"poweron"}"#).is_err());
    }

    #[test]
    fn console_rules() {
        let ok = console(r#"{"console":{"host":"127.0.0.1","port":5900,"password":"pass","protocol":"vnc"}}"#).unwrap();
        assert_eq!(ok, Console::Proxy { host: "127.0.0.1".into(), port: 5900, has_password: true, one_time: false });
        let s = console(r#"{"console":{"host":"h","port":"5901","passwordonetimeuseonly":true}}"#).unwrap();
        assert!(matches!(s, Console::Proxy { port: 5901, one_time: true, .. }));
        assert_eq!(console(r#"{"console":{"host":"127.0.0.1"}}"#).unwrap_err(), "Missing required fields in output");
        assert_eq!(console(r#"{"status":"success"}"#).unwrap_err(), "Missing console object in output");
        assert!(matches!(
            console(r#"{"console":{"url":"https://x/y","protocol":"DIRECT"}}"#),
            Ok(Console::Direct { .. })
        ));
    }

    #[test]
    fn tables() {
        let t = table(r#"{"status":"success","printmessage":"true","message":[{"name":"a"}]}"#).unwrap();
        assert_eq!(t[0]["name"], "a");
        assert_eq!(table(r#"{"printmessage":true,"message":{"name":"a"}}"#).unwrap().len(), 1);
        assert!(table(r#"{"printmessage":"true","message":"a"}"#).is_err());
        assert!(table(r#"{"message":[]}"#).is_err());
    }
}
