//! `polyvisor manageiq` against real libvirtd + QEMU (feature `libvirt`; needs
//! scripts/ci/start-libvirt.sh): verify, targeted inventory, power and snapshot operations,
//! and the core poll-and-diff event fallback surviving a restart with its cursor.
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
    fails(&["metrics", "--vm", uuid, "--start", "0"], CONN, 1, "unsupported");
}
