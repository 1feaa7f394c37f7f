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
use polyvisor_core::{Capabilities, Driver, OpenOptions, Result, Settings};
use std::sync::Arc;

/// Builds the driver from settings and a front's typed options (no backend I/O).
pub fn open(settings: &Settings, opts: &OpenOptions) -> Result<Arc<dyn Driver>> {
    Ok(Arc::new(open_driver_with(settings, opts)?))
}

/// Capabilities for these settings and options without credentials or I/O.
pub fn capabilities(settings: &Settings, opts: &OpenOptions) -> Result<Capabilities> {
    Ok(template_mode(settings, opts)?.capabilities())
}

/// The template mode: the `template_mode` setting (`flag` default, `native` opt-in). The
/// front's preference does not switch to native templates: RAS's link-clone level creates its
/// `RAS Template Snapshot` before the convert (the front answers that label from the template
/// flag on native-template drivers), and XAPI refuses `VM.snapshot` on templates, so flag
/// templates (ordinary VMs with fast clones from their snapshots) serve every RAS level.
pub fn template_mode(settings: &Settings, opts: &OpenOptions) -> Result<TemplateMode> {
    let _ = opts.templates;
    TemplateMode::from_settings(settings)
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
    fn flag_templates_unless_the_operator_chose_native() {
        use polyvisor_core::TemplatePreference;
        let s = Settings::from_pairs([("host", "xcp.invalid"), ("username", "root"), ("password", "x")]);
        let native = OpenOptions::with_templates(TemplatePreference::Native);
        assert_eq!(template_mode(&s, &native).unwrap(), TemplateMode::Flag);
        assert_eq!(template_mode(&s, &OpenOptions::default()).unwrap(), TemplateMode::Flag);
        let set = Settings::from_pairs([("template_mode", "native")]);
        assert_eq!(template_mode(&set, &OpenOptions::default()).unwrap(), TemplateMode::Native);
        assert_eq!(capabilities(&s, &native).unwrap(), open(&s, &native).unwrap().capabilities());
        assert!(capabilities(&s, &native).unwrap().clone_from_snapshot);
        let mut n = s.clone();
        n.set("template_mode", "native");
        assert!(!capabilities(&n, &native).unwrap().clone_from_snapshot);
    }
}
