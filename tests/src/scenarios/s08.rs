//! S08 mesh-ca-expired (Istio Citadel 证书过期): on a cluster with the mesh
//! add-on, a year goes by — every process's cluster clock moves 400 days
//! ahead, the workers' first, then the store, the cloud and the master's.
//! The cluster's own certificates outlive the jump; the mesh's self-signed
//! CA (one year, in secret `istio-ca-secret`) and the certificates it
//! signed do not. The API server's call to Galley's validating webhook
//! fails with `x509: certificate has expired or is not yet valid`, so no
//! mesh resource can be created; a restarted Citadel (its new container
//! gets the node's clock) re-reads the expired root and crash-loops with
//! `failed to create CA KeyCertBundle (cannot verify the cert with the
//! provided root chain and cert pool)`. Deleting `istio-ca-secret` and
//! restarting Citadel heals it: a fresh root, fresh workload certificates,
//! and Galley serves the webhook with them again.

use std::time::Duration;

use serde_json::{Value, json};

use super::util::{create, items, json_of};
use crate::cluster::Cluster;
use crate::scenario::{Phase, Run};

pub const ID: &str = "S08";
pub const TITLE: &str = "mesh-ca-expired";

/// `ackemu up` flags: the mesh add-on.
pub const UP_ARGS: &[&str] = &["--mesh"];
pub const NODES: usize = 2;

const NS: &str = "istio-system";
/// How far the clocks move: past the CA's one year.
const JUMP: &str = "400d";
/// A worker's processes, each with its own clock.
const NODE_ROLES: [&str; 5] = ["systemd", "cnid", "runtime", "kubelet", "proxy"];
const WEBHOOK: &str = "pilot.validation.istio.io";
const WEBHOOK_URL: &str = "istio-galley.istio-system.svc:443/admitpilot";
const EXPIRED: &str = "x509: certificate has expired or is not yet valid";
const BUNDLE: &str = "failed to create CA KeyCertBundle (cannot verify the cert with the provided root chain and cert pool)";

fn virtual_service(name: &str) -> Value {
    json!({"apiVersion": "networking.istio.io/v1alpha3", "kind": "VirtualService",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"hosts": ["reviews"],
                 "http": [{"route": [{"destination": {"host": "reviews"}}]}]}})
}

/// Creates VirtualService `name`: `Ok(None)` when it was created, the
/// refusal's text when the API server refused it.
async fn try_create(c: &impl Cluster, name: &str) -> anyhow::Result<Option<String>> {
    match create(c, &virtual_service(name)).await {
        Ok(()) => Ok(None),
        Err(e) => Ok(Some(format!("{e:#}"))),
    }
}

/// Whether the mesh's three components each have a Ready pod.
async fn mesh_ready(c: &impl Cluster) -> anyhow::Result<Option<((), String)>> {
    let pods = json_of(c, &["-n", NS, "get", "pods"]).await?;
    let ready: Vec<String> = ["citadel", "galley", "pilot"]
        .into_iter()
        .filter(|app| {
            items(&pods).any(|p| {
                p["metadata"]["labels"]["istio"] == *app
                    && p["metadata"]["deletionTimestamp"].is_null()
                    && super::util::condition(p, "Ready")
            })
        })
        .map(str::to_owned)
        .collect();
    Ok((ready.len() == 3).then(|| ((), format!("{} Ready", ready.join(", ")))))
}

/// The CA certificate in `istio-ca-secret` (base64), if the secret exists.
async fn ca_root(c: &impl Cluster) -> anyhow::Result<Option<String>> {
    let out = c
        .kubectl(&["-n", NS, "get", "secret", "istio-ca-secret", "-o", "json"])
        .await?;
    if !out.ok {
        return Ok(None);
    }
    let v: Value = serde_json::from_str(&out.stdout)?;
    Ok(v["data"]["ca-cert.pem"].as_str().map(str::to_owned))
}

/// The names of Citadel's pods.
async fn citadel_pods(c: &impl Cluster) -> anyhow::Result<Vec<String>> {
    let pods = json_of(c, &["-n", NS, "get", "pods", "-l", "istio=citadel"]).await?;
    Ok(items(&pods)
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_owned))
        .collect())
}

/// Deletes Citadel's pod and waits until it is gone (as `kubectl delete`
/// waits): a Citadel still running on its old clock would otherwise write
/// an `istio-ca-secret` of its own. Its Deployment starts another.
async fn restart_citadel(c: &impl Cluster, r: &mut Run, what: &str) -> anyhow::Result<()> {
    let old = citadel_pods(c).await?;
    c.kubectl(&[
        "-n",
        NS,
        "delete",
        "pod",
        "-l",
        "istio=citadel",
        "--wait=false",
    ])
    .await?
    .ok("deleting the citadel pod")?;
    r.eventually(what, Duration::from_secs(1800), || {
        let old = old.clone();
        async move {
            let now = citadel_pods(c).await?;
            Ok((!now.iter().any(|p| old.contains(p)))
                .then(|| ((), format!("{} gone", old.join(", ")))))
        }
    })
    .await
}

