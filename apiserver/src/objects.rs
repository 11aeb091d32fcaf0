//! What the API server does to an object on create and update before it is
//! stored, as pure functions: type and namespace checks, generateName,
//! name validation, system metadata (uid, timestamps, generation), the
//! defaults the built-in kinds get, and which parts an update may change.

use ackemu_kube::{ResourceInfo, validation};
use serde_json::{Map, Value, json};

use crate::rbac::UserInfo;
use crate::status::ApiError;

/// Inputs that are not part of the object: time, identity, randomness.
pub struct CreateContext<'a> {
    /// RFC 3339 (seconds) cluster wall time.
    pub now: &'a str,
    pub uid: &'a str,
    /// Five characters for `generateName` (`bcdfghjklmnpqrstvwxz2456789`).
    pub suffix: &'a str,
    pub user: &'a UserInfo,
}

fn invalid_name(info: &ResourceInfo, name: &str, msgs: Vec<String>) -> ApiError {
    ApiError::invalid(
        &info.kind,
        &info.group_resource(),
        name,
        vec![(
            "FieldValueInvalid".to_owned(),
            "metadata.name".to_owned(),
            format!(
                "Invalid value: {}: {}",
                serde_json::to_string(name).unwrap_or_default(),
                msgs.join(", ")
            ),
        )],
    )
}

/// Validates an object name with the rule its resource uses.
pub fn validate_name(info: &ResourceInfo, name: &str) -> Result<(), ApiError> {
    let msgs = match (info.group.as_str(), info.resource.as_str()) {
        ("", "namespaces") => validation::dns1123_label(name),
        ("", "services") => validation::dns1035_label(name),
        ("rbac.authorization.k8s.io", _) => validation::path_segment_name(name),
        _ => validation::dns1123_subdomain(name),
    };
    if msgs.is_empty() {
        Ok(())
    } else {
        Err(invalid_name(info, name, msgs))
    }
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    obj["metadata"]
        .as_object_mut()
        .expect("metadata is an object")
}

/// Checks `apiVersion`/`kind` of a request body against the endpoint and
/// fills them in when absent.
pub fn check_type(info: &ResourceInfo, obj: &mut Value) -> Result<(), ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be a JSON object",
        ));
    }
    let want_av = info.api_version();
    match obj["apiVersion"].as_str() {
        None | Some("") => obj["apiVersion"] = json!(want_av),
        Some(av) if av == want_av => {}
        Some(av) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({want_av})"
            )));
        }
    }
    match obj["kind"].as_str() {
        None | Some("") => obj["kind"] = json!(info.kind),
        Some(k) if k == info.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                info.kind
            )));
        }
    }
    Ok(())
}

/// Checks the body's namespace against the request's and sets it.
pub fn check_namespace(info: &ResourceInfo, obj: &mut Value, ns: &str) -> Result<(), ApiError> {
    let meta = meta_mut(obj);
    if !info.namespaced() {
        meta.remove("namespace");
        return Ok(());
    }
    match meta.get("namespace").and_then(Value::as_str) {
        None | Some("") => {
            meta.insert("namespace".to_owned(), json!(ns));
        }
        Some(n) if n == ns => {}
        Some(_) => {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    Ok(())
}

/// Prepares a new object: name (or generateName), system metadata, defaults.
pub fn prepare_create(
    info: &ResourceInfo,
    mut obj: Value,
    ns: &str,
    ctx: &CreateContext<'_>,
) -> Result<Value, ApiError> {
    check_type(info, &mut obj)?;
    check_namespace(info, &mut obj, ns)?;
    let meta = meta_mut(&mut obj);
    if meta
        .get("resourceVersion")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
    {
        return Err(ApiError::bad_request(
            "resourceVersion should not be set on objects to be created",
        ));
    }
    let mut name = meta
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if name.is_empty() {
        match meta.get("generateName").and_then(Value::as_str) {
            Some(g) if !g.is_empty() => {
                let base = if g.len() > 58 { &g[..58] } else { g };
                name = format!("{base}{}", ctx.suffix);
                meta.insert("name".to_owned(), json!(name));
            }
            _ => {
                return Err(ApiError::invalid(
                    &info.kind,
                    &info.group_resource(),
                    "",
                    vec![(
                        "FieldValueRequired".to_owned(),
                        "metadata.name".to_owned(),
                        "Required value: name or generateName is required".to_owned(),
                    )],
                ));
            }
        }
    }
    meta.insert("uid".to_owned(), json!(ctx.uid));
    meta.insert("creationTimestamp".to_owned(), json!(ctx.now));
    meta.insert("generation".to_owned(), json!(1));
    meta.remove("resourceVersion");
    meta.remove("deletionTimestamp");
    meta.remove("deletionGracePeriodSeconds");
    meta.remove("selfLink");
    meta.remove("managedFields");
    validate_name(info, &name)?;
    defaults(info, &mut obj, ctx)?;
    Ok(obj)
}

fn set_default(obj: &mut Value, field: &str, v: Value) {
    if obj.is_object() && obj[field].is_null() {
        obj[field] = v;
    }
}

fn default_pod_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "securityContext", json!({}));
    for list in ["containers", "initContainers"] {
        if let Some(cs) = spec[list].as_array_mut() {
            for c in cs {
                let image = c["image"].as_str().unwrap_or("");
                let tag_latest = {
                    let last = image.rsplit('/').next().unwrap_or("");
                    !last.contains(':') || last.ends_with(":latest")
                };
                let policy = if tag_latest && !image.contains('@') {
                    "Always"
                } else {
                    "IfNotPresent"
                };
                set_default(c, "imagePullPolicy", json!(policy));
                set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
                set_default(c, "terminationMessagePolicy", json!("File"));
                set_default(c, "resources", json!({}));
                if let Some(ports) = c["ports"].as_array_mut() {
                    for p in ports {
                        set_default(p, "protocol", json!("TCP"));
                    }
                }
            }
        }
    }
}

