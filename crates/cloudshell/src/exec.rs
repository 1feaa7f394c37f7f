//! `polyvisor cloudshell exec <Command>`: one shim call. Reads `{protocol, command,
//! context, request, cancel_file}` on stdin (spec §9.3), answers `{result, effects}` on
//! stdout (§9.4). Failures of one action are `success:false` results (exit 0); a call that
//! cannot be answered at all (bad stdin, an unknown command, a failed power call) prints
//! its message on stderr and exits 1, which the shim raises as the command's error.

use crate::model::{
    driver_response, lenient_bool, port, vlan_ids, ActionResult, AppSecurityGroups, Attrs, ConnectSubnet, DeployApp,
    DeployedApp, DriverRequest, Head, KeyValue, PrepareCloudInfra, PrepareSubnet, VlanAction, VmDetailsData,
    VmDetailsRequest, VmNetwork,
};
use crate::{PATH_ISO, PATH_TEMPLATE};
use polyvisor_core::netops::{parse_cidr, NetworkingType, SecurityRule, SubnetSpec, VlanAttach};
use polyvisor_core::task::wait;
use polyvisor_core::{
    Console, CreateSource, CreateSpec, Driver, DriverFactory, Error, ExposeSecret, Guest, GuestId, OpenOptions,
    PowerAction, PowerState, Result, Settings, TaskId, TaskStatus,
};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How long a Deploy waits for the driver's create task.
pub const DEPLOY_BUDGET: Duration = Duration::from_secs(30 * 60);
/// How long a power or delete call waits.
pub const POWER_BUDGET: Duration = Duration::from_secs(10 * 60);
/// How long `remote_refresh_ip` waits for an address.
pub const IP_BUDGET: Duration = Duration::from_secs(10 * 60);

/// What the shim sends.
#[derive(Debug)]
pub struct Call {
    /// Driver method name.
    pub command: String,
    /// Context objects as JSON.
    pub context: Value,
    /// The request: an object/array, or the raw string the server passed (parsed here).
    pub request: Value,
    /// File whose existence means "cancelled".
    pub cancel_file: Option<PathBuf>,
}

impl Call {
    /// Parses the stdin document.
    pub fn parse(text: &str) -> Result<Call> {
        let v: Value = serde_json::from_str(text).map_err(|e| Error::invalid(format!("stdin is not JSON: {e}")))?;
        if v.get("protocol").and_then(Value::as_u64) != Some(1) {
            return Err(Error::invalid("stdin: unsupported protocol (expected 1)"));
        }
        let command = v.get("command").and_then(Value::as_str).unwrap_or_default().to_string();
        let request = match v.get("request").cloned().unwrap_or(Value::Null) {
            Value::String(s) if s.trim().is_empty() => Value::Null,
            Value::String(s) => {
                serde_json::from_str(&s).map_err(|e| Error::invalid(format!("malformed request JSON: {e}")))?
            }
            other => other,
        };
        Ok(Call {
            command,
            context: v.get("context").cloned().unwrap_or(Value::Null),
            request,
            cancel_file: v.get("cancel_file").and_then(Value::as_str).filter(|s| !s.is_empty()).map(PathBuf::from),
        })
    }

    fn cancelled(&self) -> bool {
        self.cancel_file.as_ref().is_some_and(|p| p.exists())
    }

    fn provider(&self) -> Attrs {
        Attrs::from_object(self.context.pointer("/resource/attributes").unwrap_or(&Value::Null))
    }

    fn reservation_id(&self) -> String {
        let r = self.context.pointer("/reservation/reservation_id");
        let r = r.or_else(|| self.context.pointer("/remote_reservation/reservation_id"));
        r.and_then(Value::as_str).unwrap_or_default().to_string()
    }

