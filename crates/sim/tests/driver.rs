//! Driver behaviour against a real database file (durations 0 unless a test needs time).

use polyvisor_core::task::TaskToken;
use polyvisor_core::{
    CloneMode, CloneSpec, Console, CreateSource, CreateSpec, Driver, ErrorKind, ExposeSecret, GuestId, NicSpec,
    PowerAction, PowerState, Settings, SnapshotSpec, TaskId, TaskOutput, TaskStatus,
};
use polyvisor_sim::control::SimDb;
use polyvisor_sim::faults::{Mode, Op};
use std::path::Path;
use std::sync::Arc;

fn open_with(path: &Path, task_ms: u64, boot_ms: u64) -> Arc<dyn Driver> {
    let s = Settings::from_pairs([
        ("sim_db", path.to_string_lossy().into_owned()),
        ("sim_task_ms", task_ms.to_string()),
        ("sim_boot_ms", boot_ms.to_string()),
    ]);
    polyvisor_sim::open(&s).expect("open sim")
}

fn fresh() -> (tempfile::TempDir, std::path::PathBuf, Arc<dyn Driver>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sim.db");
    let d = open_with(&path, 0, 0);
    (dir, path, d)
}

async fn finish(d: &dyn Driver, t: &TaskId) -> Result<TaskOutput, polyvisor_core::Error> {
    polyvisor_core::task::wait(d, t, std::time::Duration::from_secs(5), std::time::Duration::from_millis(5)).await
}

fn clone_spec(source: &str, name: &str) -> CloneSpec {
    CloneSpec { source: source.into(), name: name.into(), snapshot: None, mode: CloneMode::Auto, start: false }
}

#[tokio::test]
async fn seeded_estate_and_not_found() {
    let (_d, _p, d) = fresh();
    let list = d.list_guests().await.unwrap();
    assert!(list.iter().filter(|g| g.is_template).count() >= 2);
    assert!(list.iter().any(|g| g.power == PowerState::PoweredOn));
    assert!(list.iter().any(|g| g.power == PowerState::PoweredOff && !g.is_template));
    let snaps = d.list_snapshots(&"9000".into()).await.unwrap();
    assert!(snaps.iter().any(|s| s.name == "RAS_TEMPLATE_VERSION_1"));
    let e = d.get_guest(&"4242".into()).await.unwrap_err();
    assert_eq!((e.kind(), e.message()), (ErrorKind::NotFound, "guest [4242] not found"));
    assert_eq!(d.get_guest(&"x".into()).await.unwrap_err().kind(), ErrorKind::NotFound);
    let g = d.get_guest(&"101".into()).await.unwrap();
    assert_eq!(g.ipv4_addresses().len(), 1);
    assert!(g.nics[0].mac.starts_with("52:54:00:"));
}

#[tokio::test]
async fn empty_estate_when_seed_off() {
    let dir = tempfile::tempdir().unwrap();
    let s = Settings::from_pairs([
        ("sim_db", dir.path().join("e.db").to_string_lossy().into_owned()),
        ("sim_seed", "false".into()),
    ]);
    let d = polyvisor_sim::open(&s).unwrap();
    assert!(d.list_guests().await.unwrap().is_empty());
}

