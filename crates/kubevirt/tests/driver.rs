//! Driver-level tests against the KubeVirt stand-in of the backend contract
//! (`scripts/ci/start-kubevirt.sh` → `/run/polyvisor-test/kubevirt.json`). Every test checks
//! that nothing it sent was rejected by KubeVirt's schema (the stand-in's violations file).

use polyvisor_core::task::wait;
use polyvisor_core::{
    CloneMode, CloneSpec, CreateSource, CreateSpec, Driver, ErrorKind, GuestId, NicSpec, PowerAction, PowerState,
    Settings, SnapshotSpec, TaskId,
};
use polyvisor_kubevirt::{open_driver, KubeVirt};
use polyvisor_test_support::backend::Backend;
use std::time::Duration;

/// One test at a time: they share the stand-in's namespace.
static ONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn backend() -> Backend {
    Backend::load("kubevirt").unwrap_or_else(|e| panic!("{e}"))
}

fn settings(b: &Backend, extra: serde_json::Value) -> Settings {
    let mut v = serde_json::Value::Object(b.settings.clone());
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    Settings::from_json(&v).unwrap()
}

fn driver(b: &Backend) -> KubeVirt {
    open_driver(&settings(b, serde_json::json!({}))).unwrap()
}

fn violations_file() -> std::path::PathBuf {
    polyvisor_test_support::backend::run_dir().join("kubevirt/violations.jsonl")
}

fn violations() -> usize {
    std::fs::read_to_string(violations_file()).map(|t| t.lines().count()).unwrap_or(0)
}

async fn done(d: &KubeVirt, t: &TaskId) -> polyvisor_core::TaskOutput {
    wait(d, t, Duration::from_secs(120), Duration::from_millis(100)).await.unwrap()
}

fn uniq(tag: &str) -> String {
    format!("pvt-{tag}-{}", std::process::id() % 100_000)
}

async fn cleanup(d: &KubeVirt, name: &str) {
    if let Ok(t) = d.delete_guest(&GuestId::new(name)).await {
        let _ = wait(d, &t, Duration::from_secs(60), Duration::from_millis(100)).await;
    }
}

