//! The pod's API status from the spec, the runtime's status and the
//! kubelet's memory (probe results, waiting reasons): phase (`getPhase`),
//! conditions, IPs and container statuses — a pure function.

use std::collections::HashMap;

use ackemu_kube::api::core::v1::{Container, PodSpec};
use ackemu_proto::ackemu::node::v1::ContainerState;
use serde_json::{Value, json};

use super::cri::{ContainerStatus, PodRuntimeStatus};
use super::podsync::{init_containers, restart_policy, should_restart};

/// What the kubelet knows beyond the runtime.
pub struct Inputs<'a> {
    /// The runtime's name, prefix of container ids (`ackemu://…`).
    pub runtime_name: &'a str,
    /// The node's IP.
    pub host_ip: &'a str,
    /// Is this running container ready (readiness probe; true without one)?
    pub ready: &'a dyn Fn(&str) -> bool,
    /// Has this running container started (startup probe; true without one)?
    pub started: &'a dyn Fn(&str) -> bool,
    /// Waiting reasons from the last sync, by container name
    /// (`CrashLoopBackOff`, `CreateContainerError`, …) with their messages.
    pub waiting: &'a HashMap<String, (String, String)>,
    /// Now (RFC 3339).
    pub now: &'a str,
    /// The status the API has (for transition and start times).
    pub old: &'a Value,
}

fn ts(ns: i64) -> Value {
    if ns <= 0 {
        return Value::Null;
    }
    json!(super::node::rfc3339(ns / 1_000_000))
}

fn terminated(c: &ContainerStatus, runtime: &str) -> Value {
    let reason = if c.reason.is_empty() {
        if c.exit_code == 0 {
            "Completed"
        } else {
            "Error"
        }
        .to_string()
    } else {
        c.reason.clone()
    };
    let mut t = json!({
        "exitCode": c.exit_code,
        "reason": reason,
        "startedAt": ts(c.started_at),
        "finishedAt": ts(c.finished_at),
        "containerID": format!("{runtime}://{}", c.id),
    });
    if !c.message.is_empty() {
        t["message"] = json!(c.message);
    }
    json!({"terminated": t})
}

/// One entry of `containerStatuses` / `initContainerStatuses`.
fn container_status(
    spec: &Container,
    rt: &PodRuntimeStatus,
    policy: &str,
    inp: &Inputs<'_>,
) -> Value {
    let all: Vec<&ContainerStatus> = rt.all_named(&spec.name).collect();
    let image = spec.image.clone().unwrap_or_default();
    let waiting = |default: &str| -> Value {
        match inp.waiting.get(&spec.name) {
            Some((r, m)) if !m.is_empty() => json!({"waiting": {"reason": r, "message": m}}),
            Some((r, _)) => json!({"waiting": {"reason": r}}),
            None => json!({"waiting": {"reason": default}}),
        }
    };
    let Some(latest) = all.first() else {
        return json!({
            "name": spec.name, "image": image, "imageID": "", "ready": false,
            "restartCount": 0, "started": false, "state": waiting("ContainerCreating"),
            "lastState": {},
        });
    };
    let previous = all.get(1).map(|c| terminated(c, inp.runtime_name));
    let (state, last, running) = match latest.state {
        ContainerState::ContainerRunning => (
            json!({"running": {"startedAt": ts(latest.started_at)}}),
            previous,
            true,
        ),
        ContainerState::ContainerExited => {
            let will_restart = should_restart(policy, latest.exit_code);
            if will_restart && inp.waiting.contains_key(&spec.name) {
                (
                    waiting("ContainerCreating"),
                    Some(terminated(latest, inp.runtime_name)),
                    false,
                )
            } else {
                (terminated(latest, inp.runtime_name), previous, false)
            }
        }
        ContainerState::ContainerCreated => (waiting("ContainerCreating"), previous, false),
        ContainerState::ContainerUnknown => (
            json!({"waiting": {"reason": "ContainerStatusUnknown", "message": "The container could not be located when the pod was terminated"}}),
            previous,
            false,
        ),
    };
    json!({
        "name": spec.name,
        "image": image,
        "imageID": latest.image_ref,
        "containerID": format!("{}://{}", inp.runtime_name, latest.id),
        "ready": running && (inp.ready)(&latest.id) && (inp.started)(&latest.id),
        "restartCount": latest.attempt,
        "started": running && (inp.started)(&latest.id),
        "state": state,
        "lastState": last.unwrap_or_else(|| json!({})),
    })
}

