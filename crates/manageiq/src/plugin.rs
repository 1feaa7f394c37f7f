//! `plugin --out DIR [--name Polyvisor]`: writes the ManageIQ provider plugin gem
//! `manageiq-providers-<name>` laid out as ManageIQ's provider generator lays it out
//! (engine, InfraManager, Inventory collector/parser/persister and their targeted variants,
//! Refresher, workers, EventCatcher stream over `events --follow`, EventParser,
//! EventTargetParser, MetricsCapture, Vm/Template/Host), with its specs and JSON fixtures
//! produced by this CLI (`spec/fixtures/regenerate.sh`). The templates live in
//! `crates/manageiq/plugin/`; `__NAME__` becomes the class name, `__SNAKE__` its snake_case.

use clap::Args as ClapArgs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Every template file: (path with placeholders, content).
pub const FILES: &[(&str, &str)] = &[
    (
        "app/models/manageiq/providers/__SNAKE__/cli.rb",
        include_str!("../plugin/app/models/manageiq/providers/__SNAKE__/cli.rb"),
    ),
    (
        "app/models/manageiq/providers/__SNAKE__/infra_manager.rb",
        include_str!("../plugin/app/models/manageiq/providers/__SNAKE__/infra_manager.rb"),
    ),
    (
        "app/models/manageiq/providers/__SNAKE__/infra_manager/event_catcher.rb",
        include_str!("../plugin/app/models/manageiq/providers/__SNAKE__/infra_manager/event_catcher.rb"),
    ),
    (
        "app/models/manageiq/providers/__SNAKE__/infra_manager/event_catcher/runner.rb",
        include_str!("../plugin/app/models/manageiq/providers/__SNAKE__/infra_manager/event_catcher/runner.rb"),
    ),
    (
        "app/models/manageiq/providers/__SNAKE__/infra_manager/event_catcher/stream.rb",
        include_str!("../plugin/app/models/manageiq/providers/__SNAKE__/infra_manager/event_catcher/stream.rb"),
    ),
    (
        "app/models/manageiq/providers/__SNAKE__/infra_manager/event_parser.rb",
        include_str!("../plugin/app/models/manageiq/providers/__SNAKE__/infra_manager/event_parser.rb"),
    ),
    (
        "app/models/manageiq/providers/__SNAKE__/infra_manager/event_target_parser.rb",
        include_str!("../plugin/app/models/manageiq/providers/__SNAKE__/infra_manager/event_target_parser.rb"),
    ),
    (
        "app/models/manageiq/providers/__SNAKE__/infra_manager/host.rb",
        include_str!("../plugin/app/models/manageiq/providers/__SNAKE__/infra_manager/host.rb"),
    ),
    (
        "app/models/manageiq/providers/__SNAKE__/infra_manager/metrics_capture.rb",
        include_str!("../plugin/app/models/manageiq/providers/__SNAKE__/infra_manager/metrics_capture.rb"),
    ),
    (
        "app/models/manageiq/providers/__SNAKE__/infra_manager/metrics_collector_worker.rb",
        include_str!("../plugin/app/models/manageiq/providers/__SNAKE__/infra_manager/metrics_collector_worker.rb"),
    ),
    (
        "app/models/manageiq/providers/__SNAKE__/infra_manager/metrics_collector_worker/runner.rb",
        include_str!(
            "../plugin/app/models/manageiq/providers/__SNAKE__/infra_manager/metrics_collector_worker/runner.rb"
        ),
    ),
    (
        "app/models/manageiq/providers/__SNAKE__/infra_manager/refresh_worker.rb",
        include_str!("../plugin/app/models/manageiq/providers/__SNAKE__/infra_manager/refresh_worker.rb"),
    ),
    (
        "app/models/manageiq/providers/__SNAKE__/infra_manager/refresh_worker/runner.rb",
        include_str!("../plugin/app/models/manageiq/providers/__SNAKE__/infra_manager/refresh_worker/runner.rb"),
    ),
    (
        "app/models/manageiq/providers/__SNAKE__/infra_manager/refresher.rb",
        include_str!("../plugin/app/models/manageiq/providers/__SNAKE__/infra_manager/refresher.rb"),
    ),
    (
        "app/models/manageiq/providers/__SNAKE__/infra_manager/template.rb",
        include_str!("../plugin/app/models/manageiq/providers/__SNAKE__/infra_manager/template.rb"),
    ),
    (
        "app/models/manageiq/providers/__SNAKE__/infra_manager/vm.rb",
        include_str!("../plugin/app/models/manageiq/providers/__SNAKE__/infra_manager/vm.rb"),
    ),
    (
        "app/models/manageiq/providers/__SNAKE__/inventory.rb",
        include_str!("../plugin/app/models/manageiq/providers/__SNAKE__/inventory.rb"),
    ),
    (
        "app/models/manageiq/providers/__SNAKE__/inventory/collector.rb",
        include_str!("../plugin/app/models/manageiq/providers/__SNAKE__/inventory/collector.rb"),
    ),
    (
        "app/models/manageiq/providers/__SNAKE__/inventory/collector/infra_manager.rb",
        include_str!("../plugin/app/models/manageiq/providers/__SNAKE__/inventory/collector/infra_manager.rb"),
    ),
    (
        "app/models/manageiq/providers/__SNAKE__/inventory/collector/target_collection.rb",
        include_str!("../plugin/app/models/manageiq/providers/__SNAKE__/inventory/collector/target_collection.rb"),
    ),
    (
        "app/models/manageiq/providers/__SNAKE__/inventory/parser.rb",
        include_str!("../plugin/app/models/manageiq/providers/__SNAKE__/inventory/parser.rb"),
    ),
    (
        "app/models/manageiq/providers/__SNAKE__/inventory/parser/infra_manager.rb",
        include_str!("../plugin/app/models/manageiq/providers/__SNAKE__/inventory/parser/infra_manager.rb"),
    ),
    (
        "app/models/manageiq/providers/__SNAKE__/inventory/persister.rb",
        include_str!("../plugin/app/models/manageiq/providers/__SNAKE__/inventory/persister.rb"),
    ),
    (
        "app/models/manageiq/providers/__SNAKE__/inventory/persister/infra_manager.rb",
        include_str!("../plugin/app/models/manageiq/providers/__SNAKE__/inventory/persister/infra_manager.rb"),
    ),
    (
        "app/models/manageiq/providers/__SNAKE__/inventory/persister/target_collection.rb",
        include_str!("../plugin/app/models/manageiq/providers/__SNAKE__/inventory/persister/target_collection.rb"),
    ),
    ("config/settings.yml", include_str!("../plugin/config/settings.yml")),
    ("lib/manageiq-providers-__SNAKE__.rb", include_str!("../plugin/lib/manageiq-providers-__SNAKE__.rb")),
    ("lib/manageiq/providers/__SNAKE__.rb", include_str!("../plugin/lib/manageiq/providers/__SNAKE__.rb")),
    (
        "lib/manageiq/providers/__SNAKE__/engine.rb",
        include_str!("../plugin/lib/manageiq/providers/__SNAKE__/engine.rb"),
    ),
    (
        "lib/manageiq/providers/__SNAKE__/version.rb",
        include_str!("../plugin/lib/manageiq/providers/__SNAKE__/version.rb"),
    ),
    ("manageiq-providers-__SNAKE__.gemspec", include_str!("../plugin/manageiq-providers-__SNAKE__.gemspec")),
    ("spec/fixtures/pve_inventory.json", include_str!("../plugin/spec/fixtures/pve_inventory.json")),
    ("spec/fixtures/regenerate.sh", include_str!("../plugin/spec/fixtures/regenerate.sh")),
    ("spec/fixtures/sim_events.ndjson", include_str!("../plugin/spec/fixtures/sim_events.ndjson")),
    ("spec/fixtures/sim_inventory.json", include_str!("../plugin/spec/fixtures/sim_inventory.json")),
    (
        "spec/fixtures/sim_inventory_persister.json",
        include_str!("../plugin/spec/fixtures/sim_inventory_persister.json"),
    ),
    (
        "spec/fixtures/sim_inventory_vm_101_stopped.json",
        include_str!("../plugin/spec/fixtures/sim_inventory_vm_101_stopped.json"),
    ),
    ("spec/fixtures/sim_metrics.json", include_str!("../plugin/spec/fixtures/sim_metrics.json")),
    ("spec/fixtures/sim_op_clone.json", include_str!("../plugin/spec/fixtures/sim_op_clone.json")),
    (
        "spec/models/manageiq/providers/__SNAKE__/infra_manager/event_catcher_spec.rb",
        include_str!("../plugin/spec/models/manageiq/providers/__SNAKE__/infra_manager/event_catcher_spec.rb"),
    ),
    (
        "spec/models/manageiq/providers/__SNAKE__/infra_manager/infra_manager_spec.rb",
        include_str!("../plugin/spec/models/manageiq/providers/__SNAKE__/infra_manager/infra_manager_spec.rb"),
    ),
    (
        "spec/models/manageiq/providers/__SNAKE__/infra_manager/metrics_capture_spec.rb",
        include_str!("../plugin/spec/models/manageiq/providers/__SNAKE__/infra_manager/metrics_capture_spec.rb"),
    ),
    (
        "spec/models/manageiq/providers/__SNAKE__/infra_manager/refresher_spec.rb",
        include_str!("../plugin/spec/models/manageiq/providers/__SNAKE__/infra_manager/refresher_spec.rb"),
    ),
    (
        "spec/models/manageiq/providers/__SNAKE__/infra_manager/vm_spec.rb",
        include_str!("../plugin/spec/models/manageiq/providers/__SNAKE__/infra_manager/vm_spec.rb"),
    ),
    ("spec/spec_helper.rb", include_str!("../plugin/spec/spec_helper.rb")),
];

