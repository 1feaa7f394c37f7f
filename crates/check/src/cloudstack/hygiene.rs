//! Whole-run checks over every invocation: output below the 64 KiB pipe buffer, exactly
//! one JSON document per output (stderr noise breaks it because CloudStack merges the
//! streams), and no configured secret or VNC password echoed back.

use super::ctx::Ctx;
use super::invoke::PIPE_LIMIT;
use crate::report::{Outcome, Report};

const GROUP: &str = "hygiene";

/// Runs the hygiene cases; call last.
pub fn run(ctx: &Ctx, report: &mut Report, scan_files: &[std::path::PathBuf]) {
    let log = ctx.log.lock().map(|l| l.clone()).unwrap_or_default();
    report.facts.insert("invocations".into(), log.len().into());
    let max = log.iter().map(|l| l.output_len).max().unwrap_or(0);
    report.facts.insert("max_output_bytes".into(), max.into());
    report.case(GROUP, "output-below-64KiB", || match log.iter().find(|l| l.output_len >= PIPE_LIMIT) {
        Some(l) => Err(format!("`{}` wrote {} B (≥ 64 KiB deadlocks under CloudStack)", l.action, l.output_len)),
        None => Ok(()),
    });
    report.case(GROUP, "one-json-document-per-output", || {
        let bad: Vec<String> =
            log.iter().filter(|l| !l.json_ok).take(3).map(|l| format!("`{}`: {:?}", l.action, l.excerpt)).collect();
        let n = log.iter().filter(|l| !l.json_ok).count();
        if n == 0 {
            Ok(())
        } else {
            Err(format!("{n} outputs are not exactly one JSON object (stdout+stderr merged), e.g. {}", bad.join(", ")))
        }
    });
    report.case(GROUP, "no-secrets-in-output", || match log.iter().find_map(|l| l.leak.as_ref().map(|s| (l, s))) {
        Some((l, s)) => Err(format!("`{}` printed {s}", l.action)),
        None => Ok(()),
    });
    for f in scan_files {
        let name = format!("no-secrets-in-file/{}", f.display());
        let t = std::time::Instant::now();
        let outcome = match std::fs::read(f) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Outcome::Skip("file does not exist (nothing was logged)".into())
            }
            Err(e) => Outcome::Fail(format!("cannot read it: {e}")),
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let leak = ctx.secrets.lock().ok().and_then(|s| s.leaked_in(&text));
                match leak {
                    Some(s) => Outcome::Fail(format!("contains {s}")),
                    None => Outcome::Pass,
                }
            }
        };
        report.record(GROUP, &name, outcome, t);
    }
}
