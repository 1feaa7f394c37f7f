//! L3 guest networking on libvirt, the half that calls libvirt: per-sandbox subnets as
//! libvirt networks, NICs on them and their network filters (names, XML and the ownership
//! mark are in [`crate::subnet`]). Every function runs on a blocking libvirt thread inside
//! one bounded `conn::call`.

use crate::conn::{lv_err, Conn};
use crate::ops::{affect, xml};
use crate::subnet::{self, Names, Plan};
use polyvisor_core::netops::{SecurityRule, Subnet, SubnetSpec};
use polyvisor_core::{net, Error, Nic, Result};
use virt::domain::Domain;
use virt::network::Network;
use virt::nwfilter::NWFilter;

/// The network named `name` and polyvisor's mark on it; `None` when there is no such network.
/// A network of that name without the mark is not ours: `Conflict`.
fn marked(c: &Conn, name: &str) -> Result<Option<(Network, Subnet)>> {
    let net = match Network::lookup_by_name(c, name) {
        Ok(n) => n,
        Err(e) => {
            let e = lv_err(e, "look up network", "");
            return if e.is_not_found() { Ok(None) } else { Err(e) };
        }
    };
    let x = net.get_xml_desc(0).map_err(|e| lv_err(e, "read network XML", ""))?;
    match subnet::parse_network(&x) {
        Some(s) => Ok(Some((net, s))),
        None => {
            Err(Error::conflict(format!("network [{name}] exists and is not a polyvisor subnet; it is left alone")))
        }
    }
}

/// The subnet with id `id` (a polyvisor network): `NotFound` for anything else.
fn subnet_by_id(c: &Conn, id: &str) -> Result<(Names, Network, Subnet)> {
    let names = Names::from_id(id)?;
    match marked(c, &names.network) {
        Ok(Some((net, s))) => Ok((Names::of(&s.owner, &s.alias), net, s)),
        Ok(None) => Err(Error::not_found(format!("subnet [{id}]"))),
        Err(e) if e.kind() == polyvisor_core::ErrorKind::Conflict => Err(Error::not_found(format!("subnet [{id}]"))),
        Err(e) => Err(e),
    }
}

/// Defines the subnet's filter with no platform rules unless it exists (its rules are kept).
fn ensure_filter(c: &Conn, names: &Names, cidr: &str) -> Result<()> {
    match NWFilter::lookup_by_name(c, &names.filter) {
        Ok(_) => Ok(()),
        Err(e) => {
            let e = lv_err(e, "look up network filter", "");
            if !e.is_not_found() {
                return Err(e);
            }
            let x = subnet::filter_xml(&names.filter, &names.filter_uuid, cidr, &[])?;
            NWFilter::define_xml(c, &x).map(|_| ()).map_err(|e| lv_err(e, "define network filter", ""))
        }
    }
}

/// Starts the network unless it runs (a concurrent start counts as started).
fn ensure_active(net: &Network) -> Result<()> {
    if net.is_active().map_err(|e| lv_err(e, "read network state", ""))? {
        return Ok(());
    }
    match net.create() {
        Ok(_) => Ok(()),
        Err(e) => {
            let err = lv_err(e, "start network", "");
            if net.is_active().unwrap_or(false) {
                Ok(())
            } else {
                Err(err)
            }
        }
    }
}

/// Whether two CIDRs share addresses.
fn overlaps(a: &str, b: &str) -> bool {
    match (Plan::of(a), Plan::of(b)) {
        (Ok(a), Ok(b)) => {
            let shorter = a.prefix.min(b.prefix);
            let mask = u32::MAX << (32 - u32::from(shorter));
            u32::from(a.network) & mask == u32::from(b.network) & mask
        }
        _ => false,
    }
}

/// A running subnet of polyvisor's (another sandbox's, or another alias of this one) whose
/// addresses overlap `cidr`: the host cannot route both, so libvirt would refuse to start
/// the new network. Found from polyvisor's own marks, so the refusal names the other subnet.
fn overlapping(c: &Conn, name: &str, cidr: &str) -> Result<Option<Subnet>> {
    for n in
        c.list_all_networks(virt::sys::VIR_CONNECT_LIST_NETWORKS_ACTIVE).map_err(|e| lv_err(e, "list networks", ""))?
    {
        let Ok(x) = n.get_xml_desc(0) else { continue }; // vanished while listing
        if let Some(s) = subnet::parse_network(&x) {
            if s.id != name && overlaps(&s.cidr, cidr) {
                return Ok(Some(s));
            }
        }
    }
    Ok(None)
}

