//! Spawns the real `polyvisor ras` binary and checks what RAS sees on its pipes: clean
//! stdout (one JSON line per request), silent stderr, exit 0 on EOF, fast start.
//! Needs the binary: `cargo build -p polyvisor` (CI builds it before testing).

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let bin = target.join("debug").join(if cfg!(windows) { "polyvisor.exe" } else { "polyvisor" });
    assert!(bin.exists(), "{} is missing: run `cargo build -p polyvisor` first", bin.display());
    bin
}

fn spawn(args: &[&str]) -> std::process::Child {
    spawn_in(&std::env::temp_dir().join(format!("polyvisor-ras-stdio-{}", std::process::id())), args)
}

fn spawn_in(dir: &std::path::Path, args: &[&str]) -> std::process::Child {
    let _ = std::fs::create_dir_all(dir);
    Command::new(binary())
        .arg("ras")
        .args(args)
        .env_remove("POLYVISOR_LOG_FILE")
        .env("POLYVISOR_SIM_DB", dir.join("sim.db"))
        .env("POLYVISOR_SIM_TASK_MS", "0")
        .env("POLYVISOR_SIM_BOOT_MS", "0")
        .env_remove("POLYVISOR_DRIVER")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn polyvisor ras")
}

#[test]
fn real_binary_keeps_stdout_clean_and_exits_zero_on_eof() {
    let mut child = spawn(&["--template-method", "basic", "--link-clones", "--guests-polling-rate", "1"]);
    let input = "\u{feff}{\"method\":\"provider/initialize\"}\r\n\n{}\nnot json\n{\"method\":\"nope\",\"id\":1}\n";
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input.as_bytes()).expect("write");
    drop(stdin);
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0), "exit status");
    assert!(out.stderr.is_empty(), "stderr must stay silent: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    assert_eq!(lines.len(), 4, "{text}");
    let caps = &lines[0]["result"]["capabilities"];
    for key in [
        "can_suspend_guests",
        "guests_polling_rate",
        "tasks_polling_rate",
        "tasks_polling_retries",
        "template_method",
        "can_link_clones",
    ] {
        assert!(caps.get(key).is_some(), "missing {key}: {text}");
    }
    assert_eq!(caps["guests_polling_rate"], 3, "clamped into 3..=900");
    assert_eq!(lines[1]["error"]["code"], -32601);
    assert_eq!(lines[2]["error"]["code"], -32700);
    assert_eq!(lines[3]["id"], 1);
    assert!(text.ends_with('\n') && !text.contains('\r'));
}

#[test]
fn real_binary_answers_the_first_request_quickly() {
    let mut child = spawn(&[]);
    let start = Instant::now();
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"{\"method\":\"provider/initialize\"}\n").expect("write");
    stdin.flush().expect("flush");
    let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    reader.read_line(&mut line).expect("read");
    let elapsed = start.elapsed();
    drop(stdin);
    let status = child.wait().expect("wait");
    assert!(line.contains("\"version\":\"1.0.0\""), "{line}");
    assert!(status.success());
    // Target is < 5 ms on an idle machine; the bound is loose for a loaded CI box.
    assert!(elapsed < Duration::from_secs(2), "first reply took {elapsed:?}");
}

/// One provider "process": sends `lines`, returns the parsed replies.
fn session(dir: &std::path::Path, args: &[&str], lines: &[String]) -> Vec<serde_json::Value> {
    let mut child = spawn_in(dir, args);
    let mut stdin = child.stdin.take().expect("stdin");
    for l in lines {
        writeln!(stdin, "{l}").expect("write");
    }
    drop(stdin);
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let replies: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    assert_eq!(replies.len(), lines.len(), "{text}");
    replies
}

#[test]
fn sim_clone_task_resolves_in_a_fresh_process_without_connect() {
    let dir = std::env::temp_dir().join(format!("polyvisor-ras-sim-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let list = session(&dir, &[], &[r#"{"method":"guests/list"}"#.into()]);
    let ids: Vec<String> = list[0]["result"]["guests"]
        .as_array()
        .expect("guests")
        .iter()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    assert!(!ids.is_empty(), "the sim seeds a demo estate");
    let gets: Vec<String> =
        ids.iter().map(|id| format!(r#"{{"method":"guests/get","params":{{"id":"{id}"}}}}"#)).collect();
    let guests = session(&dir, &[], &gets);
    let template = guests.iter().find(|g| g["result"]["is_template"] == true).expect("a template")["result"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let cloned = session(
        &dir,
        &["--template-method", "basic"],
        &[
            r#"{"method":"provider/connect","params":{"settings":{}}}"#.into(),
            format!(
                r#"{{"method":"guests/clone","params":{{"id":"{template}","name":"ras-stdio-001","snapshot":""}}}}"#
            ),
        ],
    );
    let task = cloned[1]["result"]["task_id"].as_str().expect("task_id").to_string();
    let mut output = serde_json::Value::Null;
    for _ in 0..50 {
        let r = session(
            &dir,
            &["--template-method", "basic"],
            &[format!(r#"{{"method":"tasks/get","params":{{"id":"{task}"}}}}"#)],
        );
        if r[0]["result"]["state"] != "running" {
            output = r[0]["result"].clone();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(output["state"], "completed", "{output}");
    let clone_id = output["output"]["clone_id"].as_str().expect("completed clone output carries clone_id").to_string();
    let g = session(&dir, &[], &[format!(r#"{{"method":"guests/get","params":{{"id":"{clone_id}"}}}}"#)]);
    assert_eq!(g[0]["result"]["name"], "ras-stdio-001");
    let _ = std::fs::remove_dir_all(&dir);
}
