//! Capabilities as data: what a driver can do, queried by fronts before acting.

use serde::{Deserialize, Serialize};

/// How a driver implements "template".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateStrategy {
    /// No template support.
    None,
    /// The hypervisor has real templates (Proxmox `template: 1`, XAPI `is_a_template`):
    /// read-only bases that can be linked-cloned but not snapshotted or started.
    Native,
    /// The template is an ordinary stopped guest carrying a polyvisor marker stored on the
    /// hypervisor (tag, metadata, label); it keeps its snapshots and can be cloned from
    /// any of them.
    Flag,
}

/// Kinds of console a driver can hand out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsoleKind {
    /// VNC host, port and (one-time) password.
    Vnc,
    /// A URL the user opens directly.
    Url,
    /// An RDP endpoint with a pre-connection blob (Hyper-V's VMConnect: port 2179, the VM id).
    Rdp,
}

/// What a driver can do. Every field defaults to the conservative answer (`false`/none),
/// which is never wrong: a front only offers what is advertised here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// `PowerAction::Suspend` / `Resume` really work.
    pub suspend: bool,
    /// How templates are implemented.
    pub templates: TemplateStrategy,
    /// Linked clones (copy-on-write on the source's disk) are possible.
    pub linked_clones: bool,
    /// Snapshots can be created, listed, reverted and deleted.
    pub snapshots: bool,
    /// Snapshots may include memory (live state).
    pub snapshot_memory: bool,
    /// Clones can start from a named snapshot (not only the current state).
    pub clone_from_snapshot: bool,
    /// `Driver::create_guest` works (from template and/or ISO). Fronts that create
    /// guests (CloudStack `create`) refuse up front when it is `false`.
    pub create: bool,
    /// Console kinds `Driver::console` can hand out for a running guest of this
    /// configuration; empty = never (fronts answer "not supported" without asking).
    pub consoles: Vec<ConsoleKind>,
    /// Recommended seconds between task polls for this backend (how quickly its tasks move).
    pub task_poll_secs: u32,
    /// Guest networking (CloudShell L2/L3, see [`crate::netops`]): what the driver implements.
    #[serde(default)]
    pub networking: crate::netops::NetworkCaps,
    /// Events come from a backend event source (task log, event log) rather than the core
    /// poll-and-diff fallback (issue 12: events).
    pub native_events: bool,
    /// The backend pushes change notifications: `Driver::wait_for_change` returns as soon as
    /// something changed (libvirt domain events), so a following event stream reacts at once
    /// instead of at its next poll.
    #[serde(default)]
    pub event_wakeup: bool,
    /// `Driver::metrics` returns usage samples (issue 12: metrics).
    pub metrics: bool,
}

impl Capabilities {
    /// Whether guest `g` may have snapshots to list: snapshots are supported, and `g` is a
    /// VM or a flagged template (native templates cannot carry snapshots; flagged ones keep
    /// theirs).
    pub fn has_snapshots(&self, g: &crate::model::Guest) -> bool {
        self.snapshots && (!g.is_template || self.templates == TemplateStrategy::Flag)
    }
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities {
            suspend: false,
            templates: TemplateStrategy::None,
            linked_clones: false,
            snapshots: false,
            snapshot_memory: false,
            clone_from_snapshot: false,
            create: false,
            consoles: Vec::new(),
            task_poll_secs: 3,
            networking: crate::netops::NetworkCaps::default(),
            native_events: false,
            event_wakeup: false,
            metrics: false,
        }
    }
}
