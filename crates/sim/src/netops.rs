//! Guest networking in the simulator (CloudShell L2/L3): VLAN NICs, per-owner subnets,
//! NICs on subnets and stored security rules. Everything lives in the sim database.
//!
//! L2 semantics: `attach_vlan` retags the NIC at `nic_index`, else reuses a NIC already on
//! that VLAN, else adds one. `detach_vlan` clears the tag of the first NIC (a guest never
//! loses its primary NIC) and removes any other NIC.

use crate::db::{next_counter, Sql};
use crate::guests::{self, NETWORK};
use crate::names::shown;
use polyvisor_core::netops::{check_label, parse_cidr, SecurityRule, Subnet, SubnetSpec, VlanAttach, VLAN_RANGE};
use polyvisor_core::{net, Error, Nic, Result};
use rusqlite::{params, Connection, OptionalExtension};

/// The subnets table (also created lazily, so databases made before it existed work).
pub(crate) const CREATE: &str = "CREATE TABLE IF NOT EXISTS subnets (
    id     TEXT PRIMARY KEY,
    owner  TEXT NOT NULL,
    alias  TEXT NOT NULL,
    cidr   TEXT NOT NULL,
    public INTEGER NOT NULL,
    rules  TEXT NOT NULL DEFAULT '[]',
    UNIQUE (owner, alias)
) WITHOUT ROWID;";

/// The `network` value of a NIC on subnet `id`.
fn subnet_network(id: &str) -> String {
    format!("subnet:{id}")
}

fn ensure_table(conn: &Connection) -> Result<()> {
    conn.execute_batch(CREATE).db()
}

fn nic(mac: String, vlan: Option<u32>, network: Option<String>) -> Nic {
    Nic { mac, ipv4: Vec::new(), ipv6: Vec::new(), network, vlan }
}

/// Puts a NIC of guest `id` on a VLAN (see the module doc).
pub(crate) fn attach_vlan(tx: &Connection, id: i64, req: &VlanAttach) -> Result<Nic> {
    if !VLAN_RANGE.contains(&req.vlan) {
        return Err(Error::invalid("VLAN tags must be between 1 and 4094"));
    }
    let g = guests::row(tx, id)?;
    if g.is_template {
        return Err(Error::conflict(format!("guest [{id}] is a template; its NICs are not changed")));
    }
    let nics = guests::nics_of(tx, id)?;
    if let Some(i) = req.nic_index {
        let Some((mac, _, network)) = nics.get(i).cloned() else {
            return Err(Error::invalid(format!("guest [{id}] has no NIC at index {i}")));
        };
        tx.execute("UPDATE nics SET vlan = ?3 WHERE guest_id = ?1 AND idx = ?2", params![id, i as i64, req.vlan])
            .db()?;
        return Ok(nic(mac, Some(req.vlan), network));
    }
    if let Some((mac, vlan, network)) = nics.iter().find(|n| n.1 == Some(req.vlan)).cloned() {
        return Ok(nic(mac, vlan, network));
    }
    let idx: i64 =
        tx.query_row("SELECT COALESCE(MAX(idx) + 1, 0) FROM nics WHERE guest_id = ?1", [id], |r| r.get(0)).db()?;
    let mac = guests::alloc_mac(tx)?;
    let network = req.network.clone().unwrap_or_else(|| NETWORK.to_string());
    tx.execute(
        "INSERT INTO nics (guest_id, idx, mac, vlan, network) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, idx, mac, req.vlan, network],
    )
    .db()?;
    Ok(nic(mac, Some(req.vlan), Some(network)))
}

/// Takes the NIC with `mac` off its VLAN (see the module doc); a missing NIC is success.
pub(crate) fn detach_vlan(tx: &Connection, id: i64, mac: &str) -> Result<()> {
    let mac = net::normalize_mac(mac).ok_or_else(|| Error::invalid(format!("invalid MAC address [{}]", shown(mac))))?;
    let g = guests::row(tx, id)?;
    let idx: Option<i64> = tx
        .query_row("SELECT idx FROM nics WHERE guest_id = ?1 AND mac = ?2", params![g.id, mac], |r| r.get(0))
        .optional()
        .db()?;
    match idx {
        None => Ok(()),
        Some(0) => tx.execute("UPDATE nics SET vlan = NULL WHERE guest_id = ?1 AND idx = 0", [g.id]).db().map(|_| ()),
        Some(i) => tx.execute("DELETE FROM nics WHERE guest_id = ?1 AND idx = ?2", params![g.id, i]).db().map(|_| ()),
    }
}

fn subnet_by_id(tx: &Connection, sid: &str) -> Result<Option<Subnet>> {
    tx.query_row("SELECT id, owner, alias, cidr FROM subnets WHERE id = ?1", [sid], |r| {
        Ok(Subnet { id: r.get(0)?, owner: r.get(1)?, alias: r.get(2)?, cidr: r.get(3)? })
    })
    .optional()
    .db()
}

