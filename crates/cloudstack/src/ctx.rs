//! Everything one action needs: the driver, the merged settings, the payload, the
//! deadline; plus finding the backend guest of the CloudStack VM.

use crate::payload::Payload;
use polyvisor_core::{task, Driver, Error, ErrorKind, GuestId, GuestSummary, Result, Settings, TaskId, TaskOutput};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The detail under which `prepare` reports the backend id (`External:` makes CloudStack
/// hand it back in `externaldetails.virtualmachine`).
pub const VM_ID_DETAIL: &str = "polyvisor_vm_id";

/// The opt-in setting that lets actions adopt existing keyless VMs (off by default).
pub const IMPORT_SETTING: &str = "import_existing_vms";

/// Longest internal name / remembered id we accept (CloudStack names are far shorter).
pub const MAX_ID_CHARS: usize = 255;

/// A value as echoed in a message: at most 64 characters, then `…`.
pub fn shown(value: &str) -> String {
    const MAX: usize = 64;
    if value.chars().count() <= MAX {
        value.to_string()
    } else {
        format!("{}…", value.chars().take(MAX).collect::<String>())
    }
}

/// One action's context.
pub struct Ctx {
    /// The backend.
    pub driver: Arc<dyn Driver>,
    /// Merged settings (see [`crate::config`]).
    pub settings: Settings,
    /// The payload.
    pub payload: Payload,
    /// When the whole run must be over (a safety margin before CloudStack's SIGKILL).
    pub deadline: Instant,
}

impl Ctx {
    /// The CloudStack internal name, required by every VM action.
    /// At most [`MAX_ID_CHARS`] printable characters; an invalid one is refused with a
    /// capped echo.
    pub fn internal_name(&self) -> Result<String> {
        let name = self
            .payload
            .internal_name()
            .ok_or_else(|| Error::invalid("Missing required fields: virtualmachinename"))?;
        if name.chars().count() > MAX_ID_CHARS || name.chars().any(char::is_control) {
            return Err(Error::invalid(format!(
                "virtualmachinename must be 1-{MAX_ID_CHARS} printable characters (got {})",
                shown(&name)
            )));
        }
        Ok(name)
    }

    /// Time left before the deadline.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// How often to poll the driver's tasks.
    pub fn poll(&self) -> Duration {
        let secs = u64::from(self.driver.capabilities().task_poll_secs);
        Duration::from_millis((secs * 1000).clamp(100, 1000))
    }

    /// Waits for a driver task, at most `budget` (and never past the deadline).
    pub async fn wait_for(&self, task: &TaskId, budget: Duration) -> Result<TaskOutput> {
        task::wait(self.driver.as_ref(), task, budget.min(self.remaining()), self.poll()).await
    }

    /// Waits for a driver task until the deadline.
    pub async fn wait(&self, task: &TaskId) -> Result<TaskOutput> {
        self.wait_for(task, self.remaining()).await
    }

    /// The backend id CloudStack kept for us: under the driver's own detail
    /// ([`Driver::id_hint_detail`], which our `prepare` reports for drivers that allocate
    /// ids up front, e.g. the built-in Proxmox extension's), else `polyvisor_vm_id`. Read
    /// from `externaldetails` (an `External:` detail) or the VM's details map. Only a
    /// lookup hint, never proof of ownership.
    pub fn hint(&self) -> Option<GuestId> {
        let driver_detail = self.driver.id_hint_detail();
        let read = |detail: &str| self.settings.str(detail).or_else(|| self.payload.vm_detail(detail));
        driver_detail
            .and_then(read)
            .or_else(|| read(VM_ID_DETAIL))
            .filter(|id| id.len() <= MAX_ID_CHARS)
            .map(GuestId::new)
    }

    /// Whether the operator opted in to importing existing VMs (`import_existing_vms`).
    pub fn import_enabled(&self) -> Result<bool> {
        self.settings.bool_or(IMPORT_SETTING, false)
    }

    /// The backend guest polyvisor owns for this CloudStack VM, if any: the guest carrying
    /// the internal name as its ownership key (stored at create), looked up at the
    /// remembered id first ([`Driver::find_owned`]). A guest without our key is never
    /// returned, whatever its name or id; templates never match. Read-only.
    pub async fn resolve(&self) -> Result<Option<GuestSummary>> {
        let key = self.internal_name()?;
        self.driver.find_owned(&key, self.hint().as_ref()).await
    }

    /// Like [`Ctx::resolve`], for actions that act on the VM: with the explicit opt-in
    /// `import_existing_vms=true`, a keyless guest named exactly like `vm_name` (or at the
    /// remembered id) is adopted first by writing our key onto it. Off by default.
    pub async fn resolve_for_action(&self) -> Result<Option<GuestSummary>> {
        if let Some(g) = self.resolve().await? {
            return Ok(Some(g));
        }
        if !self.import_enabled()? {
            return Ok(None);
        }
        let key = self.internal_name()?;
        let Some(candidate) = self.import_candidate().await? else { return Ok(None) };
        tracing::info!(guest = %candidate.id, key, "import_existing_vms: adopting a keyless guest");
        self.driver.adopt_guest(&candidate.id, &key).await?;
        self.driver.find_owned(&key, Some(&candidate.id)).await
    }

    /// The keyless, non-template guest an import would adopt: the one at the remembered id,
    /// else the only one named exactly like `vm_name`.
    async fn import_candidate(&self) -> Result<Option<GuestSummary>> {
        if let Some(id) = self.hint() {
            match self.driver.get_guest(&id).await {
                Ok(g) if g.key.is_none() && !g.is_template => return Ok(Some(g.summary())),
                Ok(_) => {}
                Err(e) if e.is_not_found() || e.kind() == ErrorKind::InvalidInput => {}
                Err(e) => return Err(e),
            }
        }
        let Some(name) = self.vm_name() else { return Ok(None) };
        let mut named: Vec<GuestSummary> = self
            .driver
            .list_guests()
            .await?
            .into_iter()
            .filter(|g| g.key.is_none() && !g.is_template && g.name == name)
            .collect();
        match named.len() {
            0 => Ok(None),
            1 => Ok(named.pop()),
            n => Err(Error::conflict(format!(
                "import_existing_vms: {n} guests are named {name}; cannot tell which one to adopt"
            ))),
        }
    }

    /// For `prepare`/`create` of a guest named `name`: the guest we own (after the opt-in
    /// import, as [`Ctx::resolve_for_action`]), else `None` when `name` is free. A guest
    /// named `name` that we do not own (no key, or another VM's key) is an `AlreadyExists`
    /// error naming it: `create` never takes over a foreign VM. One listing (it shows every
    /// guest with its key, the remembered id's included); the driver's own lookup
    /// ([`Driver::find_owned`], which also knows half-made guests) only when a guest of
    /// that name shows no key.
    pub async fn resolve_for_create(&self, name: &str) -> Result<Option<GuestSummary>> {
        let key = self.internal_name()?;
        let all = self.driver.list_guests().await?;
        if let Some(g) = all.iter().find(|g| g.key.as_deref() == Some(key.as_str()) && !g.is_template) {
            return Ok(Some(g.clone()));
        }
        if all.iter().any(|g| g.name == name && g.key.is_none()) {
            if let Some(g) = self.driver.find_owned(&key, self.hint().as_ref()).await? {
                return Ok(Some(g));
            }
        }
        if self.import_enabled()? {
            if let Some(g) = self.resolve_for_action().await? {
                return Ok(Some(g));
            }
        }
        match all.iter().find(|g| g.name == name) {
            None => Ok(None),
            Some(g) => {
                let whose = match &g.key {
                    None => "carries no polyvisor ownership key".to_string(),
                    Some(k) => format!("belongs to CloudStack VM {}", shown(k)),
                };
                Err(Error::already_exists(format!(
                    "a VM named {} already exists on the backend ([{}]) and {whose}; polyvisor never takes over a VM \
                     it did not create: choose another vm_name, or set {IMPORT_SETTING}=true to adopt keyless VMs",
                    shown(name),
                    shown(g.id.as_str())
                )))
            }
        }
    }

    /// The backend name requested by `vm_name` (`[a-zA-Z0-9-]+`), when valid.
    pub fn vm_name(&self) -> Option<String> {
        self.settings.str("vm_name").filter(|n| valid_vm_name(n))
    }
}

/// The built-ins' rule for `vm_name`: `^[a-zA-Z0-9-]+$`, at most 63 characters.
pub fn valid_vm_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 63 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}
