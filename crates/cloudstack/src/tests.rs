//! Whole-invocation tests over the spec §9 payloads (`tests/fixtures/`) against the
//! shared in-process fake driver (`polyvisor-test-support`).

use crate::invoke::answer;
use crate::output::Reply;
use crate::payload::Payload;
use polyvisor_core::{DriverFactory, PowerState};
use polyvisor_test_support::fake::{create_caps, keyed_guest as guest, Fake, FakeFactory};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECRET_PREFIX: &str = "6f3c2d9e-0b1a-4c5d";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn fixture_json(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(fixture(name)).unwrap()).unwrap()
}

struct Run {
    dir: tempfile::TempDir,
    factory: Arc<FakeFactory>,
    fake: Arc<Fake>,
    config: Option<PathBuf>,
}

impl Run {
    /// Two templates (`100`, `101`), no VMs.
    fn new() -> Self {
        let factory = FakeFactory::empty(create_caps());
        let fake = factory.fake.clone();
        fake.insert(guest("100", "tpl", None, PowerState::PoweredOff, true));
        fake.insert(guest("101", "debian-tpl", None, PowerState::PoweredOff, true));
        Run { dir: tempfile::tempdir().unwrap(), factory, fake, config: None }
    }

    /// Runs `action` with a payload (a fixture name or a JSON value) and returns the
    /// rendered output as JSON and the exit status.
    fn call(&self, action: &str, payload: &Value, timeout: &str) -> (Value, bool) {
        let path = self.dir.path().join("payload.json");
        std::fs::write(&path, payload.to_string()).unwrap();
        self.call_path(action, &path, timeout)
    }

    fn call_path(&self, action: &str, path: &Path, timeout: &str) -> (Value, bool) {
        let argv = vec![action.to_string(), path.display().to_string(), timeout.to_string()];
        let factory: Arc<dyn DriverFactory> = self.factory.clone();
        let reply: Reply = answer(&argv, self.config.as_deref(), factory);
        let (text, ok) = reply.rendered();
        assert!(text.ends_with('\n') && text.matches('\n').count() == 1, "one line: {text}");
        assert!(!text.contains(SECRET_PREFIX), "secret leaked: {text}");
        (serde_json::from_str(text.trim()).unwrap(), ok)
    }
}

#[test]
fn spec_payloads_parse_with_gson_escapes() {
    let bytes = std::fs::read(fixture("spec_9_create.json")).unwrap();
    let p = Payload::parse(&bytes).unwrap();
    assert_eq!(p.internal_name().as_deref(), Some("i-2-45-VM"));
    assert_eq!(p.vm_uuid().as_deref(), Some("126f4562-1f0f-4313-875e-6150cabeb72f"));
    assert_eq!(p.cpus().unwrap(), Some(2));
    assert_eq!(p.memory_mb().unwrap(), Some(2048));
    let nics = p.nics(Some("vmbr1")).unwrap();
    assert_eq!(nics.len(), 1);
    assert_eq!(nics[0].mac.as_deref(), Some("02:01:00:CD:00:02"));
    assert_eq!(nics[0].vlan, Some(1234));
    assert_eq!(nics[0].network.as_deref(), Some("vmbr1"));
    let s = crate::config::merged(&Default::default(), &p);
    // `\u003d\u003d` in the file is `==` in the secret.
    assert_eq!(s.str("secret").as_deref(), Some("6f3c2d9e-0b1a-4c5d-8e7f-112233445566=="));
    assert_eq!(s.str("node").as_deref(), Some("pve1"));
    assert_eq!(s.str("template_id").as_deref(), Some("101"));
    assert_eq!(s.str("cloudstack.vlan").as_deref(), Some("1234"));
    for f in ["spec_9_stop.json", "spec_9_status.json", "spec_9_getconsole.json", "spec_9_createsnapshot.json"] {
        let p = Payload::parse(&std::fs::read(fixture(f)).unwrap()).unwrap();
        assert_eq!(p.internal_name().as_deref(), Some("i-2-45-VM"), "{f}");
        assert!(p.nics(None).unwrap().is_empty(), "{f}: no NICs outside create");
    }
    let p = Payload::parse(&std::fs::read(fixture("spec_9_createsnapshot.json")).unwrap()).unwrap();
    assert_eq!(p.parameters().unwrap()["snap_save_memory"], json!(true));
}

