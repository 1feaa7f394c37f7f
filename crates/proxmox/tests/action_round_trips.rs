//! API round trips per CloudStack action, as a front composes driver calls (resolve the VM
//! by key at the id `prepare`/`create` reported, then act), against fakepve with the
//! platform's `node` setting. Guards the table in the crate README: a count above its
//! ceiling fails `cargo test`. Targets are the CloudStack bash script's counts (issue 8).
#![allow(missing_docs)]

mod common;

use common::FakePve;
use polyvisor_core::task::wait;
use polyvisor_core::*;
use polyvisor_proxmox::{open_driver, ProxmoxDriver};
use serde_json::json;
use std::time::Duration;

/// (action, target, ceiling enforced today).
pub const TABLE: &[(&str, u64, u64)] = &[
    ("status", 1, 1),
    ("start", 2, 2),
    ("stop", 3, 3),
    ("reboot", 2, 2),
    ("getconsole", 2, 3),
    ("delete", 3, 3),
    ("CreateSnapshot", 2, 3),
    ("DeleteSnapshot", 2, 2),
    ("ListSnapshots", 1, 2),
    ("RestoreSnapshot", 5, 5),
    ("create", 7, 10),
];

fn ceiling(action: &str) -> u64 {
    TABLE.iter().find(|(a, _, _)| *a == action).map(|(_, _, c)| *c).unwrap()
}

async fn one_poll(d: &ProxmoxDriver, t: &TaskId) {
    // Instant fakepve tasks: a single poll completes them.
    assert!(matches!(d.task_status(t).await.unwrap(), TaskStatus::Completed(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cloudstack_action_within_its_round_trip_budget() {
    let pve = FakePve::start();
    let mut s = pve.token_settings();
    s["node"] = json!("pve1");
    let settings = Settings::from_json(&s).unwrap();
    let key = "i-7-1-VM";
    let spec = CreateSpec {
        name: key.into(),
        key: key.into(),
        source: CreateSource::Template { id: "9000".into(), full: true },
        cpus: Some(1),
        memory_mb: Some(512),
        disk_size_gb: None,
        storage: None,
        nics: vec![NicSpec { mac: Some("02:00:00:00:07:01".into()), vlan: Some(7), network: None }],
    };
    let mut seen = Vec::new();
    // Each action runs in a fresh driver: CloudStack starts one process per action.
    let fresh = || open_driver(&settings).unwrap();

    let d = fresh();
    let started = d.create_guest(&spec).await.unwrap();
    let id =
        wait(&d, &started.task, Duration::from_secs(20), Duration::from_millis(10)).await.unwrap().new_guest.unwrap();
    seen.push(("create", d.round_trips()));
    let hint = Some(&id);

    let d = fresh();
    let g = d.find_owned(key, hint).await.unwrap().expect("owned");
    assert_eq!(g.power, PowerState::PoweredOn);
    seen.push(("status", d.round_trips()));

    let d = fresh();
    let g = d.find_owned(key, hint).await.unwrap().unwrap();
    one_poll(&d, &d.power(&g.id, PowerAction::Stop).await.unwrap()).await;
    seen.push(("stop", d.round_trips()));

    let d = fresh();
    let g = d.find_owned(key, hint).await.unwrap().unwrap();
    d.power(&g.id, PowerAction::Start).await.unwrap();
    seen.push(("start", d.round_trips()));

    let d = fresh();
    let g = d.find_owned(key, hint).await.unwrap().unwrap();
    d.power(&g.id, PowerAction::Reboot).await.unwrap();
    seen.push(("reboot", d.round_trips()));

    let d = fresh();
    let g = d.find_owned(key, hint).await.unwrap().unwrap();
    d.console(&g.id).await.unwrap();
    seen.push(("getconsole", d.round_trips()));

    let snap = SnapshotSpec { name: "cs1".into(), include_memory: false, description: None };
    let d = fresh();
    let g = d.find_owned(key, hint).await.unwrap().unwrap();
    d.create_snapshot(&g.id, &snap).await.unwrap();
    seen.push(("CreateSnapshot", d.round_trips()));

    let d = fresh();
    let g = d.find_owned(key, hint).await.unwrap().unwrap();
    assert_eq!(d.list_snapshots(&g.id).await.unwrap().len(), 1);
    seen.push(("ListSnapshots", d.round_trips()));

    let d = fresh();
    let g = d.find_owned(key, hint).await.unwrap().unwrap();
    one_poll(&d, &d.revert_snapshot(&g.id, "cs1").await.unwrap()).await;
    seen.push(("RestoreSnapshot", d.round_trips()));

    let d = fresh();
    let g = d.find_owned(key, hint).await.unwrap().unwrap();
    d.delete_snapshot(&g.id, "cs1").await.unwrap();
    seen.push(("DeleteSnapshot", d.round_trips()));

    let d = fresh();
    let g = d.find_owned(key, hint).await.unwrap().unwrap();
    wait(&d, &d.power(&g.id, PowerAction::Stop).await.unwrap(), Duration::from_secs(20), Duration::from_millis(10))
        .await
        .unwrap();
    let d = fresh();
    let g = d.find_owned(key, hint).await.unwrap().unwrap();
    one_poll(&d, &d.delete_guest(&g.id).await.unwrap()).await;
    seen.push(("delete", d.round_trips()));
    assert!(fresh().find_owned(key, hint).await.unwrap().is_none());

    let mut over = Vec::new();
    for (action, n) in &seen {
        let (_, target, _) = TABLE.iter().find(|(a, _, _)| a == action).unwrap();
        eprintln!("| {action} | {n} | {target} |");
        if *n > ceiling(action) {
            over.push(format!("{action}: {n} > {}", ceiling(action)));
        }
    }
    assert!(over.is_empty(), "round trips regressed: {over:?}");
}
