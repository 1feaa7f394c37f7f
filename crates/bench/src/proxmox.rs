//! Proxmox figures against the real `fakepve` simulator with instant tasks: wall time and
//! API round trips per RAS method (one long-lived provider process, as RAS runs it) and per
//! CloudStack action (one process per action). Round trips are counted by fakepve itself.

use crate::ras::Provider;
use crate::stats::median_p95_ms;
use crate::Figure;
use polyvisor_test_support::fakepve::{FakePve, TOKEN_SECRET};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

/// fakepve through the shared launcher wrapper (`polyvisor_test_support::fakepve`) with
/// the bench's guests: a flag template 9000 and a running VM 100 with agent IPs.
fn start_fakepve(launcher: &Path) -> Result<FakePve, String> {
    let guests = json!({"guests": [
        {"vmid": 9000, "name": "tpl-debian", "status": "stopped", "tags": "polyvisor-template",
         "config": {"cores": "2", "memory": "2048", "scsi0": "local-lvm:vm-9000-disk-0,size=8G", "net0": "virtio=BC:24:11:00:90:00,bridge=vmbr0", "ostype": "l26", "tags": "polyvisor-template"}},
        {"vmid": 100, "name": "web-01", "status": "running",
         "config": {"scsi0": "local-lvm:vm-100-disk-0,size=8G", "net0": "virtio=BC:24:11:00:01:00,bridge=vmbr0", "ostype": "l26", "agent": "1"},
         "agent": {"interfaces": [{"name": "eth0", "hardware-address": "bc:24:11:00:01:00", "ip-addresses": [{"ip-address": "192.0.2.50", "ip-address-type": "ipv4", "prefix": 24}]}]}}
    ]});
    // The wrapper panics with the install hint when fakepve cannot start: report it as an error.
    let launcher = launcher.to_path_buf();
    let mut pve = std::panic::catch_unwind(move || FakePve::start_with_launcher(&launcher, guests))
        .map_err(|_| "fakepve did not start (python3 -m pip install -r scripts/ci/requirements.txt)".to_string())?;
    pve.cmd(json!({"set": "time_scale", "value": 0}));
    Ok(pve)
}

/// Requests fakepve has seen so far.
fn requests(pve: &mut FakePve) -> Result<u64, String> {
    pve.cmd(json!({"requests": true})).as_u64().ok_or_else(|| "request count is not a number".into())
}

/// Driver settings (RAS keys) for this fakepve.
fn settings(pve: &FakePve) -> Value {
    json!({"driver": "proxmox", "host": pve.host_port(), "username": "root@pam", "token_name": "ci",
           "token_secret": TOKEN_SECRET, "fingerprint": pve.fingerprint, "ip_wait_timeout": "1"})
}

/// Times `runs` calls of `req` on one provider, counting fakepve requests.
fn ras_method(p: &mut Provider, pve: &mut FakePve, label: &str, req: &Value, runs: usize) -> Result<Figure, String> {
    let before = requests(pve)?;
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        p.call_json(req)?;
        samples.push(t.elapsed());
    }
    let trips = (requests(pve)? - before) as f64 / runs as f64;
    let (m, p95) = median_p95_ms(&mut samples);
    Ok(Figure::new(
        &format!("Proxmox RAS: {label}"),
        m,
        "ms",
        format!("median of {runs}; p95 {p95:.2} ms; {trips:.1} API round trips"),
    ))
}

fn cloudstack_payload(pve: &FakePve, vm: &str, with_nics: bool) -> Value {
    let s = settings(pve);
    let nics = if with_nics {
        json!([{"deviceId": 0, "defaultNic": true, "uuid": "nic-1", "mac": "02:01:00:cd:00:02", "broadcastUri": "vlan://1234"}])
    } else {
        json!([])
    };
    json!({
        "externaldetails": {
            "extension": {"driver": "proxmox", "url": s["host"], "user": "root@pam", "token": "ci", "secret": TOKEN_SECRET},
            "host": {"node": "pve1", "fingerprint": s["fingerprint"], "network_bridge": "vmbr0"},
            "virtualmachine": {"template_type": "template", "template_id": "9000", "ip_wait_timeout": "1"}
        },
        "virtualmachineid": format!("uuid-{vm}"),
        "virtualmachinename": vm,
        "cloudstack.vm.details": {"name": vm, "cpus": 1, "maxRam": 536870912u64, "minRam": 536870912u64,
                                   "details": {"deployvm": "true"}, "disks": [], "nics": nics, "uuid": format!("uuid-{vm}")}
    })
}

