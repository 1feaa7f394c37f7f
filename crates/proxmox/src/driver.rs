//! `impl Driver for ProxmoxDriver`: every operation on the PVE API. Each operation runs
//! in its own round-trip counter scope and logs `round_trips` at debug level.

use crate::api::count_scope;
use crate::client::{upid_of, upid_task, vm_path, ProxmoxDriver};
use crate::config::TemplateMode;
use crate::names;
use crate::parse;
use crate::pve_error::PveError;
use crate::tags;
use crate::upid::enc;
use polyvisor_core::task::completed;
use polyvisor_core::task::TaskToken;
use polyvisor_core::{
    Capabilities, CloneSpec, CloneStarted, Console, CreateSpec, Driver, Error, ErrorKind, Guest, GuestId, GuestSummary,
    PowerAction, PowerState, Result, SecretString, Snapshot, SnapshotSpec, TaskId, TaskOutput, TaskStatus,
};
use serde_json::{json, Value};

async fn counted<T>(op: &'static str, fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    let (out, n) = count_scope(fut).await;
    match &out {
        Ok(_) => {
            tracing::debug!(target: "polyvisor_proxmox::round_trips", op, round_trips = n, "done")
        }
        Err(e) => {
            tracing::debug!(target: "polyvisor_proxmox::round_trips", op, round_trips = n, error = %e, detail = e.detail().unwrap_or(""), "failed")
        }
    }
    out
}

/// The VM detail under which the platform keeps the VMID (`allocate_id_hint`), named as
/// CloudStack's built-in Proxmox extension names it.
pub const ID_HINT_DETAIL: &str = "proxmox_vmid";

/// How long a delete waits in-call for the hard stop before handing over to its task.
const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(8);

fn done(op: &str) -> TaskId {
    completed(op, &TaskOutput::default())
}

#[async_trait::async_trait]
impl Driver for ProxmoxDriver {
    fn display_name(&self) -> &str {
        "Proxmox"
    }

    fn capabilities(&self) -> Capabilities {
        self.cfg().template_mode.capabilities()
    }

    async fn probe(&self) -> Result<String> {
        counted("probe", async {
            let v = self.api.get("/version", &[]).await?;
            let version = crate::lenient::str_field(&v, "version").unwrap_or_else(|| "unknown".into());
            Ok(format!("Proxmox VE {version} at {}", self.cfg().display_host))
        })
        .await
    }

    async fn list_guests(&self) -> Result<Vec<GuestSummary>> {
        counted("list", async {
            let list = self.resources().await?;
            self.keep_listing(&list);
            Ok(list.iter().filter(|r| !r.is_placeholder()).map(|r| r.summary()).collect())
        })
        .await
    }

    async fn get_guest(&self, id: &GuestId) -> Result<Guest> {
        counted("get", self.on_vm(id, |vmid, node| async move { self.read_guest(&vmid, &node).await })).await
    }

    async fn find_by_key(&self, key: &str) -> Result<Option<GuestSummary>> {
        counted("find_by_key", async {
            let list = self.resources().await?;
            Ok(self
                .owner_of_key(&list, key, None)
                .await?
                .map(|r| GuestSummary { key: Some(key.to_string()), ..r.summary() }))
        })
        .await
    }