#[test]
fn bad_payloads_are_structured_errors() {
    let r = Run::new();
    let (v, ok) = r.call_path("status", &r.dir.path().join("absent.json"), "5");
    assert!(!ok);
    assert_eq!(v, json!({"status":"error","error":"File not found or unreadable"}));
    let bad = r.dir.path().join("bad.json");
    std::fs::write(&bad, "{\"externaldetails\": {\"secret\": \"6f3c2d9e-0b1a-4c5d").unwrap();
    let (v, ok) = r.call_path("status", &bad, "5");
    assert!(!ok);
    assert!(v["error"].as_str().unwrap().starts_with("Invalid JSON in payload file"), "{v}");
    std::fs::write(&bad, "[]").unwrap();
    assert!(!r.call_path("status", &bad, "5").1);
    let (v, ok) = r.call("status", &json!({}), "5");
    assert!(!ok);
    assert!(v["error"].as_str().unwrap().contains("virtualmachinename"));
    // Missing arguments entirely.
    let factory: Arc<dyn DriverFactory> = r.factory.clone();
    let reply = answer(&["status".to_string()], None, factory);
    assert!(!reply.ok);
    assert_eq!(reply.body["error"], "Missing required arguments");
}

#[test]
fn java_commands_and_unknown_actions_never_touch_the_backend() {
    let r = Run::new();
    let t = Instant::now();
    let (v, ok) = r.call_path("com.cloud.agent.api.ModifyStoragePoolCommand", &fixture("spec_9_fqcn.json"), "5");
    assert!(!ok);
    assert_eq!(v, json!({"status":"error","error":"unsupported command com.cloud.agent.api.ModifyStoragePoolCommand"}));
    let (v, ok) =
        r.call_path("org.apache.cloudstack.storage.command.CopyCommand", &r.dir.path().join("none.json"), "5");
    assert!(!ok);
    assert_eq!(v["error"], "unsupported command org.apache.cloudstack.storage.command.CopyCommand");
    let (v, ok) = r.call("deploy", &fixture_json("spec_9_create.json"), "1800");
    assert!(!ok);
    assert_eq!(v, json!({"status":"error","error":"Invalid action"}));
    assert!(t.elapsed() < Duration::from_secs(1));
    assert_eq!(r.fake.calls.load(Ordering::SeqCst), 0);
    assert!(r.factory.opened.lock().unwrap().is_empty(), "driver never opened");
}

#[test]
fn full_lifecycle_on_spec_payloads() {
    let r = Run::new();
    let create = fixture_json("spec_9_create.json");
    let (v, ok) = r.call("prepare", &create, "1800");
    assert!(ok, "{v}");
    assert_eq!(v, json!({"details":{"External:polyvisor_key":"i-2-45-VM"}}));

    let (v, ok) = r.call("create", &create, "1800");
    assert!(ok, "{v}");
    assert_eq!(v, json!({"status":"success","message":"Instance created"}));
    let vms = r.fake.vms();
    assert_eq!(vms.len(), 1);
    assert_eq!(vms[0].name, "web01");
    assert_eq!(vms[0].key.as_deref(), Some("i-2-45-VM"));
    assert_eq!(vms[0].power, PowerState::PoweredOn);
    let spec = r.fake.state().last_create.clone().unwrap();
    assert_eq!((spec.cpus, spec.memory_mb), (Some(2), Some(2048)));
    assert_eq!(spec.nics[0].vlan, Some(1234));
    assert!(matches!(&spec.source, polyvisor_core::CreateSource::Template { id, full: false } if id.as_str() == "101"));

    assert!(r.fake.state().power.is_empty(), "one owner: the driver's create powers on, the front does not");
    // Retried create converges instead of duplicating; retried prepare reports the id.
    assert!(r.call("create", &create, "1800").1);
    assert!(r.fake.state().power.is_empty(), "a retried create goes through the driver, no extra power-on");
    assert_eq!(r.fake.vms().len(), 1);
    let (v, _) = r.call("prepare", &create, "1800");
    assert_eq!(v["details"]["External:polyvisor_vm_id"], json!(vms[0].id.as_str()));

    let status = fixture_json("spec_9_status.json");
    assert_eq!(r.call("status", &status, "1800"), (json!({"status":"success","power_state":"poweron"}), true));
    let stop = fixture_json("spec_9_stop.json");
    assert_eq!(r.call("stop", &stop, "1800"), (json!({"status":"success","message":"Instance stopped"}), true));
    assert!(r.call("stop", &stop, "1800").1);
    assert_eq!(r.call("status", &status, "1800").0["power_state"], "poweroff");
    assert_eq!(r.call("START", &create, "1800").0["message"], "Instance started");
    assert_eq!(r.call("reboot", &create, "1800").0["message"], "Instance rebooted");

    let (v, ok) = r.call("getconsole", &fixture_json("spec_9_getconsole.json"), "1800");
    assert!(ok);
    assert_eq!(
        v["console"],
        json!({"host":"10.0.0.11","port":"5901","password":"PVEVNC:ticket","passwordonetimeuseonly":true,"protocol":"vnc"})
    );

    let (v, ok) = r.call("statuses", &json!({"externaldetails": create["externaldetails"]}), "1800");
    assert!(ok);
    assert_eq!(v["power_state"], json!({"i-2-45-VM":"poweron"}));

    assert_eq!(r.call("delete", &stop, "1800"), (json!({"status":"success","message":"Instance deleted"}), true));
    assert!(r.fake.vms().is_empty());
    assert!(r.call("delete", &stop, "1800").1, "delete of an absent VM succeeds");
    assert!(r.call("stop", &stop, "1800").1, "stop of an absent VM succeeds");
    assert_eq!(r.call("status", &status, "1800"), (json!({"status":"success","power_state":"poweroff"}), true));
    let (v, ok) = r.call("start", &create, "1800");
    assert!(!ok);
    assert!(v["error"].as_str().unwrap().contains("not found"));
}

