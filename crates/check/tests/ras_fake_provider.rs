//! `check ras` against the Python fake provider fixture: every template level passes, the
//! deliberately broken variant fails with the defects named.

use clap::Parser;
use std::path::PathBuf;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    ras: polyvisor_check::ras::Args,
}

fn fixture() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake_ras_provider.py").display().to_string()
}

fn python() -> String {
    let ok =
        std::process::Command::new("python3").arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
    assert!(ok, "python3 is required for the fake provider fixture (apt-get install python3)");
    "python3".into()
}

/// Runs the harness in-process; returns (passed, JSON report).
fn check(extra: &[&str], provider: &[&str]) -> (bool, serde_json::Value) {
    let dir = std::env::temp_dir().join(format!(
        "pvcheck-fake-{}-{}",
        std::process::id(),
        provider.join("_").replace(['-', ' '], "")
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("report.json");
    let mut argv: Vec<String> = vec![
        "x".into(),
        "--fast-poll".into(),
        "--request-timeout".into(),
        "10".into(),
        "--quiet".into(),
        "--json".into(),
        json.display().to_string(),
    ];
    argv.extend(extra.iter().map(|s| s.to_string()));
    argv.push("--".into());
    argv.push(python());
    argv.push(fixture());
    argv.extend(provider.iter().map(|s| s.to_string()));
    let state = dir.join("state.json");
    let _ = std::fs::remove_file(&state);
    argv.push("--state".into());
    argv.push(state.display().to_string());
    let cli = Cli::try_parse_from(&argv).expect("args parse");
    let passed = polyvisor_check::ras::run(cli.ras).expect("harness ran");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    (passed, report)
}

fn failures(report: &serde_json::Value) -> Vec<String> {
    report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["outcome"] == "fail")
        .map(|c| format!("{}/{}: {}", c["group"], c["name"], c["reason"]))
        .collect()
}

fn passes(provider: &[&str], min_cases: usize) -> serde_json::Value {
    let (ok, report) = check(&["--setting", "token=hunter2-secret"], provider);
    assert!(ok, "expected pass, failures: {:#?}", failures(&report));
    let n = report["cases"].as_array().unwrap().iter().filter(|c| c["outcome"] == "pass").count();
    assert!(n >= min_cases, "only {n} cases passed");
    report
}

#[test]
fn level_none_passes_and_skips_flows() {
    let r = passes(&["--template-method", "none"], 30);
    let skipped: Vec<_> =
        r["cases"].as_array().unwrap().iter().filter(|c| c["group"] == "flows" && c["outcome"] == "skip").collect();
    assert_eq!(skipped.len(), 4, "{r:#}");
}

#[test]
fn level_basic_passes() {
    let r = passes(&["--template-method", "basic", "--task-polls", "2"], 40);
    assert_eq!(r["facts"]["template_level"], "basic");
    assert!(r["cases"].as_array().unwrap().iter().any(|c| c["name"] == "CreateHost" && c["outcome"] == "pass"));
}

#[test]
fn level_link_clones_passes() {
    let r = passes(&["--template-method", "basic", "--link-clones", "--suspend"], 45);
    assert_eq!(r["facts"]["template_level"], "basic+link-clones");
}

#[test]
fn level_versioning_passes() {
    let r = passes(&["--template-method", "versioning", "--suspend"], 45);
    assert!(r["cases"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["name"] == "guests/snapshots/revert" && c["outcome"] == "pass"));
}

#[test]
fn broken_provider_fails_with_reasons() {
    let (ok, report) = check(&[], &["--template-method", "basic", "--link-clones", "--broken"]);
    assert!(!ok);
    let all = failures(&report).join("\n");
    for needle in [
        "tasks_polling_rate",
        "guests_polling_rate in 3..=900",
        "JSON strings",
        "upper-case",
        "loopback",
        "BOM",
        "CRLF",
        "id\\\":7",
        "Missing 'output'",
        "blank lines",
    ] {
        assert!(all.contains(needle), "expected a failure mentioning {needle}; failures:\n{all}");
    }
}

#[test]
fn a_provider_that_adopts_a_foreign_vm_by_name_fails() {
    let (ok, report) = check(&[], &["--template-method", "basic", "--adopt-by-name"]);
    assert!(!ok, "adopting vm-a by its name must fail the run");
    let all = failures(&report).join("\n");
    assert!(all.contains("adopted by its name"), "failures:\n{all}");
    let (ok, report) = check(&[], &["--template-method", "basic"]);
    assert!(ok, "the same provider without the defect passes: {:#?}", failures(&report));
}

#[test]
fn noisy_stderr_is_drained_and_reported() {
    let (ok, report) = check(&[], &["--template-method", "none", "--stderr-kb", "2048"]);
    assert!(!ok, "2 MiB of stderr must fail the quiet-stderr rule");
    let f = failures(&report);
    assert!(f.len() == 1 && f[0].contains("stderr"), "{f:#?}");
}

#[test]
fn secrets_never_reach_the_report() {
    let (_, report) = check(
        &["--setting", "token_secret=hunter2-secret", "--guest", "no-such-guest"],
        &["--template-method", "basic", "--broken"],
    );
    assert!(!report.to_string().contains("hunter2-secret"));
}
