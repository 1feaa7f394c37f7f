//! L2 guest networking against a real libvirtd + QEMU: a VLAN-tagged NIC
//! (`<vlan><tag id=…/></vlan>`) attached to and detached from a domain's definition, read
//! back through libvirt. Needs `scripts/ci/start-libvirt.sh` (tiny guest, network `tg-net`,
//! pool `polyvisor`).
#![cfg(feature = "libvirt")]

use polyvisor_core::netops::VlanAttach;
use polyvisor_core::task::wait;
use polyvisor_core::{ErrorKind, GuestId, Settings};
use polyvisor_test_support::tiny::{virsh, TinyGuest};
use std::time::Duration;

const NAME: &str = "pvtest-vlan";

fn settings(vlans: &str) -> Settings {
    Settings::from_pairs([
        ("uri", "qemu:///system"),
        ("pool", "polyvisor"),
        ("network", "tg-net"),
        ("vlans", vlans),
        ("call_timeout_secs", "30"),
    ])
}

#[tokio::test(flavor = "current_thread")]
async fn real_qemu_vlan_nic_attach_read_back_detach() {
    let tiny = TinyGuest::from_env();
    tiny.require();
    let id = GuestId::new(tiny.define_copy(NAME).unwrap_or_else(|e| panic!("{e}")));
    let vlan = |v: u32| VlanAttach { vlan: v, nic_index: None, network: None };

    // `vlans` off (plain bridge networks): declared and refused, never a silently untagged NIC.
    let off = polyvisor_libvirt::open(&settings("false")).unwrap();
    assert!(!off.capabilities().networking.vlan_nics);
    assert_eq!(off.attach_vlan(&id, &vlan(42)).await.unwrap_err().kind(), ErrorKind::Unsupported);

    let d = polyvisor_libvirt::open(&settings("true")).unwrap();
    assert!(d.capabilities().networking.vlan_nics);
    let before = d.get_guest(&id).await.unwrap().nics;
    let nic = d.attach_vlan(&id, &vlan(42)).await.unwrap();
    assert_eq!((nic.vlan, nic.network.as_deref()), (Some(42), Some("tg-net")));
    // Idempotent: a retry returns the same NIC.
    assert_eq!(d.attach_vlan(&id, &vlan(42)).await.unwrap().mac, nic.mac);
    let g = d.get_guest(&id).await.unwrap();
    assert_eq!(g.nics.len(), before.len() + 1, "{:?}", g.nics);
    let got = g.nics.iter().find(|n| n.mac == nic.mac).expect("the new NIC");
    assert_eq!(got.vlan, Some(42));
    let xml = virsh(&["dumpxml", "--inactive", NAME]).unwrap();
    assert!(xml.contains("<tag id='42'/>"), "{xml}");
    // Bad input.
    assert_eq!(d.attach_vlan(&id, &vlan(4095)).await.unwrap_err().kind(), ErrorKind::InvalidInput);
    let retag = VlanAttach { nic_index: Some(0), ..vlan(7) };
    assert_eq!(d.attach_vlan(&id, &retag).await.unwrap_err().kind(), ErrorKind::Unsupported);
    if let Some(plain) = before.iter().find(|n| n.vlan.is_none()) {
        assert_eq!(d.detach_vlan(&id, &plain.mac).await.unwrap_err().kind(), ErrorKind::InvalidInput);
    }
    // Detach, read back, and again (gone = success).
    d.detach_vlan(&id, &nic.mac.to_ascii_lowercase()).await.unwrap();
    let g = d.get_guest(&id).await.unwrap();
    assert_eq!(g.nics, before);
    assert!(!virsh(&["dumpxml", "--inactive", NAME]).unwrap().contains("<vlan"));
    d.detach_vlan(&id, &nic.mac).await.unwrap();

    let t = d.delete_guest(&id).await.unwrap();
    wait(&*d, &t, Duration::from_secs(120), Duration::from_millis(200)).await.unwrap();
}

