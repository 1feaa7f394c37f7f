//! `prepare`, `create`, `start`, `stop`, `reboot`, `delete` (spec §4.2-4.4).

use crate::ctx::{valid_vm_name, Ctx, VM_ID_DETAIL};
use crate::output::Reply;
use polyvisor_core::{CreateSource, CreateSpec, Error, GuestId, PowerAction, Result};
use serde_json::json;
use std::time::Duration;

/// `prepare`: validates what `create` will need and returns a details patch. When the
/// backend guest already exists (a retried first start) its id is reported as
/// `External:polyvisor_vm_id`; otherwise the key we will store is reported.
pub async fn prepare(ctx: &Ctx) -> Result<Reply> {
    let key = ctx.internal_name()?;
    let _ = create_spec(ctx, &key)?;
    let detail = match ctx.resolve().await? {
        Some(g) => json!({ format!("External:{VM_ID_DETAIL}"): g.id.as_str() }),
        None => json!({ "External:polyvisor_key": key }),
    };
    Ok(Reply::patch(json!({ "details": detail })))
}

/// Builds the create request from settings and the VM object.
pub fn create_spec(ctx: &Ctx, key: &str) -> Result<CreateSpec> {
    let s = &ctx.settings;
    let name = match s.str("vm_name") {
        Some(n) if valid_vm_name(&n) => n,
        Some(_) => return Err(Error::invalid("vm_name must match ^[a-zA-Z0-9-]+$ (at most 63 characters)")),
        None => key.to_string(),
    };
    let template_type = s.str("template_type").unwrap_or_else(|| "template".into()).to_ascii_lowercase();
    let source = match template_type.as_str() {
        "iso" => CreateSource::Iso {
            path: s.str("iso_path").ok_or_else(|| Error::invalid("Missing required fields: iso_path"))?,
            os_type: s.str("iso_os_type"),
        },
        "template" => CreateSource::Template {
            id: GuestId::new(
                s.str("template_id").ok_or_else(|| Error::invalid("Missing required fields: template_id"))?,
            ),
            full: s.bool_or("is_full_clone", false)?,
        },
        _ => return Err(Error::invalid("template_type must be 'template' or 'iso'")),
    };
    let network = s.str_any(&["network_bridge", "network"]);
    Ok(CreateSpec {
        name,
        key: key.to_string(),
        source,
        cpus: ctx.payload.cpus(),
        memory_mb: ctx.payload.memory_mb(),
        disk_size_gb: s.u64("disk_size_gb")?,
        storage: s.str("storage"),
        nics: ctx.payload.nics(network.as_deref())?,
    })
}

/// Time kept back from the create wait for cleaning up a half-made guest.
fn cleanup_reserve(remaining: Duration) -> Duration {
    (remaining / 5).min(Duration::from_secs(60))
}

/// `create`: create and power on, idempotent per internal name; on failure (including
/// running out of time) the half-made guest is deleted before we answer.
pub async fn create(ctx: &Ctx) -> Result<Reply> {
    let key = ctx.internal_name()?;
    if let Some(existing) = ctx.resolve().await? {
        tracing::info!(guest = %existing.id, "create: guest exists, converging");
        let task = ctx.driver.power(&existing.id, PowerAction::Start).await?;
        ctx.wait(&task).await.map_err(|e| e.context(format!("Failed to start instance {key}")))?;
        return Ok(Reply::success("Instance created"));
    }
    let spec = create_spec(ctx, &key)?;
    let reserve = cleanup_reserve(ctx.remaining());
    let made: std::sync::Mutex<Option<GuestId>> = std::sync::Mutex::new(None);
    let outcome = async {
        let started = ctx.driver.create_guest(&spec).await?;
        if let Ok(mut m) = made.lock() {
            m.clone_from(&started.new_guest);
        }
        let budget = ctx.remaining().saturating_sub(reserve);
        let out = ctx.wait_for(&started.task, budget).await?;
        let id = out.new_guest.or(started.new_guest);
        if let Some(id) = id {
            // The driver powers new guests on; make sure (idempotent).
            let task = ctx.driver.power(&id, PowerAction::Start).await?;
            ctx.wait_for(&task, ctx.remaining().saturating_sub(reserve)).await?;
        }
        Ok::<_, Error>(())
    }
    .await;
    match outcome {
        Ok(()) => Ok(Reply::success("Instance created")),
        Err(e) => {
            let id = made.lock().ok().and_then(|m| m.clone());
            cleanup(ctx, &key, id).await;
            Err(e.context(format!("Failed to create instance {key}")))
        }
    }
}

/// Best-effort removal of whatever a failed create left behind (bounded by the deadline).
async fn cleanup(ctx: &Ctx, key: &str, made: Option<GuestId>) {
    let result = async {
        let found = ctx.driver.find_by_key(key).await?.map(|g| g.id).or(made);
        if let Some(id) = found {
            let task = ctx.driver.delete_guest(&id).await?;
            ctx.wait(&task).await?;
        }
        Ok::<_, Error>(())
    };
    match tokio::time::timeout(ctx.remaining(), result).await {
        Ok(Ok(())) => tracing::info!(key, "create: cleaned up"),
        Ok(Err(e)) => tracing::warn!(key, message = e.message(), "create: cleanup failed"),
        Err(_) => tracing::warn!(key, "create: cleanup ran out of time"),
    }
}

/// `start`: power on (resumes a paused guest).
pub async fn start(ctx: &Ctx) -> Result<Reply> {
    let g = require(ctx).await?;
    let task = ctx.driver.power(&g, PowerAction::Start).await?;
    ctx.wait(&task).await?;
    Ok(Reply::success("Instance started"))
}

/// `stop`: hard power off; an absent guest is success.
pub async fn stop(ctx: &Ctx) -> Result<Reply> {
    let Some(g) = ctx.resolve().await? else { return Ok(Reply::success("Instance stopped")) };
    let task = ctx.driver.power(&g.id, PowerAction::Stop).await?;
    ctx.wait(&task).await?;
    Ok(Reply::success("Instance stopped"))
}

/// `reboot`: a stopped guest is started instead (CloudStack expects it running after).
pub async fn reboot(ctx: &Ctx) -> Result<Reply> {
    let Some(g) = ctx.resolve().await? else { return Err(not_found(ctx)) };
    let action = if g.power.is_on() { PowerAction::Reboot } else { PowerAction::Start };
    let task = ctx.driver.power(&g.id, action).await?;
    ctx.wait(&task).await?;
    Ok(Reply::success("Instance rebooted"))
}

/// `delete`: removes the guest and its disks; an absent guest is success.
pub async fn delete(ctx: &Ctx) -> Result<Reply> {
    let Some(g) = ctx.resolve().await? else { return Ok(Reply::success("Instance deleted")) };
    let task = ctx.driver.delete_guest(&g.id).await?;
    ctx.wait(&task).await?;
    Ok(Reply::success("Instance deleted"))
}

/// The backend id of the VM, or a not-found error.
pub async fn require(ctx: &Ctx) -> Result<GuestId> {
    ctx.resolve().await?.map(|g| g.id).ok_or_else(|| not_found(ctx))
}

fn not_found(ctx: &Ctx) -> Error {
    Error::not_found(format!("Instance {}", ctx.payload.internal_name().unwrap_or_default()))
}
