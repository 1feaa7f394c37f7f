//! Guest rows: reading (with lazily evaluated power), allocation of ids, MACs and IPv4
//! addresses (never reused), insertion and removal.

use crate::db::Sql;
use crate::power;
use polyvisor_core::{net, Error, Guest, GuestId, GuestSummary, Nic, PowerState, Result};
use rusqlite::{params, Connection, OptionalExtension, Row};

/// The node every sim guest lives on.
pub(crate) const NODE: &str = "sim1";
/// Default network name.
pub(crate) const NETWORK: &str = "vmbr0";
/// First id handed to new guests.
pub(crate) const FIRST_ID: i64 = 100;

/// A NIC as stored: (MAC, VLAN, network).
pub(crate) type NicRow = (String, Option<u32>, Option<String>);

/// One guest row.
#[derive(Clone, Debug)]
pub(crate) struct GuestRow {
    pub id: i64,
    pub name: String,
    pub visible: bool,
    pub is_template: bool,
    pub power: PowerState,
    pub power_until: i64,
    pub os: Option<String>,
    pub cpus: i64,
    pub memory_mb: i64,
    pub disk_gb: i64,
    pub ip: String,
    pub key: Option<String>,
    pub origin_id: Option<i64>,
    #[allow(dead_code)]
    pub current_snapshot: Option<i64>,
}

const COLUMNS: &str =
    "id, name, visible, is_template, power, power_until, os, cpus, memory_mb, disk_gb, ip, key, origin_id, current_snapshot";

fn from_row(r: &Row<'_>) -> rusqlite::Result<GuestRow> {
    Ok(GuestRow {
        id: r.get(0)?,
        name: r.get(1)?,
        visible: r.get(2)?,
        is_template: r.get(3)?,
        power: power::parse(&r.get::<_, String>(4)?),
        power_until: r.get(5)?,
        os: r.get(6)?,
        cpus: r.get(7)?,
        memory_mb: r.get(8)?,
        disk_gb: r.get(9)?,
        ip: r.get(10)?,
        key: r.get(11)?,
        origin_id: r.get(12)?,
        current_snapshot: r.get(13)?,
    })
}

impl GuestRow {
    /// The power state at `now_ms`.
    pub(crate) fn power_at(&self, now_ms: i64) -> PowerState {
        power::effective(self.power, self.power_until, now_ms)
    }
}

/// Any row (hidden in-progress clones included).
pub(crate) fn row_any(conn: &Connection, id: i64) -> Result<Option<GuestRow>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM guests WHERE id = ?1"))
        .and_then(|mut s| s.query_row([id], from_row).optional())
        .db()
}

/// A visible guest or `NotFound` ("guest [X] not found").
pub(crate) fn row(conn: &Connection, id: i64) -> Result<GuestRow> {
    match row_any(conn, id)? {
        Some(g) if g.visible => Ok(g),
        _ => Err(Error::not_found(format!("guest [{id}]"))),
    }
}

/// Any row with this platform key.
pub(crate) fn row_by_key(conn: &Connection, key: &str) -> Result<Option<GuestRow>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM guests WHERE key = ?1"))
        .and_then(|mut s| s.query_row([key], from_row).optional())
        .db()
}

/// Rows (any visibility) with this name.
pub(crate) fn rows_by_name(conn: &Connection, name: &str) -> Result<Vec<GuestRow>> {
    let mut s = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM guests WHERE name = ?1 ORDER BY id")).db()?;
    let rows = s.query_map([name], from_row).db()?.collect::<rusqlite::Result<Vec<_>>>().db()?;
    Ok(rows)
}

