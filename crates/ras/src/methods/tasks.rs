//! `tasks/get`: running | completed (non-null output, `clone_id` for clones) | failed.

use crate::errors::{RpcError, TASK_FAILED};
use crate::params::Params;
use crate::session::{Need, Session};
use polyvisor_core::{TaskId, TaskOutput, TaskStatus};
use serde_json::{json, Map, Value};

fn output(o: &TaskOutput) -> Value {
    let mut m = Map::new();
    if let Some(g) = &o.new_guest {
        m.insert("clone_id".into(), Value::String(g.0.clone()));
    }
    Value::Object(m)
}

/// The task's state, resolved by any process (ids are self-describing).
pub(super) async fn get(s: &mut Session, p: &Params) -> Result<Value, RpcError> {
    let id = TaskId(p.req_id("id")?);
    let a = s.active_for(Need::Templates, "tasks/get").await?;
    // Core's `Driver::task_status` decodes the id, answers already-completed ids
    // (`task::completed`, also issued by this front) without the backend and expires old ones.
    let status = s.call("tasks/get", a.driver.task_status(&id)).await?;
    Ok(match status {
        TaskStatus::Running => json!({ "state": "running" }),
        TaskStatus::Completed(o) => json!({ "state": "completed", "output": output(&o) }),
        TaskStatus::Failed(e) => json!({
            "state": "failed",
            "error": { "code": TASK_FAILED, "message": format!("{}: {}", s.prefix(), e.message()) }
        }),
    })
}
