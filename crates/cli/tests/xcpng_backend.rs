//! The XCP-ng backend (`scripts/ci/start-xcpng.sh`) beyond `backends.rs`: `polyvisor check ras`
//! at every template level the front can advertise besides the default `versioning` (`basic` +
//! link clones, `basic`, `none`), and `polyvisor check cloudstack` with the cases that need
//! backend knowledge (a foreign running VM the provider must never reach, a template id that
//! does not exist). A missing contract file FAILS, naming the start script.

use polyvisor_test_support::backend::Backend;
use polyvisor_test_support::harness::{run_bounded, RasCheck};
use polyvisor_test_support::temp;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_polyvisor");

/// One harness at a time on the shared stand-in.
static ONE: Mutex<()> = Mutex::new(());

/// [`run_bounded`] with this file's 900 s bound.
fn bounded(cmd: Command, what: &str) -> std::process::Output {
    run_bounded(cmd, Duration::from_secs(900), what)
}

fn check_ras_at(method: &str, link: bool, expect_level: &str) {
    let b = Backend::load("xcpng").unwrap_or_else(|e| panic!("{e}"));
    let run = RasCheck::for_backend(std::path::Path::new(BIN), &b, method, link).run();
    run.assert_passed(&format!("at {method}/{link}"), Some(expect_level), &b.secrets());
}

#[test]
fn xcpng_passes_check_ras_at_every_other_template_level() {
    let _one = ONE.lock().unwrap_or_else(|p| p.into_inner());
    check_ras_at("basic", true, "basic+link-clones");
    check_ras_at("basic", false, "basic");
    check_ras_at("none", false, "none");
}

