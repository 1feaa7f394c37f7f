//! Clones and creates: submission (nextid + clone/create, collisions retried, retries of
//! the same request adopted) and the `provision` task state machine that finishes them
//! from live state alone (tag fix-up, config, start, wait for IPv4, clean-up on failure).

use crate::client::{task_error, upid_of, vm_path, vmid_of, ProxmoxDriver, PveTask};
use crate::config::{CloneDefault, TemplateMode};
use crate::names;
use crate::pve_error::PveError;
use crate::tags;
use crate::upid::{enc, Upid};
use polyvisor_core::task::TaskToken;
use polyvisor_core::{
    CloneMode, CloneSpec, CloneStarted, CreateSource, CreateSpec, Error, GuestId, Result, TaskOutput, TaskStatus,
};
use serde_json::{json, Value};

/// Whether a description carries exactly this marker line.
pub(crate) fn has_marker(description: &str, marker: &str) -> bool {
    description.lines().any(|l| l.trim() == marker)
}

const CLONE_ATTEMPTS: usize = 5;
/// Seconds after which a provision poll that finds the VM still locked also reads its task.
const LOCKED_TASK_CHECK_SECS: u64 = 30;
const MARK: &str = "polyvisor:";

pub(crate) fn marker(src: &str, key: Option<&str>) -> String {
    match key {
        Some(k) => format!("{MARK} key={k}"),
        None => format!("{MARK} clone-of={src}"),
    }
}

impl ProxmoxDriver {
    pub(crate) async fn start_clone(&self, spec: &CloneSpec) -> Result<CloneStarted> {
        let src = vmid_of(&spec.source)?;
        let name = names::dns_name(&spec.name)?;
        let list = self.resources().await?;
        let source = list.iter().find(|r| r.vmid == src).ok_or_else(|| Error::not_found(format!("guest [{src}]")))?;
        let native = source.native_template;
        let full = match spec.mode {
            CloneMode::Full => true,
            // PVE always copies a normal VM in full; only native templates link.
            CloneMode::Linked => {
                if !native {
                    tracing::debug!(source = %src, "linked clone of a non-template: Proxmox makes a full copy");
                }
                !native
            }
            CloneMode::Auto => !native || self.cfg().clone_default == CloneDefault::Full,
        };
        let snapname = match spec.snapshot.as_deref() {
            None | Some("") => None,
            // A native template has no snapshots: only the virtual link-clone label means
            // "the template itself"; any other name does not exist (never the current state).
            Some(names::LINK_LABEL) if native => None,
            Some(s) if native => {
                return Err(Error::not_found(format!(
                    "snapshot '{}' of template [{src}] (a native Proxmox template has no snapshots; \
                     only '{}' clones the template itself)",
                    crate::validate::shown(s),
                    names::LINK_LABEL
                )))
            }
            Some(s) => Some(names::snapshot_name(s)?),
        };
        let desc = marker(&src, None);
        // Adopt an earlier clone of the same request (same name, our marker for this source).
        for r in list.iter().filter(|r| r.name.as_deref() == Some(name.as_str()) && r.vmid != src) {
            let cfg = self.api.get(&format!("{}/config", vm_path(&r.node, &r.vmid)), &[]).await?;
            if crate::lenient::str_field(&cfg, "description").is_some_and(|d| has_marker(&d, &desc)) {
                let body = json!({"id": r.vmid, "node": r.node, "start": spec.start, "ip": true});
                return Ok(CloneStarted {
                    task: TaskToken::new("provision", body).encode(),
                    new_guest: Some(GuestId::new(r.vmid.clone())),
                });
            }
        }
        let mut p: Vec<(&str, String)> =
            vec![("name", name.clone()), ("full", if full { "1" } else { "0" }.into()), ("description", desc)];
        if let Some(s) = snapname {
            p.push(("snapname", s));
        }
        if full {
            if let Some(st) = &self.cfg().storage {
                p.push(("storage", st.clone()));
            }
        }
        if let Some(pool) = &self.cfg().pool {
            p.push(("pool", pool.clone()));
        }
        let (newid, upid) =
            self.submit_with_new_id(&format!("{}/clone", vm_path(&source.node, &src)), "newid", p, None).await?;
        self.remember(&newid, &source.node);
        let body = json!({"id": newid, "node": source.node, "upid": upid.raw, "start": spec.start, "ip": true});
        Ok(CloneStarted { task: TaskToken::new("provision", body).encode(), new_guest: Some(GuestId::new(newid)) })
    }

