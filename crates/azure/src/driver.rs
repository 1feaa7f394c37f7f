//! `impl Driver for Azure`. Long work returns self-describing tokens whose `advance_task`
//! reads live ARM state and issues the next idempotent step (ARM `PUT` is
//! create-or-update, resource names are deterministic), so any process can finish a task.

use crate::client::{api, Arm, Lro, OpState};
use crate::config::{Config, StopMode};
use crate::error::AzError;
use crate::model::{self, DISK, NIC, SNAP, VM};
use polyvisor_core::task::{completed, TaskToken};
use polyvisor_core::{
    Capabilities, CloneSpec, CloneStarted, CreateSource, CreateSpec, Driver, Error, Guest, GuestId, GuestSummary,
    PowerAction, PowerState, Result, Snapshot, SnapshotSpec, TaskId, TaskOutput, TaskStatus,
};
use reqwest::Method;
use serde_json::{json, Value};

/// The Azure driver.
pub struct Azure {
    arm: Arm,
}

fn done(op: &str) -> TaskId {
    completed(op, &TaskOutput::default())
}

fn lro_json(l: &Option<Lro>) -> Value {
    match l {
        Some(l) => json!({"url": l.url, "async": l.async_op}),
        None => Value::Null,
    }
}

fn lro_of(v: &Value) -> Option<Lro> {
    Some(Lro { url: v.get("url")?.as_str()?.to_string(), async_op: v.get("async")?.as_bool()? })
}

fn nonce() -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{:x}", t ^ (u128::from(std::process::id()) << 64))
}

fn failed(e: AzError, what: &str) -> TaskStatus {
    TaskStatus::Failed(Error::from(e).context(what))
}

impl Azure {
    /// A driver for this config (no I/O).
    pub fn new(cfg: Config) -> Result<Azure> {
        Ok(Azure { arm: Arm::new(cfg)? })
    }

    /// The ARM client (round-trip counters for tests and benchmarks).
    pub fn arm(&self) -> &Arm {
        &self.arm
    }

    fn cfg(&self) -> &Config {
        self.arm.cfg()
    }

    fn vm_path(&self, name: &str) -> String {
        self.arm.path(VM, name, api::VM)
    }

    fn by_id(id: &str, version: &str) -> String {
        format!("{id}?api-version={version}")
    }

    async fn vm(&self, name: &str, view: bool) -> Result<Option<Value>, AzError> {
        let mut p = self.vm_path(name);
        if view {
            p.push_str("&$expand=instanceView");
        }
        self.arm.get_opt(&p, &format!("guest [{name}]")).await
    }

    async fn vm_required(&self, name: &str, view: bool) -> Result<Value> {
        self.vm(name, view).await?.ok_or_else(|| Error::not_found(format!("guest [{name}]")))
    }

    /// The group's VMs (model: tags, disks, NICs) with their instance views merged in.
    /// `VirtualMachines_List` takes `$expand=instanceView` only together with a `$filter`,
    /// so the power states come from one `ListAll?statusOnly=true` (subscription-wide),
    /// fetched concurrently with the template gallery's image definitions (which VMs are
    /// templates): three calls whatever the number of VMs.
    async fn list_vms(&self) -> Result<(Vec<Value>, Vec<String>), AzError> {
        let model_path = format!("{}/providers/{VM}?api-version={}", self.cfg().group_path(), api::VM);
        let status_path = format!(
            "/subscriptions/{}/providers/{VM}?api-version={}&statusOnly=true",
            self.cfg().subscription_id,
            api::VM
        );
        // try_join: the first failure ends the others (a dead endpoint costs one timeout).
        let (mut vms, statuses, images) = tokio::try_join!(
            self.arm.list(&model_path, "virtual machines"),
            self.arm.list(&status_path, "VM statuses"),
            self.template_images()
        )?;
        let templates = images
            .iter()
            .filter_map(|img| {
                let vm = model::tag(img, model::TAG_VM)?;
                model::is_template_image(img, vm).then(|| vm.to_ascii_lowercase())
            })
            .collect();
        let view_of = |id: &str| {
            statuses
                .iter()
                .find(|s| s.get("id").and_then(Value::as_str).is_some_and(|x| x.eq_ignore_ascii_case(id)))
                .and_then(|s| s.pointer("/properties/instanceView").cloned())
        };
        for vm in &mut vms {
            let id = vm.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
            if let (Some(view), Some(props)) = (view_of(&id), vm.get_mut("properties").and_then(Value::as_object_mut)) {
                props.insert("instanceView".into(), view);
            }
        }
        Ok((vms, templates))
    }

    // ---- templates: Azure Compute Gallery image definitions and versions --------------

    fn image_id(&self, vm: &str) -> String {
        format!("{}/images/{vm}", self.cfg().gallery_id())
    }

