//! Task rows: every asynchronous operation is a row with a due time (when its effect
//! applies) and a finish time (when it completes, e.g. after the clone has booted).
//! Any process resolves a task id, and the effect is applied exactly once, in an
//! IMMEDIATE transaction, by whichever process polls first after the due time.

use crate::db::{now_ms, Db, Sql};
use crate::guests;
use crate::snapshots;
use polyvisor_core::task::TaskToken;
use polyvisor_core::{Error, ErrorKind, GuestId, PowerState, Result, TaskId, TaskOutput, TaskStatus};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Value};

/// The `TaskToken` kind of sim tasks (the body names the task row).
pub(crate) const KIND: &str = "sim";

/// A task to insert.
#[derive(Clone, Debug)]
pub(crate) struct NewTask {
    pub op: &'static str,
    pub guest: Option<i64>,
    pub params: Value,
    pub due_ms: i64,
    pub finish_ms: i64,
    /// The effect already happened at submit time.
    pub applied: bool,
    pub new_guest: Option<i64>,
    /// An injected failure: the task ends Failed at its due time.
    pub fail: bool,
}

impl NewTask {
    /// A task of `op` on `guest` whose effect applies after `ms`.
    pub(crate) fn after(op: &'static str, guest: i64, ms: i64, params: Value, fail: bool) -> NewTask {
        let due = now_ms() + ms.max(0);
        NewTask { op, guest: Some(guest), params, due_ms: due, finish_ms: due, applied: false, new_guest: None, fail }
    }
}

/// Inserts a task and returns its id.
pub(crate) fn insert(conn: &Connection, t: &NewTask) -> Result<TaskId> {
    let nonce = i64::from(rand::random::<u32>());
    let fail = t.fail.then(|| crate::faults::message(t.op));
    conn.prepare_cached(
        "INSERT INTO tasks (nonce, op, guest_id, params, due_ms, finish_ms, applied, new_guest, fail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .and_then(|mut s| {
        s.execute(params![
            nonce,
            t.op,
            t.guest,
            t.params.to_string(),
            t.due_ms,
            t.finish_ms.max(t.due_ms),
            t.applied,
            t.new_guest,
            fail
        ])
    })
    .db()?;
    let id = conn.last_insert_rowid();
    if id % 512 == 0 {
        // Keep the table small: finished tasks older than a day are forgotten.
        conn.execute("DELETE FROM tasks WHERE state != 'running' AND finish_ms < ?1", [now_ms() - 86_400_000]).db()?;
    }
    Ok(token(id, nonce))
}

fn token(id: i64, nonce: i64) -> TaskId {
    TaskToken::new(KIND, json!({ "task": id, "n": nonce })).encode()
}

