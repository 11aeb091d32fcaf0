//! S01 node-notready-systemd-cookie: the worker's systemd seals every bus
//! message with a 32-bit cookie; months of transient-unit churn (runc's
//! `UseSystemd` probe on every container operation) walk it to the top —
//! injected as the article's gdb `set var bus->cookie` through the
//! `systemd/bus/seal` failpoint — and ordinary pod churn pushes it past
//! 0xffffffff. systemd then answers nothing, runc blocks on the bus, the
//! runtime holds the container's lock while it waits, PLEG's relist blocks
//! and after 3m the node goes NotReady. `systemctl daemon-reexec` (over the
//! private socket, which still works) heals it.

use std::time::Duration;

use super::util::{
    node_processes, pleg_not_ready, pod_phase, quick_pod, ready_condition, skipping_pod_sync_line,
    workers_ready,
};
use crate::cluster::Cluster;
use crate::scenario::{Phase, Run};

pub const ID: &str = "S01";
pub const TITLE: &str = "node-notready-systemd-cookie";
pub const NODES: usize = 1;

/// Where "months of churn" left the cookie: 160 messages below the top.
const AGED_COOKIE: &str = "0xffffff60";
/// Pods created one after another until the cookie overflows.
const MAX_CHURN: usize = 60;

async fn bus_status(c: &impl Cluster, node: &str) -> anyhow::Result<String> {
    c.ssh(node, &["ackemu-node", "busctl", "status"])
        .await?
        .ok(&format!("busctl status on {node}"))
}

fn overflowed(bus: &str) -> bool {
    bus.lines().any(|l| l.starts_with("CookieOverflow=yes"))
}

pub async fn run(c: &impl Cluster, r: &mut Run) -> anyhow::Result<()> {
    r.phase(Phase::Setup);
    let nodes = workers_ready(c, r, NODES).await?;
    let node = nodes[0].clone();
    let bus = bus_status(c, &node).await?;
    anyhow::ensure!(!overflowed(&bus), "the cookie overflowed already:\n{bus}");
    r.step(
        "systemd's bus on the node is healthy",
        bus.lines().next().unwrap_or("").to_owned(),
    );

    r.phase(Phase::Inject);
    let target = format!("{node}/systemd");
    c.chaos(&[
        "failpoint",
        "set",
        "--target",
        &target,
        "systemd/bus/seal",
        &format!("1*return({AGED_COOKIE})"),
    ])
    .await?
    .ok("setting systemd/bus/seal")?;
    r.step(
        "months of unit churn: the bus cookie is near the top",
        format!("set var bus->cookie = {AGED_COOKIE} on {node}"),
    );
    // Ordinary churn: each pod's sandbox and container operations run runc,
    // whose UseSystemd probe creates and removes a transient unit.
    let mut stuck = None;
    for i in 0..MAX_CHURN {
        let name = format!("s01-churn-{i}");
        super::util::create(c, &quick_pod(&name, None)).await?;
        let outcome = r
            .eventually(
                &format!("{name} runs, or the cookie overflows"),
                Duration::from_secs(600),
                || {
                    let (name, node) = (name.clone(), node.clone());
                    async move {
                        if overflowed(&bus_status(c, &node).await?) {
                            return Ok(Some((true, "CookieOverflow=yes".to_owned())));
                        }
                        Ok((pod_phase(c, &name).await? == "Running")
                            .then(|| (false, "Running".to_owned())))
                    }
                },
            )
            .await?;
        if outcome {
            stuck = Some(name);
            break;
        }
        if i > 0 {
            c.kubectl(&[
                "delete",
                "pod",
                &format!("s01-churn-{}", i - 1),
                "--wait=false",
            ])
            .await?
            .ok("deleting a churn pod")?;
        }
    }
    let stuck = stuck.ok_or_else(|| {
        anyhow::anyhow!("{MAX_CHURN} pods did not overflow the cookie from {AGED_COOKIE}")
    })?;

    r.phase(Phase::Observe);
    pleg_not_ready(c, r, "the node goes NotReady: PLEG is not healthy", &node).await?;
    r.eventually(
        "kubelet logs skipping pod synchronization",
        Duration::from_secs(300),
        || {
            let node = node.clone();
            async move {
                let log = c.node_log(&node, "kubelet").await?;
                Ok(skipping_pod_sync_line(&log).map(|l| ((), l.trim().to_owned())))
            }
        },
    )
    .await?;
    r.eventually(
        "the new pod stays ContainerCreating",
        Duration::from_secs(60),
        || {
            let stuck = stuck.clone();
            async move {
                let phase = pod_phase(c, &stuck).await?;
                Ok((phase == "Pending").then(|| ((), format!("{stuck} is {phase}"))))
            }
        },
    )
    .await?;
    r.eventually(
        "runc processes hang in the node's process list",
        Duration::from_secs(300),
        || {
            let node = node.clone();
            async move {
                let runc = node_processes(c, &node, "ackemu-node runc").await?;
                Ok((!runc.is_empty()).then(|| {
                    let d = format!("{} stuck: {}", runc.len(), runc[0]);
                    ((), d)
                }))
            }
        },
    )
    .await?;
    r.eventually(
        "the runtime's task dump shows the waiters",
        Duration::from_secs(300),
        || {
            let target = format!("{node}/runtime");
            async move {
                let dump = c
                    .chaos(&["tasks", "--target", &target])
                    .await?
                    .ok("runtime task dump")?;
                Ok(dump
                    .lines()
                    .find(|l| l.contains(" waiting ") && l.contains(" on runc "))
                    .map(|l| ((), l.trim().to_owned())))
            }
        },
    )
    .await?;
    let bus = bus_status(c, &node).await?;
    let line = bus
        .lines()
        .find(|l| l.starts_with("CookieOverflow=yes") && l.contains("cookie > 0xffffffff"))
        .ok_or_else(|| anyhow::anyhow!("busctl status shows no overflow:\n{bus}"))?;
    let cookie = bus.lines().next().unwrap_or("");
    r.step(
        "systemd's dump: cookie > 0xffffffff",
        format!("{cookie}; {line}"),
    );

    r.phase(Phase::Heal);
    c.ssh(&node, &["ackemu-node", "systemctl", "daemon-reexec"])
        .await?
        .ok("systemctl daemon-reexec")?;
    r.step("systemctl daemon-reexec on the node", node.clone());

    r.phase(Phase::Recover);
    r.eventually("the node is Ready again", Duration::from_secs(900), || {
        let node = node.clone();
        async move {
            let cond = ready_condition(c, &node).await?;
            Ok((cond["status"] == "True")
                .then(|| ((), cond["message"].as_str().unwrap_or("").to_owned())))
        }
    })
    .await?;
    r.eventually("the stuck pod runs", Duration::from_secs(900), || {
        let stuck = stuck.clone();
        async move {
            Ok(
                (pod_phase(c, &stuck).await? == "Running")
                    .then(|| ((), format!("{stuck} Running"))),
            )
        }
    })
    .await?;
    let bus = bus_status(c, &node).await?;
    anyhow::ensure!(
        !overflowed(&bus),
        "still overflowed after the re-exec:\n{bus}"
    );
    r.step(
        "the bus cookie starts over",
        bus.lines().next().unwrap_or("").to_owned(),
    );
    Ok(())
}