/// API round trips per CloudStack action through the real front (`polyvisor cloudstack
/// <action>`, one process per action, task waits included): (action, target, ceiling).
/// The target is the CloudStack bash script's count (issue 8); the ceiling is what polyvisor
/// is held to (the target where reached). The bench fails when a measured count exceeds
/// its ceiling; `crates/proxmox/tests/action_round_trips.rs` guards the same path at driver
/// level in `cargo test`. The payloads carry what CloudStack keeps after `prepare`: the
/// VMID it allocated (`proxmox_vmid`), so later actions find the VM at that VMID and verify
/// it is ours by its key. Where the script acts at the VMID without any check (start,
/// reboot, the snapshot actions) polyvisor takes one round trip more: that ownership read.
pub const ROUND_TRIP_BUDGET: &[(&str, u64, u64)] = &[
    ("prepare", 1, 1),
    ("create", 7, 7),
    ("status", 1, 1),
    ("stop", 3, 3),
    // The script's count is the POST and one task poll; polyvisor reads the VM at the VMID
    // first to prove it is ours (its key), which the script never checks: one more.
    ("start", 2, 3),
    ("reboot", 2, 3),
    ("getconsole", 2, 2),
    ("CreateSnapshot", 2, 3),
    ("ListSnapshots", 1, 2),
    ("RestoreSnapshot", 5, 5),
    ("DeleteSnapshot", 2, 3),
    ("delete", 3, 3),
];

/// `Err` naming every action whose measured round trips exceed the ceiling.
pub fn check_budget(measured: &[(&str, f64)]) -> Result<(), String> {
    let over: Vec<String> = measured
        .iter()
        .filter_map(|(action, n)| {
            let (_, target, ceiling) = ROUND_TRIP_BUDGET.iter().find(|(a, _, _)| a == action)?;
            (*n > *ceiling as f64).then(|| format!("{action}: {n:.1} round trips (ceiling {ceiling}, target {target})"))
        })
        .collect();
    if over.is_empty() {
        Ok(())
    } else {
        Err(format!("Proxmox round trips regressed: {}", over.join("; ")))
    }
}

