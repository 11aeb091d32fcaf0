//! Built-in admission plugins as pure functions of the object, the request
//! and what they look up: ServiceAccount (default account, image pull
//! secrets copied from it, the API access volume), DefaultTolerationSeconds,
//! NodeRestriction, and the Node authorizer's rules for kubelets
//! (`system:node:<name>` in `system:nodes`).

use serde_json::{Value, json};

use crate::rbac::{Attributes, UserInfo};

/// The volume name prefix kube-apiserver gives the API access volume.
pub const API_ACCESS_VOLUME_PREFIX: &str = "kube-api-access-";
/// Where the token, CA and namespace are mounted.
pub const SERVICE_ACCOUNT_MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The ServiceAccount plugin on pod create. `sa` is the pod's account if it
/// exists; `suffix` names the projected volume.
pub fn service_account(pod: &mut Value, sa: Option<&Value>, suffix: &str) -> Result<(), String> {
    if pod["spec"]["serviceAccountName"]
        .as_str()
        .unwrap_or("")
        .is_empty()
    {
        pod["spec"]["serviceAccountName"] = json!("default");
    }
    let name = pod["spec"]["serviceAccountName"]
        .as_str()
        .unwrap_or("default")
        .to_owned();
    pod["spec"]["serviceAccount"] = json!(name);
    let ns = pod["metadata"]["namespace"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    let Some(sa) = sa else {
        return Err(format!(
            "error looking up service account {ns}/{name}: serviceaccount \"{name}\" not found"
        ));
    };
    let no_pull_secrets = pod["spec"]["imagePullSecrets"]
        .as_array()
        .is_none_or(Vec::is_empty);
    if no_pull_secrets
        && let Some(secrets) = sa["imagePullSecrets"].as_array().filter(|s| !s.is_empty())
    {
        pod["spec"]["imagePullSecrets"] = Value::Array(secrets.clone());
    }
    let automount = pod["spec"]["automountServiceAccountToken"]
        .as_bool()
        .or_else(|| sa["automountServiceAccountToken"].as_bool())
        .unwrap_or(true);
    if !automount {
        return Ok(());
    }
    let already = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| {
            c["volumeMounts"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|m| m["mountPath"] == SERVICE_ACCOUNT_MOUNT)
        });
    if already {
        return Ok(());
    }
    let volume = format!("{API_ACCESS_VOLUME_PREFIX}{suffix}");
    let mut volumes = pod["spec"]["volumes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    volumes.push(json!({
        "name": volume,
        "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
        ]}
    }));
    pod["spec"]["volumes"] = Value::Array(volumes);
    for list in ["containers", "initContainers"] {
        if let Some(cs) = pod["spec"][list].as_array_mut() {
            for c in cs {
                let mut mounts = c["volumeMounts"].as_array().cloned().unwrap_or_default();
                mounts.push(
                    json!({"name": volume, "readOnly": true, "mountPath": SERVICE_ACCOUNT_MOUNT}),
                );
                c["volumeMounts"] = Value::Array(mounts);
            }
        }
    }
    Ok(())
}

/// DefaultTolerationSeconds: pods tolerate not-ready/unreachable nodes for
/// 300 s unless they say otherwise.
pub fn default_toleration_seconds(pod: &mut Value) {
    let mut tols = pod["spec"]["tolerations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        let has = tols.iter().any(|t| {
            (t["key"] == key || (t["key"].is_null() && t["operator"] == "Exists"))
                && (t["effect"].is_null() || t["effect"] == "NoExecute")
        });
        if !has {
            tols.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
        }
    }
    pod["spec"]["tolerations"] = Value::Array(tols);
}

/// The node a user acts for, if it is a kubelet identity.
pub fn node_name(user: &UserInfo) -> Option<&str> {
    if !user.groups.iter().any(|g| g == "system:nodes") {
        return None;
    }
    user.name
        .strip_prefix("system:node:")
        .filter(|n| !n.is_empty())
}

