//! libvirt/KVM driver over the libvirt C API (`virt` crate, cargo feature `libvirt`).
//!
//! polyvisor keeps no state outside libvirt: template flag, platform key and clone
//! provenance live in a `<polyvisor:meta>` element in each domain's `<metadata>`
//! ([`meta`]); task progress is derived from live libvirt state ([`polyvisor_core::task`]).
//! The XML, naming, settings and state-mapping modules are pure and always built; the
//! driver itself needs the libvirt C library and is behind the feature. See README.md.

pub mod config;
pub mod domxml;
pub mod meta;
pub mod names;
pub mod state;

#[cfg(feature = "libvirt")]
mod conn;
#[cfg(feature = "libvirt")]
mod driver;
#[cfg(feature = "libvirt")]
mod ops;

#[cfg(feature = "libvirt")]
use polyvisor_core::{Driver, Result, Settings};
#[cfg(feature = "libvirt")]
use std::sync::Arc;

/// Builds the driver from settings (no backend I/O; see `Driver::probe`).
#[cfg(feature = "libvirt")]
pub fn open(settings: &Settings) -> Result<Arc<dyn Driver>> {
    Ok(Arc::new(driver::LibvirtDriver::new(config::Config::from_settings(settings)?)))
}
