//! Events (the trigger-filled log) and synthetic metrics (issue 12).

use polyvisor_core::events::{EventKind, MetricsInterval};
use polyvisor_core::{CloneMode, CloneSpec, Driver, ErrorKind, PowerAction, Settings, SnapshotSpec, TaskId};
use std::sync::Arc;

fn open(path: &std::path::Path) -> Arc<dyn Driver> {
    let s = Settings::from_pairs([
        ("sim_db", path.to_string_lossy().into_owned()),
        ("sim_task_ms", "0".to_string()),
        ("sim_boot_ms", "0".to_string()),
    ]);
    polyvisor_sim::open(&s).expect("open sim")
}

async fn finish(d: &dyn Driver, t: &TaskId) -> polyvisor_core::TaskOutput {
    polyvisor_core::task::wait(d, t, std::time::Duration::from_secs(5), std::time::Duration::from_millis(5))
        .await
        .unwrap()
}

#[tokio::test]
async fn every_change_is_logged_once_and_a_reopened_driver_resumes_from_any_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sim.db");
    let d = open(&path);
    let start = d.events_since(None).await.unwrap();
    assert!(start.events.is_empty());
    assert!(d.capabilities().native_events && d.capabilities().metrics);

    let c = d
        .clone_guest(&CloneSpec {
            source: "9000".into(),
            name: "ev-1".into(),
            snapshot: None,
            mode: CloneMode::Full,
            start: false,
        })
        .await
        .unwrap();
    let id = finish(&*d, &c.task).await.new_guest.or(c.new_guest).unwrap();
    finish(&*d, &d.power(&id, PowerAction::Start).await.unwrap()).await;
    finish(&*d, &d.power(&id, PowerAction::Suspend).await.unwrap()).await;
    finish(&*d, &d.power(&id, PowerAction::Stop).await.unwrap()).await;
    let spec = SnapshotSpec { name: "s1".into(), include_memory: false, description: None };
    finish(&*d, &d.create_snapshot(&id, &spec).await.unwrap()).await;
    finish(&*d, &d.revert_snapshot(&id, "s1").await.unwrap()).await;
    finish(&*d, &d.delete_snapshot(&id, "s1").await.unwrap()).await;
    finish(&*d, &d.set_template(&id, true).await.unwrap()).await;
    finish(&*d, &d.delete_guest(&id).await.unwrap()).await;

    let all = d.events_since(Some(&start.cursor)).await.unwrap();
    let kinds: Vec<EventKind> = all.events.iter().filter(|e| e.guest.as_ref() == Some(&id)).map(|e| e.kind).collect();
    use EventKind::*;
    assert_eq!(
        kinds,
        [
            VmCreated,
            VmPoweredOn,
            VmSuspended,
            VmPoweredOff,
            SnapshotCreated,
            SnapshotReverted,
            SnapshotRemoved,
            TemplateConverted,
            VmDeleted
        ],
        "{:#?}",
        all.events
    );
    assert_eq!(all.events.last().unwrap().cursor, all.cursor);
    let snap = all.events.iter().find(|e| e.kind == SnapshotReverted).unwrap();
    assert_eq!(snap.snapshot.as_deref(), Some("s1"));

    // A new process resumes from the third event's cursor: exactly the rest, no repeats.
    drop(d);
    let d2 = open(&path);
    let rest = d2.events_since(Some(&all.events[2].cursor)).await.unwrap();
    assert_eq!(rest.events, all.events[3..]);
    // Nothing new: an empty batch whose cursor stays put.
    let none = d2.events_since(Some(&all.cursor)).await.unwrap();
    assert!(none.events.is_empty());
    assert_eq!(none.cursor, all.cursor);
    // Foreign cursors are refused.
    let bad = polyvisor_core::events::EventCursor("pvev1:diff:e30".into());
    assert_eq!(d2.events_since(Some(&bad)).await.unwrap_err().kind(), ErrorKind::InvalidInput);
}

#[tokio::test]
async fn metrics_are_plausible_deterministic_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let d = open(&dir.path().join("sim.db"));
    let now = polyvisor_core::task::now_unix();
    // 101 is a seeded running guest created "now": ask for the last 2 minutes once it is old enough.
    let id = "101".into();
    let end = now;
    let a = d.metrics(&id, end - 3600, end, MetricsInterval::Realtime).await.unwrap();
    let b = d.metrics(&id, end - 3600, end, MetricsInterval::Realtime).await.unwrap();
    assert_eq!(a, b);
    for s in &a {
        assert_eq!(s.at % 20, 0);
        assert!((0.0..=100.0).contains(&s.cpu_usage_rate) && (0.0..=100.0).contains(&s.mem_usage), "{s:?}");
        assert!(s.disk_rate_kbps >= 0.0 && s.net_rate_kbps >= 0.0);
    }
    assert_eq!(
        d.metrics(&id, end, end - 10, MetricsInterval::Hourly).await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        d.metrics(&"4242".into(), end - 60, end, MetricsInterval::Realtime).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

/// `read_guests` (one transaction) answers exactly what `get_guest` + `list_snapshots` per
/// guest answer (the core's provided way), in the order asked, leaving out ids that are gone
/// or malformed; templates keep their snapshots (flagged templates).
#[tokio::test]
async fn read_guests_in_one_transaction_agrees_with_reads_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = open(&dir.path().join("sim.db"));
    let listed: Vec<polyvisor_core::GuestId> = d.list_guests().await.unwrap().into_iter().map(|g| g.id).collect();
    assert!(listed.len() >= 2, "the seed has guests");
    let snap = SnapshotSpec { name: "s1".into(), include_memory: false, description: Some("d".into()) };
    finish(&*d, &d.create_snapshot(&listed[0], &snap).await.unwrap()).await;
    let mut ids: Vec<polyvisor_core::GuestId> = listed.iter().rev().cloned().collect();
    ids.insert(1, "424242".into());
    ids.push("not-an-id".into());
    let batch = d.read_guests(&ids).await.unwrap();
    assert_eq!(batch.len(), listed.len(), "the gone and malformed ids are left out");
    let mut one_by_one = Vec::new();
    for id in listed.iter().rev() {
        let g = d.get_guest(id).await.unwrap();
        let s = d.list_snapshots(id).await.unwrap();
        one_by_one.push((g, s));
    }
    assert_eq!(batch, one_by_one);
    assert!(batch.iter().any(|(_, s)| s.iter().any(|x| x.name == "s1")), "snapshots are read");
}
