//! Bearer tokens on the kubelet API (`--authentication-token-webhook
//! --authorization-mode=Webhook`): the kubelet sends a `TokenReview` and a
//! `SubjectAccessReview` with its own credentials to an API server (here a
//! TLS one answering only those two resources, counting questions), and
//! caches both answers. The caller is what metrics-server is: a
//! ServiceAccount token, allowed `nodes/stats` and `nodes/metrics` only.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ackemu_base::clock::Clock;
use ackemu_base::pki::{self, Ca, CertSpec};
use ackemu_base::tasks::Tasks;
use ackemu_kube::api::core::v1::Pod;
use ackemu_kube::client::{Client, ClientConfig};
use ackemu_nodeagent::server::auth::{
    SubjectAccessReviewer, TokenAuthenticator, TokenReviewer, WebhookCacheConfig,
};
use ackemu_nodeagent::server::{self, Auth, PodProvider, ServerConfig};
use axum::Json;
use axum::extract::State;
use axum::routing::post;
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;
use serde_json::{Value, json};

const METRICS_SERVER: &str = "system:serviceaccount:kube-system:metrics-server";

#[derive(Default)]
struct Reviews {
    token_reviews: AtomicUsize,
    access_reviews: Mutex<Vec<Value>>,
}

async fn token_review(State(r): State<Arc<Reviews>>, Json(body): Json<Value>) -> Json<Value> {
    r.token_reviews.fetch_add(1, Ordering::SeqCst);
    let status = if body["spec"]["token"] == "metrics-server-token" {
        json!({"authenticated": true, "user": {
            "username": METRICS_SERVER,
            "uid": "uid-ms",
            "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"],
            "extra": {"authentication.kubernetes.io/pod-name": ["metrics-server-0"]}}})
    } else {
        json!({"authenticated": false, "error": "invalid bearer token"})
    };
    let mut out = body.clone();
    out["status"] = status;
    Json(out)
}

async fn access_review(State(r): State<Arc<Reviews>>, Json(body): Json<Value>) -> Json<Value> {
    r.access_reviews.lock().push(body["spec"].clone());
    let ra = &body["spec"]["resourceAttributes"];
    let allowed = body["spec"]["user"] == METRICS_SERVER
        && ra["resource"] == "nodes"
        && ra["verb"] == "get"
        && (ra["subresource"] == "stats" || ra["subresource"] == "metrics");
    let mut out = body.clone();
    out["status"] = if allowed {
        json!({"allowed": true, "reason": "RBAC: allowed by ClusterRoleBinding \"system:metrics-server\""})
    } else {
        json!({"allowed": false})
    };
    Json(out)
}

