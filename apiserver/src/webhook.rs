//! Dynamic admission: calling mutating and validating webhooks
//! (admissionregistration.k8s.io/v1) over HTTPS with `admission.k8s.io/v1`
//! AdmissionReview. The server certificate is checked against the
//! webhook's `caBundle` at *cluster* time, so an expired webhook
//! certificate fails the way it does in Kubernetes (S08). Services are
//! resolved to a ready endpoint address, so the call leaves the API
//! server's own network namespace.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ackemu_base::clock::Clock;
use ackemu_base::tasks::Tasks;
use ackemu_kube::{LabelSelector, ResourceInfo};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use crate::rbac::UserInfo;

/// What is being admitted.
pub struct Request<'a> {
    pub info: &'a ResourceInfo,
    pub subresource: &'a str,
    /// CREATE, UPDATE, DELETE, CONNECT.
    pub operation: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub object: Option<&'a Value>,
    pub old_object: Option<&'a Value>,
    pub user: &'a UserInfo,
    pub dry_run: bool,
}

fn has(list: &Value, want: &str) -> bool {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .any(|s| s == "*" || s == want)
}

fn resource_matches(rule_resources: &Value, resource: &str, sub: &str) -> bool {
    rule_resources
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .any(|r| {
            let (rr, rs) = r.split_once('/').unwrap_or((r, ""));
            (rr == "*" || rr == resource)
                && (rs == sub || rs == "*" && !sub.is_empty() || (r == "*" && sub.is_empty()))
        })
}

/// Whether a webhook's rules and selectors select the request.
/// `ns_labels` are the labels of the request's namespace (for namespaced
/// objects) or of the namespace object itself.
pub fn matches(webhook: &Value, req: &Request<'_>, ns_labels: Option<&Value>) -> bool {
    let scope = if req.info.namespaced() {
        "Namespaced"
    } else {
        "Cluster"
    };
    let rule_ok = webhook["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|rule| {
            has(&rule["operations"], req.operation)
                && has(&rule["apiGroups"], &req.info.group)
                && has(&rule["apiVersions"], &req.info.version)
                && resource_matches(&rule["resources"], &req.info.resource, req.subresource)
                && rule["scope"]
                    .as_str()
                    .is_none_or(|s| s == "*" || s == scope)
        });
    if !rule_ok {
        return false;
    }
    let selects = |sel: &Value, labels: Option<&Value>| -> bool {
        if sel.is_null() {
            return true;
        }
        let Ok(s) = LabelSelector::from_meta_json(sel) else {
            return false;
        };
        let empty = serde_json::Map::new();
        s.matches(labels.and_then(Value::as_object).unwrap_or(&empty))
    };
    let obj_labels = req
        .object
        .or(req.old_object)
        .map(|o| &o["metadata"]["labels"]);
    let ns_applies =
        req.info.namespaced() || (req.info.group.is_empty() && req.info.resource == "namespaces");
    (!ns_applies || selects(&webhook["namespaceSelector"], ns_labels))
        && selects(&webhook["objectSelector"], obj_labels)
}

/// The AdmissionReview sent to a webhook.
pub fn review(req: &Request<'_>, uid: &str) -> Value {
    let gvk = json!({"group": req.info.group, "version": req.info.version, "kind": req.info.kind});
    let gvr = json!({"group": req.info.group, "version": req.info.version, "resource": req.info.resource});
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
            "subResource": req.subresource,
            "name": req.name,
            "namespace": req.namespace,
            "operation": req.operation,
            "userInfo": {"username": req.user.name, "groups": req.user.groups},
            "object": req.object.cloned().unwrap_or(Value::Null),
            "oldObject": req.old_object.cloned().unwrap_or(Value::Null),
            "dryRun": req.dry_run,
        }
    })
}

/// The outcome of a webhook's answer.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    Allowed {
        patch: Option<Value>,
    },
    /// HTTP code and message (`admission webhook "x" denied the request: ...`).
    Denied {
        code: u16,
        message: String,
    },
}

/// Interprets a webhook's AdmissionReview response.
pub fn verdict(name: &str, uid: &str, resp: &Value) -> Result<Verdict, String> {
    let r = &resp["response"];
    if r["uid"].as_str() != Some(uid) {
        return Err(format!(
            "expected response.uid={uid:?}, got {:?}",
            r["uid"].as_str().unwrap_or("")
        ));
    }
    if r["allowed"].as_bool() == Some(true) {
        let patch = match r["patch"].as_str() {
            Some(p) => {
                if r["patchType"].as_str().is_some_and(|t| t != "JSONPatch") {
                    return Err(format!("unsupported patch type {:?}", r["patchType"]));
                }
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(p)
                    .map_err(|e| format!("invalid patch: {e}"))?;
                Some(serde_json::from_slice(&raw).map_err(|e| format!("invalid patch: {e}"))?)
            }
            None => None,
        };
        return Ok(Verdict::Allowed { patch });
    }
    let code = r["status"]["code"]
        .as_u64()
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| *c >= 400)
        .unwrap_or(400);
    let msg = r["status"]["message"].as_str().unwrap_or("");
    let message = if msg.is_empty() {
        format!("admission webhook {name:?} denied the request without explanation")
    } else {
        format!("admission webhook {name:?} denied the request: {msg}")
    };
    Ok(Verdict::Denied { code, message })
}

