//! Server-side Table printers: the cells `kubectl get` shows for each
//! built-in kind, computed from the object's JSON the way kube-apiserver's
//! printers (`pkg/printers/internalversion`) compute them, plus CRD
//! `additionalPrinterColumns` JSONPaths.

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::duration;
use crate::labels::format_label_selector;
use crate::registry::{CellSource, Column, ResourceInfo};

/// What a printer may depend on besides the object.
#[derive(Clone, Copy, Debug)]
pub struct PrintContext {
    /// Cluster wall time, for ages.
    pub now: Timestamp,
}

/// A built-in cell printer.
pub type CellFn = fn(&Value, &PrintContext) -> Value;

/// A column filled by a built-in printer.
pub fn builtin(name: &str, type_: &str, priority: i32, f: CellFn) -> Column {
    Column::builtin(name, type_, priority, f)
}

/// The `columnDefinitions` of a `meta.k8s.io/v1 Table` for a resource.
pub fn column_definitions(info: &ResourceInfo) -> Value {
    Value::Array(
        info.columns
            .iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "type": c.type_,
                    "format": c.format,
                    "description": c.description,
                    "priority": c.priority,
                })
            })
            .collect(),
    )
}

/// The cells of one object's row, in column order.
pub fn cells(info: &ResourceInfo, obj: &Value, ctx: &PrintContext) -> Vec<Value> {
    info.columns
        .iter()
        .map(|c| match &c.source {
            CellSource::Name => json!(s(&obj["metadata"]["name"])),
            CellSource::Age => json!(age(obj, ctx)),
            CellSource::CreatedAt => obj["metadata"]["creationTimestamp"].clone(),
            CellSource::JsonPath(p) => json_path_cell(obj, p, &c.type_, ctx),
            CellSource::Builtin(f) => f(obj, ctx),
        })
        .collect()
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn or_none(v: &str) -> String {
    if v.is_empty() {
        "<none>".to_owned()
    } else {
        v.to_owned()
    }
}

fn arr(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

fn age(obj: &Value, ctx: &PrintContext) -> String {
    duration::since(obj["metadata"]["creationTimestamp"].as_str(), ctx.now)
}

/// A CRD printer column: a JSONPath of dotted fields and `[n]` indexes;
/// dates print as ages, missing values as empty cells.
fn json_path_cell(obj: &Value, path: &str, type_: &str, ctx: &PrintContext) -> Value {
    let mut v = obj;
    for part in path.trim_start_matches('.').split('.') {
        if part.is_empty() {
            continue;
        }
        let (field, index) = match part.split_once('[') {
            Some((f, rest)) => (f, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        if !field.is_empty() {
            v = &v[field];
        }
        if let Some(i) = index {
            v = &v[i];
        }
    }
    if v.is_null() {
        return Value::Null;
    }
    if type_ == "date" {
        return json!(duration::since(v.as_str(), ctx.now));
    }
    match v {
        Value::Array(_) | Value::Object(_) => json!(v.to_string()),
        _ => v.clone(),
    }
}

// ---- core/v1

pub fn namespace_status(o: &Value, _: &PrintContext) -> Value {
    json!(s(&o["status"]["phase"]))
}

fn condition_true(o: &Value, type_: &str) -> bool {
    arr(&o["status"]["conditions"])
        .iter()
        .any(|c| s(&c["type"]) == type_ && s(&c["status"]) == "True")
}

struct PodSummary {
    ready: usize,
    total: usize,
    restarts: i64,
    last_restart: Option<String>,
    reason: String,
}

fn pod_summary(o: &Value) -> PodSummary {
    let status = &o["status"];
    let mut reason = s(&status["phase"]).to_owned();
    if !s(&status["reason"]).is_empty() {
        reason = s(&status["reason"]).to_owned();
    }
    for c in arr(&status["conditions"]) {
        if s(&c["type"]) == "PodScheduled" && s(&c["reason"]) == "SchedulingGated" {
            reason = "SchedulingGated".to_owned();
        }
    }
    let total = arr(&o["spec"]["containers"]).len();
    let mut restarts = 0;
    let mut ready = 0;
    let mut last_restart: Option<String> = None;
    let mut note_restart = |cs: &Value| {
        if let Some(t) = cs["lastState"]["terminated"]["finishedAt"].as_str()
            && last_restart.as_deref().is_none_or(|l| t > l)
        {
            last_restart = Some(t.to_owned());
        }
    };
    let init_specs = arr(&o["spec"]["initContainers"]).len();
    let mut initializing = false;
    for (i, cs) in arr(&status["initContainerStatuses"]).iter().enumerate() {
        restarts += int(&cs["restartCount"]);
        note_restart(cs);
        let state = &cs["state"];
        if state["terminated"].is_object() && int(&state["terminated"]["exitCode"]) == 0 {
            continue;
        }
        if state["terminated"].is_object() {
            let t = &state["terminated"];
            reason = if !s(&t["reason"]).is_empty() {
                format!("Init:{}", s(&t["reason"]))
            } else if int(&t["signal"]) != 0 {
                format!("Init:Signal:{}", int(&t["signal"]))
            } else {
                format!("Init:ExitCode:{}", int(&t["exitCode"]))
            };
        } else if state["waiting"].is_object()
            && !s(&state["waiting"]["reason"]).is_empty()
            && s(&state["waiting"]["reason"]) != "PodInitializing"
        {
            reason = format!("Init:{}", s(&state["waiting"]["reason"]));
        } else {
            reason = format!("Init:{i}/{init_specs}");
        }
        initializing = true;
        break;
    }
    if !initializing || condition_true(o, "Initialized") {
        restarts = 0;
        let mut has_running = false;
        for cs in arr(&status["containerStatuses"]).iter().rev() {
            restarts += int(&cs["restartCount"]);
            note_restart(cs);
            let state = &cs["state"];
            if !s(&state["waiting"]["reason"]).is_empty() {
                reason = s(&state["waiting"]["reason"]).to_owned();
            } else if !s(&state["terminated"]["reason"]).is_empty() {
                reason = s(&state["terminated"]["reason"]).to_owned();
            } else if state["terminated"].is_object() {
                let t = &state["terminated"];
                reason = if int(&t["signal"]) != 0 {
                    format!("Signal:{}", int(&t["signal"]))
                } else {
                    format!("ExitCode:{}", int(&t["exitCode"]))
                };
            } else if cs["ready"].as_bool() == Some(true) && state["running"].is_object() {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if condition_true(o, "Ready") {
                "Running"
            } else {
                "NotReady"
            }
            .to_owned();
        }
    }
    if !o["metadata"]["deletionTimestamp"].is_null() {
        reason = if s(&status["reason"]) == "NodeLost" {
            "Unknown"
        } else {
            "Terminating"
        }
        .to_owned();
    }
    PodSummary {
        ready,
        total,
        restarts,
        last_restart,
        reason,
    }
}

pub fn pod_ready(o: &Value, _: &PrintContext) -> Value {
    let p = pod_summary(o);
    json!(format!("{}/{}", p.ready, p.total))
}

pub fn pod_status(o: &Value, _: &PrintContext) -> Value {
    json!(pod_summary(o).reason)
}

pub fn pod_restarts(o: &Value, ctx: &PrintContext) -> Value {
    let p = pod_summary(o);
    match p.last_restart {
        Some(t) => json!(format!(
            "{} ({} ago)",
            p.restarts,
            duration::since(Some(&t), ctx.now)
        )),
        None => json!(p.restarts.to_string()),
    }
}

pub fn pod_ip(o: &Value, _: &PrintContext) -> Value {
    json!(or_none(s(&o["status"]["podIP"])))
}

pub fn pod_node(o: &Value, _: &PrintContext) -> Value {
    json!(or_none(s(&o["spec"]["nodeName"])))
}

pub fn pod_nominated_node(o: &Value, _: &PrintContext) -> Value {
    json!(or_none(s(&o["status"]["nominatedNodeName"])))
}

pub fn pod_readiness_gates(o: &Value, _: &PrintContext) -> Value {
    let gates = arr(&o["spec"]["readinessGates"]);
    if gates.is_empty() {
        return json!("<none>");
    }
    let ok = gates
        .iter()
        .filter(|g| condition_true(o, s(&g["conditionType"])))
        .count();
    json!(format!("{ok}/{}", gates.len()))
}

pub fn service_type(o: &Value, _: &PrintContext) -> Value {
    json!(s(&o["spec"]["type"]))
}

pub fn service_cluster_ip(o: &Value, _: &PrintContext) -> Value {
    json!(or_none(s(&o["spec"]["clusterIP"])))
}

pub fn service_external_ip(o: &Value, _: &PrintContext) -> Value {
    let spec = &o["spec"];
    let external: Vec<&str> = arr(&spec["externalIPs"]).iter().map(s).collect();
    let out = match s(&spec["type"]) {
        "ClusterIP" | "NodePort" | "" => {
            if external.is_empty() {
                "<none>".to_owned()
            } else {
                external.join(",")
            }
        }
        "LoadBalancer" => {
            let mut ips: Vec<&str> = arr(&o["status"]["loadBalancer"]["ingress"])
                .iter()
                .map(|i| {
                    if !s(&i["ip"]).is_empty() {
                        s(&i["ip"])
                    } else {
                        s(&i["hostname"])
                    }
                })
                .filter(|x| !x.is_empty())
                .collect();
            ips.extend(external);
            if ips.is_empty() {
                "<pending>".to_owned()
            } else {
                ips.join(",")
            }
        }
        "ExternalName" => s(&spec["externalName"]).to_owned(),
        _ => "<unknown>".to_owned(),
    };
    json!(out)
}

pub fn service_ports(o: &Value, _: &PrintContext) -> Value {
    let ports: Vec<String> = arr(&o["spec"]["ports"])
        .iter()
        .map(|p| {
            let proto = match s(&p["protocol"]) {
                "" => "TCP",
                x => x,
            };
            match p["nodePort"].as_i64() {
                Some(np) if np != 0 => format!("{}:{np}/{proto}", int(&p["port"])),
                _ => format!("{}/{proto}", int(&p["port"])),
            }
        })
        .collect();
    json!(if ports.is_empty() {
        "<none>".to_owned()
    } else {
        ports.join(",")
    })
}

fn map_as_selector(v: &Value) -> String {
    let Some(m) = v.as_object() else {
        return "<none>".to_owned();
    };
    if m.is_empty() {
        return "<none>".to_owned();
    }
    let mut pairs: Vec<String> = m.iter().map(|(k, v)| format!("{k}={}", s(v))).collect();
    pairs.sort();
    pairs.join(",")
}

pub fn service_selector(o: &Value, _: &PrintContext) -> Value {
    json!(map_as_selector(&o["spec"]["selector"]))
}

fn join_host_port(ip: &str, port: i64) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

pub fn endpoints(o: &Value, _: &PrintContext) -> Value {
    const MAX: usize = 3;
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0;
    for ss in arr(&o["subsets"]) {
        let addrs = arr(&ss["addresses"]);
        let ports = arr(&ss["ports"]);
        if ports.is_empty() {
            count += addrs.len();
            for a in addrs {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(s(&a["ip"]).to_owned());
            }
        } else {
            for p in ports {
                count += addrs.len();
                for a in addrs {
                    if list.len() == MAX {
                        more = true;
                    }
                    if !more {
                        list.push(join_host_port(s(&a["ip"]), int(&p["port"])));
                    }
                }
            }
        }
    }
    let joined = list.join(",");
    if more {
        return json!(format!("{joined} + {} more...", count - MAX));
    }
    json!(or_none(&joined))
}

pub fn node_status(o: &Value, _: &PrintContext) -> Value {
    let mut status: Vec<String> = Vec::new();
    if let Some(c) = arr(&o["status"]["conditions"])
        .iter()
        .find(|c| s(&c["type"]) == "Ready")
    {
        status.push(
            if s(&c["status"]) == "True" {
                "Ready"
            } else {
                "NotReady"
            }
            .to_owned(),
        );
    }
    if status.is_empty() {
        status.push("Unknown".to_owned());
    }
    if o["spec"]["unschedulable"].as_bool() == Some(true) {
        status.push("SchedulingDisabled".to_owned());
    }
    json!(status.join(","))
}

pub fn node_roles(o: &Value, _: &PrintContext) -> Value {
    let mut roles: Vec<String> = Vec::new();
    if let Some(labels) = o["metadata"]["labels"].as_object() {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.push(role.to_owned());
                }
            } else if k == "kubernetes.io/role" && !s(v).is_empty() {
                roles.push(s(v).to_owned());
            }
        }
    }
    roles.sort();
    roles.dedup();
    json!(if roles.is_empty() {
        "<none>".to_owned()
    } else {
        roles.join(",")
    })
}

pub fn node_version(o: &Value, _: &PrintContext) -> Value {
    json!(s(&o["status"]["nodeInfo"]["kubeletVersion"]))
}

fn node_address(o: &Value, type_: &str) -> String {
    arr(&o["status"]["addresses"])
        .iter()
        .find(|a| s(&a["type"]) == type_)
        .map(|a| s(&a["address"]).to_owned())
        .unwrap_or_else(|| "<none>".to_owned())
}

pub fn node_internal_ip(o: &Value, _: &PrintContext) -> Value {
    json!(node_address(o, "InternalIP"))
}

pub fn node_external_ip(o: &Value, _: &PrintContext) -> Value {
    json!(node_address(o, "ExternalIP"))
}

fn unknown(v: &str) -> String {
    if v.is_empty() {
        "<unknown>".to_owned()
    } else {
        v.to_owned()
    }
}

pub fn node_os_image(o: &Value, _: &PrintContext) -> Value {
    json!(unknown(s(&o["status"]["nodeInfo"]["osImage"])))
}

pub fn node_kernel_version(o: &Value, _: &PrintContext) -> Value {
    json!(unknown(s(&o["status"]["nodeInfo"]["kernelVersion"])))
}

pub fn node_container_runtime(o: &Value, _: &PrintContext) -> Value {
    json!(unknown(s(
        &o["status"]["nodeInfo"]["containerRuntimeVersion"]
    )))
}

fn obj_len(v: &Value) -> usize {
    v.as_object().map(|m| m.len()).unwrap_or(0)
}

pub fn configmap_data(o: &Value, _: &PrintContext) -> Value {
    json!(obj_len(&o["data"]) + obj_len(&o["binaryData"]))
}

pub fn secret_type(o: &Value, _: &PrintContext) -> Value {
    json!(s(&o["type"]))
}

pub fn secret_data(o: &Value, _: &PrintContext) -> Value {
    json!(obj_len(&o["data"]))
}

pub fn serviceaccount_secrets(o: &Value, _: &PrintContext) -> Value {
    json!(arr(&o["secrets"]).len())
}

// ---- events (core/v1 and events.k8s.io/v1 field names)

fn first_of<'a>(o: &'a Value, names: &[&str]) -> &'a Value {
    names
        .iter()
        .map(|n| &o[*n])
        .find(|v| !v.is_null())
        .unwrap_or(&Value::Null)
}

