use super::*;
use crate::fixtures::{node, pod};
use ackemu_kube::api::core::v1::PodCondition;

fn pending(name: &str, cpu: &str) -> Pod {
    let mut p = pod("default", name)
        .owner("ReplicaSet", "web-1")
        .cpu(cpu)
        .build();
    p.status.as_mut().unwrap().conditions = Some(vec![PodCondition {
        type_: "PodScheduled".into(),
        status: "False".into(),
        reason: Some("Unschedulable".into()),
        message: Some("0/3 nodes are available: 3 Insufficient cpu.".into()),
        ..Default::default()
    }]);
    p
}

fn running(name: &str, node: &str, cpu: &str) -> Pod {
    pod("default", name)
        .owner("ReplicaSet", "web-1")
        .node(node)
        .cpu(cpu)
        .ready(0)
        .build()
}

fn group(target: usize, max: usize, nodes: &[&str]) -> NodeGroup {
    NodeGroup {
        id: "asg-1".into(),
        min: 1,
        max,
        target,
        template: node("template", "2", "8Gi"),
        nodes: nodes
            .iter()
            .map(|n| (n.to_string(), format!("i-{n}")))
            .collect(),
    }
}

fn events(a: &[ScaleAction], reason: &str) -> Vec<String> {
    a.iter()
        .filter_map(|x| match x {
            ScaleAction::Event(e) if e.reason == reason => Some(e.message.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn s09_scale_up_by_reservation() {
    // Three 2-CPU nodes each reserved at 1.5 CPU; usage is irrelevant.
    let nodes = [
        node("n1", "2", "8Gi"),
        node("n2", "2", "8Gi"),
        node("n3", "2", "8Gi"),
    ];
    let busy = [
        running("b1", "n1", "1500m"),
        running("b2", "n2", "1500m"),
        running("b3", "n3", "1500m"),
    ];
    let want = [pending("p1", "1"), pending("p2", "1"), pending("p3", "1")];
    let pods: Vec<&Pod> = busy.iter().chain(want.iter()).collect();
    let g = group(3, 5, &["n1", "n2", "n3"]);
    let mut a = Autoscaler::new(AutoscalerConfig::default());
    let (out, report) = a.run_once(
        &nodes.iter().collect::<Vec<_>>(),
        &pods,
        std::slice::from_ref(&g),
        Now::at_secs(0),
    );
    assert_eq!(
        out[0],
        ScaleAction::IncreaseSize {
            group: "asg-1".into(),
            from: 3,
            to: 5
        },
        "two pods per new node"
    );
    assert_eq!(
        events(&out, "TriggeredScaleUp"),
        vec!["pod triggered scale-up: [{asg-1 3->5 (max: 5)}]"; 3]
    );
    assert_eq!(report.scale_up, Some(("asg-1".into(), 3, 5)));

    // While the new nodes register, the same pods do not trigger again.
    let g2 = group(5, 5, &["n1", "n2", "n3"]);
    let (out, _) = a.run_once(
        &nodes.iter().collect::<Vec<_>>(),
        &pods,
        std::slice::from_ref(&g2),
        Now::at_secs(30),
    );
    assert!(out.is_empty(), "{out:?}");
}

/// Regression: an instance that registered its Node but is not Ready yet
/// was neither a usable node nor an upcoming one, so every pass while it
/// booted raised the group again.
#[test]
fn booting_instances_are_upcoming_nodes() {
    let mut booting = node("n3", "2", "8Gi");
    booting.status.as_mut().unwrap().conditions =
        Some(vec![ackemu_kube::api::core::v1::NodeCondition {
            type_: "Ready".into(),
            status: "False".into(),
            reason: Some("KubeletNotReady".into()),
            ..Default::default()
        }]);
    let nodes = [node("n1", "2", "8Gi"), node("n2", "2", "8Gi"), booting];
    let ns: Vec<&Node> = nodes.iter().collect();
    let busy = [running("b1", "n1", "1500m"), running("b2", "n2", "1500m")];
    let want = pending("p1", "1");
    let pods: Vec<&Pod> = busy.iter().chain([&want]).collect();
    // Asked for 3, all 3 registered, n3 not Ready 60s after it registered.
    let g = group(3, 5, &["n1", "n2", "n3"]);
    let now = Now::at_secs(60);
    assert_eq!(readiness(&nodes[2], now), Readiness::NotStarted);
    assert_eq!(upcoming(&g, &ns, now), 1);
    let mut a = Autoscaler::new(AutoscalerConfig::default());
    let (out, report) = a.run_once(&ns, &pods, std::slice::from_ref(&g), now);
    assert!(out.is_empty(), "the booting node will take p1: {out:?}");
    assert_eq!(report.unschedulable, 0);
    let status = render_status(&ns, std::slice::from_ref(&g), &report, now);
    assert!(
        status.contains("ready=2 unready=0 notStarted=1"),
        "{status}"
    );

    // Not Ready for longer than the startup time: no longer upcoming.
    let late = Now::at_secs(60).plus(MAX_NODE_STARTUP_TIME);
    assert_eq!(readiness(&nodes[2], late), Readiness::Unready);
    let (out, _) = a.run_once(&ns, &pods, std::slice::from_ref(&g), late);
    assert_eq!(
        out[0],
        ScaleAction::IncreaseSize {
            group: "asg-1".into(),
            from: 3,
            to: 4
        }
    );
}

/// Regression (S09): a new node that is Ready but has no route yet
/// (`NetworkUnavailable`), or still carries the not-ready taint, cannot
/// take pods; it is a starting node, not a reason to scale up again.
#[test]
fn ready_nodes_without_network_or_with_not_ready_taint_are_still_starting() {
    use ackemu_kube::api::core::v1::{NodeCondition, Taint};
    let cond = |t: &str, s: &str| NodeCondition {
        type_: t.into(),
        status: s.into(),
        ..Default::default()
    };
    let mut no_route = node("n3", "2", "8Gi");
    no_route.status.as_mut().unwrap().conditions = Some(vec![
        cond("Ready", "True"),
        cond("NetworkUnavailable", "True"),
    ]);
    let mut tainted = node("n3", "2", "8Gi");
    tainted.status.as_mut().unwrap().conditions = Some(vec![cond("Ready", "True")]);
    tainted.spec.as_mut().unwrap().taints = Some(vec![Taint {
        key: "node.kubernetes.io/not-ready".into(),
        effect: "NoSchedule".into(),
        ..Default::default()
    }]);
    let now = Now::at_secs(60);
    for booting in [no_route, tainted] {
        assert_eq!(readiness(&booting, now), Readiness::NotStarted);
        let nodes = [node("n1", "2", "8Gi"), node("n2", "2", "8Gi"), booting];
        let ns: Vec<&Node> = nodes.iter().collect();
        let busy = [running("b1", "n1", "1500m"), running("b2", "n2", "1500m")];
        let want = pending("p1", "1");
        let pods: Vec<&Pod> = busy.iter().chain([&want]).collect();
        let g = group(3, 5, &["n1", "n2", "n3"]);
        assert_eq!(upcoming(&g, &ns, now), 1);
        let mut a = Autoscaler::new(AutoscalerConfig::default());
        let (out, _) = a.run_once(&ns, &pods, std::slice::from_ref(&g), now);
        assert!(out.is_empty(), "n3 will take p1: {out:?}");
    }
    let mut routed = node("n3", "2", "8Gi");
    routed.status.as_mut().unwrap().conditions = Some(vec![
        cond("Ready", "True"),
        cond("NetworkUnavailable", "False"),
    ]);
    assert_eq!(readiness(&routed, now), Readiness::Ready);
}

#[test]
fn pods_that_cannot_be_helped() {
    let nodes = [node("n1", "2", "8Gi")];
    let huge = pending("huge", "4");
    let g = group(1, 3, &["n1"]);
    let mut a = Autoscaler::new(AutoscalerConfig::default());
    let (out, _) = a.run_once(
        &nodes.iter().collect::<Vec<_>>(),
        &[&huge],
        std::slice::from_ref(&g),
        Now::at_secs(0),
    );
    assert_eq!(
        events(&out, "NotTriggerScaleUp"),
        vec!["pod didn't trigger scale-up: 1 Insufficient cpu"]
    );
    let small = pending("small", "1");
    let busy = running("b", "n1", "1500m");
    let full = group(3, 3, &["n1"]);
    let (out, _) = a.run_once(
        &nodes.iter().collect::<Vec<_>>(),
        &[&small, &busy],
        std::slice::from_ref(&full),
        Now::at_secs(0),
    );
    assert!(
        out.is_empty(),
        "upcoming nodes of a full group still count: {out:?}"
    );
    let full_registered = group(1, 1, &["n1"]);
    let (out, _) = a.run_once(
        &nodes.iter().collect::<Vec<_>>(),
        &[&small, &busy],
        std::slice::from_ref(&full_registered),
        Now::at_secs(0),
    );
    assert_eq!(
        events(&out, "NotTriggerScaleUp"),
        vec!["pod didn't trigger scale-up: 1 max node group size reached"]
    );
}

#[test]
fn scale_down_after_unneeded_time() {
    let nodes = [
        node("n1", "2", "8Gi"),
        node("n2", "2", "8Gi"),
        node("n3", "2", "8Gi"),
    ];
    let pods = [
        running("a", "n1", "1200m"),
        running("b", "n2", "1200m"),
        running("c", "n3", "200m"),
    ];
    let refs: Vec<&Pod> = pods.iter().collect();
    let g = group(3, 5, &["n1", "n2", "n3"]);
    let mut a = Autoscaler::new(AutoscalerConfig::default());
    let ns: Vec<&Node> = nodes.iter().collect();
    let (out, report) = a.run_once(&ns, &refs, std::slice::from_ref(&g), Now::at_secs(0));
    assert!(out.is_empty());
    assert_eq!(report.unneeded, vec!["n3"]);
    assert_eq!(
        report.unremovable.get("n1"),
        Some(&Unremovable::NotUnderutilized)
    );
    assert!((report.utilization["n3"] - 0.1).abs() < 1e-9);
    let (out, _) = a.run_once(&ns, &refs, std::slice::from_ref(&g), Now::at_secs(599));
    assert!(out.is_empty(), "not unneeded long enough");
    let (out, report) = a.run_once(&ns, &refs, std::slice::from_ref(&g), Now::at_secs(600));
    assert_eq!(
        out,
        vec![ScaleAction::ScaleDown {
            group: "asg-1".into(),
            node: "n3".into(),
            instance_id: "i-n3".into(),
            evict: vec![PodRef::of(&pods[2])]
        }]
    );
    assert_eq!(report.removed, vec!["n3"]);
    let status = render_status(&ns, std::slice::from_ref(&g), &report, Now::at_secs(600));
    assert!(
        status.contains("ScaleDown:   CandidatesPresent (candidates=1)"),
        "{status}"
    );
    assert!(
        status.contains("cloudProviderTarget=3 (minSize=1, maxSize=5)"),
        "{status}"
    );
}

#[test]
fn scale_down_blockers() {
    let nodes = [node("n1", "2", "8Gi"), node("n2", "2", "8Gi")];
    let ns: Vec<&Node> = nodes.iter().collect();
    let g = group(2, 5, &["n1", "n2"]);
    let cases: Vec<(&str, Pod, Unremovable)> = vec![
        (
            "bare pod",
            pod("default", "bare")
                .node("n2")
                .cpu("100m")
                .ready(0)
                .build(),
            Unremovable::BlockedByPod {
                pod: "default/bare".into(),
                reason: "NotReplicated",
            },
        ),
        (
            "system pod",
            pod("kube-system", "dns")
                .owner("ReplicaSet", "dns")
                .node("n2")
                .cpu("100m")
                .ready(0)
                .build(),
            Unremovable::BlockedByPod {
                pod: "kube-system/dns".into(),
                reason: "UnmovableKubeSystemPod",
            },
        ),
        (
            "annotated",
            running("keep", "n2", "100m").tap_annotate(SAFE_TO_EVICT, "false"),
            Unremovable::BlockedByPod {
                pod: "default/keep".into(),
                reason: "NotSafeToEvictAnnotation",
            },
        ),
    ];
    for (name, p, want) in cases {
        let busy = running("busy", "n1", "1500m");
        let mut a = Autoscaler::new(AutoscalerConfig::default());
        let (_, report) = a.run_once(&ns, &[&busy, &p], std::slice::from_ref(&g), Now::at_secs(0));
        assert_eq!(report.unremovable.get("n2"), Some(&want), "{name}");
    }
    // A node whose pod fits nowhere else stays.
    let busy = running("busy", "n1", "1900m");
    let p = running("mid", "n2", "900m");
    let mut a = Autoscaler::new(AutoscalerConfig::default());
    a.run_once(&ns, &[&busy, &p], std::slice::from_ref(&g), Now::at_secs(0));
    let (out, report) = a.run_once(
        &ns,
        &[&busy, &p],
        std::slice::from_ref(&g),
        Now::at_secs(700),
    );
    assert!(out.is_empty());
    assert_eq!(
        report.unremovable.get("n2"),
        Some(&Unremovable::NoPlaceToMovePods)
    );
}

#[test]
fn empty_nodes_in_bulk_but_not_below_min_nor_after_a_scale_up() {
    let nodes = [
        node("n1", "2", "8Gi"),
        node("n2", "2", "8Gi"),
        node("n3", "2", "8Gi"),
    ];
    let ns: Vec<&Node> = nodes.iter().collect();
    let mut g = group(3, 5, &["n1", "n2", "n3"]);
    g.min = 2;
    let busy = running("busy", "n1", "1500m");
    let ds = pod("kube-system", "agent")
        .owner("DaemonSet", "agent")
        .node("n2")
        .cpu("100m")
        .ready(0)
        .build();
    let mut a = Autoscaler::new(AutoscalerConfig::default());
    a.run_once(
        &ns,
        &[&busy, &ds],
        std::slice::from_ref(&g),
        Now::at_secs(0),
    );
    let (out, report) = a.run_once(
        &ns,
        &[&busy, &ds],
        std::slice::from_ref(&g),
        Now::at_secs(600),
    );
    // n2 and n3 are empty (a DaemonSet pod does not count), but min is 2.
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(
        report.unremovable.get("n3"),
        Some(&Unremovable::NodeGroupMinSizeReached)
    );

    let mut a = Autoscaler::new(AutoscalerConfig::default());
    let p = pending("p", "1800m");
    let g2 = group(3, 5, &["n1", "n2", "n3"]);
    let busy2 = running("busy2", "n2", "1500m");
    let busy3 = running("busy3", "n3", "1500m");
    let (out, _) = a.run_once(
        &ns,
        &[&busy, &busy2, &busy3, &p],
        std::slice::from_ref(&g2),
        Now::at_secs(0),
    );
    assert!(matches!(out[0], ScaleAction::IncreaseSize { .. }));
    let (out, _) = a.run_once(&ns, &[&busy], std::slice::from_ref(&g2), Now::at_secs(599));
    assert!(
        out.is_empty(),
        "scale-down waits 10 min after a scale-up: {out:?}"
    );
}

trait Annotate {
    fn tap_annotate(self, k: &str, v: &str) -> Pod;
}

impl Annotate for Pod {
    fn tap_annotate(mut self, k: &str, v: &str) -> Pod {
        self.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(k.into(), v.into());
        self
    }
}