#[test]
fn xcpng_passes_check_cloudstack_with_a_foreign_vm_and_a_bad_template() {
    let _one = ONE.lock().unwrap_or_else(|p| p.into_inner());
    let b = Backend::load("xcpng").unwrap_or_else(|e| panic!("{e}"));
    let dir = temp::dir("xcpng-cs-safety");
    let root = dir.path().join("ext");
    let log = dir.path().join("polyvisor.log");
    let out = Command::new(BIN)
        .args(["cloudstack", "install", "--name", "pvxcpsafe", "--driver", "xcpng", "--root"])
        .arg(&root)
        .env("POLYVISOR_LOG_FILE", &log)
        .output()
        .unwrap();
    assert!(out.status.success(), "install: {}", String::from_utf8_lossy(&out.stderr));
    let mut cmd = Command::new(BIN);
    cmd.args(["check", "cloudstack", "--timeout", "600", "--custom-actions", "auto", "--untagged-networks"])
        .args(["--template-id", &b.template_id, "--foreign-vm", "web-01"])
        .args(["--bad-template-id", "00000000-0000-4000-8000-000000000000"])
        .arg("--scan-file")
        .arg(&log);
    for (flag, map) in [
        ("--detail", &b.cloudstack.extension),
        ("--host-detail", &b.cloudstack.host),
        ("--vm-detail", &b.cloudstack.virtualmachine),
    ] {
        for kv in polyvisor_test_support::backend::detail_args(map) {
            cmd.arg(flag).arg(kv);
        }
    }
    cmd.arg("--").arg(root.join("pvxcpsafe/pvxcpsafe.sh")).env("POLYVISOR_LOG_FILE", &log);
    let out = bounded(cmd, "check cloudstack (safety cases)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains(" 0 failed"), "{stdout}");
    for case in ["safety/foreign-vm", "robustness/failed-create-cleans-up"] {
        assert!(stdout.lines().any(|l| l.starts_with("PASS") && l.contains(case)), "{case} ran:\n{stdout}");
    }
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    for s in b.secrets() {
        assert!(!stdout.contains(&s) && !logged.contains(&s), "a secret leaked");
    }
}

// --- Logout at exit (issue 14), end to end through the fronts, on a private stand-in whose
// counters (`/debug/calls`: logouts, live sessions, tasks dropped at logout) nothing else moves.

mod private {
    use serde_json::Value;
    use std::io::{BufRead, BufReader};
    use std::process::{Child, Command, Stdio};

    /// A private XAPI stand-in on a free port (killed on drop), its certificate in `dir`.
    pub struct StandIn {
        child: Child,
        pub url: String,
        pub settings: Value,
        pub vms: Value,
    }

    impl StandIn {
        pub fn start(dir: &std::path::Path) -> StandIn {
            let password = format!("pw-close-{}", std::process::id());
            let mut child = Command::new("python3")
                .arg(polyvisor_test_support::bin::repo_path("testing/xcpng/xapi_standin.py"))
                .args(["--host", "127.0.9.2", "--port", "0", "--task-delay", "0.3", "--certdir"])
                .arg(dir)
                .env("XAPI_STANDIN_PASSWORD", &password)
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("python3 runs the XAPI stand-in");
            let mut line = String::new();
            BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("stand-in output");
            let info: Value =
                serde_json::from_str(&line).unwrap_or_else(|_| panic!("stand-in did not start: {line:?}"));
            let url = info["listening"].as_str().unwrap().to_string();
            let settings = serde_json::json!({
                "host": url.trim_start_matches("https://"),
                "username": "root",
                "password": password,
                "fingerprint": info["fingerprint"],
            });
            StandIn { child, url, settings, vms: info["vms"].clone() }
        }

        /// `{calls, logouts, sessions, tasks_dropped}` (python3's urllib: the cli crate has
        /// no HTTP client of its own; the stand-in's certificate is self-signed).
        pub fn debug(&self) -> Value {
            let code = "import json,ssl,sys,urllib.request as u;c=ssl.create_default_context();\
                        c.check_hostname=False;c.verify_mode=ssl.CERT_NONE;\
                        print(u.urlopen(u.Request(sys.argv[1]+'/debug/calls',data=b''),context=c,timeout=30).read().decode())";
            let out = Command::new("python3").args(["-c", code, &self.url]).output().expect("python3");
            serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)))
        }
    }

    impl Drop for StandIn {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn a_cloudstack_action_logs_its_xapi_session_out() {
    let dir = temp::dir("xcpng-cs-close");
    let s = private::StandIn::start(dir.path());
    let mut cfg = s.settings.clone();
    cfg["driver"] = "xcpng".into();
    let cfg_path = dir.path().join("polyvisor.json");
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let payload = dir.path().join("payload.json");
    std::fs::write(&payload, r#"{"virtualmachinename":"i-2-99-VM","externaldetails":{}}"#).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.arg("cloudstack").arg("--config").arg(&cfg_path).arg("status").arg(&payload).arg("30");
    let out = bounded(cmd, "cloudstack status");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("poweroff"), "{stdout}");
    let d = s.debug();
    assert_eq!((d["logouts"].as_u64(), d["sessions"].as_u64()), (Some(1), Some(0)), "{d}");
}

#[test]
fn a_ras_process_logs_out_at_eof_unless_a_task_it_handed_out_is_pending() {
    use polyvisor_check::ras::process::Provider;
    use serde_json::{json, Value};
    let dir = temp::dir("xcpng-ras-close");
    let s = private::StandIn::start(dir.path());
    let spawn = || {
        let cmd: Vec<String> = vec![BIN.into(), "ras".into(), "--driver".into(), "xcpng".into()];
        let mut p = Provider::spawn(&cmd, Duration::from_secs(60)).expect("spawn polyvisor ras");
        p.call("provider/initialize", None).unwrap();
        let r = p.call("provider/connect", Some(json!({"settings": s.settings}))).unwrap();
        r.test_kit_result().unwrap_or_else(|e| panic!("connect: {e}"));
        p
    };
    let ok = |p: &mut Provider, m: &str, params: Value| -> Value {
        let r = p.call(m, Some(params)).unwrap();
        r.test_kit_result().unwrap_or_else(|e| panic!("{m}: {e}")).clone()
    };
    let end = |mut p: Provider| {
        p.close_stdin();
        let st = p.wait_exit(Duration::from_secs(60)).expect("the provider exits at EOF");
        assert!(st.success(), "{st:?}");
    };
    let vm = s.vms["base-vm"].as_str().unwrap().to_string();
    // 1. Only reads: logged out at EOF.
    let mut p = spawn();
    p.call("guests/list", None).unwrap().test_kit_result().unwrap();
    end(p);
    let d = s.debug();
    assert_eq!((d["logouts"].as_u64(), d["sessions"].as_u64()), (Some(1), Some(0)), "{d}");
    // 2. A snapshot task handed out and never polled: the session (and its task) is kept.
    let mut p = spawn();
    let task = ok(&mut p, "guests/snapshots/create", json!({"id": vm, "name": "kept-session"}))["task_id"]
        .as_str()
        .expect("a task id")
        .to_string();
    end(p);
    let d = s.debug();
    assert_eq!((d["logouts"].as_u64(), d["sessions"].as_u64()), (Some(1), Some(1)), "{d}");
    // 3. A later process finishes it, then logs out its own session.
    let mut p = spawn();
    let t0 = Instant::now();
    let state = loop {
        let r = ok(&mut p, "tasks/get", json!({"id": task}));
        if r["state"] != "running" || t0.elapsed() > Duration::from_secs(60) {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(state["state"], "completed", "{state}");
    assert_eq!(ok(&mut p, "guests/snapshots/exists", json!({"id": vm, "name": "kept-session"})), true);
    end(p);
    let d = s.debug();
    assert_eq!(
        (d["logouts"].as_u64(), d["sessions"].as_u64(), d["tasks_dropped"].as_u64()),
        (Some(2), Some(1), Some(0)),
        "{d}"
    );
}

#[test]
fn a_manageiq_command_logs_its_xapi_session_out() {
    use std::io::Write;
    let dir = temp::dir("xcpng-miq-close");
    let s = private::StandIn::start(dir.path());
    let conn = serde_json::json!({"platform": "xcpng", "options": s.settings}).to_string();
    let mut child = Command::new(BIN)
        .args(["manageiq", "inventory"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn polyvisor manageiq");
    child.stdin.take().unwrap().write_all(conn.as_bytes()).unwrap();
    let t0 = Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if t0.elapsed() > Duration::from_secs(300) {
            let _ = child.kill();
            panic!("manageiq inventory exceeded 300 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("base-vm"), "the inventory lists the stand-in's VMs: {stdout}");
    let d = s.debug();
    assert_eq!((d["logouts"].as_u64(), d["sessions"].as_u64()), (Some(1), Some(0)), "{d}");
}
