//! Payload JSON written the way CloudStack's Gson writes it: nulls omitted (the builders
//! never insert them) and HTML-sensitive characters escaped (`<` `>` `&` `=` `'` as
//! `\u003c` … and U+2028/U+2029), so providers see secrets such as `a\u003db`.

use serde_json::Value;

/// Serialises `v` compactly with Gson's HTML escaping.
///
/// The escaped characters are never structural JSON, so replacing them in serde_json's
/// output only touches string contents (and keys), exactly where Gson escapes them.
pub fn to_string(v: &Value) -> String {
    let plain = v.to_string();
    let mut out = String::with_capacity(plain.len() + 16);
    for c in plain.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003d"),
            '\'' => out.push_str("\\u0027"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// Drops `null` members recursively (Gson without `serializeNulls`).
pub fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn escapes_like_gson_and_round_trips() {
        let v = json!({"secret": "a=b<c>&'d'", "k=": 1, "line": "x\u{2028}y"});
        let s = to_string(&v);
        assert!(s.contains(r#""a\u003db\u003cc\u003e\u0026\u0027d\u0027""#), "{s}");
        assert!(s.contains(r#""k\u003d":1"#), "{s}");
        assert!(!s.contains('=') && !s.contains('<') && !s.contains('\u{2028}'), "{s}");
        let back: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn nulls_are_omitted() {
        let mut v = json!({"a": null, "b": {"c": null, "d": [ {"e": null, "f": 1} ]}});
        strip_nulls(&mut v);
        assert_eq!(v, json!({"b": {"d": [ {"f": 1} ]}}));
    }
}
