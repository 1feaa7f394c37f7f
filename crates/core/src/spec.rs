//! Requests for operations that create things: clones, new guests, snapshots.

use crate::model::GuestId;
use serde::{Deserialize, Serialize};

/// Full or linked clone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloneMode {
    /// Independent copy of the disks.
    Full,
    /// Copy-on-write on the source's disks (the source must stay).
    Linked,
    /// Driver's choice: linked when the source allows it, else full.
    Auto,
}

/// A clone request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloneSpec {
    /// Source guest (template or VM).
    pub source: GuestId,
    /// Name of the new guest (platform rules apply; invalid → `InvalidInput`).
    pub name: String,
    /// Clone from this snapshot instead of the current state.
    pub snapshot: Option<String>,
    /// Full, linked or driver's choice.
    pub mode: CloneMode,
    /// Power the clone on once it exists; its task then completes only when it is running
    /// with an IPv4 address (bounded by the driver's readiness cap).
    pub start: bool,
}

/// One NIC to create.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicSpec {
    /// Requested MAC (normalised); `None` lets the backend pick.
    pub mac: Option<String>,
    /// VLAN tag.
    pub vlan: Option<u32>,
    /// Backend network/bridge; `None` uses the driver's default.
    pub network: Option<String>,
}

/// Where a new guest's disk comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CreateSource {
    /// Clone an existing template or guest.
    Template {
        /// The template guest id.
        id: GuestId,
        /// Full copy rather than linked clone.
        full: bool,
    },
    /// A blank disk with an installer ISO attached.
    Iso {
        /// ISO path/volume as the backend names it (`local:iso/debian.iso`).
        path: String,
        /// Guest OS type hint (`l26`, `win11`).
        os_type: Option<String>,
    },
}

/// A request to create a guest (CloudStack `create`, CloudShell deploy).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateSpec {
    /// Backend name of the guest.
    pub name: String,
    /// The platform's stable key (e.g. CloudStack internal name `i-2-45-VM`), stored on the
    /// guest by the driver so that a retry finds it ([`crate::Driver::find_by_key`]).
    pub key: String,
    /// Disk source.
    pub source: CreateSource,
    /// Virtual CPUs.
    pub cpus: Option<u32>,
    /// Memory in MiB.
    pub memory_mb: Option<u64>,
    /// Disk size in GiB (ISO installs; resize for clones when larger).
    pub disk_size_gb: Option<u64>,
    /// Backend storage for the disks; `None` uses the driver's default.
    pub storage: Option<String>,
    /// NICs in order.
    pub nics: Vec<NicSpec>,
}

/// A snapshot request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotSpec {
    /// Snapshot name as the platform gave it (drivers map names their backend refuses).
    pub name: String,
    /// Include memory state.
    pub include_memory: bool,
    /// Free-form description.
    pub description: Option<String>,
}

/// A snapshot as listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The name the platform gave it.
    pub name: String,
    /// Description, when any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Creation time, Unix seconds, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_unix: Option<u64>,
    /// Parent snapshot name (snapshot tree).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Whether memory state is included.
    #[serde(default)]
    pub includes_memory: bool,
}
