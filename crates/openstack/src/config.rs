//! Settings → [`Config`]. Keys follow `clouds.yaml` (`auth_url`, `username`, `password`,
//! `project_name`/`project_id`, `user_domain_name`, `project_domain_name`, `region_name`,
//! `interface`, `application_credential_id`/`_secret`, `verify`, `cacert`); `OS_*`
//! environment variables fill what the settings leave out. The `virtuozzo` profile only
//! changes defaults (see the crate README).

use polyvisor_core::{
    Capabilities, ConsoleKind, Error, ExposeSecret, Result, SecretString, Settings, TemplateStrategy,
};
use polyvisor_http::HttpSettings;
use std::time::Duration;

/// The lowest Nova microversion the driver speaks: 2.47 embeds the flavor (vCPUs, RAM) in
/// the server, 2.45 answers `createImage` with the image id, 2.37 allows `"networks":"none"`.
pub const MIN_MICROVERSION: (u32, u32) = (2, 47);
/// The highest Nova microversion the driver was tested with (Nova 26 "Zed" on loopback).
pub const TESTED_MICROVERSION: (u32, u32) = (2, 93);
/// The default cap of the `virtuozzo` profile (unverified on a live VHI, see README).
pub const VIRTUOZZO_MICROVERSION: (u32, u32) = (2, 60);

/// Which defaults apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// Upstream OpenStack.
    OpenStack,
    /// Virtuozzo Hybrid Infrastructure (upstream-compatible compute API).
    Virtuozzo,
}

impl Profile {
    /// Display name for messages.
    pub fn display(self) -> &'static str {
        match self {
            Profile::OpenStack => "OpenStack",
            Profile::Virtuozzo => "Virtuozzo",
        }
    }
}

/// How the driver authenticates against Keystone v3.
#[derive(Clone)]
pub enum Auth {
    /// Application credential (preferred: scoped, revocable, no password).
    AppCredential {
        /// Credential id.
        id: String,
        /// Credential secret.
        secret: SecretString,
    },
    /// User name + password, scoped to a project.
    Password {
        /// User name.
        username: String,
        /// Password.
        password: SecretString,
        /// User's domain name.
        user_domain: String,
        /// Project scope.
        project: ProjectScope,
    },
}

/// The project a password token is scoped to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProjectScope {
    /// By id.
    Id(String),
    /// By name within a domain.
    Name {
        /// Project name.
        name: String,
        /// Project domain name.
        domain: String,
    },
}

/// The resolved driver configuration.
#[derive(Clone)]
pub struct Config {
    /// Defaults in use.
    pub profile: Profile,
    /// Keystone v3 URL (ends in `/v3`).
    pub auth_url: String,
    /// Credentials.
    pub auth: Auth,
    /// Catalog region (`None`: any).
    pub region: Option<String>,
    /// Catalog interface (`public`, `internal`, `admin`).
    pub interface: String,
    /// TLS and timeouts.
    pub http: HttpSettings,
    /// The Neutron network new NICs go to (name or id); `None`: servers get no NIC.
    pub network: Option<String>,
    /// A fixed flavor (name or id) for clones and creates; `None`: closest fit.
    pub flavor: Option<String>,
    /// The highest Nova microversion to use (the server's max, capped by this).
    pub max_microversion: (u32, u32),
    /// Bound on a task (boot, snapshot, delete...).
    pub task_timeout: Duration,
}

const APP_CRED_KEYS: [&str; 2] = ["application_credential_id", "application_credential_secret"];

/// Settings keys and the `OS_*` variable that fills each.
const ENV_KEYS: [(&str, &str); 12] = [
    ("auth_url", "OS_AUTH_URL"),
    ("username", "OS_USERNAME"),
    ("password", "OS_PASSWORD"),
    ("project_name", "OS_PROJECT_NAME"),
    ("project_id", "OS_PROJECT_ID"),
    ("user_domain_name", "OS_USER_DOMAIN_NAME"),
    ("project_domain_name", "OS_PROJECT_DOMAIN_NAME"),
    ("region_name", "OS_REGION_NAME"),
    ("interface", "OS_INTERFACE"),
    ("application_credential_id", "OS_APPLICATION_CREDENTIAL_ID"),
    ("application_credential_secret", "OS_APPLICATION_CREDENTIAL_SECRET"),
    ("cacert", "OS_CACERT"),
];

