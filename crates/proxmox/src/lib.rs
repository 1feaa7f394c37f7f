//! Proxmox VE driver over the PVE REST API (see `README.md` for settings and quirks).
//!
//! Layers: [`config`] (settings → config) → [`api`] (over `polyvisor-http`) (HTTP, auth, retries,
//! round-trip counter, [`pve_error`] mapping) → `client` (node cache, task reads) →
//! `driver`/`provision`/`tasks` (the [`Driver`] operations and their task state machines).

pub mod api;
mod client;
pub mod config;
mod driver;
mod events;
pub mod lenient;
pub mod names;
mod netops;
pub mod parse;
mod provision;
pub mod pve_error;
pub mod tags;
mod tasks;

pub mod upid;
pub mod validate;

pub use client::ProxmoxDriver;
use config::TemplateMode;
pub use driver::ID_HINT_DETAIL;
use polyvisor_core::{Capabilities, Driver, OpenOptions, Result, Settings, TemplatePreference};
use std::sync::Arc;

/// Builds the driver from settings and a front's typed options (no backend I/O; see
/// `Driver::probe`).
pub fn open(settings: &Settings, opts: &OpenOptions) -> Result<Arc<dyn Driver>> {
    let mut cfg = config::Config::from_settings(settings)?;
    cfg.template_mode = template_mode(settings, opts)?;
    Ok(Arc::new(ProxmoxDriver::new(cfg)?))
}

/// Capabilities for these settings and options without credentials or I/O (only the
/// template mode matters).
pub fn capabilities(settings: &Settings, opts: &OpenOptions) -> Result<Capabilities> {
    Ok(template_mode(settings, opts)?.capabilities())
}

/// The template mode: the `template_mode` setting when the operator set it (it wins),
/// else the front's preference (RAS's link-clone level asks for native templates), else
/// `flag`.
pub fn template_mode(settings: &Settings, opts: &OpenOptions) -> Result<TemplateMode> {
    if settings.has("template_mode") {
        return TemplateMode::from_settings(settings);
    }
    Ok(match opts.templates {
        TemplatePreference::Native => TemplateMode::Native,
        TemplatePreference::Flag | TemplatePreference::DriverDefault => TemplateMode::Flag,
    })
}

/// Like [`open`] with default options, but returns the concrete driver (for round-trip
/// counters in tests and benchmarks).
pub fn open_driver(settings: &Settings) -> Result<ProxmoxDriver> {
    ProxmoxDriver::new(config::Config::from_settings(settings)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_template_mode_wins_over_the_front_preference() {
        let native = OpenOptions::with_templates(TemplatePreference::Native);
        let flag = OpenOptions::with_templates(TemplatePreference::Flag);
        let none = Settings::new();
        assert_eq!(template_mode(&none, &OpenOptions::default()).unwrap(), TemplateMode::Flag);
        assert_eq!(template_mode(&none, &native).unwrap(), TemplateMode::Native);
        assert_eq!(template_mode(&none, &flag).unwrap(), TemplateMode::Flag);
        let set_flag = Settings::from_pairs([("template_mode", "flag")]);
        assert_eq!(template_mode(&set_flag, &native).unwrap(), TemplateMode::Flag);
        let set_native = Settings::from_pairs([("template_mode", "Native")]);
        assert_eq!(template_mode(&set_native, &flag).unwrap(), TemplateMode::Native);
        let bad = Settings::from_pairs([("template_mode", "gold")]);
        assert!(template_mode(&bad, &native).is_err());
        // open applies the same rule (no I/O: the driver reports its capabilities).
        let s = Settings::from_pairs([("host", "pve.invalid"), ("username", "root@pam"), ("password", "x")]);
        assert!(open(&s, &native).unwrap().capabilities().linked_clones);
        assert!(!open(&s, &flag).unwrap().capabilities().linked_clones);
        assert_eq!(capabilities(&s, &native).unwrap(), open(&s, &native).unwrap().capabilities());
    }
}
