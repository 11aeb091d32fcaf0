//! What several scenarios ask of the cluster through `kubectl` and the
//! cloud API.

use anyhow::Context as _;
use base64::Engine as _;
use serde_json::Value;

use crate::cluster::Cluster;

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
