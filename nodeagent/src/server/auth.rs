//! Who may call the kubelet API, as the kubelet's `server/auth.go` and
//! the apiserver's delegating authenticator/authorizer decide it:
//!
//! - authentication: an x509 client certificate (CN = user, O = groups)
//!   verified against `--client-ca-file` during the handshake; else, with
//!   `--authentication-token-webhook`, an `Authorization: Bearer` token
//!   sent to the API server in a `TokenReview` ([`TokenReviewer`], answers
//!   cached for `--authentication-token-webhook-cache-ttl`); else
//!   anonymous when allowed, or 401;
//! - authorization (`--authorization-mode=Webhook`): a
//!   `SubjectAccessReview` for resource `nodes`, name = this node, the
//!   subresource the path maps to, the verb the method maps to
//!   ([`SubjectAccessReviewer`], allowed answers cached for
//!   `--authorization-webhook-cache-authorized-ttl`, denied ones for
//!   `--authorization-webhook-cache-unauthorized-ttl`).
//!
//! Both reviews go out with the node's own credentials. Texts are the
//! kubelet's.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use ackemu_base::clock::{Clock, ClusterInstant};
use ackemu_kube::client::Client;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use serde_json::{Value, json};
use sha2::Digest as _;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct User {
    /// The certificate's CN, the reviewed token's username, or
    /// `system:anonymous`.
    pub name: String,
    /// The reviewed token's uid (empty for certificates).
    pub uid: String,
    /// The certificate's O values plus `system:authenticated` (or
    /// `system:unauthenticated` for anonymous callers), or the reviewed
    /// token's groups.
    pub groups: Vec<String>,
    /// The reviewed token's extra attributes (e.g. the pod a projected
    /// service-account token is bound to).
    pub extra: BTreeMap<String, Vec<String>>,
}

impl User {
    /// A certificate user.
    pub fn from_cert(cn: &str, orgs: &[String]) -> User {
        let mut groups = orgs.to_vec();
        groups.push("system:authenticated".into());
        User {
            name: cn.to_string(),
            groups,
            ..User::default()
        }
    }

    /// The anonymous user (`--anonymous-auth=true`).
    pub fn anonymous() -> User {
        User {
            name: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
            ..User::default()
        }
    }
}

/// A bounded map whose entries expire (the apiserver's `cache.LRUExpireCache`
/// the webhook authenticator and authorizer keep). Time is passed in.
#[derive(Debug)]
pub struct ExpiringCache<K, V> {
    max_entries: usize,
    entries: HashMap<K, (V, ClusterInstant)>,
}

impl<K: Eq + Hash + Clone, V: Clone> ExpiringCache<K, V> {
    /// At most `max_entries` (at least 1).
    pub fn new(max_entries: usize) -> Self {
        ExpiringCache {
            max_entries: max_entries.max(1),
            entries: HashMap::new(),
        }
    }

    /// The value for `k` unless it expired by `now` (then it is dropped).
    pub fn get(&mut self, k: &K, now: ClusterInstant) -> Option<V> {
        match self.entries.get(k) {
            Some((v, until)) if *until > now => Some(v.clone()),
            Some(_) => {
                self.entries.remove(k);
                None
            }
            None => None,
        }
    }

    /// Keep `v` for `ttl` from `now`; a full cache first drops what
    /// expired, then the entry closest to expiry.
    pub fn insert(&mut self, k: K, v: V, now: ClusterInstant, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        if !self.entries.contains_key(&k) && self.entries.len() >= self.max_entries {
            self.entries.retain(|_, (_, until)| *until > now);
            if self.entries.len() >= self.max_entries {
                let soonest = self
                    .entries
                    .iter()
                    .min_by_key(|(_, (_, until))| *until)
                    .map(|(k, _)| k.clone());
                if let Some(s) = soonest {
                    self.entries.remove(&s);
                }
            }
        }
        self.entries.insert(k, (v, now + ttl));
    }

