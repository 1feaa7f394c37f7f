//! Custom actions with the built-in Proxmox names and parameters (spec §6.1, §7):
//! `ListSnapshots`, `CreateSnapshot` (`snap_name`, `snap_description`,
//! `snap_save_memory`), `RestoreSnapshot`, `DeleteSnapshot` (`snap_name`), plus the
//! Hyper-V `Suspend` / `Resume`. The Hyper-V `snapshot_name` is accepted as an alias.

use crate::action::Custom;
use crate::actions::lifecycle::require;
use crate::actions::params::Params;
use crate::ctx::Ctx;
use crate::output::Reply;
use polyvisor_core::{Error, PowerAction, Result, Snapshot, SnapshotSpec};
use serde_json::{json, Map, Value};

const SNAP_NAME: &[&str] = &["snap_name", "snapshot_name"];

/// Runs one custom action.
pub async fn run(ctx: &Ctx, action: Custom) -> Result<Reply> {
    let params = Params::new(ctx.payload.parameters());
    let caps = ctx.driver.capabilities();
    match action {
        Custom::Suspend | Custom::Resume if !caps.suspend => return Err(Error::unsupported("suspend/resume")),
        Custom::ListSnapshots | Custom::CreateSnapshot | Custom::RestoreSnapshot | Custom::DeleteSnapshot
            if !caps.snapshots =>
        {
            return Err(Error::unsupported("snapshots"))
        }
        _ => {}
    }
    // Validate parameters before touching the backend.
    let snap = match action {
        Custom::CreateSnapshot | Custom::RestoreSnapshot | Custom::DeleteSnapshot => Some(snapshot_name(&params)?),
        _ => None,
    };
    // A driver without memory snapshots takes a disk-only one and says so.
    let want_memory = params.bool(&["snap_save_memory"], false)?;
    let save_memory = want_memory && caps.snapshot_memory;
    let id = require(ctx).await?;
    let name = snap.unwrap_or_default();
    let message = match action {
        Custom::ListSnapshots => return Ok(list_reply(&ctx.driver.list_snapshots(&id).await?)),
        Custom::CreateSnapshot => {
            let spec = SnapshotSpec {
                name,
                include_memory: save_memory,
                description: params.str(&["snap_description", "description"]),
            };
            let task = ctx.driver.create_snapshot(&id, &spec).await?;
            ctx.wait(&task).await?;
            if want_memory && !save_memory {
                "Instance Snapshot created (without memory: this driver cannot save it)"
            } else {
                "Instance Snapshot created"
            }
        }
        Custom::RestoreSnapshot => {
            let task = ctx.driver.revert_snapshot(&id, &name).await?;
            ctx.wait(&task).await?;
            // A rollback may leave the guest stopped; the built-in starts it again. The power
            // state from the owned lookup at its id (one read where the driver can), and
            // only a guest still ours is started.
            let key = ctx.internal_name()?;
            let stopped = ctx.driver.find_owned(&key, Some(&id)).await?.is_some_and(|g| !g.power.is_on());
            if stopped {
                let task = ctx.driver.power(&id, PowerAction::Start).await?;
                ctx.wait(&task).await?;
            }
            "Instance Snapshot restored"
        }
        Custom::DeleteSnapshot => {
            let task = ctx.driver.delete_snapshot(&id, &name).await?;
            ctx.wait(&task).await?;
            "Instance Snapshot deleted"
        }
        Custom::Suspend => {
            let task = ctx.driver.power(&id, PowerAction::Suspend).await?;
            ctx.wait(&task).await?;
            "Instance suspended"
        }
        Custom::Resume => {
            let task = ctx.driver.power(&id, PowerAction::Resume).await?;
            ctx.wait(&task).await?;
            "Instance resumed"
        }
    };
    Ok(Reply::success(message))
}

/// `snap_name`: required, `[a-zA-Z0-9_.-]`, at most 40 characters (the built-in allows
/// `[a-zA-Z0-9-]`; drivers map names their backend refuses).
fn snapshot_name(params: &Params<'_>) -> Result<String> {
    let name = params.required_str(SNAP_NAME)?;
    let ok = name.len() <= 40 && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !ok {
        return Err(Error::invalid("snap_name must match ^[a-zA-Z0-9_.-]+$ (at most 40 characters)"));
    }
    Ok(name)
}

/// `{"status":"success","printmessage":"true","message":[{name,snaptime,description,parent,vmstate}]}`
/// (an array even for one snapshot: the 4.22 UI renders only arrays/objects). Rows that
/// do not fit the output cap are replaced by one summary row.
pub fn list_reply(snaps: &[Snapshot]) -> Reply {
    let rows: Vec<Value> = snaps
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "snaptime": s.created_unix.map(format_utc).unwrap_or_else(|| "-".into()),
                "description": s.description.clone().unwrap_or_default(),
                "parent": s.parent.clone().unwrap_or_else(|| "-".into()),
                "vmstate": if s.includes_memory { "1" } else { "-" },
            })
        })
        .collect();
    let build = |rows: Vec<Value>| {
        let mut fields = Map::new();
        fields.insert("printmessage".into(), "true".into());
        fields.insert("message".into(), Value::Array(rows));
        Reply::success_with(fields)
    };
    let mut keep = rows.len();
    loop {
        let mut shown: Vec<Value> = rows[..keep].to_vec();
        if keep < rows.len() {
            let more = format!("… {} more not shown", rows.len() - keep);
            shown.push(json!({"name": more, "snaptime": "-", "description": "", "parent": "-", "vmstate": "-"}));
        }
        let reply = build(shown);
        if keep == 0 || Reply::fits(&reply.body) {
            return reply;
        }
        keep = keep * 9 / 10;
    }
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) for Unix seconds.
pub fn format_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant), valid for the whole u64/86400 range we meet.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formatting() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00");
        assert_eq!(format_utc(1_767_366_245), "2026-01-02 15:04:05");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00");
    }

    #[test]
    fn list_matches_spec_shape_and_stays_under_cap() {
        let s = Snapshot {
            name: "before-upgrade".into(),
            description: None,
            created_unix: Some(1_767_366_245),
            parent: None,
            includes_memory: true,
        };
        let r = list_reply(std::slice::from_ref(&s));
        assert_eq!(
            r.body,
            json!({"status":"success","printmessage":"true","message":[{"name":"before-upgrade","snaptime":"2026-01-02 15:04:05","description":"","parent":"-","vmstate":"1"}]})
        );
        let many: Vec<Snapshot> = (0..2000)
            .map(|i| Snapshot { name: format!("s{i}"), description: Some("d".repeat(100)), ..s.clone() })
            .collect();
        let r = list_reply(&many);
        let (out, ok) = r.rendered();
        assert!(ok);
        assert!(out.len() < crate::output::MAX_OUTPUT_BYTES);
        let rows = r.body["message"].as_array().unwrap();
        assert!(rows.last().unwrap()["name"].as_str().unwrap().contains("more not shown"));
    }
}
