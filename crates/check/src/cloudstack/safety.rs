//! Safety cases (issue 9 items 1, 2 and 4), over the wire only, so they catch the same
//! defects in any provider:
//!
//! - `foreign-vm-*` (with `--foreign-vm NAME`, an existing backend VM the provider did not
//!   create, which the operator allows the harness to probe; name a **running** one so a
//!   provider that matches by name shows it): a CloudStack VM whose `vm_name` is NAME, or
//!   whose internal name is NAME, is unknown to the provider (`status` poweroff, `start`/
//!   `reboot` refused), `create` into it is refused (not adopted), `statuses` never lists
//!   it, and `stop`/`delete` for it succeed while the probes before and after agree (run
//!   only when nothing earlier matched by name, so a broken provider is not given the
//!   chance to stop or delete the VM);
//! - `interrupted-create-converges/<ms>`: a `create` killed after `<ms>` (like a crashed
//!   management server or a SIGKILL at the timeout) and then retried must end with the VM
//!   running, listed once by `statuses`, and gone after one `delete` (a second VM holding
//!   the key would still answer `poweron`);
//! - `broadcast-uri-refused/<uri>`: a NIC whose `broadcastUri` the provider cannot realise
//!   (`vxlan://`, `pvlan://`, a VLAN id that is not 1-4094, none on a `Vlan` network) must
//!   make `prepare` or `create` fail and leave no VM; `vlan://untagged` must work.

use super::ctx::Ctx;
use super::lifecycle;
use super::parse::Power;
use super::payload::{Phase, Vm};
use crate::report::{Outcome, Report};
use serde_json::Value;
use std::time::{Duration, Instant};

const GROUP: &str = "safety";

/// Options of the safety cases.
#[derive(Debug, Clone)]
pub struct Opts {
    /// A backend VM the provider did not create (its backend name).
    pub foreign_vm: Option<String>,
    /// Kill points (ms after spawn) of the interrupted creates.
    pub interrupt_after_ms: Vec<u64>,
    /// Send `prepare` before `create`.
    pub prepare: bool,
}

/// Runs the safety cases.
pub fn run(ctx: &Ctx, report: &mut Report, opts: &Opts) {
    foreign(ctx, report, opts);
    for ms in &opts.interrupt_after_ms {
        report.case(GROUP, &format!("interrupted-create-converges/{ms}ms"), || interrupted_create(ctx, opts, *ms));
    }
    for (label, uri) in BAD_URIS {
        report.case(GROUP, &format!("broadcast-uri-refused/{label}"), || bad_uri(ctx, opts, *uri));
    }
    report.case(GROUP, "broadcast-uri-untagged-accepted", || untagged(ctx, opts));
}

/// Broadcast URIs no polyvisor-style provider can realise (`None`: missing on a Vlan network).
const BAD_URIS: &[(&str, Option<&str>)] = &[
    ("vxlan", Some("vxlan://5000")),
    ("pvlan", Some("pvlan://100-i200")),
    ("vlan-not-a-number", Some("vlan://abc")),
    ("vlan-out-of-range", Some("vlan://99999")),
    ("vlan-zero", Some("vlan://0")),
    ("missing-on-vlan-network", None),
];

/// `prepare` (when enabled) then `create`; `Ok(true)` when the provider accepted both.
fn prepare_and_create(ctx: &Ctx, vm: &mut Vm, opts: &Opts) -> Result<bool, String> {
    if opts.prepare {
        let r = ctx.lifecycle(vm, "prepare", Phase::Starting)?;
        ctx.expect_small(&r)?;
        if !r.success() {
            return Ok(false);
        }
        if let Ok(patch) = serde_json::from_str::<Value>(&r.text()) {
            vm.apply_prepare(&ctx.env, &patch)?;
        }
    }
    let r = ctx.lifecycle(vm, "create", Phase::Starting)?;
    ctx.expect_small(&r)?;
    if r.timed_out {
        return Err(format!("create did not answer: {}", ctx.describe(&r)));
    }
    Ok(r.success())
}

