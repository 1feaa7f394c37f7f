//! `polyvisor check`: conformance harnesses that behave like the orchestration platform
//! and drive **any** provider command (polyvisor's or a third party's) over the wire.
//! The harness never calls a driver: it only sees the provider's process.
//!
//! Each protocol lives in its own module (`ras`, `cloudstack`); [`report`] collects case
//! results and writes text, JSON and JUnit XML; the exit code says pass (0) or fail (1).

pub mod cloudshell;
pub mod cloudstack;
pub mod ras;
pub mod report;

use std::path::PathBuf;
use std::process::ExitCode;

/// `polyvisor check` options.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    protocol: Protocol,
}

#[derive(Debug, Clone, clap::Subcommand)]
enum Protocol {
    /// Behave like the Parallels RAS Provider Agent / Test Kit.
    Ras(ras::Args),
    /// Behave like the CloudStack management server.
    Cloudstack(Box<cloudstack::Args>),
    /// Behave like a CloudShell Execution Server for a cloud provider shell package.
    Cloudshell(Box<cloudshell::Args>),
}

/// Report options shared by every harness.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// Write the JSON report here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write a JUnit XML report here.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Print only the summary (no per-case lines).
    #[arg(long, short)]
    pub quiet: bool,
}

/// Runs the harness; the exit code says pass (0) or fail (1).
pub fn run(args: Args) -> ExitCode {
    let report = match args.protocol {
        Protocol::Ras(a) => ras::run(a),
        Protocol::Cloudstack(a) => cloudstack::run(*a),
        Protocol::Cloudshell(a) => cloudshell::run(*a),
    };
    match report {
        Ok(passed) if passed => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("polyvisor check: {e}");
            ExitCode::from(2)
        }
    }
}
