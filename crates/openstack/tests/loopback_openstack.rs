//! Driver-level tests against the real loopback OpenStack started by
//! `scripts/ci/start-openstack.sh` (contract `/run/polyvisor-test/openstack.json`): auth by
//! password and by application credential, re-authentication on a 401 (against the real
//! Keystone: the test revokes the driver's tokens; and on a mock, counting round trips), Nova
//! 404/409 mapped to clear kinds, power cycle, template flag, snapshot image, clone from a
//! version, delete leaving no server/image/port behind, VLAN/MAC NICs on real Neutron, the
//! foreign server untouched, and the
//! official client (`openstack server list` / `image list`) agreeing with the driver.
//! A missing contract fails (naming the script); nothing is skipped.

use polyvisor_core::task::{wait, TaskId};
use polyvisor_core::{
    CloneMode, CloneSpec, Driver, ErrorKind, GuestId, PowerAction, PowerState, Settings, SnapshotSpec,
};
use polyvisor_openstack::client::Service;
use polyvisor_openstack::error::OsError;
use polyvisor_openstack::{open_driver, OpenStackDriver};
use polyvisor_test_support::backend::Backend;
use serde_json::Value;
use std::time::Duration;

/// One flow at a time (they share the cloud's single fake compute host).
static ONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn contract() -> (Backend, Value) {
    let b = Backend::load("openstack").unwrap_or_else(|e| panic!("{e}"));
    let raw: Value = serde_json::from_str(
        &std::fs::read_to_string(polyvisor_test_support::backend::run_dir().join("openstack.json")).unwrap(),
    )
    .unwrap();
    (b, raw)
}

fn driver(b: &Backend) -> OpenStackDriver {
    open_driver(&Settings::from_json(&Value::Object(b.settings.clone())).unwrap()).unwrap()
}

async fn done(d: &OpenStackDriver, t: &TaskId) -> polyvisor_core::TaskOutput {
    wait(d, t, Duration::from_secs(300), Duration::from_millis(500)).await.expect("task")
}

/// The official client's view (`openstack ... -f json`) with the contract's demo credentials.
fn official(b: &Backend, args: &[&str]) -> Vec<Value> {
    b.openstack_json(args).as_array().cloned().expect("a JSON list")
}

