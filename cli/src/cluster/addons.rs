//! The cluster add-ons ACK installs, as ordinary cluster objects: cluster
//! DNS (a `coredns` Deployment behind the `kube-dns` Service at
//! 172.19.0.10) and metrics-server (a Deployment behind the
//! `v1beta1.metrics.k8s.io` APIService, with upstream's RBAC). Images are
//! the registry's built-in ones; the node agents run them as real
//! processes in pod namespaces.

use ackemu_kube::client::Client;
use serde_json::{Value, json};

use super::kubeinit::ensure;

/// The cluster DNS address every pod's resolv.conf names.
pub const DNS_IP: &str = "172.19.0.10";

fn coredns() -> Vec<(&'static str, &'static str, Value)> {
    let rbac = "rbac.authorization.k8s.io/v1";
    vec![
        (
            "v1",
            "ServiceAccount",
            json!({"apiVersion": "v1", "kind": "ServiceAccount",
                   "metadata": {"name": "coredns", "namespace": "kube-system"}}),
        ),
        (
            rbac,
            "ClusterRole",
            json!({"apiVersion": rbac, "kind": "ClusterRole",
                   "metadata": {"name": "system:coredns", "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
                   "rules": [
                       {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"], "verbs": ["list", "watch"]},
                       {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]}]}),
        ),
        (
            rbac,
            "ClusterRoleBinding",
            json!({"apiVersion": rbac, "kind": "ClusterRoleBinding",
                   "metadata": {"name": "system:coredns", "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:coredns"},
                   "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system"}]}),
        ),
        (
            "apps/v1",
            "Deployment",
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "coredns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"k8s-app": "kube-dns"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": "10%"}},
                "template": {
                    "metadata": {"labels": {"k8s-app": "kube-dns"}},
                    "spec": {
                        "serviceAccountName": "coredns",
                        "dnsPolicy": "Default",
                        "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"}],
                        "containers": [{
                            "name": "coredns",
                            "image": "dns",
                            "args": ["--cluster-domain=cluster.local"],
                            "ports": [
                                {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"}],
                            "resources": {"requests": {"cpu": "100m", "memory": "70Mi"}, "limits": {"memory": "170Mi"}},
                            "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}, "initialDelaySeconds": 60, "timeoutSeconds": 5, "failureThreshold": 5},
                            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}, "periodSeconds": 2}
                        }]
                    }
                }
            }}),
        ),
        (
            "v1",
            "Service",
            json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system",
                         "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"}},
            "spec": {
                "clusterIP": DNS_IP,
                "selector": {"k8s-app": "kube-dns"},
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53}]
            }}),
        ),
    ]
}

