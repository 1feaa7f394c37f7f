//! Typed custom-action parameters (spec §7.3): `BOOLEAN` arrives as JSON `true`/`false`,
//! `NUMBER` as a number, but undeclared or hand-written ones as strings; accept both.

use polyvisor_core::{Error, Result};
use serde_json::{Map, Value};

/// The parameters of one custom-action call.
pub struct Params<'a>(Option<&'a Map<String, Value>>);

impl<'a> Params<'a> {
    /// Wraps the payload's `parameters` object.
    pub fn new(map: Option<&'a Map<String, Value>>) -> Self {
        Params(map)
    }

    fn get(&self, keys: &[&str]) -> Option<(&'a str, &'a Value)> {
        let map = self.0?;
        keys.iter().find_map(|k| map.get_key_value(*k)).map(|(k, v)| (k.as_str(), v)).filter(|(_, v)| !v.is_null())
    }

    /// A string parameter (numbers and booleans stringified), trimmed; empty is absent.
    pub fn str(&self, keys: &[&str]) -> Option<String> {
        let s = match self.get(keys)?.1 {
            Value::String(s) => s.trim().to_string(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => return None,
        };
        (!s.is_empty()).then_some(s)
    }

    /// A required string parameter.
    pub fn required_str(&self, keys: &[&str]) -> Result<String> {
        self.str(keys).ok_or_else(|| Error::invalid(format!("Missing or empty required parameter: {}", keys[0])))
    }

    /// A boolean: `true`/`false` or the strings `true|false|1|0|yes|no|on|off`
    /// (any case); absent is `default`. Anything else is an error naming the parameter.
    pub fn bool(&self, keys: &[&str], default: bool) -> Result<bool> {
        let Some((key, v)) = self.get(keys) else { return Ok(default) };
        let parsed = match v {
            Value::Bool(b) => Some(*b),
            Value::Number(n) => n.as_i64().and_then(|i| match i {
                0 => Some(false),
                1 => Some(true),
                _ => None,
            }),
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "" => Some(default),
                "true" | "1" | "yes" | "on" => Some(true),
                "false" | "0" | "no" | "off" => Some(false),
                _ => None,
            },
            _ => None,
        };
        parsed.ok_or_else(|| Error::invalid(format!("Parameter {key} must be a boolean")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn typed_and_string_values() {
        let v = json!({"snap_name": " before-upgrade ", "snap_save_memory": true, "a": "TRUE", "b": "0", "c": 1, "d": "maybe", "n": 42, "e": ""});
        let p = Params::new(v.as_object());
        assert_eq!(p.str(&["snap_name"]).as_deref(), Some("before-upgrade"));
        assert_eq!(p.str(&["n"]).as_deref(), Some("42"));
        assert!(p.bool(&["snap_save_memory"], false).unwrap());
        assert!(p.bool(&["a"], false).unwrap());
        assert!(!p.bool(&["b"], true).unwrap());
        assert!(p.bool(&["c"], false).unwrap());
        assert!(p.bool(&["e"], true).unwrap());
        assert!(!p.bool(&["absent"], false).unwrap());
        let e = p.bool(&["d"], false).unwrap_err();
        assert!(e.message().contains("d must be a boolean"));
        assert!(p.required_str(&["e"]).unwrap_err().message().contains("required parameter: e"));
        assert_eq!(p.str(&["missing", "snap_name"]).as_deref(), Some("before-upgrade"));
        let none = Params::new(None);
        assert!(none.str(&["x"]).is_none());
    }
}
