//! The OpenStack HTTP client over `polyvisor-http`: Keystone v3 auth (one token per
//! process, re-authenticated once on a 401), catalog-driven endpoints (every service URL
//! comes from the token's catalog, filtered by interface and region), Nova microversion
//! negotiation (the server's maximum capped by the configured one, never below
//! [`crate::config::MIN_MICROVERSION`]) sent on **every** compute call, bounded requests,
//! one retry layer for idempotent GETs, and a round-trip counter.

use crate::config::{Config, MIN_MICROVERSION};
use crate::error::{self, OsError};
use polyvisor_core::{ExposeSecret, Result, SecretString};
use polyvisor_http::{ClientOptions, CredentialedClient, SchemePolicy};
use reqwest::header::HeaderValue;
use reqwest::Method;
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The services the driver talks to (catalog `type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// Nova.
    Compute,
    /// Glance v2.
    Image,
    /// Neutron v2.0.
    Network,
}

impl Service {
    /// The catalog type.
    pub fn catalog_type(self) -> &'static str {
        match self {
            Service::Compute => "compute",
            Service::Image => "image",
            Service::Network => "network",
        }
    }
}

/// An authenticated session: the token and the endpoints of its catalog.
struct Session {
    token: SecretString,
    compute: CredentialedClient,
    image: CredentialedClient,
    network: Option<CredentialedClient>,
    /// `"2.93"`: the microversion sent on every compute call.
    microversion: String,
}

/// An answer: status and JSON body (`Null` when empty), plus the `Location` header.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The body.
    pub body: Value,
}

const GET_RETRIES: usize = 2;

/// The client. Cheap to share; the only state is the session cache.
pub struct Client {
    cfg: Config,
    keystone: CredentialedClient,
    session: tokio::sync::Mutex<Option<Arc<Session>>>,
    total: AtomicU64,
    auths: AtomicU64,
}

impl Client {
    /// A client for this config (no I/O; the Keystone URL's scheme is checked here).
    pub fn new(cfg: Config) -> Result<Client> {
        let keystone = CredentialedClient::new(
            "OpenStack Keystone",
            &cfg.auth_url,
            &cfg.http,
            SchemePolicy::HttpsUnlessOptedIn,
            &ClientOptions::default(),
        )?;
        Ok(Client {
            cfg,
            keystone,
            session: tokio::sync::Mutex::new(None),
            total: AtomicU64::new(0),
            auths: AtomicU64::new(0),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// HTTP round trips so far (auth and version discovery included).
    pub fn round_trips(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Keystone authentications so far.
    pub fn authentications(&self) -> u64 {
        self.auths.load(Ordering::Relaxed)
    }

    /// The microversion in use (authenticates first if needed).
    pub async fn microversion(&self) -> Result<String, OsError> {
        Ok(self.session(false).await?.microversion.clone())
    }

    /// Whether the catalog has a network (Neutron) endpoint.
    pub async fn has_network(&self) -> Result<bool, OsError> {
        Ok(self.session(false).await?.network.is_some())
    }

    fn count(&self) {
        self.total.fetch_add(1, Ordering::Relaxed);
    }

    fn transport(&self, service: &str, e: reqwest::Error) -> OsError {
        let t = polyvisor_http::classify(&e);
        tracing::debug!(target: "polyvisor_openstack::http", service, class = %t, "transport failure");
        OsError::from_transport(t, service, self.cfg.http.tls_hint())
    }

    /// The cached session, or a new one (`renew`: drop the cached one first).
    async fn session(&self, renew: bool) -> Result<Arc<Session>, OsError> {
        let mut slot = self.session.lock().await;
        if renew {
            *slot = None;
        }
        if let Some(s) = slot.as_ref() {
            return Ok(s.clone());
        }
        let s = Arc::new(self.authenticate().await?);
        *slot = Some(s.clone());
        Ok(s)
    }

    /// `POST /v3/auth/tokens`, catalog → endpoints, `GET {compute}/` → microversion.
    async fn authenticate(&self) -> Result<Session, OsError> {
        self.auths.fetch_add(1, Ordering::Relaxed);
        self.count();
        let resp = self
            .keystone
            .http()
            .post(self.keystone.url("/auth/tokens"))
            .json(&self.cfg.auth_body())
            .send()
            .await
            .map_err(|e| self.transport("identity", e))?;
        let status = resp.status().as_u16();
        let token = resp.headers().get("X-Subject-Token").and_then(|h| h.to_str().ok()).map(str::to_string);
        let body = resp.bytes().await.map_err(|e| self.transport("identity", e))?;
        if !(200..300).contains(&status) {
            return Err(match error::from_response("identity", status, &body) {
                OsError::Unauthorized(m) | OsError::NotFound(m) => {
                    OsError::Unauthorized(format!("OpenStack authentication failed: {m}"))
                }
                other => other,
            });
        }
        let token = token.ok_or_else(|| OsError::BadAnswer("Keystone answered without X-Subject-Token".into()))?;
        let v: Value = serde_json::from_slice(&body)
            .map_err(|_| OsError::BadAnswer("Keystone token answer is not JSON".into()))?;
        let catalog = v["token"]["catalog"].as_array().cloned().unwrap_or_default();
        let endpoint = |ty: &str| -> Option<String> {
            pick_endpoint(&catalog, ty, &self.cfg.interface, self.cfg.region.as_deref())
        };
        let client = |ty: &str, url: String| {
            CredentialedClient::new(
                &format!("OpenStack {ty}"),
                &url,
                &self.cfg.http,
                SchemePolicy::HttpsUnlessOptedIn,
                &ClientOptions::default(),
            )
            .map_err(|e| OsError::BadAnswer(format!("catalog endpoint for '{ty}': {}", e.message())))
        };
        let missing = |ty: &str| {
            OsError::NoEndpoint(format!(
                "the service catalog has no '{ty}' endpoint on interface '{}'{}",
                self.cfg.interface,
                self.cfg.region.as_deref().map(|r| format!(" in region '{r}'")).unwrap_or_default()
            ))
        };
        let compute = client("compute", endpoint("compute").ok_or_else(|| missing("compute"))?)?;
        let image_url = endpoint("image").ok_or_else(|| missing("image"))?;
        // Glance's catalog URL is the service root; the API lives under /v2.
        let image_url = if image_url.trim_end_matches('/').ends_with("/v2") {
            image_url
        } else {
            format!("{}/v2", image_url.trim_end_matches('/'))
        };
        let image = client("image", image_url)?;
        let network = match endpoint("network") {
            Some(u) => {
                let u = if u.trim_end_matches('/').ends_with("/v2.0") {
                    u
                } else {
                    format!("{}/v2.0", u.trim_end_matches('/'))
                };
                Some(client("network", u)?)
            }
            None => None,
        };
        let microversion = self.negotiate(&compute).await?;
        tracing::debug!(target: "polyvisor_openstack::http", %microversion, "authenticated");
        Ok(Session { token: SecretString::from(token), compute, image, network, microversion })
    }

    /// `GET {compute}/` (no auth needed): the highest version both sides speak.
    async fn negotiate(&self, compute: &CredentialedClient) -> Result<String, OsError> {
        self.count();
        let resp = compute
            .http()
            .get(format!("{}/", compute.base_url()))
            .send()
            .await
            .map_err(|e| self.transport("compute", e))?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|e| self.transport("compute", e))?;
        if !(200..300).contains(&status) {
            return Err(error::from_response("compute", status, &body));
        }
        let v: Value = serde_json::from_slice(&body)
            .map_err(|_| OsError::BadAnswer("Nova version document is not JSON".into()))?;
        let server_max = v["version"]["version"].as_str().and_then(crate::config::parse_microversion);
        let Some(server_max) = server_max else {
            return Err(OsError::VersionNotSupported(
                "the compute endpoint offers no microversions (Nova v2.1 API required)".into(),
            ));
        };
        if server_max < MIN_MICROVERSION {
            return Err(OsError::VersionNotSupported(format!(
                "Nova offers microversions up to {}.{}; this driver needs at least {}.{}",
                server_max.0, server_max.1, MIN_MICROVERSION.0, MIN_MICROVERSION.1
            )));
        }
        let use_v = server_max.min(self.cfg.max_microversion);
        Ok(format!("{}.{}", use_v.0, use_v.1))
    }

    /// Drops the cached token (tests: force the next call to authenticate).
    pub async fn forget_token(&self) {
        *self.session.lock().await = None;
    }

    /// One API call: authenticated (once more on a 401), GETs retried on transient
    /// failures. Non-2xx answers are classified errors.
    pub async fn call(
        &self,
        svc: Service,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, OsError> {
        let mut reauthed = false;
        let mut attempt = 0;
        loop {
            let session = self.session(false).await?;
            match self.send_once(&session, svc, &method, path, body).await {
                Ok(a) => return Ok(a),
                Err(OsError::Unauthorized(_)) if !reauthed => {
                    tracing::debug!(target: "polyvisor_openstack::http", path, "token rejected; authenticating again");
                    // Only drop the session if nobody replaced it meanwhile.
                    let mut slot = self.session.lock().await;
                    if slot.as_ref().is_some_and(|s| Arc::ptr_eq(s, &session)) {
                        *slot = None;
                    }
                    reauthed = true;
                }
                Err(e) if method == Method::GET && attempt < GET_RETRIES && e.retryable() => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(200 * attempt as u64)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn send_once(
        &self,
        s: &Session,
        svc: Service,
        method: &Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, OsError> {
        let http = match svc {
            Service::Compute => &s.compute,
            Service::Image => &s.image,
            Service::Network => s.network.as_ref().ok_or_else(|| {
                OsError::NoEndpoint(format!(
                    "the service catalog has no 'network' endpoint on interface '{}'",
                    self.cfg.interface
                ))
            })?,
        };
        let mut req = http.http().request(method.clone(), http.url(path));
        let mut tok = HeaderValue::from_str(s.token.expose_secret())
            .map_err(|_| OsError::BadAnswer("Keystone token is not a valid header".into()))?;
        tok.set_sensitive(true);
        req = req.header("X-Auth-Token", tok);
        if svc == Service::Compute {
            req = req.header("OpenStack-API-Version", format!("compute {}", s.microversion));
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        self.count();
        let started = std::time::Instant::now();
        let name = svc.catalog_type();
        let resp = req.send().await.map_err(|e| self.transport(name, e))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| self.transport(name, e))?;
        tracing::debug!(target: "polyvisor_openstack::http", %method, service = name, path, status, ms = started.elapsed().as_millis() as u64, "API call");
        if !(200..300).contains(&status) {
            return Err(error::from_response(name, status, &bytes));
        }
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .map_err(|_| OsError::BadAnswer(format!("OpenStack {name} answered {method} {path} with non-JSON")))?
        };
        Ok(Answer { status, body })
    }

    /// `GET` → body.
    pub async fn get(&self, svc: Service, path: &str) -> Result<Value, OsError> {
        Ok(self.call(svc, Method::GET, path, None).await?.body)
    }
    /// `POST` → body.
    pub async fn post(&self, svc: Service, path: &str, body: &Value) -> Result<Value, OsError> {
        Ok(self.call(svc, Method::POST, path, Some(body)).await?.body)
    }
    /// `PUT` → body.
    pub async fn put(&self, svc: Service, path: &str, body: &Value) -> Result<Value, OsError> {
        Ok(self.call(svc, Method::PUT, path, Some(body)).await?.body)
    }
    /// `DELETE`; a 404 is success (`false`: it was already gone).
    pub async fn delete(&self, svc: Service, path: &str) -> Result<bool, OsError> {
        match self.call(svc, Method::DELETE, path, None).await {
            Ok(_) => Ok(true),
            Err(OsError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// The URL of the first endpoint of `ty` on `interface` (and `region`, if given).
pub fn pick_endpoint(catalog: &[Value], ty: &str, interface: &str, region: Option<&str>) -> Option<String> {
    catalog.iter().filter(|s| s["type"].as_str() == Some(ty)).find_map(|s| {
        s["endpoints"].as_array()?.iter().find_map(|e| {
            let itf_ok = e["interface"].as_str() == Some(interface);
            let region_ok =
                region.is_none_or(|r| e["region"].as_str() == Some(r) || e["region_id"].as_str() == Some(r));
            (itf_ok && region_ok).then(|| e["url"].as_str().map(|u| u.trim_end_matches('/').to_string())).flatten()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn endpoints_come_from_the_catalog_by_interface_and_region() {
        let cat = json!([
            {"type": "compute", "endpoints": [
                {"interface": "internal", "region": "R1", "region_id": "R1", "url": "http://10.0.0.1:8774/v2.1"},
                {"interface": "public", "region": "R2", "region_id": "R2", "url": "https://r2.example/compute/v2.1/"},
                {"interface": "public", "region": "R1", "region_id": "R1", "url": "https://r1.example/compute/v2.1"}]},
            {"type": "image", "endpoints": [{"interface": "public", "region_id": "R1", "url": "https://img"}]}
        ]);
        let cat = cat.as_array().unwrap();
        assert_eq!(pick_endpoint(cat, "compute", "public", Some("R1")).unwrap(), "https://r1.example/compute/v2.1");
        assert_eq!(pick_endpoint(cat, "compute", "public", None).unwrap(), "https://r2.example/compute/v2.1");
        assert_eq!(pick_endpoint(cat, "compute", "internal", None).unwrap(), "http://10.0.0.1:8774/v2.1");
        assert_eq!(pick_endpoint(cat, "image", "public", Some("R1")).unwrap(), "https://img");
        assert!(pick_endpoint(cat, "network", "public", None).is_none());
        assert!(pick_endpoint(cat, "compute", "admin", None).is_none());
    }
}