/// metrics-server as upstream's `components.yaml` installs it: its
/// ServiceAccount; the aggregated reader role; its own role for nodes and
/// pods (and the kubelet's `nodes/stats`, which its Summary scrape is
/// authorized as); the `system:auth-delegator` binding (TokenReview and
/// SubjectAccessReview for delegated authn/authz) and the
/// `extension-apiserver-authentication-reader` binding in kube-system; the
/// Service on 443 → `https`; the Deployment; and the APIService
/// `v1beta1.metrics.k8s.io` that makes the API server proxy
/// `metrics.k8s.io/v1beta1` to it. The kubelets' serving certificates
/// are self-signed, so it scrapes with `--kubelet-insecure-tls`, as ACK's
/// add-on does; it authenticates to them with its service-account token.
fn metrics_server() -> Vec<(&'static str, &'static str, Value)> {
    let rbac = "rbac.authorization.k8s.io/v1";
    let labels = json!({"k8s-app": "metrics-server"});
    let sa =
        json!([{"kind": "ServiceAccount", "name": "metrics-server", "namespace": "kube-system"}]);
    vec![
        (
            "v1",
            "ServiceAccount",
            json!({"apiVersion": "v1", "kind": "ServiceAccount",
                   "metadata": {"name": "metrics-server", "namespace": "kube-system", "labels": labels}}),
        ),
        // kube-apiserver's bootstrap policy has these two; the emulated
        // API server does not create them, so the add-on does (when absent).
        (
            rbac,
            "ClusterRole",
            json!({"apiVersion": rbac, "kind": "ClusterRole",
                   "metadata": {"name": "system:auth-delegator", "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
                   "rules": [
                       {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
                       {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]}]}),
        ),
        (
            rbac,
            "Role",
            json!({"apiVersion": rbac, "kind": "Role",
                   "metadata": {"name": "extension-apiserver-authentication-reader", "namespace": "kube-system",
                                "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
                   "rules": [{"apiGroups": [""], "resources": ["configmaps"],
                              "resourceNames": ["extension-apiserver-authentication"], "verbs": ["get", "list", "watch"]}]}),
        ),
        (
            rbac,
            "ClusterRole",
            json!({"apiVersion": rbac, "kind": "ClusterRole",
                   "metadata": {"name": "system:aggregated-metrics-reader",
                                "labels": {"k8s-app": "metrics-server",
                                           "rbac.authorization.k8s.io/aggregate-to-admin": "true",
                                           "rbac.authorization.k8s.io/aggregate-to-edit": "true",
                                           "rbac.authorization.k8s.io/aggregate-to-view": "true"}},
                   "rules": [{"apiGroups": ["metrics.k8s.io"], "resources": ["pods", "nodes"], "verbs": ["get", "list", "watch"]}]}),
        ),
        (
            rbac,
            "ClusterRole",
            json!({"apiVersion": rbac, "kind": "ClusterRole",
                   "metadata": {"name": "system:metrics-server", "labels": labels},
                   "rules": [
                       {"apiGroups": [""], "resources": ["nodes/metrics", "nodes/stats"], "verbs": ["get"]},
                       {"apiGroups": [""], "resources": ["pods", "nodes"], "verbs": ["get", "list", "watch"]}]}),
        ),
        (
            rbac,
            "RoleBinding",
            json!({"apiVersion": rbac, "kind": "RoleBinding",
                   "metadata": {"name": "metrics-server-auth-reader", "namespace": "kube-system", "labels": labels},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "extension-apiserver-authentication-reader"},
                   "subjects": sa}),
        ),
        (
            rbac,
            "ClusterRoleBinding",
            json!({"apiVersion": rbac, "kind": "ClusterRoleBinding",
                   "metadata": {"name": "metrics-server:system:auth-delegator", "labels": labels},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:auth-delegator"},
                   "subjects": sa}),
        ),
        (
            rbac,
            "ClusterRoleBinding",
            json!({"apiVersion": rbac, "kind": "ClusterRoleBinding",
                   "metadata": {"name": "system:metrics-server", "labels": labels},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:metrics-server"},
                   "subjects": sa}),
        ),
        (
            "v1",
            "Service",
            json!({"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": "metrics-server", "namespace": "kube-system", "labels": labels},
                   "spec": {"selector": labels,
                            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": "https"}]}}),
        ),
        (
            "apps/v1",
            "Deployment",
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "metrics-server", "namespace": "kube-system", "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "strategy": {"rollingUpdate": {"maxUnavailable": 0}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": "metrics-server",
                        "nodeSelector": {"kubernetes.io/os": "linux"},
                        "containers": [{
                            "name": "metrics-server",
                            "image": "metrics-server",
                            "args": [
                                "--secure-port=10250",
                                "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
                                "--kubelet-use-node-status-port",
                                "--kubelet-insecure-tls",
                                "--metric-resolution=15s"],
                            "ports": [{"name": "https", "containerPort": 10250, "protocol": "TCP"}],
                            "resources": {"requests": {"cpu": "100m", "memory": "200Mi"}}
                        }]
                    }
                }
            }}),
        ),
        (
            "apiregistration.k8s.io/v1",
            "APIService",
            json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
                   "metadata": {"name": "v1beta1.metrics.k8s.io", "labels": labels},
                   "spec": {"group": "metrics.k8s.io", "version": "v1beta1",
                            "service": {"name": "metrics-server", "namespace": "kube-system", "port": 443},
                            "insecureSkipTLSVerify": true,
                            "groupPriorityMinimum": 100, "versionPriority": 100}}),
        ),
    ]
}

/// Creates the add-ons that do not exist yet.
pub async fn install(c: &Client) -> anyhow::Result<()> {
    for (api_version, kind, obj) in coredns().into_iter().chain(metrics_server()) {
        ensure(c, api_version, kind, obj).await?;
    }
    Ok(())
}
