//! `impl Driver` for KubeVirt: guests are `VirtualMachine`s of one namespace.

use crate::client::Kube;
use crate::config::{Config, PowerVia};
use crate::error::KvError;
use crate::names;
use crate::resources::*;
use async_trait::async_trait;
use kube::core::ObjectMeta;
use polyvisor_core::net::{normalize_mac, order_ipv4};
use polyvisor_core::task::{completed, TaskOutput};
use polyvisor_core::{
    Capabilities, CloneSpec, CloneStarted, Console, CreateSource, CreateSpec, Driver, Error, Guest, GuestId,
    GuestSummary, Nic, PowerAction, PowerState, Result, SecretString, Snapshot, SnapshotSpec, TaskId, TaskStatus,
    TaskToken,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Annotation on a clone naming its source VM (a retry of the same clone adopts it).
const CLONED_FROM_ANNOTATION: &str = "polyvisor.io/cloned-from";
/// Labels and annotations of a source a clone never inherits (template flag, key, ...).
const CLONE_FILTERS: [&str; 2] = ["*", "!polyvisor.io/*"];

/// The KubeVirt driver.
pub struct KubeVirt {
    cfg: Config,
    kube: Kube,
}

impl KubeVirt {
    /// Builds the driver (reads local config files, no network).
    pub fn new(cfg: Config) -> Result<KubeVirt> {
        let conn = cfg.connect()?;
        let kube = Kube::new(&conn)?;
        Ok(KubeVirt { cfg, kube })
    }

    /// API round trips made so far (tests assert per-method figures).
    pub fn api_calls(&self) -> u64 {
        self.kube.calls()
    }

    /// The namespace guests live in.
    pub fn namespace(&self) -> &str {
        self.kube.namespace()
    }

    async fn vm(&self, id: &GuestId) -> Result<VirtualMachine> {
        if !names::is_dns_label(id.as_str()) {
            return Err(Error::not_found(format!("guest [{id}]")));
        }
        self.kube.get::<VirtualMachine>(id.as_str()).await?.ok_or_else(|| Error::not_found(format!("guest [{id}]")))
    }

    async fn vmi(&self, name: &str) -> Result<Option<VirtualMachineInstance>> {
        Ok(self.kube.get::<VirtualMachineInstance>(name).await?)
    }

    fn to_summary(vm: &VirtualMachine, vmi: Option<&VirtualMachineInstance>) -> GuestSummary {
        let (power, _) = power_state(vm, vmi);
        GuestSummary {
            id: GuestId::new(vm.metadata.name.clone().unwrap_or_default()),
            name: display_name(&vm.metadata),
            power,
            is_template: is_template(&vm.metadata),
            key: annotation(&vm.metadata, KEY_ANNOTATION),
            node: vmi.and_then(|i| i.status.as_ref()).and_then(|s| s.node_name.clone()),
        }
    }

    fn to_guest(vm: &VirtualMachine, vmi: Option<&VirtualMachineInstance>) -> Guest {
        let s = Self::to_summary(vm, vmi);
        let (_, raw) = power_state(vm, vmi);
        let vspec = &vm.spec.template.spec;
        let net_of = |iface: &str| -> Option<String> {
            vspec.networks.iter().find(|n| n.name == iface).map(|n| match &n.multus {
                Some(m) => m.network_name.clone(),
                None => "pod".to_string(),
            })
        };
        let mut nics = Vec::new();
        match vmi.and_then(|i| i.status.as_ref()).filter(|st| !st.interfaces.is_empty()) {
            Some(st) => {
                for i in &st.interfaces {
                    let mut ips = i.ip_addresses.clone();
                    if ips.is_empty() {
                        ips.extend(i.ip_address.clone());
                    }
                    let (v6, v4): (Vec<String>, Vec<String>) = ips.into_iter().partition(|ip| ip.contains(':'));
                    nics.push(Nic {
                        mac: i.mac.as_deref().and_then(normalize_mac).unwrap_or_default(),
                        ipv4: order_ipv4(
                            v4.into_iter().map(|ip| ip.split('/').next().unwrap_or_default().to_string()).collect(),
                        ),
                        ipv6: v6,
                        network: i.name.as_deref().and_then(net_of),
                        vlan: None,
                    });
                }
            }
            None => {
                for i in &vspec.domain.devices.interfaces {
                    nics.push(Nic {
                        mac: i.mac_address.as_deref().and_then(normalize_mac).unwrap_or_default(),
                        network: net_of(&i.name),
                        ..Nic::default()
                    });
                }
            }
        }
        let cpus =
            vspec.domain.cpu.as_ref().map(|c| c.cores.unwrap_or(1) * c.sockets.unwrap_or(1) * c.threads.unwrap_or(1));
        let memory_mb = vspec
            .domain
            .memory
            .as_ref()
            .and_then(|m| m.guest.as_deref())
            .or_else(|| vspec.domain.resources.as_ref().and_then(|r| r.requests.get("memory")).and_then(Value::as_str))
            .and_then(quantity_mib);
        Guest {
            id: s.id,
            name: s.name,
            node: s.node,
            os: annotation(&vm.metadata, "vm.kubevirt.io/os"),
            cpus: Some(cpus.unwrap_or(1)),
            memory_mb,
            nics,
            is_template: s.is_template,
            power: s.power,
            raw_power_state: raw,
            key: s.key,
        }
    }

    async fn power_sub(&self, plural: &str, name: &str, action: &str, body: Value) -> Result<()> {
        self.kube
            .subresource(plural, name, action, &body)
            .await
            .map_err(|e| Error::from(e).context(format!("{action} of guest [{name}]")))
    }

    fn power_token(vm: &VirtualMachine, want: &str, old_vmi: Option<String>, max_age: u64) -> TaskId {
        TaskToken::new(
            "kv-power",
            json!({"vm": vm.metadata.name, "uid": vm.metadata.uid, "want": want, "old_vmi": old_vmi}),
        )
        .with_max_age(max_age)
        .encode()
    }

    async fn advance_power(&self, t: &TaskToken) -> Result<TaskStatus> {
        let name = t.req_str("vm")?;
        let want = t.req_str("want")?;
        let vm = match self.kube.get::<VirtualMachine>(name).await? {
            Some(vm) if vm.metadata.uid.as_deref() == t.str("uid") => vm,
            _ => return Ok(TaskStatus::Failed(Error::not_found(format!("guest [{name}]")))),
        };
        let vmi = self.vmi(name).await?;
        if let Some(err) = error_state(&vm) {
            return Ok(TaskStatus::Failed(Error::backend(format!("guest [{name}] is in state {err}"))));
        }
        let running = vmi.as_ref().is_some_and(|i| vmi_phase(i) == Some("Running"));
        let paused = vmi.as_ref().is_some_and(vmi_paused);
        let fresh = match (t.str("old_vmi"), vmi.as_ref().and_then(|i| i.metadata.uid.as_deref())) {
            (Some(old), Some(now)) => old != now,
            _ => true,
        };
        let done = match want {
            "on" => running && !paused && fresh,
            "off" => vmi.is_none(),
            "paused" => paused,
            _ => return Err(t.unknown()),
        };
        // `printableStatus` lags the VMI by a controller round, and listings and `find_owned`
        // read only the VM: finish when the VM says the same, so a `status` right after a
        // resume never reports the old state (the VMI is the first truth, the VM the second).
        let agrees = vm.status.as_ref().and_then(|s| s.printable_status.as_ref()).is_none() || {
            let seen = power_state(&vm, None).0;
            match want {
                "on" => seen == PowerState::PoweredOn,
                "off" => seen == PowerState::PoweredOff,
                _ => seen == PowerState::Suspended,
            }
        };
        let done = done && agrees;
        Ok(if done { TaskStatus::Completed(TaskOutput::default()) } else { TaskStatus::Running })
    }

    async fn snapshot_object(&self, vm: &str, name: &str) -> Result<Option<VirtualMachineSnapshot>> {
        let obj = names::snapshot_object_name(vm, name);
        if let Some(s) = self.kube.get::<VirtualMachineSnapshot>(&obj).await? {
            return Ok(Some(s));
        }
        // A snapshot made outside polyvisor: its platform name is its object name.
        if names::is_dns_label(name) {
            if let Some(s) = self.kube.get::<VirtualMachineSnapshot>(name).await? {
                if s.spec.source.name == vm && annotation(&s.metadata, SNAPSHOT_NAME_ANNOTATION).is_none() {
                    return Ok(Some(s));
                }
            }
        }
        Ok(None)
    }

    fn new_snapshot(&self, vm: &str, obj: &str, name: &str, description: Option<&str>) -> VirtualMachineSnapshot {
        let mut annotations = BTreeMap::from([(SNAPSHOT_NAME_ANNOTATION.to_string(), name.to_string())]);
        if let Some(d) = description.filter(|d| !d.is_empty()) {
            annotations.insert(SNAPSHOT_DESCRIPTION_ANNOTATION.into(), d.to_string());
        }
        let mut s = VirtualMachineSnapshot::new(obj, VirtualMachineSnapshotSpec { source: LocalRef::vm(vm) });
        s.metadata.labels = Some(owned_labels(vm));
        s.metadata.annotations = Some(annotations);
        s
    }

    async fn advance_snapshot(&self, t: &TaskToken) -> Result<TaskStatus> {
        let obj = t.req_str("obj")?;
        let vm = t.req_str("vm")?;
        let name = t.req_str("name")?;
        match self.kube.get::<VirtualMachineSnapshot>(obj).await? {
            None => {
                // The old one is gone (replace) or the new one vanished: (re)create it.
                let s = self.new_snapshot(vm, obj, name, t.str("description"));
                match self.kube.create(&s).await {
                    Ok(_) | Err(KvError::AlreadyExists { .. }) => Ok(TaskStatus::Running),
                    Err(e) => Ok(TaskStatus::Failed(Error::from(e).context(format!("snapshot of guest [{vm}]")))),
                }
            }
            Some(s) if s.metadata.uid.is_some() && s.metadata.uid.as_deref() == t.str("old_uid") => {
                Ok(TaskStatus::Running)
            }
            Some(s) => {
                let st = s.status.unwrap_or_default();
                match st.phase.as_deref() {
                    Some("Succeeded") if st.ready_to_use == Some(true) => {
                        Ok(TaskStatus::Completed(TaskOutput::default()))
                    }
                    Some("Failed") => {
                        let why = st.error.and_then(|e| e.message).unwrap_or_else(|| "failed".into());
                        Ok(TaskStatus::Failed(Error::backend(format!(
                            "snapshot '{name}' of guest [{vm}] failed: {why}"
                        ))))
                    }
                    _ => Ok(TaskStatus::Running),
                }
            }
        }
    }

    async fn advance_gone<K>(&self, t: &TaskToken) -> Result<TaskStatus>
    where
        K: kube::Resource<DynamicType = ()> + serde::de::DeserializeOwned,
    {
        let obj = t.req_str("obj")?;
        let still = self.kube.get::<K>(obj).await?.is_some_and(|o| o.meta().uid.as_deref() == t.str("uid"));
        Ok(if still { TaskStatus::Running } else { TaskStatus::Completed(TaskOutput::default()) })
    }

    async fn advance_delete(&self, t: &TaskToken) -> Result<TaskStatus> {
        let name = t.req_str("vm")?;
        if let Some(vm) = self.kube.get::<VirtualMachine>(name).await? {
            if vm.metadata.uid.as_deref() == t.str("uid") {
                return Ok(TaskStatus::Running);
            }
        }
        // The VMI goes with its VM (garbage collection of the owner reference).
        let vmi_left = self.vmi(name).await?.is_some_and(|i| {
            i.metadata.owner_references.iter().flatten().any(|o| Some(o.uid.as_str()) == t.str("uid"))
        });
        Ok(if vmi_left { TaskStatus::Running } else { TaskStatus::Completed(TaskOutput::default()) })
    }

    async fn advance_restore(&self, t: &TaskToken) -> Result<TaskStatus> {
        let obj = t.req_str("obj")?;
        let Some(r) = self.kube.get::<VirtualMachineRestore>(obj).await? else {
            return Ok(TaskStatus::Failed(Error::backend(format!("restore {obj} disappeared"))));
        };
        let st = r.status.unwrap_or_default();
        if st.complete == Some(true) {
            // The restore object has done its job; polyvisor leaves nothing behind.
            let _ = self.kube.delete::<VirtualMachineRestore>(obj).await;
            return Ok(TaskStatus::Completed(TaskOutput::default()));
        }
        if let Some(f) = st.conditions.iter().find(|c| c.type_ == "Failure" && c.status == "True") {
            let why = f.reason.clone().or(f.message.clone()).unwrap_or_else(|| "failed".into());
            let _ = self.kube.delete::<VirtualMachineRestore>(obj).await;
            return Ok(TaskStatus::Failed(Error::backend(format!(
                "revert of guest [{}] failed: {why}",
                r.spec.target.name
            ))));
        }
        Ok(TaskStatus::Running)
    }

    /// Starts a clone or create: the `VirtualMachineClone`, then (task) power-on and IP.
    async fn start_clone(&self, source: &str, snapshot: Option<&str>, want: &NewGuest<'_>) -> Result<CloneStarted> {
        let NewGuest { display, start, key, cpus, memory_mb, macs } = *want;
        let target = names::vm_object_name(display)
            .ok_or_else(|| Error::invalid(format!("guest name '{display}' has no character Kubernetes allows")))?;
        let clone_obj = clone_object_name(&target);
        let token = |target: &str| {
            TaskToken::new("kv-clone", json!({"obj": clone_obj, "target": target, "source": source, "start": start}))
                .with_max_age(self.cfg.ready_timeout.as_secs() + 600)
                .encode()
        };
        let started = |target: &str| CloneStarted { task: token(target), new_guest: Some(GuestId::new(target)) };
        // A retry: the same clone in progress, or its finished target from the same source.
        if let Some(c) = self.kube.get::<VirtualMachineClone>(&clone_obj).await? {
            if c.spec.target.as_ref().map(|t| t.name.as_str()) == Some(target.as_str())
                && annotation(&c.metadata, CLONED_FROM_ANNOTATION).as_deref() == Some(source)
            {
                return Ok(started(&target));
            }
        }
        if let Some(existing) = self.kube.get::<VirtualMachine>(&target).await? {
            // Only a key proves ownership: a finished VM of that name (even one polyvisor once
            // cloned from the same source) is never adopted by name.
            if key.is_some() && annotation(&existing.metadata, KEY_ANNOTATION).as_deref() == key {
                return Ok(started(&target));
            }
            return Err(Error::already_exists(format!("a guest named '{display}' already exists")));
        }
        let src = self.vm(&GuestId::new(source)).await?;
        let source_ref = match snapshot {
            Some(snap) => {
                let s = self
                    .snapshot_object(source, snap)
                    .await?
                    .ok_or_else(|| Error::not_found(format!("snapshot '{snap}' of guest [{source}]")))?;
                LocalRef::snapshot(s.metadata.name.as_deref().unwrap_or_default())
            }
            None => LocalRef::vm(source),
        };
        let mut patches = vec![
            json!({"op": "add", "path": "/spec/runStrategy", "value": "Halted"}),
            json!({"op": "add", "path": format!("/metadata/annotations/{}", pointer(CLONED_FROM_ANNOTATION)), "value": source}),
        ];
        if src.spec.running.is_some() {
            patches.push(json!({"op": "remove", "path": "/spec/running"}));
        }
        if target != display {
            patches.push(json!({"op": "add", "path": format!("/metadata/annotations/{}", pointer(DISPLAY_NAME_ANNOTATION)), "value": display}));
        }
        if let Some(k) = key {
            patches.push(
                json!({"op": "add", "path": format!("/metadata/annotations/{}", pointer(KEY_ANNOTATION)), "value": k}),
            );
        }
        if let Some(c) = cpus {
            patches.push(json!({"op": "add", "path": "/spec/template/spec/domain/cpu", "value": {"cores": c, "sockets": 1, "threads": 1}}));
        }
        if let Some(m) = memory_mb {
            let q = format!("{m}Mi");
            patches.push(json!({"op": "add", "path": "/spec/template/spec/domain/memory", "value": {"guest": q}}));
            patches.push(json!({"op": "add", "path": "/spec/template/spec/domain/resources", "value": {"requests": {"memory": q}}}));
        }
        let ifaces = &src.spec.template.spec.domain.devices.interfaces;
        if macs.len() > ifaces.len().max(1) {
            return Err(Error::invalid(format!(
                "the template has {} network interface(s); {} requested (KubeVirt clones keep the template's interfaces)",
                ifaces.len(),
                macs.len()
            )));
        }
        let mut new_macs = BTreeMap::new();
        for (i, mac) in macs.iter().enumerate() {
            if let (Some(mac), Some(iface)) = (mac, ifaces.get(i)) {
                new_macs.insert(iface.name.clone(), mac.to_ascii_lowercase());
            }
        }
        let mut c = VirtualMachineClone::new(
            &clone_obj,
            VirtualMachineCloneSpec {
                source: source_ref,
                target: Some(LocalRef::vm(&target)),
                label_filters: CLONE_FILTERS.iter().map(|s| s.to_string()).collect(),
                annotation_filters: CLONE_FILTERS.iter().map(|s| s.to_string()).collect(),
                new_mac_addresses: new_macs,
                patches: patches.iter().map(Value::to_string).collect(),
            },
        );
        let mut labels = owned_labels(source);
        if let Some(k) = key.filter(|k| is_label_value(k)) {
            labels.insert("polyvisor.io/key".into(), k.to_string());
        }
        c.metadata.labels = Some(labels);
        c.metadata.annotations = Some(BTreeMap::from([(CLONED_FROM_ANNOTATION.to_string(), source.to_string())]));
        match self.kube.create(&c).await {
            Ok(_) | Err(KvError::AlreadyExists { .. }) => Ok(started(&target)),
            Err(e) => Err(Error::from(e).context(format!("clone of guest [{source}]"))),
        }
    }

    async fn advance_clone(&self, t: &TaskToken) -> Result<TaskStatus> {
        let obj = t.req_str("obj")?;
        let target = t.req_str("target")?;
        let start = t.body.get("start").and_then(Value::as_bool).unwrap_or(false);
        if let Some(c) = self.kube.get::<VirtualMachineClone>(obj).await? {
            let st = c.status.unwrap_or_default();
            match st.phase.as_deref() {
                Some("Succeeded") => {}
                Some("Failed") => {
                    let why = st
                        .conditions
                        .iter()
                        .find_map(|c| c.reason.clone().or(c.message.clone()))
                        .unwrap_or_else(|| "failed".into());
                    let _ = self.kube.delete::<VirtualMachineClone>(obj).await;
                    return Ok(TaskStatus::Failed(Error::backend(format!("clone to '{target}' failed: {why}"))));
                }
                _ => return Ok(TaskStatus::Running),
            }
        }
        let Some(vm) = self.kube.get::<VirtualMachine>(target).await? else {
            return Ok(TaskStatus::Failed(Error::backend(format!("clone target '{target}' does not exist"))));
        };
        if start {
            let vmi = self.vmi(target).await?;
            let ready = vmi.as_ref().is_some_and(|i| {
                vmi_phase(i) == Some("Running")
                    && i.status.as_ref().is_some_and(|s| {
                        s.interfaces.iter().any(|n| n.ip_address.as_deref().is_some_and(|ip| !ip.contains(':')))
                    })
            });
            if !ready {
                if vmi.is_none() && !wants_running(&vm) {
                    self.start_vm(&vm).await?;
                }
                return Ok(TaskStatus::Running);
            }
        }
        let _ = self.kube.delete::<VirtualMachineClone>(obj).await;
        Ok(TaskStatus::Completed(TaskOutput { new_guest: Some(GuestId::new(target)) }))
    }

    async fn start_vm(&self, vm: &VirtualMachine) -> Result<()> {
        let name = vm.metadata.name.as_deref().unwrap_or_default();
        match self.cfg.power_via {
            PowerVia::Subresources => match self.kube.subresource("virtualmachines", name, "start", &json!({})).await {
                Ok(()) => Ok(()),
                // Someone (or a retry) started it between our read and the request.
                Err(KvError::Conflict { .. }) => Ok(()),
                Err(e) => Err(Error::from(e).context(format!("start of guest [{name}]"))),
            },
            PowerVia::RunStrategy => {
                self.kube.merge_patch::<VirtualMachine>(name, &json!({"spec": {"runStrategy": "Always"}})).await?;
                Ok(())
            }
        }
    }
}

/// What a clone or create asks for the new guest.
#[derive(Clone, Copy)]
struct NewGuest<'a> {
    display: &'a str,
    start: bool,
    key: Option<&'a str>,
    cpus: Option<u32>,
    memory_mb: Option<u64>,
    macs: &'a [Option<String>],
}

