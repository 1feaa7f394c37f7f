//! Snapshot trees in the database: parent pointers, the guest's current snapshot,
//! replace-on-create, delete with re-parenting, revert.

use crate::db::{now_ms, Sql};
use crate::guests::{self, GuestRow};
use polyvisor_core::{Error, PowerState, Result, Snapshot};
use rusqlite::{params, Connection, OptionalExtension};

/// One snapshot row.
#[derive(Clone, Debug)]
pub(crate) struct SnapRow {
    pub id: i64,
    pub parent_id: Option<i64>,
    pub includes_memory: bool,
    pub power: PowerState,
    pub cpus: i64,
    pub memory_mb: i64,
}

/// The snapshot `name` of guest `guest`, if any.
pub(crate) fn find(conn: &Connection, guest: i64, name: &str) -> Result<Option<SnapRow>> {
    conn.prepare_cached("SELECT id, parent_id, includes_memory, power, cpus, memory_mb FROM snapshots WHERE guest_id = ?1 AND name = ?2")
        .and_then(|mut s| {
            s.query_row(params![guest, name], |r| {
                Ok(SnapRow {
                    id: r.get(0)?,
                    parent_id: r.get(1)?,
                    includes_memory: r.get(2)?,
                    power: crate::power::parse(&r.get::<_, String>(3)?),
                    cpus: r.get(4)?,
                    memory_mb: r.get(5)?,
                })
            })
            .optional()
        })
        .db()
}

/// The snapshot or `NotFound` naming it and the guest.
pub(crate) fn require(conn: &Connection, guest: i64, name: &str) -> Result<SnapRow> {
    find(conn, guest, name)?
        .ok_or_else(|| Error::not_found(format!("snapshot [{}] of guest [{guest}]", crate::names::shown(name))))
}

/// Snapshots of a guest, oldest first.
pub(crate) fn list(conn: &Connection, guest: i64) -> Result<Vec<Snapshot>> {
    let mut s = conn
        .prepare_cached(
            "SELECT s.name, s.description, s.created_unix, p.name, s.includes_memory
             FROM snapshots s LEFT JOIN snapshots p ON p.id = s.parent_id
             WHERE s.guest_id = ?1 ORDER BY s.id",
        )
        .db()?;
    let v = s
        .query_map([guest], |r| {
            Ok(Snapshot {
                name: r.get(0)?,
                description: r.get(1)?,
                created_unix: r.get::<_, Option<i64>>(2)?.and_then(|v| u64::try_from(v).ok()),
                parent: r.get(3)?,
                includes_memory: r.get(4)?,
            })
        })
        .db()?
        .collect::<rusqlite::Result<Vec<_>>>()
        .db()?;
    Ok(v)
}

/// `Conflict` when linked clones were made from this snapshot.
pub(crate) fn ensure_no_dependants(
    conn: &Connection,
    guest: i64,
    name: &str,
    snap: &SnapRow,
    action: &str,
) -> Result<()> {
    let deps = guests::snapshot_dependants(conn, snap.id)?;
    if deps.is_empty() {
        return Ok(());
    }
    Err(Error::conflict(format!(
        "cannot {action} snapshot [{}] of guest [{guest}]: linked clones depend on it: {}; delete them first",
        crate::names::shown(name),
        guests::describe(&deps)
    )))
}

/// Deletes a snapshot: its children move to its parent, and the guest's current snapshot
/// moves to the parent when it was this one.
pub(crate) fn remove(conn: &Connection, guest: i64, snap: &SnapRow) -> Result<()> {
    conn.prepare_cached("UPDATE snapshots SET parent_id = ?2 WHERE parent_id = ?1")
        .and_then(|mut s| s.execute(params![snap.id, snap.parent_id]))
        .db()?;
    conn.prepare_cached("UPDATE guests SET current_snapshot = ?3 WHERE id = ?1 AND current_snapshot = ?2")
        .and_then(|mut s| s.execute(params![guest, snap.id, snap.parent_id]))
        .db()?;
    conn.prepare_cached("DELETE FROM snapshots WHERE id = ?1").and_then(|mut s| s.execute([snap.id])).db()?;
    Ok(())
}

/// Creates a snapshot of the guest's current state (replacing one of the same name) as a
/// child of its current snapshot, and makes it current.
pub(crate) fn create(
    conn: &Connection,
    g: &GuestRow,
    name: &str,
    description: Option<&str>,
    memory: bool,
) -> Result<()> {
    if let Some(old) = find(conn, g.id, name)? {
        ensure_no_dependants(conn, g.id, name, &old, "replace")?;
        remove(conn, g.id, &old)?;
    }
    // Re-read: the replaced snapshot may have been the current one.
    let current: Option<i64> = conn
        .prepare_cached("SELECT current_snapshot FROM guests WHERE id = ?1")
        .and_then(|mut s| s.query_row([g.id], |r| r.get(0)))
        .db()?;
    let power = g.power_at(now_ms());
    let live = matches!(power, PowerState::PoweredOn | PowerState::Suspended);
    let includes_memory = memory && live;
    let stored_power = if includes_memory { power } else { PowerState::PoweredOff };
    conn.prepare_cached(
        "INSERT INTO snapshots (guest_id, name, description, parent_id, includes_memory, power, cpus, memory_mb, created_unix)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .and_then(|mut s| {
        s.execute(params![g.id, name, description, current, includes_memory, stored_power.as_str(), g.cpus, g.memory_mb, now_ms() / 1000])
    })
    .db()?;
    let id = conn.last_insert_rowid();
    conn.prepare_cached("UPDATE guests SET current_snapshot = ?2 WHERE id = ?1")
        .and_then(|mut s| s.execute(params![g.id, id]))
        .db()?;
    Ok(())
}

/// Reverts the guest to a snapshot: configuration restored, power as saved with memory
/// (running/suspended) or powered off without.
pub(crate) fn revert(conn: &Connection, guest: i64, snap: &SnapRow) -> Result<()> {
    let power = if snap.includes_memory { snap.power } else { PowerState::PoweredOff };
    conn.prepare_cached(
        "UPDATE guests SET current_snapshot = ?2, cpus = ?3, memory_mb = ?4, power = ?5, power_until = 0 WHERE id = ?1",
    )
    .and_then(|mut s| s.execute(params![guest, snap.id, snap.cpus, snap.memory_mb, power.as_str()]))
    .db()?;
    Ok(())
}
