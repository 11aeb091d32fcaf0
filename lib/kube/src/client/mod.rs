//! A Kubernetes API client for ackemu components: HTTPS (HTTP/2, rustls,
//! certificates checked at cluster time) with a client certificate or a
//! bearer token, typed access for `k8s-openapi` types and dynamic access
//! for any registry resource, watches as bounded streams of events, and a
//! reflector ([`informer`]) and work queue ([`workqueue`]) for controllers.
//!
//! Errors carry the API server's `Status` (code, reason, message), so
//! callers can act on 404, 409 and 410 the way client-go users do.

pub mod informer;
pub mod leader;
pub mod workqueue;

use std::sync::Arc;
use std::time::Duration;

use ackemu_base::clock::Clock;
use ackemu_base::tasks::Tasks;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::registry::{Registry, ResourceInfo};

/// A failed call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The API server answered with a `Status`.
    #[error("{message} ({code} {reason})")]
    Api {
        code: u16,
        reason: String,
        message: String,
    },
    /// The connection or TLS failed.
    #[error("transport: {0}")]
    Transport(String),
    /// The response did not decode.
    #[error("decoding the response: {0}")]
    Decode(String),
    /// A bad argument (unknown resource, bad kubeconfig).
    #[error("{0}")]
    Config(String),
}

impl ClientError {
    pub fn code(&self) -> Option<u16> {
        match self {
            Self::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }

    pub fn is_conflict(&self) -> bool {
        self.code() == Some(409)
    }

    pub fn is_gone(&self) -> bool {
        self.code() == Some(410)
    }
}

/// How to reach and authenticate to the API server.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// `https://host:port`.
    pub server: String,
    pub ca_pem: String,
    /// Client certificate and key (PEM).
    pub client_cert: Option<(String, String)>,
    pub token: Option<String>,
    /// Per-request timeout (real time) for non-watch calls.
    pub timeout: Duration,
}

impl ClientConfig {
    /// Reads the current context of a kubeconfig with embedded data.
    pub fn from_kubeconfig(path: &std::path::Path) -> Result<Self, ClientError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ClientError::Config(format!("reading {}: {e}", path.display())))?;
        let doc: Value = serde_yaml::from_str(&text)
            .map_err(|e| ClientError::Config(format!("parsing {}: {e}", path.display())))?;
        let current = doc["current-context"].as_str().unwrap_or("");
        let named = |list: &str, name: &str| -> Value {
            doc[list]
                .as_array()
                .into_iter()
                .flatten()
                .find(|e| e["name"] == name)
                .cloned()
                .unwrap_or(Value::Null)
        };
        let ctx = named("contexts", current);
        let cluster = named("clusters", ctx["context"]["cluster"].as_str().unwrap_or(""));
        let user = named("users", ctx["context"]["user"].as_str().unwrap_or(""));
        let b64 = |v: &Value| -> Option<String> {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(v.as_str()?)
                .ok()?;
            String::from_utf8(raw).ok()
        };
        let server = cluster["cluster"]["server"].as_str().ok_or_else(|| {
            ClientError::Config(format!(
                "{}: no server in the current context",
                path.display()
            ))
        })?;
        let ca_pem = b64(&cluster["cluster"]["certificate-authority-data"]).ok_or_else(|| {
            ClientError::Config(format!("{}: no certificate-authority-data", path.display()))
        })?;
        let u = &user["user"];
        let client_cert = match (
            b64(&u["client-certificate-data"]),
            b64(&u["client-key-data"]),
        ) {
            (Some(c), Some(k)) => Some((c, k)),
            _ => None,
        };
        Ok(Self {
            server: server.to_owned(),
            ca_pem,
            client_cert,
            token: u["token"].as_str().map(str::to_owned),
            timeout: Duration::from_secs(30),
        })
    }
}

type Sender = hyper::client::conn::http2::SendRequest<Full<Bytes>>;

/// A client; cheap to clone (one shared HTTP/2 connection).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: ClientConfig,
    authority: String,
    host: String,
    tls: Arc<rustls::ClientConfig>,
    conn: tokio::sync::Mutex<Option<Sender>>,
    clock: Clock,
    tasks: Tasks,
    registry: Registry,
    /// In-cluster clients re-read their service-account token file.
    token_file: Option<TokenFile>,
}

