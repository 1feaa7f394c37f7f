//! Payloads shaped like the 4.22 management server's (spec §3, §9): the envelope with
//! `externaldetails` per level, the VM transfer object (memory in bytes, `details` with
//! `External:` keys, `disks: []`), NICs only for prepare/create/start/reboot,
//! `cloudstack.vlan` for create/start, `caller` absent for ping-driven `status`.

use super::merge;
use serde_json::{json, Map, Value};
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// String→string detail map.
pub type Details = Map<String, Value>;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh pseudo-random 64-bit number (std only; uniqueness, not security).
pub fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.write_u32(std::process::id());
    h.finish()
}

/// A random version-4-shaped UUID string.
pub fn uuid() -> String {
    let (a, b) = (random_u64(), random_u64());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0x0fff,
        0x8000 | (b >> 48) & 0x3fff,
        b & 0xffff_ffff_ffff
    )
}

/// Everything that is the same for every VM: the configured detail levels and the caller.
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// `externaldetails.extension`.
    pub extension: Details,
    /// `externaldetails.resourcemap` (cluster registration).
    pub resourcemap: Details,
    /// `externaldetails.host`.
    pub host: Details,
    /// Template/VM external details (unprefixed), copied into each VM at creation.
    pub template: Details,
    /// vCPUs per VM.
    pub cpus: u32,
    /// RAM per VM in MiB (sent as bytes).
    pub memory_mib: u64,
    /// NICs are `vlan://untagged` (the backend's networks cannot tag).
    pub untagged: bool,
}

fn caller() -> Value {
    json!({"id":"93567ed9-7e61-11f0-ba77-1e00c8000158","name":"admin","type":"ADMIN",
           "roleid":"6b86674b-7e61-11f0-ba77-1e00c8000158","rolename":"Root Admin","roletype":"Admin"})
}

/// One CloudStack VM as the management server tracks it.
#[derive(Debug, Clone)]
pub struct Vm {
    /// DB id (in the internal name).
    pub id: u64,
    /// VM UUID.
    pub uuid: String,
    /// Internal name `i-2-<id>-VM` (the backend key).
    pub name: String,
    /// The VM's details (`External:*` prefixed, `deployvm`, prepare output …).
    pub details: Details,
    /// VNC password CloudStack generated (a secret).
    pub vnc_password: String,
    /// The NIC objects.
    pub nics: Vec<Value>,
    /// VLAN of the default NIC: a tag `1234`, or `untagged`.
    pub vlan: String,
}

/// Where in its life the VM is, which decides `state`, NICs and special details.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `prepare`, `create`, `start`: state Starting, NICs.
    Starting,
    /// `reboot`: state Running, NICs.
    Rebooting,
    /// `stop` of a user stop: state Stopping, no NICs.
    Stopping,
    /// `stop`/`delete` during expunge: `expunge.external.vm=true`, no NICs.
    Expunging,
    /// `status`, `getconsole`, custom actions: state as given, no NICs.
    Other(&'static str),
}

impl Vm {
    /// A new VM (not yet deployed: `deployvm=true`) with one NIC on VLAN `vlan` (untagged
    /// when the environment's networks cannot tag).
    pub fn new(env: &Env, vlan: u32) -> Vm {
        let vlan = if env.untagged { "untagged".to_string() } else { vlan.to_string() };
        let id = 100_000 + random_u64() % 800_000;
        let mut details = Details::new();
        details.insert("deployvm".into(), "true".into());
        for (k, v) in &env.template {
            details.insert(format!("External:{k}"), v.clone());
        }
        for (k, v) in [
            ("cpuOvercommitRatio", "2.0"),
            ("memoryOvercommitRatio", "1.0"),
            ("Message.ReservedCapacityFreed.Flag", "false"),
        ] {
            details.insert(k.into(), v.into());
        }
        let r = random_u64();
        let mac =
            format!("02:01:{:02x}:{:02x}:{:02x}:{:02x}", (r >> 24) & 0xff, (r >> 16) & 0xff, (r >> 8) & 0xff, r & 0xff);
        let nic = json!({
            "deviceId": 0, "networkRateMbps": 200, "defaultNic": true, "pxeDisable": false,
            "details": {"PromiscuousMode":"false","MacAddressChanges":"true","ForgedTransmits":"true","MacLearning":"false"},
            "dpdkEnabled": false, "mtu": 1500, "networkId": 204, "networkSegmentName": "D1-A2-Z1-S204",
            "uuid": uuid(), "ip": format!("10.1.{}.{}", (r >> 40) & 0xff, 2 + (r >> 32) % 250), "netmask": "255.255.255.0",
            "gateway": "10.1.1.1", "mac": mac, "dns1": "10.1.1.1", "broadcastType": "Vlan", "type": "Guest",
            "broadcastUri": format!("vlan://{vlan}"), "isolationUri": format!("vlan://{vlan}"), "securityGroupEnabled": false
        });
        // A base64-like VNC password with `=` so Gson escaping is exercised.
        let vnc_password = format!("pv{:016x}=", random_u64());
        Vm { id, uuid: uuid(), name: format!("i-2-{id}-VM"), details, vnc_password, nics: vec![nic], vlan }
    }

