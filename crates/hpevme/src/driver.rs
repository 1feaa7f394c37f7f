//! `impl Driver for HpeVme`: every operation on the Morpheus API. Each operation runs in
//! its own round-trip counter scope and logs the count at debug level.

use crate::api::{count_scope, Api};
use crate::config::Config;
use crate::error::VmeError;
use crate::model::{self, TAG_CLONE, TAG_KEY, TAG_TEMPLATE};
use polyvisor_core::task::{completed, now_unix, TaskToken};
use polyvisor_core::{
    Capabilities, CloneMode, CloneSpec, CloneStarted, CreateSource, CreateSpec, Driver, Error, Guest, GuestId,
    GuestSummary, PowerAction, Result, Snapshot, SnapshotSpec, TaskId, TaskOutput, TaskStatus, TemplateStrategy,
};
use serde_json::{json, Value};
use tokio::sync::OnceCell;

/// The HPE VM Essentials driver.
pub struct HpeVme {
    pub(crate) api: Api,
    /// The configured group resolved to its id (once per process).
    group: OnceCell<Option<u64>>,
}

/// Page size of instance listings.
const PAGE: u64 = 100;
/// How long a power task waits for a settled status other than the target before failing.
const POWER_GRACE_SECS: u64 = 120;
/// How long a clone may take to appear in the listing.
const CLONE_APPEAR_SECS: u64 = 300;
/// Max age of power, snapshot and delete tasks.
const SHORT_TASK_SECS: u64 = 15 * 60;

async fn counted<T>(op: &'static str, fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    let (out, n) = count_scope(fut).await;
    match &out {
        Ok(_) => tracing::debug!(target: "polyvisor_hpevme::round_trips", op, round_trips = n, "done"),
        Err(e) => tracing::debug!(target: "polyvisor_hpevme::round_trips", op, round_trips = n, error = %e, "failed"),
    }
    out
}

fn done(op: &str) -> TaskId {
    completed(op, &TaskOutput::default())
}

/// The capabilities (fixed: no credentials or I/O needed).
pub fn capabilities() -> Capabilities {
    Capabilities {
        suspend: true,
        templates: TemplateStrategy::Flag,
        linked_clones: false,
        snapshots: true,
        snapshot_memory: false,
        clone_from_snapshot: false,
        create: true,
        consoles: Vec::new(),
        task_poll_secs: 2,
        ..Default::default()
    }
}

fn path(id: u64) -> String {
    format!("/api/instances/{id}")
}

impl HpeVme {
    /// A driver (no I/O).
    pub fn new(cfg: Config) -> Result<HpeVme> {
        Ok(HpeVme { api: Api::new(cfg)?, group: OnceCell::new() })
    }

    /// HTTP round trips so far (all operations and tasks).
    pub fn round_trips(&self) -> u64 {
        self.api.round_trips()
    }

    /// OAuth password grants so far.
    pub fn grants(&self) -> u64 {
        self.api.grants()
    }

    async fn instance(&self, id: u64) -> Result<Value, VmeError> {
        let v = self.api.get(&path(id), &[]).await?;
        model::instance_of(&v).cloned().ok_or_else(|| VmeError::BadAnswer("no instance in the answer".into()))
    }

