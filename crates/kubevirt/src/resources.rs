//! The KubeVirt kinds polyvisor reads and writes, typed with `kube`'s `CustomResource` derive
//! (only the fields polyvisor uses: reads ignore the rest, and writes are merge patches or
//! small objects, so nothing polyvisor does not know is ever overwritten). Field names and
//! shapes follow KubeVirt's OpenAPI schema (`testing/kubevirt/kubevirt-swagger.json.gz`); the
//! stand-in validates every object sent against it.

use kube::CustomResource;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Annotation carrying the platform key (CloudStack internal name) of a guest polyvisor owns.
pub const KEY_ANNOTATION: &str = "polyvisor.io/key";
/// Label marking a VM as a polyvisor template (value `"true"`).
pub const TEMPLATE_LABEL: &str = "polyvisor.io/template";
/// Annotation with the display name when the platform's name is not a valid object name.
pub const DISPLAY_NAME_ANNOTATION: &str = "polyvisor.io/display-name";
/// Annotation with the platform's snapshot name on a `VirtualMachineSnapshot`.
pub const SNAPSHOT_NAME_ANNOTATION: &str = "polyvisor.io/snapshot-name";
/// Annotation with the snapshot description.
pub const SNAPSHOT_DESCRIPTION_ANNOTATION: &str = "polyvisor.io/description";
/// Label naming the VM an object polyvisor made belongs to (snapshots, restores, clones).
pub const VM_LABEL: &str = "polyvisor.io/vm";
/// Label on every object polyvisor creates (`"polyvisor"`), so an operator can find them.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

/// A reference to an object in the same namespace (`k8s.io.api.core.v1.TypedLocalObjectReference`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LocalRef {
    /// API group (`kubevirt.io`, `snapshot.kubevirt.io`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_group: Option<String>,
    /// Kind.
    pub kind: String,
    /// Name.
    pub name: String,
}

impl LocalRef {
    /// A `kubevirt.io` VirtualMachine reference.
    pub fn vm(name: &str) -> Self {
        LocalRef { api_group: Some("kubevirt.io".into()), kind: "VirtualMachine".into(), name: name.into() }
    }
    /// A `snapshot.kubevirt.io` VirtualMachineSnapshot reference.
    pub fn snapshot(name: &str) -> Self {
        LocalRef {
            api_group: Some("snapshot.kubevirt.io".into()),
            kind: "VirtualMachineSnapshot".into(),
            name: name.into(),
        }
    }
}

/// A status condition (KubeVirt's `v1.VirtualMachineCondition` / `v1beta1.Condition`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`, `Progressing`, `Failure`, `Paused`, ...
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False`, `Unknown`.
    pub status: String,
    /// Machine-readable reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Whether `conds` has `type_` with status `True`.
pub fn condition_true(conds: &[Condition], type_: &str) -> bool {
    conds.iter().any(|c| c.type_ == type_ && c.status == "True")
}

// ----- kubevirt.io/v1 VirtualMachine ---------------------------------------------------------

/// `kubevirt.io/v1` VirtualMachine spec (the fields polyvisor reads).
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize)]
#[kube(
    group = "kubevirt.io",
    version = "v1",
    kind = "VirtualMachine",
    namespaced,
    status = "VirtualMachineStatus",
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineSpec {
    /// `Always`, `Halted`, `Manual`, `RerunOnFailure`, `Once`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_strategy: Option<String>,
    /// Deprecated boolean form of the run strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<bool>,
    /// The VMI template.
    #[serde(default)]
    pub template: VmiTemplate,
}

/// `v1.VirtualMachineInstanceTemplateSpec`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct VmiTemplate {
    /// The VMI spec.
    #[serde(default)]
    pub spec: VmiSpec,
}

/// `v1.VirtualMachineInstanceSpec` (the fields polyvisor reads).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VmiSpec {
    /// Domain (CPU, memory, devices).
    #[serde(default)]
    pub domain: Domain,
    /// Networks the interfaces attach to.
    #[serde(default)]
    pub networks: Vec<Network>,
    /// Grace period of a graceful shutdown, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_grace_period_seconds: Option<i64>,
}

/// `v1.DomainSpec` (the fields polyvisor reads).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Domain {
    /// CPU topology.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Cpu>,
    /// Guest memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    /// Resource requests (`memory` when `domain.memory` is absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Devices.
    #[serde(default)]
    pub devices: Devices,
}

/// `v1.CPU`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Cpu {
    /// Cores per socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cores: Option<u32>,
    /// Sockets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sockets: Option<u32>,
    /// Threads per core.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<u32>,
}

/// `v1.Memory`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Memory {
    /// Guest-visible memory (a Kubernetes quantity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest: Option<String>,
}

/// `v1.ResourceRequirements`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Resources {
    /// Requests (`memory`, `cpu`).
    #[serde(default)]
    pub requests: BTreeMap<String, Value>,
}

/// `v1.Devices` (interfaces only).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Devices {
    /// Network interfaces in order.
    #[serde(default)]
    pub interfaces: Vec<Interface>,
}

/// `v1.Interface` (the fields polyvisor reads).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    /// Interface name (matches a network).
    pub name: String,
    /// Fixed MAC address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
}

/// `v1.Network`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Network {
    /// Network name.
    pub name: String,
    /// The pod network, when this is it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<Value>,
    /// A Multus network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multus: Option<Multus>,
}

/// `v1.MultusNetwork`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Multus {
    /// `<namespace>/<NetworkAttachmentDefinition>`.
    #[serde(default)]
    pub network_name: String,
}

/// `v1.VirtualMachineStatus` (the fields polyvisor reads).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineStatus {
    /// `Stopped`, `Starting`, `Running`, `Paused`, `Stopping`, `Terminating`, error states.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub printable_status: Option<String>,
    /// Whether the VMI is ready.
    #[serde(default)]
    pub ready: bool,
    /// Conditions.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

// ----- kubevirt.io/v1 VirtualMachineInstance -------------------------------------------------

/// `kubevirt.io/v1` VirtualMachineInstance (read only: the controller makes them).
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize)]
#[kube(
    group = "kubevirt.io",
    version = "v1",
    kind = "VirtualMachineInstance",
    namespaced,
    status = "VmiStatus",
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineInstanceSpec {
    /// Grace period of a graceful shutdown, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_grace_period_seconds: Option<i64>,
}

/// `v1.VirtualMachineInstanceStatus` (the fields polyvisor reads).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VmiStatus {
    /// `Pending`, `Scheduling`, `Scheduled`, `Running`, `Succeeded`, `Failed`, `Unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Node the VMI runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// Interfaces with their addresses (`v1.VirtualMachineInstanceNetworkInterface`).
    #[serde(default)]
    pub interfaces: Vec<VmiInterface>,
    /// Conditions (`Ready`, `Paused`, ...).
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// `v1.VirtualMachineInstanceNetworkInterface`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VmiInterface {
    /// Interface (network) name.
    #[serde(default)]
    pub name: Option<String>,
    /// MAC address.
    #[serde(default)]
    pub mac: Option<String>,
    /// First IP.
    #[serde(default)]
    pub ip_address: Option<String>,
    /// All IPs.
    #[serde(default)]
    pub ip_addresses: Vec<String>,
}