/// The Node authorizer: what a kubelet may do. `pod_refs` tells whether a
/// pod bound to the node references the named object (secret, configmap,
/// persistentvolumeclaim, serviceaccount) in the namespace.
pub fn node_authorize(
    node: &str,
    a: &Attributes,
    pod_refs: impl Fn(&str, &str, &str) -> bool,
) -> bool {
    if !a.resource_request {
        return false;
    }
    let read = matches!(a.verb.as_str(), "get" | "list" | "watch");
    match (
        a.api_group.as_str(),
        a.resource.as_str(),
        a.subresource.as_str(),
    ) {
        ("", "nodes", "") | ("", "nodes", "status") => {
            read || (matches!(a.verb.as_str(), "create" | "update" | "patch" | "delete")
                && (a.name == node || a.verb == "create"))
        }
        ("", "pods", "") => read || matches!(a.verb.as_str(), "create" | "delete"),
        ("", "pods", "status") => matches!(a.verb.as_str(), "get" | "update" | "patch"),
        ("", "pods", "eviction") => a.verb == "create",
        ("", "services" | "endpoints", "") | ("discovery.k8s.io", "endpointslices", "") => read,
        ("", "events", "") | ("events.k8s.io", "events", "") => {
            matches!(a.verb.as_str(), "create" | "update" | "patch")
        }
        ("", "secrets" | "configmaps" | "persistentvolumeclaims" | "serviceaccounts", "") => {
            a.verb == "get" && pod_refs(&a.resource, &a.namespace, &a.name)
        }
        ("", "serviceaccounts", "token") => {
            a.verb == "create" && pod_refs("serviceaccounts", &a.namespace, &a.name)
        }
        ("coordination.k8s.io", "leases", "") => {
            a.namespace == "kube-node-lease"
                && (a.name == node || (a.verb == "create" && a.name.is_empty()))
        }
        ("certificates.k8s.io", "certificatesigningrequests", "") => {
            matches!(a.verb.as_str(), "create" | "get" | "list" | "watch")
        }
        ("authentication.k8s.io", "tokenreviews", "")
        | ("authorization.k8s.io", "subjectaccessreviews", "") => a.verb == "create",
        _ => false,
    }
}

/// Whether a pod spec references a named object of `resource`.
pub fn pod_references(pod: &Value, resource: &str, name: &str) -> bool {
    let spec = &pod["spec"];
    match resource {
        "serviceaccounts" => spec["serviceAccountName"] == name,
        "secrets" => {
            spec["imagePullSecrets"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| s["name"] == name)
                || volumes_ref(spec, "secret", "secretName", name)
                || env_ref(spec, "secretKeyRef", "secretRef", name)
        }
        "configmaps" => {
            volumes_ref(spec, "configMap", "name", name)
                || env_ref(spec, "configMapKeyRef", "configMapRef", name)
        }
        "persistentvolumeclaims" => volumes_ref(spec, "persistentVolumeClaim", "claimName", name),
        _ => false,
    }
}

fn volumes_ref(spec: &Value, kind: &str, field: &str, name: &str) -> bool {
    spec["volumes"].as_array().into_iter().flatten().any(|v| {
        v[kind][field] == name
            || v["projected"]["sources"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| s[kind]["name"] == name)
    })
}

fn env_ref(spec: &Value, key_ref: &str, from_ref: &str, name: &str) -> bool {
    ["containers", "initContainers"].iter().any(|list| {
        spec[*list].as_array().into_iter().flatten().any(|c| {
            c["env"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|e| e["valueFrom"][key_ref]["name"] == name)
                || c["envFrom"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|e| e[from_ref]["name"] == name)
        })
    })
}

