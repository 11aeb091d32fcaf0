//! Node IPAM and node lifecycle against the real API server: podCIDRs from
//! the seed article's cluster CIDR with /25 per node; a node whose kubelet
//! stops renewing its Lease goes Unknown, gets the unreachable NoExecute
//! taint, and its pods are evicted after their tolerationSeconds.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ackemu_controller_manager::nodeipam::IpamConfig;
use ackemu_controller_manager::nodelifecycle::NODE_LEASE_NAMESPACE;
use ackemu_kube::api::coordination::v1::{Lease, LeaseSpec};
use ackemu_kube::api::core::v1::{
    Container, Namespace, Node, NodeCondition, NodeStatus, Pod, PodSpec, Toleration,
};
use ackemu_kube::client::Client;
use ackemu_kube::meta::{MicroTime, ObjectMeta, Time};
use ipnet::IpNet;

use crate::harness::{Cluster, eventually};

fn now(c: &Cluster) -> jiff::Timestamp {
    jiff::Timestamp::from_millisecond(c.env.clock.wall_unix_ms()).unwrap()
}

async fn register(c: &Cluster, name: &'static str) -> anyhow::Result<()> {
    let nodes = c.client.api::<Node>(None)?;
    nodes
        .create(&Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        })
        .await?;
    let status = NodeStatus {
        conditions: Some(vec![NodeCondition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: Some("KubeletReady".into()),
            last_heartbeat_time: Some(Time(now(c))),
            last_transition_time: Some(Time(now(c))),
            ..Default::default()
        }]),
        ..Default::default()
    };
    // The node IPAM controller may patch the node in between: retry.
    let cl = c.client.clone();
    eventually("node status written", || {
        let (cl, status) = (cl.clone(), status.clone());
        async move {
            let api = cl.api::<Node>(None)?;
            let mut n = api.get(name).await?;
            n.status = Some(status);
            Ok(api.replace_status(name, &n).await.ok().map(|_| ()))
        }
    })
    .await
}

/// Renews `node`'s Lease until stopped, like a kubelet.
fn heartbeat(client: Client, c: &Cluster, node: &'static str) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let clock = c.env.clock.clone();
    c.env.tasks.spawn("fake heartbeat", async move {
        let leases = client
            .api::<Lease>(Some(NODE_LEASE_NAMESPACE))
            .expect("leases");
        while !s.load(Ordering::Relaxed) {
            let t = MicroTime(jiff::Timestamp::from_millisecond(clock.wall_unix_ms()).unwrap());
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(node.into()),
                    namespace: Some(NODE_LEASE_NAMESPACE.into()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(node.into()),
                    lease_duration_seconds: Some(40),
                    renew_time: Some(t),
                    ..Default::default()
                }),
            };
            match leases.get(node).await {
                Ok(mut cur) => {
                    cur.spec = lease.spec;
                    let _ = leases.replace(node, &cur).await;
                }
                Err(_) => {
                    let _ = leases.create(&lease).await;
                }
            }
            // The kubelet's renew interval, shortened.
            clock.sleep(Duration::from_millis(200)).await;
        }
    });
    stop
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipam_and_lifecycle() -> anyhow::Result<()> {
    let cluster: IpNet = "172.16.0.0/16".parse()?;
    let c = Cluster::start_with(
        &["nodeipam", "nodelifecycle", "serviceaccount"],
        |cfg, _| {
            cfg.ipam = Some(IpamConfig::new(vec![cluster], 25));
            cfg.lifecycle.node_monitor_grace_period = Duration::from_secs(2);
            cfg.lifecycle.node_monitor_period = Duration::from_millis(200);
            cfg.lifecycle.eviction_limiter_qps = 100.0;
        },
    )
    .await?;
    let nss = c.client.api::<Namespace>(None)?;
    if nss.get(NODE_LEASE_NAMESPACE).await.is_err() {
        nss.create(&Namespace {
            metadata: ObjectMeta {
                name: Some(NODE_LEASE_NAMESPACE.into()),
                ..Default::default()
            },
            ..Default::default()
        })
        .await?;
    }
    let beat = heartbeat(c.client.clone(), &c, "n1");
    register(&c, "n1").await?;
    register(&c, "n2").await?;

    // IPAM: one /25 each from 172.16.0.0/16.
    let cl = c.client.clone();
    let cidrs = eventually("podCIDRs", || {
        let cl = cl.clone();
        async move {
            let mut out = BTreeMap::new();
            for n in ["n1", "n2"] {
                let node = cl.api::<Node>(None)?.get(n).await?;
                match node.spec.and_then(|s| s.pod_cidr) {
                    Some(c) => out.insert(n, c.parse::<IpNet>()?),
                    None => return Ok(None),
                };
            }
            Ok(Some(out))
        }
    })
    .await?;
    assert!(
        cidrs
            .values()
            .all(|c| c.prefix_len() == 25 && cluster.contains(c)),
        "{cidrs:?}"
    );
    assert_ne!(cidrs["n1"], cidrs["n2"]);

    // A pod on n2 tolerating unreachable for 1 s.
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some("on-n2".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some("n2".into()),
            containers: vec![Container {
                name: "app".into(),
                image: Some("app:1".into()),
                ..Default::default()
            }],
            tolerations: Some(vec![Toleration {
                key: Some("node.kubernetes.io/unreachable".into()),
                operator: Some("Exists".into()),
                effect: Some("NoExecute".into()),
                toleration_seconds: Some(1),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let cl2 = c.client.clone();
    eventually("the pod created", || {
        let (cl, p) = (cl2.clone(), pod.clone());
        async move {
            Ok(cl
                .api::<Pod>(Some("default"))?
                .create(&p)
                .await
                .ok()
                .map(|_| ()))
        }
    })
    .await?;

    // n2 never renews a lease: Unknown, then tainted, then its pod evicted.
    let n2 = eventually("n2 unreachable", || {
        let cl = cl.clone();
        async move {
            let n = cl.api::<Node>(None)?.get("n2").await?;
            let unknown = n
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c.type_ == "Ready"
                            && c.status == "Unknown"
                            && c.reason.as_deref() == Some("NodeStatusUnknown")
                    })
                });
            let tainted = n
                .spec
                .as_ref()
                .and_then(|s| s.taints.as_ref())
                .is_some_and(|t| {
                    t.iter().any(|t| {
                        t.key == "node.kubernetes.io/unreachable" && t.effect == "NoExecute"
                    })
                });
            Ok((unknown && tainted).then_some(n))
        }
    })
    .await?;
    assert!(
        n2.spec
            .unwrap()
            .taints
            .unwrap()
            .iter()
            .any(|t| t.key == "node.kubernetes.io/unreachable" && t.effect == "NoSchedule")
    );
    // Evicted: Terminating (its kubelet is gone, so it stays so) with the
    // taint manager's DisruptionTarget condition.
    eventually("the pod evicted", || {
        let cl = cl.clone();
        async move {
            let p = cl.api::<Pod>(Some("default"))?.get("on-n2").await?;
            let cond = p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c.type_ == "DisruptionTarget"
                            && c.reason.as_deref() == Some("DeletionByTaintManager")
                    })
                });
            Ok((p.metadata.deletion_timestamp.is_some() && cond).then_some(()))
        }
    })
    .await?;
    // n1 keeps renewing: still Ready.
    let n1 = c.client.api::<Node>(None)?.get("n1").await?;
    assert!(
        n1.status
            .unwrap()
            .conditions
            .unwrap()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    );
    beat.store(true, Ordering::Relaxed);
    Ok(())
}
