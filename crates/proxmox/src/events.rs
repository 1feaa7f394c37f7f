//! Events from the node task logs and metrics from `rrddata` (issue 12).
//!
//! Events: `GET /nodes` then, per online node, `GET /nodes/{node}/tasks` (newest 500,
//! `since`); every finished, successful VM task is one event (`qmstart` → powered on, ...).
//! The cursor carries `since` (PVE's clock: the oldest still-running task's start, else
//! the newest start seen) and the UPIDs already reported at or after it, so tasks that
//! start in the same second or finish out of order are neither lost nor repeated.
//! Metrics: `GET /nodes/{node}/qemu/{vmid}/rrddata` (`cf=AVERAGE`, the smallest timeframe
//! covering the window), resampled to the asked interval.

use crate::client::{vm_path, vmid_of, ProxmoxDriver};
use crate::lenient::u64_field;
use crate::upid::enc;
use polyvisor_core::events::{self, Event, EventBatch, EventCursor, EventKind, MetricSample, MetricsInterval};
use polyvisor_core::{Error, GuestId, Result};
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// Cursor source name.
pub(crate) const SOURCE: &str = "pve";
/// Tasks read per node and poll.
const LIMIT: &str = "500";

/// The event a PVE task type stands for; `None` for tasks that do not concern a VM's
/// inventory (backups, node tasks, ...).
pub(crate) fn kind_of(task_type: &str) -> Option<EventKind> {
    Some(match task_type {
        "qmcreate" | "qmclone" | "qmrestore" => EventKind::VmCreated,
        "qmdestroy" => EventKind::VmDeleted,
        "qmstart" | "qmresume" | "qmreboot" | "qmreset" => EventKind::VmPoweredOn,
        "qmstop" | "qmshutdown" => EventKind::VmPoweredOff,
        "qmsuspend" | "qmpause" => EventKind::VmSuspended,
        "qmsnapshot" => EventKind::SnapshotCreated,
        "qmrollback" => EventKind::SnapshotReverted,
        "qmdelsnapshot" => EventKind::SnapshotRemoved,
        "qmtemplate" => EventKind::TemplateConverted,
        "qmconfig" | "qmmove" | "qmigrate" | "qmresize" | "qmmigrate" => EventKind::VmChanged,
        _ => return None,
    })
}

struct Task {
    upid: String,
    node: String,
    ttype: String,
    id: String,
    start: u64,
    end: Option<u64>,
    status: Option<String>,
    raw: Value,
}

fn task_of(v: &Value) -> Option<Task> {
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let status = s("status").filter(|x| !x.is_empty() && x != "running");
    Some(Task {
        upid: s("upid")?,
        node: s("node").unwrap_or_default(),
        ttype: s("type").unwrap_or_default(),
        id: s("id").unwrap_or_default(),
        start: u64_field(v, "starttime")?,
        end: u64_field(v, "endtime").filter(|_| status.is_some()),
        status,
        raw: v.clone(),
    })
}

fn cursor(since: u64, seen: &BTreeSet<String>) -> EventCursor {
    EventCursor::new(SOURCE, &json!({ "since": since, "seen": seen }))
}

/// Events from the task lists `lists` (one per node, any order) after the cursor state
/// (`since`, `seen`); pure, so it is unit-tested on PVE-shaped data.
pub(crate) fn diff_tasks(lists: &[Value], since: u64, seen: &BTreeSet<String>, first: bool) -> EventBatch {
    let tasks: Vec<Task> = lists.iter().flat_map(|l| l.as_array().into_iter().flatten()).filter_map(task_of).collect();
    let mut finished: Vec<&Task> =
        tasks.iter().filter(|t| t.end.is_some() && t.start >= since && !seen.contains(&t.upid)).collect();
    finished.sort_by(|a, b| (a.end, a.start, &a.upid).cmp(&(b.end, b.start, &b.upid)));
    let mut events = Vec::new();
    let mut so_far = seen.clone();
    if !first {
        for t in &finished {
            so_far.insert(t.upid.clone());
            let ok = t.status.as_deref().is_some_and(crate::client::is_ok_exit);
            let Some(kind) = kind_of(&t.ttype).filter(|_| ok) else { continue };
            let vmid_ok = vmid_of(&GuestId::new(t.id.clone())).is_ok();
            if !vmid_ok {
                continue;
            }
            // A clone's task names the source VM; the new VM's id is not in the task list.
            let guest = if t.ttype == "qmclone" { None } else { Some(GuestId::new(t.id.clone())) };
            events.push(Event {
                kind,
                id: t.upid.clone(),
                at: t.end.unwrap_or(t.start),
                guest,
                guest_name: None,
                node: Some(t.node.clone()),
                snapshot: None,
                native: t.ttype.clone(),
                message: format!("{} {} - {}", t.ttype, t.id, t.status.as_deref().unwrap_or("")),
                data: t.raw.clone(),
                cursor: cursor(since, &so_far),
            });
        }
    }
    // Next position: the oldest running task's start (it may finish later), else the newest start.
    let running = tasks.iter().filter(|t| t.end.is_none() && t.start >= since).map(|t| t.start).min();
    let newest = tasks.iter().map(|t| t.start).max().unwrap_or(since).max(since);
    let next = running.unwrap_or(newest);
    let next_seen: BTreeSet<String> =
        tasks.iter().filter(|t| t.end.is_some() && t.start >= next).map(|t| t.upid.clone()).collect();
    let mut next_seen = next_seen;
    if next == since {
        next_seen.extend(seen.iter().cloned());
    }
    EventBatch { events, cursor: cursor(next, &next_seen) }
}

