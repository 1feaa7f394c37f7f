//! The SQLite connection: opening (WAL, busy timeout, schema check), read access and
//! IMMEDIATE write transactions, and the mapping of SQLite failures to core errors.

use crate::schema;
use polyvisor_core::{Error, Result};
use rusqlite::{Connection, ErrorCode, OptionalExtension, Transaction, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a call waits for another process holding the write lock.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Maps a SQLite error to a core error without leaking internals into the message.
pub(crate) fn sql_error(e: rusqlite::Error) -> Error {
    let busy = matches!(e.sqlite_error_code(), Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked));
    if busy {
        Error::unavailable("sim database is busy (locked by another process); retry").with_detail(e.to_string())
    } else {
        Error::internal("sim database error").with_detail(e.to_string())
    }
}

/// A failure while opening the database file: names the file and the cause (the
/// `sim_db` setting, `--db` or `POLYVISOR_SIM_DB` chose it, so the operator can fix it).
fn open_error(path: &Path, e: rusqlite::Error) -> Error {
    let cause = match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => {
            "the file is not a SQLite database (point sim_db at a sim database or a new file)".to_string()
        }
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => return sql_error(e),
        Some(ErrorCode::CannotOpen) => {
            "the file cannot be opened (a directory, or a missing or unreadable path)".to_string()
        }
        Some(ErrorCode::PermissionDenied | ErrorCode::ReadOnly) => {
            "permission denied (the database and its directory must be writable)".to_string()
        }
        Some(ErrorCode::DatabaseCorrupt) => "the database file is corrupt".to_string(),
        Some(ErrorCode::DiskFull) => "the disk is full".to_string(),
        Some(ErrorCode::SystemIoFailure) => "an I/O error".to_string(),
        // SQLite's own description of anything else (never contains secrets).
        _ => e.to_string(),
    };
    Error::unavailable(format!("cannot open the sim database {}: {cause}", path.display())).with_detail(e.to_string())
}

/// `?`-friendly conversion of rusqlite results.
pub(crate) trait Sql<T> {
    /// Converts the error with [`sql_error`].
    fn db(self) -> Result<T>;
}

impl<T> Sql<T> for rusqlite::Result<T> {
    fn db(self) -> Result<T> {
        self.map_err(sql_error)
    }
}

/// One open sim database (one connection, serialised by a mutex).
pub(crate) struct Db {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl Db {
    /// Opens (creating if needed) the database at `path`. A fresh database gets the schema
    /// and, when `seed` is true, the demo estate.
    pub(crate) fn open(path: &Path, seed: bool) -> Result<Db> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                Error::unavailable(format!("cannot create the sim database directory {}: {e}", parent.display()))
            })?;
        }
        let opening = |e: rusqlite::Error| open_error(path, e);
        let mut conn = Connection::open(path).map_err(opening)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(opening)?;
        conn.set_prepared_statement_cache_capacity(64);
        // The first read of the file: a file that is not a SQLite database fails here.
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(opening)?;
        if version == 0 {
            let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).map_err(opening)?;
            if !mode.eq_ignore_ascii_case("wal") {
                tracing::warn!(%mode, "sim database is not in WAL mode");
            }
            init(&mut conn, seed, path)?;
        } else if version > schema::VERSION {
            return Err(Error::unavailable(format!(
                "sim database {} has schema version {version}, newer than this polyvisor ({})",
                path.display(),
                schema::VERSION
            )));
        }
        conn.execute_batch("PRAGMA synchronous=NORMAL").map_err(opening)?;
        Ok(Db { conn: Mutex::new(conn), path: path.to_path_buf() })
    }

    /// The database file path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs read-only work on the connection (autocommit; sees the latest commit).
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.lock();
        f(&conn)
    }

    /// Runs `f` in an IMMEDIATE transaction: committed when `f` succeeds, rolled back
    /// (nothing half-done) when it fails.
    pub(crate) fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).db()?;
        let out = f(&tx)?;
        tx.commit().db()?;
        Ok(out)
    }
}

/// Creates the schema (and seeds) unless another process did it first.
fn init(conn: &mut Connection, seed: bool, path: &Path) -> Result<()> {
    let opening = |e: rusqlite::Error| open_error(path, e);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(opening)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(opening)?;
    if version == 0 {
        tx.execute_batch(schema::CREATE).map_err(opening)?;
        if seed {
            crate::seed::demo(&tx)?;
        }
        tx.execute_batch(&format!("PRAGMA user_version = {}", schema::VERSION)).map_err(opening)?;
    }
    tx.execute_batch(schema::EVENTS).map_err(opening)?;
    tx.commit().map_err(opening)
}

/// An integer from the `meta` table.
pub(crate) fn meta_get(conn: &Connection, key: &str) -> Result<Option<i64>> {
    conn.prepare_cached("SELECT value FROM meta WHERE key = ?1")
        .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
        .db()
}

/// Sets an integer in the `meta` table.
pub(crate) fn meta_set(conn: &Connection, key: &str, value: i64) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    )
    .and_then(|mut s| s.execute(rusqlite::params![key, value]))
    .db()
    .map(|_| ())
}

/// Returns the counter `key` (starting at `start`) and increments it.
pub(crate) fn next_counter(conn: &Connection, key: &str, start: i64) -> Result<i64> {
    let v = meta_get(conn, key)?.unwrap_or(start).max(start);
    meta_set(conn, key, v + 1)?;
    Ok(v)
}
