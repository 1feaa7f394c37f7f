//! `guests/clone`: full or linked clone, chosen by level, snapshot and `is_link_clone`.

use super::LINK_SNAPSHOT;
use crate::config::Level;
use crate::errors::RpcError;
use crate::params::Params;
use crate::session::{Need, Session};
use polyvisor_core::{CloneMode, CloneSpec, GuestId, TemplateStrategy};
use serde_json::{Map, Value};

/// Mode and driver snapshot for a clone request.
pub(super) fn plan(
    level: &Level,
    snapshot: Option<String>,
    is_link_clone: Option<bool>,
) -> (CloneMode, Option<String>) {
    let virtual_label = snapshot.as_deref() == Some(LINK_SNAPSHOT) && level.strategy == Some(TemplateStrategy::Native);
    let default_linked = level.link_clones || virtual_label;
    let mode = match is_link_clone.unwrap_or(default_linked) {
        true => CloneMode::Linked,
        false => CloneMode::Full,
    };
    (mode, if virtual_label { None } else { snapshot })
}

/// `{task_id, clone_id?}`.
pub(super) async fn clone(s: &mut Session, p: &Params) -> Result<Value, RpcError> {
    let id = p.req_id("id")?;
    let name = p.req_str("name")?;
    let snapshot = p.opt_str("snapshot")?;
    let link = p.opt_bool("is_link_clone")?;
    let a = s.active_for(Need::Templates, "guests/clone").await?;
    let (mode, snapshot) = plan(&a.level, snapshot, link);
    let spec = CloneSpec { source: GuestId::new(id.as_str()), name, snapshot, mode, start: false };
    let started = s
        .call("guests/clone", a.driver.clone_guest(&spec))
        .await
        .map_err(|e| e.context(format!("Failed to clone guest [{id}]")))?;
    let mut out = Map::new();
    out.insert("task_id".into(), Value::String(started.task.0));
    if let Some(c) = started.new_guest {
        out.insert("clone_id".into(), Value::String(c.0));
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, TemplateMethod};
    use polyvisor_core::Capabilities;

    fn level(method: TemplateMethod, link: bool, strategy: TemplateStrategy) -> Level {
        let caps = Capabilities {
            templates: strategy,
            snapshots: true,
            linked_clones: true,
            clone_from_snapshot: true,
            ..Capabilities::default()
        };
        Level::resolve(&Config { template_method: method, link_clones: link, ..Config::default() }, Some(&caps))
    }

    #[test]
    fn clone_mode_by_level() {
        let snap = || Some(LINK_SNAPSHOT.to_string());
        let native = level(TemplateMethod::Basic, true, TemplateStrategy::Native);
        assert_eq!(plan(&native, snap(), None), (CloneMode::Linked, None));
        let flag = level(TemplateMethod::Basic, true, TemplateStrategy::Flag);
        assert_eq!(plan(&flag, snap(), None), (CloneMode::Linked, snap()));
        let ver = level(TemplateMethod::Versioning, false, TemplateStrategy::Flag);
        let v1 = Some("RAS_TEMPLATE_VERSION_1".to_string());
        assert_eq!(plan(&ver, v1.clone(), None), (CloneMode::Full, v1.clone()));
        assert_eq!(plan(&ver, v1.clone(), Some(true)), (CloneMode::Linked, v1));
        let basic = level(TemplateMethod::Basic, false, TemplateStrategy::Flag);
        assert_eq!(plan(&basic, None, None), (CloneMode::Full, None));
        assert_eq!(plan(&native, snap(), Some(false)), (CloneMode::Full, None));
    }
}