    /// The POST at `first` (an id hint believed free), else at `GET /cluster/nextid`; a
    /// collision (the id got taken meanwhile: nextid does not reserve) fetches a new id
    /// and retries.
    async fn submit_with_new_id(
        &self,
        path: &str,
        id_param: &'static str,
        params: Vec<(&'static str, String)>,
        first: Option<String>,
    ) -> Result<(String, Upid), PveError> {
        let mut last = None;
        let mut first = first;
        for attempt in 0..CLONE_ATTEMPTS {
            let id = match first.take() {
                Some(id) => id,
                None => self.next_id().await?,
            };
            let mut p = params.clone();
            p.push((id_param, id.clone()));
            match self.api.post(path, &p).await {
                Ok(v) => {
                    let upid = upid_of(&v)?.ok_or_else(|| PveError::BadAnswer("Proxmox gave no task id".into()))?;
                    return Ok((id, upid));
                }
                Err(e @ PveError::AlreadyExists(_)) => {
                    tracing::debug!(attempt, vmid = %id, "VMID taken concurrently; retrying with a new one");
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| PveError::BadAnswer("no free VMID".into())))
    }

    /// `GET /cluster/nextid`: the lowest free VMID (in the datacenter's `next-id` range).
    pub(crate) async fn next_id(&self) -> Result<String, PveError> {
        Ok(crate::lenient::u64_of(Some(&self.api.get("/cluster/nextid", &[]).await?))
            .ok_or_else(|| PveError::BadAnswer("cluster/nextid gave no VMID".into()))?
            .to_string())
    }

    /// `hint`: a VMID allocated earlier (`allocate_id_hint`), tried first when the listing
    /// shows it free; never trusted for ownership (the key decides).
    pub(crate) async fn start_create(&self, spec: &CreateSpec, hint: Option<&GuestId>) -> Result<CloneStarted> {
        if spec.key.trim().is_empty() {
            return Err(Error::invalid("create needs a platform key"));
        }
        let name = names::dns_name(&spec.name)?;
        let mut fix: Vec<(String, String)> = Vec::new();
        if let Some(c) = spec.cpus {
            fix.push(("cores".into(), c.to_string()));
        }
        if let Some(m) = spec.memory_mb {
            fix.push(("memory".into(), m.to_string()));
        }
        if spec.nics.len() > 32 {
            return Err(Error::invalid("Proxmox VMs have at most 32 NICs"));
        }
        for (i, n) in spec.nics.iter().enumerate() {
            let mut v = match n.mac.as_deref().filter(|m| !m.trim().is_empty()) {
                None => "virtio".to_string(),
                Some(raw) => match polyvisor_core::net::normalize_mac(raw) {
                    Some(mac) => format!("virtio={mac}"),
                    None => {
                        return Err(Error::invalid(format!(
                            "NIC {i}: MAC '{}' is not a MAC address",
                            crate::validate::shown(raw)
                        )))
                    }
                },
            };
            let bridge = n.network.clone().unwrap_or_else(|| self.cfg().bridge.clone());
            crate::validate::bridge(&bridge, &format!("NIC {i}: network"))?;
            v.push_str(&format!(",bridge={bridge}"));
            if let Some(tag) = n.vlan {
                crate::validate::vlan(tag, &format!("NIC {i}:"))?;
                v.push_str(&format!(",tag={tag}"));
            }
            v.push_str(",firewall=0");
            fix.push((format!("net{i}"), v));
        }
        let fix_json: Value =
            fix.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect::<serde_json::Map<_, _>>().into();
        let storage = spec.storage.clone().or_else(|| self.cfg().storage.clone());
        if let Some(st) = &spec.storage {
            crate::validate::storage_id(st, "storage")?;
        }
        if let CreateSource::Iso { path, os_type } = &spec.source {
            crate::validate::volume_id(path, "ISO")?;
            if let Some(o) = os_type {
                crate::validate::os_type(o, "OS type")?;
            }
        }
        // The listing the front read moments ago in this process (its ownership and name
        // checks), else a fresh one.
        let list = self.recent_resources().await?;
        // Idempotent per key: the tag (once configured) or our description marker (from the
        // very first request on). A half-made VM is finished by the convergent task.
        if let Some(r) = self.owner_of_key(&list, &spec.key, Some(&name)).await? {
            if r.native_template {
                return Err(Error::conflict(format!(
                    "guest [{}] carries the key '{}' but is a template",
                    r.vmid,
                    crate::validate::shown(&spec.key)
                )));
            }
            return Ok(self.provision_task(&r.vmid, &r.node, None, &spec.key, fix_json));
        }
        let desc = marker("", Some(&spec.key));
        // The hinted VMID, when canonical and not in use (the POST still fails on a
        // collision, then a new id is fetched).
        let first = hint
            .and_then(|h| vmid_of(h).ok())
            .filter(|h| !list.iter().any(|r| &r.vmid == h) && h.parse::<u64>().is_ok_and(|n| n >= 100));

        let (id, node, upid) = match &spec.source {
            CreateSource::Template { id, full } => {
                let src = vmid_of(id)?;
                let t =
                    list.iter().find(|r| r.vmid == src).ok_or_else(|| Error::not_found(format!("template [{src}]")))?;
                let full = *full || !t.native_template || self.cfg().clone_default == CloneDefault::Full;
                let mut p: Vec<(&str, String)> =
                    vec![("name", name.clone()), ("full", if full { "1" } else { "0" }.into()), ("description", desc)];
                if full {
                    if let Some(s) = &storage {
                        p.push(("storage", s.clone()));
                    }
                }
                if let Some(pool) = &self.cfg().pool {
                    p.push(("pool", pool.clone()));
                }
                let (id, upid) =
                    self.submit_with_new_id(&format!("{}/clone", vm_path(&t.node, &src)), "newid", p, first).await?;
                (id, t.node.clone(), upid)
            }
            CreateSource::Iso { path, os_type } => {
                let node = self
                    .cfg()
                    .node
                    .clone()
                    .ok_or_else(|| Error::invalid("setting 'node' is required to create from an ISO"))?;
                let storage = storage.unwrap_or_else(|| "local-lvm".into());
                let size = spec.disk_size_gb.unwrap_or(self.cfg().disk_size_gb).max(1);
                let mut p: Vec<(&str, String)> = vec![
                    ("name", name.clone()),
                    ("description", desc),
                    ("ide2", format!("{path},media=cdrom")),
                    ("ostype", os_type.clone().unwrap_or_else(|| self.cfg().iso_os_type.clone())),
                    ("scsihw", "virtio-scsi-single".into()),
                    ("scsi0", format!("{storage}:{size},iothread=on")),
                    ("sockets", "1".into()),
                    ("tags", tags::key_tag(&spec.key)),
                ];
                for (k, v) in &fix {
                    let k: &'static str = match k.as_str() {
                        "cores" => "cores",
                        "memory" => "memory",
                        _ => continue,
                    };
                    p.push((k, v.clone()));
                }
                for (i, (_, v)) in fix.iter().filter(|(k, _)| k.starts_with("net")).enumerate().take(8) {
                    const NETS: [&str; 8] = ["net0", "net1", "net2", "net3", "net4", "net5", "net6", "net7"];
                    p.push((NETS[i], v.clone()));
                }
                if let Some(pool) = &self.cfg().pool {
                    p.push(("pool", pool.clone()));
                }
                let (id, upid) =
                    self.submit_with_new_id(&format!("/nodes/{}/qemu", enc(&node)), "vmid", p, first).await?;
                (id, node, upid)
            }
        };
        self.remember(&id, &node);
        Ok(self.provision_task(&id, &node, Some(&upid), &spec.key, fix_json))
    }

    fn provision_task(&self, id: &str, node: &str, upid: Option<&Upid>, key: &str, fix: Value) -> CloneStarted {
        let body = json!({"id": id, "node": node, "upid": upid.map(|u| u.raw.clone()), "start": true, "ip": false, "key": key, "fix": fix});
        CloneStarted { task: TaskToken::new("provision", body).encode(), new_guest: Some(GuestId::new(id)) }
    }

    /// One poll of a clone/create task (all progress discovered from live state).
    pub(crate) async fn advance_provision(&self, t: &TaskToken) -> Result<TaskStatus> {
        let id = t.req_str("id")?.to_string();
        let node = t.req_str("node")?.to_string();
        let key = t.str("key").map(str::to_string);
        let what = if key.is_some() { "Create" } else { "Clone" };
        let out = || TaskStatus::Completed(TaskOutput { new_guest: Some(GuestId::new(id.clone())) });
        let path = vm_path(&node, &id);
        // The config first: an existing, unlocked VM means the clone/create task is over
        // (PVE removes the VM when it fails), so its status is read only otherwise.
        let cfg = match self.api.get(&format!("{path}/config"), &[]).await {
            Ok(c) => Some(c),
            Err(PveError::VmNotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let locked = cfg.as_ref().is_some_and(|c| crate::lenient::str_field(c, "lock").is_some_and(|l| !l.is_empty()));
        // Locked = the clone/create still runs (PVE removes the VM when it fails, so a failure
        // shows as absent): one read per poll. Only a lock that outlasts
        // LOCKED_TASK_CHECK_SECS also reads the task, in case a failure left the lock behind.
        let lock_is_old = polyvisor_core::task::now_unix() >= t.created.saturating_add(LOCKED_TASK_CHECK_SECS);
        if let Some(u) = t.str("upid").filter(|_| cfg.is_none() || (locked && lock_is_old)) {
            match self.task_state(&Upid::parse(u)?).await? {
                PveTask::Running => return Ok(TaskStatus::Running),
                PveTask::Failed(msg) => {
                    self.cleanup(&id, &node, key.as_deref()).await;
                    return Ok(TaskStatus::Failed(task_error(&format!("{what} of guest [{id}] failed"), &msg)));
                }
                PveTask::Ok => {}
            }
        }
        let cfg = match cfg {
            Some(c) if !locked => c,
            // Locked by something else after our task ended (or a retried create meets a
            // clone that is still running): wait.
            Some(_) => return Ok(TaskStatus::Running),
            None => {
                return Ok(TaskStatus::Failed(Error::backend(format!(
                    "{what} of guest [{id}] failed: the guest disappeared"
                ))))
            }
        };
        // Converge: every poll compares the live config with the request field by field and
        // writes only what differs (tags/ownership key, cores, memory, each NIC with its MAC
        // and VLAN, NICs the request does not name). A retried create re-runs this on a
        // half-made VM, so it never completes with a VM that differs from the request.
        let tag_str = crate::lenient::str_field(&cfg, "tags").unwrap_or_default();
        let want_key = key.as_deref().map(tags::key_tag);
        let key_ok = match &key {
            Some(k) => tags::key_of(&tag_str).as_deref() == Some(k.as_str()) && !tags::has_template_flag(&tag_str),
            None => !tags::has_markers(&tag_str),
        };
        let mut p: Vec<(String, String)> = Vec::new();
        let mut deletes: Vec<String> = Vec::new();
        if !key_ok {
            let mut new_tags = tags::without_markers(&tag_str);
            new_tags.extend(want_key);
            if new_tags.is_empty() {
                deletes.push("tags".into());
            } else {
                p.push(("tags".into(), tags::join(&new_tags)));
            }
        }
        if let Some(fix) = t.body.get("fix").and_then(Value::as_object) {
            for (k, want) in fix.iter().filter_map(|(k, v)| Some((k, v.as_str()?))) {
                let have = crate::lenient::str_field(&cfg, k);
                if !config_matches(k, want, have.as_deref()) {
                    p.push((k.clone(), with_kept_mac(want, have.as_deref())));
                }
            }
            if fix.keys().any(|k| k.starts_with("net")) {
                if let Some(obj) = cfg.as_object() {
                    deletes.extend(obj.keys().filter(|k| is_net_key(k) && !fix.contains_key(*k)).cloned());
                }
            }
        }
        if !deletes.is_empty() {
            p.push(("delete".into(), deletes.join(",")));
        }
        let mut stopped_now = false;
        // This task made the VM (its clone/create UPID is in the token): PVE made it stopped
        // and only this task starts it, after configuring it in the same poll, so it cannot
        // be running with a config that differs; no status read. A VM this task adopted (a
        // retried create) may be running: read its status first.
        let made_here = t.str("upid").is_some();
        if !p.is_empty() {
            // Changes to a running VM would only be pending: stop it first (it is ours and
            // not yet handed over), then configure on the next poll.
            let running = !made_here && {
                let st = self.api.get(&format!("{path}/status/current"), &[]).await?;
                crate::lenient::str_field(&st, "status").as_deref() == Some("running")
            };
            if running {
                tracing::info!(vmid = %id, "half-made guest is running with a config that differs; stopping it");
                return match self.api.post(&format!("{path}/status/stop"), &[]).await {
                    Ok(_) | Err(PveError::Locked(_) | PveError::NotRunning(_)) => Ok(TaskStatus::Running),
                    Err(e) => Err(e.into()),
                };
            }
            let pr: Vec<(&str, String)> = p.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
            match self.api.put(&format!("{path}/config"), &pr).await {
                Ok(_) => stopped_now = true,
                Err(PveError::Locked(_)) => return Ok(TaskStatus::Running),
                Err(e) => {
                    self.cleanup(&id, &node, key.as_deref()).await;
                    return Ok(TaskStatus::Failed(
                        Error::from(e).context(format!("{what} of guest [{id}] failed to configure")),
                    ));
                }
            }
        }
        if !t.body.get("start").and_then(Value::as_bool).unwrap_or(false) {
            return Ok(out());
        }
        // Power from status/current alone; the full read (config + agent) only when an
        // IPv4 address is awaited. Just configured while stopped (and unlocked): known.
        let want_ip = t.body.get("ip").and_then(Value::as_bool).unwrap_or(false);
        let (power, has_ip) = if stopped_now {
            (polyvisor_core::PowerState::PoweredOff, false)
        } else if want_ip {
            let g = self.read_guest(&id, &node).await?;
            let has_ip = !g.ipv4_addresses().is_empty();
            (g.power, has_ip)
        } else {
            let st = self.api.get(&format!("{path}/status/current"), &[]).await?;
            let power = crate::parse::map_power(
                &crate::lenient::str_field(&st, "status").unwrap_or_default(),
                crate::lenient::str_field(&st, "qmpstatus").as_deref(),
            );
            (power, false)
        };
        match power {
            polyvisor_core::PowerState::PoweredOn => {
                let ip_deadline = t.created.saturating_add(self.cfg().ip_wait.as_secs());
                if !want_ip || has_ip || polyvisor_core::task::now_unix() >= ip_deadline {
                    return Ok(out());
                }
                Ok(TaskStatus::Running)
            }
            polyvisor_core::PowerState::PoweringOn => Ok(TaskStatus::Running),
            _ => {
                // A start issued by an earlier poll: running or failed? (Not needed when this
                // poll just configured the stopped guest: no start has run since.)
                let earlier = if stopped_now { None } else { self.last_task(&node, &id, "qmstart", t.created).await? };
                match earlier {
                    Some(PveTask::Running) => return Ok(TaskStatus::Running),
                    Some(PveTask::Failed(msg)) if !matches!(msg, PveError::Locked(_)) => {
                        self.cleanup(&id, &node, key.as_deref()).await;
                        return Ok(TaskStatus::Failed(task_error(
                            &format!("{what} of guest [{id}]: start failed"),
                            &msg,
                        )));
                    }
                    _ => {}
                }
                match self.api.post(&format!("{path}/status/start"), &[]).await {
                    Ok(_) => Ok(TaskStatus::Running),
                    Err(PveError::Locked(_)) => Ok(TaskStatus::Running),
                    Err(e) => {
                        self.cleanup(&id, &node, key.as_deref()).await;
                        Ok(TaskStatus::Failed(Error::from(e).context(format!("{what} of guest [{id}]: start failed"))))
                    }
                }
            }
        }
    }

    /// Best-effort removal of a half-made guest, only when it carries our marker.
    async fn cleanup(&self, id: &str, node: &str, key: Option<&str>) {
        let path = vm_path(node, id);
        let Ok(cfg) = self.api.get(&format!("{path}/config"), &[]).await else { return };
        let desc = crate::lenient::str_field(&cfg, "description").unwrap_or_default();
        let tag_key = tags::key_of(&crate::lenient::str_field(&cfg, "tags").unwrap_or_default());
        let ours = desc.contains(MARK)
            && key.is_none_or(|k| has_marker(&desc, &marker("", Some(k))) || tag_key.as_deref() == Some(k));
        if !ours {
            return;
        }
        let _ = self.api.post(&format!("{path}/status/stop"), &[]).await;
        match self.start_delete(id, node, false).await {
            Ok(_) => tracing::info!(vmid = id, "removed half-created guest"),
            Err(e) => tracing::warn!(vmid = id, error = %e, "could not remove half-created guest"),
        }
    }

    /// The VM that carries `key`: by its tag (one listing, no extra request), else by the
    /// description marker the clone/create POST wrote (a half-made VM that has no tag yet;
    /// one config read per untagged VM whose name is `name` or that is still unnamed).
    pub(crate) async fn owner_of_key<'a>(
        &self,
        list: &'a [crate::parse::Resource],
        key: &str,
        name: Option<&str>,
    ) -> Result<Option<&'a crate::parse::Resource>> {
        if let Some(r) = list.iter().find(|r| tags::key_of(&r.tags).as_deref() == Some(key)) {
            return Ok(Some(r));
        }
        let desc = marker("", Some(key));
        let guess = names::dns_name(key).ok();
        for r in list.iter().filter(|r| {
            tags::key_of(&r.tags).is_none()
                && !r.native_template
                && (r.is_placeholder() || r.name.as_deref() == name || r.name.as_deref() == guess.as_deref())
        }) {
            match self.api.get(&format!("{}/config", vm_path(&r.node, &r.vmid)), &[]).await {
                Ok(cfg) if crate::lenient::str_field(&cfg, "description").is_some_and(|d| has_marker(&d, &desc)) => {
                    return Ok(Some(r))
                }
                Ok(_) | Err(PveError::VmNotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(None)
    }

    /// Whether template handling is native.
    pub(crate) fn native(&self) -> bool {
        self.cfg().template_mode == TemplateMode::Native
    }
}

fn is_net_key(k: &str) -> bool {
    k.strip_prefix("net").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// A property string as (first item, `key=value` map); the first item is e.g. `virtio=MAC`.
fn prop(s: &str) -> (String, std::collections::BTreeMap<String, String>) {
    let mut it = s.split(',').map(str::trim).filter(|x| !x.is_empty());
    let first = it.next().unwrap_or_default().to_string();
    let map = it.filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    (first, map)
}

/// Whether the live value `have` already is what the request wants.
fn config_matches(key: &str, want: &str, have: Option<&str>) -> bool {
    let Some(have) = have else { return false };
    if !is_net_key(key) {
        return want.trim() == have.trim();
    }
    let ((wm, wmap), (hm, hmap)) = (prop(want), prop(have));
    let (wmodel, wmac) = wm.split_once('=').map_or((wm.as_str(), None), |(m, a)| (m, Some(a)));
    let (hmodel, hmac) = hm.split_once('=').map_or((hm.as_str(), None), |(m, a)| (m, Some(a)));
    let mac_ok = match wmac {
        Some(w) => hmac.is_some_and(|h| h.eq_ignore_ascii_case(w)),
        None => true,
    };
    // Options the request may set; absent flags mean "0", other absent options mean unset.
    let field = |m: &std::collections::BTreeMap<String, String>, k: &str| {
        let default = if matches!(k, "firewall" | "link_down") { "0" } else { "" };
        m.get(k).cloned().unwrap_or_else(|| default.to_string())
    };
    wmodel.eq_ignore_ascii_case(hmodel)
        && mac_ok
        && ["bridge", "tag", "firewall", "link_down", "rate", "queues", "mtu"]
            .iter()
            .all(|k| field(&wmap, k) == field(&hmap, k))
}

/// The value to write: a NIC the request gives no MAC keeps the MAC it has.
fn with_kept_mac(want: &str, have: Option<&str>) -> String {
    let (wm, _) = prop(want);
    if wm.contains('=') {
        return want.to_string();
    }
    match have.map(prop).and_then(|(hm, _)| hm.split_once('=').map(|(_, mac)| mac.to_string())) {
        Some(mac) => format!("{wm}={mac}{}", &want[wm.len()..]),
        None => want.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nic_comparison_is_by_field() {
        let want = "virtio=02:00:0A:0B:0C:0D,bridge=vmbr0,tag=100,firewall=0";
        assert!(config_matches("net0", want, Some("virtio=02:00:0a:0b:0c:0d,firewall=0,bridge=vmbr0,tag=100")));
        assert!(config_matches("net0", want, Some("virtio=02:00:0A:0B:0C:0D,bridge=vmbr0,tag=100")));
        assert!(!config_matches("net0", want, Some("virtio=BC:24:11:00:90:00,bridge=vmbr0")), "template MAC, no VLAN");
        assert!(!config_matches("net0", want, Some("virtio=02:00:0A:0B:0C:0D,bridge=vmbr0")), "VLAN missing");
        assert!(!config_matches(
            "net0",
            "virtio,bridge=vmbr0,firewall=0",
            Some("virtio=BC:24:11:00:90:00,bridge=vmbr0,tag=5")
        ));
        assert!(!config_matches("net0", want, Some("virtio=02:00:0A:0B:0C:0D,bridge=vmbr0,tag=100,link_down=1")));
        assert!(!config_matches("net0", want, None));
        assert!(config_matches("cores", "2", Some("2")) && !config_matches("memory", "1024", Some("2048")));
        assert_eq!(
            with_kept_mac("virtio,bridge=vmbr0", Some("virtio=BC:24:11:00:90:00,bridge=vmbr1")),
            "virtio=BC:24:11:00:90:00,bridge=vmbr0"
        );
        assert!(is_net_key("net12") && !is_net_key("net") && !is_net_key("netx"));
    }

    #[test]
    fn markers_name_source_or_key() {
        assert_eq!(marker("100", None), "polyvisor: clone-of=100");
        assert_eq!(marker("", Some("i-2-45-VM")), "polyvisor: key=i-2-45-VM");
        assert!(has_marker("x\npolyvisor: clone-of=100\n", "polyvisor: clone-of=100"));
        assert!(!has_marker("polyvisor: clone-of=100", "polyvisor: clone-of=10"));
    }
}
