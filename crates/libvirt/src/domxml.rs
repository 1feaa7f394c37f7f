//! Reading a domain's XML (`virDomainGetXMLDesc`) and rewriting it for a clone: new name,
//! UUID, MACs and disk paths, polyvisor metadata, optional CPU/memory/NIC overrides.
//! Rewrites splice the original text by node ranges, so everything polyvisor does not
//! touch is kept byte for byte.

use crate::meta::{esc, Meta, NS, PREFIX};
use polyvisor_core::{Error, Result};

/// One `<interface>` of a domain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IfaceXml {
    /// MAC as written (lower-case colon form).
    pub mac: String,
    /// Network or bridge name.
    pub network: Option<String>,
    /// VLAN tag.
    pub vlan: Option<u32>,
    /// Network filter the NIC references (`<filterref filter=…>`).
    pub filter: Option<String>,
    /// Host-side device of a running NIC (`<target dev=…>`, live XML only).
    pub target: Option<String>,
}

/// One `<disk device='disk'>` of a domain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiskXml {
    /// Source file/block path, when the source is a path.
    pub path: Option<String>,
    /// `(pool, volume)` when the source is `type='volume'`.
    pub volume: Option<(String, String)>,
    /// Target device (`vda`).
    pub target: String,
    /// Image format (`qcow2`, `raw`).
    pub format: Option<String>,
}

/// The `<graphics>` element (first one).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GraphicsXml {
    /// `vnc`, `spice`, ...
    pub kind: String,
    /// Port (-1 or absent when not running / autoport).
    pub port: Option<i64>,
    /// Listen address.
    pub listen: Option<String>,
    /// Password (only present in XML read with the secure flag).
    pub passwd: Option<String>,
}

/// What polyvisor reads from a domain's XML.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DomainXml {
    /// Domain name.
    pub name: String,
    /// UUID.
    pub uuid: String,
    /// vCPUs.
    pub vcpus: Option<u32>,
    /// Memory in MiB.
    pub memory_mb: Option<u64>,
    /// `<os><type>` text (`hvm`).
    pub os_type: Option<String>,
    /// polyvisor metadata (default when absent).
    pub meta: Meta,
    /// NICs in order.
    pub ifaces: Vec<IfaceXml>,
    /// Disks (device `disk`) in order.
    pub disks: Vec<DiskXml>,
    /// First graphics element.
    pub graphics: Option<GraphicsXml>,
}

fn bad_xml(e: impl std::fmt::Display) -> Error {
    Error::backend("libvirt returned domain XML polyvisor cannot read").with_detail(e.to_string())
}

fn child<'a, 'i>(n: roxmltree::Node<'a, 'i>, tag: &str) -> Option<roxmltree::Node<'a, 'i>> {
    n.children().find(|c| c.is_element() && c.tag_name().name() == tag && c.tag_name().namespace().is_none())
}

