//! lib/kube's client, reflector and typed access against the API server.

use std::time::Duration;

use ackemu_kube::api::core::v1::ConfigMap;
use ackemu_kube::client::informer::{self, Notification, ReflectorConfig};
use ackemu_kube::client::{Client, ClientConfig, ListParams, PatchType};
use ackemu_kube::meta::ObjectMeta;
use anyhow::Context as _;
use serde_json::json;

use crate::harness::Cluster;

#[tokio::test]
async fn typed_client_and_reflector() -> anyhow::Result<()> {
    let c = Cluster::start().await?;
    let cfg = ClientConfig::from_kubeconfig(&c.kubeconfig())?;
    let client = Client::new(cfg, c.env.clock.clone(), c.env.tasks.clone())?;
    let cms = client.api::<ConfigMap>(Some("default"))?;

    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("one".into()),
            labels: Some([("app".to_owned(), "web".to_owned())].into()),
            ..Default::default()
        },
        data: Some([("k".to_owned(), "v".to_owned())].into()),
        ..Default::default()
    };
    let created = cms.create(&cm).await?;
    assert!(created.metadata.uid.is_some());
    let err = cms.create(&cm).await.unwrap_err();
    assert_eq!(err.code(), Some(409));
    let mut stale = created.clone();
    stale.data = Some([("k".to_owned(), "v2".to_owned())].into());
    cms.replace("one", &stale).await?;
    let conflict = cms.replace("one", &stale).await.unwrap_err();
    assert!(conflict.is_conflict(), "{conflict}");
    cms.patch("one", PatchType::Merge, &json!({"data": {"k": "v3"}}))
        .await?;
    assert_eq!(cms.get("one").await?.data.context("data")?["k"], "v3");
    assert!(cms.get("missing").await.unwrap_err().is_not_found());

    // A reflector over configmaps labelled app=web.
    let info = client
        .registry()
        .preferred("", "configmaps")
        .context("configmaps")?
        .clone();
    let params = ListParams {
        label_selector: Some("app=web".into()),
        ..Default::default()
    };
    let mut r = informer::start(
        client.resource(&info, Some("default")),
        params,
        ReflectorConfig::default(),
        c.env.clock.clone(),
        &c.env.tasks,
    );
    r.synced.wait_for(|s| *s).await?;
    assert!(r.store.read().contains_key("default/one"));
    let first = r
        .notifications
        .recv()
        .await
        .context("initial notification")?;
    assert!(matches!(first, Notification::Upsert(ref o) if o["metadata"]["name"] == "one"));
    let two = ConfigMap {
        metadata: ObjectMeta {
            name: Some("two".into()),
            labels: Some([("app".to_owned(), "web".to_owned())].into()),
            ..Default::default()
        },
        ..Default::default()
    };
    cms.create(&two).await?;
    cms.delete("one", None).await?;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let n = c
            .env
            .clock
            .timeout(Duration::from_secs(30), r.notifications.recv())
            .await?
            .context("notification")?;
        seen.push(match n {
            Notification::Upsert(o) => {
                format!("upsert {}", o["metadata"]["name"].as_str().unwrap_or(""))
            }
            Notification::Delete(o) => {
                format!("delete {}", o["metadata"]["name"].as_str().unwrap_or(""))
            }
        });
    }
    assert_eq!(seen, ["upsert two", "delete one"]);
    let keys: Vec<String> = r.store.read().keys().cloned().collect();
    assert_eq!(keys, ["default/two"]);
    Ok(())
}

#[tokio::test]
async fn leader_election_has_one_leader_and_fails_over() -> anyhow::Result<()> {
    use ackemu_kube::client::leader::{self, LeaderConfig};
    let c = Cluster::start().await?;
    let cfg = ClientConfig::from_kubeconfig(&c.kubeconfig())?;
    let client = Client::new(cfg, c.env.clock.clone(), c.env.tasks.clone())?;
    let fast = |id: &str| {
        let mut l = LeaderConfig::new("kube-system", "kube-scheduler", id);
        l.lease_duration = Duration::from_secs(2);
        l.renew_deadline = Duration::from_millis(1500);
        l.retry_period = Duration::from_millis(200);
        l
    };
    let tasks_a = c.env.tasks.child();
    let mut a = leader::start(
        client.clone(),
        fast("master-1"),
        c.env.clock.clone(),
        &tasks_a,
    );
    a.wait_for(|l| *l).await?;
    let tasks_b = c.env.tasks.child();
    let mut b = leader::start(
        client.clone(),
        fast("master-2"),
        c.env.clock.clone(),
        &tasks_b,
    );
    // b cannot win while a renews; the Lease names a.
    let lease = client.resource(
        client
            .registry()
            .preferred("coordination.k8s.io", "leases")
            .context("leases")?,
        Some("kube-system"),
    );
    assert_eq!(
        lease.get("kube-scheduler").await?["spec"]["holderIdentity"],
        "master-1"
    );
    assert!(!*b.borrow());
    // a stops (its process dies): b takes over after the lease expires.
    tasks_a.token().cancel();
    c.env
        .clock
        .timeout(Duration::from_secs(30), b.wait_for(|l| *l))
        .await??;
    let after = lease.get("kube-scheduler").await?;
    assert_eq!(after["spec"]["holderIdentity"], "master-2");
    assert_eq!(after["spec"]["leaseTransitions"], 1);
    Ok(())
}

/// Patches that do not name a resourceVersion are applied to whatever the
/// object is when they land: concurrent patches to one object all
/// succeed, none is lost, and only a patch that names a stale
/// resourceVersion gets 409.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_patches_without_resource_version_never_conflict() -> anyhow::Result<()> {
    let c = Cluster::start().await?;
    let cfg = ClientConfig::from_kubeconfig(&c.kubeconfig())?;
    let client = Client::new(cfg, c.env.clock.clone(), c.env.tasks.clone())?;
    let cms = client.api::<ConfigMap>(Some("default"))?;
    let created = cms
        .create(&ConfigMap {
            metadata: ObjectMeta {
                name: Some("hot".into()),
                ..Default::default()
            },
            ..Default::default()
        })
        .await?;
    const N: usize = 24;
    let mut patches = tokio::task::JoinSet::new();
    for i in 0..N {
        let cms = client.api::<ConfigMap>(Some("default"))?;
        let kind = if i % 2 == 0 {
            PatchType::Strategic
        } else {
            PatchType::Merge
        };
        patches.spawn(async move {
            cms.patch("hot", kind, &json!({"data": {format!("k{i}"): "v"}}))
                .await
        });
    }
    while let Some(r) = patches.join_next().await {
        r?.context("a patch without resourceVersion failed")?;
    }
    let data = cms.get("hot").await?.data.unwrap_or_default();
    assert_eq!(data.len(), N, "{data:?}");
    let stale = created
        .metadata
        .resource_version
        .context("resourceVersion")?;
    let err = cms
        .patch(
            "hot",
            PatchType::Merge,
            &json!({"metadata": {"resourceVersion": stale}, "data": {"late": "v"}}),
        )
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err}");
    assert!(
        !cms.get("hot")
            .await?
            .data
            .unwrap_or_default()
            .contains_key("late")
    );
    Ok(())
}
