//! `inventory`: the neutral document of spec §8.2 and the InventoryRefresh persister
//! serialisation built from it.
//!
//! What the core model gives and what it does not: guests (id, name, node, OS, vCPUs,
//! memory, NICs with MACs/IPs/networks, power, template flag) and snapshots (name,
//! description, time, parent). It has no disks, storages or clusters: `storages` and each
//! VM's `disks` are empty lists, hosts are the guests' nodes, and one cluster stands for
//! the endpoint. `uid_ems` is the backend id (libvirt's is a UUID).

use polyvisor_core::{Driver, Guest, GuestId, PowerState, Result, Snapshot};
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

/// ManageIQ `VmOrTemplate::VENDOR_TYPES` keys a platform name can map to (ManageIQ
/// master, 2025: the list the target release validates against); others report `unknown`.
const MIQ_VENDORS: &[&str] = &[
    "amazon",
    "azure",
    "google",
    "ibm",
    "kubevirt",
    "microsoft",
    "openstack",
    "oracle",
    "proxmox",
    "redhat",
    "vmware",
];

/// The ManageIQ vendor string for a platform (driver) name.
pub fn vendor(platform: &str) -> &'static str {
    MIQ_VENDORS.iter().find(|v| **v == platform).copied().unwrap_or("unknown")
}

/// The normalised power name of spec §4 (`running`, `stopped`, ...).
pub fn power_name(p: PowerState, template: bool) -> &'static str {
    if template {
        return "template";
    }
    match p {
        PowerState::PoweredOn => "running",
        PowerState::PoweredOff | PowerState::PoweringOff => "stopped",
        PowerState::PoweringOn => "starting",
        PowerState::Suspended | PowerState::Suspending => "suspended",
    }
}

/// RFC 3339 UTC seconds.
pub fn iso(unix: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix)).to_string()
}

/// Collects the inventory: all guests, or (targeted) only `only` plus their hosts and the
/// cluster. Round trips: probe + listing + per VM one read (+ one snapshot listing when the
/// driver has snapshots).
pub async fn collect(driver: &dyn Driver, platform: &str, only: &[GuestId]) -> Result<Value> {
    let (description, vms) = read(driver, only).await?;
    Ok(document(platform, &description, &vms))
}

/// The driver's description and every guest read in full with its snapshots
/// (`Driver::read_guests`: one transaction on sim, per-guest reads elsewhere).
pub async fn read(driver: &dyn Driver, only: &[GuestId]) -> Result<(String, Vec<(Guest, Vec<Snapshot>)>)> {
    let description = driver.probe().await?;
    let ids: Vec<GuestId> =
        if only.is_empty() { driver.list_guests().await?.into_iter().map(|g| g.id).collect() } else { only.to_vec() };
    // Gone between listing and read, or a targeted id that no longer exists: absent.
    Ok((description, driver.read_guests(&ids).await?))
}

/// [`document`] written straight to `w`, one VM at a time (a 10,000-guest inventory never
/// exists as one JSON tree in memory). Same bytes as `document` serialised compactly.
pub fn write_document<W: std::io::Write>(
    w: &mut W,
    platform: &str,
    description: &str,
    vms: &[(Guest, Vec<Snapshot>)],
) -> std::io::Result<()> {
    let mut head = document(platform, description, &[]);
    let hosts: BTreeSet<String> =
        vms.iter().map(|(g, _)| g.node.clone().unwrap_or_else(|| format!("{platform}-host"))).collect();
    let cluster = cluster_ref(platform);
    let vendor = vendor(platform);
    head["hosts"] = Value::Array(
        hosts
            .iter()
            .map(|h| {
                json!({"ems_ref": h, "uid_ems": h, "name": h, "hostname": h, "ipaddress": null,
                       "vmm_vendor": vendor, "vmm_product": description, "vmm_version": null, "vmm_buildnumber": null,
                       "power_state": "on", "connection_state": "connected", "cluster": cluster})
            })
            .collect(),
    );
    let mut obj = head.as_object().cloned().unwrap_or_default();
    obj.remove("vms");
    let text = serde_json::to_string(&Value::Object(obj)).map_err(std::io::Error::other)?;
    // `{...}` without its closing brace, then `"vms":[...]}`.
    w.write_all(&text.as_bytes()[..text.len() - 1])?;
    w.write_all(b",\"vms\":[")?;
    for (i, (g, snaps)) in vms.iter().enumerate() {
        if i > 0 {
            w.write_all(b",")?;
        }
        let host = g.node.clone().unwrap_or_else(|| format!("{platform}-host"));
        serde_json::to_writer(&mut *w, &vm(g, snaps, &host, &cluster, vendor)).map_err(std::io::Error::other)?;
    }
    w.write_all(b"]}\n")?;
    w.flush()
}

