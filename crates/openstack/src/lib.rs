//! OpenStack driver over Keystone v3, Nova, Glance v2 and Neutron (see `README.md` for
//! settings, the mapping and the Virtuozzo profile).
//!
//! Layers: [`config`] (settings → config) → `client` (over `polyvisor-http`: auth, catalog,
//! microversion, round-trip counter, [`error`] mapping) → `driver` (the [`Driver`]
//! operations and their task tokens) with [`map`] (server JSON → core model).

pub mod client;
pub mod config;
mod driver;
pub mod error;
pub mod map;

pub use driver::OpenStackDriver;
use polyvisor_core::{Capabilities, Driver, OpenOptions, Result, Settings};
use std::sync::Arc;

use config::{Config, Profile};

/// Builds the `openstack` driver (no backend I/O; see `Driver::probe`).
pub fn open(settings: &Settings, _opts: &OpenOptions) -> Result<Arc<dyn Driver>> {
    Ok(Arc::new(OpenStackDriver::new(Config::from_settings(settings, Profile::OpenStack)?)?))
}

/// Builds the `virtuozzo` profile of the driver (Virtuozzo Hybrid Infrastructure defaults).
pub fn open_virtuozzo(settings: &Settings, _opts: &OpenOptions) -> Result<Arc<dyn Driver>> {
    Ok(Arc::new(OpenStackDriver::new(Config::from_settings(settings, Profile::Virtuozzo)?)?))
}

/// Capabilities without credentials or I/O (the same for every configuration).
pub fn capabilities(_settings: &Settings, _opts: &OpenOptions) -> Result<Capabilities> {
    Ok(Config::capabilities())
}

/// Like [`open`], returning the concrete driver (round-trip counters in tests).
pub fn open_driver(settings: &Settings) -> Result<OpenStackDriver> {
    OpenStackDriver::new(Config::from_settings(settings, Profile::OpenStack)?)
}
