//! The CloudStack payload file (spec §2-3): Gson JSON, every field optional, nulls
//! omitted, HTML characters escaped (`\u003d`), memory in bytes. Read through accessors
//! on a [`serde_json::Value`] so that no field can fail the parse by its type, and no
//! parse error can echo a value (a secret) back.

use polyvisor_core::net::normalize_mac;
use polyvisor_core::{Error, NicSpec, Result, Settings};
use serde_json::{Map, Value};

/// Upper bound on the payload file size we accept (real payloads are a few KiB).
pub const MAX_PAYLOAD_BYTES: u64 = 4 * 1024 * 1024;

/// The `externaldetails` sub-maps, lowest priority first (see [`crate::config`]).
pub const DETAIL_LEVELS: [&str; 4] = ["extension", "resourcemap", "host", "virtualmachine"];

/// A parsed payload.
#[derive(Clone, Debug, Default)]
pub struct Payload {
    root: Map<String, Value>,
}

impl Payload {
    /// Reads and parses the payload file. Messages name the problem, never the content.
    pub fn read(path: &str) -> Result<Self> {
        if path.trim().is_empty() {
            return Err(Error::invalid("Missing required arguments"));
        }
        let meta = std::fs::metadata(path).map_err(|_| Error::invalid("File not found or unreadable"))?;
        if !meta.is_file() {
            return Err(Error::invalid("File not found or unreadable"));
        }
        if meta.len() > MAX_PAYLOAD_BYTES {
            return Err(Error::invalid(format!("Payload file too large ({} bytes)", meta.len())));
        }
        let bytes = std::fs::read(path).map_err(|_| Error::invalid("File not found or unreadable"))?;
        Self::parse(&bytes)
    }

    /// Parses payload bytes; the top level must be a JSON object.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            Error::invalid(format!("Invalid JSON in payload file (line {}, column {})", e.line(), e.column()))
        })?;
        match value {
            Value::Object(root) => Ok(Payload { root }),
            _ => Err(Error::invalid("Invalid payload: not a JSON object")),
        }
    }

    /// The VM transfer object `cloudstack.vm.details`.
    fn vm(&self) -> Option<&Map<String, Value>> {
        self.root.get("cloudstack.vm.details").and_then(Value::as_object)
    }

    /// The CloudStack internal name (`i-2-45-VM`): `virtualmachinename`, else the VM
    /// object's `name`.
    pub fn internal_name(&self) -> Option<String> {
        nonempty(self.root.get("virtualmachinename")).or_else(|| nonempty(self.vm().and_then(|v| v.get("name"))))
    }

    /// The CloudStack VM UUID.
    pub fn vm_uuid(&self) -> Option<String> {
        nonempty(self.root.get("virtualmachineid")).or_else(|| nonempty(self.vm().and_then(|v| v.get("uuid"))))
    }

    /// One `externaldetails` sub-map as settings (scalars only; other values ignored).
    pub fn details(&self, level: &str) -> Settings {
        let map = self.root.get("externaldetails").and_then(|e| e.get(level)).and_then(Value::as_object);
        scalar_settings(map.into_iter().flat_map(|m| m.iter()))
    }

    /// `External:<k>` entries of the VM's own details map, prefix stripped.
    pub fn vm_external_details(&self) -> Settings {
        let map = self.vm().and_then(|v| v.get("details")).and_then(Value::as_object);
        scalar_settings(
            map.into_iter().flat_map(|m| m.iter()).filter_map(|(k, v)| k.strip_prefix("External:").map(|k| (k, v))),
        )
    }

    /// A raw (unprefixed) entry of the VM's details map, e.g. `proxmox_vmid`.
    pub fn vm_detail(&self, key: &str) -> Option<String> {
        nonempty(self.vm().and_then(|v| v.get("details")).and_then(|d| d.get(key)))
    }

    /// Virtual CPUs (`cpus`), when positive.
    pub fn cpus(&self) -> Option<u32> {
        self.vm().and_then(|v| v.get("cpus")).and_then(as_u64).and_then(|n| u32::try_from(n).ok()).filter(|n| *n > 0)
    }

    /// Memory in MiB from `maxRam` (bytes; the offering's RAM), else `minRam`.
    pub fn memory_mb(&self) -> Option<u64> {
        let vm = self.vm()?;
        let bytes =
            vm.get("maxRam").and_then(as_u64).filter(|b| *b > 0).or_else(|| vm.get("minRam").and_then(as_u64))?;
        Some(bytes / (1024 * 1024)).filter(|m| *m > 0)
    }

    /// NICs in device order: normalised MAC, VLAN from `broadcastUri` `vlan://N`
    /// (`untagged`/absent → none), the given backend network. A MAC that is not a MAC is
    /// an input error.
    pub fn nics(&self, network: Option<&str>) -> Result<Vec<NicSpec>> {
        let list = self.vm().and_then(|v| v.get("nics")).and_then(Value::as_array);
        let mut nics: Vec<(i64, NicSpec)> = Vec::new();
        for (i, nic) in list.into_iter().flatten().enumerate() {
            let Some(obj) = nic.as_object() else { continue };
            let order = obj.get("deviceId").and_then(Value::as_i64).unwrap_or(i as i64);
            let mac = match nonempty(obj.get("mac")) {
                Some(raw) => Some(
                    normalize_mac(&raw).ok_or_else(|| Error::invalid(format!("NIC {order}: invalid MAC address")))?,
                ),
                None => None,
            };
            let vlan = nonempty(obj.get("broadcastUri")).and_then(|u| vlan_of(&u));
            nics.push((order, NicSpec { mac, vlan, network: network.map(str::to_string) }));
        }
        nics.sort_by_key(|(order, _)| *order);
        Ok(nics.into_iter().map(|(_, n)| n).collect())
    }

    /// The typed custom-action `parameters` (spec §7.3), when present.
    pub fn parameters(&self) -> Option<&Map<String, Value>> {
        self.root.get("parameters").and_then(Value::as_object)
    }
}

/// The VLAN of a broadcast URI: `vlan://1234` → 1234; `vlan://untagged`, other schemes → none.
pub fn vlan_of(uri: &str) -> Option<u32> {
    let rest = uri.trim().strip_prefix("vlan://")?;
    rest.parse::<u32>().ok().filter(|v| (1..=4094).contains(v))
}

fn nonempty(v: Option<&Value>) -> Option<String> {
    let s = match v? {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    (!s.is_empty()).then_some(s)
}

fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn scalar_settings<'a, K: AsRef<str>>(entries: impl Iterator<Item = (K, &'a Value)>) -> Settings {
    let mut s = Settings::new();
    for (k, v) in entries {
        let k = k.as_ref().trim();
        if matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_)) && !k.is_empty() {
            s.set(k, v.clone());
        }
    }
    s
}
