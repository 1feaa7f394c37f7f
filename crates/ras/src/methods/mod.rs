//! One file per method group; [`dispatch`] routes a decoded request to its handler.

mod clone;
mod control;
mod convert;
mod guests;
mod provider;
mod snapshots;
mod tasks;

use crate::errors::RpcError;
use crate::params::Params;
use crate::session::Session;
use crate::wire::{params_object, Request};
use serde_json::Value;

/// The special link-clone snapshot name (spec §4.8).
pub(crate) const LINK_SNAPSHOT: &str = "RAS Template Snapshot";

/// Runs one request and returns its `result` value.
pub(crate) async fn dispatch(s: &mut Session, req: &Request) -> Result<Value, RpcError> {
    // Methods without parameters ignore whatever `params` holds.
    match req.method.as_str() {
        "provider/initialize" => return Ok(provider::initialize(s).await),
        "provider/disconnect" => return Ok(provider::disconnect(s).await),
        "guests/list" => return guests::list(s).await,
        _ => {}
    }
    let p = Params(params_object(&req.params)?);
    match req.method.as_str() {
        "provider/connect" => provider::connect(s, &p).await,
        "guests/get" => guests::get(s, &p).await,
        "guests/control" => control::control(s, &p).await,
        "guests/convert" => convert::convert(s, &p).await,
        "guests/clone" => clone::clone(s, &p).await,
        "guests/snapshots/create" => snapshots::create(s, &p).await,
        "guests/snapshots/delete" => snapshots::delete(s, &p).await,
        "guests/snapshots/exists" => snapshots::exists(s, &p).await,
        "guests/snapshots/revert" => snapshots::revert(s, &p).await,
        "tasks/get" => tasks::get(s, &p).await,
        _ => Err(RpcError::method(format!("Unknown method: {}", req.raw_method))),
    }
}
