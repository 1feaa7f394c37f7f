//! Settings → [`Config`] (validated; secrets as [`SecretString`]). Keys (aliases after `|`):
//! `url|api_url` (https:// only), `access_token|token` or `username|user` + `password`,
//! `verify_tls|verify_tls_certificate`, `ca_file`, `fingerprint`, `connect_timeout`,
//! `request_timeout` (polyvisor-http), `group` (id or name, where clones and creates go);
//! creates from the provisioning catalog: `cloud`, `instance_type`, `layout`, `plan` (each an
//! id or a name, see [`Catalog`]).

use polyvisor_core::{Error, Result, SecretString, Settings};
use polyvisor_http::HttpSettings;

/// How the driver authenticates.
#[derive(Clone)]
pub enum Auth {
    /// A Morpheus API access token (`Authorization: Bearer`).
    Token(SecretString),
    /// OAuth password grant (`POST /oauth/token`, client id `morph-api`, scope `write`);
    /// the token is cached in memory and fetched again on a 401.
    Password {
        /// User (`tenant\user` for subtenants).
        username: String,
        /// Password.
        password: SecretString,
    },
}

/// The driver's configuration.
#[derive(Clone)]
pub struct Config {
    /// `https://host[:port]` without trailing slash.
    pub base_url: String,
    /// Host (and port) for messages.
    pub display_host: String,
    /// Credentials.
    pub auth: Auth,
    /// TLS and timeouts.
    pub http: HttpSettings,
    /// Group (id or name) for clones and creates; `None` keeps the source's group.
    pub group: Option<String>,
    /// Creates from the provisioning catalog (`POST /api/instances`) when `instance_type` is
    /// set; `None`: creates clone a flagged template instance.
    pub catalog: Option<Catalog>,
}

/// The catalog settings of a create (`POST /api/instances`), each an id or a name (or code),
/// resolved through the API once per process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Catalog {
    /// `cloud`: the cloud (zone) id or name.
    pub cloud: String,
    /// `instance_type`: the instance type id, name or code (`mvm`).
    pub instance_type: String,
    /// `layout`: a layout of that instance type (id, name or code); `None`: its only layout.
    pub layout: Option<String>,
    /// `plan`: a service plan offered for the layout (id, name or code); `None`: the smallest
    /// plan that fits each create's CPU and memory.
    pub plan: Option<String>,
}

/// An id-or-name setting: at most 255 characters, no control characters.
fn ref_setting(s: &Settings, key: &str) -> Result<Option<String>> {
    let Some(v) = s.str(key) else { return Ok(None) };
    let v = v.trim().to_string();
    if v.is_empty() || v.len() > 255 || v.chars().any(char::is_control) {
        return Err(Error::invalid(format!("setting '{key}' is not a valid id or name")));
    }
    Ok(Some(v))
}