async fn clone_of(d: &KubeVirt, src: &str, name: &str, snapshot: Option<&str>, start: bool) -> GuestId {
    let spec = CloneSpec {
        source: GuestId::new(src),
        name: name.into(),
        snapshot: snapshot.map(str::to_string),
        mode: CloneMode::Full,
        start,
    };
    let started = d.clone_guest(&spec).await.unwrap();
    let out = done(d, &started.task).await;
    out.new_guest.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_cycle_with_round_trips() {
    let _one = ONE.lock().await;
    let b = backend();
    let before = violations();
    let d = driver(&b);
    let name = uniq("pwr");
    cleanup(&d, &name).await;
    let id = clone_of(&d, &b.source_guest, &name, None, false).await;
    let g = d.get_guest(&id).await.unwrap();
    assert_eq!((g.power, g.is_template, g.name.as_str()), (PowerState::PoweredOff, false, name.as_str()));

    let calls = d.api_calls();
    let t = d.power(&id, PowerAction::Start).await.unwrap();
    assert_eq!(d.api_calls() - calls, 3, "start = GET VM + GET VMI + PUT start");
    done(&d, &t).await;
    let g = d.get_guest(&id).await.unwrap();
    assert_eq!(g.power, PowerState::PoweredOn);
    assert!(!g.ipv4_addresses().is_empty() && !g.mac_addresses().is_empty(), "{g:?}");

    let calls = d.api_calls();
    d.list_guests().await.unwrap();
    assert_eq!(d.api_calls() - calls, 2, "list = LIST VMs + LIST VMIs");
    let calls = d.api_calls();
    d.get_guest(&id).await.unwrap();
    assert_eq!(d.api_calls() - calls, 2, "get = GET VM + GET VMI");

    // Start again: idempotent, no subresource call.
    let calls = d.api_calls();
    done(&d, &d.power(&id, PowerAction::Start).await.unwrap()).await;
    assert!(d.api_calls() - calls >= 2);

    done(&d, &d.power(&id, PowerAction::Suspend).await.unwrap()).await;
    assert_eq!(d.get_guest(&id).await.unwrap().power, PowerState::Suspended);
    done(&d, &d.power(&id, PowerAction::Resume).await.unwrap()).await;
    assert_eq!(d.get_guest(&id).await.unwrap().power, PowerState::PoweredOn);
    done(&d, &d.power(&id, PowerAction::Reboot).await.unwrap()).await;
    done(&d, &d.power(&id, PowerAction::Reset).await.unwrap()).await;
    assert_eq!(d.get_guest(&id).await.unwrap().power, PowerState::PoweredOn);
    match d.console(&id).await.unwrap() {
        polyvisor_core::Console::Url { url } => {
            use polyvisor_core::ExposeSecret;
            assert!(url.expose_secret().ends_with(&format!("/virtualmachineinstances/{name}/vnc")));
        }
        other => panic!("{other:?}"),
    }
    done(&d, &d.power(&id, PowerAction::Shutdown).await.unwrap()).await;
    assert_eq!(d.get_guest(&id).await.unwrap().power, PowerState::PoweredOff);
    // Stop on a stopped guest: success without a subresource call.
    done(&d, &d.power(&id, PowerAction::Stop).await.unwrap()).await;
    assert_eq!(d.console(&id).await.unwrap_err().kind(), ErrorKind::Conflict);

    // The documented fallback path: runStrategy patches.
    let rs = open_driver(&settings(&b, serde_json::json!({"power_via": "run_strategy"}))).unwrap();
    done(&rs, &rs.power(&id, PowerAction::Start).await.unwrap()).await;
    assert_eq!(rs.get_guest(&id).await.unwrap().power, PowerState::PoweredOn);
    assert_eq!(rs.power(&id, PowerAction::Suspend).await.unwrap_err().kind(), ErrorKind::Unsupported);
    done(&rs, &rs.power(&id, PowerAction::Stop).await.unwrap()).await;
    assert_eq!(rs.get_guest(&id).await.unwrap().power, PowerState::PoweredOff);

    cleanup(&d, &name).await;
    assert_eq!(violations(), before, "a request was rejected by the KubeVirt schema");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_flag_snapshot_restore_clone_and_delete_leaves_nothing() {
    let _one = ONE.lock().await;
    let b = backend();
    let before = violations();
    let d = driver(&b);
    let name = uniq("tpl");
    let child = uniq("kid");
    cleanup(&d, &child).await;
    cleanup(&d, &name).await;
    let id = clone_of(&d, &b.source_guest, &name, None, false).await;

    // Template flag round trip, idempotent.
    for flag in [true, true, false, true] {
        done(&d, &d.set_template(&id, flag).await.unwrap()).await;
        assert_eq!(d.get_guest(&id).await.unwrap().is_template, flag);
    }

    // Snapshots with names Kubernetes would refuse as object names.
    let snap = SnapshotSpec { name: "Version 1".into(), include_memory: false, description: Some("first".into()) };
    done(&d, &d.create_snapshot(&id, &snap).await.unwrap()).await;
    assert!(d.snapshot_exists(&id, "Version 1").await.unwrap());
    // Replace: same name again.
    done(&d, &d.create_snapshot(&id, &snap).await.unwrap()).await;
    let list = d.list_snapshots(&id).await.unwrap();
    assert_eq!(list.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["Version 1"]);
    assert_eq!(list[0].description.as_deref(), Some("first"));
    let mem = SnapshotSpec { include_memory: true, ..snap.clone() };
    assert_eq!(d.create_snapshot(&id, &mem).await.unwrap_err().kind(), ErrorKind::Unsupported);

    // Revert.
    done(&d, &d.revert_snapshot(&id, "Version 1").await.unwrap()).await;
    assert_eq!(d.revert_snapshot(&id, "nope").await.unwrap_err().kind(), ErrorKind::NotFound);

    // Clone from the snapshot: a new guest, not a template, no key, started with an IP.
    let kid = clone_of(&d, id.as_str(), &child, Some("Version 1"), true).await;
    let g = d.get_guest(&kid).await.unwrap();
    assert!(!g.is_template && g.key.is_none() && g.power == PowerState::PoweredOn, "{g:?}");
    assert!(!g.ipv4_addresses().is_empty());
    // A finished clone is never adopted by name (only a key proves ownership).
    let again = CloneSpec {
        source: id.clone(),
        name: child.clone(),
        snapshot: Some("Version 1".into()),
        mode: CloneMode::Full,
        start: true,
    };
    assert_eq!(d.clone_guest(&again).await.unwrap_err().kind(), ErrorKind::AlreadyExists);
    // A clone to an existing name is refused (409 AlreadyExists), the existing VM untouched.
    let spec =
        CloneSpec { source: id.clone(), name: "web-01".into(), snapshot: None, mode: CloneMode::Full, start: false };
    assert_eq!(d.clone_guest(&spec).await.unwrap_err().kind(), ErrorKind::AlreadyExists);

    // Delete: the snapshot goes with its VM; nothing of either is left.
    done(&d, &d.delete_snapshot(&id, "Version 1").await.unwrap()).await;
    assert!(!d.snapshot_exists(&id, "Version 1").await.unwrap());
    done(&d, &d.delete_snapshot(&id, "Version 1").await.unwrap()).await;
    done(&d, &d.create_snapshot(&id, &snap).await.unwrap()).await;
    for g in [&kid, &id] {
        done(&d, &d.delete_guest(g).await.unwrap()).await;
        assert_eq!(d.get_guest(g).await.unwrap_err().kind(), ErrorKind::NotFound);
        done(&d, &d.delete_guest(g).await.unwrap()).await;
    }
    let raw = raw_list(&b, "snapshot.kubevirt.io/v1beta1", "virtualmachinesnapshots");
    assert!(!raw.contains(&name), "a snapshot of the deleted VM is left: {raw}");
    for plural in ["virtualmachinerestores", "virtualmachinesnapshotcontents"] {
        let raw = raw_list(&b, "snapshot.kubevirt.io/v1beta1", plural);
        assert!(!raw.contains(&name), "{plural} left: {raw}");
    }
    let raw = raw_list(&b, "clone.kubevirt.io/v1beta1", "virtualmachineclones");
    assert!(!raw.contains(&name) && !raw.contains(&child), "clones left: {raw}");
    assert!(d.list_guests().await.unwrap().iter().any(|g| g.id.as_str() == "web-01"));
    assert_eq!(violations(), before, "a request was rejected by the KubeVirt schema");
}

/// The names of a resource's objects as the stand-in lists them (read outside the driver).
fn raw_list(b: &Backend, gv: &str, plural: &str) -> String {
    let s = &b.settings;
    let url =
        format!("{}/apis/{gv}/namespaces/{}/{plural}", s["server"].as_str().unwrap(), s["namespace"].as_str().unwrap());
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import json,ssl,sys,urllib.request as u; c=ssl.create_default_context(cafile=sys.argv[2]); \
             r=u.Request(sys.argv[1],headers={'Authorization':'Bearer '+sys.argv[3]}); \
             print(json.dumps([i['metadata']['name'] for i in json.load(u.urlopen(r,context=c,timeout=10))['items']]))",
        )
        .arg(&url)
        .arg(s["ca_file"].as_str().unwrap())
        .arg(s["token"].as_str().unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_by_key_is_idempotent_and_owned() {
    let _one = ONE.lock().await;
    let b = backend();
    let before = violations();
    let d = driver(&b);
    let name = uniq("cs");
    let key = format!("i-2-{}-VM", std::process::id() % 100_000);
    cleanup(&d, &name).await;
    let spec = CreateSpec {
        name: name.clone(),
        key: key.clone(),
        source: CreateSource::Template { id: GuestId::new(&b.template_id), full: true },
        cpus: Some(3),
        memory_mb: Some(1536),
        disk_size_gb: None,
        storage: None,
        nics: vec![NicSpec { mac: Some("02:AB:CD:00:00:01".into()), vlan: None, network: None }],
    };
    let started = d.create_guest(&spec).await.unwrap();
    let out = done(&d, &started.task).await;
    let id = out.new_guest.unwrap();
    let g = d.get_guest(&id).await.unwrap();
    assert_eq!((g.cpus, g.memory_mb, g.key.as_deref()), (Some(3), Some(1536), Some(key.as_str())));
    assert_eq!(g.mac_addresses(), ["02:AB:CD:00:00:01"]);
    assert_eq!(g.power, PowerState::PoweredOn);
    // A retry finds it by key; find_owned answers it, a name match alone never does.
    let again = d.create_guest(&spec).await.unwrap();
    assert_eq!(done(&d, &again.task).await.new_guest.unwrap(), id);
    assert_eq!(d.find_owned(&key, None).await.unwrap().unwrap().id, id);
    assert!(d.find_owned(&key, Some(&GuestId::new("web-01"))).await.unwrap().is_some());
    assert!(d.find_owned("i-9-9-VM", Some(&GuestId::new("web-01"))).await.unwrap().is_none());
    // Another key with the same name: AlreadyExists.
    let other = CreateSpec { key: "i-7-7-VM".into(), ..spec.clone() };
    assert_eq!(d.create_guest(&other).await.unwrap_err().kind(), ErrorKind::AlreadyExists);
    let iso = CreateSpec { source: CreateSource::Iso { path: "x.iso".into(), os_type: None }, ..spec.clone() };
    assert_eq!(d.create_guest(&iso).await.unwrap_err().kind(), ErrorKind::Unsupported);
    cleanup(&d, &name).await;
    assert!(d.find_owned(&key, None).await.unwrap().is_none());
    assert_eq!(violations(), before, "a request was rejected by the KubeVirt schema");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_map_to_clear_kinds_and_namespaces_are_isolated() {
    let b = backend();
    let d = driver(&b);
    // 404.
    assert_eq!(d.get_guest(&GuestId::new("no-such-vm")).await.unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(d.get_guest(&GuestId::new("Not A Name")).await.unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(d.power(&GuestId::new("no-such-vm"), PowerAction::Start).await.unwrap_err().kind(), ErrorKind::NotFound);
    // The other namespace's VM is invisible from ours.
    assert!(!d.list_guests().await.unwrap().iter().any(|g| g.id.as_str() == "not-ours"));
    assert_eq!(d.get_guest(&GuestId::new("not-ours")).await.unwrap_err().kind(), ErrorKind::NotFound);
    // 403: a namespace the token may not use.
    let other = open_driver(&settings(&b, serde_json::json!({"namespace": "other-team"}))).unwrap();
    let e = other.list_guests().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
    assert!(e.message().contains("forbidden"), "{e}");
    // 401: a wrong token; the token never appears in the error.
    let bad = open_driver(&settings(&b, serde_json::json!({"token": "wrong-token-123"}))).unwrap();
    let e = bad.probe().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized);
    assert!(!e.message().contains("wrong-token-123"));
    // 409 Conflict: a subresource refusing the state (resume of a stopped guest).
    assert_eq!(
        d.power(&GuestId::new(&b.source_guest), PowerAction::Resume).await.unwrap_err().kind(),
        ErrorKind::Conflict
    );
    // TLS: the wrong CA is refused and not retried as a transient failure.
    let no_ca = open_driver(&settings(&b, serde_json::json!({"ca_file": null}))).unwrap();
    assert_eq!(no_ca.probe().await.unwrap_err().kind(), ErrorKind::Unauthorized);
    // The fingerprint pin works instead of a CA file.
    let fp = serde_json::json!({"ca_file": null, "fingerprint": tls_fingerprint()});
    assert!(open_driver(&settings(&b, fp)).unwrap().probe().await.unwrap().contains("namespace polyvisor"));
    // Plain http is refused unless the lab opt-in is set.
    let http = serde_json::json!({"server": "http://127.0.9.3:6443"});
    assert_eq!(open_driver(&settings(&b, http)).err().unwrap().kind(), ErrorKind::InvalidInput);
}

fn tls_fingerprint() -> String {
    let text = std::fs::read_to_string(polyvisor_test_support::backend::run_dir().join("kubevirt.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["tls"]["fingerprint"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_that_stops_answering_is_bounded() {
    // A listener that accepts and never answers.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let _keep = std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming().take(8) {
            held.push(s);
        }
        std::thread::sleep(Duration::from_secs(60));
    });
    let s = Settings::from_json(&serde_json::json!({
        "server": format!("https://{addr}"), "token": "t", "verify_tls": false, "request_timeout": 2
    }))
    .unwrap();
    let d = open_driver(&s).unwrap();
    let t0 = std::time::Instant::now();
    let e = d.list_guests().await.unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(e.retryable());
}

/// A bounded watch (`GET …/virtualmachines?watch=true`, one request, the server streams one
/// JSON event per line) that records the distinct `printableStatus` values of VM `name`
/// until it reads `until` or `limit` passes. `ready` fires once the stream is open and has
/// replayed the VM's current state (kmock replays current objects as `ADDED`; a real API
/// server does the same without `resourceVersion`).
async fn watch_status(
    b: Backend,
    name: String,
    until: &'static str,
    limit: Duration,
    ready: tokio::sync::oneshot::Sender<()>,
) -> Vec<String> {
    let s = &b.settings;
    let ca = std::fs::read(s["ca_file"].as_str().unwrap()).unwrap();
    let http =
        reqwest::Client::builder().add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap()).build().unwrap();
    let url = format!(
        "{}/apis/kubevirt.io/v1/namespaces/{}/virtualmachines?watch=true",
        s["server"].as_str().unwrap(),
        s["namespace"].as_str().unwrap()
    );
    let deadline = tokio::time::Instant::now() + limit;
    let mut resp = http.get(url).bearer_auth(s["token"].as_str().unwrap()).send().await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let (mut seen, mut buf, mut ready) = (Vec::<String>::new(), Vec::<u8>::new(), Some(ready));
    while let Ok(Ok(Some(chunk))) = tokio::time::timeout_at(deadline, resp.chunk()).await {
        buf.extend_from_slice(&chunk);
        while let Some(nl) = buf.iter().position(|c| *c == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            let Ok(ev) = serde_json::from_slice::<serde_json::Value>(&line) else { continue };
            if ev["object"]["metadata"]["name"] != name.as_str() {
                continue;
            }
            let st = ev["object"]["status"]["printableStatus"].as_str().unwrap_or("Stopped").to_string();
            if seen.last() != Some(&st) {
                seen.push(st.clone());
            }
            if let Some(r) = ready.take() {
                let _ = r.send(());
            }
            if st == until {
                return seen;
            }
        }
    }
    seen
}

fn is_subsequence(part: &[String], whole: &[String]) -> bool {
    let mut it = whole.iter();
    part.iter().all(|p| it.any(|w| w == p))
}

/// The poll path: the driver's task polled until done, the guest's raw state read after
/// each poll; returns the distinct states and the API round trips it took.
async fn poll_status(d: &KubeVirt, id: &GuestId, t: &TaskId) -> (Vec<String>, u64) {
    let calls = d.api_calls();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut seen: Vec<String> = Vec::new();
    loop {
        let st = d.task_status(t).await.unwrap();
        let raw = d.get_guest(id).await.unwrap().raw_power_state;
        if seen.last() != Some(&raw) {
            seen.push(raw);
        }
        match st {
            polyvisor_core::TaskStatus::Running => {}
            polyvisor_core::TaskStatus::Completed(_) => return (seen, d.api_calls() - calls),
            polyvisor_core::TaskStatus::Failed(e) => panic!("{e}"),
        }
        assert!(std::time::Instant::now() < deadline, "task still running: {seen:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_and_poll_agree_on_the_power_transitions() {
    // The driver keeps no in-process wait (every wait is a task the front polls), so this
    // proves the poll path against a watch of the same object: the states the poll saw are,
    // in order, among those the watch streamed, both end in the same state, and the watch
    // needs one round trip where the poll needs several.
    let _one = ONE.lock().await;
    let b = backend();
    let before = violations();
    let d = driver(&b);
    let name = uniq("watch");
    cleanup(&d, &name).await;
    let id = clone_of(&d, &b.source_guest, &name, None, false).await;
    for (action, until) in [(PowerAction::Start, "Running"), (PowerAction::Stop, "Stopped")] {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let watch = tokio::spawn(watch_status(b.clone(), name.clone(), until, Duration::from_secs(120), tx));
        tokio::time::timeout(Duration::from_secs(30), rx).await.expect("the watch opened").unwrap();
        let t = d.power(&id, action).await.unwrap();
        let (polled, poll_calls) = poll_status(&d, &id, &t).await;
        let watched = watch.await.unwrap();
        assert_eq!(watched.last().map(String::as_str), Some(until), "{action:?}: watch saw {watched:?}");
        assert_eq!(polled.last(), watched.last(), "{action:?}: poll {polled:?} vs watch {watched:?}");
        assert!(is_subsequence(&polled, &watched), "{action:?}: poll {polled:?} vs watch {watched:?}");
        assert!(watched.len() >= 3, "{action:?}: the watch sees the intermediate state too: {watched:?}");
        assert!(poll_calls > 1, "{action:?}: one watch request versus {poll_calls} poll round trips");
        eprintln!("{action:?}: watch {watched:?} in 1 request; poll {polled:?} in {poll_calls} round trips");
    }
    cleanup(&d, &name).await;
    assert_eq!(violations(), before, "schema violations");
}