/// A token file and the last value read from it (client-go's cached token
/// source re-reads the projected token every minute).
struct TokenFile {
    path: std::path::PathBuf,
    cached: parking_lot::Mutex<Option<(ackemu_base::clock::ClusterInstant, String)>>,
}

/// One watch event.
#[derive(Debug, Clone)]
pub struct WatchEvent {
    /// ADDED, MODIFIED, DELETED, BOOKMARK, ERROR.
    pub kind: String,
    pub object: Value,
}

/// Query options of list and watch.
#[derive(Clone, Debug, Default)]
pub struct ListParams {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub limit: Option<i64>,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub timeout_seconds: Option<u64>,
    pub bookmarks: bool,
}

fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

impl ListParams {
    fn query(&self, watch: bool) -> String {
        let mut q = Vec::new();
        if watch {
            q.push("watch=1".to_owned());
            if self.bookmarks {
                q.push("allowWatchBookmarks=true".to_owned());
            }
        }
        let mut opt = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                q.push(format!("{k}={}", enc(v)));
            }
        };
        opt("labelSelector", &self.label_selector);
        opt("fieldSelector", &self.field_selector);
        opt("continue", &self.continue_token);
        opt("resourceVersion", &self.resource_version);
        if let Some(l) = self.limit {
            q.push(format!("limit={l}"));
        }
        if let Some(t) = self.timeout_seconds {
            q.push(format!("timeoutSeconds={t}"));
        }
        q.join("&")
    }
}

/// The patch formats.
#[derive(Clone, Copy, Debug)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
}

impl PatchType {
    fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json-patch+json",
            Self::Merge => "application/merge-patch+json",
            Self::Strategic => "application/strategic-merge-patch+json",
        }
    }
}

fn api_error(status: u16, body: &[u8]) -> ClientError {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let generic = match status {
        503 => "the server is currently unable to handle the request",
        401 => "Unauthorized",
        _ => "",
    };
    ClientError::Api {
        code: v["code"]
            .as_u64()
            .and_then(|c| u16::try_from(c).ok())
            .unwrap_or(status),
        reason: v["reason"].as_str().unwrap_or("").to_owned(),
        message: v["message"].as_str().map(str::to_owned).unwrap_or_else(|| {
            if generic.is_empty() {
                String::from_utf8_lossy(body).trim().to_owned()
            } else {
                generic.to_owned()
            }
        }),
    }
}

