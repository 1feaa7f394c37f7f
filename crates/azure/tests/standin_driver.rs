//! Driver-level tests against a private ARM stand-in per test (see `common`): auth and
//! token refresh, power rules (deallocate vs powerOff), snapshots and clones, delete scope,
//! 409 conflicts, 429 with `Retry-After`, unbounded operations, a silent backend, and the
//! ARM calls per method (printed; README figures come from here).

mod common;

use common::{wait, StandIn, SECRET};
use polyvisor_azure::error::AzError;
use polyvisor_core::task::TaskToken;
use polyvisor_core::{
    CloneMode, CloneSpec, CreateSource, CreateSpec, Driver, ErrorKind, GuestId, NicSpec, PowerAction, PowerState,
    SnapshotSpec, TaskStatus,
};
use serde_json::json;
use std::time::{Duration, Instant};

fn g(id: &str) -> GuestId {
    GuestId::new(id)
}

fn snap(name: &str) -> SnapshotSpec {
    SnapshotSpec { name: name.into(), include_memory: false, description: None }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_secret_auth_caches_and_refreshes_tokens() {
    let s = StandIn::start();
    let d = s.driver();
    let a = d.arm();
    assert!(d.probe().await.unwrap().contains("rg-test"));
    assert_eq!(a.token_requests(), 1);
    d.list_guests().await.unwrap();
    assert_eq!(a.token_requests(), 1, "the token is cached per process");
    // The service revokes the token: one 401, a fresh token, the call succeeds.
    s.expire_tokens().await;
    assert_eq!(d.list_guests().await.unwrap().len(), 3);
    assert_eq!(a.token_requests(), 2);
    // A short-lived token is renewed before it expires (no 401 round trip).
    s.faults(json!({"token_ttl": 2})).await;
    s.expire_tokens().await;
    d.list_guests().await.unwrap();
    assert_eq!(a.token_requests(), 3);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let before = a.round_trips();
    d.list_guests().await.unwrap();
    assert_eq!(a.token_requests(), 4, "renewed at half its life");
    assert_eq!(a.round_trips() - before, 4, "token + 3 list calls, no 401 retry");

    // Wrong secret: Unauthorized, typed, and the secret never appears.
    let bad = s.driver_with(json!({"client_secret": "wrong-Secret-0815"}));
    let e = bad.probe().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
    assert!(matches!(AzError::of(&e), Some(AzError::SignIn { code }) if code == "invalid_client"), "{e:?}");
    assert!(!e.message().contains("wrong-Secret") && !e.message().contains(SECRET));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_rules_deallocate_by_default_power_off_when_configured() {
    let s = StandIn::start();
    let d = s.driver();
    let t = d.power(&g("pv-src"), PowerAction::Start).await.unwrap();
    wait(&d, &t).await.unwrap();
    assert_eq!(d.get_guest(&g("pv-src")).await.unwrap().power, PowerState::PoweredOn);
    // restart of a running VM works; stop means deallocate (no longer billed)
    wait(&d, &d.power(&g("pv-src"), PowerAction::Reboot).await.unwrap()).await.unwrap();
    wait(&d, &d.power(&g("pv-src"), PowerAction::Stop).await.unwrap()).await.unwrap();
    let x = d.get_guest(&g("pv-src")).await.unwrap();
    assert_eq!((x.power, x.raw_power_state.as_str()), (PowerState::PoweredOff, "deallocated"));
    // stop again is idempotent
    wait(&d, &d.power(&g("pv-src"), PowerAction::Stop).await.unwrap()).await.unwrap();
    // 409: restart of a deallocated VM is a typed conflict
    let e = d.power(&g("pv-src"), PowerAction::Reboot).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert!(matches!(AzError::of(&e), Some(AzError::Conflict { code, .. }) if code == "OperationNotAllowed"));
    // suspend is not offered
    assert_eq!(d.power(&g("pv-src"), PowerAction::Suspend).await.unwrap_err().kind(), ErrorKind::Unsupported);
    assert!(!d.capabilities().suspend);

    let p = s.driver_with(json!({"stop_mode": "power_off"}));
    wait(&p, &p.power(&g("pv-src"), PowerAction::Start).await.unwrap()).await.unwrap();
    wait(&p, &p.power(&g("pv-src"), PowerAction::Shutdown).await.unwrap()).await.unwrap();
    let x = p.get_guest(&g("pv-src")).await.unwrap();
    assert_eq!((x.power, x.raw_power_state.as_str()), (PowerState::PoweredOff, "stopped"));
    // missing VM: NotFound
    assert_eq!(d.power(&g("nope"), PowerAction::Start).await.unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(d.get_guest(&g("a/../b")).await.unwrap_err().kind(), ErrorKind::InvalidInput);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_clone_revert_and_delete_scope() {
    let s = StandIn::start();
    let d = s.driver();
    let a = d.arm();
    let before = s.resources().await;

    // snapshot of the source (a VM polyvisor did not create)
    wait(&d, &d.create_snapshot(&g("pv-src"), &snap("v1")).await.unwrap()).await.unwrap();
    assert!(d.snapshot_exists(&g("pv-src"), "v1").await.unwrap());
    // replacing an existing name makes a new snapshot
    wait(&d, &d.create_snapshot(&g("pv-src"), &snap("v1")).await.unwrap()).await.unwrap();
    let names: Vec<String> = d.list_snapshots(&g("pv-src")).await.unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["v1"]);

    // clone from the snapshot
    let n0 = a.round_trips();
    let started = d
        .clone_guest(&CloneSpec {
            source: g("pv-src"),
            name: "c1".into(),
            snapshot: Some("v1".into()),
            mode: CloneMode::Auto,
            start: true,
        })
        .await
        .unwrap();
    println!("ARM calls: clone_guest (call) = {}", a.round_trips() - n0);
    let n1 = a.round_trips();
    let out = wait(&d, &started.task).await.unwrap();
    println!("ARM calls: clone task to completion (polls incl.) = {}", a.round_trips() - n1);
    assert_eq!(out.new_guest, Some(g("c1")));
    let c1 = d.get_guest(&g("c1")).await.unwrap();
    assert_eq!(c1.power, PowerState::PoweredOn);
    assert_eq!(c1.nics.len(), 1);
    assert!(c1.nics[0].mac.starts_with("00:0D:3A:") && c1.nics[0].ipv4.len() == 1, "{c1:?}");
    // a second clone of that name from another source is refused (name owned by someone else)
    let e = d
        .clone_guest(&CloneSpec {
            source: g("pv-tpl"),
            name: "c1".into(),
            snapshot: None,
            mode: CloneMode::Full,
            start: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    // a clone named like a foreign VM is refused, the foreign VM untouched
    let e = d
        .clone_guest(&CloneSpec {
            source: g("pv-src"),
            name: "web-01".into(),
            snapshot: None,
            mode: CloneMode::Full,
            start: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    assert_eq!(d.get_guest(&g("web-01")).await.unwrap().power, PowerState::PoweredOn);

    // snapshot + revert on the clone (stopped), then delete the clone: its disks, NIC and
    // snapshots go; the source's own disk/NIC (not created by polyvisor) stay.
    wait(&d, &d.power(&g("c1"), PowerAction::Stop).await.unwrap()).await.unwrap();
    wait(&d, &d.create_snapshot(&g("c1"), &snap("s 1/x")).await.unwrap()).await.unwrap();
    wait(&d, &d.revert_snapshot(&g("c1"), "s 1/x").await.unwrap()).await.unwrap();
    assert_eq!(d.revert_snapshot(&g("c1"), "nope").await.unwrap_err().kind(), ErrorKind::NotFound);
    let n2 = a.round_trips();
    let t = d.delete_guest(&g("c1")).await.unwrap();
    println!("ARM calls: delete_guest (call) = {}", a.round_trips() - n2);
    wait(&d, &t).await.unwrap();
    // delete of the source snapshot; missing names are a completed no-op
    wait(&d, &d.delete_snapshot(&g("pv-src"), "v1").await.unwrap()).await.unwrap();
    wait(&d, &d.delete_snapshot(&g("pv-src"), "v1").await.unwrap()).await.unwrap();
    assert_eq!(s.resources().await, before, "everything polyvisor made is gone, nothing else");
    // delete of a missing guest is done
    wait(&d, &d.delete_guest(&g("c1")).await.unwrap()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_of_a_foreign_vm_keeps_its_disk_and_nic() {
    let s = StandIn::start();
    let d = s.driver();
    wait(&d, &d.delete_guest(&g("web-01")).await.unwrap()).await.unwrap();
    let left = s.resources().await;
    assert!(!left.iter().any(|r| r.ends_with("/virtualmachines/web-01")));
    assert!(left.iter().any(|r| r.ends_with("/disks/web-01-osdisk")), "{left:?}");
    assert!(left.iter().any(|r| r.ends_with("/networkinterfaces/web-01-nic")), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_by_key_converges_and_find_owned_never_returns_foreign_vms() {
    let s = StandIn::start();
    let d = s.driver();
    let spec = CreateSpec {
        name: "i-2-45-VM".into(),
        key: "i-2-45-VM".into(),
        source: CreateSource::Template { id: g("pv-tpl"), full: true },
        cpus: Some(2),
        memory_mb: Some(4096),
        disk_size_gb: None,
        storage: None,
        nics: vec![NicSpec::default()],
    };
    let st = d.create_guest(&spec).await.unwrap();
    // a retry while it is being made converges on the same guest
    let again = d.create_guest(&spec).await.unwrap();
    wait(&d, &st.task).await.unwrap();
    wait(&d, &again.task).await.unwrap();
    let x = d.get_guest(&g("i-2-45-VM")).await.unwrap();
    assert_eq!((x.cpus, x.memory_mb, x.power), (Some(2), Some(4096), PowerState::PoweredOn));
    assert_eq!(x.key.as_deref(), Some("i-2-45-VM"));
    assert_eq!(d.find_owned("i-2-45-VM", None).await.unwrap().map(|g| g.id), Some(g("i-2-45-VM")));
    // a VM of that name without our key is never adopted
    let foreign = CreateSpec { name: "web-01".into(), key: "i-2-46-VM".into(), ..spec.clone() };
    assert_eq!(d.create_guest(&foreign).await.unwrap_err().kind(), ErrorKind::AlreadyExists);
    assert!(d.find_owned("i-2-46-VM", Some(&g("web-01"))).await.unwrap().is_none());
    // VLAN tags cannot be honoured on Azure: refused, nothing made
    let vlan = CreateSpec {
        name: "v1".into(),
        key: "k-v1".into(),
        nics: vec![NicSpec { vlan: Some(12), ..Default::default() }],
        ..spec
    };
    assert_eq!(d.create_guest(&vlan).await.unwrap_err().kind(), ErrorKind::InvalidInput);
    assert!(d.get_guest(&g("v1")).await.unwrap_err().is_not_found());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_honours_retry_after_within_a_bound() {
    let s = StandIn::start();
    let d = s.driver();
    d.probe().await.unwrap();
    // two 429s with Retry-After: 1 → waited, then answered
    s.faults(json!({"throttle": 2, "retry_after": 1})).await;
    let t0 = Instant::now();
    d.get_guest(&g("pv-src")).await.unwrap();
    let took = t0.elapsed();
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(8), "{took:?}");
    // a Retry-After beyond the in-call budget is Unavailable at once, with the wait
    s.faults(json!({"throttle": 5, "retry_after": 120})).await;
    let t0 = Instant::now();
    let e = d.get_guest(&g("pv-src")).await.unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert!(matches!(AzError::of(&e), Some(AzError::Throttled { retry_after_secs: 120 })), "{e:?}");
    assert!(e.retryable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_that_never_completes_is_bounded() {
    let s = StandIn::start();
    let d = s.driver();
    s.faults(json!({"hang_ops": true})).await;
    let t = d.power(&g("pv-src"), PowerAction::Start).await.unwrap();
    assert!(matches!(d.task_status(&t).await.unwrap(), TaskStatus::Running));
    // the same task past its max age: failed "Task timed out", no backend call
    let mut tok = TaskToken::decode(&t).unwrap();
    tok.created -= tok.max_age + 1;
    let n = d.arm().round_trips();
    match d.task_status(&tok.encode()).await.unwrap() {
        TaskStatus::Failed(e) => assert_eq!(e.kind(), ErrorKind::Timeout),
        other => panic!("{other:?}"),
    }
    assert_eq!(d.arm().round_trips(), n);
    // a tampered token pointing the bearer token elsewhere is refused
    let evil =
        TaskToken::new("power", json!({"vm": "pv-src", "lro": {"url": "https://evil.example/x", "async": true}}));
    assert!(d.task_status(&evil.encode()).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_never_answers_is_bounded() {
    // accepts TCP and never speaks
    let l = tokio::net::TcpListener::bind("127.0.9.5:0").await.unwrap();
    let url = format!("https://{}", l.local_addr().unwrap());
    tokio::spawn(async move {
        let mut keep = Vec::new();
        while let Ok((c, _)) = l.accept().await {
            keep.push(c);
        }
    });
    let s = polyvisor_core::Settings::from_json(&json!({
        "tenant_id": "t", "client_id": "c", "client_secret": "x-secret", "subscription_id": "s1", "resource_group": "rg",
        "location": "westeurope", "authority_host": url, "resource_manager_endpoint": url, "request_timeout": 2,
    }))
    .unwrap();
    let d = polyvisor_azure::open_driver(&s).unwrap();
    let t0 = Instant::now();
    let e = d.list_guests().await.unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(6), "{:?}", t0.elapsed());
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arm_calls_per_method() {
    let s = StandIn::start();
    let d = s.driver();
    d.probe().await.unwrap(); // token
    let a = d.arm();
    let row = |name: &str, n: u64, max: u64| {
        println!("ARM calls: {name} = {n}");
        assert!(n <= max, "{name}: {n} > {max}");
    };
    let n = a.round_trips();
    d.list_guests().await.unwrap();
    row("list_guests", a.round_trips() - n, 3);
    let n = a.round_trips();
    d.get_guest(&g("pv-src")).await.unwrap();
    row("get_guest (1 NIC)", a.round_trips() - n, 3);
    let n = a.round_trips();
    let t = d.power(&g("pv-src"), PowerAction::Start).await.unwrap();
    row("power", a.round_trips() - n, 1);
    let n = a.round_trips();
    d.task_status(&t).await.unwrap();
    row("task_status (power)", a.round_trips() - n, 1);
    wait(&d, &t).await.unwrap();
    let n = a.round_trips();
    d.set_template(&g("pv-src"), false).await.unwrap();
    row("set_template (no change)", a.round_trips() - n, 2);
    let n = a.round_trips();
    d.snapshot_exists(&g("pv-src"), "x").await.unwrap();
    row("snapshot_exists", a.round_trips() - n, 2);
    let n = a.round_trips();
    d.find_owned("k", None).await.unwrap();
    row("find_owned (no hint)", a.round_trips() - n, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_from_a_gallery_image_version() {
    let s = StandIn::start();
    let before = s.resources().await;
    let d = s.driver_with(json!({"subnet_id": s.subnet}));
    let spec = |tpl: String, name: &str| CreateSpec {
        name: name.into(),
        key: format!("key-{name}"),
        source: CreateSource::Template { id: GuestId::new(tpl), full: true },
        cpus: None,
        memory_mb: None,
        disk_size_gb: None,
        storage: None,
        nics: vec![],
    };
    let st = d.create_guest(&spec(s.gallery_version("img-spec"), "from-img")).await.unwrap();
    assert_eq!(wait(&d, &st.task).await.unwrap().new_guest, Some(g("from-img")));
    let x = d.get_guest(&g("from-img")).await.unwrap();
    assert_eq!(
        (x.power, x.key.as_deref(), x.os.as_deref()),
        (PowerState::PoweredOn, Some("key-from-img"), Some("linux"))
    );
    // generalized images need OS provisioning: refused up front, nothing made
    let e = d.create_guest(&spec(s.gallery_version("img-gen"), "gen")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    let e = d.create_guest(&spec(s.gallery_version("nope"), "nope")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    // without a subnet setting there is no source VM to take one from
    let e = s.driver().create_guest(&spec(s.gallery_version("img-spec"), "x2")).await.unwrap_err();
    assert!(e.kind() == ErrorKind::InvalidInput && e.message().contains("'subnet_id'"), "{e}");
    wait(&d, &d.delete_guest(&g("from-img")).await.unwrap()).await.unwrap();
    assert_eq!(s.resources().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_are_gallery_image_definitions_and_versions() {
    let s = StandIn::start();
    let before = s.resources().await;
    let d = s.driver_with(json!({"gallery": "pvtpl"}));
    let a = d.arm();
    let gallery = format!("{}/providers/Microsoft.Compute/galleries/pvtpl", d.arm().cfg().group_path());
    let is_tpl = |list: &[polyvisor_core::GuestSummary], n: &str| list.iter().any(|x| x.name == n && x.is_template);

    // template = an image definition (gallery made when missing), tagged; the VM is untouched
    let n0 = a.round_trips();
    let t = d.set_template(&g("pv-src"), true).await.unwrap();
    wait(&d, &t).await.unwrap();
    println!("ARM calls: set_template (new gallery + image, polls incl.) = {}", a.round_trips() - n0);
    assert!(is_tpl(&d.list_guests().await.unwrap(), "pv-src"));
    assert!(d.get_guest(&g("pv-src")).await.unwrap().is_template);
    let img = a.get(&format!("{gallery}/images/pv-src?api-version=2023-07-03"), "image").await.unwrap();
    assert_eq!(img.pointer("/properties/osState").and_then(|v| v.as_str()), Some("Specialized"));
    assert_eq!(img.pointer("/tags/polyvisor-template").and_then(|v| v.as_str()), Some("true"));
    let vm = a
        .get(
            &format!(
                "{}/providers/Microsoft.Compute/virtualMachines/pv-src?api-version=2024-07-01",
                a.cfg().group_path()
            ),
            "vm",
        )
        .await
        .unwrap();
    assert!(vm.pointer("/tags/polyvisor-template").is_none(), "no template tag on the VM: {vm}");

    // versions = image versions 1.0.1, 1.0.2 of the VM's OS disk, named by tag
    let n0 = a.round_trips();
    wait(&d, &d.create_snapshot(&g("pv-src"), &snap("RAS_TEMPLATE_VERSION_1")).await.unwrap()).await.unwrap();
    println!("ARM calls: create template version (polls incl.) = {}", a.round_trips() - n0);
    wait(&d, &d.create_snapshot(&g("pv-src"), &snap("RAS_TEMPLATE_VERSION_2")).await.unwrap()).await.unwrap();
    let names: Vec<String> = d.list_snapshots(&g("pv-src")).await.unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["RAS_TEMPLATE_VERSION_1", "RAS_TEMPLATE_VERSION_2"]);
    let v2 = a.get(&format!("{gallery}/images/pv-src/versions/1.0.2?api-version=2023-07-03"), "v").await.unwrap();
    assert_eq!(v2.pointer("/tags/polyvisor-snapshot").and_then(|v| v.as_str()), Some("RAS_TEMPLATE_VERSION_2"));
    assert!(v2
        .pointer("/properties/storageProfile/osDiskImage/source/id")
        .and_then(|v| v.as_str())
        .unwrap()
        .ends_with("/disks/pv-src-osdisk"));
    assert!(d.snapshot_exists(&g("pv-src"), "RAS_TEMPLATE_VERSION_1").await.unwrap());
    assert!(!d.snapshot_exists(&g("pv-src"), "RAS_TEMPLATE_VERSION_9").await.unwrap());
    // a version of an existing name replaces it: 1.0.2 goes, 1.0.3 holds the name
    wait(&d, &d.create_snapshot(&g("pv-src"), &snap("RAS_TEMPLATE_VERSION_2")).await.unwrap()).await.unwrap();
    let names: Vec<String> = d.list_snapshots(&g("pv-src")).await.unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["RAS_TEMPLATE_VERSION_1", "RAS_TEMPLATE_VERSION_2"]);
    assert!(a
        .get_opt(&format!("{gallery}/images/pv-src/versions/1.0.2?api-version=2023-07-03"), "v")
        .await
        .unwrap()
        .is_none());
    let v3 = a.get(&format!("{gallery}/images/pv-src/versions/1.0.3?api-version=2023-07-03"), "v").await.unwrap();
    assert_eq!(v3.pointer("/tags/polyvisor-snapshot").and_then(|v| v.as_str()), Some("RAS_TEMPLATE_VERSION_2"));

    // clone from a version: the OS disk is made FromImage (galleryImageReference)
    let st = d
        .clone_guest(&CloneSpec {
            source: g("pv-src"),
            name: "from-v1".into(),
            snapshot: Some("RAS_TEMPLATE_VERSION_1".into()),
            mode: CloneMode::Full,
            start: false,
        })
        .await
        .unwrap();
    assert_eq!(wait(&d, &st.task).await.unwrap().new_guest, Some(g("from-v1")));
    let disk = a
        .get(
            &format!(
                "{}/providers/Microsoft.Compute/disks/from-v1-osdisk?api-version=2024-03-02",
                a.cfg().group_path()
            ),
            "disk",
        )
        .await
        .unwrap();
    assert_eq!(disk.pointer("/properties/creationData/createOption").and_then(|v| v.as_str()), Some("FromImage"));
    assert!(disk
        .pointer("/properties/creationData/galleryImageReference/id")
        .and_then(|v| v.as_str())
        .unwrap()
        .ends_with("/images/pv-src/versions/1.0.1"));
    assert_eq!(d.get_guest(&g("from-v1")).await.unwrap().power, PowerState::PoweredOff);

    // revert of a template to a version: a new disk FromImage, swapped in
    wait(&d, &d.revert_snapshot(&g("pv-src"), "RAS_TEMPLATE_VERSION_1").await.unwrap()).await.unwrap();

    // un-flagging keeps the definition and its versions; flagging again finds them
    wait(&d, &d.set_template(&g("pv-src"), false).await.unwrap()).await.unwrap();
    assert!(!is_tpl(&d.list_guests().await.unwrap(), "pv-src"));
    assert!(d.snapshot_exists(&g("pv-src"), "RAS_TEMPLATE_VERSION_2").await.unwrap());
    wait(&d, &d.set_template(&g("pv-src"), true).await.unwrap()).await.unwrap();
    wait(&d, &d.delete_snapshot(&g("pv-src"), "RAS_TEMPLATE_VERSION_2").await.unwrap()).await.unwrap();
    let names: Vec<String> = d.list_snapshots(&g("pv-src")).await.unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["RAS_TEMPLATE_VERSION_1"]);

    // an image definition polyvisor did not make is never taken over
    let e = s.driver_with(json!({"gallery": "g1"})).set_template(&g("web-01"), true).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");

    // a template polyvisor created: deleting it removes its versions and definition too
    wait(&d, &d.set_template(&g("from-v1"), true).await.unwrap()).await.unwrap();
    wait(&d, &d.create_snapshot(&g("from-v1"), &snap("RAS_TEMPLATE_VERSION_1")).await.unwrap()).await.unwrap();
    wait(&d, &d.delete_guest(&g("from-v1")).await.unwrap()).await.unwrap();
    wait(&d, &d.delete_snapshot(&g("pv-src"), "RAS_TEMPLATE_VERSION_1").await.unwrap()).await.unwrap();
    // pv-src's definition (pv-src is not polyvisor's VM) and the gallery stay; its reverted
    // disk replaced the original, which is kept (polyvisor did not make it).
    let after = s.resources().await;
    let made: Vec<&String> = after.iter().filter(|r| !before.contains(r)).collect();
    assert!(
        made.iter().all(|r| r.ends_with("/galleries/pvtpl")
            || r.ends_with("/images/pv-src")
            || r.contains("/disks/pv-src-osdisk-")),
        "{made:?}"
    );
    assert!(!after.iter().any(|r| r.contains("from-v1")), "{after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_credential_signs_in_with_a_verified_assertion() {
    let s = StandIn::start();
    // the registered certificate: the stand-in verifies the RS256 signature, x5t#S256,
    // audience, issuer/subject and lifetime before it issues a token
    let d = polyvisor_azure::open_driver(&s.cert_settings("client")).unwrap();
    assert!(d.probe().await.unwrap().contains("rg-test"));
    assert_eq!(d.arm().token_requests(), 1);
    assert_eq!(s.stats().await["assertions"], 1, "signed in by assertion, not by secret");
    // refreshed after a revocation, with a fresh assertion
    s.expire_tokens().await;
    d.list_guests().await.unwrap();
    assert_eq!(s.stats().await["assertions"], 2);
    // a certificate that is not registered: refused by the token endpoint, typed
    let rogue = polyvisor_azure::open_driver(&s.cert_settings("rogue")).unwrap();
    let e = rogue.probe().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
    assert!(matches!(AzError::of(&e), Some(AzError::SignIn { code }) if code == "invalid_client"), "{e:?}");
    // an unreadable file: a clear input error naming the key, never the content
    let mut v = s.cert_settings("client");
    v.set("client_certificate_path", "/nonexistent/sp.pem");
    let e = polyvisor_azure::open_driver(&v).unwrap().probe().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.message().contains("'client_certificate_path'"), "{e}");
}
