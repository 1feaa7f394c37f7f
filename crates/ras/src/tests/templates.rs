//! convert, clone, snapshots, tasks and level gating: §4.6–4.9, §7, §13 items 9, 12–14, 17–19.

use super::*;
use polyvisor_core::{CloneMode, TemplateStrategy};
use polyvisor_test_support::fake::{full_caps, FakeFactory};
use serde_json::json;

fn task_get(id: &Value) -> String {
    format!(r#"{{"method":"tasks/get","params":{{"id":{id}}}}}"#)
}

#[test]
fn convert_returns_a_task_and_flips_the_flag() {
    let f = FakeFactory::new(full_caps());
    let args = Args::default();
    let r = run(&args, &f, &[r#"{"method":"guests/convert","params":{"id":"101","is_template":"true"}}"#]);
    let task = &r[0]["result"]["task_id"];
    assert!(task.as_str().is_some_and(|t| !t.is_empty()));
    let r = run(
        &args,
        &f,
        &[
            &task_get(task),
            r#"{"method":"guests/get","params":{"id":"101"}}"#,
            r#"{"method":"guests/convert","params":{"id":"101","is_template":true}}"#,
        ],
    );
    assert_eq!(r[0], json!({"result":{"state":"completed","output":{}}}));
    assert_eq!(r[1]["result"]["is_template"], true);
    assert!(r[2]["result"]["task_id"].is_string(), "converting to the current state succeeds");
    let r = run(
        &args,
        &f,
        &[
            r#"{"method":"guests/convert","params":{"id":"101"}}"#,
            r#"{"method":"guests/convert","params":{"id":"101","is_template":"maybe"}}"#,
        ],
    );
    assert_eq!(err(&r[0]), (-32602, "polyvisor: Missing field: params.is_template".into()));
    assert_eq!(err(&r[1]), (-32602, "polyvisor: Invalid field: params.is_template (expected a boolean)".into()));
}

#[test]
fn clone_reports_task_and_clone_id_and_the_task_output_carries_it() {
    let f = FakeFactory::new(full_caps());
    let args = Args::default();
    let r = run(
        &args,
        &f,
        &[r#"{"method":"guests/clone","params":{"id":"9000","name":"w10-002","snapshot":"RAS_TEMPLATE_VERSION_1"}}"#],
    );
    let res = &r[0]["result"];
    assert_eq!(res["clone_id"], "201");
    // A different "process" resolves the task.
    let r = run(&args, &f, &[&task_get(&res["task_id"])]);
    assert_eq!(r[0], json!({"result":{"state":"completed","output":{"clone_id":"201"}}}));
    let spec = f.fake.state().clones.last().cloned().unwrap();
    assert_eq!(
        (spec.mode, spec.snapshot.as_deref(), spec.start),
        (CloneMode::Full, Some("RAS_TEMPLATE_VERSION_1"), false)
    );

    let r = run(
        &args,
        &f,
        &[
            r#"{"method":"guests/clone","params":{"id":"9000","name":"w10-003","snapshot":"","is_link_clone":true}}"#,
            r#"{"method":"guests/clone","params":{"id":"9000","name":"Clone of 9000"}}"#,
            r#"{"method":"guests/clone","params":{"id":"9000"}}"#,
        ],
    );
    assert_eq!(r[0]["result"]["clone_id"], "202");
    let spec = f.fake.state().clones.last().cloned().unwrap();
    assert_eq!((spec.mode, spec.snapshot), (CloneMode::Linked, None));
    assert_eq!(
        err(&r[1]),
        (-32602, "Fake: Failed to clone guest [9000]: invalid clone name 'Clone of 9000': must be a DNS name".into())
    );
    assert_eq!(err(&r[2]), (-32602, "Fake: Missing field: params.name".into()));
}

#[test]
fn snapshot_methods_with_versioning() {
    let f = FakeFactory::new(full_caps());
    let r = run(
        &Args::default(),
        &f,
        &[
            r#"{"method":"guests/snapshots/exists","params":{"id":"101","name":"RAS_TEMPLATE_VERSION_1"}}"#,
            r#"{"method":"guests/snapshots/exists","params":{"id":"101","name":"RAS_TEMPLATE_VERSION_2"}}"#,
            r#"{"method":"guests/snapshots/create","params":{"id":"101","name":"RAS_TEMPLATE_VERSION_2"}}"#,
            r#"{"method":"guests/snapshots/exists","params":{"id":"101","name":"RAS_TEMPLATE_VERSION_2"}}"#,
            r#"{"method":"guests/snapshots/revert","params":{"id":"101","name":"RAS_TEMPLATE_VERSION_2"}}"#,
            r#"{"method":"guests/snapshots/delete","params":{"id":"101","name":"RAS_TEMPLATE_VERSION_2"}}"#,
            r#"{"method":"guests/snapshots/delete","params":{"id":"101","name":"never-existed"}}"#,
            r#"{"method":"guests/snapshots/revert","params":{"id":"101","name":"never-existed"}}"#,
            r#"{"method":"guests/snapshots/create","params":{"id":"101"}}"#,
        ],
    );
    assert_eq!(r[0], json!({"result":true}));
    assert_eq!(r[1], json!({"result":false}));
    assert_eq!(r[3], json!({"result":true}));
    for i in [2, 4, 5, 6] {
        let t = &r[i]["result"]["task_id"];
        assert!(t.is_string(), "{}", r[i]);
        let done = run(&Args::default(), &f, &[&task_get(t)]);
        assert_eq!(done[0], json!({"result":{"state":"completed","output":{}}}), "reply {i}");
    }
    assert_eq!(
        err(&r[7]),
        (
            -32603,
            "Fake: Failed to revert guest [101] to snapshot [never-existed]: snapshot [never-existed] not found".into()
        )
    );
    assert_eq!(err(&r[8]), (-32602, "Fake: Missing field: params.name".into()));
}

#[test]
fn tasks_running_failed_and_unknown() {
    let f = FakeFactory::new(full_caps());
    let args = Args::default();
    let r = run(
        &args,
        &f,
        &[
            r#"{"method":"guests/snapshots/create","params":{"id":"101","name":"pending"}}"#,
            r#"{"method":"guests/snapshots/create","params":{"id":"101","name":"broken"}}"#,
            r#"{"method":"tasks/get","params":{"id":"UPID:nope"}}"#,
            r#"{"method":"tasks/get","params":{}}"#,
        ],
    );
    let r2 = run(&args, &f, &[&task_get(&r[0]["result"]["task_id"]), &task_get(&r[1]["result"]["task_id"])]);
    assert_eq!(r2[0], json!({"result":{"state":"running"}}));
    assert_eq!(r2[1], json!({"result":{"state":"failed","error":{"code":1,"message":"Fake: disk full"}}}));
    assert_eq!(err(&r[2]), (-32602, "Fake: Unknown task id: UPID:nope".into()));
    assert_eq!(err(&r[3]), (-32602, "Fake: Missing field: params.id".into()));
}

#[test]
fn tasks_past_their_max_age_fail_through_cores_prologue() {
    // The fake implements only the `advance_task` hook (its "frun" tasks run forever);
    // expiry comes from core's provided `Driver::task_status`, for every driver alike.
    let f = FakeFactory::new(full_caps());
    let args = Args::default();
    let r = run(&args, &f, &[r#"{"method":"guests/snapshots/create","params":{"id":"101","name":"pending"}}"#]);
    let id = polyvisor_core::TaskId(r[0]["result"]["task_id"].as_str().unwrap().to_string());
    let mut tok = polyvisor_core::TaskToken::decode(&id).unwrap();
    assert_eq!(run(&args, &f, &[&task_get(&json!(id.0))])[0], json!({"result":{"state":"running"}}));
    tok.created = 1;
    let old = tok.encode();
    let r = run(&args, &f, &[&task_get(&json!(old.0))]);
    assert_eq!(r[0], json!({"result":{"state":"failed","error":{"code":1,"message":"Fake: Task timed out"}}}));
    // A well-formed token of a kind the fake never issued is the spec's unknown-task error.
    let foreign = polyvisor_core::TaskToken::new("other", json!({})).encode();
    let r = run(&args, &f, &[&task_get(&json!(foreign.0))]);
    assert_eq!(err(&r[0]), (-32602, format!("Fake: Unknown task id: {foreign}")));
}

#[test]
fn methods_outside_the_level_are_method_not_found() {
    let f = FakeFactory::new(full_caps());
    let snap = r#"{"method":"guests/snapshots/create","params":{"id":"101","name":"x"}}"#;
    let r =
        run(&level_args("basic", false), &f, &[snap, r#"{"method":"guests/clone","params":{"id":"9000","name":"a"}}"#]);
    assert_eq!(
        err(&r[0]),
        (-32601, "Fake: Method guests/snapshots/create is not available with template_method basic".into())
    );
    assert!(r[1]["result"]["task_id"].is_string());
    let r = run(
        &level_args("none", false),
        &f,
        &[
            r#"{"method":"guests/clone","params":{"id":"9000","name":"a"}}"#,
            r#"{"method":"guests/convert","params":{"id":"101","is_template":true}}"#,
            r#"{"method":"tasks/get","params":{"id":"x"}}"#,
            r#"{"method":"guests/control","params":{"id":"101","control":"start"}}"#,
        ],
    );
    for reply in &r[..3] {
        assert_eq!(err(reply).0, -32601, "{reply}");
    }
    assert_eq!(r[3], json!({"result":{}}));
}

#[test]
fn link_clone_level_on_native_templates_uses_a_virtual_snapshot_label() {
    let f = FakeFactory::new(full_caps());
    let args = level_args("basic", true);
    let r = run(
        &args,
        &f,
        &[
            r#"{"method":"guests/snapshots/exists","params":{"id":"9000","name":"RAS Template Snapshot"}}"#,
            r#"{"method":"guests/snapshots/exists","params":{"id":"101","name":"RAS Template Snapshot"}}"#,
            r#"{"method":"guests/snapshots/create","params":{"id":"101","name":"RAS Template Snapshot"}}"#,
            r#"{"method":"guests/snapshots/delete","params":{"id":"101","name":"RAS Template Snapshot"}}"#,
            r#"{"method":"guests/clone","params":{"id":"9000","name":"w-1","snapshot":"RAS Template Snapshot"}}"#,
            r#"{"method":"guests/snapshots/revert","params":{"id":"101","name":"RAS Template Snapshot"}}"#,
        ],
    );
    assert_eq!(
        f.fake.capabilities_for_test(),
        TemplateStrategy::Native,
        "the link-clone level asked for native templates"
    );
    assert_eq!(r[0], json!({"result":true}));
    assert_eq!(r[1], json!({"result":false}));
    for i in [2, 3] {
        let done = run(&args, &f, &[&task_get(&r[i]["result"]["task_id"])]);
        assert_eq!(done[0], json!({"result":{"state":"completed","output":{}}}));
    }
    assert!(!f.fake.state().snaps["101"].iter().any(|n| n == "RAS Template Snapshot"), "never passed to the driver");
    let spec = f.fake.state().clones.last().cloned().unwrap();
    assert_eq!((spec.mode, spec.snapshot), (CloneMode::Linked, None));
    assert_eq!(err(&r[5]).0, -32602);
}

#[test]
fn link_clone_level_on_flag_templates_passes_the_name_through() {
    let f = FakeFactory::new(full_caps());
    let args = Args { ..level_args("basic", true) };
    // Connect settings can force flag templates even at the link-clone level.
    let r = run(
        &args,
        &f,
        &[
            r#"{"method":"provider/connect","params":{"settings":{"template_mode":"flag"}}}"#,
            r#"{"method":"guests/snapshots/create","params":{"id":"101","name":"RAS Template Snapshot"}}"#,
            r#"{"method":"guests/snapshots/exists","params":{"id":"101","name":"RAS Template Snapshot"}}"#,
            r#"{"method":"guests/clone","params":{"id":"101","name":"w-2","snapshot":"RAS Template Snapshot"}}"#,
        ],
    );
    assert_eq!(r[2], json!({"result":true}));
    let spec = f.fake.state().clones.last().cloned().unwrap();
    assert_eq!((spec.mode, spec.snapshot.as_deref()), (CloneMode::Linked, Some("RAS Template Snapshot")));
}