/// `"2.60"` → `(2, 60)`.
pub fn parse_microversion(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.trim().split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

impl Config {
    /// From settings, filled from the process environment's `OS_*` variables.
    pub fn from_settings(s: &Settings, profile: Profile) -> Result<Config> {
        Self::from_settings_env(s, profile, |k| std::env::var(k).ok())
    }

    /// From settings, filled by `env` (tests pass a map).
    pub fn from_settings_env(s: &Settings, profile: Profile, env: impl Fn(&str) -> Option<String>) -> Result<Config> {
        let mut s = s.clone();
        // `cloud=NAME` (or `OS_CLOUD`): the clouds.yaml entry fills what settings leave out
        let cloud = s.str("cloud").or_else(|| env("OS_CLOUD").filter(|v| !v.trim().is_empty()));
        if let Some(name) = cloud {
            for (key, value) in crate::clouds::load(&name, &crate::clouds::search_paths(&env))? {
                if !s.has(&key) {
                    s.set(key, value);
                }
            }
        }
        for (key, var) in ENV_KEYS {
            if !s.has(key) {
                if let Some(v) = env(var).filter(|v| !v.trim().is_empty()) {
                    s.set(key, v);
                }
            }
        }
        // clouds.yaml spells TLS as `verify` / `cacert`; the shared HTTP parser reads
        // `verify_tls` / `ca_file`.
        if !s.has("verify_tls") && !s.has("verify_tls_certificate") {
            if let Some(v) = s.raw("verify").cloned() {
                s.set("verify_tls", v);
            }
        }
        if !s.has("ca_file") {
            if let Some(v) = s.str("cacert") {
                s.set("ca_file", v);
            }
        }
        let http = HttpSettings::from_settings(&s, "verify")?;
        let auth_url = s.str("auth_url").ok_or_else(|| Error::invalid("setting 'auth_url' is required"))?;
        let auth_url = normalize_auth_url(&auth_url)?;
        let auth = if s.has(APP_CRED_KEYS[0]) || s.has(APP_CRED_KEYS[1]) {
            let id = s.str(APP_CRED_KEYS[0]).ok_or_else(|| {
                Error::invalid("setting 'application_credential_id' is required with 'application_credential_secret'")
            })?;
            let secret = s.secret(APP_CRED_KEYS[1]).ok_or_else(|| {
                Error::invalid("setting 'application_credential_secret' is required with 'application_credential_id'")
            })?;
            Auth::AppCredential { id, secret }
        } else {
            let username = s.str("username").ok_or_else(|| {
                Error::invalid("setting 'username' (or 'application_credential_id' + '_secret') is required")
            })?;
            let password = s.secret("password").ok_or_else(|| Error::invalid("setting 'password' is required"))?;
            let user_domain = s.str("user_domain_name").unwrap_or_else(|| "Default".into());
            let project = match (s.str("project_id"), s.str("project_name")) {
                (Some(id), _) => ProjectScope::Id(id),
                (None, Some(name)) => ProjectScope::Name {
                    name,
                    domain: s.str("project_domain_name").unwrap_or_else(|| "Default".into()),
                },
                (None, None) => return Err(Error::invalid("setting 'project_name' or 'project_id' is required")),
            };
            Auth::Password { username, password, user_domain, project }
        };
        let interface = s.str("interface").unwrap_or_else(|| "public".into()).to_ascii_lowercase();
        let interface = interface.trim_end_matches("url").to_string(); // `publicURL` (v2 style)
        if !matches!(interface.as_str(), "public" | "internal" | "admin") {
            return Err(Error::invalid("setting 'interface' must be 'public', 'internal' or 'admin'"));
        }
        let default_mv = match profile {
            Profile::OpenStack => TESTED_MICROVERSION,
            Profile::Virtuozzo => VIRTUOZZO_MICROVERSION,
        };
        let max_microversion = match s.str("microversion") {
            None => default_mv,
            Some(raw) => match parse_microversion(&raw) {
                Some(v) if v >= MIN_MICROVERSION => v,
                _ => {
                    return Err(Error::invalid(format!(
                        "setting 'microversion' must be a Nova microversion of at least {}.{}",
                        MIN_MICROVERSION.0, MIN_MICROVERSION.1
                    )))
                }
            },
        };
        Ok(Config {
            profile,
            auth_url,
            auth,
            region: s.str("region_name"),
            interface,
            http,
            network: s.str("network"),
            flavor: s.str("flavor"),
            max_microversion,
            task_timeout: Duration::from_secs(s.u64_or("task_timeout_secs", 900)?.clamp(30, 24 * 3600)),
        })
    }

    /// What the driver can do (no I/O, no credentials).
    pub fn capabilities() -> Capabilities {
        Capabilities {
            suspend: true,
            templates: TemplateStrategy::Flag,
            linked_clones: false,
            snapshots: true,
            snapshot_memory: false,
            clone_from_snapshot: true,
            create: true,
            consoles: vec![ConsoleKind::Url],
            task_poll_secs: 2,
            // L3: Neutron network + subnet + security group per sandbox subnet (`l3.rs`).
            networking: polyvisor_core::netops::NetworkCaps { vlan_nics: false, subnets: true, security_groups: true },
            ..Capabilities::default()
        }
    }

    /// Whether the credentials are an application credential.
    pub fn uses_app_credential(&self) -> bool {
        matches!(self.auth, Auth::AppCredential { .. })
    }

    /// The Keystone request body for these credentials (contains the secret).
    pub fn auth_body(&self) -> serde_json::Value {
        use serde_json::json;
        match &self.auth {
            Auth::AppCredential { id, secret } => json!({"auth": {"identity": {
                "methods": ["application_credential"],
                "application_credential": {"id": id, "secret": secret.expose_secret()}}}}),
            Auth::Password { username, password, user_domain, project } => {
                let scope = match project {
                    ProjectScope::Id(id) => json!({"project": {"id": id}}),
                    ProjectScope::Name { name, domain } => {
                        json!({"project": {"name": name, "domain": {"name": domain}}})
                    }
                };
                json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
                    "name": username, "domain": {"name": user_domain}, "password": password.expose_secret()}}},
                    "scope": scope}})
            }
        }
    }
}

