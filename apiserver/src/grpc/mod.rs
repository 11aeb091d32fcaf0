//! The internal gRPC `ResourceService` (`ackemu.apiserver.v1`): a second
//! codec on the one request pipeline. Each call is turned into the REST
//! request it stands for (method, path, query, JSON body, impersonation
//! headers) and handed to [`Api::handle`], so authentication, audit,
//! impersonation, max-in-flight, RBAC and the Node authorizer, admission and
//! storage are the very code REST clients go through; the JSON answer is
//! decoded into typed metadata plus the object bytes. [`status_of`] is the
//! single error→`Status` table; the Kubernetes `Status` travels as JSON in
//! the gRPC status details.

use std::pin::Pin;
use std::sync::Arc;

use ackemu_proto::ackemu::apiserver::v1 as pb;
use bytes::Bytes;
use futures::Stream;
use http_body_util::{BodyExt as _, Full};
use serde_json::{Value, json};
use tonic::{Request, Response, Status};

use crate::api::{Api, Body};
use crate::kubelet::query_escape;
use crate::rbac::UserInfo;

pub use pb::resource_service_server::ResourceServiceServer;

/// The gRPC code for a Kubernetes error (HTTP code and `reason`).
pub fn code_of(http: u16, reason: &str) -> tonic::Code {
    use tonic::Code as C;
    match http {
        400 | 406 | 415 | 422 => C::InvalidArgument,
        401 => C::Unauthenticated,
        403 => C::PermissionDenied,
        404 => C::NotFound,
        405 => C::Unimplemented,
        409 if reason == "AlreadyExists" => C::AlreadyExists,
        409 => C::Aborted,
        410 => C::OutOfRange,
        413 | 429 => C::ResourceExhausted,
        500 => C::Internal,
        503 => C::Unavailable,
        504 => C::DeadlineExceeded,
        _ => C::Unknown,
    }
}

/// A non-2xx REST answer as a gRPC status: the Kubernetes message, the
/// `Status` JSON in the details, `retry-after` in the metadata.
pub fn status_of(http: u16, body: &[u8], retry_after: Option<&str>) -> Status {
    let v: Value = serde_json::from_slice(body).unwrap_or_else(|_| {
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": http,
               "message": String::from_utf8_lossy(body).trim_end()})
    });
    let reason = v["reason"].as_str().unwrap_or("");
    let message = v["message"].as_str().unwrap_or("").to_owned();
    let mut s = Status::with_details(code_of(http, reason), message, Bytes::from(v.to_string()));
    if let Some(r) = retry_after.and_then(|r| r.parse().ok()) {
        s.metadata_mut().insert("retry-after", r);
    }
    s
}

/// The Kubernetes `Status` carried by a gRPC error, if any.
pub fn kubernetes_status(s: &Status) -> Option<Value> {
    serde_json::from_slice(s.details()).ok()
}

fn meta_of(v: &Value) -> pb::TypedMeta {
    let m = &v["metadata"];
    let s = |x: &Value| x.as_str().unwrap_or("").to_owned();
    pb::TypedMeta {
        api_version: s(&v["apiVersion"]),
        kind: s(&v["kind"]),
        namespace: s(&m["namespace"]),
        name: s(&m["name"]),
        resource_version: s(&m["resourceVersion"]),
        uid: s(&m["uid"]),
        generation: m["generation"].as_i64().unwrap_or(0),
    }
}

fn object_of(v: &Value) -> pb::Object {
    pb::Object {
        meta: Some(meta_of(v)),
        json: serde_json::to_vec(v).unwrap_or_default(),
    }
}

/// The REST path of a reference.
pub fn path_of(r: &pb::ResourceRef) -> Result<String, Status> {
    let seg = |what: &str, s: &str| {
        if s.is_empty() || s.contains('/') || s == "." || s == ".." {
            Err(Status::invalid_argument(format!(
                "invalid {what} {s:?} in resource reference"
            )))
        } else {
            Ok(s.to_owned())
        }
    };
    let mut p = if r.group.is_empty() {
        format!("/api/{}", seg("version", &r.version)?)
    } else {
        format!(
            "/apis/{}/{}",
            seg("group", &r.group)?,
            seg("version", &r.version)?
        )
    };
    if !r.namespace.is_empty() {
        p.push_str(&format!("/namespaces/{}", seg("namespace", &r.namespace)?));
    }
    p.push_str(&format!("/{}", seg("resource", &r.resource)?));
    if !r.name.is_empty() {
        p.push_str(&format!("/{}", seg("name", &r.name)?));
    }
    if !r.subresource.is_empty() {
        if r.name.is_empty() {
            return Err(Status::invalid_argument(
                "a subresource needs a name in the resource reference",
            ));
        }
        p.push_str(&format!("/{}", seg("subresource", &r.subresource)?));
    }
    Ok(p)
}