/// The cluster standing for the endpoint.
fn cluster_ref(platform: &str) -> String {
    format!("{platform}-cluster")
}

/// Builds the neutral document from guests read already (pure; used by the bench too).
pub fn document(platform: &str, description: &str, vms: &[(Guest, Vec<Snapshot>)]) -> Value {
    let cluster = cluster_ref(platform);
    let vendor = vendor(platform);
    let mut hosts = BTreeSet::new();
    let mut out = Vec::with_capacity(vms.len());
    for (g, snaps) in vms {
        let host = g.node.clone().unwrap_or_else(|| format!("{platform}-host"));
        hosts.insert(host.clone());
        out.push(vm(g, snaps, &host, &cluster, vendor));
    }
    let hosts: Vec<Value> = hosts
        .into_iter()
        .map(|h| {
            json!({"ems_ref": h, "uid_ems": h, "name": h, "hostname": h, "ipaddress": null,
                   "vmm_vendor": vendor, "vmm_product": description, "vmm_version": null, "vmm_buildnumber": null,
                   "power_state": "on", "connection_state": "connected", "cluster": cluster})
        })
        .collect();
    json!({
        "schema": 1,
        "platform": platform,
        "collected_at": iso(polyvisor_core::task::now_unix()),
        "clusters": [{"ems_ref": cluster, "uid_ems": cluster, "name": cluster}],
        "hosts": hosts,
        "storages": [],
        "vms": out,
    })
}

fn vm(g: &Guest, snaps: &[Snapshot], host: &str, cluster: &str, vendor: &str) -> Value {
    let id = g.id.as_str();
    let nics: Vec<Value> = g
        .nics
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let lan = n.network.clone();
            json!({"uid_ems": format!("{id}-net{i}"),
                   "device_name": match &lan { Some(l) => format!("net{i} ({l})"), None => format!("net{i}") },
                   "address": n.mac, "lan": lan, "vlan": n.vlan})
        })
        .collect();
    let networks: Vec<Value> = g
        .nics
        .iter()
        .enumerate()
        .flat_map(|(i, n)| {
            n.ipv4.iter().chain(n.ipv6.iter()).map(move |ip| {
                let v6 = ip.contains(':');
                json!({"description": format!("net{i}"), "ipaddress": if v6 { Value::Null } else { json!(ip) },
                       "ipv6address": if v6 { json!(ip) } else { Value::Null }, "hostname": g.name})
            })
        })
        .collect();
    let snapshots: Vec<Value> = snaps
        .iter()
        .map(|s| {
            json!({"uid": s.name, "uid_ems": s.name, "ems_ref": s.name, "name": s.name,
                   "description": s.description.clone().unwrap_or_default(),
                   "create_time": s.created_unix.map(iso), "parent_uid": s.parent, "includes_memory": s.includes_memory})
        })
        .collect();
    let cpus = g.cpus.unwrap_or(0);
    json!({
        "ems_ref": id, "uid_ems": id, "name": g.name, "location": format!("{host}/{id}"),
        "vendor": vendor, "template": g.is_template,
        "raw_power_state": if g.is_template { "never".to_string() } else { g.raw_power_state.clone() },
        "power": power_name(g.power, g.is_template),
        "host": host, "cluster": cluster, "storages": [], "description": "",
        "hardware": {"cpu_total_cores": cpus, "cpu_sockets": if cpus > 0 { 1 } else { 0 }, "cpu_cores_per_socket": cpus,
                     "memory_mb": g.memory_mb.unwrap_or(0), "disk_capacity": null},
        "disks": [],
        "nics": nics,
        "networks": networks,
        "operating_system": {"product_name": g.os},
        "snapshots": snapshots,
    })
}

