//! OpenStack figures against the real loopback OpenStack of the backend contract
//! (`scripts/ci/start-openstack.sh` → `/run/polyvisor-test/openstack.json`: Keystone, Nova with
//! the fake virt driver, Glance, Neutron ML2): wall time and API round trips per RAS method
//! (one long-lived provider process, as RAS runs it) and per CloudStack action (one process per
//! action, so each includes a Keystone login). Skipped, with a note on stderr, when the
//! contract is absent.
//!
//! Round trips are counted from the provider's own debug log (`--log-level debug`): one
//! `API call` line per Nova/Glance/Neutron request, and each `authenticated` line stands for
//! the two requests of a login (Keystone `POST /v3/auth/tokens`, Nova's version document).

use crate::ras::Provider;
use crate::stats::median_p95_ms;
use crate::Figure;
use polyvisor_test_support::backend::Backend;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Requests recorded in a provider debug log so far.
fn round_trips(log: &Path) -> u64 {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .map(|l| {
            if l.contains("API call") {
                1
            } else if l.contains("authenticated") {
                2
            } else {
                0
            }
        })
        .sum()
}

fn ras_provider(bin: &Path, dir: &Path, log: &Path, b: &Backend) -> Result<Provider, String> {
    let log = log.to_string_lossy();
    let flags = ["--log-level", "debug", "--log-file", &log, "--template-method", "versioning"];
    let mut p = Provider::spawn_with(bin, &dir.join("unused.db"), &flags)?;
    p.call_json(&json!({"method": "provider/connect", "params": {"settings": Value::Object(b.settings.clone())}}))?;
    Ok(p)
}

/// Times `runs` calls of `req`, counting API round trips from the log.
fn ras_method(p: &mut Provider, log: &Path, label: &str, req: &Value, runs: usize) -> Result<Figure, String> {
    let before = round_trips(log);
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        p.call_json(req)?;
        samples.push(t.elapsed());
    }
    let trips = (round_trips(log) - before) as f64 / runs as f64;
    let (m, p95) = median_p95_ms(&mut samples);
    Ok(Figure::new(
        &format!("OpenStack RAS: {label}"),
        m,
        "ms",
        format!("median of {runs}; p95 {p95:.1} ms; {trips:.1} API round trips"),
    ))
}

