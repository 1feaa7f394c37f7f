//! Azure driver over Azure Resource Manager REST (Microsoft.Compute, Microsoft.Network); see
//! `README.md` for settings, the mapping and the RBAC actions it needs.
//!
//! Layers: [`config`] (settings → config) → [`client`] (on `polyvisor-http`: tokens, ARM
//! calls, 429/`Retry-After`, long-running operations, round-trip counter; failures as
//! [`error::AzError`]) → `driver` (the `Driver` operations and their task state machines
//! over [`model`]).

pub mod assertion;
pub mod client;
pub mod config;
mod driver;
pub mod error;
pub mod model;

pub use driver::Azure;
use polyvisor_core::{Capabilities, Driver, OpenOptions, Result, Settings};
use std::sync::Arc;

/// Builds the driver (no I/O; see `Driver::probe`). One template strategy (a VM with its
/// gallery image definition), so the front's template preference is ignored.
pub fn open(settings: &Settings, _opts: &OpenOptions) -> Result<Arc<dyn Driver>> {
    Ok(Arc::new(open_driver(settings)?))
}

/// Capabilities without credentials or I/O.
pub fn capabilities(_settings: &Settings, _opts: &OpenOptions) -> Result<Capabilities> {
    Ok(config::Config::capabilities())
}

/// Like [`open`], returning the concrete driver (round-trip counters in tests).
pub fn open_driver(settings: &Settings) -> Result<Azure> {
    Azure::new(config::Config::from_settings(settings)?)
}
