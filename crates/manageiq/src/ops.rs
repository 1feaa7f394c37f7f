//! `op`: the `raw_*` operations of spec §5, each one driver call returning its task;
//! `--wait` follows the task to its end (bounded by `--timeout`), and `op task ID` reads
//! (or with `--wait` follows) a task printed earlier.

use clap::{Args as ClapArgs, ValueEnum};
use polyvisor_core::task::wait;
use polyvisor_core::{
    CreateSource, CreateSpec, Driver, Error, GuestId, PowerAction, Result, SnapshotSpec, TaskId, TaskStatus,
};
use serde_json::{json, Value};
use std::time::Duration;

/// Operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum Action {
    /// Power on (resumes a suspended VM).
    Start,
    /// Hard power off.
    Stop,
    /// Suspend.
    Suspend,
    /// Graceful guest shutdown.
    ShutdownGuest,
    /// Graceful guest reboot.
    RebootGuest,
    /// Hard reset.
    Reset,
    /// Delete the VM and its disks.
    Destroy,
    /// Clone a template into a new VM (`--template`, `--name`, optional `--cpus`, `--memory-mb`).
    Clone,
    /// Take a snapshot (`--snapshot`, optional `--description`, `--memory`).
    SnapshotCreate,
    /// Revert to a snapshot (`--snapshot`).
    SnapshotRevert,
    /// Remove a snapshot (`--snapshot`).
    SnapshotRemove,
    /// Read (or with `--wait` follow) a task printed earlier (`--task`).
    Task,
}

/// `op` options.
#[derive(Debug, ClapArgs)]
pub struct OpArgs {
    /// The operation.
    pub action: Action,
    /// The VM (every VM operation).
    #[arg(long)]
    pub vm: Option<String>,
    /// Template to clone from.
    #[arg(long)]
    pub template: Option<String>,
    /// New VM name (clone).
    #[arg(long)]
    pub name: Option<String>,
    /// vCPUs of the clone.
    #[arg(long)]
    pub cpus: Option<u32>,
    /// Memory of the clone, MiB.
    #[arg(long)]
    pub memory_mb: Option<u64>,
    /// Snapshot name.
    #[arg(long)]
    pub snapshot: Option<String>,
    /// Snapshot description.
    #[arg(long)]
    pub description: Option<String>,
    /// Include memory in the snapshot.
    #[arg(long)]
    pub memory: bool,
    /// Task id (`op task`).
    #[arg(long)]
    pub task: Option<String>,
    /// Wait for the task to finish.
    #[arg(long)]
    pub wait: bool,
    /// Bound of `--wait`, seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
}

fn need<'a>(v: &'a Option<String>, flag: &str) -> Result<&'a str> {
    v.as_deref().filter(|s| !s.is_empty()).ok_or_else(|| Error::invalid(format!("--{flag} is required")))
}

/// Runs the operation; the answer is `{"task": ID, "state": "running"|"completed", "new_vm": ...}`.
pub async fn run(driver: &dyn Driver, a: &OpArgs) -> Result<Value> {
    let vm = || need(&a.vm, "vm").map(GuestId::new);
    let snap = || need(&a.snapshot, "snapshot");
    let mut new_vm: Option<GuestId> = None;
    let task: TaskId = match a.action {
        Action::Start => driver.power(&vm()?, PowerAction::Start).await?,
        Action::Stop => driver.power(&vm()?, PowerAction::Stop).await?,
        Action::Suspend => {
            if !driver.capabilities().suspend {
                return Err(Error::unsupported("suspend"));
            }
            driver.power(&vm()?, PowerAction::Suspend).await?
        }
        Action::ShutdownGuest => driver.power(&vm()?, PowerAction::Shutdown).await?,
        Action::RebootGuest => driver.power(&vm()?, PowerAction::Reboot).await?,
        Action::Reset => driver.power(&vm()?, PowerAction::Reset).await?,
        Action::Destroy => driver.delete_guest(&vm()?).await?,
        Action::Clone => {
            let template = need(&a.template, "template")?;
            let name = need(&a.name, "name")?;
            let caps = driver.capabilities();
            let started = if caps.create {
                // The key makes a retry with the same name adopt the earlier clone.
                let spec = CreateSpec {
                    name: name.to_string(),
                    key: format!("miq-{name}"),
                    source: CreateSource::Template { id: template.into(), full: false },
                    cpus: a.cpus,
                    memory_mb: a.memory_mb,
                    disk_size_gb: None,
                    storage: None,
                    nics: Vec::new(),
                };
                driver.create_guest(&spec).await?
            } else {
                if a.cpus.is_some() || a.memory_mb.is_some() {
                    return Err(Error::unsupported("clone with CPU/memory changes"));
                }
                driver
                    .clone_guest(&polyvisor_core::CloneSpec {
                        source: template.into(),
                        name: name.to_string(),
                        snapshot: None,
                        mode: polyvisor_core::CloneMode::Auto,
                        start: false,
                    })
                    .await?
            };
            new_vm = started.new_guest;
            started.task
        }
        Action::SnapshotCreate => {
            let spec = SnapshotSpec {
                name: snap()?.to_string(),
                include_memory: a.memory,
                description: a.description.clone(),
            };
            driver.create_snapshot(&vm()?, &spec).await?
        }
        Action::SnapshotRevert => driver.revert_snapshot(&vm()?, snap()?).await?,
        Action::SnapshotRemove => driver.delete_snapshot(&vm()?, snap()?).await?,
        Action::Task => TaskId(need(&a.task, "task")?.to_string()),
    };
    if a.wait {
        let poll = Duration::from_millis(if driver.capabilities().task_poll_secs <= 1 { 200 } else { 1000 });
        let out = wait(driver, &task, Duration::from_secs(a.timeout), poll).await?;
        let new_vm = out.new_guest.or(new_vm);
        return Ok(json!({"task": task.as_str(), "state": "completed", "new_vm": new_vm.map(|g| g.0)}));
    }
    let state = match driver.task_status(&task).await? {
        TaskStatus::Running => "running",
        TaskStatus::Completed(o) => {
            new_vm = o.new_guest.or(new_vm);
            "completed"
        }
        TaskStatus::Failed(e) => return Err(e),
    };
    Ok(json!({"task": task.as_str(), "state": state, "new_vm": new_vm.map(|g| g.0)}))
}
