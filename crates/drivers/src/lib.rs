//! The driver registry: turns platform settings into a connected [`Driver`].
//!
//! The `driver` setting (alias `platform`, as RAS samples call it) selects the backend;
//! the default is `sim`, the embedded simulator. This is the only crate that names
//! drivers; fronts receive a [`DriverFactory`] and never know which driver they talk to.

use async_trait::async_trait;
use polyvisor_core::{Capabilities, Driver, DriverFactory, Error, Result, Settings};
use std::sync::Arc;

/// The settings key that selects a driver.
pub const DRIVER_KEY: &str = "driver";

/// Every driver compiled into this build, plus the ones that need a cargo feature.
#[derive(Clone, Copy, Debug, Default)]
pub struct Registry;

/// Canonical driver name for a user-supplied one (accepts the RAS `platform` names).
pub fn canonical_driver_name(raw: &str) -> Option<&'static str> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "" | "sim" | "simulator" => Some("sim"),
        "proxmox" | "pve" | "proxmox-ve" => Some("proxmox"),
        "libvirt" | "kvm" | "qemu" => Some("libvirt"),
        _ => None,
    }
}

/// The driver name the settings select (`driver`, else `platform`, else `sim`).
pub fn selected_driver(settings: &Settings) -> Result<&'static str> {
    let raw = settings.str_any(&[DRIVER_KEY, "platform"]).unwrap_or_default();
    canonical_driver_name(&raw)
        .ok_or_else(|| Error::invalid(format!("unknown driver '{raw}' (known: sim, proxmox, libvirt)")))
}

#[async_trait]
impl DriverFactory for Registry {
    async fn open(&self, settings: &Settings) -> Result<Arc<dyn Driver>> {
        match selected_driver(settings)? {
            "sim" => polyvisor_sim::open(settings),
            "proxmox" => polyvisor_proxmox::open(settings),
            "libvirt" => open_libvirt(settings),
            other => Err(Error::internal(format!("driver {other} is registered but not wired"))),
        }
    }

    async fn capabilities(&self, settings: &Settings) -> Result<Capabilities> {
        match selected_driver(settings)? {
            "proxmox" => polyvisor_proxmox::capabilities(settings),
            _ => Ok(self.open(settings).await?.capabilities()),
        }
    }

    fn driver_names(&self) -> Vec<&'static str> {
        let mut v = vec!["sim", "proxmox"];
        if cfg!(feature = "libvirt") {
            v.push("libvirt");
        }
        v
    }
}

#[cfg(feature = "libvirt")]
fn open_libvirt(settings: &Settings) -> Result<Arc<dyn Driver>> {
    polyvisor_libvirt::open(settings)
}

#[cfg(not(feature = "libvirt"))]
fn open_libvirt(_settings: &Settings) -> Result<Arc<dyn Driver>> {
    Err(Error::unsupported("the libvirt driver (this build lacks it; rebuild with `--features libvirt`)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_selection() {
        assert_eq!(selected_driver(&Settings::new()).unwrap(), "sim");
        assert_eq!(selected_driver(&Settings::from_pairs([("platform", "Proxmox")])).unwrap(), "proxmox");
        assert_eq!(selected_driver(&Settings::from_pairs([("driver", "kvm")])).unwrap(), "libvirt");
        assert!(selected_driver(&Settings::from_pairs([("driver", "vmware")])).is_err());
    }

    #[tokio::test]
    async fn proxmox_capabilities_need_no_credentials() {
        let flag = Registry.capabilities(&Settings::from_pairs([("driver", "proxmox")])).await.unwrap();
        assert!(flag.suspend && !flag.linked_clones && flag.clone_from_snapshot);
        let native = Registry
            .capabilities(&Settings::from_pairs([("driver", "proxmox"), ("template_mode", "native")]))
            .await
            .unwrap();
        assert!(native.linked_clones);
        assert!(
            Registry.open(&Settings::from_pairs([("driver", "proxmox")])).await.is_err(),
            "open still needs a host"
        );
    }
}
