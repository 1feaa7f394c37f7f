//! Out-of-process control of a sim database (used by `polyvisor sim` and by tests):
//! faults, timing, bulk seeding, reset, counts.

use crate::db::{meta_set, Db, Sql};
use crate::faults::{self, Fault, Mode, Op};
use crate::schema;
use polyvisor_core::{GuestSummary, Result};
use std::path::Path;

/// A handle on a sim database.
pub struct SimDb {
    db: Db,
}

/// Counts for `polyvisor sim status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Visible guests (templates included).
    pub guests: i64,
    /// Templates.
    pub templates: i64,
    /// Clones/creates still in progress (hidden).
    pub pending: i64,
    /// Snapshots.
    pub snapshots: i64,
    /// Running tasks.
    pub running_tasks: i64,
    /// Persisted task duration, ms (if set).
    pub task_ms: Option<i64>,
    /// Persisted boot duration, ms (if set).
    pub boot_ms: Option<i64>,
}

impl SimDb {
    /// Opens (creating, and seeding when `seed`) the database at `path`.
    pub fn open(path: &Path, seed: bool) -> Result<SimDb> {
        Ok(SimDb { db: Db::open(path, seed)? })
    }

    /// Arms a fault knob.
    pub fn set_fault(&self, op: Op, count: u32, latency_ms: u32, mode: Mode) -> Result<()> {
        self.db.write(|tx| faults::set(tx, op, i64::from(count), i64::from(latency_ms), mode))
    }

    /// Clears one knob or all.
    pub fn clear_faults(&self, op: Option<Op>) -> Result<()> {
        self.db.write(|tx| faults::clear(tx, op))
    }

    /// Every knob.
    pub fn faults(&self) -> Result<Vec<Fault>> {
        self.db.read(faults::list)
    }

    /// Persists task/boot durations (explicit settings/env still win).
    pub fn set_timing(&self, task_ms: Option<u32>, boot_ms: Option<u32>) -> Result<()> {
        self.db.write(|tx| {
            if let Some(v) = task_ms {
                meta_set(tx, "task_ms", i64::from(v))?;
            }
            if let Some(v) = boot_ms {
                meta_set(tx, "boot_ms", i64::from(v))?;
            }
            Ok(())
        })
    }

    /// Inserts `count` running guests in one transaction; returns the id range.
    pub fn seed_guests(&self, count: u32, prefix: &str) -> Result<Option<(i64, i64)>> {
        self.db.write(|tx| crate::seed::bulk(tx, count, prefix))
    }

    /// Deletes everything (timing kept); re-seeds the demo estate unless `empty`.
    pub fn reset(&self, empty: bool) -> Result<()> {
        self.db.write(|tx| {
            tx.execute_batch(crate::netops::CREATE).db()?;
            tx.execute_batch(schema::CLEAR).db()?;
            if !empty {
                crate::seed::demo(tx)?;
            }
            Ok(())
        })
    }

    /// Visible guests, after applying every due task (as the driver's reads do, so
    /// `polyvisor sim list` and `guests/list`/`guests/get` agree).
    pub fn list(&self) -> Result<Vec<GuestSummary>> {
        crate::tasks::settle_due(&self.db)?;
        self.db.read(|c| crate::guests::list(c, crate::db::now_ms()))
    }

    /// IPv4 address a guest shows once running (for `list`).
    pub fn guest_ip(&self, id: &str) -> Result<Option<String>> {
        let Ok(id) = id.parse::<i64>() else {
            return Ok(None);
        };
        self.db.read(|c| Ok(crate::guests::row_any(c, id)?.map(|g| g.ip)))
    }

    /// Counts, after applying every due task (like [`SimDb::list`]).
    pub fn counts(&self) -> Result<Counts> {
        crate::tasks::settle_due(&self.db)?;
        self.db.read(|c| {
            let one = |sql: &str| c.query_row(sql, [], |r| r.get::<_, i64>(0)).db();
            Ok(Counts {
                guests: one("SELECT COUNT(*) FROM guests WHERE visible = 1")?,
                templates: one("SELECT COUNT(*) FROM guests WHERE visible = 1 AND is_template = 1")?,
                pending: one("SELECT COUNT(*) FROM guests WHERE visible = 0")?,
                snapshots: one("SELECT COUNT(*) FROM snapshots")?,
                running_tasks: one("SELECT COUNT(*) FROM tasks WHERE state = 'running'")?,
                task_ms: crate::db::meta_get(c, "task_ms")?,
                boot_ms: crate::db::meta_get(c, "boot_ms")?,
            })
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        self.db.path()
    }
}
