//! `status` and `statuses` (spec §4.7-4.8): `poweron` only for a guest that runs,
//! `poweroff` for a stopped or absent one.

use crate::ctx::Ctx;
use crate::output::Reply;
use polyvisor_core::{GuestSummary, PowerState, Result};
use serde_json::{Map, Value};

/// CloudStack's two-state name for a power state.
pub fn power_word(p: PowerState) -> &'static str {
    if p.is_on() {
        "poweron"
    } else {
        "poweroff"
    }
}

/// `status`: `{"status":"success","power_state":"poweron"|"poweroff"}`.
pub async fn status(ctx: &Ctx) -> Result<Reply> {
    let word = match ctx.resolve().await? {
        Some(g) => power_word(g.power),
        None => "poweroff",
    };
    let mut fields = Map::new();
    fields.insert("power_state".into(), word.into());
    Ok(Reply::success_with(fields))
}

/// `statuses`: every non-template guest keyed by CloudStack internal name (the key stored
/// on it), plus keyless guests under their backend name when that does not collide.
pub async fn statuses(ctx: &Ctx) -> Result<Reply> {
    let guests = ctx.driver.list_guests().await?;
    Ok(statuses_reply(&guests))
}

/// Builds the `statuses` reply; keyless (name-fallback) entries are dropped first if the
/// report would not fit the output cap, and an answer that still does not fit is an
/// error (CloudStack then falls back to per-VM `status`).
pub fn statuses_reply(guests: &[GuestSummary]) -> Reply {
    let mut keyed = Map::new();
    for g in guests.iter().filter(|g| !g.is_template) {
        if let Some(k) = &g.key {
            keyed.insert(k.clone(), power_word(g.power).into());
        }
    }
    let mut all = keyed.clone();
    for g in guests.iter().filter(|g| !g.is_template && g.key.is_none()) {
        all.entry(g.name.clone()).or_insert_with(|| power_word(g.power).into());
    }
    for map in [all, keyed] {
        let mut fields = Map::new();
        fields.insert("power_state".into(), Value::Object(map));
        let reply = Reply::success_with(fields);
        if Reply::fits(&reply.body) {
            return reply;
        }
    }
    Reply::error("too many instances for one statuses report; use status")
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyvisor_core::GuestId;

    fn g(id: &str, name: &str, key: Option<&str>, power: PowerState, tpl: bool) -> GuestSummary {
        GuestSummary {
            id: GuestId::new(id),
            name: name.into(),
            power,
            is_template: tpl,
            key: key.map(Into::into),
            node: None,
        }
    }

    #[test]
    fn statuses_key_by_internal_name_with_name_fallback() {
        let r = statuses_reply(&[
            g("1", "web01", Some("i-2-45-VM"), PowerState::PoweredOn, false),
            g("2", "db", Some("i-2-46-VM"), PowerState::PoweredOff, false),
            g("3", "legacy", None, PowerState::PoweringOn, false),
            g("4", "i-2-45-VM", None, PowerState::PoweredOff, false),
            g("5", "tpl", None, PowerState::PoweredOff, true),
        ]);
        assert!(r.ok);
        assert_eq!(
            r.body,
            serde_json::json!({"status":"success","power_state":{"i-2-45-VM":"poweron","i-2-46-VM":"poweroff","legacy":"poweron"}})
        );
    }

    #[test]
    fn huge_statuses_degrade_then_fail_cleanly() {
        let many: Vec<_> =
            (0..5000).map(|i| g(&i.to_string(), &format!("name-{i:05}"), None, PowerState::PoweredOn, false)).collect();
        let r = statuses_reply(&many);
        assert!(r.ok, "keyless entries dropped, empty keyed map fits");
        assert_eq!(r.body["power_state"], serde_json::json!({}));
        let keyed: Vec<_> = (0..5000)
            .map(|i| g(&i.to_string(), "n", Some(&format!("i-2-{i:05}-VM")), PowerState::PoweredOn, false))
            .collect();
        let r = statuses_reply(&keyed);
        assert!(!r.ok);
    }
}