fn ids(list: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = list.iter().filter_map(|x| x["ID"].as_str().map(str::to_string)).collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn password_and_application_credential_auth() {
    let _one = ONE.lock().await;
    let (b, raw) = contract();
    let d = driver(&b);
    let probe = d.probe().await.expect("probe by password");
    assert!(probe.contains("compute API 2."), "{probe}");
    assert_eq!(d.client().microversion().await.unwrap(), "2.93", "highest offered, capped at the tested one");

    // Application credential (no username/password/project in the settings at all).
    let mut s = b.settings.clone();
    for k in ["username", "password", "project_name", "user_domain_name", "project_domain_name"] {
        s.remove(k);
    }
    for (k, v) in raw["application_credential"].as_object().expect("contract has an application_credential") {
        s.insert(k.clone(), v.clone());
    }
    let ac = open_driver(&Settings::from_json(&Value::Object(s)).unwrap()).unwrap();
    let by_ac = ac.list_guests().await.expect("list by application credential");
    let by_pw = d.list_guests().await.unwrap();
    assert_eq!(by_ac.len(), by_pw.len(), "same project, same servers");

    // One token per process: later calls reuse it.
    let auths = d.client().authentications();
    d.list_guests().await.unwrap();
    assert_eq!(d.client().authentications(), auths);

    // Wrong password: Unauthorized, the password never in the message.
    let mut bad = b.settings.clone();
    bad.insert("password".into(), Value::String("wrong-pass-123".into()));
    let e = open_driver(&Settings::from_json(&Value::Object(bad)).unwrap()).unwrap().probe().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
    assert!(!e.message().contains("wrong-pass-123"));
}

#[tokio::test(flavor = "multi_thread")]
async fn nova_404_and_409_map_to_clear_kinds() {
    let _one = ONE.lock().await;
    let (b, _) = contract();
    let d = driver(&b);
    let missing = GuestId::new("00000000-0000-4000-8000-000000000000");
    let e = d.get_guest(&missing).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.message().contains("00000000-0000-4000-8000-000000000000"));
    let e = d.power(&missing, PowerAction::Start).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    // A delete of a missing guest is an already-completed task.
    done(&d, &d.delete_guest(&missing).await.unwrap()).await;
    // 409 straight from Nova: os-start on a running server.
    let foreign = d.list_guests().await.unwrap().into_iter().find(|g| g.name == "pv-ci-foreign").expect("foreign");
    assert_eq!(foreign.power, PowerState::PoweredOn);
    let r = d
        .client()
        .post(Service::Compute, &format!("/servers/{}/action", foreign.id), &serde_json::json!({"os-start": null}))
        .await
        .unwrap_err();
    assert!(matches!(r, OsError::Conflict(_)), "{r:?}");
    let core: polyvisor_core::Error = r.into();
    assert_eq!(core.kind(), ErrorKind::Conflict);
    assert!(core.source_as::<OsError>().is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn power_template_snapshot_clone_and_delete_leave_nothing_behind() {
    let _one = ONE.lock().await;
    let (b, _) = contract();
    let d = driver(&b);
    let servers_before = ids(&official(&b, &["server", "list"]));
    let images_before = ids(&official(&b, &["image", "list"]));
    let foreign = d.list_guests().await.unwrap().into_iter().find(|g| g.name == "pv-ci-foreign").unwrap();
    let foreign_before = d.get_guest(&foreign.id).await.unwrap();

    // A scratch VM: clone of the contract's source (current state → a temporary image).
    let src = GuestId::new(b.source_guest.clone());
    let name = format!("pvt-{}", std::process::id());
    let spec =
        CloneSpec { source: src.clone(), name: name.clone(), snapshot: None, mode: CloneMode::Auto, start: false };
    let rt0 = d.round_trips();
    let started = d.clone_guest(&spec).await.unwrap();
    let vm = done(&d, &started.task).await.new_guest.expect("clone id");
    eprintln!("clone (current state): {} round trips", d.round_trips() - rt0);
    let g = d.get_guest(&vm).await.unwrap();
    assert_eq!((g.name.as_str(), g.power, g.is_template), (name.as_str(), PowerState::PoweredOn, false));
    assert_eq!(g.nics.len(), 1, "one NIC on the 'network' setting's network");
    assert!(!g.nics[0].mac.is_empty() && !g.ipv4_addresses().is_empty(), "{:?}", g.nics);
    // The official client sees the new server.
    assert!(ids(&official(&b, &["server", "list"])).contains(&vm.0));

    // Power cycle.
    for (a, want) in [
        (PowerAction::Stop, PowerState::PoweredOff),
        (PowerAction::Start, PowerState::PoweredOn),
        (PowerAction::Reboot, PowerState::PoweredOn),
        (PowerAction::Reset, PowerState::PoweredOn),
        (PowerAction::Suspend, PowerState::Suspended),
        (PowerAction::Resume, PowerState::PoweredOn),
        (PowerAction::Stop, PowerState::PoweredOff),
        (PowerAction::Stop, PowerState::PoweredOff),
    ] {
        let rt = d.round_trips();
        done(&d, &d.power(&vm, a).await.unwrap()).await;
        assert_eq!(d.get_guest(&vm).await.unwrap().power, want, "{a}");
        eprintln!("power {a}: {} round trips incl. polls", d.round_trips() - rt);
    }
    let listed = official(&b, &["server", "list"]);
    let row = listed.iter().find(|r| r["ID"].as_str() == Some(vm.as_str())).expect("listed by the official client");
    assert_eq!(row["Status"], "SHUTOFF", "the official client agrees on the power state");

    // Template flag lives in server metadata; another driver instance (process) sees it.
    done(&d, &d.set_template(&vm, true).await.unwrap()).await;
    assert!(driver(&b).get_guest(&vm).await.unwrap().is_template);

    // Snapshot image; clone from that version.
    let snap = SnapshotSpec { name: "RAS_TEMPLATE_VERSION_1".into(), include_memory: false, description: None };
    done(&d, &d.create_snapshot(&vm, &snap).await.unwrap()).await;
    assert!(d.snapshot_exists(&vm, "RAS_TEMPLATE_VERSION_1").await.unwrap());
    let imgs = official(&b, &["image", "list"]);
    assert_eq!(ids(&imgs).len(), images_before.len() + 1, "the official client sees the snapshot image");
    let host_name = format!("{name}-h");
    let spec = CloneSpec {
        source: vm.clone(),
        name: host_name.clone(),
        snapshot: Some("RAS_TEMPLATE_VERSION_1".into()),
        mode: CloneMode::Full,
        start: false,
    };
    let host = done(&d, &d.clone_guest(&spec).await.unwrap().task).await.new_guest.unwrap();
    let hg = d.get_guest(&host).await.unwrap();
    assert_eq!((hg.name.as_str(), hg.is_template), (host_name.as_str(), false));
    // A retry of the same clone adopts it instead of booting another.
    let again = d.clone_guest(&spec).await.unwrap();
    assert_eq!(again.new_guest.as_ref(), Some(&host));

    // Delete both: servers, the snapshot image and the ports go; the foreign server stays.
    for id in [&host, &vm] {
        done(&d, &d.delete_guest(id).await.unwrap()).await;
        assert!(d.get_guest(id).await.unwrap_err().is_not_found());
    }
    let ports = d.client().get(Service::Network, "/ports").await.unwrap();
    for p in ports["ports"].as_array().unwrap() {
        assert!(
            p["device_id"].as_str() != Some(vm.as_str()) && p["device_id"].as_str() != Some(host.as_str()),
            "port left behind: {p}"
        );
    }
    assert_eq!(ids(&official(&b, &["server", "list"])), servers_before, "official client: no server left");
    assert_eq!(ids(&official(&b, &["image", "list"])), images_before, "official client: no image left");
    let after = d.get_guest(&foreign.id).await.unwrap();
    assert_eq!((after.power, after.is_template, after.key), (foreign_before.power, false, None));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nova_that_stops_answering_is_bounded() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    // Nova: a TCP listener that accepts and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nova = format!("http://{}/v2.1", silent.local_addr().unwrap());
    let _hold = std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in silent.incoming().flatten() {
            held.push(c);
        }
    });
    // Keystone: answers with a catalog naming that Nova.
    let ks = MockServer::start().await;
    let catalog = serde_json::json!({"token": {"expires_at": "2099-01-01T00:00:00Z", "catalog": [
        {"type": "compute", "endpoints": [{"interface": "public", "region_id": "R", "url": nova}]},
        {"type": "image", "endpoints": [{"interface": "public", "region_id": "R", "url": "http://127.0.0.1:9/"}]}]}});
    Mock::given(method("POST"))
        .and(path("/v3/auth/tokens"))
        .respond_with(ResponseTemplate::new(201).insert_header("X-Subject-Token", "tok").set_body_json(catalog))
        .mount(&ks)
        .await;
    let s = Settings::from_pairs([
        ("auth_url", format!("{}/v3", ks.uri())),
        ("username", "u".into()),
        ("password", "p".into()),
        ("project_name", "x".into()),
        ("allow_insecure_http", "true".into()),
        ("request_timeout", "2".into()),
    ]);
    let d = open_driver(&s).unwrap();
    let t0 = std::time::Instant::now();
    let e = d.list_guests().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(t0.elapsed() < Duration::from_secs(10), "bounded: {:?}", t0.elapsed());
    assert!(e.message().contains("compute"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_token_is_replaced_once_on_a_401() {
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let srv = MockServer::start().await;
    let nova = format!("{}/compute/v2.1", srv.uri());
    let catalog = serde_json::json!({"token": {"catalog": [
        {"type": "compute", "endpoints": [{"interface": "public", "region_id": "R", "url": nova}]},
        {"type": "image", "endpoints": [{"interface": "public", "region_id": "R", "url": srv.uri()}]}]}});
    // The first token is "expired" by the time it is used; the second works.
    Mock::given(method("POST"))
        .and(path("/v3/auth/tokens"))
        .respond_with(ResponseTemplate::new(201).insert_header("X-Subject-Token", "old").set_body_json(&catalog))
        .up_to_n_times(1)
        .mount(&srv)
        .await;
    Mock::given(method("POST"))
        .and(path("/v3/auth/tokens"))
        .respond_with(ResponseTemplate::new(201).insert_header("X-Subject-Token", "new").set_body_json(&catalog))
        .mount(&srv)
        .await;
    Mock::given(method("GET"))
        .and(path("/compute/v2.1/"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"version": {"version": "2.93"}})))
        .mount(&srv)
        .await;
    Mock::given(method("GET"))
        .and(path("/compute/v2.1/servers/detail"))
        .and(header("X-Auth-Token", "old"))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(serde_json::json!({"error": {"code": 401, "message": "expired"}})),
        )
        .mount(&srv)
        .await;
    Mock::given(method("GET"))
        .and(path("/compute/v2.1/servers/detail"))
        .and(header("X-Auth-Token", "new"))
        .and(header("OpenStack-API-Version", "compute 2.93"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"servers": []})))
        .mount(&srv)
        .await;
    let s = Settings::from_pairs([
        ("auth_url", format!("{}/v3", srv.uri())),
        ("application_credential_id", "id".into()),
        ("application_credential_secret", "s3cret-app".into()),
        ("allow_insecure_http", "true".into()),
    ]);
    let d = open_driver(&s).unwrap();
    assert!(d.list_guests().await.unwrap().is_empty());
    assert_eq!(d.client().authentications(), 2, "one re-authentication after the 401");
    // Token, version, 401, token, version, list.
    assert_eq!(d.round_trips(), 6);
    d.list_guests().await.unwrap();
    assert_eq!(d.client().authentications(), 2, "the new token is kept");
}

