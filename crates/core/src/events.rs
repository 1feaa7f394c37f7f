//! Events and metrics as driver capabilities (feature: events + metrics, issue 12).
//!
//! - [`Event`]: something that happened to a guest (created, deleted, powered on/off,
//!   suspended, snapshot created/reverted/removed, template converted), each carrying the
//!   [`EventCursor`] that resumes right after it. Cursors are self-describing
//!   (`pvev1:<source>:<base64url(JSON)>`): a restarted process resumes from the last
//!   cursor it printed without loss or duplicates, and no process keeps local state.
//! - [`Driver::events_since`](crate::Driver::events_since): drivers with an event source
//!   (Proxmox cluster task log, the sim's event log) override it; every other driver gets
//!   [`poll_diff`], which lists guests and diffs them against the state carried in the
//!   cursor itself.
//! - [`MetricSample`]: CPU usage rate, memory usage and disk/network rates at one
//!   timestamp, what [`Driver::metrics`](crate::Driver::metrics) returns.

use crate::driver::Driver;
use crate::error::{Error, Result};
use crate::model::{GuestId, GuestSummary, PowerState};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A guest appeared.
    VmCreated,
    /// A guest disappeared.
    VmDeleted,
    /// A guest was powered on (started, resumed, rebooted).
    VmPoweredOn,
    /// A guest was powered off (stopped or shut down).
    VmPoweredOff,
    /// A guest was suspended/paused.
    VmSuspended,
    /// A snapshot was taken.
    SnapshotCreated,
    /// A guest was reverted to a snapshot.
    SnapshotReverted,
    /// A snapshot was removed.
    SnapshotRemoved,
    /// A guest was converted to a template.
    TemplateConverted,
    /// A template was converted back to a guest.
    VmConverted,
    /// A guest's configuration or placement changed (clone target finished, migration,
    /// reconfiguration): a refresh of the guest is due.
    VmChanged,
}

impl EventKind {
    /// The snake_case name (`vm_created`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::VmCreated => "vm_created",
            EventKind::VmDeleted => "vm_deleted",
            EventKind::VmPoweredOn => "vm_powered_on",
            EventKind::VmPoweredOff => "vm_powered_off",
            EventKind::VmSuspended => "vm_suspended",
            EventKind::SnapshotCreated => "snapshot_created",
            EventKind::SnapshotReverted => "snapshot_reverted",
            EventKind::SnapshotRemoved => "snapshot_removed",
            EventKind::TemplateConverted => "template_converted",
            EventKind::VmConverted => "vm_converted",
            EventKind::VmChanged => "vm_changed",
        }
    }

    /// The event a settled power state implies, if any.
    pub fn for_power(p: PowerState) -> Option<EventKind> {
        match p {
            PowerState::PoweredOn | PowerState::PoweringOn => Some(EventKind::VmPoweredOn),
            PowerState::PoweredOff | PowerState::PoweringOff => Some(EventKind::VmPoweredOff),
            PowerState::Suspended | PowerState::Suspending => Some(EventKind::VmSuspended),
        }
    }
}

/// A self-describing position in a driver's event stream:
/// `pvev1:<source>:<base64url(JSON state)>`. Opaque to fronts.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventCursor(pub String);

impl EventCursor {
    /// Encodes `state` for event source `source` (`[a-z0-9-]+`).
    pub fn new(source: &str, state: &Value) -> Self {
        EventCursor(format!("pvev1:{source}:{}", URL_SAFE_NO_PAD.encode(state.to_string())))
    }

    /// Decodes a cursor of source `source`; `InvalidInput` for anything else (a cursor of
    /// another driver, a truncated or edited one).
    pub fn decode(&self, source: &str) -> Result<Value> {
        let bad =
            || Error::invalid(format!("Invalid event cursor for {source} (start without --since to get a new one)"));
        let rest = self.0.strip_prefix("pvev1:").ok_or_else(bad)?;
        let (src, body) = rest.split_once(':').ok_or_else(bad)?;
        if src != source {
            return Err(bad());
        }
        let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| bad())?;
        serde_json::from_slice(&bytes).map_err(|_| bad())
    }

    /// The cursor as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for EventCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// A backend id unique to this event (Proxmox UPID, sim event row, diff step).
    pub id: String,
    /// When it happened (unix seconds; the observation time for polled diffs).
    pub at: u64,
    /// The guest concerned.
    pub guest: Option<GuestId>,
    /// The guest's name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_name: Option<String>,
    /// The node/host concerned, when the platform has nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The snapshot concerned (snapshot events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// The backend's own name for the event (`qmstart`, `power`, ...).
    pub native: String,
    /// A one-line description.
    pub message: String,
    /// The backend's raw record, for display.
    #[serde(default)]
    pub data: Value,
    /// Resumes right after this event.
    pub cursor: EventCursor,
}