/// Get-or-create of subnet `(spec.owner, spec.alias)`: its filter, then the network
/// (persistent, autostarted, started). An existing one with another CIDR, or a running
/// subnet whose addresses overlap, is `Conflict`; a half-made one (no filter, not started)
/// is completed; a new one libvirt cannot start is removed again.
pub(crate) fn ensure_subnet(c: &Conn, spec: &SubnetSpec) -> Result<Subnet> {
    let def = subnet::network_xml(spec)?;
    let cidr = Plan::of(&spec.cidr)?.cidr();
    let names = Names::of(&spec.owner, &spec.alias);
    if let Some((net, s)) = marked(c, &names.network)? {
        if s.cidr != cidr {
            return Err(Error::conflict(format!("subnet [{}] exists with another CIDR ({})", s.id, s.cidr)));
        }
        ensure_filter(c, &names, &cidr)?;
        ensure_active(&net)?;
        return Ok(s);
    }
    if let Some(other) = overlapping(c, &names.network, &cidr)? {
        return Err(Error::conflict(format!(
            "subnet {cidr} overlaps subnet [{}] ({}) of sandbox [{}] on this libvirt host; use another CIDR",
            other.id, other.cidr, other.owner
        )));
    }
    // The filter first: NICs reference it as soon as the network is there.
    ensure_filter(c, &names, &cidr)?;
    let net = Network::define_xml(c, &def).map_err(|e| lv_err(e, "define network", ""))?;
    let started = net
        .set_autostart(true)
        .map(|_| ())
        .map_err(|e| lv_err(e, "set network autostart", ""))
        .and_then(|()| ensure_active(&net));
    if let Err(e) = started {
        // Nothing half-made stays behind (a concurrent ensure that got further keeps its own).
        if !net.is_active().unwrap_or(false) {
            let _ = net.undefine();
            if let Ok(f) = NWFilter::lookup_by_name(c, &names.filter) {
                let _ = f.undefine();
            }
        }
        return Err(e);
    }
    Ok(Subnet { id: names.network.clone(), owner: spec.owner.clone(), alias: spec.alias.clone(), cidr })
}

/// The NIC of `d` on network `network`, read from the persistent definition.
fn nic_on(d: &Domain, network: &str) -> Result<Option<crate::domxml::IfaceXml>> {
    let (_, x) = xml(d, true)?;
    Ok(x.ifaces.into_iter().find(|i| i.network.as_deref() == Some(network)))
}

fn subnet_nic(mac: &str, network: &str) -> Nic {
    Nic {
        mac: net::normalize_mac(mac).unwrap_or_else(|| mac.to_string()),
        ipv4: Vec::new(),
        ipv6: Vec::new(),
        network: Some(network.to_string()),
        vlan: None,
    }
}

/// Connects `d` to subnet `id`: a NIC on its network referencing its filter, added to the
/// persistent definition and, when running, hot-plugged. A guest already on the subnet
/// gets that NIC back.
pub(crate) fn connect_subnet(c: &Conn, d: &Domain, id: &str) -> Result<Nic> {
    let (names, net, s) = subnet_by_id(c, id)?;
    ensure_filter(c, &names, &s.cidr)?;
    ensure_active(&net)?;
    if let Some(i) = nic_on(d, &names.network)? {
        return Ok(subnet_nic(&i.mac, &names.network));
    }
    let nic = crate::domxml::NewNic {
        mac: crate::names::new_mac(),
        network: names.network.clone(),
        vlan: None,
        filter: Some(names.filter.clone()),
    };
    d.attach_device_flags(&nic.to_xml(), affect(d)).map_err(|e| lv_err(e, "attach subnet NIC", ""))?;
    Ok(subnet_nic(&nic.mac, &names.network))
}

/// Replaces the platform's inbound rules of subnet `id` (its filter, which libvirt
/// re-applies to every running NIC that references it). `d` must be connected to the
/// subnet by polyvisor (its NIC there references the filter): else `Conflict`.
pub(crate) fn set_rules(c: &Conn, d: &Domain, guest: &str, id: &str, rules: &[SecurityRule]) -> Result<()> {
    let (names, _, s) = subnet_by_id(c, id)?;
    let def = subnet::filter_xml(&names.filter, &names.filter_uuid, &s.cidr, rules)?;
    match nic_on(d, &names.network)? {
        Some(i) if i.filter.as_deref() == Some(names.filter.as_str()) => {}
        Some(_) => {
            return Err(Error::conflict(format!(
                "guest [{guest}] has a NIC on subnet [{id}] that polyvisor did not connect (it has no filter of ours)"
            )))
        }
        None => return Err(Error::conflict(format!("guest [{guest}] is not connected to subnet [{id}]"))),
    }
    NWFilter::define_xml(c, &def).map(|_| ()).map_err(|e| lv_err(e, "define network filter", ""))
}

/// Success when the object is already gone.
fn gone(r: std::result::Result<(), virt::error::Error>, what: &str) -> Result<()> {
    match r {
        Ok(()) => Ok(()),
        Err(e) => {
            let e = lv_err(e, what, "");
            if e.is_not_found() {
                Ok(())
            } else {
                Err(e)
            }
        }
    }
}

