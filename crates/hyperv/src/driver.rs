//! `impl Driver for HyperV`: every operation is one or two fixed scripts. Hyper-V's cmdlets
//! are synchronous (they return when the VM reached the state), so every task is returned
//! already completed; each script is bounded instead.

use crate::client::Client;
use crate::config::Config;
use crate::error::HvError;
use crate::model::{self, Meta};
use crate::scripts::Script;
use polyvisor_core::task::{completed, TaskToken};
use polyvisor_core::{
    Capabilities, CloneMode, CloneSpec, CloneStarted, Console, ConsoleKind, CreateSource, CreateSpec, Driver, Error,
    ErrorKind, Guest, GuestId, GuestSummary, PowerAction, Result, Snapshot, SnapshotSpec, TaskId, TaskOutput,
    TaskStatus, TemplateStrategy,
};
use serde_json::{json, Value};
use std::time::Duration;

/// The Hyper-V driver.
pub struct HyperV {
    pub(crate) client: Client,
}

/// Bound of reads and checkpoint/notes scripts.
const READ_SECS: u64 = 120;
/// The port of Hyper-V's VMConnect (RDP) listener on the host.
const VMCONNECT_PORT: u16 = 2179;

/// The capabilities (fixed: no credentials or I/O needed).
pub fn capabilities() -> Capabilities {
    Capabilities {
        suspend: true,
        templates: TemplateStrategy::Flag,
        linked_clones: true,
        snapshots: true,
        snapshot_memory: false,
        clone_from_snapshot: true,
        create: true,
        // VMConnect: RDP to the host on 2179 with the VM id as pre-connection blob.
        consoles: vec![ConsoleKind::Rdp],
        task_poll_secs: 1,
        ..Capabilities::default()
    }
}

fn done(op: &str) -> TaskId {
    completed(op, &TaskOutput::default())
}

fn ctx(e: HvError, what: String) -> Error {
    Error::from(e).context(what)
}

impl HyperV {
    /// A driver (no I/O).
    pub fn new(cfg: Config) -> Result<HyperV> {
        Ok(HyperV { client: Client::new(cfg)? })
    }

    /// HTTP round trips so far.
    pub fn round_trips(&self) -> u64 {
        self.client.round_trips()
    }

    /// Scripts run so far.
    pub fn scripts_run(&self) -> u64 {
        self.client.scripts_run()
    }

    /// Remote shells opened so far.
    pub fn shells_created(&self) -> u64 {
        self.client.shells_created()
    }

    fn cfg(&self) -> &Config {
        self.client.config()
    }

    async fn run(&self, s: Script, args: Value, secs: u64) -> Result<Value, HvError> {
        // `command_timeout` caps every script (reads included).
        let secs = secs.min(self.cfg().command_timeout);
        self.client.run(s, &args, Duration::from_secs(secs)).await
    }

    async fn vm(&self, id: &str) -> Result<Value, HvError> {
        self.run(Script::Get, json!({ "id": id }), READ_SECS).await
    }

