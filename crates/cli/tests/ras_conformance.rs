//! End-to-end: `polyvisor check ras` against `polyvisor ras` on the sim driver at every
//! template level (each with its own sim database), and against the fixture providers
//! (a good one passes, a deliberately broken one makes the harness exit 1).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_polyvisor");

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pv-ras-conf-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn fixture() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../check/tests/fixtures/fake_ras_provider.py").display().to_string()
}

/// Runs `polyvisor check ras [harness args] -- <provider>` with a hard deadline.
fn run_check(dir: &Path, harness: &[&str], provider: &[String]) -> (Output, serde_json::Value) {
    let json = dir.join("report.json");
    let db = dir.join("sim.db");
    let mut cmd = Command::new(BIN);
    cmd.args(["check", "ras", "--fast-poll", "--request-timeout", "30", "--json"])
        .arg(&json)
        .args(harness)
        .arg("--")
        .args(provider)
        .env("POLYVISOR_SIM_DB", &db)
        .env("POLYVISOR_SIM_TASK_MS", "0")
        .env("POLYVISOR_SIM_BOOT_MS", "0")
        .env("POLYVISOR_LOG_FILE", dir.join("provider.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("spawn polyvisor check ras");
    let out = wait_with_deadline(child, Duration::from_secs(300));
    let report =
        std::fs::read(&json).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or(serde_json::Value::Null);
    (out, report)
}

fn wait_with_deadline(mut child: std::process::Child, limit: Duration) -> Output {
    let start = Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!("`polyvisor check ras` exceeded {limit:?}; stdout:\n{}", String::from_utf8_lossy(&out.stdout));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

fn cases<'a>(report: &'a serde_json::Value, group: &str, outcome: &str) -> Vec<&'a serde_json::Value> {
    report["cases"]
        .as_array()
        .map(|a| a.iter().filter(|c| c["group"] == group && c["outcome"] == outcome).collect())
        .unwrap_or_default()
}

/// The four §7 flows with this outcome.
fn flows<'a>(report: &'a serde_json::Value, outcome: &str) -> Vec<&'a serde_json::Value> {
    const NAMES: [&str; 4] = ["CreateTemplate", "EnterMaintenance", "ExitMaintenance", "CreateHost"];
    cases(report, "flows", outcome).into_iter().filter(|c| NAMES.iter().any(|n| c["name"] == *n)).collect()
}

fn provider(flags: &[&str]) -> Vec<String> {
    let mut v = vec![BIN.to_string(), "ras".into()];
    v.extend(flags.iter().map(|s| s.to_string()));
    v
}

/// Runs the harness against `polyvisor ras <flags>` on a fresh sim DB and requires a pass.
fn level(tag: &str, flags: &[&str], flows_expected: &str) {
    let dir = temp_dir(tag);
    let (out, report) = run_check(&dir, &[], &provider(flags));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "`polyvisor check ras -- polyvisor ras {}` failed ({:?}).\nstdout:\n{stdout}\nstderr:\n{}",
        flags.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(flows(&report, flows_expected).len(), 4, "expected 4 flows {flows_expected}:\n{stdout}");
    assert!(cases(&report, "hygiene", "pass").len() >= 18, "bad-input suite did not run fully:\n{stdout}");
    assert!(cases(&report, "hygiene", "fail").is_empty() && cases(&report, "wire", "fail").is_empty(), "{stdout}");
    assert!(cases(&report, "low-level", "pass").len() >= 12, "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sim_level_none() {
    level("none", &["--template-method", "none"], "skip");
}

#[test]
fn sim_level_basic() {
    level("basic", &["--template-method", "basic"], "pass");
}

#[test]
fn sim_level_link_clones() {
    level("link", &["--template-method", "basic", "--link-clones"], "pass");
}

#[test]
fn sim_level_versioning() {
    level("versioning", &["--template-method", "versioning"], "pass");
}

fn python() -> String {
    let ok = Command::new("python3").arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
    assert!(
        ok,
        "python3 is required for the RAS fixture providers: apt-get install python3 (listed in scripts/ci/apt-packages.txt)"
    );
    "python3".into()
}

#[test]
fn good_fixture_passes_through_the_cli() {
    let dir = temp_dir("good-fixture");
    let state = dir.join("fake-state.json").display().to_string();
    let prov = vec![python(), fixture(), "--template-method".into(), "versioning".into(), "--state".into(), state];
    let (out, report) = run_check(&dir, &["--junit", dir.join("junit.xml").to_str().unwrap_or("junit.xml")], &prov);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("0 failed"), "{stdout}");
    assert_eq!(flows(&report, "pass").len(), 4, "{stdout}");
    let junit = std::fs::read_to_string(dir.join("junit.xml")).expect("junit written");
    assert!(junit.contains("ras.flows"), "{junit}");
}

#[test]
fn broken_fixture_is_detected() {
    let dir = temp_dir("broken-fixture");
    let state = dir.join("fake-state.json").display().to_string();
    let prov = vec![
        python(),
        fixture(),
        "--template-method".into(),
        "basic".into(),
        "--link-clones".into(),
        "--broken".into(),
        "--state".into(),
        state,
    ];
    let (out, report) = run_check(&dir, &[], &prov);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "a broken provider must fail the harness:\n{stdout}");
    for needle in [
        "FAIL  low-level/provider/initialize",
        "FAIL  wire/replies have no BOM",
        "FAIL  hygiene/blank lines are not answered",
    ] {
        assert!(stdout.contains(needle), "missing `{needle}` in:\n{stdout}");
    }
    assert!(cases(&report, "low-level", "fail").len() >= 4, "{stdout}");
}

#[test]
fn hung_provider_is_bounded() {
    let dir = temp_dir("hung");
    let start = Instant::now();
    let prov = vec!["sh".to_string(), "-c".into(), "sleep 600".into()];
    let json = dir.join("r.json");
    let out = wait_with_deadline(
        Command::new(BIN)
            .args(["check", "ras", "--fast-poll", "--request-timeout", "0.3", "--skip-hygiene", "--json"])
            .arg(&json)
            .arg("--")
            .args(&prov)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn"),
        Duration::from_secs(120),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(start.elapsed() < Duration::from_secs(60), "took {:?}", start.elapsed());
    assert!(String::from_utf8_lossy(&out.stdout).contains("no reply within 300 ms"));
}
