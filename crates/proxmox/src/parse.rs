//! PVE answers → domain values: cluster resources, status + config → `Guest`, agent
//! interfaces → IPs, snapshot lists, power-state mapping.

use crate::lenient::{bool_field, str_field, u64_field};
use crate::tags;
use polyvisor_core::net::{is_reportable_ipv4, is_reportable_ipv6, normalize_mac};
use polyvisor_core::{Guest, GuestId, GuestSummary, Nic, PowerState, Snapshot};
use regex::Regex;
use serde_json::Value;
use std::sync::OnceLock;

/// One QEMU entry of `GET /cluster/resources?type=vm`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    /// VMID as a string.
    pub vmid: String,
    /// Node that owns it.
    pub node: String,
    /// Name (may be missing during a clone).
    pub name: Option<String>,
    /// `running` / `stopped` / `unknown`.
    pub status: String,
    /// Native template flag.
    pub native_template: bool,
    /// Raw tag string.
    pub tags: String,
    /// Lock, when held.
    pub lock: Option<String>,
}

impl Resource {
    /// Template flag as polyvisor sees it (native or tag).
    pub fn is_template(&self) -> bool {
        self.native_template || tags::has_template_flag(&self.tags)
    }
    /// The listing view.
    pub fn summary(&self) -> GuestSummary {
        GuestSummary {
            id: GuestId::new(self.vmid.clone()),
            name: display_name(self.name.as_deref(), &self.vmid),
            power: map_power(&self.status, None),
            is_template: self.is_template(),
            key: tags::key_of(&self.tags),
            node: Some(self.node.clone()),
        }
    }
    /// A clone in progress without its final name (hidden from listings).
    pub fn is_placeholder(&self) -> bool {
        match self.name.as_deref() {
            None | Some("") => true,
            Some(n) => n == format!("VM {}", self.vmid),
        }
    }
}

/// QEMU entries only (LXC and others dropped; malformed entries skipped).
pub fn resources(data: &Value) -> Vec<Resource> {
    let Some(items) = data.as_array() else { return Vec::new() };
    items
        .iter()
        .filter(|i| i.get("type").and_then(Value::as_str) == Some("qemu"))
        .filter_map(|i| {
            let vmid = str_field(i, "vmid").or_else(|| {
                i.get("id").and_then(Value::as_str).and_then(|s| s.strip_prefix("qemu/")).map(str::to_string)
            })?;
            Some(Resource {
                vmid,
                node: str_field(i, "node")?,
                name: str_field(i, "name"),
                status: str_field(i, "status").unwrap_or_else(|| "unknown".into()),
                native_template: bool_field(i, "template"),
                tags: str_field(i, "tags").unwrap_or_default(),
                lock: str_field(i, "lock").filter(|l| !l.is_empty()),
            })
        })
        .collect()
}

/// `VM-<id>` when the name is missing.
pub fn display_name(name: Option<&str>, vmid: &str) -> String {
    match name.map(str::trim) {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => format!("VM-{vmid}"),
    }
}

/// `qmpstatus` first, else `status` (ras-cpf.md §5 table).
pub fn map_power(status: &str, qmpstatus: Option<&str>) -> PowerState {
    match qmpstatus.filter(|q| !q.is_empty()).unwrap_or(status) {
        "running" => PowerState::PoweredOn,
        "paused" | "suspended" => PowerState::Suspended,
        "shutdown" | "halting" => PowerState::PoweringOff,
        "prelaunch" | "inmigrate" => PowerState::PoweringOn,
        _ => PowerState::PoweredOff,
    }
}

fn mac_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"([0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5})").expect("static regex"))
}

/// NICs from config `net\d+` entries, in index order.
pub fn config_nics(config: &Value) -> Vec<Nic> {
    let Some(obj) = config.as_object() else { return Vec::new() };
    let mut nets: Vec<(u32, &str)> =
        obj.iter().filter_map(|(k, v)| Some((k.strip_prefix("net")?.parse::<u32>().ok()?, v.as_str()?))).collect();
    nets.sort_by_key(|(i, _)| *i);
    nets.into_iter()
        .filter_map(|(_, v)| {
            let mac = mac_re().find(v).and_then(|m| normalize_mac(m.as_str()))?;
            let mut nic = Nic { mac, ..Default::default() };
            for part in v.split(',') {
                match part.split_once('=') {
                    Some(("bridge", b)) => nic.network = Some(b.to_string()),
                    Some(("tag", t)) => nic.vlan = t.parse().ok(),
                    _ => {}
                }
            }
            Some(nic)
        })
        .collect()
}

