//! The [`Driver`] implementation: async wrappers over [`crate::ops`], bounded by
//! [`crate::conn::call`], and task tokens whose state is read back from libvirt.

use crate::config::Config;
use crate::conn::call;
use crate::ops;
use async_trait::async_trait;
use polyvisor_core::task::{completed, now_unix, TaskToken};
use polyvisor_core::{
    Capabilities, CloneMode, CloneSpec, CloneStarted, Console, CreateSource, CreateSpec, Driver, Error, Guest, GuestId,
    GuestSummary, PowerAction, Result, SecretString, Snapshot, SnapshotSpec, TaskId, TaskOutput, TaskStatus,
};
use serde_json::json;

/// The libvirt driver (stateless: one connection per call).
pub(crate) struct LibvirtDriver {
    cfg: Config,
    conn: crate::conn::Shared,
}

impl LibvirtDriver {
    /// A driver for the given configuration (no I/O).
    pub(crate) fn new(cfg: Config) -> Self {
        LibvirtDriver { cfg, conn: crate::conn::Shared::default() }
    }

    fn done(op: &str) -> TaskId {
        completed(op, &TaskOutput::default())
    }
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

    async fn list_guests(&self) -> Result<Vec<GuestSummary>> {
        call(&self.conn, &self.cfg, self.cfg.call_timeout, "list", |c, _| ops::list(c)).await
    }

    async fn get_guest(&self, id: &GuestId) -> Result<Guest> {
        let id = id.0.clone();
        call(&self.conn, &self.cfg, self.cfg.call_timeout, "get", move |c, cfg| {
            ops::guest(&ops::lookup(c, &id)?, cfg.is_local_qemu())
        })
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
        let id = id.0.clone();
        call(&self.conn, &self.cfg, self.cfg.call_timeout, "delete", move |c, _| ops::delete(c, &id)).await?;
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
        let (source, name, mode) = (spec.source.0.clone(), spec.name.clone(), spec.mode);
        let linked_ok = self.capabilities().linked_clones;
        let uuid = crate::names::new_uuid();
        let new_id = call(&self.conn, &self.cfg, self.cfg.call_timeout, "clone", move |c, cfg| {
            let d = ops::lookup(c, &source)?;
            let (_, x) = ops::xml(&d, true)?;
            let linked = match mode {
                CloneMode::Linked => true,
                CloneMode::Full => false,
                CloneMode::Auto => (x.meta.template || snap.is_some()) && linked_ok,
            };
            ops::clone(c, &cfg.pool, &source, &name, linked, &uuid, snap.as_deref(), &ops::CloneExtra::default())
        })
        .await?;
        let body = json!({"id": new_id, "start": spec.start, "started": false});
        let task = TaskToken::new("lv-clone", body).with_max_age(self.cfg.ready_timeout.as_secs()).encode();
        Ok(CloneStarted { task, new_guest: Some(GuestId::new(new_id)) })
    }

    async fn create_guest(&self, spec: &CreateSpec) -> Result<CloneStarted> {
        crate::names::validate_name(&spec.name)?;
        if spec.key.trim().is_empty() {
            return Err(Error::invalid("create needs a platform key"));
        }
        let started = |id: String, need_ip: bool, ready: u64| {
            let task = TaskToken::new("lv-clone", json!({"id": id, "start": true, "need_ip": need_ip}))
                .with_max_age(ready)
                .encode();
            CloneStarted { task, new_guest: Some(GuestId::new(id)) }
        };
        let ready = self.cfg.ready_timeout.as_secs();
        if let Some(g) = self.find_by_key(&spec.key).await? {
            return Ok(started(g.id.0, false, ready));
        }
        let mut nics = Vec::new();
        for n in &spec.nics {
            let mac = match &n.mac {
                Some(m) => polyvisor_core::net::normalize_mac(m)
                    .ok_or_else(|| Error::invalid(format!("invalid MAC '{}'", m.escape_default())))?,
                None => crate::names::new_mac(),
            };
            let network = n.network.clone().unwrap_or_else(|| self.cfg.network.clone());
            if network.contains(['<', '>', '&', '\'', '"', '\0']) {
                return Err(Error::invalid("invalid network name"));
            }
            if n.vlan.is_some() && !self.cfg.vlans {
                tracing::info!("VLAN tag ignored (setting 'vlans' is off)");
            }
            nics.push(crate::domxml::NewNic { mac, network, vlan: n.vlan.filter(|_| self.cfg.vlans) });
        }
        let uuid = crate::names::new_uuid();
        let spec2 = spec.clone();
        let pool_override = spec.storage.clone();
        let need_ip = matches!(spec.source, CreateSource::Template { .. });
        let id = call(&self.conn, &self.cfg, self.cfg.call_timeout, "create", move |c, cfg| match &spec2.source {
            CreateSource::Template { id, full } => {
                let extra = ops::CloneExtra {
                    key: Some(spec2.key.clone()),
                    vcpus: spec2.cpus,
                    memory_mb: spec2.memory_mb,
                    nics: (!nics.is_empty()).then_some(nics),
                };
                ops::clone(c, &cfg.pool, &id.0, &spec2.name, !full && !cfg.is_test_driver(), &uuid, None, &extra)
            }
            CreateSource::Iso { path, os_type } => ops::create_from_iso(
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
            ),
        })
        .await?;
        Ok(started(id, need_ip, ready))
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
        let (id, s) = (id.0.clone(), spec.clone());
        call(&self.conn, &self.cfg, self.cfg.call_timeout, "snapshot create", move |c, _| {
            ops::create_snapshot(&ops::lookup(c, &id)?, &s.name, s.include_memory, s.description.as_deref())
        })
        .await?;
        Ok(Self::done("snapshot"))
    }

    async fn revert_snapshot(&self, id: &GuestId, name: &str) -> Result<TaskId> {
        let (id, name) = (id.0.clone(), name.to_string());
        call(&self.conn, &self.cfg, self.cfg.call_timeout, "snapshot revert", move |c, _| {
            ops::revert_snapshot(&ops::lookup(c, &id)?, &id, &name)
        })
        .await?;
        Ok(Self::done("revert"))
    }

    async fn delete_snapshot(&self, id: &GuestId, name: &str) -> Result<TaskId> {
        let (id, name) = (id.0.clone(), name.to_string());
        call(&self.conn, &self.cfg, self.cfg.call_timeout, "snapshot delete", move |c, _| match ops::lookup(c, &id) {
            Ok(d) => ops::delete_snapshot(&d, &name),
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
                call(&self.conn, &self.cfg, self.cfg.call_timeout, "clone status", move |c, cfg| {
                    let d = match ops::lookup(c, &gid) {
                        Ok(d) => d,
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
                    let g = ops::guest(&d, cfg.is_local_qemu())?;
                    if need_ip && g.ipv4_addresses().is_empty() && !cfg.is_test_driver() {
                        return Ok(TaskStatus::Running);
                    }
                    Ok(TaskStatus::Completed(out))
                })
                .await
            }
            _ => Err(tok.unknown()),
        }
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
}
