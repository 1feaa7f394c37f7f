//! L3 guest networking on Neutron (CloudShell per-sandbox subnets). A subnet is a Neutron
//! network `pv-sn-<16 hex>` with one IPv4 subnet (DHCP on) and a security group
//! `pv-sg-<16 hex>`, the hex derived from `(owner, alias)`; each carries the description
//! `polyvisor sandbox <16 hex of the owner>`, the ownership mark by which a sandbox's
//! objects are found again (`delete_subnets`) and without which nothing is touched. A guest
//! joins through a port `pv-sp-<16 hex>-<server id prefix>` in that security group, attached
//! with Nova's `os-interface`. The subnet id handed to the platform is the network's UUID.
//!
//! No state of our own: every step is get-or-create by name and mark, so a retry or a
//! second provider process converges on the same objects.

use crate::client::Service;
use crate::driver::OpenStackDriver;
use crate::error::OsError;
use crate::map::is_uuid;
use polyvisor_core::netops::{check_label, network_of, SecurityRule, Subnet, SubnetSpec};
use polyvisor_core::{Error, Nic, Result};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn hex16(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The names of subnet `(owner, alias)` and the mark its owner's objects carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    /// Network and subnet name.
    pub network: String,
    /// Security group name.
    pub group: String,
    /// Description of every object of the owner's sandbox.
    pub mark: String,
}

impl Names {
    /// The names of subnet `(owner, alias)`.
    pub fn of(owner: &str, alias: &str) -> Names {
        let tag = hex16(&["polyvisor subnet", owner, alias]);
        Names { network: format!("pv-sn-{tag}"), group: format!("pv-sg-{tag}"), mark: mark(owner) }
    }

    /// The names of the subnet whose network is called `network` (a `pv-sn-` name).
    fn from_network(network: &str, mark: &str) -> Option<Names> {
        let tag = network.strip_prefix("pv-sn-").filter(|t| t.len() == 16)?;
        Some(Names { network: network.to_string(), group: format!("pv-sg-{tag}"), mark: mark.to_string() })
    }

    fn port(&self, server: &str) -> String {
        format!("pv-sp-{}-{}", &self.network[6..], &server[..8.min(server.len())])
    }
}

/// The ownership mark of sandbox `owner`'s objects.
pub fn mark(owner: &str) -> String {
    format!("polyvisor sandbox {}", hex16(&["polyvisor sandbox", owner]))
}

/// `a.b.c.d/n` with the host bits cleared; prefixes 8-29.
pub fn normal_cidr(cidr: &str) -> Result<String> {
    let shown: String = cidr.chars().take(64).collect();
    let (net, len) = network_of(cidr).filter(|(_, l)| (8..=29).contains(l)).ok_or_else(|| {
        Error::invalid(format!("subnet: [{}] is not an IPv4 CIDR with a /8-/29 prefix", shown.escape_default()))
    })?;
    Ok(format!("{net}/{len}"))
}

fn enc(s: &str) -> String {
    urlencoding::encode(s).into_owned()
}

fn list(v: &Value, key: &str) -> Vec<Value> {
    v[key].as_array().cloned().unwrap_or_default()
}

fn id_of(v: &Value) -> Result<String, OsError> {
    v["id"].as_str().map(str::to_string).ok_or_else(|| OsError::BadAnswer("a Neutron object without id".into()))
}

/// One ingress rule as Neutron stores it: (protocol, port min, port max, remote prefix).
type RuleKey = (Option<String>, Option<u16>, Option<u16>, Option<String>);

fn rule_key(r: &Value) -> RuleKey {
    let port = |k: &str| r[k].as_u64().and_then(|p| u16::try_from(p).ok());
    (
        r["protocol"].as_str().map(str::to_string),
        port("port_range_min"),
        port("port_range_max"),
        r["remote_ip_prefix"].as_str().map(str::to_string),
    )
}

