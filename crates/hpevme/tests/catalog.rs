//! Creates from the provisioning catalog (`POST /api/instances`) against the stand-in: the
//! `cloud`, `instance_type`, `layout` and `plan` settings resolved by name, code or id through
//! the API once per process, the plan chosen by CPU and memory, template and ISO virtual
//! images, a retry adopting its instance, everything validated before any request, the
//! console declared and answered as not supported, and not one request or response outside
//! the OpenAPI description. Round trips per create are asserted.

mod common;

use common::{wait, StandIn};
use polyvisor_core::{CreateSource, CreateSpec, Driver, ErrorKind, GuestId, NicSpec, PowerState, Settings};
use polyvisor_hpevme::open_driver;
use serde_json::{json, Value};

fn settings(s: &StandIn, extra: Value) -> Settings {
    let mut v = json!({"url": s.url, "access_token": s.token, "ca_file": s.ca_file});
    v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    Settings::from_json(&v).unwrap()
}

fn spec(name: &str, key: &str, source: CreateSource, cpus: Option<u32>, memory_mb: Option<u64>) -> CreateSpec {
    CreateSpec {
        name: name.into(),
        key: key.into(),
        source,
        cpus,
        memory_mb,
        disk_size_gb: None,
        storage: None,
        nics: vec![],
    }
}

fn image(id: &str) -> CreateSource {
    CreateSource::Template { id: GuestId::new(id), full: true }
}

fn iso(path: &str) -> CreateSource {
    CreateSource::Iso { path: path.into(), os_type: None }
}

