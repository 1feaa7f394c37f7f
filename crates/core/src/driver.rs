//! The one async `Driver` trait every hypervisor backend implements, and the factory that
//! turns platform settings into a connected driver.
//!
//! Contract for every method (unless its doc says otherwise):
//! - **Bounded**: returns within a few seconds (drivers bound every backend call). Work
//!   that takes longer returns a [`TaskId`] advanced by [`Driver::task_status`] (which
//!   decodes the id and calls the driver's [`Driver::advance_task`] hook).
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
use crate::model::{Guest, GuestId, GuestSummary, Nic, PowerAction};
use crate::netops::{SecurityRule, Subnet, SubnetSpec, VlanAttach};
use crate::settings::Settings;
use crate::spec::{CloneSpec, CreateSpec, Snapshot, SnapshotSpec};
use crate::task::{self, CloneStarted, TaskId, TaskStatus, TaskToken};
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

    /// Writes platform key `key` onto an existing guest that carries no key (an explicit,
    /// operator-requested import of a VM polyvisor did not create). Idempotent for the same
    /// key; [`crate::ErrorKind::Conflict`] when the guest carries another key or is a
    /// template. Default: unsupported.
    async fn adopt_guest(&self, id: &GuestId, key: &str) -> Result<()> {
        let _ = (id, key);
        Err(Error::unsupported("importing existing guests"))
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

    /// Creates a guest and powers it on (CloudStack `create`). The task owns every step
    /// (disk/clone, CPU, memory, NICs with MACs and VLANs, the key, power-on) and completes
    /// only when the guest matches the spec and is powered on; the driver cleans up its own
    /// failures where it can. A retry with the same [`CreateSpec::key`] finds a guest left
    /// half-made (by a lost connection or a killed process) by its key and finishes or
    /// redoes every step (the key is on the guest from the first backend request); it never reports success for a guest that differs from the spec.
    /// A guest of that name without the key is never adopted (`AlreadyExists`).
    async fn create_guest(&self, spec: &CreateSpec) -> Result<CloneStarted> {
        let _ = spec;
        Err(Error::unsupported("create"))
    }

    /// The platform detail under which this driver wants the backend id of a guest it is
    /// about to create remembered (e.g. Proxmox `proxmox_vmid`, as CloudStack's built-in
    /// extension names it), when it allocates ids up front ([`Driver::allocate_id_hint`]).
    /// Fronts store the value under this name and hand it back as the `hint` of
    /// [`Driver::find_owned`] and [`Driver::create_guest_at`]; they never interpret it.
    /// Default: `None` (the driver allocates no ids up front). No I/O.
    fn id_hint_detail(&self) -> Option<&'static str> {
        None
    }

    /// A backend id for a guest about to be created (CloudStack `prepare`), not reserved:
    /// only a hint that [`Driver::create_guest_at`] tries first. It never proves ownership
    /// (the key does), and a create whose hinted id got taken meanwhile uses another id.
    /// Default: `None`. Drivers that override it also override [`Driver::id_hint_detail`].
    async fn allocate_id_hint(&self) -> Result<Option<GuestId>> {
        Ok(None)
    }

    /// [`Driver::create_guest`] with the id hint an earlier [`Driver::allocate_id_hint`]
    /// gave (the guest is created there when that id is still free; a guest already
    /// carrying the key is converged wherever it is). Same contract as `create_guest`.
    /// Default: ignores the hint.
    async fn create_guest_at(&self, spec: &CreateSpec, hint: Option<&GuestId>) -> Result<CloneStarted> {
        let _ = hint;
        self.create_guest(spec).await
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
    ///
    /// Provided; drivers implement [`Driver::advance_task`] instead. The prologue every
    /// driver shares lives here, once: decode the [`TaskToken`] (a foreign id is
    /// `UnknownTask`), answer [`task::completed`] ids without the backend, fail tokens past
    /// their max age with "Task timed out" ([`task::timed_out`]), and only then ask the hook.
    async fn task_status(&self, id: &TaskId) -> Result<TaskStatus> {
        let token = TaskToken::decode(id)?;
        if let Some(done) = task::completed_status(&token) {
            return Ok(done);
        }
        if token.expired() {
            return Ok(task::timed_out());
        }
        self.advance_task(&token).await
    }

    /// The per-driver task hook behind [`Driver::task_status`]: the state of a decoded,
    /// unexpired token that is not an already-completed (`done`) task; may advance chained
    /// steps. Kinds or bodies this driver did not issue are
    /// [`crate::ErrorKind::UnknownTask`] (see [`TaskToken::unknown`]). Idempotent.
    async fn advance_task(&self, token: &TaskToken) -> Result<TaskStatus>;

    /// Console details for a running guest.
    async fn console(&self, id: &GuestId) -> Result<Console> {
        let _ = id;
        Err(Error::unsupported("console"))
    }

    // --- Process end (issue 14: logout at exit) -------------------------------------------

    /// Called by a front once, when its process is about to end (CloudStack: after its one
    /// action; RAS: at stdin EOF or `provider/disconnect`), to release backend sessions
    /// (e.g. an XAPI `session.logout`). Best effort and bounded by the caller: a driver logs
    /// what it could not release and never fails the front. A driver must not release
    /// anything a task id it handed out still needs in a later process. The driver is not
    /// used after `close`. Provided: no-op.
    async fn close(&self) {}

    // --- Guest networking (CloudShell L2/L3; see `crate::netops`). Drivers that override
    // these declare it in `Capabilities::networking`.

    /// L2: puts a NIC of the guest on VLAN `req.vlan` and returns that NIC (its MAC
    /// identifies it later). With `req.nic_index` the NIC at that index is retagged;
    /// otherwise a NIC already on that VLAN is reused, else a new NIC is added.
    /// Idempotent.
    async fn attach_vlan(&self, id: &GuestId, req: &VlanAttach) -> Result<Nic> {
        let _ = (id, req);
        Err(Error::unsupported("VLAN NICs"))
    }

    /// L2: takes the NIC with MAC `mac` off its VLAN (removes a NIC that
    /// [`Driver::attach_vlan`] added; clears the tag of a retagged one). A NIC that no longer
    /// exists is success. Idempotent.
    async fn detach_vlan(&self, id: &GuestId, mac: &str) -> Result<()> {
        let _ = (id, mac);
        Err(Error::unsupported("VLAN NICs"))
    }

    /// L3: the subnet `(spec.owner, spec.alias)`, created if missing (get-or-create;
    /// a retry returns the same subnet). Idempotent.
    async fn ensure_subnet(&self, spec: &SubnetSpec) -> Result<Subnet> {
        let _ = spec;
        Err(Error::unsupported("subnets"))
    }

    /// L3: connects the guest to subnet `subnet_id` (a new NIC) and returns that NIC; a
    /// guest already on that subnet gets its existing NIC back. Idempotent.
    async fn connect_subnet(&self, id: &GuestId, subnet_id: &str) -> Result<Nic> {
        let _ = (id, subnet_id);
        Err(Error::unsupported("subnets"))
    }

    /// L3: deletes every subnet created for `owner` (their rules included); returns how many
    /// were removed. Nothing left is success. Idempotent.
    async fn delete_subnets(&self, owner: &str) -> Result<usize> {
        let _ = owner;
        Err(Error::unsupported("subnets"))
    }

    /// Replaces the inbound security rules of subnet `subnet_id` as seen by guest `id`.
    /// Idempotent.
    async fn set_security_rules(&self, id: &GuestId, subnet_id: &str, rules: &[SecurityRule]) -> Result<()> {
        let _ = (id, subnet_id, rules);
        Err(Error::unsupported("security groups"))
    }

    // --- Events and metrics (issue 12, ManageIQ front; see `crate::events`) ---

    /// Events since `cursor` (oldest first) and the cursor to ask with next; with no
    /// cursor, no events and a cursor for "now". Each event carries the cursor that resumes
    /// right after it, so a restarted caller neither loses nor repeats events. Bounded
    /// (one poll, never a wait). Default: the core poll-and-diff fallback
    /// ([`crate::events::poll_diff`], snapshot changes included when
    /// [`Capabilities::snapshots`] is set); drivers with an event source override it and
    /// set [`Capabilities::native_events`].
    async fn events_since(&self, cursor: Option<&crate::events::EventCursor>) -> Result<crate::events::EventBatch> {
        crate::events::poll_diff(self, cursor, self.capabilities().snapshots).await
    }

    /// Full records of the guests `ids`, in that order, each with its snapshots where the
    /// guest can have any ([`Capabilities::snapshots`]; native templates carry none); ids
    /// that are gone by the time they are read are left out. Inventory (ManageIQ refresh)
    /// reads through this. Provided: [`Driver::get_guest`] and [`Driver::list_snapshots`]
    /// per id, [`READ_CONCURRENCY`] guests at a time (a remote backend's round trips
    /// overlap; the order of the answer is the order asked); a driver that can read many at
    /// once (one transaction, one listing call) overrides it.
    async fn read_guests(&self, ids: &[GuestId]) -> Result<Vec<(Guest, Vec<Snapshot>)>> {
        use futures_util::stream::{self, StreamExt, TryStreamExt};
        let caps = self.capabilities();
        let caps = &caps;
        // Owned ids: a future borrowing the slice item trips the Send check of async-trait.
        let read: Vec<Option<(Guest, Vec<Snapshot>)>> = stream::iter(ids.iter().cloned())
            .map(|id| read_one(self, caps, id))
            .buffered(READ_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(read.into_iter().flatten().collect())
    }

    /// Waits until the backend reports a change that [`Driver::events_since`] may see, or
    /// `max` passes, whichever comes first (a following event stream calls it between polls).
    /// Drivers with a push source return early and set [`Capabilities::event_wakeup`]; an
    /// early return without a change is harmless (the next poll finds nothing new).
    /// Provided: sleeps `max`.
    async fn wait_for_change(&self, max: std::time::Duration) {
        tokio::time::sleep(max).await
    }

    /// Usage samples of guest `id` between `start` and `end` (unix seconds), one per
    /// `interval` step, oldest first; only where [`Capabilities::metrics`] is true.
    /// Default: unsupported.
    async fn metrics(
        &self,
        id: &GuestId,
        start: u64,
        end: u64,
        interval: crate::events::MetricsInterval,
    ) -> Result<Vec<crate::events::MetricSample>> {
        let _ = (id, start, end, interval);
        Err(Error::unsupported("metrics"))
    }
}

/// How many guests the provided [`Driver::read_guests`] reads at a time.
pub const READ_CONCURRENCY: usize = 8;

/// One guest of [`Driver::read_guests`]: its record and snapshots; `None` when it is gone.
async fn read_one<D: Driver + ?Sized>(
    d: &D,
    caps: &Capabilities,
    id: GuestId,
) -> Result<Option<(Guest, Vec<Snapshot>)>> {
    let g = match d.get_guest(&id).await {
        Ok(g) => g,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e),
    };
    if !caps.has_snapshots(&g) {
        return Ok(Some((g, Vec::new())));
    }
    match d.list_snapshots(&id).await {
        Ok(s) => Ok(Some((g, s))),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Which template implementation a front would like, for drivers that offer both
/// (see [`crate::TemplateStrategy`]). A preference, not a demand: a driver with one
/// strategy ignores it, and a driver setting the operator gave explicitly (e.g. Proxmox
/// `template_mode`) wins over it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TemplatePreference {
    /// No preference: the driver's default.
    #[default]
    DriverDefault,
    /// Real hypervisor templates (linked clones from them; RAS's link-clone level).
    Native,
    /// Flagged ordinary guests that keep their snapshots (RAS's versioning level).
    Flag,
}

/// Typed options a front passes to [`DriverFactory::open`] and
/// [`DriverFactory::capabilities`], next to the operator's untyped [`Settings`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OpenOptions {
    /// The template implementation the front's configured level needs.
    pub templates: TemplatePreference,
}

