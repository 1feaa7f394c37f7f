//! libvirt figures on real QEMU (TCG) with the tiny guest: wall time per RAS method
//! excluding guest boot, and template clones (linked and full) from submit to completed.
//! Needs a `polyvisor` built with `--features libvirt`, libvirtd running, the `tg-net`
//! network and `polyvisor` pool (`scripts/ci/start-libvirt.sh` sets all of that up).

use crate::ras::Provider;
use crate::stats::median_p95_ms;
use crate::Figure;
use polyvisor_test_support::tiny::TinyGuest;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const URI: &str = "qemu:///system";
const SOURCE: &str = "pv-bench-src";

fn virsh(args: &[&str]) -> Result<String, String> {
    let o = Command::new("virsh").arg("-c").arg(URI).args(args).output().map_err(|e| format!("virsh: {e}"))?;
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
    } else {
        Err(format!("virsh {}: {}", args.join(" "), String::from_utf8_lossy(&o.stderr).trim()))
    }
}

/// Defines the stopped source domain on a copy of the tiny guest disk; returns its UUID.
fn define_source(tiny: &Path, pool_dir: &Path) -> Result<String, String> {
    remove_source();
    TinyGuest::new(tiny, pool_dir).define_copy(SOURCE)
}

fn remove_source() {
    let _ = virsh(&["destroy", SOURCE]);
    let _ = virsh(&["undefine", SOURCE, "--snapshots-metadata", "--remove-all-storage"]);
    let _ = virsh(&["vol-delete", &format!("{SOURCE}.qcow2"), "--pool", "polyvisor"]);
    let _ = virsh(&["pool-refresh", "polyvisor"]);
}

fn settings() -> Value {
    json!({"driver": "libvirt", "uri": URI, "pool": "polyvisor", "network": "tg-net", "domain_type": "qemu"})
}

fn spawn(bin: &Path, dir: &Path, flags: &[&str]) -> Result<Provider, String> {
    let mut p = Provider::spawn_with(bin, &dir.join("unused.db"), flags)?;
    p.call_json(&json!({"method": "provider/connect", "params": {"settings": settings()}}))?;
    Ok(p)
}

/// Sends an async method and polls its task to completion; returns (elapsed, output).
fn run_task(p: &mut Provider, req: &Value) -> Result<(Duration, Value), String> {
    let t = Instant::now();
    let r = p.call_json(req)?;
    let task = r["result"]["task_id"].as_str().ok_or_else(|| format!("{req}: no task_id in {r}"))?.to_string();
    loop {
        let s = p.call_json(&json!({"method": "tasks/get", "params": {"id": task}}))?;
        match s["result"]["state"].as_str() {
            Some("running") => std::thread::sleep(Duration::from_millis(20)),
            Some("completed") => return Ok((t.elapsed(), s["result"]["output"].clone())),
            _ => return Err(format!("{req}: task ended {s}")),
        }
        if t.elapsed() > Duration::from_secs(120) {
            return Err(format!("{req}: task still running after 120 s"));
        }
    }
}

fn timed(p: &mut Provider, req: &Value, runs: usize) -> Result<(f64, f64), String> {
    let mut s = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        p.call_json(req)?;
        s.push(t.elapsed());
    }
    Ok(median_p95_ms(&mut s))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs the libvirt benchmarks; always removes what it created.
pub fn run(bin: &Path, dir: &Path, tiny: &Path, pool_dir: &Path, runs: usize) -> Result<Vec<Figure>, String> {
    let id = define_source(tiny, pool_dir)?;
    let mut clones: Vec<String> = Vec::new();
    let out = measure(bin, dir, &id, runs, &mut clones);
    if let Ok(mut p) = spawn(bin, dir, &["--template-method", "versioning"]) {
        for c in &clones {
            let _ = p.call_json(&json!({"method": "guests/control", "params": {"id": c, "control": "delete"}}));
        }
        // Through polyvisor, so the snapshot base volumes it exported go too.
        let _ = p.call_json(&json!({"method": "guests/convert", "params": {"id": id, "is_template": false}}));
        let _ = p.call_json(&json!({"method": "guests/control", "params": {"id": id, "control": "delete"}}));
        p.finish();
    }
    remove_source();
    out
}

