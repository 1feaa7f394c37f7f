//! The Kubernetes API client: `kube`'s typed request builder (`kube::core::Request`: URL,
//! query and content type per verb) sent over `polyvisor-http` (https only unless the lab
//! opt-in, CA file / fingerprint pin, bounded timeouts), one namespace, and a round-trip
//! counter the tests assert on.

use crate::config::{Connection, Token};
use crate::error::KvError;
use kube::core::params::{DeleteParams, GetParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::core::{ObjectList, Request};
use kube::Resource;
use polyvisor_core::{ExposeSecret, Result};
use polyvisor_http::{classify, ClientOptions, CredentialedClient, SchemePolicy};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};

/// A client for one namespace of one cluster.
pub struct Kube {
    http: CredentialedClient,
    token: Option<Token>,
    namespace: String,
    calls: AtomicU64,
}

impl Kube {
    /// Builds the client (no I/O).
    pub fn new(conn: &Connection) -> Result<Kube> {
        let http = CredentialedClient::new(
            "Kubernetes",
            &conn.server,
            &conn.http,
            SchemePolicy::HttpsUnlessOptedIn,
            &ClientOptions { identity: conn.identity.clone(), ..ClientOptions::default() },
        )?;
        Ok(Kube { http, token: conn.token.clone(), namespace: conn.namespace.clone(), calls: AtomicU64::new(0) })
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The API server URL.
    pub fn server(&self) -> &str {
        self.http.base_url()
    }

    /// API round trips made so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    fn request<K: Resource<DynamicType = ()>>(&self) -> Request {
        Request::new(K::url_path(&(), Some(&self.namespace)))
    }

    async fn send(&self, req: http::Request<Vec<u8>>) -> Result<(u16, Vec<u8>), KvError> {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
        let mut rb = self.http.http().request(parts.method, self.http.url(&path)).body(body);
        for (k, v) in parts.headers.iter() {
            rb = rb.header(k, v);
        }
        match &self.token {
            Some(Token::Value(t)) => rb = rb.bearer_auth(t.expose_secret()),
            Some(Token::File(p)) => {
                let t = std::fs::read_to_string(p).map_err(|_| KvError::TokenFile)?;
                rb = rb.bearer_auth(t.trim());
            }
            None => {}
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
        let resp = rb.send().await.map_err(|e| KvError::Transport(classify(&e)))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| KvError::Transport(classify(&e)))?;
        tracing::debug!(status, path = path.split('?').next().unwrap_or_default(), "kubernetes api");
        if (200..300).contains(&status) {
            Ok((status, bytes.to_vec()))
        } else {
            Err(KvError::from_status(status, &bytes))
        }
    }

    fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, KvError> {
        serde_json::from_slice(body).map_err(|e| KvError::Decode(e.to_string()))
    }

    fn build(
        r: std::result::Result<http::Request<Vec<u8>>, kube::core::request::Error>,
    ) -> Result<http::Request<Vec<u8>>, KvError> {
        r.map_err(|e| KvError::Invalid { reason: "BadRequest".into(), message: e.to_string() })
    }

    /// GET one object; `None` on 404.
    pub async fn get<K: Resource<DynamicType = ()> + DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Option<K>, KvError> {
        let req = Self::build(self.request::<K>().get(name, &GetParams::default()))?;
        match self.send(req).await {
            Ok((_, body)) => Ok(Some(Self::decode(&body)?)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// LIST every object of the kind in the namespace (optionally by label selector).
    pub async fn list<K: Resource<DynamicType = ()> + DeserializeOwned + Clone>(
        &self,
        label_selector: Option<&str>,
    ) -> Result<Vec<K>, KvError> {
        let mut lp = ListParams::default();
        if let Some(sel) = label_selector {
            lp = lp.labels(sel);
        }
        let req = Self::build(self.request::<K>().list(&lp))?;
        let (_, body) = self.send(req).await?;
        let list: ObjectList<K> = Self::decode(&body)?;
        Ok(list.items)
    }

    /// POST a new object.
    pub async fn create<K: Resource<DynamicType = ()> + Serialize + DeserializeOwned>(
        &self,
        obj: &K,
    ) -> Result<K, KvError> {
        let data = serde_json::to_vec(obj).map_err(|e| KvError::Decode(e.to_string()))?;
        let req = Self::build(self.request::<K>().create(&PostParams::default(), data))?;
        let (_, body) = self.send(req).await?;
        Self::decode(&body)
    }

    /// JSON merge patch (RFC 7386) of one object.
    pub async fn merge_patch<K: Resource<DynamicType = ()> + DeserializeOwned>(
        &self,
        name: &str,
        patch: &Value,
    ) -> Result<K, KvError> {
        let req = Self::build(self.request::<K>().patch(name, &PatchParams::default(), &Patch::Merge(patch)))?;
        let (_, body) = self.send(req).await?;
        Self::decode(&body)
    }

    /// DELETE one object (dependents in the background, as `kubectl delete` does); `false` on 404.
    pub async fn delete<K: Resource<DynamicType = ()>>(&self, name: &str) -> Result<bool, KvError> {
        let dp = DeleteParams { propagation_policy: Some(PropagationPolicy::Background), ..DeleteParams::default() };
        let req = Self::build(self.request::<K>().delete(name, &dp))?;
        match self.send(req).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `PUT /apis/subresources.kubevirt.io/v1/namespaces/<ns>/<plural>/<name>/<action>` with a
    /// JSON body (`v1.StopOptions`, `v1.RestartOptions`, ...).
    pub async fn subresource(&self, plural: &str, name: &str, action: &str, body: &Value) -> Result<(), KvError> {
        let url_path = format!("/apis/subresources.kubevirt.io/v1/namespaces/{}/{plural}", self.namespace);
        let data = serde_json::to_vec(body).map_err(|e| KvError::Decode(e.to_string()))?;
        let req = Self::build(Request::new(url_path).replace_subresource(action, name, &PostParams::default(), data))?;
        self.send(req).await.map(|_| ())
    }

    /// The URL of a subresource (the VNC websocket), for consoles.
    pub fn subresource_url(&self, plural: &str, name: &str, action: &str) -> String {
        self.http
            .url(&format!("/apis/subresources.kubevirt.io/v1/namespaces/{}/{plural}/{name}/{action}", self.namespace))
    }

    /// `GET /apis/subresources.kubevirt.io/v1/version`: KubeVirt's version (also proves the
    /// credentials, since it is authenticated).
    pub async fn kubevirt_version(&self) -> Result<Value, KvError> {
        let req = http::Request::get("/apis/subresources.kubevirt.io/v1/version")
            .header(http::header::ACCEPT, "application/json")
            .body(Vec::new())
            .map_err(|e| KvError::Decode(e.to_string()))?;
        let (_, body) = self.send(req).await?;
        Self::decode(&body)
    }
}
