//! Settings → [`Config`] (no I/O), and [`Config::connect`] → [`Connection`] (reads the local
//! kubeconfig / service-account files; never the network).
//!
//! Where the connection comes from, first match wins:
//! 1. `server` (+ `token`, `ca_file` / `fingerprint` / `verify_tls`): what RAS and CloudStack send;
//! 2. `kubeconfig` (a path) with optional `context`;
//! 3. in a pod (`KUBERNETES_SERVICE_HOST` set): the service account's token, CA and namespace;
//! 4. `KUBECONFIG` / `~/.kube/config` with optional `context` (as `kubectl` does).
//!
//! `namespace` wins; else the context's namespace (or the pod's); else `default`.
//!
//! Kubeconfig users authenticate as `kubectl` does: `token` / `tokenFile` (bearer), or a
//! client certificate (`client-certificate[-data]` + `client-key[-data]`, mutual TLS); the
//! cluster's CA comes from `certificate-authority` (a file) or `certificate-authority-data`
//! (embedded). `exec` and `auth-provider` plugins are refused with a message naming the way
//! out (see the crate README): kube runs them only inside its own tower client, which
//! polyvisor does not use for transport.

use base64::Engine as _;
use polyvisor_core::{
    Capabilities, ConsoleKind, Error, ExposeSecret, Result, SecretString, Settings, TemplateStrategy,
};
use polyvisor_http::{ClientIdentity, HttpSettings, TlsMode};
use std::path::PathBuf;
use std::time::Duration;

/// How power actions reach KubeVirt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerVia {
    /// `subresources.kubevirt.io` start/stop/restart/pause/unpause (default).
    Subresources,
    /// Merge-patch `spec.runStrategy` (`Always`/`Halted`) and delete the VMI for resets:
    /// the documented fallback where the subresource API is not reachable (e.g. an API proxy
    /// that only forwards the CRD groups). No pause/unpause there: `suspend` is then false.
    RunStrategy,
}

/// Where the connection settings come from (resolved by [`Config::connect`]).
#[derive(Clone, Debug)]
pub enum Source {
    /// `server` + `token`.
    Server {
        /// API server URL.
        server: String,
    },
    /// A kubeconfig file (`None`: `KUBECONFIG` or `~/.kube/config`).
    Kubeconfig {
        /// Explicit path.
        path: Option<PathBuf>,
        /// Context name (`None`: the current context).
        context: Option<String>,
    },
    /// The pod's service account.
    InCluster(Pod),
}

/// The resolved, validated settings.
#[derive(Clone)]
pub struct Config {
    /// Connection source.
    pub source: Source,
    /// `token` setting (bearer token, secret).
    pub token: Option<SecretString>,
    /// `namespace` setting.
    pub namespace: Option<String>,
    /// TLS and timeouts (polyvisor-http's keys).
    pub http: HttpSettings,
    /// Power path.
    pub power_via: PowerVia,
    /// Cap on waiting for a started clone's IP (`ready_timeout`, seconds, default 600).
    pub ready_timeout: Duration,
}

/// What the in-cluster configuration reads from the pod: the API service's address from
/// the environment and the mounted service-account directory. [`Pod::from_process`] in
/// production; tests point it elsewhere.
#[derive(Clone, Debug)]
pub struct Pod {
    /// `KUBERNETES_SERVICE_HOST`.
    pub service_host: Option<String>,
    /// `KUBERNETES_SERVICE_PORT` (default 443).
    pub service_port: Option<String>,
    /// The service account's `token`, `ca.crt` and `namespace`
    /// (`/var/run/secrets/kubernetes.io/serviceaccount`).
    pub account_dir: PathBuf,
}

/// Where Kubernetes mounts a pod's service account.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

impl Pod {
    /// This process's environment and the standard mount point.
    pub fn from_process() -> Pod {
        Pod {
            service_host: std::env::var("KUBERNETES_SERVICE_HOST").ok().filter(|h| !h.is_empty()),
            service_port: std::env::var("KUBERNETES_SERVICE_PORT").ok().filter(|p| !p.is_empty()),
            account_dir: PathBuf::from(SERVICE_ACCOUNT_DIR),
        }
    }
}

impl Config {
    /// Reads the settings (no I/O).
    pub fn from_settings(s: &Settings) -> Result<Config> {
        Config::from_settings_in(s, Pod::from_process())
    }

