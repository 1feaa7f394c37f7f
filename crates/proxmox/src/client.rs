//! The driver value and its per-VM helpers: node resolution through a refresh-on-miss
//! cache of `cluster/resources`, VM paths, UPID submission and task-status reads.

use crate::api::Api;
use crate::config::Config;
use crate::parse::{self, Resource};
use crate::pve_error::{self, PveError};
use crate::upid::{enc, Upid};
use polyvisor_core::task::TaskToken;
use polyvisor_core::{Error, GuestId, Result};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Mutex;

/// The Proxmox VE driver.
pub struct ProxmoxDriver {
    pub(crate) api: Api,
    /// vmid → node; only a hint: every miss or "does not exist" refreshes it.
    nodes: Mutex<HashMap<String, String>>,
    /// vmid → power state seen by a read moments ago in this process (fronts resolve a VM
    /// and act on it right away); only used within [`OBSERVED_FRESH`], and the start task
    /// copes with a state that changed in between.
    observed: Mutex<HashMap<String, (polyvisor_core::PowerState, std::time::Instant)>>,
    /// The last `cluster/resources` listing of this process and when it was read; a
    /// create that follows the front's listing moments later uses it once instead of
    /// listing again (within [`OBSERVED_FRESH`]; the clone/create POST and the converging
    /// task cope with anything that changed in between).
    listing: Mutex<Option<(Vec<Resource>, std::time::Instant)>>,
}

/// How long an observed power state may stand in for a status read.
pub(crate) const OBSERVED_FRESH: std::time::Duration = std::time::Duration::from_secs(2);

/// A finished or running PVE task; a failed exit status is classified once, here.
pub(crate) enum PveTask {
    Running,
    Ok,
    Failed(PveError),
}

impl ProxmoxDriver {
    /// A driver for this config (no I/O).
    pub fn new(cfg: Config) -> Result<ProxmoxDriver> {
        Ok(ProxmoxDriver {
            api: Api::new(cfg)?,
            nodes: Mutex::new(HashMap::new()),
            observed: Mutex::new(HashMap::new()),
            listing: Mutex::new(None),
        })
    }

    /// HTTP round trips made so far by this driver (all operations, all tasks).
    pub fn round_trips(&self) -> u64 {
        self.api.round_trips()
    }

    pub(crate) fn cfg(&self) -> &Config {
        self.api.config()
    }

    /// The whole QEMU listing; refreshes the node cache.
    pub(crate) async fn resources(&self) -> Result<Vec<Resource>> {
        let data = self.api.get("/cluster/resources", &[("type", "vm".into())]).await?;
        let list = parse::resources(&data);
        if let Ok(mut c) = self.nodes.lock() {
            c.clear();
            c.extend(list.iter().map(|r| (r.vmid.clone(), r.node.clone())));
        }
        Ok(list)
    }

    /// Keeps a listing the caller (a front's check before a create) just read.
    pub(crate) fn keep_listing(&self, list: &[Resource]) {
        if let Ok(mut l) = self.listing.lock() {
            *l = Some((list.to_vec(), std::time::Instant::now()));
        }
    }

    /// The listing `list_guests` read within [`OBSERVED_FRESH`] (taken: used once), else a
    /// fresh one.
    pub(crate) async fn recent_resources(&self) -> Result<Vec<Resource>> {
        let recent = self.listing.lock().ok().and_then(|mut l| l.take());
        match recent {
            Some((list, at)) if at.elapsed() < OBSERVED_FRESH => Ok(list),
            _ => self.resources().await,
        }
    }

    fn cached_node(&self, vmid: &str) -> Option<String> {
        self.nodes.lock().ok().and_then(|c| c.get(vmid).cloned())
    }

    pub(crate) fn forget(&self, vmid: &str) {
        if let Ok(mut c) = self.nodes.lock() {
            c.remove(vmid);
        }
    }

    /// Records a power state just read.
    pub(crate) fn observe(&self, vmid: &str, power: polyvisor_core::PowerState) {
        if let Ok(mut o) = self.observed.lock() {
            o.insert(vmid.to_string(), (power, std::time::Instant::now()));
        }
    }

    /// A power state read within [`OBSERVED_FRESH`] (taken: used once).
    pub(crate) fn take_observed(&self, vmid: &str) -> Option<polyvisor_core::PowerState> {
        let (p, at) = self.observed.lock().ok()?.remove(vmid)?;
        (at.elapsed() < OBSERVED_FRESH).then_some(p)
    }

    pub(crate) fn remember(&self, vmid: &str, node: &str) {
        if let Ok(mut c) = self.nodes.lock() {
            c.insert(vmid.to_string(), node.to_string());
        }
    }

    /// Where a guest probably is without asking: the cache, else the node the platform
    /// names (`node` setting). Only a hint: a "does not exist" there falls back to a listing.
    pub(crate) fn node_hint(&self, vmid: &str) -> Option<String> {
        self.cached_node(vmid).or_else(|| self.cfg().node.clone())
    }

    /// Node of a guest from a fresh listing (cache first); absent → NotFound.
    pub(crate) async fn node_of(&self, id: &GuestId) -> Result<(String, String)> {
        let vmid = vmid_of(id)?;
        if let Some(n) = self.cached_node(&vmid) {
            return Ok((vmid, n));
        }
        self.resources().await?;
        match self.cached_node(&vmid) {
            Some(n) => Ok((vmid, n)),
            None => Err(Error::not_found(format!("guest [{vmid}]"))),
        }
    }

