//! Fault injection knobs, stored in the database so tests and `polyvisor sim fault` can
//! set them from outside the provider process.
//!
//! A knob per operation kind: fail the next `count` calls (at submit time with
//! `ErrorKind::Backend`, or by making the task end `Failed`), and add `latency_ms` to
//! every call. The `all` knob's latency applies to every call.

use crate::db::{Db, Sql};
use polyvisor_core::{Error, Result};
use rusqlite::{params, Connection, OptionalExtension};
use std::time::Duration;

/// Largest latency a knob can add to one call (keeps every call bounded).
pub const MAX_LATENCY_MS: i64 = 30_000;

/// Operation kinds a fault can target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum Op {
    /// `clone_guest`.
    Clone,
    /// `create_guest` (submit mode: nothing is made; task mode: the clone fails and the
    /// driver removes it).
    Create,
    /// The config step of a create (CPU, memory, disk): cuts the create after the clone.
    CreateConfig,
    /// The NIC step of a create (MACs, VLANs, networks, key): cuts it after the config.
    CreateNics,
    /// The power-on step of a create: cuts it after the NICs.
    CreatePower,
    /// `create_snapshot`.
    SnapshotCreate,
    /// `delete_snapshot`.
    SnapshotDelete,
    /// `revert_snapshot`.
    Revert,
    /// `set_template`.
    Convert,
    /// `power`.
    Power,
    /// `delete_guest`.
    Delete,
    /// `task_status` (submit mode: the poll fails; task mode: the polled task fails).
    Task,
    /// `get_guest`, `console`, snapshot listing.
    Get,
    /// `list_guests`, `find_by_key`.
    List,
    /// Latency only: added to every call.
    All,
}

impl Op {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Clone => "clone",
            Op::Create => "create",
            Op::CreateConfig => "create_config",
            Op::CreateNics => "create_nics",
            Op::CreatePower => "create_power",
            Op::SnapshotCreate => "snapshot_create",
            Op::SnapshotDelete => "snapshot_delete",
            Op::Revert => "revert",
            Op::Convert => "convert",
            Op::Power => "power",
            Op::Delete => "delete",
            Op::Task => "task",
            Op::Get => "get",
            Op::List => "list",
            Op::All => "all",
        }
    }
}

/// How an injected failure shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Mode {
    /// The call itself fails with `ErrorKind::Backend`.
    #[default]
    Submit,
    /// The call succeeds; its task ends `Failed` (and leaves nothing behind).
    Task,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Submit => "submit",
            Mode::Task => "task",
        }
    }
    fn parse(s: &str) -> Mode {
        if s == "task" {
            Mode::Task
        } else {
            Mode::Submit
        }
    }
}

/// One stored knob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// Operation name.
    pub op: String,
    /// Failures left.
    pub count: i64,
    /// Latency added per call, ms.
    pub latency_ms: i64,
    /// How failures show.
    pub mode: Mode,
}

/// The message of an injected failure.
pub(crate) fn message(op: &str) -> String {
    format!("Simulated {op} failure (sim fault injection)")
}

/// Sets (replaces) the knob for `op`.
pub(crate) fn set(conn: &Connection, op: Op, count: i64, latency_ms: i64, mode: Mode) -> Result<()> {
    conn.execute(
        "INSERT INTO faults (op, count, latency_ms, mode) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(op) DO UPDATE SET count = excluded.count, latency_ms = excluded.latency_ms, mode = excluded.mode",
        params![op.as_str(), count.max(0), latency_ms.clamp(0, MAX_LATENCY_MS), mode.as_str()],
    )
    .db()
    .map(|_| ())
}

/// Clears one knob or all of them.
pub(crate) fn clear(conn: &Connection, op: Option<Op>) -> Result<()> {
    match op {
        Some(op) => conn.execute("DELETE FROM faults WHERE op = ?1", [op.as_str()]),
        None => conn.execute("DELETE FROM faults", []),
    }
    .db()
    .map(|_| ())
}

/// Every knob.
pub(crate) fn list(conn: &Connection) -> Result<Vec<Fault>> {
    let mut s = conn.prepare_cached("SELECT op, count, latency_ms, mode FROM faults ORDER BY op").db()?;
    let v = s
        .query_map([], |r| {
            Ok(Fault {
                op: r.get(0)?,
                count: r.get(1)?,
                latency_ms: r.get(2)?,
                mode: Mode::parse(&r.get::<_, String>(3)?),
            })
        })
        .db()?
        .collect::<rusqlite::Result<Vec<_>>>()
        .db()?;
    Ok(v)
}

/// The latency to add to a call of `op` (its own knob plus `all`, ms) and whether a
/// failure of `op` is armed: one indexed query, cheap enough for every `get_guest`.
fn peek(conn: &Connection, op: Op) -> Result<(i64, bool)> {
    conn.prepare_cached(
        "SELECT COALESCE(SUM(latency_ms), 0), COALESCE(MAX(op = ?1 AND count > 0), 0) FROM faults WHERE op IN (?1, 'all')",
    )
    .and_then(|mut s| s.query_row([op.as_str()], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, bool>(1)?))))
    .db()
}

/// Consumes one failure of `op`, if any is armed (atomic across processes).
pub(crate) fn take(conn: &Connection, op: Op) -> Result<Option<Mode>> {
    let mode: Option<String> = conn
        .prepare_cached("UPDATE faults SET count = count - 1 WHERE op = ?1 AND count > 0 RETURNING mode")
        .and_then(|mut s| s.query_row([op.as_str()], |r| r.get(0)).optional())
        .db()?;
    Ok(mode.map(|m| Mode::parse(&m)))
}

/// Applies the knobs at the start of a call: sleeps the latency, then consumes one
/// armed failure. `Err` for a submit-mode failure, `Ok(true)` when the call's task must
/// fail, `Ok(false)` otherwise.
pub(crate) async fn on_call(db: &Db, op: Op) -> Result<bool> {
    let (ms, armed) = db.read(|c| peek(c, op))?;
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms.clamp(0, MAX_LATENCY_MS) as u64)).await;
    }
    if !armed {
        return Ok(false);
    }
    match db.write(|tx| take(tx, op))? {
        Some(Mode::Submit) => Err(Error::backend(message(op.as_str()))),
        Some(Mode::Task) => Ok(true),
        None => Ok(false),
    }
}
