//! Sidecar injection (`sidecar-injector.istio.io`), as a pure function of
//! the pod: the `istio-proxy` container Istio 1.x's injector template
//! adds (pilot-agent + proxy, readiness `GET :15020/healthz/ready` with
//! the template's thresholds), as the JSON Patch a mutating webhook
//! answers. The `istio-init` iptables redirect is not emulated: the proxy
//! here only needs Pilot's configuration to be ready, which is what the
//! seed's failure is about.

use serde_json::{Value, json};

/// The annotation that marks a pod as injected.
pub const STATUS_ANNOTATION: &str = "sidecar.istio.io/status";
/// A pod's opt-out annotation (`"false"`).
pub const INJECT_ANNOTATION: &str = "sidecar.istio.io/inject";
/// The injected container's name.
pub const PROXY_CONTAINER: &str = "istio-proxy";

/// What the injected container looks like.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    /// The proxy image (a name the node maps to the `sidecar` program).
    pub image: String,
    /// Pilot's discovery address.
    pub discovery_address: String,
    /// pilot-agent's status port.
    pub status_port: u16,
    /// Environment copied into the proxy (the cluster clock, for example).
    pub env: Vec<(String, String)>,
}

impl Default for Template {
    fn default() -> Self {
        Template {
            image: "mesh-sidecar".into(),
            discovery_address: "istio-pilot.istio-system:15010".into(),
            status_port: 15020,
            env: Vec::new(),
        }
    }
}