/// Adds agent addresses to config NICs (by MAC); interfaces not in the config with a
/// reportable IPv4 become extra NICs. Errors and `Unsupported` answers give nothing.
pub fn merge_agent(nics: &mut Vec<Nic>, agent: &Value) {
    let Some(list) = agent.get("result").and_then(Value::as_array) else { return };
    for iface in list {
        let mac = iface.get("hardware-address").and_then(Value::as_str).and_then(normalize_mac);
        let name = iface.get("name").and_then(Value::as_str).unwrap_or_default();
        if name == "lo" || mac.as_deref() == Some("00:00:00:00:00:00") {
            continue;
        }
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for a in iface.get("ip-addresses").and_then(Value::as_array).into_iter().flatten() {
            let ip = a.get("ip-address").and_then(Value::as_str).unwrap_or_default();
            match a.get("ip-address-type").and_then(Value::as_str) {
                Some("ipv4") if is_reportable_ipv4(ip) => v4.push(ip.to_string()),
                Some("ipv6") if is_reportable_ipv6(ip) => v6.push(ip.to_string()),
                _ => {}
            }
        }
        match mac.as_ref().and_then(|m| nics.iter_mut().find(|n| &n.mac == m)) {
            Some(nic) => {
                nic.ipv4.extend(v4);
                nic.ipv6.extend(v6);
            }
            None if !v4.is_empty() => {
                nics.push(Nic { mac: mac.unwrap_or_default(), ipv4: v4, ipv6: v6, ..Default::default() })
            }
            None => {}
        }
    }
}

/// Whether the config enables the guest agent (`agent: 1` or `enabled=1,…`).
pub fn agent_enabled(config: &Value) -> bool {
    match config.get("agent") {
        Some(Value::String(s)) => s.split(',').any(|p| matches!(p.trim(), "1" | "enabled=1" | "enabled=true")),
        Some(v) => crate::lenient::truthy(v),
        None => false,
    }
}

/// The full guest from `status/current`, `config` and (optional) agent answer.
pub fn guest(vmid: &str, node: &str, status: &Value, config: &Value, agent: Option<&Value>) -> Guest {
    let raw_status = str_field(status, "status").unwrap_or_else(|| "unknown".into());
    let qmp = str_field(status, "qmpstatus");
    let mut nics = config_nics(config);
    if let Some(a) = agent {
        merge_agent(&mut nics, a);
    }
    let tag_str = str_field(config, "tags").or_else(|| str_field(status, "tags")).unwrap_or_default();
    let native = bool_field(config, "template") || bool_field(status, "template");
    let memory_mb = u64_field(config, "memory").or_else(|| u64_field(status, "maxmem").map(|b| b / (1024 * 1024)));
    let cpus = u64_field(config, "cores")
        .map(|c| c * u64_field(config, "sockets").unwrap_or(1))
        .or_else(|| u64_field(status, "cpus"))
        .and_then(|c| u32::try_from(c).ok());
    Guest {
        id: GuestId::new(vmid),
        name: display_name(str_field(config, "name").or_else(|| str_field(status, "name")).as_deref(), vmid),
        node: Some(node.to_string()),
        os: str_field(status, "ostype").or_else(|| str_field(config, "ostype")),
        cpus,
        memory_mb,
        nics,
        is_template: native || tags::has_template_flag(&tag_str),
        power: map_power(&raw_status, qmp.as_deref()),
        raw_power_state: qmp.filter(|q| !q.is_empty()).unwrap_or(raw_status),
        key: tags::key_of(&tag_str),
    }
}

/// Snapshots without the `current` pseudo-entry, oldest first (by `snaptime`, then by the
/// parent chain order PVE gives).
pub fn snapshots(data: &Value) -> Vec<Snapshot> {
    let mut out: Vec<Snapshot> = data
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| {
            let name = str_field(s, "name")?;
            (name != "current").then(|| Snapshot {
                name,
                description: str_field(s, "description").filter(|d| !d.is_empty()),
                created_unix: u64_field(s, "snaptime"),
                parent: str_field(s, "parent").filter(|p| !p.is_empty()),
                includes_memory: bool_field(s, "vmstate"),
            })
        })
        .collect();
    out.sort_by_key(|s| s.created_unix.unwrap_or(u64::MAX));
    out
}

/// The `snapstate` of snapshot `name` in a snapshot list (`prepare` while it is being
/// taken, `delete` while it is being removed); `None` when it is complete or absent.
pub fn snapshot_state(data: &Value, name: &str) -> Option<String> {
    data.as_array()?
        .iter()
        .find(|s| s.get("name").and_then(Value::as_str) == Some(name))
        .and_then(|s| str_field(s, "snapstate"))
        .filter(|st| !st.is_empty())
}