impl Client {
    pub fn new(cfg: ClientConfig, clock: Clock, tasks: Tasks) -> Result<Self, ClientError> {
        let uri: http::Uri = cfg
            .server
            .parse()
            .map_err(|e| ClientError::Config(format!("invalid server {:?}: {e}", cfg.server)))?;
        let host = uri
            .host()
            .unwrap_or("")
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let authority = format!("{host}:{}", uri.port_u16().unwrap_or(443));
        let cert = cfg
            .client_cert
            .as_ref()
            .map(|(c, k)| (c.as_str(), k.as_str()));
        let tls = ackemu_base::pki::client_tls_config(&cfg.ca_pem, cert, &clock, &[b"h2"])
            .map_err(|e| ClientError::Config(e.to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                cfg,
                authority,
                host,
                tls: Arc::new(tls),
                conn: tokio::sync::Mutex::new(None),
                clock,
                tasks,
                registry: Registry::builtin(),
                token_file: None,
            }),
        })
    }

    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    async fn connect(&self) -> Result<Sender, ClientError> {
        let tcp = tokio::net::TcpStream::connect(&self.inner.authority)
            .await
            .map_err(|e| {
                ClientError::Transport(format!("dial tcp {}: {e}", self.inner.authority))
            })?;
        let _ = tcp.set_nodelay(true);
        let name = rustls::pki_types::ServerName::try_from(self.inner.host.clone())
            .map_err(|e| ClientError::Config(e.to_string()))?;
        let tls = tokio_rustls::TlsConnector::from(self.inner.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| {
                ClientError::Transport(format!("tls handshake with {}: {e}", self.inner.authority))
            })?;
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .map_err(|e| ClientError::Transport(e.to_string()))?;
        self.inner.tasks.spawn(
            format!("kube-client conn {}", self.inner.authority),
            async move {
                let _ = conn.await;
            },
        );
        Ok(sender)
    }

    async fn sender(&self) -> Result<Sender, ClientError> {
        let mut guard = self.inner.conn.lock().await;
        if let Some(s) = guard.as_ref()
            && !s.is_closed()
        {
            return Ok(s.clone());
        }
        let s = self.connect().await?;
        *guard = Some(s.clone());
        Ok(s)
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, ClientError> {
        let mut sender = self.sender().await?;
        sender
            .ready()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let uri = format!("https://{}{path}", self.inner.authority);
        let mut req = http::Request::builder()
            .method(method)
            .uri(uri)
            .header("accept", "application/json");
        if let Some(t) = &self.bearer_token() {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let bytes = match body {
            Some((ct, b)) => {
                req = req.header("content-type", ct);
                Bytes::from(b)
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(bytes))
            .map_err(|e| ClientError::Config(e.to_string()))?;
        sender
            .send_request(req)
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))
    }

    /// One non-streaming request; returns the decoded JSON body.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<Value, ClientError> {
        let work = async {
            let resp = self.send(method, path, body).await?;
            let status = resp.status().as_u16();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| ClientError::Transport(e.to_string()))?
                .to_bytes();
            if !(200..300).contains(&status) {
                return Err(api_error(status, &bytes));
            }
            serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
        };
        let clock = &self.inner.clock;
        match clock
            .timeout(clock.to_cluster(self.inner.cfg.timeout), work)
            .await
        {
            Ok(r) => r,
            Err(_) => Err(ClientError::Transport(format!(
                "{method} {path}: timed out"
            ))),
        }
    }

    /// Access to one resource (dynamic, JSON objects).
    pub fn resource(&self, info: &ResourceInfo, namespace: Option<&str>) -> DynamicApi {
        DynamicApi {
            client: self.clone(),
            info: info.clone(),
            namespace: namespace.map(str::to_owned),
        }
    }

    /// Typed access to a `k8s-openapi` kind; `namespace` for namespaced kinds.
    pub fn api<K: k8s_openapi::Resource>(
        &self,
        namespace: Option<&str>,
    ) -> Result<Api<K>, ClientError> {
        let info = self
            .inner
            .registry
            .by_api_version_kind(K::API_VERSION, K::KIND)
            .cloned()
            .ok_or_else(|| {
                ClientError::Config(format!("{} {} is not served", K::API_VERSION, K::KIND))
            })?;
        Ok(Api {
            inner: self.resource(&info, namespace),
            _k: std::marker::PhantomData,
        })
    }
}

/// A resource, as JSON.
#[derive(Clone)]
pub struct DynamicApi {
    client: Client,
    info: ResourceInfo,
    namespace: Option<String>,
}

impl DynamicApi {
    fn collection(&self) -> String {
        let base = if self.info.group.is_empty() {
            format!("/api/{}", self.info.version)
        } else {
            format!("/apis/{}/{}", self.info.group, self.info.version)
        };
        match (&self.namespace, self.info.namespaced()) {
            (Some(ns), true) => format!("{base}/namespaces/{ns}/{}", self.info.resource),
            _ => format!("{base}/{}", self.info.resource),
        }
    }

    fn item(&self, name: &str, sub: &str) -> String {
        if sub.is_empty() {
            format!("{}/{name}", self.collection())
        } else {
            format!("{}/{name}/{sub}", self.collection())
        }
    }

    pub async fn get(&self, name: &str) -> Result<Value, ClientError> {
        self.client.request("GET", &self.item(name, ""), None).await
    }

    pub async fn list(&self, p: &ListParams) -> Result<Value, ClientError> {
        self.client
            .request(
                "GET",
                &format!("{}?{}", self.collection(), p.query(false)),
                None,
            )
            .await
    }

    pub async fn create(&self, obj: &Value) -> Result<Value, ClientError> {
        self.client
            .request(
                "POST",
                &self.collection(),
                Some(("application/json", obj.to_string().into_bytes())),
            )
            .await
    }

    /// PUT of the object (or of a subresource such as `status`).
    pub async fn replace(&self, name: &str, sub: &str, obj: &Value) -> Result<Value, ClientError> {
        self.client
            .request(
                "PUT",
                &self.item(name, sub),
                Some(("application/json", obj.to_string().into_bytes())),
            )
            .await
    }

