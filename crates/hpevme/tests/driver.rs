//! Driver-level tests against the stand-in (started per test binary on a random port):
//! auth by token and by password grant, 401 refresh, power rules, snapshots and revert,
//! clone and its retry, create with the key, delete leaving nothing, the foreign VM
//! untouched, 404/409/429 mapped (429 backed off), a silent server bounded, and not one
//! request the OpenAPI description rejects; a power or delete the cluster fails is reported
//! from the instance history. Round trips per method are asserted.

mod common;

use common::{wait, StandIn};
use polyvisor_core::{
    CloneMode, CloneSpec, CreateSource, CreateSpec, Driver, ErrorKind, GuestId, PowerAction, PowerState, Settings,
    SnapshotSpec,
};
use polyvisor_hpevme::{error::VmeError, open_driver};
use serde_json::json;
use std::time::{Duration, Instant};

fn gid(s: &str) -> GuestId {
    GuestId::new(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_driver_against_the_stand_in() {
    let s = StandIn::start();
    let foreign = s.id("foreign_guest");
    let foreign_before = open_driver(&s.token_settings()).unwrap().get_guest(&gid(&foreign)).await.unwrap();

    // --- auth: token, and password grant fetched once, then again after a 401
    let tok = open_driver(&s.token_settings()).unwrap();
    let n0 = tok.round_trips();
    let listed = tok.list_guests().await.unwrap();
    assert_eq!(tok.round_trips() - n0, 1, "list = one page");
    assert!(listed.iter().any(|g| g.id.as_str() == s.id("template_id") && g.is_template));
    let pw = open_driver(&s.password_settings()).unwrap();
    pw.list_guests().await.unwrap();
    pw.list_guests().await.unwrap();
    assert_eq!((pw.grants(), pw.round_trips()), (1, 3), "one grant, then the cached token");
    s.control("expire-tokens", Some(json!({}))).await;
    pw.list_guests().await.unwrap();
    assert_eq!((pw.grants(), pw.round_trips()), (2, 6), "401 → one new grant → retried");
    let bad = Settings::from_json(
        &json!({"url": s.url, "username": "polyvisor", "password": "wrong-pass", "ca_file": s.ca_file}),
    )
    .unwrap();
    let e = open_driver(&bad).unwrap().list_guests().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
    assert!(!e.message().contains("wrong-pass"));
    let badtok =
        Settings::from_json(&json!({"url": s.url, "access_token": "nope-token", "ca_file": s.ca_file})).unwrap();
    assert_eq!(open_driver(&badtok).unwrap().list_guests().await.unwrap_err().kind(), ErrorKind::Unauthorized);

    let d = pw;
    // --- power rules on a fresh instance
    let vm = s.add("pw-vm", "stopped", json!([])).await;
    let e = d.power(&gid(&vm), PowerAction::Suspend).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "suspend of a stopped guest: {e}");
    let n0 = d.round_trips();
    let t = d.power(&gid(&vm), PowerAction::Start).await.unwrap();
    assert_eq!(d.round_trips() - n0, 2, "power = read + action");
    wait(&d, &t).await.unwrap();
    assert_eq!(d.get_guest(&gid(&vm)).await.unwrap().power, PowerState::PoweredOn);
    let n0 = d.round_trips();
    let t = d.power(&gid(&vm), PowerAction::Start).await.unwrap();
    assert_eq!(d.round_trips() - n0, 1, "start of a running guest: read only");
    wait(&d, &t).await.unwrap();
    wait(&d, &d.power(&gid(&vm), PowerAction::Suspend).await.unwrap()).await.unwrap();
    assert_eq!(d.get_guest(&gid(&vm)).await.unwrap().power, PowerState::Suspended);
    wait(&d, &d.power(&gid(&vm), PowerAction::Resume).await.unwrap()).await.unwrap();
    wait(&d, &d.power(&gid(&vm), PowerAction::Reboot).await.unwrap()).await.unwrap();
    let g = d.get_guest(&gid(&vm)).await.unwrap();
    assert_eq!(g.power, PowerState::PoweredOn);
    assert!(!g.ipv4_addresses().is_empty() && !g.mac_addresses().is_empty(), "{g:?}");
    wait(&d, &d.power(&gid(&vm), PowerAction::Stop).await.unwrap()).await.unwrap();
    assert_eq!(d.get_guest(&gid(&vm)).await.unwrap().power, PowerState::PoweredOff);

    // --- 404 / 409 / 429
    assert_eq!(d.get_guest(&gid("999999")).await.unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(d.get_guest(&gid("abc")).await.unwrap_err().kind(), ErrorKind::InvalidInput);
    s.fault("PUT", &format!("/api/instances/{vm}/start"), json!(409), 1, None).await;
    let e = d.power(&gid(&vm), PowerAction::Start).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert!(matches!(VmeError::of(&e), Some(VmeError::Conflict(_))));
    s.fault("GET", &format!("/api/instances/{vm}"), json!(429), 1, Some(1)).await;
    let t0 = Instant::now();
    let n0 = d.round_trips();
    d.get_guest(&gid(&vm)).await.unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(900), "429 was backed off (Retry-After: 1)");
    assert_eq!(d.round_trips() - n0, 2);
    s.fault("GET", &format!("/api/instances/{vm}"), json!(429), 3, Some(0)).await;
    let e = d.get_guest(&gid(&vm)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "429 that persists: {e}");
    assert!(e.retryable());

    // --- snapshots: create, replace, list, revert, delete
    let spec = SnapshotSpec { name: "v1".into(), include_memory: false, description: Some("first".into()) };
    let n0 = d.round_trips();
    let t = d.create_snapshot(&gid(&vm), &spec).await.unwrap();
    assert_eq!(d.round_trips() - n0, 2, "snapshot = list + create");
    wait(&d, &t).await.unwrap();
    wait(&d, &d.create_snapshot(&gid(&vm), &spec).await.unwrap()).await.unwrap();
    let spec2 = SnapshotSpec { name: "v2".into(), include_memory: false, description: None };
    wait(&d, &d.create_snapshot(&gid(&vm), &spec2).await.unwrap()).await.unwrap();
    let names: Vec<String> = d.list_snapshots(&gid(&vm)).await.unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["v1", "v2"], "replaced, not duplicated; oldest first");
    wait(&d, &d.revert_snapshot(&gid(&vm), "v1").await.unwrap()).await.unwrap();
    assert_eq!(d.revert_snapshot(&gid(&vm), "nope").await.unwrap_err().kind(), ErrorKind::NotFound);
    let bad = SnapshotSpec { name: "bad name/x".into(), include_memory: false, description: None };
    assert_eq!(d.create_snapshot(&gid(&vm), &bad).await.unwrap_err().kind(), ErrorKind::InvalidInput);
    wait(&d, &d.delete_snapshot(&gid(&vm), "v2").await.unwrap()).await.unwrap();
    wait(&d, &d.delete_snapshot(&gid(&vm), "v2").await.unwrap()).await.unwrap();
    assert!(!d.snapshot_exists(&gid(&vm), "v2").await.unwrap());

    // --- clone: stopped clone without the template flag; a retry adopts it
    let tpl = s.id("template_id");
    let spec =
        CloneSpec { source: gid(&tpl), name: "cl-1".into(), snapshot: None, mode: CloneMode::Full, start: false };
    let n0 = d.round_trips();
    let started = d.clone_guest(&spec).await.unwrap();
    assert_eq!(d.round_trips() - n0, 3, "clone = source + same-name listing + clone");
    let out = wait(&d, &started.task).await.unwrap();
    let clone = out.new_guest.unwrap();
    let g = d.get_guest(&clone).await.unwrap();
    assert_eq!(
        (g.name.as_str(), g.power, g.is_template, g.key.as_deref()),
        ("cl-1", PowerState::PoweredOff, false, None)
    );
    let again = d.clone_guest(&spec).await.unwrap();
    assert_eq!(again.new_guest.as_ref(), Some(&clone), "a retry adopts the earlier clone");
    assert_eq!(wait(&d, &again.task).await.unwrap().new_guest, Some(clone.clone()));
    let taken = CloneSpec { name: "web-01".into(), ..spec.clone() };
    assert_eq!(d.clone_guest(&taken).await.unwrap_err().kind(), ErrorKind::AlreadyExists);
    let from_snap = CloneSpec { snapshot: Some("v1".into()), ..spec.clone() };
    assert_eq!(d.clone_guest(&from_snap).await.unwrap_err().kind(), ErrorKind::Unsupported);

    // --- set_template flag round trip
    wait(&d, &d.set_template(&clone, true).await.unwrap()).await.unwrap();
    assert!(d.get_guest(&clone).await.unwrap().is_template);
    wait(&d, &d.set_template(&clone, false).await.unwrap()).await.unwrap();
    assert!(!d.get_guest(&clone).await.unwrap().is_template);

    // --- create: key on the guest, CPU/memory as asked, running with an address
    let cs = CreateSpec {
        name: "i-2-45-VM".into(),
        key: "i-2-45-VM".into(),
        source: CreateSource::Template { id: gid(&tpl), full: true },
        cpus: Some(1),
        memory_mb: Some(1024),
        disk_size_gb: None,
        storage: None,
        nics: vec![],
    };
    let out = wait(&d, &d.create_guest(&cs).await.unwrap().task).await.unwrap();
    let made = out.new_guest.unwrap();
    let g = d.get_guest(&made).await.unwrap();
    assert_eq!(
        (g.power, g.cpus, g.memory_mb, g.key.as_deref()),
        (PowerState::PoweredOn, Some(1), Some(1024), Some("i-2-45-VM"))
    );
    assert!(!g.ipv4_addresses().is_empty());
    let n0 = d.round_trips();
    assert_eq!(d.find_owned("i-2-45-VM", Some(&made)).await.unwrap().unwrap().id, made);
    assert_eq!(d.round_trips() - n0, 1, "find_owned at the hint: one read");
    assert_eq!(d.find_owned("i-2-45-VM", None).await.unwrap().unwrap().id, made);
    let again = d.create_guest(&cs).await.unwrap();
    assert_eq!(again.new_guest.as_ref(), Some(&made), "a create retry finds the guest by its key");

    // --- ownership: the foreign VM is never returned for a key
    assert!(d.find_owned("i-2-45-VM", Some(&gid(&foreign))).await.unwrap().unwrap().id == made);
    assert!(d.find_owned("i-9-9-VM", Some(&gid(&foreign))).await.unwrap().is_none());

    // --- delete leaves nothing: instance, its snapshots; twice is fine
    for id in [&made, &clone, &gid(&vm)] {
        let n0 = d.round_trips();
        let t = d.delete_guest(id).await.unwrap();
        assert_eq!(d.round_trips() - n0, 2, "delete = read + delete");
        wait(&d, &t).await.unwrap();
        assert_eq!(d.get_guest(id).await.unwrap_err().kind(), ErrorKind::NotFound);
        assert_eq!(d.list_snapshots(id).await.unwrap_err().kind(), ErrorKind::NotFound);
        wait(&d, &d.delete_guest(id).await.unwrap()).await.unwrap();
    }
    let left: Vec<String> = d.list_guests().await.unwrap().into_iter().map(|g| g.name).collect();
    assert_eq!(left, ["base-vm", "tpl-ubuntu", "web-01"], "nothing left behind");
    let dels: Vec<_> = s.requests().await.into_iter().filter(|(m, _)| m == "DELETE").collect();
    assert!(!dels.iter().any(|(_, p)| p == &format!("/api/instances/{foreign}")));
    assert_eq!(d.get_guest(&gid(&foreign)).await.unwrap(), foreign_before, "the foreign VM is untouched");

    // --- not one request or response outside the OpenAPI description
    assert_eq!(s.violations().await, Vec::<serde_json::Value>::new());
}