impl ProxmoxDriver {
    /// See the module doc. Round trips: 1 + online nodes.
    pub(crate) async fn pve_events(&self, from: Option<&EventCursor>) -> Result<EventBatch> {
        let (since, seen) = match from {
            Some(c) => {
                let v = c.decode(SOURCE)?;
                let since = v.get("since").and_then(Value::as_u64);
                let seen: Option<BTreeSet<String>> =
                    serde_json::from_value(v.get("seen").cloned().unwrap_or(json!([]))).ok();
                match (since, seen) {
                    (Some(s), Some(seen)) => (s, seen),
                    _ => return Err(Error::invalid("Invalid event cursor for pve")),
                }
            }
            None => (0, BTreeSet::new()),
        };
        let nodes = self.api.get("/nodes", &[]).await?;
        let mut lists = Vec::new();
        for n in nodes.as_array().into_iter().flatten() {
            let Some(node) = n.get("node").and_then(Value::as_str) else { continue };
            if n.get("status").and_then(Value::as_str).is_some_and(|s| s != "online") {
                continue;
            }
            crate::validate::node(node, "node name")?;
            let mut params = vec![("limit", LIMIT.to_string()), ("source", "all".to_string())];
            if since > 0 {
                params.push(("since", since.to_string()));
            }
            lists.push(self.api.get(&format!("/nodes/{}/tasks", enc(node)), &params).await?);
        }
        Ok(diff_tasks(&lists, since, &seen, from.is_none()))
    }

    /// See the module doc. Round trips: the node lookup (usually cached) + 1.
    pub(crate) async fn pve_metrics(
        &self,
        id: &GuestId,
        start: u64,
        end: u64,
        interval: MetricsInterval,
    ) -> Result<Vec<MetricSample>> {
        events::check_window(start, end)?;
        let now = polyvisor_core::task::now_unix();
        let age = now.saturating_sub(start);
        let timeframe = match age {
            0..=3_600 => "hour",
            3_601..=86_400 => "day",
            86_401..=604_800 => "week",
            604_801..=2_678_400 => "month",
            _ => "year",
        };
        let rrd = self
            .on_vm(id, |vmid, node| async move {
                let path = format!("{}/rrddata", vm_path(&node, &vmid));
                Ok(self.api.get(&path, &[("timeframe", timeframe.to_string()), ("cf", "AVERAGE".to_string())]).await?)
            })
            .await?;
        Ok(resample(&rrd, start, end, interval))
    }
}

