use super::*;

const SRC: &str = r#"<domain type='qemu'>
  <name>tmpl</name>
  <uuid>11111111-2222-4333-8444-555555555555</uuid>
  <metadata>
    <polyvisor:meta xmlns:polyvisor="https://polyvisor.dev/xmlns/libvirt/1" template="1"><polyvisor:volume path="/p/tmpl.qcow2"/></polyvisor:meta>
    <libosinfo:libosinfo xmlns:libosinfo="http://libosinfo.org/xmlns/libvirt/domain/1.0"><libosinfo:os id="http://debian.org/debian/12"/></libosinfo:libosinfo>
  </metadata>
  <memory unit='KiB'>131072</memory>
  <currentMemory unit='KiB'>131072</currentMemory>
  <vcpu placement='static'>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>/k</kernel></os>
  <devices>
    <disk type='volume' device='disk'>
      <driver name='qemu' type='raw' discard='unmap'/>
      <source pool='polyvisor' volume='tmpl.img'/>
      <backingStore/>
      <target dev='vda' bus='virtio'/>
      <readonly/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/>
    </disk>
    <disk type='file' device='cdrom'><source file='/iso/x.iso'/><target dev='sda' bus='sata'/></disk>
    <interface type='network'>
      <mac address='52:54:00:aa:bb:cc'/>
      <source network='tg-net'/>
      <vlan><tag id='12'/></vlan>
      <model type='virtio'/>
    </interface>
    <serial type='pty'><log file='/var/log/libvirt/qemu/tmpl-serial.log' append='off'/><target port='0'/></serial>
    <graphics type='vnc' port='5901' autoport='no' listen='0.0.0.0'><listen type='address' address='0.0.0.0'/></graphics>
  </devices>
</domain>"#;

#[test]
fn parses_what_polyvisor_needs() {
    let d = DomainXml::parse(SRC).unwrap();
    assert_eq!(d.name, "tmpl");
    assert_eq!(d.uuid, "11111111-2222-4333-8444-555555555555");
    assert_eq!(d.vcpus, Some(1));
    assert_eq!(d.memory_mb, Some(128));
    assert_eq!(d.os_type.as_deref(), Some("hvm"));
    assert!(d.meta.template);
    assert_eq!(d.meta.volumes, ["/p/tmpl.qcow2"]);
    assert_eq!(
        d.ifaces,
        [IfaceXml {
            mac: "52:54:00:aa:bb:cc".into(),
            network: Some("tg-net".into()),
            vlan: Some(12),
            filter: None,
            target: None
        }]
    );
    assert_eq!(d.disks.len(), 1, "cdrom is not a disk");
    assert_eq!(d.disks[0].volume, Some(("polyvisor".into(), "tmpl.img".into())));
    assert_eq!(d.disks[0].format.as_deref(), Some("raw"));
    let g = d.graphics.unwrap();
    assert_eq!((g.kind.as_str(), g.port, g.listen.as_deref()), ("vnc", Some(5901), Some("0.0.0.0")));
    assert!(DomainXml::parse("<nope/>").is_err());
    assert!(DomainXml::parse("<domain").is_err());
}

#[test]
fn clone_rewrite_changes_identity_and_keeps_the_rest() {
    let edit = CloneEdit {
        name: "c1".into(),
        uuid: "aaaaaaaa-2222-4333-8444-555555555555".into(),
        macs: vec!["52:54:00:01:02:03".into()],
        disk_paths: vec!["/p/c1.qcow2".into()],
        meta: Meta {
            source: Some("11111111-2222-4333-8444-555555555555".into()),
            mode: Some("linked".into()),
            volumes: vec!["/p/c1.qcow2".into()],
            ..Default::default()
        },
        ..Default::default()
    };
    let x = clone_xml(SRC, &edit).unwrap();
    let d = DomainXml::parse(&x).unwrap();
    assert_eq!(d.name, "c1");
    assert_eq!(d.uuid, edit.uuid);
    assert!(!d.meta.template);
    assert_eq!(d.meta.source.as_deref(), Some("11111111-2222-4333-8444-555555555555"));
    assert_eq!(d.meta.volumes, ["/p/c1.qcow2"]);
    assert_eq!(d.ifaces[0].mac, "52:54:00:01:02:03");
    assert_eq!(d.ifaces[0].network.as_deref(), Some("tg-net"));
    assert_eq!(d.ifaces[0].vlan, Some(12));
    assert_eq!(d.disks[0].path.as_deref(), Some("/p/c1.qcow2"));
    assert_eq!(d.disks[0].format.as_deref(), Some("qcow2"));
    assert!(x.contains("discard='unmap'"), "driver attributes kept: {x}");
    assert!(x.contains("libosinfo:os id="), "foreign metadata kept");
    assert!(!x.contains("<readonly/>\n      <address") && !x.contains("tmpl-serial.log"), "{x}");
    assert!(x.contains("/var/log/libvirt/qemu/c1-serial.log"));
    assert!(x.contains("/iso/x.iso"), "cdrom untouched");
    assert_eq!(x.matches("<disk").count(), 2);
}