    /// The VM transfer object for `phase`.
    pub fn vm_object(&self, env: &Env, phase: Phase) -> Value {
        let (state, nics, expunge) = match phase {
            Phase::Starting => ("Starting", true, false),
            Phase::Rebooting => ("Running", true, false),
            Phase::Stopping => ("Stopping", false, false),
            Phase::Expunging => ("Stopping", false, true),
            Phase::Other(s) => (s, false, false),
        };
        let mut details = self.details.clone();
        if expunge {
            details.insert("expunge.external.vm".into(), "true".into());
        }
        let ram = env.memory_mib * 1024 * 1024;
        let nics = if nics { Value::Array(self.nics.clone()) } else { json!([]) };
        let nets =
            if matches!(phase, Phase::Starting | Phase::Rebooting) { json!({"204": "tenant-net"}) } else { json!({}) };
        json!({
            "id": self.id, "name": self.name, "state": state, "type": "User",
            "cpus": env.cpus, "minSpeed": 500, "maxSpeed": 1000, "minRam": ram, "maxRam": ram,
            "arch": "x86_64", "bootArgs": "", "enableHA": false, "limitCpuUse": false, "enableDynamicallyScaleVm": false,
            "vncPassword": self.vnc_password, "details": details, "uuid": self.uuid, "enterHardwareSetup": false,
            "disks": [], "nics": nics, "configDriveLocation": "SECONDARY", "guestOsDetails": {}, "extraConfig": {},
            "networkIdToNetworkNameMap": nets,
            "metadataManufacturer": "Apache Software Foundation", "metadataProductName": "CloudStack External Hypervisor"
        })
    }

    /// `externaldetails.virtualmachine`: the VM's `External:` details, prefix stripped.
    fn vm_external(&self, with_vlan: bool) -> Details {
        let mut m: Details = self
            .details
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("External:").map(|k| (k.to_string(), v.clone())))
            .collect();
        if with_vlan {
            m.insert("cloudstack.vlan".into(), self.vlan.clone().into());
        }
        m
    }

    /// The full payload of a lifecycle action (`prepare`, `create`, …).
    pub fn lifecycle_payload(&self, env: &Env, action: &str, phase: Phase) -> Value {
        let with_vlan = matches!(action, "create" | "start");
        let mut p = Map::new();
        if action != "status" {
            p.insert("caller".into(), caller());
        }
        p.insert("externaldetails".into(), external_details(env, Some(self.vm_external(with_vlan)), None));
        p.insert("virtualmachineid".into(), self.uuid.clone().into());
        p.insert("virtualmachinename".into(), self.name.clone().into());
        p.insert("cloudstack.vm.details".into(), self.vm_object(env, phase));
        Value::Object(p)
    }

    /// A custom action's payload; `parameters` only when the action declares some.
    pub fn custom_payload(&self, env: &Env, action: &str, state: &'static str, parameters: Option<Value>) -> Value {
        let mut p = Map::new();
        p.insert("caller".into(), caller());
        p.insert("action".into(), action.into());
        if let Some(params) = parameters {
            p.insert("parameters".into(), params);
        }
        p.insert("externaldetails".into(), external_details(env, Some(self.vm_external(false)), None));
        p.insert("virtualmachineid".into(), self.uuid.clone().into());
        p.insert("virtualmachinename".into(), self.name.clone().into());
        p.insert("cloudstack.vm.details".into(), self.vm_object(env, Phase::Other(state)));
        Value::Object(p)
    }

    /// Applies a `prepare` patch as the management server does: merge into the VM object,
    /// keep the merged `vncPassword` and `details` (NIC changes are not persisted in 4.22).
    pub fn apply_prepare(&mut self, env: &Env, patch: &Value) -> Result<(), String> {
        let mut obj = self.vm_object(env, Phase::Starting);
        merge::merge(&mut obj, patch);
        if let Some(p) = obj.get("vncPassword").and_then(Value::as_str) {
            self.vnc_password = p.to_string();
        }
        match obj.get("details") {
            Some(Value::Object(d)) => {
                let mut out = Details::new();
                for (k, v) in d {
                    let s = match v {
                        Value::String(s) => s.clone(),
                        Value::Null => continue,
                        other => other.to_string(),
                    };
                    out.insert(k.clone(), s.into());
                }
                self.details = out;
                Ok(())
            }
            Some(other) => Err(format!("prepare patch turned `details` into {other}")),
            None => Ok(()),
        }
    }

    /// After the first successful start CloudStack drops `deployvm`.
    pub fn mark_deployed(&mut self) {
        self.details.remove("deployvm");
    }
}