#[tokio::test]
async fn power_transitions_are_time_based_and_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let d = open_with(&dir.path().join("p.db"), 0, 150);
    let id: GuestId = "102".into();
    let t = d.power(&id, PowerAction::Start).await.unwrap();
    let g = d.get_guest(&id).await.unwrap();
    assert_eq!(g.power, PowerState::PoweringOn);
    assert!(g.ipv4_addresses().is_empty(), "no IPv4 before boot completes");
    assert!(matches!(d.task_status(&t).await.unwrap(), TaskStatus::Running));
    finish(&*d, &t).await.unwrap();
    let g = d.get_guest(&id).await.unwrap();
    assert_eq!(g.power, PowerState::PoweredOn);
    assert_eq!(g.ipv4_addresses().len(), 1);
    // Idempotent start; stop is immediate; stop twice is fine.
    finish(&*d, &d.power(&id, PowerAction::Start).await.unwrap()).await.unwrap();
    finish(&*d, &d.power(&id, PowerAction::Stop).await.unwrap()).await.unwrap();
    assert_eq!(d.get_guest(&id).await.unwrap().power, PowerState::PoweredOff);
    finish(&*d, &d.power(&id, PowerAction::Stop).await.unwrap()).await.unwrap();
    // Suspended guest: start resumes.
    let s: GuestId = "103".into();
    finish(&*d, &d.power(&s, PowerAction::Start).await.unwrap()).await.unwrap();
    assert_eq!(d.get_guest(&s).await.unwrap().power, PowerState::PoweredOn);
    finish(&*d, &d.power(&s, PowerAction::Suspend).await.unwrap()).await.unwrap();
    assert_eq!(d.get_guest(&s).await.unwrap().power, PowerState::Suspended);
    // Templates cannot start.
    let e = d.power(&"9000".into(), PowerAction::Start).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert_eq!(d.power(&"777".into(), PowerAction::Start).await.unwrap_err().kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn clone_hidden_until_done_adopted_on_retry_and_started() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let slow = open_with(&path, 200, 0);
    let before = slow.list_guests().await.unwrap().len();
    let spec = CloneSpec { start: true, ..clone_spec("9000", "ws-01") };
    let started = slow.clone_guest(&spec).await.unwrap();
    assert_eq!(slow.list_guests().await.unwrap().len(), before, "clone hidden until done");
    let again = slow.clone_guest(&spec).await.unwrap();
    assert_eq!(again.task, started.task, "retry adopts the pending clone");
    let out = finish(&*slow, &started.task).await.unwrap();
    let new = out.new_guest.expect("clone output names the guest");
    let g = slow.get_guest(&new).await.unwrap();
    assert_eq!((g.name.as_str(), g.power), ("ws-01", PowerState::PoweredOn));
    assert_eq!(g.ipv4_addresses().len(), 1);
    let retry = slow.clone_guest(&spec).await.unwrap();
    assert_eq!(finish(&*slow, &retry.task).await.unwrap().new_guest, Some(new.clone()));
    assert_eq!(slow.list_guests().await.unwrap().len(), before + 1, "never duplicated");
    // Names: invalid → InvalidInput; taken by another guest → AlreadyExists.
    for bad in ["", "-x", "a b", &"n".repeat(64)] {
        assert_eq!(slow.clone_guest(&clone_spec("9000", bad)).await.unwrap_err().kind(), ErrorKind::InvalidInput);
    }
    assert_eq!(slow.clone_guest(&clone_spec("9001", "ws-01")).await.unwrap_err().kind(), ErrorKind::AlreadyExists);
    // MACs unique across the estate.
    let mut macs = Vec::new();
    for s in slow.list_guests().await.unwrap() {
        macs.extend(slow.get_guest(&s.id).await.unwrap().mac_addresses());
    }
    let n = macs.len();
    macs.sort();
    macs.dedup();
    assert_eq!(macs.len(), n);
}

