//! Morpheus instance JSON → polyvisor model: status mapping, polyvisor's tags, NICs.
//!
//! polyvisor keeps its state on the instance as Morpheus metadata tags (no local state):
//! [`TAG_KEY`] (the platform's ownership key), [`TAG_TEMPLATE`] (`"true"`: a flagged template)
//! and [`TAG_CLONE`] (`<source id>:<name>`: which clone request made it, so a retry adopts it).

use polyvisor_core::{net, Error, Guest, GuestId, GuestSummary, Nic, PowerState, Result};
use serde_json::Value;

/// Tag carrying the platform key (CloudStack internal name).
pub const TAG_KEY: &str = "polyvisor_key";
/// Tag marking a polyvisor template.
pub const TAG_TEMPLATE: &str = "polyvisor_template";
/// Tag naming the clone request that made the instance.
pub const TAG_CLONE: &str = "polyvisor_clone";

/// Morpheus `status` → normalised power state. Unknown values are powered off.
pub fn map_status(status: &str) -> PowerState {
    match status {
        "running" => PowerState::PoweredOn,
        "starting" | "provisioning" | "restarting" | "resizing" | "cloning" | "pending" => PowerState::PoweringOn,
        "stopping" | "removing" | "pendingRemoval" => PowerState::PoweringOff,
        "suspended" => PowerState::Suspended,
        "suspending" => PowerState::Suspending,
        _ => PowerState::PoweredOff,
    }
}

/// Whether the status is a resting state (no work in progress).
pub fn is_settled(status: &str) -> bool {
    matches!(status, "running" | "stopped" | "suspended" | "failed" | "warning" | "denied" | "unknown")
}

/// The canonical instance id of a guest id (a positive decimal integer).
pub fn instance_id(id: &GuestId) -> Result<u64> {
    let s = id.as_str();
    let ok = !s.is_empty() && s.len() <= 18 && s.bytes().all(|b| b.is_ascii_digit()) && !s.starts_with('0');
    match ok.then(|| s.parse::<u64>().ok()).flatten() {
        Some(n) => Ok(n),
        None => {
            let shown: String = s.chars().take(40).flat_map(char::escape_default).collect();
            Err(Error::invalid(format!("guest id '{shown}' is not an HPE VM Essentials instance id")))
        }
    }
}

/// The instance object of a `GET /api/instances/{id}` answer.
pub fn instance_of(v: &Value) -> Option<&Value> {
    v.get("instance").filter(|i| i.is_object())
}

/// A tag's value.
pub fn tag<'a>(inst: &'a Value, name: &str) -> Option<&'a str> {
    inst.get("tags")?
        .as_array()?
        .iter()
        .find(|t| t.get("name").and_then(Value::as_str) == Some(name))
        .map(|t| t.get("value").and_then(Value::as_str).unwrap_or(""))
}

/// `id` as a string.
pub fn id_of(inst: &Value) -> Option<String> {
    inst.get("id").and_then(Value::as_u64).map(|n| n.to_string())
}

/// The `status` string.
pub fn status_of(inst: &Value) -> &str {
    inst.get("status").and_then(Value::as_str).unwrap_or("unknown")
}

/// Whether polyvisor flagged it as a template.
pub fn is_template(inst: &Value) -> bool {
    tag(inst, TAG_TEMPLATE) == Some("true")
}

fn name_of(inst: &Value, id: &str) -> String {
    ["name", "displayName"]
        .iter()
        .find_map(|k| inst.get(*k).and_then(Value::as_str).filter(|s| !s.trim().is_empty()))
        .map(str::to_string)
        .unwrap_or_else(|| format!("VM-{id}"))
}

/// The listing view.
pub fn summary(inst: &Value) -> Option<GuestSummary> {
    let id = id_of(inst)?;
    Some(GuestSummary {
        name: name_of(inst, &id),
        power: map_status(status_of(inst)),
        is_template: is_template(inst),
        key: tag(inst, TAG_KEY).filter(|k| !k.is_empty()).map(str::to_string),
        node: None,
        id: GuestId::new(id),
    })
}

