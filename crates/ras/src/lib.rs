//! Parallels RAS Custom Provider Framework front: line-delimited JSON over stdio.
//!
//! RAS (or its Test Kit) writes one request per line to stdin; we answer each with
//! exactly one compact JSON line on stdout (nothing else ever goes to stdout). Module map:
//! [`args`] (CLI flags with env fallbacks) → `config` (levels, clamping) → `session`
//! (driver, deadline) → `methods` (one file per method group) → `wire`/`transport`
//! (framing). Errors map to JSON-RPC codes in one place (`errors`).
//!
//! Sessions: `provider/connect` settings may override `template_method`,
//! `can_link_clones`, `can_suspend_guests` and `driver`; when a request needs a driver and
//! no connect happened in this process, the args/env default driver is opened lazily.
//! Task ids are self-describing, so any process resolves them.

pub mod args;
mod config;
mod errors;
pub mod install_ssh;
mod methods;
mod params;
mod refuse;
mod serve;
mod session;
mod transport;
mod wire;

#[cfg(test)]
mod tests;

pub use args::Args;
pub use refuse::refuse;

use polyvisor_core::DriverFactory;
use std::process::ExitCode;
use std::sync::Arc;

/// Serves the RAS CPF protocol on stdin/stdout until EOF (exit 0); exit 1 only when the
/// streams fail or the runtime cannot start.
pub fn run(args: Args, factory: Arc<dyn DriverFactory>) -> ExitCode {
    if let Some(args::Command::InstallSsh(a)) = &args.command {
        return install_ssh::run(a, &factory.driver_names());
    }
    let config = config::Config::from_args(&args);
    if !config.problems.is_empty() {
        tracing::warn!(problems = ?config.problems, "invalid ras arguments; provider/connect will report them");
    }
    // A panic is answered as -32603 by the serve loop; its report goes to the log, never
    // to stderr (the Test Kit reads stderr only at the end and can deadlock on it).
    std::panic::set_hook(Box::new(|info| tracing::error!(panic = %info, "panic in a request handler")));
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let _span = tracing::info_span!("ras", pid = std::process::id()).entered();
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "polyvisor ras serving stdio");
    let mut session = session::Session::new(factory, config);
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let result = serve::serve_process(&rt, &mut session, &mut stdin.lock(), &mut stdout.lock());
    match result {
        Ok(()) => {
            tracing::info!("stdin closed; exiting");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "stdio failed");
            ExitCode::FAILURE
        }
    }
}
