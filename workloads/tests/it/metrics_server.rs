//! metrics-server as an aggregated API behind the real API server, scraping
//! a fake kubelet's `/stats/summary` over HTTPS with its service-account
//! token; the real `kubectl top` reads the numbers.

use std::sync::Arc;

use ackemu_base::clock::Clock;
use ackemu_workloads::https;
use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use serde_json::json;

use crate::harness::{Cluster, eventually, free_port, log_line, spawn_program};

const SUMMARY: &str = r#"{
  "node": {"nodeName": "n1",
           "cpu": {"time": "2026-12-02T06:00:00Z", "usageNanoCores": 250000000},
           "memory": {"time": "2026-12-02T06:00:00Z", "workingSetBytes": 1073741824}},
  "pods": [
    {"podRef": {"name": "web-0", "namespace": "default"},
     "containers": [{"name": "app", "cpu": {"time": "2026-12-02T06:00:01Z", "usageNanoCores": 2000000},
                                    "memory": {"time": "2026-12-02T06:00:01Z", "workingSetBytes": 10485760}},
                    {"name": "istio-proxy", "cpu": {"time": "2026-12-02T06:00:01Z", "usageNanoCores": 1000000},
                                    "memory": {"time": "2026-12-02T06:00:01Z", "workingSetBytes": 4194304}}]}
  ]}"#;

/// A kubelet's `/stats/summary` on 127.0.0.1 over HTTPS, answering only
/// the expected bearer token.
async fn fake_kubelet(c: &Cluster, token: String) -> anyhow::Result<u16> {
    let clock = Clock::real();
    let cert = https::self_signed("n1", &["127.0.0.1".into()], &clock)?;
    let serving = https::ServingCert::new(&cert.cert_pem, &cert.key_pem, None, &clock)?;
    let token = Arc::new(token);
    let app = Router::new().route(
        "/stats/summary",
        get(move |h: HeaderMap| {
            let token = token.clone();
            async move {
                let auth = h.get("authorization").and_then(|v| v.to_str().ok());
                if auth != Some(&format!("Bearer {token}")) {
                    return (StatusCode::UNAUTHORIZED, "Unauthorized".to_string());
                }
                (StatusCode::OK, SUMMARY.to_string())
            }
        }),
    );
    let (l, addr) = https::bind("127.0.0.1:0").await?;
    https::serve(l, serving, app, &c.tasks, "fake-kubelet");
    Ok(addr.port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_top_reads_metrics_scraped_from_the_kubelet() -> anyhow::Result<()> {
    let c = Cluster::start().await?;
    // RBAC as metrics-server's manifests grant it.
    for (path, obj) in [
        (
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "system:metrics-server"},
            "rules": [{"apiGroups": [""], "resources": ["nodes/metrics", "nodes/stats"], "verbs": ["get"]},
                      {"apiGroups": [""], "resources": ["pods", "nodes"], "verbs": ["get", "list", "watch"]},
                      {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]}]}),
        ),
        (
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "system:metrics-server"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:metrics-server"},
            "subjects": [{"kind": "ServiceAccount", "name": "metrics-server", "namespace": "kube-system"}]}),
        ),
    ] {
        c.create(path, obj).await?;
    }
    let sa = c.service_account("kube-system", "metrics-server").await?;
    let kubelet_port = fake_kubelet(&c, sa.token.clone()).await?;

    // The node and a pod the kubelet reports.
    c.create("/api/v1/nodes", json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1"}}}))
        .await?;
    let mut node = c.client.request("GET", "/api/v1/nodes/n1", None).await?;
    node["status"] = json!({
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": "n1"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
        "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
        "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
    });
    c.client
        .request(
            "PUT",
            "/api/v1/nodes/n1/status",
            Some(("application/json", node.to_string().into_bytes())),
        )
        .await?;
    c.create(
        "/api/v1/namespaces/default/serviceaccounts",
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}),
    )
    .await?;
    c.create("/api/v1/namespaces/default/pods", json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-0", "labels": {"app": "web"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "app", "image": "app"}, {"name": "istio-proxy", "image": "proxyv2"}]}}))
        .await?;

    // metrics-server in "its pod": in-cluster credentials.
    let port = free_port();
    let log = c.dir.path().join("metrics-server.log");
    let _ms = spawn_program(
        &[
            "metrics-server",
            "--bind-address",
            "127.0.0.1",
            "--secure-port",
            &port.to_string(),
            "--metric-resolution",
            "1s",
            "--kubelet-insecure-tls",
            "--kubelet-use-node-status-port",
            "--kubelet-preferred-address-types",
            "InternalIP",
        ],
        &sa.env(),
        &log,
    )?;
    log_line(&log, "metrics-server serving securely on").await?;

    // Registered as an aggregated API: Service → Endpoints 127.0.0.1.
    c.create(
        "/api/v1/namespaces/kube-system/services",
        json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "metrics-server"},
        "spec": {"ports": [{"name": "https", "port": 443, "targetPort": port}]}}),
    )
    .await?;
    c.create("/api/v1/namespaces/kube-system/endpoints", json!({"apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "metrics-server"},
        "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": port}]}]}))
        .await?;
    c.create("/apis/apiregistration.k8s.io/v1/apiservices", json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
        "metadata": {"name": "v1beta1.metrics.k8s.io"},
        "spec": {"group": "metrics.k8s.io", "version": "v1beta1", "groupPriorityMinimum": 100, "versionPriority": 100,
                 "insecureSkipTLSVerify": true, "service": {"namespace": "kube-system", "name": "metrics-server", "port": 443}}}))
        .await?;

    let out = eventually("kubectl top nodes", || async {
        let o = c.kubectl(&["top", "nodes"]);
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        Ok((o.status.success() && text.contains("n1")).then_some(text))
    })
    .await?;
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"],
        "{out}"
    );
    let row: Vec<&str> = out.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row, ["n1", "250m", "6%", "1024Mi", "12%"], "{out}");

    let o = c.kubectl(&["top", "pods", "-n", "default"]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let row: Vec<&str> = text
        .lines()
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(row, ["web-0", "3m", "14Mi"], "{text}");
    let o = c.kubectl(&["top", "pods", "-n", "default", "--containers"]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(text.contains("istio-proxy"), "{text}");

    // The raw API: kubectl top's JSON shape.
    let o = c.kubectl(&[
        "get",
        "--raw",
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/web-0",
    ]);
    let pm: serde_json::Value = serde_json::from_slice(&o.stdout)?;
    assert_eq!(pm["kind"], "PodMetrics");
    assert_eq!(pm["window"], "1s");
    assert_eq!(
        pm["containers"][0]["usage"],
        json!({"cpu": "2000000n", "memory": "10240Ki"})
    );
    let o = c.kubectl(&["get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes/missing"]);
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("nodemetrics.metrics.k8s.io \"missing\" not found"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // Authorization is delegated: a user without RBAC is refused.
    let out = tokio::process::Command::new("curl")
        .args(["-sk", "-H", "X-Remote-User: mallory"])
        .arg(format!(
            "https://127.0.0.1:{port}/apis/metrics.k8s.io/v1beta1/nodes"
        ))
        .output()
        .await?;
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        body.contains(r#"nodes.metrics.k8s.io is forbidden: User \"mallory\" cannot list resource \"nodes\" in API group \"metrics.k8s.io\" at the cluster scope"#),
        "{body}"
    );
    let out = tokio::process::Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("https://127.0.0.1:{port}/readyz"))
        .output()
        .await?;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    Ok(())
}