/// The still-running task that creates or converges `guest`, if any.
pub(crate) fn running_for_guest(conn: &Connection, guest: i64) -> Result<Option<TaskId>> {
    let row: Option<(i64, i64)> = conn
        .prepare_cached(
            "SELECT id, nonce FROM tasks WHERE new_guest = ?1 AND state = 'running' ORDER BY id DESC LIMIT 1",
        )
        .and_then(|mut s| s.query_row([guest], |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .db()?;
    Ok(row.map(|(id, n)| token(id, n)))
}

#[derive(Clone, Debug)]
struct TaskRow {
    id: i64,
    nonce: i64,
    op: String,
    guest_id: Option<i64>,
    params: Value,
    due_ms: i64,
    finish_ms: i64,
    applied: bool,
    state: String,
    new_guest: Option<i64>,
    error_kind: Option<String>,
    error: Option<String>,
    fail: Option<String>,
}

fn load(conn: &Connection, id: i64) -> Result<Option<TaskRow>> {
    conn.prepare_cached(
        "SELECT id, nonce, op, guest_id, params, due_ms, finish_ms, applied, state, new_guest, error_kind, error, fail FROM tasks WHERE id = ?1",
    )
    .and_then(|mut s| {
        s.query_row([id], |r| {
            Ok(TaskRow {
                id: r.get(0)?,
                nonce: r.get(1)?,
                op: r.get(2)?,
                guest_id: r.get(3)?,
                params: serde_json::from_str(&r.get::<_, String>(4)?).unwrap_or(Value::Null),
                due_ms: r.get(5)?,
                finish_ms: r.get(6)?,
                applied: r.get(7)?,
                state: r.get(8)?,
                new_guest: r.get(9)?,
                error_kind: r.get(10)?,
                error: r.get(11)?,
                fail: r.get(12)?,
            })
        })
        .optional()
    })
    .db()
}

fn kind_name(k: ErrorKind) -> &'static str {
    match k {
        ErrorKind::InvalidInput => "invalid_input",
        ErrorKind::NotFound => "not_found",
        ErrorKind::AlreadyExists => "already_exists",
        ErrorKind::Conflict => "conflict",
        ErrorKind::Unsupported => "unsupported",
        ErrorKind::Unauthorized => "unauthorized",
        ErrorKind::Unavailable => "unavailable",
        ErrorKind::Timeout => "timeout",
        ErrorKind::UnknownTask => "unknown_task",
        ErrorKind::Backend => "backend",
        ErrorKind::Internal => "internal",
    }
}

fn kind_parse(s: &str) -> ErrorKind {
    [
        ErrorKind::InvalidInput,
        ErrorKind::NotFound,
        ErrorKind::AlreadyExists,
        ErrorKind::Conflict,
        ErrorKind::Unsupported,
        ErrorKind::Unauthorized,
        ErrorKind::Unavailable,
        ErrorKind::Timeout,
        ErrorKind::UnknownTask,
        ErrorKind::Backend,
        ErrorKind::Internal,
    ]
    .into_iter()
    .find(|k| kind_name(*k) == s)
    .unwrap_or(ErrorKind::Backend)
}

fn finished(row: &TaskRow) -> Option<TaskStatus> {
    match row.state.as_str() {
        "completed" => {
            Some(TaskStatus::Completed(TaskOutput { new_guest: row.new_guest.map(|g| GuestId::new(g.to_string())) }))
        }
        "failed" => Some(TaskStatus::Failed(Error::new(
            kind_parse(row.error_kind.as_deref().unwrap_or("backend")),
            row.error.clone().unwrap_or_else(|| "task failed".to_string()),
        ))),
        _ => None,
    }
}

/// The status of a task (decoded, unexpired and not `done`: core's `Driver::task_status`
/// checked that), advancing it when due. `force_fail` (a `task`-mode fault on polling)
/// makes a still-running task fail now.
pub(crate) fn status(db: &Db, tok: &TaskToken, force_fail: bool) -> Result<TaskStatus> {
    let unknown = || tok.unknown();
    if tok.kind != KIND {
        return Err(unknown());
    }
    let row_id = tok.body.get("task").and_then(Value::as_i64).ok_or_else(unknown)?;
    let nonce = tok.body.get("n").and_then(Value::as_i64).ok_or_else(unknown)?;
    let row = db.read(|c| load(c, row_id))?.filter(|r| r.nonce == nonce).ok_or_else(unknown)?;
    if let Some(s) = finished(&row) {
        return Ok(s);
    }
    let now = now_ms();
    let due = if row.applied { row.finish_ms } else { row.due_ms };
    if !force_fail && now < due {
        return Ok(TaskStatus::Running);
    }
    db.write(|tx| advance(tx, row_id, now, force_fail))
}

/// How many due tasks one write transaction applies (short transactions keep other
/// processes' writes flowing; [`settle_due`] loops over batches).
const SETTLE_BATCH: usize = 100;

/// Applies every task that is due but not yet applied (so reads see deletes, clones and
/// snapshots finish even when nobody polls their task). One indexed query when idle.
///
/// All of them, not one batch: a read that settled only the first batch would list guests
/// whose delete is already due while a later read (which settles the next batch) says
/// they are gone, so list and get would disagree after a burst of more than one batch.
/// Bounded: `now` is fixed, every pass applies or fails each task it selects (so none is
/// selected twice), and only tasks due by `now` qualify.
pub(crate) fn settle_due(db: &Db) -> Result<()> {
    let now = now_ms();
    loop {
        let due: Vec<i64> = db.read(|c| {
            let mut s = c
                .prepare_cached(
                    "SELECT id FROM tasks WHERE state = 'running' AND applied = 0 AND due_ms <= ?1 ORDER BY id LIMIT ?2",
                )
                .db()?;
            let v = s
                .query_map(params![now, SETTLE_BATCH as i64], |r| r.get(0))
                .db()?
                .collect::<rusqlite::Result<Vec<i64>>>()
                .db()?;
            Ok(v)
        })?;
        if due.is_empty() {
            return Ok(());
        }
        let full = due.len() == SETTLE_BATCH;
        db.write(|tx| {
            for id in due {
                advance(tx, id, now, false)?;
            }
            Ok(())
        })?;
        if !full {
            return Ok(());
        }
    }
}

fn advance(conn: &Connection, id: i64, now: i64, force_fail: bool) -> Result<TaskStatus> {
    let Some(row) = load(conn, id)? else {
        return Err(Error::unknown_task(id));
    };
    if let Some(s) = finished(&row) {
        return Ok(s); // another process got here first
    }
    if force_fail {
        return fail(conn, &row, &Error::backend(crate::faults::message("task")));
    }
    if !row.applied && now >= row.due_ms {
        if let Some(msg) = &row.fail {
            return fail(conn, &row, &Error::backend(msg.clone()));
        }
        conn.execute_batch("SAVEPOINT apply").db()?;
        let applied =
            if row.op == "create" { apply_create(conn, &row, now) } else { apply(conn, &row, now).map(|()| None) };
        match applied {
            Ok(None) => conn.execute_batch("RELEASE apply").db()?,
            Ok(Some(cut)) => {
                // An injected cut mid-create: the steps done so far stay (see `create`).
                conn.execute_batch("RELEASE apply").db()?;
                return fail(conn, &row, &cut);
            }
            Err(e) => {
                conn.execute_batch("ROLLBACK TO apply; RELEASE apply").db()?;
                tracing::info!(task = row.id, op = %row.op, error = %e, "sim task failed");
                return fail(conn, &row, &e);
            }
        }
        conn.prepare_cached("UPDATE tasks SET applied = 1 WHERE id = ?1").and_then(|mut s| s.execute([row.id])).db()?;
    }
    if now >= row.finish_ms {
        conn.prepare_cached("UPDATE tasks SET state = 'completed' WHERE id = ?1")
            .and_then(|mut s| s.execute([row.id]))
            .db()?;
        return Ok(TaskStatus::Completed(TaskOutput { new_guest: row.new_guest.map(|g| GuestId::new(g.to_string())) }));
    }
    Ok(TaskStatus::Running)
}

/// Marks the task failed and removes anything it half-created (a still-hidden clone).
fn fail(conn: &Connection, row: &TaskRow, e: &Error) -> Result<TaskStatus> {
    if let Some(g) = row.new_guest {
        if guests::row_any(conn, g)?.is_some_and(|r| !r.visible) {
            guests::remove(conn, g)?;
        }
    }
    conn.prepare_cached("UPDATE tasks SET state = 'failed', error_kind = ?2, error = ?3 WHERE id = ?1")
        .and_then(|mut s| s.execute(params![row.id, kind_name(e.kind()), e.message()]))
        .db()?;
    Ok(TaskStatus::Failed(e.clone()))
}

fn p_str<'a>(row: &'a TaskRow, key: &str) -> Result<&'a str> {
    row.params
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| Error::internal(format!("sim task {} lacks '{key}'", row.id)))
}