fn event_first_ts(o: &Value) -> Option<String> {
    first_of(
        o,
        &["firstTimestamp", "deprecatedFirstTimestamp", "eventTime"],
    )
    .as_str()
    .map(str::to_owned)
}

pub fn event_last_seen(o: &Value, ctx: &PrintContext) -> Value {
    if let Some(t) = o["series"]["lastObservedTime"].as_str() {
        return json!(duration::since(Some(t), ctx.now));
    }
    let last = first_of(o, &["lastTimestamp", "deprecatedLastTimestamp"])
        .as_str()
        .map(str::to_owned);
    json!(duration::since(
        last.or_else(|| event_first_ts(o)).as_deref(),
        ctx.now
    ))
}

pub fn event_first_seen(o: &Value, ctx: &PrintContext) -> Value {
    json!(duration::since(event_first_ts(o).as_deref(), ctx.now))
}

pub fn event_type(o: &Value, _: &PrintContext) -> Value {
    json!(s(&o["type"]))
}

pub fn event_reason(o: &Value, _: &PrintContext) -> Value {
    json!(s(&o["reason"]))
}

pub fn event_object(o: &Value, _: &PrintContext) -> Value {
    let obj = first_of(o, &["involvedObject", "regarding"]);
    let kind = s(&obj["kind"]).to_ascii_lowercase();
    let name = s(&obj["name"]);
    json!(if name.is_empty() {
        kind
    } else {
        format!("{kind}/{name}")
    })
}

