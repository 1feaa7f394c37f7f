//! Parallels RAS Custom Provider Framework front: line-delimited JSON over stdio.

use polyvisor_core::DriverFactory;
use std::process::ExitCode;
use std::sync::Arc;

/// `polyvisor ras` options.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {}

/// Serves the RAS CPF protocol on stdin/stdout until EOF.
pub fn run(_args: Args, _factory: Arc<dyn DriverFactory>) -> ExitCode {
    ExitCode::FAILURE
}