/// Whether `statuses` (when implemented) lists `name`.
fn listed(ctx: &Ctx, name: &str) -> Result<Option<Power>, String> {
    Ok(lifecycle::statuses(ctx)?.and_then(|m| m.into_iter().find(|(k, _)| k == name).map(|(_, p)| p)))
}

fn foreign(ctx: &Ctx, report: &mut Report, opts: &Opts) {
    let Some(name) = opts.foreign_vm.as_deref() else {
        report.record(
            GROUP,
            "foreign-vm",
            Outcome::Skip(
                "not run: no --foreign-vm NAME given (an existing backend VM the provider did not create, which the \
                 harness may probe)"
                    .into(),
            ),
            Instant::now(),
        );
        return;
    };
    // A CloudStack VM whose requested backend name is NAME, and one whose internal name is.
    let mut by_detail = Vm::new(&ctx.env, 4030);
    by_detail.details.insert("External:vm_name".into(), name.into());
    let mut by_internal = Vm::new(&ctx.env, 4031);
    by_internal.name = name.to_string();
    let mut safe = report.case(GROUP, "foreign-vm-unknown-to-status", || {
        for vm in [&by_detail, &by_internal] {
            ctx.expect_power(vm, "Stopped", Power::Off).map_err(|e| {
                format!(
                    "the provider resolves VM {} to the foreign VM {name} by name (it never created it): {e}",
                    vm.name
                )
            })?;
        }
        Ok(())
    });
    safe &= report.case(GROUP, "foreign-vm-not-in-statuses", || match listed(ctx, name)? {
        Some(p) => {
            Err(format!("statuses reports the foreign VM {name} ({p:?}): only VMs the provider owns belong there"))
        }
        None => Ok(()),
    });
    safe &= report.case(GROUP, "foreign-vm-not-started-or-rebooted", || {
        for (action, phase) in [("start", Phase::Starting), ("reboot", Phase::Rebooting)] {
            let r = ctx.lifecycle(&by_detail, action, phase)?;
            ctx.expect_refusal(&r, &format!("`{action}` of a VM the provider never created (vm_name {name})"))?;
        }
        Ok(())
    });
    if !safe {
        let why = "an earlier foreign-vm case showed the provider matching VMs by name";
        skip_destructive(report, &["foreign-vm-not-adopted-by-create", "foreign-vm-not-stopped-or-deleted"], why);
        return;
    }
    let adopted = report.case(GROUP, "foreign-vm-not-adopted-by-create", || {
        let mut vm = by_detail.clone();
        if prepare_and_create(ctx, &mut vm, opts)? {
            return Err(format!(
                "create of a new VM with vm_name {name} succeeded although a VM of that name exists that the provider \
                 did not create: it must fail naming the conflict, not adopt it"
            ));
        }
        ctx.expect_power(&vm, "Stopped", Power::Off).map_err(|e| format!("after the refused create: {e}"))
    });
    if !adopted {
        skip_destructive(report, &["foreign-vm-not-stopped-or-deleted"], "create adopted the foreign VM");
        return;
    }
    report.case(GROUP, "foreign-vm-not-stopped-or-deleted", || {
        for action in ["stop", "delete"] {
            let r = ctx.lifecycle(&by_detail, action, Phase::Expunging)?;
            ctx.expect_ok(&r).map_err(|e| format!("`{action}` of an absent VM must succeed (spec §4.4): {e}"))?;
        }
        for vm in [&by_detail, &by_internal] {
            ctx.expect_power(vm, "Stopped", Power::Off)?;
        }
        match listed(ctx, name)? {
            Some(p) => Err(format!("statuses now reports the foreign VM {name} ({p:?})")),
            None => Ok(()),
        }
    });
}

fn skip_destructive(report: &mut Report, names: &[&str], why: &str) {
    for name in names {
        report.record(GROUP, name, Outcome::Skip(format!("not run to spare the foreign VM: {why}")), Instant::now());
    }
}

