//! The driver against a real libvirtd + QEMU (TCG) with the tiny guest. Needs
//! `scripts/ci/start-libvirt.sh` (daemons, tiny guest in /var/lib/polyvisor-tiny, network
//! `tg-net`, pool `polyvisor`); fails with that hint when they are missing.
#![cfg(feature = "libvirt")]

use polyvisor_core::task::wait;
use polyvisor_core::{CloneMode, CloneSpec, Driver, GuestId, PowerAction, PowerState, Settings, SnapshotSpec, TaskId};
use polyvisor_test_support::tiny::{self, TinyGuest};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const URI: &str = "qemu:///system";
const HINT: &str = "run scripts/ci/start-libvirt.sh (as root) first";

fn virsh(args: &[&str]) -> String {
    let o = Command::new("virsh")
        .arg("-c")
        .arg(URI)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("virsh missing ({e}); {HINT}"));
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// Defines the template domain `pvtest-tmpl` on a copy of the tiny guest disk in the pool.
fn define_template() -> String {
    let tiny = TinyGuest::from_env();
    tiny.require();
    if !virsh(&["list", "--all", "--name"]).lines().any(|l| l.trim() == "pvtest-tmpl") {
        tiny.define_copy("pvtest-tmpl").unwrap_or_else(|e| panic!("{e}"));
    }
    virsh(&["domuuid", "pvtest-tmpl"]).trim().to_string()
}

async fn done(d: &dyn Driver, t: &TaskId, secs: u64) -> polyvisor_core::TaskOutput {
    wait(d, t, Duration::from_secs(secs), Duration::from_millis(200)).await.expect("task")
}

