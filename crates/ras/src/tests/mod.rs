//! Serve-loop tests over in-memory streams with a fake driver (the real loop, the real
//! dispatch, the real framing).

mod framing;
mod guests;
mod provider;
mod secrets;
mod templates;

use crate::args::Args;
use crate::config::Config;
use crate::serve::serve_process;
use crate::session::Session;
use polyvisor_test_support::fake::{self, FakeFactory};
use serde_json::Value;
use std::sync::Arc;

/// Runs `input` through one provider "process"; returns the raw stdout bytes.
pub(crate) fn run_raw(args: &Args, factory: &Arc<FakeFactory>, input: &[u8]) -> Vec<u8> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let f: Arc<dyn polyvisor_core::DriverFactory> = factory.clone();
    let mut session = Session::new(f, Config::from_args(args));
    let mut out = Vec::new();
    let mut inp = input;
    serve_process(&rt, &mut session, &mut inp, &mut out).expect("serve");
    out
}

/// Runs request lines; returns one parsed reply per request.
pub(crate) fn run(args: &Args, factory: &Arc<FakeFactory>, lines: &[&str]) -> Vec<Value> {
    let mut input = lines.join("\n");
    input.push('\n');
    let out = run_raw(args, factory, input.as_bytes());
    let text = String::from_utf8(out).expect("utf-8 stdout");
    let replies: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("reply is JSON")).collect();
    assert_eq!(replies.len(), lines.iter().filter(|l| !l.trim().is_empty()).count(), "one reply per request: {text}");
    replies
}

/// One request with default args and a full-featured fake.
pub(crate) fn one(line: &str) -> Value {
    run(&Args::default(), &FakeFactory::new(fake::full_caps()), &[line]).remove(0)
}

/// `(code, message)` of an error reply.
pub(crate) fn err(v: &Value) -> (i64, String) {
    let e = &v["error"];
    assert!(v.get("result").is_none(), "expected error, got {v}");
    (e["code"].as_i64().unwrap_or(0), e["message"].as_str().unwrap_or("").to_string())
}

/// Args with a template level.
pub(crate) fn level_args(method: &str, link: bool) -> Args {
    Args { template_method: Some(method.into()), link_clones: link.then(|| "true".into()), ..Args::default() }
}