/// Converts `rrddata` points (`time`, `cpu` 0–1 of all vCPUs, `mem`/`maxmem` bytes,
/// `diskread`/`diskwrite`/`netin`/`netout` bytes per second) into samples at every
/// `interval` step in [start, end], each taking the average of the points in its step, or
/// for steps finer than the points (realtime vs PVE's 60 s), the point covering it.
/// Points without a time or with no values (an idle or new VM) are skipped.
pub(crate) fn resample(rrd: &Value, start: u64, end: u64, interval: MetricsInterval) -> Vec<MetricSample> {
    struct P {
        t: u64,
        cpu: f64,
        mem: f64,
        disk: f64,
        net: f64,
    }
    let f = |v: &Value, k: &str| v.get(k).and_then(Value::as_f64);
    let mut pts: Vec<P> = rrd
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| {
            let t = u64_field(v, "time")?;
            let cpu = f(v, "cpu")?;
            let mem = match (f(v, "mem"), f(v, "maxmem")) {
                (Some(m), Some(max)) if max > 0.0 => m / max * 100.0,
                _ => 0.0,
            };
            let disk = (f(v, "diskread").unwrap_or(0.0) + f(v, "diskwrite").unwrap_or(0.0)) / 1024.0;
            let net = (f(v, "netin").unwrap_or(0.0) + f(v, "netout").unwrap_or(0.0)) / 1024.0;
            Some(P { t, cpu: (cpu * 100.0).clamp(0.0, 100.0), mem: mem.clamp(0.0, 100.0), disk, net })
        })
        .collect();
    pts.sort_by_key(|p| p.t);
    let step = interval.secs();
    // PVE's step: the smallest gap between points (60 s for `hour`).
    let pve_step = pts.windows(2).map(|w| w[1].t - w[0].t).filter(|d| *d > 0).min().unwrap_or(60);
    let mut out = Vec::new();
    let mut t = events::align(start, step);
    if t < start {
        t += step;
    }
    while t <= end {
        let inside: Vec<&P> = if step >= pve_step {
            pts.iter().filter(|p| p.t >= t && p.t < t + step).collect()
        } else {
            pts.iter().filter(|p| p.t <= t && t < p.t + pve_step).collect()
        };
        if !inside.is_empty() {
            let n = inside.len() as f64;
            let avg = |g: fn(&P) -> f64| (inside.iter().map(|p| g(p)).sum::<f64>() / n * 10.0).round() / 10.0;
            out.push(MetricSample {
                at: t,
                cpu_usage_rate: avg(|p| p.cpu),
                mem_usage: avg(|p| p.mem),
                disk_rate_kbps: avg(|p| p.disk),
                net_rate_kbps: avg(|p| p.net),
            });
        }
        t += step;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(upid: &str, ttype: &str, id: &str, start: u64, end: Option<u64>, status: &str) -> Value {
        let mut v =
            json!({"upid": upid, "node": "pve1", "type": ttype, "id": id, "starttime": start, "user": "root@pam"});
        if let Some(e) = end {
            v["endtime"] = json!(e);
            v["status"] = json!(status);
        }
        v
    }

    #[test]
    fn tasks_become_events_once_across_polls_and_running_tasks_are_waited_for() {
        let first = diff_tasks(&[json!([task("U1", "qmstart", "100", 10, Some(11), "OK")])], 0, &BTreeSet::new(), true);
        assert!(first.events.is_empty());
        let v = first.cursor.decode(SOURCE).unwrap();
        let since = v["since"].as_u64().unwrap();
        let seen: BTreeSet<String> = serde_json::from_value(v["seen"].clone()).unwrap();
        // Same second: a new stop, a failing start (skipped), a running snapshot, a backup (not a VM event).
        let list = json!([
            task("U1", "qmstart", "100", 10, Some(11), "OK"),
            task("U2", "qmstop", "100", 10, Some(12), "OK"),
            task("U3", "qmstart", "101", 12, Some(13), "command failed"),
            task("U4", "qmsnapshot", "101", 13, None, ""),
            task("U5", "vzdump", "", 14, Some(15), "OK"),
        ]);
        let b = diff_tasks(std::slice::from_ref(&list), since, &seen, false);
        let ids: Vec<_> = b.events.iter().map(|e| (e.id.as_str(), e.kind)).collect();
        assert_eq!(ids, [("U2", EventKind::VmPoweredOff)]);
        let v = b.cursor.decode(SOURCE).unwrap();
        assert_eq!(v["since"], 13, "waits at the running snapshot");
        // The snapshot finishes: reported once; U2 is not repeated.
        let list2 = json!([
            task("U2", "qmstop", "100", 10, Some(12), "OK"),
            task("U4", "qmsnapshot", "101", 13, Some(20), "OK"),
            task("U6", "qmdestroy", "100", 21, Some(22), "OK"),
        ]);
        let since2 = v["since"].as_u64().unwrap();
        let seen2: BTreeSet<String> = serde_json::from_value(v["seen"].clone()).unwrap();
        let c = diff_tasks(std::slice::from_ref(&list2), since2, &seen2, false);
        let ids: Vec<_> = c.events.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["U4", "U6"]);
        // Resuming from the first event's cursor yields exactly the second.
        let v = c.events[0].cursor.decode(SOURCE).unwrap();
        let seen3: BTreeSet<String> = serde_json::from_value(v["seen"].clone()).unwrap();
        let d = diff_tasks(&[list2], v["since"].as_u64().unwrap(), &seen3, false);
        assert_eq!(d.events.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["U6"]);
    }

    #[test]
    fn rrd_points_resample_to_realtime_and_hourly() {
        let rrd = json!([
            {"time": 3600, "cpu": 0.25, "maxcpu": 2, "mem": 512.0, "maxmem": 1024.0, "diskread": 1024.0, "diskwrite": 1024.0, "netin": 512.0, "netout": 512.0},
            {"time": 3660, "cpu": 0.75, "maxcpu": 2, "mem": 256.0, "maxmem": 1024.0, "diskread": 0.0, "diskwrite": 0.0, "netin": 0.0, "netout": 0.0},
            {}
        ]);
        let rt = resample(&rrd, 3600, 3700, MetricsInterval::Realtime);
        assert_eq!(rt.iter().map(|s| s.at).collect::<Vec<_>>(), [3600, 3620, 3640, 3660, 3680, 3700]);
        assert_eq!(
            (rt[0].cpu_usage_rate, rt[0].mem_usage, rt[0].disk_rate_kbps, rt[0].net_rate_kbps),
            (25.0, 50.0, 2.0, 1.0)
        );
        assert_eq!(rt[3].cpu_usage_rate, 75.0);
        let h = resample(&rrd, 3600, 7200, MetricsInterval::Hourly);
        assert_eq!(h.len(), 1);
        assert_eq!((h[0].at, h[0].cpu_usage_rate, h[0].mem_usage), (3600, 50.0, 37.5));
        assert!(resample(&json!([{}]), 0, 3600, MetricsInterval::Realtime).is_empty());
    }
}
