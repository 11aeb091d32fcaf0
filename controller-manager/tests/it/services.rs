//! Endpoints and EndpointSlices from a Service and its ready pods.

use ackemu_kube::api::core::v1::{
    Container, ContainerPort, Endpoints, Pod, PodCondition, PodSpec, Service, ServicePort,
    ServiceSpec,
};
use ackemu_kube::api::discovery::v1::EndpointSlice;
use ackemu_kube::client::ListParams;
use ackemu_kube::meta::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::harness::{Cluster, eventually};

fn pod(name: &str, ip: &str, ready: bool) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some([("app".to_string(), "web".to_string())].into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some("n1".into()),
            containers: vec![Container {
                name: "app".into(),
                image: Some("app:1".into()),
                ports: Some(vec![ContainerPort {
                    name: Some("http".into()),
                    container_port: 2580,
                    ..Default::default()
                }]),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(ackemu_kube::api::core::v1::PodStatus {
            phase: Some("Running".into()),
            pod_ip: Some(ip.into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_and_slices_follow_ready_pods() -> anyhow::Result<()> {
    let c = Cluster::start(&["endpoint", "endpointslice", "serviceaccount"]).await?;
    let svc = Service {
        metadata: ObjectMeta {
            name: Some("web".into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            selector: Some([("app".to_string(), "web".to_string())].into()),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                target_port: Some(IntOrString::String("http".into())),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    };
    c.client
        .api::<Service>(Some("default"))?
        .create(&svc)
        .await?;
    c.client
        .api::<ackemu_kube::api::core::v1::Node>(None)?
        .create(&ackemu_kube::api::core::v1::Node {
            metadata: ObjectMeta {
                name: Some("n1".into()),
                ..Default::default()
            },
            ..Default::default()
        })
        .await?;
    let pods = c.client.api::<Pod>(Some("default"))?;
    let cl = c.client.clone();
    for (name, ip, ready) in [("a", "172.16.0.2", true), ("b", "172.16.0.3", false)] {
        let p = pod(name, ip, ready);
        let created = eventually("pod created", || {
            let (cl, p) = (cl.clone(), p.clone());
            async move { Ok(cl.api::<Pod>(Some("default"))?.create(&p).await.ok()) }
        })
        .await?;
        let mut s = created;
        s.status = p.status.clone();
        pods.replace_status(name, &s).await?;
    }
    eventually("endpoints", || {
        let cl = cl.clone();
        async move {
            let Ok(ep) = cl.api::<Endpoints>(Some("default"))?.get("web").await else {
                return Ok(None);
            };
            let subsets = ep.subsets.unwrap_or_default();
            let ready: Vec<String> = subsets
                .iter()
                .flat_map(|s| s.addresses.iter().flatten().map(|a| a.ip.clone()))
                .collect();
            let not_ready: Vec<String> = subsets
                .iter()
                .flat_map(|s| s.not_ready_addresses.iter().flatten().map(|a| a.ip.clone()))
                .collect();
            let port = subsets
                .first()
                .and_then(|s| s.ports.as_ref())
                .and_then(|p| p.first())
                .map(|p| p.port);
            Ok(
                (ready == ["172.16.0.2"] && not_ready == ["172.16.0.3"] && port == Some(2580))
                    .then_some(()),
            )
        }
    })
    .await?;
    eventually("endpointslice", || {
        let cl = cl.clone();
        async move {
            let p = ListParams {
                label_selector: Some("kubernetes.io/service-name=web".into()),
                ..Default::default()
            };
            let slices = cl.api::<EndpointSlice>(Some("default"))?.list(&p).await?.0;
            let eps: Vec<(String, Option<bool>)> = slices
                .iter()
                .flat_map(|s| s.endpoints.iter())
                .map(|e| {
                    (
                        e.addresses[0].clone(),
                        e.conditions.as_ref().and_then(|c| c.ready),
                    )
                })
                .collect();
            let mut eps = eps;
            eps.sort();
            Ok((eps
                == [
                    ("172.16.0.2".to_string(), Some(true)),
                    ("172.16.0.3".to_string(), Some(false)),
                ])
            .then_some(()))
        }
    })
    .await?;
    Ok(())
}