/// A CloudStack-style create from the contract's template image, keyed `pvt-key-<name>`.
fn create_spec(raw: &Value, name: &str, nics: Vec<polyvisor_core::NicSpec>) -> polyvisor_core::CreateSpec {
    polyvisor_core::CreateSpec {
        name: name.to_string(),
        key: format!("pvt-key-{name}"),
        source: polyvisor_core::CreateSource::Template {
            id: GuestId::new(raw["template_id"].as_str().unwrap()),
            full: true,
        },
        cpus: Some(1),
        memory_mb: Some(128),
        disk_size_gb: None,
        storage: None,
        nics,
    }
}

/// Creates and waits for the guest (a retry may answer with its id at once).
async fn create_and_wait(d: &OpenStackDriver, spec: &polyvisor_core::CreateSpec) -> GuestId {
    let started = d.create_guest(spec).await.unwrap_or_else(|e| panic!("create {}: {e}", spec.name));
    let out = done(d, &started.task).await;
    started.new_guest.or(out.new_guest).expect("create id")
}

/// CloudStack NICs on REAL Neutron (ML2, type drivers flat + vlan, the agentless `osmini`
/// mechanism driver): a `vlan://100` NIC lands on the VLAN provider network with segmentation
/// id 100 (`pv-vlan-100`), an untagged one on the `network` setting's flat `pv-net`, both with
/// the requested MACs; Nova boots the server with them; the official client sees the ports;
/// a VLAN no network carries (101) is refused with nothing created; delete leaves no port.
#[tokio::test(flavor = "multi_thread")]
async fn vlan_nics_land_on_real_neutron_networks_with_their_macs() {
    use polyvisor_core::NicSpec;
    let _one = ONE.lock().await;
    let (b, raw) = contract();
    let d = driver(&b);
    let ports_before = ids(&official(&b, &["port", "list"]));
    let servers_before = ids(&official(&b, &["server", "list"]));
    let pid = std::process::id();
    let mac = |n: u32| format!("FA:16:3E:{:02X}:{:02X}:{:02X}", n, pid % 256, (pid / 256) % 256);
    let spec = |name: &str, nics: Vec<NicSpec>| create_spec(&raw, name, nics);

    // A VLAN no Neutron network carries: refused, nothing created.
    let name = format!("pvt-vlan101-{pid}");
    let nics = vec![
        NicSpec { mac: Some(mac(1)), vlan: None, network: None },
        NicSpec { mac: Some(mac(2)), vlan: Some(101), network: None },
    ];
    let e = d.create_guest(&spec(&name, nics)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.message().contains("segmentation id 101"), "{e}");
    assert_eq!(ids(&official(&b, &["port", "list"])), ports_before, "no port left by the refused create");

    // VLAN 100 + untagged, with MACs.
    let name = format!("pvt-vlan-{pid}");
    let nics = vec![
        NicSpec { mac: Some(mac(3)), vlan: Some(100), network: None },
        NicSpec { mac: Some(mac(4)), vlan: None, network: None },
    ];
    let vm = create_and_wait(&d, &spec(&name, nics)).await;
    let g = d.get_guest(&vm).await.unwrap();
    let macs: Vec<String> = g.nics.iter().map(|n| n.mac.to_ascii_uppercase()).collect();
    assert!(macs.contains(&mac(3)) && macs.contains(&mac(4)), "{:?}", g.nics);
    // The official client: the ports, their networks and MACs, bound to the server.
    let ports = official(&b, &["port", "list", "--server", vm.as_str(), "--long"]);
    assert_eq!(ports.len(), 2, "{ports:?}");
    for (m, net) in [(mac(3), "pv-vlan-100"), (mac(4), "pv-net")] {
        let row = ports
            .iter()
            .find(|p| p["MAC Address"].as_str().map(str::to_ascii_uppercase) == Some(m.clone()))
            .unwrap_or_else(|| panic!("no port with MAC {m}: {ports:?}"));
        let port = b.openstack_json(&["port", "show", row["ID"].as_str().unwrap()]);
        let network = b.openstack_json(&["network", "show", port["network_id"].as_str().unwrap()]);
        assert_eq!(network["name"], net, "{port}");
        assert_eq!(port["status"], "ACTIVE", "bound by the osmini mechanism driver: {port}");
    }
    assert!(ids(&official(&b, &["server", "list"])).contains(&vm.0));

    done(&d, &d.delete_guest(&vm).await.unwrap()).await;
    assert_eq!(ids(&official(&b, &["server", "list"])), servers_before, "official client: no server left");
    assert_eq!(ids(&official(&b, &["port", "list"])), ports_before, "official client: no port left");
}