    /// The deployed app of a remote command (`remote_endpoints[0]`) and its full name.
    fn remote_app(&self) -> Result<(String, DeployedApp)> {
        let ep = self
            .context
            .pointer("/remote_endpoints/0")
            .ok_or_else(|| Error::invalid("the command context has no remote endpoint (the deployed app)"))?;
        let fullname = ep.get("fullname").or_else(|| ep.get("name")).and_then(Value::as_str).unwrap_or_default();
        let raw = ep.pointer("/app_context/deployed_app_json").cloned().unwrap_or(Value::Null);
        let raw = match raw {
            Value::String(s) => serde_json::from_str(&s).unwrap_or(Value::Null),
            other => other,
        };
        let app: DeployedApp =
            serde_json::from_value(raw).map_err(|e| Error::invalid(format!("deployed_app_json: {e}")))?;
        Ok((fullname.to_string(), app))
    }
}

/// The answer.
#[derive(Debug, Default)]
pub struct Reply {
    /// The string the driver method returns (`None` for methods returning `None`).
    pub result: Option<String>,
    /// Effects the shim applies through the CloudShell API.
    pub effects: Vec<Value>,
}

impl Reply {
    fn result(s: String) -> Reply {
        Reply { result: Some(s), effects: Vec::new() }
    }

    /// The stdout document.
    pub fn to_json(&self) -> Value {
        json!({ "result": self.result, "effects": self.effects })
    }
}

/// Driver settings from the provider attributes: `Driver Settings` (JSON object),
/// `Driver Secrets` (JSON object, decrypted by the shim) and `Driver`.
pub fn settings_from(provider: &Attrs) -> Result<Settings> {
    let obj = |name: &str| -> Result<Settings> {
        match provider.non_empty(name) {
            None => Ok(Settings::new()),
            Some(text) => {
                let v: Value = serde_json::from_str(text)
                    .map_err(|_| Error::invalid(format!("the '{name}' attribute must be a JSON object")))?;
                if !v.is_object() {
                    return Err(Error::invalid(format!("the '{name}' attribute must be a JSON object")));
                }
                Settings::from_json(&v)
            }
        }
    };
    let mut s = obj("Driver Settings")?.merged_with(&obj("Driver Secrets")?);
    if let Some(d) = provider.non_empty("Driver") {
        s.set("driver", d);
    }
    Ok(s)
}

