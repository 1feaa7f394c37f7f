//! `polyvisor check ras` at every RAS template level the OpenStack driver advertises, on the
//! real loopback OpenStack of the backend contract (`scripts/ci/start-openstack.sh`):
//! flagged templates with clone-from-snapshot (Glance images) and no linked clones, so the
//! levels are `versioning` (run by `crates/cli/tests/backends.rs`), `basic` and `none` (link
//! clones are not advertised: `basic` + `--link-clones` is clamped to `basic` by the front,
//! measured once at ~2 min and left out of CI to save its time).
//! Around each run the official client (`openstack server/image/port list`, Debian
//! python3-openstackclient) is compared: after the run it lists exactly what it listed before
//! (nothing the harness made is left: server, Glance image, Neutron port), and its server list
//! agrees with the driver's `list_guests`.
//! Needs the `polyvisor` binary (`cargo build -p polyvisor --all-features`; `cargo test
//! --workspace` builds it). A missing contract fails (naming the script); nothing is skipped.

use polyvisor_test_support::backend::Backend;
use polyvisor_test_support::bin;
use polyvisor_test_support::harness::RasCheck;
use serde_json::Value;
use std::time::Duration;

/// One harness at a time on the shared cloud (a single fake compute host).
static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// What the official client lists: (servers, images, ports).
fn official_view(b: &Backend) -> (Vec<String>, Vec<String>, Vec<String>) {
    (b.openstack_ids("server"), b.openstack_ids("image"), b.openstack_ids("port"))
}

fn check_ras(level: &str) -> String {
    let _one = ONE.lock().unwrap_or_else(|p| p.into_inner());
    let b = Backend::load("openstack").unwrap_or_else(|e| panic!("{e}"));
    let before = official_view(&b);
    let exe = bin::built("polyvisor");
    let run = RasCheck {
        bin: &exe,
        driver: "openstack",
        settings: b.settings_json(),
        guest: &b.source_guest,
        ras_args: vec!["--template-method".into(), level.into()],
        bound: Duration::from_secs(600),
    }
    .run();
    run.assert_passed(&format!("at {level} on driver=openstack"), Some(level), &b.secrets());
    let stdout = run.stdout;
    let after = official_view(&b);
    assert_eq!(after, before, "official client: the harness left a server, image or port behind");
    // The official client and the driver agree on the servers.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let d = polyvisor_openstack::open_driver(
        &polyvisor_core::Settings::from_json(&Value::Object(b.settings.clone())).unwrap(),
    )
    .unwrap();
    let mut mine: Vec<String> =
        rt.block_on(polyvisor_core::Driver::list_guests(&d)).unwrap().into_iter().map(|g| g.id.0).collect();
    mine.sort();
    assert_eq!(mine, after.0, "driver list_guests vs openstack server list");
    stdout
}

#[test]
fn check_ras_passes_at_level_basic() {
    let out = check_ras("basic");
    assert!(out.contains("PASS  flows/CreateHost"), "{out}");
}

#[test]
fn check_ras_passes_at_level_none() {
    check_ras("none");
}