fn interrupted_create(ctx: &Ctx, opts: &Opts, kill_ms: u64) -> Result<(), String> {
    let mut vm = Vm::new(&ctx.env, 4040);
    if opts.prepare {
        lifecycle::prepare(ctx, &mut vm)?;
    }
    let path = ctx.write_payload(&vm.lifecycle_payload(&ctx.env, "create", Phase::Starting))?;
    let first =
        ctx.run_raw("create", &path, &ctx.lifecycle_timeout.to_string(), Duration::from_millis(kill_ms), false, false);
    ctx.expect_small(&first)?;
    let result = (|| {
        let retry = ctx.lifecycle(&vm, "create", Phase::Starting)?;
        ctx.expect_ok(&retry).map_err(|e| {
            format!("the create retried after one killed at {kill_ms} ms ({}) failed: {e}", ctx.describe(&first))
        })?;
        ctx.expect_power(&vm, "Running", Power::On)
            .map_err(|e| format!("retried create reported success but the VM is not running: {e}"))?;
        if let Some(p) = listed(ctx, &vm.name)?.filter(|p| *p != Power::On) {
            return Err(format!("statuses reports {} as {p:?} after the retried create", vm.name));
        }
        Ok(())
    })();
    let deleted = ctx.lifecycle(&vm, "delete", Phase::Expunging)?;
    result?;
    ctx.expect_ok(&deleted)?;
    ctx.expect_power(&vm, "Stopped", Power::Off).map_err(|e| {
        format!(
            "after one delete another VM still answers for {} (a duplicate from the interrupted create): {e}",
            vm.name
        )
    })?;
    match listed(ctx, &vm.name)? {
        Some(p) => Err(format!(
            "statuses still lists {} ({p:?}) after delete: the interrupted create left a second VM",
            vm.name
        )),
        None => Ok(()),
    }
}

fn with_uri(vm: &mut Vm, uri: Option<&str>) {
    if let Some(nic) = vm.nics.first_mut().and_then(Value::as_object_mut) {
        match uri {
            Some(u) => {
                nic.insert("broadcastUri".into(), u.into());
                nic.insert("isolationUri".into(), u.into());
            }
            None => {
                nic.remove("broadcastUri");
                nic.remove("isolationUri");
                nic.insert("broadcastType".into(), "Vlan".into());
            }
        }
    }
}

fn bad_uri(ctx: &Ctx, opts: &Opts, uri: Option<&str>) -> Result<(), String> {
    let mut vm = Vm::new(&ctx.env, 4050);
    with_uri(&mut vm, uri);
    let shown = uri.unwrap_or("(none on a Vlan network)");
    let accepted = prepare_and_create(ctx, &mut vm, opts);
    let left = ctx.expect_power(&vm, "Stopped", Power::Off);
    let in_statuses = listed(ctx, &vm.name);
    let _ = ctx.lifecycle(&vm, "delete", Phase::Expunging);
    if accepted? {
        return Err(format!(
            "create with broadcastUri {shown} succeeded: a NIC the provider cannot put on that network lands on the \
             untagged network silently; it must be refused before anything is created"
        ));
    }
    left.map_err(|e| format!("the refused create left a VM behind: {e}"))?;
    match in_statuses? {
        Some(p) => Err(format!("statuses lists {} ({p:?}) after the refused create", vm.name)),
        None => Ok(()),
    }
}

fn untagged(ctx: &Ctx, opts: &Opts) -> Result<(), String> {
    let mut vm = Vm::new(&ctx.env, 4060);
    with_uri(&mut vm, Some("vlan://untagged"));
    let accepted = prepare_and_create(ctx, &mut vm, opts);
    let power = ctx.status(&vm, "Running").map(|(p, _)| p);
    let deleted = ctx.lifecycle(&vm, "delete", Phase::Expunging)?;
    if !accepted? {
        return Err("create with broadcastUri vlan://untagged (an untagged NIC, as CloudStack means it) failed".into());
    }
    if power? != Power::On {
        return Err("create with vlan://untagged succeeded but the VM is not running".into());
    }
    ctx.expect_ok(&deleted)
}
