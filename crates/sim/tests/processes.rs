//! Several connections and real processes on one database file.

use polyvisor_core::{CloneMode, CloneSpec, Driver, Settings, TaskId, TaskStatus};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

const CHILD_ENV: &str = "POLYVISOR_SIM_TEST_CHILD_DB";

fn open(path: &Path, task_ms: u64) -> Arc<dyn Driver> {
    let s = Settings::from_pairs([
        ("sim_db", path.to_string_lossy().into_owned()),
        ("sim_task_ms", task_ms.to_string()),
        ("sim_boot_ms", "0".to_string()),
    ]);
    polyvisor_sim::open(&s).expect("open sim")
}

fn spec(name: &str) -> CloneSpec {
    CloneSpec { source: "9000".into(), name: name.into(), snapshot: None, mode: CloneMode::Linked, start: false }
}

/// Child-process body: issues a slow clone, prints the task id, then waits to be killed.
/// A no-op when run as an ordinary test.
#[tokio::test]
async fn child_issue_clone_then_hang() {
    let Ok(db) = std::env::var(CHILD_ENV) else {
        return;
    };
    let d = open(Path::new(&db), 400);
    let started = d.clone_guest(&spec("from-child")).await.expect("clone");
    println!("TASK {}", started.task);
    tokio::time::sleep(Duration::from_secs(30)).await;
}

#[tokio::test]
async fn task_from_a_killed_process_is_finished_by_another() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("proc.db");
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--exact", "child_issue_clone_then_hang", "--nocapture", "--test-threads", "1"])
        .env(CHILD_ENV, &db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child test process");
    let mut stdout = child.stdout.take().unwrap();
    let task = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if stdout.read(&mut byte).unwrap_or(0) == 0 {
                break;
            }
            buf.push(byte[0]);
            let text = String::from_utf8_lossy(&buf);
            // libtest prints "test <name> ... " first, so the marker may be mid-line.
            if let Some(at) = text.find("TASK ") {
                if let Some(end) = text[at..].find('\n') {
                    return Some(text[at + 5..at + end].trim().to_string());
                }
            }
        }
        None
    })
    .await
    .unwrap()
    .expect("child printed a task id");
    child.kill().unwrap();
    child.wait().unwrap();
    let b = open(&db, 0);
    let out = polyvisor_core::task::wait(&*b, &TaskId(task), Duration::from_secs(5), Duration::from_millis(20))
        .await
        .unwrap();
    let g = b.get_guest(&out.new_guest.unwrap()).await.unwrap();
    assert_eq!(g.name, "from-child");
}

#[test]
fn concurrent_first_open_seeds_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("first.db");
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let db = db.clone();
            std::thread::spawn(move || {
                let d = open(&db, 0);
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(d.list_guests()).unwrap().len()
            })
        })
        .collect();
    let counts: Vec<usize> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(counts.iter().all(|c| *c == 7), "{counts:?}");
}

#[test]
fn parallel_writers_never_fail_or_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("writers.db");
    drop(open(&db, 0));
    let handles: Vec<_> = (0..4)
        .map(|w| {
            let db = db.clone();
            std::thread::spawn(move || {
                let d = open(&db, 0);
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async {
                    for i in 0..15 {
                        let t = d.clone_guest(&spec(&format!("w{w}-{i}"))).await.unwrap().task;
                        loop {
                            match d.task_status(&t).await.unwrap() {
                                TaskStatus::Completed(_) => break,
                                TaskStatus::Running => tokio::time::sleep(Duration::from_millis(1)).await,
                                TaskStatus::Failed(e) => panic!("{e}"),
                            }
                        }
                    }
                })
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let d = open(&db, 0);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let list = rt.block_on(d.list_guests()).unwrap();
    assert_eq!(list.len(), 7 + 60);
    let mut ids: Vec<_> = list.iter().map(|g| g.id.clone()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 67);
}
