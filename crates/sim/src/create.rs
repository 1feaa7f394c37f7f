//! `create_guest` as a converging state machine. A create is a clone (the guest row with
//! the template's sizing and NICs, the key and the final name, hidden until the clone
//! task is due) followed by steps applied when the task is due: make visible, **config**
//! (CPU, memory, disk), **NICs** (MACs, VLANs, networks) and the key, **power** on.
//!
//! Each step first consumes its injected fault (`create_config`, `create_nics`,
//! `create_power`, any mode): a fault cuts the create there as a lost connection or a
//! killed process would, leaving the earlier steps applied and the guest visible with its
//! key, and the task ends failed. A retried `create_guest` with the same key finds the
//! half-made guest and re-applies every step, so the result always matches the request.

use crate::db::Sql;
use crate::faults::{self, Op};
use crate::guests::{self, NETWORK};
use crate::power;
use polyvisor_core::{CreateSpec, Error, PowerState, Result};
use rusqlite::{params, Connection};

/// `Some(error)` when an injected fault cuts the create at `step`.
fn cut(conn: &Connection, step: Op) -> Result<Option<Error>> {
    Ok(faults::take(conn, step)?.map(|_| Error::backend(faults::message(step.as_str()))))
}

/// Applies every step of `spec` to guest `id`. `Ok(None)`: the guest matches the spec
/// (and is powering on until `finish_ms` when `start`); `Ok(Some(e))`: an injected fault
/// cut the create at a step, earlier steps stay; `Err`: a real failure (the caller rolls
/// the whole application back).
pub(crate) fn apply_steps(
    conn: &Connection,
    id: i64,
    spec: &CreateSpec,
    start: bool,
    now: i64,
    finish_ms: i64,
) -> Result<Option<Error>> {
    let g = guests::row_any(conn, id)?
        .ok_or_else(|| Error::backend(format!("guest [{id}] vanished while being created")))?;
    if !g.visible {
        exec(conn, "UPDATE guests SET visible = 1 WHERE id = ?1", params![id])?;
    }
    if let Some(e) = cut(conn, Op::CreateConfig)? {
        return Ok(Some(e));
    }
    let cpus = spec.cpus.map_or(g.cpus, i64::from);
    let memory = spec.memory_mb.map_or(g.memory_mb, |m| m as i64);
    let disk = spec.disk_size_gb.map_or(g.disk_gb, |d| (d.min(1 << 20) as i64).max(g.disk_gb));
    exec(
        conn,
        "UPDATE guests SET cpus = ?2, memory_mb = ?3, disk_gb = ?4 WHERE id = ?1",
        params![id, cpus, memory, disk],
    )?;

    if let Some(e) = cut(conn, Op::CreateNics)? {
        return Ok(Some(e));
    }
    if !spec.nics.is_empty() {
        let current = guests::nics_of(conn, id)?;
        exec(conn, "DELETE FROM nics WHERE guest_id = ?1", params![id])?;
        let mut seen = std::collections::HashSet::new();
        for (i, n) in spec.nics.iter().enumerate() {
            let mac = match (&n.mac, current.get(i)) {
                (Some(m), _) => guests::claim_mac(conn, m)?,
                (None, Some((old, _, _))) => old.clone(),
                (None, None) => guests::alloc_mac(conn)?,
            };
            if !seen.insert(mac.clone()) {
                return Err(Error::invalid(format!("create: MAC {mac} requested twice")));
            }
            let network = n.network.clone().unwrap_or_else(|| NETWORK.to_string());
            exec(
                conn,
                "INSERT INTO nics (guest_id, idx, mac, vlan, network) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, i as i64, mac, n.vlan.map(i64::from), network],
            )?;
        }
    }
    exec(conn, "UPDATE guests SET key = ?2 WHERE id = ?1", params![id, spec.key.trim()])?;

    if let Some(e) = cut(conn, Op::CreatePower)? {
        return Ok(Some(e));
    }
    if start {
        let g = guests::row(conn, id)?;
        if !matches!(g.power_at(now), PowerState::PoweredOn | PowerState::PoweringOn) {
            let (state, until) = if finish_ms > now {
                (PowerState::PoweringOn, finish_ms)
            } else {
                (power::settled(PowerState::PoweringOn), 0)
            };
            guests::set_power(conn, id, state, until)?;
        }
    }
    Ok(None)
}

/// Cancels an in-progress (still hidden) create of guest `id`: its task fails and the row
/// goes. `true` when there was one.
pub(crate) fn cancel_hidden(conn: &Connection, id: i64) -> Result<bool> {
    let Some(g) = guests::row_any(conn, id)?.filter(|g| !g.visible) else { return Ok(false) };
    exec(
        conn,
        "UPDATE tasks SET state = 'failed', error_kind = 'conflict', error = ?2 WHERE new_guest = ?1 AND state = 'running'",
        params![g.id, format!("create of guest [{}] cancelled: the guest was deleted", g.id)],
    )?;
    guests::remove(conn, g.id)?;
    Ok(true)
}

fn exec(conn: &Connection, sql: &str, p: impl rusqlite::Params) -> Result<()> {
    conn.prepare_cached(sql).and_then(|mut s| s.execute(p)).db().map(|_| ())
}
