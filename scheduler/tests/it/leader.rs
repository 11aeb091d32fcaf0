//! Two schedulers: only the `kube-system/kube-scheduler` Lease holder
//! binds; when it is killed the other takes over.

use serde_json::json;

use crate::harness::{Cluster, eventually};

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-scheduler";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_binds_and_the_other_takes_over() -> anyhow::Result<()> {
    let mut c = Cluster::start().await?;
    c.node("n1", "4", "8Gi", &[], &[]).await?;
    let args = [
        "--v=2",
        "--leader-elect-lease-duration=3s",
        "--leader-elect-renew-deadline=2s",
        "--leader-elect-retry-period=500ms",
    ];
    let a = c.scheduler(&args)?;
    // `a` leads before `b` starts, so the roles are known.
    a.wait_log("successfully acquired lease kube-system/kube-scheduler")
        .await?;
    let b = c.scheduler(&args)?;
    b.wait_log("attempting to acquire leader lease kube-system/kube-scheduler")
        .await?;
    let holder_a = c.client.request("GET", LEASE, None).await?["spec"]["holderIdentity"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    c.pod("first", "100m", json!({})).await?;
    assert_eq!(c.bound_node("first").await?, "n1");
    a.wait_log("\"Successfully bound pod to node\" pod=\"default/first\"")
        .await?;
    assert!(
        !b.log_text().contains("Successfully bound pod to node"),
        "the follower bound a pod"
    );
    assert!(!b.log_text().contains("successfully acquired lease"));

    let mut a = a;
    a.kill();
    c.pod("second", "100m", json!({})).await?;
    b.wait_log("successfully acquired lease kube-system/kube-scheduler")
        .await?;
    assert_eq!(c.bound_node("second").await?, "n1");
    b.wait_log("\"Successfully bound pod to node\" pod=\"default/second\"")
        .await?;
    let holder_b = eventually("the lease to change hands", || async {
        let h = c.client.request("GET", LEASE, None).await?["spec"]["holderIdentity"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        Ok((h != holder_a).then_some(h))
    })
    .await?;
    assert!(!holder_b.is_empty());
    Ok(())
}
