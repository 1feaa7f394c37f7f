//! provider/initialize, connect, disconnect, lazy sessions: §3, §4.1, §4.2, §13 items 4, 7, 31.

use super::*;
use polyvisor_core::{Capabilities, TemplatePreference, TemplateStrategy};
use polyvisor_test_support::fake::{full_caps, FakeFactory};
use serde_json::json;

const INIT: &str = r#"{"method":"provider/initialize"}"#;

#[test]
fn initialize_reports_all_six_keys_exactly() {
    let f = FakeFactory::new(full_caps());
    let out = run_raw(&Args::default(), &f, format!("{INIT}\n").as_bytes());
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "{\"result\":{\"capabilities\":{\"can_link_clones\":false,\"can_suspend_guests\":true,\"guests_polling_rate\":5,\"tasks_polling_rate\":2,\"tasks_polling_retries\":180,\"template_method\":\"versioning\"},\"version\":\"1.0.0\"}}\n"
    );
    // initialize comes before connect: the args/env driver is opened (no I/O) for its caps.
    let opened = f.last_opened().expect("default driver opened");
    assert_eq!(opened.str("driver").as_deref(), Some("sim"));
    assert_eq!(opened.str("template_mode"), None, "no untyped template_mode is injected");
    assert_eq!(f.last_options().unwrap().templates, TemplatePreference::Flag);
}

#[test]
fn initialize_levels_follow_args_and_are_clamped() {
    let f = FakeFactory::new(full_caps());
    let caps = &run(&level_args("basic", true), &f, &[INIT])[0]["result"]["capabilities"];
    assert_eq!((caps["template_method"].clone(), caps["can_link_clones"].clone()), (json!("basic"), json!(true)));
    assert_eq!(f.last_options().unwrap().templates, TemplatePreference::Native);

    let caps = &run(&level_args("none", true), &f, &[INIT])[0]["result"]["capabilities"];
    assert_eq!((caps["template_method"].clone(), caps["can_link_clones"].clone()), (json!("none"), json!(false)));

    let weak = FakeFactory::new(Capabilities { snapshots: false, suspend: false, ..full_caps() });
    let caps = &run(&level_args("versioning", true), &weak, &[INIT])[0]["result"]["capabilities"];
    assert_eq!(caps["template_method"], "basic");
    assert_eq!(caps["can_link_clones"], false);
    assert_eq!(caps["can_suspend_guests"], false);

    let none = FakeFactory::new(Capabilities { templates: TemplateStrategy::None, ..full_caps() });
    let caps = &run(&Args::default(), &none, &[INIT])[0]["result"]["capabilities"];
    assert_eq!(caps["template_method"], "none");

    let args = Args {
        suspend: Some("off".into()),
        guests_polling_rate: Some("1000".into()),
        tasks_polling_rate: Some("0".into()),
        tasks_polling_retries: Some("7".into()),
        driver: Some("proxmox".into()),
        ..Args::default()
    };
    let caps = &run(&args, &f, &[INIT])[0]["result"]["capabilities"];
    assert_eq!(
        caps,
        &json!({"can_suspend_guests":false,"guests_polling_rate":900,"tasks_polling_rate":1,"tasks_polling_retries":7,"template_method":"versioning","can_link_clones":false})
    );
    assert_eq!(f.last_opened().and_then(|s| s.str("driver")).as_deref(), Some("proxmox"));
}