fn p_bool(row: &TaskRow, key: &str) -> bool {
    row.params.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn target(row: &TaskRow) -> Result<i64> {
    row.guest_id.ok_or_else(|| Error::internal(format!("sim task {} has no guest", row.id)))
}

/// Applies a create task (inside the caller's savepoint): every step of the requested
/// spec, see [`crate::create`]. `Ok(Some(e))` when an injected fault cut it.
fn apply_create(conn: &Connection, row: &TaskRow, now: i64) -> Result<Option<Error>> {
    let id = row.new_guest.ok_or_else(|| Error::internal(format!("sim task {} has no new guest", row.id)))?;
    let spec = row.params.get("spec").cloned().map(serde_json::from_value::<polyvisor_core::CreateSpec>);
    match spec {
        Some(Ok(spec)) => crate::create::apply_steps(conn, id, &spec, p_bool(row, "start"), now, row.finish_ms),
        Some(Err(_)) => Err(Error::internal(format!("sim task {} has an unreadable spec", row.id))),
        None => apply(conn, row, now).map(|()| None), // rows written before specs were stored
    }
}

/// Applies a task's effect (inside the caller's savepoint).
fn apply(conn: &Connection, row: &TaskRow, now: i64) -> Result<()> {
    match row.op.as_str() {
        "clone" | "create" => {
            let id = row.new_guest.ok_or_else(|| Error::internal(format!("sim task {} has no new guest", row.id)))?;
            let g = guests::row_any(conn, id)?
                .ok_or_else(|| Error::backend(format!("guest [{id}] vanished while being created")))?;
            if !g.visible {
                let (power, until) = if p_bool(row, "start") && row.finish_ms > now {
                    (PowerState::PoweringOn, row.finish_ms)
                } else if p_bool(row, "start") {
                    (PowerState::PoweredOn, 0)
                } else {
                    (PowerState::PoweredOff, 0)
                };
                conn.prepare_cached("UPDATE guests SET visible = 1, power = ?2, power_until = ?3 WHERE id = ?1")
                    .and_then(|mut s| s.execute(params![id, power.as_str(), until]))
                    .db()?;
            }
            Ok(())
        }
        "delete" => {
            let Some(g) = guests::row_any(conn, target(row)?)? else {
                return Ok(());
            };
            guests::ensure_no_dependants(conn, &g, "delete")?;
            guests::remove(conn, g.id)
        }
        "convert" => {
            let g = guests::row(conn, target(row)?)?;
            let template = p_bool(row, "template");
            if template && g.power_at(now) != PowerState::PoweredOff {
                return Err(Error::conflict(format!("guest [{}] must be powered off to become a template", g.id)));
            }
            conn.prepare_cached("UPDATE guests SET is_template = ?2 WHERE id = ?1")
                .and_then(|mut s| s.execute(params![g.id, template]))
                .db()
                .map(|_| ())
        }
        "snapshot_create" => {
            let g = guests::row(conn, target(row)?)?;
            let desc = row.params.get("description").and_then(Value::as_str);
            snapshots::create(conn, &g, p_str(row, "name")?, desc, p_bool(row, "memory"))
        }
        "snapshot_delete" => {
            let g = guests::row(conn, target(row)?)?;
            let name = p_str(row, "name")?;
            let Some(snap) = snapshots::find(conn, g.id, name)? else {
                return Ok(());
            };
            snapshots::ensure_no_dependants(conn, g.id, name, &snap, "delete")?;
            snapshots::remove(conn, g.id, &snap)
        }
        "revert" => {
            let g = guests::row(conn, target(row)?)?;
            let snap = snapshots::require(conn, g.id, p_str(row, "name")?)?;
            snapshots::revert(conn, g.id, &snap)
        }
        // Power transitions are applied at submit time; the task only tracks them.
        "power" => Ok(()),
        other => Err(Error::internal(format!("unknown sim task operation '{other}'"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_round_trip() {
        for k in [ErrorKind::Conflict, ErrorKind::NotFound, ErrorKind::Timeout, ErrorKind::Backend, ErrorKind::Internal]
        {
            assert_eq!(kind_parse(kind_name(k)), k);
        }
        assert_eq!(kind_parse("nonsense"), ErrorKind::Backend);
    }
}
