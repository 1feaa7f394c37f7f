//! The Test Kit's low-level method tests (spec §12), plus the method rules of §4 and §9
//! the Test Kit does not check (array-form get, unknown ids, idempotent control/convert,
//! snapshot replace and no-op delete).

use super::checks::{self, Caps};
use super::process::short;
use super::session::Session;
use super::State;
use crate::report::{Outcome, Report};
use serde_json::{json, Value};
use std::time::Instant;

const G: &str = "low-level";

/// Runs every low-level case; fills `st` with what later groups need.
pub fn run(r: &mut Report, s: &mut Session, st: &mut State) {
    provider_methods(r, s, st);
    listing(r, s, st);
    errors(r, s, st);
    scratch(r, s, st);
    control(r, s, st);
    convert(r, s, st);
    snapshots(r, s, st);
    delete_scratch(r, s, st);
    r.case(G, "provider/disconnect then connect again", || {
        s.ensure()?;
        let d = s.ok("provider/disconnect", None)?;
        if !d.is_object() {
            return Err(format!("expected a result object, saw {}", short(&d)));
        }
        let settings = s.opts.settings.clone();
        s.ok("provider/connect", Some(json!({ "settings": settings })))?;
        s.list().map(|_| ())
    });
}

fn caps(s: &Session) -> Result<Caps, String> {
    s.caps.clone().ok_or_else(|| "no capabilities (provider/initialize failed)".to_string())
}

fn provider_methods(r: &mut Report, s: &mut Session, st: &mut State) {
    let mut facts = serde_json::Map::new();
    r.case(G, "provider/initialize", || {
        s.restart()?;
        let init = s.ok("provider/initialize", None)?;
        let (c, errs) = checks::initialize(&init);
        facts.insert("version".into(), json!(c.version));
        facts.insert("capabilities".into(), init.get("capabilities").cloned().unwrap_or(Value::Null));
        facts.insert("template_level".into(), json!(c.level()));
        s.caps = Some(c);
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs.join("; "))
        }
    });
    r.facts.extend(facts);
    r.case(G, "provider/connect", || {
        let settings = s.opts.settings.clone();
        let res = s.ok("provider/connect", Some(json!({ "settings": settings })))?;
        if res.is_object() {
            Ok(())
        } else {
            Err(format!("expected a result object, saw {}", short(&res)))
        }
    });
    let _ = st;
}

fn listing(r: &mut Report, s: &mut Session, st: &mut State) {
    r.case(G, "guests/list", || {
        s.ensure()?;
        let res = s.ok("guests/list", None)?;
        let (ids, errs) = checks::guest_list(&res);
        st.ids = ids;
        if !errs.is_empty() {
            return Err(errs.join("; "));
        }
        if st.ids.is_empty() {
            return Err("expected at least one guest to test against, saw an empty list".into());
        }
        Ok(())
    });
    let ids = st.ids.clone();
    r.case(G, "guests/get (every listed guest)", || {
        let mut errs = Vec::new();
        for id in ids.iter().take(200) {
            // Remember what the guest is even when the object breaks rules, so the later
            // groups still run (and report their own findings).
            match s.ok("guests/get", Some(json!({ "id": id }))) {
                Ok(g) => {
                    let t = g.get("is_template").and_then(Value::as_bool).unwrap_or(false);
                    let state = g.get("state").and_then(Value::as_str).unwrap_or("").to_string();
                    st.guests.push((id.clone(), t, state));
                    let e = checks::guest(id, &g);
                    if !e.is_empty() {
                        errs.push(format!("guests/get {id}: {}", e.join("; ")));
                    }
                }
                Err(e) => errs.push(e),
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs.join("; "))
        }
    });
    r.facts.insert("guests".into(), json!(st.ids.len()));
    r.facts.insert("templates".into(), json!(st.guests.iter().filter(|g| g.1).count()));
    if ids.len() >= 2 {
        r.case(G, "guests/get (array form)", || {
            let want = [ids[0].clone(), ids[1].clone()];
            let res = s.ok("guests/get", Some(json!({ "id": want })))?;
            let mut errs = Vec::new();
            for id in &want {
                match res.get(id) {
                    Some(g) => errs.extend(checks::guest(id, g).into_iter().map(|e| format!("[{id}] {e}"))),
                    None => errs.push(format!("expected a map keyed by id with \"{id}\", saw {}", short(&res))),
                }
            }
            if errs.is_empty() {
                Ok(())
            } else {
                Err(errs.join("; "))
            }
        });
    } else {
        r.record(G, "guests/get (array form)", Outcome::Skip("needs two listed guests".into()), Instant::now());
    }
}

