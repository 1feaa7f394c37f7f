//! Hyper-V driver: a fixed set of PowerShell scripts run on the Hyper-V host over WinRM
//! (WS-Management over HTTPS, NTLM or Basic). See `README.md` for settings, the mapping
//! and what the test stand-in cannot prove.
//!
//! Layers: [`config`] → [`client`] (channels of one `polyvisor-http` connection + one
//! reused remote shell; [`wsman`] envelopes, [`ntlm`] handshake) → [`scripts`] (fixed
//! text, values as base64 JSON data) → [`clixml`]/[`error`] (classification) → [`model`]
//! (cmdlet JSON → guests; polyvisor's metadata in the VM's Notes) → `driver`.

pub mod client;
pub mod clixml;
pub mod config;
mod driver;
pub mod error;
pub mod model;
pub mod ntlm;
pub mod scripts;
pub mod wsman;

pub use driver::HyperV;
use polyvisor_core::{Capabilities, Driver, OpenOptions, Result, Settings};
use std::sync::Arc;

/// Builds the driver (no I/O). One template strategy (flagged VMs).
pub fn open(settings: &Settings, _opts: &OpenOptions) -> Result<Arc<dyn Driver>> {
    Ok(Arc::new(open_driver(settings)?))
}

/// Capabilities without credentials or I/O.
pub fn capabilities(_settings: &Settings, _opts: &OpenOptions) -> Result<Capabilities> {
    Ok(driver::capabilities())
}

/// Like [`open`], returning the concrete driver (counters for tests).
pub fn open_driver(settings: &Settings) -> Result<HyperV> {
    HyperV::new(config::Config::from_settings(settings)?)
}
