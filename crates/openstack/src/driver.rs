//! The [`Driver`] over Nova, Glance and Neutron. No local state: templates, keys, clone
//! provenance and created ports live in server metadata, snapshots are Glance images
//! carrying image properties, and task progress is in self-describing tokens read
//! against live server/image state.

use crate::client::{Client, Service};
use crate::config::{Config, Profile};
use crate::error::OsError;
use crate::map::{self, *};
use async_trait::async_trait;
use polyvisor_core::task::{self, TaskOutput, TaskStatus, TaskToken};
use polyvisor_core::{
    Capabilities, CloneSpec, CloneStarted, Console, CreateSource, CreateSpec, Driver, Error, Guest, GuestId,
    GuestSummary, PowerAction, Result, SecretString, Snapshot, SnapshotSpec, TaskId,
};
use serde_json::{json, Value};

/// The OpenStack driver.
pub struct OpenStackDriver {
    pub(crate) api: Client,
}

fn enc(s: &str) -> String {
    urlencoding::encode(s).into_owned()
}

/// A fresh random-enough nonce for a clone/create task (time + process + counter).
fn nonce() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{:x}-{:x}-{:x}", t, std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// How long ago the nonce was made (its first field is the time in nanoseconds); None for a
/// nonce that does not say (older forms, foreign text) or one from the future.
fn nonce_age(n: &str) -> Option<std::time::Duration> {
    let (t, _) = n.split_once('-')?;
    let t = u64::try_from(u128::from_str_radix(t, 16).ok()?).ok()?;
    let made = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(t);
    std::time::SystemTime::now().duration_since(made).ok()
}

/// A server id as Nova knows it; anything else is not found without a request.
fn server_id(id: &GuestId) -> Result<&str> {
    if is_uuid(id.as_str()) {
        Ok(id.as_str())
    } else {
        Err(Error::not_found(format!("guest [{}]", clip(id.as_str()))))
    }
}

fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Server names: Nova allows up to 255 characters; we keep to a portable set.
fn valid_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !name.starts_with(['-', '.']);
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "guest name '{}' is invalid: use 1-63 letters, digits, '-', '_' or '.'",
            clip(name)
        )))
    }
}

fn fault_of(server: &Value) -> String {
    server["fault"]["message"].as_str().unwrap_or("the server went to ERROR").chars().take(300).collect()
}

impl OpenStackDriver {
    /// A driver for this config (no I/O).
    pub fn new(cfg: Config) -> Result<OpenStackDriver> {
        Ok(OpenStackDriver { api: Client::new(cfg)? })
    }

    /// HTTP round trips so far.
    pub fn round_trips(&self) -> u64 {
        self.api.round_trips()
    }

    /// The client (tests: token handling).
    pub fn client(&self) -> &Client {
        &self.api
    }

    fn cfg(&self) -> &Config {
        self.api.config()
    }

    async fn server(&self, id: &str) -> Result<Value, OsError> {
        let v = self.api.get(Service::Compute, &format!("/servers/{id}")).await?;
        Ok(v["server"].clone())
    }