#[test]
fn failed_create_leaves_nothing_and_reports_why() {
    let r = Run::new();
    r.fake.state().fail_create = true;
    let (v, ok) = r.call("create", &fixture_json("spec_9_create.json"), "1800");
    assert!(!ok);
    assert_eq!(v["error"], "Failed to create instance i-2-45-VM: disk full");
    assert!(r.fake.vms().is_empty());
    assert!(r.fake.state().deleted.is_empty(), "one owner: the driver cleans up its own failure, not the front");
    // Bad template: clear error, nothing made.
    r.fake.state().fail_create = false;
    let mut p = fixture_json("spec_9_create.json");
    p["externaldetails"]["virtualmachine"]["template_id"] = json!("999");
    let (v, ok) = r.call("create", &p, "1800");
    assert!(!ok);
    assert!(v["error"].as_str().unwrap().contains("template [999] not found"), "{v}");
    assert!(r.fake.vms().is_empty());
    // Missing template id / bad vm_name: input errors before any backend call.
    let calls = r.fake.calls.load(Ordering::SeqCst);
    let mut p = fixture_json("spec_9_create.json");
    p["externaldetails"]["virtualmachine"] = json!({"template_type": "iso"});
    p["cloudstack.vm.details"]["details"] = json!({});
    assert_eq!(r.call("prepare", &p, "1800").0["error"], "Missing required fields: iso_path");
    p["externaldetails"]["virtualmachine"] = json!({"vm_name": "bad name!", "template_id": "101"});
    assert!(r.call("prepare", &p, "1800").0["error"].as_str().unwrap().starts_with("vm_name must match"));
    assert_eq!(r.fake.calls.load(Ordering::SeqCst), calls);
}

#[test]
fn timeout_argument_is_honoured_with_cleanup() {
    let r = Run::new();
    r.fake.state().hang_tasks = true;
    let t = Instant::now();
    let (v, ok) = r.call("create", &fixture_json("spec_9_create.json"), "1");
    let took = t.elapsed();
    assert!(!ok, "{v}");
    assert!(took < Duration::from_millis(1000), "answered before the kill limit: {took:?}");
    assert!(took >= Duration::from_millis(500), "used its budget: {took:?}");
    assert!(v["error"].as_str().unwrap().starts_with("Failed to create instance i-2-45-VM"), "{v}");
    assert!(r.fake.vms().is_empty(), "half-made VM removed");
    assert_eq!(r.fake.state().deleted.len(), 1, "the front deleted its owned half-made VM once, at its deadline");
    let t = Instant::now();
    let (_, ok) = r.call("stop", &fixture_json("spec_9_stop.json"), "0.3");
    assert!(ok, "absent VM: no task to wait for");
    assert!(t.elapsed() < Duration::from_millis(300));
}