/// `externaldetails` with empty sub-maps omitted.
fn external_details(env: &Env, vm: Option<Details>, action: Option<Details>) -> Value {
    let mut m = Map::new();
    for (k, d) in
        [("extension", Some(&env.extension)), ("resourcemap", Some(&env.resourcemap)), ("host", Some(&env.host))]
    {
        if let Some(d) = d.filter(|d| !d.is_empty()) {
            m.insert(k.into(), Value::Object(d.clone()));
        }
    }
    for (k, d) in [("virtualmachine", vm), ("action", action)] {
        if let Some(d) = d.filter(|d| !d.is_empty()) {
            m.insert(k.into(), Value::Object(d));
        }
    }
    Value::Object(m)
}

/// The host-level payload of `statuses` (no VM; the exact 4.22.1 shape is unverified).
pub fn host_payload(env: &Env) -> Value {
    json!({"externaldetails": external_details(env, None, None)})
}

/// The payload of a forwarded agent command: only `{"action": "<FQCN>"}`.
pub fn fqcn_payload(fqcn: &str) -> Value {
    json!({"action": fqcn})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        let mut e = Env { cpus: 2, memory_mib: 2048, ..Default::default() };
        e.extension.insert("secret".into(), "a=b".into());
        e.template.insert("template_id".into(), "101".into());
        e
    }

    #[test]
    fn create_and_stop_payloads_match_the_spec_shape() {
        let e = env();
        let vm = Vm::new(&e, 1234);
        let c = vm.lifecycle_payload(&e, "create", Phase::Starting);
        assert_eq!(c["cloudstack.vm.details"]["maxRam"], 2147483648u64);
        assert_eq!(c["cloudstack.vm.details"]["details"]["deployvm"], "true");
        assert_eq!(c["cloudstack.vm.details"]["details"]["External:template_id"], "101");
        assert_eq!(c["externaldetails"]["virtualmachine"]["template_id"], "101");
        assert_eq!(c["externaldetails"]["virtualmachine"]["cloudstack.vlan"], "1234");
        assert_eq!(c["cloudstack.vm.details"]["nics"][0]["broadcastUri"], "vlan://1234");
        assert!(c.get("caller").is_some() && c["externaldetails"].get("host").is_none());
        let s = vm.lifecycle_payload(&e, "stop", Phase::Expunging);
        assert_eq!(s["cloudstack.vm.details"]["nics"], json!([]));
        assert_eq!(s["cloudstack.vm.details"]["details"]["expunge.external.vm"], "true");
        assert!(s["externaldetails"]["virtualmachine"].get("cloudstack.vlan").is_none());
        let st = vm.lifecycle_payload(&e, "status", Phase::Other("Running"));
        assert!(st.get("caller").is_none());
        assert!(vm.name.starts_with("i-2-") && vm.name.ends_with("-VM"));
        assert!(super::super::gson::to_string(&c).contains(r#""a\u003db""#));
    }

    #[test]
    fn prepare_details_reach_later_payloads() {
        let e = env();
        let mut vm = Vm::new(&e, 7);
        vm.apply_prepare(&e, &json!({"details": {"External:polyvisor_vm_id": "42", "proxmox_vmid": "103"}})).unwrap();
        let c = vm.lifecycle_payload(&e, "create", Phase::Starting);
        assert_eq!(c["externaldetails"]["virtualmachine"]["polyvisor_vm_id"], "42");
        assert_eq!(c["cloudstack.vm.details"]["details"]["proxmox_vmid"], "103");
        assert_eq!(c["cloudstack.vm.details"]["details"]["deployvm"], "true");
    }

    #[test]
    fn uuids_look_like_uuids() {
        let u = uuid();
        assert_eq!(u.len(), 36);
        assert_ne!(u, uuid());
    }
}
