//! Apache CloudStack orchestrator-extension front (spec `cloudstack-extension.md`).
//!
//! `polyvisor cloudstack [--config FILE] <action> <payload.json> <timeout>` is the
//! extension executable: exactly one JSON document on stdout, nothing on stderr, stdin
//! never read, success = exit code 0. `polyvisor cloudstack install …` writes the
//! extension directory (entry file + config) and prints the registration commands.
//!
//! Layout: [`action`] classifies `argv[1]`; [`payload`] reads the Gson payload;
//! [`config`] merges settings (precedence documented there); [`invoke`] runs one action
//! under the deadline; [`actions`] holds one module per action group; [`output`] renders
//! the capped reply; [`install`] is the installer.

pub mod action;
pub mod actions;
pub mod config;
pub mod ctx;
pub mod install;
pub mod invoke;
pub mod output;
pub mod payload;
#[cfg(test)]
mod tests;

use polyvisor_core::DriverFactory;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// `polyvisor cloudstack` options.
#[derive(Debug, Clone, clap::Args)]
#[command(disable_help_subcommand = true, args_conflicts_with_subcommands = false)]
pub struct Args {
    /// Settings file (a JSON object: `driver` plus defaults for any detail key); lowest
    /// priority, below every `externaldetails` level of the payload.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// `install`, or the CloudStack invocation `<action> <payload-file> <timeout>`.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What to do.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Write `<root>/<name>/<name>.sh` + `polyvisor.json` and print the CloudMonkey commands.
    Install(install::InstallArgs),
    /// `<action> <payload-file> <timeout>` as CloudStack runs the extension.
    #[command(external_subcommand)]
    Action(Vec<String>),
}

/// Runs one CloudStack extension invocation (or the install helper).
pub fn run(args: Args, factory: Arc<dyn DriverFactory>) -> ExitCode {
    match args.command {
        Some(Command::Install(a)) => install::run(a, factory),
        Some(Command::Action(argv)) => {
            // A panic must not print on stderr (CloudStack parses it): log it, answer JSON.
            std::panic::set_hook(Box::new(|info| tracing::error!(panic = %info, "panic")));
            let reply = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                invoke::answer(&argv, args.config.as_deref(), factory)
            }));
            reply.unwrap_or_else(|_| output::Reply::error("internal error (see the polyvisor log)")).emit()
        }
        None => output::Reply::error("Missing required arguments").emit(),
    }
}
