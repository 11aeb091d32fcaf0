//! The seed article's scheduling walk-through (000, "择优而居"): a pod named
//! `app` with no resource requests, created in `default`, scored on three
//! worker nodes by a `--v=10` kube-scheduler whose logs list
//! `LeastResourceAllocation`, `BalancedResourceAllocation` and the spreading
//! priority. The article adds the logged items up to 29, 28 and 29 and
//! explains the logged totals with the unlogged
//! `NodePreferAvoidPodsPriority` (10 points × weight 10000).
//!
//! The article does not print the nodes' requests, so the cluster below is
//! built to produce its numbers: 4-core / 8000 MiB workers carrying system
//! pods that reserve 10 %, 20 % and 5 % of both CPU and memory once `app`'s
//! default 100m / 200 MiB is added.

use ackemu_kube::api::core::v1::{Node, Pod};
use ackemu_scheduler::fixtures::{NodeBuilder, PodBuilder};
use ackemu_scheduler::{Algorithm, PodInfo, Profile, ScheduleError, Snapshot, Trace, Workloads};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const A: &str = "cn-hangzhou.192.168.0.224";
const B: &str = "cn-hangzhou.192.168.0.225";
const C: &str = "cn-hangzhou.192.168.0.226";

fn worker(name: &str) -> Node {
    NodeBuilder::new(name)
        .cpu("4")
        .memory("8000Mi")
        .label("topology.kubernetes.io/region", "cn-hangzhou")
        .label("topology.kubernetes.io/zone", "cn-hangzhou-g")
        .build()
}

fn master(name: &str) -> Node {
    NodeBuilder::new(name)
        .cpu("4")
        .memory("8000Mi")
        .label("node-role.kubernetes.io/master", "")
        .taint("node-role.kubernetes.io/master", "", "NoSchedule")
        .build()
}

fn system_pod(name: &str, node: &str, requests: &[(&str, &str)]) -> Pod {
    let b = PodBuilder::new("kube-system", name).node_name(node);
    if requests.is_empty() {
        b.build()
    } else {
        b.container_requests(requests).build()
    }
}

fn cluster() -> Snapshot {
    let nodes = vec![
        master("cn-hangzhou.192.168.0.220"),
        master("cn-hangzhou.192.168.0.221"),
        master("cn-hangzhou.192.168.0.222"),
        worker(A),
        worker(B),
        worker(C),
    ];
    let pods = vec![
        // kube-proxy has no requests: it counts 100m / 200Mi when scoring.
        system_pod("kube-proxy-worker-a", A, &[]),
        system_pod(
            "kube-flannel-ds-a",
            A,
            &[("cpu", "100m"), ("memory", "200Mi")],
        ),
        system_pod("logtail-ds-a", A, &[("cpu", "100m"), ("memory", "200Mi")]),
        system_pod("kube-proxy-worker-b", B, &[]),
        system_pod(
            "kube-flannel-ds-b",
            B,
            &[("cpu", "100m"), ("memory", "200Mi")],
        ),
        system_pod("coredns-1", B, &[("cpu", "250m"), ("memory", "500Mi")]),
        system_pod(
            "metrics-server-1",
            B,
            &[("cpu", "250m"), ("memory", "500Mi")],
        ),
        system_pod("kube-proxy-worker-c", C, &[]),
    ];
    Snapshot::from_objects(nodes, pods, Workloads::default())
}

/// The article's app.json: one container, port 2580, no requests.
fn app() -> PodInfo {
    let mut pod = PodBuilder::new("default", "app")
        .image("registry.cn-hangzhou.aliyuncs.com/kube-easy/app:latest")
        .build();
    if let Some(c) = pod.spec.as_mut().and_then(|s| s.containers.first_mut()) {
        c.command = Some(vec!["app".into()]);
        c.ports = Some(vec![ackemu_kube::api::core::v1::ContainerPort {
            container_port: 2580,
            ..Default::default()
        }]);
    }
    PodInfo::new(pod)
}

