//! Storage keys, laid out exactly as kube-apiserver lays them out in etcd:
//! `/registry/<prefix>/<namespace>/<name>` for namespaced resources and
//! `/registry/<prefix>/<name>` for cluster-scoped ones, where `<prefix>` is
//! the registry's storage prefix (`pods`, `services/specs`, `minions`,
//! `apiregistration.k8s.io/apiservices`, `<group>/<plural>` for custom
//! resources).

use crate::registry::ResourceInfo;

/// The default root, kube-apiserver's `--etcd-prefix`.
pub const DEFAULT_ROOT: &str = "/registry";

/// Maps resources and names to storage keys under one root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyLayout {
    root: String,
}

impl Default for KeyLayout {
    fn default() -> Self {
        Self::new(DEFAULT_ROOT)
    }
}

impl KeyLayout {
    /// `root` is normalised to start with `/` and not end with one.
    pub fn new(root: &str) -> Self {
        let trimmed = root.trim_end_matches('/');
        let root = if trimmed.starts_with('/') {
            trimmed.to_owned()
        } else {
            format!("/{trimmed}")
        };
        Self { root }
    }

    pub fn root(&self) -> &str {
        &self.root
    }

    /// The resource's key prefix, ending in `/`: `/registry/pods/`.
    /// `None` for resources that are never stored.
    pub fn resource_prefix(&self, info: &ResourceInfo) -> Option<String> {
        info.storage_prefix
            .as_ref()
            .map(|p| format!("{}/{p}/", self.root))
    }

    /// The prefix a LIST reads: every object of the resource, or, when
    /// `namespace` is given for a namespaced resource, those in it.
    pub fn list_prefix(&self, info: &ResourceInfo, namespace: Option<&str>) -> Option<String> {
        let base = self.resource_prefix(info)?;
        Some(match namespace {
            Some(ns) if info.namespaced() && !ns.is_empty() => format!("{base}{ns}/"),
            _ => base,
        })
    }

    /// The key of one object; the namespace is ignored for cluster-scoped
    /// resources, and must be non-empty for namespaced ones.
    pub fn object_key(&self, info: &ResourceInfo, namespace: &str, name: &str) -> Option<String> {
        let base = self.resource_prefix(info)?;
        if info.namespaced() {
            if namespace.is_empty() {
                return None;
            }
            Some(format!("{base}{namespace}/{name}"))
        } else {
            Some(format!("{base}{name}"))
        }
    }

    /// Splits a key below the resource's prefix back into (namespace, name);
    /// the namespace is empty for cluster-scoped resources.
    pub fn parse_object_key<'k>(
        &self,
        info: &ResourceInfo,
        key: &'k str,
    ) -> Option<(&'k str, &'k str)> {
        let base = self.resource_prefix(info)?;
        let rest = key.strip_prefix(base.as_str())?;
        if info.namespaced() {
            let (ns, name) = rest.split_once('/')?;
            if ns.is_empty() || name.is_empty() || name.contains('/') {
                return None;
            }
            Some((ns, name))
        } else if rest.is_empty() || rest.contains('/') {
            None
        } else {
            Some(("", rest))
        }
    }

    /// The ClusterIP allocator's bitmap (`/registry/ranges/serviceips`).
    pub fn service_ip_range(&self) -> String {
        format!("{}/ranges/serviceips", self.root)
    }

    /// The NodePort allocator's bitmap (`/registry/ranges/servicenodeports`).
    pub fn node_port_range(&self) -> String {
        format!("{}/ranges/servicenodeports", self.root)
    }
}

