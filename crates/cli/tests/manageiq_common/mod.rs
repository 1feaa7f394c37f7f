//! Shared helpers of the `polyvisor manageiq` integration tests.
#![allow(dead_code)]

use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_polyvisor");

/// Exit code and stdout lines (each parsed as JSON) of `polyvisor manageiq <args>` fed `stdin`.
pub fn miq(args: &[&str], stdin: &str) -> (i32, Vec<Value>, String) {
    miq_env(args, stdin, &[])
}

/// [`miq`] with extra environment variables.
pub fn miq_env(args: &[&str], stdin: &str, env: &[(&str, &str)]) -> (i32, Vec<Value>, String) {
    let mut child = Command::new(BIN)
        .envs(env.iter().copied())
        .arg("manageiq")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run polyvisor");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let lines = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}")))
        .collect();
    (out.status.code().unwrap_or(-1), lines, String::from_utf8_lossy(&out.stderr).to_string())
}

/// The single JSON answer of a successful command.
pub fn ok(args: &[&str], stdin: &str) -> Value {
    let (code, lines, err) = miq(args, stdin);
    assert_eq!(code, 0, "manageiq {args:?} failed: {lines:?} {err}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    lines.into_iter().next().unwrap()
}

/// Events of one `events` poll: (event lines, final cursor).
pub fn poll(stdin: &str, since: &str) -> (Vec<Value>, String) {
    let (code, lines, err) = miq(&["events", "--since", since], stdin);
    assert_eq!(code, 0, "events failed: {lines:?} {err}");
    let cursor = lines.last().and_then(|l| l["cursor"].as_str()).expect("a cursor").to_string();
    (lines.into_iter().filter(|l| l.get("event_type").is_some()).collect(), cursor)
}

/// The starting cursor (`events` without `--since`).
pub fn start_cursor(stdin: &str) -> String {
    let (code, lines, err) = miq(&["events"], stdin);
    assert_eq!(code, 0, "events failed: {lines:?} {err}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    lines[0]["cursor"].as_str().unwrap().to_string()
}

/// Runs an op with `--wait`; returns its answer.
pub fn op(stdin: &str, args: &[&str]) -> Value {
    let mut a = vec!["op"];
    a.extend_from_slice(args);
    a.push("--wait");
    let v = ok(&a, stdin);
    assert_eq!(v["state"], "completed", "{v}");
    v
}

/// Checks the error document and code.
pub fn fails(args: &[&str], stdin: &str, code: i32, kind: &str) -> String {
    let (c, lines, err) = miq(args, stdin);
    assert_eq!(c, code, "{args:?}: {lines:?} {err}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["error"]["kind"], kind, "{lines:?}");
    assert!(err.is_empty(), "stderr must stay quiet unless asked: {err}");
    lines[0]["error"]["message"].as_str().unwrap().to_string()
}