/// Makes the port an interrupted create of `key` left for its NIC 0 on network `net` with
/// `mac` (`description`: the attempt's line carrying its nonce, or none); its id.
async fn left_port(d: &OpenStackDriver, net: &str, key: &str, mac: &str, description: Option<String>) -> String {
    let mut port =
        serde_json::json!({"network_id": net, "name": polyvisor_openstack::port_name(key, 0), "mac_address": mac});
    if let Some(text) = description {
        port["description"] = text.into();
    }
    let p = d.client().post(Service::Network, "/ports", &serde_json::json!({ "port": port })).await.unwrap();
    p["port"]["id"].as_str().unwrap().to_string()
}

/// A create killed after it made its Neutron port (before the server was booted) left an
/// unattached port holding the platform's MAC; the retry with the same key removes it and
/// converges (Neutron would otherwise answer "MAC address in use"). The interrupted attempt
/// is reproduced exactly: a port with the driver's key-derived name and the MAC, no device.
/// Then the case where that attempt's server request was still in flight: adopted, not broken.
#[tokio::test(flavor = "multi_thread")]
async fn a_create_retried_after_an_interruption_reclaims_its_orphan_port() {
    use polyvisor_core::NicSpec;
    let _one = ONE.lock().await;
    let (b, raw) = contract();
    let d = driver(&b);
    let ports_before = ids(&official(&b, &["port", "list"]));
    let servers_before = ids(&official(&b, &["server", "list"]));
    let pid = std::process::id();
    let mac = format!("fa:16:3e:5a:{:02x}:{:02x}", pid % 256, (pid / 256) % 256);
    let name = format!("pvt-orphan-{pid}");
    let spec =
        create_spec(&raw, &name, vec![NicSpec { mac: Some(mac.to_ascii_uppercase()), vlan: None, network: None }]);
    let nets = d.client().get(Service::Network, "/networks?name=pv-net").await.unwrap();
    let net = nets["networks"][0]["id"].as_str().expect("pv-net").to_string();
    let orphan = left_port(&d, &net, &spec.key, &mac, None).await;
    // The retry converges despite the orphan port.
    let vm = create_and_wait(&d, &spec).await;
    let g = d.get_guest(&vm).await.unwrap();
    assert_eq!(g.nics.len(), 1, "{:?}", g.nics);
    assert!(g.nics[0].mac.eq_ignore_ascii_case(&mac), "{:?}", g.nics);
    assert!(!ids(&official(&b, &["port", "list"])).contains(&orphan), "the orphan port was removed");
    done(&d, &d.delete_guest(&vm).await.unwrap()).await;

    // In flight: the interrupted attempt's port is young (its description carries the
    // attempt's nonce, i.e. its time) and its server request lands 3 s into the retry. The
    // retry waits for it and adopts that server; the port is never deleted from under it.
    use polyvisor_openstack::map::{META_KEY, META_NONCE, META_OWNED};
    let spec = create_spec(
        &raw,
        &format!("pvt-inflight-{pid}"),
        vec![NicSpec { mac: Some(mac.to_ascii_uppercase()), vlan: None, network: None }],
    );
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let nonce = format!("{t:x}-{pid:x}-0");
    let port = left_port(&d, &net, &spec.key, &mac, Some(format!("polyvisor create {nonce}"))).await;
    let flavors = d.client().get(Service::Compute, "/flavors").await.unwrap();
    let flavor = flavors["flavors"][0]["id"].as_str().expect("a flavor").to_string();
    let late = serde_json::json!({"server": {
        "name": spec.name, "imageRef": raw["template_id"], "flavorRef": flavor, "networks": [{"port": port}],
        "metadata": {META_OWNED: "1", META_KEY: spec.key, META_NONCE: nonce},
    }});
    let d2 = driver(&b);
    let landing = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let s = d2.client().post(Service::Compute, "/servers", &late).await.expect("the late server request");
        s["server"]["id"].as_str().unwrap().to_string()
    });
    let t0 = std::time::Instant::now();
    let vm = create_and_wait(&d, &spec).await;
    let late_id = landing.await.unwrap();
    assert_eq!(vm.as_str(), late_id, "the retry adopted the in-flight attempt's server ({:?})", t0.elapsed());
    let bound = official(&b, &["port", "list", "--server", vm.as_str()]);
    assert_eq!(ids(&bound), vec![port.clone()], "the young port was kept and is the server's");
    done(&d, &d.delete_guest(&vm).await.unwrap()).await;
    // That port was made outside the driver's create (no `polyvisor_ports` entry): ours to drop.
    let _ = d.client().delete(Service::Network, &format!("/ports/{port}")).await;
    assert_eq!(ids(&official(&b, &["server", "list"])), servers_before, "official client: no server left");
    assert_eq!(ids(&official(&b, &["port", "list"])), ports_before, "official client: no port left");
}

