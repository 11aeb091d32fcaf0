//! What a pod worker must do to move the runtime towards the pod's spec
//! (kuberuntime's `computePodActions`), as a pure function of the spec and
//! the runtime's status.

use ackemu_kube::api::core::v1::{Container, PodSpec};
use ackemu_proto::ackemu::node::v1::ContainerState;

use super::cri::{ContainerStatus, PodRuntimeStatus};

/// A container to stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kill {
    /// Runtime id.
    pub id: String,
    /// Spec name.
    pub name: String,
    /// Why (the Killing event's message).
    pub message: String,
}

/// The actions of one sync.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actions {
    /// Stop every container and sandbox first (the sandbox changed, or a
    /// `Never` pod is done).
    pub kill_pod: bool,
    /// Create a new sandbox (attempt `sandbox_attempt`).
    pub create_sandbox: bool,
    /// Attempt number of the new sandbox.
    pub sandbox_attempt: u32,
    /// Index of the init container to start next.
    pub next_init: Option<usize>,
    /// Indexes of regular containers to start.
    pub start: Vec<usize>,
    /// Containers to stop.
    pub kill: Vec<Kill>,
}

/// `restartPolicy`, defaulting to `Always`.
pub fn restart_policy(spec: &PodSpec) -> &str {
    spec.restart_policy.as_deref().unwrap_or("Always")
}

/// Should an exited container (exit `code`) run again?
pub fn should_restart(policy: &str, code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => code != 0,
        _ => true,
    }
}

/// Init containers of the spec.
pub fn init_containers(spec: &PodSpec) -> &[Container] {
    spec.init_containers.as_deref().unwrap_or(&[])
}

fn in_sandbox<'a>(rt: &'a PodRuntimeStatus, sb: &str, name: &str) -> Option<&'a ContainerStatus> {
    rt.containers
        .iter()
        .find(|c| c.name == name && c.sandbox_id == sb)
}

/// What must happen. `unhealthy(id)` tells whether a running container
/// failed its liveness or startup probe (with the kill message).
pub fn compute_actions(
    spec: &PodSpec,
    rt: &PodRuntimeStatus,
    unhealthy: &dyn Fn(&str) -> Option<String>,
) -> Actions {
    let policy = restart_policy(spec);
    let mut a = Actions::default();
    let sb = rt.sandbox();
    let sandbox_ok = sb.is_some_and(|s| s.ready);
    if !sandbox_ok {
        a.sandbox_attempt = sb.map_or(0, |s| s.attempt + 1);
        a.kill_pod = sb.is_some();
        if policy == "Never" && sb.is_some() && !rt.containers.is_empty() {
            // The pod ran and must not run again.
            return a;
        }
        a.create_sandbox = true;
        if init_containers(spec).is_empty() {
            a.start = (0..spec.containers.len()).collect();
        } else {
            a.next_init = Some(0);
        }
        return a;
    }
    let sb_id = sb.map(|s| s.id.as_str()).unwrap_or_default();
    for (i, ic) in init_containers(spec).iter().enumerate() {
        match in_sandbox(rt, sb_id, &ic.name) {
            None => {
                a.next_init = Some(i);
                return a;
            }
            Some(c) => match c.state {
                ContainerState::ContainerExited if c.exit_code == 0 => continue,
                ContainerState::ContainerExited => {
                    if policy == "Never" {
                        a.kill_pod = true;
                    } else {
                        a.next_init = Some(i);
                    }
                    return a;
                }
                ContainerState::ContainerRunning => {
                    if let Some(message) = unhealthy(&c.id) {
                        a.kill.push(Kill {
                            id: c.id.clone(),
                            name: ic.name.clone(),
                            message,
                        });
                    }
                    return a;
                }
                _ => return a,
            },
        }
    }
    for (i, c) in spec.containers.iter().enumerate() {
        match in_sandbox(rt, sb_id, &c.name) {
            None => a.start.push(i),
            Some(st) => match st.state {
                ContainerState::ContainerRunning => {
                    if let Some(message) = unhealthy(&st.id) {
                        a.kill.push(Kill {
                            id: st.id.clone(),
                            name: c.name.clone(),
                            message,
                        });
                        if policy != "Never" {
                            a.start.push(i);
                        }
                    }
                }
                ContainerState::ContainerExited => {
                    if should_restart(policy, st.exit_code) {
                        a.start.push(i);
                    }
                }
                ContainerState::ContainerUnknown => {
                    a.kill.push(Kill {
                        id: st.id.clone(),
                        name: c.name.clone(),
                        message: format!(
                            "Container {} is in unknown state, will be restarted",
                            c.name
                        ),
                    });
                    a.start.push(i);
                }
                // Created: a start is under way (or stuck in the runtime).
                ContainerState::ContainerCreated => {}
            },
        }
    }
    // Containers the spec no longer has.
    for st in rt.containers.iter().filter(|c| c.sandbox_id == sb_id) {
        let known = spec
            .containers
            .iter()
            .chain(init_containers(spec))
            .any(|c| c.name == st.name);
        if !known && st.state == ContainerState::ContainerRunning {
            a.kill.push(Kill {
                id: st.id.clone(),
                name: st.name.clone(),
                message: format!(
                    "Container {} is not in the pod spec, will be stopped",
                    st.name
                ),
            });
        }
    }
    a
}