    async fn vm_opt(&self, id: &str) -> Result<Option<Value>> {
        match self.vm(id).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn must_vm(&self, id: &str) -> Result<Value> {
        self.vm_opt(id).await?.ok_or_else(|| Error::not_found(format!("guest [{id}]")))
    }

    async fn vms(&self) -> Result<Vec<Value>> {
        let v = self.run(Script::List, json!({}), READ_SECS).await?;
        Ok(match v {
            Value::Array(a) => a,
            Value::Null => Vec::new(),
            one => vec![one],
        })
    }

    async fn set_meta(&self, id: &str, vm: &Value, meta: &Meta) -> Result<Value, HvError> {
        let old = model::notes(vm);
        self.run(Script::Notes, json!({"id": id, "expect": old, "notes": meta.write_into(old)}), READ_SECS).await
    }

    async fn power_script(&self, id: &str, action: &str) -> Result<Value, HvError> {
        let bound = self.cfg().shutdown_timeout + 60;
        self.run(Script::Power, json!({"id": id, "action": action, "timeout": self.cfg().shutdown_timeout}), bound)
            .await
    }

    async fn snapshots_op(&self, id: &str, op: &str, name: Option<&str>) -> Result<Vec<Value>> {
        let v = self
            .run(Script::Snapshot, json!({"id": id, "op": op, "name": name}), READ_SECS.max(self.cfg().command_timeout))
            .await?;
        Ok(match v {
            Value::Array(a) => a,
            Value::Null => Vec::new(),
            one => vec![one],
        })
    }

    /// The clone (and create) path: one script making the disk and the VM.
    async fn clone_vm(
        &self,
        src: &str,
        name: &str,
        linked: bool,
        start: bool,
        create: Option<&CreateSpec>,
        snapshot: Option<&str>,
    ) -> Result<CloneStarted> {
        model::valid_name("guest name", name)?;
        let source = self.must_vm(src).await?;
        // A differencing child or a Convert-VHD copy of a disk in use would be inconsistent
        // (Convert-VHD is an offline operation): the current state is cloned only when off.
        if snapshot.is_none() && !model::state(&source).starts_with("Off") {
            return Err(Error::conflict(format!(
                "guest [{src}] must be off to be cloned from its current state (or clone a checkpoint)"
            )));
        }
        let cfg = self.cfg();
        let target = format!("{}\\{name}.vhdx", cfg.vhd_path);
        let mut meta = Meta { files: vec![target], clone: Some(format!("{src}:{name}")), ..Default::default() };
        let mut nics = Vec::new();
        if let Some(c) = create {
            meta.key = Some(c.key.clone());
            for n in &c.nics {
                if n.mac.as_deref().is_some_and(|m| model::mac(m).len() != 17) {
                    return Err(Error::invalid("a NIC MAC address is not valid"));
                }
                nics.push(json!({"mac": n.mac.as_deref().map(|m| model::mac(m).replace(':', "")), "vlan": n.vlan}));
            }
            if !nics.is_empty() && cfg.switch.is_none() {
                return Err(Error::invalid("NICs need a virtual switch: set 'switch' (CloudStack: 'network_switch')"));
            }
        }
        let cpus = create
            .and_then(|c| c.cpus)
            .map(u64::from)
            .or_else(|| source.get("ProcessorCount").and_then(Value::as_u64))
            .unwrap_or(1);
        let mem = create
            .and_then(|c| c.memory_mb)
            .or_else(|| source.get("MemoryStartup").and_then(Value::as_u64).map(|b| b / (1024 * 1024)))
            .unwrap_or(1024);
        let args = json!({
            "source": src, "name": name, "linked": linked, "start": start, "cpus": cpus, "memory_mb": mem,
            "switch": cfg.switch, "vm_path": cfg.vm_path, "vhd_path": cfg.vhd_path,
            "notes": meta.write_into(""), "nics": nics, "snapshot": snapshot,
        });
        let marker = meta.clone.clone();
        let vm = match self.run(Script::Clone, args, cfg.command_timeout).await {
            Ok(vm) => vm,
            // A retry of the same request (e.g. after a killed process) adopts what the
            // first attempt made: same name, same clone marker, same key. Anything else of
            // that name is not ours and stays an error.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                let mine = self.vms().await?.into_iter().find(|v| {
                    let m = model::meta(v);
                    v.get("Name").and_then(Value::as_str) == Some(name) && m.clone == marker && m.key == meta.key
                });
                let Some(vm) = mine else { return Err(e.into()) };
                let vid = model::id_of(&vm).ok_or_else(|| Error::backend("the VM has no id"))?;
                if start && !model::state(&vm).starts_with("Running") {
                    self.power(&GuestId::new(vid), PowerAction::Start).await?;
                }
                vm
            }
            Err(e) => return Err(e.into()),
        };
        let id = model::id_of(&vm).ok_or_else(|| Error::backend("the new VM has no id"))?;
        let out = TaskOutput { new_guest: Some(GuestId::new(id.clone())) };
        Ok(CloneStarted { task: completed("clone", &out), new_guest: Some(GuestId::new(id)) })
    }
}

#[async_trait::async_trait]
impl Driver for HyperV {
    /// Deletes the remote shells this process opened (the fronts call it at exit). A shell
    /// holds no task state (every cmdlet here is synchronous), so it is always safe.
    async fn close(&self) {
        self.client.close().await
    }

    fn display_name(&self) -> &str {
        "Hyper-V"
    }

    fn capabilities(&self) -> Capabilities {
        capabilities()
    }

