//! `polyvisor manageiq` against the sim driver (a database in a temp dir).

mod manageiq_common;

use manageiq_common::*;
use serde_json::{json, Value};

fn conn(db: &std::path::Path) -> String {
    json!({"platform": "sim", "options": {"sim_db": db.to_string_lossy(), "sim_task_ms": 0, "sim_boot_ms": 0}})
        .to_string()
}

#[test]
fn verify_inventory_full_and_targeted_and_persister() {
    let dir = polyvisor_test_support::temp::dir("miq-sim-inv");
    let c = conn(&dir.path().join("sim.db"));
    let v = ok(&["verify"], &c);
    assert_eq!(v["ok"], true);
    assert_eq!(v["capabilities"]["native_events"], true);

    let inv = ok(&["inventory"], &c);
    assert_eq!(inv["schema"], 1);
    assert_eq!(inv["platform"], "sim");
    let vms = inv["vms"].as_array().unwrap();
    assert!(vms.len() >= 4, "{inv}");
    for vm in vms {
        for k in ["ems_ref", "uid_ems", "name", "location", "vendor", "raw_power_state", "power", "host", "cluster"] {
            assert!(vm[k].is_string(), "{k} missing in {vm}");
        }
        assert_eq!(vm["vendor"], "unknown");
        if vm["template"] == true {
            assert_eq!(vm["raw_power_state"], "never");
            assert_eq!(vm["power"], "template");
        }
    }
    let tpl = vms.iter().find(|v| v["ems_ref"] == "9000").unwrap();
    assert!(tpl["snapshots"].as_array().unwrap().iter().any(|s| s["name"] == "RAS_TEMPLATE_VERSION_1"));
    let running = vms.iter().find(|v| v["ems_ref"] == "101").unwrap();
    assert_eq!(running["power"], "running");
    assert!(running["hardware"]["memory_mb"].as_u64().unwrap() > 0);
    assert!(running["networks"][0]["ipaddress"].is_string(), "{running}");
    assert_eq!(inv["hosts"][0]["ems_ref"], running["host"]);
    assert_eq!(inv["clusters"][0]["ems_ref"], running["cluster"]);

    // Targeted: only the VM, with its host and cluster; a missing id is simply absent.
    let t = ok(&["inventory", "--vm", "101", "--vm", "4242"], &c);
    assert_eq!(t["vms"].as_array().unwrap().len(), 1);
    assert_eq!(t["vms"][0], *running);
    assert_eq!(t["hosts"], inv["hosts"]);
    assert_eq!(t["clusters"], inv["clusters"]);

    // Persister: the InventoryRefresh serialisation with lazy links.
    let p = ok(&["inventory", "--format", "persister", "--name", "Polyvisor"], &c);
    assert_eq!(p["class"], "ManageIQ::Providers::Polyvisor::Inventory::Persister::InfraManager");
    let coll = |n: &str| p["collections"].as_array().unwrap().iter().find(|c| c["name"] == n).unwrap().clone();
    let pvms = coll("vms_and_templates");
    assert_eq!(pvms["data"].as_array().unwrap().len(), vms.len());
    let one = pvms["data"].as_array().unwrap().iter().find(|v| v["ems_ref"] == "101").unwrap();
    assert_eq!(one["type"], "ManageIQ::Providers::Polyvisor::InfraManager::Vm");
    assert_eq!(one["host"]["inventory_collection_name"], "hosts");
    assert_eq!(one["host"]["reference"]["ems_ref"], running["host"]);
    assert_eq!(coll("hardwares")["data"].as_array().unwrap().len(), vms.len());
    let pt = ok(&["inventory", "--format", "persister", "--vm", "101"], &c);
    assert_eq!(coll_of(&pt, "vms_and_templates")["manager_uuids"], json!([{"ems_ref": "101"}]));
}

fn coll_of(p: &Value, n: &str) -> Value {
    p["collections"].as_array().unwrap().iter().find(|c| c["name"] == n).unwrap().clone()
}

