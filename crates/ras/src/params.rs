//! Typed access to request parameters with the spec's error messages
//! (`Missing field: params.id`, `Invalid field: params.x (...)`).

use crate::errors::RpcError;
use serde_json::{Map, Value};

/// The `params` object of one request.
pub(crate) struct Params(pub Map<String, Value>);

impl Params {
    /// A required non-empty string; integers are accepted and stringified (ids).
    pub(crate) fn req_str(&self, key: &str) -> Result<String, RpcError> {
        self.opt_str(key)?.ok_or_else(|| RpcError::missing(&format!("params.{key}")))
    }

    /// An optional string: absent, `null` or blank is `None`.
    pub(crate) fn opt_str(&self, key: &str) -> Result<Option<String>, RpcError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => scalar_string(v)
                .map(|s| (!s.is_empty()).then_some(s))
                .ok_or_else(|| RpcError::invalid_field(&format!("params.{key}"), "expected a string")),
        }
    }

    /// A required boolean, leniently (`true`, `"true"`, `1`, `"0"`, ...).
    pub(crate) fn req_bool(&self, key: &str) -> Result<bool, RpcError> {
        self.opt_bool(key)?.ok_or_else(|| RpcError::missing(&format!("params.{key}")))
    }

    /// An optional boolean, leniently.
    pub(crate) fn opt_bool(&self, key: &str) -> Result<Option<bool>, RpcError> {
        let bad = || RpcError::invalid_field(&format!("params.{key}"), "expected a boolean");
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(0) => Ok(Some(false)),
                Some(1) => Ok(Some(true)),
                _ => Err(bad()),
            },
            Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "" => Ok(None),
                "true" | "1" | "yes" => Ok(Some(true)),
                "false" | "0" | "no" => Ok(Some(false)),
                _ => Err(bad()),
            },
            Some(_) => Err(bad()),
        }
    }

    /// The raw value.
    pub(crate) fn raw(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }
}

/// A string or integer as a trimmed string.
pub(crate) fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.trim().to_string()),
        Value::Number(n) if n.is_u64() || n.is_i64() => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(v: Value) -> Params {
        match v {
            Value::Object(m) => Params(m),
            _ => Params(Map::new()),
        }
    }

    #[test]
    fn required_and_typed_fields() {
        let ps = p(json!({"id": 101, "name": " ", "b": "FALSE", "x": [1], "n": 2}));
        assert_eq!(ps.req_str("id").unwrap(), "101");
        assert_eq!(ps.req_str("name").unwrap_err().message, "Missing field: params.name");
        assert_eq!(ps.req_str("zz").unwrap_err().message, "Missing field: params.zz");
        assert_eq!(ps.req_str("x").unwrap_err().message, "Invalid field: params.x (expected a string)");
        assert!(!ps.req_bool("b").unwrap());
        assert_eq!(ps.req_bool("n").unwrap_err().code, -32602);
        assert_eq!(ps.opt_bool("missing").unwrap(), None);
    }
}
