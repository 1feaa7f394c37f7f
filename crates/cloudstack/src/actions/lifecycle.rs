//! `prepare`, `create`, `start`, `stop`, `reboot`, `delete` (spec §4.2-4.4).

use crate::ctx::{shown, valid_vm_name, Ctx, MAX_ID_CHARS, VM_ID_DETAIL};
use crate::output::Reply;
use polyvisor_core::{CreateSource, CreateSpec, Error, ErrorKind, GuestId, PowerAction, Result};
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;

/// `prepare`: validates what `create` will need and returns a details patch.
///
/// - A driver that allocates ids up front ([`polyvisor_core::Driver::id_hint_detail`], e.g.
///   Proxmox `proxmox_vmid`, as CloudStack's built-in extension): the id of the guest we
///   already own at the id CloudStack kept (a re-sent prepare), else a newly allocated id
///   (one backend call), reported under the driver's detail. Nothing is looked up by name
///   here: `create` lists, refuses a foreign guest of the requested name and converges a
///   guest carrying our key before anything is made (prepare is optional anyway).
/// - Otherwise (or with `import_existing_vms`): the owned guest's id as
///   `External:polyvisor_vm_id` (a retried first start) or the key we will store; a
///   foreign guest of the requested name is refused here already.
pub async fn prepare(ctx: &Ctx) -> Result<Reply> {
    let key = ctx.internal_name()?;
    require_create(ctx)?;
    let spec = create_spec(ctx, &key)?;
    let hint_detail = ctx.driver.id_hint_detail();
    let existing = match (hint_detail, ctx.import_enabled()?) {
        (Some(_), false) => match ctx.hint() {
            Some(h) => ctx.driver.find_owned(&key, Some(&h)).await?,
            None => None,
        },
        _ => ctx.resolve_for_create(&spec.name).await?,
    };
    let detail = match (existing, hint_detail) {
        (Some(g), Some(d)) => json!({ d: g.id.as_str() }),
        (Some(g), None) => json!({ format!("External:{VM_ID_DETAIL}"): g.id.as_str() }),
        (None, Some(d)) => match ctx.driver.allocate_id_hint().await? {
            Some(id) => json!({ d: id.as_str() }),
            None => json!({ "External:polyvisor_key": key }),
        },
        (None, None) => json!({ "External:polyvisor_key": key }),
    };
    Ok(Reply::patch(json!({ "details": detail })))
}

/// `Capabilities.create`, or a clear refusal.
fn require_create(ctx: &Ctx) -> Result<()> {
    if ctx.driver.capabilities().create {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Unsupported,
            format!("create is not supported: the {} driver cannot create VMs", ctx.driver.display_name()),
        ))
    }
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
        "template" => {
            let id = s.str("template_id").ok_or_else(|| Error::invalid("Missing required fields: template_id"))?;
            if id.chars().count() > MAX_ID_CHARS || id.chars().any(char::is_control) {
                return Err(Error::invalid(format!(
                    "template_id must be 1-{MAX_ID_CHARS} printable characters (got {})",
                    shown(&id)
                )));
            }
            CreateSource::Template { id: GuestId::new(id), full: s.bool_or("is_full_clone", false)? }
        }
        _ => return Err(Error::invalid("template_type must be 'template' or 'iso'")),
    };
    let network = s.str_any(&["network_bridge", "network"]);
    Ok(CreateSpec {
        name,
        key: key.to_string(),
        source,
        cpus: ctx.payload.cpus()?,
        memory_mb: ctx.payload.memory_mb()?,
        disk_size_gb: s.u64("disk_size_gb")?,
        storage: s.str("storage"),
        nics: ctx.payload.nics(network.as_deref())?,
    })
}

/// Time kept back from the create wait for cleaning up a half-made guest.
fn cleanup_reserve(remaining: Duration) -> Duration {
    (remaining / 5).min(Duration::from_secs(60))
}