impl Config {
    /// Parses and validates the settings. Errors name keys, never values.
    pub fn from_settings(s: &Settings) -> Result<Config> {
        let url = s
            .str_any(&["url", "api_url"])
            .ok_or_else(|| Error::invalid("setting 'url' is required (https://<HPE VM Essentials manager>)"))?;
        let parsed = reqwest::Url::parse(&url).map_err(|_| Error::invalid("setting 'url' is not a valid URL"))?;
        if parsed.scheme() != "https" {
            return Err(Error::invalid(
                "setting 'url' must start with https:// (credentials are never sent over plain http)",
            ));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() || parsed.query().is_some() {
            return Err(Error::invalid("setting 'url' must not carry credentials or a query"));
        }
        let host = parsed.host_str().ok_or_else(|| Error::invalid("setting 'url' has no host"))?;
        let display_host = match parsed.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        let auth = if let Some(t) = s.secret_any(&["access_token", "token"]) {
            Auth::Token(t)
        } else {
            match (s.str_any(&["username", "user"]), s.secret("password")) {
                (Some(username), Some(password)) => {
                    if username.len() > 256 || username.chars().any(char::is_control) {
                        return Err(Error::invalid("setting 'username' is not a valid user name"));
                    }
                    Auth::Password { username, password }
                }
                _ => {
                    return Err(Error::invalid("HPE VM Essentials needs 'access_token', or 'username' and 'password'"))
                }
            }
        };
        let group = ref_setting(s, "group")?;
        let catalog = match (
            ref_setting(s, "instance_type")?,
            ref_setting(s, "cloud")?,
            ref_setting(s, "layout")?,
            ref_setting(s, "plan")?,
        ) {
            (None, None, None, None) => None,
            (None, ..) => {
                return Err(Error::invalid(
                    "settings 'cloud', 'layout' and 'plan' take effect only with 'instance_type' (creates from the catalog)",
                ))
            }
            (Some(instance_type), cloud, layout, plan) => {
                let Some(cloud) = cloud else {
                    return Err(Error::invalid("setting 'instance_type' needs 'cloud' (the cloud to provision on)"));
                };
                if group.is_none() {
                    return Err(Error::invalid("setting 'instance_type' needs 'group' (the group to provision in)"));
                }
                Some(Catalog { cloud, instance_type, layout, plan })
            }
        };
        Ok(Config {
            base_url: url.trim_end_matches('/').to_string(),
            display_host,
            auth,
            http: HttpSettings::from_settings(s, "verify_tls")?,
            group,
            catalog,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg(v: serde_json::Value) -> Result<Config> {
        Config::from_settings(&Settings::from_json(&v).unwrap())
    }

    #[test]
    fn url_and_credentials_are_validated_without_echoing_values() {
        let ok = cfg(json!({"url": "https://vme.lab:8443/", "access_token": "s3cret-token"})).unwrap();
        assert_eq!((ok.base_url.as_str(), ok.display_host.as_str()), ("https://vme.lab:8443", "vme.lab:8443"));
        assert!(matches!(ok.auth, Auth::Token(_)));
        let pw = cfg(json!({"url": "https://vme.lab", "username": "admin", "password": "pw-s3cret"})).unwrap();
        assert!(matches!(pw.auth, Auth::Password { .. }));
        for bad in [
            json!({"access_token": "t"}),
            json!({"url": "http://vme.lab", "access_token": "s3cret-token"}),
            json!({"url": "https://u:p@vme.lab", "access_token": "s3cret-token"}),
            json!({"url": "vme.lab", "access_token": "s3cret-token"}),
            json!({"url": "https://vme.lab", "username": "admin"}),
        ] {
            let e = cfg(bad.clone()).err().unwrap_or_else(|| panic!("{bad}"));
            assert_eq!(e.kind(), polyvisor_core::ErrorKind::InvalidInput);
            assert!(!e.message().contains("s3cret"), "{e}");
        }
    }

    #[test]
    fn catalog_settings_are_validated_before_any_request() {
        let base = json!({"url": "https://vme.lab", "access_token": "t0k3n"});
        let with = |extra: serde_json::Value| {
            let mut v = base.clone();
            v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            cfg(v)
        };
        assert_eq!(with(json!({})).unwrap().catalog, None);
        let c = with(json!({"group": "ci", "cloud": "vme-cluster", "instance_type": "HPE VM", "plan": "72"}))
            .unwrap()
            .catalog
            .unwrap();
        assert_eq!(
            c,
            Catalog {
                cloud: "vme-cluster".into(),
                instance_type: "HPE VM".into(),
                layout: None,
                plan: Some("72".into())
            }
        );
        for (bad, says) in [
            (json!({"cloud": "c", "layout": "l"}), "instance_type"),
            (json!({"plan": "p"}), "instance_type"),
            (json!({"group": "g", "instance_type": "mvm"}), "'cloud'"),
            (json!({"cloud": "c", "instance_type": "mvm"}), "'group'"),
            (json!({"group": "g", "cloud": "c", "instance_type": "mvm", "layout": "a\nb"}), "'layout'"),
            (json!({"group": "g", "cloud": " ", "instance_type": "mvm"}), "'cloud'"),
            (json!({"group": "x".repeat(300)}), "'group'"),
        ] {
            let e = with(bad.clone()).err().unwrap_or_else(|| panic!("{bad}"));
            assert_eq!(e.kind(), polyvisor_core::ErrorKind::InvalidInput, "{bad}");
            assert!(e.message().contains(says), "{bad}: {e}");
        }
    }
}
