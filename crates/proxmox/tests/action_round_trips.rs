//! API round trips per CloudStack action, as the CloudStack front composes driver calls on
//! the real path: `prepare` allocates the VMID (`allocate_id_hint`, reported as
//! `proxmox_vmid`), `create` lists (its ownership and name checks) and creates at that VMID
//! (`create_guest_at`), every later action resolves the VM by key at that VMID
//! (`find_owned(key, hint)`) and then acts; one process (fresh driver) per action, the
//! platform's `node` set, against fakepve. Guards the table in the crate README: a count
//! above its ceiling fails `cargo test`. Targets are the CloudStack bash script's counts
//! (issue 8).
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
    ("prepare", 1, 1),
    ("status", 1, 1),
    ("start", 2, 2),
    ("stop", 3, 3),
    ("reboot", 2, 2),
    ("getconsole", 2, 2),
    ("delete", 3, 3),
    ("CreateSnapshot", 2, 2),
    ("DeleteSnapshot", 2, 2),
    // Above the script's 1: the script lists the snapshots of whatever VM has that VMID;
    // we first prove the VM is ours (its key), which no snapshot list carries.
    ("ListSnapshots", 1, 2),
    ("RestoreSnapshot", 5, 5),
    ("create", 7, 7),
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
    let mut pve = FakePve::start();
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
    // The requests of each action (method and path), printed when a ceiling is exceeded.
    let mut sent_before = 0usize;
    let mut calls: Vec<(String, Vec<String>)> = Vec::new();
    let mut record = |pve: &mut FakePve, action: &str| {
        let sent = pve.cmd(json!({"sent": true}));
        let all: Vec<String> = sent
            .as_array()
            .unwrap()
            .iter()
            .map(|r| format!("{} {}", r[0].as_str().unwrap_or(""), r[1].as_str().unwrap_or("")))
            .collect();
        calls.push((action.to_string(), all[sent_before..].to_vec()));
        sent_before = all.len();
    };
    record(&mut pve, "setup");

    let d = fresh();
    assert_eq!(d.id_hint_detail(), Some("proxmox_vmid"));
    let hint = d.allocate_id_hint().await.unwrap().expect("a VMID");
    seen.push(("prepare", d.round_trips()));
    record(&mut pve, "prepare");

    let d = fresh();
    // The front's ownership and name checks: one listing, reused by the create.
    assert!(d.list_guests().await.unwrap().iter().all(|g| g.key.as_deref() != Some(key) && g.name != key));
    let started = d.create_guest_at(&spec, Some(&hint)).await.unwrap();
    let id =
        wait(&d, &started.task, Duration::from_secs(20), Duration::from_millis(10)).await.unwrap().new_guest.unwrap();
    assert_eq!(id, hint, "created at the VMID prepare allocated");
    seen.push(("create", d.round_trips()));
    record(&mut pve, "create");
    let hint = Some(&id);

    let d = fresh();
    let g = d.find_owned(key, hint).await.unwrap().expect("owned");
    assert_eq!(g.power, PowerState::PoweredOn);
    seen.push(("status", d.round_trips()));
    record(&mut pve, "status");

    let d = fresh();
    let g = d.find_owned(key, hint).await.unwrap().unwrap();
    one_poll(&d, &d.power(&g.id, PowerAction::Stop).await.unwrap()).await;
    seen.push(("stop", d.round_trips()));
    record(&mut pve, "stop");

    let d = fresh();
    let g = d.find_owned(key, hint).await.unwrap().unwrap();
    d.power(&g.id, PowerAction::Start).await.unwrap();
    seen.push(("start", d.round_trips()));
    record(&mut pve, "start");

    let d = fresh();
    let g = d.find_owned(key, hint).await.unwrap().unwrap();
    d.power(&g.id, PowerAction::Reboot).await.unwrap();
    seen.push(("reboot", d.round_trips()));
    record(&mut pve, "reboot");

    let d = fresh();
    let g = d.find_owned(key, hint).await.unwrap().unwrap();
    match d.console(&g.id).await.unwrap() {
        // On the node the platform names: the configured host, no node network read.
        Console::Vnc { host, .. } => assert_eq!(host, pve.host),
        other => panic!("{other:?}"),
    }
    seen.push(("getconsole", d.round_trips()));
    record(&mut pve, "getconsole");

    let snap = SnapshotSpec { name: "cs1".into(), include_memory: false, description: None };
    let d = fresh();
    let g = d.find_owned(key, hint).await.unwrap().unwrap();
    let t = d.create_snapshot(&g.id, &snap).await.unwrap();
    seen.push(("CreateSnapshot", d.round_trips()));
    record(&mut pve, "CreateSnapshot");
    one_poll(&d, &t).await;
    record(&mut pve, "(poll)");

    let d = fresh();
    let g = d.find_owned(key, hint).await.unwrap().unwrap();
    assert_eq!(d.list_snapshots(&g.id).await.unwrap().len(), 1);
    seen.push(("ListSnapshots", d.round_trips()));
    record(&mut pve, "ListSnapshots");

    let d = fresh();
    let g = d.find_owned(key, hint).await.unwrap().unwrap();
    one_poll(&d, &d.revert_snapshot(&g.id, "cs1").await.unwrap()).await;
    seen.push(("RestoreSnapshot", d.round_trips()));
    record(&mut pve, "RestoreSnapshot");

    let d = fresh();
    let g = d.find_owned(key, hint).await.unwrap().unwrap();
    d.delete_snapshot(&g.id, "cs1").await.unwrap();
    seen.push(("DeleteSnapshot", d.round_trips()));
    record(&mut pve, "DeleteSnapshot");

    let d = fresh();
    let g = d.find_owned(key, hint).await.unwrap().unwrap();
    wait(&d, &d.power(&g.id, PowerAction::Stop).await.unwrap(), Duration::from_secs(20), Duration::from_millis(10))
        .await
        .unwrap();
    record(&mut pve, "(stop before delete)");
    let d = fresh();
    let g = d.find_owned(key, hint).await.unwrap().unwrap();
    one_poll(&d, &d.delete_guest(&g.id).await.unwrap()).await;
    seen.push(("delete", d.round_trips()));
    record(&mut pve, "delete");
    assert!(fresh().find_owned(key, hint).await.unwrap().is_none());

    for (action, reqs) in &calls {
        eprintln!("{action}: {reqs:?}");
    }
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
