//! The four official high-level flows exactly as spec §7 describes them (CreateTemplate,
//! EnterMaintenance, ExitMaintenance, CreateHost), each in a fresh provider process like
//! the Test Kit runs each script, with ASYNC task polling and power waits bounded.

use super::checks::Caps;
use super::lowlevel::clone_guest;
use super::process::short;
use super::session::Session;
use super::State;
use crate::report::{Outcome, Report};
use serde_json::{json, Value};
use std::time::Instant;

const G: &str = "flows";
const FLOWS: [&str; 4] = ["CreateTemplate", "EnterMaintenance", "ExitMaintenance", "CreateHost"];

/// Where the flows' source guest came from (decides the cleanup).
enum Source {
    /// A scratch VM cloned from an existing template: deleted afterwards.
    Scratch(String),
    /// An existing VM (chosen or `--guest`): converted back unless `--keep`.
    Existing(String),
}

impl Source {
    fn id(&self) -> &str {
        match self {
            Source::Scratch(id) | Source::Existing(id) => id,
        }
    }
}

/// Runs the four flows (or records why they do not apply).
pub fn run(r: &mut Report, s: &mut Session, st: &mut State) {
    let caps = match s.caps.clone() {
        Some(c) if c.templates() => c,
        Some(_) => return skip_all(r, "template_method is none: the provider does not support templates"),
        None => return skip_all(r, "no capabilities (provider/initialize failed)"),
    };
    let mut source = None;
    r.case(G, "pick source guest", || {
        source = Some(pick_source(s, st)?);
        Ok(())
    });
    let Some(source) = source else { return skip_all(r, "no source guest") };
    let id = source.id().to_string();
    r.facts.insert(
        "flow_source".into(),
        json!(match &source {
            Source::Scratch(id) => format!("scratch clone {id}"),
            Source::Existing(id) => format!("existing guest {id}"),
        }),
    );
    let mut ok = r.case(G, "CreateTemplate", || {
        fresh(s)?;
        create_template(s, &caps, &id)
    });
    for (name, step) in [("EnterMaintenance", 1u32), ("ExitMaintenance", 2)] {
        if !ok {
            r.record(G, name, Outcome::Skip("an earlier flow failed".into()), Instant::now());
            continue;
        }
        ok = r.case(G, name, || {
            fresh(s)?;
            if step == 1 {
                enter_maintenance(s, &caps, &id, 1)
            } else {
                exit_maintenance(s, &caps, &id, 2)
            }
        });
    }
    if ok {
        let name = st.name("h");
        r.case(G, "CreateHost", || {
            fresh(s)?;
            let clone = create_host(s, &caps, &id, &name, 2, st)?;
            r_fact(st, clone);
            Ok(())
        });
    } else {
        r.record(G, "CreateHost", Outcome::Skip("an earlier flow failed".into()), Instant::now());
    }
    foreign_name_clone(r, s, st, &caps, &id, ok);
    cleanup(r, s, st, &caps, source);
}

const FOREIGN_CASE: &str = "clone named like a foreign VM never adopts it";

/// Ownership (issue "never act on a VM polyvisor does not own"): a clone whose name is
/// that of a VM the harness did not create must make a new guest or be refused; answering
/// with the existing VM's id (adopting it by name) fails, and that VM must still exist.
fn foreign_name_clone(r: &mut Report, s: &mut Session, st: &mut State, caps: &Caps, tpl: &str, ready: bool) {
    if !ready {
        return r.record(G, FOREIGN_CASE, Outcome::Skip("an earlier flow failed".into()), Instant::now());
    }
    let foreign = match pick_foreign(s, st, tpl) {
        Ok(Some(f)) => f,
        Ok(None) => {
            let why = "no non-template guest that the harness did not create";
            return r.record(G, FOREIGN_CASE, Outcome::Skip(why.into()), Instant::now());
        }
        Err(e) => return r.record(G, FOREIGN_CASE, Outcome::Fail(e), Instant::now()),
    };
    let (fid, fname) = foreign;
    r.case(G, FOREIGN_CASE, || {
        fresh(s)?;
        let snapshot = caps.snapshot_name(2).unwrap_or_default();
        // A refusal (error reply or failed task) is a correct answer.
        if let Ok((_, out)) = s.run_async("guests/clone", json!({ "id": tpl, "name": fname, "snapshot": snapshot })) {
            let clone = out.get("clone_id").and_then(Value::as_str).unwrap_or_default().to_string();
            if clone == fid {
                return Err(format!(
                    "expected a new guest or a refusal for a clone named '{fname}', saw the existing VM {fid} \
                     (a VM the provider does not own was adopted by its name)"
                ));
            }
            if !clone.is_empty() {
                st.cleanup.push(clone.clone());
                st.hosts.push(clone);
            }
        }
        let g = s.get(&fid).map_err(|e| format!("the foreign VM {fid} must still exist after the clone: {e}"))?;
        if g.get("is_template").and_then(Value::as_bool) != Some(false) {
            return Err(format!("the foreign VM {fid} changed: {}", short(&g)));
        }
        Ok(())
    });
}

