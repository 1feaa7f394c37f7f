//! `guests/list` and `guests/get` (single id or array form), and the guest wire object.

use crate::errors::RpcError;
use crate::params::Params;
use crate::session::{Active, Session};
use polyvisor_core::{net, Guest, GuestId, PowerState};
use serde::Serialize;
use serde_json::{json, Map, Value};

/// At most this many IPs / MACs per guest (spec §4.4).
const MAX_ADDRESSES: usize = 3;

/// The guest object RAS reads.
#[derive(Serialize)]
struct WireGuest {
    id: String,
    name: String,
    provider: String,
    node: Option<String>,
    state: &'static str,
    power_state: String,
    host_os: String,
    ip: Option<String>,
    ip_addresses: Vec<String>,
    mac_addresses: Vec<String>,
    is_template: bool,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    memory_mb: Option<u64>,
}

fn placeholder_name(id: &str) -> String {
    format!("VM-{id}")
}

fn wire_guest(g: &Guest, provider: &str) -> WireGuest {
    let ips: Vec<String> = net::order_ipv4(g.ipv4_addresses()).into_iter().take(MAX_ADDRESSES).collect();
    let mut macs: Vec<String> = Vec::new();
    for m in g.mac_addresses().iter().filter_map(|m| net::normalize_mac(m)) {
        if !macs.contains(&m) && macs.len() < MAX_ADDRESSES {
            macs.push(m);
        }
    }
    let name = g.name.trim();
    WireGuest {
        id: g.id.to_string(),
        name: if name.is_empty() { placeholder_name(g.id.as_str()) } else { name.to_string() },
        provider: provider.to_string(),
        node: g.node.clone(),
        state: g.power.as_str(),
        power_state: if g.raw_power_state.trim().is_empty() {
            g.power.as_str().to_string()
        } else {
            g.raw_power_state.clone()
        },
        host_os: g.os.clone().filter(|o| !o.trim().is_empty()).unwrap_or_else(|| "unknown".into()),
        ip: ips.first().cloned(),
        ip_addresses: ips,
        mac_addresses: macs,
        is_template: g.is_template,
        kind: "Virtual Machine",
        memory_mb: g.memory_mb,
    }
}

/// The stub reported for an id that failed in the array form.
fn stub(id: &str, provider: &str) -> WireGuest {
    WireGuest {
        id: id.to_string(),
        name: placeholder_name(id),
        provider: provider.to_string(),
        node: None,
        state: PowerState::PoweredOff.as_str(),
        power_state: "unknown".into(),
        host_os: "unknown".into(),
        ip: None,
        ip_addresses: Vec::new(),
        mac_addresses: Vec::new(),
        is_template: false,
        kind: "Virtual Machine",
        memory_mb: None,
    }
}

fn to_value<T: Serialize>(v: &T) -> Result<Value, RpcError> {
    serde_json::to_value(v).map_err(|_| RpcError::internal("Failed to encode the reply"))
}

/// `{"guests":[ids]}`, templates included.
pub(super) async fn list(s: &mut Session) -> Result<Value, RpcError> {
    let a = s.active().await?;
    let guests = s.call("guests/list", a.driver.list_guests()).await.map_err(|e| e.context("Failed to list guests"))?;
    let ids: Vec<String> = guests.into_iter().map(|g| g.id.0).collect();
    Ok(json!({ "guests": ids }))
}

async fn fetch(s: &Session, a: &Active, id: &str) -> Result<Guest, RpcError> {
    let gid = GuestId::new(id);
    Ok(s.call("guests/get", a.driver.get_guest(&gid))
        .await
        .map_err(|e| e.context(format!("Failed to get guest [{id}]")))?)
}

/// One guest object, or a map keyed by id for the array form.
pub(super) async fn get(s: &mut Session, p: &Params) -> Result<Value, RpcError> {
    let ids: Option<Vec<String>> = match p.raw("id") {
        Some(Value::Array(items)) => {
            let mut ids = Vec::with_capacity(items.len());
            for item in items {
                match crate::params::id_value(item) {
                    Ok(id) => ids.push(id),
                    Err(why) => return Err(RpcError::invalid_field("params.id", &format!("array item {why}"))),
                }
            }
            if ids.is_empty() {
                return Err(RpcError::missing("params.id"));
            }
            Some(ids)
        }
        _ => None,
    };
    let ids = match ids {
        Some(ids) => ids,
        None => vec![p.req_id("id")?],
    };
    let a = s.active().await?;
    let provider = a.driver.display_name().to_string();
    if let [only] = ids.as_slice() {
        let g = fetch(s, &a, only).await?;
        return to_value(&wire_guest(&g, &provider));
    }
    let mut out = Map::new();
    for id in ids {
        let wire = match fetch(s, &a, &id).await {
            Ok(g) => wire_guest(&g, &provider),
            Err(e) => {
                tracing::warn!(id = %id, error = %e.message, "guests/get: stub for failed id");
                stub(&id, &provider)
            }
        };
        out.insert(id, to_value(&wire)?);
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyvisor_core::Nic;

    #[test]
    fn wire_guest_normalises_addresses_and_names() {
        let g = Guest {
            id: "7".into(),
            name: "  ".into(),
            node: None,
            os: None,
            cpus: None,
            memory_mb: Some(2048),
            nics: vec![
                Nic {
                    mac: "bc:24:11:aa:bb:01".into(),
                    ipv4: vec!["127.0.0.1".into(), "169.254.0.9".into(), "10.0.0.1".into()],
                    ..Default::default()
                },
                Nic {
                    mac: "BC-24-11-AA-BB-02".into(),
                    ipv4: vec!["10.0.0.2".into(), "10.0.0.3".into()],
                    ..Default::default()
                },
                Nic { mac: "bc2411aabb03".into(), ..Default::default() },
                Nic { mac: "bc:24:11:aa:bb:04".into(), ..Default::default() },
            ],
            is_template: false,
            power: PowerState::PoweredOn,
            raw_power_state: "".into(),
            key: None,
        };
        let v = serde_json::to_value(wire_guest(&g, "Fake")).unwrap();
        assert_eq!(v["name"], "VM-7");
        assert_eq!(v["ip"], "10.0.0.1");
        assert_eq!(v["ip_addresses"], json!(["10.0.0.1", "10.0.0.2", "10.0.0.3"]));
        assert_eq!(v["mac_addresses"], json!(["BC:24:11:AA:BB:01", "BC:24:11:AA:BB:02", "BC:24:11:AA:BB:03"]));
        assert_eq!(v["host_os"], "unknown");
        assert_eq!(v["power_state"], "powered_on");
        assert_eq!(v["memory_mb"], 2048);
        assert_eq!(v["type"], "Virtual Machine");
    }
}
