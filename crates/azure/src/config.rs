//! Settings → typed, validated configuration. Secrets stay `SecretString`; error messages
//! name keys, never values. `AZURE_TENANT_ID` / `AZURE_CLIENT_ID` / `AZURE_CLIENT_SECRET` /
//! `AZURE_SUBSCRIPTION_ID` fill what the settings leave out (the Azure SDKs' convention).

use polyvisor_core::{Capabilities, Error, Result, SecretString, Settings, TemplateStrategy};
use polyvisor_http::HttpSettings;

/// Public-cloud Microsoft Entra ID authority.
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
/// Public-cloud Azure Resource Manager endpoint.
pub const DEFAULT_ARM: &str = "https://management.azure.com";
/// Default VM size for clones and creates when the platform asks for none.
pub const DEFAULT_VM_SIZE: &str = "Standard_B1s";

/// What "stop" means (the platform's "off").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopMode {
    /// `deallocate`: compute released, no longer billed (default).
    Deallocate,
    /// `powerOff`: the VM stays allocated (and billed), restarts faster.
    PowerOff,
}

/// The driver configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Entra ID tenant.
    pub tenant_id: String,
    /// Service principal (application) id.
    pub client_id: String,
    /// Its secret.
    pub client_secret: SecretString,
    /// Subscription holding the resource group.
    pub subscription_id: String,
    /// The one resource group polyvisor lists and creates in.
    pub resource_group: String,
    /// Region for new resources (disks, NICs, VMs, snapshots).
    pub location: String,
    /// Token authority base (`https://login.microsoftonline.com`; sovereign clouds differ).
    pub authority_host: String,
    /// ARM base URL (`https://management.azure.com`).
    pub arm_endpoint: String,
    /// OAuth scope of ARM tokens (`<arm audience>/.default`).
    pub scope: String,
    /// TLS/timeouts shared by both endpoints.
    pub http: HttpSettings,
    /// What stop means.
    pub stop_mode: StopMode,
    /// VM size for clones/creates.
    pub vm_size: String,
    /// Subnet for NICs polyvisor creates; default: the source VM's primary NIC subnet.
    pub subnet_id: Option<String>,
}

fn env_or(s: &Settings, key: &str, env: &str) -> Option<String> {
    s.str(key).or_else(|| std::env::var(env).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty()))
}

/// ARM names (resource groups, VMs): 1-90 of `[A-Za-z0-9_.()-]`, not ending in `.`.
pub fn valid_group(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 90
        && !name.ends_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.()-".contains(c))
}

