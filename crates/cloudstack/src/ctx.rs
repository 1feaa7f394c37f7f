//! Everything one action needs: the driver, the merged settings, the payload, the
//! deadline; plus finding the backend guest of the CloudStack VM.

use crate::payload::Payload;
use polyvisor_core::{task, Driver, Error, GuestId, GuestSummary, Result, Settings, TaskId, TaskOutput};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The detail under which `prepare` reports the backend id (`External:` makes CloudStack
/// hand it back in `externaldetails.virtualmachine`).
pub const VM_ID_DETAIL: &str = "polyvisor_vm_id";

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
    pub fn internal_name(&self) -> Result<String> {
        self.payload.internal_name().ok_or_else(|| Error::invalid("Missing required fields: virtualmachinename"))
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

    /// The backend guest of this CloudStack VM, if any: by platform key (the internal
    /// name, stored on the guest at create), else by an id CloudStack kept for us
    /// (`polyvisor_vm_id`, the built-in's `proxmox_vmid`) as long as that guest carries
    /// no other VM's key, else (for guests created before polyvisor) a keyless guest
    /// named like the VM. Templates never match.
    pub async fn resolve(&self) -> Result<Option<GuestSummary>> {
        let key = self.internal_name()?;
        if let Some(g) = self.driver.find_by_key(&key).await? {
            return Ok((!g.is_template).then_some(g));
        }
        let remembered = self
            .settings
            .str(VM_ID_DETAIL)
            .or_else(|| self.payload.vm_detail(VM_ID_DETAIL))
            .or_else(|| self.payload.vm_detail("proxmox_vmid"));
        if let Some(id) = remembered {
            match self.driver.get_guest(&GuestId::new(id)).await {
                Ok(g) if !g.is_template && g.key.as_deref().is_none_or(|k| k == key) => return Ok(Some(g.summary())),
                Ok(_) => {}
                Err(e) if e.kind() == polyvisor_core::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let names = [Some(key), self.vm_name()];
        let found = self
            .driver
            .list_guests()
            .await?
            .into_iter()
            .find(|g| g.key.is_none() && !g.is_template && names.iter().flatten().any(|n| *n == g.name));
        Ok(found)
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