// ----- snapshot.kubevirt.io/v1beta1 ----------------------------------------------------------

/// `snapshot.kubevirt.io/v1beta1` VirtualMachineSnapshot spec.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize)]
#[kube(
    group = "snapshot.kubevirt.io",
    version = "v1beta1",
    kind = "VirtualMachineSnapshot",
    namespaced,
    status = "SnapshotStatus",
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineSnapshotSpec {
    /// The VM.
    pub source: LocalRef,
}

/// `v1beta1.VirtualMachineSnapshotStatus` (the fields polyvisor reads).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotStatus {
    /// `InProgress`, `Succeeded`, `Failed`, `Unknown`.
    #[serde(default)]
    pub phase: Option<String>,
    /// Whether the snapshot can be restored or cloned from.
    #[serde(default)]
    pub ready_to_use: Option<bool>,
    /// Creation time (RFC 3339).
    #[serde(default)]
    pub creation_time: Option<String>,
    /// Error, when failed.
    #[serde(default)]
    pub error: Option<SnapshotError>,
    /// Conditions.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// `v1beta1.Error`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct SnapshotError {
    /// Message.
    #[serde(default)]
    pub message: Option<String>,
}

/// `snapshot.kubevirt.io/v1beta1` VirtualMachineRestore spec.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize)]
#[kube(
    group = "snapshot.kubevirt.io",
    version = "v1beta1",
    kind = "VirtualMachineRestore",
    namespaced,
    status = "RestoreStatus",
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineRestoreSpec {
    /// The VM to restore.
    pub target: LocalRef,
    /// The snapshot object's name.
    pub virtual_machine_snapshot_name: String,
    /// `StopTarget`: the controller stops a running target first (restore needs it stopped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_readiness_policy: Option<String>,
}

/// `v1beta1.VirtualMachineRestoreStatus` (the fields polyvisor reads).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreStatus {
    /// Whether the restore finished.
    #[serde(default)]
    pub complete: Option<bool>,
    /// Conditions (`Failure` when it failed).
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

// ----- clone.kubevirt.io/v1beta1 -------------------------------------------------------------

/// `clone.kubevirt.io/v1beta1` VirtualMachineClone spec.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize)]
#[kube(
    group = "clone.kubevirt.io",
    version = "v1beta1",
    kind = "VirtualMachineClone",
    namespaced,
    status = "CloneStatus",
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineCloneSpec {
    /// A VM or a VirtualMachineSnapshot.
    pub source: LocalRef,
    /// The new VM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<LocalRef>,
    /// Which source labels the target keeps (`*`, `!prefix*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub label_filters: Vec<String>,
    /// Which source annotations the target keeps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub annotation_filters: Vec<String>,
    /// Interface name → MAC of the target.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub new_mac_addresses: BTreeMap<String, String>,
    /// JSON patches (RFC 6902, one operation per string) applied to the target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<String>,
}

/// `v1beta1.VirtualMachineCloneStatus` (the fields polyvisor reads).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CloneStatus {
    /// `SnapshotInProgress`, `CreatingTargetVM`, `RestoreInProgress`, `Succeeded`, `Failed`, `Unknown`.
    #[serde(default)]
    pub phase: Option<String>,
    /// The target VM's name.
    #[serde(default)]
    pub target_name: Option<String>,
    /// Conditions.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}
