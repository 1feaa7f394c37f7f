//! L3 guest networking against a real libvirtd + QEMU: a per-sandbox subnet is a libvirt
//! network (host gateway, DHCP) carrying polyvisor's mark; a guest's NIC on it references the
//! subnet's network filter, whose rules libvirt turns into iptables chains on the running
//! guest's tap device (read back here with `iptables -S`); clean-up removes NICs, network
//! and filter. Needs `scripts/ci/start-libvirt.sh` (tiny guest, network `tg-net`, pool
//! `polyvisor`) and root (iptables).
#![cfg(feature = "libvirt")]

use polyvisor_core::netops::{SecurityRule, SubnetSpec};
use polyvisor_core::task::wait;
use polyvisor_core::{ErrorKind, GuestId, PowerAction, Settings};
use polyvisor_libvirt::domxml::DomainXml;
use polyvisor_libvirt::subnet::{parse_filter_rules, Names};
use polyvisor_test_support::tiny::{virsh, TinyGuest};
use std::time::Duration;

const NAME: &str = "pvtest-l3";
/// The sandbox every subnet of this test belongs to (fixed, so a rerun clears leftovers).
const OWNER: &str = "pvtest-l3-sandbox";

fn settings() -> Settings {
    Settings::from_pairs([
        ("uri", "qemu:///system"),
        ("pool", "polyvisor"),
        ("network", "tg-net"),
        ("call_timeout_secs", "15"),
        ("shutdown_timeout_secs", "5"),
    ])
}

fn spec(alias: &str, cidr: &str) -> SubnetSpec {
    SubnetSpec { owner: OWNER.into(), alias: alias.into(), cidr: cidr.into(), public: false }
}

fn rule(protocol: &str, from: Option<u16>, to: Option<u16>, source: Option<&str>) -> SecurityRule {
    SecurityRule { protocol: protocol.into(), from_port: from, to_port: to, source: source.map(str::to_string) }
}

