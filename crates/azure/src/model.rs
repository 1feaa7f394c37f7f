//! ARM JSON → core model, ARM tags polyvisor uses, and name rules.

use polyvisor_core::net::{is_reportable_ipv4, is_reportable_ipv6, normalize_mac};
use polyvisor_core::{Error, GuestId, GuestSummary, Nic, PowerState, Result};
use serde_json::{json, Map, Value};

/// Provider types.
pub const VM: &str = "Microsoft.Compute/virtualMachines";
/// Managed disks.
pub const DISK: &str = "Microsoft.Compute/disks";
/// Disk snapshots.
pub const SNAP: &str = "Microsoft.Compute/snapshots";
/// NICs.
pub const NIC: &str = "Microsoft.Network/networkInterfaces";

/// Platform key (CloudStack internal name) on a VM.
pub const TAG_KEY: &str = "polyvisor-key";
/// Template flag on the VM's gallery image definition (`true`).
pub const TAG_TEMPLATE: &str = "polyvisor-template";
/// On disks, NICs and snapshots: the VM they belong to.
pub const TAG_VM: &str = "polyvisor-vm";
/// On anything polyvisor created (`true`): only these are ever deleted with a VM.
pub const TAG_CREATED: &str = "polyvisor-created";
/// On snapshots: the platform's snapshot name.
pub const TAG_SNAPSHOT: &str = "polyvisor-snapshot";
/// On snapshots: the task that made it (a replace recognises the old one).
pub const TAG_OP: &str = "polyvisor-op";
/// On clones: the source VM name.
pub const TAG_SOURCE: &str = "polyvisor-source";

/// A tag value.
pub fn tag<'a>(v: &'a Value, name: &str) -> Option<&'a str> {
    v.get("tags").and_then(|t| t.get(name)).and_then(Value::as_str)
}

/// All tags as a map (empty when none).
pub fn tags(v: &Value) -> Map<String, Value> {
    v.get("tags").and_then(Value::as_object).cloned().unwrap_or_default()
}

/// `properties.provisioningState`.
pub fn provisioning(v: &Value) -> &str {
    v.pointer("/properties/provisioningState").and_then(Value::as_str).unwrap_or("Succeeded")
}

/// Whether the resource carries `polyvisor-created=true` for VM `vm`.
pub fn created_for(v: &Value, vm: &str) -> bool {
    tag(v, TAG_CREATED) == Some("true") && tag(v, TAG_VM).is_some_and(|t| t.eq_ignore_ascii_case(vm))
}

/// Azure VM names as polyvisor accepts them: 1-64 of `[A-Za-z0-9_.-]`, starting with a
/// letter or digit, not ending in `.` or `-`.
pub fn valid_vm_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && !n.ends_with('.')
        && !n.ends_with('-')
}

/// A guest id from a platform, validated (it becomes part of a URL path).
pub fn vm_name(id: &GuestId) -> Result<String> {
    if valid_vm_name(id.as_str()) {
        Ok(id.as_str().to_string())
    } else {
        Err(Error::invalid("guest id must be an Azure VM name (1-64 letters, digits, '_', '.', '-')"))
    }
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100000001b3))
}

/// The ARM snapshot resource name for platform snapshot `name` of VM `vm` (deterministic;
/// names ARM refuses are hashed, the platform name lives in the `polyvisor-snapshot` tag).
pub fn snapshot_resource(vm: &str, name: &str) -> String {
    let plain = format!("{vm}--{name}");
    let ok = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || "_-".contains(c));
    if ok && plain.len() <= 80 {
        plain
    } else {
        let vm: String = vm.chars().take(60).collect();
        format!("{vm}--h{:016x}", fnv(&format!("{vm}\u{0}{name}")))
    }
}

/// Power state from an instance view (`PowerState/<x>` status code).
pub fn power(vm: &Value) -> (PowerState, String) {
    let statuses =
        vm.pointer("/properties/instanceView/statuses").or_else(|| vm.pointer("/statuses")).and_then(Value::as_array);
    let code = statuses
        .and_then(|s| {
            s.iter().filter_map(|x| x.get("code").and_then(Value::as_str)).find_map(|c| c.strip_prefix("PowerState/"))
        })
        .unwrap_or("unknown")
        .to_string();
    let p = match code.as_str() {
        "running" => PowerState::PoweredOn,
        "starting" => PowerState::PoweringOn,
        "stopping" | "deallocating" => PowerState::PoweringOff,
        _ => PowerState::PoweredOff,
    };
    (p, code)
}

