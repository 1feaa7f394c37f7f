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
                Error::unavailable(format!("cannot create the sim database directory {}", parent.display()))
                    .with_detail(e.to_string())
            })?;
        }
        let mut conn = Connection::open(path).map_err(|e| {
            Error::unavailable(format!("cannot open the sim database {}", path.display())).with_detail(e.to_string())
        })?;
        conn.busy_timeout(BUSY_TIMEOUT).db()?;
        conn.set_prepared_statement_cache_capacity(64);
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).db()?;
        if version == 0 {
            let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).db()?;
            if !mode.eq_ignore_ascii_case("wal") {
                tracing::warn!(%mode, "sim database is not in WAL mode");
            }
            init(&mut conn, seed)?;
        } else if version > schema::VERSION {
            return Err(Error::unavailable(format!(
                "sim database {} has schema version {version}, newer than this polyvisor ({})",
                path.display(),
                schema::VERSION
            )));
        }
        conn.execute_batch("PRAGMA synchronous=NORMAL").db()?;
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
fn init(conn: &mut Connection, seed: bool) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).db()?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0)).db()?;
    if version == 0 {
        tx.execute_batch(schema::CREATE).db()?;
        if seed {
            crate::seed::demo(&tx)?;
        }
        tx.execute_batch(&format!("PRAGMA user_version = {}", schema::VERSION)).db()?;
    }
    tx.commit().db()
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