/// Waits until each running domain's live definition no longer has the NIC with that MAC
/// (ACPI hot-unplug completes when the guest releases the device); `Conflict` after
/// `patience`: the subnet stays for a retry.
fn wait_unplugged(nics: &[(&Domain, String)], patience: std::time::Duration) -> Result<()> {
    let deadline = std::time::Instant::now() + patience;
    for (d, mac) in nics {
        loop {
            let held = match xml(d, false) {
                Ok((_, x)) => x.ifaces.iter().any(|i| i.mac.eq_ignore_ascii_case(mac)),
                Err(e) if e.is_not_found() => false,
                Err(e) => return Err(e),
            };
            if !held || !d.is_active().unwrap_or(false) {
                break;
            }
            if std::time::Instant::now() >= deadline {
                let name = d.get_name().unwrap_or_default();
                return Err(Error::conflict(format!(
                    "guest [{name}] has not released its NIC {mac} on the subnet yet (hot-unplug needs the guest's \
                     cooperation); the subnet is kept, retry the clean-up"
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
    }
    Ok(())
}

/// Deletes every subnet of `owner`: first the NICs polyvisor put on it (those referencing
/// its filter) from every domain (waiting for running guests to release them), then the
/// filter and the network (stopped, undefined).
/// Returns how many networks were removed; none left is success (a retry converges). A
/// running guest that has not released its NIC within `unplug_patience` is `Conflict`
/// before any network or filter is touched.
/// A NIC someone else put on one of these networks is not touched; it loses its network.
pub(crate) fn delete_subnets(c: &Conn, owner: &str, unplug_patience: std::time::Duration) -> Result<usize> {
    polyvisor_core::netops::check_label("owner", owner)?;
    let mut ours = Vec::new();
    for n in c.list_all_networks(0).map_err(|e| lv_err(e, "list networks", ""))? {
        let Ok(x) = n.get_xml_desc(0) else { continue }; // vanished while listing
        if let Some(s) = subnet::parse_network(&x).filter(|s| s.owner == owner) {
            ours.push((n, Names::of(&s.owner, &s.alias)));
        }
    }
    if ours.is_empty() {
        return Ok(0);
    }
    let doms = c.list_all_domains(0).map_err(|e| lv_err(e, "list domains", ""))?;
    // Live detaches finish when the guest lets go of the device: (domain, MAC) to wait for.
    let mut unplugging = Vec::new();
    let is_ours = |i: &crate::domxml::IfaceXml| {
        ours.iter().map(|(_, n)| n).find(|n| {
            i.network.as_deref() == Some(n.network.as_str()) && i.filter.as_deref() == Some(n.filter.as_str())
        })
    };
    for d in &doms {
        // The persistent definition, then the running guest (which may still hold a NIC an
        // earlier attempt removed from the definition).
        let Ok((_, config)) = xml(d, true) else { continue }; // vanished while listing
        let live = if d.is_active().unwrap_or(false) { xml(d, false).ok().map(|(_, x)| x) } else { None };
        for (x, flags) in
            [(Some(config), virt::sys::VIR_DOMAIN_AFFECT_CONFIG), (live, virt::sys::VIR_DOMAIN_AFFECT_LIVE)]
        {
            for i in x.iter().flat_map(|x| &x.ifaces) {
                let Some(names) = is_ours(i) else { continue };
                let el = crate::domxml::NewNic {
                    mac: i.mac.clone(),
                    network: names.network.clone(),
                    vlan: None,
                    filter: i.filter.clone(),
                };
                let r = d.detach_device_flags(&el.to_xml(), flags);
                if flags == virt::sys::VIR_DOMAIN_AFFECT_LIVE {
                    // An unplug the guest has not finished yet may be refused again: wait for it.
                    if let Err(e) = r {
                        tracing::debug!(error = %e, mac = %i.mac, "live detach of a subnet NIC");
                    }
                    unplugging.push((d, i.mac.clone()));
                } else if let Err(e) = r {
                    let e = lv_err(e, "detach subnet NIC", "");
                    if !e.is_not_found() {
                        return Err(e);
                    }
                }
            }
        }
    }
    wait_unplugged(&unplugging, unplug_patience)?;
    for (n, names) in &ours {
        // The filter before the network: while the network stands, a retry finds the subnet.
        if let Ok(f) = NWFilter::lookup_by_name(c, &names.filter) {
            gone(f.undefine(), "undefine network filter")?;
        }
        if n.is_active().unwrap_or(false) {
            if let Err(e) = n.destroy() {
                let err = lv_err(e, "stop network", "");
                if !err.is_not_found() && n.is_active().unwrap_or(false) {
                    return Err(err);
                }
            }
        }
        gone(n.undefine(), "undefine network")?;
    }
    Ok(ours.len())
}

#[cfg(test)]
mod tests {
    #[test]
    fn overlap_compares_the_shorter_prefix() {
        assert!(super::overlaps("10.0.0.0/16", "10.0.1.0/24"));
        assert!(super::overlaps("10.0.1.0/24", "10.0.1.128/25"));
        assert!(!super::overlaps("10.0.1.0/24", "10.0.2.0/24"));
        assert!(!super::overlaps("10.0.1.0/24", "bad"));
    }
}
