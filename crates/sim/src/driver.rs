//! `SimDriver`: the `Driver` implementation over the sim database.
//!
//! Every call is a few sub-millisecond SQLite statements run directly in the async fn
//! (no `block_in_place`, which would panic on a current-thread runtime). Writes happen in
//! IMMEDIATE transactions, so several processes sharing the database agree.

use crate::config::Config;
use crate::db::{meta_get, now_ms, Db, Sql};
use crate::faults::{self, Op};
use crate::guests::{self, GuestRow, NewGuest, NETWORK};
use crate::names::{check_guest_name, check_snapshot_name, parse_id, shown};
use crate::power::{self, Plan, Timing, DEFAULT_BOOT_MS, DEFAULT_TASK_MS};
use crate::snapshots;
use crate::tasks::{self, NewTask};
use async_trait::async_trait;
use polyvisor_core::netops::{SecurityRule, Subnet, SubnetSpec, VlanAttach};
use polyvisor_core::task::{completed, TaskToken};
use polyvisor_core::{
    Capabilities, CloneMode, CloneSpec, CloneStarted, Console, CreateSource, CreateSpec, Driver, Error, Guest, GuestId,
    GuestSummary, Nic, PowerAction, PowerState, Result, SecretString, Snapshot, SnapshotSpec, TaskId, TaskOutput,
    TaskStatus,
};
use rand::distr::{Alphanumeric, SampleString};
use rusqlite::Connection;
use serde_json::json;

/// The simulator driver.
pub struct SimDriver {
    db: Db,
    cfg: Config,
}

fn done(op: &str, new_guest: Option<i64>) -> TaskId {
    completed(op, &TaskOutput { new_guest: new_guest.map(|g| GuestId::new(g.to_string())) })
}

impl SimDriver {
    pub(crate) fn new(cfg: Config) -> Result<SimDriver> {
        let db = Db::open(&cfg.db_path, cfg.seed)?;
        Ok(SimDriver { db, cfg })
    }

    /// Task and boot durations: explicit settings/env, else the database, else defaults.
    fn timing(&self, conn: &Connection) -> Result<Timing> {
        let task_ms = match self.cfg.task_ms {
            Some(v) => v,
            None => meta_get(conn, "task_ms")?.unwrap_or(DEFAULT_TASK_MS),
        };
        let boot_ms = match self.cfg.boot_ms {
            Some(v) => v,
            None => meta_get(conn, "boot_ms")?.unwrap_or(DEFAULT_BOOT_MS),
        };
        Ok(Timing { task_ms: task_ms.max(0), boot_ms: boot_ms.max(0) })
    }

    /// Returns the pending task of an in-progress guest, or converges an existing one
    /// (powering it on when `start`).
    fn adopt(&self, conn: &Connection, g: &GuestRow, op: &'static str, start: bool) -> Result<CloneStarted> {
        if let Some(task) = tasks::running_for_guest(conn, g.id)? {
            return Ok(CloneStarted { task, new_guest: g.visible.then(|| GuestId::new(g.id.to_string())) });
        }
        let new_guest = Some(GuestId::new(g.id.to_string()));
        let now = now_ms();
        let state = g.power_at(now);
        if !start || !g.visible || state == PowerState::PoweredOn {
            return Ok(CloneStarted { task: done(op, Some(g.id)), new_guest });
        }
        let until = if state == PowerState::PoweringOn {
            g.power_until
        } else {
            let t = self.timing(conn)?;
            let ms =
                if matches!(state, PowerState::Suspended | PowerState::Suspending) { t.task_ms } else { t.boot_ms };
            let (st, until) = power::stored_for(PowerState::PoweringOn, ms, now);
            guests::set_power(conn, g.id, st, until)?;
            until
        };
        let t = NewTask {
            op,
            guest: Some(g.id),
            params: json!({ "start": true, "adopted": true }),
            due_ms: now,
            finish_ms: until.max(now),
            applied: true,
            new_guest: Some(g.id),
            fail: false,
        };
        Ok(CloneStarted { task: tasks::insert(conn, &t)?, new_guest })
    }

    fn name_taken(conn: &Connection, name: &str, not: Option<i64>) -> Result<()> {
        if let Some(other) = guests::rows_by_name(conn, name)?.into_iter().find(|r| Some(r.id) != not) {
            return Err(Error::already_exists(format!("a guest named [{name}] already exists ([{}])", other.id)));
        }
        Ok(())
    }
}