#[test]
fn snapshot_actions_with_typed_parameters() {
    let r = Run::new();
    assert!(r.call("create", &fixture_json("spec_9_create.json"), "1800").1);
    let snap = fixture_json("spec_9_createsnapshot.json");
    assert_eq!(
        r.call("CreateSnapshot", &snap, "60"),
        (json!({"status":"success","message":"Instance Snapshot created"}), true)
    );
    let mut list = snap.clone();
    list.as_object_mut().unwrap().remove("parameters");
    let (v, ok) = r.call("listsnapshots", &list, "60");
    assert!(ok);
    assert_eq!(
        v,
        json!({"status":"success","printmessage":"true","message":[{"name":"before-upgrade","snaptime":"2026-01-02 15:04:05","description":"","parent":"-","vmstate":"1"}]})
    );
    // Parameters as strings (hand-written or undeclared) work too.
    let mut s2 = snap.clone();
    s2["parameters"] = json!({"snap_name": "second", "snap_save_memory": "false", "snap_description": "a \u{3d} b"});
    assert!(r.call("createsnapshot", &s2, "60").1);
    s2["parameters"]["snap_save_memory"] = json!("perhaps");
    let (v, ok) = r.call("createsnapshot", &s2, "60");
    assert!(!ok);
    assert_eq!(v["error"], "Parameter snap_save_memory must be a boolean");
    let mut bad = snap.clone();
    bad["parameters"] = json!({});
    assert_eq!(r.call("CreateSnapshot", &bad, "60").0["error"], "Missing or empty required parameter: snap_name");

    let id = r.fake.vms()[0].id.clone();
    r.fake.state().guests.get_mut(id.as_str()).unwrap().power = PowerState::PoweredOn;
    assert_eq!(r.call("RestoreSnapshot", &snap, "60").0["message"], "Instance Snapshot restored");
    assert_eq!(r.fake.vms()[0].power, PowerState::PoweredOn, "restarted after rollback");
    let mut missing = snap.clone();
    missing["parameters"] = json!({"snap_name": "nope"});
    assert!(!r.call("RestoreSnapshot", &missing, "60").1);
    assert_eq!(r.call("DeleteSnapshot", &snap, "60").0["message"], "Instance Snapshot deleted");
    assert_eq!(r.call("Suspend", &list, "60").0["message"], "Instance suspended");
    assert_eq!(r.fake.vms()[0].power, PowerState::Suspended);
    assert_eq!(r.call("Resume", &list, "60").0["message"], "Instance resumed");
}

