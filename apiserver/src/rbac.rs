//! The RBAC authorizer as a pure function of the request attributes and the
//! Role/ClusterRole/binding objects (`plugin/pkg/auth/authorizer/rbac`),
//! and the Forbidden message kube-apiserver prints.

use std::sync::Arc;

use serde_json::Value;

/// Who is asking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    pub fn anonymous() -> Self {
        Self {
            name: "system:anonymous".to_owned(),
            groups: vec!["system:unauthenticated".to_owned()],
        }
    }

    /// An authenticated user: `system:authenticated` is added to the groups.
    pub fn authenticated(name: &str, groups: &[String]) -> Self {
        let mut groups = groups.to_vec();
        if !groups.iter().any(|g| g == "system:authenticated") {
            groups.push("system:authenticated".to_owned());
        }
        Self {
            name: name.to_owned(),
            groups,
        }
    }
}

/// The attributes an authorization decision is made on.
#[derive(Clone, Debug, Default)]
pub struct Attributes {
    pub verb: String,
    pub resource_request: bool,
    pub namespace: String,
    pub api_group: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
    pub path: String,
}

/// The RBAC objects a decision reads.
#[derive(Clone, Debug, Default)]
pub struct RbacView {
    pub cluster_roles: Vec<Arc<Value>>,
    pub cluster_role_bindings: Vec<Arc<Value>>,
    pub roles: Vec<Arc<Value>>,
    pub role_bindings: Vec<Arc<Value>>,
}

fn strs(v: &Value) -> impl Iterator<Item = &str> {
    v.as_array().into_iter().flatten().filter_map(Value::as_str)
}

fn has(v: &Value, want: &str) -> bool {
    strs(v).any(|s| s == "*" || s == want)
}

fn subject_matches(subject: &Value, user: &UserInfo, binding_ns: &str) -> bool {
    let name = subject["name"].as_str().unwrap_or("");
    match subject["kind"].as_str().unwrap_or("") {
        "User" => name == user.name,
        "Group" => user.groups.iter().any(|g| g == name),
        "ServiceAccount" => {
            let ns = match subject["namespace"].as_str() {
                Some(n) if !n.is_empty() => n,
                _ => binding_ns,
            };
            user.name == format!("system:serviceaccount:{ns}:{name}")
        }
        _ => false,
    }
}

fn resource_matches(rule: &Value, a: &Attributes) -> bool {
    let combined = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    strs(&rule["resources"]).any(|r| {
        r == "*"
            || r == combined
            || (a.subresource.is_empty() && r == a.resource)
            || (!a.subresource.is_empty()
                && (r == format!("{}/*", a.resource) || r == format!("*/{}", a.subresource)))
    })
}

/// Whether one PolicyRule allows the request.
pub fn rule_allows(rule: &Value, a: &Attributes) -> bool {
    if !has(&rule["verbs"], &a.verb) {
        return false;
    }
    if a.resource_request {
        let names = rule["resourceNames"].as_array().map(Vec::len).unwrap_or(0);
        has(&rule["apiGroups"], &a.api_group)
            && resource_matches(rule, a)
            && (names == 0 || strs(&rule["resourceNames"]).any(|n| n == a.name))
    } else {
        strs(&rule["nonResourceURLs"]).any(|u| {
            u == "*"
                || u == a.path
                || (u.ends_with('*') && a.path.starts_with(u.trim_end_matches('*')))
        })
    }
}

fn find<'a>(objs: &'a [Arc<Value>], ns: Option<&str>, name: &str) -> Option<&'a Value> {
    objs.iter().map(|o| o.as_ref()).find(|o| {
        o["metadata"]["name"] == name && ns.is_none_or(|n| o["metadata"]["namespace"] == n)
    })
}

fn rules_allow(role: Option<&Value>, a: &Attributes) -> bool {
    role.and_then(|r| r["rules"].as_array())
        .is_some_and(|rules| rules.iter().any(|r| rule_allows(r, a)))
}

