//! polyvisor's own metadata element inside a domain's `<metadata>`: the template flag,
//! the platform key, clone provenance and the volumes polyvisor created. It is the only
//! place polyvisor keeps state (set with `virDomainSetMetadata`).

/// Namespace URI of the metadata element.
pub const NS: &str = "https://polyvisor.dev/xmlns/libvirt/1";
/// Namespace prefix libvirt writes for [`NS`].
pub const PREFIX: &str = "polyvisor";

/// The decoded `<polyvisor:meta>` element.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// Flag template: clones are made from its disks, which are never written again.
    pub template: bool,
    /// Platform key (CloudStack internal name) for `find_by_key`.
    pub key: Option<String>,
    /// UUID of the domain this one was cloned from.
    pub source: Option<String>,
    /// Snapshot of the source the clone was made from.
    pub snapshot: Option<String>,
    /// `linked` or `full`.
    pub mode: Option<String>,
    /// Guest OS name as the platform gave it.
    pub os: Option<String>,
    /// Template generation: bumped on every VM→template convert, so a frozen base of the
    /// current state is made once per generation (the template may be edited in between).
    pub gen: u32,
    /// Paths of volumes polyvisor created for this domain (deleted with it).
    pub volumes: Vec<String>,
    /// Paths of snapshot base volumes made from this domain's snapshots (deleted with it).
    pub bases: Vec<String>,
}

/// Escapes text for an XML attribute value.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c if c.is_control() && !matches!(c, '\t' | '\n' | '\r') => {}
            c => o.push(c),
        }
    }
    o
}

impl Meta {
    /// Whether nothing is recorded (then the element can be removed).
    pub fn is_empty(&self) -> bool {
        *self == Meta::default()
    }

    /// The element as `virDomainSetMetadata` wants it (libvirt adds the namespace).
    pub fn to_xml(&self) -> String {
        let mut x = String::from("<meta");
        if self.template {
            x.push_str(" template=\"1\"");
        }
        for (k, v) in [
            ("key", &self.key),
            ("source", &self.source),
            ("snapshot", &self.snapshot),
            ("mode", &self.mode),
            ("os", &self.os),
        ] {
            if let Some(v) = v {
                x.push_str(&format!(" {k}=\"{}\"", esc(v)));
            }
        }
        if self.gen > 0 {
            x.push_str(&format!(" gen=\"{}\"", self.gen));
        }
        x.push('>');
        for p in &self.volumes {
            x.push_str(&format!("<volume path=\"{}\"/>", esc(p)));
        }
        for p in &self.bases {
            x.push_str(&format!("<base path=\"{}\"/>", esc(p)));
        }
        x.push_str("</meta>");
        x
    }

    /// Reads the element from a node (the `meta` element in namespace [`NS`]).
    pub fn from_node(n: roxmltree::Node<'_, '_>) -> Meta {
        let a = |k: &str| n.attribute(k).map(str::to_string).filter(|v| !v.is_empty());
        let paths = |tag: &str| -> Vec<String> {
            n.children()
                .filter(|c| c.is_element() && c.tag_name().name() == tag)
                .filter_map(|c| c.attribute("path").map(str::to_string))
                .collect()
        };
        Meta {
            template: matches!(n.attribute("template"), Some("1" | "true" | "yes")),
            key: a("key"),
            source: a("source"),
            snapshot: a("snapshot"),
            mode: a("mode"),
            os: a("os"),
            gen: n.attribute("gen").and_then(|g| g.parse().ok()).unwrap_or(0),
            volumes: paths("volume"),
            bases: paths("base"),
        }
    }

    /// Parses the standalone element text (as `virDomainGetMetadata` returns it).
    pub fn parse(xml: &str) -> Meta {
        match roxmltree::Document::parse(xml) {
            Ok(doc) => Meta::from_node(doc.root_element()),
            Err(_) => Meta::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_escaping() {
        let m = Meta {
            template: true,
            key: Some("i-2-45-VM".into()),
            source: Some("u\"<&>'".into()),
            snapshot: None,
            mode: Some("linked".into()),
            os: None,
            gen: 3,
            volumes: vec!["/p/a b.qcow2".into()],
            bases: vec!["/p/base.qcow2".into()],
        };
        let x = m.to_xml();
        assert_eq!(Meta::parse(&x), m);
        // as it comes back from libvirt, with the namespace
        let ns = format!(
            "<polyvisor:meta xmlns:polyvisor=\"{NS}\" key=\"k\"><polyvisor:volume path=\"/v\"/></polyvisor:meta>"
        );
        let back = Meta::parse(&ns);
        assert_eq!(back.key.as_deref(), Some("k"));
        assert_eq!(back.volumes, ["/v"]);
        assert!(!back.template);
        assert!(Meta::parse("<not-xml").is_empty());
    }
}