/// Kubernetes' `getPhase` over the container statuses just built.
pub fn phase(spec: &PodSpec, init: &[Value], containers: &[Value]) -> &'static str {
    let policy = restart_policy(spec);
    let mut pending_init = 0;
    let mut failed_init = false;
    for s in init {
        let st = &s["state"];
        if st.get("terminated").is_some() {
            if st["terminated"]["exitCode"] == 0 {
                continue;
            }
            failed_init = true;
        }
        pending_init += 1;
    }
    if failed_init && policy == "Never" {
        return "Failed";
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for s in containers {
        let st = &s["state"];
        if st.get("running").is_some() {
            running += 1;
        } else if st.get("terminated").is_some() {
            stopped += 1;
            if st["terminated"]["exitCode"] == 0 {
                succeeded += 1;
            }
        } else if s["lastState"].get("terminated").is_some() {
            stopped += 1;
        } else {
            waiting += 1;
        }
    }
    if pending_init > 0 && !(running + stopped > 0 && waiting == 0) {
        return "Pending";
    }
    if waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        if policy == "Always" {
            return "Running";
        }
        if stopped == succeeded {
            return "Succeeded";
        }
        if policy == "Never" {
            return "Failed";
        }
        return "Running";
    }
    "Pending"
}

fn cond(
    old: &Value,
    ty: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
    now: &str,
) -> Value {
    let st = if ok { "True" } else { "False" };
    let prev = old["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == ty).cloned());
    let transition = match prev {
        Some(p) if p["status"] == st => p["lastTransitionTime"].clone(),
        _ => json!(now),
    };
    let mut c =
        json!({"type": ty, "status": st, "lastProbeTime": null, "lastTransitionTime": transition});
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    if let Some(m) = message {
        c["message"] = json!(m);
    }
    c
}

/// The QoS class from requests and limits.
pub fn qos_class(spec: &PodSpec) -> &'static str {
    let mut any = false;
    let mut guaranteed = true;
    for c in spec.containers.iter().chain(init_containers(spec)) {
        let r = c.resources.as_ref();
        let req = r.and_then(|r| r.requests.as_ref());
        let lim = r.and_then(|r| r.limits.as_ref());
        if req.is_some_and(|m| !m.is_empty()) || lim.is_some_and(|m| !m.is_empty()) {
            any = true;
        }
        for res in ["cpu", "memory"] {
            let l = lim.and_then(|m| m.get(res));
            let q = req.and_then(|m| m.get(res)).or(l);
            if l.is_none() || q != l {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// The pod status to send.
pub fn pod_status(spec: &PodSpec, rt: &PodRuntimeStatus, inp: &Inputs<'_>) -> Value {
    let policy = restart_policy(spec);
    let init: Vec<Value> = init_containers(spec)
        .iter()
        .map(|c| container_status(c, rt, policy, inp))
        .collect();
    let containers: Vec<Value> = spec
        .containers
        .iter()
        .map(|c| container_status(c, rt, policy, inp))
        .collect();
    let phase = phase(spec, &init, &containers);
    let sb = rt.sandbox();
    let pod_ip = sb
        .filter(|s| s.ready)
        .map(|s| s.ip.clone())
        .unwrap_or_default();
    let incomplete: Vec<&str> = init
        .iter()
        .filter(|s| s["state"]["terminated"]["exitCode"] != 0)
        .filter_map(|s| s["name"].as_str())
        .collect();
    let unready: Vec<&str> = containers
        .iter()
        .filter(|s| s["ready"] != true)
        .filter_map(|s| s["name"].as_str())
        .collect();
    let old = inp.old;
    let now = inp.now;
    let done = phase == "Succeeded" || phase == "Failed";
    let (ready_reason, ready_msg) = if done {
        (Some("PodCompleted"), None)
    } else if unready.is_empty() {
        (None, None)
    } else {
        (
            Some("ContainersNotReady"),
            Some(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            )),
        )
    };
    let initialized = incomplete.is_empty() || (done && phase == "Succeeded");
    let conditions = vec![
        cond(
            old,
            "PodReadyToStartContainers",
            sb.is_some_and(|s| s.ready),
            None,
            None,
            now,
        ),
        cond(
            old,
            "Initialized",
            initialized,
            (!initialized).then_some("ContainersNotInitialized"),
            (!initialized).then(|| {
                format!(
                    "containers with incomplete status: [{}]",
                    incomplete.join(" ")
                )
            }),
            now,
        ),
        cond(
            old,
            "Ready",
            unready.is_empty() && !done,
            ready_reason,
            ready_msg.clone(),
            now,
        ),
        cond(
            old,
            "ContainersReady",
            unready.is_empty() && !done,
            ready_reason,
            ready_msg,
            now,
        ),
        cond(old, "PodScheduled", true, None, None, now),
    ];
    let start = if old["startTime"].is_string() {
        old["startTime"].clone()
    } else {
        json!(now)
    };
    let mut st = json!({
        "phase": phase,
        "conditions": conditions,
        "hostIP": inp.host_ip,
        "hostIPs": [{"ip": inp.host_ip}],
        "startTime": start,
        "containerStatuses": containers,
        "qosClass": qos_class(spec),
    });
    if !pod_ip.is_empty() {
        st["podIP"] = json!(pod_ip);
        st["podIPs"] = json!([{"ip": pod_ip}]);
    } else if let Some(ip) = old["podIP"].as_str().filter(|_| done) {
        st["podIP"] = json!(ip);
        st["podIPs"] = old["podIPs"].clone();
    }
    if !init.is_empty() {
        st["initContainerStatuses"] = json!(init);
    }
    st
}

#[cfg(test)]
mod tests {
    use super::super::cri::SandboxStatus;
    use super::*;

    fn spec(policy: &str, names: &[&str]) -> PodSpec {
        PodSpec {
            restart_policy: Some(policy.into()),
            containers: names
                .iter()
                .map(|n| Container {
                    name: n.to_string(),
                    image: Some("app".into()),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn ctr(
        id: &str,
        name: &str,
        attempt: u32,
        state: ContainerState,
        code: i32,
    ) -> ContainerStatus {
        ContainerStatus {
            id: id.into(),
            sandbox_id: "s".into(),
            name: name.into(),
            attempt,
            state,
            created_at: 1_000_000_000,
            started_at: 2_000_000_000,
            finished_at: if state == ContainerState::ContainerExited {
                3_000_000_000
            } else {
                0
            },
            exit_code: code,
            reason: if state == ContainerState::ContainerExited {
                if code == 0 {
                    "Completed".into()
                } else {
                    "Error".into()
                }
            } else {
                String::new()
            },
            message: String::new(),
            image: "app".into(),
            image_ref: "ackemu/app".into(),
            grace_period_s: None,
        }
    }

    fn rt(cs: Vec<ContainerStatus>) -> PodRuntimeStatus {
        PodRuntimeStatus {
            uid: "u".into(),
            name: "p".into(),
            namespace: "default".into(),
            sandboxes: vec![SandboxStatus {
                id: "s".into(),
                attempt: 0,
                ready: true,
                ip: "172.16.9.2".into(),
                netns: String::new(),
                created_at: 1,
            }],
            containers: cs,
        }
    }

    fn status(
        spec: &PodSpec,
        rt: &PodRuntimeStatus,
        ready: bool,
        waiting: &HashMap<String, (String, String)>,
    ) -> Value {
        let r = move |_: &str| ready;
        let s = |_: &str| true;
        pod_status(
            spec,
            rt,
            &Inputs {
                runtime_name: "ackemu",
                host_ip: "192.168.0.10",
                ready: &r,
                started: &s,
                waiting,
                now: "2026-01-01T00:00:00Z",
                old: &Value::Null,
            },
        )
    }

    #[test]
    fn running_and_ready() {
        let s = status(
            &spec("Always", &["app"]),
            &rt(vec![ctr(
                "c1",
                "app",
                0,
                ContainerState::ContainerRunning,
                0,
            )]),
            true,
            &HashMap::new(),
        );
        assert_eq!(s["phase"], "Running");
        assert_eq!(s["podIP"], "172.16.9.2");
        assert_eq!(s["podIPs"], json!([{"ip": "172.16.9.2"}]));
        assert_eq!(s["hostIP"], "192.168.0.10");
        assert_eq!(s["qosClass"], "BestEffort");
        let c = &s["containerStatuses"][0];
        assert_eq!(c["ready"], true);
        assert_eq!(c["started"], true);
        assert_eq!(c["containerID"], "ackemu://c1");
        assert_eq!(c["imageID"], "ackemu/app");
        assert_eq!(c["state"]["running"]["startedAt"], "1970-01-01T00:00:02Z");
        let types: Vec<&str> = s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            [
                "PodReadyToStartContainers",
                "Initialized",
                "Ready",
                "ContainersReady",
                "PodScheduled"
            ]
        );
        assert!(
            s["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["status"] == "True")
        );
    }

    #[test]
    fn not_ready_names_the_containers() {
        let s = status(
            &spec("Always", &["app"]),
            &rt(vec![ctr(
                "c1",
                "app",
                0,
                ContainerState::ContainerRunning,
                0,
            )]),
            false,
            &HashMap::new(),
        );
        let ready = &s["conditions"][2];
        assert_eq!(ready["status"], "False");
        assert_eq!(ready["reason"], "ContainersNotReady");
        assert_eq!(ready["message"], "containers with unready status: [app]");
        assert_eq!(s["phase"], "Running");
    }

    #[test]
    fn crash_loop_is_waiting_with_the_last_termination() {
        let waiting = HashMap::from([(
            "app".to_string(),
            (
                "CrashLoopBackOff".to_string(),
                "back-off 20s restarting failed container=app pod=p_default(u)".to_string(),
            ),
        )]);
        let s = status(
            &spec("Always", &["app"]),
            &rt(vec![
                ctr("c2", "app", 2, ContainerState::ContainerExited, 1),
                ctr("c1", "app", 1, ContainerState::ContainerExited, 1),
            ]),
            true,
            &waiting,
        );
        let c = &s["containerStatuses"][0];
        assert_eq!(c["restartCount"], 2);
        assert_eq!(c["state"]["waiting"]["reason"], "CrashLoopBackOff");
        assert_eq!(c["lastState"]["terminated"]["exitCode"], 1);
        assert_eq!(c["lastState"]["terminated"]["reason"], "Error");
        assert_eq!(c["lastState"]["terminated"]["containerID"], "ackemu://c2");
        assert_eq!(c["ready"], false);
        assert_eq!(s["phase"], "Running");
    }

    #[test]
    fn phases_by_restart_policy() {
        let done = |policy: &str, code: i32| {
            status(
                &spec(policy, &["app"]),
                &rt(vec![ctr(
                    "c1",
                    "app",
                    0,
                    ContainerState::ContainerExited,
                    code,
                )]),
                true,
                &HashMap::new(),
            )
        };
        assert_eq!(done("Never", 0)["phase"], "Succeeded");
        assert_eq!(done("Never", 1)["phase"], "Failed");
        assert_eq!(done("OnFailure", 0)["phase"], "Succeeded");
        assert_eq!(done("Never", 0)["conditions"][2]["reason"], "PodCompleted");
        let pending = status(
            &spec("Always", &["app"]),
            &rt(vec![]),
            true,
            &HashMap::new(),
        );
        assert_eq!(pending["phase"], "Pending");
        assert_eq!(
            pending["containerStatuses"][0]["state"]["waiting"]["reason"],
            "ContainerCreating"
        );
    }
}