async fn provisioned(s: &StandIn, id: &GuestId) -> Value {
    s.control(&format!("provisioned/{}", id.as_str()), None).await["provisioned"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_from_the_catalog() {
    let s = StandIn::start();
    let by_name = settings(
        &s,
        json!({"group": "polyvisor-ci", "cloud": "vme-cluster", "instance_type": "HPE VM", "layout": "Single HPE VM"}),
    );
    let d = open_driver(&by_name).unwrap();

    // --- validated before any request
    for bad in [
        spec("bad name/x", "i-1-1-VM", image("ubuntu-22.04"), None, None),
        spec("ok-name", "", image("ubuntu-22.04"), None, None),
        spec("ok-name", "i-1-1-VM", image("ubuntu-22.04"), Some(0), None),
        spec("ok-name", "i-1-1-VM", image("ubuntu-22.04"), None, Some(1)),
        spec("ok-name", "i-1-1-VM", iso(" "), None, None),
        CreateSpec { disk_size_gb: Some(0), ..spec("ok-name", "i-1-1-VM", image("ubuntu-22.04"), None, None) },
    ] {
        let e = d.create_guest(&bad).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad:?}: {e}");
    }
    assert_eq!(d.round_trips(), 0, "nothing sent for an invalid create");

    // --- from a template image, by names; the plan is the smallest that fits 2 CPUs / 2 GiB
    let cs =
        CreateSpec { disk_size_gb: Some(20), ..spec("cat-1", "i-2-71-VM", image("ubuntu-22.04"), Some(2), Some(2048)) };
    let started = d.create_guest(&cs).await.unwrap();
    assert_eq!(
        d.round_trips(),
        8,
        "first create: group + cloud + instance type + layouts + plans (once per process), same-name listing + image + POST"
    );
    let made = started.new_guest.clone().expect("the create answer names the instance");
    let out = wait(&d, &started.task).await.unwrap();
    assert_eq!(out.new_guest.as_ref(), Some(&made));
    let g = d.get_guest(&made).await.unwrap();
    assert_eq!(
        (g.name.as_str(), g.power, g.cpus, g.memory_mb, g.key.as_deref(), g.os.as_deref()),
        ("cat-1", PowerState::PoweredOn, Some(2), Some(4096), Some("i-2-71-VM"), Some("mvm"))
    );
    assert!(!g.ipv4_addresses().is_empty());
    let p = provisioned(&s, &made).await;
    assert_eq!(p["imageId"], 80, "the template image is config.imageId");
    assert_eq!(p["volumes"][0]["size"], 20);
    assert_eq!(d.find_owned("i-2-71-VM", Some(&made)).await.unwrap().unwrap().id, made);

    // --- a retry adopts it (same name and key); another key under that name is refused
    let n0 = d.round_trips();
    let again = d.create_guest(&cs).await.unwrap();
    assert_eq!(d.round_trips() - n0, 1, "a retry: the same-name listing only");
    assert_eq!(again.new_guest.as_ref(), Some(&made));
    wait(&d, &again.task).await.unwrap();
    let other = CreateSpec { key: "i-2-99-VM".into(), ..cs.clone() };
    assert_eq!(d.create_guest(&other).await.unwrap_err().kind(), ErrorKind::AlreadyExists);
    let foreign = spec("web-01", "i-2-98-VM", image("ubuntu-22.04"), None, None);
    assert_eq!(d.create_guest(&foreign).await.unwrap_err().kind(), ErrorKind::AlreadyExists);

    // --- from an ISO (an `iso` virtual image): done when running, no address awaited
    let n0 = d.round_trips();
    let started =
        d.create_guest(&spec("iso-1", "i-2-72-VM", iso("debian-12-netinst.iso"), Some(1), None)).await.unwrap();
    assert_eq!(d.round_trips() - n0, 3, "later creates: same-name listing + image + POST");
    let from_iso = started.new_guest.clone().unwrap();
    wait(&d, &started.task).await.unwrap();
    assert_eq!(provisioned(&s, &from_iso).await["imageId"], 81);
    let g = d.get_guest(&from_iso).await.unwrap();
    assert_eq!((g.power, g.cpus, g.memory_mb), (PowerState::PoweredOn, Some(1), Some(1024)));
    // images must be of the right kind, and exist
    let e = d.create_guest(&spec("x-1", "i-2-73-VM", image("debian-12-netinst.iso"), None, None)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let e = d.create_guest(&spec("x-1", "i-2-73-VM", iso("ubuntu-22.04"), None, None)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let e = d.create_guest(&spec("x-1", "i-2-73-VM", iso("99999"), None, None)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let e = d.create_guest(&spec("x-1", "i-2-73-VM", image("ubuntu-22.04"), Some(16), None)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "no plan has 16 cores: {e}");

    // --- NICs on the cloud's networks: by name and by VLAN (one networks read)
    let nic = |network: Option<&str>, vlan: Option<u32>| NicSpec {
        mac: Some("02:00:00:00:00:01".into()),
        vlan,
        network: network.map(str::to_string),
    };
    let with_nics = CreateSpec {
        nics: vec![nic(Some("vm-lan"), None), nic(None, Some(100))],
        ..spec("net-1", "i-2-78-VM", image("ubuntu-22.04"), None, None)
    };
    let n0 = d.round_trips();
    let started = d.create_guest(&with_nics).await.unwrap();
    assert_eq!(d.round_trips() - n0, 4, "same-name listing + image + networks + POST");
    let netted = started.new_guest.clone().unwrap();
    wait(&d, &started.task).await.unwrap();
    let ifs = provisioned(&s, &netted).await["networkInterfaces"].clone();
    assert_eq!(ifs[0]["network"]["id"], "network-90");
    assert_eq!(ifs[1]["network"]["id"], "network-91");
    for bad in
        [vec![nic(None, Some(200))], vec![nic(Some("nope"), None)], vec![nic(Some("vm-lan"), None), nic(None, None)]]
    {
        let e = d.create_guest(&CreateSpec { nics: bad, ..spec("net-2", "i-2-80-VM", image("80"), None, None) }).await;
        assert_eq!(e.unwrap_err().kind(), ErrorKind::InvalidInput);
    }
    let n0 = d.round_trips();
    let e = d
        .create_guest(&CreateSpec {
            nics: vec![nic(None, Some(5000))],
            ..spec("net-2", "i-2-80-VM", image("80"), None, None)
        })
        .await;
    assert_eq!(
        (e.unwrap_err().kind(), d.round_trips() - n0),
        (ErrorKind::InvalidInput, 0),
        "an impossible VLAN: no request"
    );

    // --- a provisioning that fails: the task fails with the reason from the instance's history
    s.control("fail-provision", Some(json!({"error": "no host has enough free memory"}))).await;
    let started = d.create_guest(&spec("bad-1", "i-2-77-VM", image("ubuntu-22.04"), None, None)).await.unwrap();
    let failed = started.new_guest.clone().unwrap();
    let e = wait(&d, &started.task).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Backend, "{e}");
    assert!(e.message().contains("no host has enough free memory"), "{e}");
    assert_eq!(d.find_owned("i-2-77-VM", None).await.unwrap().unwrap().id, failed, "found by key to be deleted");
    wait(&d, &d.delete_guest(&failed).await.unwrap()).await.unwrap();

    // --- by ids and codes, with a configured plan
    let by_id = open_driver(&settings(
        &s,
        json!({"group": "1", "cloud": "5", "instance_type": "mvm", "layout": "60", "plan": "mvm-4cpu-8gb"}),
    ))
    .unwrap();
    let started = by_id.create_guest(&spec("cat-2", "i-2-74-VM", image("80"), None, None)).await.unwrap();
    let by_ids = started.new_guest.clone().unwrap();
    wait(&by_id, &started.task).await.unwrap();
    assert_eq!(by_id.get_guest(&by_ids).await.unwrap().cpus, Some(4), "the configured plan");
    let n0 = by_id.round_trips();
    let e = by_id.create_guest(&spec("cat-3", "i-2-75-VM", image("80"), Some(8), None)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert_eq!(by_id.round_trips(), n0, "refused before any request (the catalog is resolved once)");

    // --- settings that name nothing are clear errors
    for (extra, says) in [
        (json!({"cloud": "nope"}), "'cloud'"),
        (json!({"cloud": "99"}), "'cloud'"),
        (json!({"instance_type": "nope"}), "'instance_type'"),
        (json!({"layout": "62"}), "'layout'"),
        (json!({"layout": null}), "layouts"),
        (json!({"plan": "nope"}), "'plan'"),
        (json!({"group": "nope"}), "'group'"),
    ] {
        let mut v = json!({"group": "polyvisor-ci", "cloud": "vme-cluster", "instance_type": "HPE VM",
            "layout": "Single HPE VM"});
        for (k, x) in extra.as_object().unwrap() {
            if x.is_null() {
                v.as_object_mut().unwrap().remove(k);
            } else {
                v[k] = x.clone();
            }
        }
        let bad = open_driver(&settings(&s, v)).unwrap();
        let e = bad.create_guest(&spec("cat-9", "i-2-79-VM", image("80"), None, None)).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{extra}: {e}");
        assert!(e.message().contains(says), "{extra}: {e}");
    }

    // --- without the catalog settings: an ISO create is not supported (no request)
    let plain = open_driver(&s.token_settings()).unwrap();
    let e =
        plain.create_guest(&spec("iso-2", "i-2-76-VM", iso("debian-12-netinst.iso"), None, None)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert_eq!(plain.round_trips(), 0);

    // --- console: the Morpheus API has no console endpoint; declared and answered so
    assert!(d.capabilities().consoles.is_empty());
    assert_eq!(d.console(&made).await.unwrap_err().kind(), ErrorKind::Unsupported);

    // --- clean up: delete leaves nothing
    for id in [&made, &from_iso, &by_ids, &netted] {
        wait(&d, &d.delete_guest(id).await.unwrap()).await.unwrap();
        assert_eq!(d.get_guest(id).await.unwrap_err().kind(), ErrorKind::NotFound);
    }
    let left: Vec<String> = d.list_guests().await.unwrap().into_iter().map(|g| g.name).collect();
    assert_eq!(left, ["base-vm", "tpl-ubuntu", "web-01"]);
    assert!(s.requests().await.iter().filter(|(m, p)| m == "POST" && p == "/api/instances").count() == 5);
    assert_eq!(s.violations().await, Vec::<Value>::new());
}
