//! `polyvisor check cloudshell -- <shell package folder or zip>`: behaves like a CloudShell
//! Execution Server for **any** cloud provider shell. Creates a Python environment with the
//! package's `requirements.txt` (a venv over the system site-packages, so a CI that
//! installed the pinned Quali libraries installs nothing here), then runs the Python
//! runner (`testing/cloudshell/runner.py`, embedded) that loads `MainClass` from
//! `drivermetadata.xml`, builds real `cloudshell-shell-core` contexts, serves a local
//! CloudShell API stand-in (127.0.9.7) and runs the L3 or L2 sandbox flow plus bad input.
//! Each runner case becomes a report case (text, JSON, JUnit).

use crate::report::{Outcome, Report};
use crate::ReportArgs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNNER: &str = include_str!("../../../testing/cloudshell/runner.py");
const STANDIN: &str = include_str!("../../../testing/cloudshell/standin.py");

/// How long the venv's `pip install` may take.
const PIP_BUDGET: Duration = Duration::from_secs(600);
/// How long the whole runner may take.
const RUN_BUDGET: Duration = Duration::from_secs(30 * 60);

/// `polyvisor check cloudshell` options.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// polyvisor driver the provider resource uses.
    #[arg(long, default_value = "sim")]
    pub driver: String,
    /// `Driver Settings` attribute (a JSON object).
    #[arg(long, default_value = "{}")]
    pub settings: String,
    /// `Driver Secrets` attribute (a JSON object; sent encrypted, decrypted through the API).
    #[arg(long, default_value = "{}")]
    pub secrets: String,
    /// Template (id or name) the deploys clone.
    #[arg(long, default_value = "tpl-debian12")]
    pub template: String,
    /// The polyvisor executable the shell runs (`Polyvisor Path`); default: this one.
    #[arg(long)]
    pub polyvisor: Option<PathBuf>,
    /// Python interpreter used to create the environment.
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// Virtual environment to create/reuse (default: one per requirements file under the temp dir).
    #[arg(long)]
    pub venv: Option<PathBuf>,
    /// Skip `remote_refresh_ip` (as CloudShell does for apps whose `Wait for IP` is false),
    /// for backends whose guests report no address.
    #[arg(long)]
    pub no_wait_for_ip: bool,
    /// Address of the CloudShell API stand-in.
    #[arg(long, default_value = "127.0.9.7")]
    pub api_host: String,
    /// Report options.
    #[command(flatten)]
    pub report: ReportArgs,
    /// The shell package: its folder or its zip.
    #[arg(last = true, required = true)]
    pub package: Vec<String>,
}

/// Runs a command with a deadline; returns (status ok, stdout, stderr).
fn bounded(cmd: &mut Command, budget: Duration, stdin: Option<&str>) -> Result<(bool, String, String), String> {
    let mut child = cmd
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    if let (Some(text), Some(mut w)) = (stdin, child.stdin.take()) {
        use std::io::Write;
        let _ = w.write_all(text.as_bytes());
    }
    let mut out = child.stdout.take().ok_or("no stdout")?;
    let mut err = child.stderr.take().ok_or("no stderr")?;
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + budget;
    let status = loop {
        if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{:?} did not finish within {} s", cmd.get_program(), budget.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Ok((status.success(), t_out.join().unwrap_or_default(), t_err.join().unwrap_or_default()))
}

fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Creates (or reuses) the venv with the package's requirements; returns its python.
fn venv(args: &Args, work: &Path, runner: &Path, package: &str) -> Result<PathBuf, String> {
    let (ok, reqs, err) = bounded(
        Command::new(&args.python).arg(runner).arg("--requirements").arg(package),
        Duration::from_secs(60),
        None,
    )?;
    if !ok {
        return Err(format!("cannot read the package's requirements: {}", err.trim()));
    }
    let dir = args
        .venv
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("polyvisor-cloudshell-venv-{:016x}", fnv(&reqs))));
    let python = dir.join("bin").join("python");
    if !python.exists() {
        let (ok, _, err) = bounded(
            Command::new(&args.python).args(["-m", "venv", "--system-site-packages"]).arg(&dir),
            Duration::from_secs(120),
            None,
        )?;
        if !ok {
            return Err(format!("cannot create the venv {}: {}", dir.display(), err.trim()));
        }
    }
    let req_file = work.join("requirements.txt");
    std::fs::write(&req_file, &reqs).map_err(|e| e.to_string())?;
    let (ok, _, err) = bounded(
        Command::new(&python).args(["-m", "pip", "install", "-q", "--disable-pip-version-check", "-r"]).arg(&req_file),
        PIP_BUDGET,
        None,
    )?;
    if !ok {
        return Err(format!("pip install -r requirements.txt failed: {}", err.trim()));
    }
    Ok(python)
}