/// A non-template guest the harness did not create and that is not the flows' source.
fn pick_foreign(s: &mut Session, st: &State, source: &str) -> Result<Option<(String, String)>, String> {
    s.ensure()?;
    let ids = s.list()?;
    for id in ids.iter().filter(|i| *i != source && !st.cleanup.contains(i)).take(20) {
        let g = s.get(id)?;
        let name = g.get("name").and_then(Value::as_str).unwrap_or_default();
        if g.get("is_template").and_then(Value::as_bool) == Some(false) && !name.is_empty() {
            return Ok(Some((id.clone(), name.to_string())));
        }
    }
    Ok(None)
}

fn r_fact(st: &mut State, clone: String) {
    st.hosts.push(clone);
}

fn skip_all(r: &mut Report, why: &str) {
    for f in FLOWS {
        r.record(G, f, Outcome::Skip(why.into()), Instant::now());
    }
}

/// A fresh process plus initialize + connect, as every Test Kit script starts.
fn fresh(s: &mut Session) -> Result<(), String> {
    s.restart()?;
    s.initialize_and_connect().map(|_| ())
}

fn pick_source(s: &mut Session, st: &mut State) -> Result<Source, String> {
    s.ensure()?;
    if let Some(id) = st.opts_guest.clone() {
        if s.is_template(&id)? {
            return Err(format!("--guest {id} is already a template; CreateTemplate needs a VM"));
        }
        return Ok(Source::Existing(id));
    }
    if let Some(tpl) = st.guests.iter().find(|g| g.1).map(|g| g.0.clone()) {
        let id = clone_guest(s, &tpl, &st.name("f"), "")?;
        st.cleanup.push(id.clone());
        if s.is_template(&id)? {
            s.run_async("guests/convert", json!({ "id": id, "is_template": false }))?;
        }
        return Ok(Source::Scratch(id));
    }
    match st.guests.iter().find(|g| !g.1) {
        Some(g) => Ok(Source::Existing(g.0.clone())),
        None => Err("expected a non-template guest or a template to clone (or --guest)".into()),
    }
}

fn state(s: &mut Session, id: &str) -> Result<String, String> {
    s.state(id)
}

fn require_template(s: &mut Session, id: &str, want: bool) -> Result<(), String> {
    match s.is_template(id)? {
        v if v == want => Ok(()),
        v => Err(format!("guest {id}: expected is_template == {want}, saw {v}")),
    }
}

fn exists(s: &mut Session, id: &str, name: &str) -> Result<bool, String> {
    match s.ok("guests/snapshots/exists", Some(json!({ "id": id, "name": name })))? {
        Value::Bool(b) => Ok(b),
        other => Err(format!("guests/snapshots/exists: expected a bare boolean, saw {}", short(&other))),
    }
}

/// §7.1.
fn create_template(s: &mut Session, caps: &Caps, id: &str) -> Result<(), String> {
    if s.is_template(id)? {
        return Err(format!("guest {id} is already a template"));
    }
    if state(s, id)? != "powered_off" {
        s.control(id, "stop")?;
    }
    s.wait_state(id, "powered_off")?;
    if let Some(name) = caps.snapshot_name(1) {
        s.run_async("guests/snapshots/create", json!({ "id": id, "name": name }))?;
        if !exists(s, id, &name)? {
            return Err(format!("expected snapshot \"{name}\" to exist after its create task completed"));
        }
    }
    s.run_async("guests/convert", json!({ "id": id, "is_template": true }))?;
    require_template(s, id, true)
}

