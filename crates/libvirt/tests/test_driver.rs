//! The driver against libvirt's built-in `test:///default` fake (state is per process, so
//! each scenario runs inside one test). No real disks or IPs there.
#![cfg(feature = "libvirt")]

use polyvisor_core::task::wait;
use polyvisor_core::{
    CloneMode, CloneSpec, Driver, ErrorKind, GuestId, PowerAction, PowerState, Settings, SnapshotSpec, TaskId,
};
use std::sync::Arc;
use std::time::Duration;

const TEST_UUID: &str = "6695eb01-f6a4-8304-79aa-97f2502e193f";

fn driver() -> Arc<dyn Driver> {
    let s = Settings::from_pairs([("driver", "libvirt"), ("uri", "test:///default"), ("call_timeout_secs", "5")]);
    polyvisor_libvirt::open(&s).expect("open")
}

async fn done(d: &dyn Driver, t: &TaskId) -> polyvisor_core::TaskOutput {
    wait(d, t, Duration::from_secs(10), Duration::from_millis(50)).await.expect("task")
}

#[tokio::test(flavor = "current_thread")]
async fn test_driver_scenario() {
    let d = driver();
    assert!(d.probe().await.unwrap().starts_with("libvirt "));
    let list = d.list_guests().await.unwrap();
    let t = list.iter().find(|g| g.id.as_str() == TEST_UUID).expect("preloaded domain 'test'");
    assert_eq!((t.name.as_str(), t.power, t.is_template), ("test", PowerState::PoweredOn, false));
    let id = GuestId::new(TEST_UUID);
    let g = d.get_guest(&id).await.unwrap();
    assert_eq!(g.raw_power_state, "running");
    assert_eq!(g.cpus, Some(2));
    assert_eq!(g.mac_addresses(), ["AA:BB:CC:DD:EE:FF"]);
    assert!(!g.ipv4_addresses().is_empty(), "test driver reports a synthetic address");

    // bad and unknown ids
    assert_eq!(d.get_guest(&GuestId::new("x'<y")).await.unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(
        d.get_guest(&GuestId::new("00000000-0000-4000-8000-000000000000")).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(d.task_status(&TaskId("nope".into())).await.unwrap_err().kind(), ErrorKind::UnknownTask);

    // metrics: one realtime sample when the window reaches now, nothing for the past or hourly
    use polyvisor_core::events::MetricsInterval::{Hourly, Realtime};
    let now = polyvisor_core::task::now_unix();
    let m = d.metrics(&id, now - 600, now, Realtime).await.unwrap();
    assert_eq!(m.len(), 1, "{m:?}");
    assert!((0.0..=100.0).contains(&m[0].cpu_usage_rate) && (0.0..=100.0).contains(&m[0].mem_usage), "{m:?}");
    assert!(m[0].at + 60 >= now && m[0].at <= now + 60, "{m:?}");
    assert!(d.metrics(&id, now - 7200, now - 3600, Realtime).await.unwrap().is_empty());
    assert!(d.metrics(&id, now - 7200, now, Hourly).await.unwrap().is_empty());
    let unknown = GuestId::new("00000000-0000-4000-8000-000000000000");
    assert_eq!(d.metrics(&unknown, now - 600, now, Realtime).await.unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(d.metrics(&id, now, now - 1, Realtime).await.unwrap_err().kind(), ErrorKind::InvalidInput);

    // power: suspend/resume, stop idempotent, start
    done(&*d, &d.power(&id, PowerAction::Suspend).await.unwrap()).await;
    let g = d.get_guest(&id).await.unwrap();
    assert_eq!((g.power, g.raw_power_state.as_str()), (PowerState::Suspended, "paused"));
    done(&*d, &d.power(&id, PowerAction::Start).await.unwrap()).await;
    assert_eq!(d.get_guest(&id).await.unwrap().power, PowerState::PoweredOn);
    done(&*d, &d.power(&id, PowerAction::Shutdown).await.unwrap()).await;
    assert_eq!(d.get_guest(&id).await.unwrap().power, PowerState::PoweredOff);
    done(&*d, &d.power(&id, PowerAction::Stop).await.unwrap()).await;
    assert_eq!(d.power(&id, PowerAction::Reset).await.unwrap_err().kind(), ErrorKind::Conflict);
    assert_eq!(d.console(&id).await.unwrap_err().kind(), ErrorKind::Unsupported);

    // snapshots
    let spec = SnapshotSpec { name: "v1".into(), include_memory: false, description: Some("first".into()) };
    done(&*d, &d.create_snapshot(&id, &spec).await.unwrap()).await;
    done(&*d, &d.create_snapshot(&id, &spec).await.unwrap()).await; // replace
    assert!(d.snapshot_exists(&id, "v1").await.unwrap());
    assert!(!d.snapshot_exists(&id, "v2").await.unwrap());
    let snaps = d.list_snapshots(&id).await.unwrap();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0].description.as_deref(), Some("first"));
    done(&*d, &d.revert_snapshot(&id, "v1").await.unwrap()).await;
    assert_eq!(d.revert_snapshot(&id, "zz").await.unwrap_err().kind(), ErrorKind::NotFound);
    done(&*d, &d.delete_snapshot(&id, "zz").await.unwrap()).await;
    assert!(d
        .create_snapshot(&id, &SnapshotSpec { name: "a/b".into(), include_memory: false, description: None })
        .await
        .is_err());

    // template flag in metadata, idempotent
    done(&*d, &d.set_template(&id, true).await.unwrap()).await;
    done(&*d, &d.set_template(&id, true).await.unwrap()).await;
    assert!(d.get_guest(&id).await.unwrap().is_template);
    done(&*d, &d.set_template(&id, false).await.unwrap()).await;
    assert!(!d.get_guest(&id).await.unwrap().is_template);
    done(&*d, &d.set_template(&id, true).await.unwrap()).await;

    // clone names are validated; clone from snapshot is not offered
    let mut spec =
        CloneSpec { source: id.clone(), name: "bad name".into(), snapshot: None, mode: CloneMode::Full, start: false };
    assert_eq!(d.clone_guest(&spec).await.unwrap_err().kind(), ErrorKind::InvalidInput);
    spec.name = "c1".into();
    spec.snapshot = Some("v1".into());
    assert_eq!(d.clone_guest(&spec).await.unwrap_err().kind(), ErrorKind::Unsupported);

    // CloudStack-style create from an ISO: key in metadata, retry adopts, bad MAC refused
    let cs = polyvisor_core::CreateSpec {
        name: "i-2-45-VM".into(),
        key: "i-2-45-VM".into(),
        source: polyvisor_core::CreateSource::Iso { path: "/iso/debian.iso".into(), os_type: Some("l26".into()) },
        cpus: Some(1),
        memory_mb: Some(256),
        disk_size_gb: Some(1),
        storage: Some("default-pool".into()),
        nics: vec![polyvisor_core::NicSpec {
            mac: Some("52-54-00-12-34-56".into()),
            vlan: None,
            network: Some("default".into()),
        }],
    };
    let c1 = d.create_guest(&cs).await.unwrap();
    let nid = done(&*d, &c1.task).await.new_guest.unwrap();
    let c2 = d.create_guest(&cs).await.unwrap();
    assert_eq!(c2.new_guest.as_ref(), Some(&nid), "retry adopts by key");
    let g = d.get_guest(&nid).await.unwrap();
    assert_eq!((g.key.as_deref(), g.memory_mb, g.os.as_deref()), (Some("i-2-45-VM"), Some(256), Some("l26")));
    assert_eq!(g.mac_addresses(), ["52:54:00:12:34:56"]);
    assert_eq!(g.power, PowerState::PoweredOn);
    assert_eq!(d.find_by_key("i-2-45-VM").await.unwrap().unwrap().id, nid);
    let mut bad = cs.clone();
    bad.key = "other".into();
    bad.name = "other".into();
    bad.nics[0].mac = Some("zz".into());
    assert_eq!(d.create_guest(&bad).await.unwrap_err().kind(), ErrorKind::InvalidInput);
    done(&*d, &d.delete_guest(&nid).await.unwrap()).await;

    create_converges_by_key_and_never_touches_foreign_domains(&*d).await;

    // delete: idempotent, missing is success
    done(&*d, &d.delete_guest(&id).await.unwrap()).await;
    assert_eq!(d.get_guest(&id).await.unwrap_err().kind(), ErrorKind::NotFound);
    done(&*d, &d.delete_guest(&id).await.unwrap()).await;
    assert!(d.list_guests().await.unwrap().is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn unreachable_daemon_is_unavailable_not_a_hang() {
    let s = Settings::from_pairs([("uri", "qemu+unix:///system?socket=/nonexistent/sock"), ("call_timeout_secs", "5")]);
    let d = polyvisor_libvirt::open(&s).unwrap();
    let e = d.list_guests().await.unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::Timeout), "{e:?}");
    assert!(e.message().starts_with("cannot connect to libvirt"), "{}", e.message());
}

/// Issue 9 for libvirt: a retried create converges by key (a guest with the key that differs
/// from the request — a half-made or stale attempt — is replaced, never reported as created),
/// a domain without our key is never adopted or touched, and ids are accepted only in
/// canonical form.
/// (Called from `test_driver_scenario`: the test driver's state is per process.)
async fn create_converges_by_key_and_never_touches_foreign_domains(d: &dyn Driver) {
    let cs = polyvisor_core::CreateSpec {
        name: "i-3-7-VM".into(),
        key: "i-3-7-VM".into(),
        source: polyvisor_core::CreateSource::Iso { path: "/iso/debian.iso".into(), os_type: None },
        cpus: Some(1),
        memory_mb: Some(256),
        disk_size_gb: Some(1),
        storage: Some("default-pool".into()),
        nics: vec![polyvisor_core::NicSpec {
            mac: Some("52:54:00:00:07:01".into()),
            vlan: None,
            network: Some("default".into()),
        }],
    };
    let first = done(d, &d.create_guest(&cs).await.unwrap().task).await.new_guest.unwrap();
    // the same request again: the finished guest is adopted
    let again = d.create_guest(&cs).await.unwrap();
    assert_eq!(again.new_guest.as_ref(), Some(&first));
    // a retry whose request differs from what carries the key: replaced, field by field as asked
    let mut changed = cs.clone();
    changed.cpus = Some(2);
    changed.memory_mb = Some(384);
    let second = done(d, &d.create_guest(&changed).await.unwrap().task).await.new_guest.unwrap();
    assert_ne!(second, first, "the stale guest was not reported as created");
    assert_eq!(d.get_guest(&first).await.unwrap_err().kind(), ErrorKind::NotFound);
    let g = d.get_guest(&second).await.unwrap();
    assert_eq!((g.key.as_deref(), g.cpus, g.memory_mb), (Some("i-3-7-VM"), Some(2), Some(384)));
    assert_eq!(g.mac_addresses(), ["52:54:00:00:07:01"]);

    // a domain without our key that has the requested name: refused, left alone
    let mut foreign = cs.clone();
    foreign.name = "test".into();
    foreign.key = "i-3-8-VM".into();
    assert_eq!(d.create_guest(&foreign).await.unwrap_err().kind(), ErrorKind::AlreadyExists);
    let t = d.get_guest(&GuestId::new(TEST_UUID)).await.unwrap();
    assert_eq!(t.key, None);
    assert!(d.find_owned("i-3-8-VM", Some(&GuestId::new(TEST_UUID))).await.unwrap().is_none());

    // bad network names never reach the XML
    let mut bad = cs.clone();
    bad.key = "i-3-9-VM".into();
    bad.name = "i-3-9-VM".into();
    bad.nics[0].network = Some("net'/><x".into());
    assert_eq!(d.create_guest(&bad).await.unwrap_err().kind(), ErrorKind::InvalidInput);

    // a VLAN tag the network cannot carry is refused before anything exists (never dropped)
    let mut tagged = cs.clone();
    tagged.key = "i-3-10-VM".into();
    tagged.name = "i-3-10-VM".into();
    tagged.nics[0].vlan = Some(100);
    let before = d.list_guests().await.unwrap().len();
    let e = d.create_guest(&tagged).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(d.find_by_key("i-3-10-VM").await.unwrap().is_none());
    assert_eq!(d.list_guests().await.unwrap().len(), before);

    // only the canonical id spelling resolves
    for other in [TEST_UUID.to_uppercase(), TEST_UUID.replace('-', ""), format!(" {TEST_UUID}")] {
        assert_eq!(d.get_guest(&GuestId::new(other.clone())).await.unwrap_err().kind(), ErrorKind::NotFound, "{other}");
    }
    done(d, &d.delete_guest(&second).await.unwrap()).await;
}
