//! RequestInfo: what an HTTP request asks for in Kubernetes terms (verb,
//! group, version, namespace, resource, name, subresource), parsed from the
//! method, path and query the way kube-apiserver's `RequestInfoFactory` does.

/// A parsed request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestInfo {
    pub resource_request: bool,
    pub path: String,
    /// Kubernetes verb (`get`, `list`, `watch`, `create`, …); for
    /// non-resource requests the lowercase HTTP method.
    pub verb: String,
    pub api_prefix: String,
    pub api_group: String,
    pub api_version: String,
    pub namespace: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
}

const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

fn query_flag(query: &str, key: &str) -> bool {
    query.split('&').any(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        k == key && (v == "true" || v == "1")
    })
}

/// Parses a request (`path` without the query string).
pub fn parse(method: &str, path: &str, query: &str) -> RequestInfo {
    let mut info = RequestInfo {
        path: path.to_owned(),
        verb: method.to_ascii_lowercase(),
        ..Default::default()
    };
    let parts: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|p| !p.is_empty())
        .collect();
    let (prefix, rest) = match parts.split_first() {
        Some((p, rest)) if *p == "api" || *p == "apis" => (*p, rest),
        _ => return info,
    };
    let mut cur: Vec<&str> = rest.to_vec();
    let (group, version) = if prefix == "api" {
        match cur.first() {
            Some(v) => {
                let v = v.to_string();
                cur.remove(0);
                (String::new(), v)
            }
            None => return info,
        }
    } else {
        if cur.len() < 2 {
            return info;
        }
        let g = cur.remove(0).to_owned();
        let v = cur.remove(0).to_owned();
        (g, v)
    };
    if cur.is_empty() {
        // Discovery of a group version is a non-resource request.
        return info;
    }
    info.resource_request = true;
    info.api_prefix = prefix.to_owned();
    info.api_group = group;
    info.api_version = version;
    info.verb = match method {
        "POST" => "create",
        "GET" | "HEAD" => "get",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" => "delete",
        _ => "",
    }
    .to_owned();
    if cur[0] == "watch" {
        cur.remove(0);
        info.verb = "watch".to_owned();
        if cur.is_empty() {
            info.resource_request = false;
            return info;
        }
    }
    if cur[0] == "namespaces" && cur.len() > 1 {
        info.namespace = cur[1].to_owned();
        if cur.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&cur[2]) {
            cur.drain(..2);
        }
    }
    info.resource = cur[0].to_owned();
    if cur.len() >= 2 {
        info.name = cur[1].to_owned();
    }
    if cur.len() >= 3 {
        info.subresource = cur[2].to_owned();
    }
    if info.name.is_empty() && info.verb == "get" {
        info.verb = "list".to_owned();
    }
    if info.name.is_empty() && info.verb == "delete" {
        info.verb = "deletecollection".to_owned();
    }
    if (info.verb == "list" || info.verb == "get") && query_flag(query, "watch") {
        info.verb = "watch".to_owned();
    }
    info
}

/// Whether a request is long-running (exempt from timeouts and max-in-flight).
pub fn long_running(info: &RequestInfo) -> bool {
    info.verb == "watch"
        || info.verb == "proxy"
        || (info.resource_request
            && matches!(
                info.subresource.as_str(),
                "attach" | "exec" | "proxy" | "log" | "portforward"
            ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        // (method, path, query, resource_request, verb, group, version, ns, resource, name, sub)
        let cases = [
            (
                "GET",
                "/api/v1/namespaces/default/pods",
                "",
                true,
                "list",
                "",
                "v1",
                "default",
                "pods",
                "",
                "",
            ),
            (
                "GET",
                "/api/v1/namespaces/default/pods",
                "watch=true",
                true,
                "watch",
                "",
                "v1",
                "default",
                "pods",
                "",
                "",
            ),
            (
                "GET",
                "/api/v1/namespaces/default/pods/app",
                "",
                true,
                "get",
                "",
                "v1",
                "default",
                "pods",
                "app",
                "",
            ),
            (
                "GET",
                "/api/v1/namespaces/default/pods/app/log",
                "",
                true,
                "get",
                "",
                "v1",
                "default",
                "pods",
                "app",
                "log",
            ),
            (
                "POST",
                "/api/v1/namespaces/default/pods/app/binding",
                "",
                true,
                "create",
                "",
                "v1",
                "default",
                "pods",
                "app",
                "binding",
            ),
            (
                "GET",
                "/api/v1/pods",
                "",
                true,
                "list",
                "",
                "v1",
                "",
                "pods",
                "",
                "",
            ),
            (
                "GET",
                "/api/v1/namespaces",
                "",
                true,
                "list",
                "",
                "v1",
                "",
                "namespaces",
                "",
                "",
            ),
            (
                "GET",
                "/api/v1/namespaces/kube-system",
                "",
                true,
                "get",
                "",
                "v1",
                "kube-system",
                "namespaces",
                "kube-system",
                "",
            ),
            (
                "PUT",
                "/api/v1/namespaces/t/finalize",
                "",
                true,
                "update",
                "",
                "v1",
                "t",
                "namespaces",
                "t",
                "finalize",
            ),
            (
                "DELETE",
                "/apis/apps/v1/namespaces/default/deployments/web",
                "",
                true,
                "delete",
                "apps",
                "v1",
                "default",
                "deployments",
                "web",
                "",
            ),
            (
                "DELETE",
                "/apis/apps/v1/namespaces/default/deployments",
                "",
                true,
                "deletecollection",
                "apps",
                "v1",
                "default",
                "deployments",
                "",
                "",
            ),
            (
                "PATCH",
                "/apis/apps/v1/namespaces/default/deployments/web/scale",
                "",
                true,
                "patch",
                "apps",
                "v1",
                "default",
                "deployments",
                "web",
                "scale",
            ),
            (
                "GET",
                "/api/v1/watch/namespaces/default/pods",
                "",
                true,
                "watch",
                "",
                "v1",
                "default",
                "pods",
                "",
                "",
            ),
            (
                "GET",
                "/api/v1/nodes/n1/status",
                "",
                true,
                "get",
                "",
                "v1",
                "",
                "nodes",
                "n1",
                "status",
            ),
        ];
        for (m, p, q, rr, verb, g, v, ns, res, name, sub) in cases {
            let i = parse(m, p, q);
            assert_eq!(
                (
                    i.resource_request,
                    i.verb.as_str(),
                    i.api_group.as_str(),
                    i.api_version.as_str(),
                    i.namespace.as_str()
                ),
                (rr, verb, g, v, ns),
                "{m} {p}"
            );
            assert_eq!(
                (i.resource.as_str(), i.name.as_str(), i.subresource.as_str()),
                (res, name, sub),
                "{m} {p}"
            );
        }
        for p in [
            "/api",
            "/apis",
            "/api/v1",
            "/apis/apps",
            "/apis/apps/v1",
            "/version",
            "/healthz",
            "/",
        ] {
            let i = parse("GET", p, "");
            assert!(!i.resource_request, "{p}");
            assert_eq!(i.verb, "get");
        }
        assert!(long_running(&parse("GET", "/api/v1/pods", "watch=1")));
        assert!(long_running(&parse(
            "GET",
            "/api/v1/namespaces/d/pods/a/log",
            ""
        )));
        assert!(!long_running(&parse(
            "GET",
            "/api/v1/namespaces/d/pods/a",
            ""
        )));
    }
}
