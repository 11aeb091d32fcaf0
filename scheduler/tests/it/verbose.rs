//! `--v=10` prints every filter result and every node's score per plugin
//! with the weighted totals.

use serde_json::json;

use crate::harness::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v10_logs_filters_and_scores_per_plugin() -> anyhow::Result<()> {
    let mut c = Cluster::start().await?;
    c.node("n1", "2", "4Gi", &[], &[]).await?;
    c.node("n2", "4", "8Gi", &[], &[]).await?;
    c.node("n3", "4", "8Gi", &[], &[("dedicated", "db", "NoSchedule")])
        .await?;
    let s = c.scheduler(&["--v=10"])?;
    c.pod("traced", "500m", json!({})).await?;
    let node = c.bound_node("traced").await?;
    s.wait_log("\"Calculated node's final score for pod\"")
        .await?;
    let log = s.log_text();
    for needle in [
        r#""Filter plugin result for pod" pod="default/traced" node="n1" plugin="NodeResourcesFit" status="Success""#,
        r#""Filter plugin result for pod" pod="default/traced" node="n3" plugin="TaintToleration" status="UnschedulableAndUnresolvable" reason="node(s) had untolerated taint {dedicated: db}""#,
        r#""Plugin scored node for pod" pod="default/traced" plugin="NodeResourcesFit" node="n1" score="#,
        r#""Plugin scored node for pod" pod="default/traced" plugin="NodeResourcesBalancedAllocation" node="n2" score="#,
        r#""Plugin scored node for pod" pod="default/traced" plugin="TaintToleration" node="n2" score=300"#,
        r#""Calculated node's final score for pod" pod="default/traced" node="n1" score="#,
        r#""Calculated node's final score for pod" pod="default/traced" node="n2" score="#,
    ] {
        assert!(log.contains(needle), "missing {needle} in:\n{log}");
    }
    // The bigger node is the least allocated.
    assert_eq!(node, "n2");
    Ok(())
}
