//! `guests/convert`: VM ↔ template, always answered with a task id.

use crate::errors::RpcError;
use crate::params::Params;
use crate::session::{Need, Session};
use polyvisor_core::{task, GuestId, TaskOutput};
use serde_json::{json, Value};

/// Idempotent: converting to the current state is the driver's success.
pub(super) async fn convert(s: &mut Session, p: &Params) -> Result<Value, RpcError> {
    let id = p.req_id("id")?;
    let is_template = p.req_bool("is_template")?;
    let a = s.active_for(Need::Templates, "guests/convert").await?;
    let t = s
        .call("guests/convert", a.driver.set_template(&GuestId::new(id.as_str()), is_template))
        .await
        .map_err(|e| e.context(format!("Failed to convert guest [{id}]")))?;
    let t = if t.as_str().trim().is_empty() { task::completed("convert", &TaskOutput::default()) } else { t };
    Ok(json!({ "task_id": t.0 }))
}
