//! L3 guest networking on libvirt (CloudShell per-sandbox subnets), the pure half: names,
//! the network and network-filter XML, and reading polyvisor's mark back.
//!
//! A subnet is a libvirt network polyvisor defines: isolated (no `<forward>`), or NATed to
//! the host's uplink when the platform asks for a public subnet; the host holds the first
//! address as gateway and dnsmasq hands out the rest by DHCP. Its `<metadata>` carries a
//! `<polyvisor:subnet owner= alias= cidr=>` element: that mark, not the name, is what makes a
//! network polyvisor's (and the sandbox's) to connect guests to and to delete.
//!
//! Names and UUIDs are derived from `(owner, alias)`, so a retried or concurrent
//! `ensure_subnet` from any provider process lands on the same network (get-or-create
//! without a search and without local state). Each subnet has one network filter (nwfilter)
//! with the same suffix that every NIC polyvisor puts on it references: it accepts traffic
//! the guest starts, inbound traffic from inside the subnet and the platform's inbound
//! rules, and drops every other inbound packet. Replacing the rules redefines the filter;
//! libvirt re-applies it to every running NIC that references it.

use crate::meta::{esc, NS, PREFIX};
use polyvisor_core::netops::{check_label, network_of, parse_cidr, SecurityRule, Subnet, SubnetSpec};
use polyvisor_core::{Error, Result};
use sha2::{Digest, Sha256};
use std::net::Ipv4Addr;

/// Prefix of the networks polyvisor makes for subnets (`pv-sn-<16 hex>`).
pub const NETWORK_PREFIX: &str = "pv-sn-";
/// Prefix of their network filters (`pv-sg-<16 hex>`).
pub const FILTER_PREFIX: &str = "pv-sg-";

fn digest(owner: &str, alias: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"polyvisor subnet\0");
    h.update(owner.as_bytes());
    h.update([0]);
    h.update(alias.as_bytes());
    h.finalize().into()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A UUID (version-4 layout) taken from hash bytes, so the same subnet always gets the same one.
fn uuid_from(b: &[u8]) -> String {
    let mut u = [0u8; 16];
    u.copy_from_slice(&b[..16]);
    u[6] = (u[6] & 0x0f) | 0x40;
    u[8] = (u[8] & 0x3f) | 0x80;
    let h = hex(&u);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// The identities of one subnet: network, bridge and filter names and their UUIDs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    /// libvirt network name (`pv-sn-<16 hex>`), the subnet id platforms hand back.
    pub network: String,
    /// Host bridge (`pvsn<10 hex>`: 14 characters, inside Linux's 15-character limit).
    pub bridge: String,
    /// Network UUID.
    pub network_uuid: String,
    /// Network filter name (`pv-sg-<16 hex>`).
    pub filter: String,
    /// Network filter UUID.
    pub filter_uuid: String,
}

impl Names {
    /// The names of subnet `(owner, alias)`.
    pub fn of(owner: &str, alias: &str) -> Names {
        let d = digest(owner, alias);
        let tail = hex(&d[..8]);
        Names {
            network: format!("{NETWORK_PREFIX}{tail}"),
            bridge: format!("pvsn{}", &tail[..10]),
            network_uuid: uuid_from(&d[..16]),
            filter: format!("{FILTER_PREFIX}{tail}"),
            filter_uuid: uuid_from(&d[16..]),
        }
    }

    /// The names of the subnet whose network is `id`, when `id` has the shape of one
    /// (`pv-sn-` and 16 lower-case hex digits). Anything else is `NotFound` naming the id,
    /// so no other text reaches libvirt.
    pub fn from_id(id: &str) -> Result<Names> {
        let tail = id
            .strip_prefix(NETWORK_PREFIX)
            .filter(|t| t.len() == 16 && t.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        let Some(tail) = tail else {
            let shown: String = id.chars().take(80).collect();
            return Err(Error::not_found(format!("subnet [{}]", shown.escape_default())));
        };
        // The UUIDs come from the network's own definition; only the names are derivable.
        Ok(Names {
            network: id.to_string(),
            bridge: format!("pvsn{}", &tail[..10]),
            network_uuid: String::new(),
            filter: format!("{FILTER_PREFIX}{tail}"),
            filter_uuid: String::new(),
        })
    }
}

/// The address plan of a subnet: network address, prefix, gateway (the host) and the DHCP
/// range (the rest, broadcast excluded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Network address (host bits cleared).
    pub network: Ipv4Addr,
    /// Prefix length (8-29).
    pub prefix: u8,
    /// The host's address on the bridge.
    pub gateway: Ipv4Addr,
    /// First DHCP address.
    pub first: Ipv4Addr,
    /// Last DHCP address.
    pub last: Ipv4Addr,
}

