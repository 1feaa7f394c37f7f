//! `polyvisor manageiq ...`: the ManageIQ front (crates/manageiq) over the driver registry.

use polyvisor_core::DriverFactory;
use std::process::ExitCode;
use std::sync::Arc;

/// Runs the ManageIQ front.
pub fn run(args: polyvisor_manageiq::Args, factory: Arc<dyn DriverFactory>) -> ExitCode {
    polyvisor_manageiq::run(args, factory)
}
