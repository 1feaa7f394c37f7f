//! One harness session against a provider: the Test Kit helpers (send, receive, ASYNC,
//! wait-for-power-state) with bounds the Test Kit lacks, and restarts of a dead process.

use super::checks::{self, Caps, TaskState};
use super::process::{short, ProcError, Provider, Reply, WireStats};
use serde_json::{json, Value};
use std::time::Duration;

/// Tunables resolved from the command line.
#[derive(Debug, Clone)]
pub struct Options {
    /// The provider command.
    pub command: Vec<String>,
    /// `params.settings` for `provider/connect`.
    pub settings: Value,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Cap on `tasks/get` polls per task (`None`: the advertised `tasks_polling_retries`).
    pub max_task_polls: Option<u64>,
    /// Cap on `guests/get` polls while waiting for a power state.
    pub max_power_polls: u64,
    /// Poll every 100 ms instead of the advertised rates.
    pub fast_poll: bool,
}

/// A provider process plus what the harness learned from it.
pub struct Session {
    /// Options.
    pub opts: Options,
    /// The live process (`None` while not started).
    pub provider: Option<Provider>,
    /// Capabilities from the last `provider/initialize`.
    pub caps: Option<Caps>,
    /// How many processes have been started.
    pub starts: u32,
    /// Summaries of processes that died or were replaced (for the report).
    pub graveyard: Vec<String>,
    /// Wire counters of retired processes.
    pub past_wire: Vec<WireStats>,
    /// The stderr tail of the last retired process.
    pub last_stderr: Option<String>,
}

impl Session {
    /// A session; nothing is started yet.
    pub fn new(opts: Options) -> Self {
        Session {
            opts,
            provider: None,
            caps: None,
            starts: 0,
            graveyard: Vec::new(),
            past_wire: Vec::new(),
            last_stderr: None,
        }
    }

    /// Starts a fresh process (killing the old one).
    pub fn restart(&mut self) -> Result<(), String> {
        self.retire("replaced by a fresh process");
        let p = Provider::spawn(&self.opts.command, self.opts.request_timeout)?;
        self.starts += 1;
        self.provider = Some(p);
        Ok(())
    }

    /// Makes sure a live process exists; if it had to start one, sends
    /// initialize + connect like the Test Kit's InitializeAndConnect.
    pub fn ensure(&mut self) -> Result<(), String> {
        let alive = match self.provider.as_mut() {
            Some(p) => p.dead().is_none(),
            None => false,
        };
        if alive {
            return Ok(());
        }
        self.restart()?;
        self.initialize_and_connect().map(|_| ())
    }

    /// `provider/initialize` then `provider/connect`; returns the initialize result.
    pub fn initialize_and_connect(&mut self) -> Result<Value, String> {
        let init = self.ok("provider/initialize", None)?;
        let (caps, _) = checks::initialize(&init);
        self.caps = Some(caps);
        let settings = self.opts.settings.clone();
        self.ok("provider/connect", Some(json!({ "settings": settings })))?;
        Ok(init)
    }

    /// The process, or an error when none is running.
    pub fn proc(&mut self) -> Result<&mut Provider, String> {
        self.provider.as_mut().ok_or_else(|| "no provider process running".to_string())
    }

    /// Sends a request and returns the raw reply.
    pub fn call(&mut self, method: &str, params: Option<Value>) -> Result<Reply, String> {
        let r = self.proc()?.call(method, params);
        r.map_err(|e| self.explain(method, e))
    }

    /// Sends a request with the Test Kit's receive rules: the `result`, or an error.
    pub fn ok(&mut self, method: &str, params: Option<Value>) -> Result<Value, String> {
        let reply = self.call(method, params)?;
        reply.test_kit_result().cloned().map_err(|e| format!("{method}: {e}"))
    }

    /// Sends a request that must fail; returns (code, message).
    pub fn err(&mut self, method: &str, params: Option<Value>) -> Result<(i64, String), String> {
        let reply = self.call(method, params)?;
        match reply.error_code() {
            Some(c) => Ok((c, reply.error_message().unwrap_or("").to_string())),
            None => Err(format!("expected an error reply, saw {}", short(&reply.value))),
        }
    }

    /// `guests/get {id}` validated as a full guest object.
    pub fn get(&mut self, id: &str) -> Result<Value, String> {
        let g = self.ok("guests/get", Some(json!({ "id": id })))?;
        let errs = checks::guest(id, &g);
        if errs.is_empty() {
            Ok(g)
        } else {
            Err(format!("guests/get {id}: {}", errs.join("; ")))
        }
    }

    /// The guest's `state` string.
    pub fn state(&mut self, id: &str) -> Result<String, String> {
        let g = self.get(id)?;
        Ok(g.get("state").and_then(Value::as_str).unwrap_or("").to_string())
    }

    /// The guest's `is_template`.
    pub fn is_template(&mut self, id: &str) -> Result<bool, String> {
        let g = self.get(id)?;
        Ok(g.get("is_template").and_then(Value::as_bool).unwrap_or(false))
    }