/// The listing view of a VM (with instance view); `is_template` comes from the gallery.
pub fn summary(vm: &Value, is_template: bool) -> Option<GuestSummary> {
    let name = vm.get("name").and_then(Value::as_str)?.to_string();
    Some(GuestSummary {
        id: GuestId::new(name.clone()),
        name,
        power: power(vm).0,
        is_template,
        key: tag(vm, TAG_KEY).map(str::to_string),
        node: None,
    })
}

/// NIC resource ids of a VM (primary first).
pub fn nic_ids(vm: &Value) -> Vec<String> {
    let mut list: Vec<(bool, String)> = vm
        .pointer("/properties/networkProfile/networkInterfaces")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|n| {
                    let id = n.get("id").and_then(Value::as_str)?;
                    let primary = n.pointer("/properties/primary").and_then(Value::as_bool).unwrap_or(false);
                    Some((!primary, id.to_string()))
                })
                .collect()
        })
        .unwrap_or_default();
    list.sort_by_key(|(p, _)| *p);
    list.into_iter().map(|(_, id)| id).filter(|id| valid_resource_id(id)).collect()
}

/// The OS disk id of a VM (managed disks only).
pub fn os_disk_id(vm: &Value) -> Option<String> {
    vm.pointer("/properties/storageProfile/osDisk/managedDisk/id")
        .and_then(Value::as_str)
        .filter(|id| valid_resource_id(id))
        .map(str::to_string)
}

/// `osType` of the OS disk (`Linux`/`Windows`).
pub fn os_type(vm: &Value) -> Option<String> {
    vm.pointer("/properties/storageProfile/osDisk/osType").and_then(Value::as_str).map(str::to_string)
}

/// Resource ids read from ARM are used as URL paths: only `/subscriptions/...` with safe
/// characters.
pub fn valid_resource_id(id: &str) -> bool {
    id.starts_with("/subscriptions/")
        && id.len() < 1024
        && !id.contains("..")
        && id.chars().all(|c| c.is_ascii_alphanumeric() || "/_.-()".contains(c))
}

/// Whether `id` is an Azure Compute Gallery image version
/// (`/subscriptions/…/providers/Microsoft.Compute/galleries/G/images/I/versions/V`);
/// returns the image definition's id.
pub fn gallery_image_of_version(id: &str) -> Option<String> {
    if !valid_resource_id(id) {
        return None;
    }
    let parts: Vec<&str> = id.trim_start_matches('/').split('/').collect();
    let ok = parts.len() == 12
        && parts[0].eq_ignore_ascii_case("subscriptions")
        && parts[2].eq_ignore_ascii_case("resourceGroups")
        && parts[4].eq_ignore_ascii_case("providers")
        && parts[5].eq_ignore_ascii_case("Microsoft.Compute")
        && parts[6].eq_ignore_ascii_case("galleries")
        && parts[8].eq_ignore_ascii_case("images")
        && parts[10].eq_ignore_ascii_case("versions")
        && parts.iter().all(|p| !p.is_empty());
    ok.then(|| format!("/{}", parts[..10].join("/")))
}

/// Whether a gallery image definition is polyvisor's template image for VM `vm`
/// (made by polyvisor for it and flagged `polyvisor-template=true`).
pub fn is_template_image(img: &Value, vm: &str) -> bool {
    created_for(img, vm) && tag(img, TAG_TEMPLATE) == Some("true")
}

/// The gallery image version name polyvisor gives the `n`-th template version (`1.0.n`;
/// ARM wants `Major.Minor.Patch`, the platform's version name lives in a tag).
pub fn version_name(n: u64) -> String {
    format!("1.0.{n}")
}

/// The patch number of a `1.0.n` version name.
pub fn version_number(name: &str) -> Option<u64> {
    name.strip_prefix("1.0.")?.parse().ok()
}

/// A NIC resource → core NIC.
pub fn nic(v: &Value) -> Nic {
    let mac = v.pointer("/properties/macAddress").and_then(Value::as_str).and_then(normalize_mac).unwrap_or_default();
    let mut n = Nic { mac, ..Default::default() };
    for c in v.pointer("/properties/ipConfigurations").and_then(Value::as_array).into_iter().flatten() {
        let Some(ip) = c.pointer("/properties/privateIPAddress").and_then(Value::as_str) else { continue };
        if is_reportable_ipv4(ip) {
            n.ipv4.push(ip.to_string());
        } else if is_reportable_ipv6(ip) {
            n.ipv6.push(ip.to_string());
        }
        if n.network.is_none() {
            n.network = c.pointer("/properties/subnet/id").and_then(Value::as_str).map(str::to_string);
        }
    }
    n.ipv4 = polyvisor_core::net::order_ipv4(n.ipv4);
    n
}

