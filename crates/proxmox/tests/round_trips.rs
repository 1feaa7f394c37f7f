//! API round trips per operation, pinned with wiremock expectations (exact request counts),
//! plus the retry and re-login layers and error bodies of older PVE versions.
#![allow(missing_docs)]

use polyvisor_core::*;
use polyvisor_http::testing::TlsFront;
use polyvisor_proxmox::open_driver;
use serde_json::json;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const UPID: &str = "UPID:pve1:000003E8:00001B58:6B0F36F1:qmstart:100:root@pam!ci:";

fn ok(data: serde_json::Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({ "data": data }))
}

fn resources() -> ResponseTemplate {
    ok(json!([{"id":"qemu/100","type":"qemu","node":"pve1","vmid":100,"name":"web","status":"running","template":0}]))
}

/// The driver only speaks https: wiremock sits behind a TLS front whose certificate is pinned.
async fn driver(server: &MockServer) -> (polyvisor_proxmox::ProxmoxDriver, TlsFront) {
    driver_with(server, json!({})).await
}

async fn driver_with(server: &MockServer, extra: serde_json::Value) -> (polyvisor_proxmox::ProxmoxDriver, TlsFront) {
    let front = TlsFront::start(*server.address()).await.unwrap();
    let mut s = json!({"host": front.url(), "username": "root@pam", "token_name": "ci", "token_secret": "S3CRET",
                       "fingerprint": TlsFront::fingerprint()});
    for (k, v) in extra.as_object().unwrap() {
        s[k] = v.clone();
    }
    (open_driver(&Settings::from_json(&s).unwrap()).unwrap(), front)
}

#[tokio::test]
async fn get_is_resolve_plus_three_then_three() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api2/json/cluster/resources"))
        .and(query_param("type", "vm"))
        .and(header("authorization", "PVEAPIToken=root@pam!ci=S3CRET"))
        .respond_with(resources())
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api2/json/nodes/pve1/qemu/100/status/current"))
        .respond_with(ok(json!({"status":"running","qmpstatus":"running","name":"web"})))
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api2/json/nodes/pve1/qemu/100/config"))
        .respond_with(ok(json!({"name":"web","agent":"1","net0":"virtio=BC:24:11:AA:BB:CC,bridge=vmbr0"})))
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api2/json/nodes/pve1/qemu/100/agent/network-get-interfaces"))
        .respond_with(
            ResponseTemplate::new(500)
                .set_body_json(json!({"data":null,"message":"QEMU guest agent is not running\n"})),
        )
        .expect(2)
        .mount(&server)
        .await;
    let (d, _front) = driver(&server).await;
    let g = d.get_guest(&"100".into()).await.unwrap();
    assert!(g.ipv4_addresses().is_empty(), "agent errors mean no IPs, not failure");
    assert_eq!(d.round_trips(), 4);
    d.get_guest(&"100".into()).await.unwrap();
    assert_eq!(d.round_trips(), 7, "node cached: 3 round trips");
}