impl OpenOptions {
    /// Options with a template preference.
    pub fn with_templates(templates: TemplatePreference) -> Self {
        OpenOptions { templates }
    }
}

/// Opens a connected driver from platform settings (`driver` key selects the backend,
/// default `sim`). Fronts hold one of these and never name a driver themselves.
#[async_trait]
pub trait DriverFactory: Send + Sync {
    /// Builds the driver the settings select. Fails with `InvalidInput` for bad settings
    /// (message names the key, never a value). Does not contact the backend; call
    /// [`Driver::probe`] for that.
    async fn open(&self, settings: &Settings, opts: &OpenOptions) -> Result<Arc<dyn Driver>>;

    /// The capabilities of the driver the settings and options select, without needing
    /// credentials or touching the backend (platforms such as RAS ask for capabilities
    /// before they send settings; `cloudstack install` asks before any host is known).
    /// Equal to `open(settings, opts)?.capabilities()` whenever `open` succeeds. The
    /// default opens the driver and asks it; registries override it.
    async fn capabilities(&self, settings: &Settings, opts: &OpenOptions) -> Result<Capabilities> {
        Ok(self.open(settings, opts).await?.capabilities())
    }

    /// Names of the drivers this build contains.
    fn driver_names(&self) -> Vec<&'static str>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{completed, TaskOutput};
    use crate::ErrorKind;
    use serde_json::json;
    use std::sync::Mutex;

