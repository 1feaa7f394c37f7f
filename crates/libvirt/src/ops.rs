//! Blocking libvirt operations (run only inside [`crate::conn::call`]).

use crate::conn::{lv_err, Conn};
use crate::domxml::DomainXml;
use crate::meta::{Meta, NS, PREFIX};
use crate::names;
use crate::state::map_state;
use polyvisor_core::{net, Error, Guest, GuestId, GuestSummary, Nic, Result, Snapshot};
use virt::domain::Domain;
use virt::domain_snapshot::DomainSnapshot;
use virt::storage_pool::StoragePool;
use virt::storage_vol::StorageVol;

/// Looks a domain up by UUID; `NotFound` names the id.
pub(crate) fn lookup(c: &Conn, id: &str) -> Result<Domain> {
    names::validate_uuid(id)?;
    Domain::lookup_by_uuid_string(c, id).map_err(|e| {
        let err = lv_err(e, "lookup", "");
        if err.is_not_found() {
            Error::not_found(format!("guest [{id}]"))
        } else {
            err
        }
    })
}

/// The domain's XML (inactive definition when `inactive`).
pub(crate) fn xml(d: &Domain, inactive: bool) -> Result<(String, DomainXml)> {
    let flags = if inactive { virt::sys::VIR_DOMAIN_XML_INACTIVE } else { 0 };
    let x = d.get_xml_desc(flags).map_err(|e| lv_err(e, "read domain XML", ""))?;
    let p = DomainXml::parse(&x)?;
    Ok((x, p))
}

fn state(d: &Domain) -> Result<(polyvisor_core::PowerState, &'static str, u32)> {
    let (s, r) = d.get_state().map_err(|e| lv_err(e, "read domain state", ""))?;
    let (p, raw) = map_state(s, r);
    Ok((p, raw, s))
}

fn display_name(x: &DomainXml) -> String {
    if x.name.is_empty() {
        format!("VM-{}", x.uuid)
    } else {
        x.name.clone()
    }
}

/// The listing view.
pub(crate) fn summary(d: &Domain) -> Result<GuestSummary> {
    let (_, x) = xml(d, false)?;
    let (power, _, _) = state(d)?;
    Ok(GuestSummary {
        id: GuestId::new(x.uuid.clone()),
        name: display_name(&x),
        power,
        is_template: x.meta.template,
        key: x.meta.key.clone(),
        node: None,
    })
}