#[tokio::test]
async fn stop_is_one_post_and_task_status_is_one_get() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api2/json/cluster/resources"))
        .respond_with(resources())
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api2/json/nodes/pve1/qemu/100/status/stop"))
        .respond_with(ok(json!(UPID)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/api2/json/nodes/pve1/tasks/{}/status", urlencoding::encode(UPID))))
        .respond_with(ok(json!({"status":"stopped","exitstatus":"OK"})))
        .expect(1)
        .mount(&server)
        .await;
    let (d, _front) = driver(&server).await;
    let t = d.power(&"100".into(), PowerAction::Stop).await.unwrap();
    assert_eq!(d.round_trips(), 2);
    assert!(matches!(d.task_status(&t).await.unwrap(), TaskStatus::Completed(_)));
    assert_eq!(d.round_trips(), 3);
}

#[tokio::test]
async fn failed_task_carries_exit_status_and_gets_are_retried_on_5xx() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api2/json/cluster/resources"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET")).and(path("/api2/json/cluster/resources")).respond_with(resources()).mount(&server).await;
    Mock::given(method("POST"))
        .and(path("/api2/json/nodes/pve1/qemu/100/status/reboot"))
        .respond_with(ok(json!(UPID)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/api2/json/nodes/pve1/tasks/{}/status", urlencoding::encode(UPID))))
        .respond_with(ok(json!({"status":"stopped","exitstatus":"VM 100 not running"})))
        .mount(&server)
        .await;
    let (d, _front) = driver(&server).await;
    let t = d.power(&"100".into(), PowerAction::Reboot).await.unwrap();
    assert_eq!(d.round_trips(), 3, "503 retried once");
    match d.task_status(&t).await.unwrap() {
        TaskStatus::Failed(e) => assert!(e.message().contains("VM 100 not running"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn old_pve_error_in_reason_phrase_only_and_no_write_retries() {
    let server = MockServer::start().await;
    Mock::given(method("GET")).and(path("/api2/json/cluster/resources")).respond_with(resources()).mount(&server).await;
    // PVE <= 8.3 puts the message only in the status line; wiremock cannot set a custom
    // reason phrase, so the body-less 500 maps to its status text and stays Backend.
    Mock::given(method("POST"))
        .and(path("/api2/json/nodes/pve1/qemu/100/status/reset"))
        .respond_with(ResponseTemplate::new(500).set_body_json(json!({"data": null})))
        .expect(1)
        .mount(&server)
        .await;
    let (d, _front) = driver(&server).await;
    let e = d.power(&"100".into(), PowerAction::Reset).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Backend);
    assert_eq!(d.round_trips(), 2, "POSTs are never retried");
}

#[tokio::test]
async fn ticket_login_csrf_and_relogin_on_401() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api2/json/access/ticket"))
        .respond_with(ok(json!({"ticket":"PVE:root@pam:1::sig","CSRFPreventionToken":"1:csrf","username":"root@pam"})))
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api2/json/version"))
        .respond_with(ResponseTemplate::new(401))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api2/json/version"))
        .and(header("cookie", "PVEAuthCookie=PVE:root@pam:1::sig"))
        .respond_with(ok(json!({"version":"8.2.4","release":"8.2"})))
        .mount(&server)
        .await;
    Mock::given(method("GET")).and(path("/api2/json/cluster/resources")).respond_with(resources()).mount(&server).await;
    Mock::given(method("POST"))
        .and(path("/api2/json/nodes/pve1/qemu/100/status/stop"))
        .and(header("csrfpreventiontoken", "1:csrf"))
        .respond_with(ok(json!(UPID)))
        .expect(1)
        .mount(&server)
        .await;
    let (d, _front) = driver_with(&server, json!({"token_name": null, "token_secret": null, "password": "pw"})).await;
    // login, 401, login again, version.
    assert!(d.probe().await.unwrap().starts_with("Proxmox VE 8.2.4"));
    assert_eq!(d.round_trips(), 4);
    d.power(&"100".into(), PowerAction::Stop).await.unwrap();
}

/// PVE <= 8.3 sends `{"data":null}` and puts the message only in the status line.
#[tokio::test]
async fn message_only_in_the_reason_phrase_is_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = vec![0u8; 4096];
            let n = sock.read(&mut buf).await.unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            let resp = if req.contains("/cluster/resources") {
                let body = r#"{"data":[{"id":"qemu/101","type":"qemu","node":"pve","vmid":"101","name":"a","status":"stopped","template":""}]}"#;
                format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
            } else {
                let body = r#"{"data":null}"#;
                format!("HTTP/1.1 500 Configuration file 'nodes/pve/qemu-server/101.conf' does not exist\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
            };
            let _ = sock.write_all(resp.as_bytes()).await;
        }
    });
    let front = TlsFront::start(addr).await.unwrap();
    let s = Settings::from_json(&json!({"host": front.url(), "username": "root@pam", "token_name": "ci",
                                        "token_secret": "x", "fingerprint": TlsFront::fingerprint()}))
    .unwrap();
    let d = open_driver(&s).unwrap();
    let e = d.get_guest(&"101".into()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e:?}");
    assert!(e.message().contains("101.conf' does not exist"), "{e:?}");
}

