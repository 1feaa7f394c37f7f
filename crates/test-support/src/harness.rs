//! Running `polyvisor check ras` the way the backend and level tests do, bounded in time.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `cmd` with stdin closed and stdout/stderr captured (read as they come, so a chatty
/// child never blocks on a full pipe); kills it and panics (naming `what`) when it outlives
/// `bound`.
pub fn run_bounded(mut cmd: Command, bound: Duration, what: &str) -> Output {
    use std::io::Read;
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect(what);
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if t0.elapsed() > bound {
            let _ = child.kill();
            panic!("{what} exceeded {} s", bound.as_secs());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("{what}: {:?}", t0.elapsed());
    Output { status, stdout: out.join().unwrap_or_default(), stderr: err.join().unwrap_or_default() }
}

/// One `polyvisor check ras` run against `bin ras --driver <driver> <ras_args>`.
pub struct RasCheck<'a> {
    /// The `polyvisor` binary (harness and provider).
    pub bin: &'a Path,
    /// The driver the provider runs.
    pub driver: &'a str,
    /// The connect settings (a JSON object).
    pub settings: String,
    /// The guest the flows start from (`--guest`).
    pub guest: &'a str,
    /// Arguments after `ras --driver <driver>` (template method, link clones).
    pub ras_args: Vec<String>,
    /// Hard bound on the whole run.
    pub bound: Duration,
}

/// What a [`RasCheck`] printed, and the provider's log.
pub struct RasRun {
    /// Whether the harness exited 0.
    pub success: bool,
    /// The report.
    pub stdout: String,
    /// The provider's `--log-file`.
    pub log: String,
}

impl<'a> RasCheck<'a> {
    /// A run on a backend contract's driver, settings and source guest at template method
    /// `method` with `--link-clones <link>`, bounded to 15 minutes.
    pub fn for_backend(bin: &'a Path, b: &'a crate::backend::Backend, method: &str, link: bool) -> Self {
        RasCheck {
            bin,
            driver: b.driver().expect("the contract names its driver"),
            settings: b.settings_json(),
            guest: &b.source_guest,
            ras_args: vec!["--template-method".into(), method.into(), "--link-clones".into(), link.to_string()],
            bound: Duration::from_secs(900),
        }
    }

    /// Runs the harness (`--fast-poll`, polls capped so the wait in seconds stays what RAS
    /// allows, 120 s per request) with the provider logging to a temp file.
    pub fn run(&self) -> RasRun {
        let dir = crate::temp::dir(&format!("ras-{}", self.driver));
        let log = dir.path().join("provider.log");
        let mut cmd = Command::new(self.bin);
        cmd.args(["check", "ras", "--fast-poll", "--max-task-polls", "6000", "--request-timeout", "120"])
            .args(["--guest", self.guest])
            .arg("--settings")
            .arg(&self.settings)
            .arg("--")
            .arg(self.bin)
            .arg("--log-file")
            .arg(&log)
            .args(["ras", "--driver", self.driver])
            .args(&self.ras_args);
        let what = format!("check ras on {} with {:?}", self.driver, self.ras_args);
        let out = run_bounded(cmd, self.bound, &what);
        RasRun {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            log: std::fs::read_to_string(&log).unwrap_or_default(),
        }
    }
}

impl RasRun {
    /// Panics unless every case passed, the run was at `level` (when given), and none of
    /// `secrets` shows in the report or the provider's log.
    pub fn assert_passed(&self, what: &str, level: Option<&str>, secrets: &[String]) {
        assert!(self.success && self.stdout.contains(" 0 failed"), "check ras {what}:\n{}", self.stdout);
        if let Some(l) = level {
            assert!(
                self.stdout.contains(&format!("at level {l};")),
                "check ras {what}: expected level {l}:\n{}",
                self.stdout
            );
        }
        for s in secrets.iter().filter(|s| !s.is_empty()) {
            assert!(
                !self.stdout.contains(s.as_str()) && !self.log.contains(s.as_str()),
                "check ras {what}: a secret leaked"
            );
        }
    }
}