/// One poll's answer: events in order, and the cursor to ask with next (equal to the last
/// event's cursor, or a newer position when nothing happened).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventBatch {
    /// New events, oldest first.
    pub events: Vec<Event>,
    /// Where the next poll starts.
    pub cursor: EventCursor,
}

/// Sampling interval ManageIQ-style capture asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricsInterval {
    /// 20-second samples.
    Realtime,
    /// Hourly samples.
    Hourly,
}

impl MetricsInterval {
    /// Seconds between samples.
    pub fn secs(self) -> u64 {
        match self {
            MetricsInterval::Realtime => 20,
            MetricsInterval::Hourly => 3600,
        }
    }
}

/// Usage of one guest at one timestamp.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricSample {
    /// Unix seconds, aligned to the interval.
    pub at: u64,
    /// CPU usage in percent of the guest's vCPUs (0–100).
    pub cpu_usage_rate: f64,
    /// Memory in use, percent of the guest's memory (0–100).
    pub mem_usage: f64,
    /// Disk read + write rate, KB/s.
    pub disk_rate_kbps: f64,
    /// Network in + out rate, KB/s.
    pub net_rate_kbps: f64,
}

/// Rounds `t` down to a multiple of `step` seconds.
pub fn align(t: u64, step: u64) -> u64 {
    if step == 0 {
        t
    } else {
        t - t % step
    }
}

/// Checks a metrics window (start < end, at most 31 days).
pub fn check_window(start: u64, end: u64) -> Result<()> {
    if start >= end {
        return Err(Error::invalid("metrics: start must be before end"));
    }
    if end - start > 31 * 86_400 {
        return Err(Error::invalid("metrics: window longer than 31 days"));
    }
    Ok(())
}

/// The cursor source name of the poll-and-diff fallback.
pub const DIFF_SOURCE: &str = "diff";

/// Compact per-guest state carried in a diff cursor: name, power code, template flag and
/// (when snapshots are tracked) snapshot names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Seen {
    n: String,
    p: String,
    t: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    s: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    h: Option<String>,
}

fn power_code(p: PowerState) -> &'static str {
    match EventKind::for_power(p) {
        Some(EventKind::VmPoweredOn) => "on",
        Some(EventKind::VmSuspended) => "sus",
        _ => "off",
    }
}

fn seen_of(g: &GuestSummary, snaps: Option<Vec<String>>) -> Seen {
    Seen { n: g.name.clone(), p: power_code(g.power).into(), t: g.is_template, s: snaps, h: g.node.clone() }
}