/// Token expiry and re-authentication against the REAL Keystone: a user made for this test
/// logs in; the test revokes that user's tokens (Keystone revokes every token of a user that is
/// disabled; re-enabling does not bring them back); once Nova's token-validation cache lapses
/// (`token_cache_time = 10` in the loopback cloud), Nova answers 401 and the driver
/// authenticates exactly once more and succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_token_is_replaced_once_against_real_keystone() {
    let _one = ONE.lock().await;
    let (b, raw) = contract();
    let user = format!("pvt-reauth-{}", std::process::id());
    let pass = format!("pw-{:x}", std::process::id() as u64 * 7919 + 17);
    let admin = |args: &[&str]| {
        let out = admin_cmd(&b, &raw, args);
        assert!(out.status.success(), "openstack {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    admin(&["user", "create", "--domain", "Default", "--password", &pass, &user]);
    // The user goes even when an assertion below fails.
    struct DeleteUser<'a>(&'a Backend, &'a Value, String);
    impl Drop for DeleteUser<'_> {
        fn drop(&mut self) {
            let _ = admin_cmd(self.0, self.1, &["user", "delete", "--domain", "Default", &self.2]);
        }
    }
    let _cleanup = DeleteUser(&b, &raw, user.clone());
    admin(&["role", "add", "--user", &user, "--user-domain", "Default", "--project", "demo", "member"]);
    let mut s = b.settings.clone();
    s.insert("username".into(), Value::String(user.clone()));
    s.insert("password".into(), Value::String(pass.clone()));
    let d = open_driver(&Settings::from_json(&Value::Object(s)).unwrap()).unwrap();
    let before = d.list_guests().await.expect("first list");
    assert_eq!(d.client().authentications(), 1);
    admin(&["user", "set", "--disable", &user]);
    admin(&["user", "set", "--enable", &user]);
    tokio::time::sleep(Duration::from_secs(12)).await;
    let after = d.list_guests().await.expect("list after the revocation");
    assert_eq!(d.client().authentications(), 2, "exactly one re-authentication after Nova's 401");
    assert_eq!(ids_of(&before), ids_of(&after));
    d.list_guests().await.unwrap();
    assert_eq!(d.client().authentications(), 2, "the new token is kept");
}

