//! Nova server JSON → core model, and the metadata keys polyvisor keeps on servers and
//! images (no local state: every process finds templates, keys and snapshots there).

use polyvisor_core::{net, Guest, GuestId, Nic, PowerState};
use serde_json::Value;

/// Server metadata: `"1"` on servers polyvisor created (clones, creates).
pub const META_OWNED: &str = "polyvisor";
/// Server metadata: the template flag (`"1"`).
pub const META_TEMPLATE: &str = "polyvisor_template";
/// Server metadata: the platform key (CloudStack internal name).
pub const META_KEY: &str = "polyvisor_key";
/// Server metadata: the source server of a clone.
pub const META_CLONE_OF: &str = "polyvisor_clone_of";
/// Server metadata: the nonce of the clone/create task that booted the server.
pub const META_NONCE: &str = "polyvisor_nonce";
/// Server metadata: comma-separated ids of the Neutron ports polyvisor created for it.
pub const META_PORTS: &str = "polyvisor_ports";

/// Image property: the server a snapshot image belongs to.
pub const IMG_SNAPSHOT_OF: &str = "polyvisor_snapshot_of";
/// Image property: the snapshot's name as the platform gave it.
pub const IMG_SNAPSHOT_NAME: &str = "polyvisor_snapshot";
/// Image property: a temporary image polyvisor made to clone a server's current state
/// (value: the task nonce); deleted once the clone booted.
pub const IMG_CLONE_BASE: &str = "polyvisor_clone_base";

/// A metadata value of a server.
pub fn meta<'a>(server: &'a Value, key: &str) -> Option<&'a str> {
    server["metadata"].get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// Nova status + task state → the six power states.
pub fn power_of(status: &str, task_state: Option<&str>) -> PowerState {
    match (status, task_state) {
        (_, Some("powering-off")) | (_, Some("shelving")) => PowerState::PoweringOff,
        (_, Some("powering-on")) | (_, Some("resuming")) | (_, Some("unpausing")) => PowerState::PoweringOn,
        (_, Some("suspending")) | (_, Some("pausing")) => PowerState::Suspending,
        ("ACTIVE", _) => PowerState::PoweredOn,
        (
            "BUILD" | "REBUILD" | "REBOOT" | "HARD_REBOOT" | "PASSWORD" | "MIGRATING" | "RESIZE" | "VERIFY_RESIZE"
            | "REVERT_RESIZE" | "RESCUE",
            _,
        ) => PowerState::PoweringOn,
        ("SUSPENDED" | "PAUSED", _) => PowerState::Suspended,
        // SHUTOFF, SHELVED(_OFFLOADED), ERROR, DELETED, SOFT_DELETED, UNKNOWN
        _ => PowerState::PoweredOff,
    }
}

/// The server's status and task state.
pub fn status_of(server: &Value) -> (&str, Option<&str>) {
    (server["status"].as_str().unwrap_or("UNKNOWN"), server["OS-EXT-STS:task_state"].as_str())
}

/// NICs from `addresses` (`{"<net>": [{"addr", "version", "OS-EXT-IPS-MAC:mac_addr"}]}`),
/// one per MAC, in network-name order.
pub fn nics_of(server: &Value) -> Vec<Nic> {
    let mut nics: Vec<Nic> = Vec::new();
    let Some(addrs) = server["addresses"].as_object() else { return nics };
    for (netname, list) in addrs {
        for a in list.as_array().into_iter().flatten() {
            let mac = a["OS-EXT-IPS-MAC:mac_addr"].as_str().and_then(net::normalize_mac).unwrap_or_default();
            let idx = match nics.iter().position(|n| n.mac == mac && n.network.as_deref() == Some(netname)) {
                Some(i) => i,
                None => {
                    nics.push(Nic { mac: mac.clone(), network: Some(netname.clone()), ..Default::default() });
                    nics.len() - 1
                }
            };
            if let Some(ip) = a["addr"].as_str() {
                match a["version"].as_u64() {
                    Some(6) => nics[idx].ipv6.push(ip.to_string()),
                    _ => nics[idx].ipv4.push(ip.to_string()),
                }
            }
        }
    }
    nics
}

