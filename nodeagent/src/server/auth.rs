//! Who may call the kubelet API: x509 client certificates (CN = user,
//! O = groups) verified against `--client-ca-file` during the handshake,
//! then the webhook authorizer's question to the API server — a
//! `SubjectAccessReview` for resource `nodes`, name = this node, the
//! subresource the path maps to, the verb the method maps to — as the
//! kubelet's `server/auth.go` asks it. Texts are the kubelet's.

use std::sync::Arc;

use ackemu_kube::client::Client;
use futures::future::BoxFuture;
use serde_json::json;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The certificate's CN, or `system:anonymous`.
    pub name: String,
    /// The certificate's O values plus `system:authenticated` (or
    /// `system:unauthenticated` for anonymous callers).
    pub groups: Vec<String>,
}

impl User {
    /// A certificate user.
    pub fn from_cert(cn: &str, orgs: &[String]) -> User {
        let mut groups = orgs.to_vec();
        groups.push("system:authenticated".into());
        User {
            name: cn.to_string(),
            groups,
        }
    }

    /// The anonymous user (`--anonymous-auth=true`).
    pub fn anonymous() -> User {
        User {
            name: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
        }
    }
}

/// What is asked (authorizer.AttributesRecord).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    /// The caller.
    pub user: User,
    /// `get`, `create`, `update`, `patch`, `delete` (from the method).
    pub verb: String,
    /// Always `nodes`.
    pub resource: String,
    /// `proxy`, `stats`, `metrics`, `log`, `spec`.
    pub subresource: String,
    /// The node name.
    pub name: String,
    /// The request path.
    pub path: String,
}

/// Whether a request path is `base` or below it.
fn is_subpath(path: &str, base: &str) -> bool {
    path == base || path.starts_with(&format!("{base}/"))
}

/// The attributes of a request, as the kubelet's `GetRequestAttributes`.
pub fn attributes(user: User, method: &str, path: &str, node: &str) -> Attributes {
    let verb = match method {
        "POST" => "create",
        "GET" | "HEAD" => "get",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" => "delete",
        _ => "",
    };
    let subresource = if is_subpath(path, "/stats") {
        "stats"
    } else if is_subpath(path, "/metrics") {
        "metrics"
    } else if is_subpath(path, "/logs") {
        "log"
    } else if is_subpath(path, "/spec") {
        "spec"
    } else {
        "proxy"
    };
    Attributes {
        user,
        verb: verb.into(),
        resource: "nodes".into(),
        subresource: subresource.into(),
        name: node.into(),
        path: path.into(),
    }
}

/// An authorizer's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Go on.
    Allow,
    /// Refuse; the reason is logged.
    Deny(String),
}

/// Decides requests; the kubelet passes [`SubjectAccessReviewer`], tests a
/// fake.
pub trait Authorizer: Send + Sync + 'static {
    /// Decide `a`; `Err` is an authorization error (HTTP 500).
    fn authorize<'a>(&'a self, a: &'a Attributes) -> BoxFuture<'a, Result<Decision, String>>;
}

/// `Forbidden (user=…, verb=…, resource=…, subresource(s)=[…])`.
pub fn forbidden_text(a: &Attributes) -> String {
    format!(
        "Forbidden (user={}, verb={}, resource={}, subresource(s)=[{}])\n",
        a.user.name, a.verb, a.resource, a.subresource
    )
}

/// `Authorization error (user=…, …)`.
pub fn error_text(a: &Attributes) -> String {
    format!(
        "Authorization error (user={}, verb={}, resource={}, subresource(s)=[{}])\n",
        a.user.name, a.verb, a.resource, a.subresource
    )
}

/// The webhook authorizer: a `SubjectAccessReview` per request.
#[derive(Clone)]
pub struct SubjectAccessReviewer {
    client: Client,
}

impl SubjectAccessReviewer {
    /// Review through `client` (the kubelet's own credentials).
    pub fn new(client: Client) -> Arc<SubjectAccessReviewer> {
        Arc::new(SubjectAccessReviewer { client })
    }
}

/// The review sent for `a`.
pub fn review_body(a: &Attributes) -> serde_json::Value {
    json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": a.user.name,
            "groups": a.user.groups,
            "resourceAttributes": {
                "verb": a.verb,
                "version": "v1",
                "resource": a.resource,
                "subresource": a.subresource,
                "name": a.name,
            },
        },
    })
}

impl Authorizer for SubjectAccessReviewer {
    fn authorize<'a>(&'a self, a: &'a Attributes) -> BoxFuture<'a, Result<Decision, String>> {
        Box::pin(async move {
            let body = serde_json::to_vec(&review_body(a)).map_err(|e| e.to_string())?;
            let r = self
                .client
                .request(
                    "POST",
                    "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                    Some(("application/json", body)),
                )
                .await
                .map_err(|e| format!("creating a SubjectAccessReview: {e}"))?;
            let st = &r["status"];
            if st["allowed"].as_bool() == Some(true) {
                Ok(Decision::Allow)
            } else if let Some(e) = st["evaluationError"].as_str().filter(|e| !e.is_empty()) {
                Err(e.to_string())
            } else {
                Ok(Decision::Deny(
                    st["reason"].as_str().unwrap_or("").to_string(),
                ))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_methods_map_like_the_kubelet() {
        let u = User::from_cert("jane", &["dev".into()]);
        let cases = [
            ("GET", "/stats/summary", "get", "stats"),
            ("GET", "/stats", "get", "stats"),
            ("GET", "/statsx", "get", "proxy"),
            ("GET", "/metrics/cadvisor", "get", "metrics"),
            ("GET", "/logs/messages", "get", "log"),
            ("GET", "/containerLogs/default/web/app", "get", "proxy"),
            ("POST", "/exec/default/web/app", "create", "proxy"),
            ("GET", "/pods", "get", "proxy"),
            ("GET", "/healthz", "get", "proxy"),
            ("DELETE", "/pods", "delete", "proxy"),
        ];
        for (m, p, verb, sub) in cases {
            let a = attributes(u.clone(), m, p, "n1");
            assert_eq!(
                (a.verb.as_str(), a.subresource.as_str()),
                (verb, sub),
                "{m} {p}"
            );
            assert_eq!(a.resource, "nodes");
            assert_eq!(a.name, "n1");
        }
        let a = attributes(u, "GET", "/stats/summary", "n1");
        assert_eq!(
            forbidden_text(&a),
            "Forbidden (user=jane, verb=get, resource=nodes, subresource(s)=[stats])\n"
        );
        assert_eq!(
            review_body(&a)["spec"]["groups"],
            json!(["dev", "system:authenticated"])
        );
    }
}
