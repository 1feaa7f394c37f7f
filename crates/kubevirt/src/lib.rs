//! KubeVirt / OpenShift Virtualization driver (`driver=kubevirt`, alias `openshift`).
//!
//! Guests are `kubevirt.io/v1` VirtualMachines of one namespace; power goes through the
//! `subresources.kubevirt.io` endpoints (or `spec.runStrategy`), templates are VMs labelled
//! `polyvisor.io/template=true`, snapshots/restores/clones are KubeVirt's own
//! `VirtualMachineSnapshot`/`VirtualMachineRestore`/`VirtualMachineClone` objects, and every
//! task is a self-describing token over those objects' status. No local state.
//!
//! Transport: `kube`'s request builder over `polyvisor-http` (see the crate README for why).

mod client;
pub mod config;
mod driver;
pub mod error;
pub mod names;
pub mod resources;

pub use driver::{quantity_mib, KubeVirt};
use polyvisor_core::{Capabilities, Driver, OpenOptions, Result, Settings};
use std::sync::Arc;

/// Capabilities for these settings (no I/O, no credentials).
pub fn capabilities(settings: &Settings, _opts: &OpenOptions) -> Result<Capabilities> {
    Ok(config::Config::from_settings(settings)?.capabilities())
}

/// Builds the driver (reads kubeconfig/service-account files; no network).
pub fn open(settings: &Settings, _opts: &OpenOptions) -> Result<Arc<dyn Driver>> {
    Ok(Arc::new(open_driver(settings)?))
}

/// The concrete driver (tests read its round-trip counter).
pub fn open_driver(settings: &Settings) -> Result<KubeVirt> {
    KubeVirt::new(config::Config::from_settings(settings)?)
}
