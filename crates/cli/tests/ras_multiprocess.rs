//! End-to-end: RAS may run several provider processes and start a fresh one for a later
//! request (spec §2.4, §13 item 9). Two `polyvisor ras` processes share one sim database:
//! a clone task issued in one is resolved in the other, and a process killed in the middle
//! of a clone leaves a task a new process finishes, returning `clone_id`.

use polyvisor_check::ras::process::{Provider, Reply};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_polyvisor");

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pv-ras-multi-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// `polyvisor ras --template-method basic` on `db` via `env` (a shell wrapper keeps the
/// environment per process without touching ours).
fn start(db: &Path, task_ms: u32) -> Provider {
    let cmd = vec![
        "env".to_string(),
        format!("POLYVISOR_SIM_DB={}", db.display()),
        format!("POLYVISOR_SIM_TASK_MS={task_ms}"),
        "POLYVISOR_SIM_BOOT_MS=0".into(),
        BIN.into(),
        "ras".into(),
        "--template-method".into(),
        "basic".into(),
    ];
    let mut p = Provider::spawn(&cmd, Duration::from_secs(20)).expect("spawn polyvisor ras");
    ok(&mut p, "provider/initialize", None);
    ok(&mut p, "provider/connect", Some(json!({"settings": {}})));
    p
}

fn ok(p: &mut Provider, method: &str, params: Option<Value>) -> Value {
    let r: Reply = p.call(method, params.clone()).unwrap_or_else(|e| panic!("{method} {params:?}: {e}"));
    r.test_kit_result().unwrap_or_else(|e| panic!("{method} {params:?}: {e}")).clone()
}

/// A template to clone (or any guest when the estate has no template).
fn clone_source(p: &mut Provider) -> String {
    let list = ok(p, "guests/list", None);
    let ids: Vec<String> =
        list["guests"].as_array().expect("guests array").iter().filter_map(|v| v.as_str().map(String::from)).collect();
    assert!(!ids.is_empty(), "the seeded sim estate has no guests");
    for id in &ids {
        if ok(p, "guests/get", Some(json!({"id": id})))["is_template"] == true {
            return id.clone();
        }
    }
    ids[0].clone()
}

/// Polls `tasks/get` until the task leaves `running` (bounded); returns the final result.
fn poll(p: &mut Provider, task: &str, limit: Duration) -> Value {
    let start = Instant::now();
    loop {
        let r = ok(p, "tasks/get", Some(json!({"id": task})));
        if r["state"] != "running" {
            return r;
        }
        assert!(start.elapsed() < limit, "task {task} still running after {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn issue_clone(p: &mut Provider, name: &str) -> (String, Value) {
    let src = clone_source(p);
    let r = ok(p, "guests/clone", Some(json!({"id": src, "name": name, "snapshot": ""})));
    let task = r["task_id"]
        .as_str()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| panic!("clone reply without task_id: {r}"))
        .to_string();
    (task, r)
}

fn assert_clone_done(p: &mut Provider, done: &Value, name: &str) -> String {
    assert_eq!(done["state"], "completed", "{done}");
    let id = done["output"]["clone_id"]
        .as_str()
        .unwrap_or_else(|| panic!("completed clone without output.clone_id: {done}"))
        .to_string();
    let g = ok(p, "guests/get", Some(json!({"id": id})));
    assert_eq!(g["name"], name, "{g}");
    id
}

#[test]
fn task_issued_in_one_process_resolves_in_another() {
    let dir = temp_dir("shared");
    let db = dir.join("sim.db");
    let mut a = start(&db, 400);
    let mut b = start(&db, 400);
    let (task, _) = issue_clone(&mut a, "pvmulti-a1");
    let done = poll(&mut b, &task, Duration::from_secs(30));
    let id = assert_clone_done(&mut b, &done, "pvmulti-a1");
    // The first process sees the same clone, and the task answers the same there too.
    let again = poll(&mut a, &task, Duration::from_secs(5));
    assert_eq!(again["output"]["clone_id"], Value::from(id.clone()), "{again}");
    let listed = ok(&mut a, "guests/list", None);
    assert!(listed["guests"].as_array().is_some_and(|g| g.iter().any(|x| x == &Value::from(id.clone()))), "{listed}");
    ok(&mut a, "guests/control", Some(json!({"id": id, "control": "delete"})));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn process_killed_mid_clone_is_finished_by_a_new_process() {
    let dir = temp_dir("killed");
    let db = dir.join("sim.db");
    let mut a = start(&db, 1500);
    let (task, _) = issue_clone(&mut a, "pvmulti-k1");
    let first = ok(&mut a, "tasks/get", Some(json!({"id": task})));
    assert_eq!(first["state"], "running", "with a 1500 ms task the clone must still be running: {first}");
    a.kill();
    drop(a);
    let mut c = start(&db, 1500);
    let done = poll(&mut c, &task, Duration::from_secs(30));
    let id = assert_clone_done(&mut c, &done, "pvmulti-k1");
    ok(&mut c, "guests/control", Some(json!({"id": id, "control": "delete"})));
    let _ = std::fs::remove_dir_all(&dir);
}