/// Get-or-create of the subnet `(owner, alias)`.
pub(crate) fn ensure_subnet(tx: &Connection, spec: &SubnetSpec) -> Result<Subnet> {
    check_label("owner", &spec.owner)?;
    check_label("alias", &spec.alias)?;
    if parse_cidr(&spec.cidr).is_none() {
        return Err(Error::invalid(format!("subnet: invalid IPv4 CIDR [{}]", shown(&spec.cidr))));
    }
    ensure_table(tx)?;
    let found = tx
        .query_row(
            "SELECT id, owner, alias, cidr FROM subnets WHERE owner = ?1 AND alias = ?2",
            params![spec.owner, spec.alias],
            |r| Ok(Subnet { id: r.get(0)?, owner: r.get(1)?, alias: r.get(2)?, cidr: r.get(3)? }),
        )
        .optional()
        .db()?;
    if let Some(s) = found {
        if s.cidr != spec.cidr.trim() {
            return Err(Error::conflict(format!("subnet [{}] exists with another CIDR ({})", s.id, s.cidr)));
        }
        return Ok(s);
    }
    let id = format!("subnet-{}", next_counter(tx, "next_subnet", 1)?);
    tx.execute(
        "INSERT INTO subnets (id, owner, alias, cidr, public) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, spec.owner, spec.alias, spec.cidr.trim(), spec.public],
    )
    .db()?;
    Ok(Subnet { id, owner: spec.owner.clone(), alias: spec.alias.clone(), cidr: spec.cidr.trim().to_string() })
}

/// Connects guest `id` to subnet `sid` (a NIC whose network is `subnet:<sid>`).
pub(crate) fn connect_subnet(tx: &Connection, id: i64, sid: &str) -> Result<Nic> {
    ensure_table(tx)?;
    let g = guests::row(tx, id)?;
    if subnet_by_id(tx, sid)?.is_none() {
        return Err(Error::not_found(format!("subnet [{}]", shown(sid))));
    }
    let network = subnet_network(sid);
    if let Some((mac, vlan, net)) = guests::nics_of(tx, g.id)?.into_iter().find(|n| n.2.as_deref() == Some(&network)) {
        return Ok(nic(mac, vlan, net));
    }
    let idx: i64 =
        tx.query_row("SELECT COALESCE(MAX(idx) + 1, 0) FROM nics WHERE guest_id = ?1", [id], |r| r.get(0)).db()?;
    let mac = guests::alloc_mac(tx)?;
    tx.execute(
        "INSERT INTO nics (guest_id, idx, mac, vlan, network) VALUES (?1, ?2, ?3, NULL, ?4)",
        params![id, idx, mac, network],
    )
    .db()?;
    Ok(nic(mac, None, Some(network)))
}

/// Deletes the subnets of `owner` and the NICs still on them.
pub(crate) fn delete_subnets(tx: &Connection, owner: &str) -> Result<usize> {
    check_label("owner", owner)?;
    ensure_table(tx)?;
    let ids: Vec<String> = {
        let mut s = tx.prepare_cached("SELECT id FROM subnets WHERE owner = ?1").db()?;
        let v = s.query_map([owner], |r| r.get(0)).db()?.collect::<rusqlite::Result<Vec<_>>>().db()?;
        v
    };
    for sid in &ids {
        tx.execute("DELETE FROM nics WHERE network = ?1", [subnet_network(sid)]).db()?;
        tx.execute("DELETE FROM subnets WHERE id = ?1", [sid]).db()?;
    }
    Ok(ids.len())
}

/// Stores the rules of subnet `sid` (the guest must be connected to it).
pub(crate) fn set_rules(tx: &Connection, id: i64, sid: &str, rules: &[SecurityRule]) -> Result<()> {
    for r in rules {
        r.validate()?;
    }
    ensure_table(tx)?;
    let g = guests::row(tx, id)?;
    if subnet_by_id(tx, sid)?.is_none() {
        return Err(Error::not_found(format!("subnet [{}]", shown(sid))));
    }
    let network = subnet_network(sid);
    if !guests::nics_of(tx, g.id)?.iter().any(|n| n.2.as_deref() == Some(&network)) {
        return Err(Error::conflict(format!("guest [{id}] is not connected to subnet [{}]", shown(sid))));
    }
    let json = serde_json::to_string(rules).map_err(|e| Error::internal("cannot store rules").with_source(e))?;
    tx.execute("UPDATE subnets SET rules = ?2 WHERE id = ?1", params![sid, json]).db().map(|_| ())
}

/// The stored rules of subnet `sid` (for tests and `sim state`).
pub(crate) fn rules_of(conn: &Connection, sid: &str) -> Result<Vec<SecurityRule>> {
    ensure_table(conn)?;
    let raw: Option<String> =
        conn.query_row("SELECT rules FROM subnets WHERE id = ?1", [sid], |r| r.get(0)).optional().db()?;
    let raw = raw.ok_or_else(|| Error::not_found(format!("subnet [{}]", shown(sid))))?;
    serde_json::from_str(&raw).map_err(|e| Error::internal("stored rules are corrupt").with_source(e))
}
