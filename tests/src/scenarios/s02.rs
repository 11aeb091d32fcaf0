//! S02 node-notready-cni-netlink-hang: a netlink call inside the CNI
//! daemon never returns while it holds the daemon's lock (failpoint
//! `cnid/netlink/recv`). Deleting a pod runs a CNI DEL that waits on the
//! daemon while the runtime holds the pod's lock; PLEG's relist waits on
//! that lock and the node goes NotReady. Restarting the kubelet makes it
//! Ready for exactly the PLEG threshold, then NotReady again; restarting
//! the CNI daemon heals it.

use std::time::Duration;

use super::util::{
    node_processes, pleg_not_ready, pod_phase, quick_pod, ready_condition, skipping_pod_sync_line,
    workers_ready,
};
use crate::cluster::Cluster;
use crate::scenario::{Phase, Run};

pub const ID: &str = "S02";
pub const TITLE: &str = "node-notready-cni-netlink-hang";
pub const NODES: usize = 1;

const VICTIM: &str = "s02-victim";

async fn node_ready(c: &impl Cluster, r: &mut Run, what: &str, node: &str) -> anyhow::Result<()> {
    r.eventually(what, Duration::from_secs(900), || async move {
        let cond = ready_condition(c, node).await?;
        Ok((cond["status"] == "True")
            .then(|| ((), cond["message"].as_str().unwrap_or("").to_owned())))
    })
    .await
}

pub async fn run(c: &impl Cluster, r: &mut Run) -> anyhow::Result<()> {
    r.phase(Phase::Setup);
    let nodes = workers_ready(c, r, NODES).await?;
    let node = nodes[0].clone();
    super::util::create(c, &quick_pod(VICTIM, None)).await?;
    r.eventually(
        "a pod runs on the node",
        Duration::from_secs(600),
        || async {
            Ok((pod_phase(c, VICTIM).await? == "Running")
                .then(|| ((), format!("{VICTIM} Running"))))
        },
    )
    .await?;

    r.phase(Phase::Inject);
    let cnid = format!("{node}/cnid");
    c.chaos(&[
        "failpoint",
        "set",
        "--target",
        &cnid,
        "cnid/netlink/recv",
        "hang",
    ])
    .await?
    .ok("setting cnid/netlink/recv")?;
    r.step(
        "a netlink receive in the CNI daemon never returns",
        format!("cnid/netlink/recv=hang on {node}"),
    );
    c.kubectl(&["delete", "pod", VICTIM, "--wait=false"])
        .await?
        .ok("deleting the pod")?;
    r.step("the pod is deleted: its CNI DEL goes to the daemon", VICTIM);

    r.phase(Phase::Observe);
    pleg_not_ready(c, r, "the node goes NotReady: PLEG is not healthy", &node).await?;
    r.eventually(
        "CNI plugin processes wait on the daemon",
        Duration::from_secs(300),
        || {
            let node = node.clone();
            async move {
                let cni = node_processes(c, &node, "ackemu-cni").await?;
                Ok((!cni.is_empty()).then(|| {
                    let d = format!("{} waiting: {}", cni.len(), cni[0]);
                    ((), d)
                }))
            }
        },
    )
    .await?;
    r.eventually(
        "the daemon's task dump: the lock holder is parked in netlink",
        Duration::from_secs(300),
        || {
            let cnid = cnid.clone();
            async move {
                let dump = c
                    .chaos(&["tasks", "--target", &cnid])
                    .await?
                    .ok("cnid task dump")?;
                // Longest wait first: among the daemon's requests, the
                // oldest waiter is the one holding the lock.
                let waits: Vec<&str> = dump
                    .lines()
                    .filter(|l| l.contains(" waiting ") && l.contains("cnid"))
                    .collect();
                match waits.first() {
                    Some(l) if l.contains("netlink recvfrom") => {
                        Ok(Some(((), l.trim().to_owned())))
                    }
                    _ => Err(anyhow::anyhow!("the task dump:\n{dump}")),
                }
            }
        },
    )
    .await?;
    // The operator restarts the kubelet: Ready, until its first relist is
    // as old as the threshold.
    c.ssh(
        &node,
        &["ackemu-node", "systemctl", "restart", "kubelet.service"],
    )
    .await?
    .ok("systemctl restart kubelet")?;
    r.step("systemctl restart kubelet on the node", node.clone());
    node_ready(c, r, "after the restart the node is Ready", &node).await?;
    let ready_at = r.elapsed();
    pleg_not_ready(c, r, "then NotReady again", &node).await?;
    let ready_for = r.elapsed().saturating_sub(ready_at);
    // Reported, not asserted: how long it looked healthy (about the 3m
    // threshold, less the time the status took to show).
    r.step(
        "it was Ready for about the PLEG threshold",
        format!("{:.0}s of cluster time", ready_for.as_secs_f64()),
    );
    let log = c.node_log(&node, "kubelet").await?;
    let line = skipping_pod_sync_line(&log)
        .ok_or_else(|| anyhow::anyhow!("the kubelet never logged skipping pod synchronization"))?;
    r.step("kubelet logs skipping pod synchronization", line.trim());

    r.phase(Phase::Heal);
    c.ssh(
        &node,
        &["ackemu-node", "systemctl", "restart", "cnid.service"],
    )
    .await?
    .ok("systemctl restart cnid")?;
    r.step("systemctl restart cnid on the node", node.clone());

    r.phase(Phase::Recover);
    node_ready(c, r, "the node is Ready again", &node).await?;
    r.eventually(
        "the deleted pod is gone",
        Duration::from_secs(900),
        || async {
            Ok(pod_phase(c, VICTIM)
                .await?
                .is_empty()
                .then(|| ((), format!("{VICTIM} deleted"))))
        },
    )
    .await?;
    let after = "s02-after";
    super::util::create(c, &quick_pod(after, None)).await?;
    r.eventually("new pods run", Duration::from_secs(600), || async {
        Ok((pod_phase(c, after).await? == "Running").then(|| ((), format!("{after} Running"))))
    })
    .await?;
    Ok(())
}
