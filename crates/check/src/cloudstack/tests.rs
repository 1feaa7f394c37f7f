//! Fixture-driven tests: the harness against a correct scaffold-style bash extension
//! (everything passes) and a broken one (the classic mistakes are each detected).

use super::{payload, run, Args};
use clap::Parser;
use serde_json::Value;
use std::path::PathBuf;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: Args,
}

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/cloudstack/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs the harness with `flags` against `fixture`; returns (passed, report JSON).
fn check(fixture_name: &str, flags: &[&str]) -> (bool, Value) {
    let json: PathBuf = std::env::temp_dir().join(format!("pvcheck-cs-{}.json", payload::uuid()));
    let mut argv = vec!["check".to_string(), "--quiet".into(), "--json".into(), json.display().to_string()];
    argv.extend(flags.iter().map(|s| s.to_string()));
    argv.push("--".into());
    argv.push(fixture(fixture_name));
    let cli = Cli::try_parse_from(argv).expect("flags parse");
    let passed = run(cli.args).expect("harness runs");
    let report: Value = serde_json::from_slice(&std::fs::read(&json).expect("report written")).expect("report is JSON");
    let _ = std::fs::remove_file(&json);
    (passed, report)
}

fn outcome<'a>(report: &'a Value, group: &str, name: &str) -> &'a str {
    report["cases"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["group"] == group && c["name"] == name))
        .and_then(|c| c["outcome"].as_str())
        .unwrap_or("missing")
}

fn failures(report: &Value) -> Vec<String> {
    report["cases"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter(|c| c["outcome"] == "fail")
                .map(|c| format!("{}/{}: {}", c["group"], c["name"], c["reason"]))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn good_scaffold_extension_passes() {
    let (passed, report) =
        check("good-extension.sh", &["--template-id", "101", "--detail", "secret=s3cr=t-value", "--vms", "3"]);
    assert!(passed, "failures: {:#?}", failures(&report));
    assert_eq!(outcome(&report, "lifecycle", "create-retried-is-idempotent"), "pass");
    assert_eq!(outcome(&report, "custom-actions", "CreateSnapshot"), "pass");
    assert_eq!(outcome(&report, "concurrency", "parallel-create-3"), "pass");
    assert_eq!(outcome(&report, "lifecycle", "getconsole"), "skip", "the scaffold declines getconsole");
    assert!(report["facts"]["status_median_ms"].is_number());
}

#[test]
fn broken_extension_is_caught() {
    let (passed, report) = check("broken-extension.sh", &["--detail", "secret=s3cr=t-value", "--vms", "2"]);
    assert!(!passed);
    for (g, n) in [
        ("robustness", "fqcn-refused/com.cloud.agent.api.ModifyStoragePoolCommand"),
        ("robustness", "unknown-action-refused"),
        ("lifecycle", "prepare"),
        ("hygiene", "one-json-document-per-output"),
        ("hygiene", "no-secrets-in-output"),
    ] {
        assert_eq!(outcome(&report, g, n), "fail", "{g}/{n} should fail: {:#?}", failures(&report));
    }
    let text = report.to_string();
    assert!(!text.contains("s3cr") && !text.contains("\\\\u003dt-value"), "secret leaked into the report");
}

#[test]
fn broken_status_and_absent_stop_are_caught_without_prepare() {
    let (passed, report) = check("broken-extension.sh", &["--no-prepare", "--vms", "0", "--custom-actions", "skip"]);
    assert!(!passed);
    // stderr noise + "running": CloudStack reads PowerUnknown.
    assert_eq!(outcome(&report, "lifecycle", "create"), "fail", "{:#?}", failures(&report));
}

#[test]
fn custom_actions_require_fails_when_not_offered() {
    let (passed, report) =
        check("good-extension.sh", &["--custom-actions", "require", "--vms", "0", "--status-samples", "1"]);
    assert!(!passed);
    assert_eq!(outcome(&report, "custom-actions", "Suspend"), "fail");
    assert_eq!(outcome(&report, "custom-actions", "ListSnapshots"), "pass");
}

#[test]
fn bad_flags_and_non_executable_are_rejected() {
    assert!(Cli::try_parse_from(["check", "--detail", "novalue", "--", "/bin/true"]).is_err());
    let plain = std::env::temp_dir().join(format!("pvcheck-cs-{}.sh", payload::uuid()));
    std::fs::write(&plain, "#!/bin/sh\n").expect("write");
    let cli = Cli::try_parse_from(["check", "--", plain.to_str().unwrap_or_default()]).expect("parses");
    let err = run(cli.args).expect_err("not executable");
    let _ = std::fs::remove_file(&plain);
    assert!(err.contains("not executable"), "{err}");
}

#[test]
fn hanging_extension_is_abandoned_quickly() {
    let started = std::time::Instant::now();
    let (passed, report) = check("stdin-reader-extension.sh", &["--timeout", "2"]);
    assert!(!passed);
    assert_eq!(outcome(&report, "robustness", "responds"), "fail");
    assert!(started.elapsed() < std::time::Duration::from_secs(6), "took {:?}", started.elapsed());
    assert_eq!(report["cases"].as_array().map(Vec::len), Some(4), "only the probe and hygiene run");
}

#[test]
fn wrong_status_words_are_caught() {
    let (_, report) =
        check("broken-extension.sh", &["--vms", "0", "--custom-actions", "skip", "--status-samples", "1"]);
    assert_eq!(
        outcome(&report, "robustness", "status-of-unknown-vm-is-poweroff"),
        "fail",
        "`stopped` is PowerUnknown to CloudStack"
    );
}

#[test]
fn timeout_argument_honoured_or_not() {
    let base = ["--vms", "0", "--custom-actions", "skip", "--status-samples", "1", "--slow-timeout", "2"];
    let mut honours = base.to_vec();
    honours.extend(["--slow-env", "FIXTURE_CREATE_SLEEP=6"]);
    let (passed, report) = check("good-extension.sh", &honours);
    assert!(passed, "{:#?}", failures(&report));
    assert_eq!(outcome(&report, "robustness", "timeout-honoured"), "pass");

    let mut overruns = base.to_vec();
    overruns.extend(["--slow-env", "FIXTURE_CREATE_SLEEP=6", "--slow-env", "FIXTURE_IGNORE_TIMEOUT=1"]);
    let (passed, report) = check("good-extension.sh", &overruns);
    assert!(!passed);
    assert_eq!(outcome(&report, "robustness", "timeout-honoured"), "fail");
    // The killed create's `sleep 6` grandchild keeps the pipe open: the case (kill at 2 s,
    // then status and delete) must not wait for it.
    let millis = report["cases"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["group"] == "robustness" && c["name"] == "timeout-honoured"))
        .and_then(|c| c["millis"].as_u64())
        .expect("case duration");
    assert!(millis < 5500, "the killed run's sleeping grandchild stalled the harness ({millis} ms)");
}

#[test]
fn scan_file_finds_a_logged_secret() {
    let log = std::env::temp_dir().join(format!("pvcheck-cs-{}.log", payload::uuid()));
    std::fs::write(&log, "debug: auth with s3cr=t-value\n").expect("write");
    let path = log.display().to_string();
    let (passed, report) = check(
        "good-extension.sh",
        &["--detail", "secret=s3cr=t-value", "--vms", "0", "--status-samples", "1", "--scan-file", &path],
    );
    let _ = std::fs::remove_file(&log);
    assert!(!passed);
    assert_eq!(outcome(&report, "hygiene", &format!("no-secrets-in-file/{path}")), "fail");
    assert!(!report.to_string().contains("s3cr"), "the report names the leak, never the value");
}

/// A payload directory holding one backend VM the extension did not create (the fixtures'
/// `<name>.foreign` state file), running.
fn data_dir_with_foreign_vm(name: &str) -> (PathBuf, PathBuf) {
    let root = std::env::temp_dir().join(format!("pvcheck-cs-safety-{}", payload::uuid()));
    let state = root.join("polyvisor-check/.fixture-state");
    std::fs::create_dir_all(&state).expect("state dir");
    let foreign = state.join(format!("{name}.foreign"));
    std::fs::write(&foreign, "running").expect("foreign VM");
    (root, foreign)
}

const SAFETY_FLAGS: [&str; 8] =
    ["--vms", "0", "--custom-actions", "skip", "--status-samples", "1", "--interrupt-after-ms", "300"];

#[test]
fn safety_cases_pass_on_a_correct_extension() {
    let (root, foreign) = data_dir_with_foreign_vm("web-01");
    let dir = root.display().to_string();
    let mut flags = SAFETY_FLAGS.to_vec();
    flags.extend(["--template-id", "101", "--foreign-vm", "web-01", "--data-dir", &dir, "--keep-payloads"]);
    let (passed, report) = check("good-extension.sh", &flags);
    let still = std::fs::read_to_string(&foreign).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&root);
    assert!(passed, "failures: {:#?}", failures(&report));
    for name in [
        "foreign-vm-unknown-to-status",
        "foreign-vm-not-in-statuses",
        "foreign-vm-not-started-or-rebooted",
        "foreign-vm-not-adopted-by-create",
        "foreign-vm-not-stopped-or-deleted",
        "interrupted-create-converges/300ms",
        "broadcast-uri-refused/vxlan",
        "broadcast-uri-refused/pvlan",
        "broadcast-uri-refused/vlan-not-a-number",
        "broadcast-uri-refused/vlan-out-of-range",
        "broadcast-uri-refused/missing-on-vlan-network",
        "broadcast-uri-untagged-accepted",
    ] {
        assert_eq!(outcome(&report, "safety", name), "pass", "{name}");
    }
    assert_eq!(still, "running", "the foreign VM was left alone");
}

