//! The harness context: the extension command, the configured details, the payload
//! directory, and a log of every run for the hygiene cases. Shared by reference across
//! the threads of the concurrency cases.

use super::gson;
use super::invoke::{self, Run, PIPE_LIMIT};
use super::parse::{self, Power};
use super::payload::{self, Env, Phase, Vm};
use super::redact::Secrets;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// What the hygiene cases need to know about one run.
#[derive(Debug, Clone)]
pub struct Logged {
    /// `argv[1]`.
    pub action: String,
    /// Total output bytes.
    pub output_len: usize,
    /// Output was exactly one JSON object (or empty where allowed).
    pub json_ok: bool,
    /// A known secret seen in the output (described, never the value).
    pub leak: Option<String>,
    /// An excerpt of the (redacted) output.
    pub excerpt: String,
}

/// Shared state of one harness run.
#[derive(Debug)]
pub struct Ctx {
    /// The extension command (program and leading arguments).
    pub cmd: Vec<String>,
    /// Configured details and VM sizing.
    pub env: Env,
    /// `<dataDir>/<extension name>/` where payload files go.
    pub dir: PathBuf,
    /// `argv[3]` for lifecycle actions.
    pub lifecycle_timeout: u64,
    /// `argv[3]` for custom actions.
    pub action_timeout: u64,
    /// Secrets to keep out of the report and to look for in outputs.
    pub secrets: Mutex<Secrets>,
    /// Every run so far.
    pub log: Mutex<Vec<Logged>>,
}

impl Ctx {
    /// Writes `payload` as `<dir>/<uuid>.json` in Gson form.
    pub fn write_payload(&self, payload: &Value) -> Result<PathBuf, String> {
        let path = self.dir.join(format!("{}.json", payload::uuid()));
        let mut payload = payload.clone();
        gson::strip_nulls(&mut payload);
        std::fs::write(&path, gson::to_string(&payload))
            .map_err(|e| format!("cannot write payload {}: {e}", path.display()))?;
        Ok(path)
    }

    /// Runs `action` on an existing payload path with a raw timeout argument.
    pub fn run_raw(
        &self,
        action: &str,
        path: &Path,
        timeout_arg: &str,
        kill_after: Duration,
        allow_empty: bool,
        console: bool,
    ) -> Run {
        let r = invoke::run(&self.cmd, action, path, timeout_arg, kill_after);
        let text = r.text();
        let json_ok = r.timed_out
            || r.spawn_error.is_some()
            || parse::is_one_json_object(&text)
            || (allow_empty && text.is_empty());
        let leak = {
            let s = self.secrets.lock().map(|s| s.clone()).unwrap_or_default();
            // The VNC password may legitimately come back from getconsole.
            if console {
                s.leaked_in(&mask_console(&text))
            } else {
                s.leaked_in(&text)
            }
        };
        let logged = Logged {
            action: action.into(),
            output_len: r.output_len,
            json_ok,
            leak,
            excerpt: self.redact(&invoke::excerpt(&text, 200)),
        };
        if let Ok(mut l) = self.log.lock() {
            l.push(logged);
        }
        r
    }

    /// Writes `payload` and runs `action` with `timeout` seconds (also the kill limit).
    pub fn run(&self, action: &str, payload: &Value, timeout: u64) -> Result<Run, String> {
        let path = self.write_payload(payload)?;
        let allow_empty = action == "prepare";
        let console = action == "getconsole";
        Ok(self.run_raw(action, &path, &timeout.to_string(), Duration::from_secs(timeout), allow_empty, console))
    }

    /// Runs a lifecycle action for `vm`.
    pub fn lifecycle(&self, vm: &Vm, action: &str, phase: Phase) -> Result<Run, String> {
        self.run(action, &vm.lifecycle_payload(&self.env, action, phase), self.lifecycle_timeout)
    }

    /// Runs a lifecycle action and requires CloudStack success (exit 0, output < 64 KiB).
    pub fn lifecycle_ok(&self, vm: &Vm, action: &str, phase: Phase) -> Result<Run, String> {
        let r = self.lifecycle(vm, action, phase)?;
        self.expect_ok(&r)?;
        Ok(r)
    }

    /// Success as CloudStack sees it, plus the pipe-size rule.
    pub fn expect_ok(&self, r: &Run) -> Result<(), String> {
        if !r.success() {
            return Err(format!("CloudStack would see a failure: {}", self.describe(r)));
        }
        self.expect_small(r)
    }

    /// A clean refusal: the extension ran, exited non-zero on its own, output small.
    pub fn expect_refusal(&self, r: &Run, what: &str) -> Result<(), String> {
        self.expect_small(r)?;
        if r.spawn_error.is_some() || r.timed_out || r.success() {
            return Err(format!("expected a quick non-zero exit for {what}: {}", self.describe(r)));
        }
        Ok(())
    }

    /// Output below the pipe buffer.
    pub fn expect_small(&self, r: &Run) -> Result<(), String> {
        if r.output_len >= PIPE_LIMIT {
            return Err(format!(
                "`{}` wrote {} B; CloudStack reads only after exit, so ≥ 64 KiB blocks the extension until it is killed",
                r.action, r.output_len
            ));
        }
        Ok(())
    }

    /// The power state CloudStack derives from `status` (`state` is CloudStack's view).
    pub fn status(&self, vm: &Vm, state: &'static str) -> Result<(Power, Run), String> {
        let r = self.lifecycle(vm, "status", Phase::Other(state))?;
        self.expect_small(&r)?;
        let p = if r.success() { parse::status_power(&r.text()) } else { Power::Unknown };
        Ok((p, r))
    }

    /// Requires `status` to report `want`.
    pub fn expect_power(&self, vm: &Vm, state: &'static str, want: Power) -> Result<(), String> {
        let (p, r) = self.status(vm, state)?;
        if p != want {
            return Err(format!("status of {} gave {p:?}, expected {want:?}: {}", vm.name, self.describe(&r)));
        }
        Ok(())
    }

    /// A redacted description of a run.
    pub fn describe(&self, r: &Run) -> String {
        self.redact(&r.describe())
    }

    /// `text` with known secrets and printed passwords masked.
    pub fn redact(&self, text: &str) -> String {
        self.secrets.lock().map(|s| s.redact(text)).unwrap_or_else(|_| "<redaction failed>".into())
    }

    /// Registers a secret value (e.g. a VM's VNC password).
    pub fn add_secret(&self, s: &str) {
        if let Ok(mut g) = self.secrets.lock() {
            g.add(s);
        }
    }
}

/// Removes the `console.password` value before the leak check of `getconsole` output.
fn mask_console(text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(mut v) => {
            if let Some(c) = v.get_mut("console").and_then(Value::as_object_mut) {
                c.remove("password");
            }
            v.to_string()
        }
        Err(_) => text.to_string(),
    }
}