fn defaults(info: &ResourceInfo, obj: &mut Value, ctx: &CreateContext<'_>) -> Result<(), ApiError> {
    match (info.group.as_str(), info.kind.as_str()) {
        ("", "Namespace") => {
            if !obj["spec"].is_object() {
                obj["spec"] = json!({});
            }
            let fins = obj["spec"]["finalizers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if !fins.iter().any(|f| f == "kubernetes") {
                let mut fins = fins;
                fins.push(json!("kubernetes"));
                obj["spec"]["finalizers"] = Value::Array(fins);
            }
            obj["status"] = json!({"phase": "Active"});
        }
        ("", "Pod") => {
            default_pod_spec(&mut obj["spec"]);
            let spec = &obj["spec"];
            let sa = spec["serviceAccountName"]
                .as_str()
                .or(spec["serviceAccount"].as_str())
                .unwrap_or("")
                .to_owned();
            if !sa.is_empty() {
                obj["spec"]["serviceAccount"] = json!(sa);
            }
            if !obj["status"].is_object() {
                obj["status"] = json!({});
            }
            set_default(&mut obj["status"], "phase", json!("Pending"));
        }
        ("", "Service") => {
            if !obj["spec"].is_object() {
                obj["spec"] = json!({});
            }
            set_default(&mut obj["spec"], "type", json!("ClusterIP"));
            set_default(&mut obj["spec"], "sessionAffinity", json!("None"));
            if let Some(ports) = obj["spec"]["ports"].as_array_mut() {
                for p in ports {
                    set_default(p, "protocol", json!("TCP"));
                    let port = p["port"].clone();
                    set_default(p, "targetPort", port);
                }
            }
            if obj["status"].is_null() {
                obj["status"] = json!({"loadBalancer": {}});
            }
        }
        ("apps", "Deployment") => {
            if !obj["spec"].is_object() {
                obj["spec"] = json!({});
            }
            set_default(&mut obj["spec"], "replicas", json!(1));
            set_default(&mut obj["spec"], "revisionHistoryLimit", json!(10));
            set_default(&mut obj["spec"], "progressDeadlineSeconds", json!(600));
            set_default(
                &mut obj["spec"],
                "strategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}),
            );
            default_pod_spec(&mut obj["spec"]["template"]["spec"]);
            obj["status"] = json!({});
        }
        ("apps", "ReplicaSet") => {
            if !obj["spec"].is_object() {
                obj["spec"] = json!({});
            }
            set_default(&mut obj["spec"], "replicas", json!(1));
            default_pod_spec(&mut obj["spec"]["template"]["spec"]);
            obj["status"] = json!({"replicas": 0});
        }
        ("apps", "DaemonSet") => {
            if !obj["spec"].is_object() {
                obj["spec"] = json!({});
            }
            set_default(
                &mut obj["spec"],
                "updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
            );
            set_default(&mut obj["spec"], "revisionHistoryLimit", json!(10));
            default_pod_spec(&mut obj["spec"]["template"]["spec"]);
            obj["status"] = json!({"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0, "numberReady": 0});
        }
        ("certificates.k8s.io", "CertificateSigningRequest") => {
            // The requester is recorded by the server, never trusted from the body.
            if !obj["spec"].is_object() {
                obj["spec"] = json!({});
            }
            obj["spec"]["username"] = json!(ctx.user.name);
            obj["spec"]["groups"] = json!(ctx.user.groups);
            obj["status"] = json!({});
        }
        _ => {}
    }
    Ok(())
}

/// The fields an update keeps from the stored object no matter what the
/// body says.
const IMMUTABLE_META: &[&str] = &[
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
];

/// Prepares an update of `old` to `new` through the main resource
/// (`subresource` empty) or a subresource (`status`).
pub fn prepare_update(
    info: &ResourceInfo,
    old: &Value,
    mut new: Value,
    subresource: &str,
) -> Result<Value, ApiError> {
    check_type(info, &mut new)?;
    let ns = old["metadata"]["namespace"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    check_namespace(info, &mut new, &ns)?;
    let name = old["metadata"]["name"].as_str().unwrap_or("");
    if new["metadata"]["name"].as_str().is_some_and(|n| n != name) {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            new["metadata"]["name"].as_str().unwrap_or("")
        )));
    }
    if subresource == "status" {
        let mut out = old.clone();
        out["status"] = new["status"].clone();
        // Only status changes through the status subresource.
        if let Some(rv) = new["metadata"].get("resourceVersion") {
            out["metadata"]["resourceVersion"] = rv.clone();
        }
        return Ok(out);
    }
    let meta = meta_mut(&mut new);
    meta.insert("name".to_owned(), json!(name));
    for k in IMMUTABLE_META {
        match old["metadata"].get(*k) {
            Some(v) => {
                meta.insert((*k).to_owned(), v.clone());
            }
            None => {
                meta.remove(*k);
            }
        }
    }
    meta.remove("managedFields");
    if info.subresource("status").is_some() {
        new["status"] = old["status"].clone();
        if new["status"].is_null() {
            new.as_object_mut().map(|m| m.remove("status"));
        }
    }
    if spec_changed(old, &new) {
        let g = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
        new["metadata"]["generation"] = json!(g);
    }
    if info.group.is_empty() && info.kind == "Namespace" {
        // spec.finalizers only change through /finalize.
        new["spec"] = old["spec"].clone();
    }
    Ok(new)
}