/// Runs the Proxmox benchmarks.
pub fn run(bin: &Path, dir: &Path, launcher: &Path, runs: usize) -> Result<Vec<Figure>, String> {
    let mut pve = start_fakepve(launcher)?;
    let mut figures = Vec::new();
    let db = dir.join("unused-sim.db");

    let mut p = Provider::spawn(bin, &db)?;
    let connect = json!({"method": "provider/connect", "params": {"settings": settings(&pve)}});
    figures.push(ras_method(&mut p, &mut pve, "provider/connect", &connect, 1)?);
    for (label, req) in [
        ("guests/list", json!({"method": "guests/list"})),
        ("guests/get (running, agent IPs)", json!({"method": "guests/get", "params": {"id": "100"}})),
        ("guests/get (template)", json!({"method": "guests/get", "params": {"id": "9000"}})),
        (
            "guests/control start (already running)",
            json!({"method": "guests/control", "params": {"id": "100", "control": "start"}}),
        ),
        (
            "guests/snapshots/exists",
            json!({"method": "guests/snapshots/exists", "params": {"id": "9000", "name": "RAS_TEMPLATE_VERSION_1"}}),
        ),
        (
            "guests/convert (to current state)",
            json!({"method": "guests/convert", "params": {"id": "9000", "is_template": true}}),
        ),
    ] {
        figures.push(ras_method(&mut p, &mut pve, label, &req, runs)?);
    }
    let clone = p.call_json(
        &json!({"method": "guests/clone", "params": {"id": "9000", "name": "bench-clone", "snapshot": ""}}),
    )?;
    let task = clone["result"]["task_id"].as_str().ok_or("clone gave no task_id")?.to_string();
    figures.push(ras_method(
        &mut p,
        &mut pve,
        "tasks/get (clone task)",
        &json!({"method": "tasks/get", "params": {"id": task}}),
        runs.min(10),
    )?);
    p.finish();

    let mut measured: Vec<(&str, f64)> = Vec::new();
    // prepare: CloudStack keeps the details it answers in the VM's details map.
    let create_payload = cloudstack_payload(&pve, "i-2-77-VM", true);
    let prepare = dir.join("pve-prepare.json");
    std::fs::write(&prepare, create_payload.to_string()).map_err(|e| e.to_string())?;
    let before = requests(&mut pve)?;
    let t = Instant::now();
    let out = Command::new(bin)
        .args(["cloudstack", "prepare"])
        .arg(&prepare)
        .arg("60")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    let mut samples = vec![t.elapsed()];
    let patch: Value = serde_json::from_slice(&out.stdout)
        .map_err(|_| format!("cloudstack prepare on proxmox: {}", String::from_utf8_lossy(&out.stdout)))?;
    let details = patch["details"].as_object().cloned().ok_or_else(|| format!("prepare gave no details: {patch}"))?;
    if details.get("proxmox_vmid").and_then(Value::as_str).is_none() {
        return Err(format!("prepare did not report proxmox_vmid: {patch}"));
    }
    let trips = (requests(&mut pve)? - before) as f64;
    measured.push(("prepare", trips));
    let (m, _) = median_p95_ms(&mut samples);
    figures.push(Figure::new(
        "Proxmox CloudStack: prepare",
        m,
        "ms",
        format!("median of 1, process start → exit; {trips:.1} API round trips"),
    ));
    let with_details = |mut p: Value| {
        for (k, v) in &details {
            p["cloudstack.vm.details"]["details"][k] = v.clone();
        }
        p
    };
    let write = |name: &str, p: Value| -> Result<std::path::PathBuf, String> {
        let path = dir.join(name);
        std::fs::write(&path, p.to_string()).map_err(|e| e.to_string())?;
        Ok(path)
    };
    let status = write("pve-status.json", with_details(cloudstack_payload(&pve, "i-2-77-VM", false)))?;
    let create = write("pve-create.json", with_details(create_payload.clone()))?;
    let snap = |name: &str| {
        let mut p = with_details(cloudstack_payload(&pve, "i-2-77-VM", false));
        p["parameters"] = json!({"snap_name": "bench1"});
        write(name, p)
    };
    let snapshot = snap("pve-snapshot.json")?;
    for (action, file, n) in [
        ("create", &create, 1),
        ("status", &status, runs),
        ("stop", &status, runs),
        ("start", &create, 1),
        ("reboot", &create, 1),
        ("getconsole", &status, 1),
        ("CreateSnapshot", &snapshot, 1),
        ("ListSnapshots", &snapshot, 1),
        ("RestoreSnapshot", &snapshot, 1),
        ("DeleteSnapshot", &snapshot, 1),
        ("statuses", &status, runs),
        // CloudStack's expunge: stop (not measured again), then delete.
        ("stop", &status, 0),
        ("delete", &status, 1),
    ] {
        let (n, record) = if n == 0 { (1, false) } else { (n, true) };
        let before = requests(&mut pve)?;
        let mut samples = Vec::new();
        for _ in 0..n {
            let t = Instant::now();
            let out = Command::new(bin)
                .args(["cloudstack", action])
                .arg(file)
                .arg("60")
                .stdin(Stdio::null())
                .output()
                .map_err(|e| e.to_string())?;
            samples.push(t.elapsed());
            if !out.status.success() {
                return Err(format!("cloudstack {action} on proxmox failed: {}", String::from_utf8_lossy(&out.stdout)));
            }
        }
        let trips = (requests(&mut pve)? - before) as f64 / n as f64;
        if !record {
            continue;
        }
        measured.push((action, trips));
        let (m, _) = median_p95_ms(&mut samples);
        figures.push(Figure::new(
            &format!("Proxmox CloudStack: {action}"),
            m,
            "ms",
            format!("median of {n}, process start → exit; {trips:.1} API round trips"),
        ));
    }
    for (action, n) in &measured {
        eprintln!("proxmox round trips: {action} {n:.1}");
    }
    check_budget(&measured)?;
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_fails_above_the_ceiling_only() {
        assert!(check_budget(&[("status", 1.0), ("create", 7.0), ("statuses", 99.0)]).is_ok());
        assert!(check_budget(&[("create", 8.0)]).is_err(), "create is held to the script's 7");
        let e = check_budget(&[("status", 2.0), ("stop", 3.0)]).unwrap_err();
        assert!(e.contains("status: 2.0") && !e.contains("stop"), "{e}");
    }
}
