//! The internal gRPC `ResourceService` against the REST view of the same
//! objects: created over gRPC and read with kubectl (and the other way),
//! with RBAC, impersonation, 409 and 410 answering as REST does.

use std::time::Duration;

use ackemu_apiserver::grpc::kubernetes_status;
use ackemu_base::pki::{self, Ca, CertSpec};
use ackemu_proto::ackemu::apiserver::v1 as pb;
use anyhow::Context as _;
use futures::StreamExt as _;
use pb::resource_service_client::ResourceServiceClient;
use serde_json::{Value, json};
use tonic::transport::Channel;

use crate::harness::{Backend, Cluster, eventually};

fn client(c: &Cluster, user: &str, group: &str) -> anyhow::Result<ResourceServiceClient<Channel>> {
    let ca = Ca::from_pem(
        &std::fs::read_to_string(c.dir.path().join("pki/ca.crt"))?,
        &std::fs::read_to_string(c.dir.path().join("pki/ca.key"))?,
    )?;
    let cert = ca.issue(
        &CertSpec::client(user, &[group], Duration::from_secs(3600)),
        &c.env.clock,
    )?;
    let tls = pki::client_tls_config(
        ca.cert_pem(),
        Some((&cert.cert_pem, &cert.key_pem)),
        &c.env.clock,
        &[b"h2"],
    )?;
    let addr = c.server.grpc_addr.context("grpc is served")?;
    Ok(ResourceServiceClient::new(pki::grpc::channel(
        addr,
        "localhost",
        tls,
    )?))
}

fn cm_ref(name: &str) -> Option<pb::ResourceRef> {
    Some(pb::ResourceRef {
        group: String::new(),
        version: "v1".into(),
        resource: "configmaps".into(),
        namespace: "default".into(),
        name: name.into(),
        subresource: String::new(),
    })
}

fn json_of(o: &pb::Object) -> anyhow::Result<Value> {
    Ok(serde_json::from_slice(&o.json)?)
}

#[tokio::test]
async fn grpc_and_rest_are_one_api() -> anyhow::Result<()> {
    one_api(Backend::Etcd).await
}

#[tokio::test]
async fn grpc_and_rest_are_one_api_on_ackemu_store() -> anyhow::Result<()> {
    one_api(Backend::Store).await
}