fn query(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", query_escape(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn flag(b: bool) -> String {
    if b { "true".into() } else { String::new() }
}

fn reference(r: Option<pb::ResourceRef>) -> Result<pb::ResourceRef, Status> {
    r.ok_or_else(|| Status::invalid_argument("missing resource reference"))
}

/// The service.
pub struct ResourceGrpc {
    api: Arc<Api>,
}

impl ResourceGrpc {
    pub fn new(api: Arc<Api>) -> Self {
        Self { api }
    }

    /// Authentication: the verified client certificate, else a bearer
    /// token (service account or bootstrap), else anonymous — as REST.
    async fn user<T>(&self, req: &Request<T>) -> Result<UserInfo, Status> {
        if let Some(u) = req
            .peer_certs()
            .and_then(|c| c.first().cloned())
            .and_then(|c| crate::server::user_from_cert(c.as_ref()))
        {
            return Ok(u);
        }
        match req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
        {
            Some(auth) => {
                let token = auth
                    .strip_prefix("Bearer ")
                    .map(str::trim)
                    .ok_or_else(|| Status::unauthenticated("Unauthorized"))?;
                self.api
                    .authenticate_bearer(token)
                    .await
                    .map_err(|e| status_of(e.code, e.to_status().to_string().as_bytes(), None))
            }
            None => Ok(UserInfo::anonymous()),
        }
    }

    /// Runs the REST equivalent through the pipeline.
    async fn call<T>(
        &self,
        req: &Request<T>,
        method: &str,
        path: &str,
        query: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<http::Response<Body>, Status> {
        let user = self.user(req).await?;
        let uri = if query.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{query}")
        };
        let mut b = http::Request::builder()
            .method(method)
            .uri(uri)
            .header(http::header::ACCEPT, "application/json");
        if !content_type.is_empty() {
            b = b.header(http::header::CONTENT_TYPE, content_type);
        }
        for (k, v) in req.metadata().iter().filter_map(|kv| match kv {
            tonic::metadata::KeyAndValueRef::Ascii(k, v) => Some((k, v)),
            tonic::metadata::KeyAndValueRef::Binary(..) => None,
        }) {
            let k = k.as_str();
            if (k.starts_with("impersonate-") || k == "user-agent")
                && let Ok(v) = v.to_str()
            {
                b = b.header(k, v);
            }
        }
        let http_req = b
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(self.api.handle(http_req, user).await)
    }

