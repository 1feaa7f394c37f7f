//! `task_status` for every token kind this driver issues. Tokens carry the immutable facts
//! (UPID, VMID, node, names); everything else is read live, so any process can advance them.
//!
//! | kind | body | completes when |
//! |---|---|---|
//! | `upid` | `upid`, `vmid` | the PVE task stopped with `OK` |
//! | `delete` | `vmid`, `node`, `upid`? | the VM is gone (stops it / re-issues the DELETE as needed) |
//! | `snapcreate` | `upid`, `vmid`, `node`, `name`, `vmstate`, `description` | the PVE task is OK; failed with "already used": replaced as `snapreplace` |
//! | `snapdel` | `upid` | the PVE task is OK or says the snapshot does not exist |
//! | `snapreplace` | `vmid`, `node`, `name`, `vmstate`, `description`, `del_upid`? | old one deleted (once: a `qmdelsnapshot` task since the request), created again, done |
//! | `provision` | see `provision.rs` | clone/create done, configured, started, ready |

use crate::client::{task_error, vm_path, ProxmoxDriver, PveTask};
use crate::parse;
use crate::pve_error::PveError;
use crate::upid::Upid;
use polyvisor_core::task::TaskToken;
use polyvisor_core::{Error, Result, TaskOutput, TaskStatus};

fn ok() -> TaskStatus {
    TaskStatus::Completed(TaskOutput::default())
}

impl ProxmoxDriver {
    pub(crate) async fn advance(&self, t: &TaskToken) -> Result<TaskStatus> {
        match t.kind.as_str() {
            "upid" | "snapcreate" => {
                let op = t.str("op").unwrap_or("task");
                let upid = Upid::parse(t.req_str("upid")?)?;
                match self.task_state(&upid).await? {
                    PveTask::Running => Ok(TaskStatus::Running),
                    PveTask::Ok => Ok(ok()),
                    // Start is submitted without a status read: "already running" is success,
                    // unless the guest is paused, which start means to resume.
                    PveTask::Failed(PveError::AlreadyRunning(_)) if op == "start" => {
                        let path = vm_path(&upid.node, t.req_str("vmid")?);
                        let st = self.api.get(&format!("{path}/status/current"), &[]).await?;
                        let power = parse::map_power(
                            &crate::lenient::str_field(&st, "status").unwrap_or_default(),
                            crate::lenient::str_field(&st, "qmpstatus").as_deref(),
                        );
                        if power != polyvisor_core::PowerState::Suspended {
                            return Ok(ok());
                        }
                        match self.api.post(&format!("{path}/status/resume"), &[]).await {
                            Ok(_) | Err(PveError::Locked(_)) => Ok(TaskStatus::Running),
                            Err(e) => Ok(TaskStatus::Failed(Error::from(e).context("Resume failed"))),
                        }
                    }
                    PveTask::Failed(PveError::IsTemplate(_))
                        if self.native() && t.str("name") == Some(crate::names::LINK_STORED) =>
                    {
                        Ok(ok())
                    }
                    // The POST went out without a list read: a snapshot of that name exists,
                    // so this create replaces it (delete, then create again).
                    PveTask::Failed(PveError::AlreadyExists(_)) if t.kind == "snapcreate" => {
                        self.advance_snapreplace(t, &upid.node).await
                    }
                    PveTask::Failed(m) => Ok(TaskStatus::Failed(task_error(&format!("Proxmox {op} task failed"), &m))),
                }
            }
            "snapdel" => match self.task_state(&Upid::parse(t.req_str("upid")?)?).await? {
                PveTask::Running => Ok(TaskStatus::Running),
                PveTask::Ok => Ok(ok()),
                PveTask::Failed(PveError::SnapshotNotFound(_)) => Ok(ok()),
                PveTask::Failed(m) => Ok(TaskStatus::Failed(task_error("Snapshot delete failed", &m))),
            },
            "delete" => self.advance_delete(t).await,
            "snapreplace" => self.advance_snapreplace(t, t.req_str("node")?).await,
            "provision" => self.advance_provision(t).await,
            _ => Err(Error::unknown_task(format!("{} (not a Proxmox task)", t.kind))),
        }
    }

