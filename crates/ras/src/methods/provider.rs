//! `provider/initialize`, `provider/connect`, `provider/disconnect`.

use crate::errors::RpcError;
use crate::params::Params;
use crate::session::Session;
use polyvisor_core::Settings;
use serde::Serialize;
use serde_json::{json, Value};

/// The protocol version every provider reports.
const VERSION: &str = "1.0.0";

#[derive(Serialize)]
struct Capabilities {
    can_suspend_guests: bool,
    guests_polling_rate: u64,
    tasks_polling_rate: u64,
    tasks_polling_retries: u64,
    template_method: &'static str,
    can_link_clones: bool,
}

/// All six capability keys, from args/env clamped to the default driver.
pub(super) async fn initialize(s: &mut Session) -> Value {
    let l = s.initialize_level().await;
    let caps = Capabilities {
        can_suspend_guests: l.can_suspend,
        guests_polling_rate: l.guests_polling_rate,
        tasks_polling_rate: l.tasks_polling_rate,
        tasks_polling_retries: l.tasks_polling_retries,
        template_method: l.template_method.as_str(),
        can_link_clones: l.link_clones,
    };
    json!({ "version": VERSION, "capabilities": caps })
}

/// Opens and probes the driver the settings select.
pub(super) async fn connect(s: &mut Session, p: &Params) -> Result<Value, RpcError> {
    let settings = match p.raw("settings") {
        None | Some(Value::Null) => return Err(RpcError::missing("params.settings")),
        Some(v @ Value::Object(_)) => Settings::from_json(v).map_err(RpcError::from)?,
        Some(_) => return Err(RpcError::invalid_field("params.settings", "expected an object")),
    };
    tracing::info!(keys = ?settings, "provider/connect");
    let msg = s.connect(&settings).await?;
    Ok(json!({ "message": format!("{}: {msg}", s.prefix()) }))
}

/// Closes the session's drivers (backend sessions released) and clears the session.
pub(super) async fn disconnect(s: &mut Session) -> Value {
    s.disconnect().await;
    json!({})
}
