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

    /// A required guest or task id, exactly as sent: a string or an integer, at most
    /// [`MAX_ID_LEN`] bytes, no surrounding whitespace and no control characters. Ids are
    /// never trimmed or rewritten (`" 100"` is not guest `100`), and a refused id is never
    /// echoed back.
    pub(crate) fn req_id(&self, key: &str) -> Result<String, RpcError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Err(RpcError::missing(&format!("params.{key}"))),
            Some(v) => id_value(v).map_err(|why| RpcError::invalid_field(&format!("params.{key}"), why)),
        }
    }

    /// The raw value.
    pub(crate) fn raw(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }
}

/// The longest guest or task id accepted (bytes). polyvisor's own task ids are far
/// shorter; backend ids (VMIDs, UUIDs, resource paths) too.
pub(crate) const MAX_ID_LEN: usize = 1024;

/// One id value (see [`Params::req_id`]), or why it is refused.
pub(crate) fn id_value(v: &Value) -> Result<String, &'static str> {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_u64() || n.is_i64() => n.to_string(),
        _ => return Err("expected a string"),
    };
    if s.is_empty() {
        return Err("must not be empty");
    }
    if s.len() > MAX_ID_LEN {
        return Err("longer than 1024 bytes");
    }
    if s.trim() != s {
        return Err("must not have surrounding whitespace");
    }
    if s.chars().any(char::is_control) {
        return Err("must not contain control characters");
    }
    Ok(s)
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

    #[test]
    fn ids_are_taken_exactly_and_refused_ids_are_not_echoed() {
        let ps =
            p(json!({"a": 101, "b": "vm-7", "c": " 100", "d": "100\n", "e": "x".repeat(1_000_000), "f": "", "g": 1.5}));
        assert_eq!(ps.req_id("a").unwrap(), "101");
        assert_eq!(ps.req_id("b").unwrap(), "vm-7");
        assert_eq!(
            ps.req_id("c").unwrap_err().message,
            "Invalid field: params.c (must not have surrounding whitespace)"
        );
        assert_eq!(ps.req_id("d").unwrap_err().code, -32602);
        let long = ps.req_id("e").unwrap_err();
        assert_eq!(long.message, "Invalid field: params.e (longer than 1024 bytes)");
        assert_eq!(ps.req_id("f").unwrap_err().code, -32602);
        assert_eq!(ps.req_id("g").unwrap_err().code, -32602);
        assert_eq!(ps.req_id("zz").unwrap_err().message, "Missing field: params.zz");
    }
}
