//! Driver settings as platforms deliver them: a flat, string-keyed map whose values may be
//! strings, numbers or booleans (RAS Console variables arrive as strings, the Test Kit and
//! CloudStack payloads differ). Accessors parse leniently; `Debug` never prints values.

use crate::error::{Error, Result};
use secrecy::SecretString;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

/// A flat map of settings. Keys are matched case-sensitively after trimming.
#[derive(Clone, Default, PartialEq)]
pub struct Settings(BTreeMap<String, Value>);

impl Settings {
    /// Empty settings.
    pub fn new() -> Self {
        Self::default()
    }

    /// From a JSON object; any other JSON value is an [`crate::ErrorKind::InvalidInput`].
    pub fn from_json(v: &Value) -> Result<Self> {
        match v {
            Value::Object(m) => Ok(Settings(m.iter().map(|(k, v)| (k.trim().to_string(), v.clone())).collect())),
            Value::Null => Ok(Settings::default()),
            _ => Err(Error::invalid("settings must be an object")),
        }
    }

    /// From string pairs (e.g. CloudStack `externaldetails` maps or environment variables).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Settings(pairs.into_iter().map(|(k, v)| (k.into().trim().to_string(), Value::String(v.into()))).collect())
    }

    /// Sets one value.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        self.0.insert(key.into(), value.into());
    }

    /// Overlays `other` on top of `self` (values in `other` win).
    pub fn merged_with(mut self, other: &Settings) -> Self {
        for (k, v) in &other.0 {
            self.0.insert(k.clone(), v.clone());
        }
        self
    }

    /// Whether a non-empty value exists for `key`.
    pub fn has(&self, key: &str) -> bool {
        self.str(key).is_some()
    }

    /// Keys present (for validation messages; values are never listed).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// The raw JSON value.
    pub fn raw(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// A string value: strings trimmed, numbers and booleans stringified; empty or null is `None`.
    pub fn str(&self, key: &str) -> Option<String> {
        let s = match self.0.get(key)? {
            Value::String(s) => s.trim().to_string(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => return None,
        };
        (!s.is_empty()).then_some(s)
    }

    /// The first non-empty string among several alias keys.
    pub fn str_any(&self, keys: &[&str]) -> Option<String> {
        keys.iter().find_map(|k| self.str(k))
    }

    /// Which of several alias keys supplies the value (the first with a non-empty value), so
    /// messages can name the key the platform in use actually sent (CloudStack delivers
    /// `verify_tls_certificate` where RAS sends `verify_tls`).
    pub fn key_any<'k>(&self, keys: &[&'k str]) -> Option<&'k str> {
        keys.iter().copied().find(|k| match self.0.get(*k) {
            None | Some(Value::Null) => false,
            Some(Value::String(s)) => !s.trim().is_empty(),
            Some(_) => true,
        })
    }

    /// A boolean from the first alias key that has a value, with that key.
    pub fn bool_any<'k>(&self, keys: &[&'k str]) -> Result<Option<(bool, &'k str)>> {
        match self.key_any(keys) {
            Some(k) => Ok(self.bool(k)?.map(|b| (b, k))),
            None => Ok(None),
        }
    }

    /// A secret value (token, password); never printed by `Debug`.
    pub fn secret(&self, key: &str) -> Option<SecretString> {
        self.str(key).map(SecretString::from)
    }

    /// The first non-empty secret among several alias keys.
    pub fn secret_any(&self, keys: &[&str]) -> Option<SecretString> {
        keys.iter().find_map(|k| self.secret(k))
    }

    /// A boolean, leniently: `true/false`, `"true"/"false"`, `"yes"/"no"`, `"on"/"off"`,
    /// `1/0`, `"1"/"0"` (case-insensitive). Absent or empty is `Ok(None)`; anything else
    /// is an invalid-input error naming the key (not the value).
    pub fn bool(&self, key: &str) -> Result<Option<bool>> {
        let Some(v) = self.0.get(key) else { return Ok(None) };
        let parsed = match v {
            Value::Bool(b) => Some(*b),
            Value::Null => return Ok(None),
            Value::Number(n) => match n.as_i64() {
                Some(0) => Some(false),
                Some(1) => Some(true),
                _ => None,
            },
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "" => return Ok(None),
                "true" | "yes" | "on" | "1" => Some(true),
                "false" | "no" | "off" | "0" => Some(false),
                _ => None,
            },
            _ => None,
        };
        parsed.map(Some).ok_or_else(|| Error::invalid(format!("setting '{key}' must be a boolean")))
    }

    /// A boolean with a default.
    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        Ok(self.bool(key)?.unwrap_or(default))
    }

    /// An unsigned integer from a number or numeric string. Absent or empty is `Ok(None)`.
    pub fn u64(&self, key: &str) -> Result<Option<u64>> {
        let Some(v) = self.0.get(key) else { return Ok(None) };
        let parsed = match v {
            Value::Null => return Ok(None),
            Value::Number(n) => {
                n.as_u64().or_else(|| n.as_f64().filter(|f| *f >= 0.0 && f.fract() == 0.0).map(|f| f as u64))
            }
            Value::String(s) if s.trim().is_empty() => return Ok(None),
            Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        };
        parsed.map(Some).ok_or_else(|| Error::invalid(format!("setting '{key}' must be a non-negative integer")))
    }

    /// An unsigned integer with a default.
    pub fn u64_or(&self, key: &str, default: u64) -> Result<u64> {
        Ok(self.u64(key)?.unwrap_or(default))
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys only: values may be secrets.
        f.debug_set().entries(self.0.keys()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use serde_json::json;

    #[test]
    fn lenient_parsing() {
        let s = Settings::from_json(&json!({
            "a": "true", "b": "0", "c": false, "d": 1, "e": " 42 ", "f": 7, "g": "", "h": "maybe", "tok": "s3cret"
        }))
        .unwrap();
        assert_eq!(s.bool("a").unwrap(), Some(true));
        assert_eq!(s.bool("b").unwrap(), Some(false));
        assert_eq!(s.bool("c").unwrap(), Some(false));
        assert_eq!(s.bool("d").unwrap(), Some(true));
        assert_eq!(s.bool("g").unwrap(), None);
        assert!(s.bool("h").is_err());
        assert_eq!(s.u64("e").unwrap(), Some(42));
        assert_eq!(s.u64("f").unwrap(), Some(7));
        assert_eq!(s.str("f").as_deref(), Some("7"));
        assert_eq!(s.str("g"), None);
        assert_eq!(s.secret("tok").unwrap().expose_secret(), "s3cret");
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("s3cret"), "{dbg}");
        assert!(s.bool("h").unwrap_err().to_string().contains("'h'"));
        assert!(!s.bool("h").unwrap_err().to_string().contains("maybe"));
    }

    #[test]
    fn alias_keys_remember_which_one_supplied_the_value() {
        let cs = Settings::from_json(&json!({"verify_tls": "", "verify_tls_certificate": "false"})).unwrap();
        assert_eq!(cs.key_any(&["verify_tls", "verify_tls_certificate"]), Some("verify_tls_certificate"));
        assert_eq!(
            cs.bool_any(&["verify_tls", "verify_tls_certificate"]).unwrap(),
            Some((false, "verify_tls_certificate"))
        );
        let ras = Settings::from_json(&json!({"verify_tls": true})).unwrap();
        assert_eq!(ras.bool_any(&["verify_tls", "verify_tls_certificate"]).unwrap(), Some((true, "verify_tls")));
        assert_eq!(Settings::new().bool_any(&["verify_tls"]).unwrap(), None);
        let bad = Settings::from_json(&json!({"verify_tls_certificate": "maybe"})).unwrap();
        assert!(bad
            .bool_any(&["verify_tls", "verify_tls_certificate"])
            .unwrap_err()
            .message()
            .contains("'verify_tls_certificate'"));
    }

    #[test]
    fn merge_overrides() {
        let a = Settings::from_pairs([("url", "a"), ("node", "n1")]);
        let b = Settings::from_pairs([("node", "n2")]);
        let m = a.merged_with(&b);
        assert_eq!(m.str("url").as_deref(), Some("a"));
        assert_eq!(m.str("node").as_deref(), Some("n2"));
    }
}