    /// `guests/list` ids.
    pub fn list(&mut self) -> Result<Vec<String>, String> {
        let r = self.ok("guests/list", None)?;
        Ok(checks::guest_list(&r).0)
    }

    /// `guests/control {id, control}`; the reply must be a result.
    pub fn control(&mut self, id: &str, control: &str) -> Result<(), String> {
        self.ok("guests/control", Some(json!({ "id": id, "control": control }))).map(|_| ())
    }

    /// The Test Kit's ASYNC: send, take `.task_id`, poll `tasks/get` while running (capped),
    /// then require `completed` with a non-null `output`. Returns (task id, output, polls).
    pub fn run_async(&mut self, method: &str, params: Value) -> Result<(Value, Value), String> {
        let r = self.ok(method, Some(params))?;
        let tid = checks::task_id(&r).map_err(|e| format!("{method}: {e}"))?;
        let out = self.wait_task(&tid).map_err(|e| format!("{method}: {e}"))?;
        Ok((r, out))
    }

    /// Polls `tasks/get` until the task leaves `running` (capped); returns its output.
    pub fn wait_task(&mut self, tid: &str) -> Result<Value, String> {
        let cap = self.task_cap();
        let mut polls = 0u64;
        loop {
            let r = self.ok("tasks/get", Some(json!({ "id": tid })))?;
            polls += 1;
            match checks::task_state(&r).map_err(|e| format!("tasks/get {tid}: {e}"))? {
                TaskState::Completed(out) => return Ok(out),
                TaskState::Failed(m) => return Err(format!("task {tid} failed: {m}")),
                TaskState::Running if polls >= cap => {
                    return Err(format!("task {tid} still running after {polls} polls (cap {cap}; RAS would give up)"));
                }
                TaskState::Running => std::thread::sleep(self.task_interval()),
            }
        }
    }

    /// Polls `guests/get` until `state == want` (capped).
    pub fn wait_state(&mut self, id: &str, want: &str) -> Result<(), String> {
        let mut last = String::new();
        for _ in 0..self.opts.max_power_polls.max(1) {
            last = self.state(id)?;
            if last == want {
                return Ok(());
            }
            std::thread::sleep(self.guest_interval());
        }
        Err(format!("guest {id}: expected state {want} within {} polls, last saw {last}", self.opts.max_power_polls))
    }

    /// Polls `guests/list` until `id` is gone (capped).
    pub fn wait_gone(&mut self, id: &str) -> Result<(), String> {
        for _ in 0..self.opts.max_power_polls.max(1) {
            if !self.list()?.iter().any(|g| g == id) {
                return Ok(());
            }
            std::thread::sleep(self.guest_interval());
        }
        Err(format!("expected deleted guest {id} to leave guests/list within {} polls", self.opts.max_power_polls))
    }

    fn task_cap(&self) -> u64 {
        let advertised = self.caps.as_ref().map(|c| c.tasks_polling_retries).unwrap_or(20);
        self.opts.max_task_polls.unwrap_or(advertised).max(1)
    }

    fn task_interval(&self) -> Duration {
        match (&self.caps, self.opts.fast_poll) {
            (_, true) => Duration::from_millis(100),
            (Some(c), false) => Duration::from_secs(c.tasks_polling_rate),
            (None, false) => Duration::from_secs(3),
        }
    }

    /// The sleep between power-state polls (advertised `guests_polling_rate`, or 100 ms).
    pub fn guest_interval(&self) -> Duration {
        match (&self.caps, self.opts.fast_poll) {
            (_, true) => Duration::from_millis(100),
            (Some(c), false) => Duration::from_secs(c.guests_polling_rate),
            (None, false) => Duration::from_secs(15),
        }
    }

    fn explain(&mut self, method: &str, e: ProcError) -> String {
        let mut msg = format!("{method}: {e}");
        if matches!(e, ProcError::Dead(_) | ProcError::Timeout(_)) {
            if let Some(p) = self.provider.as_ref() {
                let (tail, _) = p.stderr_tail();
                let tail = tail.trim();
                if !tail.is_empty() {
                    let last: Vec<&str> = tail.lines().rev().take(5).collect();
                    msg.push_str(&format!(
                        " [stderr tail: {}]",
                        last.into_iter().rev().collect::<Vec<_>>().join(" | ")
                    ));
                }
            }
        }
        msg
    }

    /// Kills the current process (if any), remembering how it ended.
    pub fn retire(&mut self, why: &str) {
        if let Some(mut p) = self.provider.take() {
            let state = p.dead().unwrap_or_else(|| why.to_string());
            self.graveyard.push(format!("pid {}: {state}", p.pid()));
            self.past_wire.push(p.wire.clone());
            let (tail, _) = p.stderr_tail();
            if !tail.trim().is_empty() {
                self.last_stderr = Some(tail);
            }
            p.kill();
        }
    }
}