#[test]
fn safety_cases_catch_a_name_matching_provider() {
    let (root, foreign) = data_dir_with_foreign_vm("web-01");
    let dir = root.display().to_string();
    let mut flags = SAFETY_FLAGS.to_vec();
    flags.extend(["--foreign-vm", "web-01", "--data-dir", &dir, "--keep-payloads"]);
    let (passed, report) = check("name-matching-extension.sh", &flags);
    let still = std::fs::read_to_string(&foreign).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&root);
    assert!(!passed);
    for name in [
        "foreign-vm-unknown-to-status",
        "foreign-vm-not-in-statuses",
        "interrupted-create-converges/300ms",
        "broadcast-uri-refused/vxlan",
        "broadcast-uri-refused/vlan-out-of-range",
        "broadcast-uri-refused/missing-on-vlan-network",
    ] {
        assert_eq!(outcome(&report, "safety", name), "fail", "{name}: {:#?}", failures(&report));
    }
    // Once a name match is seen, the destructive probes are not run: the VM is spared.
    assert_eq!(outcome(&report, "safety", "foreign-vm-not-stopped-or-deleted"), "skip");
    assert_eq!(still, "running", "the harness spared the foreign VM");
}

#[test]
fn foreign_vm_cases_are_reported_not_run_without_the_option() {
    let (passed, report) = check("good-extension.sh", &SAFETY_FLAGS);
    assert!(passed, "{:#?}", failures(&report));
    let case = report["cases"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["group"] == "safety" && c["name"] == "foreign-vm"))
        .expect("the case is reported");
    assert_eq!(case["outcome"], "skip");
    assert!(case["reason"].as_str().unwrap_or_default().contains("--foreign-vm"), "{case}");
}