/// The full guest view of a server (microversion ≥ 2.47: the flavor is embedded).
pub fn guest_of(server: &Value) -> Guest {
    let id = server["id"].as_str().unwrap_or_default().to_string();
    let (status, task) = status_of(server);
    let name = server["name"].as_str().filter(|n| !n.is_empty()).map(str::to_string);
    let raw = match task {
        Some(t) => format!("{status} ({t})"),
        None => status.to_string(),
    };
    Guest {
        name: name.unwrap_or_else(|| format!("VM-{id}")),
        id: GuestId::new(id),
        node: server["OS-EXT-AZ:availability_zone"].as_str().filter(|s| !s.is_empty()).map(str::to_string),
        os: None,
        cpus: server["flavor"]["vcpus"].as_u64().map(|v| v as u32),
        memory_mb: server["flavor"]["ram"].as_u64(),
        nics: nics_of(server),
        is_template: meta(server, META_TEMPLATE) == Some("1"),
        power: power_of(status, task),
        raw_power_state: raw,
        key: meta(server, META_KEY).map(str::to_string),
    }
}

/// Whether `s` is a canonical server UUID (lower-case 8-4-4-4-12); other ids never reach Nova.
pub fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn states_map_with_task_state_as_transitions() {
        assert_eq!(power_of("ACTIVE", None), PowerState::PoweredOn);
        assert_eq!(power_of("ACTIVE", Some("powering-off")), PowerState::PoweringOff);
        assert_eq!(power_of("SHUTOFF", Some("powering-on")), PowerState::PoweringOn);
        assert_eq!(power_of("SHUTOFF", None), PowerState::PoweredOff);
        assert_eq!(power_of("BUILD", Some("spawning")), PowerState::PoweringOn);
        assert_eq!(power_of("SUSPENDED", None), PowerState::Suspended);
        assert_eq!(power_of("PAUSED", None), PowerState::Suspended);
        assert_eq!(power_of("ACTIVE", Some("suspending")), PowerState::Suspending);
        assert_eq!(power_of("ERROR", None), PowerState::PoweredOff);
        assert_eq!(power_of("HARD_REBOOT", Some("rebooting_hard")), PowerState::PoweringOn);
        assert_eq!(power_of("ACTIVE", Some("image_uploading")), PowerState::PoweredOn);
    }

    #[test]
    fn a_server_maps_to_a_guest() {
        let s = json!({"id": "0b7f4bc4-0a39-4f5e-9b8e-2f1b5b2b7a11", "name": "web", "status": "ACTIVE",
            "OS-EXT-STS:task_state": null, "flavor": {"vcpus": 2, "ram": 2048, "original_name": "m1.small"},
            "metadata": {"polyvisor_template": "1", "polyvisor_key": "i-2-3-VM"},
            "addresses": {"private": [
                {"addr": "10.0.0.5", "version": 4, "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:00:00:01"},
                {"addr": "fd00::5", "version": 6, "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:00:00:01"}]}});
        let g = guest_of(&s);
        assert_eq!((g.cpus, g.memory_mb, g.is_template), (Some(2), Some(2048), true));
        assert_eq!(g.key.as_deref(), Some("i-2-3-VM"));
        assert_eq!(g.nics.len(), 1);
        assert_eq!(g.nics[0].mac, "FA:16:3E:00:00:01");
        assert_eq!(g.ipv4_addresses(), ["10.0.0.5"]);
        assert_eq!(g.ipv6_addresses(), ["fd00::5"]);
        assert_eq!(g.raw_power_state, "ACTIVE");
        let bare = guest_of(&json!({"id": "x", "name": "", "status": "SHUTOFF", "metadata": {}}));
        assert_eq!((bare.name.as_str(), bare.power, bare.is_template), ("VM-x", PowerState::PoweredOff, false));
    }

    #[test]
    fn only_canonical_uuids() {
        assert!(is_uuid("0b7f4bc4-0a39-4f5e-9b8e-2f1b5b2b7a11"));
        for bad in
            ["0B7F4BC4-0A39-4F5E-9B8E-2F1B5B2B7A11", "x", "", "0b7f4bc4-0a39-4f5e-9b8e-2f1b5b2b7a1", "../servers"]
        {
            assert!(!is_uuid(bad), "{bad}");
        }
    }
}
