//! What several scenarios ask of the cluster through `kubectl` and the
//! cloud API.

use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use serde_json::Value;

use crate::cluster::Cluster;
use crate::scenario::Run;

/// The container registry as nodes reach it (the VPC's cloud service range).
pub const REGISTRY: &str = "100.100.0.20";

/// `kubectl <args> -o json`, parsed.
pub async fn json_of(c: &impl Cluster, args: &[&str]) -> anyhow::Result<Value> {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let out = c
        .kubectl(&all)
        .await?
        .ok(&format!("kubectl {}", args.join(" ")))?;
    Ok(serde_json::from_str(&out)?)
}

/// The `items` of a list.
pub fn items(v: &Value) -> impl Iterator<Item = &Value> {
    v["items"].as_array().into_iter().flatten()
}

pub fn name(v: &Value) -> &str {
    v["metadata"]["name"].as_str().unwrap_or("")
}

/// Whether the object's condition `kind` is True.
pub fn condition(obj: &Value, kind: &str) -> bool {
    obj["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == kind && c["status"] == "True")
}

/// The messages of the events of `reason` about the object `name`.
pub async fn event_messages(
    c: &impl Cluster,
    name: &str,
    reason: &str,
) -> anyhow::Result<Vec<String>> {
    let v = json_of(
        c,
        &[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={name},reason={reason}"),
        ],
    )
    .await?;
    Ok(items(&v)
        .filter_map(|e| e["message"].as_str().map(str::to_owned))
        .collect())
}

/// `kubectl create -f` of `obj`, through a temporary file.
pub async fn create(c: &impl Cluster, obj: &Value) -> anyhow::Result<()> {
    let file = std::env::temp_dir().join(format!(
        "ackemu-e2e-{}-{}.json",
        std::process::id(),
        name(obj)
    ));
    std::fs::write(&file, obj.to_string())?;
    let out = c
        .kubectl(&["create", "-f", &file.display().to_string()])
        .await;
    let _ = std::fs::remove_file(&file);
    out?.ok(&format!("creating {}", name(obj)))?;
    Ok(())
}

/// A cloud call's JSON answer.
pub async fn cloud_json(
    c: &impl Cluster,
    product: &str,
    action: &str,
    params: &[(&str, &str)],
) -> anyhow::Result<Value> {
    let out = c.cloud(product, action, params).await?.ok(action)?;
    serde_json::from_str(&out).with_context(|| format!("{action} answered {out}"))
}

/// Standard base64 decoded as text (UserData, console output).
pub fn b64_text(b: &str) -> String {
    base64::engine::general_purpose::STANDARD
        .decode(b)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

pub fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Waits until exactly `n` nodes are Ready; their names.
pub async fn workers_ready(c: &impl Cluster, r: &mut Run, n: usize) -> anyhow::Result<Vec<String>> {
    let what = if n == 1 {
        "the worker is Ready"
    } else {
        "the workers are Ready"
    };
    r.eventually(what, Duration::from_secs(900), || async move {
        let nodes = json_of(c, &["get", "nodes"]).await?;
        let ready: Vec<String> = items(&nodes)
            .filter(|n| condition(n, "Ready"))
            .map(|n| name(n).to_owned())
            .collect();
        Ok((ready.len() == n).then(|| {
            let d = ready.join(", ");
            (ready, d)
        }))
    })
    .await
}

/// Waits until node `id` has registered and is Ready.
pub async fn node_ready(c: &impl Cluster, r: &mut Run, what: &str, id: &str) -> anyhow::Result<()> {
    r.eventually(what, Duration::from_secs(900), || async move {
        let out = c.kubectl(&["get", "node", id, "-o", "json"]).await?;
        if !out.ok {
            return Ok(None);
        }
        let n: Value = serde_json::from_str(&out.stdout)?;
        Ok(condition(&n, "Ready").then(|| ((), format!("node {id} Ready"))))
    })
    .await
}

/// Repository `<namespace>/app` of `repo_type` (PUBLIC or PRIVATE) in the
/// cloud's registry with tag 1.0 running the `app` program; its image
/// reference as nodes pull it.
pub async fn registry_app(
    c: &impl Cluster,
    namespace: &str,
    repo_type: &str,
) -> anyhow::Result<String> {
    cloud_json(c, "cr", "CreateNamespace", &[("Namespace", namespace)]).await?;
    let repo = [("RepoNamespace", namespace), ("RepoName", "app")];
    let mut create = repo.to_vec();
    create.push(("RepoType", repo_type));
    cloud_json(c, "cr", "CreateRepo", &create).await?;
    let mut tag = repo.to_vec();
    tag.extend([("Tag", "1.0"), ("Program", "app")]);
    cloud_json(c, "cr", "PutImageTag", &tag).await?;
    Ok(format!("{REGISTRY}/{namespace}/app:1.0"))
}

/// Whether `m` is the kubelet's PLEG message past its 3m threshold:
/// `PLEG is not healthy: pleg was last seen active 3m0.1s ago; threshold is 3m0s`.
pub fn pleg_unhealthy(m: &str) -> bool {
    let Some(rest) = m.strip_prefix("PLEG is not healthy: pleg was last seen active ") else {
        return false;
    };
    let Some((ago, tail)) = rest.split_once(" ago") else {
        return false;
    };
    tail == "; threshold is 3m0s" && go_duration_secs(ago).is_some_and(|s| s >= 180.0)
}

/// Seconds of a Go `time.Duration` string (`3m0.1s`, `1h2m3s`, `45.5s`).
fn go_duration_secs(d: &str) -> Option<f64> {
    let mut total = 0.0;
    let mut num = String::new();
    for ch in d.chars() {
        match ch {
            '0'..='9' | '.' => num.push(ch),
            'h' | 'm' | 's' => {
                let v: f64 = num.parse().ok()?;
                num.clear();
                total += v * match ch {
                    'h' => 3600.0,
                    'm' => 60.0,
                    _ => 1.0,
                };
            }
            _ => return None,
        }
    }
    num.is_empty().then_some(total)
}

/// The kubelet's `skipping pod synchronization - [PLEG is not healthy: …]`
/// line, if `log` has one.
pub fn skipping_pod_sync_line(log: &str) -> Option<&str> {
    log.lines().find(|l| {
        l.split_once("skipping pod synchronization - [")
            .and_then(|(_, r)| r.strip_suffix(']'))
            .is_some_and(pleg_unhealthy)
    })
}

/// Node `node`'s Ready condition.
pub async fn ready_condition(c: &impl Cluster, node: &str) -> anyhow::Result<Value> {
    let n = json_of(c, &["get", "node", node]).await?;
    Ok(n["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .cloned()
        .unwrap_or(Value::Null))
}

/// Waits until node `node` is NotReady because PLEG is not healthy; the
/// condition's message.
pub async fn pleg_not_ready(
    c: &impl Cluster,
    r: &mut Run,
    what: &str,
    node: &str,
) -> anyhow::Result<String> {
    r.eventually(what, Duration::from_secs(900), || async move {
        let cond = ready_condition(c, node).await?;
        let msg = cond["message"].as_str().unwrap_or("").to_owned();
        Ok((cond["status"] == "False"
            && cond["reason"] == "KubeletNotReady"
            && pleg_unhealthy(&msg))
        .then(|| (msg.clone(), format!("Ready=False KubeletNotReady: {msg}"))))
    })
    .await
}

/// The processes of worker `node` whose command line contains `pattern`,
/// as `ps -eo pid,etimes,args` on the node lists them.
pub async fn node_processes(
    c: &impl Cluster,
    node: &str,
    pattern: &str,
) -> anyhow::Result<Vec<String>> {
    let out = c
        .ssh(node, &["ps", "-eo", "pid,etimes,args"])
        .await?
        .ok(&format!("ps on {node}"))?;
    let mine = format!("/nodes/{node}/");
    Ok(out
        .lines()
        .filter(|l| l.contains(pattern) && l.contains(&mine))
        .map(|l| l.trim().to_owned())
        .collect())
}

/// A pod named `name` of the `app` image that dies quickly on deletion.
pub fn quick_pod(name: &str, node: Option<&str>) -> Value {
    let mut p = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "app", "image": "app"}],
        },
    });
    if let Some(n) = node {
        p["spec"]["nodeName"] = n.into();
    }
    p
}

