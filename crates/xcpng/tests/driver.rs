//! Driver-level tests against a private XAPI stand-in (testing/xcpng/xapi_standin.py):
//! login, pool-master redirect, power rules, template flag, snapshot/revert, fast clone vs
//! full copy, delete removes the VDIs it created, foreign VMs untouched, session expiry and
//! re-login, a host that stops answering is bounded; XAPI calls per method are asserted.

mod common;

use common::{StandIn, MASTER, SLAVE, STALL};
use polyvisor_core::task::wait;
use polyvisor_core::{
    CloneMode, CloneSpec, CreateSource, CreateSpec, Driver, ErrorKind, GuestId, NicSpec, OpenOptions, PowerAction,
    PowerState, SnapshotSpec, TaskId,
};
use polyvisor_xcpng::{open_driver_with, XcpNg};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const BUDGET: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);

fn driver(s: &StandIn, host: &str, extra: &[(&str, &str)]) -> XcpNg {
    open_driver_with(&s.settings(host, extra), &OpenOptions::default()).unwrap()
}

async fn done(d: &XcpNg, t: &TaskId) -> Option<GuestId> {
    wait(d, t, BUDGET, POLL).await.unwrap().new_guest
}

async fn vdi_count(s: &StandIn) -> usize {
    s.raw("VDI.get_all", vec![]).await.as_array().unwrap().len()
}

