//! `polyvisor manageiq` against real libvirtd + QEMU (feature `libvirt`; needs
//! scripts/ci/start-libvirt.sh): verify, targeted inventory, power and snapshot operations,
//! the core poll-and-diff event fallback surviving a restart with its cursor, and realtime
//! metrics from domain counters.
#![cfg(feature = "libvirt")]

mod manageiq_common;

use manageiq_common::*;
use polyvisor_test_support::tiny::{self, TinyGuest};
use serde_json::{json, Value};

const CONN: &str =
    r#"{"platform":"libvirt","options":{"uri":"qemu:///system","pool":"polyvisor","shutdown_timeout_secs":"10"}}"#;

#[test]
fn libvirt_inventory_ops_and_diff_events() {
    let name = format!("pvmiq-{}", std::process::id());
    let uuid = TinyGuest::from_env().require().define_copy(&name).unwrap_or_else(|e| panic!("define {name}: {e}"));
    let result = std::panic::catch_unwind(|| run(&uuid));
    let _ = miq(&["op", "stop", "--vm", &uuid, "--wait"], CONN);
    tiny::remove_copy(&name, &uuid, &TinyGuest::from_env().pool_dir);
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

fn run(uuid: &str) {
    let v = ok(&["verify"], CONN);
    assert_eq!(v["capabilities"]["native_events"], false, "libvirt uses the core diff fallback");
    assert_eq!(v["capabilities"]["metrics"], true);
    let start = start_cursor(CONN);
    let inv = ok(&["inventory", "--vm", uuid], CONN);
    let vm = &inv["vms"][0];
    assert_eq!(vm["ems_ref"], uuid);
    assert_eq!(vm["uid_ems"], uuid);
    assert_eq!(vm["vendor"], "unknown");
    assert_eq!(vm["power"], "stopped");
    assert!(vm["hardware"]["memory_mb"].as_u64().unwrap() > 0);
    assert_eq!(inv["hosts"].as_array().unwrap().len(), 1);

    op(CONN, &["start", "--vm", uuid]);
    metrics(uuid);
    let (first, cursor1) = poll(CONN, &start);
    op(CONN, &["stop", "--vm", uuid]);
    op(CONN, &["snapshot_create", "--vm", uuid, "--snapshot", "miq1"]);
    let inv = ok(&["inventory", "--vm", uuid], CONN);
    assert_eq!(inv["vms"][0]["snapshots"][0]["name"], "miq1");
    op(CONN, &["snapshot_revert", "--vm", uuid, "--snapshot", "miq1"]);
    let (second, cursor2) = poll(CONN, &cursor1);
    op(CONN, &["snapshot_remove", "--vm", uuid, "--snapshot", "miq1"]);
    let (third, _) = poll(CONN, &cursor2);
    let mine = |evs: &[Value]| -> Vec<(String, Value)> {
        evs.iter()
            .filter(|e| e["vm_ems_ref"] == uuid)
            .map(|e| (e["event_type"].as_str().unwrap().to_string(), e["snapshot"].clone()))
            .collect()
    };
    assert_eq!(mine(&first), [("vm_powered_on".to_string(), Value::Null)], "{first:#?}");
    assert_eq!(
        mine(&second),
        [("snapshot_created".to_string(), json!("miq1")), ("vm_powered_off".to_string(), Value::Null)],
        "{second:#?}"
    );
    assert_eq!(mine(&third), [("snapshot_removed".to_string(), json!("miq1"))], "{third:#?}");
    // Restart from the cursor of the first event of the second poll: the rest of that poll
    // plus the third, none of the first again (a diff reports one guest's changes in a fixed
    // order: snapshots before power).
    let idx = second.iter().position(|e| e["vm_ems_ref"] == uuid).unwrap();
    let (rest, _) = poll(CONN, second[idx]["cursor"].as_str().unwrap());
    assert_eq!(
        mine(&rest),
        [("snapshot_removed".to_string(), json!("miq1")), ("vm_powered_off".to_string(), Value::Null)],
        "{rest:#?}"
    );
    fails(&["op", "start", "--vm", "00000000-0000-0000-0000-000000000000"], CONN, 1, "not_found");
    let an_hour_ago = (unix_now() - 3600).to_string();
    fails(&["metrics", "--vm", "00000000-0000-0000-0000-000000000000", "--start", &an_hour_ago], CONN, 1, "not_found");
}

/// One realtime sample of the running guest, timestamped now; nothing for a past window or hourly.
fn metrics(uuid: &str) {
    let now = unix_now();
    let start = (now - 600).to_string();
    let m = ok(&["metrics", "--vm", uuid, "--start", &start], CONN);
    let samples = m.as_object().unwrap();
    eprintln!("libvirt metrics sample: {m}");
    assert_eq!(samples.len(), 1, "{m:#}");
    let (at, s) = samples.iter().next().unwrap();
    let at = unix_of(at);
    assert!(at + 60 >= now && at <= now + 60, "timestamped now: {at} vs {now}");
    let cpu = s["cpu_usage_rate_average"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&cpu), "{m:#}");
    let mem = s["mem_usage_absolute_average"].as_f64().unwrap();
    assert!(mem > 0.0 && mem <= 100.0, "{m:#}");
    assert!(s["disk_usage_rate_average"].as_f64().unwrap() >= 0.0, "{m:#}");
    assert!(s["net_usage_rate_average"].as_f64().unwrap() >= 0.0, "{m:#}");
    let past =
        ok(&["metrics", "--vm", uuid, "--start", &(now - 7200).to_string(), "--end", &(now - 3600).to_string()], CONN);
    assert_eq!(past, json!({}), "libvirt keeps no history");
    let hourly = ok(&["metrics", "--vm", uuid, "--start", &start, "--interval", "hourly"], CONN);
    assert_eq!(hourly, json!({}));
}

/// Unix seconds of a `YYYY-MM-DDTHH:MM:SSZ` timestamp (days-from-civil; no date crate needed).
fn unix_of(ts: &str) -> u64 {
    let n = |r: std::ops::Range<usize>| ts[r].parse::<i64>().unwrap_or_else(|_| panic!("timestamp {ts}"));
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    (days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19)) as u64
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}
