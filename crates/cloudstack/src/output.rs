//! The one JSON document an invocation prints (spec §1.3, §4.6): success is the exit
//! code; the body follows the in-tree convention `{"status":"success","message":…}` /
//! `{"status":"error","error":…}`. Output is capped well below the 64 KiB pipe buffer
//! that CloudStack only drains after we exit.

use polyvisor_core::Error;
use serde_json::{json, Map, Value};
use std::io::Write;
use std::process::ExitCode;

/// Maximum bytes we ever print (newline included); CloudStack's pipe holds 64 KiB.
pub const MAX_OUTPUT_BYTES: usize = 48 * 1024;

/// Longest `message`/`error` string we print (backend explanations can be long).
pub const MAX_TEXT_CHARS: usize = 4000;

/// One invocation's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    /// Exit 0 (`true`) or 1.
    pub ok: bool,
    /// The JSON body.
    pub body: Value,
}

impl Reply {
    /// `{"status":"success","message":…}`, exit 0.
    pub fn success(message: &str) -> Self {
        Reply { ok: true, body: json!({"status": "success", "message": message}) }
    }

    /// `{"status":"success", …fields}`, exit 0.
    pub fn success_with(fields: Map<String, Value>) -> Self {
        let mut body = Map::new();
        body.insert("status".into(), "success".into());
        body.extend(fields);
        Reply { ok: true, body: Value::Object(body) }
    }

    /// A bare JSON object (the `prepare` patch), exit 0.
    pub fn patch(body: Value) -> Self {
        Reply { ok: true, body }
    }

    /// `{"status":"error","error":…}`, exit 1.
    pub fn error(message: &str) -> Self {
        Reply { ok: false, body: json!({"status": "error", "error": message}) }
    }

    /// The error reply for a core error (its external message only; the internal detail
    /// goes to our log).
    pub fn from_error(e: &Error) -> Self {
        tracing::warn!(kind = ?e.kind(), message = e.message(), detail = e.detail().unwrap_or(""), "action failed");
        Self::error(e.message())
    }

    /// The exact text printed (one line, newline-terminated, at most [`MAX_OUTPUT_BYTES`]).
    pub fn render(&self) -> String {
        self.rendered().0
    }

    /// The printed text and the final success flag: a body too large to print becomes a
    /// failure (exit 1) rather than broken JSON.
    pub fn rendered(&self) -> (String, bool) {
        let mut body = self.body.clone();
        clamp_texts(&mut body);
        let mut text = ordered_json(&body);
        let mut ok = self.ok;
        if text.len() + 1 > MAX_OUTPUT_BYTES {
            text = json!({"status": "error", "error": "output too large"}).to_string();
            ok = false;
        }
        text.push('\n');
        (text, ok)
    }

    /// Whether the rendered body fits the output cap unchanged (for list builders).
    pub fn fits(body: &Value) -> bool {
        body.to_string().len() < MAX_OUTPUT_BYTES
    }

    /// Prints the reply on stdout (never stderr) and returns the exit code. A closed
    /// stdout is ignored: the exit code still carries the result.
    pub fn emit(&self) -> ExitCode {
        let (text, ok) = self.rendered();
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
        if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }
}

/// Members printed first, in this order (the in-tree extensions' convention); the rest
/// follow alphabetically.
const LEADING: [&str; 3] = ["status", "message", "error"];

/// Serialises an object with the [`LEADING`] members first.
fn ordered_json(body: &Value) -> String {
    let Some(obj) = body.as_object() else { return body.to_string() };
    let mut parts: Vec<String> = Vec::with_capacity(obj.len());
    let leading = LEADING.iter().filter_map(|k| obj.get_key_value(*k));
    let rest = obj.iter().filter(|(k, _)| !LEADING.contains(&k.as_str()));
    for (k, v) in leading.chain(rest) {
        parts.push(format!("{}:{}", Value::String(k.clone()), v));
    }
    format!("{{{}}}", parts.join(","))
}

/// Truncates top-level `message` / `error` strings at a character boundary.
fn clamp_texts(body: &mut Value) {
    let Some(obj) = body.as_object_mut() else { return };
    for key in ["message", "error"] {
        if let Some(Value::String(s)) = obj.get_mut(key) {
            if s.chars().count() > MAX_TEXT_CHARS {
                let cut: String = s.chars().take(MAX_TEXT_CHARS).collect();
                *s = format!("{cut}… (truncated)");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conventional_shapes() {
        assert_eq!(
            Reply::success("Instance started").render(),
            "{\"status\":\"success\",\"message\":\"Instance started\"}\n"
        );
        let e = Reply::error("boom");
        assert!(!e.ok);
        assert_eq!(e.render(), "{\"status\":\"error\",\"error\":\"boom\"}\n");
    }

    #[test]
    fn long_messages_are_truncated_safely_at_char_boundaries() {
        let long = "é".repeat(100_000);
        let out = Reply::error(&long).render();
        assert!(out.len() < MAX_OUTPUT_BYTES, "{}", out.len());
        let v: Value = serde_json::from_str(out.trim()).unwrap();
        let msg = v["error"].as_str().unwrap();
        assert!(msg.ends_with("(truncated)"));
        assert!(msg.starts_with("éé"));
    }

    #[test]
    fn oversized_success_bodies_become_errors_never_broken_json() {
        let mut fields = Map::new();
        fields.insert("message".into(), Value::Array(vec![Value::String("x".repeat(1000)); 100]));
        let r = Reply::success_with(fields);
        assert!(!Reply::fits(&r.body));
        let (out, ok) = r.rendered();
        assert!(!ok);
        assert!(out.len() <= MAX_OUTPUT_BYTES);
        let v: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["status"], "error");
    }
}