    /// Entries held (expired ones included until touched).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// How long review answers are kept, and how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookCacheConfig {
    /// `--authentication-token-webhook-cache-ttl` (2m).
    pub token_ttl: Duration,
    /// `--authorization-webhook-cache-authorized-ttl` (5m).
    pub authorized_ttl: Duration,
    /// `--authorization-webhook-cache-unauthorized-ttl` (30s).
    pub unauthorized_ttl: Duration,
    /// Entries per cache.
    pub max_entries: usize,
}

impl Default for WebhookCacheConfig {
    fn default() -> Self {
        WebhookCacheConfig {
            token_ttl: Duration::from_secs(120),
            authorized_ttl: Duration::from_secs(300),
            unauthorized_ttl: Duration::from_secs(30),
            max_entries: 1024,
        }
    }
}

/// Authenticates bearer tokens; the kubelet passes [`TokenReviewer`],
/// tests a fake.
pub trait TokenAuthenticator: Send + Sync + 'static {
    /// `Ok(Some(user))` for a valid token, `Ok(None)` for one the API
    /// server does not accept (HTTP 401), `Err` when it could not be
    /// reviewed (also 401, logged).
    fn authenticate<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Option<User>, String>>;
}

/// The review sent for `token`.
pub fn token_review_body(token: &str) -> Value {
    json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": token},
    })
}

/// The user a `TokenReview` answer names, `None` when it is not
/// authenticated, `Err` for an answer without a status or a username.
pub fn token_review_user(review: &Value) -> Result<Option<User>, String> {
    let st = review
        .get("status")
        .ok_or("the TokenReview answer has no status")?;
    if st["authenticated"].as_bool() != Some(true) {
        if let Some(e) = st["error"].as_str().filter(|e| !e.is_empty()) {
            tracing::info!("kubelet server: token rejected: {e}");
        }
        return Ok(None);
    }
    let u = &st["user"];
    let name = u["username"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or("the TokenReview answer is authenticated without a username")?;
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|g| g.as_str().map(str::to_owned))
            .collect()
    };
    let extra = u["extra"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), strings(v)))
        .collect();
    Ok(Some(User {
        name: name.to_string(),
        uid: u["uid"].as_str().unwrap_or("").to_string(),
        groups: strings(&u["groups"]),
        extra,
    }))
}

/// The webhook token authenticator: a `TokenReview` per token not in its
/// cache (keyed by the token's SHA-256, not the token).
pub struct TokenReviewer {
    client: Client,
    clock: Clock,
    ttl: Duration,
    cache: Mutex<ExpiringCache<[u8; 32], Option<User>>>,
}

impl TokenReviewer {
    /// Review through `client` (the kubelet's own credentials).
    pub fn new(client: Client, clock: Clock, cache: WebhookCacheConfig) -> Arc<TokenReviewer> {
        Arc::new(TokenReviewer {
            client,
            clock,
            ttl: cache.token_ttl,
            cache: Mutex::new(ExpiringCache::new(cache.max_entries)),
        })
    }
}