fn children<'a, 'i>(n: roxmltree::Node<'a, 'i>, tag: &'a str) -> impl Iterator<Item = roxmltree::Node<'a, 'i>> + 'a {
    n.children().filter(move |c| c.is_element() && c.tag_name().name() == tag && c.tag_name().namespace().is_none())
}

fn text(n: Option<roxmltree::Node<'_, '_>>) -> Option<String> {
    n.and_then(|n| n.text()).map(|t| t.trim().to_string()).filter(|t| !t.is_empty())
}

/// Memory element value in MiB (`unit` defaults to KiB).
fn mib(n: roxmltree::Node<'_, '_>) -> Option<u64> {
    let v: u64 = n.text()?.trim().parse().ok()?;
    let bytes = match n.attribute("unit").unwrap_or("KiB") {
        "b" | "bytes" => v,
        "k" | "KiB" => v.saturating_mul(1024),
        "KB" => v.saturating_mul(1000),
        "M" | "MiB" => v.saturating_mul(1 << 20),
        "MB" => v.saturating_mul(1_000_000),
        "G" | "GiB" => v.saturating_mul(1 << 30),
        "GB" => v.saturating_mul(1_000_000_000),
        "T" | "TiB" => v.saturating_mul(1 << 40),
        _ => return None,
    };
    Some(bytes / (1 << 20))
}

impl DomainXml {
    /// Parses domain XML.
    pub fn parse(xml: &str) -> Result<DomainXml> {
        let doc = roxmltree::Document::parse(xml).map_err(bad_xml)?;
        let d = doc.root_element();
        if d.tag_name().name() != "domain" {
            return Err(bad_xml("root is not <domain>"));
        }
        let meta = child(d, "metadata")
            .and_then(|m| {
                m.children()
                    .find(|c| c.is_element() && c.tag_name().namespace() == Some(NS) && c.tag_name().name() == "meta")
            })
            .map(Meta::from_node)
            .unwrap_or_default();
        let mut out = DomainXml {
            name: text(child(d, "name")).unwrap_or_default(),
            uuid: text(child(d, "uuid")).unwrap_or_default(),
            vcpus: text(child(d, "vcpu")).and_then(|v| v.parse().ok()),
            memory_mb: child(d, "memory").and_then(mib),
            os_type: text(child(d, "os").and_then(|o| child(o, "type"))),
            meta,
            ..Default::default()
        };
        if let Some(dev) = child(d, "devices") {
            for i in children(dev, "interface") {
                let src = child(i, "source");
                out.ifaces.push(IfaceXml {
                    mac: child(i, "mac").and_then(|m| m.attribute("address")).unwrap_or_default().to_string(),
                    network: src
                        .and_then(|s| s.attribute("network").or_else(|| s.attribute("bridge")))
                        .map(str::to_string),
                    vlan: child(i, "vlan")
                        .and_then(|v| child(v, "tag"))
                        .and_then(|t| t.attribute("id"))
                        .and_then(|t| t.parse().ok()),
                    filter: child(i, "filterref").and_then(|f| f.attribute("filter")).map(str::to_string),
                    target: child(i, "target").and_then(|t| t.attribute("dev")).map(str::to_string),
                });
            }
            for k in children(dev, "disk").filter(|k| k.attribute("device").unwrap_or("disk") == "disk") {
                let src = child(k, "source");
                out.disks.push(DiskXml {
                    path: src.and_then(|s| s.attribute("file").or_else(|| s.attribute("dev"))).map(str::to_string),
                    volume: src
                        .and_then(|s| Some((s.attribute("pool")?.to_string(), s.attribute("volume")?.to_string()))),
                    target: child(k, "target").and_then(|t| t.attribute("dev")).unwrap_or_default().to_string(),
                    format: child(k, "driver").and_then(|t| t.attribute("type")).map(str::to_string),
                });
            }
            out.graphics = children(dev, "graphics").next().map(|g| GraphicsXml {
                kind: g.attribute("type").unwrap_or_default().to_string(),
                port: g.attribute("port").and_then(|p| p.parse().ok()),
                listen: g
                    .attribute("listen")
                    .or_else(|| child(g, "listen").and_then(|l| l.attribute("address")))
                    .map(str::to_string),
                passwd: g.attribute("passwd").map(str::to_string),
            });
        }
        Ok(out)
    }
}

/// A NIC for a rewritten or generated domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewNic {
    /// MAC (any accepted form; written lower-case).
    pub mac: String,
    /// libvirt network name.
    pub network: String,
    /// VLAN tag.
    pub vlan: Option<u32>,
    /// Network filter to reference (`<filterref>`; L3 subnets, see `crate::subnet`).
    pub filter: Option<String>,
}

impl NewNic {
    /// The `<interface>` element.
    pub fn to_xml(&self) -> String {
        let vlan = self.vlan.map(|t| format!("<vlan><tag id='{t}'/></vlan>")).unwrap_or_default();
        let filter = self.filter.as_ref().map(|f| format!("<filterref filter='{}'/>", esc(f))).unwrap_or_default();
        format!(
            "<interface type='network'><mac address='{}'/><source network='{}'/>{vlan}<model type='virtio'/>{filter}</interface>",
            esc(&self.mac.to_ascii_lowercase()),
            esc(&self.network)
        )
    }
}