/// vCPUs and MiB of the B-series sizes polyvisor picks from (CloudStack offerings).
pub const SIZES: &[(u32, u64, &str)] = &[
    (1, 512, "Standard_B1ls"),
    (1, 1024, "Standard_B1s"),
    (1, 2048, "Standard_B1ms"),
    (2, 4096, "Standard_B2s"),
    (2, 8192, "Standard_B2ms"),
    (4, 16384, "Standard_B4ms"),
    (8, 32768, "Standard_B8ms"),
    (12, 49152, "Standard_B12ms"),
    (16, 65536, "Standard_B16ms"),
    (20, 81920, "Standard_B20ms"),
];

/// The size with exactly these vCPUs and memory, if the table has one.
pub fn size_for(cpus: u32, memory_mb: u64) -> Option<&'static str> {
    SIZES.iter().find(|(c, m, _)| *c == cpus && *m == memory_mb).map(|(_, _, n)| *n)
}

/// vCPUs and MiB of a known size.
pub fn size_shape(size: &str) -> Option<(u32, u64)> {
    SIZES.iter().find(|(_, _, n)| n.eq_ignore_ascii_case(size)).map(|(c, m, _)| (*c, *m))
}

/// `{"tags": ...}` with `key` set to `value` (or removed when `None`).
pub fn with_tag(v: &Value, key: &str, value: Option<&str>) -> Value {
    let mut t = tags(v);
    match value {
        Some(x) => t.insert(key.to_string(), json!(x)),
        None => t.remove(key),
    };
    Value::Object(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_states_map_from_the_instance_view() {
        let vm = |code: &str| {
            json!({"name": "a", "properties": {"instanceView": {"statuses": [
                {"code": "ProvisioningState/succeeded"}, {"code": format!("PowerState/{code}")}]}}})
        };
        for (c, want) in [
            ("running", PowerState::PoweredOn),
            ("starting", PowerState::PoweringOn),
            ("stopping", PowerState::PoweringOff),
            ("deallocating", PowerState::PoweringOff),
            ("stopped", PowerState::PoweredOff),
            ("deallocated", PowerState::PoweredOff),
        ] {
            assert_eq!(power(&vm(c)), (want, c.to_string()));
        }
        assert_eq!(power(&json!({})).0, PowerState::PoweredOff);
    }

    #[test]
    fn names_ids_and_snapshot_resources() {
        assert!(valid_vm_name("pvc123h") && valid_vm_name("i-2-45-VM"));
        for bad in ["", "-a", "a/b", "a.", "a?x", &"a".repeat(65)] {
            assert!(!valid_vm_name(bad), "{bad}");
        }
        assert_eq!(snapshot_resource("vm1", "RAS_v1"), "vm1--RAS_v1");
        let h = snapshot_resource("vm1", "a b/c");
        assert!(h.starts_with("vm1--h") && h.len() == 6 + 16, "{h}");
        assert_ne!(h, snapshot_resource("vm1", "a b/d"));
        assert!(valid_resource_id("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/disks/d1"));
        assert!(!valid_resource_id("/subscriptions/../x") && !valid_resource_id("https://evil/x"));
        let v = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/galleries/g1/images/img/versions/1.0.0";
        assert_eq!(
            gallery_image_of_version(v).as_deref(),
            Some("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/galleries/g1/images/img")
        );
        assert_eq!(gallery_image_of_version("pv-tpl"), None);
        assert_eq!(version_name(7), "1.0.7");
        assert_eq!(version_number("1.0.7"), Some(7));
        assert_eq!(version_number("2.0.7"), None);
        let img = json!({"tags": {"polyvisor-created": "true", "polyvisor-vm": "Tpl", "polyvisor-template": "true"}});
        assert!(is_template_image(&img, "tpl") && !is_template_image(&img, "other"));
        assert!(!is_template_image(&json!({"tags": {"polyvisor-vm": "tpl", "polyvisor-template": "true"}}), "tpl"));
        assert_eq!(gallery_image_of_version(&v.replace("versions", "x")), None);
    }

    #[test]
    fn nics_give_macs_and_ips() {
        let v = json!({"properties": {"macAddress": "00-0D-3A-11-22-33", "ipConfigurations": [
            {"properties": {"privateIPAddress": "10.0.0.4", "subnet": {"id": "/subscriptions/s/x/subnets/default"}}}]}});
        let n = nic(&v);
        assert_eq!(n.mac, "00:0D:3A:11:22:33");
        assert_eq!(n.ipv4, ["10.0.0.4"]);
        assert_eq!(size_for(2, 4096), Some("Standard_B2s"));
        assert_eq!(size_shape("standard_b1s"), Some((1, 1024)));
    }
}
