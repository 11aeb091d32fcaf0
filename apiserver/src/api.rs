//! The REST API: the request pipeline (request info → max-in-flight →
//! authorization → handler) and the handlers for discovery, CRUD, patch,
//! watch, subresources, access reviews and Table output. Authentication
//! happens per connection in [`crate::server`] and arrives as a [`UserInfo`].

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ackemu_base::clock::Clock;
use ackemu_base::tasks::Tasks;
use ackemu_kube::printers::{self, PrintContext};
use ackemu_kube::{FieldSelector, LabelSelector, Registry, ResourceInfo};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use parking_lot::RwLock;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};

use crate::cache::EventKind;
use crate::objects::{self, CreateContext};
use crate::patch;
use crate::rbac::{self, Attributes, RbacView, UserInfo};
use crate::reqinfo::{self, RequestInfo};
use crate::status::ApiError;
use crate::storage::{ListOptions, Storage, Stored, object_rv, selected};

mod connect;

pub type Body = BoxBody<Bytes, Infallible>;

/// A request body the pipeline accepts: hyper's `Incoming` from REST
/// clients, or bytes from the gRPC codec.
pub trait ReqBody:
    hyper::body::Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
    + Send
    + Unpin
    + 'static
{
}
impl<B> ReqBody for B where
    B: hyper::body::Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
        + Send
        + Unpin
        + 'static
{
}

/// Limits and identity of the API.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// `gitVersion` in `/version`; kubectl's dispatcher picks its binary by it.
    pub git_version: String,
    /// Concurrent non-mutating, non-long-running requests before 429.
    pub max_requests_in_flight: usize,
    /// Concurrent mutating requests before 429.
    pub max_mutating_requests_in_flight: usize,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Cluster time between watch bookmarks.
    pub bookmark_interval: Duration,
    /// Default and largest watch duration (cluster time).
    pub max_watch_timeout: Duration,
    /// `serverAddress` advertised in `/api`.
    pub advertise_address: String,
    /// Service CIDR and NodePort range.
    pub service_ranges: crate::alloc::ServiceRanges,
    /// Cluster time between APIService availability checks.
    pub apiservice_check_interval: Duration,
    /// Append audit events (JSON lines) to this file.
    pub audit_log: Option<std::path::PathBuf>,
    /// Audit events buffered before new ones are dropped (and counted).
    pub audit_buffer: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            git_version: "v1.33.1".to_owned(),
            max_requests_in_flight: 400,
            max_mutating_requests_in_flight: 200,
            max_body_bytes: 3 * 1024 * 1024,
            bookmark_interval: Duration::from_secs(60),
            max_watch_timeout: Duration::from_secs(30 * 60),
            advertise_address: "127.0.0.1:6443".to_owned(),
            service_ranges: crate::alloc::ServiceRanges::default(),
            audit_log: None,
            audit_buffer: 10_000,
            apiservice_check_interval: Duration::from_secs(30),
        }
    }
}

pub struct Api {
    pub registry: RwLock<Registry>,
    pub storage: Storage,
    pub clock: Clock,
    pub tasks: Tasks,
    pub cfg: ApiConfig,
    readonly: Arc<Semaphore>,
    mutating: Arc<Semaphore>,
    audit_tx: Option<mpsc::Sender<String>>,
    /// Serializes Service creation so two Services never get one address.
    service_alloc: tokio::sync::Mutex<()>,
    tokens: RwLock<Option<Arc<crate::tokens::TokenSigner>>>,
    kubelets: RwLock<Option<Arc<crate::kubelet::Kubelets>>>,
}

/// The built-in registry plus the subresources served by kubelets
/// (`pods/attach`, `pods/portforward`, `nodes/proxy`), order kept.
fn registry_with_connect_subresources() -> Registry {
    use ackemu_kube::GroupVersionKind;
    use ackemu_kube::registry::Subresource;
    let sub = |name: &str, kind: &str, verbs: &[&str]| Subresource {
        name: name.to_owned(),
        kind: GroupVersionKind::new("", "v1", kind),
        verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
    };
    let mut r = Registry::empty();
    for mut info in Registry::builtin().iter().cloned() {
        if info.group.is_empty() {
            let extra = match info.resource.as_str() {
                "pods" => vec![
                    sub("attach", "PodAttachOptions", &["create", "get"]),
                    sub("portforward", "PodPortForwardOptions", &["create", "get"]),
                ],
                "nodes" => vec![sub(
                    "proxy",
                    "NodeProxyOptions",
                    &["create", "delete", "get", "patch", "update"],
                )],
                _ => Vec::new(),
            };
            for s in extra {
                if info.subresource(&s.name).is_none() {
                    info.subresources.push(s);
                }
            }
        }
        r.add(info);
    }
    r
}

/// Parsed query parameters (last value wins).
#[derive(Debug, Default)]
struct Query(BTreeMap<String, String>);

pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Query {
    fn parse(q: &str) -> Self {
        let mut m = BTreeMap::new();
        for kv in q.split('&').filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            m.insert(percent_decode(k), percent_decode(v));
        }
        Self(m)
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }

    fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1"))
    }
}

fn json_response(code: StatusCode, v: &Value) -> Response<Body> {
    let body = serde_json::to_vec(v).unwrap_or_default();
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)).boxed())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

fn text_response(code: StatusCode, text: &str) -> Response<Body> {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(text.to_owned())).boxed())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

