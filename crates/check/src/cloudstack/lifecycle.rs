//! The single-VM lifecycle as the management server drives it: prepare → create →
//! status → create retried → stop (twice) → start → reboot → getconsole → custom actions
//! → expunge (stop + delete, delete twice) → status after delete, with the power state
//! checked after every transition the way CloudStack's power sync reads it.

use super::ctx::Ctx;
use super::parse::{self, Power};
use super::payload::{self, Phase, Vm};
use super::snapshots;
use crate::report::{Outcome, Report};
use serde_json::Value;
use std::time::Instant;

const GROUP: &str = "lifecycle";

/// Options of the lifecycle flow.
#[derive(Debug, Clone)]
pub struct Flow {
    /// Send `prepare` before the first `create` (`orchestratorrequirespreparevm=true`).
    pub prepare: bool,
    /// How the snapshot custom actions are treated.
    pub snapshots: snapshots::Mode,
    /// `status` calls timed for the latency case.
    pub status_samples: usize,
}

/// Runs `prepare` for `vm` and applies the patch as the management server does.
pub fn prepare(ctx: &Ctx, vm: &mut Vm) -> Result<(), String> {
    let r = ctx.lifecycle_ok(vm, "prepare", Phase::Starting)?;
    let text = r.text();
    if text.is_empty() {
        return Ok(());
    }
    let patch: Value = serde_json::from_str(&text).map_err(|_| {
        format!(
            "prepare output is neither empty nor one JSON object (CloudStack: \"Failed to prepare VM\"): {}",
            ctx.describe(&r)
        )
    })?;
    if !patch.is_object() {
        return Err(format!(
            "prepare output is not a JSON object (CloudStack: \"Failed to prepare VM\"): {}",
            ctx.describe(&r)
        ));
    }
    vm.apply_prepare(&ctx.env, &patch)?;
    ctx.add_secret(&vm.vnc_password);
    Ok(())
}

/// `statuses` for the host: `Ok(None)` when the extension does not implement it.
pub fn statuses(ctx: &Ctx) -> Result<Option<Vec<(String, Power)>>, String> {
    let r = ctx.run("statuses", &payload::host_payload(&ctx.env), ctx.lifecycle_timeout)?;
    ctx.expect_small(&r)?;
    if !r.success() {
        return Ok(None);
    }
    parse::statuses_map(&r.text()).map(Some).map_err(|e| format!("statuses exited 0 but {e}: {}", ctx.describe(&r)))
}

fn expect_in_statuses(ctx: &Ctx, vm: &Vm, want: Power, absent_ok: bool) -> Result<Outcome, String> {
    let Some(map) = statuses(ctx)? else {
        return Ok(Outcome::Skip(
            "`statuses` not implemented (4.22.1+ only; the management server falls back to `status`)".into(),
        ));
    };
    match map.iter().find(|(k, _)| k == &vm.name) {
        Some((_, p)) if *p == want => Ok(Outcome::Pass),
        Some((_, p)) => Err(format!("statuses reports {} as {p:?}, expected {want:?}", vm.name)),
        None if absent_ok => Ok(Outcome::Pass),
        None => Err(format!(
            "statuses has no entry keyed by the internal name {} ({} entries); the power sync matches internal names",
            vm.name,
            map.len()
        )),
    }
}

fn outcome_case(report: &mut Report, name: &str, f: impl FnOnce() -> Result<Outcome, String>) {
    report.status(format!("{GROUP}/{name}"));
    let t = Instant::now();
    let o = f().unwrap_or_else(Outcome::Fail);
    report.record(GROUP, name, o, t);
}