    /// As [`Config::from_settings`], with the pod environment given (tests).
    pub fn from_settings_in(s: &Settings, pod: Pod) -> Result<Config> {
        let http = HttpSettings::from_settings(s, "verify_tls")?;
        let source = if let Some(server) = s.str_any(&["server", "url"]) {
            Source::Server { server: server.trim_end_matches('/').to_string() }
        } else if let Some(path) = s.str("kubeconfig") {
            Source::Kubeconfig { path: Some(PathBuf::from(path)), context: s.str("context") }
        } else if pod.service_host.is_some() && !s.has("context") {
            Source::InCluster(pod)
        } else {
            Source::Kubeconfig { path: None, context: s.str("context") }
        };
        let namespace = s.str("namespace");
        if let Some(ns) = &namespace {
            if !crate::names::is_dns_label(ns) {
                return Err(Error::invalid("setting 'namespace' must be a Kubernetes namespace name (DNS-1123 label)"));
            }
        }
        let power_via = match s.str("power_via").map(|v| v.to_ascii_lowercase()).as_deref() {
            None | Some("subresources") => PowerVia::Subresources,
            Some("run_strategy") | Some("runstrategy") => PowerVia::RunStrategy,
            Some(_) => return Err(Error::invalid("setting 'power_via' must be 'subresources' or 'run_strategy'")),
        };
        Ok(Config {
            source,
            token: s.secret("token"),
            namespace,
            http,
            power_via,
            ready_timeout: Duration::from_secs(s.u64_or("ready_timeout", 600)?.max(1)),
        })
    }

    /// What the driver can do in this configuration (no I/O, no credentials).
    pub fn capabilities(&self) -> Capabilities {
        Capabilities {
            suspend: self.power_via == PowerVia::Subresources,
            templates: TemplateStrategy::Flag,
            linked_clones: false,
            snapshots: true,
            snapshot_memory: false,
            clone_from_snapshot: true,
            create: true,
            consoles: vec![ConsoleKind::Url],
            task_poll_secs: 2,
            ..Capabilities::default()
        }
    }

    /// Resolves the connection: reads kubeconfig / service-account files, never the network.
    pub fn connect(&self) -> Result<Connection> {
        match &self.source {
            Source::Server { server } => Ok(Connection {
                server: server.clone(),
                token: self.token.clone().map(Token::Value),
                namespace: self.namespace.clone().unwrap_or_else(|| "default".into()),
                http: self.http.clone(),
                identity: None,
            }),
            Source::InCluster(pod) => {
                let host = pod.service_host.clone().unwrap_or_default();
                let port = pod.service_port.clone().unwrap_or_else(|| "443".into());
                let host = if host.contains(':') { format!("[{host}]") } else { host };
                let dir = pod.account_dir.clone();
                if self.token.is_none() && !dir.join("token").is_file() {
                    return Err(Error::invalid(
                        "in a pod (KUBERNETES_SERVICE_HOST is set) but no service-account token is mounted: \
                         set 'token', or mount the service account (automountServiceAccountToken)",
                    ));
                }
                let ns = std::fs::read_to_string(dir.join("namespace")).ok().map(|s| s.trim().to_string());
                let mut http = self.http.clone();
                if matches!(http.tls, TlsMode::Verify) {
                    http.tls = TlsMode::CaFile(dir.join("ca.crt").to_string_lossy().into_owned());
                }
                Ok(Connection {
                    server: format!("https://{host}:{port}"),
                    token: Some(match &self.token {
                        Some(t) => Token::Value(t.clone()),
                        None => Token::File(dir.join("token")),
                    }),
                    namespace: self.namespace.clone().or(ns).unwrap_or_else(|| "default".into()),
                    http,
                    identity: None,
                })
            }
            Source::Kubeconfig { path, context } => self.connect_kubeconfig(path.as_ref(), context.as_deref()),
        }
    }