#[tokio::test]
async fn linked_clones_protect_their_source() {
    let (_d, _p, d) = fresh();
    let spec = CloneSpec {
        mode: CloneMode::Linked,
        snapshot: Some("RAS_TEMPLATE_VERSION_1".into()),
        ..clone_spec("9000", "lc-1")
    };
    let new = finish(&*d, &d.clone_guest(&spec).await.unwrap().task).await.unwrap().new_guest.unwrap();
    let e = d.delete_guest(&"9000".into()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert!(e.message().contains("lc-1") && e.message().contains(new.as_str()), "{}", e.message());
    let e = d.delete_snapshot(&"9000".into(), "RAS_TEMPLATE_VERSION_1").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    // Full clones do not hold the source.
    let full = CloneSpec { mode: CloneMode::Full, ..clone_spec("9001", "fc-1") };
    finish(&*d, &d.clone_guest(&full).await.unwrap().task).await.unwrap();
    finish(&*d, &d.delete_guest(&"9001".into()).await.unwrap()).await.unwrap();
    assert_eq!(d.get_guest(&"9001".into()).await.unwrap_err().kind(), ErrorKind::NotFound);
    // After deleting the dependants, the template can go; deleting again is a no-op.
    finish(&*d, &d.delete_guest(&new).await.unwrap()).await.unwrap();
    finish(&*d, &d.delete_guest(&"100".into()).await.unwrap()).await.unwrap();
    finish(&*d, &d.delete_guest(&"9000".into()).await.unwrap()).await.unwrap();
    finish(&*d, &d.delete_guest(&"9000".into()).await.unwrap()).await.unwrap();
}

#[tokio::test]
async fn snapshots_replace_revert_delete_and_templates_keep_them() {
    let (_d, _p, d) = fresh();
    let id: GuestId = "101".into();
    let spec =
        |name: &str, mem: bool| SnapshotSpec { name: name.into(), include_memory: mem, description: Some("d".into()) };
    finish(&*d, &d.create_snapshot(&id, &spec("a", true)).await.unwrap()).await.unwrap();
    finish(&*d, &d.create_snapshot(&id, &spec("b", false)).await.unwrap()).await.unwrap();
    let s = d.list_snapshots(&id).await.unwrap();
    assert_eq!(s.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(s[1].parent.as_deref(), Some("a"));
    assert!(s[0].includes_memory);
    // Replace "a": still one "a", now the newest.
    finish(&*d, &d.create_snapshot(&id, &spec("a", false)).await.unwrap()).await.unwrap();
    let s = d.list_snapshots(&id).await.unwrap();
    assert_eq!(s.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["b", "a"]);
    assert_eq!(s[1].parent.as_deref(), Some("b"));
    // Revert without memory powers off; missing → NotFound; delete missing → no-op.
    finish(&*d, &d.revert_snapshot(&id, "b").await.unwrap()).await.unwrap();
    assert_eq!(d.get_guest(&id).await.unwrap().power, PowerState::PoweredOff);
    assert_eq!(d.revert_snapshot(&id, "zzz").await.unwrap_err().kind(), ErrorKind::NotFound);
    finish(&*d, &d.delete_snapshot(&id, "zzz").await.unwrap()).await.unwrap();
    finish(&*d, &d.delete_snapshot(&id, "b").await.unwrap()).await.unwrap();
    let s = d.list_snapshots(&id).await.unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].parent, None, "child re-parented");
    // Convert to template keeps snapshots; back again.
    finish(&*d, &d.set_template(&id, true).await.unwrap()).await.unwrap();
    assert!(d.get_guest(&id).await.unwrap().is_template);
    assert_eq!(d.list_snapshots(&id).await.unwrap().len(), 1);
    finish(&*d, &d.set_template(&id, true).await.unwrap()).await.unwrap();
    finish(&*d, &d.set_template(&id, false).await.unwrap()).await.unwrap();
    assert!(!d.get_guest(&id).await.unwrap().is_template);
    // A running guest cannot become a template.
    assert_eq!(d.set_template(&"100".into(), true).await.unwrap_err().kind(), ErrorKind::Conflict);
}

#[tokio::test]
async fn create_is_idempotent_per_key() {
    let (_d, _p, d) = fresh();
    let spec = CreateSpec {
        name: "i-2-45-VM".into(),
        key: "i-2-45-VM".into(),
        source: CreateSource::Template { id: "9000".into(), full: false },
        cpus: Some(3),
        memory_mb: Some(3072),
        disk_size_gb: None,
        storage: None,
        nics: vec![NicSpec { mac: Some("02-00-4a-00-00-01".into()), vlan: Some(100), network: None }],
    };
    let out = finish(&*d, &d.create_guest(&spec).await.unwrap().task).await.unwrap();
    let id = out.new_guest.unwrap();
    let g = d.get_guest(&id).await.unwrap();
    assert_eq!((g.cpus, g.memory_mb, g.power), (Some(3), Some(3072), PowerState::PoweredOn));
    assert_eq!(g.nics[0].mac, "02:00:4A:00:00:01");
    assert_eq!(g.nics[0].vlan, Some(100));
    assert_eq!(g.key.as_deref(), Some("i-2-45-VM"));
    assert_eq!(d.find_by_key("i-2-45-VM").await.unwrap().unwrap().id, id);
    // Retry after a stop converges (powers on) instead of duplicating.
    finish(&*d, &d.power(&id, PowerAction::Stop).await.unwrap()).await.unwrap();
    let again = finish(&*d, &d.create_guest(&spec).await.unwrap().task).await.unwrap();
    assert_eq!(again.new_guest, Some(id.clone()));
    assert_eq!(d.get_guest(&id).await.unwrap().power, PowerState::PoweredOn);
    // Another key asking for the same MAC is refused; bad MAC is invalid.
    let other = CreateSpec { name: "i-2-46-VM".into(), key: "i-2-46-VM".into(), ..spec.clone() };
    assert_eq!(d.create_guest(&other).await.unwrap_err().kind(), ErrorKind::AlreadyExists);
    let bad = CreateSpec { nics: vec![NicSpec { mac: Some("zz".into()), ..Default::default() }], ..other.clone() };
    assert_eq!(d.create_guest(&bad).await.unwrap_err().kind(), ErrorKind::InvalidInput);
    let iso = CreateSpec {
        source: CreateSource::Iso { path: "local:iso/debian.iso".into(), os_type: Some("l26".into()) },
        nics: vec![],
        ..other
    };
    let g = d
        .get_guest(&finish(&*d, &d.create_guest(&iso).await.unwrap().task).await.unwrap().new_guest.unwrap())
        .await
        .unwrap();
    assert_eq!(g.os.as_deref(), Some("l26"));
}

