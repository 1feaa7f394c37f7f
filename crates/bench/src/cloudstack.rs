//! CloudStack figures: wall time per action, process start to exit, as the management
//! server runs us (`polyvisor cloudstack <action> <payload.json> <timeout>`).

use crate::ras::Provider;
use crate::stats::median_p95_ms;
use crate::Figure;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

fn payload(vm_name: &str, template_id: &str, with_nics: bool) -> Value {
    let nics = if with_nics {
        json!([{"deviceId": 0, "defaultNic": true, "uuid": format!("nic-{vm_name}"), "mac": "02:01:00:cd:00:02",
                "broadcastType": "Vlan", "broadcastUri": "vlan://1234", "type": "Guest"}])
    } else {
        json!([])
    };
    json!({
        "externaldetails": {
            "extension": {"driver": "sim"},
            "host": {"node": "sim1"},
            "virtualmachine": {"template_type": "template", "template_id": template_id, "cloudstack.vlan": "1234"}
        },
        "virtualmachineid": format!("uuid-{vm_name}"),
        "virtualmachinename": vm_name,
        "cloudstack.vm.details": {
            "name": vm_name, "cpus": 1, "minRam": 536870912u64, "maxRam": 536870912u64,
            "details": {"deployvm": "true"}, "disks": [], "nics": nics,
            "uuid": format!("uuid-{vm_name}")
        }
    })
}

fn run_action(bin: &Path, db: &Path, action: &str, file: &Path) -> Result<(std::time::Duration, String), String> {
    let t = Instant::now();
    let out = Command::new(bin)
        .arg("cloudstack")
        .arg(action)
        .arg(file)
        .arg("60")
        .env("POLYVISOR_SIM_DB", db)
        .env("POLYVISOR_SIM_TASK_MS", "0")
        .env("POLYVISOR_SIM_BOOT_MS", "0")
        .env_remove("POLYVISOR_LOG_FILE")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    let elapsed = t.elapsed();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        return Err(format!("cloudstack {action} failed: {text}{}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok((elapsed, text))
}

fn first_template(bin: &Path, db: &Path) -> Result<String, String> {
    let mut p = Provider::spawn(bin, db)?;
    p.call_json(&json!({"method": "provider/connect", "params": {"settings": {}}}))?;
    let list = p.call_json(&json!({"method": "guests/list"}))?;
    let ids: Vec<String> = list["result"]["guests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    for id in ids {
        let g = p.call_json(&json!({"method": "guests/get", "params": {"id": id}}))?;
        if g["result"]["is_template"] == json!(true) {
            p.finish();
            return Ok(id);
        }
    }
    p.finish();
    Err("the sim demo estate has no template".into())
}

/// Runs the CloudStack benchmarks.
pub fn run(bin: &Path, dir: &Path, runs: usize) -> Result<Vec<Figure>, String> {
    let db = dir.join("cloudstack.db");
    let template = first_template(bin, &db)?;
    let mut figures = Vec::new();
    let mut per_action: Vec<(&str, Vec<std::time::Duration>)> =
        ["create", "status", "stop", "start", "reboot", "getconsole", "statuses", "delete"]
            .iter()
            .map(|a| (*a, Vec::new()))
            .collect();
    let lifecycle_runs = runs.clamp(1, 20);
    for i in 0..lifecycle_runs {
        let name = format!("i-2-{}-VM", 9000 + i);
        let with_nics = dir.join(format!("{name}-nics.json"));
        let without = dir.join(format!("{name}.json"));
        std::fs::write(&with_nics, payload(&name, &template, true).to_string()).map_err(|e| e.to_string())?;
        std::fs::write(&without, payload(&name, &template, false).to_string()).map_err(|e| e.to_string())?;
        for (action, samples) in per_action.iter_mut() {
            let file = if matches!(*action, "create" | "start" | "reboot") { &with_nics } else { &without };
            let (d, _) = run_action(bin, &db, action, file)?;
            samples.push(d);
        }
    }
    // status is the hot path (once per VM per host ping): measure it more.
    let probe = dir.join("status.json");
    std::fs::write(&probe, payload("i-2-1-VM", &template, false).to_string()).map_err(|e| e.to_string())?;
    let mut status = Vec::with_capacity(runs);
    for _ in 0..runs {
        let (d, out) = run_action(bin, &db, "status", &probe)?;
        if !out.contains("power_state") {
            return Err(format!("status printed no power_state: {out}"));
        }
        status.push(d);
    }
    let (m, p95) = median_p95_ms(&mut status);
    figures.push(Figure::new(
        "CloudStack: status (process start → exit)",
        m,
        "ms",
        format!("median of {runs}; p95 {p95:.2} ms"),
    ));
    for (action, mut samples) in per_action {
        let (m, p95) = median_p95_ms(&mut samples);
        figures.push(Figure::new(
            &format!("CloudStack: {action}"),
            m,
            "ms",
            format!("median of {lifecycle_runs} lifecycles; p95 {p95:.2} ms"),
        ));
    }
    let fqcn = dir.join("fqcn.json");
    std::fs::write(&fqcn, r#"{"action":"com.cloud.agent.api.ModifyStoragePoolCommand"}"#).map_err(|e| e.to_string())?;
    let mut samples = Vec::new();
    for _ in 0..runs.min(20) {
        let t = Instant::now();
        let _ = Command::new(bin)
            .arg("cloudstack")
            .arg("com.cloud.agent.api.ModifyStoragePoolCommand")
            .arg(&fqcn)
            .arg("5")
            .env("POLYVISOR_SIM_DB", &db)
            .output();
        samples.push(t.elapsed());
    }
    let (m, _) = median_p95_ms(&mut samples);
    figures.push(Figure::new(
        "CloudStack: unknown Java command (FQCN) answered",
        m,
        "ms",
        format!("median of {}", runs.min(20)),
    ));
    Ok(figures)
}
