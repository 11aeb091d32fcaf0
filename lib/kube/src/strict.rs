//! Unknown-field detection for built-in kinds (server-side field
//! validation, `fieldValidation=Strict|Warn`): the object is decoded into
//! its `k8s-openapi` type and encoded again; fields of the input that did
//! not survive are unknown. Paths read like Kubernetes' (`spec.replcas`,
//! `spec.template.spec.containers[0].imagee`).

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api;

fn roundtrip<T: DeserializeOwned + Serialize>(obj: &Value) -> Option<Vec<String>> {
    let typed: T = serde_json::from_value(obj.clone()).ok()?;
    let back = serde_json::to_value(&typed).ok()?;
    let mut out = Vec::new();
    diff("", obj, &back, &mut out);
    Some(out)
}

fn diff(path: &str, input: &Value, kept: &Value, out: &mut Vec<String>) {
    match (input, kept) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                if v.is_null() {
                    continue;
                }
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match b.get(k) {
                    None => out.push(p),
                    Some(bv) => diff(&p, v, bv, out),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (av, bv)) in a.iter().zip(b).enumerate() {
                diff(&format!("{path}[{i}]"), av, bv, out);
            }
        }
        _ => {}
    }
}

/// The unknown fields of a built-in object, or `None` when the kind has no
/// typed form here or the object does not decode (then nothing is claimed).
pub fn unknown_fields(group: &str, kind: &str, obj: &Value) -> Option<Vec<String>> {
    use api::admissionregistration::v1 as adm;
    use api::apps::v1 as apps;
    use api::certificates::v1 as certs;
    use api::coordination::v1 as coord;
    use api::core::v1 as core;
    use api::discovery::v1 as disc;
    use api::rbac::v1 as rbac;
    match (group, kind) {
        ("", "Pod") => roundtrip::<core::Pod>(obj),
        ("", "Service") => roundtrip::<core::Service>(obj),
        ("", "Namespace") => roundtrip::<core::Namespace>(obj),
        ("", "Node") => roundtrip::<core::Node>(obj),
        ("", "ConfigMap") => roundtrip::<core::ConfigMap>(obj),
        ("", "Secret") => roundtrip::<core::Secret>(obj),
        ("", "ServiceAccount") => roundtrip::<core::ServiceAccount>(obj),
        ("", "Endpoints") => roundtrip::<core::Endpoints>(obj),
        ("", "Event") => roundtrip::<core::Event>(obj),
        ("apps", "Deployment") => roundtrip::<apps::Deployment>(obj),
        ("apps", "ReplicaSet") => roundtrip::<apps::ReplicaSet>(obj),
        ("apps", "DaemonSet") => roundtrip::<apps::DaemonSet>(obj),
        ("coordination.k8s.io", "Lease") => roundtrip::<coord::Lease>(obj),
        ("rbac.authorization.k8s.io", "Role") => roundtrip::<rbac::Role>(obj),
        ("rbac.authorization.k8s.io", "ClusterRole") => roundtrip::<rbac::ClusterRole>(obj),
        ("rbac.authorization.k8s.io", "RoleBinding") => roundtrip::<rbac::RoleBinding>(obj),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            roundtrip::<rbac::ClusterRoleBinding>(obj)
        }
        ("certificates.k8s.io", "CertificateSigningRequest") => {
            roundtrip::<certs::CertificateSigningRequest>(obj)
        }
        ("discovery.k8s.io", "EndpointSlice") => roundtrip::<disc::EndpointSlice>(obj),
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration") => {
            roundtrip::<adm::MutatingWebhookConfiguration>(obj)
        }
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration") => {
            roundtrip::<adm::ValidatingWebhookConfiguration>(obj)
        }
        _ => None,
    }
}

/// Kubernetes' message for a strict decoding failure.
pub fn strict_error(fields: &[String]) -> String {
    let parts: Vec<String> = fields
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    format!("strict decoding error: {}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_typos_and_keeps_known_fields() {
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}, "annotations": null},
            "spec": {"replcas": 3, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "app", "imagee": "x", "ports": [{"containerPort": 80}]}]}}},
            "status": {}});
        let unknown = unknown_fields("apps", "Deployment", &d).unwrap();
        assert_eq!(
            unknown,
            ["spec.replcas", "spec.template.spec.containers[0].imagee"]
        );
        assert_eq!(
            strict_error(&unknown),
            "strict decoding error: unknown field \"spec.replcas\", unknown field \"spec.template.spec.containers[0].imagee\""
        );
        let ok = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "b"}, "immutable": false});
        assert_eq!(
            unknown_fields("", "ConfigMap", &ok).unwrap(),
            Vec::<String>::new()
        );
        // Quantities may be JSON numbers.
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": 1}}}]}});
        assert_eq!(unknown_fields("", "Pod", &pod), Some(Vec::new()));
        // What does not decode is not judged.
        let broken = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": 5}});
        assert_eq!(unknown_fields("", "Pod", &broken), None);
        assert_eq!(unknown_fields("example.com", "Widget", &ok), None);
    }
}