#[cfg(test)]
mod tests {
    use super::super::cri::SandboxStatus;
    use super::*;

    fn spec(policy: &str, init: &[&str], containers: &[&str]) -> PodSpec {
        let c = |n: &&str| Container {
            name: n.to_string(),
            image: Some("app".into()),
            ..Default::default()
        };
        PodSpec {
            restart_policy: Some(policy.into()),
            init_containers: (!init.is_empty()).then(|| init.iter().map(c).collect()),
            containers: containers.iter().map(c).collect(),
            ..Default::default()
        }
    }

    fn sandbox(id: &str, attempt: u32, ready: bool) -> SandboxStatus {
        SandboxStatus {
            id: id.into(),
            attempt,
            ready,
            ip: "172.16.9.2".into(),
            netns: "/run/netns/cni-x".into(),
            created_at: 1,
        }
    }

    fn ctr(id: &str, sb: &str, name: &str, state: ContainerState, code: i32) -> ContainerStatus {
        ContainerStatus {
            id: id.into(),
            sandbox_id: sb.into(),
            name: name.into(),
            attempt: 0,
            state,
            created_at: 1,
            started_at: 1,
            finished_at: 2,
            exit_code: code,
            reason: String::new(),
            message: String::new(),
            image: "app".into(),
            image_ref: "app".into(),
            grace_period_s: None,
        }
    }

    fn rt(sbs: Vec<SandboxStatus>, cs: Vec<ContainerStatus>) -> PodRuntimeStatus {
        PodRuntimeStatus {
            uid: "u".into(),
            name: "p".into(),
            namespace: "default".into(),
            sandboxes: sbs,
            containers: cs,
        }
    }

    fn healthy(_: &str) -> Option<String> {
        None
    }

    use ContainerState::*;