    /// The gallery's image definitions (none when the gallery does not exist yet).
    async fn template_images(&self) -> Result<Vec<Value>, AzError> {
        let path = format!("{}/images?api-version={}", self.cfg().gallery_id(), api::GALLERY);
        match self.arm.list(&path, "gallery images").await {
            Ok(v) => Ok(v),
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// The image definition polyvisor made for VM `vm` (flagged or not), if any.
    async fn owned_image(&self, vm: &str) -> Result<Option<Value>, AzError> {
        Ok(self
            .arm
            .get_opt(&Self::by_id(&self.image_id(vm), api::GALLERY), "gallery image")
            .await?
            .filter(|img| model::created_for(img, vm)))
    }

    /// The image versions of VM `vm`'s image definition that polyvisor made.
    async fn owned_versions(&self, vm: &str) -> Result<Vec<Value>, AzError> {
        let path = format!("{}/versions?api-version={}", self.image_id(vm), api::GALLERY);
        match self.arm.list(&path, "gallery image versions").await {
            Ok(v) => Ok(v.into_iter().filter(|x| model::created_for(x, vm)).collect()),
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// The image version holding platform snapshot (template version) `name` of VM `vm`.
    async fn owned_version(&self, vm: &str, name: &str) -> Result<Option<Value>, AzError> {
        if self.owned_image(vm).await?.is_none() {
            return Ok(None);
        }
        Ok(self.owned_versions(vm).await?.into_iter().find(|v| model::tag(v, model::TAG_SNAPSHOT) == Some(name)))
    }

    /// One step of set_template: gallery → image definition → flag (or flag removed).
    /// Versions stay when the flag goes, so converting back keeps them.
    async fn step_template(&self, b: &Value) -> Result<TaskStatus, AzError> {
        let vm = b.get("vm").and_then(Value::as_str).unwrap_or_default().to_string();
        if !model::valid_vm_name(&vm) {
            return Err(AzError::Protocol("template task without a valid VM name".into()));
        }
        let on = b.get("on").and_then(Value::as_bool).unwrap_or(false);
        let img_path = Self::by_id(&self.image_id(&vm), api::GALLERY);
        let img = self.arm.get_opt(&img_path, "gallery image").await?;
        if let Some(i) = &img {
            if !model::created_for(i, &vm) {
                return Err(AzError::Conflict {
                    code: "ImageNotOwned".into(),
                    message: format!("gallery image '{vm}' exists and polyvisor did not make it"),
                });
            }
            if model::provisioning(i) != "Succeeded" {
                return Ok(TaskStatus::Running);
            }
        }
        if !on {
            return Ok(match img {
                Some(i) if model::tag(&i, model::TAG_TEMPLATE).is_some() => {
                    let tags = model::with_tag(&i, model::TAG_TEMPLATE, None);
                    self.arm.call(Method::PATCH, &img_path, Some(&json!({"tags": tags})), "gallery image").await?;
                    TaskStatus::Running
                }
                _ => TaskStatus::Completed(TaskOutput::default()),
            });
        }
        match img {
            Some(i) if model::tag(&i, model::TAG_TEMPLATE) == Some("true") => {
                Ok(TaskStatus::Completed(TaskOutput::default()))
            }
            Some(i) => {
                let tags = model::with_tag(&i, model::TAG_TEMPLATE, Some("true"));
                self.arm.call(Method::PATCH, &img_path, Some(&json!({"tags": tags})), "gallery image").await?;
                Ok(TaskStatus::Running)
            }
            None => {
                let g_path = Self::by_id(&self.cfg().gallery_id(), api::GALLERY);
                match self.arm.get_opt(&g_path, "gallery").await? {
                    None => {
                        let body = json!({"location": self.cfg().location, "tags": {model::TAG_CREATED: "true"},
                                          "properties": {"description": "polyvisor templates"}});
                        self.arm.call(Method::PUT, &g_path, Some(&body), "gallery").await?;
                        return Ok(TaskStatus::Running);
                    }
                    Some(g) if model::provisioning(&g) != "Succeeded" => return Ok(TaskStatus::Running),
                    Some(_) => {}
                }
                let os = b.get("os_type").and_then(Value::as_str).unwrap_or("Linux");
                let body = json!({
                    "location": self.cfg().location,
                    "tags": {model::TAG_CREATED: "true", model::TAG_VM: vm, model::TAG_TEMPLATE: "true"},
                    "properties": {"osType": os, "osState": "Specialized", "hyperVGeneration": "V2",
                                   "identifier": {"publisher": "polyvisor", "offer": "template", "sku": vm}}
                });
                self.arm.call(Method::PUT, &img_path, Some(&body), "gallery image").await?;
                Ok(TaskStatus::Running)
            }
        }
    }

    /// One step of a template version: an image version made from the VM's OS disk,
    /// tagged with the platform's version name (a version of that name is replaced).
    async fn step_version(&self, b: &Value) -> Result<TaskStatus, AzError> {
        let s = |k: &str| b.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        let (vm, name, ver, op, disk) = (s("vm"), s("name"), s("ver"), s("op"), s("disk"));
        if !model::valid_vm_name(&vm) || model::version_number(&ver).is_none() || !model::valid_resource_id(&disk) {
            return Err(AzError::Protocol("version task with invalid fields".into()));
        }
        let versions = self.owned_versions(&vm).await?;
        let same: Vec<&Value> =
            versions.iter().filter(|v| model::tag(v, model::TAG_SNAPSHOT) == Some(name.as_str())).collect();
        // older versions with the same platform name are replaced: deleted first
        let mut replacing = false;
        for v in same.iter().filter(|v| model::tag(v, model::TAG_OP) != Some(op.as_str())) {
            replacing = true;
            if model::provisioning(v) != "Deleting" {
                if let Some(id) = v.get("id").and_then(Value::as_str).filter(|i| model::valid_resource_id(i)) {
                    self.delete_res(id, api::GALLERY).await?;
                }
            }
        }
        if let Some(ours) = same.iter().find(|v| model::tag(v, model::TAG_OP) == Some(op.as_str())) {
            return Ok(match model::provisioning(ours) {
                "Failed" => failed(
                    AzError::OperationFailed {
                        status: "Failed".into(),
                        code: "ImageVersionFailed".into(),
                        message: String::new(),
                    },
                    &format!("Template version of guest [{vm}] failed"),
                ),
                "Succeeded" if !replacing => TaskStatus::Completed(TaskOutput::default()),
                _ => TaskStatus::Running,
            });
        }
        if replacing {
            return Ok(TaskStatus::Running);
        }
        let path = format!("{}/versions/{ver}?api-version={}", self.image_id(&vm), api::GALLERY);
        let body = json!({
            "location": self.cfg().location,
            "tags": {model::TAG_VM: vm, model::TAG_CREATED: "true", model::TAG_SNAPSHOT: name, model::TAG_OP: op},
            "properties": {
                "publishingProfile": {"targetRegions": [{"name": self.cfg().location, "regionalReplicaCount": 1}]},
                "storageProfile": {"osDiskImage": {"source": {"id": disk}}}
            }
        });
        self.arm.call(Method::PUT, &path, Some(&body), "gallery image version").await?;
        Ok(TaskStatus::Running)
    }

    fn stop_action(&self, graceful: bool) -> &'static str {
        match (self.cfg().stop_mode, graceful) {
            (StopMode::Deallocate, _) => "deallocate",
            (StopMode::PowerOff, true) => "powerOff?skipShutdown=false",
            (StopMode::PowerOff, false) => "powerOff?skipShutdown=true",
        }
    }

    async fn post_vm(&self, name: &str, action: &str) -> Result<Option<Lro>, AzError> {
        // `action` may carry its own query (`powerOff?skipShutdown=true`).
        let (verb, q) = action.split_once('?').map(|(a, q)| (a, format!("&{q}"))).unwrap_or((action, String::new()));
        let p = format!(
            "{}/providers/{VM}/{}/{verb}?api-version={}{q}",
            self.cfg().group_path(),
            urlencoding::encode(name),
            api::VM
        );
        Ok(self.arm.call(Method::POST, &p, None, &format!("guest [{name}]")).await?.lro)
    }

    async fn delete_res(&self, id: &str, version: &str) -> Result<(), AzError> {
        match self.arm.call(Method::DELETE, &Self::by_id(id, version), None, "resource").await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn subnet_of(&self, vm: &Value) -> Result<String> {
        if let Some(s) = &self.cfg().subnet_id {
            return Ok(s.clone());
        }
        let nic_id = model::nic_ids(vm)
            .into_iter()
            .next()
            .ok_or_else(|| Error::invalid("the source VM has no NIC: set 'subnet_id'"))?;
        let nic = self.arm.get(&Self::by_id(&nic_id, api::NIC), "NIC").await?;
        nic.pointer("/properties/ipConfigurations/0/properties/subnet/id")
            .and_then(Value::as_str)
            .filter(|s| model::valid_resource_id(s))
            .map(str::to_string)
            .ok_or_else(|| Error::invalid("the source VM's NIC has no subnet: set 'subnet_id'"))
    }

    async fn read_guest(&self, name: &str) -> Result<Guest> {
        let vm = self.vm_required(name, true).await?;
        let mut nics = Vec::new();
        for id in model::nic_ids(&vm) {
            match self.arm.get_opt(&Self::by_id(&id, api::NIC), "NIC").await? {
                Some(n) => nics.push(model::nic(&n)),
                None => continue,
            }
        }
        let (power, raw) = model::power(&vm);
        let size = vm.pointer("/properties/hardwareProfile/vmSize").and_then(Value::as_str).unwrap_or_default();
        let shape = model::size_shape(size);
        Ok(Guest {
            id: GuestId::new(name),
            name: name.to_string(),
            node: None,
            os: model::os_type(&vm).map(|s| s.to_ascii_lowercase()),
            cpus: shape.map(|s| s.0),
            memory_mb: shape.map(|s| s.1),
            nics,
            is_template: self.owned_image(name).await?.is_some_and(|i| model::is_template_image(&i, name)),
            power,
            raw_power_state: raw,
            key: model::tag(&vm, model::TAG_KEY).map(str::to_string),
        })
    }

    fn op_task(kind: &str, vm: &str, lro: Option<Lro>) -> TaskId {
        match lro {
            Some(_) => TaskToken::new(kind, json!({"vm": vm, "lro": lro_json(&lro)})).encode(),
            None => done(kind),
        }
    }

    // ---- clone / create -------------------------------------------------------------

    /// One step of the clone state machine (see module doc).
    async fn step_clone(&self, b: &Value) -> Result<TaskStatus, AzError> {
        let s = |k: &str| b.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        let name = s("vm");
        if !model::valid_vm_name(&name) {
            return Err(AzError::Protocol("clone task without a valid VM name".into()));
        }
        let subnets_ok = b
            .get("subnets")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().all(|x| x.as_str().is_some_and(model::valid_resource_id)));
        if !model::valid_resource_id(&s("src")) || !subnets_ok {
            return Err(AzError::Protocol("clone task with an invalid resource id".into()));
        }
        let start = b.get("start").and_then(Value::as_bool).unwrap_or(true);
        let out = || TaskStatus::Completed(TaskOutput { new_guest: Some(GuestId::new(name.clone())) });
        if let Some(vm) = self.vm(&name, true).await? {
            match model::provisioning(&vm) {
                "Succeeded" => {}
                "Failed" => {
                    return Ok(failed(
                        AzError::OperationFailed {
                            status: "Failed".into(),
                            code: "VMProvisioningFailed".into(),
                            message: String::new(),
                        },
                        &format!("Failed to create guest [{name}]"),
                    ))
                }
                _ => return Ok(TaskStatus::Running),
            }
            let (p, raw) = model::power(&vm);
            return Ok(match (start, p) {
                (true, PowerState::PoweredOn) | (false, PowerState::PoweredOff) => out(),
                (true, PowerState::PoweredOff) if raw != "unknown" => {
                    self.post_vm(&name, "start").await?;
                    TaskStatus::Running
                }
                (false, PowerState::PoweredOn) => {
                    self.post_vm(&name, self.stop_action(false)).await?;
                    TaskStatus::Running
                }
                _ => TaskStatus::Running,
            });
        }
        let loc = self.cfg().location.clone();
        let owned = json!({model::TAG_VM: name, model::TAG_CREATED: "true"});
        // 1. the OS disk (a full copy of the source disk or snapshot)
        let disk_name = format!("{name}-osdisk");
        let disk_path = self.arm.path(DISK, &disk_name, api::DISK);
        match self.arm.get_opt(&disk_path, "disk").await? {
            None => {
                let creation = if b.get("from_image").and_then(Value::as_bool) == Some(true) {
                    json!({"createOption": "FromImage", "galleryImageReference": {"id": s("src")}})
                } else {
                    json!({"createOption": "Copy", "sourceResourceId": s("src")})
                };
                let mut props = json!({"creationData": creation});
                if let Some(os) = b.get("os_type").and_then(Value::as_str) {
                    props["osType"] = json!(os);
                }
                if let Some(gb) = b.get("disk_gb").and_then(Value::as_u64) {
                    props["diskSizeGB"] = json!(gb);
                }
                let body =
                    json!({"location": loc, "tags": owned, "sku": {"name": "StandardSSD_LRS"}, "properties": props});
                self.arm.call(Method::PUT, &disk_path, Some(&body), "disk").await?;
                return Ok(TaskStatus::Running);
            }
            Some(d) if model::provisioning(&d) == "Failed" => {
                return Ok(failed(
                    AzError::OperationFailed {
                        status: "Failed".into(),
                        code: "DiskCreationFailed".into(),
                        message: String::new(),
                    },
                    &format!("Failed to create the disk of guest [{name}]"),
                ))
            }
            Some(d) if model::provisioning(&d) != "Succeeded" => return Ok(TaskStatus::Running),
            Some(_) => {}
        }
        // 2. the NICs
        let subnets: Vec<String> = b
            .get("subnets")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default();
        let mut nic_ids = Vec::new();
        let mut pending = false;
        for (i, subnet) in subnets.iter().enumerate() {
            let nic_name = if i == 0 { format!("{name}-nic") } else { format!("{name}-nic{i}") };
            let path = self.arm.path(NIC, &nic_name, api::NIC);
            nic_ids.push(self.arm.id(NIC, &nic_name));
            match self.arm.get_opt(&path, "NIC").await? {
                None => {
                    let body = json!({"location": loc, "tags": owned, "properties": {"ipConfigurations": [
                        {"name": "ipconfig1", "properties": {"privateIPAllocationMethod": "Dynamic", "subnet": {"id": subnet}}}]}});
                    self.arm.call(Method::PUT, &path, Some(&body), "NIC").await?;
                    pending = true;
                }
                Some(n) if model::provisioning(&n) != "Succeeded" => pending = true,
                Some(_) => {}
            }
        }
        if pending {
            return Ok(TaskStatus::Running);
        }
        // 3. the VM on that disk (Azure starts a new VM)
        let mut tags = json!({model::TAG_CREATED: "true", model::TAG_SOURCE: s("source")});
        if let Some(k) = b.get("key").and_then(Value::as_str) {
            tags[model::TAG_KEY] = json!(k);
        }
        let nics: Vec<Value> = nic_ids
            .iter()
            .enumerate()
            .map(|(i, id)| json!({"id": id, "properties": {"primary": i == 0, "deleteOption": "Detach"}}))
            .collect();
        let mut os_disk = json!({"createOption": "Attach", "managedDisk": {"id": self.arm.id(DISK, &disk_name)}, "deleteOption": "Detach"});
        if let Some(os) = b.get("os_type").and_then(Value::as_str) {
            os_disk["osType"] = json!(os);
        }
        let body = json!({
            "location": loc,
            "tags": tags,
            "properties": {
                "hardwareProfile": {"vmSize": s("size")},
                "storageProfile": {"osDisk": os_disk},
                "networkProfile": {"networkInterfaces": nics}
            }
        });
        self.arm.call(Method::PUT, &self.vm_path(&name), Some(&body), &format!("guest [{name}]")).await?;
        Ok(TaskStatus::Running)
    }

    /// Starts a clone/create after the checks; the first step runs now.
    async fn start_clone(&self, body: Value) -> Result<CloneStarted> {
        let name = body["vm"].as_str().unwrap_or_default().to_string();
        let token = TaskToken::new("clone", body);
        if let TaskStatus::Failed(e) = self.step_clone(&token.body).await? {
            return Err(e);
        }
        Ok(CloneStarted { task: token.encode(), new_guest: Some(GuestId::new(name)) })
    }

    fn size_for(&self, spec: &CreateSpec) -> String {
        match (spec.cpus, spec.memory_mb) {
            (Some(c), Some(m)) => {
                model::size_for(c, m).map(str::to_string).unwrap_or_else(|| self.cfg().vm_size.clone())
            }
            _ => self.cfg().vm_size.clone(),
        }
    }

    fn nic_subnets(spec: &CreateSpec, default_subnet: &str) -> Result<Vec<String>> {
        let mut subnets = Vec::new();
        for n in &spec.nics {
            if n.vlan.is_some() {
                return Err(Error::invalid("Azure virtual networks carry no VLAN tags: use untagged networks"));
            }
            subnets.push(match &n.network {
                Some(s) if model::valid_resource_id(s) && s.contains("/subnets/") => s.clone(),
                _ => default_subnet.to_string(),
            });
        }
        if subnets.is_empty() {
            subnets.push(default_subnet.to_string());
        }
        Ok(subnets)
    }

    /// Create from an Azure Compute Gallery image version (a *specialized* image: its OS
    /// disk is made `FromImage` and attached, like a clone; generalized images would need
    /// OS provisioning, which polyvisor does not do).
    async fn create_from_gallery(&self, spec: &CreateSpec, version: &str, image: &str) -> Result<CloneStarted> {
        let v = self
            .arm
            .get_opt(&Self::by_id(version, api::GALLERY), "gallery image version")
            .await?
            .ok_or_else(|| Error::not_found(format!("gallery image version {version}")))?;
        if model::provisioning(&v) != "Succeeded" {
            return Err(Error::conflict("the gallery image version is not ready (provisioningState)"));
        }
        let def = self.arm.get(&Self::by_id(image, api::GALLERY), "gallery image").await?;
        let os_state = def.pointer("/properties/osState").and_then(Value::as_str).unwrap_or_default();
        if !os_state.eq_ignore_ascii_case("Specialized") {
            return Err(Error::unsupported("generalized gallery images (polyvisor attaches specialized images only)"));
        }
        let os_type = def.pointer("/properties/osType").and_then(Value::as_str).map(str::to_string);
        let subnet = self
            .cfg()
            .subnet_id
            .clone()
            .ok_or_else(|| Error::invalid("setting 'subnet_id' is required to create from a gallery image"))?;
        let subnets = Self::nic_subnets(spec, &subnet)?;
        self.start_clone(json!({"vm": spec.name, "src": version, "from_image": true, "os_type": os_type,
                                "subnets": subnets, "size": self.size_for(spec), "start": true,
                                "source": image.rsplit('/').next().unwrap_or_default(), "key": spec.key,
                                "disk_gb": spec.disk_size_gb}))
            .await
    }

    // ---- snapshots ------------------------------------------------------------------

    async fn step_snapshot(&self, b: &Value) -> Result<TaskStatus, AzError> {
        let s = |k: &str| b.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        let (vm, res, op) = (s("vm"), s("res"), s("op"));
        let path = self.arm.path(SNAP, &res, api::DISK);
        match self.arm.get_opt(&path, "snapshot").await? {
            Some(snap) if model::tag(&snap, model::TAG_OP) == Some(op.as_str()) => {
                Ok(match model::provisioning(&snap) {
                    "Succeeded" => TaskStatus::Completed(TaskOutput::default()),
                    "Failed" => failed(
                        AzError::OperationFailed {
                            status: "Failed".into(),
                            code: "SnapshotFailed".into(),
                            message: String::new(),
                        },
                        &format!("Snapshot of guest [{vm}] failed"),
                    ),
                    _ => TaskStatus::Running,
                })
            }
            Some(old) => {
                if model::provisioning(&old) != "Deleting" {
                    self.arm.call(Method::DELETE, &path, None, "snapshot").await?;
                }
                Ok(TaskStatus::Running)
            }
            None => {
                let body = json!({
                    "location": self.cfg().location,
                    "tags": {model::TAG_VM: vm, model::TAG_CREATED: "true", model::TAG_SNAPSHOT: s("name"), model::TAG_OP: op},
                    "sku": {"name": "Standard_LRS"},
                    "properties": {"creationData": {"createOption": "Copy", "sourceResourceId": s("disk")}, "incremental": false}
                });
                self.arm.call(Method::PUT, &path, Some(&body), "snapshot").await?;
                Ok(TaskStatus::Running)
            }
        }
    }

    async fn owned_snapshot(&self, vm: &str, name: &str) -> Result<Option<Value>, AzError> {
        let res = model::snapshot_resource(vm, name);
        Ok(self
            .arm
            .get_opt(&self.arm.path(SNAP, &res, api::DISK), "snapshot")
            .await?
            .filter(|s| model::tag(s, model::TAG_VM).is_some_and(|t| t.eq_ignore_ascii_case(vm))))
    }

    async fn step_revert(&self, b: &Value) -> Result<TaskStatus, AzError> {
        let s = |k: &str| b.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        let (name, new_disk) = (s("vm"), s("new_disk"));
        let Some(vm) = self.vm(&name, true).await? else {
            return Err(AzError::NotFound { what: format!("guest [{name}]"), code: "ResourceNotFound".into() });
        };
        let new_id = self.arm.id(DISK, &new_disk);
        let current = model::os_disk_id(&vm).unwrap_or_default();
        let (p, raw) = model::power(&vm);
        if current.eq_ignore_ascii_case(&new_id) {
            if model::provisioning(&vm) != "Succeeded" {
                return Ok(TaskStatus::Running);
            }
            let old = s("old_disk");
            if !old.is_empty() && !old.eq_ignore_ascii_case(&new_id) {
                if let Some(d) = self.arm.get_opt(&Self::by_id(&old, api::DISK), "disk").await? {
                    if model::created_for(&d, &name) && model::provisioning(&d) != "Deleting" {
                        self.delete_res(&old, api::DISK).await?;
                    }
                }
            }
            if b.get("was_on").and_then(Value::as_bool) == Some(true) && p != PowerState::PoweredOn {
                if p == PowerState::PoweredOff {
                    self.post_vm(&name, "start").await?;
                }
                return Ok(TaskStatus::Running);
            }
            return Ok(TaskStatus::Completed(TaskOutput::default()));
        }
        if p != PowerState::PoweredOff || raw == "unknown" {
            if p == PowerState::PoweredOn {
                self.post_vm(&name, "deallocate").await?;
            }
            return Ok(TaskStatus::Running);
        }
        let disk_path = self.arm.path(DISK, &new_disk, api::DISK);
        match self.arm.get_opt(&disk_path, "disk").await? {
            None => {
                let creation = if b.get("from_image").and_then(Value::as_bool) == Some(true) {
                    json!({"createOption": "FromImage", "galleryImageReference": {"id": s("snap")}})
                } else {
                    json!({"createOption": "Copy", "sourceResourceId": s("snap")})
                };
                let mut props = json!({ "creationData": creation });
                if let Some(os) = model::os_type(&vm) {
                    props["osType"] = json!(os);
                }
                let body = json!({"location": self.cfg().location, "tags": {model::TAG_VM: name, model::TAG_CREATED: "true"},
                                  "sku": {"name": "StandardSSD_LRS"}, "properties": props});
                self.arm.call(Method::PUT, &disk_path, Some(&body), "disk").await?;
                Ok(TaskStatus::Running)
            }
            Some(d) if model::provisioning(&d) == "Succeeded" => {
                // OSDisk requires `createOption` (found by oav): the VM's own value, unchanged.
                let create = vm
                    .pointer("/properties/storageProfile/osDisk/createOption")
                    .and_then(Value::as_str)
                    .unwrap_or("Attach");
                let patch = json!({"properties": {"storageProfile": {"osDisk": {
                    "name": new_disk, "createOption": create, "managedDisk": {"id": new_id}}}}});
                self.arm.call(Method::PATCH, &self.vm_path(&name), Some(&patch), &format!("guest [{name}]")).await?;
                Ok(TaskStatus::Running)
            }
            Some(d) if model::provisioning(&d) == "Failed" => Ok(failed(
                AzError::OperationFailed {
                    status: "Failed".into(),
                    code: "DiskCreationFailed".into(),
                    message: String::new(),
                },
                &format!("Revert of guest [{name}] failed"),
            )),
            Some(_) => Ok(TaskStatus::Running),
        }
    }

    // ---- delete ---------------------------------------------------------------------

    async fn step_delete(&self, b: &Value) -> Result<TaskStatus, AzError> {
        let name = b.get("vm").and_then(Value::as_str).unwrap_or_default().to_string();
        if let Some(vm) = self.vm(&name, false).await? {
            if let Some(l) = b.get("lro").and_then(lro_of) {
                if let OpState::Failed(e) = self.arm.op_state(&l).await? {
                    return Ok(failed(e, &format!("Failed to delete guest [{name}]")));
                }
            }
            if model::provisioning(&vm) != "Deleting" {
                self.arm.call(Method::DELETE, &self.vm_path(&name), None, "guest").await?;
            }
            return Ok(TaskStatus::Running);
        }
        let mut pending = false;
        // Image versions before their definition (ARM refuses a definition with versions).
        for (list, version) in [
            ("nics", api::NIC),
            ("disks", api::DISK),
            ("snapshots", api::DISK),
            ("versions", api::GALLERY),
            ("images", api::GALLERY),
        ] {
            if list == "images" && pending {
                break;
            }
            for id in b.get(list).and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
                if !model::valid_resource_id(id) {
                    continue;
                }
                if let Some(r) = self.arm.get_opt(&Self::by_id(id, version), "resource").await? {
                    if model::created_for(&r, &name) {
                        pending = true;
                        if model::provisioning(&r) != "Deleting" {
                            self.delete_res(id, version).await?;
                        }
                    }
                }
            }
        }
        Ok(if pending { TaskStatus::Running } else { TaskStatus::Completed(TaskOutput::default()) })
    }
}

#[async_trait::async_trait]
impl Driver for Azure {
    fn display_name(&self) -> &str {
        "Azure"
    }

    fn capabilities(&self) -> Capabilities {
        Config::capabilities()
    }

    async fn probe(&self) -> Result<String> {
        let n = self.list_vms().await?.0.len();
        Ok(format!("Azure resource group {} ({n} VMs)", self.cfg().resource_group))
    }

    async fn list_guests(&self) -> Result<Vec<GuestSummary>> {
        let (vms, templates) = self.list_vms().await?;
        Ok(vms
            .iter()
            .filter_map(|vm| {
                let name = vm.get("name").and_then(Value::as_str)?.to_ascii_lowercase();
                model::summary(vm, templates.contains(&name))
            })
            .collect())
    }

    async fn get_guest(&self, id: &GuestId) -> Result<Guest> {
        self.read_guest(&model::vm_name(id)?).await
    }

    async fn power(&self, id: &GuestId, action: PowerAction) -> Result<TaskId> {
        let name = model::vm_name(id)?;
        let verb = match action {
            PowerAction::Start => "start",
            PowerAction::Stop => self.stop_action(false),
            PowerAction::Shutdown => self.stop_action(true),
            PowerAction::Reset | PowerAction::Reboot => "restart",
            PowerAction::Suspend | PowerAction::Resume => return Err(Error::unsupported("suspend/resume")),
        };
        let lro = self.post_vm(&name, verb).await?;
        Ok(Self::op_task("power", &name, lro))
    }

    async fn delete_guest(&self, id: &GuestId) -> Result<TaskId> {
        let name = model::vm_name(id)?;
        let Some(vm) = self.vm(&name, false).await? else { return Ok(done("delete")) };
        let disks: Vec<String> = model::os_disk_id(&vm).into_iter().collect();
        let nics = model::nic_ids(&vm);
        let snaps: Vec<String> = self
            .arm
            .list(&format!("{}/providers/{SNAP}?api-version={}", self.cfg().group_path(), api::DISK), "snapshots")
            .await?
            .iter()
            .filter(|s| model::created_for(s, &name))
            .filter_map(|s| s.get("id").and_then(Value::as_str).map(str::to_string))
            .collect();
        let (mut versions, mut images) = (Vec::new(), Vec::new());
        if let Some(img) = self.owned_image(&name).await? {
            versions = self
                .owned_versions(&name)
                .await?
                .iter()
                .filter_map(|v| v.get("id").and_then(Value::as_str).map(str::to_string))
                .collect();
            images.extend(img.get("id").and_then(Value::as_str).map(str::to_string));
        }
        let a = match self.arm.call(Method::DELETE, &self.vm_path(&name), None, &format!("guest [{name}]")).await {
            Ok(a) => a,
            Err(e) if e.is_not_found() => return Ok(done("delete")),
            Err(e) => return Err(e.into()),
        };
        Ok(TaskToken::new(
            "delete",
            json!({"vm": name, "lro": lro_json(&a.lro), "disks": disks, "nics": nics, "snapshots": snaps,
                   "versions": versions, "images": images}),
        )
        .encode())
    }

    async fn set_template(&self, id: &GuestId, is_template: bool) -> Result<TaskId> {
        let name = model::vm_name(id)?;
        let vm = self.vm_required(&name, false).await?;
        let token = TaskToken::new("template", json!({"vm": name, "on": is_template, "os_type": model::os_type(&vm)}));
        match self.step_template(&token.body).await? {
            TaskStatus::Completed(_) => Ok(done("convert")),
            TaskStatus::Failed(e) => Err(e),
            TaskStatus::Running => Ok(token.encode()),
        }
    }

    async fn clone_guest(&self, spec: &CloneSpec) -> Result<CloneStarted> {
        if !model::valid_vm_name(&spec.name) {
            return Err(Error::invalid("clone name must be an Azure VM name (1-64 letters, digits, '_', '.', '-')"));
        }
        let source = model::vm_name(&spec.source)?;
        if let Some(existing) = self.vm(&spec.name, false).await? {
            let ours = model::tag(&existing, model::TAG_SOURCE).is_some_and(|s| s.eq_ignore_ascii_case(&source))
                && model::tag(&existing, model::TAG_CREATED) == Some("true")
                && model::tag(&existing, model::TAG_KEY).is_none();
            if !ours {
                return Err(Error::already_exists(format!("a VM named '{}' already exists", spec.name)));
            }
        }
        let src_vm = self.vm_required(&source, false).await?;
        let mut from_image = false;
        let src = match &spec.snapshot {
            Some(snap) if !snap.is_empty() => match self.owned_version(&source, snap).await? {
                Some(v) if model::provisioning(&v) == "Succeeded" => {
                    from_image = true;
                    v.get("id").and_then(Value::as_str).map(str::to_string).unwrap_or_default()
                }
                _ => self
                    .owned_snapshot(&source, snap)
                    .await?
                    .and_then(|s| s.get("id").and_then(Value::as_str).map(str::to_string))
                    .ok_or_else(|| Error::not_found(format!("snapshot '{snap}' of guest [{source}]")))?,
            },
            _ => model::os_disk_id(&src_vm)
                .ok_or_else(|| Error::unsupported("cloning a VM without a managed OS disk"))?,
        };
        let subnet = self.subnet_of(&src_vm).await?;
        let size = src_vm
            .pointer("/properties/hardwareProfile/vmSize")
            .and_then(Value::as_str)
            .unwrap_or(&self.cfg().vm_size)
            .to_string();
        self.start_clone(
            json!({"vm": spec.name, "src": src, "from_image": from_image, "os_type": model::os_type(&src_vm),
                                "subnets": [subnet], "size": size, "start": spec.start, "source": source}),
        )
        .await
    }

    async fn create_guest(&self, spec: &CreateSpec) -> Result<CloneStarted> {
        let CreateSource::Template { id, .. } = &spec.source else {
            return Err(Error::unsupported("ISO installs on Azure (create from a template VM)"));
        };
        if !model::valid_vm_name(&spec.name) {
            return Err(Error::invalid("the VM name must be an Azure VM name (1-64 letters, digits, '_', '.', '-')"));
        }
        if let Some(existing) = self.vm(&spec.name, false).await? {
            if model::tag(&existing, model::TAG_KEY) != Some(spec.key.as_str()) {
                return Err(Error::already_exists(format!("a VM named '{}' exists and is not ours", spec.name)));
            }
        }
        if let Some(image) = model::gallery_image_of_version(id.as_str()) {
            return self.create_from_gallery(spec, id.as_str(), &image).await;
        }
        let source = model::vm_name(id)?;
        let tpl = self.vm_required(&source, false).await?;
        let src =
            model::os_disk_id(&tpl).ok_or_else(|| Error::unsupported("a template VM without a managed OS disk"))?;
        let default_subnet = self.subnet_of(&tpl).await?;
        let subnets = Self::nic_subnets(spec, &default_subnet)?;
        self.start_clone(json!({"vm": spec.name, "src": src, "os_type": model::os_type(&tpl), "subnets": subnets,
                                "size": self.size_for(spec), "start": true, "source": source, "key": spec.key,
                                "disk_gb": spec.disk_size_gb}))
            .await
    }

    async fn list_snapshots(&self, id: &GuestId) -> Result<Vec<Snapshot>> {
        let name = model::vm_name(id)?;
        self.vm_required(&name, false).await?;
        let all = self
            .arm
            .list(&format!("{}/providers/{SNAP}?api-version={}", self.cfg().group_path(), api::DISK), "snapshots")
            .await?;
        let mut out: Vec<(String, Snapshot)> = all
            .iter()
            .filter(|s| model::created_for(s, &name) && model::provisioning(s) == "Succeeded")
            .filter_map(|s| {
                let n = model::tag(s, model::TAG_SNAPSHOT)?.to_string();
                let t = s.pointer("/properties/timeCreated").and_then(Value::as_str).unwrap_or_default().to_string();
                Some((
                    t,
                    Snapshot { name: n, description: None, created_unix: None, parent: None, includes_memory: false },
                ))
            })
            .collect();
        if self.owned_image(&name).await?.is_some() {
            for v in self.owned_versions(&name).await? {
                if model::provisioning(&v) != "Succeeded" {
                    continue;
                }
                let Some(n) = model::tag(&v, model::TAG_SNAPSHOT) else { continue };
                let t = v
                    .pointer("/properties/publishingProfile/publishedDate")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let snap = Snapshot {
                    name: n.to_string(),
                    description: None,
                    created_unix: None,
                    parent: None,
                    includes_memory: false,
                };
                out.push((t, snap));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out.into_iter().map(|(_, s)| s).collect())
    }

    async fn snapshot_exists(&self, id: &GuestId, name: &str) -> Result<bool> {
        let vm = model::vm_name(id)?;
        if self.owned_version(&vm, name).await?.is_some_and(|v| model::provisioning(&v) == "Succeeded") {
            return Ok(true);
        }
        Ok(self.owned_snapshot(&vm, name).await?.is_some_and(|s| model::provisioning(&s) == "Succeeded"))
    }

    async fn create_snapshot(&self, id: &GuestId, spec: &SnapshotSpec) -> Result<TaskId> {
        let name = model::vm_name(id)?;
        if spec.include_memory {
            return Err(Error::unsupported("memory snapshots"));
        }
        if spec.name.is_empty() || spec.name.len() > 200 || spec.name.chars().any(char::is_control) {
            return Err(Error::invalid("snapshot name must be 1-200 printable characters"));
        }
        let vm = self.vm_required(&name, false).await?;
        let disk =
            model::os_disk_id(&vm).ok_or_else(|| Error::unsupported("snapshots of a VM without a managed OS disk"))?;
        if let Some(img) = self.owned_image(&name).await? {
            if model::is_template_image(&img, &name) {
                // A template version: a gallery image version of the OS disk.
                let next = self
                    .owned_versions(&name)
                    .await?
                    .iter()
                    .filter_map(|v| v.get("name").and_then(Value::as_str).and_then(model::version_number))
                    .max()
                    .unwrap_or(0)
                    + 1;
                let token = TaskToken::new(
                    "version",
                    json!({"vm": name, "name": spec.name, "ver": model::version_name(next), "disk": disk, "op": nonce()}),
                );
                if let TaskStatus::Failed(e) = self.step_version(&token.body).await? {
                    return Err(e);
                }
                return Ok(token.encode());
            }
        }
        let token = TaskToken::new(
            "snapshot",
            json!({"vm": name, "name": spec.name, "res": model::snapshot_resource(&name, &spec.name), "disk": disk, "op": nonce()}),
        );
        if let TaskStatus::Failed(e) = self.step_snapshot(&token.body).await? {
            return Err(e);
        }
        Ok(token.encode())
    }

    async fn revert_snapshot(&self, id: &GuestId, snap: &str) -> Result<TaskId> {
        let name = model::vm_name(id)?;
        let version = self.owned_version(&name, snap).await?.filter(|v| model::provisioning(v) == "Succeeded");
        let from_image = version.is_some();
        let s = match version {
            Some(v) => v,
            None => self
                .owned_snapshot(&name, snap)
                .await?
                .filter(|s| model::provisioning(s) == "Succeeded")
                .ok_or_else(|| Error::not_found(format!("snapshot '{snap}' of guest [{name}]")))?,
        };
        let vm = self.vm_required(&name, true).await?;
        let snap_id = s.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
        let n = nonce();
        let short: String = n.chars().rev().take(8).collect();
        let token = TaskToken::new(
            "revert",
            json!({"vm": name, "snap": snap_id, "from_image": from_image, "old_disk": model::os_disk_id(&vm),
                   "new_disk": format!("{name}-osdisk-{short}"), "was_on": model::power(&vm).0.is_on()}),
        );
        if let TaskStatus::Failed(e) = self.step_revert(&token.body).await? {
            return Err(e);
        }
        Ok(token.encode())
    }

    async fn delete_snapshot(&self, id: &GuestId, snap: &str) -> Result<TaskId> {
        let name = model::vm_name(id)?;
        let (s, version) = match self.owned_version(&name, snap).await? {
            Some(v) => (v, api::GALLERY),
            None => match self.owned_snapshot(&name, snap).await? {
                Some(s) => (s, api::DISK),
                None => return Ok(done("snapshot_delete")),
            },
        };
        let Some(path) = s.get("id").and_then(Value::as_str).filter(|id| model::valid_resource_id(id)) else {
            return Err(Error::backend("the snapshot has no usable id"));
        };
        let path = format!("{path}?api-version={version}");
        match self.arm.call(Method::DELETE, &path, None, "snapshot").await {
            Ok(_) => Ok(TaskToken::new("gone", json!({"path": path, "what": format!("snapshot '{snap}'")})).encode()),
            Err(e) if e.is_not_found() => Ok(done("snapshot_delete")),
            Err(e) => Err(e.into()),
        }
    }

    async fn advance_task(&self, token: &TaskToken) -> Result<TaskStatus> {
        let b = &token.body;
        let r = match token.kind.as_str() {
            "power" | "op" => {
                let l = b.get("lro").and_then(lro_of).ok_or_else(|| token.unknown())?;
                match self.arm.op_state(&l).await {
                    Ok(OpState::Succeeded) => Ok(TaskStatus::Completed(TaskOutput::default())),
                    Ok(OpState::Running) => Ok(TaskStatus::Running),
                    Ok(OpState::Failed(e)) => Ok(failed(e, "Azure operation failed")),
                    Err(e) if e.is_not_found() => Ok(TaskStatus::Completed(TaskOutput::default())),
                    Err(e) => Err(e),
                }
            }
            "clone" => self.step_clone(b).await,
            "template" => self.step_template(b).await,
            "version" => self.step_version(b).await,
            "snapshot" => self.step_snapshot(b).await,
            "revert" => self.step_revert(b).await,
            "delete" => self.step_delete(b).await,
            "gone" => {
                let path = b.get("path").and_then(Value::as_str).ok_or_else(|| token.unknown())?;
                let plain = path.split('?').next().unwrap_or_default();
                // ARM ids do not keep one casing (`resourcegroups`): compare case-insensitively.
                let ours = path.to_ascii_lowercase().starts_with(&self.cfg().group_path().to_ascii_lowercase());
                if !ours || !model::valid_resource_id(plain) {
                    return Err(token.unknown());
                }
                Ok(match self.arm.get_opt(path, "resource").await? {
                    None => TaskStatus::Completed(TaskOutput::default()),
                    Some(_) => TaskStatus::Running,
                })
            }
            _ => return Err(token.unknown()),
        };
        Ok(r?)
    }
}