fn field_env(name: &str, path: &str) -> Value {
    json!({"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}})
}

/// The `istio-proxy` container.
pub fn proxy_container(t: &Template) -> Value {
    let mut env = vec![
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        field_env("INSTANCE_IP", "status.podIP"),
        field_env("SERVICE_ACCOUNT", "spec.serviceAccountName"),
    ];
    env.extend(t.env.iter().map(|(k, v)| json!({"name": k, "value": v})));
    json!({
        "name": PROXY_CONTAINER,
        "image": t.image,
        "args": ["--discoveryAddress", t.discovery_address,
                 "--statusPort", t.status_port.to_string()],
        "env": env,
        "ports": [{"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"}],
        "readinessProbe": {
            "failureThreshold": 30,
            "httpGet": {"path": "/healthz/ready", "port": t.status_port, "scheme": "HTTP"},
            "initialDelaySeconds": 1,
            "periodSeconds": 2,
            "successThreshold": 1,
            "timeoutSeconds": 1
        },
        "resources": {"requests": {"cpu": "10m", "memory": "40Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}},
    })
}

/// Why a pod is not injected, or `None` when it should be.
pub fn skip_reason(pod: &Value) -> Option<&'static str> {
    let ann = &pod["metadata"]["annotations"];
    if ann[INJECT_ANNOTATION].as_str().is_some_and(|v| {
        matches!(
            v.to_ascii_lowercase().as_str(),
            "false" | "n" | "no" | "off"
        )
    }) {
        return Some("pod has the annotation sidecar.istio.io/inject: false");
    }
    if ann[STATUS_ANNOTATION].is_string() {
        return Some("pod already has the sidecar.istio.io/status annotation");
    }
    if pod["spec"]["hostNetwork"].as_bool() == Some(true) {
        return Some("pod uses the host network");
    }
    let has_proxy = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["name"] == PROXY_CONTAINER);
    if has_proxy {
        return Some("pod already has an istio-proxy container");
    }
    None
}

/// The JSON Patch (RFC 6902) that injects the proxy into `pod`, or `None`
/// when the pod is skipped.
pub fn patch(pod: &Value, t: &Template) -> Option<Vec<Value>> {
    if skip_reason(pod).is_some() {
        return None;
    }
    let status = json!({"version": "ackemu", "initContainers": [], "containers": [PROXY_CONTAINER],
                        "volumes": [], "imagePullSecrets": null})
    .to_string();
    let mut ops = Vec::new();
    if pod["spec"]["containers"].is_array() {
        ops.push(json!({"op": "add", "path": "/spec/containers/-", "value": proxy_container(t)}));
    } else {
        ops.push(json!({"op": "add", "path": "/spec/containers", "value": [proxy_container(t)]}));
    }
    if pod["metadata"]["annotations"].is_object() {
        ops.push(json!({"op": "add", "path": "/metadata/annotations/sidecar.istio.io~1status", "value": status}));
    } else {
        ops.push(json!({"op": "add", "path": "/metadata/annotations", "value": {STATUS_ANNOTATION: status}}));
    }
    Some(ops)
}

/// Answer one AdmissionReview for the injector: always allowed, with the
/// patch when the pod is injected.
pub fn review(req: &Value, t: &Template) -> Value {
    use base64::Engine as _;
    let uid = req["request"]["uid"].clone();
    let obj = &req["request"]["object"];
    let mut response = json!({"uid": uid, "allowed": true});
    if obj["kind"].as_str().is_none_or(|k| k == "Pod")
        && let Some(ops) = patch(obj, t)
    {
        let body = serde_json::to_vec(&ops).unwrap_or_default();
        response["patchType"] = json!("JSONPatch");
        response["patch"] = json!(base64::engine::general_purpose::STANDARD.encode(body));
    }
    json!({"apiVersion": req["apiVersion"].as_str().unwrap_or("admission.k8s.io/v1"),
           "kind": "AdmissionReview", "response": response})
}

/// The MutatingWebhookConfiguration the injector keeps registered: pods
/// in namespaces labelled `istio-injection=enabled`, failurePolicy Fail.
pub fn webhook_configuration(name: &str, service: &str, namespace: &str, root_pem: &str) -> Value {
    use base64::Engine as _;
    let ca = base64::engine::general_purpose::STANDARD.encode(root_pem);
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name, "labels": {"app": "sidecarInjectorWebhook", "istio": "sidecar-injector"}},
        "webhooks": [{
            "name": "sidecar-injector.istio.io",
            "clientConfig": {"service": {"name": service, "namespace": namespace, "path": "/inject", "port": 443},
                             "caBundle": ca},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
            "namespaceSelector": {"matchLabels": {"istio-injection": "enabled"}},
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "timeoutSeconds": 10,
            "admissionReviewVersions": ["v1", "v1beta1"],
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(extra: Value) -> Value {
        let mut p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "details-v1"},
                           "spec": {"containers": [{"name": "details", "image": "app"}]}});
        if let (Some(p), Some(e)) = (p.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                p.insert(k.clone(), v.clone());
            }
        }
        p
    }

    #[test]
    fn injects_the_proxy_with_istios_readiness_probe() {
        let ops = patch(&pod(json!({})), &Template::default()).unwrap();
        assert_eq!(ops[0]["path"], "/spec/containers/-");
        let c = &ops[0]["value"];
        assert_eq!(c["name"], "istio-proxy");
        assert_eq!(c["image"], "mesh-sidecar");
        assert_eq!(c["readinessProbe"]["httpGet"]["port"], 15020);
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/healthz/ready");
        assert_eq!(c["readinessProbe"]["failureThreshold"], 30);
        assert_eq!(ops[1]["path"], "/metadata/annotations");
        assert!(ops[1]["value"][STATUS_ANNOTATION].is_string());
    }

    #[test]
    fn skips_opted_out_injected_and_host_network_pods() {
        let t = Template::default();
        let opted = pod(
            json!({"metadata": {"name": "p", "annotations": {"sidecar.istio.io/inject": "false"}}}),
        );
        assert!(patch(&opted, &t).is_none());
        let done =
            pod(json!({"metadata": {"name": "p", "annotations": {STATUS_ANNOTATION: "{}"}}}));
        assert!(patch(&done, &t).is_none());
        let host = pod(json!({"spec": {"hostNetwork": true, "containers": []}}));
        assert!(patch(&host, &t).is_none());
        let with_ann = pod(json!({"metadata": {"name": "p", "annotations": {"a": "b"}}}));
        let ops = patch(&with_ann, &t).unwrap();
        assert_eq!(
            ops[1]["path"],
            "/metadata/annotations/sidecar.istio.io~1status"
        );
    }

    #[test]
    fn reviews_carry_a_base64_json_patch() {
        use base64::Engine as _;
        let req = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                         "request": {"uid": "u1", "object": pod(json!({}))}});
        let r = review(&req, &Template::default());
        assert_eq!(r["response"]["allowed"], true);
        assert_eq!(r["response"]["patchType"], "JSONPatch");
        let raw = base64::engine::general_purpose::STANDARD
            .decode(r["response"]["patch"].as_str().unwrap())
            .unwrap();
        let ops: Vec<Value> = serde_json::from_slice(&raw).unwrap();
        assert_eq!(ops.len(), 2);
    }
}