/// NodeRestriction: a kubelet may only create mirror pods bound to itself,
/// change its own Node, and update the status of pods bound to it.
pub fn node_restriction(
    node: &str,
    resource: &str,
    subresource: &str,
    obj: &Value,
    old: Option<&Value>,
) -> Result<(), String> {
    match (resource, subresource) {
        ("nodes", _) => {
            let name = obj["metadata"]["name"].as_str().unwrap_or("");
            if name != node {
                return Err(format!(
                    "node \"{node}\" is not allowed to modify node \"{name}\""
                ));
            }
        }
        ("pods", "") if old.is_none() => {
            let bound = obj["spec"]["nodeName"].as_str().unwrap_or("");
            if bound != node {
                return Err(format!(
                    "node \"{node}\" can only create pods with spec.nodeName set to itself"
                ));
            }
            if obj["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_null() {
                return Err(format!(
                    "pod does not have \"kubernetes.io/config.mirror\" annotation, node \"{node}\" can only create mirror pods"
                ));
            }
        }
        ("pods", _) => {
            let bound = old.unwrap_or(obj)["spec"]["nodeName"]
                .as_str()
                .unwrap_or("");
            if bound != node {
                return Err(format!(
                    "node \"{node}\" can only update pod status for pods with spec.nodeName set to itself"
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_account_plugin() {
        let sa = json!({"metadata": {"name": "default"}, "imagePullSecrets": [{"name": "acr-credential"}]});
        let mut pod = json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": [{"name": "app"}]}});
        service_account(&mut pod, Some(&sa), "abcde").unwrap();
        assert_eq!(pod["spec"]["serviceAccountName"], "default");
        assert_eq!(
            pod["spec"]["imagePullSecrets"],
            json!([{"name": "acr-credential"}])
        );
        assert_eq!(pod["spec"]["volumes"][0]["name"], "kube-api-access-abcde");
        assert_eq!(
            pod["spec"]["containers"][0]["volumeMounts"][0]["mountPath"],
            SERVICE_ACCOUNT_MOUNT
        );
        // Idempotent on a pod that already has the mount.
        let before = pod.clone();
        service_account(&mut pod, Some(&sa), "zzzzz").unwrap();
        assert_eq!(pod, before);
        // Own pull secrets win; automount can be turned off.
        let mut own = json!({"metadata": {"namespace": "d"}, "spec": {"imagePullSecrets": [{"name": "mine"}], "automountServiceAccountToken": false, "containers": [{}]}});
        service_account(&mut own, Some(&sa), "x").unwrap();
        assert_eq!(own["spec"]["imagePullSecrets"], json!([{"name": "mine"}]));
        assert!(own["spec"]["volumes"].is_null());
        let mut orphan =
            json!({"metadata": {"namespace": "new"}, "spec": {"serviceAccountName": "app"}});
        assert_eq!(
            service_account(&mut orphan, None, "x").unwrap_err(),
            "error looking up service account new/app: serviceaccount \"app\" not found"
        );
    }

    #[test]
    fn tolerations_default_to_300_seconds() {
        let mut pod = json!({"spec": {"tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10}]}});
        default_toleration_seconds(&mut pod);
        let tols = pod["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(tols.len(), 2);
        assert_eq!(tols[0]["tolerationSeconds"], 10);
        assert_eq!(tols[1]["key"], "node.kubernetes.io/not-ready");
        assert_eq!(tols[1]["tolerationSeconds"], 300);
        let mut all = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        default_toleration_seconds(&mut all);
        assert_eq!(all["spec"]["tolerations"].as_array().unwrap().len(), 1);
    }

    fn attrs(
        verb: &str,
        group: &str,
        resource: &str,
        sub: &str,
        ns: &str,
        name: &str,
    ) -> Attributes {
        Attributes {
            verb: verb.into(),
            resource_request: true,
            namespace: ns.into(),
            api_group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            name: name.into(),
            path: String::new(),
        }
    }

    #[test]
    fn node_authorizer_table() {
        let user = UserInfo::authenticated("system:node:n1", &["system:nodes".into()]);
        assert_eq!(node_name(&user), Some("n1"));
        assert_eq!(
            node_name(&UserInfo::authenticated("system:node:n1", &[])),
            None
        );
        let refs = |res: &str, ns: &str, name: &str| {
            res == "secrets" && ns == "default" && name == "mounted"
        };
        let cases = [
            (attrs("update", "", "nodes", "status", "", "n1"), true),
            (attrs("update", "", "nodes", "status", "", "n2"), false),
            (attrs("list", "", "pods", "", "", ""), true),
            (attrs("patch", "", "pods", "status", "default", "p"), true),
            (attrs("get", "", "secrets", "", "default", "mounted"), true),
            (attrs("get", "", "secrets", "", "default", "other"), false),
            (attrs("list", "", "secrets", "", "default", ""), false),
            (
                attrs(
                    "update",
                    "coordination.k8s.io",
                    "leases",
                    "",
                    "kube-node-lease",
                    "n1",
                ),
                true,
            ),
            (
                attrs(
                    "update",
                    "coordination.k8s.io",
                    "leases",
                    "",
                    "kube-node-lease",
                    "n2",
                ),
                false,
            ),
            (
                attrs(
                    "create",
                    "certificates.k8s.io",
                    "certificatesigningrequests",
                    "",
                    "",
                    "",
                ),
                true,
            ),
            (attrs("create", "", "events", "", "default", ""), true),
            (
                attrs("delete", "apps", "deployments", "", "default", "web"),
                false,
            ),
        ];
        for (a, want) in cases {
            assert_eq!(node_authorize("n1", &a, refs), want, "{a:?}");
        }
    }

    #[test]
    fn pod_references_and_node_restriction() {
        let pod = json!({"spec": {"nodeName": "n1", "serviceAccountName": "app",
            "volumes": [{"name": "v", "secret": {"secretName": "s1"}}, {"name": "c", "configMap": {"name": "cm1"}},
                        {"name": "p", "projected": {"sources": [{"secret": {"name": "s2"}}]}}],
            "containers": [{"envFrom": [{"configMapRef": {"name": "cm2"}}], "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "k"}}}]}]}});
        for (res, name) in [
            ("secrets", "s1"),
            ("secrets", "s2"),
            ("secrets", "s3"),
            ("configmaps", "cm1"),
            ("configmaps", "cm2"),
            ("serviceaccounts", "app"),
        ] {
            assert!(pod_references(&pod, res, name), "{res}/{name}");
        }
        assert!(!pod_references(&pod, "secrets", "nope"));
        let node = json!({"metadata": {"name": "n2"}});
        assert_eq!(
            node_restriction("n1", "nodes", "status", &node, None).unwrap_err(),
            "node \"n1\" is not allowed to modify node \"n2\""
        );
        assert!(node_restriction("n1", "pods", "status", &pod, Some(&pod)).is_ok());
        let other = json!({"spec": {"nodeName": "n2"}});
        assert!(node_restriction("n1", "pods", "status", &other, Some(&other)).is_err());
        let mirror = json!({"metadata": {"annotations": {"kubernetes.io/config.mirror": "x"}}, "spec": {"nodeName": "n1"}});
        assert!(node_restriction("n1", "pods", "", &mirror, None).is_ok());
        assert!(node_restriction("n1", "pods", "", &pod, None).is_err());
    }
}
