//! `polyvisor check cloudstack -- <extension executable> [args]`: behaves like the
//! CloudStack 4.22 management server towards an Orchestrator extension (spec
//! `cloudstack-extension.md`) and reports what CloudStack would make of each answer.
//!
//! Every invocation is `<cmd…> <action> <payload.json> <timeout>` with a Gson-shaped
//! payload (nulls omitted, memory in bytes, `\u003d`-style escapes) written to
//! `<data-dir>/<extension-name>/<uuid>.json`, stdin an idle pipe (never written, never
//! closed), stdout+stderr merged into one pipe, SIGKILL of the direct child at the timeout;
//! success is the exit code only. Works against any extension: polyvisor's, the built-in
//! scripts, or a scaffold (see `tests/fixtures/cloudstack/`).
//!
//! Case groups, in order:
//! - `robustness`: first a responsiveness probe (a hanging extension ends the run early),
//!   `status` of an unknown VM = poweroff, Java class names (`com.cloud.…`,
//!   `org.apache.cloudstack.…`, timeout 5) refused with exit ≠ 0 within 1 s, an unknown
//!   action, a missing and a truncated payload file, an unparsable timeout argument;
//! - `lifecycle`: prepare (patch merged like `JsonMergeUtil`) → create (+ poweron) →
//!   create retried, prepare+create retried → status latency → statuses → stop, stop
//!   again → start → reboot → getconsole (VNC or direct, parsed like CloudStack) →
//!   expunge (stop with `expunge.external.vm`) → delete, delete again → status/stop/
//!   statuses after delete;
//! - `custom-actions`: probed `ListSnapshots` → Create/List/Restore/Delete with typed
//!   parameters and Gson-escaped text, case-insensitive names; probed `Suspend`/`Resume`;
//! - `concurrency`: `--vms` VMs prepared and created in parallel processes, statuses,
//!   parallel expunge; then `--bad-template-id` (failed create leaves nothing) and
//!   `--slow-env` (timeout argument honoured) when given;
//! - `safety`: a foreign VM (`--foreign-vm NAME`) is never resolved by name, adopted by
//!   `create`, listed by `statuses`, started, stopped or deleted; a `create` killed mid-way
//!   (`--interrupt-after-ms`) and retried converges to one running VM; `broadcastUri`
//!   values the provider cannot realise are refused before anything is created;
//! - `hygiene`: every output < 64 KiB, exactly one JSON object per output, no configured
//!   secret (or its JSON/Gson spelling) and no VNC password outside `getconsole`.
//!
//! Secrets never reach the report: values of secret-looking detail keys and printed
//! `password`/`ticket` members are masked.

mod concurrency;
mod ctx;
mod gson;
mod hygiene;
mod invoke;
mod lifecycle;
mod merge;
mod parse;
mod payload;
mod redact;
mod robustness;
mod safety;
mod snapshots;
#[cfg(test)]
mod spec_examples;
#[cfg(test)]
mod tests;

pub use snapshots::Mode as CustomActions;

use crate::report::Report;
use payload::{Details, Env};
use std::path::PathBuf;

