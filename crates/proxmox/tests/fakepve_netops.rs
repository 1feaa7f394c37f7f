//! L2 guest networking (VLAN NICs via `netN` tags) against the real fakepve simulator.
#![allow(missing_docs)]

mod common;

use common::FakePve;
use polyvisor_core::netops::VlanAttach;
use polyvisor_core::*;
use polyvisor_proxmox::open_driver;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vlan_nics_are_added_retagged_and_removed() {
    let pve = FakePve::start();
    let d = open_driver(&Settings::from_json(&pve.token_settings()).unwrap()).unwrap();
    assert!(d.capabilities().networking.vlan_nics);
    let id = GuestId::new("100");
    // Stopped, so the config reads back at once (a running guest gets them as pending).
    let t = d.power(&id, PowerAction::Stop).await.unwrap();
    polyvisor_core::task::wait(&d, &t, std::time::Duration::from_secs(20), std::time::Duration::from_millis(50))
        .await
        .unwrap();
    let before = d.get_guest(&id).await.unwrap().nics;
    // A new NIC on VLAN 42: PVE picks its MAC; the same VLAN again reuses it.
    let nic = d.attach_vlan(&id, &VlanAttach { vlan: 42, ..Default::default() }).await.unwrap();
    assert_eq!(nic.vlan, Some(42));
    let again = d.attach_vlan(&id, &VlanAttach { vlan: 42, ..Default::default() }).await.unwrap();
    assert_eq!(again.mac, nic.mac);
    let g = d.get_guest(&id).await.unwrap();
    assert_eq!(g.nics.len(), before.len() + 1);
    assert!(g.nics.iter().any(|n| n.mac == nic.mac && n.vlan == Some(42)), "{:?}", g.nics);
    // Retag the primary NIC, then detach it: it stays, untagged, with its MAC.
    let first = d.attach_vlan(&id, &VlanAttach { vlan: 7, nic_index: Some(0), network: None }).await.unwrap();
    assert_eq!((first.mac.as_str(), first.vlan), (before[0].mac.as_str(), Some(7)));
    d.detach_vlan(&id, &first.mac).await.unwrap();
    assert_eq!(d.get_guest(&id).await.unwrap().nics[0].vlan, None);
    // The added NIC is removed; twice is fine.
    d.detach_vlan(&id, &nic.mac).await.unwrap();
    d.detach_vlan(&id, &nic.mac.to_lowercase()).await.unwrap();
    assert_eq!(d.get_guest(&id).await.unwrap().nics.len(), before.len());
    // Bad input is refused before any request.
    let e = d.attach_vlan(&id, &VlanAttach { vlan: 0, ..Default::default() }).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let e = d.attach_vlan(&id, &VlanAttach { vlan: 5, nic_index: Some(9), network: None }).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let e = d
        .attach_vlan(&id, &VlanAttach { vlan: 5, nic_index: None, network: Some("vmbr0,link_down=1".into()) })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    // Templates are never changed.
    let e = d.attach_vlan(&GuestId::new("9000"), &VlanAttach { vlan: 5, ..Default::default() }).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
}
