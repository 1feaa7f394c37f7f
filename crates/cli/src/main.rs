//! `polyvisor`: the thin CLI that wires drivers to protocol fronts.
//!
//! Exit codes: the protocol subcommands (`ras`, `cloudstack`) follow their platform's
//! contract; the human commands (`check`, `sim`, `drivers`, `cloudstack install`) exit 0 on
//! success, 1 on failure, 2 on usage errors (clap) and on a `--log-file` that cannot be
//! opened.

mod cloudshell;
mod logging;
mod manageiq;

use clap::{Parser, Subcommand};
use polyvisor_core::DriverFactory;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// One binary that plugs any hypervisor into any VM-orchestration platform.
#[derive(Debug, Parser)]
#[command(name = "polyvisor", version, about)]
struct Cli {
    /// Write logs to this file (protocol modes never log to stdout/stderr).
    #[arg(long, global = true, env = "POLYVISOR_LOG_FILE")]
    log_file: Option<PathBuf>,
    /// Log filter (`error`, `warn`, `info`, `debug`, `trace`, or a tracing directive).
    #[arg(long, global = true, env = "POLYVISOR_LOG_LEVEL", default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the Parallels RAS Custom Provider Framework protocol on stdio.
    Ras(polyvisor_ras::Args),
    /// Run one Apache CloudStack extension action, or install the extension.
    Cloudstack(polyvisor_cloudstack::Args),
    /// Conformance harness: drive any provider command like the platform does.
    Check(polyvisor_check::Args),
    /// Administer the embedded simulator (seed, reset, faults, state).
    Sim(polyvisor_sim::admin::Args),
    /// List the drivers this build contains.
    Drivers,
    /// Quali CloudShell: generate the cloud provider shell, or run one of its commands.
    Cloudshell(polyvisor_cloudshell::Args),
    /// ManageIQ provider front: inventory, operations, events, metrics as JSON; the plugin gem generator.
    Manageiq(polyvisor_manageiq::Args),
}

/// Reports a start-up failure the way the mode speaks: RAS answers every request with a
/// JSON-RPC error, a CloudStack action prints its JSON error document (exit 1), and the
/// human commands (`cloudstack install` included) print to stderr and exit 2.
fn refuse(command: &Command, reason: &str) -> ExitCode {
    match command {
        Command::Ras(_) => polyvisor_ras::refuse(reason),
        Command::Cloudstack(a) if !matches!(a.command, Some(polyvisor_cloudstack::Command::Install(_))) => {
            polyvisor_cloudstack::output::Reply::error(reason).emit()
        }
        _ => {
            eprintln!("polyvisor: {reason}");
            ExitCode::from(2)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let protocol_mode = matches!(cli.command, Command::Ras(_) | Command::Cloudstack(_) | Command::Manageiq(_))
        || cloudshell::is_protocol(&cli.command);
    if let Err(reason) = logging::init(cli.log_file.as_deref(), &cli.log_level, protocol_mode) {
        return refuse(&cli.command, &reason);
    }
    let factory: Arc<dyn DriverFactory> = Arc::new(polyvisor_drivers::Registry);
    match cli.command {
        Command::Ras(args) => polyvisor_ras::run(args, factory),
        Command::Cloudstack(args) => polyvisor_cloudstack::run(args, factory),
        Command::Check(args) => polyvisor_check::run(args),
        Command::Sim(args) => polyvisor_sim::admin::run(args),
        Command::Cloudshell(args) => polyvisor_cloudshell::run(args, factory),
        Command::Manageiq(args) => manageiq::run(args, factory),
        Command::Drivers => {
            // One line per driver table row: name, aliases, capabilities (or how to get it).
            print!("{}", polyvisor_drivers::describe_drivers());
            ExitCode::SUCCESS
        }
    }
}
