//! The stand-in's traffic checked by Microsoft's validator: a driver scenario runs against a
//! private stand-in that records every ARM request/response pair (oav's traffic format), and
//! `oav validate-traffic` (npm `oav`, pinned in `testing/azure/package.json`) validates the
//! pairs for which the official spec files are in the repository
//! (`testing/azure/specs/`, see its ORIGIN.md: DiskRP 2024-03-02 disks and snapshots,
//! GalleryRP 2023-07-03 galleries, image definitions and versions, ComputeRP 2024-07-01
//! virtual machines, Network 2024-03-01 network interfaces) against them.
//! A violation fails the test; a deliberately wrong payload proves the check can fail.
//! Every recorded pair is accounted for: validated, or the documented exclusion
//! (operation-status URLs: no spec defines them); any other kind fails.
//! A missing oav fails with the install command; nothing is skipped.

mod common;

use common::{wait, StandIn};
use polyvisor_core::{CloneMode, CloneSpec, Driver, GuestId, PowerAction, SnapshotSpec};
use polyvisor_test_support::{bin, temp};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// ComputeRP 2024-07-01: virtualMachine.json (+ computeRPCommon.json).
const COMPUTE_RP: &str =
    "testing/azure/specs/specification/compute/resource-manager/Microsoft.Compute/ComputeRP/stable/2024-07-01";
/// GalleryRP 2023-07-03: gallery.json (+ galleryRPCommon.json).
const GALLERY_RP: &str =
    "testing/azure/specs/specification/compute/resource-manager/Microsoft.Compute/GalleryRP/stable/2023-07-03";
/// Network 2024-03-01: networkInterface.json (+ the 15 Network files it $refs).
const NETWORK: &str = "testing/azure/specs/specification/network/resource-manager/Microsoft.Network/stable/2024-03-01";
/// DiskRP 2024-03-02: disk.json, snapshot.json (+ diskRPCommon.json they reference).
const DISK_RP: &str =
    "testing/azure/specs/specification/compute/resource-manager/Microsoft.Compute/DiskRP/stable/2024-03-02";

fn oav() -> PathBuf {
    let oav = bin::repo_path("testing/azure/node_modules/.bin/oav");
    assert!(
        oav.exists(),
        "Microsoft's oav is missing: npm ci --prefix testing/azure (scripts/ci/start-azure.sh does it)"
    );
    oav
}