/// `polyvisor check cloudstack` options.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Report options.
    #[command(flatten)]
    pub report: crate::ReportArgs,
    /// Extension detail (`externaldetails.extension`), KEY=VALUE; repeatable.
    #[arg(long = "detail", value_name = "KEY=VALUE", value_parser = parse_kv)]
    pub detail: Vec<(String, String)>,
    /// Cluster registration detail (`externaldetails.resourcemap`); repeatable.
    #[arg(long = "cluster-detail", value_name = "KEY=VALUE", value_parser = parse_kv)]
    pub cluster_detail: Vec<(String, String)>,
    /// Host external detail (`externaldetails.host`); repeatable.
    #[arg(long = "host-detail", value_name = "KEY=VALUE", value_parser = parse_kv)]
    pub host_detail: Vec<(String, String)>,
    /// Template/VM external detail (`externaldetails.virtualmachine`, and `External:KEY`
    /// in the VM's details); repeatable.
    #[arg(long = "vm-detail", value_name = "KEY=VALUE", value_parser = parse_kv)]
    pub vm_detail: Vec<(String, String)>,
    /// Shorthand for `--vm-detail template_type=template --vm-detail template_id=ID`.
    #[arg(long, value_name = "ID")]
    pub template_id: Option<String>,
    /// Shorthand for `--vm-detail template_type=iso --vm-detail iso_path=PATH`.
    #[arg(long, value_name = "PATH", conflicts_with = "template_id")]
    pub iso_path: Option<String>,
    /// Extension name (the payload directory `<data-dir>/<name>/`).
    #[arg(long, default_value = "polyvisor-check")]
    pub extension_name: String,
    /// Timeout argument (seconds; also the kill limit) for lifecycle actions. CloudStack
    /// uses `wait` (1800); a smaller default keeps a hanging extension from stalling CI.
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    pub timeout: u64,
    /// Timeout argument for custom actions (the built-ins declare 60).
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub action_timeout: u64,
    /// Do not send `prepare` (extension registered without `orchestratorrequirespreparevm`).
    #[arg(long)]
    pub no_prepare: bool,
    /// Snapshot and suspend/resume custom actions: probe them, require them, or skip them.
    #[arg(long, value_enum, default_value = "auto")]
    pub custom_actions: CustomActions,
    /// VMs created at once by the concurrency cases (below 2 skips them).
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub vms: usize,
    /// vCPUs per VM.
    #[arg(long, default_value_t = 1)]
    pub cpus: u32,
    /// RAM per VM in MiB (sent as `minRam`/`maxRam` bytes).
    #[arg(long, default_value_t = 512, value_name = "MIB")]
    pub memory_mib: u64,
    /// The backend's networks cannot tag VLANs (e.g. libvirt without `vlans`): every NIC the
    /// harness sends is `vlan://untagged` (an untagged NIC, as CloudStack means it) instead of
    /// a tagged `vlan://N`. A provider must refuse tagged NICs it cannot realise.
    #[arg(long)]
    pub untagged_networks: bool,
    /// `status` calls timed by the latency case.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub status_samples: usize,
    /// A template id that does not exist on the backend: `create` from it must fail and
    /// leave nothing behind (the case is skipped without it).
    #[arg(long, value_name = "ID")]
    pub bad_template_id: Option<String>,
    /// Environment (KEY=VALUE, repeatable) that makes the backend slower than
    /// `--slow-timeout`, for the "timeout honoured" case (skipped without it).
    #[arg(long = "slow-env", value_name = "KEY=VALUE", value_parser = parse_kv)]
    pub slow_env: Vec<(String, String)>,
    /// Timeout argument of the "timeout honoured" case.
    #[arg(long, default_value_t = 3, value_name = "SECS")]
    pub slow_timeout: u64,
    /// An existing backend VM (its backend name) that the provider did not create and that
    /// the harness may probe: `status`/`statuses`/`start`/`reboot`/`create`/`stop`/`delete`
    /// for CloudStack VMs named like it must never reach it (name a running one; a
    /// provider that matches by name may stop or delete it). Without it the foreign-VM
    /// cases are reported as not run.
    #[arg(long, value_name = "NAME")]
    pub foreign_vm: Option<String>,
    /// Kill the first `create` of the interrupted-create case this many ms after spawn, then
    /// retry it; repeatable (one case each).
    #[arg(long = "interrupt-after-ms", value_name = "MS", default_values_t = [150u64, 1000])]
    pub interrupt_after_ms: Vec<u64>,
    /// Directory for payload files (default: a fresh temporary directory, removed after).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// A file (e.g. the extension's log) that must not contain any secret after the run:
    /// configured secret details, VNC passwords, console tickets; repeatable.
    #[arg(long = "scan-file", value_name = "PATH")]
    pub scan_file: Vec<PathBuf>,
    /// Keep the payload files (they contain the configured secrets in clear text).
    #[arg(long)]
    pub keep_payloads: bool,
    /// The extension executable and its leading arguments (after `--`).
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// Parses `KEY=VALUE` (the value may contain `=`).
fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