/// Sends a control (RAS answers at once; it then watches the guest's state, as here with
/// `guests/get` every 200 ms until `want`); returns (submit ms, to-state ms, round trips).
fn ras_control(p: &mut Provider, log: &Path, id: &str, control: &str, want: &str) -> Result<(f64, f64, u64), String> {
    let before = round_trips(log);
    let t = Instant::now();
    p.call_json(&json!({"method": "guests/control", "params": {"id": id, "control": control}}))?;
    let submit = t.elapsed();
    loop {
        let g = p.call_json(&json!({"method": "guests/get", "params": {"id": id}}))?;
        if g["result"]["state"].as_str() == Some(want) {
            break;
        }
        if t.elapsed() > Duration::from_secs(300) {
            return Err(format!("control {control}: not {want} after 300 s: {g}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok((ms(submit), ms(t.elapsed()), round_trips(log) - before))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn cloudstack_payload(b: &Backend, vm: &str, with_nics: bool, details: &Map<String, Value>) -> Value {
    let nics = if with_nics {
        json!([{"deviceId": 0, "defaultNic": true, "uuid": "nic-1", "mac": "02:01:00:cd:00:07",
                "broadcastType": "Vlan", "broadcastUri": "vlan://untagged", "isolationUri": "vlan://untagged"}])
    } else {
        json!([])
    };
    // The extension's details plus the driver (`cloudstack install --driver openstack` bakes it
    // into the wrapper script; here the payload names it).
    let mut extension = b.cloudstack.extension.clone();
    extension.insert("driver".into(), json!("openstack"));
    let mut vm_details = json!({"deployvm": "true"});
    for (k, v) in details {
        vm_details[k] = v.clone();
    }
    json!({
        "externaldetails": {
            "extension": Value::Object(extension),
            "host": Value::Object(b.cloudstack.host.clone()),
            "virtualmachine": {"template_type": "template", "template_id": b.template_id}
        },
        "virtualmachineid": format!("uuid-{vm}"),
        "virtualmachinename": vm,
        "cloudstack.vm.details": {"name": vm, "cpus": 1, "maxRam": 134217728u64, "minRam": 134217728u64,
                                   "details": vm_details, "disks": [], "nics": nics, "uuid": format!("uuid-{vm}")}
    })
}

/// One `polyvisor cloudstack ACTION FILE 600` process: (wall ms, round trips, stdout).
fn cloudstack(bin: &Path, log: &Path, action: &str, file: &Path) -> Result<(f64, u64, Value), String> {
    let before = round_trips(log);
    let t = Instant::now();
    let out = Command::new(bin)
        .args(["--log-level", "debug", "--log-file"])
        .arg(log)
        .args(["cloudstack", action])
        .arg(file)
        .arg("600")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    let wall = ms(t.elapsed());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    if !out.status.success() {
        return Err(format!("cloudstack {action} on openstack failed: {}", String::from_utf8_lossy(&out.stdout)));
    }
    Ok((wall, round_trips(log) - before, v))
}

/// Runs the OpenStack benchmarks when the contract exists (absent: no figures, a note on stderr).
pub fn run(bin: &Path, dir: &Path, contract_dir: &Path, runs: usize) -> Result<Vec<Figure>, String> {
    if !contract_dir.join("openstack.json").exists() {
        eprintln!(
            "polyvisor-bench: OpenStack skipped: no {} (run scripts/ci/start-openstack.sh)",
            contract_dir.join("openstack.json").display()
        );
        return Ok(Vec::new());
    }
    let b = Backend::load_from(contract_dir, "openstack").map_err(|e| e.to_string())?;
    let mut figures = Vec::new();
    let log = dir.join("openstack-ras.log");
    let mut p = ras_provider(bin, dir, &log, &b)?;
    let src = b.source_guest.clone();
    for (label, req, n) in [
        ("guests/list", json!({"method": "guests/list"}), runs),
        ("guests/get (stopped server)", json!({"method": "guests/get", "params": {"id": src}}), runs),
        (
            "guests/snapshots/exists",
            json!({"method": "guests/snapshots/exists", "params": {"id": src, "name": "RAS_TEMPLATE_VERSION_1"}}),
            runs,
        ),
    ] {
        figures.push(ras_method(&mut p, &log, label, &req, n)?);
    }
    // Power the contract's stopped source server on and off again (left as found).
    for (control, want) in [("start", "powered_on"), ("stop", "powered_off")] {
        let (submit, total, trips) = ras_control(&mut p, &log, &src, control, want)?;
        figures.push(Figure::new(
            &format!("OpenStack RAS: guests/control {control} (submit)"),
            submit,
            "ms",
            format!("one run; {want} after {total:.0} ms, guests/get every 200 ms; {trips} API round trips in all"),
        ));
    }
    p.finish();

    // CloudStack: one process per action, each logging in (no token survives a process).
    let cs_log = dir.join("openstack-cs.log");
    let vm = format!("i-2-{}-VM", 900_000 + std::process::id() % 90_000);
    let write = |name: &str, v: &Value| -> Result<PathBuf, String> {
        let path = dir.join(name);
        std::fs::write(&path, v.to_string()).map_err(|e| e.to_string())?;
        Ok(path)
    };
    let create = write("os-create.json", &cloudstack_payload(&b, &vm, true, &Map::new()))?;
    let status = write("os-status.json", &cloudstack_payload(&b, &vm, false, &Map::new()))?;
    let mut outcome: Result<(), String> = Ok(());
    let record = |action: &str, file: &Path, n: usize, figures: &mut Vec<Figure>| -> Result<(), String> {
        let mut samples = Vec::new();
        let mut trips = 0;
        for _ in 0..n {
            let (wall, t, _) = cloudstack(bin, &cs_log, action, file)?;
            samples.push(Duration::from_secs_f64(wall / 1000.0));
            trips += t;
        }
        let (m, _) = median_p95_ms(&mut samples);
        figures.push(Figure::new(
            &format!("OpenStack CloudStack: {action}"),
            m,
            "ms",
            format!(
                "median of {n}, process start → exit (task waits included); {:.1} API round trips",
                trips as f64 / n as f64
            ),
        ));
        Ok(())
    };
    for (action, file, n) in
        [("create", &create, 1), ("status", &status, runs.min(10)), ("stop", &status, 1), ("start", &status, 1)]
    {
        if let Err(e) = record(action, file, n, &mut figures) {
            outcome = Err(e);
            break;
        }
    }
    // Always expunge what create made (CloudStack: stop, then delete).
    let _ = cloudstack(bin, &cs_log, "stop", &status);
    let del = cloudstack(bin, &cs_log, "delete", &status);
    outcome?;
    let (wall, trips, _) = del?;
    figures.push(Figure::new(
        "OpenStack CloudStack: delete (after stop)",
        wall,
        "ms",
        format!("one run, process start → exit; {trips} API round trips"),
    ));
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_count_api_calls_and_logins() {
        let dir = std::env::temp_dir().join(format!("pv-bench-os-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("x.log");
        std::fs::write(
            &log,
            "DEBUG polyvisor_openstack::http: authenticated microversion=2.93\n\
             DEBUG polyvisor_openstack::http: API call method=GET service=compute\n\
             INFO other line\n\
             DEBUG polyvisor_openstack::http: API call method=GET service=image\n",
        )
        .unwrap();
        assert_eq!(round_trips(&log), 4);
        assert_eq!(round_trips(&dir.join("missing.log")), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_contract_skips() {
        let dir = std::env::temp_dir().join(format!("pv-bench-os-none-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let figures = run(Path::new("/nonexistent/polyvisor"), &dir, &dir, 1).unwrap();
        assert!(figures.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