#[test]
fn article_scores_29_28_29_and_100029_with_prefer_avoid_pods() -> anyhow::Result<()> {
    let profile = Profile::legacy_policy(&[
        ("LeastRequestedPriority", 1),
        ("BalancedResourceAllocation", 1),
        ("SelectorSpreadPriority", 1),
        ("NodePreferAvoidPodsPriority", 10000),
    ])?;
    let snap = cluster();
    let mut alg = Algorithm::new(profile);
    let mut trace = Trace::enabled();
    let r = alg.schedule_pod(
        &snap,
        &app(),
        &mut ChaCha8Rng::seed_from_u64(2019),
        &mut trace,
    )?;

    // The three masters are filtered out; the three workers are scored.
    assert_eq!((r.evaluated_nodes, r.feasible_nodes), (6, 3));
    let mut logged = Vec::new();
    let mut totals = Vec::new();
    for n in [A, B, C] {
        let s = r
            .scores
            .iter()
            .find(|s| s.name == n)
            .expect("worker scored");
        let item = |p: &str| {
            s.scores
                .iter()
                .find(|(name, _)| *name == p)
                .map(|(_, v)| *v)
        };
        logged.push(
            item("LeastRequestedPriority").unwrap_or(-1)
                + item("BalancedResourceAllocation").unwrap_or(-1)
                + item("SelectorSpreadPriority").unwrap_or(-1),
        );
        assert_eq!(item("NodePreferAvoidPodsPriority"), Some(10 * 10000));
        totals.push(s.total);
    }
    assert_eq!(
        logged,
        [29, 28, 29],
        "the article's sums of the logged items"
    );
    assert_eq!(totals, [100029, 100028, 100029]);
    assert!(
        r.suggested_host == A || r.suggested_host == C,
        "a best node wins"
    );

    let t = trace.texts();
    for line in [
        format!(
            "app -> {A}: LeastResourceAllocation, capacity 4000 millicores 8388608000 memory bytes, total request 400 millicores 838860800 memory bytes, score 9"
        ),
        format!(
            "app -> {A}: BalancedResourceAllocation, capacity 4000 millicores 8388608000 memory bytes, total request 400 millicores 838860800 memory bytes, score 10"
        ),
        format!(
            "app -> {B}: LeastResourceAllocation, capacity 4000 millicores 8388608000 memory bytes, total request 800 millicores 1677721600 memory bytes, score 8"
        ),
        format!(
            "app -> {C}: LeastResourceAllocation, capacity 4000 millicores 8388608000 memory bytes, total request 200 millicores 419430400 memory bytes, score 9"
        ),
        format!("app -> {B}: SelectorSpreadPriority, Score: (10)"),
        format!("Host {A} => Score 100029"),
        format!("Host {B} => Score 100028"),
        format!("Host {C} => Score 100029"),
    ] {
        assert!(t.contains(&line.as_str()), "missing {line:?} in {t:#?}");
    }
    assert!(t.contains(
        &r#""Filter plugin result for pod" pod="default/app" node="cn-hangzhou.192.168.0.220" plugin="TaintToleration" status="UnschedulableAndUnresolvable" reason="node(s) had untolerated taint {node-role.kubernetes.io/master: }""#
    ));
    Ok(())
}

#[test]
fn same_cluster_under_the_1_33_default_profile() -> anyhow::Result<()> {
    let snap = cluster();
    let mut alg = Algorithm::new(Profile::default_profile());
    let mut trace = Trace::enabled();
    let r = alg.schedule_pod(
        &snap,
        &app(),
        &mut ChaCha8Rng::seed_from_u64(2019),
        &mut trace,
    )?;
    // TaintToleration 100×3 everywhere; LeastAllocated 90 / 80 / 95; a
    // BestEffort pod is not scored by BalancedAllocation, and a pod no
    // Service or controller selects is not spread.
    let totals: Vec<i64> = [A, B, C]
        .iter()
        .map(|n| {
            r.scores
                .iter()
                .find(|s| s.name == *n)
                .map_or(-1, |s| s.total)
        })
        .collect();
    assert_eq!(totals, [390, 380, 395]);
    assert_eq!(r.suggested_host, C);
    let t = trace.texts();
    for line in [
        format!(
            r#""Plugin scored node for pod" pod="default/app" plugin="TaintToleration" node="{A}" score=300"#
        ),
        format!(
            r#""Plugin scored node for pod" pod="default/app" plugin="NodeResourcesFit" node="{B}" score=80"#
        ),
        format!(
            r#""Plugin scored node for pod" pod="default/app" plugin="ImageLocality" node="{C}" score=0"#
        ),
        format!(
            r#""Calculated node's final score for pod" pod="default/app" node="{C}" score=395"#
        ),
        format!(
            r#""Listed internal info for allocatable resources, requested resources and score" pod="default/app" node="{A}" resourceAllocationScorer="LeastAllocated" allocatableResource=[4000 8388608000] requestedResource=[400 838860800] resourceScore=90"#
        ),
    ] {
        assert!(t.contains(&line.as_str()), "missing {line:?} in {t:#?}");
    }
    assert!(
        !t.iter()
            .any(|l| l.contains("NodeResourcesBalancedAllocation"))
    );
    Ok(())
}

/// The scaling article (S09): the scheduler counts reservations, not usage.
#[test]
fn reservation_not_usage_leaves_pods_pending() -> anyhow::Result<()> {
    let nodes = vec![worker(A), worker(B), worker(C)];
    let pods: Vec<Pod> = [A, B, C]
        .iter()
        .map(|n| system_pod(&format!("idle-but-reserved-{n}"), n, &[("cpu", "3500m")]))
        .collect();
    let snap = Snapshot::from_objects(nodes, pods, Workloads::default());
    let pending = PodInfo::new(
        PodBuilder::new("default", "web")
            .container_requests(&[("cpu", "1"), ("memory", "512Mi")])
            .build(),
    );
    let mut alg = Algorithm::new(Profile::default_profile());
    match alg.schedule_pod(
        &snap,
        &pending,
        &mut ChaCha8Rng::seed_from_u64(0),
        &mut Trace::disabled(),
    ) {
        Err(ScheduleError::Fit(e)) => {
            assert_eq!(
                e.to_string(),
                "0/3 nodes are available: 3 Insufficient cpu."
            );
            assert_eq!(
                e.unschedulable_plugins.iter().copied().collect::<Vec<_>>(),
                ["NodeResourcesFit"]
            );
        }
        other => anyhow::bail!("expected a fit error, got {other:?}"),
    }
    Ok(())
}
