//! guests/list, guests/get, guests/control: §4.3–4.5, §13 items 6, 15, 20–22.

use super::*;
use polyvisor_core::{Capabilities, PowerAction};
use polyvisor_test_support::fake::{full_caps, FakeFactory};
use serde_json::json;

#[test]
fn get_returns_the_full_object_with_string_ids() {
    let r = one(r#"{"method":"guests/get","params":{"id":"101"}}"#);
    assert_eq!(
        r.to_string(),
        r#"{"result":{"host_os":"win11","id":"101","ip":"192.168.1.50","ip_addresses":["192.168.1.50"],"is_template":false,"mac_addresses":["BC:24:11:AA:BB:CC"],"memory_mb":4096,"name":"win11-gold","node":"node1","power_state":"running","provider":"Fake","state":"powered_on","type":"Virtual Machine"}}"#
    );
    // A numeric id is accepted and answered as a string.
    let r = one(r#"{"method":"guests/get","params":{"id":9000}}"#);
    assert_eq!(r["result"]["id"], "9000");
    assert_eq!(r["result"]["is_template"], true);
}

#[test]
fn get_unknown_id_is_an_internal_error_with_context() {
    let r = one(r#"{"method":"guests/get","params":{"id":"404"}}"#);
    assert_eq!(err(&r), (-32603, "Fake: Failed to get guest [404]: guest [404] not found".into()));
}

#[test]
fn get_array_form_maps_ids_and_stubs_failures() {
    let r = one(r#"{"method":"guests/get","params":{"id":["101","404"]}}"#);
    let m = &r["result"];
    assert_eq!(m["101"]["name"], "win11-gold");
    assert_eq!(
        m["404"],
        json!({"id":"404","name":"VM-404","provider":"Fake","node":null,"state":"powered_off","power_state":"unknown","host_os":"unknown","ip":null,"ip_addresses":[],"mac_addresses":[],"is_template":false,"type":"Virtual Machine"})
    );
    let single = one(r#"{"method":"guests/get","params":{"id":["101"]}}"#);
    assert_eq!(single["result"]["id"], "101");
    assert_eq!(err(&one(r#"{"method":"guests/get","params":{"id":[]}}"#)).0, -32602);
    assert_eq!(err(&one(r#"{"method":"guests/get","params":{"id":[true]}}"#)).0, -32602);
}

#[test]
fn list_includes_templates_as_strings() {
    let r = one(r#"{"method":"guests/list"}"#);
    assert_eq!(r, json!({"result":{"guests":["101","9000","slow"]}}));
}

#[test]
fn control_values_map_to_power_actions() {
    let f = FakeFactory::new(full_caps());
    let controls = ["start", "stop", "reset", "restart", "reboot", "shutdown", "suspend", "resume", " Start "];
    let lines: Vec<String> = controls
        .iter()
        .map(|c| format!(r#"{{"method":"guests/control","params":{{"id":"101","control":"{c}"}}}}"#))
        .collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    for r in run(&Args::default(), &f, &refs) {
        assert_eq!(r, json!({"result":{}}));
    }
    let got: Vec<PowerAction> = f.fake.state().power.iter().map(|p| p.1).collect();
    use PowerAction::*;
    assert_eq!(got, [Start, Stop, Reset, Reboot, Reboot, Shutdown, Suspend, Resume, Start]);
}

#[test]
fn control_errors_and_idempotent_delete() {
    let f = FakeFactory::new(full_caps());
    let r = run(
        &Args::default(),
        &f,
        &[
            r#"{"method":"guests/control","params":{"id":"101","control":"explode"}}"#,
            r#"{"method":"guests/control","params":{"id":"101"}}"#,
            r#"{"method":"guests/control","params":{"control":"start"}}"#,
            r#"{"method":"guests/control","params":{"id":"404","control":"start"}}"#,
            r#"{"method":"guests/control","params":{"id":"101","control":"delete"}}"#,
            r#"{"method":"guests/control","params":{"id":"101","control":"delete"}}"#,
        ],
    );
    assert_eq!(err(&r[0]), (-32602, "polyvisor: Unsupported guest control: explode".into()));
    assert_eq!(err(&r[1]), (-32602, "polyvisor: Missing field: params.control".into()));
    assert_eq!(err(&r[2]), (-32602, "polyvisor: Missing field: params.id".into()));
    assert_eq!(err(&r[3]), (-32603, "Fake: Failed to start guest [404]: guest [404] not found".into()));
    assert_eq!(r[4], json!({"result":{}}));
    assert_eq!(r[5], json!({"result":{}}));
    assert_eq!(f.fake.state().deleted, ["101", "101"]);
}

#[test]
fn suspend_is_refused_when_the_driver_cannot_suspend() {
    let f = FakeFactory::new(Capabilities { suspend: false, ..full_caps() });
    let r = run(&Args::default(), &f, &[r#"{"method":"guests/control","params":{"id":"101","control":"suspend"}}"#]);
    assert_eq!(err(&r[0]), (-32602, "Fake: Unsupported guest control: suspend".into()));
    assert!(f.fake.state().power.is_empty());
}
