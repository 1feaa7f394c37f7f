//! The one async `Driver` trait every hypervisor backend implements, and the factory that
//! turns platform settings into a connected driver.
//!
//! Contract for every method (unless its doc says otherwise):
//! - **Bounded**: returns within a few seconds (drivers bound every backend call). Work
//!   that takes longer returns a [`TaskId`] advanced by [`Driver::task_status`].
//! - **Stateless**: a driver keeps no state between calls that another process would
//!   need; caches are allowed only if they are refreshed on a miss and never decide a
//!   result that the hypervisor could contradict.
//! - **Cancel-safe**: a caller may drop the future (e.g. on a platform timeout); the
//!   hypervisor is then left as a retry of the same call expects it.
//! - **Idempotent where marked**: retries of the same request are harmless.
//! - Errors carry an external message without secrets (see [`crate::Error`]).

use crate::caps::Capabilities;
use crate::console::Console;
use crate::error::{Error, Result};
use crate::model::{Guest, GuestId, GuestSummary, PowerAction};
use crate::settings::Settings;
use crate::spec::{CloneSpec, CreateSpec, Snapshot, SnapshotSpec};
use crate::task::{CloneStarted, TaskId, TaskStatus};
use async_trait::async_trait;
use std::sync::Arc;

/// A hypervisor backend.
#[async_trait]
pub trait Driver: Send + Sync {
    /// Human name used as the message prefix on platforms (`"Proxmox"`, `"Sim"`, `"libvirt"`).
    fn display_name(&self) -> &str;

    /// What this driver (as configured) can do. Cheap; no I/O.
    fn capabilities(&self) -> Capabilities;

    /// Checks that the backend is reachable and the credentials work; returns a short
    /// description such as `"Proxmox VE 8.2.4 at pve.lab:8006"`. Idempotent.
    async fn probe(&self) -> Result<String>;

    /// Every guest, templates included, in-progress clones that do not yet carry their
    /// final name excluded. Idempotent.
    async fn list_guests(&self) -> Result<Vec<GuestSummary>>;

    /// One guest in full; [`crate::ErrorKind::NotFound`] if absent. Idempotent.
    async fn get_guest(&self, id: &GuestId) -> Result<Guest>;

    /// The guest carrying the platform key `key` (see [`CreateSpec::key`]), if any.
    /// Default: scan [`Driver::list_guests`].
    async fn find_by_key(&self, key: &str) -> Result<Option<GuestSummary>> {
        Ok(self.list_guests().await?.into_iter().find(|g| g.key.as_deref() == Some(key)))
    }

    /// The guest polyvisor owns under platform key `key`, looked up first at `hint` (a
    /// backend id the platform remembered for that key, e.g. the id `prepare` reported),
    /// then by key. Ownership is decided by the key stored on the guest alone: a guest at
    /// `hint` that carries no key or another key is never returned, and names never match.
    /// Templates are never returned. Drivers override it to answer in fewer round trips.
    async fn find_owned(&self, key: &str, hint: Option<&GuestId>) -> Result<Option<GuestSummary>> {
        if let Some(id) = hint {
            match self.get_guest(id).await {
                Ok(g) if g.key.as_deref() == Some(key) && !g.is_template => return Ok(Some(g.summary())),
                Ok(_) => {}
                Err(e) if e.is_not_found() || e.kind() == crate::ErrorKind::InvalidInput => {}
                Err(e) => return Err(e),
            }
        }
        Ok(self.find_by_key(key).await?.filter(|g| !g.is_template))
    }

    /// Submits a power action and returns without waiting for the transition (the task
    /// tracks it). Idempotent: start on a running guest, stop on a stopped one succeed;
    /// start on a paused guest resumes it.
    async fn power(&self, id: &GuestId, action: PowerAction) -> Result<TaskId>;

    /// Deletes a guest and the disks polyvisor created for it, stopping it first.
    /// Idempotent: a missing guest is success (an already-completed task).
    async fn delete_guest(&self, id: &GuestId) -> Result<TaskId>;

