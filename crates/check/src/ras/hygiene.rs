//! Protocol hygiene and bad input (spec §1.2–§1.4, §4, §13 items 1–5): after each bad
//! line the provider must answer with the right code and keep serving (checked with a
//! follow-up `provider/initialize`). Ends with the wire-rule summary and the EOF exit.

use super::lowlevel::expect_code;
use super::process::{clip, short, Reply, WireStats};
use super::session::Session;
use super::State;
use crate::report::Report;
use serde_json::Value;
use std::time::Duration;

const G: &str = "hygiene";

/// What a bad-input case expects back.
enum Want {
    /// An error with this code.
    Code(i64),
    /// An error with one of these codes.
    AnyOf(&'static [i64]),
    /// A successful `provider/initialize` result (tolerated input).
    Init,
    /// A valid result or -32602 (lenient parsing is allowed).
    ResultOr32602,
}

/// Runs the bad-input cases.
pub fn run(r: &mut Report, s: &mut Session, st: &State) {
    let guest = st.ids.first().cloned().unwrap_or_else(|| "1".into());
    let numeric = guest.parse::<u64>().ok();
    let big = format!("{{\"method\":\"provider/initialize\",\"pad\":\"{}\"}}\n", "x".repeat(1 << 20));
    let mut cases: Vec<(&str, Vec<u8>, Want)> = vec![
        ("not JSON is -32700", b"this is not json\n".to_vec(), Want::Code(-32700)),
        ("truncated JSON is -32700", b"{\"method\":\"provider/initialize\"\n".to_vec(), Want::Code(-32700)),
        ("{} is -32601", b"{}\n".to_vec(), Want::Code(-32601)),
        ("JSON array request is an error", b"[1,2]\n".to_vec(), Want::AnyOf(&[-32600, -32601, -32700])),
        ("unknown method is -32601", b"{\"method\":\"guests/frobnicate\"}\n".to_vec(), Want::Code(-32601)),
        ("method name trimmed and case-insensitive", b"{\"method\":\"  Provider/INITIALIZE \"}\n".to_vec(), Want::Init),
        ("guests/get without params is -32602", b"{\"method\":\"guests/get\"}\n".to_vec(), Want::Code(-32602)),
        (
            "guests/get with empty params is -32602",
            b"{\"method\":\"guests/get\",\"params\":{}}\n".to_vec(),
            Want::Code(-32602),
        ),
        (
            "guests/control without control is -32602",
            format!("{{\"method\":\"guests/control\",\"params\":{{\"id\":\"{guest}\"}}}}\n").into_bytes(),
            Want::Code(-32602),
        ),
        ("tasks/get without id is -32602", b"{\"method\":\"tasks/get\",\"params\":{}}\n".to_vec(), Want::Code(-32602)),
        (
            "provider/connect without settings is -32602",
            b"{\"method\":\"provider/connect\",\"params\":{}}\n".to_vec(),
            Want::Code(-32602),
        ),
        (
            "params as an array is -32602",
            b"{\"method\":\"guests/get\",\"params\":[\"1\"]}\n".to_vec(),
            Want::Code(-32602),
        ),
        ("1 MiB request line is answered", big.into_bytes(), Want::Init),
        (
            "invalid UTF-8 bytes are -32700",
            b"\xff\xfe\xfd{\"method\":\"provider/initialize\"}\n".to_vec(),
            Want::AnyOf(&[-32700]),
        ),
        ("BOM-prefixed request works", b"\xEF\xBB\xBF{\"method\":\"provider/initialize\"}\n".to_vec(), Want::Init),
        ("CRLF request works", b"{\"method\":\"provider/initialize\"}\r\n".to_vec(), Want::Init),
        ("surrounding whitespace works", b"  \t{\"method\":\"provider/initialize\"}  \n".to_vec(), Want::Init),
    ];
    if let Some(n) = numeric {
        cases.push((
            "id as a JSON number is handled",
            format!("{{\"method\":\"guests/get\",\"params\":{{\"id\":{n}}}}}\n").into_bytes(),
            Want::ResultOr32602,
        ));
    }
    for (name, bytes, want) in cases {
        r.case(G, name, || {
            s.ensure()?;
            let reply = s.proc()?.request_raw(&bytes).map_err(|e| format!("expected a reply, saw {e}"))?;
            let verdict = judge(&reply, &want);
            if bytes.starts_with(b"{\"method\":\"provider/connect\"") {
                // A refused connect may legitimately drop the session: connect properly again.
                s.initialize_and_connect()?;
            }
            verdict?;
            still_serving(s)
        });
    }
    r.case(G, "blank lines are not answered", || {
        s.ensure()?;
        let reply =
            s.proc()?.request_raw(b"\n   \n\r\n{\"method\":\"provider/initialize\"}\n").map_err(|e| e.to_string())?;
        if reply.stray_before > 0 {
            return Err("lines arrived before the request (earlier stray replies)".into());
        }
        let extra = s.proc()?.settle(Duration::from_millis(300));
        is_init(&reply).map_err(|e| {
            format!("expected the next reply to answer the real request (blank lines must not be answered): {e}")
        })?;
        match extra.first() {
            Some(l) => Err(format!(
                "expected no reply to blank lines, saw {} extra line(s), first {}",
                extra.len(),
                clip(&String::from_utf8_lossy(&l.bytes), 120)
            )),
            None => Ok(()),
        }
    });
    r.case(G, "id and jsonrpc are echoed", || {
        s.ensure()?;
        let reply = s
            .proc()?
            .request_raw(b"{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"provider/initialize\"}\n")
            .map_err(|e| e.to_string())?;
        is_init(&reply)?;
        let mut errs = Vec::new();
        if reply.value.get("id") != Some(&Value::from(7)) {
            errs.push(format!(
                "expected \"id\":7 echoed, saw {}",
                reply.value.get("id").map(short).unwrap_or_else(|| "none".into())
            ));
        }
        if reply.value.get("jsonrpc") != Some(&Value::from("2.0")) {
            errs.push("expected \"jsonrpc\":\"2.0\" echoed".to_string());
        }
        let plain = s.proc()?.request_raw(b"{\"method\":\"provider/initialize\"}\n").map_err(|e| e.to_string())?;
        if plain.value.get("id").is_some() || plain.value.get("jsonrpc").is_some() {
            errs.push(format!(
                "expected no id/jsonrpc when the request had none, saw {}",
                clip(&short(&plain.value), 80)
            ));
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs.join("; "))
        }
    });
    r.case(G, "hosts/list alias works", || {
        s.ensure()?;
        let v = s.ok("hosts/list", None)?;
        let (_, errs) = super::checks::guest_list(&v);
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs.join("; "))
        }
    });
}