impl Plan {
    /// The plan of an IPv4 CIDR. Host bits are ignored (`10.0.1.7/24` is `10.0.1.0/24`);
    /// prefixes outside 8-29 are refused (a /30 leaves the guests one address).
    pub fn of(cidr: &str) -> Result<Plan> {
        let shown: String = cidr.chars().take(64).collect();
        let (network, prefix) = network_of(cidr)
            .ok_or_else(|| Error::invalid(format!("subnet: invalid IPv4 CIDR [{}]", shown.escape_default())))?;
        if !(8..=29).contains(&prefix) {
            return Err(Error::invalid(format!(
                "subnet: CIDR [{}] must have a prefix length between 8 and 29",
                shown.escape_default()
            )));
        }
        let net = u32::from(network);
        let broadcast = net | (u32::MAX >> prefix);
        Ok(Plan {
            network,
            prefix,
            gateway: Ipv4Addr::from(net + 1),
            first: Ipv4Addr::from(net + 2),
            last: Ipv4Addr::from(broadcast - 1),
        })
    }

    /// `a.b.c.d/n` with the host bits cleared.
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.network, self.prefix)
    }
}

/// The network definition of subnet `spec` (checked: owner and alias printable, CIDR valid).
pub fn network_xml(spec: &SubnetSpec) -> Result<String> {
    check_label("owner", &spec.owner)?;
    check_label("alias", &spec.alias)?;
    let plan = Plan::of(&spec.cidr)?;
    let n = Names::of(&spec.owner, &spec.alias);
    let forward = if spec.public { "<forward mode='nat'/>" } else { "" };
    Ok(format!(
        "<network><name>{name}</name><uuid>{uuid}</uuid>\
         <metadata><{PREFIX}:subnet xmlns:{PREFIX}=\"{NS}\" owner=\"{owner}\" alias=\"{alias}\" cidr=\"{cidr}\" public=\"{public}\"/></metadata>\
         {forward}<bridge name='{bridge}' stp='on' delay='0'/>\
         <ip address='{gw}' prefix='{prefix}'><dhcp><range start='{first}' end='{last}'/></dhcp></ip></network>",
        name = n.network,
        uuid = n.network_uuid,
        owner = esc(&spec.owner),
        alias = esc(&spec.alias),
        cidr = plan.cidr(),
        public = u8::from(spec.public),
        bridge = n.bridge,
        gw = plan.gateway,
        prefix = plan.prefix,
        first = plan.first,
        last = plan.last,
    ))
}

/// polyvisor's mark on a network, read from its XML: the subnet it stands for, or `None`
/// for a network polyvisor did not make (no mark, or a name that is not one of ours).
pub fn parse_network(xml: &str) -> Option<Subnet> {
    let doc = roxmltree::Document::parse(xml).ok()?;
    let root = doc.root_element();
    let name = root.children().find(|c| c.has_tag_name("name"))?.text()?.trim().to_string();
    let mark = root
        .children()
        .find(|c| c.has_tag_name("metadata"))?
        .children()
        .find(|c| c.is_element() && c.tag_name().name() == "subnet" && c.tag_name().namespace() == Some(NS))?;
    Names::from_id(&name).ok()?;
    Some(Subnet {
        id: name,
        owner: mark.attribute("owner")?.to_string(),
        alias: mark.attribute("alias")?.to_string(),
        cidr: mark.attribute("cidr")?.to_string(),
    })
}

