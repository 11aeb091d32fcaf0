//! S11 private-image-pull (镜像拉取这件小事): a Deployment uses an image
//! of a private repository in the cloud's container registry and no pull
//! secret is set. The kubelet asks the runtime to pull; the registry
//! answers the manifest request with a Bearer challenge and its token
//! server refuses an anonymous token for a private repository, so the pod
//! waits in `ErrImagePull` / `ImagePullBackOff` with containerd's
//! `unauthorized: authentication required`. Healing is what the article
//! does: a `docker-registry` secret with the registry's temporary login
//! (`cr GetAuthorizationToken`), referenced by the namespace's default
//! ServiceAccount — admission adds it to the pods created from then on —
//! and the new pod pulls and runs.

use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Value, json};

use super::util::{
    REGISTRY, cloud_json, create, event_messages as events, items, json_of, registry_app,
    workers_ready,
};
use crate::cluster::Cluster;
use crate::scenario::{Phase, Run};

pub const ID: &str = "S11";
pub const TITLE: &str = "private-image-pull";

/// Workers the cluster starts with.
pub const NODES: usize = 1;
/// The registry as nodes reach it (the VPC's cloud service range).
const NAMESPACE: &str = "s11-private";
const APP: &str = "s11-web";
const SECRET: &str = "acr-credential";

/// The live pods of the Deployment with their first container's state:
/// (name, waiting reason, waiting message, running).
async fn pods(c: &impl Cluster) -> anyhow::Result<Vec<(String, String, String, bool)>> {
    let v = json_of(c, &["get", "pods", "-l", &format!("app={APP}")]).await?;
    Ok(items(&v)
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            let st = &p["status"]["containerStatuses"][0]["state"];
            let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
            (
                text(&p["metadata"]["name"]),
                text(&st["waiting"]["reason"]),
                text(&st["waiting"]["message"]),
                st["running"].is_object(),
            )
        })
        .collect())
}

pub async fn run(c: &impl Cluster, r: &mut Run) -> anyhow::Result<()> {
    r.phase(Phase::Setup);
    workers_ready(c, r, NODES).await?;
    let image = registry_app(c, NAMESPACE, "PRIVATE").await?;
    r.step(
        "a private repository in the container registry",
        format!("{} (RepoType PRIVATE)", image),
    );

    r.phase(Phase::Inject);
    create(
        c,
        &json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": APP, "namespace": "default"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": APP}},
                "template": {"metadata": {"labels": {"app": APP}},
                    "spec": {"containers": [{"name": "app", "image": image}]}}}}),
    )
    .await?;
    r.step(
        "a Deployment uses the private image without a pull secret",
        format!("deployment {APP}: image {}", image),
    );

    r.phase(Phase::Observe);
    // ErrImagePull lasts until the next sync (the first back-off is 10 s
    // of cluster time): the kubelet's events keep the error.
    let want = format!("Failed to pull image \"{}\": ", image);
    let (pod, msg) = r
        .eventually(
            "the pod fails ErrImagePull: unauthorized",
            Duration::from_secs(600),
            || {
                let want = want.clone();
                async move {
                    for p in pods(c).await? {
                        if p.1 != "ErrImagePull" && p.1 != "ImagePullBackOff" {
                            continue;
                        }
                        let failed = events(c, &p.0, "Failed").await?;
                        if let Some(m) = failed.iter().find(|m| {
                            m.starts_with(&want)
                                && m.contains("unauthorized: authentication required")
                        }) {
                            return Ok(Some((
                                (p.0.clone(), m.clone()),
                                format!("{} {}: {m}", p.0, p.1),
                            )));
                        }
                    }
                    Ok(None)
                }
            },
        )
        .await?;
    anyhow::ensure!(
        msg.contains(&format!("failed to pull and unpack image \"{}\"", image)),
        "the pull error does not name the image: {msg}"
    );
    anyhow::ensure!(
        events(c, &pod, "Failed")
            .await?
            .iter()
            .any(|m| m == "Error: ErrImagePull"),
        "no 'Error: ErrImagePull' event for {pod}"
    );
    r.eventually("then ImagePullBackOff", Duration::from_secs(900), || {
        let pod = pod.clone();
        async move {
            Ok(pods(c)
                .await?
                .into_iter()
                .find(|p| p.0 == pod && p.1 == "ImagePullBackOff")
                .map(|p| ((), format!("{}: {}", p.0, p.2))))
        }
    })
    .await?;
    r.phase(Phase::Heal);
    let login = cloud_json(c, "cr", "GetAuthorizationToken", &[]).await?;
    let user = login["data"]["tempUserName"]
        .as_str()
        .context("GetAuthorizationToken without tempUserName")?
        .to_owned();
    let password = login["data"]["authorizationToken"]
        .as_str()
        .context("GetAuthorizationToken without authorizationToken")?
        .to_owned();
    c.kubectl(&[
        "create",
        "secret",
        "docker-registry",
        SECRET,
        &format!("--docker-server={REGISTRY}"),
        &format!("--docker-username={user}"),
        &format!("--docker-password={password}"),
    ])
    .await?
    .ok("kubectl create secret docker-registry")?;
    c.kubectl(&[
        "patch",
        "serviceaccount",
        "default",
        "-p",
        &json!({"imagePullSecrets": [{"name": SECRET}]}).to_string(),
    ])
    .await?
    .ok("adding the pull secret to the default ServiceAccount")?;
    r.step(
        "a docker-registry secret with the registry's temporary login, on the default ServiceAccount",
        format!("secret {SECRET} ({user}@{REGISTRY}); serviceaccount default imagePullSecrets [{SECRET}]"),
    );
    c.kubectl(&["delete", "pod", &pod, "--wait=false"])
        .await?
        .ok("deleting the waiting pod")?;
    r.step(
        "the waiting pod is deleted",
        format!("{pod}: its ReplicaSet creates a new one"),
    );

    r.phase(Phase::Recover);
    let fresh = r
        .eventually(
            "the new pod pulls the image and runs",
            Duration::from_secs(900),
            || {
                let pod = pod.clone();
                async move {
                    Ok(pods(c)
                        .await?
                        .into_iter()
                        .find(|p| p.0 != pod && p.3)
                        .map(|p| (p.0.clone(), format!("{} Running", p.0))))
                }
            },
        )
        .await?;
    let spec = json_of(c, &["get", "pod", &fresh]).await?;
    anyhow::ensure!(
        spec["spec"]["imagePullSecrets"][0]["name"] == SECRET,
        "admission did not add the ServiceAccount's pull secret: {}",
        spec["spec"]["imagePullSecrets"]
    );
    let pulled = events(c, &fresh, "Pulled").await?;
    let line = pulled
        .iter()
        .find(|m| m.starts_with(&format!("Successfully pulled image \"{}\"", image)))
        .with_context(|| format!("no Successfully pulled event: {pulled:?}"))?;
    r.step("the kubelet's event", format!("{fresh}: {line}"));
    Ok(())
}