    /// Runs `f(vmid, node)` on the hinted node (no listing); when PVE says the VM does not
    /// exist there, locates it with one listing and retries (migrated or recycled VMIDs,
    /// guests on another node than the configured one).
    pub(crate) async fn on_vm<T, F, Fut>(&self, id: &GuestId, f: F) -> Result<T>
    where
        F: Fn(String, String) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let vmid = vmid_of(id)?;
        if let Some(node) = self.node_hint(&vmid) {
            match f(vmid.clone(), node).await {
                Err(e) if matches!(PveError::of(&e), Some(PveError::VmNotFound(_) | PveError::NotFound(_))) => {
                    self.forget(&vmid)
                }
                other => return other,
            }
        }
        let (vmid, node) = self.node_of(id).await?;
        f(vmid, node).await
    }

    /// `GET /nodes/{node}/tasks/{upid}/status` → state.
    pub(crate) async fn task_state(&self, upid: &Upid) -> Result<PveTask> {
        let v = self.api.get(&upid.status_path(), &[]).await?;
        Ok(task_state_of(&v))
    }

    /// Most recent task of a type for a VM since `since` (node task list, newest first).
    pub(crate) async fn last_task(&self, node: &str, vmid: &str, kind: &str, since: u64) -> Result<Option<PveTask>> {
        Ok(self.recent_tasks(node, vmid, since).await?.newest(kind))
    }

    /// A VM's tasks on a node since `since` (one read of the node task list).
    pub(crate) async fn recent_tasks(&self, node: &str, vmid: &str, since: u64) -> Result<RecentTasks> {
        let v = self
            .api
            .get(&format!("/nodes/{}/tasks", enc(node)), &[("vmid", vmid.to_string()), ("limit", "20".into())])
            .await?;
        Ok(RecentTasks { list: v, since, slack: 2 })
    }
}

/// A VM's node task list (newest first) as read once, filtered client-side.
pub(crate) struct RecentTasks {
    list: Value,
    since: u64,
    /// Seconds of clock slack allowed (2 when `since` is our clock, 0 when it is PVE's).
    pub(crate) slack: u64,
}

impl RecentTasks {
    /// The newest task of type `kind` started since `since` (minus the slack).
    pub(crate) fn newest(&self, kind: &str) -> Option<PveTask> {
        let found = self.list.as_array().into_iter().flatten().find(|t| {
            t.get("type").and_then(Value::as_str) == Some(kind)
                && crate::lenient::u64_field(t, "starttime").is_some_and(|s| s + self.slack >= self.since)
        })?;
        Some(match found.get("status").and_then(Value::as_str) {
            None | Some("running") | Some("") => PveTask::Running,
            Some(s) if is_ok_exit(s) => PveTask::Ok,
            Some(s) => PveTask::Failed(pve_error::from_task_exit(s)),
        })
    }
}

/// `qemu` path prefix for a VM.
pub(crate) fn vm_path(node: &str, vmid: &str) -> String {
    format!("/nodes/{}/qemu/{}", enc(node), enc(vmid))
}

/// A guest id must be a VMID in canonical decimal (100–999999999): no sign, no leading
/// zero, no whitespace (`"0100"`, `"+100"`, `" 100"` used to resolve to guest 100).
pub(crate) fn vmid_of(id: &GuestId) -> Result<String> {
    let s = id.as_str();
    let canonical = (3..=9).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) && !s.starts_with('0');
    if canonical {
        Ok(s.to_string())
    } else {
        Err(Error::invalid(format!("guest id '{}' is not a Proxmox VMID", crate::validate::shown(s))))
    }
}

/// `OK` or `WARNINGS: N` are successes.
pub(crate) fn is_ok_exit(s: &str) -> bool {
    s == "OK" || s.starts_with("WARNINGS")
}

pub(crate) fn task_state_of(v: &Value) -> PveTask {
    match v.get("status").and_then(Value::as_str) {
        Some("stopped") => match v.get("exitstatus").and_then(Value::as_str) {
            Some(s) if is_ok_exit(s) => PveTask::Ok,
            Some(s) => PveTask::Failed(pve_error::from_task_exit(s)),
            None => PveTask::Failed(PveError::BadAnswer("task ended without exit status".into())),
        },
        _ => PveTask::Running,
    }
}

/// Error for a failed in-task exit status (typed source kept).
pub(crate) fn task_error(what: &str, exit: &PveError) -> Error {
    Error::from(exit.clone()).context(what)
}

/// A UPID from a POST/DELETE answer; PVE 6.2 `template` answered `null` (→ `None`).
pub(crate) fn upid_of(data: &Value) -> Result<Option<Upid>, PveError> {
    match data.as_str() {
        Some(s) => {
            Upid::parse(s).map(Some).map_err(|_| PveError::BadAnswer("Proxmox returned a malformed task id".into()))
        }
        None => Ok(None),
    }
}

/// A task token that waits for one UPID.
pub(crate) fn upid_task(op: &str, upid: &Upid, vmid: &str) -> polyvisor_core::TaskId {
    TaskToken::new("upid", json!({"op": op, "upid": upid.raw, "vmid": vmid})).encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_vmids() {
        for ok in ["100", "999999999", "4242"] {
            assert_eq!(vmid_of(&GuestId::new(ok)).unwrap(), ok);
        }
        // Regression (issue 9): these resolved to guest 100.
        for bad in ["0100", "+100", " 100", "100 ", "99", "1000000000", "1e2", "", "１００"] {
            assert!(vmid_of(&GuestId::new(bad)).is_err(), "{bad:?}");
        }
        let e = vmid_of(&GuestId::new("9".repeat(1_000_000))).unwrap_err();
        assert!(e.message().len() < 200, "a 1 MB id is not echoed whole");
    }
}
