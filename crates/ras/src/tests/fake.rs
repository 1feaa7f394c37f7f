//! An in-process fake driver and factory for serve-loop tests.

use async_trait::async_trait;
use polyvisor_core::task::{completed, TaskToken};
use polyvisor_core::{
    Capabilities, CloneSpec, CloneStarted, Driver, DriverFactory, Error, Guest, GuestId, GuestSummary, Nic,
    OpenOptions, PowerAction, PowerState, Result, Settings, Snapshot, SnapshotSpec, TaskId, TaskOutput, TaskStatus,
    TemplatePreference, TemplateStrategy,
};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Recorded fake state.
#[derive(Default)]
pub(crate) struct State {
    pub guests: BTreeMap<String, Guest>,
    pub snaps: BTreeMap<String, Vec<String>>,
    pub next: u32,
    pub clones: Vec<CloneSpec>,
    pub power: Vec<(String, PowerAction)>,
    pub deleted: Vec<String>,
}

/// The fake driver.
pub(crate) struct Fake {
    caps: Mutex<Capabilities>,
    fail_probe: AtomicBool,
    state: Mutex<State>,
}

fn guest(id: &str, name: &str, template: bool, power: PowerState) -> Guest {
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

/// Capabilities of a fully featured flag-template driver.
pub(crate) fn full_caps() -> Capabilities {
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

impl Fake {
    pub(crate) fn new(caps: Capabilities) -> Self {
        let mut st = State { next: 200, ..State::default() };
        st.guests.insert("101".into(), guest("101", "win11-gold", false, PowerState::PoweredOn));
        st.guests.insert("9000".into(), guest("9000", "tmpl", true, PowerState::PoweredOff));
        st.guests.insert("slow".into(), guest("slow", "slow", false, PowerState::PoweredOff));
        st.snaps.insert("101".into(), vec!["RAS_TEMPLATE_VERSION_1".into()]);
        Fake { caps: Mutex::new(caps), fail_probe: AtomicBool::new(false), state: Mutex::new(st) }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn done() -> TaskId {
        completed("fake", &TaskOutput::default())
    }

    fn exists(&self, id: &GuestId) -> Result<()> {
        if self.state().guests.contains_key(id.as_str()) {
            Ok(())
        } else {
            Err(Error::not_found(format!("guest [{id}]")))
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
        if self.fail_probe.load(Ordering::SeqCst) {
            return Err(Error::unauthorized("authentication failed (401)"));
        }
        Ok("Fake hypervisor 1.0".into())
    }
    async fn list_guests(&self) -> Result<Vec<GuestSummary>> {
        Ok(self.state().guests.values().map(Guest::summary).collect())
    }
    async fn get_guest(&self, id: &GuestId) -> Result<Guest> {
        if id.as_str() == "panic" {
            panic!("fake driver bug");
        }
        if id.as_str() == "slow" {
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
        self.state().guests.get(id.as_str()).cloned().ok_or_else(|| Error::not_found(format!("guest [{id}]")))
    }
    async fn power(&self, id: &GuestId, action: PowerAction) -> Result<TaskId> {
        self.exists(id)?;
        self.state().power.push((id.to_string(), action));
        Ok(Self::done())
    }
    async fn delete_guest(&self, id: &GuestId) -> Result<TaskId> {
        let mut st = self.state();
        st.guests.remove(id.as_str());
        st.deleted.push(id.to_string());
        Ok(Self::done())
    }
    async fn set_template(&self, id: &GuestId, is_template: bool) -> Result<TaskId> {
        let mut st = self.state();
        let g = st.guests.get_mut(id.as_str()).ok_or_else(|| Error::not_found(format!("guest [{id}]")))?;
        g.is_template = is_template;
        Ok(Self::done())
    }
    async fn clone_guest(&self, spec: &CloneSpec) -> Result<CloneStarted> {
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
    async fn list_snapshots(&self, id: &GuestId) -> Result<Vec<Snapshot>> {
        self.exists(id)?;
        let names = self.state().snaps.get(id.as_str()).cloned().unwrap_or_default();
        Ok(names
            .into_iter()
            .map(|name| Snapshot { name, description: None, created_unix: None, parent: None, includes_memory: false })
            .collect())
    }
    async fn create_snapshot(&self, id: &GuestId, spec: &SnapshotSpec) -> Result<TaskId> {
        self.exists(id)?;
        let mut st = self.state();
        let list = st.snaps.entry(id.to_string()).or_default();
        list.retain(|n| n != &spec.name);
        list.push(spec.name.clone());
        Ok(match spec.name.as_str() {
            "pending" => TaskToken::new("frun", json!({})).encode(),
            "broken" => TaskToken::new("ffail", json!({})).encode(),
            _ => Self::done(),
        })
    }
    async fn revert_snapshot(&self, id: &GuestId, name: &str) -> Result<TaskId> {
        self.exists(id)?;
        if !self.state().snaps.get(id.as_str()).is_some_and(|l| l.iter().any(|n| n == name)) {
            return Err(Error::not_found(format!("snapshot [{name}]")));
        }
        Ok(Self::done())
    }
    async fn delete_snapshot(&self, id: &GuestId, name: &str) -> Result<TaskId> {
        self.exists(id)?;
        if let Some(l) = self.state().snaps.get_mut(id.as_str()) {
            l.retain(|n| n != name);
        }
        Ok(Self::done())
    }
    async fn advance_task(&self, tok: &TaskToken) -> Result<TaskStatus> {
        // Only the hook: core's provided `task_status` resolves `task::completed` ids
        // (also issued by the front) and expiry, which the tests thereby prove.
        match tok.kind.as_str() {
            "fclone" => Ok(TaskStatus::Completed(TaskOutput { new_guest: tok.str("clone").map(GuestId::new) })),
            "frun" => Ok(TaskStatus::Running),
            "ffail" => Ok(TaskStatus::Failed(Error::backend("disk full"))),
            _ => Err(tok.unknown()),
        }
    }
}

/// A factory handing out one shared [`Fake`] (state survives "processes").
pub(crate) struct FakeFactory {
    pub fake: Arc<Fake>,
    base_caps: Capabilities,
    pub opened: Mutex<Vec<(Settings, OpenOptions)>>,
}

impl FakeFactory {
    pub(crate) fn new(caps: Capabilities) -> Arc<Self> {
        Arc::new(FakeFactory {
            fake: Arc::new(Fake::new(caps.clone())),
            base_caps: caps,
            opened: Mutex::new(Vec::new()),
        })
    }
    pub(crate) fn last_opened(&self) -> Option<Settings> {
        self.opened.lock().ok().and_then(|v| v.last().map(|(s, _)| s.clone()))
    }
    /// The typed options of the last `open`.
    pub(crate) fn last_options(&self) -> Option<OpenOptions> {
        self.opened.lock().ok().and_then(|v| v.last().map(|(_, o)| *o))
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
        let mut caps = self.base_caps.clone();
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

impl Fake {
    /// The template strategy the last `open` configured.
    pub(crate) fn capabilities_for_test(&self) -> TemplateStrategy {
        self.capabilities().templates
    }
}