    pub async fn patch(
        &self,
        name: &str,
        sub: &str,
        kind: PatchType,
        patch: &Value,
    ) -> Result<Value, ClientError> {
        self.client
            .request(
                "PATCH",
                &self.item(name, sub),
                Some((kind.content_type(), patch.to_string().into_bytes())),
            )
            .await
    }

    /// DELETE with a propagation policy (`Background`, `Foreground`, `Orphan`).
    pub async fn delete(
        &self,
        name: &str,
        propagation: Option<&str>,
    ) -> Result<Value, ClientError> {
        let body = propagation.map(|p| {
            (
                "application/json",
                serde_json::json!({"propagationPolicy": p})
                    .to_string()
                    .into_bytes(),
            )
        });
        self.client
            .request("DELETE", &self.item(name, ""), body)
            .await
    }

    /// POST to a subresource (`binding`, `eviction`, `token`).
    pub async fn create_subresource(
        &self,
        name: &str,
        sub: &str,
        obj: &Value,
    ) -> Result<Value, ClientError> {
        self.client
            .request(
                "POST",
                &self.item(name, sub),
                Some(("application/json", obj.to_string().into_bytes())),
            )
            .await
    }

    /// A watch: events until the server ends it; the stream is bounded
    /// (`buffer` events) and stops when the receiver is dropped.
    pub async fn watch(
        &self,
        p: &ListParams,
        buffer: usize,
    ) -> Result<mpsc::Receiver<Result<WatchEvent, ClientError>>, ClientError> {
        let path = format!("{}?{}", self.collection(), p.query(true));
        let resp = self.client.send("GET", &path, None).await?;
        let status = resp.status().as_u16();
        if status != 200 {
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| ClientError::Transport(e.to_string()))?
                .to_bytes();
            return Err(api_error(status, &bytes));
        }
        let (tx, rx) = mpsc::channel(buffer.max(1));
        let mut body = resp.into_body();
        self.client.inner.tasks.spawn(
            format!("kube-client watch {}", self.info.resource),
            async move {
                let mut buf: Vec<u8> = Vec::new();
                loop {
                    let frame = tokio::select! {
                        f = body.frame() => f,
                        () = tx.closed() => return,
                    };
                    let Some(frame) = frame else { return };
                    let frame = match frame {
                        Ok(f) => f,
                        Err(e) => {
                            let _ = tx.send(Err(ClientError::Transport(e.to_string()))).await;
                            return;
                        }
                    };
                    let Some(data) = frame.data_ref() else {
                        continue;
                    };
                    buf.extend_from_slice(data);
                    while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = buf.drain(..=pos).collect();
                        if line.iter().all(u8::is_ascii_whitespace) {
                            continue;
                        }
                        let ev = match serde_json::from_slice::<Value>(&line) {
                            Ok(v) => {
                                let kind = v["type"].as_str().unwrap_or("").to_owned();
                                if kind == "ERROR" {
                                    Err(api_error(
                                        v["object"]["code"].as_u64().unwrap_or(500) as u16,
                                        v["object"].to_string().as_bytes(),
                                    ))
                                } else {
                                    Ok(WatchEvent {
                                        kind,
                                        object: v["object"].clone(),
                                    })
                                }
                            }
                            Err(e) => Err(ClientError::Decode(e.to_string())),
                        };
                        if tx.send(ev).await.is_err() {
                            return;
                        }
                    }
                }
            },
        );
        Ok(rx)
    }
}

/// Typed access to one kind.
pub struct Api<K> {
    inner: DynamicApi,
    _k: std::marker::PhantomData<K>,
}

impl<K: k8s_openapi::Resource + Serialize + DeserializeOwned> Api<K> {
    pub fn dynamic(&self) -> &DynamicApi {
        &self.inner
    }

    fn typed(v: Value) -> Result<K, ClientError> {
        serde_json::from_value(v).map_err(|e| ClientError::Decode(e.to_string()))
    }