/// Every domain, active and inactive.
pub(crate) fn list(c: &Conn) -> Result<Vec<GuestSummary>> {
    let doms = c.list_all_domains(0).map_err(|e| lv_err(e, "list domains", ""))?;
    let mut out = Vec::with_capacity(doms.len());
    for d in &doms {
        match summary(d) {
            Ok(s) => out.push(s),
            Err(e) if e.is_not_found() => {} // vanished while listing
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// IPs per MAC: DHCP leases, then ARP, then the guest agent (first source with answers);
/// errors count as "no IPs". Local connections also read `/proc/net/arp`.
fn addresses(d: &Domain, local: bool, macs: &[String]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for src in [
        virt::sys::VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE,
        virt::sys::VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_ARP,
        virt::sys::VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT,
    ] {
        if let Ok(ifs) = d.interface_addresses(src, 0) {
            for i in ifs {
                for a in i.addrs {
                    out.push((i.hwaddr.to_ascii_lowercase(), a.addr));
                }
            }
        }
        if !out.is_empty() {
            return out;
        }
    }
    if local {
        if let Ok(arp) = std::fs::read_to_string("/proc/net/arp") {
            for line in arp.lines().skip(1) {
                let f: Vec<&str> = line.split_whitespace().collect();
                if f.len() >= 4 && f[2] == "0x2" && macs.iter().any(|m| m.eq_ignore_ascii_case(f[3])) {
                    out.push((f[3].to_ascii_lowercase(), f[0].to_string()));
                }
            }
        }
    }
    out
}

/// One guest in full.
pub(crate) fn guest(d: &Domain, cfg: &crate::config::Config) -> Result<Guest> {
    let local = cfg.is_local_qemu();
    let (_, x) = xml(d, false)?;
    let (power, raw, s) = state(d)?;
    let macs: Vec<String> = x.ifaces.iter().map(|i| i.mac.to_ascii_lowercase()).collect();
    let addrs = if s == 1 || s == 2 || s == 3 { addresses(d, local, &macs) } else { Vec::new() };
    let nics = x
        .ifaces
        .iter()
        .map(|i| {
            let m = i.mac.to_ascii_lowercase();
            let ips = addrs.iter().filter(|(am, _)| *am == m).map(|(_, ip)| ip.clone());
            let (v4, v6): (Vec<String>, Vec<String>) = ips.partition(|ip| ip.contains('.'));
            Nic {
                mac: net::normalize_mac(&i.mac).unwrap_or_else(|| i.mac.clone()),
                ipv4: net::order_ipv4(v4),
                ipv6: v6.into_iter().filter(|ip| net::is_reportable_ipv6(ip)).collect(),
                network: i.network.clone(),
                // A tag, or (bridge-per-VLAN hosts) the VLAN its network carries.
                vlan: i.vlan.or_else(|| i.network.as_deref().and_then(|n| cfg.vlan_of_network(n))),
            }
        })
        .collect();
    Ok(Guest {
        id: GuestId::new(x.uuid.clone()),
        name: display_name(&x),
        node: None,
        os: x.meta.os.clone().or(x.os_type.clone()),
        cpus: x.vcpus,
        memory_mb: x.memory_mb,
        nics,
        is_template: x.meta.template,
        power,
        raw_power_state: raw.to_string(),
        key: x.meta.key.clone(),
    })
}

/// Replaces the polyvisor metadata element (persistent config, and live when running).
pub(crate) fn set_meta(d: &Domain, m: &Meta) -> Result<()> {
    let active = d.is_active().unwrap_or(false);
    let mut flags = virt::sys::VIR_DOMAIN_AFFECT_CONFIG;
    if active {
        flags |= virt::sys::VIR_DOMAIN_AFFECT_LIVE;
    }
    let xml = m.to_xml();
    let (md, key) = if m.is_empty() { (None, None) } else { (Some(xml.as_str()), Some(PREFIX)) };
    d.set_metadata(virt::sys::VIR_DOMAIN_METADATA_ELEMENT as i32, md, key, Some(NS), flags)
        .map_err(|e| lv_err(e, "write polyvisor metadata", ""))?;
    Ok(())
}

/// Whether the domain is running (or paused / shutting down).
pub(crate) fn is_active(d: &Domain) -> bool {
    d.is_active().unwrap_or(false)
}

/// The raw `virDomainState` number.
pub(crate) fn raw_state(d: &Domain) -> Result<u32> {
    Ok(state(d)?.2)
}

/// Finds a storage volume by path, refreshing active pools once on a miss.
pub(crate) fn vol_by_path(c: &Conn, path: &str) -> Result<Option<StorageVol>> {
    if let Ok(v) = StorageVol::lookup_by_path(c, path) {
        return Ok(Some(v));
    }
    if let Ok(pools) = c.list_all_storage_pools(virt::sys::VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE) {
        for p in pools {
            let _ = p.refresh(0);
        }
    }
    Ok(StorageVol::lookup_by_path(c, path).ok())
}

/// Deletes a guest and the volumes polyvisor created for it (idempotent).
pub(crate) fn delete(c: &Conn, id: &str) -> Result<()> {
    let d = match lookup(c, id) {
        Ok(d) => d,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e),
    };
    let (_, x) = xml(&d, true)?;
    // linked clones that still depend on this guest's disks
    let mut others_disks: Vec<String> = Vec::new();
    for o in c.list_all_domains(0).map_err(|e| lv_err(e, "list domains", ""))? {
        let Ok((_, ox)) = xml(&o, true) else { continue };
        if ox.uuid == x.uuid {
            continue;
        }
        if ox.meta.source.as_deref() == Some(x.uuid.as_str()) && ox.meta.mode.as_deref() == Some("linked") {
            return Err(Error::conflict(format!("guest [{id}] has linked clones ({}); delete them first", ox.name)));
        }
        others_disks.extend(ox.disks.iter().filter_map(|k| k.path.clone()));
    }
    if is_active(&d) {
        d.destroy().map_err(|e| lv_err(e, "stop guest", ""))?;
    }
    let flags = virt::sys::VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
        | virt::sys::VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
        | virt::sys::VIR_DOMAIN_UNDEFINE_NVRAM;
    // NVRAM is refused by drivers without it (test:///); retry without that flag.
    let undone = d.undefine_flags(flags).or_else(|_| d.undefine_flags(flags & !virt::sys::VIR_DOMAIN_UNDEFINE_NVRAM));
    if let Err(e) = undone {
        let err = lv_err(e, "undefine guest", "");
        if !err.is_not_found() {
            return Err(err);
        }
    }
    for path in x.meta.volumes.iter().chain(&x.meta.bases) {
        if others_disks.contains(path) {
            tracing::warn!(path, "volume is used by another domain; kept");
            continue;
        }
        if let Some(v) = vol_by_path(c, path)? {
            v.delete(0).map_err(|e| lv_err(e, "delete volume", ""))?;
        }
    }
    // a clone from a snapshot: its source's base may now be unused (snapshot already gone)
    if let (Some(source), Some(_)) = (&x.meta.source, &x.meta.snapshot) {
        match lookup(c, source) {
            Ok(src) => prune_bases(c, &src)?,
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Snapshots of a domain, oldest first.
pub(crate) fn snapshots(d: &Domain) -> Result<Vec<Snapshot>> {
    let snaps = d
        .list_all_snapshots(virt::sys::VIR_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL)
        .map_err(|e| lv_err(e, "list snapshots", ""))?;
    let mut out = Vec::new();
    for s in snaps {
        let x = s.get_xml_desc(0).map_err(|e| lv_err(e, "read snapshot", ""))?;
        let Ok(doc) = roxmltree::Document::parse(&x) else { continue };
        let r = doc.root_element();
        let t =
            |tag: &str| r.children().find(|c| c.has_tag_name(tag)).and_then(|c| c.text()).map(|t| t.trim().to_string());
        let parent = r
            .children()
            .find(|c| c.has_tag_name("parent"))
            .and_then(|p| p.children().find(|c| c.has_tag_name("name")))
            .and_then(|n| n.text())
            .map(str::to_string);
        let mem = r
            .children()
            .find(|c| c.has_tag_name("memory"))
            .and_then(|m| m.attribute("snapshot"))
            .map(|m| m != "no")
            .unwrap_or(false);
        out.push(Snapshot {
            name: t("name").unwrap_or_default(),
            description: t("description").filter(|d| !d.is_empty()),
            created_unix: t("creationTime").and_then(|c| c.parse().ok()),
            parent,
            includes_memory: mem,
        });
    }
    out.sort_by_key(|s| s.created_unix.unwrap_or(0));
    Ok(out)
}

/// A snapshot by name, `None` if absent.
pub(crate) fn snapshot(d: &Domain, name: &str) -> Result<Option<DomainSnapshot>> {
    names::validate_snapshot_name(name)?;
    match DomainSnapshot::lookup_by_name(d, name, 0) {
        Ok(s) => Ok(Some(s)),
        Err(e) => {
            let err = lv_err(e, "find snapshot", "");
            if err.is_not_found() {
                Ok(None)
            } else {
                Err(err)
            }
        }
    }
}

/// Creates (replacing an existing one of the same name) an internal snapshot.
pub(crate) fn create_snapshot(d: &Domain, name: &str, memory: bool, description: Option<&str>) -> Result<()> {
    if let Some(s) = snapshot(d, name)? {
        s.delete(0).map_err(|e| lv_err(e, "delete old snapshot", ""))?;
    }
    let desc = description.map(|t| format!("<description>{}</description>", crate::meta::esc(t))).unwrap_or_default();
    // Internal snapshots: on a stopped guest disk state only (qemu-img); on a running guest
    // QEMU's internal checkpoint (memory included) unless memory was not asked for and the
    // guest is stopped.
    let mem = if is_active(d) && memory { "<memory snapshot='internal'/>" } else { "" };
    let xml = format!("<domainsnapshot><name>{}</name>{desc}{mem}</domainsnapshot>", crate::meta::esc(name));
    DomainSnapshot::create_xml(d, &xml, 0).map_err(|e| lv_err(e, "create snapshot", ""))?;
    Ok(())
}

/// Reverts to a snapshot; `NotFound` if absent.
pub(crate) fn revert_snapshot(d: &Domain, id: &str, name: &str) -> Result<()> {
    let s = snapshot(d, name)?.ok_or_else(|| Error::not_found(format!("snapshot '{name}' of guest [{id}]")))?;
    s.revert(virt::sys::VIR_DOMAIN_SNAPSHOT_REVERT_FORCE).map_err(|e| lv_err(e, "revert snapshot", ""))
}

/// Deletes a snapshot (missing is fine), then the bases exported from it that no clone
/// uses any more.
pub(crate) fn delete_snapshot(c: &Conn, d: &Domain, name: &str) -> Result<()> {
    if let Some(s) = snapshot(d, name)? {
        s.delete(0).map_err(|e| lv_err(e, "delete snapshot", ""))?;
    }
    prune_bases(c, d)
}

/// Deletes the read-only bases `src` exported for clones from its snapshots (recorded in
/// its metadata) once nothing needs them: their snapshot (name and creation time) is gone
/// and no domain's disk is an overlay on them. A base still in use stays until its last
/// clone is deleted (`delete` calls this for the clone's source).
pub(crate) fn prune_bases(c: &Conn, src: &Domain) -> Result<()> {
    let (_, sx) = xml(src, true)?;
    if sx.meta.bases.is_empty() {
        return Ok(());
    }
    let file = |p: &str| std::path::Path::new(p).file_name().map(|f| f.to_string_lossy().into_owned());
    let mut live = std::collections::HashSet::new();
    for s in snapshots(src)? {
        let version = s.created_unix.unwrap_or(0).to_string();
        for i in 0..sx.disks.len() {
            live.insert(names::snapshot_base_name(&sx.uuid, i, &s.name, &version));
        }
    }
    let used = backing_paths(c)?;
    let (keep, drop): (Vec<String>, Vec<String>) =
        sx.meta.bases.iter().cloned().partition(|b| used.contains(b) || file(b).is_some_and(|f| live.contains(&f)));
    if drop.is_empty() {
        return Ok(());
    }
    for path in &drop {
        if let Some(v) = vol_by_path(c, path)? {
            v.delete(0).map_err(|e| lv_err(e, "delete snapshot base volume", ""))?;
        }
    }
    let mut m = sx.meta.clone();
    m.bases = keep;
    set_meta(src, &m)
}

/// Every backing file something on this connection is an overlay on: every volume of every
/// active pool (also overlays whose clone is not defined yet), and domain disks outside every
/// pool (read with `qemu-img info`).
fn backing_paths(c: &Conn) -> Result<std::collections::HashSet<String>> {
    let mut out = std::collections::HashSet::new();
    let mut in_pools = std::collections::HashSet::new();
    let pools = c
        .list_all_storage_pools(virt::sys::VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE)
        .map_err(|e| lv_err(e, "list storage pools", ""))?;
    for p in pools {
        let _ = p.refresh(0);
        for v in p.list_all_volumes(0).map_err(|e| lv_err(e, "list volumes", ""))? {
            if let Ok(path) = v.get_path() {
                in_pools.insert(path);
            }
            let vx = v.get_xml_desc(0).map_err(|e| lv_err(e, "read volume XML", ""))?;
            let Ok(doc) = roxmltree::Document::parse(&vx) else { continue };
            let backing = doc
                .descendants()
                .find(|n| n.has_tag_name("backingStore"))
                .and_then(|b| b.children().find(|n| n.has_tag_name("path")))
                .and_then(|p| p.text());
            out.extend(backing.map(|t| t.trim().to_string()));
        }
    }
    for d in c.list_all_domains(0).map_err(|e| lv_err(e, "list domains", ""))? {
        let Ok((_, x)) = xml(&d, true) else { continue };
        for path in x.disks.iter().filter(|k| k.volume.is_none()).filter_map(|k| k.path.as_ref()) {
            if !in_pools.contains(path) {
                out.extend(qemu_img_backing(path));
            }
        }
    }
    Ok(out)
}

/// The backing file of an image outside every pool, as `qemu-img info` reports it.
fn qemu_img_backing(path: &str) -> Option<String> {
    let out = std::process::Command::new("qemu-img").args(["info", "-U", "--output=json", path]).output().ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v.get("full-backing-filename").or_else(|| v.get("backing-filename")).and_then(|b| b.as_str()).map(str::to_string)
}

/// Overrides for a clone made by `create_guest`.
#[derive(Clone, Debug, Default)]
pub(crate) struct CloneExtra {
    /// Platform key stored in the metadata.
    pub key: Option<String>,
    /// vCPUs.
    pub vcpus: Option<u32>,
    /// Memory MiB.
    pub memory_mb: Option<u64>,
    /// Replacement NICs.
    pub nics: Option<Vec<crate::domxml::NewNic>>,
}

/// Defines a guest booting `iso` with a blank `size_gb` qcow2 disk in `pool`; returns its UUID.
#[allow(clippy::too_many_arguments)]
pub(crate) fn create_from_iso(
    c: &Conn,
    pool: &str,
    name: &str,
    uuid: &str,
    iso: &str,
    size_gb: u64,
    vcpus: u32,
    memory_mb: u64,
    nics: &[crate::domxml::NewNic],
    key: &str,
    os: Option<String>,
    domain_type: &str,
) -> Result<String> {
    names::validate_name(name)?;
    if Domain::lookup_by_name(c, name).is_ok() {
        return Err(Error::already_exists(format!("a guest named '{name}' already exists")));
    }
    let iso_path = if iso.starts_with('/') && !iso.contains('\0') {
        iso.to_string()
    } else if let Some((p, v)) = iso.split_once('/').or_else(|| iso.split_once(':')) {
        let p = StoragePool::lookup_by_name(c, p).map_err(|e| lv_err(e, "find ISO pool", ""))?;
        StorageVol::lookup_by_name(&p, v.trim_start_matches("iso/"))
            .and_then(|v| v.get_path())
            .map_err(|e| lv_err(e, "find ISO volume", ""))?
    } else {
        return Err(Error::invalid("ISO must be an absolute path or <pool>/<volume>"));
    };
    let p = StoragePool::lookup_by_name(c, pool)
        .map_err(|e| lv_err(e, "find pool (setting 'pool' or the storage given)", ""))?;
    let vname = names::clone_volume_name(name, 0);
    if let Ok(stale) = StorageVol::lookup_by_name(&p, &vname) {
        let _ = stale.delete(0);
    }
    let vx = format!("<volume><name>{}</name><capacity unit='GiB'>{size_gb}</capacity><target><format type='qcow2'/></target></volume>", crate::meta::esc(&vname));
    let vol = StorageVol::create_xml(&p, &vx, 0).map_err(|e| lv_err(e, "create disk volume", ""))?;
    let disk = vol.get_path().map_err(|e| lv_err(e, "volume path", ""))?;
    let meta = Meta { key: Some(key.to_string()), os, volumes: vec![disk.clone()], ..Default::default() };
    let xml = crate::domxml::IsoDomain {
        name,
        uuid,
        vcpus,
        memory_mb,
        disk: &disk,
        iso: &iso_path,
        nics,
        meta: &meta,
        domain_type,
    }
    .to_xml();
    if let Err(e) = Domain::define_xml(c, &xml) {
        let _ = vol.delete(0);
        return Err(lv_err(e, "define guest", ""));
    }
    Ok(uuid.to_string())
}

/// The UUID of the domain named `name` when it is a clone of `source` (a retry of a clone
/// that finished); `AlreadyExists` when another domain has the name; `None` when it is free.
pub(crate) fn adoptable_clone(c: &Conn, name: &str, source: &str) -> Result<Option<String>> {
    names::validate_name(name)?;
    match Domain::lookup_by_name(c, name) {
        Ok(existing) => {
            let (_, ex) = xml(&existing, true)?;
            if ex.meta.source.as_deref() == Some(source) {
                Ok(Some(ex.uuid))
            } else {
                Err(Error::already_exists(format!("a guest named '{name}' already exists")))
            }
        }
        Err(e) => {
            let err = lv_err(e, "find guest by name", "");
            if err.is_not_found() {
                Ok(None)
            } else {
                Err(err)
            }
        }
    }
}

/// Creates the clone's volumes (qcow2 overlays for linked, copies for full) and defines it.
/// Returns the new domain's UUID. A domain that already has the name is adopted when it is
/// a clone of the same source.
#[allow(clippy::too_many_arguments)]
pub(crate) fn clone(
    c: &Conn,
    default_pool: &str,
    source: &str,
    name: &str,
    linked: bool,
    uuid: &str,
    snapshot_name: Option<&str>,
    extra: &CloneExtra,
) -> Result<String> {
    names::validate_name(name)?;
    if let Some(id) = adoptable_clone(c, name, source)? {
        return Ok(id);
    }
    let src = lookup(c, source)?;
    let (src_text, sx) = xml(&src, true)?;
    if let Some(sn) = snapshot_name {
        if snapshot(&src, sn)?.is_none() {
            return Err(Error::not_found(format!("snapshot '{sn}' of guest [{source}]")));
        }
    }
    // a snapshot replaced under the same name must not reuse the old base: key on its creation time
    let snap_version = match snapshot_name {
        Some(sn) => {
            snapshots(&src)?.into_iter().find(|s| s.name == sn).and_then(|s| s.created_unix).unwrap_or(0).to_string()
        }
        None => String::new(),
    };
    let mut new_bases: Vec<String> = Vec::new();
    // An overlay on a VM's live disk would break as soon as the VM writes: a linked
    // clone of a non-template (current state) is made as a full copy instead.
    let linked = if linked && !sx.meta.template && snapshot_name.is_none() {
        tracing::info!(source, "linked clone of a non-template: making a full copy");
        false
    } else {
        linked
    };
    let mut paths = Vec::new();
    let mut created: Vec<StorageVol> = Vec::new();
    let result = (|| -> Result<()> {
        for (i, disk) in sx.disks.iter().enumerate() {
            let src_vol = match (&disk.volume, &disk.path) {
                (Some((pool, vol)), _) => {
                    let p = StoragePool::lookup_by_name(c, pool).map_err(|e| lv_err(e, "find pool", ""))?;
                    Some(StorageVol::lookup_by_name(&p, vol).map_err(|e| lv_err(e, "find volume", ""))?)
                }
                (None, Some(path)) => vol_by_path(c, path)?,
                _ => None,
            };
            let src_path = match (&src_vol, &disk.path) {
                (Some(v), _) => v.get_path().map_err(|e| lv_err(e, "volume path", ""))?,
                (None, Some(p)) => p.clone(),
                _ => {
                    return Err(Error::unsupported(format!(
                        "cloning disk {} (it has no file or volume source)",
                        disk.target
                    )))
                }
            };
            let (src_vol, src_path) = match snapshot_name {
                Some(sn) => {
                    let base = snapshot_base(
                        c,
                        &src_path,
                        disk.format.as_deref().unwrap_or("qcow2"),
                        src_vol.as_ref(),
                        default_pool,
                        source,
                        i,
                        sn,
                        &snap_version,
                    )?;
                    if !sx.meta.bases.contains(&base) && !new_bases.contains(&base) {
                        new_bases.push(base.clone());
                    }
                    (vol_by_path(c, &base)?, base)
                }
                None => (src_vol, src_path),
            };
            let pool = match &src_vol {
                Some(v) => StoragePool::lookup_by_volume(v).map_err(|e| lv_err(e, "find pool of disk", ""))?,
                None => StoragePool::lookup_by_name(c, default_pool)
                    .map_err(|e| lv_err(e, "find default pool (setting 'pool')", ""))?,
            };
            let cap = match &src_vol {
                Some(v) => v.get_info().map_err(|e| lv_err(e, "volume info", ""))?.capacity,
                None => 1 << 30,
            };
            let vname = names::clone_volume_name(name, i);
            if let Ok(stale) = StorageVol::lookup_by_name(&pool, &vname) {
                let _ = stale.delete(0); // left by an earlier failed attempt
            }
            let fmt = if snapshot_name.is_some() {
                "qcow2".to_string()
            } else {
                disk.format.clone().unwrap_or_else(|| "qcow2".into())
            };
            let vol = if linked {
                let x = format!(
                    "<volume><name>{}</name><capacity unit='bytes'>{cap}</capacity><target><format type='qcow2'/></target><backingStore><path>{}</path><format type='{}'/></backingStore></volume>",
                    crate::meta::esc(&vname), crate::meta::esc(&src_path), crate::meta::esc(&fmt)
                );
                StorageVol::create_xml(&pool, &x, 0).map_err(|e| lv_err(e, "create overlay volume", ""))?
            } else {
                let v = src_vol
                    .as_ref()
                    .ok_or_else(|| Error::unsupported("full clone of a disk outside every storage pool"))?;
                let x = format!("<volume><name>{}</name><capacity unit='bytes'>{cap}</capacity><target><format type='qcow2'/></target></volume>", crate::meta::esc(&vname));
                StorageVol::create_xml_from(&pool, &x, v, 0).map_err(|e| lv_err(e, "copy volume", ""))?
            };
            paths.push(vol.get_path().map_err(|e| lv_err(e, "volume path", ""))?);
            created.push(vol);
        }
        let edit = crate::domxml::CloneEdit {
            name: name.to_string(),
            uuid: uuid.to_string(),
            macs: sx.ifaces.iter().map(|_| names::new_mac()).collect(),
            disk_paths: paths.clone(),
            meta: Meta {
                source: Some(source.to_string()),
                snapshot: snapshot_name.map(str::to_string),
                mode: Some(if linked { "linked" } else { "full" }.into()),
                os: sx.meta.os.clone(),
                key: extra.key.clone(),
                volumes: paths.clone(),
                ..Default::default()
            },
            vcpus: extra.vcpus,
            memory_mb: extra.memory_mb,
            nics: extra.nics.clone(),
        };
        let new_xml = crate::domxml::clone_xml(&src_text, &edit)?;
        if !new_bases.is_empty() {
            let mut m = sx.meta.clone();
            m.bases.extend(new_bases.iter().cloned());
            set_meta(&src, &m)?;
        }
        Domain::define_xml(c, &new_xml).map_err(|e| lv_err(e, "define clone", ""))?;
        Ok(())
    })();
    if let Err(e) = result {
        for v in created {
            let _ = v.delete(0);
        }
        return Err(e);
    }
    Ok(uuid.to_string())
}

/// The read-only base volume holding disk `index` of `source` as it was in snapshot `sn`
/// (made once with `qemu-img convert -l snapshot.name=…` into the pool directory of the
/// source disk, then shared by every clone of that snapshot). Local URIs only.
#[allow(clippy::too_many_arguments)]
fn snapshot_base(
    c: &Conn,
    src_path: &str,
    fmt: &str,
    src_vol: Option<&StorageVol>,
    default_pool: &str,
    source: &str,
    index: usize,
    sn: &str,
    version: &str,
) -> Result<String> {
    let pool = match src_vol {
        Some(v) => StoragePool::lookup_by_volume(v).map_err(|e| lv_err(e, "find pool of disk", ""))?,
        None => StoragePool::lookup_by_name(c, default_pool)
            .map_err(|e| lv_err(e, "find default pool (setting 'pool')", ""))?,
    };
    let px = pool.get_xml_desc(0).map_err(|e| lv_err(e, "read pool XML", ""))?;
    let doc = roxmltree::Document::parse(&px).map_err(|_| Error::backend("unreadable pool XML"))?;
    let dir = doc
        .descendants()
        .find(|n| n.has_tag_name("target"))
        .and_then(|t| t.children().find(|n| n.has_tag_name("path")))
        .and_then(|p| p.text())
        .ok_or_else(|| Error::unsupported("clone from a snapshot into a pool without a target directory"))?
        .trim()
        .to_string();
    let base = format!("{dir}/{}", names::snapshot_base_name(source, index, sn, version));
    if !std::path::Path::new(&base).exists() {
        let tmp = format!("{base}.partial");
        let out = std::process::Command::new("qemu-img")
            .args(["convert", "-U", "-f", fmt, "-O", "qcow2", "-l"])
            .arg(format!("snapshot.name={sn}"))
            .arg(src_path)
            .arg(&tmp)
            .output()
            .map_err(|e| {
                Error::unsupported("clone from a snapshot (needs qemu-img on this host)").with_detail(e.to_string())
            })?;
        if !out.status.success() {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::backend(format!("exporting snapshot '{sn}' failed"))
                .with_detail(String::from_utf8_lossy(&out.stderr).to_string()));
        }
        std::fs::rename(&tmp, &base)
            .map_err(|e| Error::backend("cannot place snapshot base volume").with_detail(e.to_string()))?;
        let _ = pool.refresh(0);
    }
    Ok(base)
}

// --- L2 guest networking (CloudShell front): VLAN-tagged NICs -------------------------

pub(crate) fn affect(d: &Domain) -> u32 {
    let mut flags = virt::sys::VIR_DOMAIN_AFFECT_CONFIG;
    if d.is_active().unwrap_or(false) {
        flags |= virt::sys::VIR_DOMAIN_AFFECT_LIVE;
    }
    flags
}

fn vlan_nic(mac: &str, network: &str, vlan: u32) -> Nic {
    Nic {
        mac: net::normalize_mac(mac).unwrap_or_else(|| mac.to_string()),
        ipv4: Vec::new(),
        ipv6: Vec::new(),
        network: Some(network.to_string()),
        vlan: Some(vlan),
    }
}

/// Puts a NIC on VLAN `vlan`: with `tagged`, a NIC on `network` carrying 802.1Q tag `vlan`
/// (`<vlan><tag id=…/></vlan>`); without (bridge-per-VLAN hosts), an untagged NIC on
/// `network`, the network that carries `vlan`. Added to the persistent definition and, when
/// the domain runs, live. A NIC already there is reused (idempotent). `vlan` and `network`
/// are validated by the caller.
pub(crate) fn attach_vlan(d: &Domain, network: &str, vlan: u32, tagged: bool) -> Result<Nic> {
    let (_, x) = xml(d, true)?;
    let tag = tagged.then_some(vlan);
    if let Some(i) = x.ifaces.iter().find(|i| i.vlan == tag && i.network.as_deref() == Some(network)) {
        return Ok(vlan_nic(&i.mac, network, vlan));
    }
    let nic = crate::domxml::NewNic { mac: names::new_mac(), network: network.to_string(), vlan: tag, filter: None };
    d.attach_device_flags(&nic.to_xml(), affect(d)).map_err(|e| lv_err(e, "attach VLAN NIC", ""))?;
    Ok(vlan_nic(&nic.mac, network, vlan))
}

/// Removes the VLAN NIC with MAC `mac` (canonical, validated by the caller) from the
/// persistent definition (and the running domain). Gone already: success. A NIC that is on
/// no VLAN (no tag, and not on a network `is_vlan_network` recognises) was not added by
/// [`attach_vlan`] and is refused.
pub(crate) fn detach_vlan(d: &Domain, mac: &str, is_vlan_network: impl Fn(&str) -> bool) -> Result<()> {
    let (_, x) = xml(d, true)?;
    let Some(i) = x.ifaces.iter().find(|i| net::normalize_mac(&i.mac).as_deref() == Some(mac)) else {
        return Ok(());
    };
    if i.vlan.is_none() && !i.network.as_deref().is_some_and(&is_vlan_network) {
        return Err(Error::invalid(format!(
            "NIC {mac} is not on a VLAN; polyvisor removes only the VLAN NICs it added"
        )));
    }
    // libvirt matches the device by MAC; the element must still be a valid network interface.
    let network = i.network.clone().ok_or_else(|| Error::invalid(format!("NIC {mac} has no network source")))?;
    let el = crate::domxml::NewNic { mac: mac.to_string(), network, vlan: i.vlan, filter: i.filter.clone() }.to_xml();
    d.detach_device_flags(&el, affect(d)).map_err(|e| lv_err(e, "detach VLAN NIC", ""))?;
    Ok(())
}

/// Cumulative counters read at one instant (see [`usage`]).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Counters {
    /// Guest CPU time, ns.
    pub(crate) cpu_ns: u64,
    /// Disk bytes read + written, all disks.
    pub(crate) disk_bytes: u64,
    /// Network bytes received + sent, all interfaces.
    pub(crate) net_bytes: u64,
}

/// Usage over one interval: CPU percent of all vCPUs, memory percent, disk and net KB/s.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Usage {
    pub(crate) cpu_pct: f64,
    pub(crate) mem_pct: f64,
    pub(crate) disk_kbps: f64,
    pub(crate) net_kbps: f64,
}

/// Rates between two counter reads `secs` apart on `vcpus` vCPUs (CPU clamped to 0–100;
/// a counter that went backwards, e.g. a guest restarted in between, counts as 0).
pub(crate) fn rates(a: Counters, b: Counters, secs: f64, vcpus: u32) -> (f64, f64, f64) {
    if secs <= 0.0 {
        return (0.0, 0.0, 0.0);
    }
    let cpu = b.cpu_ns.saturating_sub(a.cpu_ns) as f64 / (secs * 1e9 * f64::from(vcpus.max(1))) * 100.0;
    let kbps = |x: u64, y: u64| y.saturating_sub(x) as f64 / 1024.0 / secs;
    (cpu.clamp(0.0, 100.0), kbps(a.disk_bytes, b.disk_bytes), kbps(a.net_bytes, b.net_bytes))
}

/// Memory in use, percent: the guest's own view when its balloon driver reports it
/// (available − usable, else available − unused), else QEMU's resident set over the
/// balloon size; `None` when libvirt reports neither.
pub(crate) fn mem_pct(stats: &[(u32, u64)]) -> Option<f64> {
    use virt::sys::{
        VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON as ACTUAL, VIR_DOMAIN_MEMORY_STAT_AVAILABLE as AVAIL,
        VIR_DOMAIN_MEMORY_STAT_RSS as RSS, VIR_DOMAIN_MEMORY_STAT_UNUSED as UNUSED,
        VIR_DOMAIN_MEMORY_STAT_USABLE as USABLE,
    };
    let get = |tag: u32| stats.iter().find(|(t, _)| *t == tag).map(|(_, v)| *v).filter(|v| *v > 0);
    let pct = |used: u64, total: u64| (used as f64 / total as f64 * 100.0).clamp(0.0, 100.0);
    if let (Some(avail), Some(free)) = (get(AVAIL), get(USABLE).or_else(|| get(UNUSED))) {
        return Some(pct(avail.saturating_sub(free), avail));
    }
    Some(pct(get(RSS)?, get(ACTUAL)?))
}

fn counters(d: &Domain, x: &DomainXml) -> Result<Counters> {
    let info = d.get_info().map_err(|e| lv_err(e, "read domain info", ""))?;
    // A disk without media (empty CD-ROM) or an interface QEMU does not expose has no
    // counters: it contributes nothing rather than failing the sample.
    let disk_bytes = x
        .disks
        .iter()
        .filter_map(|k| d.get_block_stats(&k.target).ok())
        .map(|s| s.rd_bytes.max(0) as u64 + s.wr_bytes.max(0) as u64)
        .sum();
    let net_bytes = x
        .ifaces
        .iter()
        .filter_map(|i| d.interface_stats(&i.mac).ok())
        .map(|s| s.rx_bytes.max(0) as u64 + s.tx_bytes.max(0) as u64)
        .sum();
    Ok(Counters { cpu_ns: info.cpu_time, disk_bytes, net_bytes })
}

/// A realtime usage sample of a running domain from two counter reads `gap` apart
/// (libvirt keeps no history); all zeros when the domain is not running.
pub(crate) fn usage(d: &Domain, gap: std::time::Duration) -> Result<Usage> {
    if !is_active(d) {
        return Ok(Usage::default());
    }
    let (_, x) = xml(d, false)?;
    let a = counters(d, &x)?;
    let t0 = std::time::Instant::now();
    std::thread::sleep(gap);
    let b = counters(d, &x)?;
    let secs = t0.elapsed().as_secs_f64();
    let info = d.get_info().map_err(|e| lv_err(e, "read domain info", ""))?;
    let (cpu_pct, disk_kbps, net_kbps) = rates(a, b, secs, info.nr_virt_cpu);
    let stats: Vec<(u32, u64)> =
        d.memory_stats(0).map(|v| v.iter().map(|s| (s.tag, s.val)).collect()).unwrap_or_default();
    // Without balloon or RSS figures, the memory currently given to the guest is the bound.
    let mem_pct = mem_pct(&stats).unwrap_or_else(|| {
        if info.max_mem == 0 {
            0.0
        } else {
            (info.memory as f64 / info.max_mem as f64 * 100.0).clamp(0.0, 100.0)
        }
    });
    Ok(Usage { cpu_pct, mem_pct, disk_kbps, net_kbps })
}

#[cfg(test)]
mod tests {
    use super::*;
    use virt::sys::{
        VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON as ACTUAL, VIR_DOMAIN_MEMORY_STAT_AVAILABLE as AVAIL,
        VIR_DOMAIN_MEMORY_STAT_RSS as RSS, VIR_DOMAIN_MEMORY_STAT_UNUSED as UNUSED,
        VIR_DOMAIN_MEMORY_STAT_USABLE as USABLE,
    };

    #[test]
    fn rates_are_per_vcpu_clamped_and_never_negative() {
        let a = Counters { cpu_ns: 1_000_000_000, disk_bytes: 0, net_bytes: 4096 };
        let b = Counters { cpu_ns: 2_000_000_000, disk_bytes: 2048 * 1024, net_bytes: 4096 + 1024 };
        assert_eq!(rates(a, b, 2.0, 2), (25.0, 1024.0, 0.5));
        assert_eq!(rates(a, b, 0.5, 1).0, 100.0, "clamped");
        assert_eq!(rates(b, a, 1.0, 1), (0.0, 0.0, 0.0), "a restarted guest's counters went backwards");
        assert_eq!(rates(a, b, 0.0, 1), (0.0, 0.0, 0.0));
    }

    #[test]
    fn memory_prefers_the_guest_view_then_rss() {
        assert_eq!(mem_pct(&[(AVAIL, 1000), (USABLE, 250), (UNUSED, 900), (RSS, 10), (ACTUAL, 1000)]), Some(75.0));
        assert_eq!(mem_pct(&[(AVAIL, 1000), (UNUSED, 900)]), Some(10.0));
        assert_eq!(mem_pct(&[(RSS, 256), (ACTUAL, 1024)]), Some(25.0));
        assert_eq!(mem_pct(&[(RSS, 4096), (ACTUAL, 1024)]), Some(100.0), "QEMU overhead clamps");
        assert_eq!(mem_pct(&[(ACTUAL, 1024)]), None);
        assert_eq!(mem_pct(&[]), None);
    }
}