pub fn event_subobject(o: &Value, _: &PrintContext) -> Value {
    json!(s(
        &first_of(o, &["involvedObject", "regarding"])["fieldPath"]
    ))
}

pub fn event_source(o: &Value, _: &PrintContext) -> Value {
    let src = first_of(o, &["source", "deprecatedSource"]);
    let (component, host) = (s(&src["component"]), s(&src["host"]));
    let (component, host) = if component.is_empty() {
        (
            first_of(o, &["reportingController", "reportingComponent"])
                .as_str()
                .unwrap_or(""),
            s(&o["reportingInstance"]),
        )
    } else {
        (component, host)
    };
    json!(if host.is_empty() {
        component.to_owned()
    } else {
        format!("{component}, {host}")
    })
}

pub fn event_message(o: &Value, _: &PrintContext) -> Value {
    json!(
        first_of(o, &["message", "note"])
            .as_str()
            .unwrap_or("")
            .trim()
    )
}

pub fn event_count(o: &Value, _: &PrintContext) -> Value {
    let count = if o["series"].is_object() {
        int(&o["series"]["count"])
    } else {
        match int(first_of(o, &["count", "deprecatedCount"])) {
            0 => 1,
            n => n,
        }
    };
    json!(count.to_string())
}

// ---- apps/v1

