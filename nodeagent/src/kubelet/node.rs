//! The Node object: registration, status every `--node-status-update-frequency`
//! (conditions with heartbeats, capacity, addresses, daemon endpoints, node
//! info) and the Lease in `kube-node-lease` renewed every 10s. Building the
//! objects and the conditions is pure; the loops at the bottom do the IO.

use std::collections::BTreeMap;
use std::time::Duration;

use ackemu_kube::client::{Client, ClientError, PatchType};
use serde_json::{Value, json};

use super::events::{Kind, ObjectRef, Recorder};

/// What the Node object is made of.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Node name.
    pub name: String,
    /// InternalIP.
    pub ip: String,
    /// Hostname address.
    pub hostname: String,
    /// `--node-labels`.
    pub labels: BTreeMap<String, String>,
    /// `--register-with-taints` as Taint objects.
    pub taints: Vec<Value>,
    /// capacity (cpu, memory, pods, ephemeral-storage).
    pub capacity: BTreeMap<String, String>,
    /// allocatable.
    pub allocatable: BTreeMap<String, String>,
    /// The kubelet API port.
    pub kubelet_port: u16,
    /// `nodeInfo`.
    pub node_info: Value,
}

/// Parse `--register-with-taints` (`key=value:Effect,key:Effect`).
pub fn parse_taints(s: &str) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for t in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let (kv, effect) = t
            .rsplit_once(':')
            .ok_or_else(|| format!("invalid taint spec: {t:?}: expected key[=value]:Effect"))?;
        if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
            return Err(format!(
                "invalid taint effect: {effect:?}, unsupported taint effect"
            ));
        }
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let mut taint = json!({"key": k, "effect": effect});
        if !v.is_empty() {
            taint["value"] = json!(v);
        }
        out.push(taint);
    }
    Ok(out)
}

/// Parse `--node-labels` (`k=v,k2=v2`).
pub fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for kv in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("invalid label {kv:?}: expected key=value"))?;
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// The Node to register (status included; the API server keeps it on create).
pub fn node_object(s: &NodeSpec) -> Value {
    let mut labels = serde_json::Map::new();
    for (k, v) in [
        ("beta.kubernetes.io/arch", "amd64"),
        ("beta.kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
        ("kubernetes.io/hostname", s.hostname.as_str()),
        ("kubernetes.io/os", "linux"),
    ] {
        labels.insert(k.into(), json!(v));
    }
    for (k, v) in &s.labels {
        labels.insert(k.clone(), json!(v));
    }
    let mut node = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": s.name,
            "labels": labels,
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
        },
        "spec": {},
    });
    if !s.taints.is_empty() {
        node["spec"]["taints"] = json!(s.taints);
    }
    node
}

/// One node condition, keeping `lastTransitionTime` from `prev` when the
/// status did not change.
fn condition(
    prev: &[Value],
    ty: &str,
    status: bool,
    reason: &str,
    message: &str,
    now: &str,
) -> Value {
    let st = if status { "True" } else { "False" };
    let old = prev.iter().find(|c| c["type"] == ty);
    let transition = match old {
        Some(o) if o["status"] == st => o["lastTransitionTime"].clone(),
        _ => json!(now),
    };
    json!({
        "type": ty, "status": st, "reason": reason, "message": message,
        "lastHeartbeatTime": now, "lastTransitionTime": transition,
    })
}

/// The four conditions: pressure conditions from what the node measures
/// (none here: ample memory, disk, PIDs), Ready from the kubelet's runtime
/// errors (PLEG health, the runtime's status check).
pub fn conditions(prev: &[Value], ready_errors: &[String], now: &str) -> Vec<Value> {
    let ready = ready_errors.is_empty();
    vec![
        condition(
            prev,
            "MemoryPressure",
            false,
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
            now,
        ),
        condition(
            prev,
            "DiskPressure",
            false,
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
            now,
        ),
        condition(
            prev,
            "PIDPressure",
            false,
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
            now,
        ),
        if ready {
            condition(
                prev,
                "Ready",
                true,
                "KubeletReady",
                "kubelet is posting ready status",
                now,
            )
        } else {
            condition(
                prev,
                "Ready",
                false,
                "KubeletNotReady",
                &ready_errors.join(","),
                now,
            )
        },
    ]
}

