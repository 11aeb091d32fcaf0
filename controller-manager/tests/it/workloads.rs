//! Deployments and ReplicaSets against the real API server, with the test
//! playing kubelet: a Deployment rolls out, rolls forward and rolls back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ackemu_controller_manager::deployment::{REVISION, REVISION_HISTORY};
use ackemu_controller_manager::fixtures;
use ackemu_kube::api::apps::v1::{Deployment, ReplicaSet};
use ackemu_kube::api::core::v1::{Pod, PodCondition};
use ackemu_kube::client::{Client, ListParams, PatchType};
use ackemu_kube::meta::Time;
use serde_json::json;

use crate::harness::{Cluster, eventually};

/// A stand-in kubelet: every pod of `ns` becomes Running and Ready.
pub fn fake_kubelet(client: Client, env: &ackemu_base::Env, ns: &'static str) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let clock = env.clock.clone();
    env.tasks.spawn("fake kubelet", async move {
        let pods = client.api::<Pod>(Some(ns)).expect("pods served");
        let mut n = 0u32;
        while !s.load(Ordering::Relaxed) {
            if let Ok((list, _)) = pods.list(&ListParams::default()).await {
                for mut p in list {
                    if p.metadata.deletion_timestamp.is_some() {
                        // The kubelet confirms the termination.
                        let info = client
                            .registry()
                            .preferred("", "pods")
                            .expect("pods")
                            .clone();
                        let path = format!(
                            "/api/v1/namespaces/{ns}/pods/{}",
                            p.metadata.name.as_deref().unwrap_or("")
                        );
                        let _ = info;
                        let _ = client
                            .request(
                                "DELETE",
                                &path,
                                Some(("application/json", br#"{"gracePeriodSeconds":0}"#.to_vec())),
                            )
                            .await;
                        continue;
                    }
                    let ready = p
                        .status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| {
                            c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                        });
                    if ready || p.metadata.deletion_timestamp.is_some() {
                        continue;
                    }
                    n += 1;
                    let now =
                        Time(jiff::Timestamp::from_millisecond(clock.wall_unix_ms()).unwrap());
                    let st = p.status.get_or_insert_with(Default::default);
                    st.phase = Some("Running".into());
                    st.pod_ip = Some(format!("172.16.0.{}", 2 + n % 250));
                    st.conditions = Some(vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(now),
                        ..Default::default()
                    }]);
                    let name = p.metadata.name.clone().unwrap();
                    let _ = pods.replace_status(&name, &p).await;
                }
            }
            // Pacing of the simulated kubelet's relist.
            clock.sleep(Duration::from_millis(100)).await;
        }
    });
    stop
}

async fn replica_sets(client: &Client, ns: &str) -> anyhow::Result<Vec<ReplicaSet>> {
    Ok(client
        .api::<ReplicaSet>(Some(ns))?
        .list(&ListParams::default())
        .await?
        .0)
}

fn rs_with_image<'a>(rss: &'a [ReplicaSet], image: &str) -> Option<&'a ReplicaSet> {
    rss.iter().find(|r| {
        r.spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .and_then(|t| t.spec.as_ref())
            .and_then(|s| s.containers[0].image.as_deref())
            == Some(image)
    })
}

fn ann<'a>(rs: &'a ReplicaSet, k: &str) -> Option<&'a str> {
    rs.metadata.annotations.as_ref()?.get(k).map(String::as_str)
}

async fn rolled_out(
    client: &Client,
    ns: &str,
    name: &str,
    image: &str,
    replicas: i32,
) -> anyhow::Result<Option<Deployment>> {
    let d = client.api::<Deployment>(Some(ns))?.get(name).await?;
    let st = d.status.clone().unwrap_or_default();
    let rss = replica_sets(client, ns).await?;
    let Some(new) = rs_with_image(&rss, image) else {
        return Ok(None);
    };
    let others_empty = rss
        .iter()
        .filter(|r| r.metadata.uid != new.metadata.uid)
        .all(|r| r.spec.as_ref().and_then(|s| s.replicas) == Some(0));
    let progressed =
        st.conditions.iter().flatten().any(|c| {
            c.type_ == "Progressing" && c.reason.as_deref() == Some("NewReplicaSetAvailable")
        });
    let ok = st.updated_replicas == Some(replicas)
        && st.available_replicas == Some(replicas)
        && st.replicas == Some(replicas)
        && others_empty
        && progressed;
    Ok(ok.then_some(d))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_rolls_out_forward_and_back() -> anyhow::Result<()> {
    let c = Cluster::start(&["replicaset", "deployment", "serviceaccount"]).await?;
    let stop = fake_kubelet(c.client.clone(), &c.env, "default");
    let deps = c.client.api::<Deployment>(Some("default"))?;
    let mut d = fixtures::deployment("default", "web", 3, &[("app", "web")], "app:1");
    d.metadata.uid = None;
    d.metadata.resource_version = None;
    d.metadata.creation_timestamp = None;
    d.metadata.generation = None;
    deps.create(&d).await?;

    let cl = c.client.clone();
    let d1 = eventually("revision 1 rolled out", || {
        rolled_out(&cl, "default", "web", "app:1", 3)
    })
    .await?;
    assert_eq!(
        d1.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REVISION))
            .map(String::as_str),
        Some("1")
    );
    let pods = c
        .client
        .api::<Pod>(Some("default"))?
        .list(&ListParams::default())
        .await?
        .0;
    assert_eq!(pods.len(), 3);
    assert!(pods.iter().all(|p| {
        p.metadata
            .owner_references
            .as_ref()
            .is_some_and(|o| o[0].kind == "ReplicaSet")
    }));

    // Roll forward.
    deps.patch("web", PatchType::Merge, &json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:2"}]}}}})).await?;
    if let Err(e) = eventually("revision 2 rolled out", || {
        rolled_out(&cl, "default", "web", "app:2", 3)
    })
    .await
    {
        let d = deps.get("web").await?;
        eprintln!(
            "DEPLOY TEMPLATE {}",
            serde_json::to_string(&d.spec.unwrap().template).unwrap()
        );
        for r in replica_sets(&c.client, "default").await? {
            eprintln!(
                "RS TEMPLATE {}",
                serde_json::to_string(&r.spec.unwrap().template).unwrap()
            );
        }
        return Err(e);
    }
    let rss = replica_sets(&c.client, "default").await?;
    assert_eq!(
        ann(rs_with_image(&rss, "app:2").unwrap(), REVISION),
        Some("2")
    );

    // Roll back by template: the first ReplicaSet returns as revision 3.
    deps.patch("web", PatchType::Merge, &json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:1"}]}}}})).await?;
    eventually("revision 3 rolled out", || {
        rolled_out(&cl, "default", "web", "app:1", 3)
    })
    .await?;
    let rss = replica_sets(&c.client, "default").await?;
    assert_eq!(rss.len(), 2, "no third ReplicaSet for a known template");
    let back = rs_with_image(&rss, "app:1").unwrap();
    let got: BTreeMap<&str, Option<&str>> = [
        (REVISION, ann(back, REVISION)),
        (REVISION_HISTORY, ann(back, REVISION_HISTORY)),
    ]
    .into();
    assert_eq!(
        got,
        [(REVISION, Some("3")), (REVISION_HISTORY, Some("1"))].into()
    );
    stop.store(true, Ordering::Relaxed);
    Ok(())
}
