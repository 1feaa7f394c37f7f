//! Request decoding and reply encoding (spec §1.3): JSON-RPC-like, `id` echoed when
//! present, `"jsonrpc":"2.0"` only when the request had it.

use crate::errors::RpcError;
use serde::Serialize;
use serde_json::{Map, Value};

/// A decoded request line.
#[derive(Debug)]
pub(crate) struct Request {
    /// Canonical method name (trimmed, lower-case, aliases resolved).
    pub method: String,
    /// The method name as sent, trimmed (for "Unknown method").
    pub raw_method: String,
    /// The `params` member (`Null` when absent).
    pub params: Value,
    /// The request's `id`, echoed back.
    pub id: Option<Value>,
    /// The request carried `jsonrpc`.
    pub jsonrpc: bool,
}

/// Echo information recoverable even from a request whose method is bad.
#[derive(Debug, Default, Clone)]
pub(crate) struct Echo {
    /// `id` to copy.
    pub id: Option<Value>,
    /// Add `"jsonrpc":"2.0"`.
    pub jsonrpc: bool,
}

/// Decodes one non-empty line. On failure returns the error and whatever echo data the
/// line carried.
pub(crate) fn decode(line: &str) -> Result<Request, (RpcError, Echo)> {
    let value: Value =
        serde_json::from_str(line).map_err(|_| (RpcError::parse("the line is not valid JSON"), Echo::default()))?;
    let Value::Object(mut obj) = value else {
        return Err((RpcError::parse("a request must be a JSON object"), Echo::default()));
    };
    let echo = Echo { id: obj.remove("id"), jsonrpc: obj.contains_key("jsonrpc") };
    let raw_method = match obj.remove("method") {
        None | Some(Value::Null) => return Err((RpcError::method("Missing method name"), echo)),
        Some(Value::String(s)) if s.trim().is_empty() => return Err((RpcError::method("Missing method name"), echo)),
        Some(Value::String(s)) => s.trim().to_string(),
        Some(_) => return Err((RpcError::method("Invalid method name: expected a string"), echo)),
    };
    Ok(Request {
        method: canonical(&raw_method),
        raw_method,
        params: obj.remove("params").unwrap_or(Value::Null),
        id: echo.id,
        jsonrpc: echo.jsonrpc,
    })
}

/// Trimmed, lower-cased, `hosts/*` aliases mapped to `guests/*`.
fn canonical(raw: &str) -> String {
    let m = raw.trim().to_ascii_lowercase();
    match m.as_str() {
        "hosts/list" => "guests/list".into(),
        "hosts/get" => "guests/get".into(),
        "hosts/control" => "guests/control".into(),
        _ => m,
    }
}

/// The error object on the wire.
#[derive(Serialize)]
struct WireError<'a> {
    code: i64,
    message: &'a str,
}

/// One reply line.
#[derive(Serialize)]
pub(crate) struct Reply<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    jsonrpc: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<WireError<'a>>,
}

impl<'a> Reply<'a> {
    /// A success reply.
    pub(crate) fn ok(echo: &'a Echo, result: &'a Value) -> Self {
        Reply { jsonrpc: echo.jsonrpc.then_some("2.0"), id: echo.id.as_ref(), result: Some(result), error: None }
    }
    /// An error reply; `message` already carries the prefix.
    pub(crate) fn err(echo: &'a Echo, code: i64, message: &'a str) -> Self {
        Reply {
            jsonrpc: echo.jsonrpc.then_some("2.0"),
            id: echo.id.as_ref(),
            result: None,
            error: Some(WireError { code, message }),
        }
    }
}

/// `params` as an object: absent or `null` is empty; anything else is invalid.
pub(crate) fn params_object(params: &Value) -> Result<Map<String, Value>, RpcError> {
    match params {
        Value::Null => Ok(Map::new()),
        Value::Object(m) => Ok(m.clone()),
        _ => Err(RpcError::invalid_field("params", "expected an object")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decode_shapes() {
        let r = decode(r#"{"params":{"id":"1"},"method":"  Hosts/GET "}"#).unwrap();
        assert_eq!(r.method, "guests/get");
        assert_eq!(r.params, json!({"id":"1"}));
        assert!(r.id.is_none() && !r.jsonrpc);
        let (e, echo) = decode(r#"{"id":7,"jsonrpc":"2.0"}"#).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (-32601, "Missing method name"));
        assert_eq!(echo.id, Some(json!(7)));
        assert!(echo.jsonrpc);
        assert_eq!(decode("{").unwrap_err().0.code, -32700);
        assert_eq!(decode("[1]").unwrap_err().0.code, -32700);
        assert_eq!(decode(r#"{"method":5}"#).unwrap_err().0.code, -32601);
    }

    #[test]
    fn reply_echoes_only_what_was_sent() {
        let v = json!({"x":1});
        let none = Echo::default();
        assert_eq!(serde_json::to_string(&Reply::ok(&none, &v)).unwrap(), r#"{"result":{"x":1}}"#);
        let both = Echo { id: Some(json!("a")), jsonrpc: true };
        assert_eq!(
            serde_json::to_string(&Reply::err(&both, -32601, "P: m")).unwrap(),
            r#"{"jsonrpc":"2.0","id":"a","error":{"code":-32601,"message":"P: m"}}"#
        );
    }
}
