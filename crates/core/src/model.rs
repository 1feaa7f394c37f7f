//! Guests, NICs and power states: what every hypervisor has in common.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A guest's identifier on its hypervisor, always a string (a Proxmox VMID, a libvirt
/// domain UUID, a sim id). Fronts put it on the wire verbatim and never as a number.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GuestId(pub String);

impl GuestId {
    /// Wraps any string-like id.
    pub fn new(id: impl Into<String>) -> Self {
        GuestId(id.into())
    }
    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GuestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for GuestId {
    fn from(s: &str) -> Self {
        GuestId(s.to_string())
    }
}

impl From<String> for GuestId {
    fn from(s: String) -> Self {
        GuestId(s)
    }
}

/// The normalised power state. These are exactly the six states every platform front can
/// express (RAS's set); platforms with fewer states collapse them (see [`PowerState::is_on`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerState {
    /// Running.
    PoweredOn,
    /// Stopped, deallocated, or an unknown platform state.
    PoweredOff,
    /// Starting or booting; also a fresh clone that has no IPv4 address yet.
    PoweringOn,
    /// Shutting down.
    PoweringOff,
    /// Paused or suspended.
    Suspended,
    /// Suspend in progress.
    Suspending,
}

impl PowerState {
    /// The snake_case name (`powered_on`, ...), as RAS and our own JSON use it.
    pub fn as_str(self) -> &'static str {
        match self {
            PowerState::PoweredOn => "powered_on",
            PowerState::PoweredOff => "powered_off",
            PowerState::PoweringOn => "powering_on",
            PowerState::PoweringOff => "powering_off",
            PowerState::Suspended => "suspended",
            PowerState::Suspending => "suspending",
        }
    }

    /// Whether the guest consumes CPU (running, booting, or on its way down/suspend):
    /// what a two-state platform (CloudStack `poweron`/`poweroff`) calls "on".
    pub fn is_on(self) -> bool {
        matches!(
            self,
            PowerState::PoweredOn | PowerState::PoweringOn | PowerState::PoweringOff | PowerState::Suspending
        )
    }
}

impl fmt::Display for PowerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A power operation. Every driver treats these idempotently: starting a running guest,
/// stopping a stopped one succeeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerAction {
    /// Power on; resumes a paused or suspended guest instead.
    Start,
    /// Hard power off (never waits for the guest OS).
    Stop,
    /// Graceful ACPI shutdown, bounded by the driver; falls back to a hard stop.
    Shutdown,
    /// Hard reset.
    Reset,
    /// Graceful reboot.
    Reboot,
    /// Suspend (pause); only where [`crate::Capabilities::suspend`] is true.
    Suspend,
    /// Resume a suspended guest.
    Resume,
}

impl PowerAction {
    /// Every action, for harnesses and docs.
    pub const ALL: [PowerAction; 7] = [
        PowerAction::Start,
        PowerAction::Stop,
        PowerAction::Shutdown,
        PowerAction::Reset,
        PowerAction::Reboot,
        PowerAction::Suspend,
        PowerAction::Resume,
    ];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            PowerAction::Start => "start",
            PowerAction::Stop => "stop",
            PowerAction::Shutdown => "shutdown",
            PowerAction::Reset => "reset",
            PowerAction::Reboot => "reboot",
            PowerAction::Suspend => "suspend",
            PowerAction::Resume => "resume",
        }
    }
}

impl fmt::Display for PowerAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A virtual network interface.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nic {
    /// MAC address, upper-case and colon-separated (`BC:24:11:AA:BB:CC`); see [`crate::net::normalize_mac`].
    pub mac: String,
    /// IPv4 addresses seen on this NIC (no loopback, link-local last).
    #[serde(default)]
    pub ipv4: Vec<String>,
    /// IPv6 addresses seen on this NIC (no loopback).
    #[serde(default)]
    pub ipv6: Vec<String>,
    /// Backend network / bridge name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// VLAN tag, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u32>,
}