/// `plugin` options.
#[derive(Debug, ClapArgs)]
pub struct PluginArgs {
    /// Directory to write the gem into (created; the gem is `DIR/manageiq-providers-<name>`).
    #[arg(long)]
    pub out: PathBuf,
    /// Provider class name (`ManageIQ::Providers::<Name>`): letters and digits, starting upper-case.
    #[arg(long, default_value = "Polyvisor")]
    pub name: String,
}

/// `Polyvisor` → `polyvisor`, `MyCloud` → `my_cloud`.
pub fn snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Checks the class name (it ends up in Ruby constants and file names).
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = name.len() <= 40
        && name.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && name.chars().all(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err("--name must be a Ruby constant name: an upper-case letter, then letters and digits (at most 40)".into())
    }
}

/// Writes the gem; returns its directory.
pub fn generate(out: &Path, name: &str) -> Result<PathBuf, String> {
    check_name(name)?;
    let snake = snake(name);
    let root = out.join(format!("manageiq-providers-{snake}"));
    for (path, content) in FILES {
        let rel = path.replace("__SNAKE__", &snake).replace("__NAME__", name);
        let target = root.join(rel);
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let text = content.replace("__SNAKE__", &snake).replace("__NAME__", name);
        std::fs::write(&target, text).map_err(|e| format!("cannot write {}: {e}", target.display()))?;
        if path.ends_with(".sh") {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755));
        }
    }
    Ok(root)
}

/// Runs `plugin`: prints `{"gem": DIR, "files": N}`.
pub fn run(a: &PluginArgs) -> ExitCode {
    match generate(&a.out, &a.name) {
        Ok(root) => {
            let _ = crate::emit(&serde_json::json!({"gem": root.display().to_string(), "files": FILES.len()}));
            ExitCode::SUCCESS
        }
        Err(message) => {
            let _ = crate::emit(&serde_json::json!({"error": {"kind": "invalid_input", "message": message}}));
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(snake("Polyvisor"), "polyvisor");
        assert_eq!(snake("MyCloud"), "my_cloud");
        assert!(check_name("Polyvisor").is_ok());
        for bad in ["", "polyvisor", "My-Cloud", "A::B", "X\n"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
