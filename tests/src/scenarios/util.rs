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