fn errors(r: &mut Report, s: &mut Session, st: &mut State) {
    r.case(G, "guests/get unknown id is an error", || {
        s.ensure()?;
        let id = "pvcheck-no-such-guest-0";
        let reply = s.call("guests/get", Some(json!({ "id": id })))?;
        match reply.error_code() {
            Some(-32602 | -32603) => Ok(()),
            Some(c) => Err(format!("expected error -32603 or -32602, saw code {c}")),
            None => Err(format!("expected an error (do not invent a guest), saw {}", short(&reply.value))),
        }
    });
    let first = st.ids.first().cloned();
    r.case(G, "guests/control unsupported value is -32602", || {
        let id = first.ok_or("no guest listed")?;
        let (code, msg) = s.err("guests/control", Some(json!({ "id": id, "control": "frobnicate" })))?;
        expect_code(-32602, code, &msg)
    });
    let templates = caps(s).map(|c| c.templates()).unwrap_or(true);
    r.case(G, "tasks/get unknown id is -32602", || {
        let (code, msg) = s.err("tasks/get", Some(json!({ "id": "pvcheck-bogus-task" })))?;
        // tasks/get is not part of the basic level (§3): -32601 is fine there.
        if !templates && code == -32601 {
            return Ok(());
        }
        expect_code(-32602, code, &msg)
    });
}

/// `Ok` when `code == want`, else an expected/seen message.
pub fn expect_code(want: i64, code: i64, msg: &str) -> Result<(), String> {
    if code == want {
        Ok(())
    } else {
        Err(format!("expected error code {want}, saw {code} ({msg})"))
    }
}

/// Clones `src` into a fresh guest named `name` and checks the clone contract; returns the
/// new id. The Test Kit reads clone_id only from the task output.
pub fn clone_guest(s: &mut Session, src: &str, name: &str, snapshot: &str) -> Result<String, String> {
    let (reply, out) = s.run_async("guests/clone", json!({ "id": src, "name": name, "snapshot": snapshot }))?;
    let id = match out.get("clone_id") {
        Some(Value::String(c)) if !c.is_empty() => c.clone(),
        other => {
            return Err(format!(
                "expected completed clone task output.clone_id string, saw output {}",
                other.map(short).unwrap_or_else(|| short(&out))
            ))
        }
    };
    if let Some(early) = reply.get("clone_id") {
        if early.as_str() != Some(id.as_str()) {
            return Err(format!(
                "expected the immediate clone_id {} to match the task output's \"{id}\"",
                short(early)
            ));
        }
    }
    let g = s.get(&id)?;
    if g.get("name").and_then(Value::as_str) != Some(name) {
        return Err(format!(
            "expected clone {id} named \"{name}\", saw {}",
            short(g.get("name").unwrap_or(&Value::Null))
        ));
    }
    if !s.list()?.contains(&id) {
        return Err(format!("expected completed clone {id} in guests/list"));
    }
    Ok(id)
}

fn scratch(r: &mut Report, s: &mut Session, st: &mut State) {
    let Ok(c) = caps(s) else { return };
    if !c.templates() {
        let pick = st.opts_guest.clone().or_else(|| st.guests.iter().find(|g| !g.1).map(|g| g.0.clone()));
        match pick {
            Some(id) => {
                st.restore_power = st.guests.iter().find(|g| g.0 == id).map(|g| g.2.clone());
                st.scratch = Some(id);
            }
            None => r.record(
                G,
                "pick control target",
                Outcome::Fail("expected a non-template guest (or --guest) for control tests".into()),
                Instant::now(),
            ),
        }
        return;
    }
    let src = st.guests.iter().find(|g| g.1).or_else(|| st.guests.first()).map(|g| g.0.clone());
    let name = st.name("s");
    r.case(G, "guests/clone (scratch guest)", || {
        s.ensure()?;
        let src = src.ok_or("no guest to clone")?;
        let id = clone_guest(s, &src, &name, "")?;
        st.cleanup.push(id.clone());
        st.scratch = Some(id);
        Ok(())
    });
}

fn control(r: &mut Report, s: &mut Session, st: &mut State) {
    let Some(id) = st.scratch.clone() else {
        r.record(G, "guests/control", Outcome::Skip("no scratch guest (see earlier failure)".into()), Instant::now());
        return;
    };
    let suspend = caps(s).map(|c| c.can_suspend).unwrap_or(false);
    let steps: &[(&str, &str, &str)] = &[
        ("guests/control start", "start", "powered_on"),
        ("guests/control start (already running)", "start", "powered_on"),
        ("guests/control restart", "restart", "powered_on"),
        ("guests/control reset", "reset", "powered_on"),
    ];
    for (name, ctl, want) in steps {
        r.case(G, name, || {
            s.ensure()?;
            s.control(&id, ctl)?;
            s.wait_state(&id, want)
        });
    }
    if suspend {
        r.case(G, "guests/control suspend", || {
            s.control(&id, "suspend")?;
            s.wait_state(&id, "suspended")
        });
        r.case(G, "guests/control start (resumes a suspended guest)", || {
            s.control(&id, "start")?;
            s.wait_state(&id, "powered_on")
        });
    } else {
        r.record(G, "guests/control suspend", Outcome::Skip("can_suspend_guests is false".into()), Instant::now());
    }
    for (name, ctl, want) in
        [("guests/control stop", "stop", "powered_off"), ("guests/control stop (already off)", "stop", "powered_off")]
    {
        r.case(G, name, || {
            s.ensure()?;
            s.control(&id, ctl)?;
            s.wait_state(&id, want)
        });
    }
    if let Some(orig) = st.restore_power.take() {
        if orig == "powered_on" {
            let _ = s.control(&id, "start");
        }
    }
}