async fn one_api(backend: Backend) -> anyhow::Result<()> {
    let c = Cluster::start_on(backend, |_| {}).await?;
    let k = c.kubectl("1.33");
    let mut admin = client(&c, "kubernetes-admin", "system:masters")?;

    // Created over gRPC, read with kubectl.
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "from-grpc"}, "data": {"k": "v"}});
    let created = admin
        .create(pb::CreateRequest {
            r#ref: cm_ref(""),
            json: serde_json::to_vec(&cm)?,
            ..Default::default()
        })
        .await?
        .into_inner();
    let meta = created.meta.clone().context("typed metadata")?;
    assert_eq!(
        (
            meta.api_version.as_str(),
            meta.kind.as_str(),
            meta.namespace.as_str(),
            meta.name.as_str()
        ),
        ("v1", "ConfigMap", "default", "from-grpc")
    );
    assert!(!meta.resource_version.is_empty() && !meta.uid.is_empty());
    assert_eq!(
        k.ok(&["get", "cm", "from-grpc", "-o", "jsonpath={.data.k}"])
            .await?,
        "v"
    );
    assert_eq!(
        k.ok(&["get", "cm", "from-grpc", "-o", "jsonpath={.metadata.uid}"])
            .await?,
        meta.uid
    );

    // Created with kubectl, read over gRPC.
    k.ok(&["create", "configmap", "from-kubectl", "--from-literal=a=b"])
        .await?;
    let got = admin
        .get(pb::GetRequest {
            r#ref: cm_ref("from-kubectl"),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(json_of(&got)?["data"]["a"], "b");
    let list = admin
        .list(pb::ListRequest {
            r#ref: cm_ref(""),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(list.kind, "ConfigMapList");
    let names: Vec<String> = list
        .items
        .iter()
        .filter_map(|o| o.meta.as_ref().map(|m| format!("{}/{}", m.kind, m.name)))
        .collect();
    assert!(
        names.contains(&"ConfigMap/from-grpc".to_owned())
            && names.contains(&"ConfigMap/from-kubectl".to_owned()),
        "{names:?}"
    );

    // A watch sees what kubectl does.
    let mut watch = admin
        .watch(pb::WatchRequest {
            r#ref: cm_ref(""),
            resource_version: list.resource_version.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    k.ok(&["create", "configmap", "watched", "--from-literal=x=y"])
        .await?;
    let ev = watch.next().await.context("a watch event")??;
    assert_eq!(ev.r#type, "ADDED");
    assert_eq!(
        ev.object.and_then(|o| o.meta).map(|m| m.name).as_deref(),
        Some("watched")
    );

    // Patch over gRPC, then the stale update is REST's 409.
    let patched = admin
        .patch(pb::PatchRequest {
            r#ref: cm_ref("from-grpc"),
            patch_type: "merge".into(),
            patch: br#"{"data":{"k":"v2"}}"#.to_vec(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(json_of(&patched)?["data"]["k"], "v2");
    let mut stale = json_of(&created)?;
    stale["data"]["k"] = json!("v3");
    let conflict = admin
        .update(pb::UpdateRequest {
            r#ref: cm_ref("from-grpc"),
            json: serde_json::to_vec(&stale)?,
            ..Default::default()
        })
        .await
        .err()
        .context("a stale update is refused")?;
    assert_eq!(conflict.code(), tonic::Code::Aborted);
    assert_eq!(
        conflict.message(),
        "Operation cannot be fulfilled on configmaps \"from-grpc\": the object has been modified; please apply your changes to the latest version and try again"
    );
    let status = kubernetes_status(&conflict).context("a Kubernetes Status in the details")?;
    assert_eq!(
        (status["code"].as_i64(), status["reason"].as_str()),
        (Some(409), Some("Conflict"))
    );
    let dup = admin
        .create(pb::CreateRequest {
            r#ref: cm_ref(""),
            json: serde_json::to_vec(&cm)?,
            ..Default::default()
        })
        .await
        .err()
        .context("a duplicate create is refused")?;
    assert_eq!(dup.code(), tonic::Code::AlreadyExists);
    assert_eq!(dup.message(), "configmaps \"from-grpc\" already exists");

    // RBAC: the same Forbidden text over both codecs, and through impersonation.
    let mut lin = client(&c, "lin", "dev")?;
    let denied = lin
        .get(pb::GetRequest {
            r#ref: cm_ref("from-grpc"),
            ..Default::default()
        })
        .await
        .err()
        .context("lin may not read configmaps")?;
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let forbidden = "configmaps \"from-grpc\" is forbidden: User \"lin\" cannot get resource \"configmaps\" in API group \"\" in the namespace \"default\"";
    assert_eq!(denied.message(), forbidden);
    let rest = k
        .fails(&["get", "cm", "from-grpc", "--as=lin", "--as-group=dev"])
        .await?;
    assert!(rest.contains(forbidden), "{rest}");
    let mut as_lin = tonic::Request::new(pb::GetRequest {
        r#ref: cm_ref("from-grpc"),
        ..Default::default()
    });
    as_lin
        .metadata_mut()
        .insert("impersonate-user", "lin".parse()?);
    as_lin
        .metadata_mut()
        .insert("impersonate-group", "dev".parse()?);
    let impersonated = admin
        .get(as_lin)
        .await
        .err()
        .context("impersonated lin is denied")?;
    assert_eq!(impersonated.message(), forbidden);
    k.ok(&[
        "create",
        "role",
        "cm-reader",
        "--verb=get,list",
        "--resource=configmaps",
    ])
    .await?;
    k.ok(&[
        "create",
        "rolebinding",
        "cm-reader",
        "--role=cm-reader",
        "--group=dev",
    ])
    .await?;
    let allowed = eventually("the role binding to apply to grpc", || {
        let mut lin = lin.clone();
        async move {
            Ok(lin
                .get(pb::GetRequest {
                    r#ref: cm_ref("from-grpc"),
                    ..Default::default()
                })
                .await
                .ok()
                .map(|r| r.into_inner()))
        }
    })
    .await?;
    assert_eq!(json_of(&allowed)?["data"]["k"], "v2");

    // Delete over gRPC; kubectl no longer finds it and the watch saw it go.
    let deleted = admin
        .delete(pb::DeleteRequest {
            r#ref: cm_ref("from-grpc"),
            options: br#"{"propagationPolicy":"Background"}"#.to_vec(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(deleted.code, 200);
    let gone = k.fails(&["get", "cm", "from-grpc"]).await?;
    assert!(
        gone.contains("configmaps \"from-grpc\" not found"),
        "{gone}"
    );
    loop {
        let ev = watch.next().await.context("watch events")??;
        let name = ev
            .object
            .and_then(|o| o.meta)
            .map(|m| m.name)
            .unwrap_or_default();
        if ev.r#type == "DELETED" && name == "from-grpc" {
            break;
        }
    }
    let missing = admin
        .get(pb::GetRequest {
            r#ref: cm_ref("from-grpc"),
            ..Default::default()
        })
        .await
        .err()
        .context("gone")?;
    assert_eq!(missing.code(), tonic::Code::NotFound);
    Ok(())
}

#[tokio::test]
async fn grpc_watch_from_a_compacted_window_is_410() -> anyhow::Result<()> {
    let c = Cluster::start_with(|cfg| cfg.cache.window_events = 3).await?;
    let mut admin = client(&c, "kubernetes-admin", "system:masters")?;
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"n": "0"}});
    let created = admin
        .create(pb::CreateRequest {
            r#ref: cm_ref(""),
            json: serde_json::to_vec(&cm)?,
            ..Default::default()
        })
        .await?
        .into_inner();
    let first_rv = created.meta.context("meta")?.resource_version;
    admin
        .list(pb::ListRequest {
            r#ref: cm_ref(""),
            ..Default::default()
        })
        .await?;
    for i in 1..=6 {
        admin
            .patch(pb::PatchRequest {
                r#ref: cm_ref("c"),
                patch_type: "merge".into(),
                patch: serde_json::to_vec(&json!({"data": {"n": i.to_string()}}))?,
                ..Default::default()
            })
            .await?;
    }
    let gone = eventually("the watch window to pass the first revision", || {
        let mut admin = admin.clone();
        let rv = first_rv.clone();
        async move {
            let r = admin
                .watch(pb::WatchRequest {
                    r#ref: cm_ref(""),
                    resource_version: rv,
                    ..Default::default()
                })
                .await;
            Ok(r.err().filter(|e| e.code() == tonic::Code::OutOfRange))
        }
    })
    .await?;
    assert!(
        gone.message()
            .starts_with(&format!("too old resource version: {first_rv} (")),
        "{}",
        gone.message()
    );
    assert_eq!(
        kubernetes_status(&gone).context("status")?["reason"],
        "Expired"
    );
    Ok(())
}