/// Whether anything outside `metadata` and `status` changed.
pub fn spec_changed(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| -> Value {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("metadata");
            m.remove("status");
            m.remove("apiVersion");
            m.remove("kind");
        }
        v
    };
    strip(old) != strip(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ackemu_kube::Registry;

    fn ctx(user: &UserInfo) -> CreateContext<'_> {
        CreateContext {
            now: "2020-09-22T12:33:24Z",
            uid: "u-1",
            suffix: "x7k2q",
            user,
        }
    }

    #[test]
    fn create_sets_system_fields_and_defaults() {
        let r = Registry::builtin();
        let user = UserInfo::authenticated("jiang", &["dev".into()]);
        let pods = r.preferred("", "pods").unwrap();
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "app-"},
            "spec": {"containers": [{"name": "app", "image": "registry/app:latest", "ports": [{"containerPort": 2580}]},
                                     {"name": "b", "image": "busybox:1.36"}]}});
        let out = prepare_create(pods, pod, "default", &ctx(&user)).unwrap();
        assert_eq!(out["metadata"]["name"], "app-x7k2q");
        assert_eq!(out["metadata"]["namespace"], "default");
        assert_eq!(out["metadata"]["uid"], "u-1");
        assert_eq!(out["metadata"]["creationTimestamp"], "2020-09-22T12:33:24Z");
        assert_eq!(out["status"]["phase"], "Pending");
        assert_eq!(out["spec"]["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(
            out["spec"]["containers"][1]["imagePullPolicy"],
            "IfNotPresent"
        );
        assert_eq!(out["spec"]["containers"][0]["ports"][0]["protocol"], "TCP");

        let ns = r.preferred("", "namespaces").unwrap();
        let out = prepare_create(
            ns,
            json!({"metadata": {"name": "tobedeletedb"}}),
            "",
            &ctx(&user),
        )
        .unwrap();
        assert_eq!(out["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(out["status"]["phase"], "Active");
        assert_eq!(out["kind"], "Namespace");

        let csr = r
            .preferred("certificates.k8s.io", "certificatesigningrequests")
            .unwrap();
        let out = prepare_create(
            csr,
            json!({"metadata": {"name": "jiang"}, "spec": {"username": "admin"}}),
            "",
            &ctx(&user),
        )
        .unwrap();
        assert_eq!(out["spec"]["username"], "jiang");
        assert_eq!(
            out["spec"]["groups"],
            json!(["dev", "system:authenticated"])
        );
    }

    #[test]
    fn create_rejects_bad_input() {
        let r = Registry::builtin();
        let user = UserInfo::anonymous();
        let pods = r.preferred("", "pods").unwrap();
        let cases = [
            (
                json!({"metadata": {}}),
                422,
                "Pod \"\" is invalid: metadata.name: Required value: name or generateName is required",
            ),
            (
                json!({"metadata": {"name": "Bad_Name"}}),
                422,
                "Pod \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
            ),
            (
                json!({"kind": "Service", "metadata": {"name": "a"}}),
                400,
                "the kind in the data (Service) does not match the expected kind (Pod)",
            ),
            (
                json!({"apiVersion": "apps/v1", "metadata": {"name": "a"}}),
                400,
                "the API version in the data (apps/v1) does not match the expected API version (v1)",
            ),
            (
                json!({"metadata": {"name": "a", "namespace": "other"}}),
                400,
                "the namespace of the provided object does not match the namespace sent on the request",
            ),
            (
                json!({"metadata": {"name": "a", "resourceVersion": "5"}}),
                400,
                "resourceVersion should not be set on objects to be created",
            ),
            (
                json!([1, 2]),
                400,
                "the body of the request must be a JSON object",
            ),
        ];
        for (obj, code, msg) in cases {
            let e = prepare_create(pods, obj.clone(), "default", &ctx(&user)).unwrap_err();
            assert_eq!((e.code, e.message.as_str()), (code, msg), "{obj}");
        }
        let svc = r.preferred("", "services").unwrap();
        assert!(
            prepare_create(
                svc,
                json!({"metadata": {"name": "1svc"}}),
                "default",
                &ctx(&user)
            )
            .is_err()
        );
        let role = r
            .preferred("rbac.authorization.k8s.io", "clusterroles")
            .unwrap();
        assert!(
            prepare_create(
                role,
                json!({"metadata": {"name": "system:kube-scheduler"}}),
                "",
                &ctx(&user)
            )
            .is_ok()
        );
    }

    #[test]
    fn update_keeps_system_fields_and_bumps_generation() {
        let r = Registry::builtin();
        let deploy = r.preferred("apps", "deployments").unwrap();
        let old = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "uid": "u", "generation": 1, "creationTimestamp": "t"},
            "spec": {"replicas": 1}, "status": {"readyReplicas": 1}});
        let new = json!({"metadata": {"name": "web", "uid": "evil", "labels": {"a": "b"}}, "spec": {"replicas": 3}, "status": {}});
        let out = prepare_update(deploy, &old, new, "").unwrap();
        assert_eq!(out["metadata"]["uid"], "u");
        assert_eq!(out["metadata"]["generation"], 2);
        assert_eq!(out["metadata"]["labels"]["a"], "b");
        assert_eq!(
            out["status"]["readyReplicas"], 1,
            "main resource cannot change status"
        );
        let labels_only =
            json!({"metadata": {"name": "web", "labels": {"x": "y"}}, "spec": {"replicas": 1}});
        assert_eq!(
            prepare_update(deploy, &old, labels_only, "").unwrap()["metadata"]["generation"],
            1
        );
        let status = json!({"metadata": {"name": "web"}, "spec": {"replicas": 9}, "status": {"readyReplicas": 3}});
        let out = prepare_update(deploy, &old, status, "status").unwrap();
        assert_eq!(out["spec"]["replicas"], 1);
        assert_eq!(out["status"]["readyReplicas"], 3);
        let renamed = json!({"metadata": {"name": "other"}});
        assert_eq!(
            prepare_update(deploy, &old, renamed, "").unwrap_err().code,
            400
        );
    }
}
