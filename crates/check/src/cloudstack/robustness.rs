//! Cases that need no VM: forwarded Java agent commands (FQCN), an unknown action, a
//! missing payload file, and a garbage timeout argument.

use super::ctx::Ctx;
use super::payload::{self, Vm};
use crate::report::Report;
use std::time::Duration;

const GROUP: &str = "robustness";
/// CloudStack's timeout for forwarded agent commands (spec §4.10).
const FQCN_TIMEOUT: u64 = 5;
/// How fast a refusal should come (the brief: "within a second").
const FAST: Duration = Duration::from_millis(1000);

/// Runs the robustness cases.
pub fn run(ctx: &Ctx, report: &mut Report) {
    for fqcn in ["com.cloud.agent.api.ModifyStoragePoolCommand", "org.apache.cloudstack.storage.command.CopyCommand"] {
        let case = format!("fqcn-refused/{fqcn}");
        report.case(GROUP, &case, || {
            let r = ctx.run(fqcn, &payload::fqcn_payload(fqcn), FQCN_TIMEOUT)?;
            ctx.expect_small(&r)?;
            if let Some(e) = &r.spawn_error {
                return Err(format!("could not run the extension: {e}"));
            }
            if r.timed_out {
                return Err(format!("no answer within the {FQCN_TIMEOUT} s CloudStack allows: {}", ctx.describe(&r)));
            }
            if r.success() {
                return Err(format!("exit 0 tells CloudStack the agent command succeeded: {}", ctx.describe(&r)));
            }
            if r.elapsed > FAST {
                return Err(format!("refusal took {} ms (> {} ms); must not touch the backend", r.elapsed.as_millis(), FAST.as_millis()));
            }
            Ok(())
        });
    }

    report.case(GROUP, "unknown-action-refused", || {
        let vm = Vm::new(&ctx.env, 4000);
        let r = ctx.run("pvcheckNoSuchAction", &vm.custom_payload(&ctx.env, "pvcheckNoSuchAction", "Running", None), FQCN_TIMEOUT)?;
        ctx.expect_refusal(&r, "an unknown action")
    });

    report.case(GROUP, "missing-payload-file", || {
        let path = ctx.dir.join(format!("{}.json", payload::uuid()));
        let r = ctx.run_raw("status", &path, "30", Duration::from_secs(30), false, false);
        ctx.expect_refusal(&r, "a missing payload")?;
        if r.text().is_empty() {
            return Err("no output: CloudStack would show the user an empty error".into());
        }
        Ok(())
    });

    report.case(GROUP, "invalid-payload-json", || {
        let path = ctx.dir.join(format!("{}.json", payload::uuid()));
        std::fs::write(&path, "{\"virtualmachinename\": ").map_err(|e| e.to_string())?;
        let r = ctx.run_raw("stop", &path, "30", Duration::from_secs(30), false, false);
        ctx.expect_refusal(&r, "a truncated payload")
    });

    report.case(GROUP, "timeout-argument-unparsable", || {
        // Spec §1.1: be tolerant; treat a garbage argv[3] as 600. A VM that does not exist
        // must still be reported (poweroff) rather than crashing.
        let vm = Vm::new(&ctx.env, 4001);
        let path = ctx.write_payload(&vm.lifecycle_payload(&ctx.env, "status", payload::Phase::Other("Stopped")))?;
        let r = ctx.run_raw("status", &path, "not-a-number", Duration::from_secs(30), false, false);
        ctx.expect_ok(&r)?;
        Ok(())
    });
}

/// The timeout case: with `slow_env` making the backend slow, a `create` given a short
/// timeout must end on its own (exit ≠ 0) before CloudStack's kill, and leave nothing.
pub fn timeout_honoured(ctx: &Ctx, report: &mut Report, slow_env: &[(String, String)], timeout: u64) {
    if slow_env.is_empty() {
        report.record(GROUP, "timeout-honoured", crate::report::Outcome::Skip("no --slow-env given to make the backend slower than the timeout".into()), std::time::Instant::now());
        return;
    }
    report.case(GROUP, "timeout-honoured", || {
        let mut slow = Ctx {
            cmd: wrap_env(&ctx.cmd, slow_env),
            env: ctx.env.clone(),
            dir: ctx.dir.clone(),
            lifecycle_timeout: timeout,
            action_timeout: ctx.action_timeout,
            secrets: std::sync::Mutex::new(ctx.secrets.lock().map(|s| s.clone()).unwrap_or_default()),
            log: Default::default(),
        };
        let vm = Vm::new(&slow.env, 4002);
        let r = slow.lifecycle(&vm, "create", payload::Phase::Starting)?;
        let result = if r.timed_out {
            Err(format!("create was killed at the {timeout} s timeout instead of failing cleanly before it: {}", slow.describe(&r)))
        } else if r.success() {
            Err(format!("create succeeded although the backend was slowed down by --slow-env; the case proves nothing: {}", slow.describe(&r)))
        } else {
            Ok(())
        };
        // Clean up with the normal (fast) environment and the normal timeout.
        slow.cmd = ctx.cmd.clone();
        slow.lifecycle_timeout = ctx.lifecycle_timeout;
        let left = ctx.expect_power(&vm, "Stopped", super::parse::Power::Off).map_err(|e| format!("a half-made VM is left running after the failed create: {e}"));
        let d = ctx.lifecycle(&vm, "delete", payload::Phase::Expunging)?;
        result?;
        left?;
        ctx.expect_ok(&d).map_err(|e| format!("delete after the timed-out create: {e}"))
    });
}

/// `env K=V … <cmd…>` so only this run sees the slow settings.
fn wrap_env(cmd: &[String], vars: &[(String, String)]) -> Vec<String> {
    let mut v = vec!["/usr/bin/env".to_string()];
    v.extend(vars.iter().map(|(k, x)| format!("{k}={x}")));
    v.extend(cmd.iter().cloned());
    v
}