pub fn deployment_ready(o: &Value, _: &PrintContext) -> Value {
    json!(format!(
        "{}/{}",
        int(&o["status"]["readyReplicas"]),
        int(&o["spec"]["replicas"])
    ))
}

pub fn deployment_up_to_date(o: &Value, _: &PrintContext) -> Value {
    json!(int(&o["status"]["updatedReplicas"]))
}

pub fn deployment_available(o: &Value, _: &PrintContext) -> Value {
    json!(int(&o["status"]["availableReplicas"]))
}

pub fn replicaset_desired(o: &Value, _: &PrintContext) -> Value {
    json!(int(&o["spec"]["replicas"]))
}

pub fn replicaset_current(o: &Value, _: &PrintContext) -> Value {
    json!(int(&o["status"]["replicas"]))
}

pub fn replicaset_ready(o: &Value, _: &PrintContext) -> Value {
    json!(int(&o["status"]["readyReplicas"]))
}

pub fn daemonset_desired(o: &Value, _: &PrintContext) -> Value {
    json!(int(&o["status"]["desiredNumberScheduled"]))
}

pub fn daemonset_current(o: &Value, _: &PrintContext) -> Value {
    json!(int(&o["status"]["currentNumberScheduled"]))
}

pub fn daemonset_ready(o: &Value, _: &PrintContext) -> Value {
    json!(int(&o["status"]["numberReady"]))
}

pub fn daemonset_up_to_date(o: &Value, _: &PrintContext) -> Value {
    json!(int(&o["status"]["updatedNumberScheduled"]))
}

pub fn daemonset_available(o: &Value, _: &PrintContext) -> Value {
    json!(int(&o["status"]["numberAvailable"]))
}

pub fn daemonset_node_selector(o: &Value, _: &PrintContext) -> Value {
    json!(map_as_selector(
        &o["spec"]["template"]["spec"]["nodeSelector"]
    ))
}

fn template_containers_field(o: &Value, field: &str) -> String {
    arr(&o["spec"]["template"]["spec"]["containers"])
        .iter()
        .map(|c| s(&c[field]))
        .collect::<Vec<_>>()
        .join(",")
}

pub fn template_containers(o: &Value, _: &PrintContext) -> Value {
    json!(template_containers_field(o, "name"))
}

pub fn template_images(o: &Value, _: &PrintContext) -> Value {
    json!(template_containers_field(o, "image"))
}

pub fn spec_selector(o: &Value, _: &PrintContext) -> Value {
    json!(format_label_selector(&o["spec"]["selector"]))
}

// ---- everything else

pub fn apiservice_service(o: &Value, _: &PrintContext) -> Value {
    let svc = &o["spec"]["service"];
    json!(if svc.is_object() {
        format!("{}/{}", s(&svc["namespace"]), s(&svc["name"]))
    } else {
        "Local".to_owned()
    })
}