fn convert(r: &mut Report, s: &mut Session, st: &mut State) {
    let Ok(c) = caps(s) else { return };
    if !c.templates() {
        r.record(G, "guests/convert", Outcome::Skip("template_method is none".into()), Instant::now());
        return;
    }
    let Some(id) = st.cleanup.first().cloned() else { return };
    let to = |s: &mut Session, t: bool| -> Result<(), String> {
        s.run_async("guests/convert", json!({ "id": id, "is_template": t }))?;
        match s.is_template(&id)? {
            v if v == t => Ok(()),
            v => Err(format!("expected is_template {t} after the convert task completed, saw {v}")),
        }
    };
    r.case(G, "guests/convert to template", || {
        s.ensure()?;
        to(s, true)
    });
    r.case(G, "guests/convert to template again (idempotent)", || to(s, true));
    r.case(G, "guests/list includes templates", || {
        if s.list()?.contains(&id) {
            Ok(())
        } else {
            Err(format!("expected template {id} in guests/list"))
        }
    });
    r.case(G, "guests/convert back to VM", || to(s, false));
    r.case(G, "task id resolves in a fresh process (§2.4)", || {
        let reply = s.ok("guests/convert", Some(json!({ "id": id, "is_template": true })))?;
        let tid = checks::task_id(&reply)?;
        s.restart()?;
        s.initialize_and_connect()?;
        s.wait_task(&tid).map_err(|e| format!("a fresh process must resolve task {tid}: {e}"))?;
        if !s.is_template(&id)? {
            return Err("expected is_template true after the convert task completed".into());
        }
        to(s, false)
    });
}

fn snapshots(r: &mut Report, s: &mut Session, st: &mut State) {
    let Ok(c) = caps(s) else { return };
    if !c.snapshots() {
        r.record(
            G,
            "guests/snapshots/*",
            Outcome::Skip(format!("not part of the {} level", c.level())),
            Instant::now(),
        );
        return;
    }
    let Some(id) = st.cleanup.first().cloned() else { return };
    let name = c.snapshot_name(9).unwrap_or_default();
    let p = json!({ "id": id, "name": name });
    let exists = |s: &mut Session, want: bool| -> Result<(), String> {
        match s.ok("guests/snapshots/exists", Some(p.clone()))? {
            Value::Bool(b) if b == want => Ok(()),
            Value::Bool(b) => Err(format!("expected exists = {want}, saw {b}")),
            other => Err(format!(
                "expected a bare JSON boolean, saw {} (an object is always truthy in PowerShell)",
                short(&other)
            )),
        }
    };
    r.case(G, "guests/snapshots/exists (absent) is bare false", || {
        s.ensure()?;
        exists(s, false)
    });
    r.case(G, "guests/snapshots/create", || {
        s.run_async("guests/snapshots/create", p.clone())?;
        exists(s, true)
    });
    r.case(G, "guests/snapshots/create on an existing name replaces it", || {
        s.run_async("guests/snapshots/create", p.clone())?;
        exists(s, true)
    });
    if c.template_method == checks::TemplateMethod::Versioning {
        r.case(G, "guests/snapshots/revert", || s.run_async("guests/snapshots/revert", p.clone()).map(|_| ()));
    }
    r.case(G, "guests/snapshots/delete", || {
        s.run_async("guests/snapshots/delete", p.clone())?;
        exists(s, false)
    });
    r.case(G, "guests/snapshots/delete of a missing name is a completed no-op", || {
        s.run_async("guests/snapshots/delete", p.clone()).map(|_| ())
    });
}

fn delete_scratch(r: &mut Report, s: &mut Session, st: &mut State) {
    let Some(id) = st.cleanup.first().cloned() else { return };
    let deleted = r.case(G, "guests/control delete (running guest)", || {
        s.ensure()?;
        s.control(&id, "start")?;
        s.control(&id, "delete")?;
        s.wait_gone(&id)
    });
    if deleted {
        st.cleanup.retain(|c| c != &id);
    }
    r.case(G, "guests/control delete of a missing guest succeeds", || s.control(&id, "delete"));
}