    /// At `hint` on the hinted node: one `status/current` (it carries tags and the template
    /// flag), no listing. Otherwise (or when the guest there is not ours) by key.
    async fn find_owned(&self, key: &str, hint: Option<&GuestId>) -> Result<Option<GuestSummary>> {
        counted("find_owned", async {
            let hinted = hint.and_then(|h| crate::client::vmid_of(h).ok());
            if let Some(vmid) = hinted {
                if let Some(node) = self.node_hint(&vmid) {
                    match self.api.get(&format!("{}/status/current", vm_path(&node, &vmid)), &[]).await {
                        Ok(st) => {
                            let tag_str = crate::lenient::str_field(&st, "tags").unwrap_or_default();
                            let template =
                                crate::lenient::bool_field(&st, "template") || tags::has_template_flag(&tag_str);
                            if tags::key_of(&tag_str).as_deref() == Some(key) && !template {
                                self.remember(&vmid, &node);
                                self.observe(
                                    &vmid,
                                    parse::map_power(
                                        &crate::lenient::str_field(&st, "status").unwrap_or_default(),
                                        crate::lenient::str_field(&st, "qmpstatus").as_deref(),
                                    ),
                                );
                                return Ok(Some(GuestSummary {
                                    id: GuestId::new(vmid.clone()),
                                    name: parse::display_name(crate::lenient::str_field(&st, "name").as_deref(), &vmid),
                                    power: parse::map_power(
                                        &crate::lenient::str_field(&st, "status").unwrap_or_default(),
                                        crate::lenient::str_field(&st, "qmpstatus").as_deref(),
                                    ),
                                    is_template: false,
                                    key: Some(key.to_string()),
                                    node: Some(node),
                                }));
                            }
                        }
                        Err(PveError::VmNotFound(_) | PveError::NotFound(_)) => self.forget(&vmid),
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            let list = self.resources().await?;
            Ok(self
                .owner_of_key(&list, key, None)
                .await?
                .filter(|r| !r.is_template())
                .map(|r| GuestSummary { key: Some(key.to_string()), ..r.summary() }))
        })
        .await
    }

    async fn power(&self, id: &GuestId, action: PowerAction) -> Result<TaskId> {
        counted("power", self.on_vm(id, |vmid, node| async move { self.power_on(&vmid, &node, action).await })).await
    }

    async fn delete_guest(&self, id: &GuestId) -> Result<TaskId> {
        counted("delete", async {
            let vmid = crate::client::vmid_of(id)?;
            if let Some(node) = self.node_hint(&vmid) {
                match self.start_delete(&vmid, &node, true).await {
                    Err(e) if matches!(PveError::of(&e), Some(PveError::VmNotFound(_) | PveError::NotFound(_))) => {
                        self.forget(&vmid)
                    }
                    other => return other,
                }
            }
            let (vmid, node) = match self.node_of(id).await {
                Ok(x) => x,
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(done("delete")),
                Err(e) => return Err(e),
            };
            self.start_delete(&vmid, &node, false).await
        })
        .await
    }

    async fn set_template(&self, id: &GuestId, is_template: bool) -> Result<TaskId> {
        counted(
            "set_template",
            self.on_vm(id, |vmid, node| async move { self.convert(&vmid, &node, is_template).await }),
        )
        .await
    }

    async fn clone_guest(&self, spec: &CloneSpec) -> Result<CloneStarted> {
        counted("clone", self.start_clone(spec)).await
    }

    async fn create_guest(&self, spec: &CreateSpec) -> Result<CloneStarted> {
        counted("create", self.start_create(spec, None)).await
    }

    /// CloudStack's built-in extension keeps the VMID under this VM detail.
    fn id_hint_detail(&self) -> Option<&'static str> {
        Some(ID_HINT_DETAIL)
    }

    /// `GET /cluster/nextid` (one round trip; not a reservation: the create retries with a
    /// new id when this one got taken).
    async fn allocate_id_hint(&self) -> Result<Option<GuestId>> {
        counted("allocate_id_hint", async { Ok(Some(GuestId::new(self.next_id().await?))) }).await
    }

    async fn create_guest_at(&self, spec: &CreateSpec, hint: Option<&GuestId>) -> Result<CloneStarted> {
        counted("create", self.start_create(spec, hint)).await
    }

    async fn list_snapshots(&self, id: &GuestId) -> Result<Vec<Snapshot>> {
        counted(
            "snapshots",
            self.on_vm(id, |vmid, node| async move {
                let list = parse::snapshots(&self.api.get(&format!("{}/snapshot", vm_path(&node, &vmid)), &[]).await?);
                Ok(list
                    .into_iter()
                    .map(|s| Snapshot {
                        name: names::platform_snapshot_name(&s.name),
                        parent: s.parent.as_deref().map(names::platform_snapshot_name),
                        ..s
                    })
                    .collect())
            }),
        )
        .await
    }

    async fn snapshot_exists(&self, id: &GuestId, name: &str) -> Result<bool> {
        let name = names::snapshot_name(name)?;
        counted(
            "snapshot_exists",
            self.on_vm(id, |vmid, node| {
                let name = name.clone();
                async move {
                    let list =
                        parse::snapshots(&self.api.get(&format!("{}/snapshot", vm_path(&node, &vmid)), &[]).await?);
                    if list.iter().any(|s| s.name == name) {
                        return Ok(true);
                    }
                    // Link-clone design: a native template stands for exactly one (virtual)
                    // snapshot, the RAS link label; any other name does not exist.
                    if self.cfg().template_mode == TemplateMode::Native && name == names::LINK_STORED {
                        let cfg = self.api.get(&format!("{}/config", vm_path(&node, &vmid)), &[]).await?;
                        return Ok(crate::lenient::bool_field(&cfg, "template"));
                    }
                    Ok(false)
                }
            }),
        )
        .await
    }

    async fn create_snapshot(&self, id: &GuestId, spec: &SnapshotSpec) -> Result<TaskId> {
        let name = names::snapshot_name(&spec.name)?;
        counted(
            "snapshot_create",
            self.on_vm(id, |vmid, node| {
                let name = name.clone();
                async move { self.start_snapshot(&vmid, &node, &name, spec).await }
            }),
        )
        .await
    }

    async fn revert_snapshot(&self, id: &GuestId, name: &str) -> Result<TaskId> {
        let name = names::snapshot_name(name)?;
        counted(
            "snapshot_revert",
            self.on_vm(id, |vmid, node| {
                let name = name.clone();
                async move {
                    let path = vm_path(&node, &vmid);
                    let data = self.api.get(&format!("{path}/snapshot"), &[]).await?;
                    if !parse::snapshots(&data).iter().any(|s| s.name == name) {
                        return Err(Error::not_found(format!("snapshot '{name}' of guest [{vmid}]")));
                    }
                    let mut p = vec![];
                    if parse::snapshot_list_running(&data) {
                        p.push(("start", "1".to_string()));
                    }
                    let upid = upid_of(&self.api.post(&format!("{path}/snapshot/{}/rollback", enc(&name)), &p).await?)?;
                    Ok(match upid {
                        Some(u) => upid_task("revert", &u, &vmid),
                        None => done("revert"),
                    })
                }
            }),
        )
        .await
    }

    async fn delete_snapshot(&self, id: &GuestId, name: &str) -> Result<TaskId> {
        let name = names::snapshot_name(name)?;
        counted("snapshot_delete", async {
            let r = self
                .on_vm(id, |vmid, node| {
                    let name = name.clone();
                    async move {
                        let upid = upid_of(
                            &self
                                .api
                                .delete(&format!("{}/snapshot/{}", vm_path(&node, &vmid), enc(&name)), &[])
                                .await?,
                        )?;
                        Ok(match upid {
                            Some(u) => TaskToken::new("snapdel", json!({"upid": u.raw, "vmid": vmid})).encode(),
                            None => done("snapshot_delete"),
                        })
                    }
                })
                .await;
            match r {
                Err(e) => match PveError::of(&e) {
                    // Missing snapshot (synchronous on real PVE): already gone.
                    Some(PveError::SnapshotNotFound(_)) => Ok(done("snapshot_delete")),
                    // Native templates have no snapshots; the link-clone design treats this as done.
                    Some(PveError::IsTemplate(_)) if self.native() => Ok(done("snapshot_delete")),
                    _ => Err(e),
                },
                ok => ok,
            }
        })
        .await
    }

    async fn advance_task(&self, token: &TaskToken) -> Result<TaskStatus> {
        counted("task_status", self.advance(token)).await
    }

    async fn console(&self, id: &GuestId) -> Result<Console> {
        counted(
            "console",
            self.on_vm(id, |vmid, node| async move {
                let v = self.api.post(&format!("{}/vncproxy", vm_path(&node, &vmid)), &[]).await?;
                let port = crate::lenient::u64_field(&v, "port")
                    .and_then(|p| u16::try_from(p).ok())
                    .ok_or_else(|| Error::backend("vncproxy answer has no port"))?;
                let ticket = v
                    .get("ticket")
                    .and_then(Value::as_str)
                    .ok_or_else(|| Error::backend("vncproxy answer has no ticket"))?;
                let configured =
                    || self.cfg().display_host.rsplit_once(':').map(|(h, _)| h.to_string()).unwrap_or_default();
                // The guest is on the node the platform names, which is the host it gave us
                // (CloudStack: one host = one node at `url`): its address is known. Else the
                // node's own address from its network configuration.
                let host = if self.cfg().node.as_deref() == Some(node.as_str()) {
                    configured()
                } else {
                    match self.api.get(&format!("/nodes/{}/network", enc(&node)), &[]).await {
                        Ok(net) => node_address(&net),
                        Err(_) => None,
                    }
                    .unwrap_or_else(configured)
                };
                Ok(Console::Vnc { host, port, password: Some(SecretString::from(ticket.to_string())), one_time: true })
            }),
        )
        .await
    }

    // --- Guest networking (CloudShell L2): see `crate::netops`.

    async fn attach_vlan(&self, id: &GuestId, req: &polyvisor_core::netops::VlanAttach) -> Result<polyvisor_core::Nic> {
        counted("attach_vlan", self.pve_attach_vlan(id, req)).await
    }

    async fn detach_vlan(&self, id: &GuestId, mac: &str) -> Result<()> {
        counted("detach_vlan", self.pve_detach_vlan(id, mac)).await
    }

    // --- Events and metrics (issue 12) ---

    async fn events_since(
        &self,
        cursor: Option<&polyvisor_core::events::EventCursor>,
    ) -> Result<polyvisor_core::events::EventBatch> {
        counted("events", self.pve_events(cursor)).await
    }

    async fn metrics(
        &self,
        id: &GuestId,
        start: u64,
        end: u64,
        interval: polyvisor_core::events::MetricsInterval,
    ) -> Result<Vec<polyvisor_core::events::MetricSample>> {
        counted("metrics", self.pve_metrics(id, start, end, interval)).await
    }
}

/// The node address for consoles: first static non-bridge/bond interface with an
/// address, else the first with a CIDR (CloudStack built-in rule).
pub(crate) fn node_address(net: &Value) -> Option<String> {
    let list = net.as_array()?;
    let addr = |i: &Value| {
        i.get("address")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| i.get("cidr").and_then(Value::as_str).and_then(|c| c.split('/').next()).map(str::to_string))
    };
    list.iter()
        .find(|i| {
            let t = i.get("type").and_then(Value::as_str).unwrap_or_default();
            t != "bridge"
                && t != "bond"
                && i.get("method").and_then(Value::as_str) == Some("static")
                && addr(i).is_some()
        })
        .or_else(|| list.iter().find(|i| i.get("cidr").is_some()))
        .and_then(addr)
}

impl ProxmoxDriver {
    /// status/current + config (concurrently), then the agent when running with one.
    pub(crate) async fn read_guest(&self, vmid: &str, node: &str) -> Result<Guest> {
        let path = vm_path(node, vmid);
        let status_path = format!("{path}/status/current");
        let config_path = format!("{path}/config");
        let (status, config) = tokio::join!(self.api.get(&status_path, &[]), self.api.get(&config_path, &[]));
        let (status, config) = (status?, config?);
        let running = crate::lenient::str_field(&status, "status").as_deref() == Some("running");
        let agent = if running && parse::agent_enabled(&config) {
            match self.api.get(&format!("{path}/agent/network-get-interfaces"), &[]).await {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::debug!(vmid, error = %e, "guest agent gave no interfaces");
                    None
                }
            }
        } else {
            None
        };
        Ok(parse::guest(vmid, node, &status, &config, agent.as_ref()))
    }