/// One guest as the listing sees it: cheap to produce for every guest at once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestSummary {
    /// Hypervisor id.
    pub id: GuestId,
    /// Display name; never empty (drivers substitute `VM-<id>`).
    pub name: String,
    /// Normalised power state.
    pub power: PowerState,
    /// Whether the guest is a template (native or polyvisor-flagged).
    pub is_template: bool,
    /// The platform's stable key for this guest (e.g. the CloudStack internal name),
    /// stored on the guest itself by the driver at create time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Hypervisor node/host the guest lives on, when the platform has nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// One guest in full.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Guest {
    /// Hypervisor id.
    pub id: GuestId,
    /// Display name; never empty (drivers substitute `VM-<id>`).
    pub name: String,
    /// Node/host name, when the platform has nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Guest OS as the platform names it (`l26`, `win11`, `linux`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    /// Virtual CPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
    /// Memory in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    /// NICs in device order.
    #[serde(default)]
    pub nics: Vec<Nic>,
    /// Template flag (native or polyvisor-flagged).
    pub is_template: bool,
    /// Normalised power state.
    pub power: PowerState,
    /// The platform's own power-state string (`running`, `paused`, `shutoff`, ...).
    pub raw_power_state: String,
    /// Platform key stored on the guest (see [`GuestSummary::key`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl Guest {
    /// All IPv4 addresses over all NICs, in NIC order, de-duplicated.
    pub fn ipv4_addresses(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for ip in self.nics.iter().flat_map(|n| n.ipv4.iter()) {
            if !out.contains(ip) {
                out.push(ip.clone());
            }
        }
        crate::net::order_ipv4(out)
    }

    /// All IPv6 addresses over all NICs, in NIC order, de-duplicated.
    pub fn ipv6_addresses(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for ip in self.nics.iter().flat_map(|n| n.ipv6.iter()) {
            if !out.contains(ip) {
                out.push(ip.clone());
            }
        }
        out
    }

    /// All MAC addresses, in NIC order, de-duplicated.
    pub fn mac_addresses(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for n in &self.nics {
            if !n.mac.is_empty() && !out.contains(&n.mac) {
                out.push(n.mac.clone());
            }
        }
        out
    }

    /// The listing view of this guest.
    pub fn summary(&self) -> GuestSummary {
        GuestSummary {
            id: self.id.clone(),
            name: self.name.clone(),
            power: self.power,
            is_template: self.is_template,
            key: self.key.clone(),
            node: self.node.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_state_names_are_the_six_wire_names() {
        let names: Vec<_> = [
            PowerState::PoweredOn,
            PowerState::PoweredOff,
            PowerState::PoweringOn,
            PowerState::PoweringOff,
            PowerState::Suspended,
            PowerState::Suspending,
        ]
        .iter()
        .map(|s| serde_json::to_value(s).unwrap().as_str().unwrap().to_string())
        .collect();
        assert_eq!(names, ["powered_on", "powered_off", "powering_on", "powering_off", "suspended", "suspending"]);
        for s in names {
            let back: PowerState = serde_json::from_value(serde_json::Value::String(s.clone())).unwrap();
            assert_eq!(back.as_str(), s);
        }
    }

    #[test]
    fn guest_address_views_deduplicate_and_order() {
        let g = Guest {
            id: "1".into(),
            name: "a".into(),
            node: None,
            os: None,
            cpus: None,
            memory_mb: None,
            nics: vec![
                Nic {
                    mac: "AA:00:00:00:00:01".into(),
                    ipv4: vec!["169.254.1.1".into(), "10.0.0.2".into()],
                    ..Default::default()
                },
                Nic { mac: "AA:00:00:00:00:01".into(), ipv4: vec!["10.0.0.2".into()], ..Default::default() },
            ],
            is_template: false,
            power: PowerState::PoweredOn,
            raw_power_state: "running".into(),
            key: None,
        };
        assert_eq!(g.ipv4_addresses(), ["10.0.0.2", "169.254.1.1"]);
        assert_eq!(g.mac_addresses(), ["AA:00:00:00:00:01"]);
    }
}
