//! Apache CloudStack orchestrator-extension front.

use polyvisor_core::DriverFactory;
use std::process::ExitCode;
use std::sync::Arc;

/// `polyvisor cloudstack` options.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {}

/// Runs one CloudStack extension invocation (or the install helper).
pub fn run(_args: Args, _factory: Arc<dyn DriverFactory>) -> ExitCode {
    ExitCode::FAILURE
}
