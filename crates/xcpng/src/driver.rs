//! `impl Driver for XcpNg`: every operation over XAPI. Guest ids are VM uuids; nothing is
//! kept locally: the ownership key, the template flag (flag mode) and clone tracking live in
//! the VM's `other_config`, task progress in self-describing tokens that carry the XAPI task
//! reference (task references are database references, valid in any session).

use crate::client::{count_scope, err, rec, Rpc};
use crate::config::{Config, TemplateMode};
use crate::error::XapiError;
use polyvisor_core::net::{is_reportable_ipv4, is_reportable_ipv6, normalize_mac};
use polyvisor_core::task::{completed, now_unix, TaskToken};
use polyvisor_core::{
    Capabilities, CloneMode, CloneSpec, CloneStarted, Console, CreateSource, CreateSpec, Driver, Error, Guest, GuestId,
    GuestSummary, Nic, PowerAction, PowerState, Result, SecretString, Snapshot, SnapshotSpec, TaskId, TaskOutput,
    TaskStatus,
};
use serde_json::{json, Map, Value};

/// `other_config` key holding the platform key (CloudStack internal name).
pub const KEY: &str = "polyvisor_key";
/// `other_config` key marking a flag-mode template.
pub const TEMPLATE: &str = "polyvisor_template";
/// `other_config` key naming the source a clone was made from (retry adoption).
pub const CLONE_OF: &str = "polyvisor_clone_of";

const NULL: &str = "OpaqueRef:NULL";

/// The name a guest being created carries until its key is on it: the key travels on the
/// backend object from the first request, so a retry after a lost connection finds it.
fn create_marker(key: &str) -> String {
    format!("polyvisor-create:{key}")
}

/// Whether `v` is the guest created for `key` (keyed, or still under its creation marker).
fn created_for(v: &Value, key: &str) -> bool {
    !rec::b(v, "is_a_snapshot")
        && (rec::map(v, "other_config", KEY) == Some(key) || rec::s(v, "name_label") == create_marker(key))
}