    async fn advance_delete(&self, t: &TaskToken) -> Result<TaskStatus> {
        let vmid = t.req_str("vmid")?;
        let node = t.req_str("node")?;
        if let Some(u) = t.str("upid") {
            match self.task_state(&Upid::parse(u)?).await? {
                PveTask::Running => return Ok(TaskStatus::Running),
                PveTask::Ok => return Ok(ok()),
                PveTask::Failed(PveError::VmNotFound(_)) => return Ok(ok()),
                PveTask::Failed(m) => {
                    return Ok(TaskStatus::Failed(task_error(&format!("Delete of guest [{vmid}] failed"), &m)))
                }
            }
        }
        // Chained: the stop was issued; DELETE once it is stopped.
        let path = vm_path(node, vmid);
        let status = match self.api.get(&format!("{path}/status/current"), &[]).await {
            Ok(s) => s,
            Err(PveError::VmNotFound(_)) => return Ok(ok()),
            Err(e) => return Err(e.into()),
        };
        if crate::lenient::str_field(&status, "status").as_deref() == Some("running") {
            return Ok(TaskStatus::Running);
        }
        let params = [("purge", "1".to_string()), ("destroy-unreferenced-disks", "1".to_string())];
        match self.api.delete(&path, &params).await {
            Ok(_) => {
                self.forget(vmid);
                Ok(TaskStatus::Running)
            }
            Err(PveError::VmNotFound(_)) => Ok(ok()),
            Err(PveError::Locked(_) | PveError::IsRunning(_)) => Ok(TaskStatus::Running),
            Err(e) => Ok(TaskStatus::Failed(Error::from(e).context(format!("Delete of guest [{vmid}] failed")))),
        }
    }

    /// Replaces snapshot `name`: the old one is deleted once (a `qmdelsnapshot` task of this
    /// VM since the request means it was), then it is created again; all of it discovered
    /// from the node's task list and the snapshot list, so any process can advance it and a
    /// clock skew between PVE and us can never make it delete the new snapshot.
    async fn advance_snapreplace(&self, t: &TaskToken, node: &str) -> Result<TaskStatus> {
        let vmid = t.req_str("vmid")?;
        let name = t.req_str("name")?;
        if let Some(u) = t.str("del_upid") {
            match self.task_state(&Upid::parse(u)?).await? {
                PveTask::Running => return Ok(TaskStatus::Running),
                PveTask::Ok => {}
                PveTask::Failed(PveError::SnapshotNotFound(_)) => {}
                PveTask::Failed(m) => {
                    return Ok(TaskStatus::Failed(task_error("Replacing the snapshot failed (delete)", &m)))
                }
            }
        }
        let path = vm_path(node, vmid);
        // Since the refused create (or our delete) started, on PVE's clock when known.
        let anchor = ["upid", "del_upid"].iter().find_map(|k| Upid::parse(t.str(k)?).ok()?.starttime());
        let mut recent = self.recent_tasks(node, vmid, anchor.unwrap_or(t.created)).await?;
        if anchor.is_some() {
            recent.slack = 0;
        }
        let deleted = recent.newest("qmdelsnapshot");
        let data = self.api.get(&format!("{path}/snapshot"), &[]).await?;
        let exists = parse::snapshots(&data).iter().any(|s| s.name == name);
        match deleted {
            None if t.str("del_upid").is_none() && exists => {
                return match self.api.delete(&format!("{path}/snapshot/{}", crate::upid::enc(name)), &[]).await {
                    Ok(_) | Err(PveError::Locked(_) | PveError::SnapshotNotFound(_)) => Ok(TaskStatus::Running),
                    Err(e) => Ok(TaskStatus::Failed(Error::from(e).context("Replacing the snapshot failed (delete)"))),
                };
            }
            Some(PveTask::Running) => return Ok(TaskStatus::Running),
            Some(PveTask::Failed(m)) if !matches!(m, PveError::SnapshotNotFound(_) | PveError::Locked(_)) => {
                return Ok(TaskStatus::Failed(task_error("Replacing the snapshot failed (delete)", &m)))
            }
            _ => {}
        }
        match recent.newest("qmsnapshot") {
            Some(PveTask::Running) => return Ok(TaskStatus::Running),
            Some(PveTask::Failed(m)) if !matches!(m, PveError::Locked(_) | PveError::AlreadyExists(_)) => {
                return Ok(TaskStatus::Failed(task_error("Replacing the snapshot failed (create)", &m)))
            }
            _ => {}
        }
        if exists {
            // Deleted since the request, so this one is the new snapshot.
            return Ok(if parse::snapshot_state(&data, name).is_some() { TaskStatus::Running } else { ok() });
        }
        let vmstate = t.body.get("vmstate").and_then(serde_json::Value::as_bool).unwrap_or(false);
        match self.post_snapshot(vmid, node, name, vmstate, t.str("description")).await {
            Ok(_) => Ok(TaskStatus::Running),
            Err(PveError::Locked(_)) => Ok(TaskStatus::Running),
            Err(e) => Ok(TaskStatus::Failed(Error::from(e).context("Replacing the snapshot failed (create)"))),
        }
    }
}