/// The Neutron form of a platform rule (validated).
fn wanted(rule: &SecurityRule) -> Result<RuleKey> {
    rule.validate()?;
    let prefix = rule.source.as_ref().map(|s| if s.contains('/') { s.clone() } else { format!("{s}/32") });
    let prefix = prefix.map(|p| normal_cidr_any(&p)).transpose()?;
    Ok(match rule.protocol.as_str() {
        "tcp" | "udp" => {
            let (a, b) = match (rule.from_port, rule.to_port) {
                (Some(a), Some(b)) => (Some(a), Some(b)),
                (Some(a), None) | (None, Some(a)) => (Some(a), Some(a)),
                (None, None) => (None, None),
            };
            (Some(rule.protocol.clone()), a, b, prefix)
        }
        "icmp" => (Some("icmp".into()), None, None, prefix),
        _ => (None, None, None, prefix),
    })
}

/// A source CIDR of any prefix (0-32), host bits cleared as Neutron stores it.
fn normal_cidr_any(cidr: &str) -> Result<String> {
    let (net, len) =
        network_of(cidr).ok_or_else(|| Error::invalid("security rule: source must be an IPv4 address or CIDR"))?;
    Ok(format!("{net}/{len}"))
}

impl OpenStackDriver {
    /// The networks called `name` that carry `mark`, oldest first.
    async fn marked_networks(&self, name: &str, mark: &str) -> Result<Vec<Value>, OsError> {
        let v =
            self.api.get(Service::Network, &format!("/networks?name={}&description={}", enc(name), enc(mark))).await?;
        let mut nets: Vec<Value> = list(&v, "networks").into_iter().filter(|n| n["description"] == mark).collect();
        nets.sort_by(|a, b| {
            (a["created_at"].as_str(), a["id"].as_str()).cmp(&(b["created_at"].as_str(), b["id"].as_str()))
        });
        Ok(nets)
    }

    /// The security group of subnet `names`, created (with the intra-subnet ingress rule)
    /// if missing.
    async fn ensure_group(&self, names: &Names, cidr: &str) -> Result<String, OsError> {
        let path = format!("/security-groups?name={}&description={}", enc(&names.group), enc(&names.mark));
        let v = self.api.get(Service::Network, &path).await?;
        if let Some(g) = list(&v, "security_groups").into_iter().find(|g| g["description"] == names.mark.as_str()) {
            return id_of(&g);
        }
        let body = json!({"security_group": {"name": names.group, "description": names.mark}});
        let g = self.api.post(Service::Network, "/security-groups", &body).await?;
        let gid = id_of(&g["security_group"])?;
        self.add_rule(&gid, &(None, None, None, Some(cidr.to_string()))).await?;
        Ok(gid)
    }

    async fn add_rule(&self, group: &str, k: &RuleKey) -> Result<(), OsError> {
        let mut r = json!({"security_group_id": group, "direction": "ingress", "ethertype": "IPv4"});
        if let Some(p) = &k.0 {
            r["protocol"] = json!(p);
        }
        if let (Some(a), Some(b)) = (k.1, k.2) {
            r["port_range_min"] = json!(a);
            r["port_range_max"] = json!(b);
        }
        if let Some(p) = &k.3 {
            r["remote_ip_prefix"] = json!(p);
        }
        match self.api.post(Service::Network, "/security-group-rules", &json!({ "security_group_rule": r })).await {
            Ok(_) | Err(OsError::Conflict(_)) => Ok(()), // the same rule exists: converged
            Err(e) => Err(e),
        }
    }