/// The XCP-ng / XenServer driver.
pub struct XcpNg {
    rpc: Rpc,
    /// XAPI tasks this process handed out inside task tokens (or started for one, like the
    /// hard shutdown after a graceful one) and has not yet seen finished: task reference →
    /// what it is for. XAPI destroys a session's tasks with the session, so
    /// [`Driver::close`] logs out only when this is empty (a later process may poll them).
    pending: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

async fn counted<T>(op: &'static str, fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    let (out, n) = count_scope(fut).await;
    match &out {
        Ok(_) => tracing::debug!(target: "polyvisor_xcpng::calls", op, calls = n, "done"),
        Err(e) => tracing::debug!(target: "polyvisor_xcpng::calls", op, calls = n, error = %e, "failed"),
    }
    out
}

fn done(op: &str) -> TaskId {
    completed(op, &TaskOutput::default())
}

/// The state of an XAPI task.
enum XTask {
    Pending,
    Success(String),
    Failed(XapiError),
    Gone,
}

/// XAPI `power_state` (+ in-flight operations) → the common state.
pub fn map_power(state: &str, ops: &[String]) -> PowerState {
    let has = |o: &str| ops.iter().any(|x| x == o);
    if has("start") || has("resume") || has("unpause") || has("clean_reboot") || has("hard_reboot") {
        return PowerState::PoweringOn;
    }
    if has("clean_shutdown") || has("hard_shutdown") {
        return PowerState::PoweringOff;
    }
    if has("suspend") {
        return PowerState::Suspending;
    }
    match state {
        "Running" => PowerState::PoweredOn,
        "Paused" | "Suspended" => PowerState::Suspended,
        _ => PowerState::PoweredOff,
    }
}

fn current_ops(r: &Value) -> Vec<String> {
    r.get("current_operations")
        .and_then(Value::as_object)
        .map(|m| m.values().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// A guest id must be a VM uuid (8-4-4-4-12 hex).
fn uuid_of(id: &GuestId) -> Result<&str> {
    let s = id.as_str();
    let ok = s.len() == 36
        && s.char_indices().all(|(i, c)| if [8, 13, 18, 23].contains(&i) { c == '-' } else { c.is_ascii_hexdigit() });
    if ok {
        Ok(s)
    } else {
        let shown: String = s.chars().filter(|c| !c.is_control()).take(40).collect();
        Err(Error::invalid(format!("guest id '{shown}' is not an XAPI VM uuid")))
    }
}

fn valid_name(name: &str, what: &str) -> Result<()> {
    if name.trim().is_empty() || name.chars().count() > 255 || name.chars().any(char::is_control) {
        return Err(Error::invalid(format!("{what} must be 1-255 printable characters")));
    }
    Ok(())
}

/// The reference inside a task result (`<value>OpaqueRef:…</value>`).
/// What a hard shutdown started by a shutdown token is tracked as.
fn hard_shutdown_of(vm: &str) -> String {
    format!("hard_shutdown of VM {vm}")
}

fn result_ref(result: &str) -> Option<String> {
    let start = result.find("OpaqueRef:")?;
    let r: String = result[start..].chars().take_while(|c| *c != '<' && !c.is_whitespace()).collect();
    rec::is_ref(&r).then_some(r)
}

impl XcpNg {
    /// A driver for this config (no I/O).
    pub fn new(cfg: Config) -> Result<XcpNg> {
        Ok(XcpNg { rpc: Rpc::new(cfg)?, pending: Default::default() })
    }

    /// XAPI tasks handed out in tokens and not yet seen finished by this process.
    pub fn pending_tasks(&self) -> usize {
        self.pending.lock().map(|p| p.len()).unwrap_or(0)
    }

    fn track(&self, task: &str, what: String) {
        if let Ok(mut p) = self.pending.lock() {
            p.insert(task.to_string(), what);
        }
    }

    fn settled(&self, task: &str) {
        if let Ok(mut p) = self.pending.lock() {
            p.remove(task);
        }
    }

    /// XAPI calls made so far (all operations, all tasks).
    pub fn round_trips(&self) -> u64 {
        self.rpc.round_trips()
    }

    /// `host:port` currently talked to (the pool master after a redirect).
    pub fn current_host(&self) -> String {
        self.rpc.current_host()
    }

    /// Ends the XAPI session. Tasks belong to their session on XAPI: call this only when no
    /// task issued by this driver will be polled any more.
    pub async fn logout(&self) {
        self.rpc.logout().await
    }

    fn cfg(&self) -> &Config {
        self.rpc.config()
    }

    fn mode(&self) -> TemplateMode {
        self.cfg().template_mode
    }

    async fn call(&self, method: &str, args: Vec<Value>) -> Result<Value> {
        self.rpc.call(method, args).await.map_err(Error::from)
    }

    async fn vm_ref(&self, id: &GuestId) -> Result<String> {
        let uuid = uuid_of(id)?;
        match self.rpc.call("VM.get_by_uuid", vec![json!(uuid)]).await {
            Ok(Value::String(r)) => Ok(r),
            Ok(_) => Err(XapiError::BadAnswer("VM.get_by_uuid answered without a reference".into()).into()),
            Err(XapiError::NoSuchObject { .. }) => Err(Error::not_found(format!("guest [{id}]"))),
            Err(e) => Err(e.into()),
        }
    }

    async fn record(&self, class: &str, r: &str) -> Result<Value> {
        self.call(&format!("{class}.get_record"), vec![json!(r)]).await
    }

    async fn all_vms(&self) -> Result<Map<String, Value>> {
        match self.call("VM.get_all_records", vec![]).await? {
            Value::Object(m) => Ok(m),
            _ => Err(XapiError::BadAnswer("VM.get_all_records did not answer a map".into()).into()),
        }
    }

    fn is_template(&self, r: &Value) -> bool {
        rec::b(r, "is_a_template") || rec::map(r, "other_config", TEMPLATE) == Some("true")
    }

    /// Guests polyvisor shows: no snapshots, no control domain, no stock templates.
    fn listable(r: &Value) -> bool {
        !rec::b(r, "is_a_snapshot")
            && !rec::b(r, "is_control_domain")
            && !rec::b(r, "is_default_template")
            && rec::map(r, "other_config", "default_template") != Some("true")
    }

    fn summary(&self, r: &Value) -> GuestSummary {
        let uuid = rec::s(r, "uuid").to_string();
        let name = match rec::s(r, "name_label") {
            "" => format!("VM-{uuid}"),
            n => n.to_string(),
        };
        GuestSummary {
            id: GuestId::new(uuid),
            name,
            power: map_power(rec::s(r, "power_state"), &current_ops(r)),
            is_template: self.is_template(r),
            key: rec::map(r, "other_config", KEY).map(str::to_string),
            node: None,
        }
    }

    async fn set_other_config(&self, vm: &str, r: &Value, key: &str, value: Option<&str>) -> Result<()> {
        let cur = rec::map(r, "other_config", key);
        if cur == value {
            return Ok(());
        }
        if cur.is_some() {
            self.call("VM.remove_from_other_config", vec![json!(vm), json!(key)]).await?;
        }
        if let Some(v) = value {
            self.call("VM.add_to_other_config", vec![json!(vm), json!(key), json!(v)]).await?;
        }
        Ok(())
    }

    /// Starts `Async.VM.<msg>` and returns the task reference.
    async fn async_vm(&self, msg: &str, args: Vec<Value>) -> Result<String> {
        match self.call(&format!("Async.VM.{msg}"), args).await? {
            Value::String(t) if rec::is_ref(&t) => Ok(t),
            _ => Err(XapiError::BadAnswer(format!("Async.VM.{msg} answered without a task")).into()),
        }
    }

    async fn task(&self, task: &str) -> Result<XTask> {
        let r = match self.rpc.call("task.get_record", vec![json!(task)]).await {
            Ok(r) => r,
            Err(XapiError::NoSuchObject { .. }) => {
                self.settled(task);
                return Ok(XTask::Gone);
            }
            Err(e) => return Err(e.into()),
        };
        if rec::s(&r, "status") != "pending" {
            self.settled(task);
        }
        Ok(match rec::s(&r, "status") {
            "success" => XTask::Success(rec::s(&r, "result").to_string()),
            "failure" => {
                let mut info = rec::refs(&r, "error_info");
                let code = if info.is_empty() { "INTERNAL_ERROR".to_string() } else { info.remove(0) };
                XTask::Failed(XapiError::from_codes(&code, info))
            }
            "cancelled" | "cancelling" => XTask::Failed(XapiError::Cancelled),
            _ => XTask::Pending,
        })
    }

    async fn forget_task(&self, task: &str) {
        self.settled(task);
        let _ = self.rpc.call("task.destroy", vec![json!(task)]).await;
    }

    fn power_token(&self, op: &str, task: &str, vm: &str, want: &str) -> TaskId {
        self.track(task, format!("{op} of VM {vm}"));
        TaskToken::new("xtask", json!({"op": op, "task": task, "vm": vm, "want": want})).encode()
    }

    /// Destroys a VM (or snapshot) record and the disks only it uses (never CD images or
    /// disks another VM shares).
    async fn destroy_with_disks(&self, vm: &str, r: &Value) -> Result<()> {
        for vbd in rec::refs(r, "VBDs") {
            let b = match self.rpc.call("VBD.get_record", vec![json!(vbd)]).await {
                Ok(b) => b,
                Err(XapiError::NoSuchObject { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            let vdi = rec::s(&b, "VDI").to_string();
            if rec::s(&b, "type") == "CD" || !rec::is_ref(&vdi) {
                continue;
            }
            let d = match self.rpc.call("VDI.get_record", vec![json!(vdi)]).await {
                Ok(d) => d,
                Err(XapiError::NoSuchObject { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            let shared = rec::refs(&d, "VBDs").iter().any(|x| *x != vbd) || rec::b(&d, "sharable");
            if shared {
                continue;
            }
            match self.rpc.call("VDI.destroy", vec![json!(vdi)]).await {
                Ok(_) | Err(XapiError::NoSuchObject { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        match self.rpc.call("VM.destroy", vec![json!(vm)]).await {
            Ok(_) | Err(XapiError::NoSuchObject { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Snapshots of `vm` from a full listing, oldest first.
    fn snapshots_of<'a>(all: &'a Map<String, Value>, vm: &str) -> Vec<(&'a String, &'a Value)> {
        let mut out: Vec<_> =
            all.iter().filter(|(_, r)| rec::b(r, "is_a_snapshot") && rec::s(r, "snapshot_of") == vm).collect();
        out.sort_by(|a, b| rec::s(a.1, "snapshot_time").cmp(rec::s(b.1, "snapshot_time")));
        out
    }

    async fn snapshot_list(&self, id: &GuestId) -> Result<(String, Map<String, Value>)> {
        let vm = self.vm_ref(id).await?;
        Ok((vm, self.all_vms().await?))
    }

    /// Clears what a clone inherited (key, template flag), makes it a VM and records its
    /// source; idempotent.
    async fn finish_clone(&self, vm: &str, src_uuid: &str) -> Result<Value> {
        let mut r = self.record("VM", vm).await?;
        self.set_other_config(vm, &r, KEY, None).await?;
        self.set_other_config(vm, &r, TEMPLATE, None).await?;
        self.set_other_config(vm, &r, CLONE_OF, Some(src_uuid)).await?;
        if rec::b(&r, "is_a_template") {
            // Templates from a stock/install template get their disks created by provision.
            if rec::map(&r, "other_config", "disks").is_some() {
                self.call("VM.provision", vec![json!(vm)]).await?;
            }
            self.call("VM.set_is_a_template", vec![json!(vm), json!(false)]).await?;
            r = self.record("VM", vm).await?;
        }
        Ok(r)
    }

    /// Start a halted VM (once) and report whether it runs (with an IPv4 address when `want_ip`).
    async fn ensure_running(&self, vm: &str, r: &Value, want_ip: bool) -> Result<bool> {
        let ops = current_ops(r);
        match rec::s(r, "power_state") {
            "Running" if !want_ip => Ok(true),
            "Running" => {
                let gm = rec::s(r, "guest_metrics");
                if !rec::is_ref(gm) {
                    return Ok(false);
                }
                let g = self.record("VM_guest_metrics", gm).await?;
                let any = g
                    .get("networks")
                    .and_then(Value::as_object)
                    .is_some_and(|m| m.values().any(|v| v.as_str().is_some_and(is_reportable_ipv4)));
                Ok(any)
            }
            "Halted" if ops.is_empty() => {
                let t = self.async_vm("start", vec![json!(vm), json!(false), json!(false)]).await?;
                tracing::debug!(task = %t, "start issued");
                Ok(false)
            }
            "Suspended" if ops.is_empty() => {
                self.async_vm("resume", vec![json!(vm), json!(false), json!(false)]).await?;
                Ok(false)
            }
            "Paused" if ops.is_empty() => {
                self.async_vm("unpause", vec![json!(vm)]).await?;
                Ok(false)
            }
            _ => Ok(false),
        }
    }

    async fn network_ref(&self, name: Option<&str>, fallback: Option<String>) -> Result<String> {
        let Some(n) = name.map(str::to_string).or_else(|| self.cfg().network.clone()) else {
            return fallback.ok_or_else(|| {
                Error::invalid("no network for the new NIC: set 'network' (an XAPI network name label or uuid)")
            });
        };
        if let Ok(Value::String(r)) = self.rpc.call("network.get_by_uuid", vec![json!(n)]).await {
            return Ok(r);
        }
        let found = self.call("network.get_by_name_label", vec![json!(n)]).await?;
        let list: Vec<String> =
            found.as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_string)).collect();
        match list.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(Error::not_found(format!("XAPI network '{n}'"))),
            _ => Err(Error::invalid(format!("XAPI network name '{n}' is ambiguous; use its uuid"))),
        }
    }

    async fn sr_ref(&self, name: Option<&str>) -> Result<String> {
        let Some(n) = name.map(str::to_string).or_else(|| self.cfg().sr.clone()) else {
            return Ok(NULL.into()); // VM.copy: the source's SRs
        };
        if let Ok(Value::String(r)) = self.rpc.call("SR.get_by_uuid", vec![json!(n)]).await {
            return Ok(r);
        }
        let found = self.call("SR.get_by_name_label", vec![json!(n)]).await?;
        let list: Vec<String> =
            found.as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_string)).collect();
        match list.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(Error::not_found(format!("XAPI SR '{n}'"))),
            _ => Err(Error::invalid(format!("XAPI SR name '{n}' is ambiguous; use its uuid"))),
        }
    }

    /// One idempotent pass over a created guest: key, VM (not template), name, CPUs, memory,
    /// NICs, power on. `Some(uuid)` once it runs.
    async fn finish_create(&self, vm: &str, body: &Value) -> Result<Option<String>> {
        let key = body.get("key").and_then(Value::as_str).unwrap_or_default();
        let name = body.get("name").and_then(Value::as_str).unwrap_or_default();
        let mut r = self.record("VM", vm).await?;
        self.set_other_config(vm, &r, KEY, Some(key)).await?;
        self.set_other_config(vm, &r, TEMPLATE, None).await?;
        if rec::b(&r, "is_a_template") {
            if rec::map(&r, "other_config", "disks").is_some() {
                self.call("VM.provision", vec![json!(vm)]).await?;
            }
            self.call("VM.set_is_a_template", vec![json!(vm), json!(false)]).await?;
        }
        if rec::s(&r, "name_label") != name {
            self.call("VM.set_name_label", vec![json!(vm), json!(name)]).await?;
        }
        if rec::s(&r, "power_state") == "Halted" && current_ops(&r).is_empty() {
            if let Some(c) = body.get("cpus").and_then(Value::as_i64) {
                let (max, at) = (rec::i(&r, "VCPUs_max").unwrap_or(1), rec::i(&r, "VCPUs_at_startup").unwrap_or(1));
                if max != c || at != c {
                    // VCPUs_at_startup <= VCPUs_max at every step.
                    if c >= at {
                        self.call("VM.set_VCPUs_max", vec![json!(vm), json!(c)]).await?;
                        self.call("VM.set_VCPUs_at_startup", vec![json!(vm), json!(c)]).await?;
                    } else {
                        self.call("VM.set_VCPUs_at_startup", vec![json!(vm), json!(c)]).await?;
                        self.call("VM.set_VCPUs_max", vec![json!(vm), json!(c)]).await?;
                    }
                }
            }
            if let Some(mb) = body.get("memory_mb").and_then(Value::as_i64) {
                let b = mb << 20;
                let cur = ["memory_static_max", "memory_dynamic_max", "memory_dynamic_min"].map(|k| rec::i(&r, k));
                if cur.iter().any(|v| *v != Some(b)) {
                    // static_min <= dynamic_min <= dynamic_max <= static_max, set in one call.
                    let smin = rec::i(&r, "memory_static_min").unwrap_or(0).min(b);
                    self.call("VM.set_memory_limits", vec![json!(vm), json!(smin), json!(b), json!(b), json!(b)])
                        .await?;
                }
            }
            self.ensure_nics(vm, &r, body).await?;
            r = self.record("VM", vm).await?;
        }
        if self.ensure_running(vm, &r, false).await? {
            return Ok(Some(rec::s(&r, "uuid").to_string()));
        }
        Ok(None)
    }

    async fn ensure_nics(&self, vm: &str, r: &Value, body: &Value) -> Result<()> {
        let want: Vec<Value> = body.get("nics").and_then(Value::as_array).cloned().unwrap_or_default();
        if want.is_empty() {
            return Ok(());
        }
        let mut have = Vec::new();
        for v in rec::refs(r, "VIFs") {
            have.push((v.clone(), self.record("VIF", &v).await?));
        }
        have.sort_by_key(|(_, x)| rec::s(x, "device").parse::<u32>().unwrap_or(u32::MAX));
        let fallback = have.first().map(|(_, x)| rec::s(x, "network").to_string());
        let mut nets = Vec::new();
        for n in &want {
            nets.push(self.network_ref(n.get("network").and_then(Value::as_str), fallback.clone()).await?);
        }
        let same = have.len() == want.len()
            && have.iter().zip(&want).zip(&nets).enumerate().all(|(i, (((_, h), w), net))| {
                rec::s(h, "device") == i.to_string()
                    && rec::s(h, "network") == net
                    && w.get("mac")
                        .and_then(Value::as_str)
                        .is_none_or(|m| normalize_mac(rec::s(h, "MAC")).as_deref() == Some(m))
            });
        if same {
            return Ok(());
        }
        for (v, _) in &have {
            self.call("VIF.destroy", vec![json!(v)]).await?;
        }
        for (i, (w, net)) in want.iter().zip(&nets).enumerate() {
            let mac = w.get("mac").and_then(Value::as_str).unwrap_or("").to_ascii_lowercase();
            let args = json!({
                "device": i.to_string(), "network": net, "VM": vm, "MAC": mac, "MTU": 1500,
                "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {},
                "locking_mode": "network_default", "ipv4_allowed": [], "ipv6_allowed": [],
            });
            self.call("VIF.create", vec![args]).await?;
        }
        Ok(())
    }

    async fn advance_xtask(&self, token: &TaskToken) -> Result<TaskStatus> {
        let task = token.req_str("task")?;
        let op = token.str("op").unwrap_or("task").to_string();
        match self.task(task).await? {
            XTask::Pending => Ok(TaskStatus::Running),
            XTask::Success(_) => {
                self.forget_task(task).await;
                Ok(TaskStatus::Completed(TaskOutput::default()))
            }
            XTask::Failed(e) => {
                self.forget_task(task).await;
                Ok(TaskStatus::Failed(err(e, format!("XAPI {op} failed"))))
            }
            XTask::Gone => {
                // Destroyed after completion by another poller: the VM's state decides.
                let want = token.str("want").unwrap_or("");
                if want.is_empty() {
                    return Ok(TaskStatus::Completed(TaskOutput::default()));
                }
                let vm = self.vm_ref(&GuestId::new(token.req_str("vm")?)).await?;
                let st = self.call("VM.get_power_state", vec![json!(vm)]).await?;
                if st.as_str() == Some(want) {
                    Ok(TaskStatus::Completed(TaskOutput::default()))
                } else {
                    Ok(TaskStatus::Failed(Error::backend(format!("XAPI {op} task disappeared before it finished"))))
                }
            }
        }
    }

    async fn advance_shutdown(&self, token: &TaskToken) -> Result<TaskStatus> {
        let vm = self.vm_ref(&GuestId::new(token.req_str("vm")?)).await?;
        let r = self.record("VM", &vm).await?;
        if rec::s(&r, "power_state") == "Halted" {
            if let Some(t) = token.str("task") {
                self.forget_task(t).await;
            }
            let hard = hard_shutdown_of(token.req_str("vm")?);
            if let Ok(mut p) = self.pending.lock() {
                p.retain(|_, what| *what != hard);
            }
            return Ok(TaskStatus::Completed(TaskOutput::default()));
        }
        let deadline = token.body.get("deadline").and_then(Value::as_u64).unwrap_or(0);
        let clean_failed = match token.str("task") {
            Some(t) => matches!(self.task(t).await?, XTask::Failed(_) | XTask::Gone),
            None => true,
        };
        let ops = current_ops(&r);
        if (clean_failed || now_unix() > deadline) && !ops.iter().any(|o| o == "hard_shutdown") {
            tracing::debug!("graceful shutdown did not finish; hard shutdown");
            let hard = self.async_vm("hard_shutdown", vec![json!(vm)]).await?;
            self.track(&hard, hard_shutdown_of(token.req_str("vm")?));
        }
        Ok(TaskStatus::Running)
    }

    async fn advance_clone(&self, token: &TaskToken) -> Result<TaskStatus> {
        let task = token.req_str("task")?;
        let src = token.req_str("src")?;
        let start = token.body.get("start").and_then(Value::as_bool).unwrap_or(false);
        let new_ref = match self.task(task).await? {
            XTask::Pending => return Ok(TaskStatus::Running),
            XTask::Failed(e) => {
                self.forget_task(task).await;
                return Ok(TaskStatus::Failed(err(e, "XAPI clone failed")));
            }
            XTask::Success(res) => {
                result_ref(&res).ok_or_else(|| Error::backend("XAPI clone task finished without a VM"))?
            }
            XTask::Gone => {
                // Finished and destroyed by another poller: the clone carries its source.
                let name = token.req_str("name")?;
                let all = self.all_vms().await?;
                match all.iter().find(|(_, r)| {
                    rec::s(r, "name_label") == name && rec::map(r, "other_config", CLONE_OF) == Some(src)
                }) {
                    Some((r, _)) => r.clone(),
                    None => return Ok(TaskStatus::Failed(Error::backend("XAPI clone task disappeared"))),
                }
            }
        };
        let r = self.finish_clone(&new_ref, src).await?;
        self.forget_task(task).await;
        let uuid = rec::s(&r, "uuid").to_string();
        if start && !self.ensure_running(&new_ref, &r, true).await? {
            return Ok(TaskStatus::Running);
        }
        Ok(TaskStatus::Completed(TaskOutput { new_guest: Some(GuestId::new(uuid)) }))
    }

    async fn advance_create(&self, token: &TaskToken) -> Result<TaskStatus> {
        let key = token.req_str("key")?;
        if let Some(task) = token.str("task") {
            match self.task(task).await? {
                XTask::Pending => return Ok(TaskStatus::Running),
                XTask::Failed(e) => {
                    self.forget_task(task).await;
                    return Ok(TaskStatus::Failed(err(e, "XAPI create failed")));
                }
                XTask::Success(res) => {
                    let new_ref =
                        result_ref(&res).ok_or_else(|| Error::backend("XAPI create task finished without a VM"))?;
                    // A concurrent retry may have keyed another clone first: keep that one.
                    let all = self.all_vms().await?;
                    let other = all.iter().any(|(r, v)| *r != new_ref && created_for(v, key));
                    if other {
                        if let Some(v) = all.get(&new_ref) {
                            self.destroy_with_disks(&new_ref, v).await?;
                        }
                    } else {
                        let r = self.record("VM", &new_ref).await?;
                        self.set_other_config(&new_ref, &r, KEY, Some(key)).await?;
                    }
                    self.forget_task(task).await;
                }
                XTask::Gone => {}
            }
        }
        let all = self.all_vms().await?;
        let Some((vm, _)) = all.iter().find(|(_, v)| created_for(v, key)) else {
            return Ok(TaskStatus::Failed(Error::backend("the guest being created disappeared")));
        };
        match self.finish_create(vm, &token.body).await? {
            Some(uuid) => Ok(TaskStatus::Completed(TaskOutput { new_guest: Some(GuestId::new(uuid)) })),
            None => Ok(TaskStatus::Running),
        }
    }

    async fn read_guest(&self, id: &GuestId) -> Result<Guest> {
        let vm = self.vm_ref(id).await?;
        let r = self.record("VM", &vm).await?;
        let s = self.summary(&r);
        let gm = rec::s(&r, "guest_metrics").to_string();
        let metrics = if rec::is_ref(&gm) && rec::s(&r, "power_state") == "Running" {
            match self.rpc.call("VM_guest_metrics.get_record", vec![json!(gm)]).await {
                Ok(g) => Some(g),
                Err(XapiError::NoSuchObject { .. }) => None,
                Err(e) => return Err(e.into()),
            }
        } else {
            None
        };
        let mut vifs = Vec::new();
        for v in rec::refs(&r, "VIFs") {
            match self.rpc.call("VIF.get_record", vec![json!(v)]).await {
                Ok(x) => vifs.push(x),
                Err(XapiError::NoSuchObject { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        vifs.sort_by_key(|x| rec::s(x, "device").parse::<u32>().unwrap_or(u32::MAX));
        let nets = metrics.as_ref().and_then(|g| g.get("networks")).and_then(Value::as_object);
        let nics = vifs
            .iter()
            .map(|x| {
                let dev = rec::s(x, "device");
                let (mut v4, mut v6) = (Vec::new(), Vec::new());
                for (k, ip) in nets.into_iter().flatten() {
                    let Some(ip) = ip.as_str() else { continue };
                    let mut parts = k.split('/');
                    if parts.next() != Some(dev) {
                        continue;
                    }
                    match parts.next() {
                        Some("ip") | Some("ipv4") if is_reportable_ipv4(ip) && !v4.contains(&ip.to_string()) => {
                            v4.push(ip.to_string())
                        }
                        Some("ipv6") if is_reportable_ipv6(ip) && !v6.contains(&ip.to_string()) => {
                            v6.push(ip.to_string())
                        }
                        _ => {}
                    }
                }
                Nic {
                    mac: normalize_mac(rec::s(x, "MAC")).unwrap_or_default(),
                    ipv4: polyvisor_core::net::order_ipv4(v4),
                    ipv6: v6,
                    network: None,
                    vlan: None,
                }
            })
            .collect();
        let os = metrics
            .as_ref()
            .and_then(|g| g.get("os_version"))
            .and_then(|o| o.get("name"))
            .and_then(Value::as_str)
            .map(str::to_string);
        Ok(Guest {
            id: s.id,
            name: s.name,
            node: None,
            os,
            cpus: rec::i(&r, "VCPUs_at_startup").and_then(|c| u32::try_from(c).ok()),
            memory_mb: rec::i(&r, "memory_static_max").and_then(|m| u64::try_from(m >> 20).ok()),
            nics,
            is_template: s.is_template,
            power: s.power,
            raw_power_state: rec::s(&r, "power_state").to_string(),
            key: s.key,
        })
    }

    async fn start_power(&self, id: &GuestId, action: PowerAction) -> Result<TaskId> {
        let vm = self.vm_ref(id).await?;
        let r = self.record("VM", &vm).await?;
        if self.is_template(&r) {
            return Err(Error::conflict(format!("guest [{id}] is a template; templates cannot change power state")));
        }
        let uuid = id.as_str();
        let ps = rec::s(&r, "power_state");
        let conflict =
            |what: &str| Err(Error::conflict(format!("guest [{id}] is {}: cannot {what}", ps.to_lowercase())));
        let (msg, args, want): (&str, Vec<Value>, &str) = match (action, ps) {
            (PowerAction::Start | PowerAction::Resume, "Running") => return Ok(done("power")),
            (PowerAction::Start, "Halted") => ("start", vec![json!(vm), json!(false), json!(false)], "Running"),
            (PowerAction::Start | PowerAction::Resume, "Paused") => ("unpause", vec![json!(vm)], "Running"),
            (PowerAction::Start | PowerAction::Resume, "Suspended") => {
                ("resume", vec![json!(vm), json!(false), json!(false)], "Running")
            }
            (PowerAction::Start, _) => return conflict("start"),
            (PowerAction::Resume, _) => return conflict("resume"),
            (PowerAction::Stop | PowerAction::Shutdown, "Halted") => return Ok(done("power")),
            (PowerAction::Shutdown, "Running") => {
                let task = self.async_vm("clean_shutdown", vec![json!(vm)]).await?;
                self.track(&task, format!("clean_shutdown of VM {uuid}"));
                let deadline = now_unix() + self.cfg().shutdown_timeout.as_secs();
                return Ok(TaskToken::new("shutdown", json!({"task": task, "vm": uuid, "deadline": deadline})).encode());
            }
            (PowerAction::Stop | PowerAction::Shutdown, _) => ("hard_shutdown", vec![json!(vm)], "Halted"),
            (PowerAction::Reset, "Running" | "Paused") => ("hard_reboot", vec![json!(vm)], "Running"),
            (PowerAction::Reset, _) => return conflict("reset"),
            (PowerAction::Reboot, "Running") => ("clean_reboot", vec![json!(vm)], "Running"),
            (PowerAction::Reboot, _) => return conflict("reboot"),
            (PowerAction::Suspend, "Suspended") => return Ok(done("power")),
            (PowerAction::Suspend, "Running") => ("suspend", vec![json!(vm)], "Suspended"),
            (PowerAction::Suspend, _) => return conflict("suspend"),
        };
        let task = self.async_vm(msg, args).await?;
        Ok(self.power_token(msg, &task, uuid, want))
    }

    async fn start_clone(&self, spec: &CloneSpec) -> Result<CloneStarted> {
        valid_name(&spec.name, "clone name")?;
        let src_uuid = uuid_of(&spec.source)?.to_string();
        let all = self.all_vms().await?;
        let Some((src_ref, src)) = all.iter().find(|(_, r)| rec::s(r, "uuid") == src_uuid) else {
            return Err(Error::not_found(format!("guest [{}]", spec.source)));
        };
        // A retry adopts the earlier clone of this source under this name.
        if let Some((_, c)) = all.iter().find(|(_, r)| {
            rec::s(r, "name_label") == spec.name && rec::map(r, "other_config", CLONE_OF) == Some(src_uuid.as_str())
        }) {
            let id = GuestId::new(rec::s(c, "uuid"));
            return Ok(CloneStarted {
                task: completed("clone", &TaskOutput { new_guest: Some(id.clone()) }),
                new_guest: Some(id),
            });
        }
        let from = match &spec.snapshot {
            Some(snap) => {
                match Self::snapshots_of(&all, src_ref).into_iter().rev().find(|(_, r)| rec::s(r, "name_label") == snap)
                {
                    Some((r, _)) => r.clone(),
                    None => return Err(Error::not_found(format!("snapshot '{snap}' of guest [{}]", spec.source))),
                }
            }
            None => src_ref.clone(),
        };
        if spec.snapshot.is_none() && rec::s(src, "power_state") != "Halted" && !rec::b(src, "is_a_template") {
            return Err(Error::conflict(format!("guest [{}] must be stopped to be cloned", spec.source)));
        }
        let full = match spec.mode {
            CloneMode::Full => true,
            CloneMode::Linked => false,
            CloneMode::Auto => self.cfg().full_by_default,
        };
        let task = if full {
            let sr = self.sr_ref(None).await?;
            self.async_vm("copy", vec![json!(from), json!(spec.name), json!(sr)]).await?
        } else {
            self.async_vm("clone", vec![json!(from), json!(spec.name)]).await?
        };
        self.track(&task, format!("clone of VM {src_uuid}"));
        let body = json!({"task": task, "src": src_uuid, "name": spec.name, "start": spec.start});
        Ok(CloneStarted { task: TaskToken::new("clone", body).encode(), new_guest: None })
    }

    async fn start_create(&self, spec: &CreateSpec) -> Result<CloneStarted> {
        valid_name(&spec.name, "guest name")?;
        if spec.key.trim().is_empty() || spec.key.len() > 255 || spec.key.chars().any(char::is_control) {
            return Err(Error::invalid("the platform key must be 1-255 printable characters"));
        }
        let CreateSource::Template { id: tpl, full } = &spec.source else {
            return Err(Error::unsupported("creating guests from an ISO"));
        };
        let mut nics = Vec::new();
        for n in &spec.nics {
            if n.vlan.is_some() {
                return Err(Error::invalid(
                    "VLAN tags are not supported: XAPI VLANs are networks of their own; name the network instead",
                ));
            }
            if let Some(net) = &n.network {
                valid_name(net, "network")?;
            }
            nics.push(json!({"mac": n.mac.as_deref().and_then(normalize_mac), "network": n.network}));
        }
        let mut body = json!({
            "key": spec.key, "name": spec.name, "cpus": spec.cpus, "memory_mb": spec.memory_mb, "nics": nics,
        });
        let tpl_uuid = uuid_of(tpl)?.to_string();
        let all = self.all_vms().await?;
        if let Some((_, v)) = all.iter().find(|(_, v)| created_for(v, &spec.key)) {
            // A retry: finish what the first request started.
            return Ok(CloneStarted {
                task: TaskToken::new("create", body).encode(),
                new_guest: Some(GuestId::new(rec::s(v, "uuid"))),
            });
        }
        if all.values().any(|v| Self::listable(v) && rec::s(v, "name_label") == spec.name) {
            return Err(Error::already_exists(format!(
                "a guest named '{}' exists and was not created for this key; it is never adopted",
                spec.name
            )));
        }
        let Some((src_ref, _)) = all.iter().find(|(_, r)| rec::s(r, "uuid") == tpl_uuid) else {
            return Err(Error::not_found(format!("template [{tpl}]")));
        };
        let task = if *full || self.cfg().full_by_default {
            let sr = self.sr_ref(spec.storage.as_deref()).await?;
            self.async_vm("copy", vec![json!(src_ref), json!(create_marker(&spec.key)), json!(sr)]).await?
        } else {
            self.async_vm("clone", vec![json!(src_ref), json!(create_marker(&spec.key))]).await?
        };
        self.track(&task, format!("create from template {tpl_uuid}"));
        body["task"] = json!(task);
        Ok(CloneStarted { task: TaskToken::new("create", body).encode(), new_guest: None })
    }

    async fn find_snapshot(&self, id: &GuestId, name: &str) -> Result<Option<(String, Value)>> {
        let (vm, all) = self.snapshot_list(id).await?;
        Ok(Self::snapshots_of(&all, &vm)
            .into_iter()
            .rev()
            .find(|(_, r)| rec::s(r, "name_label") == name)
            .map(|(r, v)| (r.clone(), v.clone())))
    }
}

#[async_trait::async_trait]
impl Driver for XcpNg {
    fn display_name(&self) -> &str {
        "XCP-ng"
    }

    fn capabilities(&self) -> Capabilities {
        self.mode().capabilities()
    }

    async fn probe(&self) -> Result<String> {
        counted("probe", async {
            let pools = self.call("pool.get_all_records", vec![]).await?;
            let master = pools
                .as_object()
                .and_then(|m| m.values().next())
                .map(|p| rec::s(p, "master").to_string())
                .unwrap_or_default();
            let h = self.record("host", &master).await?;
            let brand = rec::map(&h, "software_version", "product_brand").unwrap_or("XAPI");
            let version = rec::map(&h, "software_version", "product_version").unwrap_or("unknown");
            Ok(format!("{brand} {version} at {} (pool master {})", self.rpc.current_host(), rec::s(&h, "name_label")))
        })
        .await
    }

    async fn list_guests(&self) -> Result<Vec<GuestSummary>> {
        counted("list", async {
            let all = self.all_vms().await?;
            Ok(all.values().filter(|r| Self::listable(r)).map(|r| self.summary(r)).collect())
        })
        .await
    }

    async fn get_guest(&self, id: &GuestId) -> Result<Guest> {
        counted("get", self.read_guest(id)).await
    }

    async fn find_by_key(&self, key: &str) -> Result<Option<GuestSummary>> {
        counted("find_by_key", async {
            let all = self.all_vms().await?;
            Ok(all
                .values()
                .filter(|r| Self::listable(r))
                .find(|r| rec::map(r, "other_config", KEY) == Some(key))
                .map(|r| self.summary(r)))
        })
        .await
    }

    /// By the key alone, in one listing call (a hint would cost two calls to check).
    async fn find_owned(&self, key: &str, _hint: Option<&GuestId>) -> Result<Option<GuestSummary>> {
        Ok(self.find_by_key(key).await?.filter(|g| !g.is_template))
    }

    async fn power(&self, id: &GuestId, action: PowerAction) -> Result<TaskId> {
        counted("power", self.start_power(id, action)).await
    }

    async fn delete_guest(&self, id: &GuestId) -> Result<TaskId> {
        counted("delete", async {
            let vm = match self.vm_ref(id).await {
                Ok(v) => v,
                Err(e) if e.is_not_found() => return Ok(done("delete")),
                Err(e) => return Err(e),
            };
            let r = self.record("VM", &vm).await?;
            if rec::b(&r, "is_control_domain") || rec::b(&r, "is_a_snapshot") {
                return Err(Error::conflict(format!("guest [{id}] is not a VM polyvisor can delete")));
            }
            if rec::s(&r, "power_state") != "Halted" {
                match self.rpc.call("VM.hard_shutdown", vec![json!(vm)]).await {
                    Ok(_) | Err(XapiError::BadPowerState { .. }) => {}
                    Err(e) => return Err(err(e, format!("Failed to stop guest [{id}]"))),
                }
            }
            for s in rec::refs(&r, "snapshots") {
                match self.rpc.call("VM.get_record", vec![json!(s)]).await {
                    Ok(sr) => self.destroy_with_disks(&s, &sr).await?,
                    Err(XapiError::NoSuchObject { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            self.destroy_with_disks(&vm, &r).await?;
            Ok(done("delete"))
        })
        .await
    }

    async fn set_template(&self, id: &GuestId, is_template: bool) -> Result<TaskId> {
        counted("set_template", async {
            let vm = self.vm_ref(id).await?;
            let r = self.record("VM", &vm).await?;
            if is_template && rec::s(&r, "power_state") != "Halted" {
                return Err(Error::conflict(format!("guest [{id}] must be stopped to become a template")));
            }
            match self.mode() {
                TemplateMode::Native => {
                    if rec::b(&r, "is_a_template") != is_template {
                        self.call("VM.set_is_a_template", vec![json!(vm), json!(is_template)]).await?;
                    }
                    self.set_other_config(&vm, &r, TEMPLATE, None).await?;
                }
                TemplateMode::Flag => {
                    if rec::b(&r, "is_a_template") && !is_template {
                        self.call("VM.set_is_a_template", vec![json!(vm), json!(false)]).await?;
                    }
                    self.set_other_config(&vm, &r, TEMPLATE, is_template.then_some("true")).await?;
                }
            }
            Ok(done("convert"))
        })
        .await
    }

    async fn clone_guest(&self, spec: &CloneSpec) -> Result<CloneStarted> {
        counted("clone", self.start_clone(spec)).await
    }

    async fn create_guest(&self, spec: &CreateSpec) -> Result<CloneStarted> {
        counted("create", self.start_create(spec)).await
    }

    async fn list_snapshots(&self, id: &GuestId) -> Result<Vec<Snapshot>> {
        counted("snapshots", async {
            let (vm, all) = self.snapshot_list(id).await?;
            Ok(Self::snapshots_of(&all, &vm)
                .into_iter()
                .map(|(_, r)| Snapshot {
                    name: rec::s(r, "name_label").to_string(),
                    description: Some(rec::s(r, "name_description").to_string()).filter(|d| !d.is_empty()),
                    created_unix: None,
                    parent: None,
                    includes_memory: false,
                })
                .collect())
        })
        .await
    }

    async fn snapshot_exists(&self, id: &GuestId, name: &str) -> Result<bool> {
        counted("snapshot_exists", async { Ok(self.find_snapshot(id, name).await?.is_some()) }).await
    }

    async fn create_snapshot(&self, id: &GuestId, spec: &SnapshotSpec) -> Result<TaskId> {
        valid_name(&spec.name, "snapshot name")?;
        counted("snapshot_create", async {
            let (vm, all) = self.snapshot_list(id).await?;
            for (sref, r) in Self::snapshots_of(&all, &vm) {
                if rec::s(r, "name_label") == spec.name {
                    self.destroy_with_disks(sref, r).await?;
                }
            }
            let task = self
                .async_vm("snapshot", vec![json!(vm), json!(spec.name), json!([])])
                .await
                .map_err(|e| e.context(format!("Failed to snapshot guest [{id}]")))?;
            Ok(self.power_token("snapshot", &task, id.as_str(), ""))
        })
        .await
    }

    async fn revert_snapshot(&self, id: &GuestId, name: &str) -> Result<TaskId> {
        counted("snapshot_revert", async {
            let Some((snap, _)) = self.find_snapshot(id, name).await? else {
                return Err(Error::not_found(format!("snapshot '{name}' of guest [{id}]")));
            };
            let task = self.async_vm("revert", vec![json!(snap)]).await?;
            Ok(self.power_token("revert", &task, id.as_str(), ""))
        })
        .await
    }

    async fn delete_snapshot(&self, id: &GuestId, name: &str) -> Result<TaskId> {
        counted("snapshot_delete", async {
            if let Some((snap, r)) = self.find_snapshot(id, name).await? {
                self.destroy_with_disks(&snap, &r).await?;
            }
            Ok(done("snapshot_delete"))
        })
        .await
    }

    async fn advance_task(&self, token: &TaskToken) -> Result<TaskStatus> {
        counted("task", async {
            match token.kind.as_str() {
                "xtask" => self.advance_xtask(token).await,
                "shutdown" => self.advance_shutdown(token).await,
                "clone" => self.advance_clone(token).await,
                "create" => self.advance_create(token).await,
                _ => Err(token.unknown()),
            }
        })
        .await
    }

    /// Logs the XAPI session out, unless a task this process handed out in a token is still
    /// pending: XAPI destroys a session's tasks with the session, and a later process (RAS
    /// polls from any process) must still find them. Such a session is kept (logged at
    /// debug) and expires on the host.
    async fn close(&self) {
        let pending: Vec<String> = self.pending.lock().map(|p| p.values().cloned().collect()).unwrap_or_default();
        if pending.is_empty() {
            self.rpc.logout().await;
        } else {
            tracing::debug!(
                tasks = ?pending,
                "keeping the XAPI session: tasks handed out in task ids are still pending and XAPI destroys a session's tasks at logout; the session expires on the host"
            );
        }
    }

    async fn console(&self, id: &GuestId) -> Result<Console> {
        counted("console", async {
            let vm = self.vm_ref(id).await?;
            let r = self.record("VM", &vm).await?;
            if rec::s(&r, "power_state") != "Running" {
                return Err(Error::conflict(format!("guest [{id}] is not running: no console")));
            }
            for c in rec::refs(&r, "consoles") {
                let con = self.record("console", &c).await?;
                if rec::s(&con, "protocol") == "rfb" && !rec::s(&con, "location").is_empty() {
                    return Ok(Console::Url { url: SecretString::from(rec::s(&con, "location").to_string()) });
                }
            }
            Err(Error::not_found(format!("RFB console of guest [{id}]")))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_states_map_with_in_flight_operations() {
        assert_eq!(map_power("Running", &[]), PowerState::PoweredOn);
        assert_eq!(map_power("Halted", &[]), PowerState::PoweredOff);
        assert_eq!(map_power("Paused", &[]), PowerState::Suspended);
        assert_eq!(map_power("Suspended", &[]), PowerState::Suspended);
        assert_eq!(map_power("Halted", &["start".into()]), PowerState::PoweringOn);
        assert_eq!(map_power("Running", &["clean_shutdown".into()]), PowerState::PoweringOff);
        assert_eq!(map_power("Running", &["suspend".into()]), PowerState::Suspending);
    }

    #[test]
    fn ids_must_be_uuids_and_results_yield_refs() {
        assert!(uuid_of(&GuestId::new("5f6e8f7b-0696-4def-a222-403ca6d08a1a")).is_ok());
        for bad in ["", "103", "5f6e8f7b-0696-4def-a222-403ca6d08a1", "5f6e8f7b_0696-4def-a222-403ca6d08a1a"] {
            assert!(uuid_of(&GuestId::new(bad)).is_err(), "{bad}");
        }
        assert_eq!(result_ref("<value>OpaqueRef:ab-1</value>").as_deref(), Some("OpaqueRef:ab-1"));
        assert_eq!(result_ref("<value><string>OpaqueRef:x</string></value>").as_deref(), Some("OpaqueRef:x"));
        assert_eq!(result_ref("<value>OpaqueRef:NULL</value>"), None);
        assert_eq!(result_ref(""), None);
    }
}
