//! Guest networking operations (added for the CloudShell front, the first front that needs
//! them): L2 = put a guest NIC on a VLAN and take it off again; L3 = per-sandbox subnets,
//! connecting a guest to one, and security-group rules where the driver can enforce them.
//!
//! What a driver can do is declared in [`crate::Capabilities::networking`]; the matching
//! [`crate::Driver`] methods default to "not supported".

use serde::{Deserialize, Serialize};
use std::fmt;

/// Which networking operations a driver (as configured) implements.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkCaps {
    /// L2: [`crate::Driver::attach_vlan`] / [`crate::Driver::detach_vlan`] work.
    pub vlan_nics: bool,
    /// L3: [`crate::Driver::ensure_subnet`], [`crate::Driver::connect_subnet`] and
    /// [`crate::Driver::delete_subnets`] work.
    pub subnets: bool,
    /// [`crate::Driver::set_security_rules`] is enforced by the backend.
    pub security_groups: bool,
}

/// The networking model a platform asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkingType {
    /// VLANs on guest NICs.
    L2,
    /// Per-sandbox subnets.
    L3,
}

impl NetworkCaps {
    /// Whether the driver can serve the networking type.
    pub fn supports(&self, t: NetworkingType) -> bool {
        match t {
            NetworkingType::L2 => self.vlan_nics,
            NetworkingType::L3 => self.subnets,
        }
    }
}

impl fmt::Display for NetworkingType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NetworkingType::L2 => "L2",
            NetworkingType::L3 => "L3",
        })
    }
}

/// Lowest and highest 802.1Q VLAN ids a driver accepts.
pub const VLAN_RANGE: std::ops::RangeInclusive<u32> = 1..=4094;

/// A request to put a guest NIC on a VLAN.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VlanAttach {
    /// 802.1Q tag (1-4094).
    pub vlan: u32,
    /// Retag the guest's NIC at this index (0 = first) instead of adding a NIC.
    pub nic_index: Option<usize>,
    /// Backend network/bridge for a new NIC; `None` = the driver's default.
    pub network: Option<String>,
}

/// A per-sandbox subnet to get or create.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetSpec {
    /// Owner (the platform's sandbox id): [`crate::Driver::delete_subnets`] removes by owner.
    pub owner: String,
    /// Name of the subnet inside the sandbox (unique per owner): get-or-create key.
    pub alias: String,
    /// IPv4 CIDR (`10.0.1.0/24`).
    pub cidr: String,
    /// Whether guests on it get a public address.
    pub public: bool,
}

/// A subnet as the driver reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    /// Backend id, handed back to [`crate::Driver::connect_subnet`].
    pub id: String,
    /// Owner it was created for.
    pub owner: String,
    /// Alias inside the owner.
    pub alias: String,
    /// IPv4 CIDR.
    pub cidr: String,
}

/// One inbound security-group rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityRule {
    /// `tcp`, `udp`, `icmp` or `any` (lower case).
    pub protocol: String,
    /// First port (inclusive); `None` for every port.
    pub from_port: Option<u16>,
    /// Last port (inclusive).
    pub to_port: Option<u16>,
    /// Source address or CIDR; `None` = anywhere.
    pub source: Option<String>,
}

/// Parses an IPv4 CIDR (`a.b.c.d/n`) into its network address and prefix length.
pub fn parse_cidr(cidr: &str) -> Option<(std::net::Ipv4Addr, u8)> {
    let (ip, len) = cidr.trim().split_once('/')?;
    let ip: std::net::Ipv4Addr = ip.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    (len <= 32).then_some((ip, len))
}

/// Parses an IPv4 CIDR and clears its host bits: `10.0.1.7/24` is `(10.0.1.0, 24)`.
pub fn network_of(cidr: &str) -> Option<(std::net::Ipv4Addr, u8)> {
    let (ip, len) = parse_cidr(cidr)?;
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    Some((std::net::Ipv4Addr::from(u32::from(ip) & mask), len))
}

/// Checks a subnet's owner or alias as it comes from a platform: 1-255 printable characters
/// (`what` names the field in the message).
pub fn check_label(what: &str, v: &str) -> crate::Result<()> {
    if v.trim().is_empty() || v.len() > 255 || v.chars().any(char::is_control) {
        return Err(crate::Error::invalid(format!("subnet: '{what}' must be 1-255 printable characters")));
    }
    Ok(())
}

impl SecurityRule {
    /// Checks the rule (protocol name, port order, source address/CIDR); the message names
    /// the problem, never more than the rule itself.
    pub fn validate(&self) -> crate::Result<()> {
        if !matches!(self.protocol.as_str(), "tcp" | "udp" | "icmp" | "any") {
            return Err(crate::Error::invalid("security rule: protocol must be tcp, udp, icmp or any"));
        }
        if let (Some(a), Some(b)) = (self.from_port, self.to_port) {
            if a > b {
                return Err(crate::Error::invalid("security rule: fromPort is greater than toPort"));
            }
        }
        if let Some(src) = &self.source {
            let ok = src.parse::<std::net::Ipv4Addr>().is_ok() || parse_cidr(src).is_some();
            if !ok {
                return Err(crate::Error::invalid("security rule: source must be an IPv4 address or CIDR"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_default_to_nothing_and_answer_by_type() {
        let none = NetworkCaps::default();
        assert!(!none.supports(NetworkingType::L2) && !none.supports(NetworkingType::L3));
        let l2 = NetworkCaps { vlan_nics: true, ..NetworkCaps::default() };
        assert!(l2.supports(NetworkingType::L2) && !l2.supports(NetworkingType::L3));
        // Capabilities serialised before the field existed still parse.
        let c: NetworkCaps = serde_json::from_str("{}").unwrap();
        assert_eq!(c, none);
    }

    #[test]
    fn cidrs_and_rules_validate() {
        assert_eq!(parse_cidr("10.0.1.0/24"), Some(("10.0.1.0".parse().unwrap(), 24)));
        assert_eq!(parse_cidr("10.0.1.0/33"), None);
        assert_eq!(parse_cidr("10.0.1.0"), None);
        let ok = SecurityRule { protocol: "tcp".into(), from_port: Some(22), to_port: Some(22), source: None };
        ok.validate().unwrap();
        let bad = SecurityRule { from_port: Some(23), to_port: Some(22), ..ok.clone() };
        assert!(bad.validate().is_err());
        let bad = SecurityRule { protocol: "TCP".into(), ..ok.clone() };
        assert!(bad.validate().is_err());
        let bad = SecurityRule { source: Some("10.0.0.0/40".into()), ..ok };
        assert_eq!(network_of("10.0.1.7/24"), Some(("10.0.1.0".parse().unwrap(), 24)));
        assert_eq!(network_of("10.9.8.7/0"), Some(("0.0.0.0".parse().unwrap(), 0)));
        assert_eq!(network_of("10.9.8.7/32"), Some(("10.9.8.7".parse().unwrap(), 32)));
        assert!(check_label("alias", "Default Subnet").is_ok());
        for v in ["", "  ", "a\nb", &"x".repeat(256)] {
            assert!(check_label("alias", v).is_err(), "{v:?}");
        }
        assert!(bad.validate().is_err());
    }
}