    #[test]
    fn table() {
        let cases: Vec<(&str, PodSpec, PodRuntimeStatus, Actions)> = vec![
            (
                "new pod: sandbox and all containers",
                spec("Always", &[], &["a", "b"]),
                rt(vec![], vec![]),
                Actions {
                    create_sandbox: true,
                    start: vec![0, 1],
                    ..Default::default()
                },
            ),
            (
                "new pod with init containers: the first init only",
                spec("Always", &["i1", "i2"], &["a"]),
                rt(vec![], vec![]),
                Actions {
                    create_sandbox: true,
                    next_init: Some(0),
                    ..Default::default()
                },
            ),
            (
                "init 1 done, init 2 next",
                spec("Always", &["i1", "i2"], &["a"]),
                rt(
                    vec![sandbox("s", 0, true)],
                    vec![ctr("c1", "s", "i1", ContainerExited, 0)],
                ),
                Actions {
                    next_init: Some(1),
                    ..Default::default()
                },
            ),
            (
                "init running: wait",
                spec("Always", &["i1"], &["a"]),
                rt(
                    vec![sandbox("s", 0, true)],
                    vec![ctr("c1", "s", "i1", ContainerRunning, 0)],
                ),
                Actions::default(),
            ),
            (
                "failed init restarts unless Never",
                spec("OnFailure", &["i1"], &["a"]),
                rt(
                    vec![sandbox("s", 0, true)],
                    vec![ctr("c1", "s", "i1", ContainerExited, 1)],
                ),
                Actions {
                    next_init: Some(0),
                    ..Default::default()
                },
            ),
            (
                "failed init with Never fails the pod",
                spec("Never", &["i1"], &["a"]),
                rt(
                    vec![sandbox("s", 0, true)],
                    vec![ctr("c1", "s", "i1", ContainerExited, 1)],
                ),
                Actions {
                    kill_pod: true,
                    ..Default::default()
                },
            ),
            (
                "inits done: containers start",
                spec("Always", &["i1"], &["a"]),
                rt(
                    vec![sandbox("s", 0, true)],
                    vec![ctr("c1", "s", "i1", ContainerExited, 0)],
                ),
                Actions {
                    start: vec![0],
                    ..Default::default()
                },
            ),
            (
                "running: nothing to do",
                spec("Always", &[], &["a"]),
                rt(
                    vec![sandbox("s", 0, true)],
                    vec![ctr("c1", "s", "a", ContainerRunning, 0)],
                ),
                Actions::default(),
            ),
            (
                "exited with Always restarts",
                spec("Always", &[], &["a"]),
                rt(
                    vec![sandbox("s", 0, true)],
                    vec![ctr("c1", "s", "a", ContainerExited, 0)],
                ),
                Actions {
                    start: vec![0],
                    ..Default::default()
                },
            ),
            (
                "exit 0 with OnFailure stays",
                spec("OnFailure", &[], &["a"]),
                rt(
                    vec![sandbox("s", 0, true)],
                    vec![ctr("c1", "s", "a", ContainerExited, 0)],
                ),
                Actions::default(),
            ),
            (
                "exit 1 with OnFailure restarts",
                spec("OnFailure", &[], &["a"]),
                rt(
                    vec![sandbox("s", 0, true)],
                    vec![ctr("c1", "s", "a", ContainerExited, 1)],
                ),
                Actions {
                    start: vec![0],
                    ..Default::default()
                },
            ),
            (
                "Never never restarts",
                spec("Never", &[], &["a"]),
                rt(
                    vec![sandbox("s", 0, true)],
                    vec![ctr("c1", "s", "a", ContainerExited, 1)],
                ),
                Actions::default(),
            ),
            (
                "dead sandbox: kill, new sandbox attempt 1, all containers",
                spec("Always", &[], &["a"]),
                rt(
                    vec![sandbox("s", 0, false)],
                    vec![ctr("c1", "s", "a", ContainerExited, 0)],
                ),
                Actions {
                    kill_pod: true,
                    create_sandbox: true,
                    sandbox_attempt: 1,
                    start: vec![0],
                    ..Default::default()
                },
            ),
            (
                "dead sandbox of a finished Never pod: only clean up",
                spec("Never", &[], &["a"]),
                rt(
                    vec![sandbox("s", 0, false)],
                    vec![ctr("c1", "s", "a", ContainerExited, 0)],
                ),
                Actions {
                    kill_pod: true,
                    sandbox_attempt: 1,
                    ..Default::default()
                },
            ),
            (
                "a created container is being started",
                spec("Always", &[], &["a"]),
                rt(
                    vec![sandbox("s", 0, true)],
                    vec![ctr("c1", "s", "a", ContainerCreated, 0)],
                ),
                Actions::default(),
            ),
        ];
        for (what, spec, rt, want) in cases {
            assert_eq!(compute_actions(&spec, &rt, &healthy), want, "{what}");
        }
    }

    #[test]
    fn failed_liveness_kills_and_restarts() {
        let s = spec("Always", &[], &["a"]);
        let r = rt(
            vec![sandbox("s", 0, true)],
            vec![ctr("c1", "s", "a", ContainerRunning, 0)],
        );
        let bad = |id: &str| {
            (id == "c1").then(|| "Container a failed liveness probe, will be restarted".to_string())
        };
        let a = compute_actions(&s, &r, &bad);
        assert_eq!(
            a.kill,
            vec![Kill {
                id: "c1".into(),
                name: "a".into(),
                message: "Container a failed liveness probe, will be restarted".into()
            }]
        );
        assert_eq!(a.start, vec![0]);
        let never = spec("Never", &[], &["a"]);
        assert!(compute_actions(&never, &r, &bad).start.is_empty());
    }
}