/// Calls made by one operation.
async fn calls<T>(d: &XcpNg, f: impl std::future::Future<Output = T>) -> (T, u64) {
    let before = d.round_trips();
    let out = f.await;
    (out, d.round_trips() - before)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_listing_and_calls_per_method() {
    let s = StandIn::start();
    let d = driver(&s, MASTER, &[]);
    let (probe, n) = calls(&d, d.probe()).await;
    assert!(probe.unwrap().starts_with("XCP-ng 8.3.0"));
    assert_eq!(n, 3, "probe: login + pool.get_all_records + host.get_record");
    let (list, n) = calls(&d, d.list_guests()).await;
    let list = list.unwrap();
    assert_eq!(n, 1, "list is one VM.get_all_records (the session is reused)");
    let names: Vec<&str> = list.iter().map(|g| g.name.as_str()).collect();
    for want in ["tpl-debian", "web-01", "base-vm"] {
        assert!(names.contains(&want), "{names:?}");
    }
    assert!(!names.iter().any(|n| n.starts_with("Control domain") || *n == "Debian Bookworm 12"), "{names:?}");
    assert!(list.iter().find(|g| g.name == "tpl-debian").unwrap().is_template);
    let web = GuestId::new(s.uuid("web-01"));
    let (g, n) = calls(&d, d.get_guest(&web)).await;
    let g = g.unwrap();
    assert_eq!(n, 4, "get: get_by_uuid + get_record + guest metrics + one VIF");
    assert_eq!((g.power, g.cpus, g.memory_mb), (PowerState::PoweredOn, Some(1), Some(1024)));
    assert_eq!(g.mac_addresses(), ["2E:5A:00:00:01:00"]);
    assert!(g.ipv4_addresses()[0].starts_with("192.0.2."), "{g:?}");
    assert_eq!(g.os.as_deref(), Some("Debian GNU/Linux 12"));
    // Bad input and missing guests are typed.
    assert_eq!(d.get_guest(&GuestId::new("101")).await.unwrap_err().kind(), ErrorKind::InvalidInput);
    let e = d.get_guest(&GuestId::new("00000000-0000-0000-0000-000000000000")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    // A wrong password is Unauthorized and never echoed.
    let bad =
        open_driver_with(&s.settings(MASTER, &[("password", "not-the-password")]), &OpenOptions::default()).unwrap();
    let e = bad.list_guests().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
    assert!(!e.message().contains("not-the-password") && !format!("{e:?}").contains(&s.password));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_member_redirects_to_the_master() {
    let s = StandIn::start();
    let d = driver(&s, SLAVE, &[]);
    assert_eq!(d.current_host(), format!("{SLAVE}:{}", s.port));
    let (list, n) = calls(&d, d.list_guests()).await;
    assert!(!list.unwrap().is_empty());
    assert_eq!(n, 3, "login refused with HOST_IS_SLAVE, login at the master, the listing");
    assert_eq!(d.current_host(), format!("{MASTER}:{}", s.port));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_logs_in_again_once() {
    let s = StandIn::start();
    let d = driver(&s, MASTER, &[]);
    d.list_guests().await.unwrap();
    s.expire_sessions().await;
    let (list, n) = calls(&d, d.list_guests()).await;
    assert!(list.is_ok());
    assert_eq!(n, 3, "SESSION_INVALID, login, retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_stops_answering_is_bounded() {
    let s = StandIn::start();
    let d = driver(&s, STALL, &[("request_timeout", "2")]);
    let t0 = Instant::now();
    let e = d.list_guests().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(t0.elapsed() < Duration::from_secs(15), "{:?}", t0.elapsed());
    // Nothing listens: Unavailable, quickly.
    let gone = open_driver_with(
        &polyvisor_core::Settings::from_pairs([
            ("host", "127.0.9.32:9"),
            ("username", "root"),
            ("password", "x"),
            ("fingerprint", s.fingerprint.as_str()),
        ]),
        &OpenOptions::default(),
    )
    .unwrap();
    assert_eq!(gone.list_guests().await.unwrap_err().kind(), ErrorKind::Unavailable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_rules_follow_xapi() {
    let s = StandIn::start();
    let d = driver(&s, MASTER, &[]);
    let id = GuestId::new(s.uuid("base-vm"));
    let power = |a| {
        let d = &d;
        let id = id.clone();
        async move { d.power(&id, a).await }
    };
    let state = || async { d.get_guest(&id).await.unwrap().raw_power_state };
    assert_eq!(power(PowerAction::Reset).await.unwrap_err().kind(), ErrorKind::Conflict);
    assert_eq!(power(PowerAction::Suspend).await.unwrap_err().kind(), ErrorKind::Conflict);
    let (t, n) = calls(&d, power(PowerAction::Start)).await;
    assert_eq!(n, 3, "start: get_by_uuid + get_record + Async.VM.start");
    done(&d, &t.unwrap()).await;
    assert_eq!(state().await, "Running");
    // Idempotent: start on a running guest is an already-completed task.
    let (t, _) = calls(&d, power(PowerAction::Start)).await;
    assert!(t.unwrap().as_str().starts_with("pv1:done:"));
    done(&d, &power(PowerAction::Suspend).await.unwrap()).await;
    assert_eq!(state().await, "Suspended");
    done(&d, &power(PowerAction::Resume).await.unwrap()).await;
    done(&d, &power(PowerAction::Reboot).await.unwrap()).await;
    done(&d, &power(PowerAction::Reset).await.unwrap()).await;
    assert_eq!(state().await, "Running");
    done(&d, &power(PowerAction::Shutdown).await.unwrap()).await;
    assert_eq!(state().await, "Halted");
    assert!(power(PowerAction::Stop).await.unwrap().as_str().starts_with("pv1:done:"));
    // A template never changes power state.
    let tpl = GuestId::new(s.uuid("tpl-debian"));
    assert_eq!(d.power(&tpl, PowerAction::Start).await.unwrap_err().kind(), ErrorKind::Conflict);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_flag_in_both_modes() {
    let s = StandIn::start();
    let id = GuestId::new(s.uuid("base-vm"));
    let flag = driver(&s, MASTER, &[]);
    done(&flag, &flag.set_template(&id, true).await.unwrap()).await;
    assert!(flag.get_guest(&id).await.unwrap().is_template);
    let raw = s.raw("VM.get_by_uuid", vec![json!(id.as_str())]).await;
    let rec = s.raw("VM.get_record", vec![raw.clone()]).await;
    assert_eq!(rec["other_config"]["polyvisor_template"], "true");
    assert_eq!(rec["is_a_template"], false, "flag mode keeps an ordinary VM");
    done(&flag, &flag.set_template(&id, false).await.unwrap()).await;
    let native =
        open_driver_with(&s.settings(MASTER, &[("template_mode", "native")]), &OpenOptions::default()).unwrap();
    done(&native, &native.set_template(&id, true).await.unwrap()).await;
    assert_eq!(s.raw("VM.get_is_a_template", vec![raw.clone()]).await, true);
    done(&native, &native.set_template(&id, true).await.unwrap()).await; // idempotent
    done(&native, &native.set_template(&id, false).await.unwrap()).await;
    assert_eq!(s.raw("VM.get_is_a_template", vec![raw]).await, false);
    // A running VM cannot become a template.
    let web = GuestId::new(s.uuid("web-01"));
    assert_eq!(native.set_template(&web, true).await.unwrap_err().kind(), ErrorKind::Conflict);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_create_revert_delete_and_leave_no_disks() {
    let s = StandIn::start();
    let d = driver(&s, MASTER, &[]);
    let id = GuestId::new(s.uuid("base-vm"));
    let vdis = vdi_count(&s).await;
    let spec = SnapshotSpec { name: "RAS_TEMPLATE_VERSION_1".into(), include_memory: false, description: None };
    done(&d, &d.create_snapshot(&id, &spec).await.unwrap()).await;
    assert!(d.snapshot_exists(&id, "RAS_TEMPLATE_VERSION_1").await.unwrap());
    assert_eq!(vdi_count(&s).await, vdis + 1);
    // Re-creating replaces it (no second snapshot, no leaked disk).
    done(&d, &d.create_snapshot(&id, &spec).await.unwrap()).await;
    assert_eq!(d.list_snapshots(&id).await.unwrap().len(), 1);
    assert_eq!(vdi_count(&s).await, vdis + 1);
    done(&d, &d.revert_snapshot(&id, "RAS_TEMPLATE_VERSION_1").await.unwrap()).await;
    assert_eq!(d.revert_snapshot(&id, "nope").await.unwrap_err().kind(), ErrorKind::NotFound);
    // Clone from the snapshot (flag mode), then delete everything.
    let c = d
        .clone_guest(&CloneSpec {
            source: id.clone(),
            name: "from-snap".into(),
            snapshot: Some("RAS_TEMPLATE_VERSION_1".into()),
            mode: CloneMode::Linked,
            start: false,
        })
        .await
        .unwrap();
    let clone = done(&d, &c.task).await.unwrap();
    assert!(!d.get_guest(&clone).await.unwrap().is_template);
    done(&d, &d.delete_guest(&clone).await.unwrap()).await;
    done(&d, &d.delete_snapshot(&id, "RAS_TEMPLATE_VERSION_1").await.unwrap()).await;
    assert!(!d.snapshot_exists(&id, "RAS_TEMPLATE_VERSION_1").await.unwrap());
    assert!(d.delete_snapshot(&id, "RAS_TEMPLATE_VERSION_1").await.unwrap().as_str().starts_with("pv1:done:"));
    assert_eq!(vdi_count(&s).await, vdis, "snapshot and clone disks are gone");
}

async fn vdis_of(s: &StandIn, uuid: &str) -> Vec<Value> {
    let vm = s.raw("VM.get_by_uuid", vec![json!(uuid)]).await;
    let mut out = Vec::new();
    for vbd in s.raw("VM.get_VBDs", vec![vm]).await.as_array().unwrap() {
        let vdi = s.raw("VBD.get_VDI", vec![vbd.clone()]).await;
        out.push(s.raw("VDI.get_record", vec![vdi]).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_clone_versus_full_copy_and_delete_removes_their_disks() {
    let s = StandIn::start();
    let d = driver(&s, MASTER, &[("sr", "Fast storage")]);
    let src = GuestId::new(s.uuid("base-vm"));
    let vdis = vdi_count(&s).await;
    d.list_guests().await.unwrap(); // logged in
    let spec =
        |name: &str, mode| CloneSpec { source: src.clone(), name: name.into(), snapshot: None, mode, start: false };
    let (fast, n) = calls(&d, d.clone_guest(&spec("fast", CloneMode::Linked))).await;
    assert_eq!(n, 2, "clone: VM.get_all_records + Async.VM.clone");
    let fast = done(&d, &fast.unwrap().task).await.unwrap();
    let full = done(&d, &d.clone_guest(&spec("full", CloneMode::Full)).await.unwrap().task).await.unwrap();
    let local = s.raw("SR.get_by_name_label", vec![json!("Local storage")]).await[0].clone();
    let fastsr = s.raw("SR.get_by_name_label", vec![json!("Fast storage")]).await[0].clone();
    let f = vdis_of(&s, fast.as_str()).await;
    assert!(f[0]["sm_config"].get("vhd-parent").is_some() && f[0]["SR"] == local, "fast clone: CoW on the same SR");
    let c = vdis_of(&s, full.as_str()).await;
    assert!(c[0]["sm_config"].get("vhd-parent").is_none() && c[0]["SR"] == fastsr, "full copy on the chosen SR");
    // A retry of the same clone adopts it.
    let again = d.clone_guest(&spec("fast", CloneMode::Linked)).await.unwrap();
    assert_eq!(again.new_guest.as_ref(), Some(&fast));
    assert_eq!(vdi_count(&s).await, vdis + 2);
    for g in [&fast, &full] {
        done(&d, &d.delete_guest(g).await.unwrap()).await;
        assert!(d.delete_guest(g).await.unwrap().as_str().starts_with("pv1:done:"), "delete is idempotent");
    }
    assert_eq!(vdi_count(&s).await, vdis, "delete removed the disks the clones had, and only those");
    assert!(d.get_guest(&src).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_owns_its_guest_and_never_touches_a_foreign_one() {
    let s = StandIn::start();
    let d = driver(&s, MASTER, &[("network", "lab")]);
    let tpl = GuestId::new(s.uuid("tpl-debian"));
    let spec = |name: &str| CreateSpec {
        name: name.into(),
        key: "i-2-45-VM".into(),
        source: CreateSource::Template { id: tpl.clone(), full: false },
        cpus: Some(2),
        memory_mb: Some(512),
        disk_size_gb: None,
        storage: None,
        nics: vec![NicSpec { mac: Some("02:00:0A:0B:0C:0D".into()), vlan: None, network: None }],
    };
    let vdis = vdi_count(&s).await;
    // A foreign VM of that name is never adopted.
    let e = d.create_guest(&spec("web-01")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    assert!(d.find_owned("i-2-45-VM", None).await.unwrap().is_none());
    let started = d.create_guest(&spec("i-2-45-VM")).await.unwrap();
    let id = done(&d, &started.task).await.unwrap();
    let g = d.get_guest(&id).await.unwrap();
    assert_eq!(
        (g.name.as_str(), g.cpus, g.memory_mb, g.power),
        ("i-2-45-VM", Some(2), Some(512), PowerState::PoweredOn)
    );
    assert_eq!(g.mac_addresses(), ["02:00:0A:0B:0C:0D"]);
    assert_eq!(g.key.as_deref(), Some("i-2-45-VM"));
    // A retry finds it by its key.
    let again = d.create_guest(&spec("i-2-45-VM")).await.unwrap();
    assert_eq!(again.new_guest.as_ref(), Some(&id));
    assert_eq!(done(&d, &again.task).await.as_ref(), Some(&id));
    let (owned, n) = calls(&d, d.find_owned("i-2-45-VM", Some(&id))).await;
    assert_eq!(owned.unwrap().unwrap().id, id);
    assert_eq!(n, 1, "find_owned is one listing");
    // The foreign VM carries no key and stays as it was.
    let web = GuestId::new(s.uuid("web-01"));
    let w = d.get_guest(&web).await.unwrap();
    assert_eq!((w.key, w.power), (None, PowerState::PoweredOn));
    done(&d, &d.delete_guest(&id).await.unwrap()).await;
    assert!(d.find_owned("i-2-45-VM", None).await.unwrap().is_none());
    assert_eq!(vdi_count(&s).await, vdis, "delete removed the created guest's disk");
    assert!(d.get_guest(&web).await.is_ok());
}

// --- Logout at exit (issue 14): `Driver::close` logs out unless a handed-out task is pending.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_logs_out_when_every_handed_out_task_was_seen_finished() {
    let s = StandIn::start();
    let d = driver(&s, MASTER, &[]);
    let id = GuestId::new(s.uuid("base-vm"));
    done(&d, &d.power(&id, PowerAction::Start).await.unwrap()).await;
    assert_eq!(d.pending_tasks(), 0, "seen finished");
    let before = s.debug().await;
    assert_eq!(before["sessions"], 1, "{before}");
    let (_, n) = calls(&d, d.close()).await;
    assert_eq!(n, 1, "close: one session.logout");
    let after = s.debug().await;
    assert_eq!(after["logouts"].as_u64(), before["logouts"].as_u64().map(|n| n + 1), "{after}");
    assert_eq!(after["sessions"], 0, "{after}");
    // A driver that never logged in has nothing to close.
    let idle = driver(&s, MASTER, &[]);
    let (_, n) = calls(&idle, idle.close()).await;
    assert_eq!(n, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_task_keeps_the_session_and_a_later_process_finishes_it() {
    let s = StandIn::start();
    let id = GuestId::new(s.uuid("base-vm"));
    // "Process" 1 hands out a start task and ends without polling it.
    let first = driver(&s, MASTER, &[]);
    let task = first.power(&id, PowerAction::Start).await.unwrap();
    assert_eq!(first.pending_tasks(), 1);
    let before = s.debug().await;
    let (_, n) = calls(&first, first.close()).await;
    assert_eq!(n, 0, "no logout while a handed-out task is pending");
    let kept = s.debug().await;
    assert_eq!((kept["logouts"].clone(), kept["sessions"].clone()), (before["logouts"].clone(), json!(1)), "{kept}");
    // "Process" 2 (its own session) finishes it, sees it finished, and logs out.
    let second = driver(&s, MASTER, &[]);
    done(&second, &task).await;
    assert_eq!(second.get_guest(&id).await.unwrap().raw_power_state, "Running");
    assert_eq!(second.pending_tasks(), 0);
    second.close().await;
    let end = s.debug().await;
    assert_eq!(end["logouts"].as_u64(), before["logouts"].as_u64().map(|n| n + 1), "{end}");
    assert_eq!(end["sessions"], 1, "the first process's session stays until it expires on the host");
    assert_eq!(end["tasks_dropped"], before["tasks_dropped"], "{end}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_out_with_a_pending_task_loses_it_which_is_why_close_keeps_the_session() {
    // The hazard close avoids, shown on the stand-in (as on XAPI): logout destroys the
    // session's tasks, so the later process cannot finish the task.
    let s = StandIn::start_with_task_delay("30");
    let id = GuestId::new(s.uuid("base-vm"));
    let first = driver(&s, MASTER, &[]);
    let task = first.power(&id, PowerAction::Start).await.unwrap();
    first.logout().await;
    assert_eq!(s.debug().await["tasks_dropped"], 1);
    let second = driver(&s, MASTER, &[]);
    let st = second.task_status(&task).await.unwrap();
    assert!(matches!(st, polyvisor_core::TaskStatus::Failed(_)), "{st:?}");
    assert_eq!(second.get_guest(&id).await.unwrap().raw_power_state, "Halted", "the work went with the task");
}