/// The smallest key greater than every key with `prefix` (etcd's range end
/// for a prefix scan): the prefix with its last byte incremented.
pub fn prefix_range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.last_mut() {
        if *last < 0xff {
            *last += 1;
            return end;
        }
        end.pop();
    }
    // Every byte was 0xff: etcd uses "\0" to mean "to the end of the keyspace".
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{Registry, from_crd};

    #[test]
    fn keys_match_kube_apiserver_layout() {
        let r = Registry::builtin();
        let k = KeyLayout::default();
        let cases = [
            ("", "pods", "default", "app", "/registry/pods/default/app"),
            (
                "",
                "services",
                "kube-system",
                "kube-dns",
                "/registry/services/specs/kube-system/kube-dns",
            ),
            (
                "",
                "endpoints",
                "default",
                "kubernetes",
                "/registry/services/endpoints/default/kubernetes",
            ),
            (
                "",
                "nodes",
                "",
                "cn-hangzhou.192.168.0.1",
                "/registry/minions/cn-hangzhou.192.168.0.1",
            ),
            (
                "",
                "namespaces",
                "",
                "kube-system",
                "/registry/namespaces/kube-system",
            ),
            (
                "",
                "configmaps",
                "kube-public",
                "cluster-info",
                "/registry/configmaps/kube-public/cluster-info",
            ),
            (
                "",
                "secrets",
                "istio-system",
                "istio-ca-secret",
                "/registry/secrets/istio-system/istio-ca-secret",
            ),
            (
                "",
                "serviceaccounts",
                "default",
                "default",
                "/registry/serviceaccounts/default/default",
            ),
            (
                "",
                "events",
                "default",
                "app.1",
                "/registry/events/default/app.1",
            ),
            (
                "events.k8s.io",
                "events",
                "default",
                "app.1",
                "/registry/events/default/app.1",
            ),
            (
                "apps",
                "deployments",
                "default",
                "web",
                "/registry/deployments/default/web",
            ),
            (
                "apps",
                "replicasets",
                "default",
                "web-1",
                "/registry/replicasets/default/web-1",
            ),
            (
                "apps",
                "daemonsets",
                "kube-system",
                "proxy",
                "/registry/daemonsets/kube-system/proxy",
            ),
            (
                "coordination.k8s.io",
                "leases",
                "kube-node-lease",
                "n1",
                "/registry/leases/kube-node-lease/n1",
            ),
            (
                "rbac.authorization.k8s.io",
                "roles",
                "default",
                "pod-reader",
                "/registry/roles/default/pod-reader",
            ),
            (
                "rbac.authorization.k8s.io",
                "rolebindings",
                "default",
                "read-pods",
                "/registry/rolebindings/default/read-pods",
            ),
            (
                "rbac.authorization.k8s.io",
                "clusterroles",
                "",
                "admin",
                "/registry/clusterroles/admin",
            ),
            (
                "rbac.authorization.k8s.io",
                "clusterrolebindings",
                "",
                "system:kube-controller-manager",
                "/registry/clusterrolebindings/system:kube-controller-manager",
            ),
            (
                "certificates.k8s.io",
                "certificatesigningrequests",
                "",
                "jiang",
                "/registry/certificatesigningrequests/jiang",
            ),
            (
                "discovery.k8s.io",
                "endpointslices",
                "default",
                "kubernetes",
                "/registry/endpointslices/default/kubernetes",
            ),
            (
                "apiregistration.k8s.io",
                "apiservices",
                "",
                "v1beta1.metrics.k8s.io",
                "/registry/apiregistration.k8s.io/apiservices/v1beta1.metrics.k8s.io",
            ),
            (
                "admissionregistration.k8s.io",
                "validatingwebhookconfigurations",
                "",
                "istio-galley",
                "/registry/validatingwebhookconfigurations/istio-galley",
            ),
            (
                "admissionregistration.k8s.io",
                "mutatingwebhookconfigurations",
                "",
                "istio-sidecar-injector",
                "/registry/mutatingwebhookconfigurations/istio-sidecar-injector",
            ),
            (
                "apiextensions.k8s.io",
                "customresourcedefinitions",
                "",
                "gateways.networking.istio.io",
                "/registry/apiextensions.k8s.io/customresourcedefinitions/gateways.networking.istio.io",
            ),
        ];
        for (g, res, ns, name, want) in cases {
            let info = r.preferred(g, res).unwrap();
            let key = k.object_key(info, ns, name).unwrap();
            assert_eq!(key, want);
            assert_eq!(k.parse_object_key(info, &key), Some((ns, name)), "{want}");
        }
    }

    #[test]
    fn custom_resources_live_under_group_and_plural() {
        let crd = serde_json::json!({"spec": {
            "group": "networking.istio.io", "scope": "Namespaced",
            "names": {"plural": "gateways", "kind": "Gateway"},
            "versions": [{"name": "v1alpha3", "served": true, "storage": true}]}});
        let info = &from_crd(&crd)[0];
        let k = KeyLayout::default();
        assert_eq!(
            k.object_key(info, "istio-system", "gw").unwrap(),
            "/registry/networking.istio.io/gateways/istio-system/gw"
        );
        assert_eq!(
            k.list_prefix(info, None).unwrap(),
            "/registry/networking.istio.io/gateways/"
        );
    }

    #[test]
    fn list_prefixes_and_edge_cases() {
        let r = Registry::builtin();
        let k = KeyLayout::new("registry/");
        assert_eq!(k.root(), "/registry");
        let pods = r.preferred("", "pods").unwrap();
        let nodes = r.preferred("", "nodes").unwrap();
        assert_eq!(
            k.list_prefix(pods, Some("default")).unwrap(),
            "/registry/pods/default/"
        );
        assert_eq!(k.list_prefix(pods, None).unwrap(), "/registry/pods/");
        assert_eq!(k.list_prefix(pods, Some("")).unwrap(), "/registry/pods/");
        assert_eq!(
            k.list_prefix(nodes, Some("default")).unwrap(),
            "/registry/minions/"
        );
        assert_eq!(
            k.object_key(pods, "", "x"),
            None,
            "namespaced needs a namespace"
        );
        assert_eq!(
            k.object_key(nodes, "ignored", "n1").unwrap(),
            "/registry/minions/n1"
        );
        assert_eq!(k.parse_object_key(pods, "/registry/pods/default"), None);
        assert_eq!(k.parse_object_key(pods, "/registry/pods/a/b/c"), None);
        assert_eq!(k.parse_object_key(nodes, "/registry/pods/a/b"), None);
        let sar = r
            .preferred("authorization.k8s.io", "subjectaccessreviews")
            .unwrap();
        assert_eq!(k.object_key(sar, "", "x"), None);
        assert_eq!(k.service_ip_range(), "/registry/ranges/serviceips");
        assert_eq!(k.node_port_range(), "/registry/ranges/servicenodeports");
        let custom = KeyLayout::new("/ackemu");
        assert_eq!(
            custom.object_key(nodes, "", "n").unwrap(),
            "/ackemu/minions/n"
        );
    }

    #[test]
    fn range_end() {
        assert_eq!(
            prefix_range_end(b"/registry/pods/"),
            b"/registry/pods0".to_vec()
        );
        assert_eq!(prefix_range_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_range_end(b"\xff\xff"), vec![0]);
    }
}