/// The HTTP response for an API error.
pub fn error_response(e: &ApiError) -> Response<Body> {
    let mut r = json_response(
        StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &e.to_status(),
    );
    if let Some(s) = e.retry_after_seconds
        && let Ok(v) = http::HeaderValue::from_str(&s.to_string())
    {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// How a response should render objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Output {
    Object,
    /// Server-side Table (`kubectl get`); `include` is `includeObject`.
    Table(Include),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Include {
    None,
    Metadata,
    Object,
}

fn output(req_accept: &str, q: &Query) -> Output {
    if req_accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table"))
        || req_accept.starts_with("application/json;as=Table")
    {
        let include = match q.get("includeObject") {
            Some("None") => Include::None,
            Some("Object") => Include::Object,
            _ => Include::Metadata,
        };
        Output::Table(include)
    } else {
        Output::Object
    }
}

const GENERATE_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn random_suffix() -> String {
    let u = uuid::Uuid::new_v4();
    u.as_bytes()[..5]
        .iter()
        .map(|b| GENERATE_CHARS[*b as usize % GENERATE_CHARS.len()] as char)
        .collect()
}

fn ts(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    jiff::Timestamp::from_second(secs)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

struct DeleteOptions {
    propagation: Option<String>,
    grace: Option<i64>,
    uid: Option<String>,
    rv: Option<String>,
    dry_run: bool,
}

impl Api {
    pub fn new(storage: Storage, clock: Clock, tasks: Tasks, cfg: ApiConfig) -> Arc<Self> {
        let audit_tx = cfg.audit_log.as_ref().map(|path| {
            let (tx, mut rx) = mpsc::channel::<String>(cfg.audit_buffer.max(1));
            let path = path.clone();
            let token = tasks.token();
            tasks.spawn("audit-log", async move {
                use tokio::io::AsyncWriteExt as _;
                let file = tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .await;
                let mut file = match file {
                    Ok(f) => f,
                    Err(e) => {
                        tracing::error!("opening audit log {}: {e}", path.display());
                        return;
                    }
                };
                loop {
                    let line = tokio::select! {
                        l = rx.recv() => match l { Some(l) => l, None => return },
                        () = token.cancelled() => return,
                    };
                    if let Err(e) = file.write_all(format!("{line}\n").as_bytes()).await {
                        tracing::error!("writing audit log {}: {e}", path.display());
                    }
                    let _ = file.flush().await;
                }
            });
            tx
        });
        Arc::new(Self {
            audit_tx,
            registry: RwLock::new(registry_with_connect_subresources()),
            storage,
            clock,
            tasks,
            readonly: Arc::new(Semaphore::new(cfg.max_requests_in_flight.max(1))),
            mutating: Arc::new(Semaphore::new(cfg.max_mutating_requests_in_flight.max(1))),
            service_alloc: tokio::sync::Mutex::new(()),
            tokens: RwLock::new(None),
            kubelets: RwLock::new(None),
            cfg,
        })
    }

    /// Installs the service-account token signer.
    pub fn set_token_signer(&self, signer: crate::tokens::TokenSigner) {
        *self.tokens.write() = Some(Arc::new(signer));
    }

    /// Authenticates a bearer token: a bootstrap token or a service-account JWT
    /// whose ServiceAccount still exists.
    pub async fn authenticate_bearer(&self, token: &str) -> Result<UserInfo, ApiError> {
        let now = self.clock.wall_unix_ms() / 1000;
        if let Some((id, secret)) = crate::tokens::parse_bootstrap_token(token) {
            let info = self
                .info_by_gr("", "secrets")
                .ok_or_else(ApiError::unauthorized)?;
            let s = self
                .storage
                .get(&info, "kube-system", &format!("bootstrap-token-{id}"))
                .await
                .map_err(|_| ApiError::unauthorized())?;
            return crate::tokens::bootstrap_user(&s.obj, id, secret, now).map_err(|why| {
                tracing::info!("bootstrap token {id} rejected: {why}");
                ApiError::unauthorized()
            });
        }
        let signer = self
            .tokens
            .read()
            .clone()
            .ok_or_else(ApiError::unauthorized)?;
        let sa = signer
            .verify(token, now, &[crate::tokens::ISSUER])
            .map_err(|why| {
                tracing::info!("service account token rejected: {why}");
                ApiError::unauthorized()
            })?;
        let info = self
            .info_by_gr("", "serviceaccounts")
            .ok_or_else(ApiError::unauthorized)?;
        let cur = self
            .storage
            .get(&info, &sa.namespace, &sa.name)
            .await
            .map_err(|_| ApiError::unauthorized())?;
        if !sa.uid.is_empty() && cur.obj["metadata"]["uid"].as_str() != Some(sa.uid.as_str()) {
            return Err(ApiError::unauthorized());
        }
        Ok(sa.user())
    }

    fn info(&self, group: &str, version: &str, resource: &str) -> Option<ResourceInfo> {
        self.registry.read().get(group, version, resource).cloned()
    }

    fn info_by_gr(&self, group: &str, resource: &str) -> Option<ResourceInfo> {
        self.registry.read().preferred(group, resource).cloned()
    }

    fn now(&self) -> String {
        ts(self.clock.wall())
    }

    fn print_ctx(&self) -> PrintContext {
        let ms = self.clock.wall_unix_ms();
        PrintContext {
            now: jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH),
        }
    }

    /// The whole pipeline for one request from an authenticated (or
    /// anonymous) user.
    pub async fn handle<B: ReqBody>(
        self: &Arc<Self>,
        req: Request<B>,
        user: UserInfo,
    ) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path().to_owned();
        let query = parts.uri.query().unwrap_or("").to_owned();
        let info = reqinfo::parse(parts.method.as_str(), &path, &query);
        let received = self.clock.wall_unix_ms();
        let (effective, impersonated) = match self.impersonate(&parts.headers, &user) {
            Ok(Some(u)) => (u.clone(), Some(u)),
            Ok(None) => (user.clone(), None),
            Err(e) => {
                let r = error_response(&e);
                self.audit(&parts, &info, &user, None, r.status().as_u16(), received);
                return r;
            }
        };
        let r = self
            .serve(parts.clone(), body, &info, &path, &query, effective)
            .await;
        self.audit(
            &parts,
            &info,
            &user,
            impersonated.as_ref(),
            r.status().as_u16(),
            received,
        );
        r
    }

    /// Impersonation: `Impersonate-User`/`-Group` headers, allowed only with
    /// the `impersonate` verb on users, groups or serviceaccounts.
    fn impersonate(
        &self,
        headers: &http::HeaderMap,
        user: &UserInfo,
    ) -> Result<Option<UserInfo>, ApiError> {
        let Some(target) = headers
            .get("impersonate-user")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
        else {
            if headers.contains_key("impersonate-group") {
                return Err(ApiError::bad_request(
                    "requested impersonation of groups without a user",
                ));
            }
            return Ok(None);
        };
        let groups: Vec<String> = headers
            .get_all("impersonate-group")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        let check = |resource: &str, ns: &str, name: &str| -> Result<(), ApiError> {
            let a = Attributes {
                verb: "impersonate".to_owned(),
                resource_request: true,
                namespace: ns.to_owned(),
                api_group: String::new(),
                resource: resource.to_owned(),
                subresource: String::new(),
                name: name.to_owned(),
                path: String::new(),
            };
            if self.allowed(user, &a) {
                Ok(())
            } else {
                Err(ApiError::forbidden(rbac::forbidden_message(user, &a)))
            }
        };
        let impersonated = if let Some(rest) = target.strip_prefix("system:serviceaccount:") {
            let (ns, name) = rest.split_once(':').ok_or_else(|| {
                ApiError::bad_request(format!("invalid service account name {target:?}"))
            })?;
            check("serviceaccounts", ns, name)?;
            let mut g = vec![
                "system:serviceaccounts".to_owned(),
                format!("system:serviceaccounts:{ns}"),
            ];
            g.extend(groups.iter().cloned());
            UserInfo::authenticated(&target, &g)
        } else {
            check("users", "", &target)?;
            if target == "system:anonymous" {
                UserInfo {
                    name: target.clone(),
                    groups: groups.clone(),
                }
            } else {
                UserInfo::authenticated(&target, &groups)
            }
        };
        for g in &groups {
            check("groups", "", g)?;
        }
        Ok(Some(impersonated))
    }

    /// One audit event (level Metadata) per request, when an audit log is configured.
    fn audit(
        &self,
        parts: &http::request::Parts,
        info: &RequestInfo,
        user: &UserInfo,
        impersonated: Option<&UserInfo>,
        code: u16,
        received_ms: i64,
    ) {
        let Some(tx) = &self.audit_tx else { return };
        let ts = |ms: i64| {
            let t = jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
            ackemu_kube::duration::format_micro_timestamp(t)
        };
        let mut ev = json!({
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": "Metadata",
            "auditID": uuid::Uuid::new_v4().to_string(),
            "stage": "ResponseComplete",
            "requestURI": parts.uri.to_string(),
            "verb": info.verb,
            "user": {"username": user.name, "groups": user.groups},
            "userAgent": parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or(""),
            "responseStatus": {"metadata": {}, "code": code},
            "requestReceivedTimestamp": ts(received_ms),
            "stageTimestamp": ts(self.clock.wall_unix_ms()),
        });
        if let Some(i) = impersonated {
            ev["impersonatedUser"] = json!({"username": i.name, "groups": i.groups});
        }
        if info.resource_request {
            ev["objectRef"] = json!({"resource": info.resource, "namespace": info.namespace, "name": info.name,
                "apiGroup": info.api_group, "apiVersion": info.api_version, "subresource": info.subresource});
        }
        if tx.try_send(ev.to_string()).is_err() {
            metrics::counter!("ackemu_apiserver_audit_events_dropped_total").increment(1);
        }
    }

    async fn serve<B: ReqBody>(
        self: &Arc<Self>,
        parts: http::request::Parts,
        body: B,
        info: &RequestInfo,
        path: &str,
        query: &str,
        user: UserInfo,
    ) -> Response<Body> {
        let info = info.clone();
        let (path, query) = (path.to_owned(), query.to_owned());
        let _permit = if reqinfo::long_running(&info) {
            None
        } else {
            let sem = if matches!(parts.method, Method::GET | Method::HEAD) {
                &self.readonly
            } else {
                &self.mutating
            };
            match sem.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    metrics::counter!("ackemu_apiserver_rejected_requests_total", "reason" => "max-in-flight").increment(1);
                    return error_response(&ApiError::too_many_requests());
                }
            }
        };
        metrics::counter!("ackemu_apiserver_requests_total", "verb" => info.verb.clone())
            .increment(1);
        if let Err(e) = ackemu_base::failpoint!("apiserver/request") {
            return error_response(&ApiError::internal(e.to_string()));
        }
        if let Err(e) = self.authorize(&user, &info) {
            return error_response(&e);
        }
        if Self::is_connect(&info) {
            return self.connect(parts, body, &info, &query).await;
        }
        let accept = parts
            .headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = match http_body_util::Limited::new(body, self.cfg.max_body_bytes)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(_) => return error_response(&ApiError::too_large()),
        };
        let q = Query::parse(&query);
        if let Some(remote) = self.remote_for_path(&path) {
            return match self
                .proxy(&remote, &parts, &path, &query, body, &user)
                .await
            {
                Ok(r) => r,
                Err(e) => error_response(&e),
            };
        }
        let result = if info.resource_request {
            self.resource(
                &parts.method,
                &info,
                &q,
                &accept,
                &content_type,
                body,
                &user,
            )
            .await
        } else {
            self.non_resource(&parts.method, &path)
        };
        match result {
            Ok(r) => r,
            Err(e) => error_response(&e),
        }
    }

    fn rbac_view(&self) -> RbacView {
        let mut view = RbacView::default();
        let registry = self.registry.read().clone();
        let grab = |res: &str| -> Vec<Arc<Value>> {
            let Some(info) = registry.preferred("rbac.authorization.k8s.io", res) else {
                return Vec::new();
            };
            let Ok(cache) = self.storage.cache(info) else {
                return Vec::new();
            };
            let prefix = self
                .storage
                .keys()
                .resource_prefix(info)
                .unwrap_or_default();
            cache.snapshot(&prefix).0
        };
        view.cluster_roles = grab("clusterroles");
        view.cluster_role_bindings = grab("clusterrolebindings");
        view.roles = grab("roles");
        view.role_bindings = grab("rolebindings");
        view
    }

    fn attributes(info: &RequestInfo) -> Attributes {
        Attributes {
            verb: info.verb.clone(),
            resource_request: info.resource_request,
            namespace: info.namespace.clone(),
            api_group: info.api_group.clone(),
            resource: info.resource.clone(),
            subresource: info.subresource.clone(),
            name: info.name.clone(),
            path: info.path.clone(),
        }
    }

    /// `system:masters` is a superuser group; everyone else goes through RBAC.
    fn allowed(&self, user: &UserInfo, a: &Attributes) -> bool {
        if user.groups.iter().any(|g| g == "system:masters") {
            return true;
        }
        if let Some(node) = crate::admission::node_name(user)
            && crate::admission::node_authorize(node, a, |res, ns, name| {
                self.node_pod_refs(node, res, ns, name)
            })
        {
            return true;
        }
        rbac::authorize(&self.rbac_view(), user, a)
    }

    /// Whether a pod bound to `node` references `resource/name` in `ns`.
    fn node_pod_refs(&self, node: &str, resource: &str, ns: &str, name: &str) -> bool {
        let Some(pods) = self.info_by_gr("", "pods") else {
            return false;
        };
        let Ok(cache) = self.storage.cache(&pods) else {
            return false;
        };
        let prefix = self
            .storage
            .keys()
            .list_prefix(&pods, Some(ns))
            .unwrap_or_default();
        cache.snapshot(&prefix).0.iter().any(|p| {
            p["spec"]["nodeName"] == node && crate::admission::pod_references(p, resource, name)
        })
    }

    /// Mutating, then validating admission webhooks for a create or update.
    #[allow(clippy::too_many_arguments)]
    async fn admission_webhooks(
        &self,
        info: &ResourceInfo,
        sub: &str,
        operation: &str,
        ns: &str,
        name: &str,
        mut obj: Value,
        old: Option<&Value>,
        user: &UserInfo,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        if info.group == "admissionregistration.k8s.io" {
            return Ok(obj);
        }
        let registry = self.registry.read().clone();
        let configs = |res: &str| -> Vec<Arc<Value>> {
            let Some(i) = registry.preferred("admissionregistration.k8s.io", res) else {
                return Vec::new();
            };
            let Ok(cache) = self.storage.cache(i) else {
                return Vec::new();
            };
            cache
                .snapshot(&self.storage.keys().resource_prefix(i).unwrap_or_default())
                .0
        };
        let mutating = configs("mutatingwebhookconfigurations");
        let validating = configs("validatingwebhookconfigurations");
        if mutating.is_empty() && validating.is_empty() {
            return Ok(obj);
        }
        let ns_labels = if info.namespaced() && !ns.is_empty() {
            match self.info_by_gr("", "namespaces") {
                Some(ni) => self
                    .storage
                    .get(&ni, "", ns)
                    .await
                    .ok()
                    .map(|s| s.obj["metadata"]["labels"].clone()),
                None => None,
            }
        } else if info.group.is_empty() && info.resource == "namespaces" {
            Some(obj["metadata"]["labels"].clone())
        } else {
            None
        };
        for (configs, mutate) in [(mutating, true), (validating, false)] {
            for config in configs {
                for hook in config["webhooks"].as_array().into_iter().flatten() {
                    let hook_name = hook["name"].as_str().unwrap_or("").to_owned();
                    let req = crate::webhook::Request {
                        info,
                        subresource: sub,
                        operation,
                        namespace: ns,
                        name,
                        object: (operation != "DELETE").then_some(&obj),
                        old_object: old,
                        user,
                        dry_run,
                    };
                    if !crate::webhook::matches(hook, &req, ns_labels.as_ref()) {
                        continue;
                    }
                    let uid = uuid::Uuid::new_v4().to_string();
                    let review = crate::webhook::review(&req, &uid);
                    let fail_open = hook["failurePolicy"].as_str() == Some("Ignore");
                    let outcome = match self.webhook_target(hook).await {
                        Ok(target) => {
                            crate::webhook::call(&target, &review, &self.clock, &self.tasks).await
                        }
                        Err(e) => Err(e),
                    };
                    let answer = match outcome {
                        Ok(a) => a,
                        Err(_) if fail_open => continue,
                        Err(e) => {
                            return Err(ApiError::internal(format!(
                                "failed calling webhook {hook_name:?}: failed to call webhook: {e}"
                            )));
                        }
                    };
                    match crate::webhook::verdict(&hook_name, &uid, &answer) {
                        Ok(crate::webhook::Verdict::Allowed { patch }) => {
                            if let (true, Some(p)) = (mutate, patch) {
                                obj = patch::json_patch(&obj, &p).map_err(|e| {
                                    ApiError::internal(format!("admission webhook {hook_name:?} returned an invalid patch: {e}"))
                                })?;
                            }
                        }
                        Ok(crate::webhook::Verdict::Denied { code, message }) => {
                            let mut e = ApiError::bad_request(message);
                            e.code = code;
                            e.reason = match code {
                                403 => "Forbidden",
                                404 => "NotFound",
                                409 => "Conflict",
                                422 => "Invalid",
                                _ => "BadRequest",
                            };
                            return Err(e);
                        }
                        Err(_) if fail_open => continue,
                        Err(e) => {
                            return Err(ApiError::internal(format!(
                                "failed calling webhook {hook_name:?}: {e}"
                            )));
                        }
                    }
                }
            }
        }
        Ok(obj)
    }

    /// Resolves a webhook's clientConfig to an address to dial: a URL, or a
    /// Service resolved to one of its ready endpoint addresses.
    async fn webhook_target(&self, hook: &Value) -> Result<crate::webhook::Target, String> {
        let cc = &hook["clientConfig"];
        let timeout_s = hook["timeoutSeconds"].as_i64().unwrap_or(10).clamp(1, 30);
        let ca_b64 = cc["caBundle"].as_str().unwrap_or("");
        let ca_pem = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, ca_b64)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default();
        let timeout = Duration::from_secs(timeout_s as u64);
        if let Some(url) = cc["url"].as_str() {
            let uri: http::Uri = url
                .parse()
                .map_err(|e| format!("invalid webhook url {url:?}: {e}"))?;
            let host = uri.host().unwrap_or("").to_owned();
            let port = uri.port_u16().unwrap_or(443);
            let addr = tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|e| format!("Post {url:?}: dial tcp: lookup {host}: {e}"))?
                .next()
                .ok_or_else(|| format!("Post {url:?}: dial tcp: lookup {host}: no such host"))?;
            return Ok(crate::webhook::Target {
                url: url.to_owned(),
                addr,
                server_name: host,
                ca_pem,
                timeout,
            });
        }
        let svc_ref = &cc["service"];
        let (url, server_name) = crate::webhook::service_url(svc_ref, timeout_s);
        let svc_name = svc_ref["name"].as_str().unwrap_or("");
        let svc_ns = svc_ref["namespace"].as_str().unwrap_or("");
        let port = svc_ref["port"].as_i64().unwrap_or(443);
        let post = |why: &str| format!("Post {url:?}: {why}");
        let svc_info = self
            .info_by_gr("", "services")
            .ok_or_else(|| post("services are not served"))?;
        let ep_info = self
            .info_by_gr("", "endpoints")
            .ok_or_else(|| post("endpoints are not served"))?;
        let svc = self
            .storage
            .get(&svc_info, svc_ns, svc_name)
            .await
            .map_err(|_| post(&format!("service \"{svc_name}\" not found")))?;
        let sport = svc.obj["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["port"].as_i64() == Some(port))
            .cloned()
            .ok_or_else(|| post(&format!("service \"{svc_name}\" has no port {port}")))?;
        let eps = self
            .storage
            .get(&ep_info, svc_ns, svc_name)
            .await
            .map_err(|_| post(&format!("endpoints \"{svc_name}\" not found")))?;
        for subset in eps.obj["subsets"].as_array().into_iter().flatten() {
            let Some(ip) = subset["addresses"]
                .as_array()
                .and_then(|a| a.first())
                .and_then(|a| a["ip"].as_str())
            else {
                continue;
            };
            let target_port = subset["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .find_map(|p| {
                    let by_name = sport["name"]
                        .as_str()
                        .is_some_and(|n| !n.is_empty() && p["name"] == n);
                    let by_port = sport["targetPort"]
                        .as_i64()
                        .is_some_and(|tp| p["port"].as_i64() == Some(tp));
                    (by_name || by_port || subset["ports"].as_array().map(Vec::len) == Some(1))
                        .then(|| p["port"].as_i64())
                        .flatten()
                });
            if let (Ok(ip), Some(tp)) = (ip.parse::<std::net::IpAddr>(), target_port) {
                let addr = SocketAddr::new(ip, u16::try_from(tp).unwrap_or(443));
                return Ok(crate::webhook::Target {
                    url,
                    addr,
                    server_name,
                    ca_pem,
                    timeout,
                });
            }
        }
        Err(post(&format!(
            "no endpoints available for service \"{svc_name}\""
        )))
    }

    /// The remote (Service-backed) APIServices.
    pub fn remotes(&self) -> Vec<crate::aggregator::Remote> {
        let Some(info) = self.info_by_gr("apiregistration.k8s.io", "apiservices") else {
            return Vec::new();
        };
        let Ok(cache) = self.storage.cache(&info) else {
            return Vec::new();
        };
        crate::aggregator::remotes(
            &cache
                .snapshot(
                    &self
                        .storage
                        .keys()
                        .resource_prefix(&info)
                        .unwrap_or_default(),
                )
                .0,
        )
    }

    fn remote_for_path(&self, path: &str) -> Option<crate::aggregator::Remote> {
        let rest = path.strip_prefix("/apis/")?;
        let mut parts = rest.split('/');
        let (group, version) = (parts.next()?, parts.next()?);
        if self
            .registry
            .read()
            .group_version(group, version)
            .next()
            .is_some()
        {
            return None;
        }
        self.remotes()
            .into_iter()
            .find(|r| r.group == group && r.version == version)
    }

    /// A ready endpoint of a Service port: (address, target port).
    async fn service_endpoint(
        &self,
        ns: &str,
        name: &str,
        port: i64,
    ) -> Result<SocketAddr, String> {
        let svc_info = self
            .info_by_gr("", "services")
            .ok_or("services are not served")?;
        let ep_info = self
            .info_by_gr("", "endpoints")
            .ok_or("endpoints are not served")?;
        let svc = self
            .storage
            .get(&svc_info, ns, name)
            .await
            .map_err(|_| format!("service/{name} in \"{ns}\" is not present"))?;
        let sport = svc.obj["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["port"].as_i64() == Some(port))
            .cloned()
            .ok_or_else(|| format!("service/{name} in \"{ns}\" is not listening on port {port}"))?;
        let eps =
            self.storage.get(&ep_info, ns, name).await.map_err(|_| {
                format!("endpoints for service/{name} in \"{ns}\" have no addresses")
            })?;
        for subset in eps.obj["subsets"].as_array().into_iter().flatten() {
            let Some(ip) = subset["addresses"]
                .as_array()
                .and_then(|a| a.first())
                .and_then(|a| a["ip"].as_str())
            else {
                continue;
            };
            let target = subset["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .find_map(|p| {
                    let by_name = sport["name"]
                        .as_str()
                        .is_some_and(|n| !n.is_empty() && p["name"] == n);
                    let by_port = sport["targetPort"]
                        .as_i64()
                        .is_some_and(|tp| p["port"].as_i64() == Some(tp));
                    (by_name || by_port || subset["ports"].as_array().map(Vec::len) == Some(1))
                        .then(|| p["port"].as_i64())
                        .flatten()
                });
            if let (Ok(ip), Some(tp)) = (ip.parse::<std::net::IpAddr>(), target) {
                return Ok(SocketAddr::new(ip, u16::try_from(tp).unwrap_or(443)));
            }
        }
        Err(format!(
            "endpoints for service/{name} in \"{ns}\" have no addresses with port name \"{}\"",
            sport["name"].as_str().unwrap_or("")
        ))
    }

    async fn proxy(
        &self,
        remote: &crate::aggregator::Remote,
        parts: &http::request::Parts,
        path: &str,
        query: &str,
        body: Bytes,
        user: &UserInfo,
    ) -> Result<Response<Body>, ApiError> {
        // kube-aggregator answers a plain-text 503 without Retry-After;
        // clients report it as "the server is currently unable to handle the request".
        let unavailable =
            || text_response(StatusCode::SERVICE_UNAVAILABLE, "service unavailable\n");
        if !remote.available {
            return Ok(unavailable());
        }
        let addr = match self
            .service_endpoint(&remote.service_namespace, &remote.service_name, remote.port)
            .await
        {
            Ok(a) => a,
            Err(e) => {
                tracing::info!("apiservice {}: {e}", remote.name);
                return Ok(unavailable());
            }
        };
        let mut headers: Vec<(&str, String)> = vec![("x-remote-user", user.name.clone())];
        for g in &user.groups {
            headers.push(("x-remote-group", g.clone()));
        }
        for (h, name) in [
            (header::ACCEPT, "accept"),
            (header::CONTENT_TYPE, "content-type"),
        ] {
            if let Some(v) = parts.headers.get(&h).and_then(|v| v.to_str().ok()) {
                headers.push((name, v.to_owned()));
            }
        }
        let pq = if query.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{query}")
        };
        let resp = match crate::aggregator::forward(
            remote,
            addr,
            parts.method.as_str(),
            &pq,
            &headers,
            body,
            &self.clock,
            &self.tasks,
            Duration::from_secs(30),
        )
        .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("apiservice {}: {e}", remote.name);
                return Ok(unavailable());
            }
        };
        Ok(Response::builder()
            .status(resp.status)
            .header(header::CONTENT_TYPE, resp.content_type)
            .body(Full::new(resp.body).boxed())
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed())))
    }

    /// One round of the APIService availability check.
    pub async fn check_apiservices(&self) {
        let Some(info) = self.info_by_gr("apiregistration.k8s.io", "apiservices") else {
            return;
        };
        let Ok(cache) = self.storage.cache(&info) else {
            return;
        };
        let all = cache
            .snapshot(
                &self
                    .storage
                    .keys()
                    .resource_prefix(&info)
                    .unwrap_or_default(),
            )
            .0;
        let now = self.now();
        for obj in all {
            let name = obj["metadata"]["name"].as_str().unwrap_or("").to_owned();
            let cond = match crate::aggregator::remotes(std::slice::from_ref(&obj))
                .into_iter()
                .next()
            {
                None => crate::aggregator::condition(
                    true,
                    "Local",
                    "Local APIServices are always available",
                    &now,
                ),
                Some(remote) => {
                    let probe = match self
                        .service_endpoint(
                            &remote.service_namespace,
                            &remote.service_name,
                            remote.port,
                        )
                        .await
                    {
                        Err(why) => Err(("MissingEndpoints", why)),
                        Ok(addr) => {
                            let path = format!("/apis/{}/{}", remote.group, remote.version);
                            match crate::aggregator::forward(
                                &remote,
                                addr,
                                "GET",
                                &path,
                                &[],
                                Bytes::new(),
                                &self.clock,
                                &self.tasks,
                                Duration::from_secs(5),
                            )
                            .await
                            {
                                Ok(r) if (200..300).contains(&r.status) => Ok(()),
                                Ok(r) => Err((
                                    "FailedDiscoveryCheck",
                                    format!(
                                        "failing or missing response from https://{addr}{path}: bad status from https://{addr}{path}: {}",
                                        r.status
                                    ),
                                )),
                                Err(e) => Err((
                                    "FailedDiscoveryCheck",
                                    format!(
                                        "failing or missing response from https://{addr}{path}: {e}"
                                    ),
                                )),
                            }
                        }
                    };
                    match probe {
                        Ok(()) => {
                            crate::aggregator::condition(true, "Passed", "all checks passed", &now)
                        }
                        Err((reason, msg)) => {
                            // kube-aggregator's availability controller.
                            tracing::error!("{name} failed with: {msg}");
                            crate::aggregator::condition(false, reason, &msg, &now)
                        }
                    }
                }
            };
            let mut updated = (*obj).clone();
            if crate::aggregator::set_condition(&mut updated, cond) {
                let _ =
                    self.storage
                        .guaranteed_update(&info, "", &name, |cur| {
                            let mut o = cur.obj.clone();
                            let c = updated["status"]["conditions"]
                                .as_array()
                                .and_then(|cs| cs.iter().find(|c| c["type"] == "Available"))
                                .cloned();
                            Ok(c.and_then(|c| {
                                crate::aggregator::set_condition(&mut o, c).then_some(o)
                            }))
                        })
                        .await;
            }
        }
    }

    /// Admission for updates: NodeRestriction.
    fn admit_update(
        &self,
        info: &ResourceInfo,
        sub: &str,
        old: &Value,
        new: &Value,
        user: &UserInfo,
    ) -> Result<(), ApiError> {
        if let Some(node) = crate::admission::node_name(user)
            && info.group.is_empty()
        {
            crate::admission::node_restriction(node, &info.resource, sub, new, Some(old)).map_err(
                |why| {
                    ApiError::forbidden(format!(
                        "{} \"{}\" is forbidden: {why}",
                        info.group_resource(),
                        new["metadata"]["name"].as_str().unwrap_or("")
                    ))
                },
            )?;
        }
        Ok(())
    }

    /// Admission for creates: ServiceAccount, DefaultTolerationSeconds, NodeRestriction.
    async fn admit_create(
        &self,
        info: &ResourceInfo,
        ns: &str,
        obj: &mut Value,
        user: &UserInfo,
    ) -> Result<(), ApiError> {
        let name = obj_name(obj);
        let forbidden = |why: String| {
            ApiError::forbidden(format!(
                "{} \"{name}\" is forbidden: {why}",
                info.group_resource()
            ))
        };
        if let Some(node) = crate::admission::node_name(user)
            && info.group.is_empty()
        {
            crate::admission::node_restriction(node, &info.resource, "", obj, None)
                .map_err(forbidden)?;
        }
        if info.group.is_empty() && info.kind == "Pod" {
            let sa_name = obj["spec"]["serviceAccountName"]
                .as_str()
                .filter(|s| !s.is_empty())
                .unwrap_or("default")
                .to_owned();
            let sa = match self.info_by_gr("", "serviceaccounts") {
                Some(sainfo) => match self.storage.get(&sainfo, ns, &sa_name).await {
                    Ok(s) => Some(s.obj),
                    Err(e) if e.code == 404 => None,
                    Err(e) => return Err(e),
                },
                None => None,
            };
            let suffix = random_suffix();
            crate::admission::service_account(obj, sa.as_ref(), &suffix).map_err(forbidden)?;
            crate::admission::default_toleration_seconds(obj);
        }
        Ok(())
    }

    fn authorize(&self, user: &UserInfo, info: &RequestInfo) -> Result<(), ApiError> {
        let a = Self::attributes(info);
        if self.allowed(user, &a) {
            return Ok(());
        }
        Err(ApiError::forbidden(rbac::forbidden_message(user, &a)))
    }

    // ---- non-resource endpoints

    fn non_resource(&self, method: &Method, path: &str) -> Result<Response<Body>, ApiError> {
        if method != Method::GET && method != Method::HEAD {
            return Err(ApiError::method_not_allowed(format!(
                "{method} is not supported on {path}"
            )));
        }
        let path = path.trim_end_matches('/');
        let registry = self.registry.read().clone();
        let v = match path {
            "/healthz" | "/livez" | "/readyz" => return Ok(text_response(StatusCode::OK, "ok")),
            "/version" => self.version(),
            "/api" => json!({
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": self.cfg.advertise_address}]
            }),
            "/apis" => {
                let mut groups = registry.groups();
                for r in self.remotes() {
                    match groups.iter_mut().find(|(g, _)| *g == r.group) {
                        Some((_, vs)) => {
                            if !vs.contains(&r.version) {
                                vs.push(r.version.clone());
                            }
                        }
                        None => groups.push((r.group.clone(), vec![r.version.clone()])),
                    }
                }
                json!({
                    "kind": "APIGroupList",
                    "apiVersion": "v1",
                    "groups": groups.iter().filter(|(g, _)| !g.is_empty()).map(|(g, vs)| group_json(g, vs)).collect::<Vec<_>>()
                })
            }
            "/api/v1" => resource_list(&registry, "", "v1"),
            "/openapi/v3" => openapi_root(&registry),
            "/openapi/v2" => {
                let body = crate::openapi::v2_protobuf(&registry, &self.cfg.git_version);
                return Ok(Response::builder()
                    .status(StatusCode::OK)
                    .header(
                        header::CONTENT_TYPE,
                        "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
                    )
                    .body(Full::new(Bytes::from(body)).boxed())
                    .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed())));
            }
            _ => {
                if let Some(gv) = path.strip_prefix("/openapi/v3/") {
                    let (group, version) = match gv.strip_prefix("api/") {
                        Some(v) => ("", v),
                        None => gv
                            .strip_prefix("apis/")
                            .and_then(|r| r.split_once('/'))
                            .ok_or_else(ApiError::not_found_path)?,
                    };
                    if registry.group_version(group, version).next().is_none() {
                        return Err(ApiError::not_found_path());
                    }
                    openapi_group_version(&registry, group, version)
                } else if let Some(rest) = path.strip_prefix("/apis/") {
                    match rest.split_once('/') {
                        None => {
                            let (_, versions) = registry
                                .groups()
                                .into_iter()
                                .find(|(g, _)| g == rest)
                                .ok_or_else(ApiError::not_found_path)?;
                            let mut g = group_json(rest, &versions);
                            g["kind"] = json!("APIGroup");
                            g["apiVersion"] = json!("v1");
                            g
                        }
                        Some((group, version)) => {
                            if registry.group_version(group, version).next().is_none() {
                                return Err(ApiError::not_found_path());
                            }
                            resource_list(&registry, group, version)
                        }
                    }
                } else {
                    return Err(ApiError::not_found_path());
                }
            }
        };
        Ok(json_response(StatusCode::OK, &v))
    }

    fn version(&self) -> Value {
        let v = self.cfg.git_version.trim_start_matches('v');
        let mut parts = v.split(['.', '-', '+']);
        let major = parts.next().unwrap_or("1");
        let minor = parts.next().unwrap_or("0");
        json!({
            "major": major,
            "minor": minor,
            "emulationMajor": major,
            "emulationMinor": minor,
            "minCompatibilityMajor": major,
            "minCompatibilityMinor": minor,
            "gitVersion": self.cfg.git_version,
            "gitCommit": "ackemu",
            "gitTreeState": "clean",
            "buildDate": "2025-01-01T00:00:00Z",
            "goVersion": "go1.24.0",
            "compiler": "gc",
            "platform": "linux/amd64"
        })
    }

    // ---- resources

    #[allow(clippy::too_many_arguments)]
    async fn resource(
        self: &Arc<Self>,
        method: &Method,
        ri: &RequestInfo,
        q: &Query,
        accept: &str,
        content_type: &str,
        body: Bytes,
        user: &UserInfo,
    ) -> Result<Response<Body>, ApiError> {
        let info = self
            .info(&ri.api_group, &ri.api_version, &ri.resource)
            .ok_or_else(ApiError::not_found_path)?;
        if !info.namespaced() && !ri.namespace.is_empty() && info.resource != "namespaces" {
            return Err(ApiError::not_found_path());
        }
        let ns = if info.namespaced() {
            ri.namespace.as_str()
        } else {
            ""
        };
        let out = output(accept, q);
        if !ri.subresource.is_empty() && info.subresource(&ri.subresource).is_none() {
            return Err(ApiError::not_found_path());
        }
        if !info.has_verb(&ri.verb) && ri.subresource.is_empty() && info.storage_prefix.is_some() {
            return Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            ));
        }
        match ri.verb.as_str() {
            "get" => self.get(&info, ns, &ri.name, &ri.subresource, out).await,
            "list" => self.list(&info, ri, q, out).await,
            "watch" => self.watch(&info, ri, q, out).await,
            "create" => {
                self.create(&info, ns, ri, q, content_type, &body, user)
                    .await
            }
            "update" => {
                self.update(
                    &info,
                    ns,
                    &ri.name,
                    &ri.subresource,
                    q,
                    content_type,
                    &body,
                    user,
                )
                .await
            }
            "patch" => {
                self.patch(
                    &info,
                    ns,
                    &ri.name,
                    &ri.subresource,
                    q,
                    content_type,
                    &body,
                    user,
                )
                .await
            }
            "delete" => {
                let opts = delete_options(q, &body)?;
                self.delete(&info, ns, &ri.name, &opts, user)
                    .await
                    .map(|(code, v)| json_response(code, &v))
            }
            "deletecollection" => self.delete_collection(&info, ri, q, &body, user).await,
            _ => Err(ApiError::method_not_allowed(format!(
                "{method} is not supported"
            ))),
        }
    }

    fn render(&self, info: &ResourceInfo, obj: &Value, out: Output) -> Value {
        match out {
            Output::Object => obj.clone(),
            Output::Table(include) => self.table(
                info,
                std::slice::from_ref(obj),
                include,
                obj["metadata"]["resourceVersion"].as_str().unwrap_or(""),
                None,
                true,
            ),
        }
    }

    fn table(
        &self,
        info: &ResourceInfo,
        objs: &[Value],
        include: Include,
        rv: &str,
        cont: Option<&str>,
        with_columns: bool,
    ) -> Value {
        let ctx = self.print_ctx();
        let rows: Vec<Value> = objs
            .iter()
            .map(|o| {
                let mut row = json!({"cells": printers::cells(info, o, &ctx)});
                match include {
                    Include::None => {}
                    Include::Object => row["object"] = o.clone(),
                    Include::Metadata => {
                        row["object"] = json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]});
                    }
                }
                row
            })
            .collect();
        let mut meta = json!({"resourceVersion": rv});
        if let Some(c) = cont {
            meta["continue"] = json!(c);
        }
        json!({
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": meta,
            "columnDefinitions": if with_columns { printers::column_definitions(info) } else { json!([]) },
            "rows": rows,
        })
    }

    async fn get(
        &self,
        info: &ResourceInfo,
        ns: &str,
        name: &str,
        sub: &str,
        out: Output,
    ) -> Result<Response<Body>, ApiError> {
        if info.storage_prefix.is_none() {
            return Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            ));
        }
        let cur = self.storage.get(info, ns, name).await?;
        let v = match sub {
            "" | "status" | "approval" => self.render(info, &cur.obj, out),
            "scale" => scale_of(&cur.obj),
            "log" | "exec" => {
                return Err(ApiError::bad_request(format!(
                    "{sub} is not available: the node agent API is not connected"
                )));
            }
            _ => return Err(ApiError::not_found_path()),
        };
        Ok(json_response(StatusCode::OK, &v))
    }

    fn list_options(&self, info: &ResourceInfo, q: &Query) -> Result<ListOptions, ApiError> {
        let labels = LabelSelector::parse(q.get("labelSelector").unwrap_or(""))
            .map_err(|e| ApiError::bad_request(e.0))?;
        let fields = FieldSelector::parse(q.get("fieldSelector").unwrap_or(""))
            .map_err(|e| ApiError::bad_request(e.0))?;
        fields
            .check_supported(info)
            .map_err(|e| ApiError::bad_request(e.0))?;
        let resource_version = match q.get("resourceVersion") {
            None | Some("") => None,
            Some(s) => Some(
                s.parse::<i64>()
                    .map_err(|_| ApiError::bad_request(format!("invalid resource version: {s}")))?,
            ),
        };
        let limit = match q.get("limit") {
            None | Some("") => 0,
            Some(s) => s
                .parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("invalid limit: {s}")))?,
        };
        Ok(ListOptions {
            labels,
            fields,
            limit,
            continue_token: q
                .get("continue")
                .filter(|c| !c.is_empty())
                .map(str::to_owned),
            resource_version,
        })
    }

    async fn list(
        &self,
        info: &ResourceInfo,
        ri: &RequestInfo,
        q: &Query,
        out: Output,
    ) -> Result<Response<Body>, ApiError> {
        if info.storage_prefix.is_none() || !info.has_verb("list") {
            return Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            ));
        }
        let opts = self.list_options(info, q)?;
        let ns = (!ri.namespace.is_empty() && info.namespaced()).then_some(ri.namespace.as_str());
        let res = self.storage.list(info, ns, &opts).await?;
        let rv = res.rv.to_string();
        let v = match out {
            Output::Table(include) => self.table(
                info,
                &res.items,
                include,
                &rv,
                res.continue_token.as_deref(),
                true,
            ),
            Output::Object => {
                let mut meta = json!({"resourceVersion": rv});
                if let Some(c) = &res.continue_token {
                    meta["continue"] = json!(c);
                }
                json!({"kind": info.list_kind, "apiVersion": info.api_version(), "metadata": meta, "items": res.items})
            }
        };
        Ok(json_response(StatusCode::OK, &v))
    }

    async fn watch(
        self: &Arc<Self>,
        info: &ResourceInfo,
        ri: &RequestInfo,
        q: &Query,
        out: Output,
    ) -> Result<Response<Body>, ApiError> {
        if info.storage_prefix.is_none() || !info.has_verb("watch") {
            return Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            ));
        }
        let mut opts = self.list_options(info, q)?;
        if !ri.name.is_empty() {
            opts.fields = FieldSelector::from_set(&BTreeMap::from([(
                "metadata.name".to_owned(),
                ri.name.clone(),
            )]));
        }
        let cache = self.storage.cache(info)?;
        let from = opts.resource_version.unwrap_or(0);
        cache
            .wait_for(from.max(1), &self.clock, self.storage.cache_wait)
            .await?;
        let (initial, mut live) = cache.watch(from)?;
        let ns = (!ri.namespace.is_empty() && info.namespaced()).then_some(ri.namespace.clone());
        let prefix = self
            .storage
            .keys()
            .list_prefix(info, ns.as_deref())
            .unwrap_or_default();
        let bookmarks = q.flag("allowWatchBookmarks");
        let timeout = q
            .get("timeoutSeconds")
            .and_then(|s| s.parse::<u64>().ok())
            .map(Duration::from_secs)
            .unwrap_or(self.cfg.max_watch_timeout)
            .min(self.cfg.max_watch_timeout);
        let (tx, rx) = mpsc::channel::<Bytes>(64);
        let api = self.clone();
        let info = info.clone();
        let mut progress = cache.progress();
        let token = self.tasks.token();
        self.tasks.spawn(format!("watch {}", info.resource), async move {
            let mut first_table = true;
            let mut encode = |kind: &str, obj: &Value| -> Bytes {
                let obj = match out {
                    Output::Object => obj.clone(),
                    Output::Table(include) => {
                        let t = api.table(&info, std::slice::from_ref(obj), include, obj["metadata"]["resourceVersion"].as_str().unwrap_or(""), None, first_table);
                        first_table = false;
                        t
                    }
                };
                let mut line = serde_json::to_vec(&json!({"type": kind, "object": obj})).unwrap_or_default();
                line.push(b'\n');
                Bytes::from(line)
            };
            let decide = |ev: &crate::cache::CacheEvent| -> Option<(&'static str, Value)> {
                if !ev.key.starts_with(prefix.as_str()) {
                    return None;
                }
                let now = selected(&info, &opts, &ev.obj);
                let before = ev.prev.as_ref().is_some_and(|p| selected(&info, &opts, p));
                match ev.kind {
                    EventKind::Added if now => Some(("ADDED", (*ev.obj).clone())),
                    EventKind::Deleted if before || now => Some(("DELETED", (*ev.obj).clone())),
                    EventKind::Modified if now && before => Some(("MODIFIED", (*ev.obj).clone())),
                    EventKind::Modified if now => Some(("ADDED", (*ev.obj).clone())),
                    EventKind::Modified if before => Some(("DELETED", (*ev.obj).clone())),
                    _ => None,
                }
            };
            let mut last_rv = from;
            for ev in &initial {
                last_rv = last_rv.max(ev.rv);
                if let Some((k, o)) = decide(ev)
                    && tx.send(encode(k, &o)).await.is_err()
                {
                    return;
                }
            }
            let mut bookmark = api.clock.interval(api.cfg.bookmark_interval);
            bookmark.tick().await;
            let deadline = api.clock.sleep(timeout);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    ev = live.recv() => {
                        let Some(ev) = ev else { return };
                        last_rv = last_rv.max(ev.rv);
                        if let Some((k, o)) = decide(&ev) && tx.send(encode(k, &o)).await.is_err() {
                            return;
                        }
                    }
                    _ = bookmark.tick(), if bookmarks => {
                        let rv = (*progress.borrow_and_update()).max(last_rv);
                        let obj = json!({"kind": info.kind, "apiVersion": info.api_version(), "metadata": {"resourceVersion": rv.to_string()}});
                        let mut line = serde_json::to_vec(&json!({"type": "BOOKMARK", "object": obj})).unwrap_or_default();
                        line.push(b'\n');
                        if tx.send(Bytes::from(line)).await.is_err() {
                            return;
                        }
                    }
                    () = &mut deadline => return,
                    () = tx.closed() => return,
                    () = token.cancelled() => return,
                }
            }
        });
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        let stream = futures::StreamExt::map(stream, |b| Ok::<_, Infallible>(Frame::data(b)));
        let body = StreamBody::new(stream).boxed();
        Ok(Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .header("Transfer-Encoding", "chunked")
            .body(body)
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed())))
    }

    fn decode_body(content_type: &str, body: &Bytes) -> Result<Value, ApiError> {
        if body.starts_with(crate::protobuf::MAGIC)
            || content_type.starts_with("application/vnd.kubernetes.protobuf")
        {
            return crate::protobuf::decode(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding protobuf body: {e}")));
        }
        if content_type.contains("yaml") {
            return serde_yaml::from_slice::<Value>(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")));
        }
        serde_json::from_slice::<Value>(body).map_err(|e| {
            ApiError::bad_request(format!(
                "Object 'Kind' is missing in '{}': {e}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ))
        })
    }

    async fn namespace_admits(&self, ns: &str) -> Result<(), ApiError> {
        let Some(nsinfo) = self.info_by_gr("", "namespaces") else {
            return Ok(());
        };
        let cur = self.storage.get(&nsinfo, "", ns).await?;
        if !cur.obj["metadata"]["deletionTimestamp"].is_null()
            || cur.obj["status"]["phase"] == "Terminating"
        {
            return Err(ApiError::forbidden(format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            )));
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn create(
        self: &Arc<Self>,
        info: &ResourceInfo,
        ns: &str,
        ri: &RequestInfo,
        q: &Query,
        content_type: &str,
        body: &Bytes,
        user: &UserInfo,
    ) -> Result<Response<Body>, ApiError> {
        let obj = Self::decode_body(content_type, body)?;
        match (info.resource.as_str(), ri.subresource.as_str()) {
            (
                "selfsubjectaccessreviews" | "subjectaccessreviews" | "localsubjectaccessreviews",
                "",
            ) => {
                return Ok(json_response(
                    StatusCode::CREATED,
                    &self.access_review(info, obj, user, ns)?,
                ));
            }
            ("selfsubjectreviews", "") => {
                let v = json!({"kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1", "metadata": {"creationTimestamp": null},
                    "status": {"userInfo": {"username": user.name, "groups": user.groups}}});
                return Ok(json_response(StatusCode::CREATED, &v));
            }
            ("pods", "binding") => return self.bind(info, ns, &ri.name, obj).await,
            ("serviceaccounts", "token") => {
                return self.token_request(info, ns, &ri.name, obj).await;
            }
            ("pods", "eviction") => {
                let opts = DeleteOptions {
                    propagation: None,
                    grace: None,
                    uid: None,
                    rv: None,
                    dry_run: q.get("dryRun").is_some(),
                };
                self.delete(info, ns, &ri.name, &opts, user).await?;
                return Ok(json_response(
                    StatusCode::CREATED,
                    &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
                ));
            }
            (_, "") if info.storage_prefix.is_some() => {}
            _ => {
                return Err(ApiError::method_not_allowed(
                    "the server does not allow this method on the requested resource",
                ));
            }
        }
        let uid = uuid::Uuid::new_v4().to_string();
        let now = self.now();
        let suffix = random_suffix();
        let ctx = CreateContext {
            now: &now,
            uid: &uid,
            suffix: &suffix,
            user,
        };
        let mut obj = objects::prepare_create(info, obj, ns, &ctx)?;
        let name = obj["metadata"]["name"].as_str().unwrap_or("").to_owned();
        strict_fields(info, q, &obj)?;
        self.admit_create(info, ns, &mut obj, user).await?;
        let obj_before_hooks = obj;
        let mut obj = self
            .admission_webhooks(
                info,
                "",
                "CREATE",
                ns,
                &name,
                obj_before_hooks,
                None,
                user,
                q.get("dryRun").is_some(),
            )
            .await?;
        let _alloc_guard = if info.group.is_empty() && info.kind == "Service" {
            let guard = self.service_alloc.lock().await;
            let all = self
                .storage
                .list(info, None, &ListOptions::default())
                .await?;
            let used = crate::alloc::InUse::from_services(all.items.iter());
            let seed = u64::from_le_bytes(
                uuid::Uuid::new_v4().as_bytes()[..8]
                    .try_into()
                    .unwrap_or([0; 8]),
            );
            crate::alloc::allocate(&mut obj, &self.cfg.service_ranges, &used, seed).map_err(
                |(field, msg)| {
                    ApiError::invalid(
                        &info.kind,
                        &info.group_resource(),
                        &name,
                        vec![("FieldValueInvalid".into(), field, msg)],
                    )
                },
            )?;
            Some(guard)
        } else {
            None
        };
        if info.namespaced() {
            self.namespace_admits(ns).await.map_err(|e| {
                if e.code == 404 {
                    ApiError::not_found(&ackemu_kube::GroupResource::new("", "namespaces"), ns)
                } else {
                    e
                }
            })?;
        }
        if q.get("dryRun").is_some() {
            return Ok(json_response(StatusCode::CREATED, &obj));
        }
        let stored = self.storage.create(info, ns, &name, obj).await?;
        if info.group == "apiextensions.k8s.io" && info.resource == "customresourcedefinitions" {
            self.crd_changed(&stored.obj);
        }
        Ok(json_response(StatusCode::CREATED, &stored.obj))
    }

    /// Serves (or stops serving) the resources of a CRD.
    pub fn crd_changed(&self, crd: &Value) {
        let infos = ackemu_kube::registry::from_crd(crd);
        let mut reg = self.registry.write();
        let group = crd["spec"]["group"].as_str().unwrap_or("");
        let plural = crd["spec"]["names"]["plural"].as_str().unwrap_or("");
        reg.remove(group, plural);
        if crd["metadata"]["deletionTimestamp"].is_null() {
            for i in infos {
                reg.add(i);
            }
        }
    }

    fn access_review(
        &self,
        info: &ResourceInfo,
        obj: Value,
        user: &UserInfo,
        ns: &str,
    ) -> Result<Value, ApiError> {
        let spec = &obj["spec"];
        let subject = if info.resource == "selfsubjectaccessreviews" {
            user.clone()
        } else {
            let groups: Vec<String> = spec["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|g| g.as_str().map(str::to_owned))
                .collect();
            UserInfo {
                name: spec["user"].as_str().unwrap_or("").to_owned(),
                groups,
            }
        };
        let a = if spec["resourceAttributes"].is_object() {
            let r = &spec["resourceAttributes"];
            let s = |k: &str| r[k].as_str().unwrap_or("").to_owned();
            Attributes {
                verb: s("verb"),
                resource_request: true,
                namespace: if info.resource == "localsubjectaccessreviews" {
                    ns.to_owned()
                } else {
                    s("namespace")
                },
                api_group: s("group"),
                resource: s("resource"),
                subresource: s("subresource"),
                name: s("name"),
                path: String::new(),
            }
        } else if spec["nonResourceAttributes"].is_object() {
            let r = &spec["nonResourceAttributes"];
            Attributes {
                verb: r["verb"].as_str().unwrap_or("").to_owned(),
                path: r["path"].as_str().unwrap_or("").to_owned(),
                ..Default::default()
            }
        } else {
            return Err(ApiError::invalid(&info.kind, &info.group_resource(), "", vec![(
                "FieldValueRequired".into(),
                "spec.resourceAttributes".into(),
                "Required value: exactly one of nonResourceAttributes or resourceAttributes must be specified".into(),
            )]));
        };
        let allowed = self.allowed(&subject, &a);
        let mut out = obj.clone();
        out["kind"] = json!(info.kind);
        out["apiVersion"] = json!(info.api_version());
        if !out["metadata"].is_object() {
            out["metadata"] = json!({});
        }
        out["metadata"]["creationTimestamp"] = Value::Null;
        out["status"] = if allowed {
            json!({"allowed": true, "reason": "RBAC: allowed"})
        } else {
            json!({"allowed": false})
        };
        Ok(out)
    }

    async fn token_request(
        &self,
        info: &ResourceInfo,
        ns: &str,
        name: &str,
        mut req: Value,
    ) -> Result<Response<Body>, ApiError> {
        let sa = self.storage.get(info, ns, name).await?;
        let signer = self
            .tokens
            .read()
            .clone()
            .ok_or_else(|| ApiError::internal("no service-account signing key"))?;
        let now = self.clock.wall_unix_ms() / 1000;
        let spec = &req["spec"];
        let mut audiences: Vec<String> = spec["audiences"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect();
        if audiences.is_empty() {
            audiences.push(crate::tokens::ISSUER.to_owned());
        }
        let ttl = spec["expirationSeconds"].as_i64().unwrap_or(3600);
        if ttl < 600 {
            return Err(ApiError::invalid(
                "TokenRequest",
                &ackemu_kube::GroupResource::new("authentication.k8s.io", "tokenrequests"),
                name,
                vec![(
                    "FieldValueInvalid".into(),
                    "spec.expirationSeconds".into(),
                    format!(
                        "Invalid value: {ttl}: may not specify a duration less than 10 minutes"
                    ),
                )],
            ));
        }
        let bound = &spec["boundObjectRef"];
        let bound_ref = |kind: &str| {
            (bound["kind"] == kind).then(|| crate::tokens::ObjectRef {
                name: bound["name"].as_str().unwrap_or("").to_owned(),
                uid: bound["uid"].as_str().unwrap_or("").to_owned(),
            })
        };
        let claims = crate::tokens::Claims {
            aud: audiences.clone(),
            exp: now + ttl,
            iat: now,
            nbf: now,
            iss: crate::tokens::ISSUER.to_owned(),
            sub: format!("system:serviceaccount:{ns}:{name}"),
            jti: uuid::Uuid::new_v4().to_string(),
            kube: Some(crate::tokens::KubeClaims {
                namespace: ns.to_owned(),
                serviceaccount: crate::tokens::ObjectRef {
                    name: name.to_owned(),
                    uid: sa.obj["metadata"]["uid"].as_str().unwrap_or("").to_owned(),
                },
                pod: bound_ref("Pod"),
                node: bound_ref("Node"),
            }),
        };
        let token = signer
            .sign(&claims)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        req["apiVersion"] = json!("authentication.k8s.io/v1");
        req["kind"] = json!("TokenRequest");
        if !req["metadata"].is_object() {
            req["metadata"] = json!({});
        }
        req["metadata"]["name"] = json!(name);
        req["metadata"]["namespace"] = json!(ns);
        req["metadata"]["creationTimestamp"] = json!(self.now());
        req["spec"]["audiences"] = json!(audiences);
        req["spec"]["expirationSeconds"] = json!(ttl);
        req["status"] = json!({"token": token, "expirationTimestamp": ts_ms((now + ttl) * 1000)});
        Ok(json_response(StatusCode::CREATED, &req))
    }

    async fn bind(
        &self,
        info: &ResourceInfo,
        ns: &str,
        name: &str,
        binding: Value,
    ) -> Result<Response<Body>, ApiError> {
        let node = binding["target"]["name"].as_str().unwrap_or("").to_owned();
        if node.is_empty() {
            return Err(ApiError::bad_request("binding target name is required"));
        }
        let now = self.now();
        let gr = ackemu_kube::GroupResource::new("", "pods/binding");
        self.storage
            .guaranteed_update(info, ns, name, |cur| {
                if let Some(existing) = cur.obj["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
                    return Err(ApiError::conflict(&gr, name, &format!("pod {name} is already assigned to node {existing:?}")));
                }
                if !cur.obj["metadata"]["deletionTimestamp"].is_null() {
                    return Err(ApiError::conflict(&gr, name, &format!("pod {name} is being deleted, cannot be assigned to a host")));
                }
                let mut o = cur.obj.clone();
                o["spec"]["nodeName"] = json!(node);
                let mut conds: Vec<Value> = o["status"]["conditions"].as_array().cloned().unwrap_or_default();
                conds.retain(|c| c["type"] != "PodScheduled");
                conds.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now}));
                o["status"]["conditions"] = Value::Array(conds);
                Ok(Some(o))
            })
            .await?;
        Ok(json_response(
            StatusCode::CREATED,
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
        ))
    }

    /// Writes an updated object; deletes it instead when it is being
    /// deleted and no finalizers remain.
    async fn write_update(
        &self,
        info: &ResourceInfo,
        ns: &str,
        name: &str,
        new: Value,
        expected_rv: i64,
    ) -> Result<Stored, ApiError> {
        let stored = self
            .storage
            .update(info, ns, name, new, expected_rv)
            .await?;
        if should_delete_now(info, &stored.obj) {
            return self.storage.delete(info, ns, name, &stored).await;
        }
        if info.group == "apiextensions.k8s.io" && info.resource == "customresourcedefinitions" {
            self.crd_changed(&stored.obj);
        }
        Ok(stored)
    }

    #[allow(clippy::too_many_arguments)]
    async fn update(
        &self,
        info: &ResourceInfo,
        ns: &str,
        name: &str,
        sub: &str,
        q: &Query,
        content_type: &str,
        body: &Bytes,
        user: &UserInfo,
    ) -> Result<Response<Body>, ApiError> {
        let mut obj = Self::decode_body(content_type, body)?;
        if info.storage_prefix.is_none() {
            return Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            ));
        }
        let cur = self.storage.get(info, ns, name).await?;
        let expected = match object_rv(&obj)? {
            0 => cur.rv,
            rv => rv,
        };
        let new = match sub {
            "" | "status" => {
                let new = keep_service_allocations(
                    info,
                    &cur.obj,
                    objects::prepare_update(info, &cur.obj, obj, sub)?,
                );
                strict_fields(info, q, &new)?;
                self.admit_update(info, sub, &cur.obj, &new, user)?;
                new
            }
            "finalize" => {
                let mut n = cur.obj.clone();
                n["spec"]["finalizers"] = obj["spec"]["finalizers"].clone();
                n
            }
            "approval" => {
                let mut n = cur.obj.clone();
                n["status"]["conditions"] = obj["status"]["conditions"].take();
                n
            }
            "scale" => with_scale(&cur.obj, &obj)?,
            _ => {
                return Err(ApiError::method_not_allowed(
                    "the server does not allow this method on the requested resource",
                ));
            }
        };
        let new = self
            .admission_webhooks(
                info,
                sub,
                "UPDATE",
                ns,
                name,
                new,
                Some(&cur.obj),
                user,
                q.get("dryRun").is_some(),
            )
            .await?;
        if q.get("dryRun").is_some() {
            return Ok(json_response(StatusCode::OK, &new));
        }
        let stored = self.write_update(info, ns, name, new, expected).await?;
        let out = if sub == "scale" {
            scale_of(&stored.obj)
        } else {
            stored.obj
        };
        Ok(json_response(StatusCode::OK, &out))
    }

    #[allow(clippy::too_many_arguments)]
    async fn patch(
        &self,
        info: &ResourceInfo,
        ns: &str,
        name: &str,
        sub: &str,
        q: &Query,
        content_type: &str,
        body: &Bytes,
        user: &UserInfo,
    ) -> Result<Response<Body>, ApiError> {
        if info.storage_prefix.is_none() {
            return Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            ));
        }
        let ct = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_owned();
        if ct == "application/strategic-merge-patch+json" && info.custom {
            return Err(ApiError::unsupported_media_type(&ct));
        }
        let patch_doc: Value = match ct.as_str() {
            "application/json-patch+json"
            | "application/merge-patch+json"
            | "application/strategic-merge-patch+json" => serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?,
            "application/apply-patch+yaml" => serde_yaml::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?,
            other => return Err(ApiError::unsupported_media_type(other)),
        };
        let dry_run = q.get("dryRun").is_some();
        for _ in 0..16 {
            let cur = self.storage.get(info, ns, name).await?;
            let base = if sub == "scale" {
                scale_of(&cur.obj)
            } else {
                cur.obj.clone()
            };
            let patched = match ct.as_str() {
                "application/json-patch+json" => {
                    patch::json_patch(&base, &patch_doc).map_err(|e| {
                        ApiError::invalid(
                            &info.kind,
                            &info.group_resource(),
                            name,
                            vec![("FieldValueInvalid".into(), "".into(), e.0)],
                        )
                    })?
                }
                "application/strategic-merge-patch+json" => {
                    patch::strategic_merge(&base, &patch_doc)
                        .map_err(|e| ApiError::bad_request(e.0))?
                }
                _ => patch::merge_patch(&base, &patch_doc),
            };
            // The patch's own resourceVersion, if it sets one, is a
            // precondition; otherwise a conflicting write in between only
            // means applying the patch again to the newer object.
            let patched_rv = object_rv(&patched)?;
            if patched_rv != 0 && patched_rv != cur.rv {
                return Err(ApiError::stale(&info.group_resource(), name));
            }
            let new = match sub {
                "scale" => with_scale(&cur.obj, &patched)?,
                "" | "status" => {
                    let new = keep_service_allocations(
                        info,
                        &cur.obj,
                        objects::prepare_update(info, &cur.obj, patched, sub)?,
                    );
                    strict_fields(info, q, &new)?;
                    self.admit_update(info, sub, &cur.obj, &new, user)?;
                    new
                }
                _ => {
                    return Err(ApiError::method_not_allowed(
                        "the server does not allow this method on the requested resource",
                    ));
                }
            };
            let new = self
                .admission_webhooks(
                    info,
                    sub,
                    "UPDATE",
                    ns,
                    name,
                    new,
                    Some(&cur.obj),
                    user,
                    dry_run,
                )
                .await?;
            if dry_run {
                return Ok(json_response(StatusCode::OK, &new));
            }
            match self.write_update(info, ns, name, new, cur.rv).await {
                Err(e) if e.reason == "Conflict" => continue,
                Err(e) => return Err(e),
                Ok(s) => {
                    let out = if sub == "scale" {
                        scale_of(&s.obj)
                    } else {
                        s.obj
                    };
                    return Ok(json_response(StatusCode::OK, &out));
                }
            }
        }
        Err(ApiError::stale(&info.group_resource(), name))
    }

    async fn delete(
        &self,
        info: &ResourceInfo,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
        user: &UserInfo,
    ) -> Result<(StatusCode, Value), ApiError> {
        if info.storage_prefix.is_none() {
            return Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            ));
        }
        let gr = info.group_resource();
        let mut admitted = false;
        for _ in 0..16 {
            let cur = self.storage.get(info, ns, name).await?;
            if !admitted {
                self.admission_webhooks(
                    info,
                    "",
                    "DELETE",
                    ns,
                    name,
                    cur.obj.clone(),
                    Some(&cur.obj),
                    user,
                    opts.dry_run,
                )
                .await?;
                admitted = true;
            }
            if let Some(uid) = &opts.uid
                && cur.obj["metadata"]["uid"].as_str() != Some(uid.as_str())
            {
                return Err(ApiError::conflict(
                    &gr,
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        cur.obj["metadata"]["uid"].as_str().unwrap_or("")
                    ),
                ));
            }
            if let Some(rv) = &opts.rv
                && rv != &cur.rv.to_string()
            {
                return Err(ApiError::conflict(
                    &gr,
                    name,
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        cur.rv
                    ),
                ));
            }
            let plan = plan_delete_opts(info, &cur.obj, opts, self.clock.wall_unix_ms());
            let result = match plan {
                DeletePlan::Now => {
                    if opts.dry_run {
                        return Ok((StatusCode::OK, cur.obj));
                    }
                    self.storage.delete(info, ns, name, &cur).await
                }
                DeletePlan::Mark(new) => {
                    if opts.dry_run {
                        return Ok((StatusCode::OK, new));
                    }
                    self.storage.update(info, ns, name, new, cur.rv).await
                }
            };
            match result {
                Err(e) if e.reason == "Conflict" && opts.rv.is_none() => continue,
                Err(e) => return Err(e),
                Ok(s) => {
                    if info.group == "apiextensions.k8s.io"
                        && info.resource == "customresourcedefinitions"
                    {
                        let mut gone = s.obj.clone();
                        gone["metadata"]["deletionTimestamp"] = json!(self.now());
                        self.crd_changed(&gone);
                    }
                    let code = if s.obj["metadata"]["deletionTimestamp"].is_null() {
                        StatusCode::OK
                    } else {
                        StatusCode::ACCEPTED
                    };
                    return Ok((code, s.obj));
                }
            }
        }
        Err(ApiError::stale(&gr, name))
    }

    async fn delete_collection(
        &self,
        info: &ResourceInfo,
        ri: &RequestInfo,
        q: &Query,
        body: &Bytes,
        user: &UserInfo,
    ) -> Result<Response<Body>, ApiError> {
        let opts = self.list_options(info, q)?;
        let del = delete_options(q, body)?;
        let ns = (!ri.namespace.is_empty() && info.namespaced()).then_some(ri.namespace.as_str());
        let res = self.storage.list(info, ns, &opts).await?;
        let mut items = Vec::new();
        for o in &res.items {
            let name = o["metadata"]["name"].as_str().unwrap_or("");
            let ns = o["metadata"]["namespace"].as_str().unwrap_or("");
            match self.delete(info, ns, name, &del, user).await {
                Ok((_, v)) => items.push(v),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(json_response(
            StatusCode::OK,
            &json!({"kind": info.list_kind, "apiVersion": info.api_version(), "metadata": {"resourceVersion": res.rv.to_string()}, "items": items}),
        ))
    }
}

fn keep_service_allocations(info: &ResourceInfo, old: &Value, mut new: Value) -> Value {
    if info.group.is_empty() && info.kind == "Service" {
        crate::alloc::keep_allocations(old, &mut new);
    }
    new
}

/// Server-side field validation: `fieldValidation=Strict` rejects unknown
/// fields of built-in kinds, with kube-apiserver's message.
fn strict_fields(info: &ResourceInfo, q: &Query, obj: &Value) -> Result<(), ApiError> {
    if q.get("fieldValidation") != Some("Strict") || info.custom {
        return Ok(());
    }
    match ackemu_kube::strict::unknown_fields(&info.group, &info.kind, obj) {
        Some(unknown) if !unknown.is_empty() => Err(ApiError::bad_request(format!(
            "{kind} in version {version:?} cannot be handled as a {kind}: {}",
            ackemu_kube::strict::strict_error(&unknown),
            kind = info.kind,
            version = info.version
        ))),
        _ => Ok(()),
    }
}

fn obj_name(obj: &Value) -> String {
    obj["metadata"]["name"].as_str().unwrap_or("").to_owned()
}

/// What a DELETE does to an object.
#[derive(Debug, Clone, PartialEq)]
pub enum DeletePlan {
    /// Remove it from storage.
    Now,
    /// Store this version (deletionTimestamp and finalizers set).
    Mark(Value),
}

fn add_finalizer(obj: &mut Value, f: &str) {
    let mut fins: Vec<Value> = obj["metadata"]["finalizers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !fins.iter().any(|x| x == f) {
        fins.push(json!(f));
    }
    obj["metadata"]["finalizers"] = Value::Array(fins);
}

fn ts_ms(ms: i64) -> String {
    jiff::Timestamp::from_second(ms.div_euclid(1000))
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Decides a DELETE: finalizers, propagation policy, namespace lifecycle
/// and pod graceful deletion, as kube-apiserver's registry does.
pub fn plan_delete(
    info: &ResourceInfo,
    cur: &Value,
    opts: &DeleteOptionsView<'_>,
    now_ms: i64,
) -> DeletePlan {
    let mut obj = cur.clone();
    let already = !obj["metadata"]["deletionTimestamp"].is_null();
    match opts.propagation() {
        Some("Orphan") => add_finalizer(&mut obj, "orphan"),
        Some("Foreground") => add_finalizer(&mut obj, "foregroundDeletion"),
        _ => {}
    }
    if info.group.is_empty() && info.kind == "Namespace" {
        let spec_fins = obj["spec"]["finalizers"]
            .as_array()
            .map(Vec::len)
            .unwrap_or(0);
        let meta_fins = obj["metadata"]["finalizers"]
            .as_array()
            .map(Vec::len)
            .unwrap_or(0);
        if spec_fins == 0 && meta_fins == 0 {
            return DeletePlan::Now;
        }
        if !already {
            obj["metadata"]["deletionTimestamp"] = json!(ts_ms(now_ms));
            obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        }
        obj["status"]["phase"] = json!("Terminating");
        return DeletePlan::Mark(obj);
    }
    let mut grace = 0;
    if info.group.is_empty() && info.kind == "Pod" {
        let scheduled = obj["spec"]["nodeName"]
            .as_str()
            .is_some_and(|n| !n.is_empty());
        let terminal = matches!(
            obj["status"]["phase"].as_str(),
            Some("Succeeded" | "Failed")
        );
        grace = opts.grace().unwrap_or_else(|| {
            obj["spec"]["terminationGracePeriodSeconds"]
                .as_i64()
                .unwrap_or(30)
        });
        if !scheduled || terminal {
            grace = 0;
        }
        if let Some(existing) = obj["metadata"]["deletionGracePeriodSeconds"].as_i64()
            && already
        {
            grace = grace.min(existing);
        }
    }
    let fins = obj["metadata"]["finalizers"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    if grace == 0 && fins == 0 {
        return DeletePlan::Now;
    }
    if !already || grace > 0 {
        obj["metadata"]["deletionTimestamp"] = json!(ts_ms(now_ms + grace * 1000));
        obj["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
    }
    if already && grace == 0 && obj == *cur {
        // Nothing changes: still waiting for finalizers.
        return DeletePlan::Mark(obj);
    }
    obj["metadata"]["generation"] = json!(obj["metadata"]["generation"].as_i64().unwrap_or(0) + 1);
    DeletePlan::Mark(obj)
}

/// Whether an object being deleted has no finalizers left.
pub fn should_delete_now(info: &ResourceInfo, obj: &Value) -> bool {
    if obj["metadata"]["deletionTimestamp"].is_null() {
        return false;
    }
    let meta_fins = obj["metadata"]["finalizers"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    if info.group.is_empty() && info.kind == "Namespace" {
        return meta_fins == 0
            && obj["spec"]["finalizers"]
                .as_array()
                .map(Vec::len)
                .unwrap_or(0)
                == 0;
    }
    if info.group.is_empty() && info.kind == "Pod" {
        // Pods go away when the kubelet deletes them with grace 0.
        return meta_fins == 0 && obj["metadata"]["deletionGracePeriodSeconds"].as_i64() == Some(0);
    }
    meta_fins == 0
}

/// Read-only view of DELETE options for [`plan_delete`].
pub struct DeleteOptionsView<'a> {
    propagation: Option<&'a str>,
    grace: Option<i64>,
}

impl DeleteOptionsView<'_> {
    fn propagation(&self) -> Option<&str> {
        self.propagation
    }

    fn grace(&self) -> Option<i64> {
        self.grace
    }
}

impl<'a> From<&'a DeleteOptions> for DeleteOptionsView<'a> {
    fn from(o: &'a DeleteOptions) -> Self {
        Self {
            propagation: o.propagation.as_deref(),
            grace: o.grace,
        }
    }
}

fn plan_delete_opts(
    info: &ResourceInfo,
    cur: &Value,
    opts: &DeleteOptions,
    now_ms: i64,
) -> DeletePlan {
    plan_delete(info, cur, &DeleteOptionsView::from(opts), now_ms)
}

fn delete_options(q: &Query, body: &Bytes) -> Result<DeleteOptions, ApiError> {
    let b: Value = if body.is_empty() {
        Value::Null
    } else if body.starts_with(crate::protobuf::MAGIC) {
        crate::protobuf::decode(body)
            .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
    };
    let propagation = b["propagationPolicy"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| q.get("propagationPolicy").map(str::to_owned))
        .or_else(|| match b["orphanDependents"].as_bool() {
            Some(true) => Some("Orphan".to_owned()),
            Some(false) => Some("Background".to_owned()),
            None => None,
        });
    if let Some(p) = &propagation
        && !matches!(p.as_str(), "Orphan" | "Foreground" | "Background")
    {
        return Err(ApiError::bad_request(format!(
            "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: {p:?}: supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
        )));
    }
    let grace = b["gracePeriodSeconds"]
        .as_i64()
        .or_else(|| q.get("gracePeriodSeconds").and_then(|s| s.parse().ok()));
    Ok(DeleteOptions {
        propagation,
        grace,
        uid: b["preconditions"]["uid"].as_str().map(str::to_owned),
        rv: b["preconditions"]["resourceVersion"]
            .as_str()
            .map(str::to_owned),
        dry_run: q.get("dryRun").is_some() || b["dryRun"].as_array().is_some_and(|a| !a.is_empty()),
    })
}

/// The `autoscaling/v1 Scale` view of a workload.
fn scale_of(obj: &Value) -> Value {
    let meta = &obj["metadata"];
    let selector = ackemu_kube::labels::format_label_selector(&obj["spec"]["selector"]);
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
                     "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"]},
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(0)},
        "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0),
                   "selector": if selector == "<none>" { String::new() } else { selector }}
    })
}

