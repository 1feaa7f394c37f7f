//! Embedded persistent simulator driver (the zero-setup default).

use polyvisor_core::{Driver, Error, Result, Settings};
use std::sync::Arc;

/// Builds the driver from settings (no backend I/O; see `Driver::probe`).
pub fn open(_settings: &Settings) -> Result<Arc<dyn Driver>> {
    Err(Error::unsupported("sim driver (not built yet)"))
}

pub mod admin {
    //! `polyvisor sim …`: inspect, seed, reset and inject faults into the sim database.

    use std::process::ExitCode;

    /// `polyvisor sim` options.
    #[derive(Debug, Clone, clap::Args)]
    pub struct Args {}

    /// Runs one admin command.
    pub fn run(_args: Args) -> ExitCode {
        ExitCode::FAILURE
    }
}