/// The full guest as the driver returns it.
pub(crate) fn to_guest(conn: &Connection, g: &GuestRow, now_ms: i64) -> Result<Guest> {
    let power = g.power_at(now_ms);
    let mut s = conn.prepare_cached("SELECT mac, vlan, network FROM nics WHERE guest_id = ?1 ORDER BY idx").db()?;
    let nics = s
        .query_map([g.id], |r| {
            Ok(Nic {
                mac: r.get(0)?,
                ipv4: Vec::new(),
                ipv6: Vec::new(),
                vlan: r.get::<_, Option<i64>>(1)?.and_then(|v| u32::try_from(v).ok()),
                network: r.get(2)?,
            })
        })
        .db()?
        .collect::<rusqlite::Result<Vec<_>>>()
        .db()?;
    let mut nics = nics;
    if power == PowerState::PoweredOn {
        if let Some(first) = nics.first_mut() {
            first.ipv4.push(g.ip.clone());
        }
    }
    Ok(Guest {
        id: GuestId::new(g.id.to_string()),
        name: display_name(g),
        node: Some(NODE.to_string()),
        os: g.os.clone(),
        cpus: u32::try_from(g.cpus).ok(),
        memory_mb: u64::try_from(g.memory_mb).ok(),
        nics,
        is_template: g.is_template,
        power,
        raw_power_state: power::raw_name(power).to_string(),
        key: g.key.clone(),
    })
}

fn display_name(g: &GuestRow) -> String {
    if g.name.is_empty() {
        format!("VM-{}", g.id)
    } else {
        g.name.clone()
    }
}

/// Every visible guest, by id.
pub(crate) fn list(conn: &Connection, now_ms: i64) -> Result<Vec<GuestSummary>> {
    let mut s = conn
        .prepare_cached(
            "SELECT id, name, power, power_until, is_template, key FROM guests WHERE visible = 1 ORDER BY id",
        )
        .db()?;
    let rows = s
        .query_map([], |r| {
            let id: i64 = r.get(0)?;
            let name: String = r.get(1)?;
            let stored = power::parse(r.get_ref(2)?.as_str()?);
            Ok(GuestSummary {
                id: GuestId::new(id.to_string()),
                name: if name.is_empty() { format!("VM-{id}") } else { name },
                power: power::effective(stored, r.get(3)?, now_ms),
                is_template: r.get(4)?,
                key: r.get(5)?,
                node: Some(NODE.to_string()),
            })
        })
        .db()?
        .collect::<rusqlite::Result<Vec<_>>>()
        .db()?;
    Ok(rows)
}

/// Stores a new power state and deadline.
pub(crate) fn set_power(conn: &Connection, id: i64, state: PowerState, until_ms: i64) -> Result<()> {
    conn.prepare_cached("UPDATE guests SET power = ?2, power_until = ?3 WHERE id = ?1")
        .and_then(|mut s| s.execute(params![id, state.as_str(), until_ms]))
        .db()
        .map(|_| ())
}

/// A fresh guest id (never reused: a counter that skips ids in use).
pub(crate) fn alloc_id(conn: &Connection) -> Result<i64> {
    let mut exists = conn.prepare_cached("SELECT 1 FROM guests WHERE id = ?1").db()?;
    loop {
        let id = crate::db::next_counter(conn, "next_guest_id", FIRST_ID)?;
        if !exists.exists([id]).db()? {
            return Ok(id);
        }
    }
}

/// A fresh, never-issued MAC `52:54:00:xx:xx:xx`.
pub(crate) fn alloc_mac(conn: &Connection) -> Result<String> {
    let mut issued = conn.prepare_cached("SELECT 1 FROM macs_issued WHERE mac = ?1").db()?;
    for _ in 0..1_000_000 {
        let n = crate::db::next_counter(conn, "next_mac", 1)?;
        if n > 0xFF_FFFF {
            break;
        }
        let mac = format!("52:54:00:{:02X}:{:02X}:{:02X}", (n >> 16) & 0xFF, (n >> 8) & 0xFF, n & 0xFF);
        if !issued.exists([&mac]).db()? {
            mark_mac(conn, &mac)?;
            return Ok(mac);
        }
    }
    Err(Error::backend("the sim has run out of MAC addresses; run `polyvisor sim reset`"))
}

