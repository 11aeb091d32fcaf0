//! Requests the API server passes on to a node's kubelet, after the same
//! pipeline as every other request (authentication, audit, impersonation,
//! RBAC on `pods/log`, `pods/exec`, `pods/attach`, `pods/portforward`,
//! `nodes/proxy`):
//!
//! - `pods/log` → `GET /containerLogs/{ns}/{pod}/{container}`, the body
//!   streamed back as it arrives (`-f`);
//! - `pods/exec`, `pods/attach`, `pods/portforward` → `/exec/…`,
//!   `/attach/…`, `/portForward/…` through an upgrade-aware proxy: the
//!   client's `Connection: Upgrade` request (WebSocket `v5.channel.k8s.io`
//!   …, or SPDY) is forwarded, and on the kubelet's `101 Switching
//!   Protocols` both connections are upgraded and bytes copied both ways;
//!   any other answer is relayed as it is;
//! - `nodes/{name}/proxy/{path}` → the kubelet's `{path}` (upgrades too).
//!
//! Failures read as kube-apiserver's: `Get "<url>": dial tcp …` for logs,
//! `error dialing backend: …` for upgrades, `error trying to reach
//! service: …` (503) for the node proxy.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;

use super::{Api, Body, ReqBody, error_response};
use crate::kubelet::{self, Conn, Kubelets, Location, LogOptions, Params, Stream};
use crate::reqinfo::RequestInfo;
use crate::status::ApiError;

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Request headers the API server consumed (credentials, impersonation).
fn consumed(name: &str) -> bool {
    name == "authorization" || name == "host" || name.starts_with("impersonate-")
}

