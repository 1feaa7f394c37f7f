//! Proxmox VE driver over the PVE REST API (see `README.md` for settings and quirks).
//!
//! Layers: [`config`] (settings → config) → [`api`] (over `polyvisor-http`) (HTTP, auth, retries,
//! round-trip counter, [`pve_error`] mapping) → `client` (node cache, task reads) →
//! `driver`/`provision`/`tasks` (the [`Driver`] operations and their task state machines).

pub mod api;
mod client;
pub mod config;
mod driver;
pub mod lenient;
pub mod names;
pub mod parse;
mod provision;
pub mod pve_error;
pub mod tags;
mod tasks;

pub mod upid;
pub mod validate;

pub use client::ProxmoxDriver;
use polyvisor_core::{Driver, Result, Settings};
use std::sync::Arc;

/// Builds the driver from settings (no backend I/O; see `Driver::probe`).
pub fn open(settings: &Settings) -> Result<Arc<dyn Driver>> {
    Ok(Arc::new(open_driver(settings)?))
}

/// Capabilities for these settings without validating credentials (only `template_mode` matters).
pub fn capabilities(settings: &Settings) -> Result<polyvisor_core::Capabilities> {
    Ok(config::TemplateMode::from_settings(settings)?.capabilities())
}

/// Like [`open`], but returns the concrete driver (for round-trip counters in tests and benchmarks).
pub fn open_driver(settings: &Settings) -> Result<ProxmoxDriver> {
    ProxmoxDriver::new(config::Config::from_settings(settings)?)
}