/// An HTTPS (h2) server answering reviews; returns its URL.
async fn fake_api_server(ca: &Ca, clock: &Clock, tasks: &Tasks, reviews: Arc<Reviews>) -> String {
    let c = ca
        .issue(
            &CertSpec::server(
                "kube-apiserver",
                &["localhost"],
                &["127.0.0.1".parse().unwrap()],
                Duration::from_secs(3600),
            ),
            clock,
        )
        .unwrap();
    let tls = pki::server_tls_config(
        &c.cert_pem,
        &c.key_pem,
        None,
        pki::ClientAuth::None,
        clock,
        &[b"h2"],
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let app = axum::Router::new()
        .route(
            "/apis/authentication.k8s.io/v1/tokenreviews",
            post(token_review),
        )
        .route(
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            post(access_review),
        )
        .with_state(reviews);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let t = tasks.clone();
    tasks.spawn("fake-apiserver/accept", async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, app) = (acceptor.clone(), app.clone());
            t.spawn("fake-apiserver/conn", async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    format!("https://{addr}")
}

struct NoPods;

impl PodProvider for NoPods {
    fn pods(&self) -> Vec<Pod> {
        Vec::new()
    }
}

/// `curl` with an optional bearer token: (status, body).
fn curl(dir: &std::path::Path, token: Option<&str>, url: &str) -> (u16, String) {
    let mut c = std::process::Command::new("curl");
    c.args(["-sS", "-w", "\n%{http_code}", "--cacert"])
        .arg(dir.join("server-ca.pem"));
    if let Some(t) = token {
        c.arg("-H").arg(format!("Authorization: Bearer {t}"));
    }
    let out = c.arg(url).output().expect("curl");
    let s = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = s.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_are_reviewed_authorized_and_cached() {
    let clock = Clock::real();
    let tasks = Tasks::new(clock.clone());
    let ca = Ca::generate("kubernetes", &clock, Duration::from_secs(86400)).unwrap();
    let reviews = Arc::new(Reviews::default());
    let url = fake_api_server(&ca, &clock, &tasks, reviews.clone()).await;
    let node_cert = ca
        .issue(
            &CertSpec::client(
                "system:node:n1",
                &["system:nodes"],
                Duration::from_secs(3600),
            ),
            &clock,
        )
        .unwrap();
    let client = Client::new(
        ClientConfig {
            server: url,
            ca_pem: ca.cert_pem().to_string(),
            client_cert: Some((node_cert.cert_pem, node_cert.key_pem)),
            token: None,
            timeout: Duration::from_secs(10),
        },
        clock.clone(),
        tasks.clone(),
    )
    .unwrap();
    let cache = WebhookCacheConfig::default();
    let dir = tempfile::tempdir().unwrap();
    let srv = server::serve(
        ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            node_name: "n1".into(),
            runtime_socket: dir.path().join("no-runtime.sock"),
            client_ca_pem: Some(ca.cert_pem().to_string()),
            serving: None,
            serving_ips: vec![],
            anonymous_auth: false,
        },
        Auth {
            tokens: Some(TokenReviewer::new(client.clone(), clock.clone(), cache)
                as Arc<dyn TokenAuthenticator>),
            authorizer: SubjectAccessReviewer::new(client, clock.clone(), cache),
        },
        Arc::new(NoPods),
        &tasks,
        &clock,
        tasks.token(),
    )
    .await
    .unwrap();
    std::fs::write(dir.path().join("server-ca.pem"), &srv.cert_pem).unwrap();
    let base = format!("https://{}", srv.local_addr);
    let d = dir.path();

    // No credentials, an unknown token, a malformed header: 401.
    assert_eq!(
        curl(d, None, &format!("{base}/healthz")),
        (401, "Unauthorized\n".into())
    );
    assert_eq!(
        curl(d, Some("stolen"), &format!("{base}/metrics/resource")),
        (401, "Unauthorized\n".into())
    );
    assert_eq!(reviews.token_reviews.load(Ordering::SeqCst), 1);
    assert!(reviews.access_reviews.lock().is_empty());

    // metrics-server's token: nodes/metrics is allowed (the path is not
    // served here, so the answer after authorization is the mux's 404) …
    assert_eq!(
        curl(
            d,
            Some("metrics-server-token"),
            &format!("{base}/metrics/resource")
        ),
        (404, "404 page not found\n".into())
    );
    // … nodes/proxy is not.
    assert_eq!(
        curl(d, Some("metrics-server-token"), &format!("{base}/pods")),
        (
            403,
            format!(
                "Forbidden (user={METRICS_SERVER}, verb=get, resource=nodes, subresource(s)=[proxy])\n"
            )
        )
    );
    {
        let asked = reviews.access_reviews.lock();
        assert_eq!(asked.len(), 2);
        let spec = &asked[0];
        assert_eq!(spec["user"], METRICS_SERVER);
        assert_eq!(spec["uid"], "uid-ms");
        assert_eq!(
            spec["groups"],
            json!([
                "system:serviceaccounts",
                "system:serviceaccounts:kube-system",
                "system:authenticated"
            ])
        );
        assert_eq!(
            spec["extra"]["authentication.kubernetes.io/pod-name"],
            json!(["metrics-server-0"])
        );
        assert_eq!(
            spec["resourceAttributes"],
            json!({"verb": "get", "version": "v1", "resource": "nodes", "subresource": "metrics", "name": "n1"})
        );
        assert_eq!(asked[1]["resourceAttributes"]["subresource"], "proxy");
    }
    // The token was reviewed once; both decisions come from the caches now.
    assert_eq!(reviews.token_reviews.load(Ordering::SeqCst), 2);
    for _ in 0..3 {
        assert_eq!(
            curl(
                d,
                Some("metrics-server-token"),
                &format!("{base}/metrics/cadvisor")
            )
            .0,
            404
        );
        assert_eq!(
            curl(d, Some("metrics-server-token"), &format!("{base}/pods")).0,
            403
        );
    }
    assert_eq!(reviews.token_reviews.load(Ordering::SeqCst), 2);
    assert_eq!(reviews.access_reviews.lock().len(), 2);
    tasks.token().cancel();
}

#[tokio::test]
async fn review_answers_expire_after_their_ttl() {
    let (clock, hand) = Clock::manual(1_700_000_000_000);
    let tasks = Tasks::new(clock.clone());
    let ca = Ca::generate("kubernetes", &Clock::real(), Duration::from_secs(86400)).unwrap();
    let reviews = Arc::new(Reviews::default());
    let url = fake_api_server(&ca, &Clock::real(), &tasks, reviews.clone()).await;
    let client = Client::new(
        ClientConfig {
            server: url,
            ca_pem: ca.cert_pem().to_string(),
            client_cert: None,
            token: None,
            timeout: Duration::from_secs(10),
        },
        Clock::real(),
        tasks.clone(),
    )
    .unwrap();
    let reviewer = TokenReviewer::new(client, clock.clone(), WebhookCacheConfig::default());
    for _ in 0..2 {
        let u = reviewer
            .authenticate("metrics-server-token")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(u.name, METRICS_SERVER);
    }
    assert_eq!(reviews.token_reviews.load(Ordering::SeqCst), 1);
    hand.advance(Duration::from_secs(121));
    assert!(
        reviewer
            .authenticate("metrics-server-token")
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(reviews.token_reviews.load(Ordering::SeqCst), 2);
    assert_eq!(reviewer.authenticate("nope").await.unwrap(), None);
    tasks.token().cancel();
}