    /// A driver whose hook records the tokens it was asked about.
    #[derive(Default)]
    struct Hooked {
        seen: Mutex<Vec<TaskToken>>,
    }

    #[async_trait]
    impl Driver for Hooked {
        fn display_name(&self) -> &str {
            "Hooked"
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities::default()
        }
        async fn probe(&self) -> Result<String> {
            Ok("hooked".into())
        }
        async fn list_guests(&self) -> Result<Vec<GuestSummary>> {
            Ok(Vec::new())
        }
        async fn get_guest(&self, id: &GuestId) -> Result<Guest> {
            Err(Error::not_found(format!("guest [{id}]")))
        }
        async fn power(&self, _id: &GuestId, _action: PowerAction) -> Result<TaskId> {
            Err(Error::unsupported("power"))
        }
        async fn delete_guest(&self, _id: &GuestId) -> Result<TaskId> {
            Err(Error::unsupported("delete"))
        }
        async fn set_template(&self, _id: &GuestId, _is_template: bool) -> Result<TaskId> {
            Err(Error::unsupported("convert"))
        }
        async fn advance_task(&self, token: &TaskToken) -> Result<TaskStatus> {
            self.seen.lock().unwrap().push(token.clone());
            match token.kind.as_str() {
                "hk-run" => Ok(TaskStatus::Running),
                _ => Err(token.unknown()),
            }
        }
    }

