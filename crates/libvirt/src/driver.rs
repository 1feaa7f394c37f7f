//! The [`Driver`] implementation: async wrappers over [`crate::ops`], bounded by
//! [`crate::conn::call`], and task tokens whose state is read back from libvirt.

use crate::config::Config;
use crate::conn::{call, call_own, spawn_own, JobState, Jobs};
use crate::ops;
use async_trait::async_trait;
use polyvisor_core::task::{completed, now_unix, TaskToken};
use polyvisor_core::{
    Capabilities, CloneMode, CloneSpec, CloneStarted, Console, CreateSource, CreateSpec, Driver, Error, Guest, GuestId,
    GuestSummary, Nic, PowerAction, Result, SecretString, Snapshot, SnapshotSpec, TaskId, TaskOutput, TaskStatus,
};
use serde_json::json;

/// The libvirt driver. Its only in-memory state is caches: the shared connection for short
/// calls and the outcomes of background jobs this process started (see [`Jobs`]).
pub(crate) struct LibvirtDriver {
    cfg: Config,
    conn: crate::conn::Shared,
    jobs: Jobs,
    /// Clones this process is still making, by name: `(job, uuid, token)`, so an immediate
    /// retry gets the same task instead of racing the first job.
    cloning: std::sync::Mutex<std::collections::HashMap<String, (String, String, CloneStarted)>>,
}

/// Time between the two counter reads of a metrics sample.
const SAMPLE_GAP: std::time::Duration = std::time::Duration::from_secs(1);

/// A random id for a background job (carried in its task token).
fn job_id() -> String {
    crate::names::new_uuid()
}

