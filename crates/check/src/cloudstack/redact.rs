//! Keeps secrets out of the report: detail values under secret-looking keys, the VMs'
//! VNC passwords, and any `"password":"…"` / `ticket` value an extension prints.

use serde_json::{Map, Value};

/// Detail keys whose values are secrets.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["secret", "password", "passwd", "apikey", "api_key", "token_secret", "ticket"].iter().any(|s| k.contains(s))
}

/// Known secret values, longest first so overlapping values redact fully.
#[derive(Debug, Default, Clone)]
pub struct Secrets(Vec<String>);

impl Secrets {
    /// Adds every secret-keyed value of `details`.
    pub fn add_details(&mut self, details: &Map<String, Value>) {
        for (k, v) in details {
            if let (true, Some(s)) = (is_secret_key(k), v.as_str()) {
                self.add(s);
            }
        }
    }

    /// Adds one value plus its JSON- and Gson-escaped spellings (an extension may echo the
    /// payload text verbatim). Values shorter than 4 characters are ignored (false hits).
    pub fn add(&mut self, s: &str) {
        if s.len() < 4 {
            return;
        }
        let quoted = Value::String(s.to_string());
        let forms = [s.to_string(), unquote(&quoted.to_string()), unquote(&super::gson::to_string(&quoted))];
        for f in forms {
            if !self.0.contains(&f) {
                self.0.push(f);
            }
        }
        self.0.sort_by_key(|x| std::cmp::Reverse(x.len()));
    }

    /// The first known secret `text` contains, as a description (never the value).
    pub fn leaked_in(&self, text: &str) -> Option<String> {
        self.0
            .iter()
            .position(|s| text.contains(s.as_str()))
            .map(|i| format!("secret #{} ({} chars)", i + 1, self.0[i].len()))
    }

    /// `text` with every known secret and every printed password/ticket masked.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.0 {
            out = out.replace(s.as_str(), "****");
        }
        mask_json_passwords(&out)
    }
}

fn unquote(s: &str) -> String {
    s.strip_prefix('"').and_then(|x| x.strip_suffix('"')).unwrap_or(s).to_string()
}

/// Masks the value after `"password":` / `"ticket":` (like the management server log).
fn mask_json_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let hit = ["\"password\"", "\"ticket\""].iter().filter_map(|k| rest.find(k).map(|i| (i, k.len()))).min();
        let Some((i, klen)) = hit else {
            out.push_str(rest);
            return out;
        };
        let after_key = i + klen;
        out.push_str(&rest[..after_key]);
        rest = &rest[after_key..];
        let trimmed = rest.trim_start();
        let Some(colon_rest) = trimmed.strip_prefix(':') else { continue };
        let value = colon_rest.trim_start();
        if let Some(body) = value.strip_prefix('"') {
            let mut end = None;
            let mut escaped = false;
            for (j, c) in body.char_indices() {
                match c {
                    '\\' if !escaped => escaped = true,
                    '"' if !escaped => {
                        end = Some(j);
                        break;
                    }
                    _ => escaped = false,
                }
            }
            let consumed = rest.len() - body.len();
            out.push_str(&rest[..consumed]);
            match end {
                Some(j) => {
                    out.push_str("****");
                    rest = &body[j..];
                }
                None => {
                    out.push_str("****");
                    return out;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn redacts_known_values_and_passwords() {
        let mut s = Secrets::default();
        let d = json!({"secret": "6f3c2d9e-0b1a", "user": "root@pam", "token": "cloudstack"});
        s.add_details(d.as_object().unwrap());
        let text = r#"{"error":"bad 6f3c2d9e-0b1a for root@pam","console":{"password" : "PVEVNC:x\"y","port":1}}"#;
        let r = s.redact(text);
        assert!(!r.contains("6f3c2d9e") && !r.contains("PVEVNC"), "{r}");
        assert!(r.contains("root@pam") && r.contains(r#""port":1"#), "{r}");
        assert!(s.leaked_in(text).is_some());
        assert!(s.leaked_in("nothing here").is_none());
        assert!(!s.leaked_in(text).unwrap().contains("6f3c"));
        s.add("abc=def");
        assert!(s.leaked_in(r#"{"error":"auth abc\u003ddef"}"#).is_some());
        assert_eq!(s.redact(r#"auth abc\u003ddef"#), "auth ****");
    }
}