/// How to turn a source domain's XML into a clone's.
#[derive(Clone, Debug, Default)]
pub struct CloneEdit {
    /// New name.
    pub name: String,
    /// New UUID.
    pub uuid: String,
    /// New MACs, one per existing interface (ignored when `nics` is set).
    pub macs: Vec<String>,
    /// New qcow2 disk paths, one per disk (device `disk`), in order.
    pub disk_paths: Vec<String>,
    /// Metadata for the clone (replaces the source's polyvisor element).
    pub meta: Meta,
    /// Override vCPUs.
    pub vcpus: Option<u32>,
    /// Override memory (MiB).
    pub memory_mb: Option<u64>,
    /// Replace all interfaces with these.
    pub nics: Option<Vec<NewNic>>,
}

/// The metadata element with polyvisor's child, keeping other applications' children.
fn metadata_xml(src: &str, old: Option<roxmltree::Node<'_, '_>>, meta: &Meta) -> String {
    let mut x = String::from("<metadata>");
    if let Some(old) = old {
        for c in old.children().filter(|c| c.is_element() && c.tag_name().namespace() != Some(NS)) {
            x.push_str(&src[c.range()]);
        }
    }
    if !meta.is_empty() {
        let inner = meta.to_xml();
        let inner = inner.replacen("<meta", &format!("<{PREFIX}:meta xmlns:{PREFIX}='{NS}'"), 1);
        let inner = inner.replace("<volume", &format!("<{PREFIX}:volume")).replace("<base", &format!("<{PREFIX}:base"));
        x.push_str(&inner.replace("</meta>", &format!("</{PREFIX}:meta>")));
    }
    x.push_str("</metadata>");
    x
}

/// Start tag text of an element with its attributes (optionally overriding some).
fn start_tag(n: roxmltree::Node<'_, '_>, overrides: &[(&str, &str)]) -> String {
    let mut t = format!("<{}", n.tag_name().name());
    for a in n.attributes() {
        if overrides.iter().any(|(k, _)| *k == a.name()) || a.namespace().is_some() {
            continue;
        }
        t.push_str(&format!(" {}='{}'", a.name(), esc(a.value())));
    }
    for (k, v) in overrides {
        t.push_str(&format!(" {k}='{}'", esc(v)));
    }
    t.push('>');
    t
}