#[test]
fn ops_and_an_event_stream_that_survives_a_restart() {
    let dir = polyvisor_test_support::temp::dir("miq-sim-ops");
    let c = conn(&dir.path().join("sim.db"));
    let start = start_cursor(&c);

    let cl = op(&c, &["clone", "--template", "9000", "--name", "miq-1", "--cpus", "3", "--memory-mb", "1536"]);
    let id = cl["new_vm"].as_str().expect("new vm id").to_string();
    let inv = ok(&["inventory", "--vm", &id], &c);
    assert_eq!(inv["vms"][0]["hardware"]["cpu_total_cores"], 3);
    assert_eq!(inv["vms"][0]["hardware"]["memory_mb"], 1536);
    assert_eq!(inv["vms"][0]["power"], "running", "clone starts the VM");
    // Same name again: the earlier clone is adopted, not duplicated.
    let again = op(&c, &["clone", "--template", "9000", "--name", "miq-1"]);
    assert_eq!(again["new_vm"], cl["new_vm"]);

    // First half of the operations, then the stream is read once and "restarted".
    op(&c, &["suspend", "--vm", &id]);
    op(&c, &["start", "--vm", &id]);
    op(&c, &["stop", "--vm", &id]);
    let (first, cursor1) = poll(&c, &start);
    op(&c, &["snapshot_create", "--vm", &id, "--snapshot", "s1", "--description", "before"]);
    op(&c, &["snapshot_revert", "--vm", &id, "--snapshot", "s1"]);
    op(&c, &["snapshot_remove", "--vm", &id, "--snapshot", "s1"]);
    op(&c, &["start", "--vm", &id]);
    op(&c, &["reboot_guest", "--vm", &id]);
    op(&c, &["shutdown_guest", "--vm", &id]);
    op(&c, &["destroy", "--vm", &id]);
    let (second, cursor2) = poll(&c, &cursor1);
    let (none, cursor3) = poll(&c, &cursor2);
    assert!(none.is_empty());
    assert_eq!(cursor3, cursor2);

    let mine = |evs: &[Value]| -> Vec<String> {
        evs.iter().filter(|e| e["vm_ems_ref"] == id).map(|e| e["event_type"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(mine(&first), ["vm_created", "vm_powered_on", "vm_suspended", "vm_powered_on", "vm_powered_off"]);
    // (With zero task/boot times a reboot never leaves "powered_on": the sim logs no change.)
    assert_eq!(
        mine(&second),
        ["snapshot_created", "snapshot_reverted", "snapshot_removed", "vm_powered_on", "vm_powered_off", "vm_deleted"]
    );
    // A restart from any printed cursor yields exactly what followed it.
    let all: Vec<Value> = first.iter().chain(second.iter()).cloned().collect();
    let mid = all[3]["cursor"].as_str().unwrap();
    let (rest, _) = poll(&c, mid);
    assert_eq!(rest, all[4..]);
    let e = &second[0];
    assert_eq!(e["source"], "SIM");
    assert_eq!(e["snapshot"], "s1");
    assert!(e["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(e["host_ems_ref"], "sim1");
}

#[test]
fn follow_streams_ndjson_until_killed() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    let dir = polyvisor_test_support::temp::dir("miq-sim-follow");
    let c = conn(&dir.path().join("sim.db"));
    let start = start_cursor(&c);
    let mut child = Command::new(BIN)
        .args(["manageiq", "events", "--follow", "--poll", "1", "--since", &start])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(c.as_bytes()).unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["cursor"], start.as_str());
    op(&c, &["stop", "--vm", "101"]);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let line = rx.recv_timeout(std::time::Duration::from_secs(30)).expect("an event within 30 s");
    let ev: Value = serde_json::from_str(&line).unwrap();
    assert_eq!((ev["event_type"].as_str(), ev["vm_ems_ref"].as_str()), (Some("vm_powered_off"), Some("101")));
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn metrics_are_keyed_by_aligned_timestamps() {
    let dir = polyvisor_test_support::temp::dir("miq-sim-metrics");
    let c = conn(&dir.path().join("sim.db"));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    // Seeded guests are created "now": wait until there is a 20 s boundary after creation.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let v = ok(&["metrics", "--vm", "101", "--start", &(now - 600).to_string(), "--end", &(now + 45).to_string()], &c);
    let m = v.as_object().unwrap();
    for (ts, s) in m {
        let t = humantime_secs(ts);
        assert_eq!(t % 20, 0, "{ts}");
        for k in [
            "cpu_usage_rate_average",
            "mem_usage_absolute_average",
            "disk_usage_rate_average",
            "net_usage_rate_average",
        ] {
            assert!(s[k].is_number(), "{k} in {s}");
        }
    }
    fails(&["metrics", "--vm", "101", "--start", "yesterday"], &c, 1, "invalid_input");
    fails(&["metrics", "--vm", "4242", "--start", &(now - 60).to_string()], &c, 1, "not_found");
}

fn humantime_secs(ts: &str) -> u64 {
    // "YYYY-MM-DDTHH:MM:SSZ": only the seconds field matters for alignment, plus minutes.
    let sec: u64 = ts[17..19].parse().unwrap();
    let min: u64 = ts[14..16].parse().unwrap();
    min * 60 + sec
}

#[test]
fn bad_input_is_a_json_error_with_exit_1() {
    fails(&["inventory"], "", 1, "invalid_input");
    fails(&["inventory"], "{not json", 1, "invalid_input");
    fails(&["inventory"], r#"{"platform":"sim","surprise":1}"#, 1, "invalid_input");
    let m = fails(&["verify"], r#"{"platform":"nosuchdriver","auth":{"password":"hunter2"}}"#, 1, "invalid_input");
    assert!(!m.contains("hunter2"));
    let dir = polyvisor_test_support::temp::dir("miq-sim-bad");
    let c = conn(&dir.path().join("sim.db"));
    fails(&["op", "start"], &c, 1, "invalid_input");
    fails(&["op", "start", "--vm", "4242"], &c, 1, "not_found");
    fails(&["events", "--since", "pvev1:pve:e30"], &c, 1, "invalid_input");
}
