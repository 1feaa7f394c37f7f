//! The Proxmox driver against the real fakepve simulator (started per test; see common/).
#![allow(missing_docs)]

mod common;

use common::FakePve;
use polyvisor_core::task::wait;
use polyvisor_core::*;
use polyvisor_proxmox::pve_error::PveError;
use polyvisor_proxmox::{open_driver, ProxmoxDriver};
use serde_json::{json, Value};
use std::time::Duration;

fn driver(settings: Value) -> ProxmoxDriver {
    open_driver(&Settings::from_json(&settings).unwrap()).unwrap()
}

async fn finish(d: &ProxmoxDriver, t: &TaskId) -> Result<TaskOutput> {
    wait(d, t, Duration::from_secs(20), Duration::from_millis(50)).await
}

fn with(mut base: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        base[k] = v.clone();
    }
    base
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_auth_fingerprint_listing_get_and_power() {
    let pve = FakePve::start();
    let d = driver(pve.token_settings());
    let before = d.round_trips();
    assert!(d.probe().await.unwrap().starts_with("Proxmox VE 9.0.10 at 127.0."));
    assert_eq!(d.round_trips() - before, 1, "probe = 1 round trip");
    let list = d.list_guests().await.unwrap();
    let ids: Vec<&str> = list.iter().map(|g| g.id.as_str()).collect();
    assert!(ids.contains(&"9000") && ids.contains(&"102") && !ids.contains(&"200"), "{ids:?}");
    assert!(list.iter().find(|g| g.id.as_str() == "9000").unwrap().is_template);

    // get: node cached from the listing → status + config + agent = 3 round trips.
    let before = d.round_trips();
    let g = d.get_guest(&"100".into()).await.unwrap();
    assert_eq!(d.round_trips() - before, 3);
    assert_eq!(g.ipv4_addresses(), ["192.0.2.50"]);
    assert_eq!(g.mac_addresses(), ["BC:24:11:00:01:00"]);
    assert_eq!(
        (g.cpus, g.memory_mb, g.os.as_deref(), g.power),
        (Some(2), Some(2048), Some("win11"), PowerState::PoweredOn)
    );

    // paused guest on another node: start resumes it.
    let p = d.get_guest(&"102".into()).await.unwrap();
    assert_eq!(
        (p.power, p.raw_power_state.as_str(), p.node.as_deref()),
        (PowerState::Suspended, "paused", Some("pve2"))
    );
    let t = d.power(&"102".into(), PowerAction::Start).await.unwrap();
    finish(&d, &t).await.unwrap();
    assert_eq!(d.get_guest(&"102".into()).await.unwrap().power, PowerState::PoweredOn);
    // start on running: completed without a task; stop, shutdown, suspend/resume, reset, reboot.
    let before = d.round_trips();
    finish(&d, &d.power(&"100".into(), PowerAction::Start).await.unwrap()).await.unwrap();
    assert_eq!(d.round_trips() - before, 1, "idempotent start = status read only");
    for a in [PowerAction::Suspend, PowerAction::Resume, PowerAction::Reset, PowerAction::Reboot, PowerAction::Shutdown]
    {
        finish(&d, &d.power(&"100".into(), a).await.unwrap()).await.unwrap_or_else(|e| panic!("{a}: {e:?}"));
    }
    assert_eq!(d.get_guest(&"100".into()).await.unwrap().power, PowerState::PoweredOff);
    finish(&d, &d.power(&"100".into(), PowerAction::Stop).await.unwrap()).await.unwrap();

    // not found / bad ids / foreign tasks.
    assert_eq!(d.get_guest(&"4242".into()).await.unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(d.get_guest(&"abc".into()).await.unwrap_err().kind(), ErrorKind::InvalidInput);
    assert_eq!(d.task_status(&TaskId("UPID:pve1:1".into())).await.unwrap_err().kind(), ErrorKind::UnknownTask);
    // console: VNC on the node address, one-time ticket.
    match d.console(&"102".into()).await.unwrap() {
        Console::Vnc { host, port, password, one_time } => {
            assert_eq!((host.as_str(), port, one_time), ("192.0.2.11", 5900, true));
            assert!(password.unwrap().expose_secret().starts_with("PVEVNC:"));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticket_auth_ca_file_relogin_and_bad_credentials() {
    let mut pve = FakePve::start();
    let d = driver(pve.ticket_settings());
    d.probe().await.unwrap();
    assert_eq!(d.round_trips(), 2, "login + version");
    // Writes carry CSRF: a power action works.
    finish(&d, &d.power(&"101".into(), PowerAction::Start).await.unwrap()).await.unwrap();
    // Expired/revoked ticket: one re-login, then success.
    pve.cmd(json!({"call": "revoke_tickets"}));
    let before = d.round_trips();
    d.list_guests().await.unwrap();
    assert_eq!(d.round_trips() - before, 3, "401 + login + retry");

    let bad = driver(with(pve.ticket_settings(), json!({"password": "WRONG-pw-123"})));
    let e = bad.probe().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized);
    assert!(!format!("{e:?}").contains("WRONG-pw-123"), "{e:?}");
    let bad = driver(with(pve.token_settings(), json!({"token_secret": "nope-SECRET"})));
    let e = bad.probe().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized);
    assert!(!format!("{e:?}").contains("nope-SECRET"));

    // TLS: default verification rejects the self-signed cert; a wrong pin too; insecure works.
    // Certificate failures are typed and never retried (old code: 3 attempts, ~460 ms),
    // and the hint names the key of the front in use.
    let s = json!({"host": pve.host_port(), "username": "root@pam", "token_name": "ci", "token_secret": common::TOKEN_SECRET});
    let d = driver(s.clone());
    let e = d.probe().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e:?}");
    assert!(matches!(PveError::of(&e), Some(PveError::Tls { .. })), "{e:?}");
    assert_eq!(d.round_trips(), 1, "TLS failures are not retried");
    assert!(e.message().contains("'verify_tls'") && !e.message().contains("verify_tls_certificate"), "{e}");
    let cs = json!({"url": pve.host_port(), "user": "root@pam", "token": "ci", "secret": "x"});
    let e = driver(cs).list_guests().await.unwrap_err();
    assert!(e.message().contains("'verify_tls_certificate'"), "CloudStack's key: {e}");
    let wrong = "00:".repeat(31) + "00";
    let e = driver(with(s.clone(), json!({"fingerprint": wrong}))).probe().await.unwrap_err();
    assert!(matches!(PveError::of(&e), Some(PveError::Tls { reason, .. }) if reason.contains("pinned")), "{e:?}");
    driver(with(s, json!({"verify_tls": "false"}))).probe().await.unwrap();
    // Unreachable host: Unavailable, bounded.
    let t0 = std::time::Instant::now();
    let e = driver(json!({"host": "127.0.0.1:1", "username": "root@pam", "password": "x", "verify_tls": false}))
        .probe()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert!(t0.elapsed() < Duration::from_secs(8));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flag_templates_versions_clones_and_delete() {
    let mut pve = FakePve::start();
    let d = driver(pve.token_settings());
    let tpl: GuestId = "103".into();
    finish(&d, &d.set_template(&tpl, true).await.unwrap()).await.unwrap();
    assert!(d.get_guest(&tpl).await.unwrap().is_template);
    // A second driver (another process) sees the flag: it lives on the VM.
    let other = driver(pve.token_settings());
    assert!(other.list_guests().await.unwrap().iter().any(|g| g.id == tpl && g.is_template));

    let spec = |n: &str| SnapshotSpec { name: n.into(), include_memory: false, description: Some("v".into()) };
    finish(&d, &d.create_snapshot(&tpl, &spec("RAS_TEMPLATE_VERSION_1")).await.unwrap()).await.unwrap();
    assert!(d.snapshot_exists(&tpl, "RAS_TEMPLATE_VERSION_1").await.unwrap());
    // Replace: delete then create, chained in the token, resolved by another driver.
    let t = d.create_snapshot(&tpl, &spec("RAS_TEMPLATE_VERSION_1")).await.unwrap();
    finish(&other, &t).await.unwrap();
    let snaps = d.list_snapshots(&tpl).await.unwrap();
    assert_eq!(snaps.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["RAS_TEMPLATE_VERSION_1"]);
    // Invalid PVE names are mapped consistently.
    finish(&d, &d.create_snapshot(&tpl, &spec("RAS Template Snapshot")).await.unwrap()).await.unwrap();
    assert!(d.snapshot_exists(&tpl, "RAS Template Snapshot").await.unwrap());
    finish(&d, &d.delete_snapshot(&tpl, "RAS Template Snapshot").await.unwrap()).await.unwrap();
    // Deleting a missing snapshot is a completed no-op.
    finish(&d, &d.delete_snapshot(&tpl, "nope").await.unwrap()).await.unwrap();
    assert_eq!(d.revert_snapshot(&tpl, "nope").await.unwrap_err().kind(), ErrorKind::NotFound);
    finish(&d, &d.revert_snapshot(&tpl, "RAS_TEMPLATE_VERSION_1").await.unwrap()).await.unwrap();

    // Clone from the version, started; the clone has no agent → ready after ip_wait_timeout (1 s).
    let cs = CloneSpec {
        source: tpl.clone(),
        name: "RAS Pool_01".into(),
        snapshot: Some("RAS_TEMPLATE_VERSION_1".into()),
        mode: CloneMode::Auto,
        start: true,
    };
    let before = d.round_trips();
    let started = d.clone_guest(&cs).await.unwrap();
    assert_eq!(d.round_trips() - before, 3, "resources + nextid + clone");
    let out = finish(&d, &started.task).await.unwrap();
    let id = out.new_guest.unwrap();
    assert_eq!(Some(&id), started.new_guest.as_ref());
    let g = d.get_guest(&id).await.unwrap();
    assert_eq!((g.name.as_str(), g.is_template, g.power), ("ras-pool-01", false, PowerState::PoweredOn));
    // Retry of the same clone adopts it.
    let again = d.clone_guest(&cs).await.unwrap();
    assert_eq!(again.new_guest.as_ref(), Some(&id));
    assert_eq!(finish(&d, &again.task).await.unwrap().new_guest, Some(id.clone()));
    assert_eq!(pve.vms().iter().filter(|v| v["name"] == "ras-pool-01").count(), 1);
    // Invalid name.
    let bad = CloneSpec { name: "___".into(), ..cs.clone() };
    assert_eq!(d.clone_guest(&bad).await.unwrap_err().kind(), ErrorKind::InvalidInput);

    // Delete a running clone: stop first, then DELETE, resolved by another driver.
    let t = d.delete_guest(&id).await.unwrap();
    finish(&other, &t).await.unwrap();
    assert_eq!(d.get_guest(&id).await.unwrap_err().kind(), ErrorKind::NotFound);
    finish(&d, &d.delete_guest(&id).await.unwrap()).await.unwrap();
    // Back to a VM.
    finish(&d, &d.set_template(&tpl, false).await.unwrap()).await.unwrap();
    assert!(!d.get_guest(&tpl).await.unwrap().is_template);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_templates_and_linked_clones() {
    let mut pve = FakePve::start();
    let d = driver(with(pve.token_settings(), json!({"template_mode": "native"})));
    assert_eq!(d.capabilities().templates, TemplateStrategy::Native);
    let id: GuestId = "101".into();
    finish(&d, &d.set_template(&id, true).await.unwrap()).await.unwrap();
    assert!(d.get_guest(&id).await.unwrap().is_template);
    finish(&d, &d.set_template(&id, true).await.unwrap()).await.unwrap();
    // Link-clone design: a native template stands for exactly one virtual snapshot, the RAS
    // link label. Other names cannot exist on it, and a clone from one fails clearly
    // (regression, issue 9: it used to clone the current state and succeed).
    let label = SnapshotSpec { name: "RAS Template Snapshot".into(), include_memory: false, description: None };
    finish(&d, &d.create_snapshot(&id, &label).await.unwrap()).await.unwrap();
    assert!(d.snapshot_exists(&id, "RAS Template Snapshot").await.unwrap());
    let snap = SnapshotSpec { name: "RAS_TEMPLATE_VERSION_1".into(), include_memory: false, description: None };
    let r = match d.create_snapshot(&id, &snap).await {
        Ok(t) => finish(&d, &t).await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert_eq!(r.unwrap_err().kind(), ErrorKind::Conflict);
    assert!(!d.snapshot_exists(&id, "RAS_TEMPLATE_VERSION_1").await.unwrap());
    let n = pve.vms().len();
    let bad = CloneSpec {
        source: id.clone(),
        name: "linked-0".into(),
        snapshot: Some("RAS_TEMPLATE_VERSION_99".into()),
        mode: CloneMode::Linked,
        start: false,
    };
    assert_eq!(d.clone_guest(&bad).await.unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(pve.vms().len(), n, "nothing cloned");
    let cs = CloneSpec {
        source: id.clone(),
        name: "linked-1".into(),
        snapshot: Some("RAS Template Snapshot".into()),
        mode: CloneMode::Linked,
        start: false,
    };
    let out = finish(&d, &d.clone_guest(&cs).await.unwrap().task).await.unwrap();
    let g = d.get_guest(&out.new_guest.unwrap()).await.unwrap();
    assert_eq!((g.name.as_str(), g.is_template), ("linked-1", false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_leave_nothing_half_created() {
    let mut pve = FakePve::start();
    let d = driver(pve.token_settings());
    let n_before = pve.vms().len();
    // Clone task fails in the task (catalogued PVE error): failed, nothing left.
    pve.cmd(json!({"call": "fail", "args": ["POST", "/nodes/{node}/qemu/{vmid}/clone"], "kwargs": {"status": 500, "message": "clone failed: storage full", "times": 1}}));
    let cs = CloneSpec { source: "9000".into(), name: "f1".into(), snapshot: None, mode: CloneMode::Full, start: true };
    let e = d.clone_guest(&cs).await.unwrap_err();
    assert!(e.message().contains("storage full"), "{e}");
    assert_eq!(pve.vms().len(), n_before);
    // Start fails after the clone: the task fails and the clone is removed.
    let cs = CloneSpec { name: "f2".into(), ..cs };
    let started = d.clone_guest(&cs).await.unwrap();
    let id = started.new_guest.clone().unwrap();
    pve.cmd(
        json!({"vm": id.as_str().parse::<u64>().unwrap(), "set": "start_error", "value": "start failed: no memory"}),
    );
    let e = finish(&d, &started.task).await.unwrap_err();
    assert!(e.message().contains("start failed"), "{e:?}");
    assert_eq!(pve.vms().len(), n_before, "{:?}", pve.vms());
    // A locked VM: PVE's lock error surfaces as a Conflict with its own words.
    pve.cmd(json!({"call": "snapshot_lock", "args": [101]}));
    let snap = SnapshotSpec { name: "s1".into(), include_memory: false, description: None };
    let r = match d.create_snapshot(&"101".into(), &snap).await {
        Ok(t) => finish(&d, &t).await.map(|_| ()),
        Err(e) => Err(e),
    };
    let e = r.expect_err("snapshot of a locked VM must fail");
    assert!(e.message().contains("locked"), "{e:?}");
    pve.cmd(json!({"call": "unlock", "args": [101]}));
}

/// The PVE 9.1 API schema (copied from shared/data; derived from Proxmox VE, AGPL-3.0 —
/// reference data for this check only).
fn schema() -> serde_json::Map<String, Value> {
    use std::io::Read;
    let gz =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/pve-api-schema.json.gz")).expect("schema file");
    let mut s = String::new();
    flate2::read::GzDecoder::new(&gz[..]).read_to_string(&mut s).expect("gunzip schema");
    serde_json::from_str::<Value>(&s).expect("schema json").as_object().cloned().expect("schema object")
}

/// The schema entry for a concrete path (`{…}` segments are wildcards; literal segments win).
fn template_for<'a>(schema: &'a serde_json::Map<String, Value>, path: &str) -> Option<(&'a String, &'a Value)> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    schema
        .iter()
        .filter(|(t, _)| {
            let ts: Vec<&str> = t.trim_matches('/').split('/').collect();
            ts.len() == segs.len() && ts.iter().zip(&segs).all(|(t, s)| t.starts_with('{') || t == s)
        })
        .max_by_key(|(t, _)| t.split('/').filter(|s| !s.starts_with('{')).count())
}

fn param_known(props: &serde_json::Map<String, Value>, name: &str) -> bool {
    if props.contains_key(name) {
        return true;
    }
    // Indexed parameters: net0 → net[n].
    let base = name.trim_end_matches(|c: char| c.is_ascii_digit());
    base != name && props.contains_key(&format!("{base}[n]"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_guest_and_every_request_matches_the_pve_schema() {
    let mut pve = FakePve::start();
    pve.cmd(json!({"call": "store_file", "args": ["local", "debian.iso", 1000]}));
    let d =
        driver(with(pve.token_settings(), json!({"node": "pve1", "storage": "local-lvm", "network_bridge": "vmbr0"})));
    let n0 = pve.vms().len();
    // CloudStack create from template: key stored on the VM, found by another process.
    let spec = CreateSpec {
        name: "i-2-45-VM".into(),
        key: "i-2-45-VM".into(),
        source: CreateSource::Template { id: "9000".into(), full: true },
        cpus: Some(2),
        memory_mb: Some(1024),
        disk_size_gb: None,
        storage: None,
        nics: vec![NicSpec { mac: Some("02:00:0a:0b:0c:0d".into()), vlan: Some(100), network: None }],
    };
    let started = d.create_guest(&spec).await.unwrap();
    let id = finish(&d, &started.task).await.unwrap().new_guest.unwrap();
    let other = driver(pve.token_settings());
    let found = other.find_by_key("i-2-45-VM").await.unwrap().expect("found by key");
    assert_eq!(found.id, id);
    let g = other.get_guest(&id).await.unwrap();
    assert_eq!((g.cpus, g.memory_mb, g.power, g.is_template), (Some(2), Some(1024), PowerState::PoweredOn, false));
    assert_eq!(g.mac_addresses(), ["02:00:0A:0B:0C:0D"]);
    assert_eq!(g.nics[0].vlan, Some(100));
    // Retry of the same create adopts.
    let again = d.create_guest(&spec).await.unwrap();
    assert_eq!(again.new_guest, Some(id.clone()));
    assert_eq!(pve.vms().len(), n0 + 1);
    // From ISO.
    let iso = CreateSpec {
        name: "i-2-46-VM".into(),
        key: "i-2-46-VM".into(),
        source: CreateSource::Iso { path: "local:iso/debian.iso".into(), os_type: None },
        disk_size_gb: Some(4),
        ..spec.clone()
    };
    let id2 = finish(&d, &d.create_guest(&iso).await.unwrap().task).await.unwrap().new_guest.unwrap();
    assert_eq!(d.get_guest(&id2).await.unwrap().key.as_deref(), Some("i-2-46-VM"));
    // A failing ISO create (missing volume) leaves nothing behind.
    let bad = CreateSpec {
        key: "i-2-47-VM".into(),
        name: "i-2-47-VM".into(),
        source: CreateSource::Iso { path: "local:iso/missing.iso".into(), os_type: None },
        ..iso.clone()
    };
    let e = finish(&d, &d.create_guest(&bad).await.unwrap().task).await.unwrap_err();
    assert!(e.message().contains("does not exist"), "{e}");
    assert_eq!(pve.vms().len(), n0 + 2);
    for g in [&id, &id2] {
        finish(&d, &d.delete_guest(g).await.unwrap()).await.unwrap();
    }
    // More traffic for the schema check.
    let snap = SnapshotSpec { name: "s1".into(), include_memory: true, description: Some("d".into()) };
    finish(&d, &d.create_snapshot(&"100".into(), &snap).await.unwrap()).await.unwrap();
    finish(&d, &d.create_snapshot(&"100".into(), &snap).await.unwrap()).await.unwrap();
    finish(&d, &d.revert_snapshot(&"100".into(), "s1").await.unwrap()).await.unwrap();
    finish(&d, &d.delete_snapshot(&"100".into(), "s1").await.unwrap()).await.unwrap();
    for a in PowerAction::ALL {
        let _ = d.power(&"100".into(), a).await;
    }
    d.console(&"100".into()).await.unwrap();
    finish(&d, &d.set_template(&"101".into(), true).await.unwrap()).await.unwrap();
    finish(&d, &d.set_template(&"101".into(), false).await.unwrap()).await.unwrap();
    let nat = driver(with(pve.token_settings(), json!({"template_mode": "native"})));
    finish(&nat, &nat.set_template(&"103".into(), true).await.unwrap()).await.unwrap();
    let cs =
        CloneSpec { source: "103".into(), name: "lc".into(), snapshot: None, mode: CloneMode::Linked, start: true };
    finish(&nat, &nat.clone_guest(&cs).await.unwrap().task).await.unwrap();

    let schema = schema();
    let sent = pve.cmd(json!({"sent": true}));
    let sent = sent.as_array().expect("sent list");
    assert!(sent.len() > 50, "too little traffic to check: {}", sent.len());
    let mut problems = Vec::new();
    for r in sent {
        let method = r[0].as_str().unwrap();
        let path = r[1].as_str().unwrap().trim_start_matches("/api2/json");
        let Some((template, entry)) = template_for(&schema, path) else {
            problems.push(format!("{method} {path}: no such path"));
            continue;
        };
        let Some(m) = entry.get(method) else {
            problems.push(format!("{method} {template}: no such method"));
            continue;
        };
        let props = m["parameters"]["properties"].as_object().cloned().unwrap_or_default();
        for p in r[2].as_array().unwrap() {
            let p = p.as_str().unwrap();
            if !param_known(&props, p) {
                problems.push(format!("{method} {template}: unknown parameter '{p}'"));
            }
        }
    }
    problems.sort();
    problems.dedup();
    assert!(problems.is_empty(), "requests outside the PVE schema:\n{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clones_get_distinct_ids_despite_nextid_races() {
    let mut pve = FakePve::start();
    let d = std::sync::Arc::new(driver(pve.token_settings()));
    let spec = |n: &str| CloneSpec {
        source: "9000".into(),
        name: n.into(),
        snapshot: None,
        mode: CloneMode::Full,
        start: false,
    };
    let (sa, sb, sc) = (spec("c-a"), spec("c-b"), spec("c-c"));
    let (a, b, c) = tokio::join!(d.clone_guest(&sa), d.clone_guest(&sb), d.clone_guest(&sc));
    let mut ids = Vec::new();
    for s in [a, b, c] {
        let s = s.expect("clone submitted");
        ids.push(finish(&d, &s.task).await.unwrap().new_guest.unwrap());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "{ids:?}");
    let names: Vec<String> = pve
        .vms()
        .iter()
        .filter_map(|v| v["name"].as_str().map(str::to_string))
        .filter(|n| n.starts_with("c-"))
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    let sent = pve.cmd(json!({"sent": true}));
    let posts = sent
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r[0] == "POST" && r[1].as_str().unwrap().ends_with("/clone"))
        .count();
    eprintln!("clone POSTs for 3 concurrent clones: {posts} (collisions retried with a new VMID)");
    assert!(posts >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn started_clone_completes_only_once_it_reports_an_ipv4() {
    let mut pve = FakePve::start();
    let d = driver(with(pve.token_settings(), json!({"ip_wait_timeout": 120})));
    let cs =
        CloneSpec { source: "100".into(), name: "ready-1".into(), snapshot: None, mode: CloneMode::Full, start: true };
    let started = d.clone_guest(&cs).await.unwrap();
    let id = started.new_guest.clone().unwrap();
    // Clone done and started, but no agent answer yet: still running (powering on for RAS).
    for _ in 0..4 {
        assert!(matches!(d.task_status(&started.task).await.unwrap(), TaskStatus::Running));
    }
    assert_eq!(d.get_guest(&id).await.unwrap().power, PowerState::PoweredOn);
    // The guest agent comes up (fakepve default answer: eth0 192.0.2.10).
    pve.cmd(json!({"vm": id.as_str().parse::<u64>().unwrap(), "set": "agent", "value": {}}));
    let before = d.round_trips();
    let out = finish(&d, &started.task).await.unwrap();
    assert_eq!(out.new_guest, Some(id.clone()));
    assert!(d.round_trips() - before <= 6, "one ready poll: task + config + status/config/agent");
    assert_eq!(d.get_guest(&id).await.unwrap().ipv4_addresses(), ["192.0.2.10"]);
}

/// The VMID `prepare` allocated is only a hint: a VM there that does not carry our key is
/// never found, adopted or touched, and a create whose VMID got taken in the meantime
/// (nextid does not reserve) converges at another VMID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vmid_hint_never_proves_ownership_and_survives_the_nextid_race() {
    let mut pve = FakePve::start();
    let settings = with(pve.token_settings(), json!({"node": "pve1"}));
    let d = driver(settings.clone());
    let spec = |key: &str| CreateSpec {
        name: key.to_lowercase(),
        key: key.into(),
        source: CreateSource::Template { id: "9000".into(), full: false },
        cpus: Some(1),
        memory_mb: Some(512),
        disk_size_gb: None,
        storage: None,
        nics: vec![],
    };
    // A hint at a foreign VM (100: running, no key): not ours, and create goes elsewhere.
    let foreign: GuestId = "100".into();
    assert!(d.find_owned("i-3-1-VM", Some(&foreign)).await.unwrap().is_none());
    let started = d.create_guest_at(&spec("i-3-1-VM"), Some(&foreign)).await.unwrap();
    let id = finish(&d, &started.task).await.unwrap().new_guest.unwrap();
    assert_ne!(id, foreign);
    let g = d.get_guest(&foreign).await.unwrap();
    assert_eq!((g.key, g.power, g.name.as_str()), (None, PowerState::PoweredOn, "web-01"));
    assert_eq!(d.find_owned("i-3-1-VM", Some(&foreign)).await.unwrap().map(|g| g.id), Some(id.clone()));

    // The race: prepare allocates a VMID, the front lists (the create reuses that listing),
    // and another process takes the VMID before the create's POST.
    let hint = driver(settings.clone()).allocate_id_hint().await.unwrap().expect("a VMID");
    let d = driver(settings.clone());
    assert!(d.list_guests().await.unwrap().iter().all(|g| g.id != hint));
    let other = driver(settings.clone());
    let cs = CloneSpec {
        source: "9000".into(),
        name: "intruder".into(),
        snapshot: None,
        mode: CloneMode::Full,
        start: false,
    };
    let theirs = other.clone_guest(&cs).await.unwrap();
    assert_eq!(theirs.new_guest.as_ref(), Some(&hint), "the other process took the hinted VMID");
    finish(&other, &theirs.task).await.unwrap();
    let started = d.create_guest_at(&spec("i-3-2-VM"), Some(&hint)).await.unwrap();
    let id = finish(&d, &started.task).await.unwrap().new_guest.unwrap();
    assert_ne!(id, hint, "created at a new VMID");
    let mine = d.get_guest(&id).await.unwrap();
    assert_eq!((mine.key.as_deref(), mine.power), (Some("i-3-2-VM"), PowerState::PoweredOn));
    let intruder = d.get_guest(&hint).await.unwrap();
    assert_eq!((intruder.key, intruder.name.as_str()), (None, "intruder"), "the other VM untouched");
    assert!(d.find_owned("i-3-2-VM", Some(&hint)).await.unwrap().is_some_and(|g| g.id == id));
    let vms = pve.vms();
    assert_eq!(vms.iter().filter(|v| v["name"] == "i-3-2-vm").count(), 1, "no duplicate: {vms:?}");
    // The create's POST at the hinted VMID collided, then one at a fresh nextid: 4 clone
    // POSTs in all (first create, the intruder, the collision, the retry).
    let sent = pve.cmd(json!({"sent": true}));
    let clones =
        sent.as_array().unwrap().iter().filter(|r| r[0] == "POST" && r[1].as_str().unwrap().ends_with("/clone"));
    assert_eq!(clones.count(), 4);
}
