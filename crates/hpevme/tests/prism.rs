//! The driver's read-only calls against a stateless Prism mock of the UNMODIFIED Morpheus
//! OpenAPI description (started by scripts/ci/start-hpevme.sh on 127.0.9.4:4010, named by
//! the contract's `prism` key). Prism refuses a request the description rejects (422/400/401),
//! so a request shape the description does not allow is caught even where the stand-in is
//! lenient. Prism speaks plain HTTP; polyvisor-http's test TLS front sits before it, so the
//! driver runs with its production https-only client. The catalog reads of a create
//! (`/api/zones`, `/api/instance-types`, layouts, `/api/instances/service-plans`,
//! `/api/virtual-images`, `/api/networks`) and the history read of power/delete task polls
//! are checked the same way.

use polyvisor_core::{Driver, NicSpec, Settings};
use polyvisor_hpevme::catalog;
use polyvisor_hpevme::config::Catalog;
use polyvisor_http::testing::TlsFront;
use serde_json::{json, Value};
use std::net::ToSocketAddrs;
use std::time::{Duration, Instant};

fn prism_addr() -> std::net::SocketAddr {
    let path = polyvisor_test_support::backend::run_dir().join("hpevme.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} is missing: run `bash scripts/ci/start-hpevme.sh` first", path.display()));
    let c: Value = serde_json::from_str(&text).unwrap();
    let url = c["prism"].as_str().expect("contract has no prism URL").trim_start_matches("http://").to_string();
    url.to_socket_addrs().unwrap().next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_calls_pass_prism_on_the_unmodified_description() {
    let addr = prism_addr();
    // Prism takes up to a minute to load the ~600-file description after the start script.
    let t0 = Instant::now();
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(240),
            "Prism does not listen on {addr} (see /run/polyvisor-test/hpevme/prism.log)"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let front = TlsFront::start(addr).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = TlsFront::write_ca_file(dir.path()).unwrap();
    let s = Settings::from_json(&json!({"url": front.url(), "access_token": "prism-token-value",
        "ca_file": ca.to_str().unwrap(), "request_timeout": "30"}))
    .unwrap();
    let d = polyvisor_hpevme::open_driver(&s).unwrap();
    assert!(d.probe().await.unwrap().contains("HPE VM Essentials"));
    let guests = d.list_guests().await.unwrap();
    assert!(!guests.is_empty(), "the description's example lists instances");
    let g = d.get_guest(&guests[0].id).await.unwrap();
    assert!(!g.name.is_empty(), "a stateless mock answers its example instance");
    d.list_snapshots(&g.id).await.unwrap();
    // A power task's poll (instance + `GET /api/instances/{id}/history`) and a delete task's.
    let n0 = d.round_trips();
    for (kind, body) in [
        (
            "vme-power",
            json!({"id": g.id.as_str().parse::<u64>().unwrap(), "want": "stopped", "since": 0, "codes": ["stop"]}),
        ),
        ("vme-delete", json!({"id": g.id.as_str().parse::<u64>().unwrap(), "since": 0, "codes": ["delete"]})),
    ] {
        d.task_status(&polyvisor_core::TaskToken::new(kind, body).encode()).await.unwrap();
    }
    assert_eq!(d.round_trips() - n0, 4, "both polls read the instance and its history");
    // The catalog reads of a create (by the names Prism's examples carry): cloud, instance
    // type, its layouts, the plans offered, a virtual image and the cloud's networks.
    let api = polyvisor_hpevme::api::Api::new(polyvisor_hpevme::config::Config::from_settings(&s).unwrap()).unwrap();
    let c = Catalog {
        cloud: "Work AWS".into(),
        instance_type: "Amazon Custom".into(),
        layout: Some("Amazon Apache on CentOS 7.3".into()),
        plan: Some("vm-512".into()),
    };
    let r = catalog::resolve(&api, &c, 1).await.unwrap();
    assert_eq!((r.zone_id, r.type_code.as_str(), r.layout_id), (67, "awscustom", 574));
    assert_eq!(r.plan.as_ref().map(|p| p.id), Some(75));
    assert_eq!(catalog::image(&api, "aaaatest", false).await.unwrap(), 1246);
    let nic = NicSpec { mac: None, vlan: None, network: Some("my-network".into()) };
    let ifs = catalog::interfaces(&api, r.zone_id, &[nic]).await.unwrap().unwrap();
    assert_eq!(ifs[0]["network"]["id"], "network-1");
    // Prism rejects what the description does not allow (here: no credentials at all is a 401).
    let none = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
    let r = none.get(format!("{}/api/instances", front.url())).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401, "Prism enforces the description's security");
}