pub fn apiservice_available(o: &Value, _: &PrintContext) -> Value {
    let Some(c) = arr(&o["status"]["conditions"])
        .iter()
        .find(|c| s(&c["type"]) == "Available")
    else {
        return json!("Unknown");
    };
    json!(if s(&c["status"]) == "True" {
        "True".to_owned()
    } else {
        format!("{} ({})", s(&c["status"]), s(&c["reason"]))
    })
}

pub fn csr_signer_name(o: &Value, _: &PrintContext) -> Value {
    json!(s(&o["spec"]["signerName"]))
}

pub fn csr_requestor(o: &Value, _: &PrintContext) -> Value {
    json!(s(&o["spec"]["username"]))
}

pub fn csr_requested_duration(o: &Value, _: &PrintContext) -> Value {
    json!(match o["spec"]["expirationSeconds"].as_i64() {
        Some(secs) => duration::human_duration_ms(secs * 1000),
        None => "<none>".to_owned(),
    })
}

pub fn csr_condition(o: &Value, _: &PrintContext) -> Value {
    let mut approved = false;
    let mut denied = false;
    let mut failed = false;
    for c in arr(&o["status"]["conditions"]) {
        match s(&c["type"]) {
            "Approved" => approved = true,
            "Denied" => denied = true,
            "Failed" => failed = true,
            _ => {}
        }
    }
    let mut status = String::new();
    if denied {
        status.push_str("Denied");
    } else if approved {
        status.push_str("Approved");
    } else {
        status.push_str("Pending");
    }
    if failed {
        status.push_str(",Failed");
    }
    if !s(&o["status"]["certificate"]).is_empty() {
        status.push_str(",Issued");
    }
    json!(status)
}

pub fn binding_role(o: &Value, _: &PrintContext) -> Value {
    json!(format!(
        "{}/{}",
        s(&o["roleRef"]["kind"]),
        s(&o["roleRef"]["name"])
    ))
}

fn subjects(o: &Value, kind: &str) -> Value {
    let names: Vec<String> = arr(&o["subjects"])
        .iter()
        .filter(|x| s(&x["kind"]) == kind)
        .map(|x| {
            if kind == "ServiceAccount" {
                format!("{}/{}", s(&x["namespace"]), s(&x["name"]))
            } else {
                s(&x["name"]).to_owned()
            }
        })
        .collect();
    json!(names.join(", "))
}

pub fn binding_users(o: &Value, _: &PrintContext) -> Value {
    subjects(o, "User")
}

pub fn binding_groups(o: &Value, _: &PrintContext) -> Value {
    subjects(o, "Group")
}

pub fn binding_service_accounts(o: &Value, _: &PrintContext) -> Value {
    subjects(o, "ServiceAccount")
}

pub fn webhooks(o: &Value, _: &PrintContext) -> Value {
    json!(arr(&o["webhooks"]).len())
}

pub fn lease_holder(o: &Value, _: &PrintContext) -> Value {
    json!(s(&o["spec"]["holderIdentity"]))
}

pub fn endpointslice_address_type(o: &Value, _: &PrintContext) -> Value {
    json!(s(&o["addressType"]))
}

fn first_three(items: Vec<String>, empty: &str) -> String {
    if items.is_empty() {
        return empty.to_owned();
    }
    let shown = items.iter().take(3).cloned().collect::<Vec<_>>().join(",");
    if items.len() > 3 {
        format!("{shown} + {} more...", items.len() - 3)
    } else {
        shown
    }
}

pub fn endpointslice_ports(o: &Value, _: &PrintContext) -> Value {
    let ports = arr(&o["ports"]).iter().map(|p| {
        p["port"]
            .as_i64()
            .map(|x| x.to_string())
            .unwrap_or_default()
    });
    json!(first_three(ports.collect(), "<unset>"))
}

