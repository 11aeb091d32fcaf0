//! Cascading deletion of a Deployment with each propagation policy, as the
//! seed post describes it.

use std::sync::atomic::Ordering;

use ackemu_controller_manager::fixtures;
use ackemu_kube::api::apps::v1::{Deployment, ReplicaSet};
use ackemu_kube::api::core::v1::Pod;
use ackemu_kube::client::{Client, ListParams};

use crate::harness::{Cluster, eventually};
use crate::workloads::fake_kubelet;

async fn counts(c: &Client, ns: &str) -> anyhow::Result<(usize, usize, usize)> {
    let d = c
        .api::<Deployment>(Some(ns))?
        .list(&ListParams::default())
        .await?
        .0
        .len();
    let r = c
        .api::<ReplicaSet>(Some(ns))?
        .list(&ListParams::default())
        .await?
        .0
        .len();
    let p = c
        .api::<Pod>(Some(ns))?
        .list(&ListParams::default())
        .await?
        .0
        .len();
    Ok((d, r, p))
}

async fn deploy(c: &Cluster, name: &str) -> anyhow::Result<()> {
    let mut d = fixtures::deployment("default", name, 2, &[("app", name)], "app:1");
    d.metadata.uid = None;
    d.metadata.resource_version = None;
    d.metadata.creation_timestamp = None;
    c.client
        .api::<Deployment>(Some("default"))?
        .create(&d)
        .await?;
    let cl = c.client.clone();
    eventually("2 pods", || {
        let cl = cl.clone();
        async move { Ok((counts(&cl, "default").await? == (1, 1, 2)).then_some(())) }
    })
    .await
}

async fn delete(c: &Cluster, name: &str, policy: &str) -> anyhow::Result<()> {
    c.client
        .api::<Deployment>(Some("default"))?
        .delete(name, Some(policy))
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn propagation_policies() -> anyhow::Result<()> {
    let c = Cluster::start(&[
        "replicaset",
        "deployment",
        "serviceaccount",
        "garbagecollector",
    ])
    .await?;
    let stop = fake_kubelet(c.client.clone(), &c.env, "default");
    let cl = c.client.clone();

    // Background: the owner goes at once, the collector removes the rest.
    deploy(&c, "bg").await?;
    delete(&c, "bg", "Background").await?;
    assert_eq!(
        counts(&cl, "default").await?.0,
        0,
        "the deployment is gone immediately"
    );
    eventually("background cascade", || {
        let cl = cl.clone();
        async move { Ok((counts(&cl, "default").await? == (0, 0, 0)).then_some(())) }
    })
    .await?;

    // Foreground: the owner waits, with foregroundDeletion, for its
    // blocking dependents; when it disappears nothing is left.
    deploy(&c, "fg").await?;
    delete(&c, "fg", "Foreground").await?;
    let d = c.client.api::<Deployment>(Some("default"))?.get("fg").await;
    if let Ok(d) = d {
        assert!(d.metadata.deletion_timestamp.is_some());
        assert!(
            d.metadata
                .finalizers
                .unwrap_or_default()
                .contains(&"foregroundDeletion".to_string())
        );
    }
    eventually("foreground cascade", || {
        let cl = cl.clone();
        async move {
            let (d, r, p) = counts(&cl, "default").await?;
            if d == 1 {
                return Ok(None);
            }
            anyhow::ensure!(
                (r, p) == (0, 0),
                "owner gone before its dependents: {r} replicasets, {p} pods left"
            );
            Ok(Some(()))
        }
    })
    .await?;

    // Orphan: dependents stay, without the reference to the owner.
    deploy(&c, "or").await?;
    delete(&c, "or", "Orphan").await?;
    let rs = eventually("orphaned replicaset", || {
        let cl = cl.clone();
        async move {
            let (d, _, _) = counts(&cl, "default").await?;
            let rss = cl
                .api::<ReplicaSet>(Some("default"))?
                .list(&ListParams::default())
                .await?
                .0;
            Ok((d == 0
                && rss.len() == 1
                && rss[0]
                    .metadata
                    .owner_references
                    .as_ref()
                    .is_none_or(|o| o.is_empty()))
            .then(|| rss[0].clone()))
        }
    })
    .await?;
    let pods = c
        .client
        .api::<Pod>(Some("default"))?
        .list(&ListParams::default())
        .await?
        .0;
    assert_eq!(pods.len(), 2, "pods stay");
    assert!(pods.iter().all(|p| {
        p.metadata
            .owner_references
            .as_ref()
            .is_some_and(|o| o[0].uid == rs.metadata.uid.clone().unwrap())
    }));
    stop.store(true, Ordering::Relaxed);
    Ok(())
}
