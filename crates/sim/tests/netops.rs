//! Guest networking (CloudShell L2/L3) in the simulator.

use polyvisor_core::netops::{SecurityRule, SubnetSpec, VlanAttach};
use polyvisor_core::{Driver, ErrorKind, GuestId, Settings};
use std::sync::Arc;

fn fresh() -> (tempfile::TempDir, Arc<dyn Driver>) {
    let dir = tempfile::tempdir().unwrap();
    let s = Settings::from_pairs([
        ("sim_db", dir.path().join("sim.db").to_string_lossy().into_owned()),
        ("sim_task_ms", "0".to_string()),
        ("sim_boot_ms", "0".to_string()),
    ]);
    let d = polyvisor_sim::open(&s).unwrap();
    (dir, d)
}

async fn a_vm(d: &dyn Driver) -> GuestId {
    d.list_guests().await.unwrap().into_iter().find(|g| !g.is_template).unwrap().id
}

#[tokio::test]
async fn vlan_nics_attach_reuse_and_detach() {
    let (_dir, d) = fresh();
    assert!(d.capabilities().networking.vlan_nics);
    let id = a_vm(&*d).await;
    let before = d.get_guest(&id).await.unwrap().nics.len();
    let nic = d.attach_vlan(&id, &VlanAttach { vlan: 42, ..Default::default() }).await.unwrap();
    assert_eq!(nic.vlan, Some(42));
    let g = d.get_guest(&id).await.unwrap();
    assert_eq!(g.nics.len(), before + 1);
    assert!(g.nics.iter().any(|n| n.mac == nic.mac && n.vlan == Some(42)));
    // Idempotent: the same VLAN again reuses that NIC.
    let again = d.attach_vlan(&id, &VlanAttach { vlan: 42, ..Default::default() }).await.unwrap();
    assert_eq!(again.mac, nic.mac);
    assert_eq!(d.get_guest(&id).await.unwrap().nics.len(), before + 1);
    // Retag the first NIC, then detach it: it stays, untagged.
    let first = d.attach_vlan(&id, &VlanAttach { vlan: 7, nic_index: Some(0), network: None }).await.unwrap();
    assert_eq!(d.get_guest(&id).await.unwrap().nics[0].vlan, Some(7));
    d.detach_vlan(&id, &first.mac.to_lowercase()).await.unwrap();
    assert_eq!(d.get_guest(&id).await.unwrap().nics[0].vlan, None);
    // Detaching the added NIC removes it; twice is fine.
    d.detach_vlan(&id, &nic.mac).await.unwrap();
    d.detach_vlan(&id, &nic.mac).await.unwrap();
    assert_eq!(d.get_guest(&id).await.unwrap().nics.len(), before);
    // Bad input is refused before anything changes.
    let e = d.attach_vlan(&id, &VlanAttach { vlan: 4095, ..Default::default() }).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let e = d.attach_vlan(&id, &VlanAttach { vlan: 5, nic_index: Some(9), network: None }).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let e = d.detach_vlan(&id, "not-a-mac").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let e = d.attach_vlan(&GuestId::new("99999"), &VlanAttach { vlan: 5, ..Default::default() }).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn subnets_are_get_or_create_per_owner_and_cleaned_up() {
    let (_dir, d) = fresh();
    let caps = d.capabilities().networking;
    assert!(caps.subnets && caps.security_groups);
    let spec = SubnetSpec { owner: "res-1".into(), alias: "Default".into(), cidr: "10.0.1.0/24".into(), public: true };
    let s = d.ensure_subnet(&spec).await.unwrap();
    assert_eq!(d.ensure_subnet(&spec).await.unwrap(), s);
    let other = d.ensure_subnet(&SubnetSpec { owner: "res-2".into(), ..spec.clone() }).await.unwrap();
    assert_ne!(other.id, s.id);
    let e = d.ensure_subnet(&SubnetSpec { cidr: "10.0.2.0/24".into(), ..spec.clone() }).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    let e = d.ensure_subnet(&SubnetSpec { cidr: "nope".into(), ..spec.clone() }).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);

    let id = a_vm(&*d).await;
    let rule = SecurityRule { protocol: "tcp".into(), from_port: Some(22), to_port: Some(22), source: None };
    // Rules need the guest on the subnet.
    let e = d.set_security_rules(&id, &s.id, std::slice::from_ref(&rule)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    let nic = d.connect_subnet(&id, &s.id).await.unwrap();
    assert_eq!(d.connect_subnet(&id, &s.id).await.unwrap().mac, nic.mac);
    assert!(d.get_guest(&id).await.unwrap().nics.iter().any(|n| n.mac == nic.mac));
    d.set_security_rules(&id, &s.id, std::slice::from_ref(&rule)).await.unwrap();
    let e = d.connect_subnet(&id, "subnet-404").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);

    assert_eq!(d.delete_subnets("res-1").await.unwrap(), 1);
    assert_eq!(d.delete_subnets("res-1").await.unwrap(), 0);
    assert!(!d.get_guest(&id).await.unwrap().nics.iter().any(|n| n.mac == nic.mac));
    let e = d.connect_subnet(&id, &s.id).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(d.delete_subnets("res-2").await.unwrap(), 1);
}
