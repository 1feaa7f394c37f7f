//! In-process fake driver for unit tests: guests in a map, tasks complete at once (or
//! never, to test deadlines), calls counted so tests can assert "backend untouched".

use async_trait::async_trait;
use polyvisor_core::task::{completed, TaskToken};
use polyvisor_core::{
    Capabilities, CloneStarted, Console, ConsoleKind, CreateSource, CreateSpec, Driver, DriverFactory, Error, Guest,
    GuestId, GuestSummary, PowerAction, PowerState, Result, SecretString, Settings, Snapshot, SnapshotSpec, TaskId,
    TaskOutput, TaskStatus, TemplateStrategy,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Shared state of the fake.
#[derive(Default)]
pub struct FakeState {
    /// Guests by id.
    pub guests: BTreeMap<String, Guest>,
    /// Snapshots by guest id.
    pub snaps: BTreeMap<String, Vec<Snapshot>>,
    /// Last create request.
    pub last_create: Option<CreateSpec>,
    /// Settings given to the last `open`.
    pub opened_with: Option<Settings>,
    /// Make `create_guest` fail after creating the guest.
    pub fail_create: bool,
    /// Make tasks never finish.
    pub hang_tasks: bool,
    next_id: u32,
}

/// The fake driver (and its factory).
#[derive(Clone, Default)]
pub struct Fake {
    /// State.
    pub state: Arc<Mutex<FakeState>>,
    /// Every driver call counts here.
    pub calls: Arc<AtomicUsize>,
}

impl Fake {
    /// A fake with one template `tpl` (id 100) and no VMs.
    pub fn with_template() -> Self {
        let f = Fake::default();
        f.insert(guest("100", "tpl", None, PowerState::PoweredOff, true));
        f
    }

    /// Adds a guest.
    pub fn insert(&self, g: Guest) {
        self.state.lock().unwrap().guests.insert(g.id.0.clone(), g);
    }

    /// Guests that are not templates.
    pub fn vms(&self) -> Vec<Guest> {
        self.state.lock().unwrap().guests.values().filter(|g| !g.is_template).cloned().collect()
    }

    fn tick(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }

    fn task(&self, out: TaskOutput) -> TaskId {
        if self.state.lock().unwrap().hang_tasks {
            TaskToken::new("hang", serde_json::json!({})).encode()
        } else {
            completed("fake", &out)
        }
    }

    fn set_power(&self, id: &GuestId, p: PowerState) -> Result<()> {
        let mut st = self.state.lock().unwrap();
        let g = st.guests.get_mut(&id.0).ok_or_else(|| Error::not_found(format!("guest [{id}]")))?;
        g.power = p;
        Ok(())
    }
}

/// A guest value.
pub fn guest(id: &str, name: &str, key: Option<&str>, power: PowerState, tpl: bool) -> Guest {
    Guest {
        id: GuestId::new(id),
        name: name.into(),
        node: None,
        os: None,
        cpus: None,
        memory_mb: None,
        nics: vec![],
        is_template: tpl,
        power,
        raw_power_state: power.as_str().into(),
        key: key.map(Into::into),
    }
}

#[async_trait]
impl Driver for Fake {
    fn display_name(&self) -> &str {
        "Fake"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            suspend: true,
            templates: TemplateStrategy::Flag,
            snapshots: true,
            snapshot_memory: true,
            create: true,
            consoles: vec![ConsoleKind::Vnc],
            task_poll_secs: 0,
            ..Capabilities::default()
        }
    }
    async fn probe(&self) -> Result<String> {
        Ok("fake".into())
    }
    async fn list_guests(&self) -> Result<Vec<GuestSummary>> {
        self.tick();
        Ok(self.state.lock().unwrap().guests.values().map(Guest::summary).collect())
    }
    async fn get_guest(&self, id: &GuestId) -> Result<Guest> {
        self.tick();
        self.state.lock().unwrap().guests.get(&id.0).cloned().ok_or_else(|| Error::not_found(format!("guest [{id}]")))
    }
    async fn power(&self, id: &GuestId, action: PowerAction) -> Result<TaskId> {
        self.tick();
        let p = match action {
            PowerAction::Start | PowerAction::Reboot | PowerAction::Reset | PowerAction::Resume => {
                PowerState::PoweredOn
            }
            PowerAction::Stop | PowerAction::Shutdown => PowerState::PoweredOff,
            PowerAction::Suspend => PowerState::Suspended,
        };
        self.set_power(id, p)?;
        Ok(self.task(TaskOutput::default()))
    }
    async fn delete_guest(&self, id: &GuestId) -> Result<TaskId> {
        self.tick();
        self.state.lock().unwrap().guests.remove(&id.0);
        Ok(self.task(TaskOutput::default()))
    }
    async fn set_template(&self, _id: &GuestId, _t: bool) -> Result<TaskId> {
        Err(Error::unsupported("set_template"))
    }
    async fn create_guest(&self, spec: &CreateSpec) -> Result<CloneStarted> {
        self.tick();
        let mut st = self.state.lock().unwrap();
        if let CreateSource::Template { id, .. } = &spec.source {
            if !st.guests.contains_key(&id.0) {
                return Err(Error::not_found(format!("template [{id}]")));
            }
        }
        st.last_create = Some(spec.clone());
        st.next_id += 1;
        let id = format!("{}", 200 + st.next_id);
        let mut g = guest(&id, &spec.name, Some(&spec.key), PowerState::PoweredOn, false);
        g.cpus = spec.cpus;
        g.memory_mb = spec.memory_mb;
        st.guests.insert(id.clone(), g);
        if st.fail_create {
            return Err(Error::backend("disk full"));
        }
        let hang = st.hang_tasks;
        drop(st);
        let out = TaskOutput { new_guest: Some(GuestId::new(id.clone())) };
        let task =
            if hang { TaskToken::new("hang", serde_json::json!({})).encode() } else { completed("create", &out) };
        Ok(CloneStarted { task, new_guest: Some(GuestId::new(id)) })
    }
    async fn list_snapshots(&self, id: &GuestId) -> Result<Vec<Snapshot>> {
        self.tick();
        Ok(self.state.lock().unwrap().snaps.get(&id.0).cloned().unwrap_or_default())
    }
    async fn create_snapshot(&self, id: &GuestId, spec: &SnapshotSpec) -> Result<TaskId> {
        self.tick();
        let snap = Snapshot {
            name: spec.name.clone(),
            description: spec.description.clone(),
            created_unix: Some(1_767_366_245),
            parent: None,
            includes_memory: spec.include_memory,
        };
        let mut st = self.state.lock().unwrap();
        let list = st.snaps.entry(id.0.clone()).or_default();
        list.retain(|s| s.name != spec.name);
        list.push(snap);
        drop(st);
        Ok(self.task(TaskOutput::default()))
    }
    async fn revert_snapshot(&self, id: &GuestId, name: &str) -> Result<TaskId> {
        self.tick();
        let exists = self.state.lock().unwrap().snaps.get(&id.0).is_some_and(|l| l.iter().any(|s| s.name == name));
        if !exists {
            return Err(Error::not_found(format!("snapshot {name}")));
        }
        self.set_power(id, PowerState::PoweredOff)?;
        Ok(self.task(TaskOutput::default()))
    }
    async fn delete_snapshot(&self, id: &GuestId, name: &str) -> Result<TaskId> {
        self.tick();
        if let Some(l) = self.state.lock().unwrap().snaps.get_mut(&id.0) {
            l.retain(|s| s.name != name);
        }
        Ok(self.task(TaskOutput::default()))
    }
    async fn advance_task(&self, _tok: &TaskToken) -> Result<TaskStatus> {
        Ok(TaskStatus::Running)
    }
    async fn console(&self, id: &GuestId) -> Result<Console> {
        self.tick();
        self.get_guest(id).await?;
        Ok(Console::Vnc {
            host: "10.0.0.11".into(),
            port: 5901,
            password: Some(SecretString::from("PVEVNC:ticket")),
            one_time: true,
        })
    }
}

#[async_trait]
impl DriverFactory for Fake {
    async fn open(&self, settings: &Settings, _opts: &polyvisor_core::OpenOptions) -> Result<Arc<dyn Driver>> {
        self.state.lock().unwrap().opened_with = Some(settings.clone());
        Ok(Arc::new(self.clone()))
    }
    fn driver_names(&self) -> Vec<&'static str> {
        vec!["fake"]
    }
}
