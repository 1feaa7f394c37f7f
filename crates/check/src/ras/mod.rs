//! `polyvisor check ras -- <provider command…>`: the RAS conformance harness.
//!
//! Behaves like the RAS Provider Agent / official Test Kit (spec §12) against any provider
//! command, never a driver: low-level method tests ([`lowlevel`]), the four high-level
//! flows ([`flows`]), bad input and wire hygiene ([`hygiene`]). Unlike the Test Kit every
//! read has a timeout, task polling and power waits are capped, and stderr is drained
//! continuously ([`process`]).

pub mod checks;
pub mod flows;
pub mod hygiene;
pub mod lowlevel;
pub mod process;
pub mod session;

use crate::report::{Outcome, Report};
use serde_json::{Map, Value};
use session::{Options, Session};
use std::time::Duration;

/// `polyvisor check ras` options.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Report options.
    #[command(flatten)]
    pub report: crate::ReportArgs,
    /// `provider/connect` settings as a JSON object (merged under `--setting`).
    #[arg(long, value_name = "JSON")]
    pub settings: Option<String>,
    /// One `provider/connect` setting (`key=value`, sent as a string); repeatable.
    #[arg(long = "setting", value_name = "KEY=VALUE")]
    pub setting: Vec<String>,
    /// Seconds to wait for each reply before declaring the provider hung.
    #[arg(long, default_value_t = 60.0, value_name = "SECS")]
    pub request_timeout: f64,
    /// Cap on `tasks/get` polls per task (default: the advertised tasks_polling_retries).
    #[arg(long, value_name = "N")]
    pub max_task_polls: Option<u64>,
    /// Cap on `guests/get` polls while waiting for a power state or a deletion.
    #[arg(long, default_value_t = 120, value_name = "N")]
    pub max_power_polls: u64,
    /// Poll every 100 ms instead of the advertised polling rates (for tests).
    #[arg(long)]
    pub fast_poll: bool,
    /// The VM the flows (and, at level none, the control tests) use; default: a scratch
    /// clone of an existing template, else the first non-template guest.
    #[arg(long, value_name = "ID")]
    pub guest: Option<String>,
    /// Keep what the harness created or changed (clones, templatised source).
    #[arg(long)]
    pub keep: bool,
    /// Skip the bad-input suite.
    #[arg(long)]
    pub skip_hygiene: bool,
    /// The provider command and its arguments (after `--`).
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// What one group learns for the next ones.
#[derive(Debug, Default)]
pub struct State {
    /// Ids from `guests/list`.
    pub ids: Vec<String>,
    /// (id, is_template, state) of every guest read.
    pub guests: Vec<(String, bool, String)>,
    /// The guest the control tests use.
    pub scratch: Option<String>,
    /// Power state to restore on a borrowed control target.
    pub restore_power: Option<String>,
    /// Guests the harness created and must delete.
    pub cleanup: Vec<String>,
    /// Hosts created by CreateHost.
    pub hosts: Vec<String>,
    /// `--guest`.
    pub opts_guest: Option<String>,
    /// `--keep`.
    pub keep: bool,
    names: u32,
}

impl State {
    /// A fresh computer-name-like guest name (`pvc<pid><n><tag>`, ≤ 15 characters).
    pub fn name(&mut self, tag: &str) -> String {
        self.names += 1;
        format!("pvc{:05}{}{tag}", std::process::id() % 100_000, self.names)
    }
}

/// Parses `--settings` and `--setting` into the connect settings object.
pub fn settings(args: &Args) -> Result<Value, String> {
    let mut map = match &args.settings {
        None => Map::new(),
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(m)) => m,
            Ok(_) => return Err("--settings must be a JSON object".into()),
            Err(e) => return Err(format!("--settings is not valid JSON: {e}")),
        },
    };
    for kv in &args.setting {
        let (k, v) = kv.split_once('=').ok_or(
            "--setting expects key=value (an argument had no `=`; its text is not echoed in case it is a secret)",
        )?;
        if k.trim().is_empty() {
            return Err("--setting has an empty key".into());
        }
        map.insert(k.trim().to_string(), Value::String(v.to_string()));
    }
    Ok(Value::Object(map))
}

/// Values of settings whose key looks secret; these never appear in the report.
fn secrets(settings: &Value) -> Vec<String> {
    const HINTS: [&str; 7] = ["secret", "password", "pass", "token", "key", "ticket", "credential"];
    let mut out = Vec::new();
    if let Value::Object(m) = settings {
        for (k, v) in m {
            let k = k.to_ascii_lowercase();
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Null | Value::Bool(_) => continue,
                other => other.to_string(),
            };
            if text.len() >= 3 && HINTS.iter().any(|h| k.contains(h)) {
                out.push(text);
            }
        }
    }
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out
}

fn redact(text: &str, secrets: &[String]) -> String {
    secrets.iter().fold(text.to_string(), |t, s| t.replace(s.as_str(), "***"))
}

