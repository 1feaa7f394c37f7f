//! HPE VM Essentials driver over the Morpheus REST API (see `README.md` for settings,
//! the mapping and what the test stand-in cannot prove).
//!
//! Layers: [`config`] (settings → config) → [`api`] (over `polyvisor-http`: auth, 429
//! back-off, round-trip counters, [`error`] classification) → [`model`] (instance JSON →
//! guests, polyvisor's tags) → [`catalog`] (creates from the provisioning catalog) → `driver`
//! (the [`Driver`] operations and their tasks).

pub mod api;
pub mod catalog;
pub mod config;
mod driver;
pub mod error;
pub mod model;

pub use driver::HpeVme;
use polyvisor_core::{Capabilities, Driver, OpenOptions, Result, Settings};
use std::sync::Arc;

/// Builds the driver (no I/O; `Driver::probe` connects). One template strategy (flagged
/// instances), so the front's template preference is ignored.
pub fn open(settings: &Settings, _opts: &OpenOptions) -> Result<Arc<dyn Driver>> {
    Ok(Arc::new(open_driver(settings)?))
}

/// Capabilities without credentials or I/O.
pub fn capabilities(_settings: &Settings, _opts: &OpenOptions) -> Result<Capabilities> {
    Ok(driver::capabilities())
}

/// Like [`open`], returning the concrete driver (round-trip counters for tests).
pub fn open_driver(settings: &Settings) -> Result<HpeVme> {
    HpeVme::new(config::Config::from_settings(settings)?)
}