    async fn power_on(&self, vmid: &str, node: &str, action: PowerAction) -> Result<TaskId> {
        let path = vm_path(node, vmid);
        let (endpoint, params): (&str, Vec<(&str, String)>) = match action {
            // Running → done, paused → resume, else start. The state comes from a read this
            // process made moments ago (find_owned) or from one status read.
            PowerAction::Start => {
                let power = match self.take_observed(vmid) {
                    Some(p) => p,
                    None => {
                        let st = self.api.get(&format!("{path}/status/current"), &[]).await?;
                        parse::map_power(
                            &crate::lenient::str_field(&st, "status").unwrap_or_default(),
                            crate::lenient::str_field(&st, "qmpstatus").as_deref(),
                        )
                    }
                };
                match power {
                    PowerState::PoweredOn => return Ok(done("start")),
                    PowerState::Suspended => ("resume", vec![]),
                    _ => ("start", vec![]),
                }
            }
            PowerAction::Stop => ("stop", vec![]),
            PowerAction::Shutdown => {
                ("shutdown", vec![("forceStop", "1".into()), ("timeout", self.cfg().shutdown_timeout_secs.to_string())])
            }
            PowerAction::Reset => ("reset", vec![]),
            PowerAction::Reboot => ("reboot", vec![]),
            PowerAction::Suspend => ("suspend", vec![]),
            PowerAction::Resume => ("resume", vec![]),
        };
        let answer = match self.api.post(&format!("{path}/status/{endpoint}"), &params).await {
            // Idempotent: stopping or shutting down a stopped guest succeeds.
            Err(PveError::NotRunning(_)) if matches!(action, PowerAction::Stop | PowerAction::Shutdown) => {
                return Ok(done(endpoint))
            }
            Err(PveError::AlreadyRunning(_)) if action == PowerAction::Start => {
                let st = self.api.get(&format!("{path}/status/current"), &[]).await?;
                let power = parse::map_power(
                    &crate::lenient::str_field(&st, "status").unwrap_or_default(),
                    crate::lenient::str_field(&st, "qmpstatus").as_deref(),
                );
                if power != PowerState::Suspended {
                    return Ok(done("start"));
                }
                self.api.post(&format!("{path}/status/resume"), &[]).await?
            }
            other => other?,
        };
        Ok(match upid_of(&answer)? {
            Some(u) => upid_task(endpoint, &u, vmid),
            None => done(endpoint),
        })
    }