/// Runs the lifecycle flow.
pub fn run(ctx: &Ctx, report: &mut Report, flow: &Flow) {
    let mut vm = Vm::new(&ctx.env, 1234);
    ctx.add_secret(&vm.vnc_password);
    report.facts.insert("lifecycle_vm".into(), vm.name.clone().into());

    if flow.prepare {
        let before: Vec<String> = vm.details.keys().cloned().collect();
        let ok = report.case(GROUP, "prepare", || prepare(ctx, &mut vm));
        let added: Vec<String> = vm.details.keys().filter(|k| !before.contains(k)).cloned().collect();
        report.facts.insert("prepare_added_details".into(), Value::from(added));
        if !ok {
            // CloudStack aborts the deployment when prepare fails.
            skip_rest(report, "prepare failed");
            return;
        }
    }
    let created = report.case(GROUP, "create", || {
        ctx.lifecycle_ok(&vm, "create", Phase::Starting)?;
        ctx.expect_power(&vm, "Running", Power::On).map_err(|e| format!("create must also power the VM on: {e}"))
    });
    if !created {
        let _ = ctx.lifecycle(&vm, "delete", Phase::Expunging);
        skip_rest(report, "create failed");
        return;
    }
    report.case(GROUP, "create-retried-is-idempotent", || {
        // The first create "failed" from CloudStack's view (e.g. timed out): it sends create
        // again without prepare, deployvm still true; the backend VM must be reused.
        ctx.lifecycle_ok(&vm, "create", Phase::Starting)?;
        ctx.expect_power(&vm, "Running", Power::On)?;
        match statuses(ctx)? {
            Some(map) => {
                let n = map.iter().filter(|(k, _)| k == &vm.name).count();
                if n > 1 {
                    Err(format!("statuses lists {} {n} times after the retried create", vm.name))
                } else {
                    Ok(())
                }
            }
            None => Ok(()),
        }
    });
    if flow.prepare {
        report.case(GROUP, "prepare-and-create-retried", || {
            // Another attempt of the first start re-sends prepare, then create.
            prepare(ctx, &mut vm)?;
            ctx.lifecycle_ok(&vm, "create", Phase::Starting)?;
            ctx.expect_power(&vm, "Running", Power::On)?;
            match statuses(ctx)? {
                Some(map) if map.iter().filter(|(k, _)| k == &vm.name).count() > 1 => {
                    Err(format!("statuses lists {} twice after prepare+create were retried", vm.name))
                }
                _ => Ok(()),
            }
        });
    }
    vm.mark_deployed();

    let mut median_fact: Option<(f64, f64)> = None;
    report.case(GROUP, "status-latency", || {
        let mut ms: Vec<f64> = Vec::new();
        for _ in 0..flow.status_samples.max(1) {
            let (p, r) = ctx.status(&vm, "Running")?;
            if p != Power::On {
                return Err(format!("status flapped to {p:?}: {}", ctx.describe(&r)));
            }
            ms.push(r.elapsed.as_secs_f64() * 1000.0);
        }
        ms.sort_by(f64::total_cmp);
        let median = ms[ms.len() / 2];
        let max = ms[ms.len() - 1];
        median_fact = Some(((median * 10.0).round() / 10.0, (max * 10.0).round() / 10.0));
        if median > 1000.0 {
            return Err(format!("median status wall time {median:.0} ms (max {max:.0} ms) > 1000 ms; a slow status delays the host ping"));
        }
        Ok(())
    });
    if let Some((median, max)) = median_fact {
        report.facts.insert("status_median_ms".into(), median.into());
        report.facts.insert("status_max_ms".into(), max.into());
    }
    outcome_case(report, "statuses-running", || expect_in_statuses(ctx, &vm, Power::On, false));

    report.case(GROUP, "stop", || {
        ctx.lifecycle_ok(&vm, "stop", Phase::Stopping)?;
        ctx.expect_power(&vm, "Stopped", Power::Off)
    });
    report.case(GROUP, "stop-when-stopped", || {
        ctx.lifecycle_ok(&vm, "stop", Phase::Stopping)?;
        ctx.expect_power(&vm, "Stopped", Power::Off)
    });
    outcome_case(report, "statuses-stopped", || expect_in_statuses(ctx, &vm, Power::Off, true));
    report.case(GROUP, "start", || {
        ctx.lifecycle_ok(&vm, "start", Phase::Starting)?;
        ctx.expect_power(&vm, "Running", Power::On)
    });
    report.case(GROUP, "reboot", || {
        ctx.lifecycle_ok(&vm, "reboot", Phase::Rebooting)?;
        ctx.expect_power(&vm, "Running", Power::On)
    });
    outcome_case(report, "getconsole", || console(ctx, &vm));

    snapshots::run(ctx, report, &vm, flow.snapshots);

    report.case(GROUP, "expunge-stop", || {
        ctx.lifecycle_ok(&vm, "stop", Phase::Expunging)?;
        ctx.expect_power(&vm, "Stopped", Power::Off)
    });
    report.case(GROUP, "delete", || ctx.lifecycle_ok(&vm, "delete", Phase::Expunging).map(drop));
    report.case(GROUP, "delete-when-gone", || ctx.lifecycle_ok(&vm, "delete", Phase::Expunging).map(drop));
    report.case(GROUP, "status-after-delete", || ctx.expect_power(&vm, "Stopped", Power::Off));
    report.case(GROUP, "stop-when-gone", || ctx.lifecycle_ok(&vm, "stop", Phase::Stopping).map(drop));
    outcome_case(report, "statuses-after-delete", || expect_in_statuses(ctx, &vm, Power::Off, true));
}

fn console(ctx: &Ctx, vm: &Vm) -> Result<Outcome, String> {
    let r = ctx.lifecycle(vm, "getconsole", Phase::Other("Running"))?;
    ctx.expect_small(&r)?;
    if r.timed_out {
        return Err(ctx.describe(&r));
    }
    if !r.success() {
        let text = r.text();
        let declared_unsupported = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned));
        return match declared_unsupported {
            Some(e) => Ok(Outcome::Skip(format!("extension declines getconsole: {}", ctx.redact(&e)))),
            None => Err(format!("getconsole failed without a JSON error: {}", ctx.describe(&r))),
        };
    }
    // The ticket is a secret from now on: it must not show up in other outputs, the
    // report, or any --scan-file.
    if let Some(c) = serde_json::from_str::<Value>(&r.text()).ok().and_then(|v| v.get("console").cloned()) {
        for k in ["password", "url"] {
            if let Some(s) = c.get(k).and_then(Value::as_str) {
                ctx.add_secret(s);
            }
        }
    }
    match parse::console(&r.text()) {
        Ok(parse::Console::Proxy { has_password: false, .. }) => {
            Err("console without a password: the console proxy could connect unauthenticated or not at all".into())
        }
        Ok(_) => Ok(Outcome::Pass),
        Err(e) => Err(format!("CloudStack would reject the console answer: {e}")),
    }
}

fn skip_rest(report: &mut Report, why: &str) {
    report.record(GROUP, "lifecycle-rest", Outcome::Skip(format!("not run: {why}")), Instant::now());
}
