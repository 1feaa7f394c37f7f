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

    /// Virtual CPUs (`cpus`): absent → `None` (the template's); otherwise a JSON integer in
    /// 1..=[`MAX_CPUS`], anything else (strings, negatives, fractions, absurd counts) is an
    /// input error, never a silent fallback.
    pub fn cpus(&self) -> Result<Option<u32>> {
        let Some(v) = self.vm().and_then(|v| v.get("cpus")).filter(|v| !v.is_null()) else { return Ok(None) };
        match v.as_u64() {
            Some(n) if (1..=u64::from(MAX_CPUS)).contains(&n) => Ok(Some(n as u32)),
            _ => Err(Error::invalid(format!("cpus must be a whole number from 1 to {MAX_CPUS} (got {})", echo(v)))),
        }
    }

    /// Memory in MiB from `maxRam` (bytes; the offering's RAM), else `minRam`: absent →
    /// `None`; otherwise each present value must be a JSON integer number of bytes from
    /// 1 MiB to [`MAX_RAM_BYTES`] (strings, negatives, fractions, absurd sizes are input
    /// errors), and `minRam` may not exceed `maxRam`.
    pub fn memory_mb(&self) -> Result<Option<u64>> {
        let Some(vm) = self.vm() else { return Ok(None) };
        let read = |key: &str| -> Result<Option<u64>> {
            let Some(v) = vm.get(key).filter(|v| !v.is_null()) else { return Ok(None) };
            match v.as_u64() {
                Some(b) if (MIB..=MAX_RAM_BYTES).contains(&b) => Ok(Some(b)),
                _ => Err(Error::invalid(format!(
                    "{key} must be a whole number of bytes from 1 MiB to 16 TiB (got {})",
                    echo(v)
                ))),
            }
        };
        let (max, min) = (read("maxRam")?, read("minRam")?);
        if let (Some(max), Some(min)) = (max, min) {
            if min > max {
                return Err(Error::invalid("minRam must not exceed maxRam"));
            }
        }
        Ok(max.or(min).map(|b| b / MIB))
    }

    /// NICs in device order: normalised MAC, VLAN from `broadcastUri` (see [`vlan_of`]),
    /// the given backend network. A MAC that is not a MAC, or a broadcast URI the drivers
    /// cannot realise, is an input error (before anything is created).
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
            let vlan = match nonempty(obj.get("broadcastUri")) {
                Some(uri) => vlan_of(&uri).map_err(|why| Error::invalid(format!("NIC {order}: {why}")))?,
                None => {
                    let kind = nonempty(obj.get("broadcastType")).unwrap_or_default();
                    if kind.eq_ignore_ascii_case("vlan") || kind.eq_ignore_ascii_case("vxlan") {
                        return Err(Error::invalid(format!(
                            "NIC {order}: broadcastType {} needs a broadcastUri, none given",
                            crate::ctx::shown(&kind)
                        )));
                    }
                    None
                }
            };
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

/// Most vCPUs we pass on.
pub const MAX_CPUS: u32 = 1024;
const MIB: u64 = 1024 * 1024;
/// Most RAM we pass on (16 TiB).
pub const MAX_RAM_BYTES: u64 = 16 * 1024 * 1024 * MIB;

/// The VLAN of a broadcast URI as CloudStack means it: `vlan://N` (N in 1..=4094) → tag N;
/// `vlan://untagged` → explicitly no tag. Anything else (`vxlan://…`, `pvlan://…`, a
/// non-numeric or out-of-range id) cannot be realised by a polyvisor driver: the reason.
pub fn vlan_of(uri: &str) -> std::result::Result<Option<u32>, String> {
    let trimmed = uri.trim();
    let refuse = |why: &str| Err(format!("broadcastUri {} {why}", crate::ctx::shown(trimmed)));
    let Some((scheme, rest)) = trimmed.split_once("://") else {
        return refuse("is not a URI (expected vlan://<1-4094> or vlan://untagged)");
    };
    if !scheme.eq_ignore_ascii_case("vlan") {
        return refuse("uses an isolation method polyvisor drivers cannot realise (only vlan:// is supported)");
    }
    if rest.eq_ignore_ascii_case("untagged") {
        return Ok(None);
    }
    match rest.parse::<u32>() {
        Ok(v) if (1..=4094).contains(&v) && rest.bytes().all(|b| b.is_ascii_digit()) && !rest.starts_with('0') => {
            Ok(Some(v))
        }
        _ => refuse("is not a VLAN id from 1 to 4094 (or untagged)"),
    }
}

/// A JSON value as echoed in an error message (capped).
fn echo(v: &Value) -> String {
    crate::ctx::shown(&v.to_string())
}

fn nonempty(v: Option<&Value>) -> Option<String> {
    let s = match v? {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    (!s.is_empty()).then_some(s)
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