/// A lazy link of the persister serialisation.
fn lazy(collection: &str, reference: Value) -> Value {
    let nested =
        reference.as_object().is_some_and(|o| o.values().any(|v| v.get("inventory_collection_name").is_some()));
    json!({"type": "InventoryRefresh::InventoryObjectLazy", "inventory_collection_name": collection,
           "reference": reference, "ref": "manager_ref", "key": null, "default": null,
           "transform_nested_lazy_finds": nested})
}

fn collection(name: &str, data: Vec<Value>, manager_uuids: &[Value]) -> Value {
    json!({"name": name, "manager_uuids": manager_uuids, "all_manager_uuids": null, "partial_data": [], "data": data})
}

/// The InventoryRefresh persister serialisation (spec §8.2) of a neutral document, for the
/// plugin's `Persister.from_json` fast path. `targeted` scopes deletions to the VMs in the
/// document (`manager_uuids`).
pub fn persister(doc: &Value, name: &str, ems_id: Option<u64>, targeted: Option<&[GuestId]>) -> Value {
    let empty = Vec::new();
    let arr = |k: &str| doc.get(k).and_then(Value::as_array).unwrap_or(&empty).clone();
    let vm_type = format!("ManageIQ::Providers::{name}::InfraManager::Vm");
    let tpl_type = format!("ManageIQ::Providers::{name}::InfraManager::Template");
    let host_type = format!("ManageIQ::Providers::{name}::InfraManager::Host");
    let clusters: Vec<Value> = arr("clusters");
    let hosts: Vec<Value> = arr("hosts")
        .into_iter()
        .map(|h| {
            let mut o = h.as_object().cloned().unwrap_or_default();
            let cluster = o.remove("cluster").unwrap_or(Value::Null);
            o.insert("type".into(), json!(host_type));
            o.insert("ems_cluster".into(), lazy("clusters", json!({"ems_ref": cluster})));
            Value::Object(o)
        })
        .collect();
    let mut vms = Vec::new();
    let (mut hardwares, mut devices, mut networks, mut oses, mut snapshots) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for v in arr("vms") {
        let ems_ref = v["ems_ref"].clone();
        let template = v["template"].as_bool().unwrap_or(false);
        let vm_lazy = lazy("vms_and_templates", json!({"ems_ref": ems_ref}));
        let mut o = Map::new();
        o.insert("type".into(), json!(if template { &tpl_type } else { &vm_type }));
        for k in ["ems_ref", "uid_ems", "name", "location", "vendor", "template", "raw_power_state", "description"] {
            o.insert(k.into(), v[k].clone());
        }
        o.insert("host".into(), lazy("hosts", json!({"ems_ref": v["host"]})));
        o.insert("ems_cluster".into(), lazy("clusters", json!({"ems_ref": v["cluster"]})));
        vms.push(Value::Object(o));
        let mut hw = v["hardware"].as_object().cloned().unwrap_or_default();
        hw.insert("vm_or_template".into(), vm_lazy.clone());
        hardwares.push(Value::Object(hw));
        let hw_lazy = lazy("hardwares", json!({"vm_or_template": vm_lazy}));
        for n in v["nics"].as_array().unwrap_or(&empty) {
            devices.push(json!({"hardware": hw_lazy, "uid_ems": n["uid_ems"], "device_name": n["device_name"],
                                "device_type": "ethernet", "controller_type": "ethernet", "address": n["address"]}));
        }
        for n in v["networks"].as_array().unwrap_or(&empty) {
            networks.push(json!({"hardware": hw_lazy, "description": n["description"], "ipaddress": n["ipaddress"],
                                 "ipv6address": n["ipv6address"], "hostname": n["hostname"]}));
        }
        oses.push(json!({"vm_or_template": vm_lazy, "product_name": v["operating_system"]["product_name"]}));
        for s in v["snapshots"].as_array().unwrap_or(&empty) {
            let parent = match s["parent_uid"].as_str() {
                Some(p) => lazy("snapshots", json!({"vm_or_template": vm_lazy, "uid": p})),
                None => Value::Null,
            };
            snapshots.push(json!({"vm_or_template": vm_lazy, "uid": s["uid"], "uid_ems": s["uid_ems"],
                                  "ems_ref": s["ems_ref"], "name": s["name"], "description": s["description"],
                                  "create_time": s["create_time"], "parent_uid": s["parent_uid"], "parent": parent}));
        }
    }
    let uuids: Vec<Value> = match targeted {
        Some(ids) => ids.iter().map(|i| json!({"ems_ref": i.as_str()})).collect(),
        None => Vec::new(),
    };
    json!({
        "ems_id": ems_id,
        "class": format!("ManageIQ::Providers::{name}::Inventory::Persister::{}", if targeted.is_some() { "TargetCollection" } else { "InfraManager" }),
        "collections": [
            collection("clusters", clusters, &[]),
            collection("hosts", hosts, &[]),
            collection("storages", arr("storages"), &[]),
            collection("vms_and_templates", vms, &uuids),
            collection("hardwares", hardwares, &[]),
            collection("disks", Vec::new(), &[]),
            collection("guest_devices", devices, &[]),
            collection("networks", networks, &[]),
            collection("operating_systems", oses, &[]),
            collection("snapshots", snapshots, &[]),
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendor_and_power_maps() {
        assert_eq!(vendor("proxmox"), "proxmox");
        assert_eq!(vendor("sim"), "unknown");
        assert_eq!(vendor("libvirt"), "unknown");
        assert_eq!(power_name(PowerState::Suspending, false), "suspended");
        assert_eq!(power_name(PowerState::PoweredOff, true), "template");
        assert_eq!(iso(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn streamed_document_equals_the_tree() {
        let g = |id: &str, node: Option<&str>| Guest {
            id: id.into(),
            name: format!("vm{id}"),
            node: node.map(str::to_string),
            os: Some("l26".into()),
            cpus: Some(2),
            memory_mb: Some(512),
            nics: vec![polyvisor_core::Nic {
                mac: "AA:00:00:00:00:01".into(),
                ipv4: vec!["10.0.0.2".into()],
                ..Default::default()
            }],
            is_template: id == "9",
            power: PowerState::PoweredOn,
            raw_power_state: "running".into(),
            key: None,
        };
        let snap = Snapshot {
            name: "s".into(),
            description: None,
            created_unix: Some(1),
            parent: None,
            includes_memory: false,
        };
        let vms = vec![(g("1", Some("n1")), vec![snap]), (g("9", None), vec![]), (g("2", Some("n2")), vec![])];
        let mut buf = Vec::new();
        write_document(&mut buf, "sim", "d", &vms).unwrap();
        let mut streamed: Value = serde_json::from_slice(&buf).unwrap();
        let mut tree = document("sim", "d", &vms);
        streamed["collected_at"] = Value::Null;
        tree["collected_at"] = Value::Null;
        assert_eq!(streamed, tree);
        let mut empty = Vec::new();
        write_document(&mut empty, "sim", "d", &[]).unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&empty).unwrap()["vms"], json!([]));
    }
}
