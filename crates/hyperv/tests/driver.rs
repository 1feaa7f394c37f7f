//! The driver against a private stand-in (testing/hyperv/standin.py): power rules,
//! checkpoints, linked and full clones, delete (only polyvisor's files), ownership, auth
//! failures, bounds (hung remote command, silent host), refused injection, round trips.

mod common;

use common::StandIn;
use polyvisor_core::{
    CloneMode, CloneSpec, CreateSource, CreateSpec, Driver, ErrorKind, GuestId, NicSpec, PowerAction, PowerState,
    SnapshotSpec,
};
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};

fn id(s: &str) -> GuestId {
    GuestId::new(s.to_string())
}

fn clone_spec(src: &str, name: &str, mode: CloneMode) -> CloneSpec {
    CloneSpec { source: id(src), name: name.into(), snapshot: None, mode, start: false }
}

/// Files under the stand-in's vhd_path, listed through pywinrm (`cmd /c dir /b`).
fn vhd_files(s: &StandIn) -> Vec<String> {
    let py = r#"
import sys, winrm
host, port, pw, ca, path = sys.argv[1:6]
r = winrm.Session("https://%s:%s/wsman" % (host, port), auth=("polyvisor", pw), transport="ntlm",
                  server_cert_validation="validate", ca_trust_path=ca).run_cmd("cmd", ["/c", "dir", "/b", path])
print(r.std_out.decode(), end="")
sys.exit(0 if r.status_code == 0 or r.std_err.startswith(b"File Not Found") else r.status_code)
"#;
    let out = Command::new("python3")
        .args(["-c", py, &s.get("host"), &s.get("port"), &s.password, &s.get("ca_file"), &s.get("vhd_path")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()).map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn power_rules_checkpoints_and_round_trips() {
    let s = StandIn::start();
    let d = s.driver();
    let probe = d.probe().await.unwrap();
    assert!(probe.contains("HV-STANDIN-01") && probe.contains("3 VMs"), "{probe}");
    // First script: NTLM negotiate + authenticate(shell Create) + Command + Receive + Signal
    // (+2 when the HTTP pool had not taken the connection back yet and a second one is
    // authenticated: counted, never a failure).
    assert!((5..=7).contains(&d.round_trips()), "{}", d.round_trips());
    assert_eq!(d.shells_created(), 1);
    let before = d.round_trips();
    let all = d.list_guests().await.unwrap();
    assert_eq!(all.len(), 3);
    // Later scripts reuse the authenticated connection and the shell: 3 round trips each.
    assert!((3..=5).contains(&(d.round_trips() - before)), "{}", d.round_trips() - before);
    assert_eq!(d.shells_created(), 1);
    // Scripts per method (each is Command + Receive + Signal on a warm channel).
    let src = id(&s.get("source_guest"));
    for (what, n) in [("get", 1u64), ("power no-op", 1), ("find_owned, hint misses", 2), ("snapshots", 1)] {
        let b = d.scripts_run();
        match what {
            "get" => drop(d.get_guest(&src).await.unwrap()),
            "power no-op" => drop(d.power(&src, PowerAction::Stop).await.unwrap()),
            "find_owned, hint misses" => assert!(d.find_owned("k", Some(&src)).await.unwrap().is_none()),
            _ => drop(d.list_snapshots(&src).await.unwrap()),
        }
        assert_eq!(d.scripts_run() - b, n, "{what}");
    }

    let vm = d.clone_guest(&clone_spec(&s.get("source_guest"), "pv-power", CloneMode::Linked)).await.unwrap();
    let g = vm.new_guest.unwrap();
    assert_eq!(d.get_guest(&g).await.unwrap().power, PowerState::PoweredOff);
    let power = |a| d.power(&g, a);
    power(PowerAction::Start).await.unwrap();
    let on = d.get_guest(&g).await.unwrap();
    assert_eq!(on.power, PowerState::PoweredOn);
    assert!(!on.ipv4_addresses().is_empty() && on.mac_addresses()[0].contains(':'), "{on:?}");
    power(PowerAction::Start).await.unwrap(); // idempotent
    let e = d.clone_guest(&clone_spec(g.as_str(), "pv-of-running", CloneMode::Linked)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "the current state of a running VM is not cloned: {e}");
    power(PowerAction::Suspend).await.unwrap();
    assert_eq!(d.get_guest(&g).await.unwrap().power, PowerState::Suspended);
    assert_eq!(power(PowerAction::Reboot).await.unwrap_err().kind(), ErrorKind::Conflict);
    power(PowerAction::Start).await.unwrap(); // start on paused resumes
    power(PowerAction::Reboot).await.unwrap();
    power(PowerAction::Shutdown).await.unwrap();
    assert_eq!(d.get_guest(&g).await.unwrap().power, PowerState::PoweredOff);
    power(PowerAction::Stop).await.unwrap(); // idempotent
    assert_eq!(power(PowerAction::Suspend).await.unwrap_err().kind(), ErrorKind::Conflict);
    assert_eq!(power(PowerAction::Resume).await.unwrap_err().kind(), ErrorKind::Conflict);

    // Checkpoints: create, list, restore (state comes back), replace by name, delete.
    power(PowerAction::Start).await.unwrap();
    let snap = SnapshotSpec { name: "before update".into(), include_memory: false, description: None };
    d.create_snapshot(&g, &snap).await.unwrap();
    power(PowerAction::Stop).await.unwrap();
    assert_eq!(d.list_snapshots(&g).await.unwrap()[0].name, "before update");
    d.revert_snapshot(&g, "before update").await.unwrap();
    assert_eq!(d.get_guest(&g).await.unwrap().power, PowerState::Suspended, "a running checkpoint restores Saved");
    d.create_snapshot(&g, &snap).await.unwrap();
    assert_eq!(d.list_snapshots(&g).await.unwrap().len(), 1);
    assert!(d.snapshot_exists(&g, "before update").await.unwrap());
    let e = d.revert_snapshot(&g, "nope").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    d.delete_snapshot(&g, "before update").await.unwrap();
    assert!(d.list_snapshots(&g).await.unwrap().is_empty());
    d.delete_guest(&g).await.unwrap();
    let e = d.get_guest(&g).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert_eq!(d.shells_created(), 1, "one shell for the whole run");
    d.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn linked_and_full_clones_and_delete_removes_only_polyvisors_files() {
    let s = StandIn::start();
    let d = s.driver();
    let tpl = s.get("template_id");
    assert!(d.get_guest(&id(&tpl)).await.unwrap().is_template);
    let b = d.scripts_run();
    let linked = d.clone_guest(&clone_spec(&tpl, "pv-linked", CloneMode::Linked)).await.unwrap().new_guest.unwrap();
    assert_eq!(d.scripts_run() - b, 2, "clone: get + clone");
    let full = d.clone_guest(&clone_spec(&tpl, "pv-full", CloneMode::Full)).await.unwrap().new_guest.unwrap();
    let g = d.get_guest(&linked).await.unwrap();
    assert!(!g.is_template && g.key.is_none() && g.cpus == Some(2) && g.memory_mb == Some(2048), "{g:?}");
    assert_eq!(vhd_files(&s), ["pv-full.vhdx", "pv-linked.vhdx"]);
    // A create carries the platform key, CPU/memory/NICs as asked, and starts.
    let spec = CreateSpec {
        name: "i-2-9-VM".into(),
        key: "i-2-9-VM".into(),
        source: CreateSource::Template { id: id(&tpl), full: false },
        cpus: Some(3),
        memory_mb: Some(1536),
        disk_size_gb: None,
        storage: None,
        nics: vec![NicSpec { mac: Some("02:00:00:aa:bb:01".into()), vlan: Some(42), network: None }],
    };
    let c = d.create_guest(&spec).await.unwrap().new_guest.unwrap();
    let g = d.get_guest(&c).await.unwrap();
    assert_eq!((g.cpus, g.memory_mb, g.power), (Some(3), Some(1536), PowerState::PoweredOn));
    assert_eq!(g.mac_addresses(), ["02:00:00:AA:BB:01"]);
    assert_eq!(d.find_owned("i-2-9-VM", None).await.unwrap().unwrap().id, c);
    assert_eq!(d.find_owned("i-2-9-VM", Some(&c)).await.unwrap().unwrap().id, c);
    // The same create again (a retry) adopts the VM the first one made.
    assert_eq!(d.create_guest(&spec).await.unwrap().new_guest.unwrap(), c);
    let other = CreateSpec { key: "i-2-10-VM".into(), ..spec.clone() };
    assert_eq!(d.create_guest(&other).await.unwrap_err().kind(), ErrorKind::AlreadyExists, "another key");
    // The same clone again adopts; the same name from another source is refused, not overwritten.
    assert_eq!(d.clone_guest(&clone_spec(&tpl, "pv-full", CloneMode::Full)).await.unwrap().new_guest.unwrap(), full);
    let e = d.clone_guest(&clone_spec(&s.get("source_guest"), "pv-full", CloneMode::Full)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    // A linked clone of a template's checkpoint (RAS versions / link-clone level).
    let v1 = SnapshotSpec { name: "v1".into(), include_memory: false, description: None };
    d.create_snapshot(&id(&tpl), &v1).await.unwrap();
    let from = CloneSpec { snapshot: Some("v1".into()), ..clone_spec(&tpl, "pv-from-v1", CloneMode::Linked) };
    let from = d.clone_guest(&from).await.unwrap().new_guest.unwrap();
    let missing = CloneSpec { snapshot: Some("v9".into()), ..clone_spec(&tpl, "pv-from-v9", CloneMode::Full) };
    assert_eq!(d.clone_guest(&missing).await.unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(vhd_files(&s), ["i-2-9-VM.vhdx", "pv-from-v1.vhdx", "pv-full.vhdx", "pv-linked.vhdx"]);
    d.delete_guest(&from).await.unwrap();
    d.delete_snapshot(&id(&tpl), "v1").await.unwrap();
    let b = d.scripts_run();
    d.set_template(&linked, true).await.unwrap();
    d.set_template(&linked, false).await.unwrap();
    assert_eq!(d.scripts_run() - b, 4, "set_template: get + notes");
    assert!(!d.get_guest(&linked).await.unwrap().is_template);
    let b = d.scripts_run();
    d.power(&full, PowerAction::Start).await.unwrap();
    assert_eq!(d.scripts_run() - b, 2, "power: get + power");
    assert_eq!(d.set_template(&full, true).await.unwrap_err().kind(), ErrorKind::Conflict, "running");
    for g in [&linked, &full, &c] {
        let b = d.scripts_run();
        d.delete_guest(g).await.unwrap();
        assert_eq!(d.scripts_run() - b, 2, "delete: get + delete");
        d.delete_guest(g).await.unwrap(); // idempotent
    }
    assert!(vhd_files(&s).is_empty(), "polyvisor's disks are gone");
    // The template, the source and the foreign VM (and their disks) are untouched.
    let left: Vec<String> = d.list_guests().await.unwrap().into_iter().map(|g| g.name).collect();
    assert_eq!(left.len(), 3, "{left:?}");
    let web = d.get_guest(&id(&s.get("foreign_guest"))).await.unwrap();
    assert_eq!((web.power, web.key), (PowerState::PoweredOn, None));
    assert!(d.find_owned("web-01", Some(&web.id)).await.unwrap().is_none());
    // A template can be cloned again from its untouched disk.
    let again = d.clone_guest(&clone_spec(&tpl, "pv-linked", CloneMode::Linked)).await.unwrap();
    d.delete_guest(&again.new_guest.unwrap()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn script_injection_through_names_and_ids_is_refused_before_any_call() {
    let s = StandIn::start();
    let d = s.driver();
    let src = s.get("source_guest");
    for name in ["x'; Remove-VM * -Force; '", "a$(Stop-Computer)", "a`nb", "..\\..\\Windows\\evil", "a\"b"] {
        let e = d.clone_guest(&clone_spec(&src, name, CloneMode::Linked)).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{name}: {e}");
        let snap = SnapshotSpec { name: name.into(), include_memory: false, description: None };
        assert_eq!(d.create_snapshot(&id(&src), &snap).await.unwrap_err().kind(), ErrorKind::InvalidInput);
        assert_eq!(d.get_guest(&id(name)).await.unwrap_err().kind(), ErrorKind::InvalidInput);
        assert_eq!(d.delete_guest(&id(name)).await.unwrap_err().kind(), ErrorKind::InvalidInput);
    }
    assert_eq!(d.scripts_run(), 0, "nothing reached the host");
    assert_eq!(d.list_guests().await.unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_failures_are_clear_and_basic_works() {
    let s = StandIn::start();
    let bad = polyvisor_hyperv::open_driver(&s.settings_with(json!({"password": "wrong-s3cret"}))).unwrap();
    let e = bad.probe().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
    assert!(e.message().contains("authentication failed") && e.message().contains("'polyvisor'"), "{e}");
    assert!(!e.to_string().contains("wrong-s3cret") && !format!("{e:?}").contains("wrong-s3cret"));
    let bad =
        polyvisor_hyperv::open_driver(&s.settings_with(json!({"password": "wrong", "transport": "basic"}))).unwrap();
    assert_eq!(bad.probe().await.unwrap_err().kind(), ErrorKind::Unauthorized);
    let basic = polyvisor_hyperv::open_driver(&s.settings_with(json!({"transport": "basic"}))).unwrap();
    assert!(basic.probe().await.unwrap().contains("HV-STANDIN-01"));
    // TLS: the pinned fingerprint works, a wrong pin is refused as a TLS failure.
    let pinned =
        polyvisor_hyperv::open_driver(&s.settings_with(json!({"ca_file": null, "fingerprint": s.get("fingerprint")})));
    let pinned = pinned.unwrap();
    assert!(pinned.probe().await.is_ok());
    let wrong = "00:".repeat(31) + "00";
    let e = polyvisor_hyperv::open_driver(&s.settings_with(json!({"ca_file": null, "fingerprint": wrong})))
        .unwrap()
        .probe()
        .await
        .unwrap_err();
    assert!(e.message().contains("TLS") && e.message().contains("'fingerprint'"), "{e}");
}

/// The console is VMConnect's: RDP to the host on 2179 with the VM id as pre-connection
/// blob (no secret); an unknown VM is not found, a bad id refused before any call.
#[tokio::test(flavor = "multi_thread")]
async fn the_console_is_a_vmconnect_rdp_hint() {
    let s = StandIn::start();
    let d = s.driver();
    assert_eq!(d.capabilities().consoles, vec![polyvisor_core::ConsoleKind::Rdp]);
    let id = GuestId::new(s.get("source_guest"));
    match d.console(&id).await.unwrap() {
        polyvisor_core::Console::Rdp { host, port, pcb } => {
            assert_eq!((host, port, pcb), (s.get("host"), 2179, id.as_str().to_ascii_lowercase()));
        }
        other => panic!("not an RDP console: {other:?}"),
    }
    let missing = GuestId::new("00000000-0000-4000-8000-000000000000");
    assert_eq!(d.console(&missing).await.unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(d.console(&GuestId::new("x'; Stop-VM")).await.unwrap_err().kind(), ErrorKind::InvalidInput);
}

/// A host with Extended Protection in Strict mode (the stand-in refuses NTLM without this
/// certificate's TLS channel binding; `testing/hyperv/test_standin.py` shows pywinrm and
/// pypsrp pass it and pywinrm without the binding does not): the driver logs in, with the
/// CA file and with the pinned fingerprint, and runs scripts on the bound session.
#[tokio::test(flavor = "multi_thread")]
async fn ntlm_carries_the_tls_channel_binding_a_strict_host_requires() {
    let s = StandIn::start_with(&["--require-channel-binding"]);
    let d = s.driver();
    assert!(d.probe().await.unwrap().contains("HV-STANDIN-01"));
    assert_eq!(d.list_guests().await.unwrap().len(), 3);
    let pinned =
        polyvisor_hyperv::open_driver(&s.settings_with(json!({"ca_file": null, "fingerprint": s.get("fingerprint")})))
            .unwrap();
    assert!(pinned.probe().await.is_ok());
    // A wrong password is still a refused password, not a binding problem.
    let bad = polyvisor_hyperv::open_driver(&s.settings_with(json!({"password": "wrong-s3cret"}))).unwrap();
    assert_eq!(bad.probe().await.unwrap_err().kind(), ErrorKind::Unauthorized);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_remote_command_and_a_silent_host_are_bounded() {
    let s = StandIn::start();
    // The stand-in never finishes commands of the account `slowpoke`.
    let slow = polyvisor_hyperv::open_driver(
        &s.settings_with(json!({"username": "slowpoke", "command_timeout": 5, "request_timeout": 5})),
    )
    .unwrap();
    let t0 = Instant::now();
    let e = slow.probe().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
    // A listener that accepts and never answers.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let _keep = std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in l.incoming() {
            held.push(c);
        }
    });
    let silent = polyvisor_hyperv::open_driver(&s.settings_with(json!({"port": port, "request_timeout": 3}))).unwrap();
    let t0 = Instant::now();
    let e = silent.list_guests().await.unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Timeout | ErrorKind::Unavailable), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
}