fn judge(reply: &Reply, want: &Want) -> Result<(), String> {
    let code = reply.error_code();
    let msg = reply.error_message().unwrap_or("").to_string();
    match (want, code) {
        (Want::Code(w), Some(c)) => expect_code(*w, c, &msg),
        (Want::AnyOf(ws), Some(c)) if ws.contains(&c) => Ok(()),
        (Want::AnyOf(ws), Some(c)) => Err(format!("expected error code {ws:?}, saw {c} ({msg})")),
        (Want::Code(_) | Want::AnyOf(_), None) => Err(format!("expected an error reply, saw {}", short(&reply.value))),
        (Want::Init, _) => is_init(reply),
        (Want::ResultOr32602, Some(-32602)) => Ok(()),
        (Want::ResultOr32602, Some(c)) => Err(format!("expected a guest or -32602, saw error {c} ({msg})")),
        (Want::ResultOr32602, None) => match reply.result() {
            Some(g) if g.get("id").is_none_or(Value::is_string) && g.get("name").is_some() => Ok(()),
            other => Err(format!("expected a guest with a string id, saw {}", other.map(short).unwrap_or_default())),
        },
    }?;
    if !msg.is_empty() && !msg.contains(": ") {
        return Err(format!(
            "expected the message prefixed with the provider name (\"Name: …\"), saw \"{}\"",
            clip(&msg, 80)
        ));
    }
    Ok(())
}

fn is_init(reply: &Reply) -> Result<(), String> {
    match reply.result().and_then(|r| r.get("capabilities")) {
        Some(Value::Object(_)) => Ok(()),
        _ => Err(format!("expected an initialize result, saw {}", short(&reply.value))),
    }
}

fn still_serving(s: &mut Session) -> Result<(), String> {
    let reply =
        s.call("provider/initialize", None).map_err(|e| format!("provider stopped serving after the bad line: {e}"))?;
    is_init(&reply).map_err(|e| format!("follow-up initialize: {e}"))
}

/// Picks one counter out of [`WireStats`].
type Counter = fn(&WireStats) -> &(usize, Option<String>);

/// Records the wire rules over every reply of the run (all processes), then checks the
/// EOF exit and stderr volume on the current process.
pub fn wire_and_eof(r: &mut Report, s: &mut Session) {
    let mut all: Vec<WireStats> = s.past_wire.clone();
    if let Some(p) = s.provider.as_ref() {
        all.push(p.wire.clone());
    }
    let sum = |f: Counter| -> (usize, Option<String>) {
        let n = all.iter().map(|w| f(w).0).sum();
        (n, all.iter().find_map(|w| f(w).1.clone()))
    };
    let lines: usize = all.iter().map(|w| w.lines).sum();
    r.facts.insert("reply_lines".into(), Value::from(lines));
    let rules: [(&str, Counter, &str); 4] = [
        ("replies have no BOM", |w| &w.bom, "started with a UTF-8 BOM"),
        ("replies end with \\n, not \\r\\n", |w| &w.crlf, "ended with CRLF"),
        ("exactly one reply line per request", |w| &w.stray, "were extra (no request to answer)"),
        ("every reply is a JSON line", |w| &w.garbage, "were blank or not JSON"),
    ];
    for (name, f, what) in rules {
        let (n, first) = sum(f);
        r.case("wire", name, || match n {
            0 => Ok(()),
            _ => Err(format!(
                "expected 0, saw {n} of {lines} reply lines that {what}; first after request {}",
                first.unwrap_or_default()
            )),
        });
    }
    r.case("wire", "stderr stays quiet (< 64 KiB; the Test Kit drains it only at exit)", || {
        s.ensure()?;
        std::thread::sleep(Duration::from_millis(50));
        let (_, total) = s.proc()?.stderr_tail();
        if total < 64 * 1024 {
            Ok(())
        } else {
            Err(format!("expected < 65536 bytes on stderr in this process, saw {total} (would deadlock the Test Kit)"))
        }
    });
    r.case("wire", "EOF on stdin: provider exits 0 promptly", || {
        s.ensure()?;
        let p = s.proc()?;
        p.close_stdin();
        match p.wait_exit(Duration::from_secs(5)) {
            Some(st) if st.success() => Ok(()),
            Some(st) => Err(format!("expected exit status 0 on EOF, saw {st}")),
            None => Err("expected exit within 5 s of EOF, still running (killed)".into()),
        }
    });
    s.retire("finished");
}
