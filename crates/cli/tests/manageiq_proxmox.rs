//! `polyvisor manageiq` against a private fakepve (PyPI `fakepve[crypto]`; fails, never
//! skips, when it is missing): inventory, every operation, events from the node task log
//! surviving a restart, metrics, wrong credentials (exit 2), unreachable (exit 3).

mod manageiq_common;

use manageiq_common::*;
use polyvisor_test_support::fakepve::{FakePve, TOKEN_SECRET};
use serde_json::{json, Value};

fn conn(pve: &FakePve, secret: &str) -> String {
    let hp = pve.host_port();
    let (host, port) = hp.rsplit_once(':').unwrap();
    json!({"platform": "proxmox",
           "endpoint": {"hostname": host, "port": port.parse::<u16>().unwrap(), "verify_ssl": true, "ca": pve.ca_file},
           "auth": {"userid": "root@pam", "token_name": "ci", "token_secret": secret},
           "options": {"ip_wait_timeout": 1, "node": "pve1"}})
    .to_string()
}

/// Sum of the driver's per-method round trips logged with `--verbose` at debug level.
fn round_trips(stderr: &str) -> u64 {
    stderr
        .lines()
        .filter(|l| l.contains("polyvisor_proxmox::round_trips"))
        .filter_map(|l| l.split("round_trips=").nth(1)?.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn inventory_ops_events_and_metrics_on_fakepve() {
    let pve = FakePve::start();
    let c = conn(&pve, TOKEN_SECRET);
    let v = ok(&["verify"], &c);
    assert_eq!(v["capabilities"]["native_events"], true);
    let start = start_cursor(&c);

    let t0 = std::time::Instant::now();
    let inv = ok(&["inventory"], &c);
    let wall = t0.elapsed();
    let vms = inv["vms"].as_array().unwrap();
    let vm100 = vms.iter().find(|v| v["ems_ref"] == "100").expect("vm 100");
    assert_eq!((vm100["vendor"].as_str(), vm100["power"].as_str()), (Some("proxmox"), Some("running")));
    assert_eq!(vm100["location"], "pve1/100");
    assert_eq!(vm100["nics"][0]["address"], "BC:24:11:00:01:00");
    assert_eq!(vm100["networks"][0]["ipaddress"], "192.0.2.50");
    let tpl = vms.iter().find(|v| v["ems_ref"] == "9000").expect("template");
    assert_eq!((tpl["template"].as_bool(), tpl["raw_power_state"].as_str()), (Some(true), Some("never")));
    assert!(inv["hosts"].as_array().unwrap().iter().any(|h| h["ems_ref"] == "pve1"));
    // Figures for the README: wall time and round trips of a full inventory.
    let (code, _, err) =
        miq_env(&["--verbose", "inventory"], &c, &[("POLYVISOR_LOG_LEVEL", "polyvisor_proxmox::round_trips=debug")]);
    assert_eq!(code, 0);
    eprintln!("fakepve full inventory: {} VMs, {wall:?} wall, {} round trips", vms.len(), round_trips(&err));

    let t = ok(&["inventory", "--vm", "101"], &c);
    assert_eq!(t["vms"].as_array().unwrap().len(), 1);
    assert_eq!(t["vms"][0]["ems_ref"], "101");

    op(&c, &["start", "--vm", "101"]);
    op(&c, &["snapshot_create", "--vm", "101", "--snapshot", "s1", "--description", "d"]);
    let inv = ok(&["inventory", "--vm", "101"], &c);
    assert_eq!(inv["vms"][0]["snapshots"][0]["name"], "s1");
    op(&c, &["snapshot_revert", "--vm", "101", "--snapshot", "s1"]);
    let (first, cursor1) = poll(&c, &start);
    op(&c, &["snapshot_remove", "--vm", "101", "--snapshot", "s1"]);
    op(&c, &["suspend", "--vm", "101"]);
    op(&c, &["start", "--vm", "101"]);
    op(&c, &["reboot_guest", "--vm", "101"]);
    op(&c, &["stop", "--vm", "101"]);
    let cl = op(&c, &["clone", "--template", "9000", "--name", "miq-pve-1", "--cpus", "2", "--memory-mb", "1024"]);
    let new = cl["new_vm"].as_str().expect("new vm").to_string();
    op(&c, &["destroy", "--vm", &new]);
    let (second, cursor2) = poll(&c, &cursor1);
    let (none, _) = poll(&c, &cursor2);
    assert!(none.is_empty(), "{none:?}");

    let of = |evs: &[Value], vm: &str| -> Vec<String> {
        evs.iter().filter(|e| e["vm_ems_ref"] == vm).map(|e| e["event_type"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(of(&first, "101"), ["vm_powered_on", "snapshot_created", "snapshot_reverted"], "{first:#?}");
    let second101 = of(&second, "101");
    assert_eq!(
        second101,
        ["snapshot_removed", "vm_suspended", "vm_powered_on", "vm_powered_on", "vm_powered_off"],
        "{second:#?}"
    );
    assert!(of(&second, &new).contains(&"vm_deleted".to_string()), "{second:#?}");
    assert!(second.iter().any(|e| e["native_type"] == "qmclone" && e["event_type"] == "vm_created"));
    let all: Vec<Value> = first.iter().chain(second.iter()).cloned().collect();
    let ids: std::collections::BTreeSet<_> = all.iter().map(|e| e["ems_ref"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), all.len(), "no event twice");
    // Restart from a printed cursor in the middle: exactly the rest.
    // (Cursors themselves may differ: each carries the position of the poll that printed it.)
    let (rest, _) = poll(&c, all[2]["cursor"].as_str().unwrap());
    let refs = |evs: &[Value]| evs.iter().map(|e| e["ems_ref"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(refs(&rest), refs(&all[3..]));
    assert_eq!(all[0]["source"], "PROXMOX");
    assert_eq!(all[0]["host_ems_ref"], "pve1");

    // Metrics: fakepve's rrddata carries no points (it answers `[{}]`): an empty, valid answer.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let m = ok(&["metrics", "--vm", "100", "--start", &(now - 600).to_string()], &c);
    assert!(m.is_object());
    // (fakepve answers rrddata for any VMID on the configured node, so no not-found case here.)
    fails(&["metrics", "--vm", "100", "--start", "soon"], &c, 1, "invalid_input");
}

#[test]
fn wrong_credentials_exit_2_and_unreachable_exit_3() {
    let pve = FakePve::start();
    let m = fails(&["inventory"], &conn(&pve, "wrong-secret"), 2, "auth");
    assert!(!m.contains("wrong-secret"));
    fails(&["verify"], &conn(&pve, "wrong-secret"), 2, "auth");
    let closed = json!({"platform": "proxmox", "endpoint": {"hostname": "127.0.0.1", "port": 9},
                        "auth": {"userid": "root@pam", "token_name": "ci", "token_secret": "x"}})
    .to_string();
    fails(&["verify"], &closed, 3, "unreachable");
    fails(&["events"], &closed, 3, "unreachable");
}
