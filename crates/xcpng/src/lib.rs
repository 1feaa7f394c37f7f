//! XCP-ng / XenServer driver over XAPI JSON-RPC (see `README.md` for settings, the
//! mapping and the calls per method).
//!
//! Layers: [`config`] (settings → config) → [`client`] (JSON-RPC over `polyvisor-http`:
//! session, re-login, pool-master redirect, call counter, [`error`] classification) →
//! `driver` (the [`Driver`] operations and their self-describing task tokens).

pub mod client;
pub mod config;
mod driver;
pub mod error;

use config::TemplateMode;
pub use driver::XcpNg;
use polyvisor_core::{Capabilities, Driver, OpenOptions, Result, Settings, TemplatePreference};
use std::sync::Arc;

/// Builds the driver from settings and a front's typed options (no backend I/O).
pub fn open(settings: &Settings, opts: &OpenOptions) -> Result<Arc<dyn Driver>> {
    Ok(Arc::new(open_driver_with(settings, opts)?))
}

/// Capabilities for these settings and options without credentials or I/O.
pub fn capabilities(settings: &Settings, opts: &OpenOptions) -> Result<Capabilities> {
    Ok(template_mode(settings, opts)?.capabilities())
}

/// The template mode: the `template_mode` setting when set (it wins), else the front's
/// preference (RAS's link-clone level asks for native templates), else `flag`.
pub fn template_mode(settings: &Settings, opts: &OpenOptions) -> Result<TemplateMode> {
    if settings.has("template_mode") {
        return TemplateMode::from_settings(settings);
    }
    Ok(match opts.templates {
        TemplatePreference::Native => TemplateMode::Native,
        TemplatePreference::Flag | TemplatePreference::DriverDefault => TemplateMode::Flag,
    })
}

/// Like [`open`], returning the concrete driver (call counters in tests, `logout`).
pub fn open_driver_with(settings: &Settings, opts: &OpenOptions) -> Result<XcpNg> {
    let mut cfg = config::Config::from_settings(settings)?;
    cfg.template_mode = template_mode(settings, opts)?;
    XcpNg::new(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_front_preference_applies_unless_the_operator_chose() {
        let s = Settings::from_pairs([("host", "xcp.invalid"), ("username", "root"), ("password", "x")]);
        let native = OpenOptions::with_templates(TemplatePreference::Native);
        let flag = OpenOptions::with_templates(TemplatePreference::Flag);
        assert_eq!(template_mode(&s, &native).unwrap(), TemplateMode::Native);
        assert_eq!(template_mode(&s, &flag).unwrap(), TemplateMode::Flag);
        assert_eq!(template_mode(&s, &OpenOptions::default()).unwrap(), TemplateMode::Flag);
        let set = Settings::from_pairs([("template_mode", "flag")]);
        assert_eq!(template_mode(&set, &native).unwrap(), TemplateMode::Flag);
        assert_eq!(capabilities(&s, &native).unwrap(), open(&s, &native).unwrap().capabilities());
        assert!(!capabilities(&s, &native).unwrap().clone_from_snapshot);
        assert!(capabilities(&s, &flag).unwrap().clone_from_snapshot);
    }
}