pub async fn run(c: &impl Cluster, r: &mut Run) -> anyhow::Result<()> {
    r.phase(Phase::Setup);
    let nodes = super::util::workers_ready(c, r, NODES).await?;
    r.eventually("the mesh runs", Duration::from_secs(1800), || async move {
        mesh_ready(c).await
    })
    .await?;
    r.eventually(
        "a VirtualService passes Galley's validation",
        Duration::from_secs(1800),
        || async move {
            Ok(try_create(c, "s08-before")
                .await?
                .is_none()
                .then(|| ((), "virtualservice s08-before created".to_owned())))
        },
    )
    .await?;
    let old_root = ca_root(c).await?;
    anyhow::ensure!(old_root.is_some(), "citadel wrote no istio-ca-secret");

    r.phase(Phase::Inject);
    let mut moved = Vec::new();
    let mut targets: Vec<String> = nodes
        .iter()
        .flat_map(|n| NODE_ROLES.map(|role| format!("{n}/{role}")))
        .collect();
    targets.extend(c.components());
    for t in &targets {
        c.chaos(&["clock", "--target", t, "--offset", JUMP])
            .await?
            .ok(&format!("moving {t}'s clock"))?;
        moved.push(t.as_str());
    }
    r.step(
        format!("every clock moved {JUMP} ahead"),
        format!("{} processes: {}", moved.len(), moved.join(", ")),
    );

    r.phase(Phase::Observe);
    r.eventually(
        "creating a mesh resource fails: the webhook's certificate has expired",
        Duration::from_secs(600),
        || async move {
            let Some(refusal) = try_create(c, "s08-during").await? else {
                return Ok(None);
            };
            let line = refusal
                .lines()
                .find(|l| l.contains(WEBHOOK))
                .unwrap_or(&refusal)
                .trim()
                .to_owned();
            Ok(
                (line.contains(WEBHOOK) && line.contains(WEBHOOK_URL) && line.contains(EXPIRED))
                    .then_some(((), line)),
            )
        },
    )
    .await?;
    r.eventually(
        "the nodes stay Ready a year later",
        Duration::from_secs(600),
        || async move {
            let n = json_of(c, &["get", "nodes"]).await?;
            let ready = items(&n)
                .filter(|n| super::util::condition(n, "Ready"))
                .count();
            Ok((ready == NODES).then(|| ((), format!("{ready} nodes Ready"))))
        },
    )
    .await?;
    restart_citadel(c, r, "citadel restarted").await?;
    r.eventually(
        "the restarted CA rejects its expired root and crash-loops",
        Duration::from_secs(1800),
        || async move { citadel_crashing(c).await },
    )
    .await?;

    r.phase(Phase::Heal);
    c.kubectl(&["-n", NS, "delete", "secret", "istio-ca-secret"])
        .await?
        .ok("deleting istio-ca-secret")?;
    restart_citadel(c, r, "istio-ca-secret deleted, citadel restarted").await?;

    r.phase(Phase::Recover);
    let old = old_root.unwrap_or_default();
    r.eventually(
        "citadel issues a fresh root",
        Duration::from_secs(1800),
        || {
            let old = old.clone();
            async move {
                let root = ca_root(c).await?;
                let fresh = root.is_some_and(|r| r != old);
                Ok((fresh && mesh_ready(c).await?.is_some())
                    .then(|| ((), "a new istio-ca-secret; citadel Ready".to_owned())))
            }
        },
    )
    .await?;
    r.eventually(
        "mesh resources can be created again",
        Duration::from_secs(7200),
        || async move {
            Ok(try_create(c, "s08-after")
                .await?
                .is_none()
                .then(|| ((), "virtualservice s08-after created".to_owned())))
        },
    )
    .await?;
    Ok(())
}

/// Whether Citadel's pod restarts over and over and its last run's log
/// ends in the KeyCertBundle error; the log line.
async fn citadel_crashing(c: &impl Cluster) -> anyhow::Result<Option<((), String)>> {
    let pods = json_of(c, &["-n", NS, "get", "pods", "-l", "istio=citadel"]).await?;
    let Some(p) = items(&pods).find(|p| p["metadata"]["deletionTimestamp"].is_null()) else {
        return Ok(None);
    };
    let st = &p["status"]["containerStatuses"][0];
    let restarts = st["restartCount"].as_i64().unwrap_or(0);
    let reason = st["state"]["waiting"]["reason"].as_str().unwrap_or("");
    if restarts < 2 && reason != "CrashLoopBackOff" {
        return Ok(None);
    }
    let name = p["metadata"]["name"].as_str().unwrap_or("");
    let log = c
        .kubectl(&["-n", NS, "logs", name, "--previous"])
        .await?
        .ok("kubectl logs --previous")?;
    let Some(line) = log.lines().find(|l| l.contains(BUNDLE)) else {
        return Ok(None);
    };
    Ok(Some((
        (),
        format!("{name}: {restarts} restarts ({reason}); {}", line.trim()),
    )))
}
