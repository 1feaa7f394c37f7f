//! Driver settings: connection URI, default pool/network and time bounds.

use polyvisor_core::{Result, Settings};
use std::time::Duration;

/// Default connection URI when neither settings nor `LIBVIRT_DEFAULT_URI` name one.
pub const DEFAULT_URI: &str = "qemu:///system";

/// Resolved driver configuration (no I/O).
#[derive(Clone, Debug)]
pub struct Config {
    /// libvirt connection URI (`uri`, `libvirt_uri`, env `LIBVIRT_DEFAULT_URI`).
    pub uri: String,
    /// Storage pool for new volumes when the source disk is in no pool (`pool`).
    pub pool: String,
    /// Network for NICs created without one (`network`).
    pub network: String,
    /// Bound on one short libvirt call (`call_timeout_secs`, default 20).
    pub call_timeout: Duration,
    /// Bound on one long operation — clone, volume copy, snapshot create/revert, delete —
    /// run on its own connection (`job_timeout_secs`, default 600).
    pub job_timeout: Duration,
    /// Graceful shutdown bound before a hard stop (`shutdown_timeout_secs`, default 60).
    pub shutdown_timeout: Duration,
    /// Cap on "clone started and has an IPv4 address" (`ready_timeout_secs`, default 300).
    pub ready_timeout: Duration,
    /// Host handed out for VNC consoles listening on a wildcard address (`console_host`).
    pub console_host: Option<String>,
    /// Default disk size in GiB for ISO installs (`disk_size_gb`, default 8).
    pub disk_size_gb: u64,
    /// Write NIC VLAN tags (`vlans`, default false: plain libvirt bridge networks refuse
    /// them; enable for Open vSwitch networks).
    pub vlans: bool,
    /// Bridge-per-VLAN hosts (`vlan_networks`): the libvirt network that carries VLAN N is
    /// named by this template with `{vlan}` replaced by N (e.g. `br-vlan{vlan}` for networks
    /// over host bridges on `bond0.N`); a VLAN NIC is an untagged NIC on that network.
    /// Exclusive with `vlans`.
    pub vlan_networks: Option<String>,
    /// Domain type for guests created from an ISO (`domain_type`: `kvm` default, `qemu` = TCG).
    pub domain_type: String,
}

impl Config {
    /// Reads the settings; bad numbers are `InvalidInput` naming the key.
    pub fn from_settings(s: &Settings) -> Result<Self> {
        Self::from_settings_env(s, std::env::var("LIBVIRT_DEFAULT_URI").ok())
    }

    /// As [`Config::from_settings`] with an explicit `LIBVIRT_DEFAULT_URI` value (tests).
    pub fn from_settings_env(s: &Settings, env_uri: Option<String>) -> Result<Self> {
        let uri = s
            .str_any(&["uri", "libvirt_uri"])
            .or_else(|| env_uri.map(|u| u.trim().to_string()).filter(|u| !u.is_empty()))
            .unwrap_or_else(|| DEFAULT_URI.to_string());
        if uri.contains('\0') || !uri.contains(':') {
            return Err(polyvisor_core::Error::invalid(
                "setting 'uri' must be a libvirt connection URI such as qemu:///system",
            ));
        }
        let secs =
            |key: &str, default: u64| -> Result<Duration> { Ok(Duration::from_secs(s.u64_or(key, default)?.max(1))) };
        Ok(Config {
            uri,
            pool: s.str_any(&["pool", "storage_pool"]).unwrap_or_else(|| "default".to_string()),
            network: s.str("network").unwrap_or_else(|| "default".to_string()),
            call_timeout: secs("call_timeout_secs", 20)?,
            job_timeout: secs("job_timeout_secs", 600)?,
            shutdown_timeout: secs("shutdown_timeout_secs", 60)?,
            ready_timeout: secs("ready_timeout_secs", 300)?,
            console_host: s.str("console_host"),
            disk_size_gb: s.u64_or("disk_size_gb", 8)?.max(1),
            vlans: s.bool_or("vlans", false)?,
            vlan_networks: vlan_networks(s)?,
            domain_type: match s.str("domain_type").as_deref() {
                None | Some("kvm") => "kvm".to_string(),
                Some("qemu") => "qemu".to_string(),
                Some(_) => return Err(polyvisor_core::Error::invalid("setting 'domain_type' must be kvm or qemu")),
            },
        })
    }

    /// Whether NICs can be put on VLANs (`vlans` tags, or `vlan_networks`).
    pub fn vlan_capable(&self) -> bool {
        self.vlans || self.vlan_networks.is_some()
    }

    /// The network carrying VLAN `vlan` under `vlan_networks`.
    pub fn vlan_network(&self, vlan: u32) -> Option<String> {
        self.vlan_networks.as_ref().map(|t| t.replace("{vlan}", &vlan.to_string()))
    }

    /// The VLAN that network `network` carries under `vlan_networks` (the inverse of
    /// [`Config::vlan_network`]; only canonical numbers 1-4094 match).
    pub fn vlan_of_network(&self, network: &str) -> Option<u32> {
        let (pre, post) = self.vlan_networks.as_ref()?.split_once("{vlan}")?;
        let mid = network.strip_prefix(pre)?.strip_suffix(post)?;
        if mid.is_empty() || mid.starts_with('0') || !mid.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        mid.parse().ok().filter(|v| polyvisor_core::netops::VLAN_RANGE.contains(v))
    }