#[tokio::test]
async fn faults_fail_submit_or_task_and_leave_nothing() {
    let (_d, path, d) = fresh();
    let ctl = SimDb::open(&path, true).unwrap();
    let before = d.list_guests().await.unwrap();
    ctl.set_fault(Op::Clone, 1, 0, Mode::Submit).unwrap();
    let e = d.clone_guest(&clone_spec("9000", "f-1")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Backend);
    ctl.set_fault(Op::Clone, 1, 0, Mode::Task).unwrap();
    let t = d.clone_guest(&clone_spec("9000", "f-1")).await.unwrap();
    assert_eq!(finish(&*d, &t.task).await.unwrap_err().kind(), ErrorKind::Backend);
    assert_eq!(d.list_guests().await.unwrap(), before, "nothing half-created");
    assert_eq!(ctl.counts().unwrap().pending, 0);
    // Knob exhausted: the retry succeeds.
    finish(&*d, &d.clone_guest(&clone_spec("9000", "f-1")).await.unwrap().task).await.unwrap();
    ctl.set_fault(Op::Power, 1, 0, Mode::Task).unwrap();
    let t = d.power(&"102".into(), PowerAction::Start).await.unwrap();
    assert!(finish(&*d, &t).await.is_err());
    assert_eq!(d.get_guest(&"102".into()).await.unwrap().power, PowerState::PoweredOff);
    ctl.set_fault(Op::Get, 0, 30, Mode::Submit).unwrap();
    let t0 = std::time::Instant::now();
    d.get_guest(&"101".into()).await.unwrap();
    assert!(t0.elapsed().as_millis() >= 30);
    ctl.clear_faults(None).unwrap();
    assert!(ctl.faults().unwrap().is_empty());
}

#[tokio::test]
async fn second_instance_sees_state_and_completes_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("two.db");
    let a = open_with(&path, 100, 0);
    let b = open_with(&path, 100, 0);
    let started = a.clone_guest(&clone_spec("9000", "shared-1")).await.unwrap();
    drop(a); // "process A killed"
    let out = finish(&*b, &started.task).await.unwrap();
    let c = open_with(&path, 0, 0);
    assert_eq!(c.get_guest(&out.new_guest.clone().unwrap()).await.unwrap().name, "shared-1");
    // Both instances agree on the completed status (effect applied exactly once).
    assert!(matches!(c.task_status(&started.task).await.unwrap(), TaskStatus::Completed(_)));
    assert_eq!(c.list_guests().await.unwrap(), b.list_guests().await.unwrap());
    assert_eq!(c.list_guests().await.unwrap().iter().filter(|g| g.name == "shared-1").count(), 1);
}

#[tokio::test]
async fn concurrent_polling_applies_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("race.db");
    let a = open_with(&path, 0, 0);
    let t = a.clone_guest(&clone_spec("9000", "race-1")).await.unwrap().task;
    let mut handles = Vec::new();
    for _ in 0..4 {
        let d = open_with(&path, 0, 0);
        let t = t.clone();
        handles.push(std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async { finish(&*d, &t).await.unwrap().new_guest })
        }));
    }
    let outs: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(outs.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(a.list_guests().await.unwrap().iter().filter(|g| g.name == "race-1").count(), 1);
}