#[async_trait]
impl Driver for SimDriver {
    fn display_name(&self) -> &str {
        "Sim"
    }

    fn capabilities(&self) -> Capabilities {
        crate::sim_capabilities()
    }

    async fn probe(&self) -> Result<String> {
        let n: i64 =
            self.db.read(|c| c.query_row("SELECT COUNT(*) FROM guests WHERE visible = 1", [], |r| r.get(0)).db())?;
        Ok(format!("polyvisor sim: {n} guests in {}", self.db.path().display()))
    }

    async fn list_guests(&self) -> Result<Vec<GuestSummary>> {
        faults::on_call(&self.db, Op::List).await?;
        tasks::settle_due(&self.db)?;
        self.db.read(|c| guests::list(c, now_ms()))
    }

    async fn get_guest(&self, id: &GuestId) -> Result<Guest> {
        faults::on_call(&self.db, Op::Get).await?;
        tasks::settle_due(&self.db)?;
        let id = parse_id(id.as_str())?;
        self.db.read(|c| guests::to_guest(c, &guests::row(c, id)?, now_ms()))
    }

    /// One fault check, one settle, then every record and snapshot list in one read
    /// transaction (a consistent view; a 10,000-guest inventory in well under a second).
    async fn read_guests(&self, ids: &[GuestId]) -> Result<Vec<(Guest, Vec<Snapshot>)>> {
        faults::on_call(&self.db, Op::Get).await?;
        tasks::settle_due(&self.db)?;
        let caps = self.capabilities();
        let now = now_ms();
        self.db.read(|c| {
            let tx = c.unchecked_transaction().db()?;
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                let row = match parse_id(id.as_str()).and_then(|n| guests::row(&tx, n)) {
                    Ok(r) => r,
                    Err(e) if e.is_not_found() => continue,
                    Err(e) => return Err(e),
                };
                let g = guests::to_guest(&tx, &row, now)?;
                let snaps = if caps.has_snapshots(&g) { snapshots::list(&tx, row.id)? } else { Vec::new() };
                out.push((g, snaps));
            }
            Ok(out)
        })
    }

    async fn find_by_key(&self, key: &str) -> Result<Option<GuestSummary>> {
        faults::on_call(&self.db, Op::List).await?;
        tasks::settle_due(&self.db)?;
        self.db.read(|c| match guests::row_by_key(c, key)? {
            Some(g) if g.visible => Ok(Some(guests::to_guest(c, &g, now_ms())?.summary())),
            _ => Ok(None),
        })
    }

    async fn power(&self, id: &GuestId, action: PowerAction) -> Result<TaskId> {
        let id = parse_id(id.as_str())?;
        let fail = faults::on_call(&self.db, Op::Power).await?;
        self.db.write(|tx| {
            let g = guests::row(tx, id)?;
            let t = self.timing(tx)?;
            let now = now_ms();
            let plan = power::plan(action, g.power_at(now), g.is_template, t);
            if let Plan::Refuse(why) = plan {
                return Err(Error::conflict(format!("guest [{id}] {why}")));
            }
            if fail {
                return tasks::insert(
                    tx,
                    &NewTask::after("power", id, t.task_ms, json!({ "action": action.as_str() }), true),
                );
            }
            let until = match plan {
                Plan::Enter { state, ms } => {
                    let (st, until) = power::stored_for(state, ms, now);
                    guests::set_power(tx, id, st, until)?;
                    until
                }
                _ => g.power_until,
            };
            if until <= now {
                return Ok(done("power", None));
            }
            let task = NewTask {
                op: "power",
                guest: Some(id),
                params: json!({ "action": action.as_str() }),
                due_ms: until,
                finish_ms: until,
                applied: true,
                new_guest: None,
                fail: false,
            };
            tasks::insert(tx, &task)
        })
    }

    async fn delete_guest(&self, id: &GuestId) -> Result<TaskId> {
        let Ok(id) = parse_id(id.as_str()) else {
            return Ok(done("delete", None));
        };
        let fail = faults::on_call(&self.db, Op::Delete).await?;
        self.db.write(|tx| {
            // A create still being cloned is cancelled (its guest is not visible yet).
            if crate::create::cancel_hidden(tx, id)? {
                return Ok(done("delete", None));
            }
            let Some(g) = guests::row_any(tx, id)?.filter(|g| g.visible) else {
                return Ok(done("delete", None));
            };
            guests::ensure_no_dependants(tx, &g, "delete")?;
            let t = self.timing(tx)?;
            if !fail {
                guests::set_power(tx, id, PowerState::PoweredOff, 0)?; // hard stop first
            }
            tasks::insert(tx, &NewTask::after("delete", id, t.task_ms, json!({}), fail))
        })
    }

    async fn set_template(&self, id: &GuestId, is_template: bool) -> Result<TaskId> {
        let id = parse_id(id.as_str())?;
        let fail = faults::on_call(&self.db, Op::Convert).await?;
        self.db.write(|tx| {
            let g = guests::row(tx, id)?;
            if g.is_template == is_template {
                return Ok(done("convert", None));
            }
            if is_template && g.power_at(now_ms()) != PowerState::PoweredOff {
                return Err(Error::conflict(format!("guest [{id}] must be powered off to become a template")));
            }
            let t = self.timing(tx)?;
            tasks::insert(tx, &NewTask::after("convert", id, t.task_ms, json!({ "template": is_template }), fail))
        })
    }

    async fn clone_guest(&self, spec: &CloneSpec) -> Result<CloneStarted> {
        check_guest_name(&spec.name)?;
        if let Some(s) = &spec.snapshot {
            check_snapshot_name(s)?;
        }
        let source = parse_id(spec.source.as_str())?;
        let fail = faults::on_call(&self.db, Op::Clone).await?;
        self.db.write(|tx| {
            let src = guests::row(tx, source)?;
            // A retry with the same name and source adopts the earlier clone.
            let same_name = guests::rows_by_name(tx, &spec.name)?;
            if let Some(prev) = same_name.iter().find(|r| r.origin_id == Some(src.id) && r.id != src.id) {
                return self.adopt(tx, prev, "clone", spec.start);
            }
            if let Some(other) = same_name.first() {
                return Err(Error::already_exists(format!(
                    "a guest named [{}] already exists ([{}])",
                    spec.name, other.id
                )));
            }
            let snap = match &spec.snapshot {
                Some(name) => Some(snapshots::require(tx, src.id, name)?),
                None => None,
            };
            let linked = match spec.mode {
                CloneMode::Linked => true,
                CloneMode::Full => false,
                CloneMode::Auto => src.is_template,
            };
            let mut nics = Vec::new();
            for (_, vlan, network) in guests::nics_of(tx, src.id)? {
                nics.push((guests::alloc_mac(tx)?, vlan, network));
            }
            if nics.is_empty() {
                nics.push((guests::alloc_mac(tx)?, None, Some(NETWORK.to_string())));
            }
            let now = now_ms();
            let new = NewGuest {
                name: spec.name.clone(),
                visible: false,
                is_template: false,
                power: PowerState::PoweredOff,
                power_until: 0,
                os: src.os.clone(),
                cpus: snap.as_ref().map_or(src.cpus, |s| s.cpus),
                memory_mb: snap.as_ref().map_or(src.memory_mb, |s| s.memory_mb),
                disk_gb: src.disk_gb,
                key: None,
                origin_id: Some(src.id),
                linked_to: linked.then_some(src.id),
                linked_snapshot: if linked { snap.as_ref().map(|s| s.id) } else { None },
                nics,
            };
            let id = guests::insert(tx, &new, now)?;
            let t = self.timing(tx)?;
            let due = now + t.task_ms;
            let task = NewTask {
                op: "clone",
                guest: Some(src.id),
                params: json!({ "start": spec.start, "linked": linked }),
                due_ms: due,
                finish_ms: due + if spec.start { t.boot_ms } else { 0 },
                applied: false,
                new_guest: Some(id),
                fail,
            };
            tracing::debug!(source = src.id, new = id, linked, "sim clone submitted");
            Ok(CloneStarted { task: tasks::insert(tx, &task)?, new_guest: None })
        })
    }

    async fn create_guest(&self, spec: &CreateSpec) -> Result<CloneStarted> {
        check_guest_name(&spec.name)?;
        let key = spec.key.trim();
        if key.is_empty() || key.len() > 255 || key.chars().any(char::is_control) {
            return Err(Error::invalid("create: 'key' must be 1-255 printable characters"));
        }
        if spec.cpus == Some(0) || spec.cpus.is_some_and(|c| c > 512) {
            return Err(Error::invalid("create: cpus must be between 1 and 512"));
        }
        if spec.memory_mb.is_some_and(|m| !(16..=16 * 1024 * 1024).contains(&m)) {
            return Err(Error::invalid("create: memory must be between 16 MiB and 16 TiB"));
        }
        for nic in &spec.nics {
            if let Some(mac) = &nic.mac {
                polyvisor_core::net::normalize_mac(mac)
                    .ok_or_else(|| Error::invalid(format!("create: invalid MAC address [{}]", shown(mac))))?;
            }
            if nic.vlan.is_some_and(|v| v == 0 || v > 4094) {
                return Err(Error::invalid("create: VLAN tags must be between 1 and 4094"));
            }
        }
        if let CreateSource::Iso { path, .. } = &spec.source {
            if path.trim().is_empty() {
                return Err(Error::invalid("create: ISO path is empty"));
            }
        }
        let fail = faults::on_call(&self.db, Op::Create).await?;
        let stored = json!({ "start": true, "spec": CreateSpec { key: key.to_string(), ..spec.clone() } });
        self.db.write(|tx| {
            let existing = guests::row_by_key(tx, key)?;
            // Requested MACs must be free (or already this guest's): refused before anything.
            let mut seen = std::collections::HashSet::new();
            for n in &spec.nics {
                if let Some(mac) = n.mac.as_deref().and_then(polyvisor_core::net::normalize_mac) {
                    if !seen.insert(mac.clone()) {
                        return Err(Error::invalid(format!("create: MAC {mac} requested twice")));
                    }
                    if let Some(user) =
                        guests::mac_user(tx, &mac)?.filter(|u| Some(*u) != existing.as_ref().map(|g| g.id))
                    {
                        return Err(Error::already_exists(format!("MAC {mac} is already in use by guest [{user}]")));
                    }
                }
            }
            let now = now_ms();
            let t = self.timing(tx)?;
            if let Some(existing) = existing {
                if existing.is_template {
                    return Err(Error::conflict(format!("key [{}] belongs to template [{}]", shown(key), existing.id)));
                }
                let new_guest = Some(GuestId::new(existing.id.to_string()));
                if let Some(task) = tasks::running_for_guest(tx, existing.id)? {
                    return Ok(CloneStarted { task, new_guest });
                }
                // Converge the guest that carries the key: every step again, power included.
                let on = matches!(existing.power_at(now), PowerState::PoweredOn | PowerState::PoweringOn);
                let task = NewTask {
                    op: "create",
                    guest: None,
                    params: stored,
                    due_ms: now,
                    finish_ms: if on { now } else { now + t.boot_ms },
                    applied: false,
                    new_guest: Some(existing.id),
                    fail,
                };
                tracing::debug!(guest = existing.id, "sim create converges an existing guest");
                return Ok(CloneStarted { task: tasks::insert(tx, &task)?, new_guest });
            }
            Self::name_taken(tx, &spec.name, None)?;
            // The clone: the template's sizing and NICs (fresh MACs); the steps apply the spec.
            let (os, cpus, memory_mb, disk_gb, linked_to, template_nics) = match &spec.source {
                CreateSource::Template { id, full } => {
                    let src = guests::row(tx, parse_id(id.as_str())?)?;
                    let nics = guests::nics_of(tx, src.id)?;
                    (src.os.clone(), src.cpus, src.memory_mb, src.disk_gb, (!full).then_some(src.id), nics)
                }
                CreateSource::Iso { os_type, .. } => {
                    let disk = spec.disk_size_gb.map_or(32, |d| d.clamp(1, 1 << 20) as i64);
                    (Some(os_type.clone().unwrap_or_else(|| "other".into())), 1, 1024, disk, None, Vec::new())
                }
            };
            let mut nics = Vec::new();
            for (_, vlan, network) in template_nics {
                nics.push((guests::alloc_mac(tx)?, vlan, network));
            }
            if nics.is_empty() {
                nics.push((guests::alloc_mac(tx)?, None, Some(NETWORK.to_string())));
            }
            let new = NewGuest {
                name: spec.name.clone(),
                visible: false,
                is_template: false,
                power: PowerState::PoweredOff,
                power_until: 0,
                os,
                cpus,
                memory_mb,
                disk_gb,
                key: Some(key.to_string()),
                origin_id: linked_to.or(match &spec.source {
                    CreateSource::Template { id, .. } => parse_id(id.as_str()).ok(),
                    CreateSource::Iso { .. } => None,
                }),
                linked_to,
                linked_snapshot: None,
                nics,
            };
            let id = guests::insert(tx, &new, now)?;
            let due = now + t.task_ms;
            let task = NewTask {
                op: "create",
                guest: None,
                params: stored,
                due_ms: due,
                finish_ms: due + t.boot_ms,
                applied: false,
                new_guest: Some(id),
                fail,
            };
            Ok(CloneStarted { task: tasks::insert(tx, &task)?, new_guest: Some(GuestId::new(id.to_string())) })
        })
    }

    async fn adopt_guest(&self, id: &GuestId, key: &str) -> Result<()> {
        let key = key.trim();
        if key.is_empty() || key.len() > 255 || key.chars().any(char::is_control) {
            return Err(Error::invalid("adopt: 'key' must be 1-255 printable characters"));
        }
        let id = parse_id(id.as_str())?;
        faults::on_call(&self.db, Op::Convert).await?;
        self.db.write(|tx| {
            let g = guests::row(tx, id)?;
            if g.is_template {
                return Err(Error::conflict(format!("guest [{id}] is a template; templates are never adopted")));
            }
            match g.key.as_deref() {
                Some(k) if k == key => return Ok(()),
                Some(_) => return Err(Error::conflict(format!("guest [{id}] already carries another platform key"))),
                None => {}
            }
            if let Some(other) = guests::row_by_key(tx, key)? {
                return Err(Error::conflict(format!("key [{}] already belongs to guest [{}]", shown(key), other.id)));
            }
            tx.execute("UPDATE guests SET key = ?2 WHERE id = ?1", rusqlite::params![id, key]).db().map(|_| ())
        })
    }

    async fn list_snapshots(&self, id: &GuestId) -> Result<Vec<Snapshot>> {
        faults::on_call(&self.db, Op::Get).await?;
        tasks::settle_due(&self.db)?;
        let id = parse_id(id.as_str())?;
        self.db.read(|c| snapshots::list(c, guests::row(c, id)?.id))
    }

    async fn create_snapshot(&self, id: &GuestId, spec: &SnapshotSpec) -> Result<TaskId> {
        check_snapshot_name(&spec.name)?;
        let id = parse_id(id.as_str())?;
        let fail = faults::on_call(&self.db, Op::SnapshotCreate).await?;
        self.db.write(|tx| {
            let g = guests::row(tx, id)?;
            if let Some(old) = snapshots::find(tx, g.id, &spec.name)? {
                snapshots::ensure_no_dependants(tx, g.id, &spec.name, &old, "replace")?;
            }
            let t = self.timing(tx)?;
            let params = json!({ "name": spec.name, "description": spec.description, "memory": spec.include_memory });
            tasks::insert(tx, &NewTask::after("snapshot_create", id, t.task_ms, params, fail))
        })
    }

    async fn revert_snapshot(&self, id: &GuestId, name: &str) -> Result<TaskId> {
        let id = parse_id(id.as_str())?;
        let fail = faults::on_call(&self.db, Op::Revert).await?;
        self.db.write(|tx| {
            let g = guests::row(tx, id)?;
            snapshots::require(tx, g.id, name)?;
            let t = self.timing(tx)?;
            tasks::insert(tx, &NewTask::after("revert", id, t.task_ms, json!({ "name": name }), fail))
        })
    }

    async fn delete_snapshot(&self, id: &GuestId, name: &str) -> Result<TaskId> {
        let id = parse_id(id.as_str())?;
        let fail = faults::on_call(&self.db, Op::SnapshotDelete).await?;
        self.db.write(|tx| {
            let g = guests::row(tx, id)?;
            let Some(snap) = snapshots::find(tx, g.id, name)? else {
                return Ok(done("snapshot_delete", None));
            };
            snapshots::ensure_no_dependants(tx, g.id, name, &snap, "delete")?;
            let t = self.timing(tx)?;
            tasks::insert(tx, &NewTask::after("snapshot_delete", id, t.task_ms, json!({ "name": name }), fail))
        })
    }

    async fn advance_task(&self, token: &TaskToken) -> Result<TaskStatus> {
        let force_fail = faults::on_call(&self.db, Op::Task).await?;
        tasks::status(&self.db, token, force_fail)
    }

    async fn console(&self, id: &GuestId) -> Result<Console> {
        faults::on_call(&self.db, Op::Get).await?;
        let id = parse_id(id.as_str())?;
        let g = self.db.read(|c| guests::row(c, id))?;
        if !matches!(g.power_at(now_ms()), PowerState::PoweredOn | PowerState::PoweringOn) {
            return Err(Error::conflict(format!("guest [{id}] is not running; start it to open a console")));
        }
        let port = 5900 + (id % 59_000) as u16;
        let password = Alphanumeric.sample_string(&mut rand::rng(), 8);
        Ok(Console::Vnc {
            host: "127.0.0.1".into(),
            port,
            password: Some(SecretString::from(password)),
            one_time: true,
        })
    }

    // --- Guest networking (CloudShell L2/L3): see `crate::netops`.

    async fn attach_vlan(&self, id: &GuestId, req: &VlanAttach) -> Result<Nic> {
        let id = parse_id(id.as_str())?;
        faults::on_call(&self.db, Op::Power).await?;
        self.db.write(|tx| crate::netops::attach_vlan(tx, id, req))
    }

    async fn detach_vlan(&self, id: &GuestId, mac: &str) -> Result<()> {
        let Ok(id) = parse_id(id.as_str()) else {
            return Ok(());
        };
        faults::on_call(&self.db, Op::Power).await?;
        self.db.write(|tx| match guests::row_any(tx, id)? {
            Some(g) if g.visible => crate::netops::detach_vlan(tx, id, mac),
            _ => Ok(()),
        })
    }

    async fn ensure_subnet(&self, spec: &SubnetSpec) -> Result<Subnet> {
        self.db.write(|tx| crate::netops::ensure_subnet(tx, spec))
    }

    async fn connect_subnet(&self, id: &GuestId, subnet_id: &str) -> Result<Nic> {
        let id = parse_id(id.as_str())?;
        self.db.write(|tx| crate::netops::connect_subnet(tx, id, subnet_id))
    }

    async fn delete_subnets(&self, owner: &str) -> Result<usize> {
        self.db.write(|tx| crate::netops::delete_subnets(tx, owner))
    }

    async fn set_security_rules(&self, id: &GuestId, subnet_id: &str, rules: &[SecurityRule]) -> Result<()> {
        let id = parse_id(id.as_str())?;
        self.db.write(|tx| crate::netops::set_rules(tx, id, subnet_id, rules))
    }

    // --- Events and metrics (issue 12) ---

    async fn events_since(
        &self,
        cursor: Option<&polyvisor_core::events::EventCursor>,
    ) -> Result<polyvisor_core::events::EventBatch> {
        tasks::settle_due(&self.db)?;
        self.db.read(|c| crate::events::since(c, cursor))
    }

    async fn metrics(
        &self,
        id: &GuestId,
        start: u64,
        end: u64,
        interval: polyvisor_core::events::MetricsInterval,
    ) -> Result<Vec<polyvisor_core::events::MetricSample>> {
        let id = parse_id(id.as_str())?;
        self.db.read(|c| crate::events::metrics(c, id, start, end, interval))
    }
}

