//! The demo estate a fresh database starts with, and bulk seeding for benchmarks.

use crate::db::{now_ms, Sql};
use crate::guests::{self, NewGuest, NETWORK};
use polyvisor_core::{PowerState, Result};
use rusqlite::{params, Connection};

/// Name of the snapshot RAS looks for on a template.
pub const RAS_SNAPSHOT: &str = "RAS_TEMPLATE_VERSION_1";

fn base(name: &str, os: &str, cpus: i64, memory_mb: i64, disk_gb: i64) -> NewGuest {
    NewGuest {
        name: name.to_string(),
        visible: true,
        is_template: false,
        power: PowerState::PoweredOff,
        power_until: 0,
        os: Some(os.to_string()),
        cpus,
        memory_mb,
        disk_gb,
        key: None,
        origin_id: None,
        linked_to: None,
        linked_snapshot: None,
        nics: Vec::new(),
    }
}

fn with_nic(conn: &Connection, mut g: NewGuest) -> Result<NewGuest> {
    g.nics.push((guests::alloc_mac(conn)?, None, Some(NETWORK.to_string())));
    Ok(g)
}

fn snapshot(conn: &Connection, guest: i64, name: &str, parent: Option<i64>, desc: &str, g: &NewGuest) -> Result<i64> {
    conn.execute(
        "INSERT INTO snapshots (guest_id, name, description, parent_id, includes_memory, power, cpus, memory_mb, created_unix)
         VALUES (?1, ?2, ?3, ?4, 0, 'powered_off', ?5, ?6, ?7)",
        params![guest, name, desc, parent, g.cpus, g.memory_mb, now_ms() / 1000],
    )
    .db()?;
    let id = conn.last_insert_rowid();
    conn.execute("UPDATE guests SET current_snapshot = ?2 WHERE id = ?1", params![guest, id]).db()?;
    Ok(id)
}

/// Seeds the demo estate: templates 9000-9002 and VMs 100-103 in mixed power states.
/// Guest 100 is a linked clone of template 9000.
pub(crate) fn demo(conn: &Connection) -> Result<()> {
    let now = now_ms();
    let mut t = base("tpl-debian12", "l26", 2, 2048, 20);
    t.is_template = true;
    let debian = with_nic(conn, t)?;
    guests::insert_with_id(conn, 9000, &debian, now)?;
    let s1 = snapshot(conn, 9000, "base-install", None, "Debian 12 minimal install", &debian)?;
    snapshot(conn, 9000, RAS_SNAPSHOT, Some(s1), "Prepared for RAS", &debian)?;

    let mut t = base("tpl-win11", "win11", 4, 8192, 64);
    t.is_template = true;
    let win = with_nic(conn, t)?;
    guests::insert_with_id(conn, 9001, &win, now)?;

    let mut t = base("tpl-ubuntu24", "l26", 2, 4096, 32);
    t.is_template = true;
    guests::insert_with_id(conn, 9002, &with_nic(conn, t)?, now)?;

    let mut web = base("web-01", "l26", 2, 2048, 20);
    web.power = PowerState::PoweredOn;
    web.origin_id = Some(9000);
    web.linked_to = Some(9000);
    guests::insert_with_id(conn, 100, &with_nic(conn, web)?, now)?;

    let mut db = base("db-01", "l26", 4, 8192, 100);
    db.power = PowerState::PoweredOn;
    guests::insert_with_id(conn, 101, &with_nic(conn, db)?, now)?;

    guests::insert_with_id(conn, 102, &with_nic(conn, base("build-01", "l26", 8, 16384, 200))?, now)?;

    let mut desk = base("desk-01", "win11", 4, 8192, 64);
    desk.power = PowerState::Suspended;
    desk.origin_id = Some(9001);
    guests::insert_with_id(conn, 103, &with_nic(conn, desk)?, now)?;

    crate::db::meta_set(conn, "next_guest_id", 104)
}

/// Inserts `count` running guests named `<prefix>-<id>` in the caller's transaction;
/// returns the first and last id.
pub(crate) fn bulk(conn: &Connection, count: u32, prefix: &str) -> Result<Option<(i64, i64)>> {
    let now = now_ms();
    let mut range = None;
    for _ in 0..count {
        let id = guests::alloc_id(conn)?;
        let mut g = base(&format!("{prefix}-{id}"), "l26", 1, 1024, 10);
        g.power = PowerState::PoweredOn;
        let g = with_nic(conn, g)?;
        guests::insert_with_id(conn, id, &g, now)?;
        range = Some(match range {
            None => (id, id),
            Some((first, _)) => (first, id),
        });
    }
    Ok(range)
}