/// NICs: MACs and addresses of the instance's servers (`containerDetails[].server.interfaces`),
/// else the instance's `interfaces` addresses without MAC.
pub fn nics(inst: &Value) -> Vec<Nic> {
    let mut out: Vec<Nic> = Vec::new();
    let server_nics = inst
        .get("containerDetails")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.pointer("/server/interfaces").and_then(Value::as_array))
        .flatten();
    for n in server_nics {
        let mac = n.get("macAddress").and_then(Value::as_str).and_then(net::normalize_mac).unwrap_or_default();
        let mut nic = Nic {
            mac,
            network: n.pointer("/network/name").and_then(Value::as_str).map(str::to_string),
            ..Default::default()
        };
        if let Some(ip) =
            n.get("ipAddress").and_then(Value::as_str).filter(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok())
        {
            nic.ipv4.push(ip.to_string());
        }
        if let Some(ip) =
            n.get("ipv6Address").and_then(Value::as_str).filter(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok())
        {
            nic.ipv6.push(ip.to_string());
        }
        out.push(nic);
    }
    if out.is_empty() {
        for n in inst.get("interfaces").and_then(Value::as_array).into_iter().flatten() {
            let mut nic = Nic::default();
            if let Some(ip) =
                n.get("ipAddress").and_then(Value::as_str).filter(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok())
            {
                nic.ipv4.push(ip.to_string());
            }
            out.push(nic);
        }
    }
    out
}

/// The full view.
pub fn guest(inst: &Value) -> Option<Guest> {
    let s = summary(inst)?;
    let status = status_of(inst).to_string();
    Some(Guest {
        id: s.id,
        name: s.name,
        node: None,
        os: inst.pointer("/instanceType/code").and_then(Value::as_str).map(str::to_string),
        cpus: inst.get("maxCores").and_then(Value::as_u64).and_then(|n| u32::try_from(n).ok()),
        memory_mb: inst.get("maxMemory").and_then(Value::as_u64).map(|b| b / (1024 * 1024)),
        nics: nics(inst),
        is_template: s.is_template,
        power: s.power,
        raw_power_state: status,
        key: s.key,
    })
}

/// A guest or snapshot name polyvisor may send: 1–64 chars of letters, digits, `.`, `_`, `-`,
/// starting with a letter or digit.
pub fn valid_name(what: &str, name: &str) -> Result<()> {
    let ok = (1..=64).contains(&name.len())
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        let shown: String = name.chars().take(40).flat_map(char::escape_default).collect();
        Err(Error::invalid(format!(
            "{what} '{shown}' is not valid: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_instance_maps_to_a_guest() {
        let inst = json!({"id": 7, "name": "web", "status": "running", "maxCores": 2, "maxMemory": 2147483648u64,
            "tags": [{"name": "polyvisor_key", "value": "i-2-45-VM"}, {"name": "polyvisor_template", "value": "true"}],
            "containerDetails": [{"server": {"interfaces": [{"macAddress": "00:50:56:aa:bb:cc", "ipAddress": "192.0.2.7",
                "network": {"name": "lan"}}]}}]});
        let g = guest(&inst).unwrap();
        assert_eq!((g.id.as_str(), g.name.as_str(), g.power), ("7", "web", PowerState::PoweredOn));
        assert_eq!((g.cpus, g.memory_mb, g.is_template), (Some(2), Some(2048), true));
        assert_eq!(g.key.as_deref(), Some("i-2-45-VM"));
        assert_eq!(g.mac_addresses(), ["00:50:56:AA:BB:CC"]);
        assert_eq!(g.ipv4_addresses(), ["192.0.2.7"]);
        for (s, p) in [
            ("stopped", PowerState::PoweredOff),
            ("suspended", PowerState::Suspended),
            ("starting", PowerState::PoweringOn),
            ("removing", PowerState::PoweringOff),
            ("weird", PowerState::PoweredOff),
        ] {
            assert_eq!(map_status(s), p, "{s}");
        }
    }

    #[test]
    fn ids_and_names_are_validated() {
        assert_eq!(instance_id(&GuestId::new("1001")).unwrap(), 1001);
        for bad in ["", "0", "01", "-1", "1 ", "abc", "99999999999999999999"] {
            assert!(instance_id(&GuestId::new(bad)).is_err(), "{bad:?}");
        }
        assert!(valid_name("name", "clone-1.a_b").is_ok());
        for bad in ["", "-a", "a b", "a/b", &"x".repeat(65)] {
            assert!(valid_name("name", bad).is_err(), "{bad:?}");
        }
    }
}