    /// Get-or-create of subnet `(spec.owner, spec.alias)`: network, IPv4 subnet (DHCP),
    /// security group. Another CIDR under the same alias is `Conflict`; a network made in
    /// this call whose subnet cannot be made is deleted again; of two networks made by racing
    /// calls, the older stays and the newer is deleted.
    pub(crate) async fn l3_ensure_subnet(&self, spec: &SubnetSpec) -> Result<Subnet> {
        check_label("owner", &spec.owner)?;
        check_label("alias", &spec.alias)?;
        let cidr = normal_cidr(&spec.cidr)?;
        let names = Names::of(&spec.owner, &spec.alias);
        let mut made = None;
        let net = match self.marked_networks(&names.network, &names.mark).await?.into_iter().next() {
            Some(n) => n,
            None => {
                let body =
                    json!({"network": {"name": names.network, "description": names.mark, "admin_state_up": true}});
                let n = self.api.post(Service::Network, "/networks", &body).await?["network"].clone();
                made = Some(id_of(&n)?);
                // A racing call may have made one too: the oldest wins.
                let all = self.marked_networks(&names.network, &names.mark).await?;
                match all.first() {
                    Some(first) if first["id"] != n["id"] => {
                        self.api.delete(Service::Network, &format!("/networks/{}", id_of(&n)?)).await?;
                        made = None;
                        first.clone()
                    }
                    _ => n,
                }
            }
        };
        let net_id = id_of(&net)?;
        let subnets = self.api.get(Service::Network, &format!("/subnets?network_id={net_id}")).await?;
        match list(&subnets, "subnets").first() {
            Some(s) if s["cidr"].as_str() != Some(cidr.as_str()) => {
                return Err(Error::conflict(format!(
                    "subnet [{net_id}] exists with another CIDR ({})",
                    s["cidr"].as_str().unwrap_or("?")
                )));
            }
            Some(_) => {}
            None => {
                let body = json!({"subnet": {"network_id": net_id, "name": names.network, "description": names.mark,
                                             "cidr": cidr, "ip_version": 4, "enable_dhcp": true}});
                if let Err(e) = self.api.post(Service::Network, "/subnets", &body).await {
                    if let Some(id) = &made {
                        let _ = self.api.delete(Service::Network, &format!("/networks/{id}")).await;
                    }
                    return Err(Error::from(e).context(format!("Failed to create subnet {cidr}")));
                }
            }
        }
        self.ensure_group(&names, &cidr).await?;
        Ok(Subnet { id: net_id, owner: spec.owner.clone(), alias: spec.alias.clone(), cidr })
    }

    /// The polyvisor network with id `id` and its names; anything else is `NotFound`.
    async fn subnet_network(&self, id: &str) -> Result<(Value, Names, String)> {
        let nf = || Error::not_found(format!("subnet [{}]", id.chars().take(64).collect::<String>().escape_default()));
        if !is_uuid(id) {
            return Err(nf());
        }
        let net = match self.api.get(Service::Network, &format!("/networks/{id}")).await {
            Ok(v) => v["network"].clone(),
            Err(OsError::NotFound(_)) => return Err(nf()),
            Err(e) => return Err(e.into()),
        };
        let mark = net["description"].as_str().unwrap_or_default().to_string();
        let names = mark
            .starts_with("polyvisor sandbox ")
            .then(|| Names::from_network(net["name"].as_str().unwrap_or_default(), &mark))
            .flatten()
            .ok_or_else(nf)?;
        let subnets = self.api.get(Service::Network, &format!("/subnets?network_id={id}")).await?;
        let cidr = list(&subnets, "subnets")
            .first()
            .and_then(|s| s["cidr"].as_str().map(str::to_string))
            .ok_or_else(|| Error::conflict(format!("subnet [{id}] has no IPv4 subnet (half made; ensure it again)")))?;
        Ok((net, names, cidr))
    }

    async fn port_of(&self, server: &str, net: &str) -> Result<Option<Value>, OsError> {
        let v = self.api.get(Service::Network, &format!("/ports?device_id={server}&network_id={net}")).await?;
        Ok(list(&v, "ports").into_iter().next())
    }

    fn nic(port: &Value, net: &str) -> Nic {
        Nic {
            mac: port["mac_address"].as_str().unwrap_or_default().to_ascii_lowercase(),
            ipv4: list(port, "fixed_ips").iter().filter_map(|f| f["ip_address"].as_str().map(str::to_string)).collect(),
            ipv6: Vec::new(),
            network: Some(net.to_string()),
            vlan: None,
        }
    }

