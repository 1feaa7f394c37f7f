//! The in-process fake driver and factory for the fronts' tests (RAS serve loop,
//! CloudStack invocations): guests in a map, tasks that complete at once (or never, or
//! fail, on request), every driver call counted and the interesting ones logged, so tests
//! can assert what reached the backend and that nothing did.
//!
//! Two starting points: [`FakeFactory::new`] (a small estate: VM `101` `win11-gold`
//! running, template `9000`, the slow guest `slow`; completed task ids are *not* resolved
//! by the driver, which proves a front resolves them itself) and [`FakeFactory::empty`]
//! (no guests; completed ids resolved like real drivers do).
//!
//! Special inputs: guest id `panic` panics in `get_guest`, `slow` sleeps 10 s there;
//! snapshot names `pending` / `broken` give a task that never ends / fails; clone names
//! with a space are invalid; `open` refuses `driver=nodriver` (invalid) and
//! `driver=unbuilt` (unsupported) and `host` empty or `bad`; `token=wrong-s3cret` makes
//! `probe` fail; `template_mode=native` (or the typed `TemplatePreference::Native`) switches a template-capable fake to native templates.

use async_trait::async_trait;
use polyvisor_core::task::{completed, TaskToken};
use polyvisor_core::{
    Capabilities, CloneSpec, CloneStarted, Console, ConsoleKind, CreateSource, CreateSpec, Driver, DriverFactory,
    Error, Guest, GuestId, GuestSummary, Nic, OpenOptions, PowerAction, PowerState, Result, SecretString, Settings,
    Snapshot, SnapshotSpec, TaskId, TaskOutput, TaskStatus, TemplatePreference, TemplateStrategy,
};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Recorded fake state (tests read and change it through [`Fake::state`]).
#[derive(Default)]
pub struct State {
    /// Guests by id.
    pub guests: BTreeMap<String, Guest>,
    /// Snapshot names by guest id, oldest first.
    pub snaps: BTreeMap<String, Vec<String>>,
    /// Snapshot details by (guest id, name), for snapshots made through the driver.
    pub snap_details: BTreeMap<(String, String), Snapshot>,
    /// Last id handed out (new ids count up from it).
    pub next: u32,
    /// Every clone request.
    pub clones: Vec<CloneSpec>,
    /// Every power request (guest id, action).
    pub power: Vec<(String, PowerAction)>,
    /// Every deleted guest id.
    pub deleted: Vec<String>,
    /// The last create request.
    pub last_create: Option<CreateSpec>,
    /// Make `create_guest` fail after making the guest (the fake then removes it again,
    /// as a driver cleans up its own failures).
    pub fail_create: bool,
    /// Make every task the fake issues from now on never finish.
    pub hang_tasks: bool,
    /// Allocate ids up front like Proxmox (`Driver::id_hint_detail` answers this detail,
    /// `allocate_id_hint` the next free id, `create_guest_at` creates there when free).
    pub id_hint_detail: Option<&'static str>,
    /// The hint of the last `create_guest_at`.
    pub last_create_hint: Option<GuestId>,
    /// How many times a front called `Driver::close` (not counted in `calls`).
    pub closed: usize,
}

/// The fake driver.
pub struct Fake {
    caps: Mutex<Capabilities>,
    fail_probe: AtomicBool,
    state: Mutex<State>,
    /// Every driver call (except `display_name` / `capabilities`) counts here.
    pub calls: AtomicUsize,
}

/// A guest value: a stopped/running Windows VM or template with one NIC, no key.
pub fn guest(id: &str, name: &str, template: bool, power: PowerState) -> Guest {
    Guest {
        id: id.into(),
        name: name.into(),
        node: Some("node1".into()),
        os: Some("win11".into()),
        cpus: Some(2),
        memory_mb: Some(4096),
        nics: vec![Nic { mac: "bc:24:11:aa:bb:cc".into(), ipv4: vec!["192.168.1.50".into()], ..Default::default() }],
        is_template: template,
        power,
        raw_power_state: if power == PowerState::PoweredOn { "running".into() } else { "stopped".into() },
        key: None,
    }
}

