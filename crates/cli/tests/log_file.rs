//! Regression: a `--log-file` (or `POLYVISOR_LOG_FILE`) that cannot be opened used to
//! silently disable logging. Now the start fails with a clear error in the form the mode
//! speaks: RAS answers every request with a JSON-RPC error (nothing else on stdout),
//! a CloudStack action prints its JSON error document and exits 1, and the human
//! commands print to stderr and exit 2.

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_polyvisor");

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pv-log-file-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Runs the binary with `args`, `env` and `stdin`, bounded to 60 s (killed after).
fn run(args: &[&str], env: &[(&str, &Path)], stdin: &str, dir: &Path) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("POLYVISOR_LOG_FILE")
        .env("POLYVISOR_SIM_DB", dir.join("sim.db"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn polyvisor");
    {
        let mut input = child.stdin.take().expect("stdin");
        // A process that exits without reading stdin closes the pipe: ignore that.
        let _ = input.write_all(stdin.as_bytes());
    }
    let started = Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("polyvisor {args:?} did not exit within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Paths that cannot be opened for appending, even by root: a missing directory and a
/// directory.
fn bad_paths(dir: &Path) -> Vec<PathBuf> {
    vec![dir.join("no-such-dir").join("polyvisor.log"), dir.to_path_buf()]
}

fn expected_reason(path: &Path) -> String {
    format!("cannot open the log file {}: ", path.display())
}

#[test]
fn ras_answers_every_request_with_the_reason() {
    let dir = temp_dir("ras");
    for bad in bad_paths(&dir) {
        let requests = "{\"id\":1,\"method\":\"provider/initialize\"}\n\
                        {\"jsonrpc\":\"2.0\",\"id\":\"two\",\"method\":\"guests/list\"}\n";
        for (args, env) in [
            (vec!["--log-file", bad.to_str().unwrap(), "ras"], vec![]),
            (vec!["ras"], vec![("POLYVISOR_LOG_FILE", bad.as_path())]),
        ] {
            let r = run(&args, &env, requests, &dir);
            assert_eq!(r.code, Some(1), "{args:?}: exit code; stdout {}", r.stdout);
            assert_eq!(r.stderr, "", "RAS mode never writes stderr");
            let lines: Vec<Value> =
                r.stdout.lines().map(|l| serde_json::from_str(l).expect("every stdout line is JSON")).collect();
            assert_eq!(lines.len(), 2, "one reply per request: {}", r.stdout);
            for (line, id) in lines.iter().zip([Value::from(1), Value::from("two")]) {
                assert_eq!(line["id"], id);
                assert!(line.get("result").is_none(), "no success reply: {line}");
                assert_eq!(line["error"]["code"], -32603);
                let msg = line["error"]["message"].as_str().expect("message");
                let want = format!("polyvisor: {}", expected_reason(&bad));
                assert!(msg.starts_with(&want) && msg.len() > want.len(), "{msg:?} should start with {want:?} + cause");
            }
            assert_eq!(lines[1]["jsonrpc"], "2.0");
        }
    }
}

#[test]
fn cloudstack_action_prints_its_error_document() {
    let dir = temp_dir("cs");
    let payload = dir.join("payload.json");
    std::fs::write(&payload, "{}").unwrap();
    for bad in bad_paths(&dir) {
        let r = run(
            &["--log-file", bad.to_str().unwrap(), "cloudstack", "status", payload.to_str().unwrap(), "60"],
            &[],
            "",
            &dir,
        );
        assert_eq!(r.code, Some(1), "stdout {}", r.stdout);
        assert_eq!(r.stderr, "", "CloudStack reads stderr too: nothing there");
        let doc: Value = serde_json::from_str(r.stdout.trim_end()).expect("one JSON document");
        assert_eq!(doc["status"], "error");
        let msg = doc["error"].as_str().expect("error text");
        assert!(msg.starts_with(&expected_reason(&bad)), "{msg:?}");
        assert_eq!(r.stdout.lines().count(), 1);
    }
}

#[test]
fn human_commands_print_to_stderr_and_exit_2() {
    let dir = temp_dir("human");
    let root = dir.join("extensions");
    for bad in bad_paths(&dir) {
        for args in [
            vec!["drivers"],
            vec!["sim", "status"],
            vec!["cloudstack", "install", "--name", "x", "--root", root.to_str().unwrap()],
        ] {
            let mut argv = vec!["--log-file", bad.to_str().unwrap()];
            argv.extend(args.iter().copied());
            let r = run(&argv, &[], "", &dir);
            assert_eq!(r.code, Some(2), "{argv:?}: stdout {} stderr {}", r.stdout, r.stderr);
            assert_eq!(r.stdout, "", "{argv:?}: nothing done, nothing printed");
            let want = format!("polyvisor: {}", expected_reason(&bad));
            assert!(r.stderr.starts_with(&want), "{argv:?}: {:?}", r.stderr);
        }
    }
    assert!(!dir.join("sim.db").exists(), "sim status did not run");
    assert!(!root.exists(), "cloudstack install did not run");
}

#[test]
fn a_writable_log_file_receives_the_log() {
    let dir = temp_dir("ok");
    let log = dir.join("ras.log");
    let r = run(
        &["--log-file", log.to_str().unwrap(), "ras"],
        &[],
        "{\"id\":1,\"method\":\"provider/initialize\"}\n",
        &dir,
    );
    assert_eq!(r.code, Some(0), "stdout {} stderr {}", r.stdout, r.stderr);
    let reply: Value = serde_json::from_str(r.stdout.trim_end()).expect("reply");
    assert!(reply.get("result").is_some(), "{reply}");
    let text = std::fs::read_to_string(&log).expect("log written");
    assert!(text.contains("polyvisor ras serving stdio"), "{text}");
}