fn with_scale(obj: &Value, scale: &Value) -> Result<Value, ApiError> {
    let replicas = scale["spec"]["replicas"]
        .as_i64()
        .ok_or_else(|| ApiError::bad_request("scale must set spec.replicas"))?;
    if replicas < 0 {
        return Err(ApiError::invalid(
            "Scale",
            &ackemu_kube::GroupResource::new("autoscaling", "scale"),
            obj["metadata"]["name"].as_str().unwrap_or(""),
            vec![(
                "FieldValueInvalid".into(),
                "spec.replicas".into(),
                format!("Invalid value: {replicas}: must be greater than or equal to 0"),
            )],
        ));
    }
    let mut new = obj.clone();
    if new["spec"]["replicas"].as_i64() != Some(replicas) {
        new["spec"]["replicas"] = json!(replicas);
        new["metadata"]["generation"] =
            json!(new["metadata"]["generation"].as_i64().unwrap_or(0) + 1);
    }
    Ok(new)
}

fn group_json(group: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({"name": group, "versions": vs, "preferredVersion": vs.first().cloned().unwrap_or(Value::Null)})
}

fn resource_list(registry: &Registry, group: &str, version: &str) -> Value {
    let mut resources = Vec::new();
    for r in registry.group_version(group, version) {
        let mut entry = json!({
            "name": r.resource,
            "singularName": r.singular,
            "namespaced": r.namespaced(),
            "kind": r.kind,
            "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        resources.push(entry);
        for s in &r.subresources {
            let mut e = json!({"name": format!("{}/{}", r.resource, s.name), "singularName": "", "namespaced": r.namespaced(), "kind": s.kind.kind, "verbs": s.verbs});
            if s.kind.group != r.group || s.kind.version != r.version {
                e["group"] = json!(s.kind.group);
                e["version"] = json!(s.kind.version);
            }
            resources.push(e);
        }
    }
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": ackemu_kube::registry::api_version(group, version), "resources": resources})
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`: one document per group version.
fn openapi_root(registry: &Registry) -> Value {
    let mut paths = serde_json::Map::new();
    for (g, vs) in registry.groups() {
        for v in vs {
            let p = gv_path(&g, &v);
            paths.insert(
                p.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{p}")}),
            );
        }
    }
    json!({"paths": paths})
}

/// A group version's OpenAPI v3 document: the paths with their verbs,
/// group-version-kind extensions and the `fieldValidation` parameter
/// (which tells kubectl to leave validation to the server), and permissive
/// schemas.
fn openapi_group_version(registry: &Registry, group: &str, version: &str) -> Value {
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    let gvk = |r: &ResourceInfo| json!([{"group": r.group, "version": r.version, "kind": r.kind}]);
    let param = |n: &str| json!({"name": n, "in": "query", "schema": {"type": "string"}, "uniqueItems": true});
    for r in registry.group_version(group, version) {
        let base = format!("/{}", gv_path(group, version));
        let coll = if r.namespaced() {
            format!("{base}/namespaces/{{namespace}}/{}", r.resource)
        } else {
            format!("{base}/{}", r.resource)
        };
        let item = format!("{coll}/{{name}}");
        let ext = gvk(r);
        let op = |action: &str| {
            json!({"x-kubernetes-action": action, "x-kubernetes-group-version-kind": ext[0], "parameters": [param("fieldValidation"), param("dryRun"), param("fieldManager")],
                   "responses": {"200": {"description": "OK"}}})
        };
        paths.insert(coll, json!({"get": op("list"), "post": op("post")}));
        paths.insert(item, json!({"get": op("get"), "put": op("put"), "patch": op("patch"), "delete": op("delete")}));
        let schema_name = format!(
            "io.ackemu.{}.{}.{}",
            if group.is_empty() { "core" } else { group },
            version,
            r.kind
        );
        // No group-version-kind on schemas: kubectl then builds strategic
        // merge patches from its compiled-in types, not from this schema.
        schemas.insert(
            schema_name,
            json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
        );
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.1"},
        "paths": paths,
        "components": {"schemas": schemas}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(p: Option<&'static str>, grace: Option<i64>) -> DeleteOptionsView<'static> {
        DeleteOptionsView {
            propagation: p,
            grace,
        }
    }

    #[test]
    fn delete_plans() {
        let r = Registry::builtin();
        let pods = r.preferred("", "pods").unwrap();
        let deploy = r.preferred("apps", "deployments").unwrap();
        let ns = r.preferred("", "namespaces").unwrap();
        let now = 1_600_000_000_000;
        let unscheduled = json!({"metadata": {"name": "p"}, "spec": {}});
        assert_eq!(
            plan_delete(pods, &unscheduled, &opts(None, None), now),
            DeletePlan::Now
        );
        let scheduled = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 30}, "status": {"phase": "Running"}});
        let DeletePlan::Mark(m) = plan_delete(pods, &scheduled, &opts(None, None), now) else {
            panic!("graceful")
        };
        assert_eq!(m["metadata"]["deletionGracePeriodSeconds"], 30);
        assert_eq!(m["metadata"]["deletionTimestamp"], "2020-09-13T12:27:10Z");
        assert_eq!(
            plan_delete(pods, &scheduled, &opts(None, Some(0)), now),
            DeletePlan::Now
        );
        assert_eq!(
            plan_delete(deploy, &unscheduled, &opts(Some("Background"), None), now),
            DeletePlan::Now
        );
        let DeletePlan::Mark(m) =
            plan_delete(deploy, &unscheduled, &opts(Some("Orphan"), None), now)
        else {
            panic!("orphan")
        };
        assert_eq!(m["metadata"]["finalizers"], json!(["orphan"]));
        let DeletePlan::Mark(m) =
            plan_delete(deploy, &unscheduled, &opts(Some("Foreground"), None), now)
        else {
            panic!("fg")
        };
        assert_eq!(m["metadata"]["finalizers"], json!(["foregroundDeletion"]));
        assert!(!m["metadata"]["deletionTimestamp"].is_null());
        let live_ns = json!({"metadata": {"name": "t"}, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
        let DeletePlan::Mark(m) = plan_delete(ns, &live_ns, &opts(None, None), now) else {
            panic!("ns")
        };
        assert_eq!(m["status"]["phase"], "Terminating");
        let finalized = json!({"metadata": {"name": "t", "deletionTimestamp": "x"}, "spec": {"finalizers": []}});
        assert_eq!(
            plan_delete(ns, &finalized, &opts(None, None), now),
            DeletePlan::Now
        );
        assert!(should_delete_now(ns, &finalized));
        assert!(!should_delete_now(ns, &live_ns));
        let fin_done =
            json!({"metadata": {"name": "d", "deletionTimestamp": "x", "finalizers": []}});
        assert!(should_delete_now(deploy, &fin_done));
    }

    #[test]
    fn query_and_output_parsing() {
        let q = Query::parse("labelSelector=app%3Dweb%2Ctier+in+%28fe%29&watch=1&limit=500");
        assert_eq!(q.get("labelSelector"), Some("app=web,tier in (fe)"));
        assert!(q.flag("watch"));
        assert_eq!(
            output(
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json",
                &q
            ),
            Output::Table(Include::Metadata)
        );
        assert_eq!(output("application/json", &q), Output::Object);
        assert_eq!(percent_decode("a%2"), "a%2");
    }

    #[test]
    fn discovery_documents() {
        let r = Registry::builtin();
        let core = resource_list(&r, "", "v1");
        let names: Vec<&str> = core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["name"].as_str().unwrap())
            .collect();
        assert!(
            names.contains(&"pods")
                && names.contains(&"pods/status")
                && names.contains(&"pods/eviction")
        );
        let eviction = core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == "pods/eviction")
            .unwrap();
        assert_eq!(eviction["group"], "policy");
        let apps = resource_list(&r, "apps", "v1");
        assert_eq!(apps["groupVersion"], "apps/v1");
        let deploy = apps["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == "deployments")
            .unwrap();
        assert_eq!(deploy["shortNames"], json!(["deploy"]));
        let root = openapi_root(&r);
        assert!(root["paths"]["apis/apps/v1"].is_object());
        let doc = openapi_group_version(&r, "apps", "v1");
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
        assert_eq!(patch["parameters"][0]["name"], "fieldValidation");
    }

    #[test]
    fn scale_round_trip() {
        let d = json!({"metadata": {"name": "web", "namespace": "default", "generation": 1}, "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}}, "status": {"replicas": 1}});
        let s = scale_of(&d);
        assert_eq!(s["status"]["selector"], "app=web");
        let mut s2 = s.clone();
        s2["spec"]["replicas"] = json!(3);
        let d2 = with_scale(&d, &s2).unwrap();
        assert_eq!(d2["spec"]["replicas"], 3);
        assert_eq!(d2["metadata"]["generation"], 2);
        s2["spec"]["replicas"] = json!(-1);
        assert_eq!(with_scale(&d, &s2).unwrap_err().code, 422);
    }
}
