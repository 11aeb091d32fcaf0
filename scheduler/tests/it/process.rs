//! The binary schedules what the API server holds: bindings, events, the
//! PodScheduled condition, event-driven requeueing, node selectors and
//! taints.

use serde_json::json;

use crate::harness::{Cluster, eventually, pod_scheduled};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_are_bound_and_get_the_scheduled_event() -> anyhow::Result<()> {
    let mut c = Cluster::start().await?;
    for n in ["n1", "n2", "n3"] {
        c.node(n, "2", "4Gi", &[], &[]).await?;
    }
    let s = c.scheduler(&["--v=2"])?;
    for i in 0..6 {
        c.pod(&format!("web-{i}"), "500m", json!({})).await?;
    }
    let mut per_node = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..6 {
        let name = format!("web-{i}");
        let node = c.bound_node(&name).await?;
        *per_node.entry(node.clone()).or_default() += 1;
        let e = c.event(&name, "Scheduled").await?;
        assert_eq!(
            e.message.as_deref(),
            Some(format!("Successfully assigned default/{name} to {node}").as_str())
        );
        assert_eq!(e.type_.as_deref(), Some("Normal"));
        assert_eq!(
            e.source.as_ref().and_then(|s| s.component.as_deref()),
            Some("default-scheduler")
        );
        let p = c.get_pod(&name).await?;
        assert_eq!(pod_scheduled(&p).map(|c| c.0).as_deref(), Some("True"));
    }
    // LeastAllocated spreads equal pods over equal nodes.
    assert_eq!(per_node.values().copied().collect::<Vec<_>>(), [2, 2, 2]);
    assert!(s.log_text().contains("\"Successfully bound pod to node\""));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_too_big_waits_until_a_bigger_node_joins() -> anyhow::Result<()> {
    let mut c = Cluster::start().await?;
    for n in ["n1", "n2", "n3"] {
        c.node(n, "2", "4Gi", &[], &[]).await?;
    }
    let _s = c.scheduler(&[])?;
    c.pod("big", "4", json!({})).await?;
    let want = "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.";
    let e = c.event("big", "FailedScheduling").await?;
    assert_eq!(e.message.as_deref(), Some(want));
    assert_eq!(e.type_.as_deref(), Some("Warning"));
    let cond = eventually("PodScheduled=False", || async {
        Ok(pod_scheduled(&c.get_pod("big").await?).filter(|c| c.0 == "False"))
    })
    .await?;
    assert_eq!(cond, ("False".into(), "Unschedulable".into(), want.into()));
    assert!(c.get_pod("big").await?.spec.unwrap().node_name.is_none());

    // A bigger node (the autoscaler's) is a NodeAdd event: the parked pod
    // is retried at once, not after the five-minute leftover flush.
    c.node("n4", "8", "16Gi", &[], &[]).await?;
    assert_eq!(c.bound_node("big").await?, "n4");
    let e = c.event("big", "Scheduled").await?;
    assert_eq!(
        e.message.as_deref(),
        Some("Successfully assigned default/big to n4")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_selectors_and_taints_are_honoured() -> anyhow::Result<()> {
    let mut c = Cluster::start().await?;
    c.node(
        "db",
        "4",
        "8Gi",
        &[("disk", "ssd")],
        &[("dedicated", "db", "NoSchedule")],
    )
    .await?;
    c.node("ssd", "4", "8Gi", &[("disk", "ssd")], &[]).await?;
    c.node("plain", "4", "8Gi", &[], &[]).await?;
    let _s = c.scheduler(&[])?;

    // Only "ssd" carries the label without an untolerated taint.
    for i in 0..3 {
        c.pod(
            &format!("sel-{i}"),
            "100m",
            json!({"nodeSelector": {"disk": "ssd"}}),
        )
        .await?;
    }
    // Tolerating the taint and selecting the db node by name.
    c.pod(
        "tolerant",
        "100m",
        json!({"nodeSelector": {"kubernetes.io/hostname": "db"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]}),
    )
    .await?;
    // The same without the toleration fits nowhere.
    c.pod(
        "intolerant",
        "100m",
        json!({"nodeSelector": {"kubernetes.io/hostname": "db"}}),
    )
    .await?;
    for i in 0..3 {
        assert_eq!(c.bound_node(&format!("sel-{i}")).await?, "ssd");
    }
    assert_eq!(c.bound_node("tolerant").await?, "db");
    let e = c.event("intolerant", "FailedScheduling").await?;
    assert_eq!(
        e.message.as_deref(),
        Some(
            "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: db}, 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
        )
    );
    assert!(
        c.get_pod("intolerant")
            .await?
            .spec
            .unwrap()
            .node_name
            .is_none()
    );
    Ok(())
}