/// Issue 9 item 5 and lower findings: platform values are checked before any request.
#[tokio::test]
async fn invalid_platform_values_are_refused_before_any_request() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api2/json/cluster/resources"))
        .respond_with(ok(json!([
            {"id":"qemu/9000","type":"qemu","node":"pve1","vmid":9000,"name":"tpl","status":"stopped","template":1},
            {"id":"qemu/100","type":"qemu","node":"pve1","vmid":100,"name":"web","status":"running","template":0}
        ])))
        .mount(&server)
        .await;
    // The bridge setting that used to be pasted into net0.
    let front = TlsFront::start(*server.address()).await.unwrap();
    let s = json!({"host": front.url(), "username": "root@pam", "token_name": "ci", "token_secret": "S3CRET",
                   "fingerprint": TlsFront::fingerprint(), "network_bridge": "vmbr0,link_down=1,rate=1"});
    let e = open_driver(&Settings::from_json(&s).unwrap()).err().expect("refused");
    assert_eq!(e.kind(), ErrorKind::InvalidInput);

    let (d, _front) = driver_with(&server, json!({"node": "pve1"})).await;
    let spec = CreateSpec {
        name: "i-2-9-VM".into(),
        key: "i-2-9-VM".into(),
        source: CreateSource::Template { id: "9000".into(), full: true },
        cpus: Some(1),
        memory_mb: Some(512),
        disk_size_gb: None,
        storage: None,
        nics: vec![NicSpec { mac: None, vlan: None, network: Some("vmbr0,link_down=1".into()) }],
    };
    let bad_nets = [
        NicSpec { mac: None, vlan: None, network: Some("vmbr0,link_down=1".into()) },
        NicSpec { mac: None, vlan: Some(4095), network: None },
        NicSpec { mac: Some("02:00:00:00:00:0g".into()), vlan: None, network: None },
    ];
    for nic in bad_nets {
        let e = d.create_guest(&CreateSpec { nics: vec![nic.clone()], ..spec.clone() }).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{nic:?}: {e}");
    }
    let e = d.create_guest(&CreateSpec { storage: Some("local,size=1".into()), ..spec.clone() }).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let iso = CreateSource::Iso { path: "local:iso/x.iso,media=disk".into(), os_type: None };
    let e = d.create_guest(&CreateSpec { source: iso, nics: vec![], ..spec.clone() }).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    // Non-canonical ids never reach guest 100.
    for id in ["0100", "+100", " 100"] {
        assert_eq!(d.get_guest(&id.into()).await.unwrap_err().kind(), ErrorKind::InvalidInput, "{id:?}");
    }
    // Snapshot names that used to be rewritten (and could collide) are refused.
    let e = d.revert_snapshot(&"100".into(), "a/../../x").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert_eq!(d.round_trips(), 0, "nothing was sent");

    // A native template has no snapshot 'RAS_TEMPLATE_VERSION_99': clone fails instead of
    // cloning the current state (old behaviour); the virtual link label is the only name.
    let cs = CloneSpec {
        source: "9000".into(),
        name: "c1".into(),
        snapshot: Some("RAS_TEMPLATE_VERSION_99".into()),
        mode: CloneMode::Auto,
        start: false,
    };
    let e = d.clone_guest(&cs).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.message().contains("RAS_TEMPLATE_VERSION_99"), "{e}");
}