/// The full status.
pub fn node_status(s: &NodeSpec, conditions: Vec<Value>) -> Value {
    json!({
        "capacity": s.capacity,
        "allocatable": s.allocatable,
        "conditions": conditions,
        "addresses": [
            {"type": "InternalIP", "address": s.ip},
            {"type": "Hostname", "address": s.hostname},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": s.kubelet_port}},
        "nodeInfo": s.node_info,
    })
}

/// Ready transitions as events: `NodeReady` / `NodeNotReady`.
pub fn ready_transition(prev: &[Value], next: &[Value]) -> Option<&'static str> {
    let ready = |cs: &[Value]| {
        cs.iter()
            .find(|c| c["type"] == "Ready")
            .map(|c| c["status"] == "True")
    };
    match (ready(prev), ready(next)) {
        (a, Some(true)) if a != Some(true) => Some("NodeReady"),
        (Some(true), Some(false)) => Some("NodeNotReady"),
        _ => None,
    }
}

/// The node's Lease.
pub fn lease_object(node: &str, node_uid: &str, duration_s: i64, renew: &str) -> Value {
    let mut lease = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": node, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": node, "leaseDurationSeconds": duration_s, "renewTime": renew},
    });
    if !node_uid.is_empty() {
        lease["metadata"]["ownerReferences"] =
            json!([{"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid}]);
    }
    lease
}

/// Kubernetes' second-precision timestamp of cluster wall time.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Kubernetes' MicroTime.
pub fn rfc3339_micros(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

// ---- IO ----

/// Register the node (retrying until the API server takes it); returns
/// its uid.
pub async fn register(
    client: &Client,
    spec: &NodeSpec,
    clock: &ackemu_base::clock::Clock,
    stop: &tokio_util::sync::CancellationToken,
) -> Option<String> {
    let mut obj = node_object(spec);
    let now = rfc3339(clock.wall_unix_ms());
    obj["status"] = node_status(
        spec,
        conditions(
            &[],
            &["container runtime status check may not have completed yet".into()],
            &now,
        ),
    );
    loop {
        match client
            .request(
                "POST",
                "/api/v1/nodes",
                Some(("application/json", obj.to_string().into_bytes())),
            )
            .await
        {
            Ok(v) => {
                tracing::info!("Successfully registered node node=\"{}\"", spec.name);
                return Some(v["metadata"]["uid"].as_str().unwrap_or("").to_string());
            }
            Err(e) if e.is_conflict() || e.code() == Some(409) => {
                match client
                    .request("GET", &format!("/api/v1/nodes/{}", spec.name), None)
                    .await
                {
                    Ok(v) => {
                        tracing::info!("Node was previously registered node=\"{}\"", spec.name);
                        return Some(v["metadata"]["uid"].as_str().unwrap_or("").to_string());
                    }
                    Err(e) => tracing::warn!(
                        "Unable to get the existing node node=\"{}\": {e}",
                        spec.name
                    ),
                }
            }
            Err(e) => tracing::warn!(
                "Unable to register node with API server node=\"{}\": {e}",
                spec.name
            ),
        }
        tokio::select! {
            () = stop.cancelled() => return None,
            () = clock.sleep(Duration::from_secs(7)) => {}
        }
    }
}

/// One status update: build, patch, record Ready transitions. Returns the
/// conditions sent.
pub async fn update_status(
    client: &Client,
    spec: &NodeSpec,
    prev: &[Value],
    ready_errors: &[String],
    now_ms: i64,
    recorder: &Recorder,
) -> Result<Vec<Value>, ClientError> {
    let conds = conditions(prev, ready_errors, &rfc3339(now_ms));
    let status = node_status(spec, conds.clone());
    client
        .resource(
            client
                .registry()
                .by_api_version_kind("v1", "Node")
                .ok_or_else(|| ClientError::Config("v1 Node is not served".into()))?,
            None,
        )
        .patch(
            &spec.name,
            "status",
            PatchType::Merge,
            &json!({"status": status}),
        )
        .await?;
    if let Some(reason) = ready_transition(prev, &conds) {
        let kind = Kind::Normal;
        recorder.record(
            &ObjectRef::node(&spec.name),
            kind,
            reason,
            &format!("Node {} status is now: {reason}", spec.name),
        );
    }
    Ok(conds)
}

/// Renew (or create) the Lease once.
pub async fn renew_lease(
    client: &Client,
    node: &str,
    node_uid: &str,
    duration_s: i64,
    now_ms: i64,
) -> Result<(), ClientError> {
    let path = format!("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node}");
    let renew = rfc3339_micros(now_ms);
    match client.request("GET", &path, None).await {
        Ok(mut cur) => {
            cur["spec"]["holderIdentity"] = json!(node);
            cur["spec"]["leaseDurationSeconds"] = json!(duration_s);
            cur["spec"]["renewTime"] = json!(renew);
            client
                .request(
                    "PUT",
                    &path,
                    Some(("application/json", cur.to_string().into_bytes())),
                )
                .await?;
        }
        Err(e) if e.is_not_found() => {
            let lease = lease_object(node, node_uid, duration_s, &renew);
            client
                .request(
                    "POST",
                    "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                    Some(("application/json", lease.to_string().into_bytes())),
                )
                .await?;
        }
        Err(e) => return Err(e),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> NodeSpec {
        NodeSpec {
            name: "cn-hangzhou.192.168.0.10".into(),
            ip: "192.168.0.10".into(),
            hostname: "cn-hangzhou.192.168.0.10".into(),
            labels: parse_labels("node.kubernetes.io/instance-type=ecs.g6.large,role=worker")
                .unwrap(),
            taints: parse_taints("dedicated=infra:NoSchedule,gpu:NoExecute").unwrap(),
            capacity: BTreeMap::from([("cpu".into(), "2".into()), ("pods".into(), "110".into())]),
            allocatable: BTreeMap::from([
                ("cpu".into(), "2".into()),
                ("pods".into(), "110".into()),
            ]),
            kubelet_port: 10250,
            node_info: json!({"kubeletVersion": "v1.33.1"}),
        }
    }

    #[test]
    fn node_object_has_the_well_known_labels_and_taints() {
        let n = node_object(&spec());
        let l = &n["metadata"]["labels"];
        assert_eq!(l["kubernetes.io/hostname"], "cn-hangzhou.192.168.0.10");
        assert_eq!(l["kubernetes.io/os"], "linux");
        assert_eq!(l["kubernetes.io/arch"], "amd64");
        assert_eq!(l["node.kubernetes.io/instance-type"], "ecs.g6.large");
        assert_eq!(
            n["spec"]["taints"],
            json!([{"key": "dedicated", "value": "infra", "effect": "NoSchedule"}, {"key": "gpu", "effect": "NoExecute"}])
        );
        let st = node_status(&spec(), vec![]);
        assert_eq!(st["daemonEndpoints"]["kubeletEndpoint"]["Port"], 10250);
        assert_eq!(
            st["addresses"][0],
            json!({"type": "InternalIP", "address": "192.168.0.10"})
        );
        assert_eq!(st["addresses"][1]["type"], "Hostname");
        assert!(parse_taints("a=b:Sometimes").is_err());
        assert!(parse_labels("novalue").is_err());
    }

    #[test]
    fn conditions_keep_transition_times_and_report_pleg() {
        let t0 = "2026-01-01T00:00:00Z";
        let t1 = "2026-01-01T00:00:10Z";
        let c0 = conditions(&[], &[], t0);
        assert_eq!(c0.len(), 4);
        let ready = &c0[3];
        assert_eq!(ready["type"], "Ready");
        assert_eq!(ready["status"], "True");
        assert_eq!(ready["reason"], "KubeletReady");
        assert_eq!(c0[0]["reason"], "KubeletHasSufficientMemory");
        assert_eq!(c0[1]["reason"], "KubeletHasNoDiskPressure");
        assert_eq!(c0[2]["reason"], "KubeletHasSufficientPID");
        let c1 = conditions(&c0, &[], t1);
        assert_eq!(c1[3]["lastHeartbeatTime"], t1);
        assert_eq!(
            c1[3]["lastTransitionTime"], t0,
            "unchanged status keeps its transition time"
        );
        let msg = "PLEG is not healthy: pleg was last seen active 3m0.1s ago; threshold is 3m0s";
        let c2 = conditions(&c1, &[msg.into()], t1);
        assert_eq!(c2[3]["status"], "False");
        assert_eq!(c2[3]["reason"], "KubeletNotReady");
        assert_eq!(c2[3]["message"], msg);
        assert_eq!(c2[3]["lastTransitionTime"], t1);
        assert_eq!(c2[0]["lastTransitionTime"], t0);
        assert_eq!(ready_transition(&[], &c0), Some("NodeReady"));
        assert_eq!(ready_transition(&c0, &c1), None);
        assert_eq!(ready_transition(&c1, &c2), Some("NodeNotReady"));
        assert_eq!(ready_transition(&c2, &c1), Some("NodeReady"));
    }

    #[test]
    fn lease_names_its_holder_and_owner() {
        let l = lease_object("n1", "uid-1", 40, "2026-01-01T00:00:00.000000Z");
        assert_eq!(l["spec"]["holderIdentity"], "n1");
        assert_eq!(l["spec"]["leaseDurationSeconds"], 40);
        assert_eq!(l["metadata"]["namespace"], "kube-node-lease");
        assert_eq!(l["metadata"]["ownerReferences"][0]["uid"], "uid-1");
        assert_eq!(rfc3339_micros(1_500), "1970-01-01T00:00:01.500000Z");
    }
}