/// Whether a request asks for a protocol upgrade (`httpstream.IsUpgradeRequest`).
pub(crate) fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers.get_all(header::CONNECTION).iter().any(|v| {
            v.to_str()
                .unwrap_or("")
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
}

/// A Go error that is not an API status: 500, no reason, its text.
fn unknown(message: String) -> ApiError {
    ApiError::with_reason(500, "", message)
}

/// A response body that streams `incoming` and ends at its first error.
fn stream_body(incoming: Incoming) -> Body {
    use futures::StreamExt as _;
    let s = incoming
        .into_data_stream()
        .take_while(|r| futures::future::ready(r.is_ok()))
        .filter_map(|r| {
            futures::future::ready(
                r.ok()
                    .map(|b| Ok::<_, std::convert::Infallible>(Frame::data(b))),
            )
        });
    BodyExt::boxed(StreamBody::new(s))
}

fn empty_body() -> Body {
    Full::new(Bytes::new()).boxed()
}

/// hyper's errors in Go's words where they differ (`EOF`).
fn send_error(e: &hyper::Error) -> String {
    if e.is_incomplete_message() || e.is_closed() {
        "EOF".to_owned()
    } else {
        e.to_string()
    }
}

impl Api {
    /// Installs the kubelet client.
    pub fn set_kubelets(&self, k: Kubelets) {
        *self.kubelets.write() = Some(Arc::new(k));
    }

    fn kubelet_client(&self) -> Result<Arc<Kubelets>, ApiError> {
        self.kubelets
            .read()
            .clone()
            .ok_or_else(|| ApiError::internal("no kubelet client is configured"))
    }

    /// Whether a request is one of the subresources served by a kubelet.
    pub(super) fn is_connect(ri: &RequestInfo) -> bool {
        ri.resource_request
            && ri.api_group.is_empty()
            && ri.api_version == "v1"
            && matches!(
                (ri.resource.as_str(), ri.subresource.as_str()),
                ("pods", "log" | "exec" | "attach" | "portforward") | ("nodes", "proxy")
            )
    }

    /// Serves an authorized connect request.
    pub(super) async fn connect<B: ReqBody>(
        self: &Arc<Self>,
        parts: http::request::Parts,
        body: B,
        ri: &RequestInfo,
        query: &str,
    ) -> Response<Body> {
        let params = Params::parse(query);
        let r = match (ri.resource.as_str(), ri.subresource.as_str()) {
            ("pods", "log") => self.pod_log(&parts.method, ri, &params).await,
            ("nodes", "proxy") => self.node_proxy(parts, body, ri, query).await,
            (_, sub) => match Stream::from_subresource(sub) {
                Some(kind) => self.pod_stream(parts, ri, &params, kind).await,
                None => Err(ApiError::not_found_path()),
            },
        };
        r.unwrap_or_else(|e| error_response(&e))
    }

    async fn pod_and_node(
        &self,
        ri: &RequestInfo,
    ) -> Result<(serde_json::Value, Option<serde_json::Value>), ApiError> {
        let pods = self
            .info_by_gr("", "pods")
            .ok_or_else(ApiError::not_found_path)?;
        let pod = self.storage.get(&pods, &ri.namespace, &ri.name).await?.obj;
        let node_name = pod["spec"]["nodeName"].as_str().unwrap_or("").to_owned();
        if node_name.is_empty() {
            return Ok((pod, None));
        }
        let nodes = self
            .info_by_gr("", "nodes")
            .ok_or_else(ApiError::not_found_path)?;
        let node = self.storage.get(&nodes, "", &node_name).await?.obj;
        Ok((pod, Some(node)))
    }

    /// `GET pods/{name}/log`.
    async fn pod_log(
        &self,
        method: &Method,
        ri: &RequestInfo,
        params: &Params,
    ) -> Result<Response<Body>, ApiError> {
        if method != Method::GET {
            return Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            ));
        }
        let opts = LogOptions::parse(params, &ri.name)?;
        let (pod, node) = self.pod_and_node(ri).await?;
        let container = kubelet::validate_container(&pod, &opts.container)?;
        let text = |b: Body| {
            Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "text/plain")
                .body(b)
                .unwrap_or_else(|_| Response::new(empty_body()))
        };
        // A pod not assigned to a node has no logs yet: an empty stream.
        let Some(node) = node else {
            return Ok(text(empty_body()));
        };
        let kubelets = self.kubelet_client()?;
        let path = format!("/containerLogs/{}/{}/{container}", ri.namespace, ri.name);
        let loc = kubelets
            .node_location(&node, path, opts.kubelet_query())
            .map_err(unknown)?;
        let url = loc.url();
        let get = |why: String| unknown(format!("Get {url:?}: {why}"));
        let conn = kubelets
            .connect(
                &loc,
                opts.insecure_skip_tls_verify_backend,
                true,
                &self.clock,
            )
            .await
            .map_err(get)?;
        let req = http::Request::get(loc.path_and_query())
            .header(header::HOST, loc.host_port())
            .header(header::USER_AGENT, "kube-apiserver")
            .body(Empty::<Bytes>::new())
            .map_err(|e| get(e.to_string()))?;
        let resp = self
            .send(
                conn,
                req,
                false,
                &format!("kubelet-logs {}/{}", ri.namespace, ri.name),
            )
            .await
            .map_err(get)?;
        let code = resp.status().as_u16();
        if !(200..=206).contains(&code) {
            let body = http_body_util::Limited::new(resp.into_body(), 50_000)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            kubelet::check_response(code, &String::from_utf8_lossy(&body), "pods/log", &ri.name)?;
            return Ok(text(empty_body()));
        }
        Ok(text(stream_body(resp.into_body())))
    }

    /// `pods/{name}/exec`, `attach`, `portforward`: upgrade-aware proxy.
    async fn pod_stream(
        &self,
        parts: http::request::Parts,
        ri: &RequestInfo,
        params: &Params,
        kind: Stream,
    ) -> Result<Response<Body>, ApiError> {
        if parts.method != Method::GET && parts.method != Method::POST {
            return Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            ));
        }
        let (pod, node) = self.pod_and_node(ri).await?;
        let container = match kind {
            Stream::PortForward => String::new(),
            _ => kubelet::validate_container(&pod, params.get("container").unwrap_or(""))?,
        };
        let Some(node) = node else {
            return Err(ApiError::bad_request(format!(
                "pod {} does not have a host assigned",
                ri.name
            )));
        };
        if !is_upgrade(&parts.headers) {
            return Err(ApiError::bad_request("Upgrade request required"));
        }
        let kubelets = self.kubelet_client()?;
        let loc = kubelets
            .node_location(
                &node,
                kind.kubelet_path(&ri.namespace, &ri.name, &container),
                kind.kubelet_query(params)?,
            )
            .map_err(unknown)?;
        let name = format!("kubelet-stream {}/{}", ri.namespace, ri.name);
        self.upgrade_proxy(parts, &kubelets, &loc, true, &name)
            .await
    }

    /// `nodes/{name}/proxy/{path}`.
    async fn node_proxy<B: ReqBody>(
        &self,
        parts: http::request::Parts,
        body: B,
        ri: &RequestInfo,
        query: &str,
    ) -> Result<Response<Body>, ApiError> {
        let (scheme_req, name, port_req) = kubelet::split_scheme_name_port(&ri.name)
            .ok_or_else(|| ApiError::bad_request(format!("invalid node request {:?}", ri.name)))?;
        let nodes = self
            .info_by_gr("", "nodes")
            .ok_or_else(ApiError::not_found_path)?;
        let node = self.storage.get(&nodes, "", &name).await?.obj;
        let kubelets = self.kubelet_client()?;
        let prefix = format!("/api/v1/nodes/{}/proxy", ri.name);
        let rest = ri.path.strip_prefix(&prefix).unwrap_or("");
        let path = if rest.is_empty() {
            "/".to_owned()
        } else {
            rest.to_owned()
        };
        let mut loc = kubelets
            .node_location(&node, path, query.to_owned())
            .map_err(unknown)?;
        // The kubelet port goes with the kubelet credentials; another port
        // is a plain proxy (http unless asked for https).
        let mut credentials = true;
        if !port_req.is_empty() && port_req != loc.port.to_string() {
            loc.port = port_req.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid node request {:?}", ri.name))
            })?;
            loc.scheme = if scheme_req.is_empty() {
                "http".to_owned()
            } else {
                scheme_req
            };
            credentials = false;
        }
        let name = format!("node-proxy {name}");
        if is_upgrade(&parts.headers) {
            return self
                .upgrade_proxy(parts, &kubelets, &loc, credentials, &name)
                .await;
        }
        let reach = |why: String| {
            ApiError::with_reason(
                503,
                "ServiceUnavailable",
                format!("error trying to reach service: {why}"),
            )
        };
        let conn = kubelets
            .connect(&loc, false, credentials, &self.clock)
            .await
            .map_err(reach)?;
        let mut req = http::Request::builder()
            .method(parts.method.clone())
            .uri(loc.path_and_query())
            .header(header::HOST, loc.host_port());
        for (k, v) in &parts.headers {
            let n = k.as_str();
            if !HOP_BY_HOP.contains(&n) && !consumed(n) {
                req = req.header(k, v);
            }
        }
        let req = req.body(body).map_err(|e| reach(e.to_string()))?;
        let resp = self.send(conn, req, false, &name).await.map_err(reach)?;
        Ok(relay(resp))
    }

    /// Sends one request on a fresh kubelet connection, driving the
    /// connection in a task (with upgrades when asked).
    async fn send<B>(
        &self,
        conn: Box<dyn Conn>,
        req: http::Request<B>,
        upgrades: bool,
        name: &str,
    ) -> Result<Response<Incoming>, String>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(conn))
            .await
            .map_err(|e| send_error(&e))?;
        let token = self.tasks.token();
        self.tasks.spawn(format!("{name} conn"), async move {
            if upgrades {
                let c = connection.with_upgrades();
                tokio::select! { _ = c => {}, () = token.cancelled() => {} }
            } else {
                tokio::select! { _ = connection => {}, () = token.cancelled() => {} }
            }
        });
        sender.send_request(req).await.map_err(|e| send_error(&e))
    }

    /// Forwards an upgrade request; on `101` splices the two connections.
    async fn upgrade_proxy(
        &self,
        mut parts: http::request::Parts,
        kubelets: &Kubelets,
        loc: &Location,
        credentials: bool,
        name: &str,
    ) -> Result<Response<Body>, ApiError> {
        let Some(client_upgrade) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() else {
            return Err(ApiError::bad_request("Upgrade request required"));
        };
        let conn = kubelets
            .connect(loc, false, credentials, &self.clock)
            .await
            .map_err(|e| unknown(format!("error dialing backend: {e}")))?;
        let mut req = http::Request::builder()
            .method(parts.method.clone())
            .uri(loc.path_and_query())
            .header(header::HOST, loc.host_port());
        for (k, v) in &parts.headers {
            let n = k.as_str();
            if !consumed(n) && n != "content-length" && n != "transfer-encoding" {
                req = req.header(k, v);
            }
        }
        let req = req
            .body(Empty::<Bytes>::new())
            .map_err(|e| unknown(format!("error sending request: {e}")))?;
        let resp = self
            .send(conn, req, true, name)
            .await
            .map_err(|e| unknown(format!("error sending request: {e}")))?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Ok(relay(resp));
        }
        let mut out = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
        for (k, v) in resp.headers() {
            out = out.header(k, v);
        }
        let backend_upgrade = hyper::upgrade::on(resp);
        let token = self.tasks.token();
        let what = name.to_owned();
        self.tasks.spawn(what.clone(), async move {
            let (client, backend) = match tokio::join!(client_upgrade, backend_upgrade) {
                (Ok(c), Ok(b)) => (c, b),
                (c, b) => {
                    tracing::info!(
                        "{what}: upgrade failed (client: {:?}, kubelet: {:?})",
                        c.err(),
                        b.err()
                    );
                    return;
                }
            };
            let mut client = TokioIo::new(client);
            let mut backend = TokioIo::new(backend);
            tokio::select! {
                r = tokio::io::copy_bidirectional(&mut client, &mut backend) => {
                    if let Err(e) = r {
                        tracing::debug!("{what}: {e}");
                    }
                }
                () = token.cancelled() => {}
            }
        });
        Ok(out
            .body(empty_body())
            .unwrap_or_else(|_| Response::new(empty_body())))
    }
}

/// A backend response passed back as it is (status, end-to-end headers,
/// streamed body).
fn relay(resp: Response<Incoming>) -> Response<Body> {
    let (parts, body) = resp.into_parts();
    let mut out = Response::builder().status(parts.status);
    for (k, v) in &parts.headers {
        if !HOP_BY_HOP.contains(&k.as_str()) {
            out = out.header(k, v);
        }
    }
    out.body(stream_body(body))
        .unwrap_or_else(|_| Response::new(empty_body()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrade_requests_are_recognized() {
        let mut h = HeaderMap::new();
        assert!(!is_upgrade(&h));
        h.insert(header::CONNECTION, "keep-alive, Upgrade".parse().unwrap());
        assert!(!is_upgrade(&h), "an Upgrade header is needed too");
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        assert!(is_upgrade(&h));
        assert!(consumed("authorization") && consumed("impersonate-user") && !consumed("accept"));
    }
}