/// Pod `name`'s phase ("" when it does not exist).
pub async fn pod_phase(c: &impl Cluster, name: &str) -> anyhow::Result<String> {
    let out = c.kubectl(&["get", "pod", name, "-o", "json"]).await?;
    if !out.ok {
        return Ok(String::new());
    }
    let p: Value = serde_json::from_str(&out.stdout)?;
    Ok(p["status"]["phase"].as_str().unwrap_or("").to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pleg_matcher_accepts_the_kubelets_texts_past_the_threshold_only() {
        assert!(pleg_unhealthy(
            "PLEG is not healthy: pleg was last seen active 3m0.1s ago; threshold is 3m0s"
        ));
        assert!(pleg_unhealthy(
            "PLEG is not healthy: pleg was last seen active 1h3m26.3s ago; threshold is 3m0s"
        ));
        assert!(!pleg_unhealthy(
            "PLEG is not healthy: pleg was last seen active 2m59s ago; threshold is 3m0s"
        ));
        assert!(!pleg_unhealthy(
            "PLEG is not healthy: pleg has yet to be successful"
        ));
        assert!(!pleg_unhealthy(
            "PLEG is not healthy: pleg was last seen active 3mxs ago; threshold is 3m0s"
        ));
        let log = "I1202 12:00:00.000000 1 kubelet.go:1] skipping pod synchronization - [PLEG is not healthy: pleg was last seen active 3m0.000091019s ago; threshold is 3m0s]\n";
        assert!(skipping_pod_sync_line(log).is_some());
        assert!(
            skipping_pod_sync_line("skipping pod synchronization - [container runtime is down]")
                .is_none()
        );
    }
}
