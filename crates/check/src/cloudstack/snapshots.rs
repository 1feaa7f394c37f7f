//! The custom actions the built-in extensions offer (spec §7): the Proxmox snapshot set
//! (`ListSnapshots`, `CreateSnapshot`, `RestoreSnapshot`, `DeleteSnapshot`, with typed
//! parameters as `runCustomAction` delivers them) and Hyper-V's `Suspend` / `Resume`.
//! CloudStack cannot ask an extension which actions it has, so each set is probed.

use super::ctx::Ctx;
use super::invoke::Run;
use super::parse::{self, Power};
use super::payload::{random_u64, Vm};
use crate::report::{Outcome, Report};
use serde_json::{json, Map, Value};
use std::time::Instant;

const GROUP: &str = "custom-actions";

/// Whether the snapshot and suspend actions are expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Probe them; skip the set when the probe fails.
    Auto,
    /// They must work.
    Require,
    /// Do not call them.
    Skip,
}

fn call(ctx: &Ctx, vm: &Vm, action: &str, params: Option<Value>) -> Result<Run, String> {
    ctx.run(action, &vm.custom_payload(&ctx.env, action, "Running", params), ctx.action_timeout)
}

fn call_ok(ctx: &Ctx, vm: &Vm, action: &str, params: Option<Value>) -> Result<Run, String> {
    let r = call(ctx, vm, action, params)?;
    ctx.expect_ok(&r)?;
    Ok(r)
}

fn list(ctx: &Ctx, vm: &Vm, action: &str) -> Result<Vec<Map<String, Value>>, String> {
    let r = call_ok(ctx, vm, action, None)?;
    parse::table(&r.text()).map_err(|e| format!("{action}: {e}: {}", ctx.describe(&r)))
}

fn find<'a>(rows: &'a [Map<String, Value>], name: &str) -> Option<&'a Map<String, Value>> {
    rows.iter().find(|r| r.get("name").and_then(Value::as_str) == Some(name))
}

/// Probes an action set: `Ok(true)` run it, `Ok(false)` skip it (recorded), `Err` fail.
fn probe(ctx: &Ctx, report: &mut Report, vm: &Vm, mode: Mode, case: &str, action: &str) -> bool {
    let t = Instant::now();
    report.status(format!("{GROUP}/{case}"));
    let outcome = match call(ctx, vm, action, None) {
        Err(e) => Outcome::Fail(e),
        Ok(r) if r.success() => match ctx.expect_small(&r) {
            Ok(()) => Outcome::Pass,
            Err(e) => Outcome::Fail(e),
        },
        Ok(r) if mode == Mode::Require => {
            Outcome::Fail(format!("required by --custom-actions require: {}", ctx.describe(&r)))
        }
        Ok(r) if r.timed_out => Outcome::Fail(format!("probe timed out: {}", ctx.describe(&r))),
        Ok(r) => Outcome::Skip(format!("`{action}` not offered ({})", ctx.describe(&r))),
    };
    let go = outcome == Outcome::Pass;
    report.record(GROUP, case, outcome, t);
    go
}

/// Runs the custom-action cases against the running `vm`.
pub fn run(ctx: &Ctx, report: &mut Report, vm: &Vm, mode: Mode) {
    if mode == Mode::Skip {
        report.record(GROUP, "snapshots", Outcome::Skip("--custom-actions skip".into()), Instant::now());
        return;
    }
    if probe(ctx, report, vm, mode, "ListSnapshots", "ListSnapshots") {
        snapshot_set(ctx, report, vm);
    }
    if probe(ctx, report, vm, mode, "Suspend", "Suspend") {
        report.case(GROUP, "Resume", || {
            call_ok(ctx, vm, "Resume", None)?;
            ctx.expect_power(vm, "Running", Power::On)
        });
    }
}

fn snapshot_set(ctx: &Ctx, report: &mut Report, vm: &Vm) {
    report.case(GROUP, "ListSnapshots-renders-as-table", || list(ctx, vm, "ListSnapshots").map(drop));
    report.case(GROUP, "action-name-case-insensitive", || {
        // 4.22.1 registers the built-in names in lower case.
        let r = call(ctx, vm, "listsnapshots", None)?;
        ctx.expect_ok(&r).map_err(|e| format!("`listsnapshots` (lower case): {e}"))
    });
    let snap = format!("pvcheck-{:08x}", random_u64() as u32);
    // Gson escapes these; the description must come back decoded, not mangled.
    let description = "made by polyvisor check: a<b & c='d'";
    let created = report.case(GROUP, "CreateSnapshot", || {
        call_ok(
            ctx,
            vm,
            "CreateSnapshot",
            Some(json!({"snap_name": snap, "snap_description": description, "snap_save_memory": true})),
        )?;
        let rows = list(ctx, vm, "ListSnapshots")?;
        let row = find(&rows, &snap)
            .ok_or_else(|| format!("ListSnapshots does not show the new snapshot {snap} ({} rows)", rows.len()))?;
        match row.get("description").and_then(Value::as_str) {
            Some(d) if !d.is_empty() && d != description => {
                Err(format!("description did not round-trip the Gson escapes: got {d:?}"))
            }
            _ => Ok(()),
        }
    });
    if !created {
        report.record(GROUP, "snapshot-rest", Outcome::Skip("CreateSnapshot failed".into()), Instant::now());
        return;
    }
    report.case(GROUP, "RestoreSnapshot", || {
        call_ok(ctx, vm, "RestoreSnapshot", Some(json!({"snap_name": snap})))?;
        ctx.expect_power(vm, "Running", Power::On)
            .map_err(|e| format!("a snapshot with memory restores a running VM: {e}"))
    });
    report.case(GROUP, "RestoreSnapshot-unknown-fails", || {
        let r = call(ctx, vm, "RestoreSnapshot", Some(json!({"snap_name": format!("{snap}-nope")})))?;
        ctx.expect_refusal(&r, "restoring a snapshot that does not exist")
    });
    report.case(GROUP, "DeleteSnapshot", || {
        call_ok(ctx, vm, "DeleteSnapshot", Some(json!({"snap_name": snap})))?;
        let rows = list(ctx, vm, "ListSnapshots")?;
        if find(&rows, &snap).is_some() {
            Err(format!("{snap} still listed after DeleteSnapshot"))
        } else {
            Ok(())
        }
    });
}
