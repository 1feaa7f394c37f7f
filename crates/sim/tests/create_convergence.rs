//! `create_guest` converges: a create cut at each of its steps (sim fault injection, the
//! way a dropped connection or a killed process would leave it) and then retried with the
//! same key ends with exactly one guest that matches the request field by field.

use polyvisor_core::{CreateSource, CreateSpec, Driver, ErrorKind, Guest, NicSpec, PowerState, Settings};
use polyvisor_sim::control::SimDb;
use polyvisor_sim::faults::{Mode, Op};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn open(path: &Path) -> Arc<dyn Driver> {
    let s = Settings::from_pairs([
        ("sim_db", path.to_string_lossy().into_owned()),
        ("sim_task_ms", "0".to_string()),
        ("sim_boot_ms", "0".to_string()),
    ]);
    polyvisor_sim::open(&s).expect("open sim")
}

fn spec(key: &str) -> CreateSpec {
    let n: u32 = key.bytes().map(u32::from).sum::<u32>() % 256;
    CreateSpec {
        name: format!("conv-{key}"),
        key: key.into(),
        source: CreateSource::Template { id: "9000".into(), full: false },
        cpus: Some(6),
        memory_mb: Some(6144),
        disk_size_gb: None,
        storage: None,
        nics: vec![
            NicSpec { mac: Some(format!("02:00:7e:00:{n:02x}:01")), vlan: Some(1234), network: None },
            NicSpec { mac: Some(format!("02:00:7e:00:{n:02x}:02")), vlan: None, network: Some("vmbr9".into()) },
            NicSpec { mac: None, vlan: Some(4094), network: None },
        ],
    }
}

async fn wait(d: &dyn Driver, t: &polyvisor_core::TaskId) -> polyvisor_core::Result<polyvisor_core::TaskOutput> {
    polyvisor_core::task::wait(d, t, Duration::from_secs(20), Duration::from_millis(5)).await
}

/// Every field the request names, compared one by one.
fn assert_matches(g: &Guest, s: &CreateSpec, step: &str) {
    assert_eq!(g.name, s.name, "{step}: name");
    assert_eq!(g.key.as_deref(), Some(s.key.as_str()), "{step}: key");
    assert_eq!(g.cpus, s.cpus, "{step}: cpus");
    assert_eq!(g.memory_mb, s.memory_mb, "{step}: memory");
    assert_eq!(g.power, PowerState::PoweredOn, "{step}: power");
    assert!(!g.is_template, "{step}: template flag");
    assert_eq!(g.nics.len(), s.nics.len(), "{step}: NIC count");
    for (i, (have, want)) in g.nics.iter().zip(&s.nics).enumerate() {
        if let Some(mac) = &want.mac {
            assert_eq!(&have.mac, &polyvisor_core::net::normalize_mac(mac).unwrap(), "{step}: NIC {i} MAC");
        }
        assert_eq!(have.vlan, want.vlan, "{step}: NIC {i} VLAN");
        assert_eq!(
            have.network.as_deref(),
            Some(want.network.as_deref().unwrap_or("vmbr0")),
            "{step}: NIC {i} network"
        );
    }
}

#[tokio::test]
async fn create_cut_at_each_step_then_retried_matches_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sim.db");
    let d = open(&path);
    let ctl = SimDb::open(&path, true).unwrap();
    let template = d.get_guest(&"9000".into()).await.unwrap();
    for (i, (op, mode)) in [
        (Op::Create, Mode::Task),
        (Op::CreateConfig, Mode::Submit),
        (Op::CreateNics, Mode::Task),
        (Op::CreatePower, Mode::Submit),
    ]
    .into_iter()
    .enumerate()
    {
        let key = format!("i-2-{}-VM", 70 + i);
        let s = spec(&key);
        ctl.set_fault(op, 1, 0, mode).unwrap();
        let started = d.create_guest(&s).await.unwrap();
        let e = wait(&*d, &started.task).await.expect_err("the cut create fails");
        assert_eq!(e.kind(), ErrorKind::Backend, "{op:?}: {e}");
        // What the cut left behind: nothing after a failed clone, else a half-made guest
        // that differs from the request (that is what the retry must fix).
        let half = d.find_by_key(&key).await.unwrap();
        match op {
            Op::Create => assert!(half.is_none(), "a failed clone leaves nothing"),
            _ => {
                let g = d.get_guest(&half.expect("half-made guest findable by key").id).await.unwrap();
                assert_ne!(g.power, PowerState::PoweredOn, "{op:?}: not powered on yet");
                if op == Op::CreateConfig {
                    assert_eq!((g.cpus, g.memory_mb), (template.cpus, template.memory_mb), "cut before config");
                }
                if op == Op::CreateNics {
                    assert_eq!(g.cpus, s.cpus, "config applied before the NIC cut");
                    assert_ne!(g.nics.len(), s.nics.len(), "NICs still the template's");
                }
            }
        }
        // The retry converges.
        let again = d.create_guest(&s).await.unwrap();
        let out = wait(&*d, &again.task).await.unwrap_or_else(|e| panic!("{op:?}: retry failed: {e}"));
        let id = out.new_guest.expect("create reports the guest");
        assert_matches(&d.get_guest(&id).await.unwrap(), &s, &format!("{op:?}"));
        let named: Vec<_> = d.list_guests().await.unwrap().into_iter().filter(|g| g.name == s.name).collect();
        assert_eq!(named.len(), 1, "{op:?}: exactly one guest");
        // A third call with the guest complete changes nothing and succeeds at once.
        let third = wait(&*d, &d.create_guest(&s).await.unwrap().task).await.unwrap();
        assert_eq!(third.new_guest, Some(id.clone()));
        assert_matches(&d.get_guest(&id).await.unwrap(), &s, "third call");
    }
    assert!(ctl.faults().unwrap().iter().all(|f| f.count == 0), "every fault was consumed");
}