/// Records a MAC as issued (so the allocator never hands it out).
pub(crate) fn mark_mac(conn: &Connection, mac: &str) -> Result<()> {
    conn.prepare_cached("INSERT OR IGNORE INTO macs_issued (mac) VALUES (?1)")
        .and_then(|mut s| s.execute([mac]))
        .db()
        .map(|_| ())
}

/// The guest whose NIC has this (normalised) MAC, if any.
pub(crate) fn mac_user(conn: &Connection, mac: &str) -> Result<Option<i64>> {
    conn.prepare_cached("SELECT guest_id FROM nics WHERE mac = ?1 LIMIT 1")
        .and_then(|mut s| s.query_row([mac], |r| r.get(0)).optional())
        .db()
}

/// A requested MAC, normalised and checked against every existing NIC.
pub(crate) fn claim_mac(conn: &Connection, raw: &str) -> Result<String> {
    let mac = net::normalize_mac(raw)
        .ok_or_else(|| Error::invalid(format!("invalid MAC address [{}]", crate::names::shown(raw))))?;
    let user: Option<i64> = conn
        .prepare_cached("SELECT guest_id FROM nics WHERE mac = ?1 LIMIT 1")
        .and_then(|mut s| s.query_row([&mac], |r| r.get(0)).optional())
        .db()?;
    if let Some(g) = user {
        return Err(Error::already_exists(format!("MAC {mac} is already in use by guest [{g}]")));
    }
    mark_mac(conn, &mac)?;
    Ok(mac)
}

/// The IPv4 address for allocation number `n` (10.77.0.2 onwards, unique per n).
pub(crate) fn ip_for(n: i64) -> String {
    let per_subnet = 250;
    let host = n % per_subnet + 2;
    let subnet = n / per_subnet;
    format!("10.{}.{}.{}", 77 + subnet / 256, subnet % 256, host)
}

/// A fresh, never-issued IPv4 address.
pub(crate) fn alloc_ip(conn: &Connection) -> Result<String> {
    Ok(ip_for(crate::db::next_counter(conn, "next_ip", 0)?))
}

/// A guest to insert.
#[derive(Clone, Debug)]
pub(crate) struct NewGuest {
    pub name: String,
    pub visible: bool,
    pub is_template: bool,
    pub power: PowerState,
    pub power_until: i64,
    pub os: Option<String>,
    pub cpus: i64,
    pub memory_mb: i64,
    pub disk_gb: i64,
    pub key: Option<String>,
    pub origin_id: Option<i64>,
    pub linked_to: Option<i64>,
    pub linked_snapshot: Option<i64>,
    /// NICs: (MAC, VLAN, network).
    pub nics: Vec<NicRow>,
}

/// Inserts a guest with a fresh id and IPv4 address; returns the id.
pub(crate) fn insert(conn: &Connection, g: &NewGuest, now_ms: i64) -> Result<i64> {
    let id = alloc_id(conn)?;
    insert_with_id(conn, id, g, now_ms)?;
    Ok(id)
}

/// Inserts a guest with a given id.
pub(crate) fn insert_with_id(conn: &Connection, id: i64, g: &NewGuest, now_ms: i64) -> Result<()> {
    let ip = alloc_ip(conn)?;
    conn.prepare_cached(
        "INSERT INTO guests (id, name, visible, is_template, power, power_until, os, cpus, memory_mb, disk_gb, ip, key, origin_id, linked_to, linked_snapshot, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
    )
    .and_then(|mut s| {
        s.execute(params![
            id,
            g.name,
            g.visible,
            g.is_template,
            g.power.as_str(),
            g.power_until,
            g.os,
            g.cpus,
            g.memory_mb,
            g.disk_gb,
            ip,
            g.key,
            g.origin_id,
            g.linked_to,
            g.linked_snapshot,
            now_ms
        ])
    })
    .db()?;
    let mut nic =
        conn.prepare_cached("INSERT INTO nics (guest_id, idx, mac, vlan, network) VALUES (?1, ?2, ?3, ?4, ?5)").db()?;
    for (i, (mac, vlan, network)) in g.nics.iter().enumerate() {
        nic.execute(params![id, i as i64, mac, vlan.map(i64::from), network]).db()?;
    }
    Ok(())
}