/// The poll-and-diff fallback behind [`Driver::events_since`](crate::Driver::events_since):
/// lists guests (and, with `snapshots`, each guest's snapshot names), compares them with the
/// state the cursor carries and reports the differences as events. With no cursor it
/// reports nothing and returns the current state as the starting cursor. Each event's own
/// cursor carries the state with that event applied, so resuming from any printed cursor
/// neither loses nor repeats an event. Sees only what a listing shows: changes undone
/// between two polls are invisible, reverts are not distinguishable from other changes.
pub async fn poll_diff<D: Driver + ?Sized>(
    driver: &D,
    cursor: Option<&EventCursor>,
    snapshots: bool,
) -> Result<EventBatch> {
    let mut old: BTreeMap<String, Seen> = match cursor {
        Some(c) => serde_json::from_value(c.decode(DIFF_SOURCE)?.get("g").cloned().unwrap_or(Value::Null))
            .map_err(|_| Error::invalid("Invalid event cursor for diff"))?,
        None => BTreeMap::new(),
    };
    let seq0 = match cursor {
        Some(c) => c.decode(DIFF_SOURCE)?.get("q").and_then(Value::as_u64).unwrap_or(0),
        None => 0,
    };
    let guests = driver.list_guests().await?;
    let mut now: BTreeMap<String, Seen> = BTreeMap::new();
    for g in &guests {
        let snaps = if snapshots {
            match driver.list_snapshots(&g.id).await {
                Ok(s) => Some(s.into_iter().map(|s| s.name).collect()),
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            }
        } else {
            None
        };
        now.insert(g.id.as_str().to_string(), seen_of(g, snaps));
    }
    let at = crate::task::now_unix();
    let encode = |state: &BTreeMap<String, Seen>, q: u64| EventCursor::new(DIFF_SOURCE, &json!({"q": q, "g": state}));
    if cursor.is_none() {
        return Ok(EventBatch { events: Vec::new(), cursor: encode(&now, 0) });
    }
    let mut events = Vec::new();
    let mut seq = seq0;
    let mut push = |state: &BTreeMap<String, Seen>,
                    kind: EventKind,
                    id: &str,
                    seen: &Seen,
                    snapshot: Option<String>,
                    native: &str| {
        seq += 1;
        let message = match &snapshot {
            Some(s) => format!("{} {} ({})", kind.as_str(), seen.n, s),
            None => format!("{} {}", kind.as_str(), seen.n),
        };
        events.push(Event {
            kind,
            id: format!("diff-{seq}"),
            at,
            guest: Some(GuestId::new(id)),
            guest_name: Some(seen.n.clone()),
            node: seen.h.clone(),
            snapshot,
            native: native.into(),
            message,
            data: Value::Null,
            cursor: encode(state, seq),
        });
    };
    // Deletions first, then per-guest changes and creations, in id order.
    let gone: Vec<String> = old.keys().filter(|k| !now.contains_key(*k)).cloned().collect();
    for id in gone {
        let seen = old.remove(&id).expect("present");
        push(&old, EventKind::VmDeleted, &id, &seen, None, "deleted");
    }
    for (id, cur) in &now {
        match old.get(id).cloned() {
            None => {
                old.insert(id.clone(), cur.clone());
                push(&old, EventKind::VmCreated, id, cur, None, "created");
            }
            Some(mut prev) => {
                if prev.t != cur.t {
                    prev.t = cur.t;
                    old.insert(id.clone(), prev.clone());
                    let kind = if cur.t { EventKind::TemplateConverted } else { EventKind::VmConverted };
                    push(&old, kind, id, cur, None, "template");
                }
                if let (Some(before), Some(after)) = (prev.s.clone(), cur.s.clone()) {
                    for s in before.iter().filter(|s| !after.contains(s)) {
                        let mut list = prev.s.take().unwrap_or_default();
                        list.retain(|x| x != s);
                        prev.s = Some(list);
                        old.insert(id.clone(), prev.clone());
                        push(&old, EventKind::SnapshotRemoved, id, cur, Some(s.clone()), "snapshot");
                    }
                    for s in after.iter().filter(|s| !before.contains(s)) {
                        let mut list = prev.s.take().unwrap_or_default();
                        list.push(s.clone());
                        prev.s = Some(list);
                        old.insert(id.clone(), prev.clone());
                        push(&old, EventKind::SnapshotCreated, id, cur, Some(s.clone()), "snapshot");
                    }
                }
                if prev.p != cur.p {
                    prev.p = cur.p.clone();
                    old.insert(id.clone(), prev.clone());
                    let kind = match cur.p.as_str() {
                        "on" => EventKind::VmPoweredOn,
                        "sus" => EventKind::VmSuspended,
                        _ => EventKind::VmPoweredOff,
                    };
                    push(&old, kind, id, cur, None, "power");
                }
            }
        }
    }
    Ok(EventBatch { events, cursor: encode(&now, seq) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_other_sources() {
        let c = EventCursor::new("sim", &json!({"id": 7}));
        assert!(c.as_str().starts_with("pvev1:sim:"));
        assert_eq!(c.decode("sim").unwrap(), json!({"id": 7}));
        assert!(c.decode("pve").is_err());
        assert!(EventCursor("pvev1:sim:%%%".into()).decode("sim").is_err());
        assert!(EventCursor("garbage".into()).decode("sim").is_err());
    }

    #[test]
    fn windows_and_alignment() {
        assert_eq!(align(1_000_019, 20), 1_000_000);
        assert!(check_window(10, 5).is_err());
        assert!(check_window(0, 40 * 86_400).is_err());
        check_window(0, 3600).unwrap();
    }
}