/// Runs the harness.
pub fn run(args: Args) -> Result<bool, String> {
    let [package] = args.package.as_slice() else {
        return Err("give exactly one shell package (folder or zip) after `--`".into());
    };
    let package = std::fs::canonicalize(package).map_err(|e| format!("{package}: {e}"))?;
    let package = package.to_string_lossy().into_owned();
    let polyvisor = match &args.polyvisor {
        Some(p) => p.clone(),
        None => std::env::current_exe().map_err(|e| e.to_string())?,
    };
    let settings: serde_json::Value =
        serde_json::from_str(&args.settings).map_err(|_| "--settings must be a JSON object".to_string())?;
    let secrets: serde_json::Value =
        serde_json::from_str(&args.secrets).map_err(|_| "--secrets must be a JSON object".to_string())?;
    let work = tempfile_dir()?;
    let runner = work.join("runner.py");
    std::fs::write(&runner, RUNNER).map_err(|e| e.to_string())?;
    std::fs::write(work.join("standin.py"), STANDIN).map_err(|e| e.to_string())?;
    let mut report = Report::new("cloudshell", &package, args.report.quiet);
    let t = Instant::now();
    let python = match venv(&args, &work, &runner, &package) {
        Ok(p) => {
            report.record("environment", "venv with the package's requirements.txt", Outcome::Pass, t);
            p
        }
        Err(e) => {
            report.record("environment", "venv with the package's requirements.txt", Outcome::Fail(e), t);
            let _ = std::fs::remove_dir_all(&work);
            return report.finish(&args.report).map_err(|e| e.to_string());
        }
    };
    let cfg = serde_json::json!({
        "package": package, "driver": args.driver, "driver_settings": settings, "driver_secrets": secrets,
        "template": args.template, "polyvisor": polyvisor, "api_host": args.api_host,
        "wait_for_ip": !args.no_wait_for_ip,
    });
    let cfg_path = work.join("config.json");
    std::fs::write(&cfg_path, cfg.to_string()).map_err(|e| e.to_string())?;
    let mut child = Command::new(&python)
        .arg(&runner)
        .arg(&cfg_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run the runner: {e}"))?;
    let mut err = child.stderr.take().ok_or("no stderr")?;
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let out = child.stdout.take().ok_or("no stdout")?;
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + RUN_BUDGET;
    let mut last = Instant::now();
    let mut seen = 0usize;
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    report.note(line);
                    continue;
                };
                let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or_default().to_string();
                let ms = v.get("ms").and_then(|x| x.as_u64()).unwrap_or(0);
                let started = Instant::now().checked_sub(Duration::from_millis(ms)).unwrap_or(last);
                let outcome = if v.get("skip").and_then(|x| x.as_bool()) == Some(true) {
                    Outcome::Skip(s("message"))
                } else if v.get("ok").and_then(|x| x.as_bool()) == Some(true) {
                    Outcome::Pass
                } else {
                    Outcome::Fail(s("message"))
                };
                report.record(&s("group"), &s("name"), outcome, started);
                seen += 1;
                last = Instant::now();
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                report.record(
                    "runner",
                    "finishes in time",
                    Outcome::Fail(format!("killed after {} s", RUN_BUDGET.as_secs())),
                    last,
                );
                break;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    let stderr = t_err.join().unwrap_or_default();
    if !status.success() || seen == 0 {
        let tail: Vec<&str> = stderr.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect();
        report.record("runner", "exits cleanly", Outcome::Fail(format!("{status}: {}", tail.join("\n"))), last);
    }
    let _ = std::fs::remove_dir_all(&work);
    report.finish(&args.report).map_err(|e| e.to_string())
}

fn tempfile_dir() -> Result<PathBuf, String> {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("polyvisor-check-cloudshell-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}