/// Runs `oav validate-traffic` over `traffic` against `spec`; returns its JSON report.
fn validate(traffic: &Path, spec: &str, report_dir: &Path) -> Value {
    let report = report_dir.join(format!("report-{}.json", traffic.file_name().unwrap().to_string_lossy()));
    let t0 = Instant::now();
    let out = Command::new("timeout")
        .arg("300")
        .arg(oav())
        .arg("validate-traffic")
        .arg(traffic)
        .arg(bin::repo_path(spec))
        .arg("--jsonReport")
        .arg(&report)
        // oav 4.0.3 also renders an HTML report whose template its npm package lacks; that
        // failure is after validation and does not touch the JSON report.
        .arg("--report")
        .arg(report_dir.join("report.html"))
        .output()
        .expect("oav");
    assert!(t0.elapsed() < Duration::from_secs(300), "oav exceeded 300 s");
    let text = std::fs::read_to_string(&report).unwrap_or_else(|_| {
        panic!(
            "oav wrote no report:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    serde_json::from_str(&text).unwrap()
}

/// The recorded pairs whose operations the spec files describe, copied to `to`.
fn select(from: &Path, to: &Path, path_parts: &[&str]) -> usize {
    std::fs::create_dir_all(to).unwrap();
    let mut n = 0;
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        let url = v.pointer("/liveRequest/url").and_then(Value::as_str).unwrap_or_default();
        let path = url.split('?').next().unwrap_or_default();
        if path_parts.iter().any(|part| path.to_ascii_lowercase().contains(part)) {
            std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
            n += 1;
        }
    }
    n
}

/// Copies the first pair of `traffic` whose response body has `properties.<field>`, with
/// that field replaced by `wrong`, and asserts oav flags it against `spec` (a response
/// `INVALID_TYPE`): the validation can fail.
fn assert_flags_a_wrong_type(traffic: &Path, spec: &str, field: &str, wrong: Value, report_dir: &Path) {
    let bad = report_dir.join(format!("bad-{field}"));
    std::fs::create_dir_all(&bad).unwrap();
    let pointer = format!("/liveResponse/body/properties/{field}");
    let broke = std::fs::read_dir(traffic).unwrap().map(|e| e.unwrap().path()).find_map(|p| {
        let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        *v.pointer_mut(&pointer)? = wrong.clone();
        std::fs::write(bad.join(p.file_name().unwrap()), v.to_string()).unwrap();
        Some(())
    });
    assert!(broke.is_some(), "no response body with properties.{field} to corrupt");
    let r = validate(&bad, spec, report_dir);
    let errors = r["errors"].as_array().cloned().unwrap_or_default();
    assert!(
        errors.iter().any(|e| e["errorCode"] == "INVALID_TYPE" && e["issueSource"] == "response"),
        "oav must flag the wrong properties.{field}: {r:#}"
    );
}

/// The pairs validated above (URL path fragments, lower case): DiskRP, GalleryRP,
/// ComputeRP, Network.
const VALIDATED: &[&str] = &[
    "/providers/microsoft.compute/snapshots",
    "/providers/microsoft.compute/disks",
    "/providers/microsoft.compute/galleries",
    "/providers/microsoft.compute/virtualmachines",
    "/providers/microsoft.network/networkinterfaces",
];

/// Recorded pairs that no spec file describes, counted.
#[derive(Debug, Default)]
struct Excluded {
    /// The `Azure-AsyncOperation`/`Location` status URLs ARM hands out
    /// (`.../providers/<ns>/locations/<loc>/operations/<id>`): no spec defines a path for them.
    operation_status: usize,
}

/// Every recorded pair is either one the validations below select or the documented
/// exclusion (operation-status URLs); a pair of any other kind (a new route in the stand-in or a new call
/// in the driver) fails the test instead of silently escaping validation.
fn account_for_every_pair(raw: &Path) -> Excluded {
    let mut ex = Excluded::default();
    let mut unknown = Vec::new();
    let mut total = 0;
    for e in std::fs::read_dir(raw).unwrap() {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(e.unwrap().path()).unwrap()).unwrap();
        total += 1;
        let url = v.pointer("/liveRequest/url").and_then(Value::as_str).unwrap_or_default();
        let path = url.split('?').next().unwrap_or_default().to_ascii_lowercase();
        let segs: Vec<&str> = path.split('/').collect();
        let op_status = segs.len() >= 4 && segs[segs.len() - 2] == "operations" && segs[segs.len() - 4] == "locations";
        if VALIDATED.iter().any(|part| path.contains(part)) && !op_status {
            continue;
        }
        if op_status
            && (path.contains("/providers/microsoft.compute/") || path.contains("/providers/microsoft.network/"))
        {
            ex.operation_status += 1;
        } else {
            unknown.push(format!("{} {url}", v.pointer("/liveRequest/method").and_then(Value::as_str).unwrap_or("?")));
        }
    }
    assert!(total > 0, "the stand-in recorded nothing");
    assert!(unknown.is_empty(), "pairs neither validated nor a documented exclusion: {unknown:#?}");
    ex
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oav_validates_the_stand_in_vm_disk_snapshot_and_gallery_traffic_against_the_official_specs() {
    let _ = oav();
    let dir = temp::dir("azure-oav");
    let raw = dir.path().join("raw");
    std::fs::create_dir_all(&raw).unwrap();
    {
        let s = StandIn::start_recording(&raw);
        let d = s.driver();
        let g = |x: &str| GuestId::new(x);
        let snap = |n: &str| SnapshotSpec { name: n.into(), description: None, include_memory: false };
        // snapshot create (PUT + GETs while it provisions), list, clone from it, delete
        wait(&d, &d.create_snapshot(&g("pv-src"), &snap("v1")).await.unwrap()).await.unwrap();
        assert_eq!(d.list_snapshots(&g("pv-src")).await.unwrap().len(), 1);
        let st = d
            .clone_guest(&CloneSpec {
                source: g("pv-src"),
                name: "oav-c1".into(),
                snapshot: Some("v1".into()),
                mode: CloneMode::Full,
                start: false,
            })
            .await
            .unwrap();
        wait(&d, &st.task).await.unwrap();
        // VM reads and power actions (listing = group list + ListAll?statusOnly=true)
        assert!(d.list_guests().await.unwrap().iter().any(|x| x.name == "oav-c1"));
        d.get_guest(&g("oav-c1")).await.unwrap();
        wait(&d, &d.power(&g("oav-c1"), PowerAction::Start).await.unwrap()).await.unwrap();
        wait(&d, &d.power(&g("oav-c1"), PowerAction::Reboot).await.unwrap()).await.unwrap();
        wait(&d, &d.power(&g("oav-c1"), PowerAction::Stop).await.unwrap()).await.unwrap();
        let po = s.driver_with(serde_json::json!({"stop_mode": "power_off"}));
        wait(&po, &po.power(&g("oav-c1"), PowerAction::Start).await.unwrap()).await.unwrap();
        wait(&po, &po.power(&g("oav-c1"), PowerAction::Stop).await.unwrap()).await.unwrap();
        // revert swaps the OS disk with a VM PATCH
        wait(&d, &d.create_snapshot(&g("oav-c1"), &snap("s1")).await.unwrap()).await.unwrap();
        wait(&d, &d.revert_snapshot(&g("oav-c1"), "s1").await.unwrap()).await.unwrap();
        wait(&d, &d.delete_guest(&g("oav-c1")).await.unwrap()).await.unwrap();
        wait(&d, &d.delete_snapshot(&g("pv-src"), "v1").await.unwrap()).await.unwrap();
        // a template (gallery + image definition made), a version, a clone from it, cleanup
        wait(&d, &d.set_template(&g("pv-src"), true).await.unwrap()).await.unwrap();
        wait(&d, &d.create_snapshot(&g("pv-src"), &snap("RAS_TEMPLATE_VERSION_1")).await.unwrap()).await.unwrap();
        assert_eq!(d.list_snapshots(&g("pv-src")).await.unwrap().len(), 1);
        let st = d
            .clone_guest(&CloneSpec {
                source: g("pv-src"),
                name: "oav-c2".into(),
                snapshot: Some("RAS_TEMPLATE_VERSION_1".into()),
                mode: CloneMode::Full,
                start: false,
            })
            .await
            .unwrap();
        wait(&d, &st.task).await.unwrap();
        wait(&d, &d.delete_guest(&g("oav-c2")).await.unwrap()).await.unwrap();
        wait(&d, &d.delete_snapshot(&g("pv-src"), "RAS_TEMPLATE_VERSION_1").await.unwrap()).await.unwrap();
        wait(&d, &d.set_template(&g("pv-src"), false).await.unwrap()).await.unwrap();
    }
    let excluded = account_for_every_pair(&raw);
    let snaps = dir.path().join("diskrp");
    let n = select(&raw, &snaps, &["/providers/microsoft.compute/snapshots", "/providers/microsoft.compute/disks"]);
    assert!(n >= 8, "the scenario recorded {n} disk and snapshot pairs");
    let r = validate(&snaps, DISK_RP, dir.path());
    eprintln!("oav: {n} disk and snapshot pairs, passed: {}", r["passedOperationsList"]);
    // The one accepted finding: DiskRP's spec defines no error responses at all (no
    // `default`), while ARM answers a GET of a missing disk/snapshot with 404 + CloudError
    // (what the SDK turns into ResourceNotFoundError); the driver relies on that 404. Any
    // other finding fails.
    let errors = r["errors"].as_array().cloned().unwrap_or_default();
    let (undocumented_404, violations): (Vec<Value>, Vec<Value>) = errors.into_iter().partition(|e| {
        e["errorCode"] == "INVALID_RESPONSE_CODE"
            && e["errorMessage"].as_str().is_some_and(|m| m.contains("'404'"))
            && e["operationId"].as_str().is_some_and(|o| o.ends_with("_Get"))
    });
    assert!(violations.is_empty(), "oav found violations: {violations:#?}\n{r:#}");
    eprintln!("oav: {} GET 404s (DiskRP defines no error responses)", undocumented_404.len());
    let covered = r["coveredOperations"].as_u64().unwrap_or(0);
    assert!(covered >= 6, "disk and snapshot PUT, GET, list and DELETE are covered: {r:#}");

    // Gallery traffic (galleries, image definitions, image versions) against GalleryRP,
    // which defines error responses (`default`: CloudError): no finding is accepted.
    let gallery = dir.path().join("galleryrp");
    let n = select(&raw, &gallery, &["/providers/microsoft.compute/galleries"]);
    assert!(n >= 8, "the scenario recorded {n} gallery pairs");
    let r = validate(&gallery, GALLERY_RP, dir.path());
    eprintln!("oav: {n} gallery pairs, passed: {}", r["passedOperationsList"]);
    assert_eq!(r["errors"], Value::Array(vec![]), "oav found violations: {r:#}");
    assert_eq!(r["failedOperations"], 0, "{r:#}");
    let covered = r["coveredOperations"].as_u64().unwrap_or(0);
    assert!(covered >= 7, "gallery, image and version operations are covered: {r:#}");

    // VM traffic (list, ListAll?statusOnly=true, get, create, update, delete, start,
    // deallocate, powerOff, restart) against ComputeRP (defines `default`: CloudError).
    let vms = dir.path().join("computerp");
    let n = select(&raw, &vms, &["/providers/microsoft.compute/virtualmachines"]);
    assert!(n >= 15, "the scenario recorded {n} VM pairs");
    let r = validate(&vms, COMPUTE_RP, dir.path());
    eprintln!("oav: {n} VM pairs, passed: {}", r["passedOperationsList"]);
    assert_eq!(r["errors"], Value::Array(vec![]), "oav found violations: {r:#}");
    assert_eq!(r["failedOperations"], 0, "{r:#}");
    let covered = r["coveredOperations"].as_u64().unwrap_or(0);
    assert!(covered >= 9, "VM operations are covered: {r:#}");

    // NIC traffic (create with the platform's MAC, get, list, delete) against Network
    // 2024-03-01 (defines `default`: CloudError): no finding is accepted.
    let nics = dir.path().join("network");
    let n = select(&raw, &nics, &["/providers/microsoft.network/networkinterfaces"]);
    assert!(n >= 2, "the scenario recorded {n} NIC pairs");
    let r = validate(&nics, NETWORK, dir.path());
    eprintln!("oav: {n} NIC pairs, passed: {}", r["passedOperationsList"]);
    assert_eq!(r["errors"], Value::Array(vec![]), "oav found violations: {r:#}");
    assert_eq!(r["failedOperations"], 0, "{r:#}");
    let covered = r["coveredOperations"].as_u64().unwrap_or(0);
    assert!(covered >= 2, "NIC create/get/delete are covered: {r:#}");
    // The Network files can fail a pair too: a NIC answer whose ipConfigurations is no list.
    assert_flags_a_wrong_type(&nics, NETWORK, "ipConfigurations", Value::String("ipconfig1".into()), dir.path());

    eprintln!(
        "oav: not validated (no spec defines a path for them): {} operation-status pairs",
        excluded.operation_status
    );

    // The check can fail: the same traffic with one response field of the wrong type.
    assert_flags_a_wrong_type(&snaps, DISK_RP, "diskSizeGB", Value::String("thirty".into()), dir.path());
}

/// The accounting can fail: a pair of a kind no validation selects (here a virtual network,
/// which the driver never calls) is reported, next to NIC and operation-status pairs.
#[test]
#[should_panic(expected = "neither validated nor a documented exclusion")]
fn a_pair_neither_validated_nor_excluded_fails_the_accounting() {
    let dir = temp::dir("azure-oav-accounting");
    let base = "https://127.0.0.1:1/subscriptions/s/resourceGroups/rg/providers";
    let urls = [
        format!("{base}/Microsoft.Network/networkInterfaces/n1?api-version=2024-03-01"),
        format!("{base}/Microsoft.Network/networkInterfaces/n2?api-version=2024-03-01"),
        "https://127.0.0.1:1/subscriptions/s/providers/Microsoft.Compute/locations/l/operations/o?api-version=2024-07-01"
            .to_string(),
        format!("{base}/Microsoft.Compute/virtualMachines/vm?api-version=2024-07-01"),
        format!("{base}/Microsoft.Network/virtualNetworks/vnet?api-version=2024-03-01"),
    ];
    for (i, url) in urls.iter().enumerate() {
        let pair = serde_json::json!({"liveRequest": {"method": "GET", "url": url, "headers": {}},
                                      "liveResponse": {"statusCode": "200", "headers": {}}});
        std::fs::write(dir.path().join(format!("{i:06}-get.json")), pair.to_string()).unwrap();
    }
    account_for_every_pair(dir.path());
}