/// A bare guest value carrying platform key `key` (no NICs, no sizing).
pub fn keyed_guest(id: &str, name: &str, key: Option<&str>, power: PowerState, template: bool) -> Guest {
    Guest {
        id: GuestId::new(id),
        name: name.into(),
        node: None,
        os: None,
        cpus: None,
        memory_mb: None,
        nics: vec![],
        is_template: template,
        power,
        raw_power_state: power.as_str().into(),
        key: key.map(Into::into),
    }
}

/// Capabilities of a fully featured flag-template driver (no create, no console).
pub fn full_caps() -> Capabilities {
    Capabilities {
        suspend: true,
        templates: TemplateStrategy::Flag,
        linked_clones: true,
        snapshots: true,
        clone_from_snapshot: true,
        task_poll_secs: 2,
        ..Capabilities::default()
    }
}

/// Capabilities of a driver that also creates guests and hands out VNC consoles.
pub fn create_caps() -> Capabilities {
    Capabilities {
        snapshot_memory: true,
        create: true,
        consoles: vec![ConsoleKind::Vnc],
        task_poll_secs: 0,
        ..full_caps()
    }
}

impl Fake {
    /// The small estate (see the module doc).
    pub fn new(caps: Capabilities) -> Self {
        let mut st = State { next: 200, ..State::default() };
        st.guests.insert("101".into(), guest("101", "win11-gold", false, PowerState::PoweredOn));
        st.guests.insert("9000".into(), guest("9000", "tmpl", true, PowerState::PoweredOff));
        st.guests.insert("slow".into(), guest("slow", "slow", false, PowerState::PoweredOff));
        st.snaps.insert("101".into(), vec!["RAS_TEMPLATE_VERSION_1".into()]);
        Fake::with_state(caps, st)
    }

    /// No guests; completed task ids resolved.
    pub fn empty(caps: Capabilities) -> Self {
        Fake::with_state(caps, State { next: 200, ..State::default() })
    }

    fn with_state(caps: Capabilities, st: State) -> Self {
        Fake {
            caps: Mutex::new(caps),
            fail_probe: AtomicBool::new(false),
            state: Mutex::new(st),
            calls: AtomicUsize::new(0),
        }
    }

    /// The state (poison-tolerant).
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds (or replaces) a guest.
    pub fn insert(&self, g: Guest) {
        self.state().guests.insert(g.id.to_string(), g);
    }

    /// Guests that are not templates.
    pub fn vms(&self) -> Vec<Guest> {
        self.state().guests.values().filter(|g| !g.is_template).cloned().collect()
    }