/// Runs the harness; `Ok(true)` when every case passed.
pub fn run(args: Args) -> Result<bool, String> {
    let settings = settings(&args)?;
    if !(args.request_timeout > 0.0 && args.request_timeout.is_finite()) {
        return Err("--request-timeout must be a positive number of seconds".into());
    }
    let hidden = secrets(&settings);
    let opts = Options {
        command: args.command.clone(),
        settings,
        request_timeout: Duration::from_secs_f64(args.request_timeout),
        max_task_polls: args.max_task_polls,
        max_power_polls: args.max_power_polls,
        fast_poll: args.fast_poll,
    };
    let target = args.command.join(" ");
    let mut report = Report::new("ras", &target, args.report.quiet);
    let mut s = Session::new(opts);
    let mut st = State { opts_guest: args.guest.clone(), keep: args.keep, ..State::default() };
    run_groups(&mut report, &mut s, &mut st, args.skip_hygiene);
    for c in &mut report.cases {
        if let Outcome::Fail(r) | Outcome::Skip(r) = &mut c.outcome {
            *r = redact(r, &hidden);
        }
    }
    report.facts.insert("processes_started".into(), Value::from(s.starts));
    report
        .facts
        .insert("processes".into(), Value::from(s.graveyard.iter().map(|g| redact(g, &hidden)).collect::<Vec<_>>()));
    let keys: Vec<String> = s.opts.settings.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
    report.facts.insert("settings_keys".into(), Value::from(keys));
    report.note(summary(&report));
    if let Some(tail) = s.last_stderr.take() {
        report.facts.insert("stderr_tail".into(), Value::from(redact(&tail, &hidden)));
    }
    report.finish(&args.report).map_err(|e| format!("cannot write the report: {e}"))
}

/// One line saying what was verified against what.
fn summary(r: &Report) -> String {
    let f = |k: &str| {
        r.facts
            .get(k)
            .map(|v| v.as_str().map(String::from).unwrap_or_else(|| v.to_string()))
            .unwrap_or_else(|| "?".into())
    };
    format!(
        "provider version {} at level {}; {} guests ({} templates); flows on {}; {} processes started; settings keys {}",
        f("version"),
        f("template_level"),
        f("guests"),
        f("templates"),
        r.facts.get("flow_source").and_then(Value::as_str).unwrap_or("nothing"),
        f("processes_started"),
        f("settings_keys")
    )
}

fn run_groups(r: &mut Report, s: &mut Session, st: &mut State, skip_hygiene: bool) {
    lowlevel::run(r, s, st);
    flows::run(r, s, st);
    if !skip_hygiene {
        hygiene::run(r, s, st);
    }
    final_cleanup(r, s, st);
    hygiene::wire_and_eof(r, s);
}

fn final_cleanup(r: &mut Report, s: &mut Session, st: &mut State) {
    if st.cleanup.is_empty() {
        return;
    }
    if st.keep {
        r.facts.insert("kept".into(), Value::from(st.cleanup.clone()));
        return;
    }
    let ids = std::mem::take(&mut st.cleanup);
    r.case("cleanup", "delete scratch guests", || {
        s.ensure()?;
        let mut errs = Vec::new();
        for id in &ids {
            if let Err(e) = s.control(id, "delete").and_then(|_| s.wait_gone(id)) {
                errs.push(e);
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs.join("; "))
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        ras: Args,
    }

    fn parse(argv: &[&str]) -> Args {
        let mut v = vec!["x"];
        v.extend_from_slice(argv);
        Cli::try_parse_from(v).map(|c| c.ras).expect("parse")
    }

    #[test]
    fn settings_merge_and_validate() {
        let a = parse(&["--settings", r#"{"host":"h","port":8006}"#, "--setting", "token_secret=s3cr=et", "--", "p"]);
        let s = settings(&a).unwrap();
        assert_eq!(s, serde_json::json!({"host":"h","port":8006,"token_secret":"s3cr=et"}));
        assert_eq!(secrets(&s), vec!["s3cr=et".to_string()]);
        assert_eq!(redact("saw s3cr=et here", &secrets(&s)), "saw *** here");
        assert!(settings(&parse(&["--settings", "[1]", "--", "p"])).is_err());
        assert!(settings(&parse(&["--settings", "{", "--", "p"])).is_err());
        let e = settings(&parse(&["--setting", "password_only", "--", "p"])).unwrap_err();
        assert!(!e.contains("password_only") && e.contains("key=value"), "{e}");
        assert!(settings(&parse(&["--setting", "=v", "--", "p"])).is_err());
    }

    #[test]
    fn bad_timeout_is_a_usage_error_and_names_are_short() {
        let a = parse(&["--request-timeout", "0", "--", "true"]);
        assert!(run(a).is_err());
        let mut st = State::default();
        let n = st.name("h");
        assert!(n.len() <= 15 && n.starts_with("pvc"), "{n}");
        assert_ne!(n, st.name("h"));
    }
}