pub fn endpointslice_endpoints(o: &Value, _: &PrintContext) -> Value {
    let addrs = arr(&o["endpoints"])
        .iter()
        .flat_map(|e| arr(&e["addresses"]).iter().map(|a| s(a).to_owned()));
    json!(first_three(addrs.collect(), "<unset>"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    fn ctx() -> PrintContext {
        PrintContext {
            now: "2020-09-22T12:38:24Z".parse().unwrap(),
        }
    }

    fn row(resource: (&str, &str), obj: Value) -> Vec<(String, i32, Value)> {
        let r = Registry::builtin();
        let info = r.preferred(resource.0, resource.1).unwrap();
        let cells = cells(info, &obj, &ctx());
        info.columns
            .iter()
            .zip(cells)
            .map(|(c, v)| (c.name.clone(), c.priority, v))
            .collect()
    }

    fn shown(row: &[(String, i32, Value)], wide: bool) -> Vec<String> {
        row.iter()
            .filter(|(_, p, _)| wide || *p == 0)
            .map(|(_, _, v)| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect()
    }

    const CREATED: &str = "2020-09-22T12:33:24Z";

    #[test]
    fn pod_rows() {
        let running = json!({
            "metadata": {"name": "app", "creationTimestamp": CREATED},
            "spec": {"nodeName": "cn-hangzhou.192.168.0.1", "containers": [{"name": "app"}, {"name": "istio-proxy"}]},
            "status": {"phase": "Running", "podIP": "172.16.0.5",
                "conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [
                    {"name": "app", "ready": true, "restartCount": 0, "state": {"running": {}}},
                    {"name": "istio-proxy", "ready": false, "restartCount": 2, "state": {"running": {}},
                     "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2020-09-22T12:36:24Z"}}}]}
        });
        let r = row(("", "pods"), running);
        assert_eq!(
            shown(&r, false),
            ["app", "1/2", "Running", "2 (2m ago)", "5m"]
        );
        assert_eq!(
            shown(&r, true),
            [
                "app",
                "1/2",
                "Running",
                "2 (2m ago)",
                "5m",
                "172.16.0.5",
                "cn-hangzhou.192.168.0.1",
                "<none>",
                "<none>"
            ]
        );

        let cases = [
            (json!({"phase": "Pending"}), json!(null), "Pending"),
            (
                json!({"phase": "Pending", "containerStatuses": [{"state": {"waiting": {"reason": "ContainerCreating"}}}]}),
                json!(null),
                "ContainerCreating",
            ),
            (
                json!({"phase": "Pending", "containerStatuses": [{"state": {"waiting": {"reason": "ImagePullBackOff"}}}]}),
                json!(null),
                "ImagePullBackOff",
            ),
            (
                json!({"phase": "Running", "containerStatuses": [{"state": {"waiting": {"reason": "CrashLoopBackOff"}}, "restartCount": 4}]}),
                json!(null),
                "CrashLoopBackOff",
            ),
            (
                json!({"phase": "Failed", "containerStatuses": [{"state": {"terminated": {"exitCode": 137, "signal": 9}}}]}),
                json!(null),
                "Signal:9",
            ),
            (
                json!({"phase": "Failed", "containerStatuses": [{"state": {"terminated": {"exitCode": 2}}}]}),
                json!(null),
                "ExitCode:2",
            ),
            (
                json!({"phase": "Pending", "initContainerStatuses": [{"state": {"waiting": {}}}]}),
                json!(null),
                "Init:0/1",
            ),
            (
                json!({"phase": "Pending", "initContainerStatuses": [{"state": {"waiting": {"reason": "ErrImagePull"}}}]}),
                json!(null),
                "Init:ErrImagePull",
            ),
            (json!({"phase": "Running"}), json!(CREATED), "Terminating"),
            (
                json!({"phase": "Running", "reason": "NodeLost"}),
                json!(CREATED),
                "Unknown",
            ),
            (
                json!({"phase": "Failed", "reason": "Evicted"}),
                json!(null),
                "Evicted",
            ),
            (
                json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
                json!(null),
                "SchedulingGated",
            ),
        ];
        for (status, deletion, want) in cases {
            let pod = json!({
                "metadata": {"name": "p", "deletionTimestamp": deletion},
                "spec": {"containers": [{"name": "c"}], "initContainers": [{"name": "i"}]},
                "status": status
            });
            assert_eq!(pod_status(&pod, &ctx()), json!(want), "{pod}");
        }
    }

    #[test]
    fn service_rows() {
        let svc = |spec: Value, status: Value| json!({"metadata": {"name": "s", "creationTimestamp": CREATED}, "spec": spec, "status": status});
        let r = row(
            ("", "services"),
            svc(
                json!({"type": "ClusterIP", "clusterIP": "172.19.0.10", "selector": {"k8s-app": "kube-dns"},
                       "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}, {"port": 9153}]}),
                json!({}),
            ),
        );
        assert_eq!(
            shown(&r, true),
            [
                "s",
                "ClusterIP",
                "172.19.0.10",
                "<none>",
                "53/UDP,53/TCP,9153/TCP",
                "5m",
                "k8s-app=kube-dns"
            ]
        );
        let r = row(
            ("", "services"),
            svc(
                json!({"type": "LoadBalancer", "clusterIP": "172.19.1.1", "ports": [{"port": 80, "nodePort": 30080}]}),
                json!({}),
            ),
        );
        assert_eq!(
            shown(&r, false),
            [
                "s",
                "LoadBalancer",
                "172.19.1.1",
                "<pending>",
                "80:30080/TCP",
                "5m"
            ]
        );
        let r = row(
            ("", "services"),
            svc(
                json!({"type": "LoadBalancer", "clusterIP": "172.19.1.1", "ports": []}),
                json!({"loadBalancer": {"ingress": [{"ip": "47.110.197.238"}]}}),
            ),
        );
        assert_eq!(shown(&r, false)[3], "47.110.197.238");
        let r = row(
            ("", "services"),
            svc(
                json!({"type": "ExternalName", "externalName": "example.com"}),
                json!({}),
            ),
        );
        assert_eq!(shown(&r, false)[3], "example.com");
        assert_eq!(shown(&r, false)[4], "<none>");
    }

    #[test]
    fn endpoints_rows() {
        let ep = |subsets: Value| json!({"metadata": {"name": "e"}, "subsets": subsets});
        let cases = [
            (json!([]), "<none>"),
            (
                json!([{"addresses": [{"ip": "172.16.0.2"}], "ports": [{"port": 53}]}]),
                "172.16.0.2:53",
            ),
            (
                json!([{"addresses": [{"ip": "172.16.0.2"}, {"ip": "172.16.1.2"}], "ports": [{"port": 53}, {"port": 9153}]}]),
                "172.16.0.2:53,172.16.1.2:53,172.16.0.2:9153 + 1 more...",
            ),
            (json!([{"addresses": [{"ip": "10.0.0.1"}]}]), "10.0.0.1"),
        ];
        for (subsets, want) in cases {
            assert_eq!(endpoints(&ep(subsets), &ctx()), json!(want));
        }
    }

    #[test]
    fn node_rows() {
        let node = json!({
            "metadata": {"name": "cn-hangzhou.192.168.0.1", "creationTimestamp": CREATED,
                         "labels": {"node-role.kubernetes.io/master": "", "node-role.kubernetes.io/control-plane": ""}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "Unknown"}],
                       "addresses": [{"type": "InternalIP", "address": "192.168.0.1"}],
                       "nodeInfo": {"kubeletVersion": "v1.33.1", "osImage": "Alibaba Cloud Linux", "kernelVersion": "5.10", "containerRuntimeVersion": "containerd://1.6"}}
        });
        let r = row(("", "nodes"), node);
        assert_eq!(
            shown(&r, true),
            [
                "cn-hangzhou.192.168.0.1",
                "NotReady,SchedulingDisabled",
                "control-plane,master",
                "5m",
                "v1.33.1",
                "192.168.0.1",
                "<none>",
                "Alibaba Cloud Linux",
                "5.10",
                "containerd://1.6"
            ]
        );
        assert_eq!(node_status(&json!({}), &ctx()), json!("Unknown"));
    }

    #[test]
    fn workload_rows() {
        let deploy = json!({
            "metadata": {"name": "web", "creationTimestamp": CREATED},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"spec": {"containers": [{"name": "app", "image": "registry/app:latest"}, {"name": "side", "image": "envoy"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
        });
        let r = row(("apps", "deployments"), deploy.clone());
        assert_eq!(
            shown(&r, true),
            [
                "web",
                "2/3",
                "3",
                "2",
                "5m",
                "app,side",
                "registry/app:latest,envoy",
                "app=web"
            ]
        );
        let r = row(("apps", "replicasets"), deploy);
        assert_eq!(shown(&r, false), ["web", "3", "0", "2", "5m"]);
        let ds = json!({"metadata": {"name": "proxy", "creationTimestamp": CREATED},
            "spec": {"template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}}}},
            "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 3, "updatedNumberScheduled": 3, "numberAvailable": 3}});
        let r = row(("apps", "daemonsets"), ds);
        assert_eq!(
            shown(&r, false),
            [
                "proxy",
                "3",
                "3",
                "3",
                "3",
                "3",
                "kubernetes.io/os=linux",
                "5m"
            ]
        );
    }

    #[test]
    fn misc_rows() {
        let ns = json!({"metadata": {"name": "tobedeletedb", "creationTimestamp": CREATED}, "status": {"phase": "Terminating"}});
        assert_eq!(
            shown(&row(("", "namespaces"), ns), false),
            ["tobedeletedb", "Terminating", "5m"]
        );
        let apisvc = json!({"metadata": {"name": "v1beta1.metrics.k8s.io", "creationTimestamp": CREATED},
            "spec": {"service": {"namespace": "kube-system", "name": "metrics-server"}},
            "status": {"conditions": [{"type": "Available", "status": "False", "reason": "FailedDiscoveryCheck"}]}});
        assert_eq!(
            shown(
                &row(("apiregistration.k8s.io", "apiservices"), apisvc),
                false
            ),
            [
                "v1beta1.metrics.k8s.io",
                "kube-system/metrics-server",
                "False (FailedDiscoveryCheck)",
                "5m"
            ]
        );
        let local = json!({"metadata": {"name": "v1.apps"}, "spec": {}, "status": {"conditions": [{"type": "Available", "status": "True"}]}});
        assert_eq!(apiservice_service(&local, &ctx()), json!("Local"));
        assert_eq!(apiservice_available(&local, &ctx()), json!("True"));
        let csr = json!({"metadata": {"name": "jiang", "creationTimestamp": CREATED},
            "spec": {"signerName": "kubernetes.io/kube-apiserver-client", "username": "kubernetes-admin", "expirationSeconds": 86400},
            "status": {"conditions": [{"type": "Approved", "status": "True"}], "certificate": "LS0t"}});
        assert_eq!(
            shown(
                &row(("certificates.k8s.io", "certificatesigningrequests"), csr),
                false
            ),
            [
                "jiang",
                "5m",
                "kubernetes.io/kube-apiserver-client",
                "kubernetes-admin",
                "24h",
                "Approved,Issued"
            ]
        );
        let rb = json!({"metadata": {"name": "read-pods", "creationTimestamp": CREATED},
            "roleRef": {"kind": "Role", "name": "pod-reader"},
            "subjects": [{"kind": "User", "name": "jiang"}, {"kind": "Group", "name": "dev"}, {"kind": "ServiceAccount", "namespace": "default", "name": "default"}]});
        assert_eq!(
            shown(
                &row(("rbac.authorization.k8s.io", "rolebindings"), rb),
                true
            ),
            [
                "read-pods",
                "Role/pod-reader",
                "5m",
                "jiang",
                "dev",
                "default/default"
            ]
        );
        let role = json!({"metadata": {"name": "pod-reader", "creationTimestamp": CREATED}});
        assert_eq!(
            shown(&row(("rbac.authorization.k8s.io", "roles"), role), false),
            ["pod-reader", CREATED]
        );
        let cm = json!({"metadata": {"name": "cluster-info", "creationTimestamp": CREATED}, "data": {"kubeconfig": "x", "jws-kubeconfig-abcdef": "y"}});
        assert_eq!(
            shown(&row(("", "configmaps"), cm), false),
            ["cluster-info", "2", "5m"]
        );
        let secret = json!({"metadata": {"name": "istio-ca-secret", "creationTimestamp": CREATED}, "type": "istio.io/ca-root", "data": {"ca-cert.pem": "", "ca-key.pem": ""}});
        assert_eq!(
            shown(&row(("", "secrets"), secret), false),
            ["istio-ca-secret", "istio.io/ca-root", "2", "5m"]
        );
        let lease = json!({"metadata": {"name": "kube-scheduler", "creationTimestamp": CREATED}, "spec": {"holderIdentity": "master-1_abc"}});
        assert_eq!(
            shown(&row(("coordination.k8s.io", "leases"), lease), false),
            ["kube-scheduler", "master-1_abc", "5m"]
        );
        let slice = json!({"metadata": {"name": "kube-dns-x", "creationTimestamp": CREATED}, "addressType": "IPv4",
            "ports": [{"port": 53}, {"port": 53}, {"port": 9153}, {"port": 1}],
            "endpoints": [{"addresses": ["172.16.0.2"]}]});
        assert_eq!(
            shown(&row(("discovery.k8s.io", "endpointslices"), slice), false),
            [
                "kube-dns-x",
                "IPv4",
                "53,53,9153 + 1 more...",
                "172.16.0.2",
                "5m"
            ]
        );
        let hook = json!({"metadata": {"name": "istio-galley", "creationTimestamp": CREATED}, "webhooks": [{}, {}]});
        assert_eq!(
            shown(
                &row(
                    (
                        "admissionregistration.k8s.io",
                        "validatingwebhookconfigurations"
                    ),
                    hook
                ),
                false
            ),
            ["istio-galley", "2", "5m"]
        );
    }

    #[test]
    fn event_rows() {
        let ev = json!({"metadata": {"name": "app.1", "creationTimestamp": CREATED},
            "involvedObject": {"kind": "Pod", "name": "app", "fieldPath": "spec.containers{app}"},
            "reason": "FailedScheduling", "type": "Warning",
            "message": "0/3 nodes are available: 3 Insufficient cpu. ",
            "source": {"component": "default-scheduler"},
            "firstTimestamp": "2020-09-22T12:28:24Z", "lastTimestamp": "2020-09-22T12:37:24Z", "count": 4});
        let r = row(("", "events"), ev);
        assert_eq!(
            shown(&r, false),
            [
                "60s",
                "Warning",
                "FailedScheduling",
                "pod/app",
                "0/3 nodes are available: 3 Insufficient cpu."
            ]
        );
        assert_eq!(
            shown(&r, true),
            [
                "60s",
                "Warning",
                "FailedScheduling",
                "pod/app",
                "spec.containers{app}",
                "default-scheduler",
                "0/3 nodes are available: 3 Insufficient cpu.",
                "10m",
                "4",
                "app.1"
            ]
        );
        let new_style = json!({"metadata": {"name": "e"}, "regarding": {"kind": "Node", "name": "n1"}, "note": "NodeNotReady",
            "eventTime": "2020-09-22T12:37:24.000000Z", "reportingController": "node-controller"});
        let r = row(("events.k8s.io", "events"), new_style);
        assert_eq!(
            shown(&r, true),
            [
                "60s",
                "",
                "",
                "node/n1",
                "",
                "node-controller",
                "NodeNotReady",
                "60s",
                "1",
                "e"
            ]
        );
    }

    #[test]
    fn crd_json_path_columns() {
        let o = json!({"metadata": {"creationTimestamp": CREATED}, "spec": {"gateways": ["mesh"], "replicas": 2, "hosts": ["a", "b"]}});
        assert_eq!(
            json_path_cell(&o, ".spec.replicas", "integer", &ctx()),
            json!(2)
        );
        assert_eq!(
            json_path_cell(&o, ".spec.hosts[1]", "string", &ctx()),
            json!("b")
        );
        assert_eq!(
            json_path_cell(&o, ".spec.gateways", "string", &ctx()),
            json!("[\"mesh\"]")
        );
        assert_eq!(
            json_path_cell(&o, ".metadata.creationTimestamp", "date", &ctx()),
            json!("5m")
        );
        assert_eq!(
            json_path_cell(&o, ".spec.missing", "string", &ctx()),
            Value::Null
        );
    }

    #[test]
    fn column_definitions_have_kubectl_shape() {
        let r = Registry::builtin();
        let defs = column_definitions(r.preferred("", "pods").unwrap());
        assert_eq!(defs[0]["name"], "Name");
        assert_eq!(defs[0]["format"], "name");
        assert_eq!(defs[4]["name"], "Age");
        assert_eq!(defs[4]["type"], "date");
        assert_eq!(defs[5]["priority"], 1);
    }
}