impl TokenAuthenticator for TokenReviewer {
    fn authenticate<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Option<User>, String>> {
        Box::pin(async move {
            let key: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
            if let Some(hit) = self.cache.lock().get(&key, self.clock.now()) {
                return Ok(hit);
            }
            let body = serde_json::to_vec(&token_review_body(token)).map_err(|e| e.to_string())?;
            let r = self
                .client
                .request(
                    "POST",
                    "/apis/authentication.k8s.io/v1/tokenreviews",
                    Some(("application/json", body)),
                )
                .await
                .map_err(|e| format!("creating a TokenReview: {e}"))?;
            let user = token_review_user(&r)?;
            self.cache
                .lock()
                .insert(key, user.clone(), self.clock.now(), self.ttl);
            Ok(user)
        })
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

/// What a cached authorization answer is keyed by (the path is not part
/// of the question).
type ReviewKey = (User, String, String, String, String);

/// The webhook authorizer: a `SubjectAccessReview` per question not in its
/// cache.
pub struct SubjectAccessReviewer {
    client: Client,
    clock: Clock,
    cfg: WebhookCacheConfig,
    cache: Mutex<ExpiringCache<ReviewKey, Decision>>,
}

impl SubjectAccessReviewer {
    /// Review through `client` (the kubelet's own credentials).
    pub fn new(
        client: Client,
        clock: Clock,
        cfg: WebhookCacheConfig,
    ) -> Arc<SubjectAccessReviewer> {
        Arc::new(SubjectAccessReviewer {
            client,
            clock,
            cfg,
            cache: Mutex::new(ExpiringCache::new(cfg.max_entries)),
        })
    }
}

/// The review sent for `a`.
pub fn review_body(a: &Attributes) -> serde_json::Value {
    json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": a.user.name,
            "uid": a.user.uid,
            "groups": a.user.groups,
            "extra": a.user.extra,
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
            let key = (
                a.user.clone(),
                a.verb.clone(),
                a.resource.clone(),
                a.subresource.clone(),
                a.name.clone(),
            );
            if let Some(hit) = self.cache.lock().get(&key, self.clock.now()) {
                return Ok(hit);
            }
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
            let (d, ttl) = if st["allowed"].as_bool() == Some(true) {
                (Decision::Allow, self.cfg.authorized_ttl)
            } else if let Some(e) = st["evaluationError"].as_str().filter(|e| !e.is_empty()) {
                return Err(e.to_string());
            } else {
                (
                    Decision::Deny(st["reason"].as_str().unwrap_or("").to_string()),
                    self.cfg.unauthorized_ttl,
                )
            };
            self.cache
                .lock()
                .insert(key, d.clone(), self.clock.now(), ttl);
            Ok(d)
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

    #[test]
    fn token_review_answers_name_the_user() {
        let ok = json!({"status": {"authenticated": true, "user": {
            "username": "system:serviceaccount:kube-system:metrics-server", "uid": "u1",
            "groups": ["system:serviceaccounts", "system:authenticated"],
            "extra": {"authentication.kubernetes.io/pod-name": ["ms-0"]}}}});
        let u = token_review_user(&ok).unwrap().unwrap();
        assert_eq!(u.name, "system:serviceaccount:kube-system:metrics-server");
        assert_eq!(u.uid, "u1");
        assert_eq!(
            u.groups,
            vec!["system:serviceaccounts", "system:authenticated"]
        );
        assert_eq!(
            u.extra["authentication.kubernetes.io/pod-name"],
            vec!["ms-0"]
        );
        let no = json!({"status": {"authenticated": false, "error": "invalid bearer token"}});
        assert_eq!(token_review_user(&no).unwrap(), None);
        assert_eq!(token_review_user(&json!({"status": {}})).unwrap(), None);
        assert!(token_review_user(&json!({})).is_err());
        assert!(
            token_review_user(&json!({"status": {"authenticated": true, "user": {}}})).is_err()
        );
        assert_eq!(token_review_body("t")["spec"]["token"], "t");
    }

    #[test]
    fn the_cache_expires_and_stays_bounded() {
        let t0 = ClusterInstant::from_epoch(Duration::from_secs(100));
        let s = Duration::from_secs(1);
        let mut c = ExpiringCache::new(2);
        c.insert("a", 1, t0, 10 * s);
        c.insert("b", 2, t0, 20 * s);
        assert_eq!(c.get(&"a", t0 + 9 * s), Some(1));
        assert_eq!(c.get(&"a", t0 + 10 * s), None);
        assert_eq!(c.len(), 1);
        c.insert("a", 1, t0, 10 * s);
        // Full: the entry closest to expiry ("a") goes.
        c.insert("c", 3, t0, 30 * s);
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(&"a", t0), None);
        assert_eq!(c.get(&"b", t0), Some(2));
        assert_eq!(c.get(&"c", t0), Some(3));
        // Expired entries make room first.
        c.insert("d", 4, t0 + 25 * s, 5 * s);
        assert_eq!(c.get(&"c", t0 + 25 * s), Some(3));
        assert_eq!(c.get(&"d", t0 + 25 * s), Some(4));
        // A zero TTL keeps nothing.
        c.insert("e", 5, t0, Duration::ZERO);
        assert_eq!(c.get(&"e", t0), None);
    }
}