    /// The server, or `None` when Nova says it does not exist.
    async fn server_opt(&self, id: &str) -> Result<Option<Value>, OsError> {
        match self.server(id).await {
            Ok(s) => Ok(Some(s)),
            Err(OsError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn action(&self, id: &str, body: Value) -> Result<(), OsError> {
        self.api.post(Service::Compute, &format!("/servers/{id}/action"), &body).await.map(drop)
    }

    /// Every server of the project (paginated).
    async fn servers(&self, query: &str) -> Result<Vec<Value>, OsError> {
        let mut out: Vec<Value> = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let mut path = format!("/servers/detail?limit=1000{query}");
            if let Some(m) = &marker {
                path.push_str(&format!("&marker={}", enc(m)));
            }
            let v = self.api.get(Service::Compute, &path).await?;
            let page = v["servers"].as_array().cloned().unwrap_or_default();
            let n = page.len();
            marker = page.last().and_then(|s| s["id"].as_str()).map(str::to_string);
            out.extend(page);
            if n < 1000 || marker.is_none() {
                return Ok(out);
            }
        }
    }

    /// Servers named exactly `name` (Nova's `name` filter is a regular expression).
    async fn servers_named(&self, name: &str) -> Result<Vec<Value>, OsError> {
        let re = format!("^{}$", regex::escape(name));
        let list = self.servers(&format!("&name={}", enc(&re))).await?;
        Ok(list.into_iter().filter(|s| s["name"].as_str() == Some(name)).collect())
    }

    /// Snapshot images of a server (oldest first).
    async fn snapshot_images(&self, id: &str) -> Result<Vec<Value>, OsError> {
        let v = self
            .api
            .get(
                Service::Image,
                &format!("/images?{IMG_SNAPSHOT_OF}={}&sort_key=created_at&sort_dir=asc&limit=1000", enc(id)),
            )
            .await?;
        Ok(v["images"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|i| i[IMG_SNAPSHOT_OF].as_str() == Some(id))
            .cloned()
            .collect())
    }

    async fn snapshot_image(&self, id: &str, name: &str) -> Result<Option<Value>, OsError> {
        Ok(self.snapshot_images(id).await?.into_iter().rev().find(|i| i[IMG_SNAPSHOT_NAME].as_str() == Some(name)))
    }

    /// `createImage` → the new image id (2.45+: in the body).
    async fn create_image(&self, id: &str, name: &str, props: Value) -> Result<String, OsError> {
        let body = json!({"createImage": {"name": name, "metadata": props}});
        let v = self.api.post(Service::Compute, &format!("/servers/{id}/action"), &body).await?;
        v["image_id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| OsError::BadAnswer("createImage answered without image_id".into()))
    }

    /// The flavor id for a clone/create: the `flavor` setting (name or id), else the
    /// source's flavor by name, else the smallest flavor with at least `cpus`/`ram`.
    async fn pick_flavor(&self, by_name: Option<&str>, cpus: Option<u32>, ram: Option<u64>) -> Result<String, OsError> {
        let v = self.api.get(Service::Compute, "/flavors/detail?limit=1000").await?;
        let flavors = v["flavors"].as_array().cloned().unwrap_or_default();
        let find = |want: &str| {
            flavors
                .iter()
                .find(|f| f["id"].as_str() == Some(want) || f["name"].as_str() == Some(want))
                .and_then(|f| f["id"].as_str())
                .map(str::to_string)
        };
        if let Some(want) = self.cfg().flavor.as_deref() {
            return find(want)
                .ok_or_else(|| OsError::NotFound(format!("flavor '{}' (setting 'flavor') not found", clip(want))));
        }
        if let Some(id) = by_name.and_then(find) {
            return Ok(id);
        }
        let need_cpu = u64::from(cpus.unwrap_or(1));
        let need_ram = ram.unwrap_or(0);
        flavors
            .iter()
            .filter(|f| f["vcpus"].as_u64().unwrap_or(0) >= need_cpu && f["ram"].as_u64().unwrap_or(0) >= need_ram)
            .min_by_key(|f| {
                (f["vcpus"].as_u64().unwrap_or(0), f["ram"].as_u64().unwrap_or(0), f["disk"].as_u64().unwrap_or(0))
            })
            .and_then(|f| f["id"].as_str())
            .map(str::to_string)
            .ok_or_else(|| {
                OsError::NotFound(format!("no flavor with at least {need_cpu} vCPUs and {need_ram} MiB (set 'flavor')"))
            })
    }

    /// The `networks` member of a server create: the `network` setting's id, else none.
    async fn networks(&self) -> Result<Value, OsError> {
        match self.cfg().network.clone() {
            None => Ok(json!("none")),
            Some(n) => Ok(json!([{"uuid": self.network_id(&n).await?}])),
        }
    }

    async fn network_id(&self, n: &str) -> Result<String, OsError> {
        if is_uuid(n) {
            return Ok(n.to_string());
        }
        let v = self.api.get(Service::Network, &format!("/networks?name={}", enc(n))).await?;
        v["networks"]
            .as_array()
            .and_then(|a| a.first())
            .and_then(|x| x["id"].as_str())
            .map(str::to_string)
            .ok_or_else(|| OsError::NotFound(format!("network '{}' (setting 'network') not found", clip(n))))
    }

    /// The Neutron network that carries VLAN `vlan`: a `vlan` provider network with that
    /// segmentation id visible to the project (Neutron filters on provider attributes even for
    /// users whose policy hides them in the answer). None: a clear error, nothing created.
    async fn vlan_network_id(&self, vlan: u32) -> Result<String, OsError> {
        if !(1..=4094).contains(&vlan) {
            return Err(OsError::BadRequest(format!("VLAN {vlan} is not 1-4094")));
        }
        let path = format!("/networks?provider:network_type=vlan&provider:segmentation_id={vlan}&fields=id");
        let v = self.api.get(Service::Network, &path).await?;
        let nets = v["networks"].as_array().cloned().unwrap_or_default();
        match nets.as_slice() {
            [one] => one["id"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| OsError::BadAnswer("a Neutron network without id".into())),
            [] => Err(OsError::NotFound(format!(
                "no Neutron network of type vlan with segmentation id {vlan} is visible to this project \
                 (an admin creates one: provider:network_type=vlan, provider:segmentation_id={vlan})"
            ))),
            _ => Err(OsError::BadRequest(format!(
                "{} Neutron networks carry VLAN {vlan} (several physical networks); polyvisor will not guess",
                nets.len()
            ))),
        }
    }

    fn power_token(&self, id: &str, want: &str, then: Option<&str>) -> TaskId {
        TaskToken::new("os-power", json!({"id": id, "want": want, "then": then}))
            .with_max_age(self.cfg().task_timeout.as_secs())
            .encode()
    }

    fn done(op: &str) -> TaskId {
        task::completed(op, &TaskOutput::default())
    }

    /// The server named `name` that a clone of `source` made (ownership: our metadata).
    /// A clone of `source` named `name` that an earlier attempt of this same request made: a
    /// retry adopts it. Only within the task's lifetime (the nonce says when it was made): an
    /// older server of that name, even one of ours, is another request's VM and is never
    /// handed out again (the new clone is a new server).
    async fn earlier_clone(&self, source: &str, name: &str) -> Result<Option<Value>, OsError> {
        let window = self.cfg().task_timeout;
        Ok(self.servers_named(name).await?.into_iter().find(|s| {
            meta(s, META_OWNED) == Some("1")
                && meta(s, META_CLONE_OF) == Some(source)
                && meta(s, META_NONCE).and_then(nonce_age).is_some_and(|age| age <= window)
        }))
    }

    fn boot_token(&self, body: Value) -> TaskId {
        TaskToken::new("os-boot", body).with_max_age(self.cfg().task_timeout.as_secs()).encode()
    }

    /// One step of a boot task (clone or create): find the server by nonce; boot it when the
    /// image is ready; finish when it is ACTIVE (then drop a temporary image).
    async fn advance_boot(&self, t: &TaskToken) -> Result<TaskStatus> {
        let nonce = t.req_str("nonce")?;
        let name = t.req_str("name")?;
        let image = t.req_str("image")?;
        let found = self
            .servers_named(name)
            .await?
            .into_iter()
            .find(|s| meta(s, META_NONCE) == Some(nonce) && meta(s, META_OWNED) == Some("1"));
        if let Some(s) = found {
            let id = s["id"].as_str().unwrap_or_default().to_string();
            let (status, task_state) = status_of(&s);
            return Ok(match (status, task_state) {
                ("ERROR", _) => {
                    TaskStatus::Failed(Error::backend(format!("server [{id}] failed to build: {}", fault_of(&s))))
                }
                ("ACTIVE", None) => {
                    if t.body["tmp_image"].as_bool() == Some(true) {
                        self.api.delete(Service::Image, &format!("/images/{image}")).await?;
                    }
                    TaskStatus::Completed(TaskOutput { new_guest: Some(GuestId::new(id)) })
                }
                ("SHUTOFF", None) => {
                    // A create must end powered on (someone stopped it meanwhile).
                    self.action(&id, json!({"os-start": null})).await.or_else(ignore_conflict)?;
                    TaskStatus::Running
                }
                _ => TaskStatus::Running,
            });
        }
        let img = match self.api.get(Service::Image, &format!("/images/{image}")).await {
            Ok(i) => i,
            Err(OsError::NotFound(_)) => {
                return Ok(TaskStatus::Failed(Error::not_found(format!("image [{}]", clip(image)))));
            }
            Err(e) => return Err(e.into()),
        };
        match img["status"].as_str() {
            Some("active") => {}
            Some("queued" | "saving" | "uploading" | "importing") => return Ok(TaskStatus::Running),
            other => {
                return Ok(TaskStatus::Failed(Error::backend(format!(
                    "image [{image}] is {} and cannot be booted",
                    other.unwrap_or("in an unknown state")
                ))))
            }
        }
        let mut server = t.body["server"].clone();
        server["imageRef"] = json!(image);
        let v = self.api.post(Service::Compute, "/servers", &json!({ "server": server })).await?;
        let id = v["server"]["id"].as_str().map(GuestId::new);
        tracing::debug!(target: "polyvisor_openstack", ?id, "server booted");
        Ok(TaskStatus::Running)
    }
}

fn ignore_conflict(e: OsError) -> Result<(), OsError> {
    match e {
        OsError::Conflict(_) => Ok(()),
        e => Err(e),
    }
}

#[async_trait]
impl Driver for OpenStackDriver {
    fn display_name(&self) -> &str {
        self.cfg().profile.display()
    }

    fn capabilities(&self) -> Capabilities {
        Config::capabilities()
    }

    async fn probe(&self) -> Result<String> {
        let mv = self.api.microversion().await?;
        self.api.get(Service::Compute, "/servers?limit=1").await?;
        let what = match self.cfg().profile {
            Profile::OpenStack => "OpenStack",
            Profile::Virtuozzo => "Virtuozzo Hybrid Infrastructure",
        };
        Ok(format!("{what} compute API {mv}"))
    }

    async fn list_guests(&self) -> Result<Vec<GuestSummary>> {
        Ok(self.servers("").await?.iter().map(|s| guest_of(s).summary()).collect())
    }

    async fn get_guest(&self, id: &GuestId) -> Result<Guest> {
        let sid = server_id(id)?;
        match self.server(sid).await {
            Ok(s) => Ok(guest_of(&s)),
            Err(OsError::NotFound(_)) => Err(Error::not_found(format!("guest [{sid}]"))),
            Err(e) => Err(e.into()),
        }
    }

    async fn power(&self, id: &GuestId, action: PowerAction) -> Result<TaskId> {
        let sid = server_id(id)?;
        let s = self.server_opt(sid).await?.ok_or_else(|| Error::not_found(format!("guest [{sid}]")))?;
        let (status, task_state) = status_of(&s);
        if map::meta(&s, META_TEMPLATE) == Some("1") && matches!(action, PowerAction::Start | PowerAction::Resume) {
            return Err(Error::conflict(format!("guest [{sid}] is a template; convert it to a VM first")));
        }
        let fail = |e: OsError| Error::from(e).context(format!("Failed to {action} guest [{sid}]"));
        let steady = task_state.is_none();
        let send = |body: Value| async move { self.action(sid, body).await };
        match action {
            PowerAction::Start | PowerAction::Resume => match status {
                "ACTIVE" if steady => Ok(Self::done("power")),
                "SHUTOFF" if action == PowerAction::Start => {
                    send(json!({"os-start": null})).await.map_err(fail)?;
                    Ok(self.power_token(sid, "ACTIVE", None))
                }
                "SUSPENDED" => {
                    send(json!({"resume": null})).await.map_err(fail)?;
                    Ok(self.power_token(sid, "ACTIVE", None))
                }
                "PAUSED" => {
                    send(json!({"unpause": null})).await.map_err(fail)?;
                    Ok(self.power_token(sid, "ACTIVE", None))
                }
                "SHUTOFF" => {
                    Err(Error::conflict(format!("guest [{sid}] is not suspended (SHUTOFF); start it instead")))
                }
                _ => Ok(self.power_token(sid, "ACTIVE", None)),
            },
            PowerAction::Stop | PowerAction::Shutdown => match status {
                "SHUTOFF" if steady => Ok(Self::done("power")),
                "SUSPENDED" => {
                    // Nova stops only ACTIVE/ERROR servers: resume, then stop.
                    send(json!({"resume": null})).await.map_err(fail)?;
                    Ok(self.power_token(sid, "SHUTOFF", Some("os-stop")))
                }
                "PAUSED" => {
                    send(json!({"unpause": null})).await.map_err(fail)?;
                    Ok(self.power_token(sid, "SHUTOFF", Some("os-stop")))
                }
                _ if task_state == Some("powering-off") => Ok(self.power_token(sid, "SHUTOFF", None)),
                _ => {
                    send(json!({"os-stop": null})).await.map_err(fail)?;
                    Ok(self.power_token(sid, "SHUTOFF", None))
                }
            },
            PowerAction::Reboot | PowerAction::Reset => {
                if status == "SHUTOFF" && action == PowerAction::Reboot {
                    send(json!({"os-start": null})).await.map_err(fail)?;
                } else {
                    let kind = if action == PowerAction::Reset { "HARD" } else { "SOFT" };
                    send(json!({"reboot": {"type": kind}})).await.map_err(fail)?;
                }
                Ok(self.power_token(sid, "ACTIVE", None))
            }
            PowerAction::Suspend => match status {
                "SUSPENDED" if steady => Ok(Self::done("power")),
                "ACTIVE" => {
                    send(json!({"suspend": null})).await.map_err(fail)?;
                    Ok(self.power_token(sid, "SUSPENDED", None))
                }
                other => Err(Error::conflict(format!("guest [{sid}] cannot be suspended while {other}"))),
            },
        }
    }

    async fn delete_guest(&self, id: &GuestId) -> Result<TaskId> {
        let Ok(sid) = server_id(id) else { return Ok(Self::done("delete")) };
        let Some(s) = self.server_opt(sid).await? else { return Ok(Self::done("delete")) };
        let ports: Vec<String> =
            meta(&s, META_PORTS).unwrap_or_default().split(',').filter(|p| is_uuid(p)).map(str::to_string).collect();
        // The snapshot images polyvisor made of this server go with it.
        for img in self.snapshot_images(sid).await? {
            if let Some(iid) = img["id"].as_str() {
                self.api.delete(Service::Image, &format!("/images/{iid}")).await?;
            }
        }
        self.api
            .delete(Service::Compute, &format!("/servers/{sid}"))
            .await
            .map_err(|e| Error::from(e).context(format!("Failed to delete guest [{sid}]")))?;
        Ok(TaskToken::new("os-delete", json!({"id": sid, "ports": ports}))
            .with_max_age(self.cfg().task_timeout.as_secs())
            .encode())
    }

    async fn set_template(&self, id: &GuestId, is_template: bool) -> Result<TaskId> {
        let sid = server_id(id)?;
        let path = format!("/servers/{sid}/metadata/{META_TEMPLATE}");
        if is_template {
            return match self.api.put(Service::Compute, &path, &json!({"meta": {META_TEMPLATE: "1"}})).await {
                Ok(_) => Ok(Self::done("convert")),
                Err(OsError::NotFound(_)) => Err(Error::not_found(format!("guest [{sid}]"))),
                Err(e) => Err(Error::from(e).context(format!("Failed to convert guest [{sid}]"))),
            };
        }
        // Removing the flag: Nova answers 404 both for a missing key (already a VM: fine)
        // and for a missing server.
        if !self.api.delete(Service::Compute, &path).await? && self.server_opt(sid).await?.is_none() {
            return Err(Error::not_found(format!("guest [{sid}]")));
        }
        Ok(Self::done("convert"))
    }

    async fn clone_guest(&self, spec: &CloneSpec) -> Result<CloneStarted> {
        let src = server_id(&spec.source)?;
        valid_name(&spec.name)?;
        if let Some(s) = self.earlier_clone(src, &spec.name).await? {
            let id = s["id"].as_str().unwrap_or_default().to_string();
            let nonce = meta(&s, META_NONCE).unwrap_or_default();
            let image = s["image"]["id"].as_str().unwrap_or_default();
            let body = json!({"nonce": nonce, "name": spec.name, "image": image, "tmp_image": false});
            return Ok(CloneStarted { task: self.boot_token(body), new_guest: Some(GuestId::new(id)) });
        }
        let source = self.server_opt(src).await?.ok_or_else(|| Error::not_found(format!("guest [{src}]")))?;
        let n = nonce();
        let (image, tmp) = match spec.snapshot.as_deref().filter(|s| !s.is_empty()) {
            Some(snap) => {
                let img = self
                    .snapshot_image(src, snap)
                    .await?
                    .ok_or_else(|| Error::not_found(format!("snapshot '{}' of guest [{src}]", clip(snap))))?;
                (img["id"].as_str().unwrap_or_default().to_string(), false)
            }
            None => {
                // "Current state": a fresh image of the source, deleted once the clone booted.
                let img = self
                    .create_image(src, &format!("pv-clonebase-{n}"), json!({IMG_CLONE_BASE: n}))
                    .await
                    .map_err(|e| Error::from(e).context(format!("Failed to clone guest [{src}]")))?;
                (img, true)
            }
        };
        let flavor = self
            .pick_flavor(
                source["flavor"]["original_name"].as_str(),
                source["flavor"]["vcpus"].as_u64().map(|v| v as u32),
                source["flavor"]["ram"].as_u64(),
            )
            .await?;
        let server = json!({
            "name": spec.name, "flavorRef": flavor, "networks": self.networks().await?,
            "metadata": {META_OWNED: "1", META_CLONE_OF: src, META_NONCE: n},
        });
        let body = json!({"nonce": n, "name": spec.name, "image": image, "tmp_image": tmp, "server": server});
        Ok(CloneStarted { task: self.boot_token(body), new_guest: None })
    }

    async fn create_guest(&self, spec: &CreateSpec) -> Result<CloneStarted> {
        valid_name(&spec.name)?;
        if spec.key.is_empty() || spec.key.len() > 255 {
            return Err(Error::invalid("the platform key must be 1-255 characters"));
        }
        // A retry finds the server by its key (ownership: the key, never the name).
        if let Some(s) = self.server_with_key(&spec.key).await? {
            return Ok(self.adopt_created(&s));
        }
        let image = match &spec.source {
            CreateSource::Template { id, .. } => id.as_str().to_string(),
            CreateSource::Iso { .. } => return Err(Error::unsupported("creating a guest from an ISO")),
        };
        if !is_uuid(&image) {
            return Err(Error::not_found(format!("template image [{}]", clip(&image))));
        }
        if spec.nics.iter().any(|n| n.vlan.is_none()) && self.cfg().network.is_none() {
            return Err(Error::invalid(
                "the guest asks for untagged NICs but setting 'network' (the Neutron network for them) is not set",
            ));
        }
        let n = nonce();
        // A create killed after its ports were made left them unattached, holding the
        // platform's MACs; they are named after the key, so the retry deals with them first
        // (their server may yet appear: then it is adopted).
        let port_names: Vec<String> = (0..spec.nics.len()).map(|i| port_name(&spec.key, i)).collect();
        if let Reclaim::Server(s) = self.reclaim_ports(&spec.key, &port_names).await? {
            return Ok(self.adopt_created(&s));
        }
        let mut ports: Vec<String> = Vec::new();
        let networks = if spec.nics.is_empty() {
            self.networks().await?
        } else {
            let mut list = Vec::new();
            for (i, nic) in spec.nics.iter().enumerate() {
                let net = match nic.vlan {
                    None => self.network_id(self.cfg().network.as_deref().unwrap_or_default()).await,
                    Some(v) => self.vlan_network_id(v).await,
                };
                let net = match net {
                    Ok(n) => n,
                    Err(e) => {
                        self.cleanup_ports(&ports).await;
                        return Err(e.into());
                    }
                };
                // The description says when (the nonce carries the time): see `reclaim_ports`.
                let mut port =
                    json!({"network_id": net, "name": port_names[i], "description": format!("polyvisor create {n}")});
                if let Some(mac) = &nic.mac {
                    port["mac_address"] = json!(mac.to_ascii_lowercase());
                }
                let mut posted = self.api.post(Service::Network, "/ports", &json!({ "port": port })).await;
                // The interrupted attempt's port may have been committed only after the look
                // above (its request was in flight when it was killed): on a conflict, deal
                // with it the same way and try again once.
                if matches!(posted, Err(OsError::Conflict(_))) {
                    match self.reclaim_ports(&spec.key, std::slice::from_ref(&port_names[i])).await {
                        Ok(Reclaim::Server(s)) => {
                            self.cleanup_ports(&ports).await;
                            return Ok(self.adopt_created(&s));
                        }
                        Ok(Reclaim::Removed(n)) if n > 0 => {
                            posted = self.api.post(Service::Network, "/ports", &json!({ "port": port })).await;
                        }
                        _ => {}
                    }
                }
                let p = match posted {
                    Ok(p) => p,
                    Err(e) => {
                        self.cleanup_ports(&ports).await;
                        return Err(
                            Error::from(e).context(format!("Failed to create a port for guest '{}'", spec.name))
                        );
                    }
                };
                let pid = p["port"]["id"].as_str().unwrap_or_default().to_string();
                list.push(json!({"port": pid}));
                ports.push(pid);
            }
            Value::Array(list)
        };
        let flavor = match self.pick_flavor(None, spec.cpus, spec.memory_mb).await {
            Ok(f) => f,
            Err(e) => {
                self.cleanup_ports(&ports).await;
                return Err(e.into());
            }
        };
        let server = json!({
            "name": spec.name, "flavorRef": flavor, "networks": networks,
            "metadata": {META_OWNED: "1", META_KEY: spec.key, META_NONCE: n, META_PORTS: ports.join(",")},
        });
        let mut body = json!({"nonce": n, "name": spec.name, "image": image, "tmp_image": false, "server": server});
        let mut task = self.boot_token(body.clone());
        // Boot right away when the image is ready (the task does it otherwise).
        let mut status = self.task_status(&task).await;
        // Not a Glance image but a template server (how `list_guests` flags templates, and so
        // how CloudShell and ManageIQ name them): boot from a fresh image of its current
        // state, deleted once the guest booted, as a clone of it would.
        if matches!(&status, Ok(TaskStatus::Failed(e)) if e.kind() == polyvisor_core::ErrorKind::NotFound) {
            if let Ok(Some(s)) = self.server_opt(&image).await {
                if meta(&s, META_TEMPLATE) == Some("1") {
                    match self.create_image(&image, &format!("pv-clonebase-{n}"), json!({IMG_CLONE_BASE: n})).await {
                        Ok(img) => {
                            body["image"] = json!(img);
                            body["tmp_image"] = json!(true);
                            task = self.boot_token(body);
                            status = self.task_status(&task).await;
                        }
                        Err(e) => {
                            self.cleanup_ports(&ports).await;
                            return Err(Error::from(e).context(format!("Failed to create guest '{}'", spec.name)));
                        }
                    }
                }
            }
        }
        if let Ok(TaskStatus::Failed(e)) = status {
            self.cleanup_ports(&ports).await;
            return Err(e);
        }
        Ok(CloneStarted { task, new_guest: None })
    }

    async fn list_snapshots(&self, id: &GuestId) -> Result<Vec<Snapshot>> {
        let sid = server_id(id)?;
        if self.server_opt(sid).await?.is_none() {
            return Err(Error::not_found(format!("guest [{sid}]")));
        }
        Ok(self
            .snapshot_images(sid)
            .await?
            .iter()
            .filter_map(|i| {
                Some(Snapshot {
                    name: i[IMG_SNAPSHOT_NAME].as_str()?.to_string(),
                    description: None,
                    created_unix: None,
                    parent: None,
                    includes_memory: false,
                })
            })
            .collect())
    }

    async fn snapshot_exists(&self, id: &GuestId, name: &str) -> Result<bool> {
        let sid = server_id(id)?;
        Ok(self.snapshot_image(sid, name).await?.is_some())
    }

    async fn create_snapshot(&self, id: &GuestId, spec: &SnapshotSpec) -> Result<TaskId> {
        let sid = server_id(id)?;
        if spec.name.is_empty() || spec.name.len() > 200 {
            return Err(Error::invalid("snapshot names must be 1-200 characters"));
        }
        if spec.include_memory {
            return Err(Error::unsupported("snapshots with memory"));
        }
        if let Some(old) = self.snapshot_image(sid, &spec.name).await? {
            if let Some(iid) = old["id"].as_str() {
                self.api.delete(Service::Image, &format!("/images/{iid}")).await?;
            }
        }
        let image = self
            .create_image(
                sid,
                &format!("pv-snap-{}-{}", &sid[..8], spec.name),
                json!({IMG_SNAPSHOT_OF: sid, IMG_SNAPSHOT_NAME: spec.name}),
            )
            .await
            .map_err(|e| Error::from(e).context(format!("Snapshot of guest [{sid}] failed")))?;
        Ok(TaskToken::new("os-snap", json!({"id": sid, "image": image}))
            .with_max_age(self.cfg().task_timeout.as_secs())
            .encode())
    }

    async fn revert_snapshot(&self, id: &GuestId, name: &str) -> Result<TaskId> {
        let sid = server_id(id)?;
        let s = self.server_opt(sid).await?.ok_or_else(|| Error::not_found(format!("guest [{sid}]")))?;
        let img = self
            .snapshot_image(sid, name)
            .await?
            .ok_or_else(|| Error::not_found(format!("snapshot '{}' of guest [{sid}]", clip(name))))?;
        let iid = img["id"].as_str().unwrap_or_default().to_string();
        let want = if status_of(&s).0 == "SHUTOFF" { "SHUTOFF" } else { "ACTIVE" };
        // Nova has no in-place revert: rebuild from the snapshot image (metadata is kept).
        self.action(sid, json!({"rebuild": {"imageRef": iid}}))
            .await
            .map_err(|e| Error::from(e).context(format!("Revert of guest [{sid}] failed")))?;
        Ok(TaskToken::new("os-rebuild", json!({"id": sid, "image": iid, "want": want}))
            .with_max_age(self.cfg().task_timeout.as_secs())
            .encode())
    }

    async fn delete_snapshot(&self, id: &GuestId, name: &str) -> Result<TaskId> {
        let sid = server_id(id)?;
        while let Some(img) = self.snapshot_image(sid, name).await? {
            let iid = img["id"].as_str().unwrap_or_default();
            if !self.api.delete(Service::Image, &format!("/images/{iid}")).await? {
                break;
            }
        }
        Ok(Self::done("snapshot-delete"))
    }

    async fn advance_task(&self, t: &TaskToken) -> Result<TaskStatus> {
        match t.kind.as_str() {
            "os-power" => {
                let id = t.req_str("id")?;
                let want = t.req_str("want")?;
                let Some(s) = self.server_opt(id).await? else {
                    return Ok(TaskStatus::Failed(Error::not_found(format!("guest [{id}]"))));
                };
                let (status, task_state) = status_of(&s);
                if status == want && task_state.is_none() {
                    return Ok(TaskStatus::Completed(TaskOutput::default()));
                }
                if status == "ERROR" {
                    return Ok(TaskStatus::Failed(Error::backend(format!("guest [{id}]: {}", fault_of(&s)))));
                }
                if let Some(then) = t.str("then") {
                    if status == "ACTIVE" && task_state.is_none() {
                        self.action(id, json!({ then: null })).await.or_else(ignore_conflict)?;
                    }
                }
                Ok(TaskStatus::Running)
            }
            "os-delete" => {
                let id = t.req_str("id")?;
                if let Some(s) = self.server_opt(id).await? {
                    // A delete that Nova dropped (ERROR without task): send it again.
                    if status_of(&s).1.is_none() && status_of(&s).0 != "DELETED" {
                        self.api.delete(Service::Compute, &format!("/servers/{id}")).await.or_else(|e| match e {
                            OsError::Conflict(_) => Ok(true),
                            e => Err(e),
                        })?;
                    }
                    return Ok(TaskStatus::Running);
                }
                for p in t.body["ports"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                    self.api.delete(Service::Network, &format!("/ports/{p}")).await?;
                }
                Ok(TaskStatus::Completed(TaskOutput::default()))
            }
            "os-snap" => {
                let id = t.req_str("id")?;
                let image = t.req_str("image")?;
                let img = match self.api.get(Service::Image, &format!("/images/{image}")).await {
                    Ok(i) => i,
                    Err(OsError::NotFound(_)) => {
                        return Ok(TaskStatus::Failed(Error::backend(format!("snapshot image [{image}] vanished"))))
                    }
                    Err(e) => return Err(e.into()),
                };
                match img["status"].as_str() {
                    Some("active") => {}
                    Some("killed" | "deleted" | "pending_delete" | "deactivated") => {
                        return Ok(TaskStatus::Failed(Error::backend(format!("snapshot image [{image}] failed"))))
                    }
                    _ => return Ok(TaskStatus::Running),
                }
                // Done when the server has left its image_* task state too.
                match self.server_opt(id).await? {
                    Some(s) if status_of(&s).1.is_some() => Ok(TaskStatus::Running),
                    _ => Ok(TaskStatus::Completed(TaskOutput::default())),
                }
            }
            "os-rebuild" => {
                let id = t.req_str("id")?;
                let want = t.req_str("want")?;
                let image = t.req_str("image")?;
                let Some(s) = self.server_opt(id).await? else {
                    return Ok(TaskStatus::Failed(Error::not_found(format!("guest [{id}]"))));
                };
                let (status, task_state) = status_of(&s);
                if status == "ERROR" {
                    return Ok(TaskStatus::Failed(Error::backend(format!("guest [{id}]: {}", fault_of(&s)))));
                }
                if status == want && task_state.is_none() && s["image"]["id"].as_str() == Some(image) {
                    return Ok(TaskStatus::Completed(TaskOutput::default()));
                }
                Ok(TaskStatus::Running)
            }
            "os-boot" => self.advance_boot(t).await,
            _ => Err(t.unknown()),
        }
    }

    async fn console(&self, id: &GuestId) -> Result<Console> {
        let sid = server_id(id)?;
        let body = json!({"remote_console": {"protocol": "vnc", "type": "novnc"}});
        let v = self
            .api
            .post(Service::Compute, &format!("/servers/{sid}/remote-consoles"), &body)
            .await
            .map_err(|e| Error::from(e).context(format!("Console of guest [{sid}] failed")))?;
        let url = v["remote_console"]["url"]
            .as_str()
            .ok_or_else(|| Error::backend("Nova answered remote-consoles without a URL"))?;
        Ok(Console::Url { url: SecretString::from(url.to_string()) })
    }

    // --- L3 guest networking (CloudShell): Neutron network, subnet and security group per
    // sandbox subnet (`crate::l3`).

    async fn ensure_subnet(&self, spec: &polyvisor_core::netops::SubnetSpec) -> Result<polyvisor_core::netops::Subnet> {
        self.l3_ensure_subnet(spec).await
    }

    async fn connect_subnet(&self, id: &GuestId, subnet_id: &str) -> Result<polyvisor_core::Nic> {
        self.l3_connect_subnet(server_id(id)?, subnet_id).await
    }

    async fn delete_subnets(&self, owner: &str) -> Result<usize> {
        self.l3_delete_subnets(owner).await
    }

    async fn set_security_rules(
        &self,
        id: &GuestId,
        subnet_id: &str,
        rules: &[polyvisor_core::netops::SecurityRule],
    ) -> Result<()> {
        self.l3_set_rules(server_id(id)?, subnet_id, rules).await
    }
}

impl OpenStackDriver {
    /// The server carrying platform key `key`, if any.
    async fn server_with_key(&self, key: &str) -> Result<Option<Value>> {
        Ok(self.servers("").await?.into_iter().find(|s| meta(s, META_KEY) == Some(key)))
    }

    /// The answer to a create whose server exists already (a retry): its boot task.
    fn adopt_created(&self, s: &Value) -> CloneStarted {
        let id = s["id"].as_str().unwrap_or_default().to_string();
        let nonce = meta(s, META_NONCE).unwrap_or_default();
        let image = s["image"]["id"].as_str().unwrap_or_default();
        let body = json!({"nonce": nonce, "name": s["name"], "image": image, "tmp_image": false});
        CloneStarted { task: self.boot_token(body), new_guest: Some(GuestId::new(id)) }
    }

    /// Deals with the unattached ports named `names`, left by an interrupted create of the
    /// same key (a port bound to a device is never touched). Such a port may belong to a
    /// server request still in flight in Nova (it validates the ports before it writes the
    /// server): while the youngest is under [`IN_FLIGHT_GRACE`] old, the server is looked
    /// for each second and adopted if it appears. After that the ports are deleted.
    async fn reclaim_ports(&self, key: &str, names: &[String]) -> Result<Reclaim> {
        if names.is_empty() {
            return Ok(Reclaim::Removed(0));
        }
        let query: Vec<String> = names.iter().map(|p| format!("name={}", enc(p))).collect();
        loop {
            let found = self.api.get(Service::Network, &format!("/ports?{}", query.join("&"))).await?;
            let stale: Vec<(String, Option<std::time::Duration>)> = found["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["device_id"].as_str().unwrap_or_default().is_empty())
                .filter_map(|p| {
                    let made = p["description"].as_str().and_then(|d| d.strip_prefix("polyvisor create "));
                    Some((p["id"].as_str()?.to_string(), made.and_then(nonce_age)))
                })
                .collect();
            if stale.is_empty() {
                return Ok(Reclaim::Removed(0));
            }
            if let Some(s) = self.server_with_key(key).await? {
                return Ok(Reclaim::Server(s));
            }
            let youngest = stale.iter().map(|(_, a)| a.unwrap_or(IN_FLIGHT_GRACE)).min().unwrap_or(IN_FLIGHT_GRACE);
            if youngest < IN_FLIGHT_GRACE {
                tokio::time::sleep((IN_FLIGHT_GRACE - youngest).min(std::time::Duration::from_secs(1))).await;
                continue;
            }
            for (p, _) in &stale {
                self.api.delete(Service::Network, &format!("/ports/{p}")).await.map_err(|e| {
                    Error::from(e).context(format!("Failed to remove port [{p}] of an interrupted create"))
                })?;
            }
            return Ok(Reclaim::Removed(stale.len()));
        }
    }

    /// Best-effort removal of ports made for a create that then failed.
    async fn cleanup_ports(&self, ports: &[String]) {
        for p in ports {
            if let Err(e) = self.api.delete(Service::Network, &format!("/ports/{p}")).await {
                tracing::warn!(target: "polyvisor_openstack", port = %p, error = %e, "could not remove a port after a failed create");
            }
        }
    }
}

/// How long after its ports were made an interrupted create's server request may still be in
/// flight in Nova (ports validated, server not yet written); see `reclaim_ports`.
const IN_FLIGHT_GRACE: std::time::Duration = std::time::Duration::from_secs(20);

/// What `reclaim_ports` found.
enum Reclaim {
    /// The interrupted attempt's server exists after all: adopt it.
    Server(Value),
    /// This many unattached ports were deleted.
    Removed(usize),
}

/// The Neutron name of NIC `i` of the create with platform key `key`: derived from the key
/// (hashed: keys are up to 255 characters, and free text) so a retry finds what an
/// interrupted attempt left.
pub fn port_name(key: &str, i: usize) -> String {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(key.as_bytes());
    let hex: String = h.iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!("pv-{hex}-{i}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_names_follow_the_key() {
        assert_eq!(port_name("i-2-7-VM", 0), port_name("i-2-7-VM", 0));
        assert_ne!(port_name("i-2-7-VM", 0), port_name("i-2-7-VM", 1));
        assert_ne!(port_name("i-2-7-VM", 0), port_name("i-2-8-VM", 0));
        assert_eq!(port_name(&"k".repeat(255), 3).len(), "pv-".len() + 24 + 2);
    }

    #[test]
    fn names_and_ids_are_checked_before_any_request() {
        assert!(valid_name("h-1.web_2").is_ok());
        for bad in ["", "-x", "a b", "x/../y", &"a".repeat(64)] {
            assert!(valid_name(bad).is_err(), "{bad}");
        }
        assert!(server_id(&GuestId::new("../../servers")).unwrap_err().is_not_found());
        assert_ne!(nonce(), nonce());
        let age = nonce_age(&nonce()).expect("a fresh nonce says when it was made");
        assert!(age < std::time::Duration::from_secs(5), "{age:?}");
        let old = format!("{:x}-1-0", 1_000_000_000u64 * 3600);
        assert!(nonce_age(&old).unwrap() > std::time::Duration::from_secs(3600 * 24 * 365));
        for bad in ["", "zz-1-0", "18f2a3b4c5d6e7f8a9b0", &format!("{:x}-1-0", u128::MAX)] {
            assert_eq!(nonce_age(bad), None, "{bad}");
        }
    }
}