#[test]
fn initialize_without_an_openable_driver_advertises_the_configured_level() {
    let f = FakeFactory::new(full_caps());
    let args = Args { driver: Some("nodriver".into()), ..level_args("basic", true) };
    let r = run(&args, &f, &[INIT, r#"{"method":"guests/list"}"#]);
    let caps = &r[0]["result"]["capabilities"];
    assert_eq!(
        (caps["template_method"].clone(), caps["can_link_clones"].clone(), caps["can_suspend_guests"].clone()),
        (json!("basic"), json!(true), json!(false))
    );
    let (code, msg) = err(&r[1]);
    assert_eq!(code, -32603);
    assert!(msg.starts_with("polyvisor: Not connected: call provider/connect first"), "{msg}");
}

#[test]
fn connect_validates_settings_and_probes() {
    let f = FakeFactory::new(full_caps());
    let r = run(
        &Args::default(),
        &f,
        &[
            r#"{"method":"provider/connect"}"#,
            r#"{"method":"provider/connect","params":{"settings":"x"}}"#,
            r#"{"method":"provider/connect","params":{"settings":{"host":"bad","token":"s3cret"}}}"#,
            r#"{"method":"provider/connect","params":{"settings":{"template_method":"gold"}}}"#,
            r#"{"method":"provider/connect","params":{"settings":{"can_link_clones":"maybe"}}}"#,
            r#"{"method":"provider/connect","params":{"settings":{"token":"wrong-s3cret"}}}"#,
            r#"{"method":"guests/list"}"#,
            r#"{"method":"provider/connect","params":{"settings":{"host":"pve:8006","token":"s3cret"}}}"#,
            r#"{"method":"guests/list"}"#,
        ],
    );
    assert_eq!(err(&r[0]), (-32602, "polyvisor: Missing field: params.settings".into()));
    assert_eq!(err(&r[1]), (-32602, "polyvisor: Invalid field: params.settings (expected an object)".into()));
    assert_eq!(
        err(&r[2]),
        (-32602, "polyvisor: Invalid connection parameters: setting 'host' must be host[:port]".into())
    );
    assert_eq!(
        err(&r[3]),
        (
            -32602,
            "polyvisor: Invalid connection parameters: setting 'template_method' must be none, basic or versioning"
                .into()
        )
    );
    assert_eq!(
        err(&r[4]),
        (-32602, "polyvisor: Invalid connection parameters: setting 'can_link_clones' must be a boolean".into())
    );
    assert_eq!(err(&r[5]), (-32603, "Fake: Connection failed: authentication failed (401)".into()));
    // After a failed connect, requests say so instead of silently using another driver.
    assert_eq!(err(&r[6]).0, -32603);
    assert!(err(&r[6]).1.contains("the last provider/connect failed"));
    assert_eq!(r[7], json!({"result":{"message":"Fake: Connected: Fake hypervisor 1.0"}}));
    assert_eq!(r[8]["result"]["guests"][0], "101");
    let all: Vec<String> = r.iter().map(|v| v.to_string()).collect();
    assert!(!all.join("\n").contains("s3cret"), "secrets must never be echoed");
    // The args/env driver is injected when the settings do not name one.
    let s = f.last_opened().unwrap();
    assert_eq!((s.str("driver").as_deref(), s.str("host").as_deref()), (Some("sim"), Some("pve:8006")));
}

#[test]
fn bad_args_do_not_stop_startup_and_surface_on_connect() {
    let f = FakeFactory::new(full_caps());
    let args = Args { template_method: Some("gold".into()), ..Args::default() };
    let r = run(&args, &f, &[INIT, r#"{"method":"provider/connect","params":{"settings":{}}}"#]);
    assert_eq!(r[0]["result"]["capabilities"]["template_method"], "versioning");
    assert_eq!(
        err(&r[1]),
        (
            -32602,
            "polyvisor: Invalid connection parameters: --template-method must be none, basic or versioning".into()
        )
    );
}

#[test]
fn disconnect_clears_the_session_only_and_requests_reconnect_lazily() {
    let f = FakeFactory::new(full_caps());
    let r = run(
        &Args::default(),
        &f,
        &[
            r#"{"method":"guests/list"}"#,
            r#"{"method":"guests/convert","params":{"id":"101","is_template":true}}"#,
            r#"{"method":"provider/disconnect"}"#,
            r#"{"method":"guests/get","params":{"id":"101"}}"#,
        ],
    );
    assert_eq!(r[0]["result"]["guests"].as_array().map(Vec::len), Some(3));
    assert_eq!(r[2], json!({"result":{}}));
    assert_eq!(r[3]["result"]["is_template"], true);
    // A task issued before the disconnect still resolves in a fresh "process".
    let task = r[1]["result"]["task_id"].as_str().unwrap().to_string();
    let again = run(&Args::default(), &f, &[&format!(r#"{{"method":"tasks/get","params":{{"id":"{task}"}}}}"#)]);
    assert_eq!(again[0], json!({"result":{"state":"completed","output":{}}}));
}

#[test]
fn connect_settings_override_the_level_for_later_requests() {
    let f = FakeFactory::new(full_caps());
    let r = run(
        &level_args("basic", false),
        &f,
        &[
            r#"{"method":"guests/snapshots/exists","params":{"id":"101","name":"x"}}"#,
            r#"{"method":"provider/connect","params":{"settings":{"template_method":"basic","can_link_clones":"true"}}}"#,
            r#"{"method":"guests/snapshots/exists","params":{"id":"101","name":"x"}}"#,
            INIT,
        ],
    );
    assert_eq!(
        err(&r[0]),
        (-32601, "Fake: Method guests/snapshots/exists is not available with template_method basic".into())
    );
    assert_eq!(r[2], json!({"result":false}));
    // initialize keeps answering from args/env.
    assert_eq!(r[3]["result"]["capabilities"]["can_link_clones"], false);
    let (connected, opts) = f.opened.lock().unwrap().iter().find(|(s, _)| s.has("can_link_clones")).cloned().unwrap();
    assert_eq!(connected.str("template_mode"), None);
    assert_eq!(opts.templates, TemplatePreference::Native);
}

#[test]
fn a_driver_that_cannot_be_opened_fails_connect_as_internal_error() {
    let f = FakeFactory::new(full_caps());
    let r = run(&Args::default(), &f, &[r#"{"method":"provider/connect","params":{"settings":{"driver":"unbuilt"}}}"#]);
    assert_eq!(
        err(&r[0]),
        (-32603, "polyvisor: Connection failed: the unbuilt driver is not supported by this driver".into())
    );
    let r =
        run(&Args::default(), &f, &[r#"{"method":"provider/connect","params":{"settings":{"driver":"nodriver"}}}"#]);
    assert_eq!(err(&r[0]), (-32602, "polyvisor: Invalid connection parameters: unknown driver 'nodriver'".into()));
}

#[test]
fn the_driver_is_closed_once_at_eof_and_at_disconnect() {
    // Issue 14: backend sessions are released when the process ends.
    let f = FakeFactory::new(full_caps());
    run(&Args::default(), &f, &[r#"{"method":"guests/list"}"#, r#"{"method":"guests/get","params":{"id":"101"}}"#]);
    assert_eq!(f.fake.state().closed, 1, "one close at EOF for the lazily opened driver");
    let f = FakeFactory::new(full_caps());
    run(
        &Args::default(),
        &f,
        &[
            r#"{"method":"provider/connect","params":{"settings":{}}}"#,
            r#"{"method":"provider/disconnect"}"#,
            r#"{"method":"guests/list"}"#,
        ],
    );
    assert_eq!(f.fake.state().closed, 2, "the connected driver at disconnect, the lazy one at EOF");
    // A connect that gets back the driver already in use (the fake factory shares one) does
    // not close it under the session's feet: one close, at EOF.
    let f = FakeFactory::new(full_caps());
    run(
        &Args::default(),
        &f,
        &[
            r#"{"method":"provider/connect","params":{"settings":{}}}"#,
            r#"{"method":"provider/connect","params":{"settings":{}}}"#,
        ],
    );
    assert_eq!(f.fake.state().closed, 1, "the driver still in use is closed once, at EOF");
    // A process that never opened a driver closes nothing.
    let f = FakeFactory::new(full_caps());
    run(&Args::default(), &f, &[INIT]);
    assert_eq!(f.fake.state().closed, 0);
}
