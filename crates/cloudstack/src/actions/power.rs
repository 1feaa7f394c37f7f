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

/// `statuses`: every guest polyvisor owns (carries a key), keyed by CloudStack internal
/// name. Guests without our key are never reported: they are not CloudStack's.
pub async fn statuses(ctx: &Ctx) -> Result<Reply> {
    let guests = ctx.driver.list_guests().await?;
    Ok(statuses_reply(&guests))
}

/// Builds the `statuses` reply. A report that does not fit the output cap is an error
/// (CloudStack then falls back to per-VM `status`), never a truncated or empty success.
pub fn statuses_reply(guests: &[GuestSummary]) -> Reply {
    let mut keyed = Map::new();
    for g in guests.iter().filter(|g| !g.is_template) {
        if let Some(k) = &g.key {
            keyed.insert(k.clone(), power_word(g.power).into());
        }
    }
    let owned = keyed.len();
    let mut fields = Map::new();
    fields.insert("power_state".into(), Value::Object(keyed));
    let reply = Reply::success_with(fields);
    if Reply::fits(&reply.body) {
        return reply;
    }
    Reply::error(&format!("{owned} instances do not fit one statuses report; use status per instance"))
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
    fn statuses_report_owned_guests_only() {
        let r = statuses_reply(&[
            g("1", "web01", Some("i-2-45-VM"), PowerState::PoweredOn, false),
            g("2", "db", Some("i-2-46-VM"), PowerState::PoweredOff, false),
            g("3", "legacy", None, PowerState::PoweringOn, false),
            g("4", "i-2-47-VM", None, PowerState::PoweredOn, false),
            g("5", "tpl", Some("i-2-48-VM"), PowerState::PoweredOff, true),
        ]);
        assert!(r.ok);
        assert_eq!(
            r.body,
            serde_json::json!({"status":"success","power_state":{"i-2-45-VM":"poweron","i-2-46-VM":"poweroff"}})
        );
    }

    #[test]
    fn huge_statuses_are_an_error_never_an_empty_success() {
        // Many keyless (foreign) guests plus a few owned ones: the owned ones are reported.
        let mut many: Vec<_> =
            (0..5000).map(|i| g(&i.to_string(), &format!("name-{i:05}"), None, PowerState::PoweredOn, false)).collect();
        many.push(g("9", "mine", Some("i-2-9-VM"), PowerState::PoweredOn, false));
        let r = statuses_reply(&many);
        assert!(r.ok);
        assert_eq!(r.body["power_state"], serde_json::json!({"i-2-9-VM":"poweron"}));
        // More owned guests than fit: an error naming the count, not `{}`.
        let keyed: Vec<_> = (0..5000)
            .map(|i| g(&i.to_string(), "n", Some(&format!("i-2-{i:05}-VM")), PowerState::PoweredOn, false))
            .collect();
        let r = statuses_reply(&keyed);
        assert!(!r.ok);
        assert!(r.body["error"].as_str().unwrap().contains("5000 instances"), "{}", r.body);
        let (text, ok) = r.rendered();
        assert!(!ok && text.len() < crate::output::MAX_OUTPUT_BYTES);
    }
}