#[tokio::test]
async fn task_ids_are_checked() {
    let (_d, _p, d) = fresh();
    for bad in ["", "nope", "UPID:pve:1", "pv1:sim:1:2"] {
        assert_eq!(d.task_status(&TaskId(bad.into())).await.unwrap_err().kind(), ErrorKind::UnknownTask, "{bad}");
    }
    for body in [serde_json::json!({}), serde_json::json!({"task": 99999, "n": 1})] {
        let forged = TaskToken::new("sim", body).encode();
        assert_eq!(d.task_status(&forged).await.unwrap_err().kind(), ErrorKind::UnknownTask, "{forged}");
    }
    // Expiry is read from the token alone (core's prologue), before the driver looks.
    match d.task_status(&TaskId("pv1:sim:1:2:e30".into())).await.unwrap() {
        TaskStatus::Failed(e) => assert_eq!(e.message(), "Task timed out"),
        other => panic!("{other:?}"),
    }
    // An expired running task fails with "Task timed out".
    let dir = tempfile::tempdir().unwrap();
    let slow = open_with(&dir.path().join("x.db"), 10_000, 0);
    let t = slow.power(&"101".into(), PowerAction::Shutdown).await.unwrap();
    let mut tok = TaskToken::decode(&t).unwrap();
    tok.created = 1;
    tok.max_age = 1;
    match slow.task_status(&tok.encode()).await.unwrap() {
        TaskStatus::Failed(e) => assert_eq!(e.message(), "Task timed out"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn console_gives_a_secret_one_time_password() {
    let (_d, _p, d) = fresh();
    match d.console(&"101".into()).await.unwrap() {
        Console::Vnc { host, port, password, one_time } => {
            assert_eq!(host, "127.0.0.1");
            assert!(port >= 5900);
            assert!(one_time);
            let pw = password.unwrap();
            assert_eq!(pw.expose_secret().len(), 8);
            assert!(!format!("{pw:?}").contains(pw.expose_secret()));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(d.console(&"102".into()).await.unwrap_err().kind(), ErrorKind::Conflict);
    let caps = d.capabilities();
    assert!(caps.suspend && caps.linked_clones && caps.snapshot_memory && caps.create && caps.clone_from_snapshot);
    assert_eq!(caps.task_poll_secs, 1);
}

#[tokio::test]
async fn ten_thousand_guests_list_fast_and_open_is_cheap() {
    let (_d, path, d) = fresh();
    SimDb::open(&path, true).unwrap().seed_guests(10_000, "bench").unwrap();
    let t0 = std::time::Instant::now();
    let n = d.list_guests().await.unwrap().len();
    let list_ms = t0.elapsed().as_millis();
    assert_eq!(n, 10_007);
    let t0 = std::time::Instant::now();
    for _ in 0..1000 {
        d.get_guest(&"5000".into()).await.unwrap();
    }
    let get_us = t0.elapsed().as_micros() / 1000;
    let t0 = std::time::Instant::now();
    let _again = open_with(&path, 0, 0);
    let open_us = t0.elapsed().as_micros();
    eprintln!("list 10k: {list_ms} ms, get: {get_us} us, open: {open_us} us");
    assert!(list_ms < 500, "list took {list_ms} ms (debug build)");
    assert!(get_us < 2000, "get took {get_us} us");
}

#[tokio::test]
async fn due_tasks_apply_on_reads_without_polling() {
    let (_d, _p, d) = fresh();
    let _t = d.delete_guest(&"102".into()).await.unwrap();
    assert!(
        d.list_guests().await.unwrap().iter().all(|g| g.id.as_str() != "102"),
        "delete visible to list without a poll"
    );
    let _c = d.clone_guest(&clone_spec("9000", "unpolled")).await.unwrap();
    assert!(d.list_guests().await.unwrap().iter().any(|g| g.name == "unpolled"));
}

#[tokio::test]
async fn failed_create_and_snapshot_leave_nothing_and_retry_works() {
    let (_d, path, d) = fresh();
    let ctl = SimDb::open(&path, true).unwrap();
    let spec = CreateSpec {
        name: "i-9-9-VM".into(),
        key: "i-9-9-VM".into(),
        source: CreateSource::Template { id: "9001".into(), full: true },
        cpus: None,
        memory_mb: None,
        disk_size_gb: Some(100),
        storage: None,
        nics: vec![NicSpec { mac: Some("02:00:00:00:09:09".into()), vlan: None, network: None }],
    };
    ctl.set_fault(Op::Create, 1, 0, Mode::Task).unwrap();
    let t = d.create_guest(&spec).await.unwrap();
    assert!(finish(&*d, &t.task).await.is_err());
    assert!(d.find_by_key("i-9-9-VM").await.unwrap().is_none());
    assert_eq!(ctl.counts().unwrap().pending, 0);
    let id = finish(&*d, &d.create_guest(&spec).await.unwrap().task).await.unwrap().new_guest.unwrap();
    assert_eq!(
        d.get_guest(&id).await.unwrap().nics[0].mac,
        "02:00:00:00:09:09",
        "requested MAC reusable after a failed create"
    );
    ctl.set_fault(Op::SnapshotCreate, 1, 0, Mode::Task).unwrap();
    let snap = SnapshotSpec { name: "s1".into(), include_memory: false, description: None };
    assert!(finish(&*d, &d.create_snapshot(&id, &snap).await.unwrap()).await.is_err());
    assert!(d.list_snapshots(&id).await.unwrap().is_empty());
    ctl.set_fault(Op::Delete, 1, 0, Mode::Submit).unwrap();
    assert_eq!(d.delete_guest(&id).await.unwrap_err().kind(), ErrorKind::Backend);
    assert!(d.get_guest(&id).await.is_ok());
}
