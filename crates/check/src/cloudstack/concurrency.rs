//! Several VMs deployed at once in parallel processes (CloudStack runs invocations
//! concurrently: many users, many status polls), then expunged at once.

use super::ctx::Ctx;
use super::lifecycle;
use super::parse::Power;
use super::payload::{Phase, Vm};
use crate::report::{Outcome, Report};
use std::time::Instant;

const GROUP: &str = "concurrency";

fn parallel<T: Send>(vms: &mut [Vm], f: impl Fn(&mut Vm) -> Result<T, String> + Sync) -> Vec<Result<T, String>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = vms.iter_mut().map(|vm| s.spawn(|| f(vm))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("harness thread panicked".into()))).collect()
    })
}

fn all_ok<T>(vms: &[Vm], results: Vec<Result<T, String>>) -> Result<(), String> {
    let errs: Vec<String> =
        vms.iter().zip(results).filter_map(|(vm, r)| r.err().map(|e| format!("{}: {e}", vm.name))).collect();
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join("; "))
    }
}

/// Runs the concurrency cases with `n` VMs.
pub fn run(ctx: &Ctx, report: &mut Report, n: usize, prepare: bool) {
    if n < 2 {
        report.record(GROUP, "parallel-create", Outcome::Skip("--vms below 2".into()), Instant::now());
        return;
    }
    let mut vms: Vec<Vm> = (0..n).map(|i| Vm::new(&ctx.env, 2000 + i as u32)).collect();
    for vm in &vms {
        ctx.add_secret(&vm.vnc_password);
    }
    let created = report.case(GROUP, &format!("parallel-create-{n}"), || {
        let r = parallel(&mut vms, |vm| {
            if prepare {
                lifecycle::prepare(ctx, vm)?;
            }
            ctx.lifecycle_ok(vm, "create", Phase::Starting)?;
            vm.mark_deployed();
            Ok(())
        });
        all_ok(&vms, r)
    });
    if created {
        report.case(GROUP, "parallel-status", || {
            let r = parallel(&mut vms, |vm| ctx.expect_power(vm, "Running", Power::On));
            all_ok(&vms, r)
        });
        report.status(format!("{GROUP}/statuses-lists-all"));
        let t = Instant::now();
        let outcome = match lifecycle::statuses(ctx) {
            Ok(None) => Outcome::Skip("`statuses` not implemented".into()),
            Ok(Some(map)) => {
                let missing: Vec<&str> = vms
                    .iter()
                    .filter(|vm| !map.iter().any(|(k, p)| k == &vm.name && *p == Power::On))
                    .map(|vm| vm.name.as_str())
                    .collect();
                if missing.is_empty() {
                    Outcome::Pass
                } else {
                    Outcome::Fail(format!(
                        "statuses does not report these running VMs as poweron under their internal names: {missing:?}"
                    ))
                }
            }
            Err(e) => Outcome::Fail(e),
        };
        report.record(GROUP, "statuses-lists-all", outcome, t);
    }
    // Always expunge, so a partly failed create leaves nothing behind.
    report.case(GROUP, "parallel-expunge", || {
        let r = parallel(&mut vms, |vm| {
            ctx.lifecycle_ok(vm, "stop", Phase::Expunging)?;
            ctx.lifecycle_ok(vm, "delete", Phase::Expunging)?;
            ctx.expect_power(vm, "Stopped", Power::Off)
        });
        all_ok(&vms, r)
    });
}