    async fn probe(&self) -> Result<String> {
        let v = self.run(Script::Probe, json!({}), READ_SECS).await?;
        let name = v.get("ComputerName").and_then(Value::as_str).unwrap_or("?");
        let n = v.get("VmCount").and_then(Value::as_u64).unwrap_or(0);
        Ok(format!("Hyper-V host {name} at {}:{} ({n} VMs)", self.cfg().host, self.cfg().port))
    }

    async fn list_guests(&self) -> Result<Vec<GuestSummary>> {
        Ok(self.vms().await?.iter().filter_map(model::summary).collect())
    }

    async fn get_guest(&self, id: &GuestId) -> Result<Guest> {
        let id = model::vm_id(id)?;
        let v = self.must_vm(&id).await?;
        model::guest(&v).ok_or_else(|| Error::backend(format!("guest [{id}] has no id")))
    }

    async fn find_owned(&self, key: &str, hint: Option<&GuestId>) -> Result<Option<GuestSummary>> {
        if let Some(id) = hint.and_then(|h| model::vm_id(h).ok()) {
            if let Some(v) = self.vm_opt(&id).await? {
                let m = model::meta(&v);
                if m.key.as_deref() == Some(key) && !m.template {
                    return Ok(model::summary(&v));
                }
            }
        }
        Ok(self
            .vms()
            .await?
            .iter()
            .filter(|v| {
                let m = model::meta(v);
                m.key.as_deref() == Some(key) && !m.template
            })
            .find_map(model::summary))
    }

    async fn power(&self, id: &GuestId, action: PowerAction) -> Result<TaskId> {
        let id = model::vm_id(id)?;
        let vm = self.must_vm(&id).await?;
        let state = model::state(&vm).to_string();
        let running = state.starts_with("Running");
        let off = state.starts_with("Off");
        let paused = state.starts_with("Paused");
        let verb = match action {
            PowerAction::Start | PowerAction::Resume if running => return Ok(done(action.as_str())),
            PowerAction::Start | PowerAction::Resume if paused => "resume",
            // Start-VM also restores a Saved VM.
            PowerAction::Start => "start",
            PowerAction::Resume => return Err(Error::conflict(format!("guest [{id}] is not suspended ({state})"))),
            PowerAction::Stop | PowerAction::Shutdown if off => return Ok(done(action.as_str())),
            // A paused or saved VM cannot shut down gracefully: turn it off.
            PowerAction::Stop => "turnoff",
            PowerAction::Shutdown if running => "shutdown",
            PowerAction::Shutdown => "turnoff",
            PowerAction::Suspend if paused => return Ok(done("suspend")),
            PowerAction::Suspend | PowerAction::Reset | PowerAction::Reboot if !running => {
                return Err(Error::conflict(format!("guest [{id}] is not running ({state})")))
            }
            PowerAction::Suspend => "suspend",
            PowerAction::Reset | PowerAction::Reboot => "restart",
        };
        self.power_script(&id, verb).await.map_err(|e| ctx(e, format!("Failed to {action} guest [{id}]")))?;
        Ok(done(action.as_str()))
    }

    async fn delete_guest(&self, id: &GuestId) -> Result<TaskId> {
        let id = model::vm_id(id)?;
        let Some(vm) = self.vm_opt(&id).await? else { return Ok(done("delete")) };
        // Only files polyvisor recorded, and only under vhd_path (the script checks again).
        let root = format!("{}\\", self.cfg().vhd_path.to_ascii_lowercase());
        let files: Vec<String> = model::meta(&vm)
            .files
            .into_iter()
            .filter(|f| {
                crate::config::valid_windows_path(f)
                    && f.to_ascii_lowercase().starts_with(&root)
                    && !f[root.len()..].contains('\\')
            })
            .collect();
        let args = json!({"id": id, "files": files, "vhd_path": self.cfg().vhd_path});
        self.run(Script::Delete, args, self.cfg().command_timeout)
            .await
            .map_err(|e| ctx(e, format!("Failed to delete guest [{id}]")))?;
        Ok(done("delete"))
    }

    async fn set_template(&self, id: &GuestId, is_template: bool) -> Result<TaskId> {
        let id = model::vm_id(id)?;
        let vm = self.must_vm(&id).await?;
        let mut m = model::meta(&vm);
        if m.template == is_template {
            return Ok(done("convert"));
        }
        if is_template && !model::state(&vm).starts_with("Off") {
            return Err(Error::conflict(format!("guest [{id}] must be off to become a template")));
        }
        m.template = is_template;
        self.set_meta(&id, &vm, &m).await.map_err(|e| ctx(e, format!("Failed to convert guest [{id}]")))?;
        Ok(done("convert"))
    }