    /// Marks a guest as template or back as VM. Idempotent (converting to the current
    /// state succeeds). Never destroys snapshots.
    async fn set_template(&self, id: &GuestId, is_template: bool) -> Result<TaskId>;

    /// Clones a guest. The task's output carries the new guest id. A retry with the same
    /// name and source adopts the earlier clone instead of duplicating it.
    async fn clone_guest(&self, spec: &CloneSpec) -> Result<CloneStarted> {
        let _ = spec;
        Err(Error::unsupported("clone"))
    }

    /// Creates and powers on a guest (CloudStack `create`). The driver owns the whole
    /// create: the task completes only when the guest matches the spec (CPU, memory, NICs
    /// with MACs and VLANs, ownership key) and is powered on; on failure it cleans up.
    /// Converging per [`CreateSpec::key`]: the key is on the guest from the first backend
    /// request, and a retry finishes (or redoes) a half-made guest instead of adopting it.
    async fn create_guest(&self, spec: &CreateSpec) -> Result<CloneStarted> {
        let _ = spec;
        Err(Error::unsupported("create"))
    }

    /// Snapshots of a guest (oldest first). Idempotent.
    async fn list_snapshots(&self, id: &GuestId) -> Result<Vec<Snapshot>> {
        let _ = id;
        Err(Error::unsupported("snapshots"))
    }

    /// Whether a snapshot of that name exists. Default: scan [`Driver::list_snapshots`].
    async fn snapshot_exists(&self, id: &GuestId, name: &str) -> Result<bool> {
        Ok(self.list_snapshots(id).await?.iter().any(|s| s.name == name))
    }

    /// Creates a snapshot; an existing one of the same name is replaced (delete then
    /// create, driven asynchronously by the task). Idempotent.
    async fn create_snapshot(&self, id: &GuestId, spec: &SnapshotSpec) -> Result<TaskId> {
        let _ = (id, spec);
        Err(Error::unsupported("snapshot create"))
    }

    /// Reverts to a snapshot; [`crate::ErrorKind::NotFound`] if it does not exist.
    async fn revert_snapshot(&self, id: &GuestId, name: &str) -> Result<TaskId> {
        let _ = (id, name);
        Err(Error::unsupported("snapshot revert"))
    }

    /// Deletes a snapshot. Idempotent: a missing snapshot is an already-completed task.
    async fn delete_snapshot(&self, id: &GuestId, name: &str) -> Result<TaskId> {
        let _ = (id, name);
        Err(Error::unsupported("snapshot delete"))
    }

    /// The state of a task this driver (in any process) issued; may advance chained
    /// steps. [`crate::ErrorKind::UnknownTask`] for ids it did not issue. Idempotent.
    async fn task_status(&self, id: &TaskId) -> Result<TaskStatus>;

    /// Console details for a running guest.
    async fn console(&self, id: &GuestId) -> Result<Console> {
        let _ = id;
        Err(Error::unsupported("console"))
    }
}

/// Opens a connected driver from platform settings (`driver` key selects the backend,
/// default `sim`). Fronts hold one of these and never name a driver themselves.
#[async_trait]
pub trait DriverFactory: Send + Sync {
    /// Builds the driver the settings select. Fails with `InvalidInput` for bad settings
    /// (message names the key, never a value). Does not contact the backend; call
    /// [`Driver::probe`] for that.
    async fn open(&self, settings: &Settings) -> Result<Arc<dyn Driver>>;

    /// The capabilities of the driver the settings select, without needing credentials
    /// (platforms such as RAS ask for capabilities before they send settings). The
    /// default opens the driver and asks it; registries override it for drivers whose
    /// `open` requires connection settings.
    async fn capabilities(&self, settings: &Settings) -> Result<Capabilities> {
        Ok(self.open(settings).await?.capabilities())
    }

    /// Names of the drivers this build contains.
    fn driver_names(&self) -> Vec<&'static str>;
}