    /// A complete JSON answer, or its error.
    async fn json(resp: http::Response<Body>) -> Result<(u16, Value), Status> {
        let code = resp.status().as_u16();
        let retry = resp
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if !(200..300).contains(&code) {
            return Err(status_of(code, &body, retry.as_deref()));
        }
        let v = serde_json::from_slice(&body)
            .map_err(|e| Status::internal(format!("decoding the api server's answer: {e}")))?;
        Ok((code, v))
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchEvent, Status>> + Send>>;

/// Newline-delimited watch events from a streaming body.
fn watch_events(body: Body) -> WatchStream {
    Box::pin(futures::stream::unfold(
        (body, Vec::<u8>::new(), false),
        |(mut body, mut buf, done)| async move {
            loop {
                if let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    let item = serde_json::from_slice::<Value>(&line)
                        .map(|ev| pb::WatchEvent {
                            r#type: ev["type"].as_str().unwrap_or("").to_owned(),
                            object: Some(object_of(&ev["object"])),
                        })
                        .map_err(|e| Status::internal(format!("decoding a watch event: {e}")));
                    return Some((item, (body, buf, done)));
                }
                if done {
                    return None;
                }
                match body.frame().await {
                    Some(Ok(f)) => {
                        if let Some(d) = f.data_ref() {
                            buf.extend_from_slice(d);
                        }
                    }
                    Some(Err(never)) => match never {},
                    None => {
                        if buf.is_empty() {
                            return None;
                        }
                        buf.push(b'\n');
                        return Some((
                            Err(Status::internal("watch stream ended inside an event")),
                            (body, Vec::new(), true),
                        ));
                    }
                }
            }
        },
    ))
}

#[tonic::async_trait]
impl pb::resource_service_server::ResourceService for ResourceGrpc {
    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::Object>, Status> {
        let r = reference(req.get_ref().r#ref.clone())?;
        let q = query(&[("resourceVersion", req.get_ref().resource_version.clone())]);
        let resp = self
            .call(&req, "GET", &path_of(&r)?, &q, "", Vec::new())
            .await?;
        let (_, v) = Self::json(resp).await?;
        Ok(Response::new(object_of(&v)))
    }

    async fn list(
        &self,
        req: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let m = req.get_ref();
        let r = reference(m.r#ref.clone())?;
        if !r.name.is_empty() {
            return Err(Status::invalid_argument("a list names no object"));
        }
        let q = query(&[
            ("labelSelector", m.label_selector.clone()),
            ("fieldSelector", m.field_selector.clone()),
            (
                "limit",
                if m.limit > 0 {
                    m.limit.to_string()
                } else {
                    String::new()
                },
            ),
            ("continue", m.continue_token.clone()),
            ("resourceVersion", m.resource_version.clone()),
        ]);
        let resp = self
            .call(&req, "GET", &path_of(&r)?, &q, "", Vec::new())
            .await?;
        let (_, v) = Self::json(resp).await?;
        let api_version = v["apiVersion"].as_str().unwrap_or("").to_owned();
        let kind = v["kind"].as_str().unwrap_or("").to_owned();
        let item_kind = kind.strip_suffix("List").unwrap_or(&kind).to_owned();
        let items = v["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|item| {
                let mut item = item.clone();
                if item["apiVersion"].is_null() {
                    item["apiVersion"] = json!(api_version);
                }
                if item["kind"].is_null() {
                    item["kind"] = json!(item_kind);
                }
                object_of(&item)
            })
            .collect();
        Ok(Response::new(pb::ListResponse {
            api_version,
            kind,
            resource_version: v["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
            continue_token: v["metadata"]["continue"].as_str().unwrap_or("").to_owned(),
            items,
        }))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        req: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let m = req.get_ref();
        let r = reference(m.r#ref.clone())?;
        if !r.name.is_empty() {
            return Err(Status::invalid_argument(
                "watch a single object with a field selector on metadata.name",
            ));
        }
        let q = query(&[
            ("watch", "true".into()),
            ("labelSelector", m.label_selector.clone()),
            ("fieldSelector", m.field_selector.clone()),
            ("resourceVersion", m.resource_version.clone()),
            ("allowWatchBookmarks", flag(m.allow_watch_bookmarks)),
            (
                "timeoutSeconds",
                if m.timeout_seconds > 0 {
                    m.timeout_seconds.to_string()
                } else {
                    String::new()
                },
            ),
        ]);
        let resp = self
            .call(&req, "GET", &path_of(&r)?, &q, "", Vec::new())
            .await?;
        let code = resp.status().as_u16();
        if code != 200 {
            Self::json(resp).await?;
            return Err(Status::internal(format!("watch answered {code}")));
        }
        Ok(Response::new(watch_events(resp.into_body())))
    }

    async fn create(
        &self,
        req: Request<pb::CreateRequest>,
    ) -> Result<Response<pb::Object>, Status> {
        let m = req.get_ref();
        let r = reference(m.r#ref.clone())?;
        let q = query(&[
            (
                "dryRun",
                if m.dry_run {
                    "All".into()
                } else {
                    String::new()
                },
            ),
            ("fieldManager", m.field_manager.clone()),
        ]);
        let body = m.json.clone();
        let resp = self
            .call(&req, "POST", &path_of(&r)?, &q, "application/json", body)
            .await?;
        let (_, v) = Self::json(resp).await?;
        Ok(Response::new(object_of(&v)))
    }

    async fn update(
        &self,
        req: Request<pb::UpdateRequest>,
    ) -> Result<Response<pb::Object>, Status> {
        let m = req.get_ref();
        let r = reference(m.r#ref.clone())?;
        let q = query(&[
            (
                "dryRun",
                if m.dry_run {
                    "All".into()
                } else {
                    String::new()
                },
            ),
            ("fieldManager", m.field_manager.clone()),
        ]);
        let body = m.json.clone();
        let resp = self
            .call(&req, "PUT", &path_of(&r)?, &q, "application/json", body)
            .await?;
        let (_, v) = Self::json(resp).await?;
        Ok(Response::new(object_of(&v)))
    }

    async fn patch(&self, req: Request<pb::PatchRequest>) -> Result<Response<pb::Object>, Status> {
        let m = req.get_ref();
        let r = reference(m.r#ref.clone())?;
        let content_type = match m.patch_type.as_str() {
            "json" => "application/json-patch+json",
            "merge" | "" => "application/merge-patch+json",
            "strategic" => "application/strategic-merge-patch+json",
            "apply" => "application/apply-patch+yaml",
            other => {
                return Err(Status::invalid_argument(format!(
                    "unknown patch type {other:?}: expected json, merge, strategic or apply"
                )));
            }
        };
        let q = query(&[
            (
                "dryRun",
                if m.dry_run {
                    "All".into()
                } else {
                    String::new()
                },
            ),
            ("fieldManager", m.field_manager.clone()),
            ("force", flag(m.force)),
        ]);
        let body = m.patch.clone();
        let resp = self
            .call(&req, "PATCH", &path_of(&r)?, &q, content_type, body)
            .await?;
        let (_, v) = Self::json(resp).await?;
        Ok(Response::new(object_of(&v)))
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let m = req.get_ref();
        let r = reference(m.r#ref.clone())?;
        if r.name.is_empty() {
            return Err(Status::invalid_argument("a delete names one object"));
        }
        let q = query(&[(
            "dryRun",
            if m.dry_run {
                "All".into()
            } else {
                String::new()
            },
        )]);
        let body = m.options.clone();
        let ct = if body.is_empty() {
            ""
        } else {
            "application/json"
        };
        let resp = self
            .call(&req, "DELETE", &path_of(&r)?, &q, ct, body)
            .await?;
        let (code, v) = Self::json(resp).await?;
        Ok(Response::new(pb::DeleteResponse {
            object: Some(object_of(&v)),
            code: i32::from(code),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_codes() {
        let r = |g: &str, v: &str, res: &str, ns: &str, name: &str, sub: &str| pb::ResourceRef {
            group: g.into(),
            version: v.into(),
            resource: res.into(),
            namespace: ns.into(),
            name: name.into(),
            subresource: sub.into(),
        };
        assert_eq!(
            path_of(&r("", "v1", "pods", "default", "web", "status")).unwrap(),
            "/api/v1/namespaces/default/pods/web/status"
        );
        assert_eq!(
            path_of(&r("apps", "v1", "deployments", "", "", "")).unwrap(),
            "/apis/apps/v1/deployments"
        );
        assert_eq!(
            path_of(&r("", "v1", "nodes", "", "n1", "")).unwrap(),
            "/api/v1/nodes/n1"
        );
        assert!(path_of(&r("", "v1", "pods", "default", "../x", "")).is_err());
        assert!(path_of(&r("", "v1", "pods", "default", "", "status")).is_err());
        assert_eq!(code_of(409, "Conflict"), tonic::Code::Aborted);
        assert_eq!(code_of(409, "AlreadyExists"), tonic::Code::AlreadyExists);
        assert_eq!(code_of(410, "Expired"), tonic::Code::OutOfRange);
        let s = status_of(
            403,
            br#"{"kind":"Status","code":403,"reason":"Forbidden","message":"no"}"#,
            None,
        );
        assert_eq!(s.code(), tonic::Code::PermissionDenied);
        assert_eq!(s.message(), "no");
        assert_eq!(kubernetes_status(&s).unwrap()["reason"], "Forbidden");
        let s = status_of(429, b"{}", Some("1"));
        assert_eq!(s.metadata().get("retry-after").unwrap(), "1");
    }
}