    fn connect_kubeconfig(&self, path: Option<&PathBuf>, context: Option<&str>) -> Result<Connection> {
        use kube::config::Kubeconfig;
        let key = if path.is_some() { "kubeconfig" } else { "KUBECONFIG" };
        let kc = match path {
            Some(p) => Kubeconfig::read_from(p),
            None => Kubeconfig::read(),
        }
        .map_err(|e| {
            Error::invalid(format!("the kubeconfig ('{key}') cannot be read; set 'server' and 'token' or 'kubeconfig'"))
                .with_detail(e.to_string())
        })?;
        let ctx_name = context
            .map(str::to_string)
            .or_else(|| kc.current_context.clone())
            .ok_or_else(|| Error::invalid("the kubeconfig has no current context: set 'context'"))?;
        let ctx = kc
            .contexts
            .iter()
            .find(|c| c.name == ctx_name)
            .and_then(|c| c.context.clone())
            .ok_or_else(|| Error::invalid("setting 'context' names no context of the kubeconfig"))?;
        let cluster = kc
            .clusters
            .iter()
            .find(|c| c.name == ctx.cluster)
            .and_then(|c| c.cluster.clone())
            .ok_or_else(|| Error::invalid("the kubeconfig context names a cluster it does not define"))?;
        let user = ctx
            .user
            .as_ref()
            .and_then(|u| kc.auth_infos.iter().find(|a| &a.name == u))
            .and_then(|a| a.auth_info.clone());
        let server = cluster
            .server
            .clone()
            .ok_or_else(|| Error::invalid("the kubeconfig cluster has no 'server'"))?
            .trim_end_matches('/')
            .to_string();
        let mut http = self.http.clone();
        if matches!(http.tls, TlsMode::Verify) {
            if cluster.insecure_skip_tls_verify == Some(true) {
                http.tls = TlsMode::Insecure;
            } else if let Some(data) = &cluster.certificate_authority_data {
                http.tls = TlsMode::CaPem(decode_data(data, "certificate-authority-data")?);
            } else if let Some(ca) = &cluster.certificate_authority {
                http.tls = TlsMode::CaFile(ca.clone());
            }
        }
        let identity = match &user {
            Some(u) => client_identity(u)?,
            None => None,
        };
        let token = match (&self.token, user) {
            (Some(t), _) => Some(Token::Value(t.clone())),
            (None, Some(u)) if u.token.is_some() => u.token.map(Token::Value),
            (None, Some(u)) if u.token_file.is_some() => u.token_file.map(|f| Token::File(PathBuf::from(f))),
            (None, Some(u)) if identity.is_none() && (u.exec.is_some() || u.auth_provider.is_some()) => {
                return Err(Error::invalid(
                    "the kubeconfig user authenticates through an exec or auth-provider plugin, which polyvisor \
                     does not run: set 'token' (e.g. a service account token, or the output of \
                     'kubectl create token'), or use a kubeconfig user with a token or a client certificate",
                ))
            }
            _ => None,
        };
        Ok(Connection {
            server,
            token,
            namespace: self.namespace.clone().or(ctx.namespace).unwrap_or_else(|| "default".into()),
            http,
            identity,
        })
    }
}

/// Base64 kubeconfig data (`*-data` fields); errors name the field, never the value.
fn decode_data(data: &str, field: &str) -> Result<Vec<u8>> {
    let compact: String = data.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|_| Error::invalid(format!("the kubeconfig's '{field}' is not base64")))
}

/// The user's client certificate and key (embedded `*-data` or files), both or neither.
fn client_identity(u: &kube::config::AuthInfo) -> Result<Option<ClientIdentity>> {
    let read = |path: &str, field: &str| {
        std::fs::read(path).map_err(|e| {
            Error::invalid(format!("the kubeconfig's '{field}' names a file that cannot be read"))
                .with_detail(e.to_string())
        })
    };
    let cert = match (&u.client_certificate_data, &u.client_certificate) {
        (Some(d), _) => Some(decode_data(d, "client-certificate-data")?),
        (None, Some(p)) => Some(read(p, "client-certificate")?),
        (None, None) => None,
    };
    let key = match (&u.client_key_data, &u.client_key) {
        (Some(d), _) => Some(decode_data(d.expose_secret(), "client-key-data")?),
        (None, Some(p)) => Some(read(p, "client-key")?),
        (None, None) => None,
    };
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(cert_pem), Some(key)) => {
            let key = String::from_utf8(key).map_err(|_| Error::invalid("the kubeconfig's client key is not PEM"))?;
            Ok(Some(ClientIdentity { cert_pem, key_pem: SecretString::from(key) }))
        }
        _ => Err(Error::invalid(
            "the kubeconfig user has a client certificate without its key (or a key without its certificate)",
        )),
    }
}