#[test]
fn config_file_is_the_lowest_priority() {
    let mut r = Run::new();
    let cfg = r.dir.path().join("polyvisor.json");
    std::fs::write(&cfg, r#"{"driver":"fake","node":"from-file","storage":"local-zfs"}"#).unwrap();
    r.config = Some(cfg);
    assert!(r.call("status", &fixture_json("spec_9_status.json"), "5").1);
    let s = r.factory.last_opened().unwrap();
    assert_eq!(s.str("driver").as_deref(), Some("fake"));
    assert_eq!(s.str("node").as_deref(), Some("pve1"), "host detail beats the file");
    assert_eq!(s.str("storage").as_deref(), Some("local-zfs"));
    r.config = Some(r.dir.path().join("missing.json"));
    let (v, ok) = r.call("status", &fixture_json("spec_9_status.json"), "5");
    assert!(!ok);
    assert!(v["error"].as_str().unwrap().contains("not found or unreadable"));
}

/// A foreign (keyless) guest named like the VM's `vm_name`, at the id CloudStack kept as
/// `proxmox_vmid` (103): what the built-in script or an operator made, not polyvisor.
fn with_foreign_web01() -> Run {
    let r = Run::new();
    r.fake.insert(guest("103", "web01", None, PowerState::PoweredOn, false));
    r
}

fn foreign(r: &Run) -> polyvisor_core::Guest {
    r.fake.state().guests.get("103").cloned().expect("the foreign guest still exists")
}

#[test]
fn foreign_guests_are_never_resolved_by_name_or_remembered_id() {
    let r = with_foreign_web01();
    let status = fixture_json("spec_9_status.json");
    let stop = fixture_json("spec_9_stop.json");
    // Regression: status/stop/delete used to fall back to the keyless guest named `vm_name`
    // or found at `proxmox_vmid`, and stop/delete acted on it.
    assert_eq!(r.call("status", &status, "5"), (json!({"status":"success","power_state":"poweroff"}), true));
    assert!(r.call("stop", &stop, "5").1, "stop of a VM we do not own succeeds without touching anything");
    assert_eq!(foreign(&r).power, PowerState::PoweredOn, "the foreign guest was stopped");
    assert!(r.call("delete", &stop, "5").1);
    assert_eq!(foreign(&r).key, None);
    for action in ["start", "reboot", "getconsole", "ListSnapshots", "Suspend"] {
        let (v, ok) = r.call(action, &status, "5");
        assert!(!ok, "{action} on a VM we do not own must fail: {v}");
        assert!(v["error"].as_str().unwrap().contains("ownership key"), "{action}: {v}");
    }
    let mut snap = fixture_json("spec_9_createsnapshot.json");
    snap["cloudstack.vm.details"]["details"]["proxmox_vmid"] = json!("103");
    assert!(!r.call("CreateSnapshot", &snap, "5").1);
    assert!(r.fake.state().snaps.is_empty());
    assert_eq!(foreign(&r).power, PowerState::PoweredOn);
    // A guest carrying another VM's key is not ours either, even at the remembered id.
    r.fake.state().guests.get_mut("103").unwrap().key = Some("i-9-99-VM".into());
    assert_eq!(r.call("status", &status, "5").0["power_state"], "poweroff");
    assert!(!r.call("start", &status, "5").1);
    // statuses never reports guests without our key.
    r.fake.state().guests.get_mut("103").unwrap().key = None;
    let (v, ok) = r.call("statuses", &json!({}), "5");
    assert!(ok);
    assert_eq!(v["power_state"], json!({}));
}

#[test]
fn create_into_a_foreign_vm_of_that_name_fails_before_anything_is_made() {
    let r = with_foreign_web01();
    let create = fixture_json("spec_9_create.json");
    for action in ["prepare", "create"] {
        let (v, ok) = r.call(action, &create, "60");
        assert!(!ok, "{action}: {v}");
        let msg = v["error"].as_str().unwrap();
        assert!(msg.contains("a VM named web01 already exists") && msg.contains("[103]"), "{msg}");
        assert!(msg.contains("import_existing_vms"), "{msg}");
    }
    assert!(r.fake.state().last_create.is_none(), "create_guest was never called");
    assert_eq!(r.fake.vms().len(), 1);
    let g = foreign(&r);
    assert_eq!((g.key, g.power), (None, PowerState::PoweredOn));
}

#[test]
fn import_existing_vms_is_an_explicit_opt_in() {
    let mut r = with_foreign_web01();
    let cfg = r.dir.path().join("polyvisor.json");
    std::fs::write(&cfg, r#"{"driver":"fake","import_existing_vms":true}"#).unwrap();
    r.config = Some(cfg);
    // Status stays read-only: it does not adopt.
    assert_eq!(r.call("status", &fixture_json("spec_9_status.json"), "5").0["power_state"], "poweroff");
    assert_eq!(foreign(&r).key, None);
    // prepare adopts the keyless guest named like vm_name by writing our key first …
    let (v, ok) = r.call("prepare", &fixture_json("spec_9_create.json"), "60");
    assert!(ok, "{v}");
    assert_eq!(v["details"]["External:polyvisor_vm_id"], "103");
    assert_eq!(foreign(&r).key.as_deref(), Some("i-2-45-VM"));
    // … and from then on it is ours: create converges it, stop stops it.
    assert!(r.call("create", &fixture_json("spec_9_create.json"), "60").1);
    assert_eq!(r.fake.vms().len(), 1);
    assert!(r.call("stop", &fixture_json("spec_9_stop.json"), "5").1);
    assert_eq!(foreign(&r).power, PowerState::PoweredOff);
    // Two keyless guests of that name: ambiguous, nothing adopted.
    let r2 = with_foreign_web01();
    r2.fake.insert(guest("104", "web01", None, PowerState::PoweredOn, false));
    let mut p = fixture_json("spec_9_stop.json");
    p["externaldetails"]["virtualmachine"]["import_existing_vms"] = json!("true");
    p["cloudstack.vm.details"]["details"] = json!({});
    let (v, ok) = r2.call("start", &p, "5");
    assert!(!ok);
    assert!(v["error"].as_str().unwrap().contains("2 guests are named web01"), "{v}");
}

#[test]
fn retried_create_always_goes_through_the_driver() {
    let r = Run::new();
    let create = fixture_json("spec_9_create.json");
    assert!(r.call("create", &create, "60").1);
    let id = r.fake.vms()[0].id.clone();
    // A half-made guest (stopped, template sizing): the retry converges it in the driver.
    {
        let mut st = r.fake.state();
        let g = st.guests.get_mut(id.as_str()).unwrap();
        g.power = PowerState::PoweredOff;
        g.cpus = Some(1);
        st.last_create = None;
    }
    let calls = r.fake.calls.load(Ordering::SeqCst);
    assert!(r.call("create", &create, "60").1);
    assert!(r.fake.state().last_create.is_some(), "create_guest called again");
    let vms = r.fake.vms();
    assert_eq!(vms.len(), 1);
    assert_eq!((vms[0].cpus, vms[0].power), (Some(2), PowerState::PoweredOn));
    // No extra power call from the front: find_owned + create_guest only.
    assert!(r.fake.calls.load(Ordering::SeqCst) - calls <= 3, "front did extra work");
}

#[test]
fn broadcast_uris_are_realised_or_refused_before_anything_is_made() {
    let r = Run::new();
    let base = fixture_json("spec_9_create.json");
    for (uri, want) in [("vlan://7", Some(7)), ("vlan://4094", Some(4094)), ("vlan://untagged", None)] {
        let mut p = base.clone();
        p["cloudstack.vm.details"]["nics"][0]["broadcastUri"] = json!(uri);
        assert!(r.call("create", &p, "60").1, "{uri}");
        let spec = r.fake.state().last_create.clone().unwrap();
        assert_eq!(spec.nics[0].vlan, want, "{uri}");
        assert!(r.call("delete", &fixture_json("spec_9_stop.json"), "60").1);
    }
    r.fake.state().last_create = None;
    let calls = r.fake.calls.load(Ordering::SeqCst);
    let mut bad: Vec<(Value, &str)> =
        ["vxlan://5000", "pvlan://100-i200", "vlan://abc", "vlan://99999", "vlan://0", "vlan://+5", "10"]
            .into_iter()
            .map(|u| {
                let mut p = base.clone();
                p["cloudstack.vm.details"]["nics"][0]["broadcastUri"] = json!(u);
                (p, u)
            })
            .collect();
    let mut missing = base.clone();
    missing["cloudstack.vm.details"]["nics"][0].as_object_mut().unwrap().remove("broadcastUri");
    bad.push((missing, "missing on a Vlan network"));
    for (p, what) in bad {
        for action in ["prepare", "create"] {
            let (v, ok) = r.call(action, &p, "60");
            assert!(!ok, "{action} {what}: {v}");
            assert!(v["error"].as_str().unwrap().starts_with("NIC 0: broadcast"), "{what}: {v}");
        }
    }
    assert_eq!(r.fake.calls.load(Ordering::SeqCst), calls, "refused before any backend call");
    assert!(r.fake.vms().is_empty());
    // Native networks without a URI are untagged.
    let mut native = base.clone();
    native["cloudstack.vm.details"]["nics"][0] =
        json!({"deviceId": 0, "mac": "02:01:00:cd:00:02", "broadcastType": "Native"});
    assert!(r.call("create", &native, "60").1);
    assert_eq!(r.fake.state().last_create.clone().unwrap().nics[0].vlan, None);
}

#[test]
fn invalid_cpus_and_ram_are_refused_never_defaulted() {
    let r = Run::new();
    let base = fixture_json("spec_9_create.json");
    let cases = [
        ("cpus", json!("two")),
        ("cpus", json!(-2)),
        ("cpus", json!(0)),
        ("cpus", json!(1.5)),
        ("cpus", json!(100_000)),
        ("maxRam", json!("2GB")),
        ("maxRam", json!(-1)),
        ("maxRam", json!(12)),
        ("maxRam", json!(1e20)),
        ("minRam", json!("x")),
        ("minRam", json!(4_294_967_296u64)),
    ];
    for (field, value) in cases {
        let mut p = base.clone();
        p["cloudstack.vm.details"][field] = value.clone();
        for action in ["prepare", "create"] {
            let (v, ok) = r.call(action, &p, "60");
            assert!(!ok, "{action} {field}={value}: {v}");
            assert!(v["error"].as_str().unwrap().contains(field), "{field}={value}: {v}");
        }
    }
    assert!(r.fake.vms().is_empty());
    assert!(r.fake.state().last_create.is_none());
    // Absent values mean "the template's".
    let mut p = base.clone();
    for f in ["cpus", "minRam", "maxRam"] {
        p["cloudstack.vm.details"].as_object_mut().unwrap().remove(f);
    }
    assert!(r.call("create", &p, "60").1);
    let spec = r.fake.state().last_create.clone().unwrap();
    assert_eq!((spec.cpus, spec.memory_mb), (None, None));
}

#[test]
fn create_and_getconsole_are_gated_on_capabilities() {
    let r = Run::new();
    r.factory.set_caps(polyvisor_core::Capabilities::default());
    for action in ["prepare", "create"] {
        let (v, ok) = r.call(action, &fixture_json("spec_9_create.json"), "60");
        assert!(!ok);
        assert_eq!(v["error"], "create is not supported: the Fake driver cannot create VMs", "{action}");
    }
    assert!(r.fake.vms().is_empty());
    let (v, ok) = r.call("getconsole", &fixture_json("spec_9_getconsole.json"), "60");
    assert!(!ok);
    assert_eq!(v["error"], "getconsole is not supported: the Fake driver offers no console");
}

#[test]
fn huge_ids_are_not_echoed_whole() {
    let r = Run::new();
    let mut p = fixture_json("spec_9_status.json");
    p["virtualmachinename"] = json!("i".repeat(1_000_000));
    let (v, ok) = r.call("start", &p, "5");
    assert!(!ok);
    let msg = v["error"].as_str().unwrap();
    assert!(msg.len() < 400, "{} bytes echoed", msg.len());
    assert!(msg.contains("virtualmachinename"));
    let mut p = fixture_json("spec_9_create.json");
    p["cloudstack.vm.details"]["nics"][0]["broadcastUri"] = json!(format!("vxlan://{}", "9".repeat(1_000_000)));
    let (v, _) = r.call("create", &p, "5");
    assert!(v["error"].as_str().unwrap().len() < 400);
    let mut p = fixture_json("spec_9_create.json");
    p["externaldetails"]["virtualmachine"]["template_id"] = json!("7".repeat(1_000_000));
    let (v, ok) = r.call("create", &p, "5");
    assert!(!ok);
    let msg = v["error"].as_str().unwrap();
    assert!(msg.starts_with("template_id must be") && msg.len() < 400, "{}", msg.len());
    assert!(r.fake.vms().is_empty());
}

/// A fake that allocates ids up front like Proxmox, under the built-in's `proxmox_vmid`.
fn with_id_hints() -> Run {
    let r = Run::new();
    r.fake.state().id_hint_detail = Some("proxmox_vmid");
    r
}

/// The create payload without the fixture's `proxmox_vmid` (a VM no prepare ran for yet).
fn unprepared(p: &Value) -> Value {
    let mut p = p.clone();
    p["cloudstack.vm.details"]["details"].as_object_mut().unwrap().remove("proxmox_vmid");
    p
}

/// What the management server keeps of a prepare patch: its details in the VM's details.
fn prepared(p: &Value, patch: &Value) -> Value {
    let mut p = p.clone();
    for (k, v) in patch["details"].as_object().unwrap() {
        p["cloudstack.vm.details"]["details"][k] = v.clone();
    }
    p
}

#[test]
fn prepare_allocates_the_drivers_id_and_create_uses_it() {
    let r = with_id_hints();
    let create = unprepared(&fixture_json("spec_9_create.json"));
    let calls = r.fake.calls.load(Ordering::SeqCst);
    let (patch, ok) = r.call("prepare", &create, "60");
    assert!(ok, "{patch}");
    // The built-in's detail (unprefixed, as proxmox.sh answers), one backend call.
    let id = patch["details"]["proxmox_vmid"].as_str().expect("an id").to_string();
    assert_eq!(patch, json!({"details": {"proxmox_vmid": id}}));
    assert!(!r.fake.state().guests.contains_key(&id), "a free id");
    assert_eq!(r.fake.calls.load(Ordering::SeqCst) - calls, 1, "prepare = one allocation");
    let create = prepared(&create, &patch);
    assert!(r.call("create", &create, "60").1);
    assert_eq!(r.fake.state().last_create_hint.as_ref().map(|h| h.as_str()), Some(id.as_str()));
    let g = r.fake.state().guests.get(&id).cloned().expect("created at the allocated id");
    assert_eq!((g.key.as_deref(), g.power), (Some("i-2-45-VM"), PowerState::PoweredOn));
    // Later actions carry the id; a re-sent prepare reports the guest already there.
    let (again, _) = r.call("prepare", &create, "60");
    assert_eq!(again, json!({"details": {"proxmox_vmid": id}}));
    let mut status = fixture_json("spec_9_status.json");
    status["cloudstack.vm.details"]["details"]["proxmox_vmid"] = json!(id);
    assert_eq!(r.call("status", &status, "5").0["power_state"], "poweron");
    // Without prepare (it is optional) create still works, located by key.
    let r2 = with_id_hints();
    assert!(r2.call("create", &unprepared(&fixture_json("spec_9_create.json")), "60").1);
    assert_eq!(r2.fake.vms().iter().filter(|g| g.key.as_deref() == Some("i-2-45-VM")).count(), 1);
}

#[test]
fn an_id_hint_at_a_foreign_guest_is_never_acted_on() {
    let r = with_id_hints();
    r.fake.insert(guest("103", "web01", None, PowerState::PoweredOn, false));
    // The fixtures carry proxmox_vmid 103: the foreign guest.
    let status = fixture_json("spec_9_status.json");
    assert_eq!(r.call("status", &status, "5").0["power_state"], "poweroff");
    assert!(r.call("stop", &fixture_json("spec_9_stop.json"), "5").1);
    assert!(r.call("delete", &fixture_json("spec_9_stop.json"), "5").1);
    assert!(!r.call("start", &status, "5").1);
    assert_eq!(foreign(&r).power, PowerState::PoweredOn);
    assert!(r.fake.state().deleted.is_empty() && r.fake.state().power.is_empty());
    // prepare does not report the foreign guest's id: it allocates another one.
    let create = fixture_json("spec_9_create.json");
    let (patch, ok) = r.call("prepare", &create, "60");
    assert!(ok, "{patch}");
    assert_ne!(patch["details"]["proxmox_vmid"], json!("103"));
    // create refuses the foreign guest of that name before making anything (it is not adopted).
    let (v, ok) = r.call("create", &prepared(&create, &patch), "60");
    assert!(!ok, "{v}");
    assert!(v["error"].as_str().unwrap().contains("a VM named web01 already exists"), "{v}");
    assert!(r.fake.state().last_create.is_none());
    assert_eq!(foreign(&r).key, None);
    // With another vm_name it is created at the allocated id, the foreign guest untouched.
    let mut other = prepared(&create, &patch);
    other["externaldetails"]["virtualmachine"]["vm_name"] = json!("web02");
    assert!(r.call("create", &other, "60").1);
    let id = patch["details"]["proxmox_vmid"].as_str().unwrap().to_string();
    assert_eq!(r.fake.state().guests.get(&id).and_then(|g| g.key.clone()).as_deref(), Some("i-2-45-VM"));
    assert_eq!((foreign(&r).key, foreign(&r).power), (None, PowerState::PoweredOn));
}

#[test]
fn every_action_closes_the_driver_once_even_after_a_failure_or_a_timeout() {
    // Issue 14: one action per process, so the driver's backend session is released.
    let r = Run::new();
    let (_, ok) = r.call("status", &fixture_json("spec_9_status.json"), "5");
    assert!(ok);
    assert_eq!(r.fake.state().closed, 1);
    let (_, ok) = r.call("start", &fixture_json("spec_9_stop.json"), "5");
    assert!(!ok, "start of an absent VM fails");
    assert_eq!(r.fake.state().closed, 2, "closed after a failed action too");
    r.fake.state().hang_tasks = true;
    let t = Instant::now();
    let (_, ok) = r.call("create", &fixture_json("spec_9_create.json"), "1");
    assert!(!ok);
    assert!(t.elapsed() < Duration::from_millis(1000), "close stays inside the kill limit");
    assert_eq!(r.fake.state().closed, 3, "closed after the deadline");
    // No driver opened (unreadable payload): nothing to close.
    let (_, ok) = r.call_path("status", &r.dir.path().join("absent.json"), "5");
    assert!(!ok);
    assert_eq!(r.fake.state().closed, 3);
}