fn measure(bin: &Path, dir: &Path, id: &str, runs: usize, clones: &mut Vec<String>) -> Result<Vec<Figure>, String> {
    let mut f = Vec::new();
    let mut p = spawn(bin, dir, &["--template-method", "versioning"])?;
    let (m, p95) = timed(&mut p, &json!({"method": "guests/list"}), runs)?;
    f.push(Figure::new("libvirt RAS: guests/list", m, "ms", format!("median of {runs}; p95 {p95:.2} ms")));
    let (m, p95) = timed(&mut p, &json!({"method": "guests/get", "params": {"id": id}}), runs)?;
    f.push(Figure::new("libvirt RAS: guests/get (stopped)", m, "ms", format!("median of {runs}; p95 {p95:.2} ms")));
    let (m, p95) = timed(
        &mut p,
        &json!({"method": "guests/snapshots/exists", "params": {"id": id, "name": "RAS_TEMPLATE_VERSION_1"}}),
        runs,
    )?;
    f.push(Figure::new("libvirt RAS: guests/snapshots/exists", m, "ms", format!("median of {runs}; p95 {p95:.2} ms")));
    let (d, _) = run_task(
        &mut p,
        &json!({"method": "guests/snapshots/create", "params": {"id": id, "name": "RAS_TEMPLATE_VERSION_1"}}),
    )?;
    f.push(Figure::new("libvirt RAS: snapshots/create (stopped guest, to completed)", ms(d), "ms", "one run"));
    let (d, _) = run_task(
        &mut p,
        &json!({"method": "guests/snapshots/create", "params": {"id": id, "name": "RAS Template Snapshot"}}),
    )?;
    f.push(Figure::new("libvirt RAS: snapshots/create second snapshot", ms(d), "ms", "one run"));
    let (d, _) = run_task(&mut p, &json!({"method": "guests/convert", "params": {"id": id, "is_template": true}}))?;
    f.push(Figure::new("libvirt RAS: convert to template (to completed)", ms(d), "ms", "one run"));
    let (d, out) = run_task(
        &mut p,
        &json!({"method": "guests/clone", "params": {"id": id, "name": "pv-bench-full", "snapshot": "RAS_TEMPLATE_VERSION_1"}}),
    )?;
    clones.extend(out["clone_id"].as_str().map(String::from));
    f.push(Figure::new(
        "libvirt RAS: full clone from a version snapshot (to completed)",
        ms(d),
        "ms",
        "one run; 64 MiB tiny disk; includes the one-time base export",
    ));
    p.finish();

    let mut p = spawn(bin, dir, &["--template-method", "basic", "--link-clones"])?;
    let (d, out) = run_task(
        &mut p,
        &json!({"method": "guests/clone", "params": {"id": id, "name": "pv-bench-linked", "snapshot": "RAS Template Snapshot"}}),
    )?;
    let linked = out["clone_id"].as_str().map(String::from);
    clones.extend(linked.clone());
    f.push(Figure::new(
        "libvirt RAS: linked clone (qcow2 overlay, to completed)",
        ms(d),
        "ms",
        "one run; includes the one-time base export",
    ));
    let (d, out) = run_task(
        &mut p,
        &json!({"method": "guests/clone", "params": {"id": id, "name": "pv-bench-linked2", "snapshot": "RAS Template Snapshot"}}),
    )?;
    clones.extend(out["clone_id"].as_str().map(String::from));
    f.push(Figure::new("libvirt RAS: second linked clone (base exists)", ms(d), "ms", "one run"));
    if let Some(c) = linked {
        let t = Instant::now();
        p.call_json(&json!({"method": "guests/control", "params": {"id": c, "control": "delete"}}))?;
        f.push(Figure::new("libvirt RAS: delete a stopped clone with its volumes", ms(t.elapsed()), "ms", "one run"));
        clones.retain(|x| x != &c);
    }
    let (d, _) = run_task(&mut p, &json!({"method": "guests/convert", "params": {"id": id, "is_template": false}}))?;
    f.push(Figure::new("libvirt RAS: convert back to VM (to completed)", ms(d), "ms", "one run"));
    p.finish();
    Ok(f)
}
