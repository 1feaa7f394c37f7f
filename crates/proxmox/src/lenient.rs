//! Lenient readers for PVE's type drift (proxmox-api.md §12): numbers may be strings,
//! booleans may be `0/1`, `"0"/"1"`, `true/false` or `""`; every field may be missing.

use serde_json::Value;

/// A number or numeric string as u64.
pub fn u64_of(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n.as_u64().or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        Value::String(s) => s
            .trim()
            .parse::<u64>()
            .ok()
            .or_else(|| s.trim().parse::<f64>().ok().filter(|f| *f >= 0.0).map(|f| f as u64)),
        _ => None,
    }
}

/// A field as u64.
pub fn u64_field(obj: &Value, key: &str) -> Option<u64> {
    u64_of(obj.get(key))
}

/// A string, or a number rendered as a string.
pub fn str_field(obj: &Value, key: &str) -> Option<String> {
    match obj.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Truthiness as PVE sends it.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => matches!(s.trim(), "1" | "true" | "yes" | "on"),
        _ => false,
    }
}

/// A boolean field (absent → false).
pub fn bool_field(obj: &Value, key: &str) -> bool {
    obj.get(key).is_some_and(truthy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn drift() {
        let v = json!({"a":"100","b":100,"c":"","d":null,"e":"1","f":1,"g":"0","h":true,"i":"x"});
        assert_eq!(u64_field(&v, "a"), Some(100));
        assert_eq!(u64_field(&v, "b"), Some(100));
        assert_eq!(u64_field(&v, "c"), None);
        assert_eq!(u64_field(&v, "i"), None);
        assert_eq!(str_field(&v, "b").as_deref(), Some("100"));
        assert!(bool_field(&v, "e") && bool_field(&v, "f") && bool_field(&v, "h"));
        assert!(!bool_field(&v, "c") && !bool_field(&v, "d") && !bool_field(&v, "g") && !bool_field(&v, "zz"));
    }
}
