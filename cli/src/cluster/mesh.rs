//! The service mesh add-on (`ackemu up --mesh`): Istio 1.x's control plane
//! as ordinary cluster objects in `istio-system` — Pilot (discovery on
//! `istio-pilot.istio-system:15010`), Citadel (the self-signed mesh CA it
//! keeps in secret `istio-ca-secret`, one year of cluster time), Galley
//! (Service `istio-galley.istio-system.svc:443` serving the
//! `pilot.validation.istio.io` validating webhook and, in place of Istio's
//! separate sidecar-injector Deployment, the `sidecar-injector.istio.io`
//! mutating webhook that adds the `istio-proxy` container to pods of
//! namespaces labelled `istio-injection=enabled`) and the mesh CRDs.
//! Galley registers both webhook configurations itself with Citadel's root
//! as caBundle, as Galley 1.x did. Images are the registry's built-in
//! `mesh-*` names; the containers get the cluster clock's epoch and scale
//! so their certificates are dated in cluster time.

use ackemu_base::clock::Clock;
use ackemu_kube::client::Client;
use serde_json::{Value, json};

use super::kubeinit::ensure;

/// The mesh's namespace.
pub const NAMESPACE: &str = "istio-system";

const RBAC: &str = "rbac.authorization.k8s.io/v1";

/// The mesh's custom resource kinds: (plural, kind, short names).
const CRDS: &[(&str, &str, &[&str])] = &[
    ("virtualservices", "VirtualService", &["vs"]),
    ("destinationrules", "DestinationRule", &["dr"]),
    ("gateways", "Gateway", &["gw"]),
    ("serviceentries", "ServiceEntry", &["se"]),
    ("sidecars", "Sidecar", &[]),
];

fn crd(plural: &str, kind: &str, short: &[&str]) -> Value {
    let group = "networking.istio.io";
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{group}"),
                     "labels": {"app": "istio-pilot", "chart": "istio", "heritage": "Tiller", "release": "istio"}},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"plural": plural, "singular": kind.to_ascii_lowercase(), "kind": kind,
                           "shortNames": short, "categories": ["istio-io", "networking-istio-io"]},
                 "versions": [{"name": "v1alpha3", "served": true, "storage": true,
                               "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}})
}

fn service_account(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ServiceAccount",
           "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"release": "istio"}}})
}

fn role_and_binding(component: &str, rules: Value) -> [(&'static str, &'static str, Value); 2] {
    let name = format!("istio-{component}-{NAMESPACE}");
    [
        (
            RBAC,
            "ClusterRole",
            json!({"apiVersion": RBAC, "kind": "ClusterRole",
                   "metadata": {"name": name, "labels": {"app": component, "release": "istio"}},
                   "rules": rules}),
        ),
        (
            RBAC,
            "ClusterRoleBinding",
            json!({"apiVersion": RBAC, "kind": "ClusterRoleBinding",
                   "metadata": {"name": name, "labels": {"app": component, "release": "istio"}},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
                   "subjects": [{"kind": "ServiceAccount", "name": format!("istio-{component}-service-account"), "namespace": NAMESPACE}]}),
        ),
    ]
}

/// A Deployment of one mesh program.
fn deployment(
    name: &str,
    app: &str,
    image: &str,
    args: &[&str],
    ports: Value,
    probe: Value,
    clock_env: &Value,
) -> Value {
    let mut container = json!({
        "name": app,
        "image": image,
        "args": args,
        "ports": ports,
        "env": clock_env,
        "resources": {"requests": {"cpu": "10m", "memory": "100Mi"}},
    });
    if !probe.is_null() {
        container["readinessProbe"] = probe;
    }
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": app, "istio": app, "release": "istio"}},
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": {"istio": app}},
        "template": {
            "metadata": {"labels": {"app": app, "istio": app},
                         "annotations": {"sidecar.istio.io/inject": "false"}},
            "spec": {
                "serviceAccountName": format!("istio-{app}-service-account"),
                "containers": [container]
            }
        }
    }})
}

fn service(name: &str, app: &str, ports: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": app, "istio": app}},
           "spec": {"selector": {"istio": app}, "ports": ports}})
}