impl SimDriver {
    /// The security rules stored for a subnet (what `set_security_rules` enforced).
    pub fn security_rules(&self, subnet_id: &str) -> Result<Vec<SecurityRule>> {
        self.db.read(|c| crate::netops::rules_of(c, subnet_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn driver(path: &std::path::Path, task_ms: Option<i64>, boot_ms: Option<i64>) -> SimDriver {
        SimDriver::new(Config { db_path: path.to_path_buf(), task_ms, boot_ms, seed: true }).unwrap()
    }

    #[test]
    fn timing_prefers_explicit_then_database_then_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let d = driver(&path, None, None);
        let t = d.db.read(|c| d.timing(c)).unwrap();
        assert_eq!(t, Timing { task_ms: DEFAULT_TASK_MS, boot_ms: DEFAULT_BOOT_MS });
        crate::control::SimDb::open(&path, true).unwrap().set_timing(Some(7), Some(9)).unwrap();
        assert_eq!(d.db.read(|c| d.timing(c)).unwrap(), Timing { task_ms: 7, boot_ms: 9 });
        let explicit = driver(&path, Some(0), None);
        assert_eq!(explicit.db.read(|c| explicit.timing(c)).unwrap(), Timing { task_ms: 0, boot_ms: 9 });
    }
}