/// §7.2.
fn enter_maintenance(s: &mut Session, caps: &Caps, id: &str, version: u32) -> Result<(), String> {
    require_template(s, id, true)?;
    let name = if caps.template_method == super::checks::TemplateMethod::Versioning {
        caps.snapshot_name(version)
    } else {
        None
    };
    s.run_async("guests/convert", json!({ "id": id, "is_template": false }))?;
    require_template(s, id, false)?;
    if let Some(name) = name {
        s.run_async("guests/snapshots/revert", json!({ "id": id, "name": name }))?;
    }
    if state(s, id)? != "powered_on" {
        s.control(id, "start")?;
    }
    s.wait_state(id, "powered_on")
}

/// §7.3.
fn exit_maintenance(s: &mut Session, caps: &Caps, id: &str, version: u32) -> Result<(), String> {
    require_template(s, id, false)?;
    if state(s, id)? != "powered_off" {
        s.control(id, "stop")?;
    }
    s.wait_state(id, "powered_off")?;
    if let Some(name) = caps.snapshot_name(version) {
        if exists(s, id, &name)? {
            s.run_async("guests/snapshots/delete", json!({ "id": id, "name": name }))?;
        }
        s.run_async("guests/snapshots/create", json!({ "id": id, "name": name }))?;
        if !exists(s, id, &name)? {
            return Err(format!("expected snapshot \"{name}\" to exist after its create task completed"));
        }
    }
    s.run_async("guests/convert", json!({ "id": id, "is_template": true }))?;
    require_template(s, id, true)
}

/// §7.4; returns the new host's id (read only from the task output).
fn create_host(
    s: &mut Session,
    caps: &Caps,
    id: &str,
    clone_name: &str,
    version: u32,
    st: &mut State,
) -> Result<String, String> {
    require_template(s, id, true)?;
    let snapshot = caps.snapshot_name(version).unwrap_or_default();
    let (_, out) = s.run_async("guests/clone", json!({ "id": id, "name": clone_name, "snapshot": snapshot }))?;
    let clone = match out.get("clone_id") {
        Some(Value::String(c)) if !c.is_empty() => c.clone(),
        _ => {
            return Err(format!(
                "expected clone task output.clone_id (CreateHost reads it only there), saw output {}",
                short(&out)
            ))
        }
    };
    st.cleanup.push(clone.clone());
    if state(s, &clone)? != "powered_on" {
        s.control(&clone, "start")?;
    }
    s.wait_state(&clone, "powered_on")?;
    let g = s.get(&clone)?;
    if g.get("is_template").and_then(Value::as_bool) != Some(false) {
        return Err(format!("expected host {clone} to be a VM (is_template false), saw {}", short(&g)));
    }
    Ok(clone)
}

fn cleanup(r: &mut Report, s: &mut Session, st: &mut State, caps: &Caps, source: Source) {
    if st.keep {
        r.facts.insert("kept".into(), json!(st.cleanup));
        return;
    }
    let hosts = std::mem::take(&mut st.hosts);
    if !hosts.is_empty() {
        r.case("cleanup", "delete flow hosts", || {
            s.ensure()?;
            for h in &hosts {
                s.control(h, "delete")?;
                s.wait_gone(h)?;
            }
            Ok(())
        });
        st.cleanup.retain(|c| !hosts.contains(c));
    }
    if let Source::Existing(id) = source {
        r.case("cleanup", "convert the source back to a VM and drop its RAS snapshots", || {
            s.ensure()?;
            if s.is_template(&id)? {
                s.run_async("guests/convert", json!({ "id": id, "is_template": false }))?;
            }
            if caps.snapshots() {
                for n in [caps.snapshot_name(1), caps.snapshot_name(2)].into_iter().flatten() {
                    if exists(s, &id, &n)? {
                        s.run_async("guests/snapshots/delete", json!({ "id": id, "name": n }))?;
                    }
                }
            }
            require_template(s, &id, false)
        });
    }
}