/// Power and delete tasks follow the instance history: a process the "cluster" fails is
/// reported with the history's reason at once (not after the power grace or the task's
/// max age); normal power and delete still succeed; one task poll is measured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_power_or_delete_process_is_reported_from_the_history() {
    let s = StandIn::start();
    let d = open_driver(&s.token_settings()).unwrap();
    let vm = s.add("hist-vm", "running", json!([])).await;

    // --- a stop the cluster fails: reported promptly with the reason; the guest still runs
    s.control("fail-process", Some(json!({"code": "stop", "error": "hypervisor: VM is locked by a backup job"}))).await;
    let t = d.power(&gid(&vm), PowerAction::Stop).await.unwrap();
    let n0 = d.round_trips();
    // Running, or already Failed on a busy machine (the stand-in's 0.2 s may have passed).
    let first = d.task_status(&t).await.unwrap();
    assert!(!matches!(first, polyvisor_core::TaskStatus::Completed(_)), "{first:?}");
    assert_eq!(d.round_trips() - n0, 2, "power poll = instance + history");
    let t0 = Instant::now();
    let e = wait(&d, &t).await.unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(10), "prompt, not a timeout: {:?}", t0.elapsed());
    assert_eq!(e.kind(), ErrorKind::Backend, "{e}");
    assert!(e.message().contains("VM is locked by a backup job"), "the history's reason: {e}");
    assert_eq!(d.get_guest(&gid(&vm)).await.unwrap().power, PowerState::PoweredOn);

    // --- the same stop again (the failed process is older than the new one): succeeds
    wait(&d, &d.power(&gid(&vm), PowerAction::Stop).await.unwrap()).await.unwrap();
    assert_eq!(d.get_guest(&gid(&vm)).await.unwrap().power, PowerState::PoweredOff);
    wait(&d, &d.power(&gid(&vm), PowerAction::Start).await.unwrap()).await.unwrap();
    wait(&d, &d.power(&gid(&vm), PowerAction::Reboot).await.unwrap()).await.unwrap();
    assert_eq!(d.get_guest(&gid(&vm)).await.unwrap().power, PowerState::PoweredOn);

    // --- a delete the cluster fails: the task fails clearly; the record stays
    s.control("fail-process", Some(json!({"code": "delete", "error": "cluster: volume vol-7 is in use"}))).await;
    let t = d.delete_guest(&gid(&vm)).await.unwrap();
    let t0 = Instant::now();
    let e = wait(&d, &t).await.unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(10), "prompt: {:?}", t0.elapsed());
    assert!(e.message().contains("removal of guest") && e.message().contains("vol-7 is in use"), "{e}");
    assert_eq!(d.get_guest(&gid(&vm)).await.unwrap().power, PowerState::PoweredOn, "not removed");

    // --- delete again: succeeds once the instance is gone; a poll after that is one read
    let t = d.delete_guest(&gid(&vm)).await.unwrap();
    wait(&d, &t).await.unwrap();
    assert_eq!(d.get_guest(&gid(&vm)).await.unwrap_err().kind(), ErrorKind::NotFound);
    let n0 = d.round_trips();
    assert!(matches!(d.task_status(&t).await.unwrap(), polyvisor_core::TaskStatus::Completed(_)));
    assert_eq!(d.round_trips() - n0, 1, "delete poll once gone = one read");

    let hist: Vec<_> = s.requests().await.into_iter().filter(|(_, p)| p.ends_with("/history")).collect();
    assert!(!hist.is_empty(), "the history was read");
    assert_eq!(s.violations().await, Vec::<serde_json::Value>::new());
}

#[tokio::test]
async fn a_server_that_stops_answering_is_bounded() {
    // Accepts TCP connections and never answers (not even the TLS handshake).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut socks = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            socks.push(sock);
        }
    });
    let s = Settings::from_json(&json!({"url": format!("https://{addr}"), "access_token": "t0k3n-value",
        "request_timeout": "2", "verify_tls": false}))
    .unwrap();
    let d = open_driver(&s).unwrap();
    let t0 = Instant::now();
    let e = d.list_guests().await.unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(8), "bounded: {:?}", t0.elapsed());
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(e.retryable());
    hold.abort();
}