/// `/` → `~1`, `~` → `~0` (JSON pointer, RFC 6901).
fn pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn is_label_value(v: &str) -> bool {
    v.len() <= 63 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn clone_object_name(target: &str) -> String {
    let mut n = format!("pv-clone-{target}");
    if n.len() > 63 {
        n = format!("pv-clone-{}", names::snapshot_object_name(target, "clone"));
        n.truncate(63);
        n = n.trim_end_matches('-').to_string();
    }
    n
}

fn owned_labels(vm: &str) -> BTreeMap<String, String> {
    let mut l = BTreeMap::from([(MANAGED_BY_LABEL.to_string(), "polyvisor".to_string())]);
    if is_label_value(vm) {
        l.insert(VM_LABEL.into(), vm.to_string());
    }
    l
}

fn annotation(m: &ObjectMeta, key: &str) -> Option<String> {
    m.annotations.as_ref().and_then(|a| a.get(key)).cloned()
}

fn display_name(m: &ObjectMeta) -> String {
    annotation(m, DISPLAY_NAME_ANNOTATION).or_else(|| m.name.clone()).unwrap_or_default()
}

fn is_template(m: &ObjectMeta) -> bool {
    m.labels.as_ref().and_then(|l| l.get(TEMPLATE_LABEL)).is_some_and(|v| v == "true")
}

fn vmi_phase(i: &VirtualMachineInstance) -> Option<&str> {
    i.status.as_ref().and_then(|s| s.phase.as_deref())
}

fn vmi_paused(i: &VirtualMachineInstance) -> bool {
    i.status.as_ref().is_some_and(|s| condition_true(&s.conditions, "Paused"))
}

fn strategy(vm: &VirtualMachine) -> &str {
    match (&vm.spec.run_strategy, vm.spec.running) {
        (Some(s), _) => s.as_str(),
        (None, Some(true)) => "Always",
        _ => "Halted",
    }
}

fn wants_running(vm: &VirtualMachine) -> bool {
    matches!(strategy(vm), "Always" | "RerunOnFailure")
}

/// `printableStatus` values that mean the VM cannot reach the wanted state by waiting.
fn error_state(vm: &VirtualMachine) -> Option<String> {
    let p = vm.status.as_ref().and_then(|s| s.printable_status.clone())?;
    matches!(
        p.as_str(),
        "CrashLoopBackOff"
            | "ErrorUnschedulable"
            | "ErrImagePull"
            | "ImagePullBackOff"
            | "ErrorPvcNotFound"
            | "DataVolumeError"
    )
    .then_some(p)
}

/// The normalised state and the raw `printableStatus`.
fn power_state(vm: &VirtualMachine, vmi: Option<&VirtualMachineInstance>) -> (PowerState, String) {
    let printable = vm.status.as_ref().and_then(|s| s.printable_status.clone());
    let raw = printable.clone().unwrap_or_else(|| match vmi.and_then(vmi_phase) {
        Some(p) => p.to_string(),
        None => "Stopped".to_string(),
    });
    let state = match raw.as_str() {
        "Running" => {
            if vmi.is_some_and(vmi_paused) {
                PowerState::Suspended
            } else {
                PowerState::PoweredOn
            }
        }
        "Paused" => PowerState::Suspended,
        "Starting"
        | "Provisioning"
        | "WaitingForVolumeBinding"
        | "Migrating"
        | "Scheduling"
        | "Scheduled"
        | "Pending" => PowerState::PoweringOn,
        "Stopping" | "Terminating" => PowerState::PoweringOff,
        _ => PowerState::PoweredOff,
    };
    (state, raw)
}

/// A Kubernetes memory quantity in MiB (`1Gi`, `1024Mi`, `2G`, `536870912`).
pub fn quantity_mib(q: &str) -> Option<u64> {
    let q = q.trim();
    let split = q.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(q.len());
    let (num, unit) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let bytes = n * match unit {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        _ => return None,
    };
    Some((bytes / (1024.0 * 1024.0)).round() as u64)
}

#[async_trait]
impl Driver for KubeVirt {
    fn display_name(&self) -> &str {
        "KubeVirt"
    }

    fn capabilities(&self) -> Capabilities {
        self.cfg.capabilities()
    }

    async fn probe(&self) -> Result<String> {
        let v = self.kube.kubevirt_version().await.map_err(|e| Error::from(e).context("KubeVirt API"))?;
        self.kube.list::<VirtualMachine>(None).await.map_err(|e| Error::from(e).context("listing VirtualMachines"))?;
        Ok(format!(
            "KubeVirt {} at {}, namespace {}",
            v.get("gitVersion").and_then(Value::as_str).unwrap_or("?"),
            self.kube.server(),
            self.kube.namespace()
        ))
    }

    async fn list_guests(&self) -> Result<Vec<GuestSummary>> {
        let vms = self.kube.list::<VirtualMachine>(None).await?;
        let vmis = self.kube.list::<VirtualMachineInstance>(None).await?;
        let mut out: Vec<GuestSummary> = vms
            .iter()
            .map(|vm| {
                let vmi = vmis.iter().find(|i| i.metadata.name == vm.metadata.name);
                Self::to_summary(vm, vmi)
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// One LIST of the VMs (no VMIs: the VM's `printableStatus` carries the power state).
    async fn find_by_key(&self, key: &str) -> Result<Option<GuestSummary>> {
        let vms = self.kube.list::<VirtualMachine>(None).await?;
        Ok(vms
            .iter()
            .find(|vm| annotation(&vm.metadata, KEY_ANNOTATION).as_deref() == Some(key))
            .map(|vm| Self::to_summary(vm, None)))
    }

    /// One GET at the hint (ownership by the key annotation alone), else one LIST.
    async fn find_owned(&self, key: &str, hint: Option<&GuestId>) -> Result<Option<GuestSummary>> {
        if let Some(id) = hint.filter(|h| names::is_dns_label(h.as_str())) {
            if let Some(vm) = self.kube.get::<VirtualMachine>(id.as_str()).await? {
                if annotation(&vm.metadata, KEY_ANNOTATION).as_deref() == Some(key) && !is_template(&vm.metadata) {
                    return Ok(Some(Self::to_summary(&vm, None)));
                }
            }
        }
        Ok(self.find_by_key(key).await?.filter(|g| !g.is_template))
    }

    async fn get_guest(&self, id: &GuestId) -> Result<Guest> {
        let vm = self.vm(id).await?;
        let vmi = self.vmi(id.as_str()).await?;
        let mut g = Self::to_guest(&vm, vmi.as_ref());
        // The VMI is the live truth; `printableStatus` lags it by a controller round
        // (e.g. right after a restart): "Running" without a running VMI is still booting.
        // Likewise "Paused" right after an unpause: the VMI's own Paused condition decides.
        if matches!(g.power, PowerState::PoweredOn | PowerState::Suspended) {
            g.power = match vmi.as_ref() {
                Some(i) if vmi_phase(i) == Some("Running") && vmi_paused(i) => PowerState::Suspended,
                Some(i) if vmi_phase(i) == Some("Running") => PowerState::PoweredOn,
                _ => PowerState::PoweringOn,
            };
        }
        Ok(g)
    }

    async fn power(&self, id: &GuestId, action: PowerAction) -> Result<TaskId> {
        let vm = self.vm(id).await?;
        let vmi = self.vmi(id.as_str()).await?;
        let name = id.as_str();
        let paused = vmi.as_ref().is_some_and(vmi_paused);
        let old = vmi.as_ref().and_then(|i| i.metadata.uid.clone());
        let grace = vm.spec.template.spec.termination_grace_period_seconds.unwrap_or(180).max(0) as u64;
        let sub = self.cfg.power_via == PowerVia::Subresources;
        let need_vmi = || -> Result<()> {
            if vmi.is_none() {
                Err(Error::conflict(format!("guest [{name}] is not running")))
            } else {
                Ok(())
            }
        };
        match action {
            PowerAction::Start | PowerAction::Resume => {
                if paused {
                    if !sub {
                        return Err(Error::unsupported("resume with power_via=run_strategy"));
                    }
                    self.power_sub("virtualmachineinstances", name, "unpause", json!({})).await?;
                } else if vmi.is_none() && !wants_running(&vm) {
                    if action == PowerAction::Resume {
                        return Err(Error::conflict(format!("guest [{name}] is not suspended")));
                    }
                    self.start_vm(&vm).await?;
                }
                Ok(Self::power_token(&vm, "on", None, 900))
            }
            PowerAction::Stop | PowerAction::Shutdown => {
                if vmi.is_none() && !wants_running(&vm) {
                    return Ok(completed("power", &TaskOutput::default()));
                }
                let hard = action == PowerAction::Stop;
                if sub {
                    let body = if hard { json!({"gracePeriod": 0}) } else { json!({}) };
                    match self.kube.subresource("virtualmachines", name, "stop", &body).await {
                        Ok(()) | Err(KvError::Conflict { .. }) if vmi.is_none() => {}
                        Ok(()) => {}
                        Err(e) => return Err(Error::from(e).context(format!("stop of guest [{name}]"))),
                    }
                } else {
                    self.kube.merge_patch::<VirtualMachine>(name, &json!({"spec": {"runStrategy": "Halted"}})).await?;
                }
                Ok(Self::power_token(&vm, "off", None, if hard { 600 } else { grace + 600 }))
            }
            PowerAction::Reset | PowerAction::Reboot => {
                need_vmi()?;
                if sub {
                    let body = if action == PowerAction::Reset { json!({"gracePeriodSeconds": 0}) } else { json!({}) };
                    self.power_sub("virtualmachines", name, "restart", body).await?;
                } else {
                    self.kube.delete::<VirtualMachineInstance>(name).await?;
                }
                Ok(Self::power_token(&vm, "on", old, grace + 900))
            }
            PowerAction::Suspend => {
                if !sub {
                    return Err(Error::unsupported("suspend with power_via=run_strategy"));
                }
                need_vmi()?;
                if !paused {
                    self.power_sub("virtualmachineinstances", name, "pause", json!({})).await?;
                }
                Ok(Self::power_token(&vm, "paused", None, 600))
            }
        }
    }

    async fn delete_guest(&self, id: &GuestId) -> Result<TaskId> {
        if !names::is_dns_label(id.as_str()) {
            return Ok(completed("delete", &TaskOutput::default()));
        }
        let Some(vm) = self.kube.get::<VirtualMachine>(id.as_str()).await? else {
            return Ok(completed("delete", &TaskOutput::default()));
        };
        let name = id.as_str();
        // What polyvisor made for this VM: its snapshots, restores and clones in flight.
        for s in self.kube.list::<VirtualMachineSnapshot>(Some(&format!("{VM_LABEL}={name}"))).await? {
            if s.spec.source.name == name && annotation(&s.metadata, SNAPSHOT_NAME_ANNOTATION).is_some() {
                self.kube.delete::<VirtualMachineSnapshot>(s.metadata.name.as_deref().unwrap_or_default()).await?;
            }
        }
        for r in self.kube.list::<VirtualMachineRestore>(Some(&format!("{VM_LABEL}={name}"))).await? {
            if r.spec.target.name == name {
                self.kube.delete::<VirtualMachineRestore>(r.metadata.name.as_deref().unwrap_or_default()).await?;
            }
        }
        self.kube.delete::<VirtualMachine>(name).await?;
        Ok(TaskToken::new("kv-delete", json!({"vm": name, "uid": vm.metadata.uid})).with_max_age(900).encode())
    }

    async fn set_template(&self, id: &GuestId, is_template_flag: bool) -> Result<TaskId> {
        let vm = self.vm(id).await?;
        if is_template(&vm.metadata) != is_template_flag {
            let value = if is_template_flag { json!("true") } else { Value::Null };
            self.kube
                .merge_patch::<VirtualMachine>(id.as_str(), &json!({"metadata": {"labels": {TEMPLATE_LABEL: value}}}))
                .await?;
        }
        Ok(completed("convert", &TaskOutput::default()))
    }

    async fn clone_guest(&self, spec: &CloneSpec) -> Result<CloneStarted> {
        let snapshot = spec.snapshot.as_deref().filter(|s| !s.is_empty());
        let want =
            NewGuest { display: &spec.name, start: spec.start, key: None, cpus: None, memory_mb: None, macs: &[] };
        self.start_clone(spec.source.as_str(), snapshot, &want).await
    }

    async fn create_guest(&self, spec: &CreateSpec) -> Result<CloneStarted> {
        let (template, _) = match &spec.source {
            CreateSource::Template { id, full } => (id, full),
            CreateSource::Iso { .. } => {
                return Err(Error::unsupported(
                    "creating from an ISO (KubeVirt needs a CDI DataVolume; clone a template)",
                ))
            }
        };
        if spec.key.is_empty() {
            return Err(Error::invalid("create needs a key"));
        }
        // A retry finds the guest (or the clone in flight) by its key.
        if let Some(g) = self.find_by_key(&spec.key).await? {
            let t = TaskToken::new(
                "kv-clone",
                json!({"obj": clone_object_name(g.id.as_str()), "target": g.id.as_str(), "source": template.as_str(), "start": true}),
            )
            .with_max_age(self.cfg.ready_timeout.as_secs() + 600);
            return Ok(CloneStarted { task: t.encode(), new_guest: Some(g.id) });
        }
        let macs: Vec<Option<String>> = spec.nics.iter().map(|n| n.mac.clone()).collect();
        let want = NewGuest {
            display: &spec.name,
            start: true,
            key: Some(&spec.key),
            cpus: spec.cpus,
            memory_mb: spec.memory_mb,
            macs: &macs,
        };
        self.start_clone(template.as_str(), None, &want).await
    }

    async fn list_snapshots(&self, id: &GuestId) -> Result<Vec<Snapshot>> {
        self.vm(id).await?;
        let mut snaps: Vec<VirtualMachineSnapshot> = self
            .kube
            .list::<VirtualMachineSnapshot>(None)
            .await?
            .into_iter()
            .filter(|s| s.spec.source.name == id.as_str() && s.spec.source.kind == "VirtualMachine")
            .filter(|s| s.status.as_ref().and_then(|st| st.phase.as_deref()) != Some("Failed"))
            .collect();
        snaps.sort_by(|a, b| {
            let ka = (a.metadata.creation_timestamp.as_ref().map(|t| t.0.to_string()), a.metadata.name.clone());
            let kb = (b.metadata.creation_timestamp.as_ref().map(|t| t.0.to_string()), b.metadata.name.clone());
            ka.cmp(&kb)
        });
        Ok(snaps
            .iter()
            .map(|s| Snapshot {
                name: annotation(&s.metadata, SNAPSHOT_NAME_ANNOTATION)
                    .or_else(|| s.metadata.name.clone())
                    .unwrap_or_default(),
                description: annotation(&s.metadata, SNAPSHOT_DESCRIPTION_ANNOTATION),
                created_unix: s.metadata.creation_timestamp.as_ref().map(|t| t.0.as_second().max(0) as u64),
                parent: None,
                includes_memory: false,
            })
            .collect())
    }

    async fn snapshot_exists(&self, id: &GuestId, name: &str) -> Result<bool> {
        self.vm(id).await?;
        Ok(self
            .snapshot_object(id.as_str(), name)
            .await?
            .is_some_and(|s| s.status.as_ref().and_then(|st| st.phase.as_deref()) != Some("Failed")))
    }

    async fn create_snapshot(&self, id: &GuestId, spec: &SnapshotSpec) -> Result<TaskId> {
        if spec.include_memory {
            return Err(Error::unsupported("memory snapshots"));
        }
        if spec.name.trim().is_empty() {
            return Err(Error::invalid("snapshot name must not be empty"));
        }
        let vm = self.vm(id).await?;
        let name = id.as_str();
        let obj = names::snapshot_object_name(name, &spec.name);
        let mut old_uid = None;
        if let Some(old) = self.kube.get::<VirtualMachineSnapshot>(&obj).await? {
            old_uid = old.metadata.uid.clone();
            self.kube.delete::<VirtualMachineSnapshot>(&obj).await?;
        } else {
            let s = self.new_snapshot(name, &obj, &spec.name, spec.description.as_deref());
            match self.kube.create(&s).await {
                Ok(_) | Err(KvError::AlreadyExists { .. }) => {}
                Err(e) => return Err(Error::from(e).context(format!("snapshot of guest [{name}]"))),
            }
        }
        let _ = vm;
        Ok(TaskToken::new(
            "kv-snap",
            json!({"vm": name, "obj": obj, "name": spec.name, "description": spec.description, "old_uid": old_uid}),
        )
        .with_max_age(900)
        .encode())
    }

    async fn revert_snapshot(&self, id: &GuestId, name: &str) -> Result<TaskId> {
        self.vm(id).await?;
        let vm = id.as_str();
        let snap = self
            .snapshot_object(vm, name)
            .await?
            .ok_or_else(|| Error::not_found(format!("snapshot '{name}' of guest [{vm}]")))?;
        let obj = {
            let mut n =
                format!("{}-restore-{:x}", vm.chars().take(40).collect::<String>(), polyvisor_core::task::now_unix());
            n.truncate(63);
            n
        };
        let mut r = VirtualMachineRestore::new(
            &obj,
            VirtualMachineRestoreSpec {
                target: LocalRef::vm(vm),
                virtual_machine_snapshot_name: snap.metadata.name.clone().unwrap_or_default(),
                target_readiness_policy: Some("StopTarget".into()),
            },
        );
        r.metadata.labels = Some(owned_labels(vm));
        match self.kube.create(&r).await {
            Ok(_) | Err(KvError::AlreadyExists { .. }) => {}
            Err(e) => return Err(Error::from(e).context(format!("revert of guest [{vm}]"))),
        }
        Ok(TaskToken::new("kv-restore", json!({"obj": obj})).with_max_age(900).encode())
    }

    async fn delete_snapshot(&self, id: &GuestId, name: &str) -> Result<TaskId> {
        self.vm(id).await?;
        let Some(s) = self.snapshot_object(id.as_str(), name).await? else {
            return Ok(completed("snapshot-delete", &TaskOutput::default()));
        };
        let obj = s.metadata.name.clone().unwrap_or_default();
        self.kube.delete::<VirtualMachineSnapshot>(&obj).await?;
        Ok(TaskToken::new("kv-snapdel", json!({"obj": obj, "uid": s.metadata.uid})).with_max_age(600).encode())
    }

    async fn advance_task(&self, token: &TaskToken) -> Result<TaskStatus> {
        match token.kind.as_str() {
            "kv-power" => self.advance_power(token).await,
            "kv-delete" => self.advance_delete(token).await,
            "kv-snap" => self.advance_snapshot(token).await,
            "kv-snapdel" => self.advance_gone::<VirtualMachineSnapshot>(token).await,
            "kv-restore" => self.advance_restore(token).await,
            "kv-clone" => self.advance_clone(token).await,
            _ => Err(token.unknown()),
        }
    }

    async fn console(&self, id: &GuestId) -> Result<Console> {
        self.vm(id).await?;
        match self.vmi(id.as_str()).await? {
            Some(i) if vmi_phase(&i) == Some("Running") => Ok(Console::Url {
                url: SecretString::from(self.kube.subresource_url("virtualmachineinstances", id.as_str(), "vnc")),
            }),
            _ => Err(Error::conflict(format!("guest [{id}] is not running"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(quantity_mib("1Gi"), Some(1024));
        assert_eq!(quantity_mib("512Mi"), Some(512));
        assert_eq!(quantity_mib("2G"), Some(1907));
        assert_eq!(quantity_mib("1073741824"), Some(1024));
        assert_eq!(quantity_mib("1Xi"), None);
    }

    fn vm(printable: Option<&str>) -> VirtualMachine {
        let mut vm = VirtualMachine::new("a", VirtualMachineSpec::default());
        vm.status = printable.map(|p| VirtualMachineStatus { printable_status: Some(p.into()), ..Default::default() });
        vm
    }

    fn vmi(phase: &str, paused: bool) -> VirtualMachineInstance {
        let mut i = VirtualMachineInstance::new("a", VirtualMachineInstanceSpec::default());
        let conditions = if paused {
            vec![Condition { type_: "Paused".into(), status: "True".into(), ..Default::default() }]
        } else {
            vec![]
        };
        i.status = Some(VmiStatus { phase: Some(phase.into()), conditions, ..Default::default() });
        i
    }

    #[test]
    fn printable_status_maps_to_the_six_states() {
        let cases = [
            (Some("Running"), None, PowerState::PoweredOn),
            (Some("Running"), Some(vmi("Running", true)), PowerState::Suspended),
            (Some("Paused"), None, PowerState::Suspended),
            (Some("Starting"), None, PowerState::PoweringOn),
            (Some("Provisioning"), None, PowerState::PoweringOn),
            (Some("Stopping"), None, PowerState::PoweringOff),
            (Some("Terminating"), None, PowerState::PoweringOff),
            (Some("Stopped"), None, PowerState::PoweredOff),
            (Some("CrashLoopBackOff"), None, PowerState::PoweredOff),
            (None, None, PowerState::PoweredOff),
            (None, Some(vmi("Scheduling", false)), PowerState::PoweringOn),
        ];
        for (p, i, want) in cases {
            assert_eq!(power_state(&vm(p), i.as_ref()).0, want, "{p:?}");
        }
        assert_eq!(error_state(&vm(Some("ErrorUnschedulable"))).as_deref(), Some("ErrorUnschedulable"));
        assert!(error_state(&vm(Some("Running"))).is_none());
    }

    #[test]
    fn json_pointer_escapes() {
        assert_eq!(pointer("polyvisor.io/key"), "polyvisor.io~1key");
        assert!(clone_object_name(&"a".repeat(63)).len() <= 63);
    }
}