    async fn clone_guest(&self, spec: &CloneSpec) -> Result<CloneStarted> {
        if let Some(snap) = &spec.snapshot {
            model::valid_name("checkpoint name", snap)?;
        }
        let src = model::vm_id(&spec.source)?;
        self.clone_vm(&src, &spec.name, spec.mode != CloneMode::Full, spec.start, None, spec.snapshot.as_deref()).await
    }

    async fn create_guest(&self, spec: &CreateSpec) -> Result<CloneStarted> {
        let CreateSource::Template { id, full } = &spec.source else {
            return Err(Error::unsupported("create from an ISO"));
        };
        if spec.key.is_empty() || spec.key.len() > 128 || spec.key.chars().any(char::is_control) {
            return Err(Error::invalid("the platform key is not valid"));
        }
        if spec.cpus.is_some_and(|c| !(1..=240).contains(&c)) {
            return Err(Error::invalid("cpus must be between 1 and 240"));
        }
        if spec.memory_mb.is_some_and(|m| !(32..=12 * 1024 * 1024).contains(&m)) {
            return Err(Error::invalid("memory must be between 32 MiB and 12 TiB"));
        }
        if spec.nics.iter().any(|n| n.vlan.is_some_and(|v| !(1..=4094).contains(&v))) {
            return Err(Error::invalid("a NIC VLAN must be 1..4094"));
        }
        let src = model::vm_id(id)?;
        self.clone_vm(&src, &spec.name, !*full, true, Some(spec), None).await
    }

    async fn list_snapshots(&self, id: &GuestId) -> Result<Vec<Snapshot>> {
        let id = model::vm_id(id)?;
        Ok(self
            .snapshots_op(&id, "list", None)
            .await?
            .iter()
            .filter_map(|s| {
                Some(Snapshot {
                    name: s.get("Name").and_then(Value::as_str)?.to_string(),
                    description: None,
                    created_unix: None,
                    parent: s.get("ParentSnapshotName").and_then(Value::as_str).map(str::to_string),
                    includes_memory: false,
                })
            })
            .collect())
    }

    async fn create_snapshot(&self, id: &GuestId, spec: &SnapshotSpec) -> Result<TaskId> {
        let id = model::vm_id(id)?;
        model::valid_name("checkpoint name", &spec.name)?;
        if spec.include_memory {
            return Err(Error::unsupported("memory checkpoints"));
        }
        self.snapshots_op(&id, "create", Some(&spec.name))
            .await
            .map_err(|e| e.context(format!("Failed to checkpoint guest [{id}]")))?;
        Ok(done("snapshot"))
    }

    async fn revert_snapshot(&self, id: &GuestId, name: &str) -> Result<TaskId> {
        let id = model::vm_id(id)?;
        model::valid_name("checkpoint name", name)?;
        self.snapshots_op(&id, "restore", Some(name))
            .await
            .map_err(|e| e.context(format!("Failed to restore guest [{id}]")))?;
        Ok(done("revert"))
    }

    async fn delete_snapshot(&self, id: &GuestId, name: &str) -> Result<TaskId> {
        let id = model::vm_id(id)?;
        model::valid_name("checkpoint name", name)?;
        self.snapshots_op(&id, "remove", Some(name)).await?;
        Ok(done("snapshot_delete"))
    }

    /// The guest's VMConnect console: Hyper-V's VMMS listens for RDP on port 2179 of the host
    /// and hands a connection whose pre-connection blob is a VM id to that VM's console
    /// (powered off or not). The user authenticates with their own Windows credentials for
    /// the host (Hyper-V Administrators), so nothing secret is handed out.
    async fn console(&self, id: &GuestId) -> Result<Console> {
        let id = model::vm_id(id)?;
        self.must_vm(&id).await?;
        Ok(Console::Rdp { host: self.client.config().host.clone(), port: VMCONNECT_PORT, pcb: id })
    }

    async fn advance_task(&self, t: &TaskToken) -> Result<TaskStatus> {
        // Every task this driver issues is already completed (the core answers those).
        Err(t.unknown())
    }
}