#[test]
fn clone_rewrite_overrides_and_nic_replacement() {
    let edit = CloneEdit {
        name: "c2".into(),
        uuid: "bbbbbbbb-2222-4333-8444-555555555555".into(),
        disk_paths: vec!["/p/c2.qcow2".into()],
        vcpus: Some(2),
        memory_mb: Some(256),
        nics: Some(vec![
            NewNic { mac: "52:54:00:0A:0B:0C".into(), network: "n1".into(), vlan: None, filter: None },
            NewNic { mac: "52:54:00:0a:0b:0d".into(), network: "n2".into(), vlan: Some(7), filter: None },
        ]),
        meta: Meta { key: Some("i-2-45-VM".into()), ..Default::default() },
        ..Default::default()
    };
    let d = DomainXml::parse(&clone_xml(SRC, &edit).unwrap()).unwrap();
    assert_eq!(d.vcpus, Some(2));
    assert_eq!(d.memory_mb, Some(256));
    assert_eq!(d.meta.key.as_deref(), Some("i-2-45-VM"));
    let macs: Vec<_> = d.ifaces.iter().map(|i| (i.mac.as_str(), i.network.as_deref(), i.vlan)).collect();
    assert_eq!(macs, [("52:54:00:0a:0b:0c", Some("n1"), None), ("52:54:00:0a:0b:0d", Some("n2"), Some(7))]);
    // mismatched counts are a bug, not silently wrong XML
    let bad = CloneEdit { disk_paths: vec![], ..edit };
    assert!(clone_xml(SRC, &bad).is_err());
}

#[test]
fn iso_domain_is_valid_and_escaped() {
    let meta = Meta { key: Some("k<1>".into()), ..Default::default() };
    let nics = [NewNic { mac: "52:54:00:00:00:01".into(), network: "default".into(), vlan: None, filter: None }];
    let x = IsoDomain {
        name: "n",
        uuid: "u",
        vcpus: 1,
        memory_mb: 128,
        disk: "/p/n.qcow2",
        iso: "/iso/a'b.iso",
        nics: &nics,
        meta: &meta,
        domain_type: "qemu",
    }
    .to_xml();
    let d = DomainXml::parse(&x).unwrap();
    assert_eq!(d.meta.key.as_deref(), Some("k<1>"));
    assert_eq!(d.disks.len(), 1);
    assert!(x.contains("a&apos;b.iso"));
    assert_eq!(d.graphics.unwrap().kind, "vnc");
}

/// Issue 9: values from platforms reach libvirt XML only escaped — names, keys, OS names,
/// paths and networks with `<`, `&`, `"`, `'` and `]]>` round-trip as text and never add
/// elements or attributes.
#[test]
fn hostile_values_are_escaped_everywhere() {
    let evil = "a<b&c\"d'e]]>f</name><x/>";
    let meta = Meta {
        key: Some(evil.into()),
        os: Some(evil.into()),
        volumes: vec![format!("/p/{evil}.qcow2")],
        ..Default::default()
    };
    let nic =
        NewNic { mac: "52:54:00:00:00:01".into(), network: evil.into(), vlan: Some(5), filter: Some(evil.into()) };
    let iso = IsoDomain {
        name: evil,
        uuid: "11111111-2222-4333-8444-555555555555",
        vcpus: 1,
        memory_mb: 128,
        disk: &format!("/p/{evil}.qcow2"),
        iso: &format!("/iso/{evil}.iso"),
        nics: std::slice::from_ref(&nic),
        meta: &meta,
        domain_type: evil,
    }
    .to_xml();
    let doc = roxmltree::Document::parse(&iso).expect("well-formed");
    assert_eq!(doc.descendants().filter(|n| n.has_tag_name("x")).count(), 0, "no injected element: {iso}");
    let d = DomainXml::parse(&iso).unwrap();
    assert_eq!(d.name, evil);
    assert_eq!(d.meta.key.as_deref(), Some(evil));
    assert_eq!(d.meta.os.as_deref(), Some(evil));
    assert_eq!(d.meta.volumes, [format!("/p/{evil}.qcow2")]);
    assert_eq!(d.ifaces[0].network.as_deref(), Some(evil));
    assert_eq!(d.disks[0].path.as_deref(), Some(format!("/p/{evil}.qcow2").as_str()));
    assert_eq!(doc.root_element().attribute("type"), Some(evil));

    let edit = CloneEdit {
        name: evil.into(),
        uuid: "99999999-2222-4333-8444-555555555555".into(),
        macs: vec!["52:54:00:00:00:02".into()],
        disk_paths: vec![format!("/p/{evil}.qcow2")],
        meta: meta.clone(),
        vcpus: Some(2),
        memory_mb: Some(256),
        nics: Some(vec![nic]),
    };
    let x = clone_xml(SRC, &edit).unwrap();
    let d = DomainXml::parse(&x).expect("clone XML is well-formed");
    assert_eq!(d.name, evil);
    assert_eq!(d.meta.key.as_deref(), Some(evil));
    assert_eq!(d.disks[0].path.as_deref(), Some(format!("/p/{evil}.qcow2").as_str()));
    assert_eq!(d.ifaces.len(), 1);
    assert_eq!(d.ifaces[0].network.as_deref(), Some(evil));
    assert!(!roxmltree::Document::parse(&x).unwrap().descendants().any(|n| n.has_tag_name("x")));
    // the standalone metadata element libvirt stores
    assert_eq!(crate::meta::Meta::parse(&meta.to_xml()), meta);
}