    /// A remote-like driver: every read takes 20 ms; counts reads in flight. Guests whose
    /// id starts with `gone` are not found; `t*` are flagged templates with snapshots.
    #[derive(Default)]
    struct Slow {
        in_flight: std::sync::atomic::AtomicUsize,
        most: std::sync::atomic::AtomicUsize,
    }

    #[async_trait]
    impl Driver for Slow {
        fn display_name(&self) -> &str {
            "Slow"
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities { snapshots: true, templates: crate::TemplateStrategy::Flag, ..Capabilities::default() }
        }
        async fn probe(&self) -> Result<String> {
            Ok("slow".into())
        }
        async fn list_guests(&self) -> Result<Vec<GuestSummary>> {
            Ok(Vec::new())
        }
        async fn get_guest(&self, id: &GuestId) -> Result<Guest> {
            use std::sync::atomic::Ordering::SeqCst;
            let now = self.in_flight.fetch_add(1, SeqCst) + 1;
            self.most.fetch_max(now, SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            self.in_flight.fetch_sub(1, SeqCst);
            if id.as_str().starts_with("gone") {
                return Err(Error::not_found(format!("guest [{id}]")));
            }
            Ok(Guest {
                id: id.clone(),
                name: format!("vm-{id}"),
                node: None,
                os: None,
                cpus: None,
                memory_mb: None,
                nics: Vec::new(),
                is_template: id.as_str().starts_with('t'),
                power: crate::PowerState::PoweredOff,
                raw_power_state: "stopped".into(),
                key: None,
            })
        }
        async fn list_snapshots(&self, id: &GuestId) -> Result<Vec<Snapshot>> {
            Ok(vec![Snapshot {
                name: format!("s-{id}"),
                description: None,
                created_unix: None,
                parent: None,
                includes_memory: false,
            }])
        }
        async fn power(&self, _id: &GuestId, _action: PowerAction) -> Result<TaskId> {
            Err(Error::unsupported("power"))
        }
        async fn delete_guest(&self, _id: &GuestId) -> Result<TaskId> {
            Err(Error::unsupported("delete"))
        }
        async fn set_template(&self, _id: &GuestId, _is_template: bool) -> Result<TaskId> {
            Err(Error::unsupported("convert"))
        }
        async fn advance_task(&self, token: &TaskToken) -> Result<TaskStatus> {
            Err(token.unknown())
        }
    }

    #[tokio::test]
    async fn read_guests_overlaps_reads_keeps_the_order_and_leaves_out_the_gone() {
        let d = Slow::default();
        let ids: Vec<GuestId> =
            (0..40).map(|i| GuestId::new(if i % 10 == 3 { format!("gone{i}") } else { format!("{i}") })).collect();
        let mut ids = ids;
        ids.push(GuestId::new("t1"));
        let got = d.read_guests(&ids).await.unwrap();
        let want: Vec<&str> = ids.iter().map(GuestId::as_str).filter(|i| !i.starts_with("gone")).collect();
        assert_eq!(got.iter().map(|(g, _)| g.id.as_str()).collect::<Vec<_>>(), want);
        assert!(
            got.iter().all(|(g, s)| s.len() == 1 && s[0].name == format!("s-{}", g.id)),
            "snapshots, templates too"
        );
        let most = d.most.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(most, READ_CONCURRENCY, "reads overlap, never more than READ_CONCURRENCY at once");
    }