/// Whether the `current` pseudo-entry says the VM is running.
pub fn snapshot_list_running(data: &Value) -> bool {
    data.as_array()
        .into_iter()
        .flatten()
        .any(|s| s.get("name").and_then(Value::as_str) == Some("current") && bool_field(s, "running"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resources_keep_qemu_and_tolerate_drift() {
        let data = json!([
            {"id":"qemu/100","type":"qemu","node":"pve","vmid":"100","name":"web","status":"running","template":"","tags":"a;pvkey-78"},
            {"id":"lxc/200","type":"lxc","node":"pve","vmid":200,"name":"ct","status":"running"},
            {"id":"qemu/9000","type":"qemu","node":"pve2","vmid":9000,"name":"tpl","status":"stopped","template":1},
            {"id":"qemu/101","type":"qemu","node":"pve","vmid":101,"status":"stopped","lock":"clone"},
            {"type":"qemu"}
        ]);
        let r = resources(&data);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].summary().key.as_deref(), Some("x"));
        assert!(!r[0].is_template() && r[1].is_template());
        assert_eq!(r[1].node, "pve2");
        assert!(r[2].is_placeholder());
        assert_eq!(r[2].summary().name, "VM-101");
    }

    #[test]
    fn power_prefers_qmpstatus() {
        assert_eq!(map_power("running", Some("paused")), PowerState::Suspended);
        assert_eq!(map_power("stopped", Some("prelaunch")), PowerState::PoweringOn);
        assert_eq!(map_power("running", None), PowerState::PoweredOn);
        assert_eq!(map_power("weird", None), PowerState::PoweredOff);
    }

    #[test]
    fn guest_with_agent_ips_and_config_macs() {
        let status = json!({"status":"running","qmpstatus":"running","name":"web","cpus":2,"maxmem":2147483648u64});
        let config = json!({"name":"web","ostype":"l26","cores":"2","sockets":1,"memory":"2048","agent":"1",
            "net0":"virtio=BC:24:11:AA:BB:CC,bridge=vmbr0,tag=12","net1":"e1000=bc:24:11:00:00:02,bridge=vmbr1","tags":"polyvisor-template"});
        let agent = json!({"result":[
            {"name":"lo","hardware-address":"00:00:00:00:00:00","ip-addresses":[{"ip-address":"127.0.0.1","ip-address-type":"ipv4","prefix":8}]},
            {"name":"eth0","hardware-address":"bc:24:11:aa:bb:cc","ip-addresses":[{"ip-address":"10.0.0.10","ip-address-type":"ipv4"},{"ip-address":"fd00::5","ip-address-type":"ipv6"},{"ip-address":"169.254.1.1","ip-address-type":"ipv4"}]},
            {"name":"docker0"}
        ]});
        let g = guest("100", "pve", &status, &config, Some(&agent));
        assert_eq!(g.ipv4_addresses(), ["10.0.0.10", "169.254.1.1"]);
        assert_eq!(g.ipv6_addresses(), ["fd00::5"]);
        assert_eq!(g.mac_addresses(), ["BC:24:11:AA:BB:CC", "BC:24:11:00:00:02"]);
        assert_eq!(g.nics[0].vlan, Some(12));
        assert_eq!(g.nics[1].network.as_deref(), Some("vmbr1"));
        assert_eq!((g.cpus, g.memory_mb, g.os.as_deref()), (Some(2), Some(2048), Some("l26")));
        assert!(g.is_template);
        // Windows agent without the command, and error answers: no IPs.
        let unsupported = json!({"result":{"error":{"class":"Unsupported","desc":"x"}}});
        let g = guest("100", "pve", &status, &config, Some(&unsupported));
        assert!(g.ipv4_addresses().is_empty());
        assert!(agent_enabled(&json!({"agent":"enabled=1,fstrim_cloned_disks=1"})));
        assert!(!agent_enabled(&json!({"agent":"0"})) && !agent_enabled(&json!({})));
    }

    #[test]
    fn snapshot_list_ignores_current_wherever_it_is() {
        let data = json!([
            {"name":"current","description":"You are here!","running":1,"parent":"b"},
            {"name":"b","snaptime":"1683810200","vmstate":1,"parent":"a","description":""},
            {"name":"a","snaptime":1683810191,"vmstate":0,"description":"first"}
        ]);
        let s = snapshots(&data);
        assert_eq!(s.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert!(s[1].includes_memory && s[0].description.as_deref() == Some("first"));
        assert!(snapshot_list_running(&data));
    }
}
