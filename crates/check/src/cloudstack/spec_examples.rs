//! The harness's payloads compared with the realistic examples of spec §9 (kept as JSON
//! fixtures): every member the management server sends must be there, shaped alike.

use super::payload::{Env, Phase, Vm};
use serde_json::{json, Value};

fn example(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/cloudstack/spec-9/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_slice(&std::fs::read(&path).expect("fixture exists")).expect("fixture is JSON")
}

fn env() -> Env {
    let mut e = Env { cpus: 2, memory_mib: 2048, ..Default::default() };
    for (k, v) in [("url", "10.0.0.10"), ("user", "root@pam"), ("token", "cloudstack"), ("secret", "x")] {
        e.extension.insert(k.into(), v.into());
    }
    for (k, v) in [("node", "pve1"), ("network_bridge", "vmbr1"), ("verify_tls_certificate", "false")] {
        e.host.insert(k.into(), v.into());
    }
    for (k, v) in [("template_type", "template"), ("template_id", "101"), ("vm_name", "web01")] {
        e.template.insert(k.into(), v.into());
    }
    e
}

/// Every key of `spec` (recursively through objects and the first array element) exists
/// in `ours` with the same JSON type; `skip` names keys that are provider-supplied.
fn assert_covers(spec: &Value, ours: &Value, path: &str, skip: &[&str]) {
    match (spec, ours) {
        (Value::Object(s), Value::Object(o)) => {
            for (k, sv) in s {
                if skip.contains(&k.as_str()) {
                    continue;
                }
                let ov = o.get(k).unwrap_or_else(|| panic!("{path}.{k} missing from the harness payload"));
                assert_covers(sv, ov, &format!("{path}.{k}"), skip);
            }
        }
        (Value::Array(s), Value::Array(o)) => {
            if let (Some(s0), Some(o0)) = (s.first(), o.first()) {
                assert_covers(s0, o0, &format!("{path}[0]"), skip);
            }
            assert_eq!(s.is_empty(), o.is_empty(), "{path}: emptiness differs");
        }
        (s, o) => assert_eq!(std::mem::discriminant(s), std::mem::discriminant(o), "{path}: {s} vs {o}"),
    }
}

/// Keys whose presence depends on the provider (prepare output) or on the call.
const PROVIDER: &[&str] = &["proxmox_vmid", "cloudstack.vlan", "bootArgs", "minSpeed", "maxSpeed"];

#[test]
fn create_matches_spec_9_1() {
    let e = env();
    let vm = Vm::new(&e, 1234);
    let ours = vm.lifecycle_payload(&e, "create", Phase::Starting);
    assert_covers(&example("create"), &ours, "create", &["proxmox_vmid"]);
    assert_eq!(ours["externaldetails"]["virtualmachine"]["cloudstack.vlan"], "1234");
}

#[test]
fn stop_during_expunge_matches_spec_9_2() {
    let e = env();
    let mut vm = Vm::new(&e, 1);
    vm.mark_deployed();
    let ours = vm.lifecycle_payload(&e, "stop", Phase::Expunging);
    assert_covers(&example("stop"), &ours, "stop", PROVIDER);
    assert_eq!(ours["cloudstack.vm.details"]["nics"], json!([]));
    assert!(ours["cloudstack.vm.details"]["details"].get("deployvm").is_none());
}

#[test]
fn status_matches_spec_9_3() {
    let e = env();
    let ours = Vm::new(&e, 1).lifecycle_payload(&e, "status", Phase::Other("Running"));
    assert_covers(&example("status"), &ours, "status", PROVIDER);
    assert!(ours.get("caller").is_none(), "ping-driven status has no caller");
}

#[test]
fn getconsole_matches_spec_9_4() {
    let e = env();
    let ours = Vm::new(&e, 1).lifecycle_payload(&e, "getconsole", Phase::Other("Running"));
    assert_covers(&example("getconsole"), &ours, "getconsole", PROVIDER);
}

#[test]
fn custom_action_matches_spec_9_5() {
    let e = env();
    let params = json!({"snap_name": "before-upgrade", "snap_save_memory": true});
    let ours = Vm::new(&e, 1).custom_payload(&e, "CreateSnapshot", "Running", Some(params));
    let spec = example("CreateSnapshot");
    assert_covers(&spec, &ours, "CreateSnapshot", PROVIDER);
    assert_eq!(ours["parameters"], spec["parameters"], "typed parameters: boolean stays a JSON boolean");
    assert!(ours["externaldetails"].get("action").is_none(), "no action details → omitted");
}