/// A running domain on a plain Linux-bridge network (`tg-net`): libvirt refuses to hot-plug
/// a tagged NIC ("vlan tag not supported for this connection type"); the driver reports it
/// as `Unsupported` and the definition is left untouched (libvirt applies config+live as one).
#[tokio::test(flavor = "current_thread")]
async fn real_qemu_refuses_a_live_vlan_nic_on_an_untagged_bridge() {
    const LIVE: &str = "pvtest-vlan-live";
    let _ = virsh(&["destroy", LIVE]);
    let _ = virsh(&["undefine", LIVE]);
    let dir = polyvisor_test_support::temp::dir("vlan-live");
    let f = dir.path().join("dom.xml");
    // Diskless: QEMU runs (firmware only), which is all a hot-plug needs.
    std::fs::write(
        &f,
        format!(
            "<domain type='qemu'><name>{LIVE}</name><memory unit='MiB'>32</memory><vcpu>1</vcpu>\
             <os><type arch='x86_64'>hvm</type></os><devices/></domain>"
        ),
    )
    .unwrap();
    virsh(&["define", &f.to_string_lossy()]).unwrap();
    virsh(&["start", LIVE]).unwrap();
    let id = GuestId::new(virsh(&["domuuid", LIVE]).unwrap());
    let d = polyvisor_libvirt::open(&settings("true")).unwrap();
    let r = d.attach_vlan(&id, &VlanAttach { vlan: 42, nic_index: None, network: None }).await;
    let after = virsh(&["dumpxml", "--inactive", LIVE]).unwrap();
    let _ = virsh(&["destroy", LIVE]);
    let _ = virsh(&["undefine", LIVE]);
    let e = r.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e:?}");
    assert!(!after.contains("<vlan") && !after.contains("<interface"), "{after}");
}

/// A bridge-per-VLAN host (`vlan_networks=pv-vlan-{vlan}`; start-libvirt.sh defines
/// `pv-vlan-42`): VLAN 42 is an untagged NIC on the network `pv-vlan-42`, reported back as
/// VLAN 42, idempotent, detached by MAC; an untagged NIC on another network is not a VLAN
/// NIC and is never detached.
#[tokio::test(flavor = "current_thread")]
async fn real_qemu_vlan_nic_on_a_network_per_vlan() {
    const PER: &str = "pvtest-vlan-per";
    let tiny = TinyGuest::from_env();
    tiny.require();
    let _ = virsh(&["undefine", PER]);
    let id = GuestId::new(tiny.define_copy(PER).unwrap_or_else(|e| panic!("{e}")));
    let vlan = |v: u32| VlanAttach { vlan: v, nic_index: None, network: None };
    let s = Settings::from_pairs([
        ("uri", "qemu:///system"),
        ("pool", "polyvisor"),
        ("network", "tg-net"),
        ("vlan_networks", "pv-vlan-{vlan}"),
        ("call_timeout_secs", "30"),
    ]);
    let d = polyvisor_libvirt::open(&s).unwrap();
    assert!(d.capabilities().networking.vlan_nics);
    let before = d.get_guest(&id).await.unwrap().nics;
    let nic = d.attach_vlan(&id, &vlan(42)).await.unwrap();
    assert_eq!((nic.vlan, nic.network.as_deref()), (Some(42), Some("pv-vlan-42")));
    assert_eq!(d.attach_vlan(&id, &vlan(42)).await.unwrap().mac, nic.mac, "idempotent");
    let g = d.get_guest(&id).await.unwrap();
    let got = g.nics.iter().find(|n| n.mac == nic.mac).expect("the new NIC");
    assert_eq!((got.vlan, got.network.as_deref()), (Some(42), Some("pv-vlan-42")));
    let xml = virsh(&["dumpxml", "--inactive", PER]).unwrap();
    assert!(xml.contains("<source network='pv-vlan-42'/>") && !xml.contains("<vlan"), "{xml}");
    if let Some(plain) = before.iter().find(|n| n.vlan.is_none()) {
        assert_eq!(d.detach_vlan(&id, &plain.mac).await.unwrap_err().kind(), ErrorKind::InvalidInput);
    }
    d.detach_vlan(&id, &nic.mac).await.unwrap();
    assert_eq!(d.get_guest(&id).await.unwrap().nics, before);
    d.detach_vlan(&id, &nic.mac).await.unwrap();
    let t = d.delete_guest(&id).await.unwrap();
    wait(&*d, &t, Duration::from_secs(120), Duration::from_millis(200)).await.unwrap();
}
