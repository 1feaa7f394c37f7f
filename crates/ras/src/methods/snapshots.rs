//! `guests/snapshots/create|delete|exists|revert`. On drivers with native templates the
//! link-clone name `RAS Template Snapshot` is a virtual label: exists ⇔ the guest is a
//! template; create/delete are completed no-op tasks; revert is refused.

use super::LINK_SNAPSHOT;
use crate::errors::RpcError;
use crate::params::Params;
use crate::session::{Active, Need, Session};
use polyvisor_core::{task, GuestId, SnapshotSpec, TaskId, TaskOutput, TemplateStrategy};
use serde_json::{json, Value};

struct Req {
    id: String,
    name: String,
    active: Active,
}

impl Req {
    fn gid(&self) -> GuestId {
        GuestId::new(self.id.as_str())
    }
    fn virtual_label(&self) -> bool {
        self.name == LINK_SNAPSHOT && self.active.level.strategy == Some(TemplateStrategy::Native)
    }
}

async fn begin(s: &mut Session, p: &Params, method: &str) -> Result<Req, RpcError> {
    let id = p.req_id("id")?;
    let name = p.req_str("name")?;
    let active = s.active_for(Need::Snapshots, method).await?;
    Ok(Req { id, name, active })
}

fn task_reply(t: TaskId) -> Value {
    let t = if t.as_str().trim().is_empty() { noop() } else { t };
    json!({ "task_id": t.0 })
}

fn noop() -> TaskId {
    task::completed("snapshot", &TaskOutput::default())
}

/// Creates (or asynchronously replaces) a snapshot.
pub(super) async fn create(s: &mut Session, p: &Params) -> Result<Value, RpcError> {
    let r = begin(s, p, "guests/snapshots/create").await?;
    if r.virtual_label() {
        return Ok(task_reply(noop()));
    }
    let spec = SnapshotSpec { name: r.name.clone(), include_memory: false, description: None };
    let t = s
        .call("guests/snapshots/create", r.active.driver.create_snapshot(&r.gid(), &spec))
        .await
        .map_err(|e| e.context(format!("Failed to create snapshot [{}] of guest [{}]", r.name, r.id)))?;
    Ok(task_reply(t))
}

/// Deletes a snapshot; a missing one is a completed no-op task.
pub(super) async fn delete(s: &mut Session, p: &Params) -> Result<Value, RpcError> {
    let r = begin(s, p, "guests/snapshots/delete").await?;
    if r.virtual_label() {
        return Ok(task_reply(noop()));
    }
    match s.call("guests/snapshots/delete", r.active.driver.delete_snapshot(&r.gid(), &r.name)).await {
        Ok(t) => Ok(task_reply(t)),
        Err(e) if e.is_not_found() => Ok(task_reply(noop())),
        Err(e) => Err(e.context(format!("Failed to delete snapshot [{}] of guest [{}]", r.name, r.id)).into()),
    }
}

/// A bare boolean.
pub(super) async fn exists(s: &mut Session, p: &Params) -> Result<Value, RpcError> {
    let r = begin(s, p, "guests/snapshots/exists").await?;
    let ctx = || format!("Failed to check snapshot [{}] of guest [{}]", r.name, r.id);
    let found = if r.virtual_label() {
        s.call("guests/snapshots/exists", r.active.driver.get_guest(&r.gid()))
            .await
            .map_err(|e| e.context(ctx()))?
            .is_template
    } else {
        s.call("guests/snapshots/exists", r.active.driver.snapshot_exists(&r.gid(), &r.name))
            .await
            .map_err(|e| e.context(ctx()))?
    };
    Ok(Value::Bool(found))
}

/// Reverts to a snapshot.
pub(super) async fn revert(s: &mut Session, p: &Params) -> Result<Value, RpcError> {
    let r = begin(s, p, "guests/snapshots/revert").await?;
    if r.virtual_label() {
        return Err(RpcError::params(format!(
            "Cannot revert guest [{}] to [{LINK_SNAPSHOT}]: on native templates it is a label, not a snapshot",
            r.id
        )));
    }
    let t = s
        .call("guests/snapshots/revert", r.active.driver.revert_snapshot(&r.gid(), &r.name))
        .await
        .map_err(|e| e.context(format!("Failed to revert guest [{}] to snapshot [{}]", r.id, r.name)))?;
    Ok(task_reply(t))
}