#[tokio::test]
async fn retry_reapplies_a_drifted_guest_and_keeps_backend_chosen_macs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sim.db");
    let d = open(&path);
    let s = spec("i-3-1-VM");
    let id = wait(&*d, &d.create_guest(&s).await.unwrap().task).await.unwrap().new_guest.unwrap();
    let first = d.get_guest(&id).await.unwrap();
    // Stop it (a half-finished power-on looks like this) and retry: same MACs, on again.
    wait(&*d, &d.power(&id, polyvisor_core::PowerAction::Stop).await.unwrap()).await.unwrap();
    wait(&*d, &d.create_guest(&s).await.unwrap().task).await.unwrap();
    let g = d.get_guest(&id).await.unwrap();
    assert_matches(&g, &s, "after stop");
    assert_eq!(g.nics[2].mac, first.nics[2].mac, "a backend-chosen MAC is kept on retry");
    // A different request under the same key is converged to (the latest request wins).
    let bigger = CreateSpec { cpus: Some(8), memory_mb: Some(8192), ..s.clone() };
    wait(&*d, &d.create_guest(&bigger).await.unwrap().task).await.unwrap();
    assert_matches(&d.get_guest(&id).await.unwrap(), &bigger, "resized");
}

#[tokio::test]
async fn create_never_adopts_a_keyless_guest_and_adopt_is_explicit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sim.db");
    let d = open(&path);
    let web = d.list_guests().await.unwrap().into_iter().find(|g| g.name == "web-01").expect("seeded web-01");
    assert_eq!(web.key, None);
    let s = CreateSpec { name: "web-01".into(), ..spec("i-4-1-VM") };
    assert_eq!(d.create_guest(&s).await.unwrap_err().kind(), ErrorKind::AlreadyExists);
    assert_eq!(d.get_guest(&web.id).await.unwrap().key, None);
    // The explicit import writes the key; a second key or a template is refused.
    d.adopt_guest(&web.id, "i-4-1-VM").await.unwrap();
    d.adopt_guest(&web.id, "i-4-1-VM").await.unwrap();
    assert_eq!(d.adopt_guest(&web.id, "i-4-2-VM").await.unwrap_err().kind(), ErrorKind::Conflict);
    assert_eq!(d.adopt_guest(&"9000".into(), "i-4-3-VM").await.unwrap_err().kind(), ErrorKind::Conflict);
    assert_eq!(d.find_owned("i-4-1-VM", None).await.unwrap().map(|g| g.id), Some(web.id));
}

#[tokio::test]
async fn deleting_a_create_still_cloning_cancels_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sim.db");
    let s = Settings::from_pairs([
        ("sim_db", path.to_string_lossy().into_owned()),
        ("sim_task_ms", "60000".to_string()),
        ("sim_boot_ms", "0".to_string()),
    ]);
    let d = polyvisor_sim::open(&s).unwrap();
    let started = d.create_guest(&spec("i-5-1-VM")).await.unwrap();
    let id = started.new_guest.expect("the id is reported at once");
    assert!(d.find_by_key("i-5-1-VM").await.unwrap().is_none(), "still cloning");
    wait(&*d, &d.delete_guest(&id).await.unwrap()).await.unwrap();
    let e = wait(&*d, &started.task).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert!(d.get_guest(&id).await.is_err());
    // The key and the MACs are free again.
    let fast = open(&path);
    let out = wait(&*fast, &fast.create_guest(&spec("i-5-1-VM")).await.unwrap().task).await.unwrap();
    assert_matches(&fast.get_guest(&out.new_guest.unwrap()).await.unwrap(), &spec("i-5-1-VM"), "after cancel");
}