    /// The instance, or `None` when it does not exist.
    async fn instance_opt(&self, id: u64) -> Result<Option<Value>> {
        match self.instance(id).await {
            Ok(i) => Ok(Some(i)),
            Err(VmeError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn must_instance(&self, id: u64) -> Result<Value> {
        self.instance_opt(id).await?.ok_or_else(|| Error::not_found(format!("guest [{id}]")))
    }

    /// Every instance (paged), optionally filtered by exact name on the server.
    async fn instances(&self, name: Option<&str>) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        let mut offset = 0u64;
        loop {
            let mut q = vec![("max", PAGE.to_string()), ("offset", offset.to_string())];
            if let Some(n) = name {
                q.push(("name", n.to_string()));
            }
            let v = self.api.get("/api/instances", &q).await?;
            let page = v.get("instances").and_then(Value::as_array).cloned().unwrap_or_default();
            let total = v.pointer("/meta/total").and_then(Value::as_u64).unwrap_or(0);
            let n = page.len() as u64;
            out.extend(page);
            offset += n;
            if n == 0 || offset >= total || out.len() > 100_000 {
                return Ok(out);
            }
        }
    }

    /// The configured group's id (a number is used as is; a name is looked up once).
    async fn group_id(&self) -> Result<Option<u64>> {
        self.group
            .get_or_try_init(|| async {
                let Some(g) = self.api.config().group.clone() else { return Ok(None) };
                if let Ok(n) = g.parse::<u64>() {
                    return Ok(Some(n));
                }
                let v = self.api.get("/api/groups", &[("name", g.clone())]).await?;
                let id = v
                    .get("groups")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .find(|x| x.get("name").and_then(Value::as_str) == Some(g.as_str()))
                    .and_then(|x| x.get("id").and_then(Value::as_u64));
                id.map(Some).ok_or_else(|| Error::invalid("setting 'group' names no HPE VM Essentials group"))
            })
            .await
            .copied()
    }

    async fn update_tags(&self, id: u64, add: &[(&str, &str)], remove: &[&str]) -> Result<(), VmeError> {
        let mut inst = serde_json::Map::new();
        if !add.is_empty() {
            inst.insert("addTags".into(), add.iter().map(|(n, v)| json!({"name": n, "value": v})).collect());
        }
        if !remove.is_empty() {
            inst.insert("removeTags".into(), remove.iter().map(|n| json!({"name": n})).collect());
        }
        self.api.put(&path(id), Some(&json!({ "instance": inst }))).await.map(|_| ())
    }

    async fn snapshots_raw(&self, id: u64) -> Result<Vec<Value>> {
        let v = match self.api.get(&format!("{}/snapshots", path(id)), &[]).await {
            Ok(v) => v,
            Err(VmeError::NotFound(_)) => return Err(Error::not_found(format!("guest [{id}]"))),
            Err(e) => return Err(e.into()),
        };
        let mut list = v.get("snapshots").and_then(Value::as_array).cloned().unwrap_or_default();
        list.sort_by_key(|s| s.get("id").and_then(Value::as_u64).unwrap_or(0));
        Ok(list)
    }

    async fn snapshot_id(&self, id: u64, name: &str) -> Result<Option<u64>> {
        Ok(self
            .snapshots_raw(id)
            .await?
            .iter()
            .find(|s| s.get("name").and_then(Value::as_str) == Some(name))
            .and_then(|s| s.get("id").and_then(Value::as_u64)))
    }

    /// Submits a power endpoint (`start`, `stop`, `restart`, `suspend`).
    async fn power_call(&self, id: u64, verb: &str) -> Result<(), VmeError> {
        self.api.put(&format!("{}/{verb}", path(id)), None).await.map(|_| ())
    }

    /// The clone (or create) task: shared by `clone_guest` and `create_guest`.
    async fn start_clone(
        &self,
        src: u64,
        name: &str,
        start: bool,
        create: Option<&CreateSpec>,
    ) -> Result<CloneStarted> {
        model::valid_name("guest name", name)?;
        let source = self.must_instance(src).await?;
        let marker = format!("{src}:{name}");
        // A retry adopts the instance an earlier identical request made; a foreign instance
        // of that name is never adopted.
        let same_name = self.instances(Some(name)).await?;
        let mut ours = None;
        for i in same_name.iter().filter(|i| i.get("name").and_then(Value::as_str) == Some(name)) {
            let key_ok = create.is_none_or(|c| model::tag(i, TAG_KEY) == Some(c.key.as_str()));
            if model::tag(i, TAG_CLONE) == Some(marker.as_str()) && key_ok {
                ours = model::id_of(i);
            } else {
                return Err(Error::already_exists(format!("a guest named '{name}' already exists")));
            }
        }
        if ours.is_none() {
            if model::status_of(&source) == "removing" {
                return Err(Error::conflict(format!("guest [{src}] is being removed")));
            }
            let mut tags = vec![json!({"name": TAG_CLONE, "value": marker})];
            if let Some(c) = create {
                tags.push(json!({"name": TAG_KEY, "value": c.key}));
            }
            let mut body = json!({"name": name, "tags": tags});
            if let Some(g) = self.group_id().await? {
                body["group"] = json!({ "id": g });
            }
            self.api
                .put(&format!("{}/clone", path(src)), Some(&body))
                .await
                .map_err(|e| Error::from(e).context(format!("Failed to clone guest [{src}]")))?;
        }
        let mut b = json!({"src": src, "name": name, "start": start, "since": now_unix()});
        if let Some(c) = create {
            b["key"] = json!(c.key);
            b["cpus"] = json!(c.cpus);
            b["memory_mb"] = json!(c.memory_mb);
        }
        let kind = if create.is_some() { "vme-create" } else { "vme-clone" };
        Ok(CloneStarted { task: TaskToken::new(kind, b).encode(), new_guest: ours.map(GuestId::new) })
    }

    async fn advance_clone(&self, t: &TaskToken) -> Result<TaskStatus> {
        let src = t.body.get("src").and_then(Value::as_u64).ok_or_else(|| t.unknown())?;
        let name = t.req_str("name")?;
        let start = t.body.get("start").and_then(Value::as_bool).unwrap_or(false);
        let key = t.str("key");
        let marker = format!("{src}:{name}");
        let found = self.instances(Some(name)).await?.into_iter().find(|i| {
            model::tag(i, TAG_CLONE) == Some(marker.as_str()) && i.get("name").and_then(Value::as_str) == Some(name)
        });
        let Some(inst) = found else {
            let since = t.body.get("since").and_then(Value::as_u64).unwrap_or(t.created);
            if now_unix() > since + CLONE_APPEAR_SECS {
                return Ok(TaskStatus::Failed(Error::timeout(format!(
                    "the clone '{name}' of guest [{src}] did not appear"
                ))));
            }
            return Ok(TaskStatus::Running);
        };
        let id = model::id_of(&inst).ok_or_else(|| Error::backend("instance without id"))?;
        let nid: u64 = id.parse().map_err(|_| Error::backend("instance id is not a number"))?;
        let status = model::status_of(&inst);
        if status == "failed" {
            return Ok(TaskStatus::Failed(Error::backend(format!("provisioning of guest [{id}] failed"))));
        }
        if !model::is_settled(status) {
            return Ok(TaskStatus::Running);
        }
        // The clone carries exactly polyvisor's tags: no template flag, only our key.
        let wrong_key = match (model::tag(&inst, TAG_KEY), key) {
            (Some(k), Some(want)) => k != want,
            (Some(_), None) => true,
            (None, Some(_)) => true,
            (None, None) => false,
        };
        if model::is_template(&inst) || wrong_key {
            let add: Vec<(&str, &str)> = key.map(|k| vec![(TAG_KEY, k)]).unwrap_or_default();
            let mut remove = vec![TAG_TEMPLATE];
            if key.is_none() {
                remove.push(TAG_KEY);
            }
            self.update_tags(nid, &add, &remove).await?;
            return Ok(TaskStatus::Running);
        }
        // Creates: CPU and memory as the spec asks.
        let want_cpus = t.body.get("cpus").and_then(Value::as_u64);
        let want_mem = t.body.get("memory_mb").and_then(Value::as_u64);
        let have_cpus = inst.get("maxCores").and_then(Value::as_u64);
        let have_mem = inst.get("maxMemory").and_then(Value::as_u64).map(|b| b / (1024 * 1024));
        let mut opts = serde_json::Map::new();
        if let Some(c) = want_cpus.filter(|c| Some(*c) != have_cpus) {
            opts.insert("maxCores".into(), json!(c));
        }
        if let Some(m) = want_mem.filter(|m| Some(*m) != have_mem) {
            opts.insert("maxMemory".into(), json!(m * 1024 * 1024));
        }
        if !opts.is_empty() {
            if status == "running" {
                self.power_call(nid, "stop").await?;
                return Ok(TaskStatus::Running);
            }
            self.api.put(&format!("{}/resize", path(nid)), Some(&json!({"servicePlanOptions": opts}))).await?;
            return Ok(TaskStatus::Running);
        }
        let out = TaskStatus::Completed(TaskOutput { new_guest: Some(GuestId::new(id.clone())) });
        match (start, status) {
            (true, "running") => {
                let g = model::guest(&inst).ok_or_else(|| Error::backend("instance without id"))?;
                Ok(if g.ipv4_addresses().is_empty() { TaskStatus::Running } else { out })
            }
            (true, _) => {
                self.power_call(nid, "start").await?;
                Ok(TaskStatus::Running)
            }
            (false, "stopped") => Ok(out),
            (false, _) => {
                self.power_call(nid, "stop").await?;
                Ok(TaskStatus::Running)
            }
        }
    }
}

fn power_token(id: u64, want: &str) -> TaskId {
    TaskToken::new("vme-power", json!({"id": id, "want": want})).with_max_age(SHORT_TASK_SECS).encode()
}

#[async_trait::async_trait]
impl Driver for HpeVme {
    fn display_name(&self) -> &str {
        "HPE VM Essentials"
    }

    fn capabilities(&self) -> Capabilities {
        capabilities()
    }

    async fn probe(&self) -> Result<String> {
        counted("probe", async {
            let v = self.api.get("/api/instances", &[("max", "1".into())]).await?;
            let n = v.pointer("/meta/total").and_then(Value::as_u64).unwrap_or(0);
            Ok(format!("HPE VM Essentials at {} ({n} instances)", self.api.config().display_host))
        })
        .await
    }

    async fn list_guests(&self) -> Result<Vec<GuestSummary>> {
        counted("list", async { Ok(self.instances(None).await?.iter().filter_map(model::summary).collect()) }).await
    }

    async fn get_guest(&self, id: &GuestId) -> Result<Guest> {
        counted("get", async {
            let n = model::instance_id(id)?;
            let inst = self.must_instance(n).await?;
            model::guest(&inst).ok_or_else(|| Error::backend(format!("guest [{n}] has no id")))
        })
        .await
    }

    async fn find_owned(&self, key: &str, hint: Option<&GuestId>) -> Result<Option<GuestSummary>> {
        counted("find_owned", async {
            if let Some(n) = hint.and_then(|h| model::instance_id(h).ok()) {
                if let Some(inst) = self.instance_opt(n).await? {
                    if model::tag(&inst, TAG_KEY) == Some(key) && !model::is_template(&inst) {
                        return Ok(model::summary(&inst));
                    }
                }
            }
            Ok(self
                .instances(None)
                .await?
                .iter()
                .filter(|i| model::tag(i, TAG_KEY) == Some(key) && !model::is_template(i))
                .find_map(model::summary))
        })
        .await
    }

    async fn power(&self, id: &GuestId, action: PowerAction) -> Result<TaskId> {
        counted("power", async {
            let n = model::instance_id(id)?;
            let inst = self.must_instance(n).await?;
            let status = model::status_of(&inst).to_string();
            let (verb, want, already) = match action {
                PowerAction::Start | PowerAction::Resume => ("start", "running", status == "running"),
                PowerAction::Stop | PowerAction::Shutdown => ("stop", "stopped", status == "stopped"),
                PowerAction::Suspend => ("suspend", "suspended", status == "suspended"),
                PowerAction::Reset | PowerAction::Reboot => ("restart", "running", false),
            };
            if already {
                return Ok(done(action.as_str()));
            }
            let heading = matches!(
                (want, status.as_str()),
                ("running", "starting" | "provisioning" | "restarting")
                    | ("stopped", "stopping")
                    | ("suspended", "suspending")
            );
            if heading && verb != "restart" {
                return Ok(power_token(n, want));
            }
            if !model::is_settled(&status) {
                return Err(Error::conflict(format!("guest [{n}] is busy ({status})")));
            }
            if matches!(action, PowerAction::Suspend | PowerAction::Reset | PowerAction::Reboot) && status != "running"
            {
                return Err(Error::conflict(format!("guest [{n}] is not running ({status})")));
            }
            self.power_call(n, verb)
                .await
                .map_err(|e| Error::from(e).context(format!("Failed to {action} guest [{n}]")))?;
            Ok(power_token(n, want))
        })
        .await
    }

    async fn delete_guest(&self, id: &GuestId) -> Result<TaskId> {
        counted("delete", async {
            let n = model::instance_id(id)?;
            if self.instance_opt(n).await?.is_none() {
                return Ok(done("delete"));
            }
            // Remove the VM and its volumes on the cluster too; never `force` (that would
            // drop the record even when the VM could not be removed).
            let q = [("preserveVolumes", "off".to_string()), ("keepBackups", "off".to_string())];
            match self.api.delete(&path(n), &q).await {
                Ok(_) | Err(VmeError::NotFound(_)) => {}
                Err(e) => return Err(Error::from(e).context(format!("Failed to delete guest [{n}]"))),
            }
            Ok(TaskToken::new("vme-delete", json!({"id": n})).with_max_age(SHORT_TASK_SECS).encode())
        })
        .await
    }

    async fn set_template(&self, id: &GuestId, is_template: bool) -> Result<TaskId> {
        counted("convert", async {
            let n = model::instance_id(id)?;
            let inst = self.must_instance(n).await?;
            if model::is_template(&inst) == is_template {
                return Ok(done("convert"));
            }
            let r = if is_template {
                self.update_tags(n, &[(TAG_TEMPLATE, "true")], &[]).await
            } else {
                self.update_tags(n, &[], &[TAG_TEMPLATE]).await
            };
            r.map_err(|e| Error::from(e).context(format!("Failed to convert guest [{n}]")))?;
            Ok(done("convert"))
        })
        .await
    }

    async fn clone_guest(&self, spec: &CloneSpec) -> Result<CloneStarted> {
        counted("clone", async {
            if spec.snapshot.is_some() {
                return Err(Error::unsupported("clone from a snapshot"));
            }
            if spec.mode == CloneMode::Linked {
                return Err(Error::unsupported("linked clone"));
            }
            let src = model::instance_id(&spec.source)?;
            self.start_clone(src, &spec.name, spec.start, None).await
        })
        .await
    }

    async fn create_guest(&self, spec: &CreateSpec) -> Result<CloneStarted> {
        counted("create", async {
            let CreateSource::Template { id, .. } = &spec.source else {
                return Err(Error::unsupported("create from an ISO"));
            };
            if spec.key.is_empty() || spec.key.len() > 128 || spec.key.chars().any(char::is_control) {
                return Err(Error::invalid("the platform key is not valid"));
            }
            if spec.cpus.is_some_and(|c| !(1..=128).contains(&c)) {
                return Err(Error::invalid("cpus must be between 1 and 128"));
            }
            if spec.memory_mb.is_some_and(|m| !(64..=4 * 1024 * 1024).contains(&m)) {
                return Err(Error::invalid("memory must be between 64 MiB and 4 TiB"));
            }
            if spec.nics.iter().any(|n| n.vlan.is_some() || n.network.is_some()) {
                // The Morpheus API takes neither a VLAN nor a MAC per NIC on clone: the guest
                // keeps the template's NICs. Refused before anything exists.
                return Err(Error::invalid(
                    "HPE VM Essentials cannot place NICs on requested VLANs or networks: the guest keeps its template's NICs",
                ));
            }
            let src = model::instance_id(id)?;
            self.start_clone(src, &spec.name, true, Some(spec)).await
        })
        .await
    }

    async fn list_snapshots(&self, id: &GuestId) -> Result<Vec<Snapshot>> {
        counted("snapshots", async {
            let n = model::instance_id(id)?;
            Ok(self
                .snapshots_raw(n)
                .await?
                .iter()
                .filter_map(|s| {
                    Some(Snapshot {
                        name: s.get("name").and_then(Value::as_str)?.to_string(),
                        description: s.get("description").and_then(Value::as_str).map(str::to_string),
                        created_unix: None,
                        parent: None,
                        includes_memory: s.get("memorySnapshot").and_then(Value::as_bool).unwrap_or(false),
                    })
                })
                .collect())
        })
        .await
    }

    async fn create_snapshot(&self, id: &GuestId, spec: &SnapshotSpec) -> Result<TaskId> {
        counted("snapshot", async {
            let n = model::instance_id(id)?;
            model::valid_name("snapshot name", &spec.name)?;
            if let Some(d) = &spec.description {
                if d.len() > 1024 || d.chars().any(|c| c.is_control() && c != '\n') {
                    return Err(Error::invalid("snapshot description is not valid"));
                }
            }
            if let Some(old) = self.snapshot_id(n, &spec.name).await? {
                self.api.delete(&format!("/api/snapshots/{old}"), &[]).await?;
            }
            let mut snap = json!({"name": spec.name});
            if let Some(d) = &spec.description {
                snap["description"] = json!(d);
            }
            if spec.include_memory {
                return Err(Error::unsupported("memory snapshots"));
            }
            let v = self
                .api
                .put(&format!("{}/snapshot", path(n)), Some(&json!({ "snapshot": snap })))
                .await
                .map_err(|e| Error::from(e).context(format!("Failed to snapshot guest [{n}]")))?;
            let procs: Vec<u64> =
                v.get("processIds").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_u64).collect();
            Ok(TaskToken::new("vme-snapshot", json!({"id": n, "name": spec.name, "procs": procs}))
                .with_max_age(SHORT_TASK_SECS)
                .encode())
        })
        .await
    }

    async fn revert_snapshot(&self, id: &GuestId, name: &str) -> Result<TaskId> {
        counted("revert", async {
            let n = model::instance_id(id)?;
            let sid = self
                .snapshot_id(n, name)
                .await?
                .ok_or_else(|| Error::not_found(format!("snapshot '{name}' of guest [{n}]")))?;
            self.api
                .put(&format!("{}/revert-snapshot/{sid}", path(n)), None)
                .await
                .map_err(|e| Error::from(e).context(format!("Failed to revert guest [{n}]")))?;
            Ok(done("revert"))
        })
        .await
    }

    async fn delete_snapshot(&self, id: &GuestId, name: &str) -> Result<TaskId> {
        counted("snapshot_delete", async {
            let n = model::instance_id(id)?;
            let Some(sid) = self.snapshot_id(n, name).await? else { return Ok(done("snapshot_delete")) };
            match self.api.delete(&format!("/api/snapshots/{sid}"), &[]).await {
                Ok(_) | Err(VmeError::NotFound(_)) => {}
                Err(e) => return Err(Error::from(e).context(format!("Failed to delete snapshot '{name}'"))),
            }
            Ok(TaskToken::new("vme-snapdel", json!({"id": n, "name": name})).with_max_age(SHORT_TASK_SECS).encode())
        })
        .await
    }

    async fn advance_task(&self, t: &TaskToken) -> Result<TaskStatus> {
        counted("task", async {
            match t.kind.as_str() {
                "vme-power" => {
                    let n = t.body.get("id").and_then(Value::as_u64).ok_or_else(|| t.unknown())?;
                    let want = t.req_str("want")?;
                    let Some(inst) = self.instance_opt(n).await? else {
                        return Ok(TaskStatus::Failed(Error::not_found(format!("guest [{n}]"))));
                    };
                    let status = model::status_of(&inst);
                    if status == want {
                        Ok(TaskStatus::Completed(TaskOutput::default()))
                    } else if status == "failed" {
                        Ok(TaskStatus::Failed(Error::backend(format!("guest [{n}] failed"))))
                    } else if model::is_settled(status) && now_unix() > t.created + POWER_GRACE_SECS {
                        Ok(TaskStatus::Failed(Error::backend(format!("guest [{n}] stayed {status}, not {want}"))))
                    } else {
                        Ok(TaskStatus::Running)
                    }
                }
                "vme-delete" => {
                    let n = t.body.get("id").and_then(Value::as_u64).ok_or_else(|| t.unknown())?;
                    Ok(match self.instance_opt(n).await? {
                        None => TaskStatus::Completed(TaskOutput::default()),
                        Some(i) if model::status_of(&i) == "failed" => {
                            TaskStatus::Failed(Error::backend(format!("removal of guest [{n}] failed")))
                        }
                        Some(_) => TaskStatus::Running,
                    })
                }
                "vme-snapshot" => {
                    let n = t.body.get("id").and_then(Value::as_u64).ok_or_else(|| t.unknown())?;
                    let name = t.req_str("name")?;
                    let procs: Vec<u64> = t
                        .body
                        .get("procs")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_u64)
                        .collect();
                    for p in &procs {
                        let v = self.api.get(&format!("/api/processes/{p}"), &[]).await?;
                        match v.pointer("/process/status").and_then(Value::as_str).unwrap_or("") {
                            "complete" => {}
                            "failed" | "error" => {
                                return Ok(TaskStatus::Failed(Error::backend(format!(
                                    "snapshot '{name}' of guest [{n}] failed"
                                ))))
                            }
                            _ => return Ok(TaskStatus::Running),
                        }
                    }
                    let snaps = self.snapshots_raw(n).await?;
                    let s = snaps.iter().find(|s| s.get("name").and_then(Value::as_str) == Some(name));
                    Ok(match s.and_then(|s| s.get("status")).and_then(Value::as_str) {
                        Some("complete") => TaskStatus::Completed(TaskOutput::default()),
                        Some("failed") => {
                            TaskStatus::Failed(Error::backend(format!("snapshot '{name}' of guest [{n}] failed")))
                        }
                        _ => TaskStatus::Running,
                    })
                }
                "vme-snapdel" => {
                    let n = t.body.get("id").and_then(Value::as_u64).ok_or_else(|| t.unknown())?;
                    let name = t.req_str("name")?;
                    Ok(match self.snapshot_id(n, name).await {
                        Ok(None) => TaskStatus::Completed(TaskOutput::default()),
                        Err(e) if e.is_not_found() => TaskStatus::Completed(TaskOutput::default()),
                        Err(e) => return Err(e),
                        Ok(Some(_)) => TaskStatus::Running,
                    })
                }
                "vme-clone" | "vme-create" => self.advance_clone(t).await,
                _ => Err(t.unknown()),
            }
        })
        .await
    }
}
