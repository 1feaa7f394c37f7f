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
pub mod subnet;

#[cfg(feature = "libvirt")]
mod conn;
#[cfg(feature = "libvirt")]
mod driver;
#[cfg(feature = "libvirt")]
mod events;
#[cfg(feature = "libvirt")]
mod l3;
#[cfg(feature = "libvirt")]
mod ops;

#[cfg(feature = "libvirt")]
use polyvisor_core::Driver;
use polyvisor_core::{Capabilities, ConsoleKind, Result, Settings, TemplateStrategy};
#[cfg(feature = "libvirt")]
use std::sync::Arc;

/// Builds the driver from settings (no backend I/O; see `Driver::probe`).
#[cfg(feature = "libvirt")]
pub fn open(settings: &Settings) -> Result<Arc<dyn Driver>> {
    Ok(Arc::new(driver::LibvirtDriver::new(config::Config::from_settings(settings)?)))
}

/// Capabilities for these settings without connecting (pure; built with or without the
/// `libvirt` feature). Only the URI matters: libvirt's built-in `test:` driver has no
/// disks to link and no consoles; `clone_from_snapshot` needs a local `qemu:///` URI.
pub fn capabilities(settings: &Settings) -> Result<Capabilities> {
    Ok(capabilities_for(&config::Config::from_settings(settings)?))
}

/// Capabilities of a driver with this configuration.
pub fn capabilities_for(cfg: &config::Config) -> Capabilities {
    Capabilities {
        suspend: true,
        templates: TemplateStrategy::Flag,
        linked_clones: !cfg.is_test_driver(),
        snapshots: true,
        snapshot_memory: true,
        clone_from_snapshot: cfg.is_local_qemu(),
        create: true,
        // Domains polyvisor creates get a VNC device; the test driver runs nothing.
        consoles: if cfg.is_test_driver() { Vec::new() } else { vec![ConsoleKind::Vnc] },
        task_poll_secs: 2,
        // L2: VLAN-tagged NICs when the configured networks can tag (`vlans`), or a network
        // per VLAN (`vlan_networks`). L3: a libvirt network per subnet, its rules a network
        // filter (`subnet.rs`; the built-in test driver has no network filters and no
        // device hot-plug).
        networking: polyvisor_core::netops::NetworkCaps {
            vlan_nics: cfg.vlan_capable(),
            subnets: !cfg.is_test_driver(),
            security_groups: !cfg.is_test_driver(),
        },
        // A realtime sample from domain counters (see `Driver::metrics` in driver.rs).
        metrics: true,
        // Domain lifecycle events wake a following event stream (`events.rs`); the built-in
        // test driver has no shared hypervisor to hear them from.
        event_wakeup: !cfg.is_test_driver(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_follow_the_uri_without_connecting() {
        let caps = |uri: &str| capabilities(&Settings::from_pairs([("uri", uri)])).unwrap();
        let local = caps("qemu:///system");
        assert!(local.create && local.linked_clones && local.clone_from_snapshot && local.metrics);
        assert!(local.networking.subnets && local.networking.security_groups && !local.networking.vlan_nics);
        assert_eq!(local.consoles, vec![ConsoleKind::Vnc]);
        let remote = caps("qemu+ssh://root@kvm1/system");
        assert!(remote.linked_clones && !remote.clone_from_snapshot);
        assert_eq!(remote.consoles, vec![ConsoleKind::Vnc]);
        let test = caps("test:///default");
        assert!(test.consoles.is_empty() && !test.linked_clones);
        assert!(!test.networking.subnets && !test.networking.security_groups);
        assert!(capabilities(&Settings::from_pairs([("uri", "no-scheme")])).is_err());
    }
}