/// RBAC: allowed if any ClusterRoleBinding, or any RoleBinding in the
/// request's namespace, binds the user to a role with a matching rule.
pub fn authorize(view: &RbacView, user: &UserInfo, a: &Attributes) -> bool {
    for b in &view.cluster_role_bindings {
        if !b["subjects"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| subject_matches(s, user, ""))
        {
            continue;
        }
        let role = find(
            &view.cluster_roles,
            None,
            b["roleRef"]["name"].as_str().unwrap_or(""),
        );
        if rules_allow(role, a) {
            return true;
        }
    }
    if a.namespace.is_empty() {
        return false;
    }
    for b in view
        .role_bindings
        .iter()
        .filter(|b| b["metadata"]["namespace"] == a.namespace.as_str())
    {
        if !b["subjects"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| subject_matches(s, user, &a.namespace))
        {
            continue;
        }
        let name = b["roleRef"]["name"].as_str().unwrap_or("");
        let role = match b["roleRef"]["kind"].as_str() {
            Some("ClusterRole") => find(&view.cluster_roles, None, name),
            _ => find(&view.roles, Some(&a.namespace), name),
        };
        if rules_allow(role, a) {
            return true;
        }
    }
    false
}

/// `User "jiang" cannot list resource "pods" in API group "" in the namespace "kube-system"`.
pub fn forbidden_reason(user: &UserInfo, a: &Attributes) -> String {
    if !a.resource_request {
        return format!("User {:?} cannot {} path {:?}", user.name, a.verb, a.path);
    }
    let resource = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    if a.namespace.is_empty() {
        format!(
            "User {:?} cannot {} resource {:?} in API group {:?} at the cluster scope",
            user.name, a.verb, resource, a.api_group
        )
    } else {
        format!(
            "User {:?} cannot {} resource {:?} in API group {:?} in the namespace {:?}",
            user.name, a.verb, resource, a.api_group, a.namespace
        )
    }
}

