//! L2 guest networking (CloudShell): a NIC's VLAN is the `tag=` of its `netN` config entry.
//! `attach_vlan` retags `net<nic_index>`, else reuses a NIC already on that VLAN, else adds
//! the first free `netN` (`virtio=<new MAC>,bridge=<bridge>,tag=<vlan>,firewall=0`). `detach_vlan` clears the tag of `net0` (a guest keeps its primary NIC) and deletes
//! any other NIC. Both are synchronous config `PUT`s; on a running guest without NIC
//! hotplug PVE keeps them pending until the next start (read back from `/pending`).

use crate::client::{vm_path, ProxmoxDriver};
use crate::parse::config_nics;
use polyvisor_core::netops::VlanAttach;
use polyvisor_core::{net, Error, GuestId, Nic, Result};
use serde_json::Value;

/// Proxmox's highest NIC index + 1.
const MAX_NICS: u32 = 32;

/// `netN` entries: (index, raw value).
fn nets(config: &Value) -> Vec<(u32, String)> {
    let mut v: Vec<(u32, String)> = config
        .as_object()
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| Some((k.strip_prefix("net")?.parse::<u32>().ok()?, v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    v.sort_by_key(|(i, _)| *i);
    v
}

/// The MAC of a `netN` value.
fn mac_of(raw: &str) -> Option<String> {
    config_nics(&serde_json::json!({ "net0": raw })).into_iter().next().map(|n| n.mac)
}

/// `raw` with its `tag=` replaced by `tag` (or removed when `None`).
pub(crate) fn with_tag(raw: &str, tag: Option<u32>) -> String {
    let mut parts: Vec<String> = raw.split(',').filter(|p| !p.starts_with("tag=")).map(str::to_string).collect();
    if let Some(t) = tag {
        parts.push(format!("tag={t}"));
    }
    parts.join(",")
}

/// A fresh locally administered unicast MAC (`02:…`) for a NIC we add: clock nanoseconds
/// mixed with the vmid and slot (no `rand` dependency for six bytes; a clash with an
/// existing NIC would need the same nanosecond on another guest).
fn new_mac(vmid: &str, slot: u32) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ (nanos as u64);
    for b in vmid.bytes().chain(slot.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let b = h.to_be_bytes();
    format!("02:{:02X}:{:02X}:{:02X}:{:02X}:{:02X}", b[3], b[4], b[5], b[6], b[7])
}

impl ProxmoxDriver {
    /// The config as the next start will use it (`/pending`: pending values applied,
    /// pending deletions dropped), so a change to a running guest without NIC hotplug
    /// still reads back.
    async fn config_of(&self, vmid: &str, node: &str) -> Result<Value> {
        let items = self.api.get(&format!("{}/pending", vm_path(node, vmid)), &[]).await?;
        let mut out = serde_json::Map::new();
        for it in items.as_array().into_iter().flatten() {
            let Some(key) = it.get("key").and_then(Value::as_str) else { continue };
            if crate::lenient::bool_field(it, "delete") {
                continue;
            }
            if let Some(v) = it.get("pending").or_else(|| it.get("value")) {
                out.insert(key.to_string(), v.clone());
            }
        }
        Ok(Value::Object(out))
    }

    fn nic_at(config: &Value, idx: u32) -> Result<Nic> {
        let raw = nets(config).into_iter().find(|(i, _)| *i == idx).map(|(_, r)| r);
        let raw = raw.ok_or_else(|| Error::backend(format!("net{idx} is missing after the update")))?;
        config_nics(&serde_json::json!({ "net0": raw }))
            .into_iter()
            .next()
            .ok_or_else(|| Error::backend(format!("net{idx} has no MAC address")))
    }

    /// See the module doc.
    pub(crate) async fn pve_attach_vlan(&self, id: &GuestId, req: &VlanAttach) -> Result<Nic> {
        crate::validate::vlan(req.vlan, "VLAN")?;
        if let Some(b) = &req.network {
            crate::validate::bridge(b, "network")?;
        }
        // Templates (native or flagged, as the driver reports them) are never changed.
        if polyvisor_core::Driver::get_guest(self, id).await?.is_template {
            return Err(Error::conflict(format!("guest [{id}] is a template; its NICs are not changed")));
        }
        self.on_vm(id, |vmid, node| async move {
            let path = format!("{}/config", vm_path(&node, &vmid));
            let config = self.config_of(&vmid, &node).await?;
            let current = nets(&config);
            let idx = match req.nic_index {
                Some(i) => {
                    let i = u32::try_from(i).map_err(|_| Error::invalid("NIC index out of range"))?;
                    let Some((_, raw)) = current.iter().find(|(n, _)| *n == i) else {
                        return Err(Error::invalid(format!("guest [{vmid}] has no NIC at index {i}")));
                    };
                    self.api.put(&path, &[(&format!("net{i}"), with_tag(raw, Some(req.vlan)))]).await?;
                    i
                }
                None => {
                    let tagged = config_nics(&config).into_iter().position(|n| n.vlan == Some(req.vlan));
                    if let Some(pos) = tagged {
                        return Ok(config_nics(&config).swap_remove(pos));
                    }
                    let free = (0..MAX_NICS)
                        .find(|i| !current.iter().any(|(n, _)| n == i))
                        .ok_or_else(|| Error::conflict(format!("guest [{vmid}] has no free NIC slot")))?;
                    let bridge = req.network.clone().unwrap_or_else(|| self.cfg().bridge.clone());
                    let value = format!("virtio={},bridge={bridge},tag={},firewall=0", new_mac(&vmid, free), req.vlan);
                    self.api.put(&path, &[(&format!("net{free}"), value)]).await?;
                    free
                }
            };
            Self::nic_at(&self.config_of(&vmid, &node).await?, idx)
        })
        .await
    }

    /// See the module doc.
    pub(crate) async fn pve_detach_vlan(&self, id: &GuestId, mac: &str) -> Result<()> {
        let want = net::normalize_mac(mac).ok_or_else(|| Error::invalid("invalid MAC address"))?;
        let r = self
            .on_vm(id, |vmid, node| {
                let want = want.clone();
                async move {
                    let path = format!("{}/config", vm_path(&node, &vmid));
                    let config = self.config_of(&vmid, &node).await?;
                    let Some((idx, raw)) = nets(&config).into_iter().find(|(_, r)| mac_of(r).as_deref() == Some(&want))
                    else {
                        return Ok(());
                    };
                    if idx == 0 {
                        self.api.put(&path, &[("net0", with_tag(&raw, None))]).await?;
                    } else {
                        self.api.put(&path, &[("delete", format!("net{idx}"))]).await?;
                    }
                    Ok(())
                }
            })
            .await;
        match r {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_replaced_added_and_removed() {
        assert_eq!(
            with_tag("virtio=BC:24:11:AA:BB:CC,bridge=vmbr0", Some(4)),
            "virtio=BC:24:11:AA:BB:CC,bridge=vmbr0,tag=4"
        );
        assert_eq!(
            with_tag("virtio=BC:24:11:AA:BB:CC,bridge=vmbr0,tag=9,firewall=0", Some(4)),
            "virtio=BC:24:11:AA:BB:CC,bridge=vmbr0,firewall=0,tag=4"
        );
        assert_eq!(
            with_tag("virtio=BC:24:11:AA:BB:CC,tag=9,bridge=vmbr0", None),
            "virtio=BC:24:11:AA:BB:CC,bridge=vmbr0"
        );
        assert_eq!(mac_of("virtio=bc:24:11:aa:bb:cc,bridge=vmbr0").as_deref(), Some("BC:24:11:AA:BB:CC"));
        let m = new_mac("100", 1);
        assert!(m.starts_with("02:") && net::normalize_mac(&m).as_deref() == Some(m.as_str()), "{m}");
    }
}