/// The platform's `node` is used without a listing; a VM that is not there is located once.
#[tokio::test]
async fn named_node_first_listing_only_when_the_vm_is_elsewhere() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api2/json/nodes/pve2/qemu/100/status/stop"))
        .respond_with(ResponseTemplate::new(500).set_body_json(
            json!({"data":null,"message":"Configuration file 'nodes/pve2/qemu-server/100.conf' does not exist\n"}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api2/json/cluster/resources"))
        .respond_with(resources())
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api2/json/nodes/pve1/qemu/100/status/stop"))
        .respond_with(ok(json!(UPID)))
        .expect(2)
        .mount(&server)
        .await;
    let (d, _front) = driver_with(&server, json!({"node": "pve2"})).await;
    d.power(&"100".into(), PowerAction::Stop).await.unwrap();
    assert_eq!(d.round_trips(), 3, "guessed node, listing, right node");
    d.power(&"100".into(), PowerAction::Stop).await.unwrap();
    assert_eq!(d.round_trips(), 4, "now cached: one POST");
}

/// Issue 8 item 8, pinned exactly: a create at prepare's VMID makes no nextid call, a poll
/// that finds the new VM still locked by its clone costs one read (no task read), a
/// snapshot is one POST (no list read), and a console on the configured node one POST (no
/// node network read).
#[tokio::test]
async fn create_at_the_hint_locked_polls_snapshot_and_console_without_extra_reads() {
    const CLONE: &str = "UPID:pve1:000003E9:00001B59:6B0F36F2:qmclone:9000:root@pam!ci:";
    const SNAP: &str = "UPID:pve1:000003EA:00001B5A:6B0F36F3:qmsnapshot:100:root@pam!ci:";
    let server = MockServer::start().await;
    let expect = |m: &str, p: &str, answer: ResponseTemplate, n: u64| {
        Mock::given(method(m)).and(path(format!("/api2/json{p}"))).respond_with(answer).expect(n)
    };
    let listing = ok(json!([
        {"id":"qemu/100","type":"qemu","node":"pve1","vmid":100,"name":"web","status":"running","template":0},
        {"id":"qemu/9000","type":"qemu","node":"pve1","vmid":9000,"name":"tpl","status":"stopped","template":1}
    ]));
    expect("GET", "/cluster/resources", listing, 1).mount(&server).await;
    expect("GET", "/cluster/nextid", ok(json!("104")), 0).mount(&server).await;
    expect("POST", "/nodes/pve1/qemu/9000/clone", ok(json!(CLONE)), 1).mount(&server).await;
    expect("GET", "/nodes/pve1/qemu/104/config", ok(json!({"lock": "clone", "name": "vm-1"})), 2).mount(&server).await;
    let clone_status = format!("/nodes/pve1/tasks/{}/status", urlencoding::encode(CLONE));
    expect("GET", &clone_status, ok(json!({"status": "running"})), 0).mount(&server).await;
    expect("GET", "/nodes/pve1/qemu/100/snapshot", ok(json!([])), 0).mount(&server).await;
    expect("POST", "/nodes/pve1/qemu/100/snapshot", ok(json!(SNAP)), 1).mount(&server).await;
    let vnc = ok(json!({"port": "5901", "ticket": "PVEVNC:t", "user": "root@pam", "upid": SNAP}));
    expect("POST", "/nodes/pve1/qemu/100/vncproxy", vnc, 1).mount(&server).await;
    expect("GET", "/nodes/pve1/network", ok(json!([])), 0).mount(&server).await;
    let (d, front) = driver_with(&server, json!({"node": "pve1"})).await;

    let spec = CreateSpec {
        name: "vm-1".into(),
        key: "i-2-1-VM".into(),
        source: CreateSource::Template { id: "9000".into(), full: false },
        cpus: Some(1),
        memory_mb: None,
        disk_size_gb: None,
        storage: None,
        nics: vec![],
    };
    let started = d.create_guest_at(&spec, Some(&"104".into())).await.unwrap();
    assert_eq!(started.new_guest, Some("104".into()));
    assert_eq!(d.round_trips(), 2, "listing + clone POST at the hinted VMID");
    for _ in 0..2 {
        assert!(matches!(d.task_status(&started.task).await.unwrap(), TaskStatus::Running));
    }
    assert_eq!(d.round_trips(), 4, "one config read per poll while locked");

    let snap = SnapshotSpec { name: "s1".into(), include_memory: false, description: None };
    d.create_snapshot(&"100".into(), &snap).await.unwrap();
    assert_eq!(d.round_trips(), 5);
    match d.console(&"100".into()).await.unwrap() {
        Console::Vnc { host, port, .. } => {
            assert_eq!(port, 5901);
            assert_eq!(host, "127.0.0.1", "the configured host ({})", front.url());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(d.round_trips(), 6);
}