    /// Whether the URI reaches a daemon on this machine (so `qemu-img` sees its files).
    pub fn is_local_qemu(&self) -> bool {
        self.uri.starts_with("qemu:///")
    }

    /// Whether this is libvirt's built-in fake (`test:///...`): no real disks or IPs.
    pub fn is_test_driver(&self) -> bool {
        self.uri.starts_with("test:")
    }

    /// The host part of a remote URI (`qemu+ssh://user@host/system` → `host`).
    pub fn remote_host(&self) -> Option<String> {
        let rest = self.uri.split_once("://")?.1;
        let authority = rest.split('/').next()?;
        let host = authority.rsplit('@').next()?.split(':').next()?;
        (!host.is_empty()).then(|| host.to_string())
    }
}

/// `vlan_networks`: one `{vlan}`, and a valid network name around it; not with `vlans`.
fn vlan_networks(s: &Settings) -> Result<Option<String>> {
    let Some(t) = s.str("vlan_networks").filter(|t| !t.is_empty()) else { return Ok(None) };
    let bad = |why: &str| polyvisor_core::Error::invalid(format!("setting 'vlan_networks' {why}"));
    if t.matches("{vlan}").count() != 1 {
        return Err(bad("must contain {vlan} exactly once (e.g. br-vlan{vlan})"));
    }
    crate::names::validate_network_name(&t.replace("{vlan}", "4094"))
        .map_err(|_| bad("must name libvirt networks (letters, digits, '.', '_', '-'; up to 64 characters)"))?;
    if s.bool_or("vlans", false)? {
        return Err(bad("and 'vlans' exclude each other (per-VLAN networks, or tags on one network)"));
    }
    Ok(Some(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_precedence_and_defaults() {
        let c = Config::from_settings_env(&Settings::new(), None).unwrap();
        assert_eq!(c.uri, DEFAULT_URI);
        assert_eq!(c.call_timeout, Duration::from_secs(20));
        assert_eq!(c.job_timeout, Duration::from_secs(600));
        let c = Config::from_settings_env(&Settings::new(), Some("test:///default".into())).unwrap();
        assert_eq!(c.uri, "test:///default");
        assert!(c.is_test_driver());
        let s = Settings::from_pairs([("libvirt_uri", "qemu+ssh://root@kvm1/system"), ("pool", "images")]);
        let c = Config::from_settings_env(&s, Some("test:///default".into())).unwrap();
        assert_eq!(c.uri, "qemu+ssh://root@kvm1/system");
        assert_eq!(c.remote_host().as_deref(), Some("kvm1"));
        assert!(!c.is_local_qemu());
        assert_eq!(c.pool, "images");
        let s = Settings::from_pairs([("uri", "qemu:///system"), ("libvirt_uri", "test:///default")]);
        assert!(Config::from_settings_env(&s, None).unwrap().is_local_qemu());
        assert_eq!(Config::from_settings_env(&s, None).unwrap().remote_host(), None);
    }

    #[test]
    fn bad_values_name_the_key() {
        let s = Settings::from_pairs([("call_timeout_secs", "soon")]);
        let e = Config::from_settings_env(&s, None).unwrap_err();
        assert!(e.message().contains("call_timeout_secs"), "{e}");
        let e = Config::from_settings_env(&Settings::from_pairs([("uri", "nonsense")]), None).unwrap_err();
        assert!(e.message().contains("'uri'"), "{e}");
    }

    #[test]
    fn vlan_networks_template_maps_both_ways() {
        let c = Config::from_settings_env(&Settings::from_pairs([("vlan_networks", "br-vlan{vlan}")]), None).unwrap();
        assert!(c.vlan_capable() && !c.vlans);
        assert_eq!(c.vlan_network(42).as_deref(), Some("br-vlan42"));
        assert_eq!(c.vlan_of_network("br-vlan42"), Some(42));
        for other in ["br-vlan", "br-vlan042", "br-vlan0", "br-vlan4095", "br-vlan4x", "tg-net", "xbr-vlan4"] {
            assert_eq!(c.vlan_of_network(other), None, "{other}");
        }
        let c = Config::from_settings_env(&Settings::from_pairs([("vlan_networks", "v{vlan}.trunk")]), None).unwrap();
        assert_eq!(c.vlan_of_network(&c.vlan_network(7).unwrap()), Some(7));
        assert!(!Config::from_settings_env(&Settings::new(), None).unwrap().vlan_capable());
        for bad in ["br-vlan", "{vlan}-{vlan}", "br vlan{vlan}", "x'{vlan}"] {
            let e = Config::from_settings_env(&Settings::from_pairs([("vlan_networks", bad)]), None).unwrap_err();
            assert!(e.message().contains("vlan_networks"), "{bad}: {e}");
        }
        let both = Settings::from_pairs([("vlan_networks", "br{vlan}"), ("vlans", "true")]);
        assert!(Config::from_settings_env(&both, None).unwrap_err().message().contains("exclude"));
    }
}