/// NICs of a guest as (MAC, VLAN, network).
pub(crate) fn nics_of(conn: &Connection, id: i64) -> Result<Vec<NicRow>> {
    let mut s = conn.prepare_cached("SELECT mac, vlan, network FROM nics WHERE guest_id = ?1 ORDER BY idx").db()?;
    let v = s
        .query_map([id], |r| {
            Ok((r.get(0)?, r.get::<_, Option<i64>>(1)?.and_then(|v| u32::try_from(v).ok()), r.get(2)?))
        })
        .db()?
        .collect::<rusqlite::Result<Vec<_>>>()
        .db()?;
    Ok(v)
}

/// Removes a guest with its NICs and snapshots (issued MACs stay retired).
pub(crate) fn remove(conn: &Connection, id: i64) -> Result<()> {
    for sql in [
        "DELETE FROM nics WHERE guest_id = ?1",
        "DELETE FROM snapshots WHERE guest_id = ?1",
        "DELETE FROM guests WHERE id = ?1",
    ] {
        conn.prepare_cached(sql).and_then(|mut s| s.execute([id])).db()?;
    }
    Ok(())
}

/// Guests (any visibility) that are linked clones of `id`: (id, name).
pub(crate) fn linked_dependants(conn: &Connection, id: i64) -> Result<Vec<(i64, String)>> {
    id_names(conn, "SELECT id, name FROM guests WHERE linked_to = ?1 ORDER BY id", id)
}

/// Guests (any visibility) that are linked clones based on snapshot row `snap`.
pub(crate) fn snapshot_dependants(conn: &Connection, snap: i64) -> Result<Vec<(i64, String)>> {
    id_names(conn, "SELECT id, name FROM guests WHERE linked_snapshot = ?1 ORDER BY id", snap)
}

/// Runs a one-parameter `SELECT id, name …` query.
fn id_names(conn: &Connection, sql: &str, param: i64) -> Result<Vec<(i64, String)>> {
    let mut s = conn.prepare_cached(sql).db()?;
    let v = s.query_map([param], |r| Ok((r.get(0)?, r.get(1)?))).db()?.collect::<rusqlite::Result<Vec<_>>>().db()?;
    Ok(v)
}

/// "[101] web-01, [102] web-02" (at most 10 named, then a count).
pub(crate) fn describe(list: &[(i64, String)]) -> String {
    let mut parts: Vec<String> = list.iter().take(10).map(|(id, name)| format!("[{id}] {name}")).collect();
    if list.len() > 10 {
        parts.push(format!("and {} more", list.len() - 10));
    }
    parts.join(", ")
}

/// `Conflict` when linked clones depend on guest `g`.
pub(crate) fn ensure_no_dependants(conn: &Connection, g: &GuestRow, action: &str) -> Result<()> {
    let deps = linked_dependants(conn, g.id)?;
    if deps.is_empty() {
        return Ok(());
    }
    Err(Error::conflict(format!(
        "cannot {action} guest [{}] ({}): linked clones depend on it: {}; delete them first",
        g.id,
        g.name,
        describe(&deps)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ips_are_unique_and_routable() {
        let ips: std::collections::HashSet<String> = (0..70_000).map(ip_for).collect();
        assert_eq!(ips.len(), 70_000);
        assert_eq!(ip_for(0), "10.77.0.2");
        assert_eq!(ip_for(249), "10.77.0.251");
        assert_eq!(ip_for(250), "10.77.1.2");
        assert!(ips.iter().all(|ip| net::is_reportable_ipv4(ip)));
    }
}