    impl Hooked {
        fn calls(&self) -> usize {
            self.seen.lock().unwrap().len()
        }
    }

    #[tokio::test]
    async fn task_status_runs_the_prologue_then_the_hook() {
        let d = Hooked::default();
        // A live token of the driver's own kind reaches the hook, decoded.
        let live = TaskToken::new("hk-run", json!({"id": "7"}));
        assert!(matches!(d.task_status(&live.encode()).await.unwrap(), TaskStatus::Running));
        assert_eq!(d.seen.lock().unwrap().as_slice(), std::slice::from_ref(&live));

        // An expired token fails with "Task timed out" without asking the hook.
        let old = TaskToken { created: 1, max_age: 60, ..live.clone() };
        match d.task_status(&old.encode()).await.unwrap() {
            TaskStatus::Failed(e) => {
                assert_eq!(e.kind(), ErrorKind::Timeout);
                assert_eq!(e.message(), "Task timed out");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(d.calls(), 1);

        // An already-completed id answers its output without asking the hook.
        let done = completed("convert", &TaskOutput { new_guest: Some("42".into()) });
        match d.task_status(&done).await.unwrap() {
            TaskStatus::Completed(o) => assert_eq!(o.new_guest.unwrap().as_str(), "42"),
            other => panic!("{other:?}"),
        }
        assert_eq!(d.calls(), 1);

        // Foreign ids are UnknownTask without asking the hook, naming the id.
        for bad in ["", "UPID:pve1:0001:x", "pv1:hk-run:1", "pv1:hk run:1:2:e30"] {
            let e = d.task_status(&TaskId(bad.into())).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::UnknownTask, "{bad}");
        }
        assert_eq!(d.calls(), 1);

        // A well-formed token of a kind the hook does not know: its UnknownTask, echoing the id.
        let other = TaskToken::new("hk-other", json!({})).encode();
        let e = d.task_status(&other).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnknownTask);
        assert_eq!(e.message(), format!("Unknown task id: {other}"));
        assert_eq!(d.calls(), 2);
    }

    #[tokio::test]
    async fn id_hints_default_to_none_and_create_guest_at_is_create_guest() {
        let d = Hooked::default();
        assert_eq!(d.id_hint_detail(), None);
        assert_eq!(d.allocate_id_hint().await.unwrap(), None);
        let spec = CreateSpec {
            name: "vm".into(),
            key: "k".into(),
            source: crate::spec::CreateSource::Template { id: "1".into(), full: false },
            cpus: None,
            memory_mb: None,
            disk_size_gb: None,
            storage: None,
            nics: vec![],
        };
        // Hooked has no create_guest: the hinted variant reaches the same default.
        let e = d.create_guest_at(&spec, Some(&GuestId::new("7"))).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
    }

    #[tokio::test]
    async fn networking_defaults_are_unsupported() {
        let d = Hooked::default();
        let id = GuestId::new("1");
        let vlan = crate::netops::VlanAttach { vlan: 5, ..Default::default() };
        assert_eq!(d.attach_vlan(&id, &vlan).await.unwrap_err().kind(), ErrorKind::Unsupported);
        assert_eq!(d.detach_vlan(&id, "AA:BB:CC:DD:EE:FF").await.unwrap_err().kind(), ErrorKind::Unsupported);
        let spec = SubnetSpec { owner: "r".into(), alias: "a".into(), cidr: "10.0.0.0/24".into(), public: false };
        assert_eq!(d.ensure_subnet(&spec).await.unwrap_err().kind(), ErrorKind::Unsupported);
        assert_eq!(d.connect_subnet(&id, "s").await.unwrap_err().kind(), ErrorKind::Unsupported);
        assert_eq!(d.delete_subnets("r").await.unwrap_err().kind(), ErrorKind::Unsupported);
        assert_eq!(d.set_security_rules(&id, "s", &[]).await.unwrap_err().kind(), ErrorKind::Unsupported);
        assert_eq!(d.capabilities().networking, crate::netops::NetworkCaps::default());
    }

    #[test]
    fn open_options_default_to_no_template_preference() {
        assert_eq!(OpenOptions::default().templates, TemplatePreference::DriverDefault);
        assert_eq!(OpenOptions::with_templates(TemplatePreference::Native).templates, TemplatePreference::Native);
    }
}