    /// Connects server `server` to subnet `id`: a port in the subnet's security group,
    /// attached through Nova. A server already on the subnet gets its port back; the port of
    /// an interrupted attempt (named after subnet and server, not attached) is reused; a
    /// port whose attach fails is deleted again.
    pub(crate) async fn l3_connect_subnet(&self, server: &str, id: &str) -> Result<Nic> {
        let (_, names, cidr) = self.subnet_network(id).await?;
        if let Some(p) = self.port_of(server, id).await? {
            return Ok(Self::nic(&p, id));
        }
        let group = self.ensure_group(&names, &cidr).await?;
        let pname = names.port(server);
        let v = self.api.get(Service::Network, &format!("/ports?name={}&network_id={id}", enc(&pname))).await?;
        let leftover = list(&v, "ports").into_iter().find(|p| p["device_id"].as_str().unwrap_or_default().is_empty());
        let (port, made) = match leftover {
            Some(p) => (p, false),
            None => {
                let body = json!({"port": {"network_id": id, "name": pname, "description": names.mark,
                                           "security_groups": [group]}});
                (self.api.post(Service::Network, "/ports", &body).await?["port"].clone(), true)
            }
        };
        let pid = id_of(&port)?;
        let attach = json!({"interfaceAttachment": {"port_id": pid}});
        if let Err(e) = self.api.post(Service::Compute, &format!("/servers/{server}/os-interface"), &attach).await {
            if made {
                let _ = self.api.delete(Service::Network, &format!("/ports/{pid}")).await;
            }
            return Err(Error::from(e).context(format!("Failed to attach guest [{server}] to subnet [{id}]")));
        }
        // Nova's answer has the port's addresses; read the port for the one shape.
        let port = self.api.get(Service::Network, &format!("/ports/{pid}")).await?["port"].clone();
        Ok(Self::nic(&port, id))
    }

    /// Makes the ingress rules of subnet `id`'s security group the intra-subnet rule plus
    /// `rules` (deleting the others, adding the missing: a retry converges). The server must
    /// be on the subnet.
    pub(crate) async fn l3_set_rules(&self, server: &str, id: &str, rules: &[SecurityRule]) -> Result<()> {
        let mut want = Vec::with_capacity(rules.len() + 1);
        for r in rules {
            want.push(wanted(r)?);
        }
        let (_, names, cidr) = self.subnet_network(id).await?;
        want.push((None, None, None, Some(cidr.clone())));
        if self.port_of(server, id).await?.is_none() {
            return Err(Error::conflict(format!("guest [{server}] is not connected to subnet [{id}]")));
        }
        let group = self.ensure_group(&names, &cidr).await?;
        let path = format!("/security-group-rules?security_group_id={group}&direction=ingress");
        let have = list(&self.api.get(Service::Network, &path).await?, "security_group_rules");
        for r in &have {
            if r["ethertype"] == "IPv4" && !want.contains(&rule_key(r)) {
                self.api.delete(Service::Network, &format!("/security-group-rules/{}", id_of(r)?)).await?;
            }
        }
        let present: Vec<RuleKey> = have.iter().filter(|r| r["ethertype"] == "IPv4").map(rule_key).collect();
        for k in want.iter().filter(|k| !present.contains(k)) {
            self.add_rule(&group, k).await?;
        }
        Ok(())
    }

