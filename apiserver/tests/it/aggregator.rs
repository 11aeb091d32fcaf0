//! API aggregation against a real HTTPS backend in the test: availability,
//! proxying, and S03's 503 when the backend cannot be reached.

use std::sync::Arc;
use std::time::Duration;

use ackemu_base::pki::{self, Ca, CertSpec, ClientAuth};
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;

use crate::harness::{Cluster, eventually};

/// A metrics-server stand-in: discovery and a node metrics list.
async fn start_backend(c: &Cluster) -> anyhow::Result<u16> {
    let ca = Ca::generate(
        "metrics-server-ca",
        &c.env.clock,
        Duration::from_secs(86400),
    )?;
    let cert = ca.issue(
        &CertSpec::server(
            "metrics-server",
            &["metrics-server.kube-system.svc"],
            &[],
            Duration::from_secs(86400),
        ),
        &c.env.clock,
    )?;
    let tls = pki::server_tls_config(
        &cert.cert_pem,
        &cert.key_pem,
        None,
        ClientAuth::None,
        &c.env.clock,
        &[b"http/1.1"],
    )?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let tasks = c.env.tasks.clone();
    let inner = tasks.clone();
    tasks.spawn("test-metrics-server", async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let acceptor = acceptor.clone();
            inner.spawn("test-metrics-conn", async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let svc = hyper::service::service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let user = req.headers().get("x-remote-user").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                    let body = match req.uri().path() {
                        "/apis/metrics.k8s.io/v1beta1" => json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "metrics.k8s.io/v1beta1",
                            "resources": [{"name": "nodes", "singularName": "", "namespaced": false, "kind": "NodeMetrics", "verbs": ["get", "list"]},
                                          {"name": "pods", "singularName": "", "namespaced": true, "kind": "PodMetrics", "verbs": ["get", "list"]}]}),
                        "/apis/metrics.k8s.io/v1beta1/nodes" => json!({"kind": "NodeMetricsList", "apiVersion": "metrics.k8s.io/v1beta1", "metadata": {},
                            "items": [{"metadata": {"name": "n1", "annotations": {"served-for": user}}, "window": "20s", "usage": {"cpu": "100m", "memory": "1Gi"}}]}),
                        _ => json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404, "reason": "NotFound"}),
                    };
                    let mut resp = hyper::Response::new(Full::new(Bytes::from(body.to_string())));
                    resp.headers_mut().insert("content-type", http::HeaderValue::from_static("application/json"));
                    Ok::<_, std::convert::Infallible>(resp)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(tls), svc).await;
            });
        }
    });
    Ok(port)
}

fn closed_port() -> u16 {
    // Bound and dropped: nothing listens there afterwards.
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

#[tokio::test]
async fn aggregated_api_is_proxied_and_503_when_its_backend_is_unreachable() -> anyhow::Result<()> {
    let c =
        Cluster::start_with(|cfg| cfg.api.apiservice_check_interval = Duration::from_millis(200))
            .await?;
    let k = c.kubectl("1.33");
    let port = start_backend(&c).await?;
    let endpoints = |p: u16| {
        json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "metrics-server", "namespace": "kube-system"},
               "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": p}]}]})
        .to_string()
    };
    let objects = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "metrics-server", "namespace": "kube-system"},
         "spec": {"ports": [{"name": "https", "port": 443, "targetPort": 4443}]}},
        {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": "v1beta1.metrics.k8s.io"},
         "spec": {"group": "metrics.k8s.io", "version": "v1beta1", "insecureSkipTLSVerify": true, "groupPriorityMinimum": 100, "versionPriority": 100,
                  "service": {"name": "metrics-server", "namespace": "kube-system"}}}
    ]});
    k.ok_stdin(&["create", "-f", "-"], &objects.to_string())
        .await?;
    k.ok_stdin(&["create", "-f", "-"], &endpoints(port)).await?;

    let listed = eventually("the APIService to become available", || {
        let k = &k;
        async move {
            let out = k
                .ok(&["get", "apiservice", "v1beta1.metrics.k8s.io"])
                .await?;
            Ok(out.contains("True").then_some(out))
        }
    })
    .await?;
    assert!(listed.contains("kube-system/metrics-server"), "{listed}");
    let all = k.ok(&["get", "apiservices"]).await?;
    assert!(
        all.lines()
            .any(|l| l.starts_with("v1.apps ") && l.contains("Local") && l.contains("True")),
        "{all}"
    );
    let nodes = k
        .ok(&["get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes"])
        .await?;
    let nodes: serde_json::Value = serde_json::from_str(&nodes)?;
    assert_eq!(nodes["items"][0]["usage"]["cpu"], "100m");
    assert_eq!(
        nodes["items"][0]["metadata"]["annotations"]["served-for"],
        "kubernetes-admin"
    );
    assert!(
        k.ok(&["api-versions"])
            .await?
            .lines()
            .any(|l| l == "metrics.k8s.io/v1beta1")
    );

    // The backend becomes unreachable (S03: its route is gone).
    k.ok_stdin(&["replace", "-f", "-"], &endpoints(closed_port()))
        .await?;
    let down = eventually("the APIService to become unavailable", || {
        let k = &k;
        async move {
            let out = k
                .ok(&["get", "apiservice", "v1beta1.metrics.k8s.io"])
                .await?;
            Ok(out.contains("False").then_some(out))
        }
    })
    .await?;
    assert!(down.contains("False (FailedDiscoveryCheck)"), "{down}");
    let err = k
        .fails(&["get", "--raw", "/apis/metrics.k8s.io/v1beta1"])
        .await?;
    assert!(err.contains("Error from server (ServiceUnavailable): the server is currently unable to handle the request"), "{err}");
    let partial = k.run(&["api-resources"]).await?;
    assert!(
        partial.stderr.contains(
            "metrics.k8s.io/v1beta1: the server is currently unable to handle the request"
        ),
        "{}",
        partial.stderr
    );

    // Heal: the endpoint comes back and so does the group.
    k.ok_stdin(&["replace", "-f", "-"], &endpoints(port))
        .await?;
    eventually("the APIService to recover", || {
        let k = &k;
        async move {
            Ok(k.ok(&["get", "apiservice", "v1beta1.metrics.k8s.io"])
                .await?
                .contains("True")
                .then_some(()))
        }
    })
    .await?;
    k.ok(&["get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes"])
        .await?;
    Ok(())
}