impl LibvirtDriver {
    /// A driver for the given configuration (no I/O).
    pub(crate) fn new(cfg: Config) -> Self {
        LibvirtDriver {
            cfg,
            conn: crate::conn::Shared::default(),
            jobs: Jobs::default(),
            cloning: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// A clone job for `name` this process started and that is still running.
    fn running_clone(&self, name: &str) -> Option<CloneStarted> {
        let mut g = self.cloning.lock().unwrap_or_else(|p| p.into_inner());
        let (job, _, started) = g.get(name)?.clone();
        if matches!(self.jobs.get(&job), Some(JobState::Running)) {
            return Some(started);
        }
        g.remove(name);
        None
    }

    /// The request's NICs, validated (MACs canonical, network names safe for XML attributes).
    fn new_nics(&self, spec: &CreateSpec) -> Result<Vec<crate::domxml::NewNic>> {
        let mut nics = Vec::new();
        for n in &spec.nics {
            let mac = match &n.mac {
                Some(m) => polyvisor_core::net::normalize_mac(m)
                    .ok_or_else(|| Error::invalid(format!("invalid MAC '{}'", m.escape_default())))?,
                None => crate::names::new_mac(),
            };
            // Bridge-per-VLAN hosts: a VLAN NIC is an untagged NIC on the VLAN's network.
            if let Some(network) = n.vlan.and_then(|v| self.cfg.vlan_network(v)) {
                crate::names::validate_network_name(&network)?;
                nics.push(crate::domxml::NewNic { mac, network, vlan: None, filter: None });
                continue;
            }
            let network = n.network.clone().unwrap_or_else(|| self.cfg.network.clone());
            crate::names::validate_network_name(&network)?;
            if let Some(tag) = n.vlan.filter(|_| !self.cfg.vlans) {
                // Never drop a tag silently: the guest would land on the untagged network.
                return Err(Error::invalid(format!(
                    "VLAN {tag} requested, but network '{network}' is used untagged (setting 'vlans' is off; \
                     turn it on for networks whose portgroups or Open vSwitch bridges can tag, or set \
                     'vlan_networks' on hosts with a network per VLAN)"
                )));
            }
            nics.push(crate::domxml::NewNic { mac, network, vlan: n.vlan, filter: None });
        }
        Ok(nics)
    }

    /// Waits (bounded by `job_timeout_secs`) while a clone job of this process makes `uuid`.
    async fn wait_for_clone_job(&self, uuid: &str) {
        let job = {
            let g = self.cloning.lock().unwrap_or_else(|p| p.into_inner());
            g.values().find(|(_, u, _)| u == uuid).map(|(j, _, _)| j.clone())
        };
        let Some(job) = job else { return };
        let deadline = std::time::Instant::now() + self.cfg.job_timeout;
        while matches!(self.jobs.get(&job), Some(JobState::Running)) && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    fn remember_clone(&self, name: &str, job: &str, uuid: &str, started: &CloneStarted) {
        let mut g = self.cloning.lock().unwrap_or_else(|p| p.into_inner());
        g.insert(name.to_string(), (job.to_string(), uuid.to_string(), started.clone()));
    }

    /// Subnets need network filters and device hot-plug, which the built-in test driver lacks.
    fn l3_capable(&self) -> Result<()> {
        if self.cfg.is_test_driver() {
            return Err(Error::unsupported("subnets on libvirt's built-in test driver"));
        }
        Ok(())
    }

    fn done(op: &str) -> TaskId {
        completed(op, &TaskOutput::default())
    }
}

/// Why an existing guest with the create's key does not match the request (`None`: it does).
/// MACs the request left to us (random) are compared by count and network only.
fn create_mismatch(g: &Guest, spec: &CreateSpec, nics: &[crate::domxml::NewNic]) -> Option<String> {
    if let Some(c) = spec.cpus {
        if g.cpus != Some(c) {
            return Some(format!("cpus {:?} != {c}", g.cpus));
        }
    }
    if let Some(m) = spec.memory_mb {
        if g.memory_mb != Some(m) {
            return Some(format!("memory {:?} MiB != {m} MiB", g.memory_mb));
        }
    }
    if nics.is_empty() {
        return None;
    }
    if g.nics.len() != nics.len() {
        return Some(format!("{} NICs != {}", g.nics.len(), nics.len()));
    }
    for (i, (have, want)) in g.nics.iter().zip(&spec.nics).enumerate() {
        let want_mac = want.mac.as_deref().and_then(polyvisor_core::net::normalize_mac);
        if want_mac.is_some_and(|m| !have.mac.eq_ignore_ascii_case(&m)) {
            return Some(format!("NIC {i} MAC differs"));
        }
        if have.network.as_deref() != Some(nics[i].network.as_str()) {
            return Some(format!("NIC {i} network differs"));
        }
    }
    None
}

#[async_trait]
impl Driver for LibvirtDriver {
    fn display_name(&self) -> &str {
        "libvirt"
    }

    fn capabilities(&self) -> Capabilities {
        crate::capabilities_for(&self.cfg)
    }

    async fn probe(&self) -> Result<String> {
        call(&self.conn, &self.cfg, self.cfg.call_timeout, "probe", |c, cfg| {
            let v = c.get_lib_version().unwrap_or(0);
            let host = c.get_hostname().unwrap_or_default();
            let ty = c.get_type().unwrap_or_default();
            let _ = cfg;
            Ok(format!("libvirt {}.{}.{} ({ty}) at {host}", v / 1_000_000, (v / 1000) % 1000, v % 1000))
        })
        .await
    }

    async fn wait_for_change(&self, max: std::time::Duration) {
        let t0 = tokio::time::Instant::now();
        match crate::events::notifier(&self.cfg).await {
            Some(n) => {
                let left = max.saturating_sub(t0.elapsed());
                if tokio::time::timeout(left, n.notified()).await.is_ok() {
                    // One change raises several events (a start: defined state, started,
                    // resumed); let them settle so the next poll sees the end state once.
                    tokio::time::sleep(std::time::Duration::from_millis(300).min(left)).await;
                }
            }
            None => tokio::time::sleep(max.saturating_sub(t0.elapsed())).await,
        }
    }

    async fn list_guests(&self) -> Result<Vec<GuestSummary>> {
        call(&self.conn, &self.cfg, self.cfg.call_timeout, "list", |c, _| ops::list(c)).await
    }

    async fn get_guest(&self, id: &GuestId) -> Result<Guest> {
        let id = id.0.clone();
        call(&self.conn, &self.cfg, self.cfg.call_timeout, "get", move |c, cfg| ops::guest(&ops::lookup(c, &id)?, cfg))
            .await
    }

    async fn power(&self, id: &GuestId, action: PowerAction) -> Result<TaskId> {
        let id = id.0.clone();
        let grace = self.cfg.shutdown_timeout.as_secs();
        call(&self.conn, &self.cfg, self.cfg.call_timeout, "power", move |c, _| {
            let d = ops::lookup(c, &id)?;
            let st = ops::raw_state(&d)?;
            let e = |e| crate::conn::lv_err(e, action.as_str(), "");
            let not_running = || Error::conflict(format!("guest [{id}] is not running"));
            match action {
                PowerAction::Start | PowerAction::Resume => match st {
                    3 => d.resume().map(|_| ()).map_err(e)?,
                    7 => d.pm_wakeup(0).map(|_| ()).map_err(e)?,
                    1 | 2 | 4 => {}
                    _ if action == PowerAction::Resume && !d.has_managed_save(0).unwrap_or(false) => {
                        return Err(not_running())
                    }
                    _ => d.create().map(|_| ()).map_err(e)?,
                },
                PowerAction::Stop => {
                    if ops::is_active(&d) {
                        d.destroy().map_err(e)?;
                    }
                }
                PowerAction::Shutdown => {
                    if !ops::is_active(&d) {
                        return Ok(Self::done("shutdown"));
                    }
                    if st == 3 {
                        d.destroy().map_err(e)?; // a paused guest cannot react to ACPI
                        return Ok(Self::done("shutdown"));
                    }
                    d.shutdown().map_err(e)?;
                    return Ok(
                        TaskToken::new("lv-shutdown", json!({"id": id, "deadline": now_unix() + grace})).encode()
                    );
                }
                PowerAction::Reset => {
                    if st != 1 && st != 2 {
                        return Err(not_running());
                    }
                    d.reset().map_err(e)?;
                }
                PowerAction::Reboot => {
                    if st != 1 && st != 2 {
                        return Err(not_running());
                    }
                    d.reboot(0).map_err(e)?;
                }
                PowerAction::Suspend => match st {
                    3 => {}
                    1 | 2 => d.suspend().map(|_| ()).map_err(e)?,
                    _ => return Err(not_running()),
                },
            }
            Ok(Self::done(action.as_str()))
        })
        .await
    }

    async fn delete_guest(&self, id: &GuestId) -> Result<TaskId> {
        if crate::names::validate_uuid(&id.0).is_err() {
            return Ok(Self::done("delete"));
        }
        // A copy job of ours still making this guest would define it after the delete
        // (CloudStack's cleanup of a timed-out create): let it finish first.
        self.wait_for_clone_job(&id.0).await;
        let id = id.0.clone();
        call_own(&self.conn, &self.cfg, "delete", move |c, _| ops::delete(c, &id)).await?;
        Ok(Self::done("delete"))
    }

    async fn set_template(&self, id: &GuestId, is_template: bool) -> Result<TaskId> {
        let id = id.0.clone();
        call(&self.conn, &self.cfg, self.cfg.call_timeout, "convert", move |c, _| {
            let d = ops::lookup(c, &id)?;
            let (_, x) = ops::xml(&d, true)?;
            if x.meta.template == is_template {
                return Ok(());
            }
            let mut m = x.meta.clone();
            m.template = is_template;
            if is_template {
                m.gen += 1;
            }
            ops::set_meta(&d, &m)
        })
        .await?;
        Ok(Self::done("convert"))
    }

    async fn clone_guest(&self, spec: &CloneSpec) -> Result<CloneStarted> {
        crate::names::validate_name(&spec.name)?;
        let snap = spec.snapshot.clone().filter(|s| !s.is_empty());
        if snap.is_some() && !self.capabilities().clone_from_snapshot {
            return Err(Error::unsupported("clone from a snapshot (needs a local qemu:/// connection for qemu-img)"));
        }
        if let Some(s) = &snap {
            crate::names::validate_snapshot_name(s)?;
        }
        if let Some(started) = self.running_clone(&spec.name) {
            return Ok(started);
        }
        let (source, name, mode) = (spec.source.0.clone(), spec.name.clone(), spec.mode);
        let linked_ok = self.capabilities().linked_clones;
        let has_snap = snap.is_some();
        // Quick checks in the request (missing source, name taken, a finished retry); the
        // copy itself runs as a background job on its own connection.
        let (src2, name2) = (source.clone(), name.clone());
        let (existing, linked) = call(&self.conn, &self.cfg, self.cfg.call_timeout, "clone", move |c, _| {
            let d = ops::lookup(c, &src2)?;
            let (_, x) = ops::xml(&d, true)?;
            let linked = match mode {
                CloneMode::Linked => true,
                CloneMode::Full => false,
                CloneMode::Auto => (x.meta.template || has_snap) && linked_ok,
            };
            Ok((ops::adoptable_clone(c, &name2, &src2)?, linked))
        })
        .await?;
        let max_age = self.cfg.ready_timeout.as_secs().max(self.cfg.job_timeout.as_secs());
        let token = |id: &str, job: Option<&str>| {
            let body = json!({"id": id, "start": spec.start, "started": false, "job": job});
            TaskToken::new("lv-clone", body).with_max_age(max_age).encode()
        };
        if let Some(id) = existing {
            return Ok(CloneStarted { task: token(&id, None), new_guest: Some(GuestId::new(id)) });
        }
        let uuid = crate::names::new_uuid();
        let job = job_id();
        let started = CloneStarted { task: token(&uuid, Some(&job)), new_guest: Some(GuestId::new(uuid.clone())) };
        self.remember_clone(&name, &job, &uuid, &started);
        let uuid2 = uuid.clone();
        spawn_own(&self.conn, &self.cfg, &self.jobs, job, move |c, cfg| {
            ops::clone(c, &cfg.pool, &source, &name, linked, &uuid2, snap.as_deref(), &ops::CloneExtra::default())
                .map(|_| ())
        });
        Ok(started)
    }

    async fn create_guest(&self, spec: &CreateSpec) -> Result<CloneStarted> {
        crate::names::validate_name(&spec.name)?;
        if spec.key.trim().is_empty() {
            return Err(Error::invalid("create needs a platform key"));
        }
        let need_ip = matches!(spec.source, CreateSource::Template { .. });
        let max_age = self.cfg.ready_timeout.as_secs().max(self.cfg.job_timeout.as_secs());
        let started = |id: String, job: Option<&str>| {
            let body = json!({"id": id, "start": true, "need_ip": need_ip, "job": job});
            let task = TaskToken::new("lv-clone", body).with_max_age(max_age).encode();
            CloneStarted { task, new_guest: Some(GuestId::new(id)) }
        };
        if let Some(running) = self.running_clone(&spec.name) {
            return Ok(running);
        }
        let nics = self.new_nics(spec)?;
        // Converge by key: a guest carrying this key that matches the request is finished
        // (the task powers it on); one that differs (a half-made earlier attempt) is ours to
        // delete, and creation starts over. Guests without our key are never touched.
        if let Some(g) = self.find_owned(&spec.key, None).await? {
            let full = self.get_guest(&g.id).await?;
            match create_mismatch(&full, spec, &nics) {
                None => return Ok(started(g.id.0, None)),
                Some(why) => {
                    tracing::warn!(guest = %g.id, why, "create: the guest with this key differs from the request; recreating");
                    let id = g.id.0.clone();
                    call_own(&self.conn, &self.cfg, "delete half-made guest", move |c, _| ops::delete(c, &id)).await?;
                }
            }
        }
        let uuid = crate::names::new_uuid();
        let spec2 = spec.clone();
        match &spec.source {
            CreateSource::Template { id, full } => {
                let (source, full) = (id.0.clone(), *full);
                // the quick checks in the request; the copy runs as a background job
                let (src2, name2) = (source.clone(), spec.name.clone());
                call(&self.conn, &self.cfg, self.cfg.call_timeout, "create", move |c, _| {
                    ops::lookup(c, &src2)?;
                    match ops::adoptable_clone(c, &name2, &src2) {
                        Ok(None) => Ok(()),
                        Ok(Some(_)) => Err(Error::already_exists(format!(
                            "a guest named '{name2}' already exists without this create's key"
                        ))),
                        Err(e) => Err(e),
                    }
                })
                .await?;
                let job = job_id();
                let out = started(uuid.clone(), Some(&job));
                self.remember_clone(&spec.name, &job, &uuid, &out);
                spawn_own(&self.conn, &self.cfg, &self.jobs, job, move |c, cfg| {
                    let extra = ops::CloneExtra {
                        key: Some(spec2.key.clone()),
                        vcpus: spec2.cpus,
                        memory_mb: spec2.memory_mb,
                        nics: (!nics.is_empty()).then_some(nics),
                    };
                    let linked = !full && !cfg.is_test_driver();
                    ops::clone(c, &cfg.pool, &source, &spec2.name, linked, &uuid, None, &extra).map(|_| ())
                });
                Ok(out)
            }
            CreateSource::Iso { .. } => {
                let pool_override = spec.storage.clone();
                let id = call_own(&self.conn, &self.cfg, "create", move |c, cfg| {
                    let CreateSource::Iso { path, os_type } = &spec2.source else {
                        return Err(Error::internal("create source changed"));
                    };
                    ops::create_from_iso(
                        c,
                        pool_override.as_deref().unwrap_or(&cfg.pool),
                        &spec2.name,
                        &uuid,
                        path,
                        spec2.disk_size_gb.unwrap_or(cfg.disk_size_gb),
                        spec2.cpus.unwrap_or(1),
                        spec2.memory_mb.unwrap_or(1024),
                        &nics,
                        &spec2.key,
                        os_type.clone(),
                        &cfg.domain_type,
                    )
                })
                .await?;
                Ok(started(id, None))
            }
        }
    }

    async fn list_snapshots(&self, id: &GuestId) -> Result<Vec<Snapshot>> {
        let id = id.0.clone();
        call(&self.conn, &self.cfg, self.cfg.call_timeout, "list snapshots", move |c, _| {
            ops::snapshots(&ops::lookup(c, &id)?)
        })
        .await
    }

    async fn snapshot_exists(&self, id: &GuestId, name: &str) -> Result<bool> {
        let (id, name) = (id.0.clone(), name.to_string());
        call(&self.conn, &self.cfg, self.cfg.call_timeout, "snapshot exists", move |c, _| {
            Ok(ops::snapshot(&ops::lookup(c, &id)?, &name)?.is_some())
        })
        .await
    }

    async fn create_snapshot(&self, id: &GuestId, spec: &SnapshotSpec) -> Result<TaskId> {
        crate::names::validate_snapshot_name(&spec.name)?;
        crate::names::validate_uuid(&id.0)?;
        let (gid, s) = (id.0.clone(), spec.clone());
        // the guest must exist now; the snapshot itself (8-20 s on a busy host) is a job
        let g2 = gid.clone();
        call(&self.conn, &self.cfg, self.cfg.call_timeout, "snapshot create", move |c, _| {
            ops::lookup(c, &g2).map(|_| ())
        })
        .await?;
        let job = job_id();
        let body = json!({"id": gid, "name": s.name, "job": job, "since": now_unix()});
        let task = TaskToken::new("lv-snap", body).with_max_age(self.cfg.job_timeout.as_secs()).encode();
        spawn_own(&self.conn, &self.cfg, &self.jobs, job, move |c, _| {
            ops::create_snapshot(&ops::lookup(c, &gid)?, &s.name, s.include_memory, s.description.as_deref())
        });
        Ok(task)
    }

    async fn revert_snapshot(&self, id: &GuestId, name: &str) -> Result<TaskId> {
        let (id, name) = (id.0.clone(), name.to_string());
        call_own(&self.conn, &self.cfg, "snapshot revert", move |c, _| {
            ops::revert_snapshot(&ops::lookup(c, &id)?, &id, &name)
        })
        .await?;
        Ok(Self::done("revert"))
    }

    async fn delete_snapshot(&self, id: &GuestId, name: &str) -> Result<TaskId> {
        let (id, name) = (id.0.clone(), name.to_string());
        call(&self.conn, &self.cfg, self.cfg.call_timeout, "snapshot delete", move |c, _| match ops::lookup(c, &id) {
            Ok(d) => ops::delete_snapshot(c, &d, &name),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        })
        .await?;
        Ok(Self::done("snapshot_delete"))
    }

    async fn advance_task(&self, tok: &TaskToken) -> Result<TaskStatus> {
        match tok.kind.as_str() {
            "lv-shutdown" => {
                let gid = tok.req_str("id")?.to_string();
                let deadline = tok.body.get("deadline").and_then(|v| v.as_u64()).unwrap_or(0);
                call(&self.conn, &self.cfg, self.cfg.call_timeout, "shutdown status", move |c, _| {
                    let d = match ops::lookup(c, &gid) {
                        Ok(d) => d,
                        Err(e) if e.is_not_found() => return Ok(TaskStatus::Completed(TaskOutput::default())),
                        Err(e) => return Err(e),
                    };
                    if !ops::is_active(&d) {
                        return Ok(TaskStatus::Completed(TaskOutput::default()));
                    }
                    if now_unix() >= deadline {
                        d.destroy().map_err(|e| crate::conn::lv_err(e, "stop after shutdown bound", ""))?;
                        return Ok(TaskStatus::Completed(TaskOutput::default()));
                    }
                    let _ = d.shutdown(); // ACPI may have been missed while booting
                    Ok(TaskStatus::Running)
                })
                .await
            }
            "lv-clone" => {
                let gid = tok.req_str("id")?.to_string();
                let start = tok.body.get("start").and_then(|v| v.as_bool()).unwrap_or(false);
                let need_ip = tok.body.get("need_ip").and_then(|v| v.as_bool()).unwrap_or(true);
                let out = TaskOutput { new_guest: Some(GuestId::new(gid.clone())) };
                // The copy job: this process knows how it ended; another process (or this one
                // after it ended) reads the domain from libvirt.
                let job = tok.body.get("job").and_then(|v| v.as_str()).map(|j| self.jobs.get(j));
                match &job {
                    Some(Some(JobState::Running)) => return Ok(TaskStatus::Running),
                    Some(Some(JobState::Failed(e))) => return Ok(TaskStatus::Failed(e.clone())),
                    _ => {}
                }
                let other_process = matches!(job, Some(None));
                call(&self.conn, &self.cfg, self.cfg.call_timeout, "clone status", move |c, cfg| {
                    let d = match ops::lookup(c, &gid) {
                        Ok(d) => d,
                        // started by another process: defined when its copy finishes
                        Err(e) if e.is_not_found() && other_process => return Ok(TaskStatus::Running),
                        Err(e) if e.is_not_found() => {
                            return Ok(TaskStatus::Failed(Error::not_found(format!("clone [{gid}]"))))
                        }
                        Err(e) => return Err(e),
                    };
                    if !start {
                        return Ok(TaskStatus::Completed(out));
                    }
                    if !ops::is_active(&d) {
                        d.create().map_err(|e| crate::conn::lv_err(e, "start clone", ""))?;
                        return Ok(TaskStatus::Running);
                    }
                    let g = ops::guest(&d, cfg)?;
                    if need_ip && g.ipv4_addresses().is_empty() && !cfg.is_test_driver() {
                        return Ok(TaskStatus::Running);
                    }
                    Ok(TaskStatus::Completed(out))
                })
                .await
            }
            "lv-snap" => {
                let gid = tok.req_str("id")?.to_string();
                let name = tok.req_str("name")?.to_string();
                let since = tok.body.get("since").and_then(|v| v.as_u64()).unwrap_or(0);
                match tok.body.get("job").and_then(|v| v.as_str()).map(|j| self.jobs.get(j)) {
                    Some(Some(JobState::Running)) => return Ok(TaskStatus::Running),
                    Some(Some(JobState::Failed(e))) => return Ok(TaskStatus::Failed(e)),
                    Some(Some(JobState::Done)) => return Ok(TaskStatus::Completed(TaskOutput::default())),
                    _ => {}
                }
                // started by another process: done once a snapshot of that name made since exists
                call(&self.conn, &self.cfg, self.cfg.call_timeout, "snapshot status", move |c, _| {
                    let d = ops::lookup(c, &gid)?;
                    let made = ops::snapshots(&d)?
                        .into_iter()
                        .any(|s| s.name == name && s.created_unix.unwrap_or(0) >= since.saturating_sub(1));
                    Ok(if made { TaskStatus::Completed(TaskOutput::default()) } else { TaskStatus::Running })
                })
                .await
            }
            _ => Err(tok.unknown()),
        }
    }

    // --- Metrics (issue 12): libvirt keeps no history, so the driver answers with one
    // realtime sample (two counter reads `SAMPLE_GAP` apart), timestamped now, when the window
    // reaches now; a window wholly in the past, or hourly, is an empty answer. ---

    async fn metrics(
        &self,
        id: &GuestId,
        start: u64,
        end: u64,
        interval: polyvisor_core::events::MetricsInterval,
    ) -> Result<Vec<polyvisor_core::events::MetricSample>> {
        use polyvisor_core::events::{align, check_window, MetricSample, MetricsInterval};
        check_window(start, end)?;
        crate::names::validate_uuid(&id.0)?;
        let now = now_unix();
        let step = interval.secs();
        // `end` a step behind now still counts: a caller's "now" is a little older than ours.
        let want = interval == MetricsInterval::Realtime && start <= now && end.saturating_add(step) >= now;
        let id = id.0.clone();
        let bound = self.cfg.call_timeout + SAMPLE_GAP;
        let usage = call(&self.conn, &self.cfg, bound, "metrics", move |c, _| {
            let d = ops::lookup(c, &id)?;
            if want {
                ops::usage(&d, SAMPLE_GAP).map(Some)
            } else {
                Ok(None)
            }
        })
        .await?;
        let round1 = |x: f64| (x * 10.0).round() / 10.0;
        Ok(usage
            .map(|u| MetricSample {
                at: align(now_unix(), step),
                cpu_usage_rate: round1(u.cpu_pct),
                mem_usage: round1(u.mem_pct),
                disk_rate_kbps: round1(u.disk_kbps),
                net_rate_kbps: round1(u.net_kbps),
            })
            .into_iter()
            .collect())
    }

    async fn console(&self, id: &GuestId) -> Result<Console> {
        let id = id.0.clone();
        call(&self.conn, &self.cfg, self.cfg.call_timeout, "console", move |c, cfg| {
            let d = ops::lookup(c, &id)?;
            let x = d
                .get_xml_desc(virt::sys::VIR_DOMAIN_XML_SECURE)
                .map_err(|e| crate::conn::lv_err(e, "read domain XML", ""))?;
            let x = crate::domxml::DomainXml::parse(&x)?;
            let g = x.graphics.filter(|g| g.kind == "vnc").ok_or_else(|| {
                Error::unsupported(format!("console for guest [{id}] (it has no VNC graphics device)"))
            })?;
            let port = g
                .port
                .filter(|p| *p > 0)
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| Error::conflict(format!("guest [{id}] is not running (no VNC port)")))?;
            let wildcard = matches!(g.listen.as_deref(), None | Some("" | "0.0.0.0" | "::"));
            let host = cfg
                .console_host
                .clone()
                .or_else(|| if wildcard { None } else { g.listen.clone() })
                .or_else(|| cfg.remote_host())
                .unwrap_or_else(|| {
                    g.listen.clone().filter(|l| !wildcard || l.is_empty()).unwrap_or_else(|| "127.0.0.1".into())
                });
            Ok(Console::Vnc { host, port, password: g.passwd.map(SecretString::from), one_time: false })
        })
        .await
    }

    // --- L2 guest networking (CloudShell): VLAN-tagged NICs, only with `vlans` on.

    async fn attach_vlan(&self, id: &GuestId, req: &polyvisor_core::netops::VlanAttach) -> Result<Nic> {
        if !self.cfg.vlan_capable() {
            return Err(Error::unsupported(
                "VLAN NICs with settings 'vlans' and 'vlan_networks' unset (turn 'vlans' on for networks whose \
                 portgroups or Open vSwitch bridges can tag; set 'vlan_networks' on hosts with a network per VLAN)",
            ));
        }
        if !polyvisor_core::netops::VLAN_RANGE.contains(&req.vlan) {
            return Err(Error::invalid(format!("VLAN id {} is outside 1-4094", req.vlan)));
        }
        if req.nic_index.is_some() {
            return Err(Error::unsupported("retagging an existing NIC (libvirt adds a VLAN NIC instead)"));
        }
        // Per-VLAN network (untagged NIC on it), else a tag on the configured network.
        let (network, tagged) = match self.cfg.vlan_network(req.vlan) {
            Some(n) => (n, false),
            None => (req.network.clone().unwrap_or_else(|| self.cfg.network.clone()), true),
        };
        crate::names::validate_network_name(&network)?;
        let (id, vlan) = (id.0.clone(), req.vlan);
        call(&self.conn, &self.cfg, self.cfg.call_timeout, "attach VLAN NIC", move |c, _| {
            ops::attach_vlan(&ops::lookup(c, &id)?, &network, vlan, tagged)
        })
        .await
    }

    async fn detach_vlan(&self, id: &GuestId, mac: &str) -> Result<()> {
        if !self.cfg.vlan_capable() {
            return Err(Error::unsupported("VLAN NICs with settings 'vlans' and 'vlan_networks' unset"));
        }
        let mac = polyvisor_core::net::normalize_mac(mac)
            .ok_or_else(|| Error::invalid(format!("invalid MAC '{}'", mac.escape_default())))?;
        let id = id.0.clone();
        call(&self.conn, &self.cfg, self.cfg.call_timeout, "detach VLAN NIC", move |c, cfg| {
            ops::detach_vlan(&ops::lookup(c, &id)?, &mac, |n| cfg.vlan_of_network(n).is_some())
        })
        .await
    }

    // --- L3 guest networking (CloudShell): a libvirt network per subnet, its inbound rules
    // a network filter (`crate::subnet`, `crate::l3`).

    async fn ensure_subnet(&self, spec: &polyvisor_core::netops::SubnetSpec) -> Result<polyvisor_core::netops::Subnet> {
        self.l3_capable()?;
        let spec = spec.clone();
        call(&self.conn, &self.cfg, self.cfg.call_timeout, "ensure subnet", move |c, _| {
            crate::l3::ensure_subnet(c, &spec)
        })
        .await
    }

    async fn connect_subnet(&self, id: &GuestId, subnet_id: &str) -> Result<Nic> {
        self.l3_capable()?;
        let (id, sid) = (id.0.clone(), subnet_id.to_string());
        call(&self.conn, &self.cfg, self.cfg.call_timeout, "connect subnet", move |c, _| {
            crate::l3::connect_subnet(c, &ops::lookup(c, &id)?, &sid)
        })
        .await
    }

    async fn delete_subnets(&self, owner: &str) -> Result<usize> {
        self.l3_capable()?;
        let owner = owner.to_string();
        // Several libvirt calls per subnet (NICs, network, filter) and up to one call bound
        // for running guests to release their NICs: a longer bound.
        call(&self.conn, &self.cfg, self.cfg.call_timeout * 3, "delete subnets", move |c, cfg| {
            crate::l3::delete_subnets(c, &owner, cfg.call_timeout)
        })
        .await
    }

    async fn set_security_rules(
        &self,
        id: &GuestId,
        subnet_id: &str,
        rules: &[polyvisor_core::netops::SecurityRule],
    ) -> Result<()> {
        self.l3_capable()?;
        let (id, sid, rules) = (id.0.clone(), subnet_id.to_string(), rules.to_vec());
        call(&self.conn, &self.cfg, self.cfg.call_timeout, "set security rules", move |c, _| {
            crate::l3::set_rules(c, &ops::lookup(c, &id)?, &id, &sid, &rules)
        })
        .await
    }
}