fn valid_guid_like(v: &str) -> bool {
    !v.is_empty() && v.len() <= 64 && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

fn base_url(s: &Settings, key: &str, default: &str) -> Result<String> {
    let v = s.str(key).unwrap_or_else(|| default.to_string());
    let u = reqwest::Url::parse(&v).map_err(|_| Error::invalid(format!("setting '{key}' must be a URL")))?;
    if u.query().is_some() || u.fragment().is_some() || !u.username().is_empty() {
        return Err(Error::invalid(format!("setting '{key}' must be a plain base URL (no query, user or fragment)")));
    }
    Ok(v.trim_end_matches('/').to_string())
}

impl Config {
    /// Reads and validates settings (no I/O).
    pub fn from_settings(s: &Settings) -> Result<Config> {
        let req = |key: &str, env: &str| {
            env_or(s, key, env).ok_or_else(|| Error::invalid(format!("setting '{key}' (or {env}) is required")))
        };
        let tenant_id = req("tenant_id", "AZURE_TENANT_ID")?;
        let client_id = req("client_id", "AZURE_CLIENT_ID")?;
        let subscription_id = req("subscription_id", "AZURE_SUBSCRIPTION_ID")?;
        for (k, v) in [("tenant_id", &tenant_id), ("client_id", &client_id), ("subscription_id", &subscription_id)] {
            if !valid_guid_like(v) {
                return Err(Error::invalid(format!("setting '{k}' must be an id (letters, digits, '-')")));
            }
        }
        let client_secret = match s.secret("client_secret") {
            Some(x) => x,
            None => match std::env::var("AZURE_CLIENT_SECRET").ok().filter(|v| !v.trim().is_empty()) {
                Some(v) => SecretString::from(v),
                None if s.has("client_certificate_path") => {
                    return Err(Error::unsupported(
                        "certificate credentials ('client_certificate_path'); use 'client_secret'",
                    ))
                }
                None => return Err(Error::invalid("setting 'client_secret' (or AZURE_CLIENT_SECRET) is required")),
            },
        };
        let resource_group =
            s.str("resource_group").ok_or_else(|| Error::invalid("setting 'resource_group' is required"))?;
        if !valid_group(&resource_group) {
            return Err(Error::invalid("setting 'resource_group' is not a valid resource group name"));
        }
        let location = s.str("location").ok_or_else(|| Error::invalid("setting 'location' is required"))?;
        if !location.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(Error::invalid("setting 'location' must be a region name such as 'westeurope'"));
        }
        let authority_host = base_url(s, "authority_host", DEFAULT_AUTHORITY)?;
        let arm_endpoint = base_url(s, "resource_manager_endpoint", DEFAULT_ARM)?;
        let scope = match s.str("token_scope") {
            Some(x) => x,
            None => format!("{arm_endpoint}/.default"),
        };
        let stop_mode = match s.str("stop_mode").map(|v| v.to_ascii_lowercase()).as_deref() {
            None | Some("deallocate") => StopMode::Deallocate,
            Some("poweroff") | Some("power_off") => StopMode::PowerOff,
            Some(_) => return Err(Error::invalid("setting 'stop_mode' must be 'deallocate' or 'power_off'")),
        };
        let vm_size = s.str("vm_size").unwrap_or_else(|| DEFAULT_VM_SIZE.into());
        if !vm_size.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(Error::invalid("setting 'vm_size' must be a size name such as 'Standard_B2s'"));
        }
        let subnet_id = s.str("subnet_id");
        if let Some(id) = &subnet_id {
            if !id.starts_with("/subscriptions/") || !id.contains("/subnets/") {
                return Err(Error::invalid("setting 'subnet_id' must be a subnet resource id"));
            }
        }
        Ok(Config {
            tenant_id,
            client_id,
            client_secret,
            subscription_id,
            resource_group,
            location,
            authority_host,
            arm_endpoint,
            scope,
            http: HttpSettings::from_settings(s, "verify_tls")?,
            stop_mode,
            vm_size,
            subnet_id,
        })
    }

    /// What this driver can do (no credentials needed to know).
    pub fn capabilities() -> Capabilities {
        Capabilities {
            suspend: false,
            templates: TemplateStrategy::Flag,
            linked_clones: false,
            snapshots: true,
            snapshot_memory: false,
            clone_from_snapshot: true,
            create: true,
            consoles: Vec::new(),
            task_poll_secs: 5,
            ..Default::default()
        }
    }

    /// `/subscriptions/{s}/resourceGroups/{rg}`.
    pub fn group_path(&self) -> String {
        format!("/subscriptions/{}/resourceGroups/{}", self.subscription_id, self.resource_group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyvisor_core::ExposeSecret;
    use serde_json::json;

    fn base() -> serde_json::Value {
        json!({"tenant_id": "t1", "client_id": "c1", "client_secret": "S3CRET-value", "subscription_id": "0000-1",
               "resource_group": "rg1", "location": "westeurope"})
    }

    #[test]
    fn reads_settings_and_defaults() {
        let c = Config::from_settings(&Settings::from_json(&base()).unwrap()).unwrap();
        assert_eq!(c.arm_endpoint, DEFAULT_ARM);
        assert_eq!(c.scope, "https://management.azure.com/.default");
        assert_eq!(c.stop_mode, StopMode::Deallocate);
        assert_eq!(c.client_secret.expose_secret(), "S3CRET-value");
        assert!(!format!("{c:?}").contains("S3CRET"));
        assert_eq!(c.group_path(), "/subscriptions/0000-1/resourceGroups/rg1");
    }

    #[test]
    fn errors_name_keys_never_values() {
        for (k, v) in [
            ("resource_group", "bad/group"),
            ("location", "west europe"),
            ("stop_mode", "hibernate"),
            ("resource_manager_endpoint", "https://x/?code=S3CRET"),
            ("subnet_id", "S3CRET"),
        ] {
            let mut j = base();
            j[k] = json!(v);
            let e = Config::from_settings(&Settings::from_json(&j).unwrap()).unwrap_err();
            assert!(e.message().contains(&format!("'{k}'")), "{k}: {e}");
            assert!(!e.message().contains("S3CRET"), "{e}");
        }
        let mut j = base();
        j.as_object_mut().unwrap().remove("resource_group");
        assert!(Config::from_settings(&Settings::from_json(&j).unwrap())
            .unwrap_err()
            .message()
            .contains("resource_group"));
        let mut j = base();
        j["stop_mode"] = json!("Power_Off");
        assert_eq!(Config::from_settings(&Settings::from_json(&j).unwrap()).unwrap().stop_mode, StopMode::PowerOff);
    }
}