/// `create`. One owner: the driver's `create_guest` task does every step (including
/// power-on) and cleans up its own failures; a retry converges the guest that carries our
/// key. This front only validates, always calls `create_guest` (also when the guest
/// exists), waits within its deadline, and deletes the owned half-made guest only when its
/// own deadline runs out.
pub async fn create(ctx: &Ctx) -> Result<Reply> {
    let key = ctx.internal_name()?;
    require_create(ctx)?;
    let spec = create_spec(ctx, &key)?;
    let existing = ctx.resolve_for_create(&spec.name).await?;
    if let Some(g) = &existing {
        tracing::info!(guest = %g.id, "create: guest exists, the driver converges it");
    }
    let reserve = cleanup_reserve(ctx.remaining());
    let budget = ctx.remaining().saturating_sub(reserve);
    let own_deadline = Instant::now() + budget;
    let made: std::sync::Mutex<Option<GuestId>> = std::sync::Mutex::new(existing.map(|g| g.id));
    let outcome = tokio::time::timeout(budget, async {
        // The id `prepare` allocated (a hint: the driver creates there when it is still free).
        let started = ctx.driver.create_guest_at(&spec, ctx.hint().as_ref()).await?;
        if let (Some(id), Ok(mut m)) = (started.new_guest, made.lock()) {
            *m = Some(id);
        }
        ctx.wait_for(&started.task, own_deadline.saturating_duration_since(Instant::now())).await
    })
    .await;
    let out_of_time = Instant::now() >= own_deadline;
    match outcome {
        Ok(Ok(_)) => Ok(Reply::success("Instance created")),
        Ok(Err(e)) if !out_of_time => Err(e.context(format!("Failed to create instance {key}"))),
        Ok(Err(e)) => {
            let id = made.lock().ok().and_then(|m| m.clone());
            cleanup(ctx, &key, id).await;
            Err(e.context(format!("Failed to create instance {key}")))
        }
        Err(_) => {
            let id = made.lock().ok().and_then(|m| m.clone());
            cleanup(ctx, &key, id).await;
            Err(Error::timeout(format!("Failed to create instance {key}: not finished within the timeout")))
        }
    }
}

/// Best-effort removal of the guest we own under `key` after our deadline ran out (bounded
/// by the deadline). `made` is the id the driver reported for this very create (a guest
/// still being made may not be found by key yet).
async fn cleanup(ctx: &Ctx, key: &str, made: Option<GuestId>) {
    let result = async {
        let found = ctx.driver.find_owned(key, made.as_ref()).await?.map(|g| g.id).or(made);
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

/// `stop`: hard power off of the guest we own. No owned guest is success without touching
/// anything (CloudStack sends `stop` after a failed create and before every expunge, and
/// expects success for an absent VM, spec §4.3-4.4); a guest of the same name that lacks
/// our key is never stopped.
pub async fn stop(ctx: &Ctx) -> Result<Reply> {
    let Some(g) = ctx.resolve_for_action().await? else { return Ok(Reply::success("Instance stopped")) };
    let task = ctx.driver.power(&g.id, PowerAction::Stop).await?;
    ctx.wait(&task).await?;
    Ok(Reply::success("Instance stopped"))
}

/// `reboot`: a stopped guest is started instead (CloudStack expects it running after).
pub async fn reboot(ctx: &Ctx) -> Result<Reply> {
    let Some(g) = ctx.resolve_for_action().await? else { return Err(not_found(ctx)) };
    let action = if g.power.is_on() { PowerAction::Reboot } else { PowerAction::Start };
    let task = ctx.driver.power(&g.id, action).await?;
    ctx.wait(&task).await?;
    Ok(Reply::success("Instance rebooted"))
}

/// `delete`: removes the guest we own and its disks; an absent (or foreign) guest is
/// success without touching anything.
pub async fn delete(ctx: &Ctx) -> Result<Reply> {
    let Some(g) = ctx.resolve_for_action().await? else { return Ok(Reply::success("Instance deleted")) };
    let task = ctx.driver.delete_guest(&g.id).await?;
    ctx.wait(&task).await?;
    Ok(Reply::success("Instance deleted"))
}

/// The backend id of the VM we own, or a not-found error.
pub async fn require(ctx: &Ctx) -> Result<GuestId> {
    ctx.resolve_for_action().await?.map(|g| g.id).ok_or_else(|| not_found(ctx))
}

fn not_found(ctx: &Ctx) -> Error {
    Error::not_found(format!(
        "Instance {} (no backend VM carries its polyvisor ownership key)",
        shown(&ctx.payload.internal_name().unwrap_or_default())
    ))
}