/// `http(s)://host:5000` or `.../v3` or `.../v3/` → `.../v3`.
fn normalize_auth_url(raw: &str) -> Result<String> {
    let t = raw.trim().trim_end_matches('/');
    if !(t.starts_with("https://") || t.starts_with("http://")) {
        return Err(Error::invalid("setting 'auth_url' must be an https:// URL of Keystone"));
    }
    if t.ends_with("/v3") {
        Ok(t.to_string())
    } else if t.ends_with("/v2.0") {
        Err(Error::invalid("setting 'auth_url' names Keystone v2.0; this driver speaks Keystone v3"))
    } else {
        Ok(format!("{t}/v3"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)], env: &[(&str, &str)]) -> Result<Config> {
        let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_settings_env(&Settings::from_pairs(pairs.iter().copied()), Profile::OpenStack, |k| {
            env.get(k).cloned()
        })
    }

    #[test]
    fn cloud_entry_fills_under_settings_and_over_env() {
        let dir = std::env::temp_dir().join(format!("pv-os-cloud-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("clouds.yaml");
        std::fs::write(
            &file,
            "clouds:\n  lab:\n    auth:\n      auth_url: https://keystone.lab:5000\n      username: from-file\n      \
             password: pw-file\n      project_name: vdi\n      project_domain_name: Corp\n    region_name: R2\n",
        )
        .unwrap();
        let path = file.display().to_string();
        let c = cfg(
            &[("cloud", "lab"), ("username", "from-settings")],
            &[("OS_CLIENT_CONFIG_FILE", path.as_str()), ("OS_REGION_NAME", "from-env"), ("OS_INTERFACE", "admin")],
        )
        .unwrap();
        let body = c.auth_body();
        assert_eq!(body["auth"]["identity"]["password"]["user"]["name"], "from-settings");
        assert_eq!(body["auth"]["identity"]["password"]["user"]["password"], "pw-file");
        assert_eq!(body["auth"]["scope"]["project"]["domain"]["name"], "Corp");
        assert_eq!(c.auth_url, "https://keystone.lab:5000/v3");
        assert_eq!(c.region.as_deref(), Some("R2"), "the cloud entry wins over OS_* variables");
        assert_eq!(c.interface, "admin", "OS_* fills what neither settings nor the entry set");
        // OS_CLOUD selects the entry when the setting is absent; a missing cloud is a clear error
        let c = cfg(&[], &[("OS_CLIENT_CONFIG_FILE", path.as_str()), ("OS_CLOUD", "lab")]).unwrap();
        assert_eq!(c.auth_body()["auth"]["identity"]["password"]["user"]["name"], "from-file");
        let e = cfg(&[("cloud", "prod")], &[("OS_CLIENT_CONFIG_FILE", path.as_str())]).err().unwrap();
        assert!(e.message().contains("cloud 'prod' is not defined"), "{}", e.message());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn password_auth_with_defaults_and_env_fill() {
        let c = cfg(
            &[("auth_url", "http://127.0.0.1:5000"), ("username", "demo"), ("allow_insecure_http", "true")],
            &[("OS_PASSWORD", "pw-from-env"), ("OS_PROJECT_NAME", "demo"), ("OS_USERNAME", "ignored")],
        )
        .unwrap();
        assert_eq!(c.auth_url, "http://127.0.0.1:5000/v3");
        assert_eq!(c.interface, "public");
        let body = c.auth_body();
        assert_eq!(body["auth"]["identity"]["password"]["user"]["name"], "demo");
        assert_eq!(body["auth"]["identity"]["password"]["user"]["domain"]["name"], "Default");
        assert_eq!(body["auth"]["scope"]["project"]["domain"]["name"], "Default");
        assert_eq!(body["auth"]["identity"]["password"]["user"]["password"], "pw-from-env");
        assert_eq!(c.max_microversion, TESTED_MICROVERSION);
    }

    #[test]
    fn app_credentials_win_and_are_checked_in_pairs() {
        let c = cfg(
            &[
                ("auth_url", "https://k/v3/"),
                ("application_credential_id", "abc"),
                ("application_credential_secret", "s3cret"),
                ("username", "x"),
            ],
            &[],
        )
        .unwrap();
        assert!(c.uses_app_credential());
        assert_eq!(c.auth_body()["auth"]["identity"]["methods"][0], "application_credential");
        let e = cfg(&[("auth_url", "https://k"), ("application_credential_secret", "s3cret")], &[]).err().unwrap();
        assert!(e.message().contains("application_credential_id") && !e.message().contains("s3cret"));
    }

    #[test]
    fn bad_settings_name_the_key() {
        assert!(cfg(&[], &[]).err().unwrap().message().contains("auth_url"));
        let e = cfg(&[("auth_url", "https://k"), ("username", "u"), ("password", "p")], &[]).err().unwrap();
        assert!(e.message().contains("project_name"));
        let e = cfg(
            &[("auth_url", "https://k"), ("username", "u"), ("password", "p"), ("project_id", "x"), ("interface", "x")],
            &[],
        )
        .err()
        .unwrap();
        assert!(e.message().contains("interface"));
        let e = cfg(
            &[
                ("auth_url", "https://k"),
                ("username", "u"),
                ("password", "p"),
                ("project_id", "x"),
                ("microversion", "2.1"),
            ],
            &[],
        )
        .err()
        .unwrap();
        assert!(e.message().contains("microversion"));
        assert!(cfg(&[("auth_url", "https://k/v2.0"), ("username", "u"), ("password", "p"), ("project_id", "x")], &[])
            .is_err());
    }

    #[test]
    fn clouds_yaml_tls_keys_map_onto_the_shared_ones() {
        let c = cfg(
            &[
                ("auth_url", "https://k"),
                ("username", "u"),
                ("password", "p"),
                ("project_id", "x"),
                ("verify", "false"),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(c.http.tls, polyvisor_http::TlsMode::Insecure);
        let c = cfg(
            &[
                ("auth_url", "https://k"),
                ("username", "u"),
                ("password", "p"),
                ("project_id", "x"),
                ("cacert", "/ca.pem"),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(c.http.tls, polyvisor_http::TlsMode::CaFile("/ca.pem".into()));
        assert_eq!(c.interface, "public");
        assert_eq!(parse_microversion("2.93"), Some((2, 93)));
        assert_eq!(parse_microversion("x"), None);
    }
}