/// Where and how to call a webhook.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL as Kubernetes prints it in errors.
    pub url: String,
    /// The address actually dialed.
    pub addr: SocketAddr,
    /// TLS server name.
    pub server_name: String,
    pub ca_pem: String,
    pub timeout: Duration,
}

/// Kubernetes' `Post "<url>": <reason>` wording for rustls and IO errors.
pub fn describe_error(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return describe_tls(tls);
        }
        cur = err.source();
    }
    e.to_string()
}

fn go_time(t: rustls::pki_types::UnixTime) -> String {
    jiff::Timestamp::from_second(t.as_secs() as i64)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn describe_tls(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => {
            let why = match c {
                C::ExpiredContext { time, not_after } => format!(
                    "x509: certificate has expired or is not yet valid: current time {} is after {}",
                    go_time(*time),
                    go_time(*not_after)
                ),
                C::NotValidYetContext { time, not_before } => format!(
                    "x509: certificate has expired or is not yet valid: current time {} is before {}",
                    go_time(*time),
                    go_time(*not_before)
                ),
                C::Expired | C::NotValidYet => {
                    "x509: certificate has expired or is not yet valid".to_owned()
                }
                C::UnknownIssuer | C::BadSignature => {
                    "x509: certificate signed by unknown authority".to_owned()
                }
                C::NotValidForName | C::NotValidForNameContext { .. } => {
                    "x509: certificate is not valid for the requested name".to_owned()
                }
                other => format!("x509: {other:?}"),
            };
            format!("tls: failed to verify certificate: {why}")
        }
        other => format!("remote error: tls: {other}"),
    }
}

/// POSTs the review and returns the decoded answer, or the error text
/// (`Post "<url>": ...`).
pub async fn call(
    target: &Target,
    body: &Value,
    clock: &Clock,
    tasks: &Tasks,
) -> Result<Value, String> {
    let post = |why: String| format!("Post {:?}: {why}", target.url);
    let tls = ackemu_base::pki::client_tls_config(&target.ca_pem, None, clock, &[b"http/1.1"])
        .map_err(|e| post(format!("invalid caBundle: {e}")))?;
    let name = rustls::pki_types::ServerName::try_from(target.server_name.clone())
        .map_err(|e| post(e.to_string()))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let work = async {
        let tcp = tokio::net::TcpStream::connect(target.addr)
            .await
            .map_err(|e| post(format!("dial tcp {}: {e}", target.addr)))?;
        let stream = connector.connect(name, tcp).await.map_err(|e| {
            let text = e
                .get_ref()
                .map(|inner| describe_error(inner))
                .unwrap_or_else(|| e.to_string());
            post(text)
        })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| post(e.to_string()))?;
        tasks.spawn("webhook-conn", async move {
            let _ = conn.await;
        });
        let uri: http::Uri = target
            .url
            .parse()
            .map_err(|e: http::uri::InvalidUri| post(e.to_string()))?;
        let req = http::Request::builder()
            .method("POST")
            .uri(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
            .header("host", uri.authority().map(|a| a.as_str()).unwrap_or(""))
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| post(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| post(e.to_string()))?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| post(e.to_string()))?
            .to_bytes();
        if !status.is_success() {
            return Err(post(format!(
                "the server responded with the status code {}",
                status.as_u16()
            )));
        }
        serde_json::from_slice::<Value>(&bytes)
            .map_err(|e| format!("failed to decode the response: {e}"))
    };
    match clock.timeout(clock.to_cluster(target.timeout), work).await {
        Ok(r) => r,
        Err(_) => Err(post("context deadline exceeded".to_owned())),
    }
}