    /// Driver calls so far.
    pub fn call_count(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// The template strategy the last `open` configured.
    pub fn capabilities_for_test(&self) -> TemplateStrategy {
        self.capabilities().templates
    }

    fn tick(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }

    fn done(&self) -> TaskId {
        if self.state().hang_tasks {
            TaskToken::new("frun", json!({})).encode()
        } else {
            completed("fake", &TaskOutput::default())
        }
    }

    fn exists(&self, id: &GuestId) -> Result<()> {
        if self.state().guests.contains_key(id.as_str()) {
            Ok(())
        } else {
            Err(Error::not_found(format!("guest [{id}]")))
        }
    }

    fn set_power(&self, id: &GuestId, p: PowerState) {
        if let Some(g) = self.state().guests.get_mut(id.as_str()) {
            g.power = p;
        }
    }
}

#[async_trait]
impl Driver for Fake {
    fn display_name(&self) -> &str {
        "Fake"
    }
    fn capabilities(&self) -> Capabilities {
        self.caps.lock().map(|c| c.clone()).unwrap_or_default()
    }
    async fn probe(&self) -> Result<String> {
        self.tick();
        if self.fail_probe.load(Ordering::SeqCst) {
            return Err(Error::unauthorized("authentication failed (401)"));
        }
        Ok("Fake hypervisor 1.0".into())
    }
    fn id_hint_detail(&self) -> Option<&'static str> {
        self.state.lock().ok().and_then(|s| s.id_hint_detail)
    }
    async fn allocate_id_hint(&self) -> Result<Option<GuestId>> {
        self.tick();
        let st = self.state();
        if st.id_hint_detail.is_none() {
            return Ok(None);
        }
        // Like PVE's nextid: the lowest free id above the last one handed out, not reserved.
        let mut n = st.next + 1;
        while st.guests.contains_key(&n.to_string()) {
            n += 1;
        }
        Ok(Some(GuestId::new(n.to_string())))
    }
    async fn create_guest_at(&self, spec: &CreateSpec, hint: Option<&GuestId>) -> Result<CloneStarted> {
        {
            let mut st = self.state();
            st.last_create_hint = hint.cloned();
            let free = hint.filter(|h| st.id_hint_detail.is_some() && !st.guests.contains_key(h.as_str()));
            let keyed = st.guests.values().any(|g| g.key.as_deref() == Some(spec.key.as_str()));
            if let (Some(h), false) = (free, keyed) {
                match h.as_str().parse::<u32>() {
                    // create_guest takes `next + 1`: make that the hinted id (ids only grow).
                    Ok(n) if n > st.next => st.next = n - 1,
                    _ => {}
                }
            }
        }
        self.create_guest(spec).await
    }
    async fn list_guests(&self) -> Result<Vec<GuestSummary>> {
        self.tick();
        Ok(self.state().guests.values().map(Guest::summary).collect())
    }
    async fn get_guest(&self, id: &GuestId) -> Result<Guest> {
        self.tick();
        if id.as_str() == "panic" {
            panic!("fake driver bug");
        }
        if id.as_str() == "slow" {
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
        self.state().guests.get(id.as_str()).cloned().ok_or_else(|| Error::not_found(format!("guest [{id}]")))
    }
    async fn power(&self, id: &GuestId, action: PowerAction) -> Result<TaskId> {
        self.tick();
        self.exists(id)?;
        self.state().power.push((id.to_string(), action));
        let p = match action {
            PowerAction::Start | PowerAction::Reboot | PowerAction::Reset | PowerAction::Resume => {
                PowerState::PoweredOn
            }
            PowerAction::Stop | PowerAction::Shutdown => PowerState::PoweredOff,
            PowerAction::Suspend => PowerState::Suspended,
        };
        self.set_power(id, p);
        Ok(self.done())
    }
    async fn delete_guest(&self, id: &GuestId) -> Result<TaskId> {
        self.tick();
        let mut st = self.state();
        st.guests.remove(id.as_str());
        st.deleted.push(id.to_string());
        drop(st);
        Ok(self.done())
    }
    async fn set_template(&self, id: &GuestId, is_template: bool) -> Result<TaskId> {
        self.tick();
        let mut st = self.state();
        let g = st.guests.get_mut(id.as_str()).ok_or_else(|| Error::not_found(format!("guest [{id}]")))?;
        g.is_template = is_template;
        drop(st);
        Ok(self.done())
    }
    async fn clone_guest(&self, spec: &CloneSpec) -> Result<CloneStarted> {
        self.tick();
        self.exists(&spec.source)?;
        if spec.name.contains(' ') {
            return Err(Error::invalid(format!("invalid clone name '{}': must be a DNS name", spec.name)));
        }
        let mut st = self.state();
        st.next += 1;
        let id = st.next.to_string();
        st.guests.insert(id.clone(), guest(&id, &spec.name, false, PowerState::PoweredOff));
        st.clones.push(spec.clone());
        let task = TaskToken::new("fclone", json!({ "clone": id })).encode();
        Ok(CloneStarted { task, new_guest: Some(GuestId::new(id)) })
    }
    /// Converges by key: the guest carrying `spec.key` (else a new one) ends with the
    /// spec's name, key, CPUs and memory, powered on. A guest of that name without the
    /// key is `AlreadyExists`.
    async fn create_guest(&self, spec: &CreateSpec) -> Result<CloneStarted> {
        self.tick();
        let mut st = self.state();
        if let CreateSource::Template { id, .. } = &spec.source {
            if !st.guests.contains_key(id.as_str()) {
                return Err(Error::not_found(format!("template [{id}]")));
            }
        }
        st.last_create = Some(spec.clone());
        let existing =
            st.guests.values().find(|g| g.key.as_deref() == Some(spec.key.as_str())).map(|g| g.id.to_string());
        let id = match existing {
            Some(id) => id,
            None => {
                if let Some(other) = st.guests.values().find(|g| g.name == spec.name) {
                    return Err(Error::already_exists(format!("guest named {} ([{}])", spec.name, other.id)));
                }
                st.next += 1;
                st.next.to_string()
            }
        };
        let mut g = keyed_guest(&id, &spec.name, Some(&spec.key), PowerState::PoweredOn, false);
        g.cpus = spec.cpus;
        g.memory_mb = spec.memory_mb;
        st.guests.insert(id.clone(), g);
        if st.fail_create {
            st.guests.remove(&id);
            return Err(Error::backend("disk full"));
        }
        let hang = st.hang_tasks;
        drop(st);
        let out = TaskOutput { new_guest: Some(GuestId::new(id.clone())) };
        let task = if hang { TaskToken::new("frun", json!({})).encode() } else { completed("create", &out) };
        Ok(CloneStarted { task, new_guest: Some(GuestId::new(id)) })
    }
    async fn adopt_guest(&self, id: &GuestId, key: &str) -> Result<()> {
        self.tick();
        let mut st = self.state();
        let g = st.guests.get_mut(id.as_str()).ok_or_else(|| Error::not_found(format!("guest [{id}]")))?;
        match g.key.as_deref() {
            None => g.key = Some(key.to_string()),
            Some(k) if k == key => {}
            Some(_) => return Err(Error::conflict(format!("guest [{id}] carries another key"))),
        }
        Ok(())
    }
    async fn list_snapshots(&self, id: &GuestId) -> Result<Vec<Snapshot>> {
        self.tick();
        self.exists(id)?;
        let st = self.state();
        let names = st.snaps.get(id.as_str()).cloned().unwrap_or_default();
        Ok(names
            .into_iter()
            .map(|name| {
                st.snap_details.get(&(id.to_string(), name.clone())).cloned().unwrap_or(Snapshot {
                    name,
                    description: None,
                    created_unix: None,
                    parent: None,
                    includes_memory: false,
                })
            })
            .collect())
    }
    async fn create_snapshot(&self, id: &GuestId, spec: &SnapshotSpec) -> Result<TaskId> {
        self.tick();
        self.exists(id)?;
        let mut st = self.state();
        let list = st.snaps.entry(id.to_string()).or_default();
        list.retain(|n| n != &spec.name);
        list.push(spec.name.clone());
        st.snap_details.insert(
            (id.to_string(), spec.name.clone()),
            Snapshot {
                name: spec.name.clone(),
                description: spec.description.clone(),
                created_unix: Some(1_767_366_245),
                parent: None,
                includes_memory: spec.include_memory,
            },
        );
        drop(st);
        Ok(match spec.name.as_str() {
            "pending" => TaskToken::new("frun", json!({})).encode(),
            "broken" => TaskToken::new("ffail", json!({})).encode(),
            _ => self.done(),
        })
    }
    /// Reverting leaves the guest stopped (like a disk-only rollback).
    async fn revert_snapshot(&self, id: &GuestId, name: &str) -> Result<TaskId> {
        self.tick();
        self.exists(id)?;
        if !self.state().snaps.get(id.as_str()).is_some_and(|l| l.iter().any(|n| n == name)) {
            return Err(Error::not_found(format!("snapshot [{name}]")));
        }
        self.set_power(id, PowerState::PoweredOff);
        Ok(self.done())
    }
    async fn delete_snapshot(&self, id: &GuestId, name: &str) -> Result<TaskId> {
        self.tick();
        self.exists(id)?;
        let mut st = self.state();
        if let Some(l) = st.snaps.get_mut(id.as_str()) {
            l.retain(|n| n != name);
        }
        st.snap_details.remove(&(id.to_string(), name.to_string()));
        drop(st);
        Ok(self.done())
    }
    async fn advance_task(&self, tok: &TaskToken) -> Result<TaskStatus> {
        // Only the hook: core's provided `task_status` resolves `task::completed` ids and
        // expiry, which the front tests thereby prove.
        match tok.kind.as_str() {
            "fclone" => Ok(TaskStatus::Completed(TaskOutput { new_guest: tok.str("clone").map(GuestId::new) })),
            "frun" => Ok(TaskStatus::Running),
            "ffail" => Ok(TaskStatus::Failed(Error::backend("disk full"))),
            _ => Err(tok.unknown()),
        }
    }
    async fn console(&self, id: &GuestId) -> Result<Console> {
        self.tick();
        self.exists(id)?;
        Ok(Console::Vnc {
            host: "10.0.0.11".into(),
            port: 5901,
            password: Some(SecretString::from("PVEVNC:ticket")),
            one_time: true,
        })
    }

    async fn close(&self) {
        self.state().closed += 1;
    }
}

/// A factory handing out one shared [`Fake`] (state survives "processes").
pub struct FakeFactory {
    /// The one driver every `open` returns.
    pub fake: Arc<Fake>,
    base_caps: Mutex<Capabilities>,
    /// Settings and typed options of every `open`, in order.
    pub opened: Mutex<Vec<(Settings, OpenOptions)>>,
}

impl FakeFactory {
    /// A factory over [`Fake::new`] (the small estate).
    pub fn new(caps: Capabilities) -> Arc<Self> {
        Self::over(Fake::new(caps.clone()), caps)
    }

