//! Namespace deletion: content removed through discovery, the
//! `kubernetes` finalizer removed last; with an aggregated API unavailable
//! the namespace stays Terminating with NamespaceDeletionDiscoveryFailure
//! (S03) until discovery works again.

use ackemu_kube::api::core::v1::{ConfigMap, Namespace};
use ackemu_kube::client::ListParams;
use ackemu_kube::meta::ObjectMeta;
use serde_json::json;

use crate::harness::{Cluster, eventually};

fn ns(name: &str) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn cm(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

async fn gone(c: &Cluster, name: &'static str) -> anyhow::Result<()> {
    let cl = c.client.clone();
    eventually(&format!("namespace {name} deleted"), || {
        let cl = cl.clone();
        async move {
            Ok(cl
                .api::<Namespace>(None)?
                .get(name)
                .await
                .err()
                .filter(|e| e.is_not_found())
                .map(|_| ()))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_deletion_and_discovery_failure() -> anyhow::Result<()> {
    let c = Cluster::start(&["namespace", "serviceaccount"]).await?;
    let nss = c.client.api::<Namespace>(None)?;

    // A namespace with content goes away.
    nss.create(&ns("plain")).await?;
    c.client
        .api::<ConfigMap>(Some("plain"))?
        .create(&cm("one"))
        .await?;
    nss.delete("plain", None).await?;
    gone(&c, "plain").await?;

    // S03: metrics.k8s.io/v1beta1 is served by an unavailable backend.
    let apiservice = json!({
        "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
        "metadata": {"name": "v1beta1.metrics.k8s.io"},
        "spec": {"group": "metrics.k8s.io", "version": "v1beta1", "groupPriorityMinimum": 100, "versionPriority": 100,
                 "insecureSkipTLSVerify": true, "service": {"namespace": "kube-system", "name": "metrics-server", "port": 443}},
    });
    c.client
        .request(
            "POST",
            "/apis/apiregistration.k8s.io/v1/apiservices",
            Some(("application/json", apiservice.to_string().into_bytes())),
        )
        .await?;
    nss.create(&ns("tobedeletedb")).await?;
    c.client
        .api::<ConfigMap>(Some("tobedeletedb"))?
        .create(&cm("one"))
        .await?;
    nss.delete("tobedeletedb", None).await?;
    let want = "unable to retrieve the complete list of server APIs: metrics.k8s.io/v1beta1: the server is currently unable to handle the request";
    let cl = c.client.clone();
    let stuck = eventually("the discovery failure condition", || {
        let cl = cl.clone();
        async move {
            let ns = cl.api::<Namespace>(None)?.get("tobedeletedb").await?;
            let st = ns.status.clone().unwrap_or_default();
            let has = st.conditions.iter().flatten().any(|c| {
                c.type_ == "NamespaceDeletionDiscoveryFailure"
                    && c.status == "True"
                    && c.message.as_deref().is_some_and(|m| m.contains(want))
            });
            Ok(has.then_some(ns))
        }
    })
    .await?;
    assert_eq!(stuck.status.unwrap().phase.as_deref(), Some("Terminating"));
    assert!(
        stuck
            .spec
            .unwrap()
            .finalizers
            .unwrap_or_default()
            .contains(&"kubernetes".to_string()),
        "the finalizer stays"
    );
    let left = c
        .client
        .api::<ConfigMap>(Some("tobedeletedb"))?
        .list(&ListParams::default())
        .await?
        .0;
    assert!(
        left.iter()
            .all(|c| c.metadata.name.as_deref() != Some("one")),
        "what discovery sees is deleted anyway"
    );

    // Discovery works again (the broken APIService is removed): the
    // namespace finishes with no other action.
    c.client
        .request(
            "DELETE",
            "/apis/apiregistration.k8s.io/v1/apiservices/v1beta1.metrics.k8s.io",
            None,
        )
        .await?;
    gone(&c, "tobedeletedb").await?;
    Ok(())
}