/// The webhook URL Kubernetes prints: `https://<svc>.<ns>.svc:<port><path>?timeout=<n>s`.
pub fn service_url(svc: &Value, timeout_seconds: i64) -> (String, String) {
    let name = svc["name"].as_str().unwrap_or("");
    let ns = svc["namespace"].as_str().unwrap_or("");
    let port = svc["port"].as_i64().unwrap_or(443);
    let path = svc["path"].as_str().unwrap_or("");
    let host = format!("{name}.{ns}.svc");
    (
        format!("https://{host}:{port}{path}?timeout={timeout_seconds}s"),
        host,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ackemu_kube::Registry;

    #[test]
    fn rule_matching() {
        let r = Registry::builtin();
        let pods = r.preferred("", "pods").unwrap();
        let user = UserInfo::anonymous();
        let pod = json!({"metadata": {"labels": {"app": "web"}}});
        let req = Request {
            info: pods,
            subresource: "",
            operation: "CREATE",
            namespace: "default",
            name: "p",
            object: Some(&pod),
            old_object: None,
            user: &user,
            dry_run: false,
        };
        let hook = |rules: Value, ns_sel: Value, obj_sel: Value| json!({"rules": rules, "namespaceSelector": ns_sel, "objectSelector": obj_sel});
        let rule = |ops: &str, res: &str| json!([{"operations": [ops], "apiGroups": [""], "apiVersions": ["v1"], "resources": [res]}]);
        let ns_labels = json!({"istio-injection": "enabled"});
        let cases = [
            (hook(rule("CREATE", "pods"), Value::Null, Value::Null), true),
            (hook(rule("*", "*"), Value::Null, Value::Null), true),
            (
                hook(rule("UPDATE", "pods"), Value::Null, Value::Null),
                false,
            ),
            (
                hook(rule("CREATE", "services"), Value::Null, Value::Null),
                false,
            ),
            (
                hook(rule("CREATE", "pods/status"), Value::Null, Value::Null),
                false,
            ),
            (
                hook(
                    rule("CREATE", "pods"),
                    json!({"matchLabels": {"istio-injection": "enabled"}}),
                    Value::Null,
                ),
                true,
            ),
            (
                hook(
                    rule("CREATE", "pods"),
                    json!({"matchLabels": {"istio-injection": "disabled"}}),
                    Value::Null,
                ),
                false,
            ),
            (
                hook(
                    rule("CREATE", "pods"),
                    Value::Null,
                    json!({"matchLabels": {"app": "db"}}),
                ),
                false,
            ),
        ];
        for (h, want) in cases {
            assert_eq!(matches(&h, &req, Some(&ns_labels)), want, "{h}");
        }
        let status = Request {
            subresource: "status",
            ..req
        };
        assert!(matches(
            &hook(rule("CREATE", "pods/*"), Value::Null, Value::Null),
            &status,
            None
        ));
        assert!(!matches(
            &hook(rule("CREATE", "pods"), Value::Null, Value::Null),
            &status,
            None
        ));
    }

    #[test]
    fn verdicts_and_urls() {
        let allowed = json!({"response": {"uid": "u", "allowed": true,
            "patchType": "JSONPatch", "patch": base64::engine::general_purpose::STANDARD.encode(br#"[{"op":"add","path":"/x","value":1}]"#)}});
        assert_eq!(
            verdict("w", "u", &allowed).unwrap(),
            Verdict::Allowed {
                patch: Some(json!([{"op": "add", "path": "/x", "value": 1}]))
            }
        );
        let denied = json!({"response": {"uid": "u", "allowed": false, "status": {"code": 403, "message": "configuration is invalid: gateway must have at least one server"}}});
        assert_eq!(
            verdict("pilot.validation.istio.io", "u", &denied).unwrap(),
            Verdict::Denied {
                code: 403,
                message: "admission webhook \"pilot.validation.istio.io\" denied the request: configuration is invalid: gateway must have at least one server".to_owned()
            }
        );
        assert!(verdict("w", "other", &allowed).is_err());
        let (url, host) = service_url(
            &json!({"name": "istio-galley", "namespace": "istio-system", "path": "/admitpilot"}),
            30,
        );
        assert_eq!(
            url,
            "https://istio-galley.istio-system.svc:443/admitpilot?timeout=30s"
        );
        assert_eq!(host, "istio-galley.istio-system.svc");
    }

    #[test]
    fn tls_errors_read_like_go() {
        use rustls::pki_types::UnixTime;
        let e = rustls::Error::InvalidCertificate(rustls::CertificateError::ExpiredContext {
            time: UnixTime::since_unix_epoch(Duration::from_secs(1_605_000_000)),
            not_after: UnixTime::since_unix_epoch(Duration::from_secs(1_600_000_000)),
        });
        assert_eq!(
            describe_tls(&e),
            "tls: failed to verify certificate: x509: certificate has expired or is not yet valid: current time 2020-11-10T09:20:00Z is after 2020-09-13T12:26:40Z"
        );
        let u = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        assert_eq!(
            describe_tls(&u),
            "tls: failed to verify certificate: x509: certificate signed by unknown authority"
        );
    }
}
