//! The cluster add-ons ACK installs, as ordinary cluster objects: cluster
//! DNS (a `coredns` Deployment behind the `kube-dns` Service at
//! 172.19.0.10) and metrics-server (a Deployment behind the
//! `v1beta1.metrics.k8s.io` APIService). Images are the registry's built-in
//! ones; the node agents run them as real processes in pod namespaces.

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

/// Creates the add-ons that do not exist yet.
pub async fn install(c: &Client) -> anyhow::Result<()> {
    for (api_version, kind, obj) in coredns() {
        ensure(c, api_version, kind, obj).await?;
    }
    Ok(())
}