    /// Deletes sandbox `owner`'s subnets: their ports (Neutron tells Nova, which drops the
    /// interfaces), security groups and networks (the subnets go with them). Returns how
    /// many networks went; 0 on a retry. A port someone else put on such a network is not
    /// deleted: the network delete then fails with Neutron's conflict and the rest stays for
    /// a retry.
    pub(crate) async fn l3_delete_subnets(&self, owner: &str) -> Result<usize> {
        check_label("owner", owner)?;
        let mark = mark(owner);
        let v = self.api.get(Service::Network, &format!("/networks?description={}", enc(&mark))).await?;
        let nets: Vec<Value> = list(&v, "networks")
            .into_iter()
            .filter(|n| n["description"] == mark.as_str())
            .filter(|n| Names::from_network(n["name"].as_str().unwrap_or_default(), &mark).is_some())
            .collect();
        for n in &nets {
            let nid = id_of(n)?;
            let ports = self.api.get(Service::Network, &format!("/ports?network_id={nid}")).await?;
            for p in list(&ports, "ports") {
                if p["description"] == mark.as_str() && p["name"].as_str().is_some_and(|s| s.starts_with("pv-sp-")) {
                    self.api.delete(Service::Network, &format!("/ports/{}", id_of(&p)?)).await?;
                }
            }
        }
        // Groups before networks would fail while ports use them; ports are gone now.
        let groups = self.api.get(Service::Network, &format!("/security-groups?description={}", enc(&mark))).await?;
        for g in list(&groups, "security_groups") {
            if g["description"] == mark.as_str() && g["name"].as_str().is_some_and(|s| s.starts_with("pv-sg-")) {
                self.api.delete(Service::Network, &format!("/security-groups/{}", id_of(&g)?)).await?;
            }
        }
        for n in &nets {
            self.api.delete(Service::Network, &format!("/networks/{}", id_of(n)?)).await.map_err(|e| {
                Error::from(e)
                    .context(format!("Failed to delete network [{}] of the sandbox", n["id"].as_str().unwrap_or("?")))
            })?;
        }
        Ok(nets.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_owner_and_alias() {
        let a = Names::of("res-1", "DefaultSubnet");
        assert_eq!(a, Names::of("res-1", "DefaultSubnet"));
        assert_ne!(a.network, Names::of("res-2", "DefaultSubnet").network);
        assert_ne!(Names::of("ab", "c").network, Names::of("a", "bc").network);
        assert_eq!(a.mark, Names::of("res-1", "Other").mark);
        assert_ne!(a.mark, mark("res-2"));
        assert_eq!(a.group[6..], a.network[6..]);
        assert_eq!(Names::from_network(&a.network, &a.mark), Some(a.clone()));
        assert_eq!(Names::from_network("pv-net", &a.mark), None);
        assert!(a.port("0b1c2d3e-0000-4000-8000-000000000000").ends_with("-0b1c2d3e"));
    }

    #[test]
    fn cidrs_and_rules_take_neutron_form() {
        assert_eq!(normal_cidr("10.0.1.7/24").unwrap(), "10.0.1.0/24");
        for bad in ["10.0.0.0/30", "10.0.0.0/7", "x", ""] {
            assert_eq!(normal_cidr(bad).unwrap_err().kind(), polyvisor_core::ErrorKind::InvalidInput, "{bad}");
        }
        let r = |p: &str, a: Option<u16>, b: Option<u16>, s: Option<&str>| SecurityRule {
            protocol: p.into(),
            from_port: a,
            to_port: b,
            source: s.map(str::to_string),
        };
        assert_eq!(
            wanted(&r("tcp", Some(22), Some(22), Some("10.0.5.7"))).unwrap(),
            (Some("tcp".into()), Some(22), Some(22), Some("10.0.5.7/32".into()))
        );
        assert_eq!(wanted(&r("udp", Some(53), None, None)).unwrap(), (Some("udp".into()), Some(53), Some(53), None));
        assert_eq!(
            wanted(&r("any", None, None, Some("192.168.7.9/16"))).unwrap(),
            (None, None, None, Some("192.168.0.0/16".into()))
        );
        assert_eq!(wanted(&r("icmp", Some(8), None, None)).unwrap(), (Some("icmp".into()), None, None, None));
        assert!(wanted(&r("gre", None, None, None)).is_err());
        let stored =
            json!({"protocol": "tcp", "port_range_min": 22, "port_range_max": 22, "remote_ip_prefix": "10.0.5.7/32"});
        assert_eq!(rule_key(&stored), wanted(&r("tcp", Some(22), Some(22), Some("10.0.5.7"))).unwrap());
    }
}