/// The network filter of subnet `subnet` (`names` from [`Names::of`] or the network's own
/// UUID) holding `rules` (checked with [`SecurityRule::validate`]).
pub fn filter_xml(filter: &str, uuid: &str, subnet_cidr: &str, rules: &[SecurityRule]) -> Result<String> {
    let plan = Plan::of(subnet_cidr)?;
    let mut x = format!("<filter name='{}' chain='root'><uuid>{}</uuid>", esc(filter), esc(uuid));
    // Everything the guest starts, and the replies (libvirt tracks the connection state).
    x.push_str("<rule action='accept' direction='out' priority='100'><all/></rule>");
    // Inside the sandbox's subnet (the host's gateway and DHCP server included).
    x.push_str(&format!(
        "<rule action='accept' direction='in' priority='200'><all srcipaddr='{}' srcipmask='{}'/></rule>",
        plan.network, plan.prefix
    ));
    for (i, r) in rules.iter().enumerate() {
        r.validate()?;
        let mut attrs = String::new();
        if let Some(src) = &r.source {
            let (ip, len) = parse_cidr(src).unwrap_or_else(|| (src.parse().unwrap_or(Ipv4Addr::UNSPECIFIED), 32));
            attrs.push_str(&format!(" srcipaddr='{ip}' srcipmask='{len}'"));
        }
        let proto = match r.protocol.as_str() {
            "tcp" | "udp" => {
                if let Some(a) = r.from_port {
                    attrs.push_str(&format!(" dstportstart='{a}' dstportend='{}'", r.to_port.unwrap_or(a)));
                } else if let Some(b) = r.to_port {
                    attrs.push_str(&format!(" dstportstart='{b}' dstportend='{b}'"));
                }
                r.protocol.as_str()
            }
            "icmp" => "icmp",
            _ => "all",
        };
        x.push_str(&format!(
            "<rule action='accept' direction='in' priority='{}'><{proto}{attrs}/></rule>",
            300 + i.min(600)
        ));
    }
    x.push_str("<rule action='drop' direction='in' priority='1000'><all/></rule></filter>");
    Ok(x)
}