    fn json(obj: &K) -> Result<Value, ClientError> {
        let mut v = serde_json::to_value(obj).map_err(|e| ClientError::Decode(e.to_string()))?;
        v["apiVersion"] = Value::String(K::API_VERSION.to_owned());
        v["kind"] = Value::String(K::KIND.to_owned());
        Ok(v)
    }

    pub async fn get(&self, name: &str) -> Result<K, ClientError> {
        Self::typed(self.inner.get(name).await?)
    }

    pub async fn list(&self, p: &ListParams) -> Result<(Vec<K>, String), ClientError> {
        let v = self.inner.list(p).await?;
        let rv = v["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let items = v["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(Self::typed)
            .collect::<Result<_, _>>()?;
        Ok((items, rv))
    }

    pub async fn create(&self, obj: &K) -> Result<K, ClientError> {
        Self::typed(self.inner.create(&Self::json(obj)?).await?)
    }

    pub async fn replace(&self, name: &str, obj: &K) -> Result<K, ClientError> {
        Self::typed(self.inner.replace(name, "", &Self::json(obj)?).await?)
    }

    pub async fn replace_status(&self, name: &str, obj: &K) -> Result<K, ClientError> {
        Self::typed(
            self.inner
                .replace(name, "status", &Self::json(obj)?)
                .await?,
        )
    }

    pub async fn patch(
        &self,
        name: &str,
        kind: PatchType,
        patch: &Value,
    ) -> Result<K, ClientError> {
        Self::typed(self.inner.patch(name, "", kind, patch).await?)
    }

    pub async fn delete(&self, name: &str, propagation: Option<&str>) -> Result<(), ClientError> {
        self.inner.delete(name, propagation).await.map(|_| ())
    }
}

/// Where a pod's service-account credentials are mounted.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// How often an in-cluster client re-reads its token file (client-go: 1m).
const TOKEN_REREAD: Duration = Duration::from_secs(60);

fn service_account_dir() -> std::path::PathBuf {
    std::env::var_os("ACKEMU_SERVICEACCOUNT_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| SERVICE_ACCOUNT_DIR.into())
}

impl ClientConfig {
    /// The configuration of a program running in a pod, as client-go's
    /// `rest.InClusterConfig`: the API server from `KUBERNETES_SERVICE_HOST`
    /// and `KUBERNETES_SERVICE_PORT`, the token and `ca.crt` from the
    /// service-account mount (`$ACKEMU_SERVICEACCOUNT_DIR` overrides
    /// `/var/run/secrets/kubernetes.io/serviceaccount`).
    pub fn in_cluster() -> Result<Self, ClientError> {
        let (Ok(host), Ok(port)) = (
            std::env::var("KUBERNETES_SERVICE_HOST"),
            std::env::var("KUBERNETES_SERVICE_PORT"),
        ) else {
            return Err(ClientError::Config(
                "unable to load in-cluster configuration, KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be defined".into(),
            ));
        };
        let dir = service_account_dir();
        let read = |name: &str| {
            let p = dir.join(name);
            std::fs::read_to_string(&p)
                .map_err(|e| ClientError::Config(format!("reading {}: {e}", p.display())))
        };
        let token = read("token")?.trim().to_owned();
        let ca_pem = read("ca.crt")?;
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host
        };
        Ok(Self {
            server: format!("https://{host}:{port}"),
            ca_pem,
            client_cert: None,
            token: Some(token),
            timeout: Duration::from_secs(30),
        })
    }

    /// The namespace of the pod, from the service-account mount.
    pub fn in_cluster_namespace() -> Result<String, ClientError> {
        let p = service_account_dir().join("namespace");
        std::fs::read_to_string(&p)
            .map(|s| s.trim().to_owned())
            .map_err(|e| ClientError::Config(format!("reading {}: {e}", p.display())))
    }
}

impl Client {
    /// A client from [`ClientConfig::in_cluster`] that re-reads the token
    /// file every minute, so rotated (projected) tokens are picked up.
    pub fn in_cluster(clock: Clock, tasks: Tasks) -> Result<Self, ClientError> {
        let cfg = ClientConfig::in_cluster()?;
        let mut client = Self::new(cfg, clock, tasks)?;
        if let Some(inner) = Arc::get_mut(&mut client.inner) {
            inner.token_file = Some(TokenFile {
                path: service_account_dir().join("token"),
                cached: parking_lot::Mutex::new(None),
            });
        }
        Ok(client)
    }