/// Rewrites `src` (a domain's inactive XML) for a clone.
pub fn clone_xml(src: &str, edit: &CloneEdit) -> Result<String> {
    let doc = roxmltree::Document::parse(src).map_err(bad_xml)?;
    let d = doc.root_element();
    let mut edits: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    let name = child(d, "name").ok_or_else(|| bad_xml("no <name>"))?;
    edits.push((name.range(), format!("<name>{}</name>", esc(&edit.name))));
    match child(d, "uuid") {
        Some(u) => edits.push((u.range(), format!("<uuid>{}</uuid>", esc(&edit.uuid)))),
        None => edits.push((name.range().end..name.range().end, format!("<uuid>{}</uuid>", esc(&edit.uuid)))),
    }
    let md = child(d, "metadata");
    match md {
        Some(m) => edits.push((m.range(), metadata_xml(src, Some(m), &edit.meta))),
        None => edits.push((name.range().end..name.range().end, metadata_xml(src, None, &edit.meta))),
    }
    if let (Some(v), Some(n)) = (edit.vcpus, child(d, "vcpu")) {
        edits.push((n.range(), format!("{}{v}</vcpu>", start_tag(n, &[]))));
    }
    if let Some(m) = edit.memory_mb {
        for tag in ["memory", "currentMemory"] {
            if let Some(n) = child(d, tag) {
                edits.push((n.range(), format!("<{tag} unit='MiB'>{m}</{tag}>")));
            }
        }
    }
    let dev = child(d, "devices").ok_or_else(|| bad_xml("no <devices>"))?;
    let disks: Vec<_> = children(dev, "disk").filter(|k| k.attribute("device").unwrap_or("disk") == "disk").collect();
    if disks.len() != edit.disk_paths.len() {
        return Err(Error::internal("clone disk count mismatch"));
    }
    for (k, path) in disks.iter().zip(&edit.disk_paths) {
        let mut x = start_tag(*k, &[("type", "file")]);
        for c in k.children().filter(|c| c.is_element()) {
            match c.tag_name().name() {
                "source" | "backingStore" | "readonly" | "alias" => {}
                "driver" => {
                    x.push_str(&start_tag(c, &[("type", "qcow2")]).replacen('>', "/>", 1));
                }
                _ => x.push_str(&src[c.range()]),
            }
        }
        x.push_str(&format!("<source file='{}'/></disk>", esc(path)));
        edits.push((k.range(), x));
    }
    let ifaces: Vec<_> = children(dev, "interface").collect();
    match &edit.nics {
        Some(nics) => {
            for i in &ifaces {
                edits.push((i.range(), String::new()));
            }
            let at = dev.range().end - "</devices>".len();
            edits.push((at..at, nics.iter().map(NewNic::to_xml).collect()));
        }
        None => {
            if ifaces.len() != edit.macs.len() {
                return Err(Error::internal("clone NIC count mismatch"));
            }
            for (i, mac) in ifaces.iter().zip(&edit.macs) {
                let mut x = start_tag(*i, &[]);
                x.push_str(&format!("<mac address='{}'/>", esc(&mac.to_ascii_lowercase())));
                for c in i.children().filter(|c| c.is_element()) {
                    if !matches!(c.tag_name().name(), "mac" | "target" | "alias") {
                        x.push_str(&src[c.range()]);
                    }
                }
                x.push_str("</interface>");
                edits.push((i.range(), x));
            }
        }
    }
    for ch in children(dev, "serial").chain(children(dev, "console")) {
        if let Some(log) = child(ch, "log") {
            let dir = log.attribute("file").and_then(|f| f.rsplit_once('/')).map(|(d, _)| d.to_string());
            let new = dir
                .map(|d| format!("<log file='{}/{}-serial.log' append='off'/>", esc(&d), esc(&edit.name)))
                .unwrap_or_default();
            edits.push((log.range(), new));
        }
    }
    edits.sort_by(|a, b| b.0.start.cmp(&a.0.start).then(b.0.end.cmp(&a.0.end)));
    let mut out = src.to_string();
    for (r, s) in edits {
        out.replace_range(r, &s);
    }
    Ok(out)
}

/// XML for a new domain booting an installer ISO from a blank disk (CloudStack ISO create).
pub struct IsoDomain<'a> {
    /// Name.
    pub name: &'a str,
    /// UUID.
    pub uuid: &'a str,
    /// vCPUs.
    pub vcpus: u32,
    /// Memory MiB.
    pub memory_mb: u64,
    /// Blank qcow2 disk path.
    pub disk: &'a str,
    /// ISO path.
    pub iso: &'a str,
    /// NICs.
    pub nics: &'a [NewNic],
    /// Metadata.
    pub meta: &'a Meta,
    /// Domain type (`qemu` for TCG, `kvm`).
    pub domain_type: &'a str,
}

impl IsoDomain<'_> {
    /// The domain XML.
    pub fn to_xml(&self) -> String {
        let nics: String = self.nics.iter().map(NewNic::to_xml).collect();
        format!(
            "<domain type='{ty}'><name>{name}</name><uuid>{uuid}</uuid>{md}<memory unit='MiB'>{mem}</memory><vcpu>{cpu}</vcpu>\
<os><type arch='x86_64'>hvm</type><boot dev='cdrom'/><boot dev='hd'/></os><features><acpi/></features><clock offset='utc'/>\
<on_poweroff>destroy</on_poweroff><devices>\
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{disk}'/><target dev='vda' bus='virtio'/></disk>\
<disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='{iso}'/><target dev='sda' bus='sata'/><readonly/></disk>\
{nics}<graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'/></devices></domain>",
            ty = esc(self.domain_type),
            name = esc(self.name),
            uuid = esc(self.uuid),
            md = metadata_xml("", None, self.meta),
            mem = self.memory_mb,
            cpu = self.vcpus,
            disk = esc(self.disk),
            iso = esc(self.iso),
        )
    }
}

#[cfg(test)]
mod tests;