    /// A factory over [`Fake::empty`].
    pub fn empty(caps: Capabilities) -> Arc<Self> {
        Self::over(Fake::empty(caps.clone()), caps)
    }

    fn over(fake: Fake, caps: Capabilities) -> Arc<Self> {
        Arc::new(FakeFactory { fake: Arc::new(fake), base_caps: Mutex::new(caps), opened: Mutex::new(Vec::new()) })
    }

    /// The settings of the last `open`.
    pub fn last_opened(&self) -> Option<Settings> {
        self.opened.lock().ok().and_then(|v| v.last().map(|(s, _)| s.clone()))
    }

    /// The typed options of the last `open`.
    pub fn last_options(&self) -> Option<OpenOptions> {
        self.opened.lock().ok().and_then(|v| v.last().map(|(_, o)| *o))
    }

    /// Changes the capabilities the next `open` configures.
    pub fn set_caps(&self, caps: Capabilities) {
        if let Ok(mut c) = self.base_caps.lock() {
            *c = caps;
        }
    }
}

#[async_trait]
impl DriverFactory for FakeFactory {
    async fn open(&self, settings: &Settings, opts: &OpenOptions) -> Result<Arc<dyn Driver>> {
        if let Ok(mut v) = self.opened.lock() {
            v.push((settings.clone(), *opts));
        }
        if settings.str("driver").as_deref() == Some("nodriver") {
            return Err(Error::invalid("unknown driver 'nodriver'"));
        }
        if settings.str("driver").as_deref() == Some("unbuilt") {
            return Err(Error::unsupported("the unbuilt driver"));
        }
        if settings.str("host").as_deref() == Some("") || settings.raw("host").is_some_and(|h| h == "bad") {
            return Err(Error::invalid("setting 'host' must be host[:port]"));
        }
        let mut caps = self.base_caps.lock().map(|c| c.clone()).unwrap_or_default();
        if caps.templates != TemplateStrategy::None {
            // Like a driver with both template kinds (Proxmox): its own explicit setting
            // wins, else the front's typed preference, else flag.
            let native = match settings.str("template_mode") {
                Some(m) => m == "native",
                None => opts.templates == TemplatePreference::Native,
            };
            caps.templates = if native { TemplateStrategy::Native } else { TemplateStrategy::Flag };
        }
        if let Ok(mut c) = self.fake.caps.lock() {
            *c = caps;
        }
        self.fake.fail_probe.store(settings.str("token").as_deref() == Some("wrong-s3cret"), Ordering::SeqCst);
        Ok(self.fake.clone())
    }
    fn driver_names(&self) -> Vec<&'static str> {
        vec!["fake"]
    }
}