/// The inbound rules a filter made by [`filter_xml`] holds (the platform's, without the
/// fixed ones), read back from libvirt's XML; for checks and tests.
pub fn parse_filter_rules(xml: &str) -> Result<Vec<SecurityRule>> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| Error::internal(format!("network filter XML: {e}")))?;
    let mut out = Vec::new();
    for rule in doc.root_element().children().filter(|c| c.has_tag_name("rule")) {
        let prio: i32 = rule.attribute("priority").and_then(|p| p.parse().ok()).unwrap_or(0);
        if rule.attribute("action") != Some("accept")
            || rule.attribute("direction") != Some("in")
            || !(300..1000).contains(&prio)
        {
            continue;
        }
        let Some(m) = rule.children().find(|c| c.is_element()) else { continue };
        let port = |k: &str| m.attribute(k).and_then(|p| p.parse().ok());
        let source = m.attribute("srcipaddr").map(|ip| match m.attribute("srcipmask") {
            Some("32") | None => ip.to_string(),
            Some(len) => format!("{ip}/{len}"),
        });
        out.push(SecurityRule {
            protocol: match m.tag_name().name() {
                "all" => "any".to_string(),
                p => p.to_string(),
            },
            from_port: port("dstportstart"),
            to_port: port("dstportend"),
            source,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(owner: &str, alias: &str, cidr: &str, public: bool) -> SubnetSpec {
        SubnetSpec { owner: owner.into(), alias: alias.into(), cidr: cidr.into(), public }
    }

    #[test]
    fn names_are_stable_short_and_distinct() {
        let a = Names::of("res-1", "DefaultSubnet");
        assert_eq!(a, Names::of("res-1", "DefaultSubnet"));
        assert_ne!(a.network, Names::of("res-2", "DefaultSubnet").network);
        // owner/alias boundaries cannot be shifted to collide
        assert_ne!(Names::of("ab", "c").network, Names::of("a", "bc").network);
        assert!(a.network.starts_with("pv-sn-") && a.network.len() == 22);
        assert!(a.filter.starts_with("pv-sg-") && a.filter[6..] == a.network[6..]);
        assert!(a.bridge.len() <= 15, "Linux interface names have at most 15 characters");
        assert_eq!(a.network_uuid.len(), 36);
        assert_eq!(&a.network_uuid[14..15], "4");
        assert_ne!(a.network_uuid, a.filter_uuid);
        let back = Names::from_id(&a.network).unwrap();
        assert_eq!((back.filter, back.bridge), (a.filter, a.bridge));
        for bad in ["", "default", "pv-sn-", "pv-sn-0123456789ABCDEF", "pv-sn-0123456789abcdef0", "pv-sn-x'/><a"] {
            assert_eq!(Names::from_id(bad).unwrap_err().kind(), polyvisor_core::ErrorKind::NotFound, "{bad}");
        }
    }

    #[test]
    fn plans_clear_host_bits_and_refuse_odd_prefixes() {
        let p = Plan::of("10.0.1.7/24").unwrap();
        assert_eq!(p.cidr(), "10.0.1.0/24");
        assert_eq!(
            (p.gateway.to_string(), p.first.to_string(), p.last.to_string()),
            ("10.0.1.1".into(), "10.0.1.2".into(), "10.0.1.254".into())
        );
        let p = Plan::of("192.168.8.0/29").unwrap();
        assert_eq!((p.first.to_string(), p.last.to_string()), ("192.168.8.2".into(), "192.168.8.6".into()));
        for bad in ["10.0.0.0/30", "10.0.0.0/7", "10.0.0.0", "10.0.0.0/33", "x/24", ""] {
            assert_eq!(Plan::of(bad).unwrap_err().kind(), polyvisor_core::ErrorKind::InvalidInput, "{bad}");
        }
    }

    #[test]
    fn network_xml_carries_the_mark_and_escapes_platform_text() {
        let s = spec("res\"<1>", "Default & Co", "10.0.1.0/24", false);
        let x = network_xml(&s).unwrap();
        roxmltree::Document::parse(&x).unwrap();
        assert!(!x.contains("<forward"), "a private subnet is isolated: {x}");
        assert!(x.contains("<ip address='10.0.1.1' prefix='24'><dhcp><range start='10.0.1.2' end='10.0.1.254'/>"));
        let back = parse_network(&x).unwrap();
        assert_eq!(
            (back.owner.as_str(), back.alias.as_str(), back.cidr.as_str()),
            ("res\"<1>", "Default & Co", "10.0.1.0/24")
        );
        assert_eq!(back.id, Names::of("res\"<1>", "Default & Co").network);
        assert!(network_xml(&spec("r", "a", "10.0.2.0/24", true)).unwrap().contains("<forward mode='nat'/>"));
        for bad in
            [spec("", "a", "10.0.0.0/24", false), spec("r", "a\n", "10.0.0.0/24", false), spec("r", "a", "nope", false)]
        {
            assert_eq!(network_xml(&bad).unwrap_err().kind(), polyvisor_core::ErrorKind::InvalidInput);
        }
    }

    #[test]
    fn only_marked_networks_with_our_names_are_subnets() {
        let ours = network_xml(&spec("r", "a", "10.0.1.0/24", false)).unwrap();
        assert!(parse_network(&ours).is_some());
        // as libvirt writes it back (prefix declared on the element, indented)
        let n = Names::of("r", "a").network;
        let back = format!(
            "<network>\n  <name>{n}</name>\n  <metadata>\n    <polyvisor:subnet xmlns:polyvisor=\"{NS}\" owner=\"r\" alias=\"a\" cidr=\"10.0.1.0/24\" public=\"0\"/>\n  </metadata>\n</network>"
        );
        assert_eq!(parse_network(&back).unwrap().owner, "r");
        assert!(parse_network("<network><name>default</name></network>").is_none());
        // a foreign network that copied our mark but not our naming, or another namespace
        assert!(parse_network(&back.replace(&n, "default")).is_none());
        assert!(parse_network(&back.replace(NS, "urn:other")).is_none());
        assert!(parse_network("<network").is_none());
    }

    #[test]
    fn filter_accepts_the_subnet_and_the_rules_then_drops_inbound() {
        let rules = vec![
            SecurityRule {
                protocol: "tcp".into(),
                from_port: Some(22),
                to_port: Some(22),
                source: Some("10.0.5.7".into()),
            },
            SecurityRule {
                protocol: "udp".into(),
                from_port: Some(5000),
                to_port: Some(5010),
                source: Some("192.168.0.0/16".into()),
            },
            SecurityRule { protocol: "icmp".into(), from_port: None, to_port: None, source: None },
            SecurityRule {
                protocol: "any".into(),
                from_port: None,
                to_port: None,
                source: Some("172.16.0.0/12".into()),
            },
        ];
        let x = filter_xml("pv-sg-0123456789abcdef", "11111111-2222-4333-8444-555555555555", "10.0.1.0/24", &rules)
            .unwrap();
        roxmltree::Document::parse(&x).unwrap();
        assert!(x.contains("<all srcipaddr='10.0.1.0' srcipmask='24'/>"));
        assert!(x.contains("<tcp srcipaddr='10.0.5.7' srcipmask='32' dstportstart='22' dstportend='22'/>"));
        assert!(x.ends_with("<rule action='drop' direction='in' priority='1000'><all/></rule></filter>"));
        // "10.0.5.7" comes back as an address, "192.168.0.0/16" as a CIDR
        assert_eq!(parse_filter_rules(&x).unwrap(), rules);
        assert!(parse_filter_rules(&filter_xml("f", "u", "10.0.1.0/24", &[]).unwrap()).unwrap().is_empty());
        let bad = SecurityRule { protocol: "gre".into(), from_port: None, to_port: None, source: None };
        assert_eq!(
            filter_xml("f", "u", "10.0.1.0/24", &[bad]).unwrap_err().kind(),
            polyvisor_core::ErrorKind::InvalidInput
        );
    }
}
