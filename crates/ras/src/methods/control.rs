//! `guests/control`: synchronous power actions and delete; `{}` once accepted.

use crate::errors::RpcError;
use crate::params::Params;
use crate::session::Session;
use polyvisor_core::{GuestId, PowerAction};
use serde_json::{json, Value};

enum Op {
    Power(PowerAction),
    Delete,
}

fn parse(raw: &str) -> Option<Op> {
    Some(match raw.trim().to_ascii_lowercase().as_str() {
        "start" => Op::Power(PowerAction::Start),
        "stop" => Op::Power(PowerAction::Stop),
        "reset" => Op::Power(PowerAction::Reset),
        "restart" | "reboot" => Op::Power(PowerAction::Reboot),
        "shutdown" => Op::Power(PowerAction::Shutdown),
        "suspend" => Op::Power(PowerAction::Suspend),
        "resume" => Op::Power(PowerAction::Resume),
        "delete" => Op::Delete,
        _ => return None,
    })
}

/// Submits the action without waiting for the transition.
pub(super) async fn control(s: &mut Session, p: &Params) -> Result<Value, RpcError> {
    let id = p.req_id("id")?;
    let raw = p.req_str("control")?;
    let unsupported = || RpcError::params(format!("Unsupported guest control: {raw}"));
    let op = parse(&raw).ok_or_else(unsupported)?;
    let a = s.active().await?;
    let gid = GuestId::new(id.as_str());
    match op {
        Op::Power(PowerAction::Suspend) if !a.level.can_suspend => Err(unsupported()),
        Op::Power(action) => {
            s.call("guests/control", a.driver.power(&gid, action))
                .await
                .map_err(|e| e.context(format!("Failed to {action} guest [{id}]")))?;
            Ok(json!({}))
        }
        Op::Delete => match s.call("guests/control", a.driver.delete_guest(&gid)).await {
            Ok(_) => Ok(json!({})),
            Err(e) if e.is_not_found() => Ok(json!({})),
            Err(e) => Err(e.context(format!("Failed to delete guest [{id}]")).into()),
        },
    }
}
