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

use polyvisor_core::{Capabilities, ConsoleKind, Error, Result, SecretString, Settings, TemplateStrategy};
use polyvisor_http::{HttpSettings, TlsMode};
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
    InCluster,
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

impl Config {
    /// Reads the settings (no I/O).
    pub fn from_settings(s: &Settings) -> Result<Config> {
        let http = HttpSettings::from_settings(s, "verify_tls")?;
        let source = if let Some(server) = s.str_any(&["server", "url"]) {
            Source::Server { server: server.trim_end_matches('/').to_string() }
        } else if let Some(path) = s.str("kubeconfig") {
            Source::Kubeconfig { path: Some(PathBuf::from(path)), context: s.str("context") }
        } else if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() && !s.has("context") {
            Source::InCluster
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
            ..Default::default()
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
            }),
            Source::InCluster => {
                let host = std::env::var("KUBERNETES_SERVICE_HOST").unwrap_or_default();
                let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
                let host = if host.contains(':') { format!("[{host}]") } else { host };
                let dir = PathBuf::from("/var/run/secrets/kubernetes.io/serviceaccount");
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
            } else if let Some(ca) = &cluster.certificate_authority {
                http.tls = TlsMode::CaFile(ca.clone());
            } else if cluster.certificate_authority_data.is_some() {
                return Err(Error::invalid(
                    "the kubeconfig embeds its CA ('certificate-authority-data'): set 'ca_file' (or 'fingerprint') \
                     to the cluster's CA",
                ));
            }
        }
        let token = match (&self.token, user) {
            (Some(t), _) => Some(Token::Value(t.clone())),
            (None, Some(u)) if u.token.is_some() => u.token.map(Token::Value),
            (None, Some(u)) if u.token_file.is_some() => u.token_file.map(|f| Token::File(PathBuf::from(f))),
            (None, Some(u))
                if u.exec.is_some()
                    || u.auth_provider.is_some()
                    || u.client_certificate.is_some()
                    || u.client_certificate_data.is_some() =>
            {
                return Err(Error::invalid(
                    "the kubeconfig user authenticates with a client certificate or an exec/auth-provider plugin; \
                     polyvisor needs a bearer token: set 'token' (a service account token)",
                ))
            }
            _ => None,
        };
        Ok(Connection {
            server,
            token,
            namespace: self.namespace.clone().or(ctx.namespace).unwrap_or_else(|| "default".into()),
            http,
        })
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
        std::fs::remove_dir_all(&dir).ok();
    }
}
