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

/// How long the first probe may take before the run is abandoned.
const PROBE_TIMEOUT: u64 = 10;

/// First contact: `status` of a VM that does not exist must answer (poweroff) quickly.
/// `false` when the extension hangs (e.g. reads stdin) or cannot run: the caller stops,
/// so a hanging extension costs seconds, not one timeout per case.
pub fn responsive(ctx: &Ctx, report: &mut Report) -> bool {
    let mut answered = false;
    let limit = PROBE_TIMEOUT.min(ctx.lifecycle_timeout);
    report.case(GROUP, "responds", || {
        let vm = Vm::new(&ctx.env, 4003);
        let r = ctx.run("status", &vm.lifecycle_payload(&ctx.env, "status", payload::Phase::Other("Stopped")), limit)?;
        if let Some(e) = &r.spawn_error {
            return Err(format!("cannot run the extension: {e}"));
        }
        if r.timed_out {
            return Err(format!("no answer to `status` within {limit} s (does it read stdin? CloudStack never writes or closes it); remaining cases not run"));
        }
        answered = true;
        Ok(())
    });
    if answered {
        report.case(GROUP, "status-of-unknown-vm-is-poweroff", || {
            // Stopped VMs whose last host is this host are polled too (spec §4.7).
            let vm = Vm::new(&ctx.env, 4005);
            ctx.expect_power(&vm, "Stopped", super::parse::Power::Off)
        });
    }
    answered
}

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
                return Err(format!(
                    "refusal took {} ms (> {} ms); must not touch the backend",
                    r.elapsed.as_millis(),
                    FAST.as_millis()
                ));
            }
            Ok(())
        });
    }

    report.case(GROUP, "unknown-action-refused", || {
        let vm = Vm::new(&ctx.env, 4000);
        let r = ctx.run(
            "pvcheckNoSuchAction",
            &vm.custom_payload(&ctx.env, "pvcheckNoSuchAction", "Running", None),
            FQCN_TIMEOUT,
        )?;
        ctx.expect_refusal(&r, "an unknown action")?;
        if r.elapsed > FAST {
            return Err(format!(
                "refusing an unknown action took {} ms (> {} ms)",
                r.elapsed.as_millis(),
                FAST.as_millis()
            ));
        }
        Ok(())
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

    report.case(GROUP, "lenient-payload", || {
        // Gson omits nulls and newer versions add members: a sparse VM object with unknown
        // members must still be understood.
        let vm = Vm::new(&ctx.env, 4006);
        let mut p = vm.lifecycle_payload(&ctx.env, "status", payload::Phase::Other("Stopped"));
        if let Some(obj) = p.get_mut("cloudstack.vm.details").and_then(|v| v.as_object_mut()) {
            obj.retain(|k, _| matches!(k.as_str(), "id" | "name" | "uuid" | "details"));
            obj.insert("futureMember".into(), serde_json::json!({"nested": [1, 2, {"x": true}]}));
        }
        if let Some(obj) = p.as_object_mut() {
            obj.insert("futureTopLevel".into(), "value\u{2028}with separator".into());
        }
        ctx.expect_power(&vm, "Stopped", super::parse::Power::Off)?;
        let r = ctx.run("status", &p, ctx.lifecycle_timeout)?;
        ctx.expect_ok(&r)?;
        match super::parse::status_power(&r.text()) {
            super::parse::Power::Off => Ok(()),
            other => Err(format!("sparse payload with unknown members gave {other:?}: {}", ctx.describe(&r))),
        }
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

/// With `--bad-template-id`: a `create` from a template that does not exist must fail
/// cleanly (exit ≠ 0) and leave no VM behind.
pub fn failed_create_cleans_up(ctx: &Ctx, report: &mut Report, bad_template: Option<&str>) {
    let Some(bad) = bad_template else {
        report.record(
            GROUP,
            "failed-create-cleans-up",
            crate::report::Outcome::Skip("no --bad-template-id given to make create fail".into()),
            std::time::Instant::now(),
        );
        return;
    };
    report.case(GROUP, "failed-create-cleans-up", || {
        let mut env = ctx.env.clone();
        env.template.insert("template_type".into(), "template".into());
        env.template.insert("template_id".into(), bad.into());
        let vm = Vm::new(&env, 4004);
        let r =
            ctx.run("create", &vm.lifecycle_payload(&env, "create", payload::Phase::Starting), ctx.lifecycle_timeout)?;
        let refused = ctx.expect_refusal(&r, "a create from a template that does not exist");
        let left = ctx.expect_power(&vm, "Stopped", super::parse::Power::Off);
        let listed = match super::lifecycle::statuses(ctx)? {
            Some(map) if map.iter().any(|(k, _)| k == &vm.name) => {
                Err(format!("statuses still lists {} after the failed create (half-made VM left behind)", vm.name))
            }
            _ => Ok(()),
        };
        let _ = ctx.lifecycle(&vm, "delete", payload::Phase::Expunging);
        refused?;
        left?;
        listed
    });
}

/// The timeout case: with `slow_env` making the backend slow, a `create` given a short
/// timeout must end on its own (exit ≠ 0) before CloudStack's kill, and leave nothing.
pub fn timeout_honoured(ctx: &Ctx, report: &mut Report, slow_env: &[(String, String)], timeout: u64) {
    if slow_env.is_empty() {
        report.record(
            GROUP,
            "timeout-honoured",
            crate::report::Outcome::Skip("no --slow-env given to make the backend slower than the timeout".into()),
            std::time::Instant::now(),
        );
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
            Err(format!(
                "create was killed at the {timeout} s timeout instead of failing cleanly before it: {}",
                slow.describe(&r)
            ))
        } else if r.success() {
            Err(format!(
                "create succeeded although the backend was slowed down by --slow-env; the case proves nothing: {}",
                slow.describe(&r)
            ))
        } else {
            Ok(())
        };
        // Clean up with the normal (fast) environment and the normal timeout.
        slow.cmd = ctx.cmd.clone();
        slow.lifecycle_timeout = ctx.lifecycle_timeout;
        let left = ctx
            .expect_power(&vm, "Stopped", super::parse::Power::Off)
            .map_err(|e| format!("a half-made VM is left running after the failed create: {e}"));
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
