//! S07 dns-service-ip-changed (Istio 二分之一活的微服务): on a cluster with
//! the mesh add-on, an operator deletes the `kube-dns` Service and
//! recreates it without its fixed clusterIP. Pods' resolv.conf still names
//! 172.19.0.10, so the sidecars of new meshed pods cannot resolve
//! `istio-pilot.istio-system`, never get their configuration from Pilot,
//! and `kubectl get pods` shows `1/2`; `:15020/healthz/ready` answers 503
//! and the `istio-proxy` log repeats Istio's "Envoy proxy is NOT ready"
//! line. Recreating kube-dns with 172.19.0.10 heals it.

use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Value, json};

use super::util::json_of as json;
use crate::cluster::Cluster;
use crate::scenario::{Phase, Run};

pub const ID: &str = "S07";
pub const TITLE: &str = "dns-service-ip-changed";

/// `ackemu up` flags: the mesh add-on.
pub const UP_ARGS: &[&str] = &["--mesh"];

const DNS_IP: &str = "172.19.0.10";
const TOOLBOX: &str = "s07-toolbox";
/// The bookinfo services the scenario meshes.
const APPS: &[&str] = &["details-v1", "ratings-v1"];
const NOT_READY: &str = "Envoy proxy is NOT ready: config not received from Pilot (is Pilot running?): cds updates: 0 successful, 0 rejected; lds updates: 0 successful, 0 rejected";

/// `kubectl create -f` of `obj` (through a file, as a user would).
async fn create(c: &impl Cluster, obj: &Value) -> anyhow::Result<String> {
    let file = std::env::temp_dir().join(format!(
        "ackemu-s07-{}-{}.json",
        std::process::id(),
        obj["metadata"]["name"].as_str().unwrap_or("obj")
    ));
    std::fs::write(&file, obj.to_string())?;
    let out = c
        .kubectl(&["create", "-f", &file.display().to_string()])
        .await;
    let _ = std::fs::remove_file(&file);
    out?.ok(&format!(
        "creating {} {}",
        obj["kind"].as_str().unwrap_or(""),
        obj["metadata"]["name"].as_str().unwrap_or("")
    ))
}

fn app_deployment(name: &str) -> Value {
    let app = name.split('-').next().unwrap_or(name);
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": app, "version": "v1"}},
        "spec": {"replicas": 1,
                 "selector": {"matchLabels": {"app": app, "version": "v1"}},
                 "template": {"metadata": {"labels": {"app": app, "version": "v1", "s07": "meshed"}},
                              "spec": {"containers": [{"name": app, "image": "app",
                                                       "ports": [{"containerPort": 2580}]}]}}}})
}

/// The `kubectl get pods` lines of the meshed pods that are not being
/// deleted: (name, READY column, STATUS column).
async fn meshed_pods(c: &impl Cluster) -> anyhow::Result<Vec<(String, String, String)>> {
    let out = c
        .kubectl(&["get", "pods", "-l", "s07=meshed", "--no-headers"])
        .await?
        .ok("kubectl get pods")?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && f[2] != "Terminating")
                .then(|| (f[0].to_owned(), f[1].to_owned(), f[2].to_owned()))
        })
        .collect())
}

/// Whether every meshed app has exactly one pod and all show `ready`.
async fn all_show(c: &impl Cluster, ready: &str) -> anyhow::Result<Option<((), String)>> {
    let pods = meshed_pods(c).await?;
    let shown = pods
        .iter()
        .map(|(n, r, s)| format!("{n} {r} {s}"))
        .collect::<Vec<_>>()
        .join("; ");
    let each_app_once = APPS.iter().all(|a| {
        let app = a.split('-').next().unwrap_or(a);
        pods.iter()
            .filter(|(n, _, _)| n.starts_with(&format!("{app}-")))
            .count()
            == 1
    });
    if each_app_once && pods.iter().all(|(_, r, s)| r == ready && s == "Running") {
        return Ok(Some(((), shown)));
    }
    anyhow::bail!("kubectl get pods: {shown}")
}