/// The ownership key of a deployed app: sandbox id + app name.
pub fn app_key(reservation: &str, app: &str) -> String {
    let k = format!("cloudshell:{reservation}:{app}");
    k.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// FNV-1a: a short stable suffix for names (std's hasher is not stable across releases).
fn fnv(s: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// CloudShell's resource name (`<app>__<6 hex>`, cp-core's character set, ≤ 100) and the
/// backend name (`cs-<app>-<6 hex>`, letters/digits/`-`, ≤ 60) for a key.
pub fn names_for(app: &str, key: &str) -> (String, String) {
    let suffix = format!("{:06x}", fnv(key) & 0xff_ffff);
    let keep: String =
        app.chars().filter(|c| c.is_alphanumeric() || " .-|_[]".contains(*c)).take(100 - 8).collect::<String>();
    let vm_name = format!("{}__{suffix}", keep.trim());
    let mut slug: String = app
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect::<String>()
        .split('-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    slug.truncate(48);
    let slug = slug.trim_end_matches('-');
    let backend = if slug.is_empty() { format!("cs-{suffix}") } else { format!("cs-{slug}-{suffix}") };
    (vm_name, backend)
}

/// The self-describing `vmUuid`: `<driver>:<guest id, percent-encoded>:<key>`.
pub fn vm_uuid(driver: &str, id: &GuestId, key: &str) -> String {
    format!("{driver}:{}:{key}", urlencoding::encode(id.as_str()))
}

/// Splits a `vmUuid` into (driver, guest id, key).
pub fn parse_vm_uuid(uid: &str) -> Option<(String, GuestId, String)> {
    let mut it = uid.splitn(3, ':');
    let (d, id, key) = (it.next()?, it.next()?, it.next()?);
    let id = urlencoding::decode(id).ok()?;
    (!d.is_empty() && !id.is_empty() && !key.is_empty()).then(|| (d.to_string(), GuestId::new(id), key.to_string()))
}

/// One `exec` call against the driver the provider attributes select.
pub struct Exec {
    call: Call,
    driver: Arc<dyn Driver>,
    driver_name: String,
}

impl Exec {
    /// Opens the driver for the call.
    pub async fn open(call: Call, factory: &dyn DriverFactory) -> Result<Exec> {
        let settings = settings_from(&call.provider())?;
        let driver_name = settings.str("driver").unwrap_or_else(|| "sim".into());
        let driver = factory.open(&settings, &OpenOptions::default()).await?;
        Ok(Exec { call, driver, driver_name })
    }

    /// Releases the driver's backend session at the end of the call (one command per
    /// process; bounded, best effort: the reply is decided already).
    pub async fn close(&self) {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.driver.close()).await;
    }

    /// Runs the command.
    pub async fn run(&self) -> Result<Reply> {
        match self.call.command.as_str() {
            "Deploy" => self.deploy().await.map(Reply::result),
            "PowerOn" => self.power(PowerAction::Start).await,
            "PowerOff" => self.power(PowerAction::Stop).await,
            "PowerCycle" => Ok(Reply::default()),
            "DeleteInstance" => self.delete().await,
            "remote_refresh_ip" => self.refresh_ip().await,
            "GetVmDetails" => self.vm_details().await.map(Reply::result),
            "ApplyConnectivityChanges" => self.connectivity().await.map(Reply::result),
            "PrepareSandboxInfra" => self.prepare_infra().await.map(Reply::result),
            "CleanupSandboxInfra" => self.cleanup_infra().await.map(Reply::result),
            "SetAppSecurityGroups" => self.security_groups().await.map(Reply::result),
            "get_inventory" => self.inventory().await,
            "console" => self.console().await.map(Reply::result),
            other => Err(Error::unsupported(format!("the command [{}]", other.chars().take(60).collect::<String>()))),
        }
    }

    fn actions(&self) -> Result<Vec<(Head, Value)>> {
        let req: DriverRequest = serde_json::from_value(self.call.request.clone())
            .map_err(|e| Error::invalid(format!("the request is not a driverRequest: {e}")))?;
        Ok(req
            .driver_request
            .actions
            .into_iter()
            .map(|a| {
                let head: Head =
                    serde_json::from_value(a.clone()).unwrap_or(Head { action_id: String::new(), kind: String::new() });
                (head, a)
            })
            .collect())
    }

    /// Waits for a task, checking the cancel file between polls.
    async fn finish(&self, task: &TaskId, budget: Duration) -> Result<Option<GuestId>> {
        let poll = Duration::from_millis(u64::from(self.driver.capabilities().task_poll_secs.clamp(1, 10)) * 250);
        let deadline = tokio::time::Instant::now() + budget;
        loop {
            if self.call.cancelled() {
                return Err(Error::conflict("Operation cancelled"));
            }
            match self.driver.task_status(task).await? {
                TaskStatus::Completed(out) => return Ok(out.new_guest),
                TaskStatus::Failed(e) => return Err(e),
                TaskStatus::Running => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::timeout(format!("the task did not finish within {} s", budget.as_secs())));
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// The guest a deployed app names, proved ours by its key (never by name).
    async fn owned(&self, app: &DeployedApp) -> Result<Option<GuestId>> {
        let uid = app.vmdetails.as_ref().map(|v| v.uid.as_str()).unwrap_or_default();
        self.owned_uid(uid).await
    }

    async fn owned_uid(&self, uid: &str) -> Result<Option<GuestId>> {
        let (driver, hint, key) =
            parse_vm_uuid(uid).ok_or_else(|| Error::invalid("the app's vmUuid was not made by polyvisor"))?;
        if driver != self.driver_name {
            return Err(Error::invalid(format!(
                "the app was deployed by driver [{driver}], this cloud provider uses [{}]",
                self.driver_name
            )));
        }
        Ok(self.driver.find_owned(&key, Some(&hint)).await?.map(|g| g.id))
    }

    // ------------------------------------------------------------------ Deploy

    async fn deploy(&self) -> Result<String> {
        let actions = self.actions()?;
        let mut results = Vec::new();
        let Some((head, raw)) = actions.iter().find(|(h, _)| h.kind == "deployApp") else {
            return Err(Error::invalid("Deploy: the request has no deployApp action"));
        };
        let (deploy, created) = match self.deploy_app(&head.action_id, raw).await {
            Ok((r, id)) => (r, Some(id)),
            Err(e) => (ActionResult::failed("DeployApp", &head.action_id, e.message()), None),
        };
        results.push(deploy);
        let mut connects: Vec<&(Head, Value)> = actions.iter().filter(|(h, _)| h.kind == "connectSubnet").collect();
        connects.sort_by_key(|(_, a)| {
            serde_json::from_value::<ConnectSubnet>(a.clone()).map(|c| c.action_params.vnic_index()).unwrap_or(0)
        });
        for (h, a) in connects {
            let r = match &created {
                None => Err(Error::conflict("the VM was not deployed")),
                Some(id) => self.connect_subnet(id, a).await,
            };
            results.push(match r {
                Ok(mac) => ActionResult::ok("ConnectToSubnet", &h.action_id, "").with("interface", mac),
                Err(e) => ActionResult::failed("ConnectToSubnet", &h.action_id, e.message()),
            });
        }
        for (h, _) in actions.iter().filter(|(h, _)| !matches!(h.kind.as_str(), "deployApp" | "connectSubnet")) {
            results.push(ActionResult::failed(&h.kind, &h.action_id, "unexpected action in a Deploy request"));
        }
        if let Some(id) = created {
            // The details after the subnets were connected.
            if let (Some(first), Ok(g)) = (results.first_mut(), self.driver.get_guest(&id).await) {
                first.extra.insert("vmDetailsData".into(), serde_json::to_value(details(&g, "")).unwrap_or_default());
                first.extra.insert("deployedAppAddress".into(), primary_ip(&g).into());
            }
        }
        Ok(driver_response(&results))
    }

    async fn connect_subnet(&self, id: &GuestId, raw: &Value) -> Result<String> {
        let c: ConnectSubnet =
            serde_json::from_value(raw.clone()).map_err(|e| Error::invalid(format!("connectSubnet: {e}")))?;
        if c.action_params.subnet_id.trim().is_empty() {
            return Err(Error::invalid("connectSubnet: subnetId is empty"));
        }
        Ok(self.driver.connect_subnet(id, c.action_params.subnet_id.trim()).await?.mac)
    }

    async fn deploy_app(&self, action_id: &str, raw: &Value) -> Result<(ActionResult, GuestId)> {
        let d: DeployApp =
            serde_json::from_value(raw.clone()).map_err(|e| Error::invalid(format!("deployApp: {e}")))?;
        let p = d.action_params;
        let path = p.deployment.deployment_path.trim();
        let attrs = &p.deployment.attributes;
        let is = |name: &str| path == name || path.ends_with(&format!(".{name}"));
        if p.app_name.trim().is_empty() {
            return Err(Error::invalid("deployApp: appName is empty"));
        }
        let caps = self.driver.capabilities();
        if !caps.create {
            return Err(Error::unsupported(format!("creating VMs with the {} driver", self.driver.display_name())));
        }
        let num = |name: &str| -> Result<Option<u64>> {
            match attrs.non_empty(name) {
                None => Ok(None),
                Some(v) => v.parse::<u64>().map(Some).map_err(|_| Error::invalid(format!("'{name}' must be a number"))),
            }
        };
        let source = if is(PATH_TEMPLATE) {
            if attrs.non_empty("Template Version").is_some() && !caps.clone_from_snapshot {
                return Err(Error::unsupported("'Template Version' with this driver"));
            }
            if attrs.non_empty("Template Version").is_some() {
                return Err(Error::unsupported("'Template Version' (clone from a template version) in this release"));
            }
            let t = attrs.non_empty("Template").ok_or_else(|| Error::invalid("the 'Template' attribute is empty"))?;
            let linked = attrs.get("Linked Clone").map(|v| lenient_bool(&json!(v)).unwrap_or(false)).unwrap_or(false);
            let template = self.find_template(t).await?;
            CreateSource::Template { id: template, full: !linked }
        } else if is(PATH_ISO) {
            let iso = attrs.non_empty("ISO").ok_or_else(|| Error::invalid("the 'ISO' attribute is empty"))?;
            CreateSource::Iso { path: iso.to_string(), os_type: attrs.non_empty("OS Type").map(str::to_string) }
        } else {
            return Err(Error::invalid(format!(
                "unknown deployment path [{}]",
                path.chars().take(120).collect::<String>()
            )));
        };
        if self.call.cancelled() {
            return Err(Error::conflict("Operation cancelled"));
        }
        let key = app_key(&self.call.reservation_id(), p.app_name.trim());
        let (vm_name, backend_name) = names_for(p.app_name.trim(), &key);
        let spec = CreateSpec {
            name: backend_name,
            key: key.clone(),
            source,
            cpus: num("CPUs")?.map(|v| v.min(u64::from(u32::MAX)) as u32),
            memory_mb: num("Memory MiB")?,
            disk_size_gb: num("Disk GiB")?,
            storage: None,
            nics: Vec::new(),
        };
        let started = self.driver.create_guest(&spec).await?;
        let id = match self.finish(&started.task, DEPLOY_BUDGET).await {
            Ok(out) => out.or(started.new_guest.clone()),
            Err(e) => {
                // Roll back what this call created (found by key, never by name).
                if let Ok(Some(g)) = self.driver.find_owned(&key, started.new_guest.as_ref()).await {
                    if let Ok(t) = self.driver.delete_guest(&g.id).await {
                        let _ = wait(&*self.driver, &t, POWER_BUDGET, Duration::from_millis(500)).await;
                    }
                }
                return Err(e);
            }
        };
        let id = match id {
            Some(id) => id,
            None => self
                .driver
                .find_owned(&key, None)
                .await?
                .map(|g| g.id)
                .ok_or_else(|| Error::backend("the driver reported no guest for the deploy"))?,
        };
        let uid = vm_uuid(&self.driver_name, &id, &key);
        let r = ActionResult::ok("DeployApp", action_id, "")
            .with("vmUuid", uid)
            .with("vmName", vm_name)
            .with("deployedAppAddress", "")
            .with("deployedAppAttributes", json!([]))
            .with(
                "deployedAppAdditionalData",
                json!({ "polyvisor.driver": self.driver_name, "polyvisor.guestId": id.as_str(), "polyvisor.key": key }),
            );
        Ok((r, id))
    }

    async fn find_template(&self, wanted: &str) -> Result<GuestId> {
        let list = self.driver.list_guests().await?;
        let mut it = list.iter().filter(|g| g.is_template);
        if let Some(g) = list.iter().find(|g| g.is_template && g.id.as_str() == wanted) {
            return Ok(g.id.clone());
        }
        let named: Vec<_> = it.by_ref().filter(|g| g.name == wanted).collect();
        match named.as_slice() {
            [one] => Ok(one.id.clone()),
            [] => Err(Error::not_found(format!("template [{}]", wanted.chars().take(80).collect::<String>()))),
            _ => Err(Error::conflict("several templates have that name; use the template id")),
        }
    }

    // ------------------------------------------------------------------ remote commands

    async fn power(&self, action: PowerAction) -> Result<Reply> {
        let (_, app) = self.call.remote_app()?;
        let Some(id) = self.owned(&app).await? else {
            if action == PowerAction::Stop {
                return Ok(Reply::default());
            }
            return Err(Error::not_found("the app's VM (it no longer exists)"));
        };
        let t = self.driver.power(&id, action).await?;
        self.finish(&t, POWER_BUDGET).await?;
        Ok(Reply::default())
    }

    async fn delete(&self) -> Result<Reply> {
        let (_, app) = self.call.remote_app()?;
        if let Some(id) = self.owned(&app).await? {
            let t = self.driver.delete_guest(&id).await?;
            self.finish(&t, POWER_BUDGET).await?;
        }
        Ok(Reply::default())
    }

    async fn refresh_ip(&self) -> Result<Reply> {
        let (fullname, app) = self.call.remote_app()?;
        let id = self.owned(&app).await?.ok_or_else(|| Error::not_found("the app's VM"))?;
        let deadline = tokio::time::Instant::now() + IP_BUDGET;
        loop {
            if self.call.cancelled() {
                return Err(Error::conflict("Operation cancelled"));
            }
            let g = self.driver.get_guest(&id).await?;
            let ip = primary_ip(&g);
            if !ip.is_empty() && !ip.starts_with("169.254.") {
                let effects = vec![json!({ "op": "UpdateResourceAddress", "resource": fullname, "address": ip })];
                return Ok(Reply { result: None, effects });
            }
            if g.power == PowerState::PoweredOff {
                return Err(Error::conflict("the VM is powered off; it has no IP address"));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::timeout(format!("no IP address within {} s", IP_BUDGET.as_secs())));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn vm_details(&self) -> Result<String> {
        let req: VmDetailsRequest = serde_json::from_value(self.call.request.clone())
            .map_err(|e| Error::invalid(format!("GetVmDetails: the request must be {{\"items\": [...]}}: {e}")))?;
        let mut out = Vec::new();
        for item in req.items {
            let app: DeployedApp = serde_json::from_value(item.deployed_app_json).unwrap_or_default();
            let name = app.name.clone();
            let r = async {
                let id = self.owned(&app).await?.ok_or_else(|| Error::not_found("the app's VM"))?;
                self.driver.get_guest(&id).await
            }
            .await;
            out.push(match r {
                Ok(g) => details(&g, &name),
                Err(e) => VmDetailsData {
                    app_name: name,
                    error_message: e.message().to_string(),
                    vm_instance_data: Vec::new(),
                    vm_network_data: Vec::new(),
                },
            });
        }
        Ok(serde_json::to_string(&out).unwrap_or_else(|_| "[]".into()))
    }

    async fn console(&self) -> Result<String> {
        let (_, app) = self.call.remote_app()?;
        let id = self.owned(&app).await?.ok_or_else(|| Error::not_found("the app's VM"))?;
        let console = self.driver.console(&id).await?;
        let rdp_file = console.rdp_file();
        Ok(match console {
            Console::Vnc { host, port, password, .. } => {
                let pw = password.map(|p| p.expose_secret().to_string()).unwrap_or_default();
                json!({ "kind": "vnc", "host": host, "port": port, "password": pw }).to_string()
            }
            Console::Url { url } => json!({ "kind": "url", "url": url.expose_secret() }).to_string(),
            // Hyper-V's VMConnect: the `.rdp` file a Remote Desktop client opens as it is.
            Console::Rdp { host, port, pcb } => {
                json!({ "kind": "rdp", "host": host, "port": port, "pcb": pcb, "rdpFile": rdp_file }).to_string()
            }
        })
    }

    async fn inventory(&self) -> Result<Reply> {
        let p = self.call.provider();
        let caps = self.driver.capabilities();
        let wanted = match p.non_empty("Networking type") {
            Some("L3") => Some(NetworkingType::L3),
            Some("L2") => Some(NetworkingType::L2),
            None => None,
            Some(_) => return Err(Error::invalid("'Networking type' must be L2 or L3")),
        };
        if let Some(t) = wanted {
            if !caps.networking.supports(t) {
                return Err(Error::unsupported(format!(
                    "{t} networking with the {} driver",
                    self.driver.display_name()
                )));
            }
        }
        let probe = self.driver.probe().await?;
        let effects = match self.call.reservation_id() {
            r if r.is_empty() => Vec::new(),
            r => vec![json!({ "op": "WriteMessageToReservationOutput", "reservation": r, "message": probe })],
        };
        Ok(Reply { result: None, effects })
    }

    // ------------------------------------------------------------------ L2

    async fn connectivity(&self) -> Result<String> {
        let mut results = Vec::new();
        for (h, raw) in self.actions()? {
            let r = match h.kind.as_str() {
                "setVlan" => self.set_vlan(&raw).await.map(|(mac, vlan)| {
                    ActionResult::ok("setVlan", &h.action_id, format!("Setting VLAN {vlan} successfully completed"))
                        .with("updatedInterface", mac)
                }),
                // RemoveVlanResult has no interface field (cp-core's model refuses one).
                "removeVlan" => self
                    .remove_vlan(&raw)
                    .await
                    .map(|_| ActionResult::ok("removeVlan", &h.action_id, "Removing VLAN successfully completed")),
                other => Err(Error::unsupported(format!("action [{other}] in ApplyConnectivityChanges"))),
            };
            results.push(r.unwrap_or_else(|e| ActionResult::failed(&h.kind, &h.action_id, e.message())));
        }
        Ok(driver_response(&results))
    }

    async fn vlan_target(&self, a: &VlanAction) -> Result<GuestId> {
        let uid =
            a.custom_action_attributes.non_empty("VM_UUID").ok_or_else(|| Error::invalid("VM_UUID is missing"))?;
        self.owned_uid(uid).await?.ok_or_else(|| Error::not_found("the app's VM"))
    }

    async fn set_vlan(&self, raw: &Value) -> Result<(String, u32)> {
        let a: VlanAction = serde_json::from_value(raw.clone()).map_err(|e| Error::invalid(format!("setVlan: {e}")))?;
        let ids = vlan_ids(&a.connection_params.vlan_id).map_err(Error::invalid)?;
        let [vlan] = ids.as_slice() else {
            return Err(Error::unsupported("trunks (several VLAN ids on one NIC)"));
        };
        let nic_index = match a.custom_action_attributes.non_empty("Vnic Name") {
            None => None,
            Some(v) => Some(v.parse::<usize>().map_err(|_| Error::invalid("'Vnic Name' must be a NIC index"))?),
        };
        let id = self.vlan_target(&a).await?;
        let nic = self.driver.attach_vlan(&id, &VlanAttach { vlan: *vlan, nic_index, network: None }).await?;
        Ok((nic.mac, *vlan))
    }

    async fn remove_vlan(&self, raw: &Value) -> Result<String> {
        let a: VlanAction =
            serde_json::from_value(raw.clone()).map_err(|e| Error::invalid(format!("removeVlan: {e}")))?;
        let mac = a
            .connector_attributes
            .non_empty("Interface")
            .ok_or_else(|| Error::invalid("removeVlan: the connector has no Interface"))?
            .to_string();
        let id = self.vlan_target(&a).await?;
        self.driver.detach_vlan(&id, &mac).await?;
        Ok(mac)
    }

    // ------------------------------------------------------------------ L3

    async fn prepare_infra(&self) -> Result<String> {
        let owner = self.call.reservation_id();
        let mut results = Vec::new();
        for (h, raw) in self.actions()? {
            let id = h.action_id.clone();
            let r = match h.kind.as_str() {
                "prepareCloudInfra" => serde_json::from_value::<PrepareCloudInfra>(raw)
                    .map_err(|e| Error::invalid(format!("prepareCloudInfra: {e}")))
                    .and_then(|p| match parse_cidr(&p.action_params.cidr) {
                        Some(_) => Ok(ActionResult::ok("PrepareNetwork", &id, "")),
                        None => Err(Error::invalid("prepareCloudInfra: invalid CIDR")),
                    }),
                // polyvisor creates no key pairs: guests keep their template's credentials.
                "createKeys" => Ok(ActionResult::ok(
                    "CreateKeys",
                    &id,
                    "no sandbox key pair: guests use their template's credentials",
                )
                .with("accessKey", "")),
                "prepareSubnet" => self.prepare_subnet(&owner, &id, raw).await,
                other => Err(Error::unsupported(format!("action [{other}] in PrepareSandboxInfra"))),
            };
            let kind = match h.kind.as_str() {
                "prepareCloudInfra" => "PrepareNetwork",
                "createKeys" => "CreateKeys",
                "prepareSubnet" => "PrepareSubnet",
                k => k,
            };
            results.push(r.unwrap_or_else(|e| ActionResult::failed(kind, &id, e.message())));
        }
        Ok(driver_response(&results))
    }

    async fn prepare_subnet(&self, owner: &str, action_id: &str, raw: Value) -> Result<ActionResult> {
        if owner.is_empty() {
            return Err(Error::invalid("prepareSubnet: the context has no reservation id"));
        }
        let p: PrepareSubnet =
            serde_json::from_value(raw).map_err(|e| Error::invalid(format!("prepareSubnet: {e}")))?;
        let p = p.action_params;
        let alias = p.alias.filter(|a| !a.trim().is_empty()).unwrap_or_else(|| p.cidr.clone());
        let spec = SubnetSpec { owner: owner.to_string(), alias, cidr: p.cidr, public: p.is_public };
        let s = self.driver.ensure_subnet(&spec).await?;
        Ok(ActionResult::ok("PrepareSubnet", action_id, "").with("subnetId", s.id))
    }

    async fn cleanup_infra(&self) -> Result<String> {
        let owner = self.call.reservation_id();
        let mut results = Vec::new();
        for (h, _) in self.actions()? {
            let r = match h.kind.as_str() {
                "cleanupNetwork" if owner.is_empty() => Err(Error::invalid("the context has no reservation id")),
                "cleanupNetwork" => self
                    .driver
                    .delete_subnets(&owner)
                    .await
                    .map(|n| ActionResult::ok("CleanupNetwork", &h.action_id, format!("{n} subnet(s) removed"))),
                other => Err(Error::unsupported(format!("action [{other}] in CleanupSandboxInfra"))),
            };
            results.push(r.unwrap_or_else(|e| ActionResult::failed("CleanupNetwork", &h.action_id, e.message())));
        }
        Ok(driver_response(&results))
    }

    async fn security_groups(&self) -> Result<String> {
        let req: Vec<AppSecurityGroups> = serde_json::from_value(self.call.request.clone())
            .map_err(|e| Error::invalid(format!("SetAppSecurityGroups: the request must be a list: {e}")))?;
        let mut out = Vec::new();
        for app in req {
            let r = async {
                let id = self.owned(&app.deployed_app).await?.ok_or_else(|| Error::not_found("the app's VM"))?;
                for cfg in &app.security_groups_configurations {
                    let mut rules = Vec::new();
                    for r in &cfg.rules {
                        let rule = SecurityRule {
                            protocol: r.protocol.as_deref().unwrap_or("any").trim().to_ascii_lowercase(),
                            from_port: port(&r.from_port).map_err(Error::invalid)?,
                            to_port: port(&r.to_port).map_err(Error::invalid)?,
                            source: r.source.clone().filter(|s| !s.trim().is_empty()),
                        };
                        rule.validate()?;
                        rules.push(rule);
                    }
                    self.driver.set_security_rules(&id, cfg.subnet_id.trim(), &rules).await?;
                }
                Ok::<(), Error>(())
            }
            .await;
            out.push(json!({
                "appName": app.deployed_app.name,
                "success": r.is_ok(),
                "error": r.err().map(|e| e.message().to_string()).unwrap_or_default(),
            }));
        }
        Ok(Value::Array(out).to_string())
    }
}

fn primary_ip(g: &Guest) -> String {
    g.ipv4_addresses().into_iter().next().unwrap_or_default()
}

/// `VmDetailsData` from the driver's view of the guest.
pub fn details(g: &Guest, app_name: &str) -> VmDetailsData {
    let mut inst = vec![KeyValue::shown("Backend id", g.id.as_str()), KeyValue::shown("Power", g.power.as_str())];
    if let Some(n) = &g.node {
        inst.push(KeyValue::shown("Node", n.clone()));
    }
    if let Some(c) = g.cpus {
        inst.push(KeyValue::shown("CPU", format!("{c} vCPU")));
    }
    if let Some(m) = g.memory_mb {
        inst.push(KeyValue::shown("Memory", format!("{m} MiB")));
    }
    if let Some(os) = &g.os {
        inst.push(KeyValue::shown("OS", os.clone()));
    }
    let nets = g
        .nics
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let ip = polyvisor_core::net::order_ipv4(n.ipv4.clone()).into_iter().next().unwrap_or_default();
            let mut data = vec![KeyValue::shown("MAC Address", n.mac.clone())];
            if !ip.is_empty() {
                data.push(KeyValue::shown("IP", ip.clone()));
            }
            if let Some(v) = n.vlan {
                data.push(KeyValue::shown("VLAN", v.to_string()));
            }
            VmNetwork {
                interface_id: n.mac.clone(),
                network_id: n.network.clone().unwrap_or_default(),
                is_primary: i == 0,
                is_predefined: !n.network.as_deref().unwrap_or_default().starts_with("subnet:"),
                network_data: data,
                private_ip_address: ip,
                public_ip_address: String::new(),
            }
        })
        .collect();
    VmDetailsData {
        app_name: app_name.into(),
        error_message: String::new(),
        vm_instance_data: inst,
        vm_network_data: nets,
    }
}