/// A bearer token, or the file it is re-read from on every request (projected service
/// account tokens rotate).
#[derive(Clone)]
pub enum Token {
    /// The token itself.
    Value(SecretString),
    /// A file holding it.
    File(PathBuf),
}

/// Everything needed to talk to one cluster namespace.
#[derive(Clone)]
pub struct Connection {
    /// API server URL (no trailing slash).
    pub server: String,
    /// Bearer token.
    pub token: Option<Token>,
    /// The namespace every guest lives in.
    pub namespace: String,
    /// TLS/timeouts.
    pub http: HttpSettings,
    /// Client certificate (mutual TLS), from the kubeconfig user.
    pub identity: Option<ClientIdentity>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyvisor_core::ExposeSecret;
    use serde_json::json;

    fn cfg(v: serde_json::Value) -> Result<Config> {
        Config::from_settings(&Settings::from_json(&v).unwrap())
    }

    #[test]
    fn server_and_token_settings() {
        let c = cfg(json!({"server": "https://api.ocp.lab:6443/", "token": "s3cret", "namespace": "vms"})).unwrap();
        let conn = c.connect().unwrap();
        assert_eq!(conn.server, "https://api.ocp.lab:6443");
        assert_eq!(conn.namespace, "vms");
        match conn.token {
            Some(Token::Value(t)) => assert_eq!(t.expose_secret(), "s3cret"),
            _ => panic!("token"),
        }
        assert!(cfg(json!({"server": "https://x", "namespace": "Bad_NS"})).is_err());
        let e = cfg(json!({"power_via": "magic"})).err().unwrap();
        assert!(e.message().contains("'power_via'"));
        assert!(!cfg(json!({"server": "https://x", "power_via": "run_strategy"})).unwrap().capabilities().suspend);
    }

    #[test]
    fn kubeconfig_context_namespace_and_token() {
        let dir = std::env::temp_dir().join(format!("pv-kv-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\ncurrent-context: a\nclusters:\n- name: c1\n  cluster:\n    server: https://127.0.0.1:6443\n    certificate-authority: /etc/ca.pem\ncontexts:\n- name: a\n  context:\n    cluster: c1\n    user: u1\n- name: b\n  context:\n    cluster: c1\n    user: u1\n    namespace: team-b\nusers:\n- name: u1\n  user:\n    token: tok-1\n",
        )
        .unwrap();
        let p = path.to_string_lossy().to_string();
        let a = cfg(json!({"kubeconfig": p})).unwrap().connect().unwrap();
        assert_eq!((a.server.as_str(), a.namespace.as_str()), ("https://127.0.0.1:6443", "default"));
        assert_eq!(a.http.tls, TlsMode::CaFile("/etc/ca.pem".into()));
        let b = cfg(json!({"kubeconfig": p, "context": "b"})).unwrap().connect().unwrap();
        assert_eq!(b.namespace, "team-b");
        match b.token {
            Some(Token::Value(t)) => assert_eq!(t.expose_secret(), "tok-1"),
            _ => panic!("token"),
        }
        let e = cfg(json!({"kubeconfig": p, "context": "zzz"})).unwrap().connect().err().unwrap();
        assert!(e.message().contains("'context'"), "{e}");
        // Embedded data: the CA wins over a CA file; bad base64 and a certificate without
        // its key are refused naming the field, never echoing the value.
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\ncurrent-context: a\nclusters:\n- name: c1\n  cluster:\n    server: https://127.0.0.1:6443\n    certificate-authority-data: UEVN\ncontexts:\n- name: a\n  context:\n    cluster: c1\n    user: u1\nusers:\n- name: u1\n  user:\n    client-certificate-data: UEVN\n",
        )
        .unwrap();
        let e = cfg(json!({"kubeconfig": p})).unwrap().connect().err().unwrap();
        assert!(e.message().contains("without its key"), "{e}");
        let text = std::fs::read_to_string(&path).unwrap().replace("client-certificate-data: UEVN", "token: t");
        std::fs::write(&path, &text).unwrap();
        let c = cfg(json!({"kubeconfig": p})).unwrap().connect().unwrap();
        assert_eq!(c.http.tls, TlsMode::CaPem(b"PEM".to_vec()));
        std::fs::write(&path, text.replace("UEVN", "not*base64")).unwrap();
        let e = cfg(json!({"kubeconfig": p})).unwrap().connect().err().unwrap();
        assert!(e.message().contains("'certificate-authority-data' is not base64"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
