//! OpenStack driver over Keystone v3, Nova, Glance v2 and Neutron (see `README.md` for
//! settings, the mapping and the Virtuozzo profile).
//!
//! Layers: [`config`] (settings → config) → `client` (over `polyvisor-http`: auth, catalog,
//! microversion, round-trip counter, [`error`] mapping) → `driver` (the [`Driver`]
//! operations and their task tokens) with [`map`] (server JSON → core model).

pub mod client;
pub mod clouds;
pub mod config;
mod driver;
pub mod error;
pub mod l3;
pub mod map;

pub use driver::{port_name, OpenStackDriver};
use polyvisor_core::{Capabilities, Driver, OpenOptions, Result, Settings};
use std::sync::Arc;

use config::{Config, Profile};

/// Builds the `openstack` driver (no backend I/O; see `Driver::probe`).
pub fn open(settings: &Settings, _opts: &OpenOptions) -> Result<Arc<dyn Driver>> {
    Ok(Arc::new(OpenStackDriver::new(Config::from_settings(settings, Profile::OpenStack)?)?))
}

/// Builds the `virtuozzo` profile of the driver (Virtuozzo Hybrid Infrastructure defaults).
pub fn open_virtuozzo(settings: &Settings, _opts: &OpenOptions) -> Result<Arc<dyn Driver>> {
    Ok(Arc::new(OpenStackDriver::new(Config::from_settings(settings, Profile::Virtuozzo)?)?))
}

/// Capabilities without credentials or I/O (the same for every configuration).
pub fn capabilities(_settings: &Settings, _opts: &OpenOptions) -> Result<Capabilities> {
    Ok(Config::capabilities())
}

/// Like [`open`], returning the concrete driver (round-trip counters in tests).
pub fn open_driver(settings: &Settings) -> Result<OpenStackDriver> {
    OpenStackDriver::new(Config::from_settings(settings, Profile::OpenStack)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_virtuozzo_profile_is_the_same_driver_with_its_defaults() {
        let s = Settings::from_pairs([
            ("auth_url", "https://vhi.example:5000"),
            ("application_credential_id", "id"),
            ("application_credential_secret", "s3cret-x"),
        ]);
        let os = open(&s, &OpenOptions::default()).unwrap();
        let vz = open_virtuozzo(&s, &OpenOptions::default()).unwrap();
        assert_eq!((os.display_name(), vz.display_name()), ("OpenStack", "Virtuozzo"));
        assert_eq!(os.capabilities(), vz.capabilities());
        assert_eq!(capabilities(&s, &OpenOptions::default()).unwrap(), os.capabilities());
        let vcfg = Config::from_settings_env(&s, Profile::Virtuozzo, |_| None).unwrap();
        assert_eq!(vcfg.max_microversion, config::VIRTUOZZO_MICROVERSION);
        assert_eq!(vcfg.interface, "public");
        // No I/O at open: an unreachable cloud still opens; plain http is refused without the opt-in.
        let http = Settings::from_pairs([
            ("auth_url", "http://k:5000"),
            ("application_credential_id", "i"),
            ("application_credential_secret", "s"),
        ]);
        assert!(open(&http, &OpenOptions::default()).is_err());
    }
}
