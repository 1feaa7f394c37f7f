//! Proxmox VE driver over the PVE REST API.

use polyvisor_core::{Driver, Error, Result, Settings};
use std::sync::Arc;

/// Builds the driver from settings (no backend I/O; see `Driver::probe`).
pub fn open(_settings: &Settings) -> Result<Arc<dyn Driver>> {
    Err(Error::unsupported("proxmox driver (not built yet)"))
}