#[tokio::test(flavor = "current_thread")]
async fn real_qemu_clones_boot_snapshots_revert_deletes_clean_up() {
    let s = Settings::from_pairs([
        ("uri", URI),
        ("pool", "polyvisor"),
        ("call_timeout_secs", "30"),
        ("job_timeout_secs", "600"),
        ("shutdown_timeout_secs", "10"),
    ]);
    let d: Arc<dyn Driver> = polyvisor_libvirt::open(&s).unwrap();
    let probe = d.probe().await.unwrap_or_else(|e| panic!("libvirtd unreachable at {URI}: {e}; {HINT}"));
    eprintln!("probe: {probe}");
    let tid = GuestId::new(define_template());
    for stale in ["pvtest-linked", "pvtest-full"] {
        if let Some(g) = d.list_guests().await.unwrap().into_iter().find(|g| g.name == stale) {
            done(&*d, &d.delete_guest(&g.id).await.unwrap(), 180).await;
        }
    }
    let before = tiny::pool_volumes();
    let t0 = Instant::now();
    done(&*d, &d.set_template(&tid, true).await.unwrap(), 10).await;
    eprintln!("measure: convert {:?}", t0.elapsed());
    assert!(d.get_guest(&tid).await.unwrap().is_template);

    // linked clone, started: completes at running + IPv4
    let t0 = Instant::now();
    let spec = CloneSpec {
        source: tid.clone(),
        name: "pvtest-linked".into(),
        snapshot: None,
        mode: CloneMode::Linked,
        start: true,
    };
    let started = d.clone_guest(&spec).await.unwrap();
    eprintln!("measure: linked clone call {:?}", t0.elapsed());
    // a retry adopts the same clone
    let again = d.clone_guest(&spec).await.unwrap();
    assert_eq!(again.new_guest, started.new_guest);
    let out = done(&*d, &started.task, 600).await;
    eprintln!("measure: linked clone + boot to IPv4 {:?}", t0.elapsed());
    let cid = out.new_guest.unwrap();
    let g = d.get_guest(&cid).await.unwrap();
    assert_eq!(g.power, PowerState::PoweredOn);
    assert!(!g.ipv4_addresses().is_empty(), "clone has an IPv4 address: {g:?}");
    assert!(g.ipv4_addresses()[0].starts_with("192.168.213."), "{g:?}");
    let tg = d.get_guest(&tid).await.unwrap();
    assert_ne!(g.mac_addresses(), tg.mac_addresses(), "new MACs");

    // graceful shutdown with bound
    let t0 = Instant::now();
    done(&*d, &d.power(&cid, PowerAction::Shutdown).await.unwrap(), 180).await;
    eprintln!("measure: shutdown task {:?}", t0.elapsed());
    assert_eq!(d.get_guest(&cid).await.unwrap().power, PowerState::PoweredOff);

    // internal snapshot on the stopped qcow2 overlay: create, revert, delete
    let t0 = Instant::now();
    let snap = SnapshotSpec { name: "s1".into(), include_memory: false, description: None };
    done(&*d, &d.create_snapshot(&cid, &snap).await.unwrap(), 180).await;
    eprintln!("measure: snapshot create (stopped) {:?}", t0.elapsed());
    assert!(d.snapshot_exists(&cid, "s1").await.unwrap());
    let t0 = Instant::now();
    done(&*d, &d.revert_snapshot(&cid, "s1").await.unwrap(), 180).await;
    eprintln!("measure: snapshot revert {:?}", t0.elapsed());
    done(&*d, &d.delete_snapshot(&cid, "s1").await.unwrap(), 180).await;
    assert!(!d.snapshot_exists(&cid, "s1").await.unwrap());

    // the template cannot go while a linked clone uses it
    assert_eq!(d.delete_guest(&tid).await.unwrap_err().kind(), polyvisor_core::ErrorKind::Conflict);

    // full clone (not started)
    let t0 = Instant::now();
    let full = CloneSpec {
        source: tid.clone(),
        name: "pvtest-full".into(),
        snapshot: None,
        mode: CloneMode::Full,
        start: false,
    };
    let fs = d.clone_guest(&full).await.unwrap();
    let fid = done(&*d, &fs.task, 300).await.new_guest.unwrap();
    eprintln!("measure: full clone {:?}", t0.elapsed());
    let mid = tiny::pool_volumes();
    assert!(
        mid.contains(&"pvtest-linked.qcow2".to_string()) && mid.contains(&"pvtest-full.qcow2".to_string()),
        "{mid:?}"
    );

    // deletes leave no disks behind, and never the template's
    for id in [&cid, &fid] {
        let t0 = Instant::now();
        done(&*d, &d.delete_guest(id).await.unwrap(), 180).await;
        eprintln!("measure: delete {:?}", t0.elapsed());
    }
    assert_eq!(tiny::pool_volumes(), before, "pool volumes after deleting the clones");

    // clone from a template snapshot: exported once to a read-only base, overlay on it
    done(
        &*d,
        &d.create_snapshot(
            &tid,
            &SnapshotSpec { name: "RAS_TEMPLATE_VERSION_1".into(), include_memory: false, description: None },
        )
        .await
        .unwrap(),
        30,
    )
    .await;
    let t0 = Instant::now();
    let from_snap = CloneSpec {
        source: tid.clone(),
        name: "pvtest-linked".into(),
        snapshot: Some("RAS_TEMPLATE_VERSION_1".into()),
        mode: CloneMode::Auto,
        start: false,
    };
    let sid = done(&*d, &d.clone_guest(&from_snap).await.unwrap().task, 300).await.new_guest.unwrap();
    eprintln!("measure: linked clone from snapshot (incl. base export) {:?}", t0.elapsed());
    // this template's bases only: the shared pool may hold other guests' bases (the
    // backend contract's source guest keeps the ones its RAS versioning runs exported)
    let ours = format!("pvbase-{}-", tid.as_str().get(..8).unwrap_or(tid.as_str()));
    let vols = tiny::pool_volumes();
    assert!(vols.iter().any(|v| v.starts_with(&ours)), "{vols:?}");
    // the version is dropped while a clone is still on its base: the base stays...
    done(&*d, &d.delete_snapshot(&tid, "RAS_TEMPLATE_VERSION_1").await.unwrap(), 30).await;
    let vols = tiny::pool_volumes();
    assert!(vols.iter().any(|v| v.starts_with(&ours)), "base removed under its clone: {vols:?}");
    // ...until its last clone goes (RAS versioning used to leak one base per run)
    done(&*d, &d.delete_guest(&sid).await.unwrap(), 180).await;
    let vols = tiny::pool_volumes();
    assert!(!vols.iter().any(|v| v.starts_with(&ours)), "unused base of a deleted snapshot kept: {vols:?}");
    // a base of a snapshot that still exists outlives its clones (the next clone reuses it)
    done(
        &*d,
        &d.create_snapshot(
            &tid,
            &SnapshotSpec { name: "RAS_TEMPLATE_VERSION_2".into(), include_memory: false, description: None },
        )
        .await
        .unwrap(),
        30,
    )
    .await;
    let from_snap = CloneSpec { snapshot: Some("RAS_TEMPLATE_VERSION_2".into()), ..from_snap };
    let sid = done(&*d, &d.clone_guest(&from_snap).await.unwrap().task, 300).await.new_guest.unwrap();
    done(&*d, &d.delete_guest(&sid).await.unwrap(), 180).await;
    let vols = tiny::pool_volumes();
    assert!(vols.iter().any(|v| v.starts_with(&ours)), "base of a live snapshot removed: {vols:?}");
    // deleting the template removes the base polyvisor made, never the disk it did not make
    done(&*d, &d.delete_guest(&tid).await.unwrap(), 180).await;
    let after: Vec<String> = tiny::pool_volumes();
    assert!(
        after.contains(&"pvtest-tmpl.qcow2".to_string()) && !after.iter().any(|v| v.starts_with(&ours)),
        "{after:?}"
    );
    let _ = std::fs::remove_file(TinyGuest::from_env().pool_dir.join("pvtest-tmpl.qcow2"));
    tokio::time::sleep(Duration::from_millis(1)).await;
    let tid = GuestId::new(define_template());
    let t0 = Instant::now();
    let n = d.list_guests().await.unwrap().len();
    eprintln!("measure: list ({n} domains) {:?}", t0.elapsed());
    let t0 = Instant::now();
    d.get_guest(&tid).await.unwrap();
    eprintln!("measure: get {:?}", t0.elapsed());
}