fn ids_of(g: &[polyvisor_core::GuestSummary]) -> Vec<String> {
    let mut v: Vec<String> = g.iter().map(|g| g.id.0.clone()).collect();
    v.sort();
    v
}

/// The official client as the contract's admin (user management for the re-auth test).
fn admin_cmd(b: &Backend, raw: &Value, args: &[&str]) -> std::process::Output {
    b.openstack_cli_as(Some(&raw["admin"]), args)
}

/// CloudShell L3 on REAL Neutron and Nova: a sandbox subnet is a project network (a VLAN
/// segment of physnet1 allocated by ML2) with an IPv4 subnet and a security group, all marked
/// with the sandbox; get-or-create returns the same one; another CIDR under the alias is a
/// conflict; a guest joins through a port in the group attached by Nova (`os-interface`),
/// idempotently; the platform's rules become the group's ingress rules (replaced, not
/// added); ids that are not polyvisor subnets are not found; clean-up removes ports, group
/// and network, and a retry finds nothing. The official client checks each step.
#[tokio::test(flavor = "multi_thread")]
async fn sandbox_subnets_ports_and_security_groups_on_real_neutron() {
    use polyvisor_core::netops::{SecurityRule, SubnetSpec};
    let _one = ONE.lock().await;
    let (b, raw) = contract();
    let d = driver(&b);
    let pid = std::process::id();
    let owner = format!("pvt-sandbox-{pid}");
    let spec = |alias: &str, cidr: &str| SubnetSpec {
        owner: owner.clone(),
        alias: alias.into(),
        cidr: cidr.into(),
        public: false,
    };
    let rule = |p: &str, a: Option<u16>, s: Option<&str>| SecurityRule {
        protocol: p.into(),
        from_port: a,
        to_port: a,
        source: s.map(str::to_string),
    };
    let ports_before = ids(&official(&b, &["port", "list"]));

    let s = d.ensure_subnet(&spec("DefaultSubnet", "10.0.1.0/24")).await.unwrap();
    assert_eq!(d.ensure_subnet(&spec("DefaultSubnet", "10.0.1.0/24")).await.unwrap(), s, "get-or-create");
    let net = b.openstack_json(&["network", "show", &s.id]);
    assert_eq!(net["description"], polyvisor_openstack::l3::mark(&owner), "{net}");
    let subnets = official(&b, &["subnet", "list", "--network", &s.id]);
    assert_eq!(subnets.len(), 1, "{subnets:?}");
    assert_eq!(subnets[0]["Subnet"], "10.0.1.0/24");
    let e = d.ensure_subnet(&spec("DefaultSubnet", "10.0.9.0/24")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert_eq!(d.ensure_subnet(&spec("Bad", "10.0.0.0/31")).await.unwrap_err().kind(), ErrorKind::InvalidInput);

    let vm = create_and_wait(&d, &create_spec(&raw, &format!("pvt-l3-{pid}"), Vec::new())).await;
    let nic = d.connect_subnet(&vm, &s.id).await.unwrap();
    assert_eq!(d.connect_subnet(&vm, &s.id).await.unwrap().mac, nic.mac, "idempotent");
    assert!(nic.ipv4.iter().any(|ip| ip.starts_with("10.0.1.")), "{nic:?}");
    let ports = official(&b, &["port", "list", "--server", vm.as_str(), "--network", &s.id]);
    assert_eq!(ports.len(), 1, "{ports:?}");
    let port = b.openstack_json(&["port", "show", ports[0]["ID"].as_str().unwrap()]);
    let names = polyvisor_openstack::l3::Names::of(&owner, "DefaultSubnet");
    let group = b.openstack_json(&["security", "group", "show", &names.group]);
    assert_eq!(port["security_group_ids"], serde_json::json!([group["id"]]), "{port}");
    let g = d.get_guest(&vm).await.unwrap();
    assert!(g.nics.iter().any(|n| n.mac.eq_ignore_ascii_case(&nic.mac)), "Nova lists the interface: {:?}", g.nics);
    for bad in ["pv-net", "not-a-uuid", "00000000-0000-4000-8000-000000000000"] {
        assert_eq!(d.connect_subnet(&vm, bad).await.unwrap_err().kind(), ErrorKind::NotFound, "{bad}");
    }
    // The project's own flat network is not a polyvisor subnet either.
    let pv_net = b.openstack_json(&["network", "show", "pv-net"]);
    let e = d.connect_subnet(&vm, pv_net["id"].as_str().unwrap()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");

    let ingress = |b: &Backend| -> Vec<(String, String, String)> {
        let mut v: Vec<(String, String, String)> =
            official(b, &["security", "group", "rule", "list", &names.group, "--ingress"])
                .iter()
                .filter(|r| r["Ethertype"] == "IPv4")
                .map(|r| {
                    let s = |k: &str| r[k].as_str().map(str::to_string).unwrap_or_else(|| r[k].to_string());
                    (s("IP Protocol"), s("Port Range"), s("IP Range"))
                })
                .collect();
        v.sort();
        v
    };
    d.set_security_rules(&vm, &s.id, &[rule("tcp", Some(22), Some("10.0.5.7"))]).await.unwrap();
    let with_ssh = ingress(&b);
    assert_eq!(with_ssh.len(), 2, "the subnet's own rule and ssh: {with_ssh:?}");
    assert!(with_ssh.iter().any(|r| r.0 == "tcp" && r.1 == "22:22" && r.2 == "10.0.5.7/32"), "{with_ssh:?}");
    assert!(with_ssh.iter().any(|r| r.2 == "10.0.1.0/24"), "{with_ssh:?}");
    d.set_security_rules(&vm, &s.id, &[rule("udp", Some(53), None), rule("icmp", None, Some("192.168.0.0/16"))])
        .await
        .unwrap();
    let now = ingress(&b);
    assert_eq!(now.len(), 3, "{now:?}");
    assert!(!now.iter().any(|r| r.0 == "tcp"), "ssh was replaced: {now:?}");
    let bad = SecurityRule { protocol: "tcp".into(), from_port: Some(30), to_port: Some(20), source: None };
    assert_eq!(d.set_security_rules(&vm, &s.id, &[bad]).await.unwrap_err().kind(), ErrorKind::InvalidInput);
    assert_eq!(ingress(&b), now, "a bad rule changes nothing");
    let other = d.ensure_subnet(&spec("Other", "10.0.2.0/24")).await.unwrap();
    let e = d.set_security_rules(&vm, &other.id, &[]).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");

    // Clean-up with the guest still there: its port goes (Nova drops the interface).
    assert_eq!(d.delete_subnets(&owner).await.unwrap(), 2);
    assert_eq!(d.delete_subnets(&owner).await.unwrap(), 0, "a retry finds nothing");
    let left = official(&b, &["network", "list", "--name", &names.network]);
    assert!(left.is_empty(), "{left:?}");
    assert!(official(&b, &["security", "group", "list"]).iter().all(|g| g["Name"] != names.group.as_str()));
    done(&d, &d.delete_guest(&vm).await.unwrap()).await;
    assert_eq!(ids(&official(&b, &["port", "list"])), ports_before, "official client: no port left");
}