/// The full Forbidden message (`pods "x" is forbidden: ...`).
pub fn forbidden_message(user: &UserInfo, a: &Attributes) -> String {
    let reason = forbidden_reason(user, a);
    if !a.resource_request {
        return format!("forbidden: {reason}");
    }
    let gr = if a.api_group.is_empty() {
        a.resource.clone()
    } else {
        format!("{}.{}", a.resource, a.api_group)
    };
    if a.name.is_empty() {
        format!("{gr} is forbidden: {reason}")
    } else {
        format!("{gr} \"{}\" is forbidden: {reason}", a.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view() -> RbacView {
        RbacView {
            cluster_roles: vec![
                Arc::new(json!({"metadata": {"name": "cluster-admin"},
                    "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}, {"nonResourceURLs": ["*"], "verbs": ["*"]}]})),
                Arc::new(json!({"metadata": {"name": "system:discovery"},
                    "rules": [{"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/version"], "verbs": ["get"]}]})),
                Arc::new(json!({"metadata": {"name": "view-logs"},
                    "rules": [{"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}]})),
            ],
            cluster_role_bindings: vec![
                Arc::new(
                    json!({"metadata": {"name": "cluster-admin"}, "roleRef": {"kind": "ClusterRole", "name": "cluster-admin"},
                    "subjects": [{"kind": "Group", "name": "system:masters"}]}),
                ),
                Arc::new(
                    json!({"metadata": {"name": "system:discovery"}, "roleRef": {"kind": "ClusterRole", "name": "system:discovery"},
                    "subjects": [{"kind": "Group", "name": "system:authenticated"}]}),
                ),
            ],
            roles: vec![Arc::new(
                json!({"metadata": {"name": "pod-reader", "namespace": "default"},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "watch", "list"]},
                          {"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": ["web"], "verbs": ["get"]}]}),
            )],
            role_bindings: vec![
                Arc::new(
                    json!({"metadata": {"name": "read-pods", "namespace": "default"},
                    "roleRef": {"kind": "Role", "name": "pod-reader"}, "subjects": [{"kind": "User", "name": "jiang"}]}),
                ),
                Arc::new(json!({"metadata": {"name": "logs", "namespace": "default"},
                    "roleRef": {"kind": "ClusterRole", "name": "view-logs"}, "subjects": [{"kind": "ServiceAccount", "name": "default"}]})),
            ],
        }
    }

    fn res(verb: &str, ns: &str, group: &str, resource: &str, sub: &str, name: &str) -> Attributes {
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
    fn decisions() {
        let v = view();
        let admin = UserInfo::authenticated("kubernetes-admin", &["system:masters".to_owned()]);
        let jiang = UserInfo::authenticated("jiang", &["dev".to_owned()]);
        let sa = UserInfo::authenticated("system:serviceaccount:default:default", &[]);
        let anon = UserInfo::anonymous();
        let nonres = |path: &str| Attributes {
            verb: "get".into(),
            path: path.into(),
            ..Default::default()
        };
        let cases = [
            (
                &admin,
                res("delete", "kube-system", "", "nodes", "", "n1"),
                true,
            ),
            (&jiang, res("list", "default", "", "pods", "", ""), true),
            (&jiang, res("get", "default", "", "pods", "", "app"), true),
            (&jiang, res("watch", "default", "", "pods", "", ""), true),
            (
                &jiang,
                res("list", "kube-system", "", "pods", "", ""),
                false,
            ),
            (
                &jiang,
                res("delete", "default", "", "pods", "", "app"),
                false,
            ),
            (
                &jiang,
                res("get", "default", "", "pods", "log", "app"),
                false,
            ),
            (
                &jiang,
                res("list", "default", "", "services", "", ""),
                false,
            ),
            (
                &jiang,
                res("get", "default", "apps", "deployments", "", "web"),
                true,
            ),
            (
                &jiang,
                res("get", "default", "apps", "deployments", "", "db"),
                false,
            ),
            (&jiang, res("list", "", "", "nodes", "", ""), false),
            (&sa, res("get", "default", "", "pods", "log", "app"), true),
            (&sa, res("get", "default", "", "pods", "", "app"), false),
            (&jiang, nonres("/apis/apps/v1"), true),
            (&jiang, nonres("/metrics"), false),
            (&anon, nonres("/api"), false),
        ];
        for (user, attrs, want) in cases {
            assert_eq!(authorize(&v, user, &attrs), want, "{} {attrs:?}", user.name);
        }
    }

    #[test]
    fn forbidden_messages_match_kubernetes() {
        let jiang = UserInfo::authenticated("jiang", &["dev".to_owned()]);
        assert_eq!(
            forbidden_message(&jiang, &res("list", "kube-system", "", "pods", "", "")),
            "pods is forbidden: User \"jiang\" cannot list resource \"pods\" in API group \"\" in the namespace \"kube-system\""
        );
        assert_eq!(
            forbidden_message(
                &jiang,
                &res("delete", "default", "apps", "deployments", "", "web")
            ),
            "deployments.apps \"web\" is forbidden: User \"jiang\" cannot delete resource \"deployments\" in API group \"apps\" in the namespace \"default\""
        );
        assert_eq!(
            forbidden_message(&jiang, &res("list", "", "", "nodes", "", "")),
            "nodes is forbidden: User \"jiang\" cannot list resource \"nodes\" in API group \"\" at the cluster scope"
        );
        assert_eq!(
            forbidden_message(&jiang, &res("get", "default", "", "pods", "log", "app")),
            "pods \"app\" is forbidden: User \"jiang\" cannot get resource \"pods/log\" in API group \"\" in the namespace \"default\""
        );
        let a = Attributes {
            verb: "get".into(),
            path: "/metrics".into(),
            ..Default::default()
        };
        assert_eq!(
            forbidden_message(&jiang, &a),
            "forbidden: User \"jiang\" cannot get path \"/metrics\""
        );
    }
}