/// The add-on's objects in creation order.
pub fn objects(clock: &Clock) -> Vec<(&'static str, &'static str, Value)> {
    let clock_env = json!([
        {"name": "ACKEMU_TIME_SCALE", "value": clock.time_scale().to_string()},
        {"name": "ACKEMU_CLUSTER_EPOCH_MS", "value": clock.epoch_unix_ms().to_string()},
    ]);
    let mut out: Vec<(&'static str, &'static str, Value)> = vec![(
        "v1",
        "Namespace",
        json!({"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": NAMESPACE, "labels": {"istio-injection": "disabled"}}}),
    )];
    for (plural, kind, short) in CRDS {
        out.push((
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            crd(plural, kind, short),
        ));
    }
    for c in ["pilot", "citadel", "galley"] {
        out.push((
            "v1",
            "ServiceAccount",
            service_account(&format!("istio-{c}-service-account")),
        ));
    }
    let read = json!(["get", "list", "watch"]);
    out.extend(role_and_binding(
        "pilot",
        json!([
            {"apiGroups": ["config.istio.io", "networking.istio.io", "authentication.istio.io", "rbac.istio.io"], "resources": ["*"], "verbs": read},
            {"apiGroups": [""], "resources": ["services", "endpoints", "pods", "namespaces", "nodes", "secrets"], "verbs": read},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": read},
        ]),
    ));
    out.extend(role_and_binding(
        "citadel",
        json!([
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "get", "list", "watch", "update", "delete"]},
            {"apiGroups": [""], "resources": ["serviceaccounts", "services", "namespaces"], "verbs": read},
        ]),
    ));
    out.extend(role_and_binding(
        "galley",
        json!([
            {"apiGroups": ["admissionregistration.k8s.io"], "resources": ["validatingwebhookconfigurations", "mutatingwebhookconfigurations"],
             "verbs": ["get", "list", "watch", "create", "update", "patch"]},
            {"apiGroups": ["config.istio.io", "networking.istio.io", "authentication.istio.io", "rbac.istio.io"], "resources": ["*"], "verbs": read},
            {"apiGroups": [""], "resources": ["secrets", "pods", "nodes", "services", "endpoints", "namespaces"], "verbs": read},
        ]),
    ));
    out.push((
        "v1",
        "Service",
        service(
            "istio-pilot",
            "pilot",
            json!([
                {"name": "grpc-xds", "port": 15010, "targetPort": 15010, "protocol": "TCP"},
                {"name": "http-monitoring", "port": 15014, "targetPort": 15014, "protocol": "TCP"},
                {"name": "http-legacy-discovery", "port": 8080, "targetPort": 8080, "protocol": "TCP"}]),
        ),
    ));
    out.push((
        "v1",
        "Service",
        service(
            "istio-galley",
            "galley",
            json!([{"name": "https-validation", "port": 443, "targetPort": 443, "protocol": "TCP"}]),
        ),
    ));
    out.push((
        "apps/v1",
        "Deployment",
        deployment(
            "istio-citadel",
            "citadel",
            "mesh-ca",
            &[
                "--self-signed-ca=true",
                "--self-signed-ca-cert-ttl=8760h",
                "--citadel-storage-namespace=istio-system",
            ],
            json!([]),
            Value::Null,
            &clock_env,
        ),
    ));
    out.push((
        "apps/v1",
        "Deployment",
        deployment(
            "istio-pilot",
            "pilot",
            "mesh-pilot",
            &["--grpcAddr=0.0.0.0:15010", "--monitoringAddr=0.0.0.0:15014", "--httpAddr=0.0.0.0:8080", "--domain=cluster.local"],
            json!([{"containerPort": 15010, "protocol": "TCP"}, {"containerPort": 15014, "protocol": "TCP"}, {"containerPort": 8080, "protocol": "TCP"}]),
            json!({"tcpSocket": {"port": 15010}, "initialDelaySeconds": 1, "periodSeconds": 5}),
            &clock_env,
        ),
    ));
    out.push((
        "apps/v1",
        "Deployment",
        deployment(
            "istio-galley",
            "galley",
            "mesh-webhook",
            &[
                "--validation-port=443",
                "--deployment-namespace=istio-system",
                "--webhook-service=istio-galley",
                "--refresh-interval=1m",
            ],
            json!([{"containerPort": 443, "protocol": "TCP"}]),
            json!({"tcpSocket": {"port": 443}, "initialDelaySeconds": 1, "periodSeconds": 5}),
            &clock_env,
        ),
    ));
    out
}

/// Creates the mesh's objects that do not exist yet.
pub async fn install(c: &Client, clock: &Clock) -> anyhow::Result<()> {
    for (api_version, kind, obj) in objects(clock) {
        ensure(c, api_version, kind, obj).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_addon_runs_registry_images_with_the_cluster_clock() {
        let (clock, _) = Clock::manual(1_700_000_000_000);
        let objs = objects(&clock);
        let images: Vec<&str> = objs
            .iter()
            .filter(|(_, k, _)| *k == "Deployment")
            .map(|(_, _, o)| {
                o["spec"]["template"]["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap()
            })
            .collect();
        assert_eq!(images, ["mesh-ca", "mesh-pilot", "mesh-webhook"]);
        for i in images {
            assert!(
                ackemu_cloudsim::actions::registry::PROGRAMS.contains(&i),
                "{i}"
            );
        }
        let citadel = &objs
            .iter()
            .find(|(_, k, o)| *k == "Deployment" && o["metadata"]["name"] == "istio-citadel")
            .unwrap()
            .2;
        let env = &citadel["spec"]["template"]["spec"]["containers"][0]["env"];
        assert_eq!(env[1]["value"], "1700000000000");
        assert!(objs.iter().any(|(_, k, o)| *k == "Service"
            && o["metadata"]["name"] == "istio-galley"
            && o["spec"]["ports"][0]["port"] == 443));
        assert_eq!(
            objs.iter()
                .filter(|(_, k, _)| *k == "CustomResourceDefinition")
                .count(),
            CRDS.len()
        );
    }
}