/// Delete `kube-dns` and create it again from `svc`, with `cluster_ip`
/// (`None`: let the API server pick one).
async fn recreate_kube_dns(
    c: &impl Cluster,
    svc: &Value,
    cluster_ip: Option<&str>,
) -> anyhow::Result<String> {
    c.kubectl(&["-n", "kube-system", "delete", "service", "kube-dns"])
        .await?
        .ok("kubectl delete service kube-dns")?;
    let mut fresh = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": "kube-system",
                     "labels": svc["metadata"]["labels"].clone()},
        "spec": {"selector": svc["spec"]["selector"].clone(),
                 "ports": svc["spec"]["ports"].clone()}});
    if let Some(ip) = cluster_ip {
        fresh["spec"]["clusterIP"] = json!(ip);
    }
    create(c, &fresh).await?;
    let now = json(c, &["-n", "kube-system", "get", "service", "kube-dns"]).await?;
    Ok(now["spec"]["clusterIP"].as_str().unwrap_or("").to_owned())
}

pub async fn run(c: &impl Cluster, r: &mut Run) -> anyhow::Result<()> {
    r.phase(Phase::Setup);
    r.eventually(
        "the mesh control plane runs (istio-pilot, istio-citadel, istio-galley)",
        Duration::from_secs(3600),
        || async move {
            let d = json(c, &["-n", "istio-system", "get", "deployments"]).await?;
            let mut ready = Vec::new();
            for i in d["items"].as_array().into_iter().flatten() {
                if i["status"]["availableReplicas"].as_i64().unwrap_or(0) >= 1 {
                    ready.push(i["metadata"]["name"].as_str().unwrap_or("").to_owned());
                }
            }
            ready.sort();
            if ready == ["istio-citadel", "istio-galley", "istio-pilot"] {
                return Ok(Some(((), ready.join(", "))));
            }
            anyhow::bail!("available: {ready:?}")
        },
    )
    .await?;
    r.eventually(
        "the sidecar injector is registered",
        Duration::from_secs(600),
        || async move {
            let m = json(
                c,
                &[
                    "get",
                    "mutatingwebhookconfiguration",
                    "istio-sidecar-injector",
                ],
            )
            .await?;
            let name = m["webhooks"][0]["name"].as_str().unwrap_or("").to_owned();
            Ok((!name.is_empty()).then_some(((), name)))
        },
    )
    .await?;
    c.kubectl(&[
        "label",
        "namespace",
        "default",
        "istio-injection=enabled",
        "--overwrite",
    ])
    .await?
    .ok("kubectl label namespace default istio-injection=enabled")?;
    r.step("namespace default labelled", "istio-injection=enabled");
    for a in APPS {
        create(c, &app_deployment(a)).await?;
    }
    create(
        c,
        &json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": TOOLBOX, "namespace": "default",
                         "annotations": {"sidecar.istio.io/inject": "false"}},
            "spec": {"containers": [{"name": "toolbox", "image": "app"}]}}),
    )
    .await?;
    r.eventually(
        "kubectl get pods shows 2/2 for every meshed pod",
        Duration::from_secs(3600),
        || all_show(c, "2/2"),
    )
    .await?;
    r.eventually(
        "the toolbox pod runs",
        Duration::from_secs(600),
        || async move {
            let p = json(c, &["get", "pod", TOOLBOX]).await?;
            Ok((p["status"]["phase"] == "Running").then(|| ((), TOOLBOX.to_owned())))
        },
    )
    .await?;

    r.phase(Phase::Inject);
    let svc = json(c, &["-n", "kube-system", "get", "service", "kube-dns"]).await?;
    let mut new_ip = String::new();
    // The API server picks the address; on the rare draw of the old one,
    // the operator's recreation simply did not change anything yet.
    for _ in 0..3 {
        new_ip = recreate_kube_dns(c, &svc, None).await?;
        if new_ip != DNS_IP {
            break;
        }
    }
    if new_ip == DNS_IP {
        anyhow::bail!("kube-dns kept {DNS_IP} on three recreations");
    }
    r.step(
        "kube-dns deleted and recreated without its clusterIP",
        format!("CLUSTER-IP {new_ip} (pods' resolv.conf names {DNS_IP})"),
    );

    r.phase(Phase::Observe);
    // New meshed pods, as after a rollout or a node restart.
    c.kubectl(&["delete", "pods", "-l", "s07=meshed", "--wait=false"])
        .await?
        .ok("kubectl delete pods -l s07=meshed")?;
    r.step("meshed pods deleted", "their Deployments create new ones");
    r.eventually(
        "kubectl get pods shows 1/2 Running for every new meshed pod",
        Duration::from_secs(3600),
        || all_show(c, "1/2"),
    )
    .await?;
    let pods = json(c, &["get", "pods", "-l", "s07=meshed"]).await?;
    let pod = pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["metadata"]["deletionTimestamp"].is_null())
        .context("a meshed pod")?
        .clone();
    let name = pod["metadata"]["name"].as_str().unwrap_or("").to_owned();
    let ip = pod["status"]["podIP"].as_str().unwrap_or("").to_owned();
    let resolv = c
        .kubectl(&[
            "exec",
            &name,
            "-c",
            "istio-proxy",
            "--",
            "cat",
            "/etc/resolv.conf",
        ])
        .await?;
    if !resolv.text().contains(&format!("nameserver {DNS_IP}")) {
        anyhow::bail!("{name}'s resolv.conf: {}", resolv.text());
    }
    r.step(
        "the sidecar's resolv.conf still names the old address",
        format!("{name}: nameserver {DNS_IP}"),
    );
    let url = format!("http://{ip}:15020/healthz/ready");
    r.eventually(
        "GET :15020/healthz/ready answers 503",
        Duration::from_secs(120),
        || {
            let url = url.clone();
            async move {
                let out = c
                    .kubectl(&["exec", TOOLBOX, "--", "wget", "-T", "5", "-O", "-", &url])
                    .await?;
                let text = out.text();
                if !out.ok && text.contains("503 Service Unavailable") {
                    let line = text.lines().find(|l| l.contains("503")).unwrap_or("");
                    return Ok(Some(((), format!("{url}: {}", line.trim()))));
                }
                anyhow::bail!("wget {url}: {}", text.trim())
            }
        },
    )
    .await?;
    let pod_name = name.clone();
    r.eventually(
        "the istio-proxy log says Envoy proxy is NOT ready",
        Duration::from_secs(120),
        || {
            let name = pod_name.clone();
            async move {
                let log = c
                    .kubectl(&["logs", &name, "-c", "istio-proxy", "--tail=50"])
                    .await?
                    .ok("kubectl logs")?;
                Ok(log
                    .lines()
                    .find(|l| l.contains(NOT_READY))
                    .map(|l| ((), l.trim().to_owned())))
            }
        },
    )
    .await?;

    r.phase(Phase::Heal);
    let svc = json(c, &["-n", "kube-system", "get", "service", "kube-dns"]).await?;
    let ip = recreate_kube_dns(c, &svc, Some(DNS_IP)).await?;
    r.step(
        "kube-dns recreated with its original clusterIP",
        format!("CLUSTER-IP {ip}"),
    );

    r.phase(Phase::Recover);
    r.eventually(
        "kubectl get pods shows 2/2 for every meshed pod again",
        Duration::from_secs(3600),
        || all_show(c, "2/2"),
    )
    .await?;
    let url = format!(
        "http://{}:15020/healthz/ready",
        pod["status"]["podIP"].as_str().unwrap_or("")
    );
    let out = c
        .kubectl(&[
            "exec", TOOLBOX, "--", "wget", "-q", "-T", "5", "-O", "-", &url,
        ])
        .await?;
    if !out.ok {
        anyhow::bail!("wget {url} after the heal: {}", out.text());
    }
    r.step("GET :15020/healthz/ready answers 200", url);
    Ok(())
}
