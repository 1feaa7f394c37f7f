//! libvirt/KVM driver over the libvirt C API (virt crate).

#[cfg(feature = "libvirt")]
use polyvisor_core::{Driver, Error, Result, Settings};
#[cfg(feature = "libvirt")]
use std::sync::Arc;

/// Builds the driver from settings (no backend I/O; see `Driver::probe`).
#[cfg(feature = "libvirt")]
pub fn open(_settings: &Settings) -> Result<Arc<dyn Driver>> {
    Err(Error::unsupported("libvirt driver (not built yet)"))
}
