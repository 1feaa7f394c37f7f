//! `polyvisor manageiq` against real libvirtd + QEMU (feature `libvirt`; needs
//! scripts/ci/start-libvirt.sh): verify, targeted inventory, power and snapshot operations,
//! the core poll-and-diff events surviving a restart with their cursor, `events --follow`
//! woken by libvirt domain lifecycle events (long before its poll interval), and realtime
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
    assert_eq!(v["capabilities"]["native_events"], false, "libvirt events come from the core diff");
    assert_eq!(v["capabilities"]["event_wakeup"], true, "libvirt domain events wake a following stream");
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
    follow_wakes_on_domain_events(uuid);
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
/// `events --follow --poll 600`: a start of the (stopped) guest reaches the stream long before
/// its next poll, because libvirt's domain lifecycle event wakes it; the event is the
/// diff's, with a cursor like any other.
fn follow_wakes_on_domain_events(uuid: &str) {
    use std::io::{BufRead, Write};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let mut child = Command::new(BIN)
        .args(["manageiq", "events", "--follow", "--poll", "600"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run polyvisor");
    child.stdin.take().unwrap().write_all(CONN.as_bytes()).unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(stdout).lines().map_while(|l| l.ok()) {
            if tx.send(serde_json::from_str(&l).unwrap_or(Value::Null)).is_err() {
                return;
            }
        }
    });
    let outcome = (|| -> Result<Duration, String> {
        let first = rx.recv_timeout(Duration::from_secs(120)).map_err(|e| format!("no first line: {e}"))?;
        if first["cursor"].as_str().is_none() {
            return Err(format!("the first line is the starting cursor: {first}"));
        }
        let t0 = Instant::now();
        op(CONN, &["start", "--vm", uuid]);
        loop {
            let left = Duration::from_secs(120).saturating_sub(t0.elapsed());
            let l = rx.recv_timeout(left).map_err(|_| "no vm_powered_on line within 120 s of the start".to_string())?;
            if l["vm_ems_ref"] == uuid && l["event_type"] == "vm_powered_on" {
                if l["cursor"].as_str().is_none() {
                    return Err(format!("the event carries its cursor: {l}"));
                }
                return Ok(t0.elapsed());
            }
        }
    })();
    let _ = child.kill();
    let _ = child.wait();
    let took = outcome.unwrap_or_else(|e| panic!("events --follow on libvirt: {e}"));
    eprintln!("events --follow --poll 600: vm_powered_on {took:?} after the start began");
    assert!(took < Duration::from_secs(120), "woken by the domain event, not the 600 s poll");
}

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