    /// DELETE when stopped; when running, hard-stop first (the task issues the DELETE).
    /// On a `guessed` node a missing VM is an error (the caller locates it), else success.
    pub(crate) async fn start_delete(&self, vmid: &str, node: &str, guessed: bool) -> Result<TaskId> {
        let path = vm_path(node, vmid);
        let params = [("purge", "1".to_string()), ("destroy-unreferenced-disks", "1".to_string())];
        match self.api.delete(&path, &params).await {
            Ok(v) => {
                self.forget(vmid);
                Ok(match upid_of(&v)? {
                    Some(u) => TaskToken::new("delete", json!({"vmid": vmid, "node": node, "upid": u.raw})).encode(),
                    None => done("delete"),
                })
            }
            Err(e @ PveError::VmNotFound(_)) if guessed => Err(e.into()),
            Err(PveError::VmNotFound(_)) => {
                self.forget(vmid);
                Ok(done("delete"))
            }
            Err(PveError::IsRunning(_)) => {
                // Hard stop, wait for it (bounded), then DELETE now: some fronts never poll
                // a delete task. If the stop takes longer, the task issues the DELETE.
                let stop = upid_of(&self.api.post(&format!("{path}/status/stop"), &[]).await?)?;
                if let Some(u) = stop {
                    let deadline = tokio::time::Instant::now() + STOP_WAIT;
                    loop {
                        match self.task_state(&u).await? {
                            crate::client::PveTask::Running if tokio::time::Instant::now() < deadline => {
                                tokio::time::sleep(std::time::Duration::from_millis(200)).await
                            }
                            _ => break,
                        }
                    }
                }
                let chained = TaskToken::new("delete", json!({"vmid": vmid, "node": node})).encode();
                match self.api.delete(&path, &params).await {
                    Ok(v) => {
                        self.forget(vmid);
                        Ok(match upid_of(&v)? {
                            Some(u) => {
                                TaskToken::new("delete", json!({"vmid": vmid, "node": node, "upid": u.raw})).encode()
                            }
                            None => done("delete"),
                        })
                    }
                    Err(PveError::VmNotFound(_)) => Ok(done("delete")),
                    Err(PveError::IsRunning(_) | PveError::Locked(_)) => Ok(chained),
                    Err(e) => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn convert(&self, vmid: &str, node: &str, to_template: bool) -> Result<TaskId> {
        let path = vm_path(node, vmid);
        let config = self.api.get(&format!("{path}/config"), &[]).await?;
        let native = crate::lenient::bool_field(&config, "template");
        let tag_str = crate::lenient::str_field(&config, "tags").unwrap_or_default();
        let flagged = tags::has_template_flag(&tag_str);
        match (self.cfg().template_mode, to_template) {
            (TemplateMode::Flag, true) => {
                if !flagged && !native {
                    let mut t = tags::split(&tag_str);
                    t.push(tags::TEMPLATE_TAG.into());
                    self.api.put(&format!("{path}/config"), &[("tags", tags::join(&t))]).await?;
                }
                Ok(done("convert"))
            }
            (TemplateMode::Native, true) => {
                if native {
                    return Ok(done("convert"));
                }
                let upid = upid_of(&self.api.post(&format!("{path}/template"), &[]).await?)?;
                Ok(match upid {
                    Some(u) => upid_task("convert", &u, vmid),
                    None => done("convert"),
                })
            }
            (_, false) => {
                let mut p: Vec<(&str, String)> = Vec::new();
                if flagged {
                    let t: Vec<String> = tags::split(&tag_str)
                        .into_iter()
                        .filter(|t| !t.eq_ignore_ascii_case(tags::TEMPLATE_TAG))
                        .collect();
                    if t.is_empty() {
                        p.push(("delete", "tags".into()));
                    } else {
                        p.push(("tags", tags::join(&t)));
                    }
                }
                if native {
                    p.push(("template", "0".into()));
                }
                if !p.is_empty() {
                    self.api.put(&format!("{path}/config"), &p).await?;
                }
                Ok(done("convert"))
            }
        }
    }

    /// The POST alone: PVE checks the name inside the task, so an existing snapshot of that
    /// name shows as the task failing with "already used"; the task then replaces it (see
    /// `tasks.rs`, `snapcreate`), carrying what a re-create needs.
    async fn start_snapshot(&self, vmid: &str, node: &str, name: &str, spec: &SnapshotSpec) -> Result<TaskId> {
        match self.post_snapshot(vmid, node, name, spec.include_memory, spec.description.as_deref()).await {
            Ok(Some(u)) => Ok(TaskToken::new(
                "snapcreate",
                json!({"vmid": vmid, "node": node, "upid": u.raw, "name": name,
                       "vmstate": spec.include_memory, "description": spec.description}),
            )
            .encode()),
            Ok(None) => Ok(done("snapshot")),
            // Real PVE refuses synchronously in some versions: replace through the task.
            Err(PveError::AlreadyExists(_)) => Ok(TaskToken::new(
                "snapreplace",
                json!({"vmid": vmid, "node": node, "name": name, "vmstate": spec.include_memory,
                       "description": spec.description}),
            )
            .encode()),
            // The virtual link label of a native template "exists" already; real names cannot.
            Err(PveError::IsTemplate(_)) if self.native() && name == names::LINK_STORED => Ok(done("snapshot")),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) async fn post_snapshot(
        &self,
        vmid: &str,
        node: &str,
        name: &str,
        vmstate: bool,
        desc: Option<&str>,
    ) -> Result<Option<crate::upid::Upid>, PveError> {
        let mut p = vec![("snapname", name.to_string()), ("vmstate", if vmstate { "1" } else { "0" }.to_string())];
        if let Some(d) = desc.filter(|d| !d.is_empty()) {
            p.push(("description", d.to_string()));
        }
        upid_of(&self.api.post(&format!("{}/snapshot", vm_path(node, vmid)), &p).await?)
    }
}