/// The iptables rules libvirt made for traffic towards the guest NIC `mac` (chain `FO-<tap>`).
fn rules_to_nic(mac: &str) -> String {
    let live = DomainXml::parse(&virsh(&["dumpxml", NAME]).unwrap()).unwrap();
    let tap = live
        .ifaces
        .iter()
        .find(|i| i.mac.eq_ignore_ascii_case(mac))
        .and_then(|i| i.target.clone())
        .unwrap_or_else(|| panic!("no running NIC {mac}"));
    let out = std::process::Command::new("iptables").args(["-w", "10", "-S", &format!("FO-{tap}")]).output().unwrap();
    assert!(out.status.success(), "iptables: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "current_thread")]
async fn real_qemu_subnet_nic_rules_and_cleanup() {
    let tiny = TinyGuest::from_env();
    tiny.require();
    let d = polyvisor_libvirt::open(&settings()).unwrap();
    assert!(d.capabilities().networking.subnets && d.capabilities().networking.security_groups);
    // Leftovers of an interrupted run (the guest first: a running one would hold its NIC).
    let _ = virsh(&["destroy", NAME]);
    let _ = virsh(&["undefine", NAME]);
    d.delete_subnets(OWNER).await.unwrap();
    let id = GuestId::new(tiny.define_copy(NAME).unwrap_or_else(|e| panic!("{e}")));

    // Get-or-create: the same subnet on a retry; the network is isolated, routed by the
    // host's gateway address, hands out the rest by DHCP, is running and autostarts.
    let main = spec("DefaultSubnet", "10.77.1.0/24");
    let s = d.ensure_subnet(&main).await.unwrap();
    assert_eq!(s.id, Names::of(OWNER, "DefaultSubnet").network);
    assert_eq!((s.owner.as_str(), s.alias.as_str(), s.cidr.as_str()), (OWNER, "DefaultSubnet", "10.77.1.0/24"));
    assert_eq!(d.ensure_subnet(&main).await.unwrap(), s);
    let x = virsh(&["net-dumpxml", &s.id]).unwrap();
    assert!(
        x.contains("<ip address='10.77.1.1' prefix='24'>") && x.contains("start='10.77.1.2' end='10.77.1.254'"),
        "{x}"
    );
    assert!(!x.contains("<forward"), "a private subnet is isolated: {x}");
    let info = virsh(&["net-info", &s.id]).unwrap();
    assert!(info.contains("Active:         yes") && info.contains("Autostart:      yes"), "{info}");

    // Refusals: the same alias with another CIDR, another alias overlapping it (the host
    // cannot route both; nothing is left defined), a bad CIDR.
    let e = d.ensure_subnet(&spec("DefaultSubnet", "10.77.9.0/24")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e:?}");
    let e = d.ensure_subnet(&spec("Overlap", "10.77.0.0/16")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e:?}");
    assert!(e.message().contains(&s.id), "the refusal names the other subnet: {e:?}");
    assert!(virsh(&["net-info", &Names::of(OWNER, "Overlap").network]).is_err());
    assert_eq!(d.ensure_subnet(&spec("Bad", "10.77.1.0/31")).await.unwrap_err().kind(), ErrorKind::InvalidInput);

    // Connect the stopped guest: a NIC on the subnet's network referencing its filter.
    let names = Names::of(OWNER, "DefaultSubnet");
    let nic = d.connect_subnet(&id, &s.id).await.unwrap();
    assert_eq!(nic.network.as_deref(), Some(s.id.as_str()));
    assert_eq!(d.connect_subnet(&id, &s.id).await.unwrap().mac, nic.mac, "idempotent");
    let x = virsh(&["dumpxml", "--inactive", NAME]).unwrap();
    assert!(x.contains(&format!("<filterref filter='{}'/>", names.filter)), "{x}");
    // Only polyvisor's subnets: other networks and ids of no network are not subnets.
    for bad in ["tg-net", "default", "pv-sn-0000000000000000", "../x"] {
        assert_eq!(d.connect_subnet(&id, bad).await.unwrap_err().kind(), ErrorKind::NotFound, "{bad}");
    }

    // Running: the filter is on the guest's tap; replacing the rules re-applies it there.
    let t = d.power(&id, PowerAction::Start).await.unwrap();
    wait(&*d, &t, Duration::from_secs(120), Duration::from_millis(200)).await.unwrap();
    let before = rules_to_nic(&nic.mac);
    assert!(before.contains("-s 10.77.1.0/24") && before.contains("-j DROP"), "{before}");
    let ssh = vec![rule("tcp", Some(22), Some(22), Some("10.0.5.7"))];
    d.set_security_rules(&id, &s.id, &ssh).await.unwrap();
    let f = virsh(&["nwfilter-dumpxml", &names.filter]).unwrap();
    assert_eq!(parse_filter_rules(&f).unwrap(), ssh);
    let with_ssh = rules_to_nic(&nic.mac);
    assert!(with_ssh.contains("-s 10.0.5.7/32 -p tcp -m tcp --dport 22"), "{with_ssh}");
    let dns = vec![rule("udp", Some(53), Some(53), None), rule("icmp", None, None, Some("192.168.0.0/16"))];
    d.set_security_rules(&id, &s.id, &dns).await.unwrap();
    let now = rules_to_nic(&nic.mac);
    assert!(!now.contains("--dport 22") && now.contains("-p udp -m udp --dport 53"), "{now}");
    assert!(now.contains("-s 192.168.0.0/16 -p icmp"), "{now}");
    // Bad rules change nothing; a guest not on a subnet gets no rules there.
    let bad = vec![rule("tcp", Some(30), Some(20), None)];
    assert_eq!(d.set_security_rules(&id, &s.id, &bad).await.unwrap_err().kind(), ErrorKind::InvalidInput);
    assert_eq!(rules_to_nic(&nic.mac), now);
    // A public subnet is NATed to the host's uplink (libvirt's `<forward mode='nat'/>`).
    let other = d.ensure_subnet(&SubnetSpec { public: true, ..spec("Other", "10.77.2.0/24") }).await.unwrap();
    let x = virsh(&["net-dumpxml", &other.id]).unwrap();
    assert!(x.contains("<forward mode='nat'") && x.contains("<ip address='10.77.2.1' prefix='24'>"), "{x}");
    assert_eq!(d.set_security_rules(&id, &other.id, &ssh).await.unwrap_err().kind(), ErrorKind::Conflict);

    // Clean-up while the guest still runs: its NIC leaves the definition at once and the
    // running guest when the guest releases it (ACPI hot-unplug). Not released in time (the
    // guest may still be booting): `Conflict`, and no network or filter is touched.
    let first = d.delete_subnets(OWNER).await;
    assert!(!virsh(&["dumpxml", "--inactive", NAME]).unwrap().contains("pv-sn-"));
    let t = d.power(&id, PowerAction::Stop).await.unwrap();
    wait(&*d, &t, Duration::from_secs(120), Duration::from_millis(200)).await.unwrap();
    match first {
        Ok(n) => assert_eq!(n, 2),
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Conflict, "{e:?}");
            assert!(virsh(&["net-info", &s.id]).is_ok() && virsh(&["nwfilter-dumpxml", &names.filter]).is_ok());
            // The retry, with the guest stopped, converges.
            assert_eq!(d.delete_subnets(OWNER).await.unwrap(), 2);
        }
    }
    for n in [&s.id, &other.id] {
        assert!(virsh(&["net-info", n]).is_err(), "{n} is still defined");
    }
    assert!(virsh(&["nwfilter-dumpxml", &names.filter]).is_err());
    let x = virsh(&["dumpxml", "--inactive", NAME]).unwrap();
    assert!(!x.contains("pv-sn-"), "{x}");
    assert_eq!(d.delete_subnets(OWNER).await.unwrap(), 0);
    // A network someone else named like ours carries no mark: it is not a subnet, is
    // never taken over, and survives the clean-up of the sandbox its name points to.
    let foreign = Names::of(OWNER, "Foreign").network;
    let dir = polyvisor_test_support::temp::dir("l3-foreign");
    let f = dir.path().join("net.xml");
    std::fs::write(&f, format!("<network><name>{foreign}</name><bridge name='pvtestl3f' stp='off'/></network>"))
        .unwrap();
    virsh(&["net-define", &f.to_string_lossy()]).unwrap();
    let took = d.ensure_subnet(&spec("Foreign", "10.77.3.0/24")).await;
    let conn = d.connect_subnet(&id, &foreign).await;
    let cleaned = d.delete_subnets(OWNER).await;
    let still = virsh(&["net-info", &foreign]);
    let _ = virsh(&["net-undefine", &foreign]);
    assert_eq!(took.unwrap_err().kind(), ErrorKind::Conflict);
    assert_eq!(conn.unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(cleaned.unwrap(), 0);
    assert!(still.is_ok(), "the foreign network was removed");

    let t = d.delete_guest(&id).await.unwrap();
    wait(&*d, &t, Duration::from_secs(120), Duration::from_millis(200)).await.unwrap();
}