fn details(kv: &[(String, String)]) -> Details {
    kv.iter().map(|(k, v)| (k.clone(), v.clone().into())).collect()
}

/// Checks the entry file as CloudStack does before spawning ("File is not executable").
fn check_executable(program: &str) -> Result<(), String> {
    let path = std::path::Path::new(program);
    if !path.is_absolute() && !program.contains('/') {
        return Ok(()); // resolved through PATH by the OS; CloudStack always has an absolute path
    }
    let meta = std::fs::metadata(path).map_err(|e| format!("extension file {program}: {e}"))?;
    #[cfg(unix)]
    let executable = {
        use std::os::unix::fs::PermissionsExt;
        meta.permissions().mode() & 0o111 != 0
    };
    // Windows has no execute bit: whether a file runs depends on its extension.
    #[cfg(not(unix))]
    let executable = true;
    if !meta.is_file() || !executable {
        return Err(format!("extension file {program}: File is not executable (CloudStack would not run it)"));
    }
    Ok(())
}

/// Runs the harness; `Ok(true)` when every case passed.
pub fn run(args: Args) -> Result<bool, String> {
    let program = args.command.first().ok_or("no extension command given after `--`")?;
    check_executable(program)?;
    let mut env = Env {
        extension: details(&args.detail),
        resourcemap: details(&args.cluster_detail),
        host: details(&args.host_detail),
        template: details(&args.vm_detail),
        cpus: args.cpus.max(1),
        memory_mib: args.memory_mib.max(1),
        untagged: args.untagged_networks,
    };
    if let Some(id) = &args.template_id {
        env.template.insert("template_type".into(), "template".into());
        env.template.insert("template_id".into(), id.clone().into());
    }
    if let Some(p) = &args.iso_path {
        env.template.insert("template_type".into(), "iso".into());
        env.template.insert("iso_path".into(), p.clone().into());
    }
    let (root, temporary) = match &args.data_dir {
        Some(d) => (d.clone(), false),
        None => (std::env::temp_dir().join(format!("polyvisor-check-cloudstack-{}", payload::uuid())), true),
    };
    let dir = root.join(&args.extension_name);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create payload directory {}: {e}", dir.display()))?;

    let mut secrets = redact::Secrets::default();
    for d in [&env.extension, &env.resourcemap, &env.host, &env.template] {
        secrets.add_details(d);
    }
    let ctx = ctx::Ctx {
        cmd: args.command.clone(),
        env,
        dir: dir.clone(),
        lifecycle_timeout: args.timeout.max(1),
        action_timeout: args.action_timeout.max(1),
        secrets: std::sync::Mutex::new(secrets),
        log: Default::default(),
    };
    let target = ctx.redact(&args.command.join(" "));
    let mut report = Report::new("cloudstack", &target, args.report.quiet);
    report.facts.insert("payload_dir".into(), dir.display().to_string().into());
    report.facts.insert("prepare".into(), (!args.no_prepare).into());

    if robustness::responsive(&ctx, &mut report) {
        robustness::run(&ctx, &mut report);
        let flow = lifecycle::Flow {
            prepare: !args.no_prepare,
            snapshots: args.custom_actions,
            status_samples: args.status_samples,
        };
        lifecycle::run(&ctx, &mut report, &flow);
        concurrency::run(&ctx, &mut report, args.vms, !args.no_prepare);
        let opts = safety::Opts {
            foreign_vm: args.foreign_vm.clone(),
            interrupt_after_ms: args.interrupt_after_ms.clone(),
            prepare: !args.no_prepare,
        };
        safety::run(&ctx, &mut report, &opts);
        robustness::failed_create_cleans_up(&ctx, &mut report, args.bad_template_id.as_deref());
        robustness::timeout_honoured(&ctx, &mut report, &args.slow_env, args.slow_timeout.max(1));
    }
    hygiene::run(&ctx, &mut report, &args.scan_file);

    if temporary && !args.keep_payloads {
        let _ = std::fs::remove_dir_all(&root);
    }
    report.finish(&args.report).map_err(|e| format!("cannot write the report: {e}"))
}