    /// The bearer token to send: the configured one, or for in-cluster
    /// clients the token file's content, re-read once a minute.
    fn bearer_token(&self) -> Option<String> {
        let Some(tf) = &self.inner.token_file else {
            return self.inner.cfg.token.clone();
        };
        let now = self.inner.clock.now();
        let mut cached = tf.cached.lock();
        if let Some((at, tok)) = cached.as_ref()
            && now.saturating_duration_since(*at) < self.inner.clock.to_cluster(TOKEN_REREAD)
        {
            return Some(tok.clone());
        }
        match std::fs::read_to_string(&tf.path) {
            Ok(t) => {
                let t = t.trim().to_owned();
                *cached = Some((now, t.clone()));
                Some(t)
            }
            // Keep using the last good token, as client-go does.
            Err(e) => {
                tracing::warn!("re-reading {}: {e}", tf.path.display());
                cached
                    .as_ref()
                    .map(|(_, t)| t.clone())
                    .or_else(|| self.inner.cfg.token.clone())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_params_encode_like_client_go() {
        let p = ListParams {
            label_selector: Some("app=web,tier in (fe)".into()),
            field_selector: Some("spec.nodeName=n1".into()),
            limit: Some(500),
            resource_version: Some("0".into()),
            bookmarks: true,
            ..Default::default()
        };
        assert_eq!(
            p.query(false),
            "labelSelector=app%3Dweb%2Ctier%20in%20%28fe%29&fieldSelector=spec.nodeName%3Dn1&resourceVersion=0&limit=500"
        );
        assert!(
            p.query(true)
                .starts_with("watch=1&allowWatchBookmarks=true&")
        );
    }

    #[test]
    fn status_bodies_become_api_errors() {
        let e = api_error(409, br#"{"kind":"Status","code":409,"reason":"Conflict","message":"Operation cannot be fulfilled"}"#);
        assert!(e.is_conflict());
        assert_eq!(
            e.to_string(),
            "Operation cannot be fulfilled (409 Conflict)"
        );
        let e = api_error(503, b"service unavailable\n");
        assert_eq!(
            e.to_string(),
            "the server is currently unable to handle the request (503 )"
        );
    }

    #[test]
    fn kubeconfig_is_read() {
        let dir = std::env::temp_dir().join(format!("ackemu-kube-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("kubeconfig");
        let b = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let text = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: a@c\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:6443\n    certificate-authority-data: {}\nusers:\n- name: a\n  user:\n    token: t0k\ncontexts:\n- name: a@c\n  context: {{cluster: c, user: a}}\n",
            b("CA PEM")
        );
        std::fs::write(&path, text).unwrap();
        let cfg = ClientConfig::from_kubeconfig(&path).unwrap();
        assert_eq!(cfg.server, "https://127.0.0.1:6443");
        assert_eq!(cfg.ca_pem, "CA PEM");
        assert_eq!(cfg.token.as_deref(), Some("t0k"));
        assert!(cfg.client_cert.is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn in_cluster_config_reads_the_service_account_mount() {
        let dir = std::env::temp_dir().join(format!("ackemu-kube-sa-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("token"), "tok1\n").unwrap();
        std::fs::write(dir.join("ca.crt"), "CA").unwrap();
        std::fs::write(dir.join("namespace"), "kube-system").unwrap();
        set_in_cluster_env(&dir);
        let cfg = ClientConfig::in_cluster().unwrap();
        assert_eq!(cfg.server, "https://172.19.0.1:443");
        assert_eq!(cfg.token.as_deref(), Some("tok1"));
        assert_eq!(cfg.ca_pem, "CA");
        assert_eq!(ClientConfig::in_cluster_namespace().unwrap(), "kube-system");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn set_in_cluster_env(dir: &std::path::Path) {
        #[allow(unsafe_code)]
        // SAFETY: no other test reads or writes these variables.
        unsafe {
            std::env::set_var("KUBERNETES_SERVICE_HOST", "172.19.0.1");
            std::env::set_var("KUBERNETES_SERVICE_PORT", "443");
            std::env::set_var("ACKEMU_SERVICEACCOUNT_DIR", dir);
        }
    }
}
