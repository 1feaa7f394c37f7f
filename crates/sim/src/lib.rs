//! Embedded persistent simulator driver (the zero-setup default).
//!
//! State lives in one SQLite database (WAL, 5 s busy timeout, IMMEDIATE write
//! transactions), so any number of processes share it. Nothing runs in the background:
//! power transitions and tasks are evaluated lazily on every read from stored deadlines.
//!
//! Configuration (settings key, then environment variable, then default):
//! `sim_db` / `POLYVISOR_SIM_DB` (`<data dir>/polyvisor/sim.db`),
//! `sim_task_ms` / `POLYVISOR_SIM_TASK_MS` (database value from `polyvisor sim set-timing`, else 1500),
//! `sim_boot_ms` / `POLYVISOR_SIM_BOOT_MS` (likewise, else 3000),
//! `sim_seed` / `POLYVISOR_SIM_SEED` (true: a fresh database gets the demo estate).

pub mod admin;
pub mod config;
pub mod control;
mod create;
mod db;
mod driver;
mod events;
pub mod faults;
mod guests;
mod names;
mod netops;
pub mod power;
mod schema;
pub mod seed;
mod snapshots;
mod tasks;

pub use driver::SimDriver;

use polyvisor_core::{Capabilities, ConsoleKind, Driver, Result, Settings, TemplateStrategy};
use std::sync::Arc;

/// Builds the driver from settings: opens (creating and seeding if new) the database.
pub fn open(settings: &Settings) -> Result<Arc<dyn Driver>> {
    Ok(Arc::new(SimDriver::new(config::Config::resolve(settings)?)?))
}

/// The simulator's capabilities after checking the settings, without opening (or
/// creating) the database. It simulates everything, consoles included.
pub fn capabilities(settings: &Settings) -> Result<Capabilities> {
    config::Config::resolve(settings)?;
    Ok(sim_capabilities())
}

/// What the simulator can do (the same for every configuration).
pub(crate) fn sim_capabilities() -> Capabilities {
    Capabilities {
        suspend: true,
        templates: TemplateStrategy::Flag,
        linked_clones: true,
        snapshots: true,
        snapshot_memory: true,
        clone_from_snapshot: true,
        create: true,
        consoles: vec![ConsoleKind::Vnc],
        task_poll_secs: 1,
        networking: polyvisor_core::netops::NetworkCaps { vlan_nics: true, subnets: true, security_groups: true },
        native_events: true,
        event_wakeup: false,
        metrics: true,
    }
}
