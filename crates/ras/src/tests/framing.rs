//! Transport and envelope: §1, §13 items 1–5.

use super::*;
use polyvisor_test_support::fake::{full_caps, FakeFactory};
use serde_json::json;

#[test]
fn one_compact_line_per_request_no_bom_lf_endings() {
    let f = FakeFactory::new(full_caps());
    let input = "\u{feff}{\"method\":\"guests/list\"}\r\n\r\n   \n  {\"method\":\"provider/disconnect\"}  \r\n";
    let out = run_raw(&Args::default(), &f, input.as_bytes());
    let text = String::from_utf8(out).unwrap();
    assert!(!text.starts_with('\u{feff}'));
    assert!(!text.contains('\r'));
    assert_eq!(text, "{\"result\":{\"guests\":[\"101\",\"9000\",\"slow\"]}}\n{\"result\":{}}\n");
}

#[test]
fn eof_without_newline_and_empty_input_exit_cleanly() {
    let f = FakeFactory::new(full_caps());
    assert_eq!(run_raw(&Args::default(), &f, b""), b"");
    let out = run_raw(&Args::default(), &f, b"{\"method\":\"provider/disconnect\"}");
    assert_eq!(out, b"{\"result\":{}}\n");
}

#[test]
fn bad_lines_get_errors_and_the_loop_continues() {
    let f = FakeFactory::new(full_caps());
    let r = run(
        &Args::default(),
        &f,
        &[
            "{}",
            "not json",
            "[1,2]",
            r#"{"method":"foo/Bar"}"#,
            r#"{"method":"guests/get","params":{}}"#,
            r#"{"method":"guests/get"}"#,
            r#"{"method":"provider/disconnect"}"#,
        ],
    );
    assert_eq!(err(&r[0]), (-32601, "polyvisor: Missing method name".into()));
    assert_eq!(err(&r[1]), (-32700, "polyvisor: Invalid JSON format: the line is not valid JSON".into()));
    assert_eq!(err(&r[2]).0, -32700);
    assert_eq!(err(&r[3]), (-32601, "polyvisor: Unknown method: foo/Bar".into()));
    assert_eq!(err(&r[4]), (-32602, "polyvisor: Missing field: params.id".into()));
    assert_eq!(err(&r[5]), (-32602, "polyvisor: Missing field: params.id".into()));
    assert_eq!(r[6], json!({"result":{}}));
}

#[test]
fn oversized_line_and_invalid_utf8_are_parse_errors() {
    let f = FakeFactory::new(full_caps());
    let mut input = vec![b'{'; crate::transport::MAX_LINE + 10];
    input.extend_from_slice(b"\n\xff\xfe{}\n{\"method\":\"provider/disconnect\"}\n");
    let out = String::from_utf8(run_raw(&Args::default(), &f, &input)).unwrap();
    let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(err(&lines[0]).0, -32700);
    assert!(err(&lines[0]).1.contains("exceeds"));
    assert_eq!(err(&lines[1]), (-32700, "polyvisor: Invalid JSON format: the line is not valid UTF-8".into()));
    assert_eq!(lines[2], json!({"result":{}}));
}

#[test]
fn id_and_jsonrpc_are_echoed_only_when_sent() {
    let f = FakeFactory::new(full_caps());
    let out = run_raw(
        &Args::default(),
        &f,
        b"{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"provider/disconnect\"}\n{\"id\":\"x\",\"method\":\"nope\"}\n{\"method\":\"provider/disconnect\"}\n",
    );
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "{\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{}}\n{\"id\":\"x\",\"error\":{\"code\":-32601,\"message\":\"polyvisor: Unknown method: nope\"}}\n{\"result\":{}}\n"
    );
}

#[test]
fn methods_are_trimmed_case_insensitive_with_hosts_aliases() {
    let f = FakeFactory::new(full_caps());
    let r = run(
        &Args::default(),
        &f,
        &[
            r#"{"method":"  GUESTS/List "}"#,
            r#"{"method":"hosts/list"}"#,
            r#"{"method":"Hosts/Get","params":{"id":"101"}}"#,
            r#"{"method":"hosts/control","params":{"id":"101","control":"STOP"}}"#,
        ],
    );
    assert_eq!(r[0], r[1]);
    assert_eq!(r[2]["result"]["id"], "101");
    assert_eq!(r[3], json!({"result":{}}));
    assert_eq!(f.fake.state().power.last().map(|p| p.1), Some(polyvisor_core::PowerAction::Stop));
}

#[test]
fn params_of_the_wrong_type_are_invalid_params() {
    let r = one(r#"{"method":"guests/get","params":"101"}"#);
    assert_eq!(err(&r), (-32602, "polyvisor: Invalid field: params (expected an object)".into()));
    let r = one(r#"{"method":"guests/get","params":{"id":{"x":1}}}"#);
    assert_eq!(err(&r), (-32602, "polyvisor: Invalid field: params.id (expected a string)".into()));
}

#[test]
fn slow_driver_calls_time_out_and_serving_continues() {
    let f = FakeFactory::new(full_caps());
    let args = Args { request_timeout: Some("0.2".into()), ..Args::default() };
    let t = std::time::Instant::now();
    let r = run(
        &args,
        &f,
        &[r#"{"method":"guests/get","params":{"id":"slow"}}"#, r#"{"method":"guests/get","params":{"id":"101"}}"#],
    );
    assert!(t.elapsed() < std::time::Duration::from_secs(3), "{:?}", t.elapsed());
    let (code, msg) = err(&r[0]);
    assert_eq!(code, -32603);
    assert!(msg.starts_with("Fake: Failed to get guest [slow]: ") && msg.contains("timed out"), "{msg}");
    assert_eq!(r[1]["result"]["name"], "win11-gold");
}

#[test]
fn methods_without_parameters_ignore_params() {
    let r = one(r#"{"method":"guests/list","params":"junk"}"#);
    assert!(r["result"]["guests"].is_array(), "{r}");
    let r = one(r#"{"method":"provider/initialize","params":{}}"#);
    assert_eq!(r["result"]["version"], "1.0.0");
}

#[test]
fn a_panicking_driver_is_an_internal_error_not_a_crash() {
    let f = FakeFactory::new(full_caps());
    let r = run(
        &Args::default(),
        &f,
        &[r#"{"method":"guests/get","params":{"id":"panic"}}"#, r#"{"method":"guests/get","params":{"id":"101"}}"#],
    );
    assert_eq!(err(&r[0]), (-32603, "Fake: Internal error while handling guests/get".into()));
    assert_eq!(r[1]["result"]["id"], "101");
}
