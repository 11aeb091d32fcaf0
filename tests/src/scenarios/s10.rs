//! S10 node-join-trust (集群伸缩原理, 认证): a worker joins with the
//! bootstrap token in its scaling configuration's UserData. It trusts the
//! cluster only when `cluster-info` carries a JWS signature of the
//! kubeconfig made with that token (kubeadm's token discovery), and the API
//! server accepts the token only while its Secret exists and has not
//! expired.
//!
//! The join token expires: the token cleaner deletes its Secret and the
//! bootstrap signer drops its signature from `cluster-info`. Scaling the
//! group out then boots an ECS whose attach refuses to trust the API
//! server (`token id "…" is invalid for this cluster or it has expired`,
//! in the instance's console output); the API server answers the token
//! with 401; no CSR and no Node appear. Healing is what the message says:
//! a new token, put into the scaling configuration, and the broken
//! instance replaced — the new one joins.

use std::time::Duration;

use anyhow::Context as _;
use rand::Rng as _;
use serde_json::json;

use super::util::{b64, b64_text, cloud_json, create, items, json_of, node_ready, workers_ready};
use crate::cluster::Cluster;
use crate::scenario::{Phase, Run};

pub const ID: &str = "S10";
pub const TITLE: &str = "node-join-trust";

/// Workers the cluster starts with.
pub const NODES: usize = 1;
/// The TTL the join token is given before it expires (cluster time).
const TTL: Duration = Duration::from_secs(120);

/// The `--token <id>.<secret>` of a UserData script.
pub fn token_of(user_data: &str) -> Option<(String, String)> {
    let t = user_data
        .split_whitespace()
        .skip_while(|w| *w != "--token")
        .nth(1)?;
    let (id, secret) = t.split_once('.')?;
    Some((id.to_owned(), secret.to_owned()))
}

/// A fresh `[a-z0-9]{6}.[a-z0-9]{16}` token, as `kubeadm token create`
/// makes them.
fn new_token() -> (String, String) {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let mut pick = |n: usize| -> String {
        (0..n)
            .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
            .collect()
    };
    (pick(6), pick(16))
}

/// The group's active scaling configuration: (id, decoded UserData).
async fn active_configuration(c: &impl Cluster, gid: &str) -> anyhow::Result<(String, String)> {
    let v = cloud_json(
        c,
        "ess",
        "DescribeScalingConfigurations",
        &[("ScalingGroupId", gid)],
    )
    .await?;
    let conf = v["ScalingConfigurations"]["ScalingConfiguration"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["LifecycleState"] == "Active")
        .with_context(|| format!("scaling group {gid} has no active configuration: {v}"))?;
    Ok((
        conf["ScalingConfigurationId"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
        b64_text(conf["UserData"].as_str().unwrap_or("")),
    ))
}

async fn group_instances(c: &impl Cluster, gid: &str) -> anyhow::Result<Vec<String>> {
    let v = cloud_json(
        c,
        "ess",
        "DescribeScalingInstances",
        &[("ScalingGroupId", gid)],
    )
    .await?;
    Ok(v["ScalingInstances"]["ScalingInstance"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["InstanceId"].as_str().map(str::to_owned))
        .collect())
}

async fn console(c: &impl Cluster, instance: &str) -> anyhow::Result<String> {
    let v = cloud_json(
        c,
        "ecs",
        "GetInstanceConsoleOutput",
        &[("InstanceId", instance)],
    )
    .await?;
    Ok(b64_text(v["ConsoleOutput"].as_str().unwrap_or("")))
}

/// The `jws-kubeconfig-<id>` keys of `cluster-info`.
async fn signed_token_ids(c: &impl Cluster) -> anyhow::Result<Vec<String>> {
    let cm = json_of(
        c,
        &["-n", "kube-public", "get", "configmap", "cluster-info"],
    )
    .await?;
    Ok(cm["data"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, _)| k.strip_prefix("jws-kubeconfig-").map(str::to_owned))
        .collect())
}

async fn set_desired(c: &impl Cluster, gid: &str, n: usize) -> anyhow::Result<()> {
    c.cloud(
        "ess",
        "ModifyScalingGroup",
        &[("ScalingGroupId", gid), ("DesiredCapacity", &n.to_string())],
    )
    .await?
    .ok("ModifyScalingGroup")?;
    Ok(())
}

/// Waits for one instance of the group that is not in `known`.
async fn new_instance(
    c: &impl Cluster,
    r: &mut Run,
    gid: &str,
    known: &[String],
) -> anyhow::Result<String> {
    r.eventually(
        "ESS creates an ECS instance",
        Duration::from_secs(600),
        || {
            let (gid, known) = (gid.to_owned(), known.to_vec());
            async move {
                let ids = group_instances(c, &gid).await?;
                Ok(ids.into_iter().find(|i| !known.contains(i)).map(|id| {
                    let d = format!("{id} in {gid}");
                    (id, d)
                }))
            }
        },
    )
    .await
}

pub async fn run(c: &impl Cluster, r: &mut Run) -> anyhow::Result<()> {
    r.phase(Phase::Setup);
    let gid = c
        .cloud_id("scaling_group")
        .context("the workers' scaling group")?;
    workers_ready(c, r, NODES).await?;
    let (conf_id, user_data) = active_configuration(c, &gid).await?;
    let (token_id, token_secret) =
        token_of(&user_data).context("the scaling configuration's UserData has no --token")?;
    let secret_name = format!("bootstrap-token-{token_id}");
    c.kubectl(&["-n", "kube-system", "get", "secret", &secret_name])
        .await?
        .ok(&format!("kubectl get secret {secret_name}"))?;
    anyhow::ensure!(
        signed_token_ids(c).await?.contains(&token_id),
        "cluster-info carries no signature for token {token_id}"
    );
    r.step(
        "the scaling configuration joins workers with a signed bootstrap token",
        format!(
            "{conf_id}: --token {token_id}.<secret>; cluster-info has jws-kubeconfig-{token_id}"
        ),
    );
    let csrs_before = items(&json_of(c, &["get", "csr"]).await?).count();
    let known = group_instances(c, &gid).await?;

    r.phase(Phase::Inject);
    // The cluster's clock: a fresh object's creation time.
    create(
        c,
        &json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "s10-clock", "namespace": "default"}}),
    )
    .await?;
    let now: jiff::Timestamp =
        json_of(c, &["get", "configmap", "s10-clock"]).await?["metadata"]["creationTimestamp"]
            .as_str()
            .context("configmap without creationTimestamp")?
            .parse()?;
    let expiration = (now + jiff::SignedDuration::try_from(TTL)?)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let patch = json!({"data": {"expiration": b64(&expiration)}}).to_string();
    c.kubectl(&[
        "-n",
        "kube-system",
        "patch",
        "secret",
        &secret_name,
        "--type=merge",
        "-p",
        &patch,
    ])
    .await?
    .ok("setting the token's expiration")?;
    r.step(
        "the join token has a TTL and runs out",
        format!("{secret_name} expires at {expiration}"),
    );
    r.eventually(
        "the token cleaner deletes the expired token and the signer drops its signature",
        Duration::from_secs(900),
        || {
            let (secret_name, token_id) = (secret_name.clone(), token_id.clone());
            async move {
                let got = c
                    .kubectl(&["-n", "kube-system", "get", "secret", &secret_name])
                    .await?;
                let gone = !got.ok && got.text().contains("NotFound");
                let signed = signed_token_ids(c).await?;
                Ok((gone && !signed.contains(&token_id)).then(|| {
                    (
                        (),
                        format!("{secret_name} NotFound; cluster-info signs {signed:?}"),
                    )
                }))
            }
        },
    )
    .await?;
    set_desired(c, &gid, NODES + 1).await?;
    r.step(
        "the operator scales the workers out",
        format!("{gid} DesiredCapacity {}", NODES + 1),
    );

    r.phase(Phase::Observe);
    let broken = new_instance(c, r, &gid, &known).await?;
    let refusal = format!("token id \"{token_id}\" is invalid for this cluster or it has expired");
    r.eventually(
        "its attach refuses to trust the API server (console output)",
        Duration::from_secs(600),
        || {
            let (broken, refusal) = (broken.clone(), refusal.clone());
            async move {
                let out = console(c, &broken).await?;
                Ok(out
                    .lines()
                    .find(|l| l.contains(&refusal))
                    .map(|l| ((), format!("{broken}: {}", l.trim()))))
            }
        },
    )
    .await?;
    // The API server answers the token with 401.
    let cfg = json_of(c, &["config", "view", "--raw", "--minify", "--flatten"]).await?;
    let cluster = &cfg["clusters"][0]["cluster"];
    let kubeconfig = json!({"apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "bootstrap", "user": {"token": format!("{token_id}.{token_secret}")}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "bootstrap"}}],
        "current-context": "c"});
    let file = std::env::temp_dir().join(format!("ackemu-s10-{}.kubeconfig", std::process::id()));
    std::fs::write(&file, kubeconfig.to_string())?;
    let as_token = c
        .kubectl(&["--kubeconfig", &file.display().to_string(), "get", "nodes"])
        .await;
    let _ = std::fs::remove_file(&file);
    let as_token = as_token?;
    anyhow::ensure!(
        !as_token.ok && as_token.text().contains("Unauthorized"),
        "the expired token was not refused: {}",
        as_token.text()
    );
    r.step(
        "the API server refuses the token",
        format!(
            "kubectl --token {token_id}.<secret>: {}",
            as_token.text().trim()
        ),
    );
    let node = c.kubectl(&["get", "node", &broken]).await?;
    let csrs = items(&json_of(c, &["get", "csr"]).await?).count();
    anyhow::ensure!(
        !node.ok && node.text().contains("NotFound") && csrs == csrs_before,
        "the instance registered something: node {}, {csrs} CSRs (were {csrs_before})",
        node.text().trim()
    );
    let inst = cloud_json(
        c,
        "ecs",
        "DescribeInstances",
        &[("InstanceIds", &serde_json::to_string(&[&broken])?)],
    )
    .await?;
    let status = inst["Instances"]["Instance"][0]["Status"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    r.step(
        "nothing is registered",
        format!("instance {broken} is {status}; no Node {broken}; still {csrs} CSRs"),
    );

    r.phase(Phase::Heal);
    let (new_id, new_secret) = new_token();
    create(
        c,
        &json!({"apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
            "metadata": {"name": format!("bootstrap-token-{new_id}"), "namespace": "kube-system"},
            "data": {"token-id": b64(&new_id), "token-secret": b64(&new_secret),
                     "description": b64("kubeadm token create: a new join token"),
                     "usage-bootstrap-authentication": b64("true"),
                     "usage-bootstrap-signing": b64("true"),
                     "auth-extra-groups": b64("system:bootstrappers:kubeadm:default-node-token")}}),
    )
    .await?;
    r.eventually(
        "a new token is created and signed into cluster-info",
        Duration::from_secs(600),
        || {
            let new_id = new_id.clone();
            async move {
                let signed = signed_token_ids(c).await?;
                Ok(signed
                    .contains(&new_id)
                    .then(|| ((), format!("jws-kubeconfig-{new_id}"))))
            }
        },
    )
    .await?;
    let fixed = user_data.replace(
        &format!("--token {token_id}.{token_secret}"),
        &format!("--token {new_id}.{new_secret}"),
    );
    anyhow::ensure!(
        fixed != user_data,
        "could not replace the token in the UserData"
    );
    c.cloud(
        "ess",
        "ModifyScalingConfiguration",
        &[
            ("ScalingConfigurationId", &conf_id),
            ("UserData", &b64(&fixed)),
        ],
    )
    .await?
    .ok("ModifyScalingConfiguration")?;
    r.step(
        "the scaling configuration gets the new token",
        format!("{conf_id}: --token {new_id}.<secret>"),
    );
    c.cloud(
        "ess",
        "RemoveInstances",
        &[
            ("ScalingGroupId", &gid),
            ("InstanceId.1", &broken),
            ("DecreaseDesiredCapacity", "false"),
        ],
    )
    .await?
    .ok("RemoveInstances")?;
    r.step(
        "the broken instance is replaced",
        format!(
            "{broken} removed from {gid}, which keeps DesiredCapacity {}",
            NODES + 1
        ),
    );

    r.phase(Phase::Recover);
    let mut known = known;
    known.push(broken.clone());
    let joined = new_instance(c, r, &gid, &known).await?;
    node_ready(
        c,
        r,
        "the new instance joins and its node becomes Ready",
        &joined,
    )
    .await?;
    let out = console(c, &joined).await?;
    let line = out
        .lines()
        .find(|l| l.contains("This node has joined the cluster"))
        .with_context(|| format!("{joined}'s console output lacks the join: {out}"))?;
    r.step("its console output", format!("{joined}: {}", line.trim()));
    r.eventually(
        "the broken instance is released",
        Duration::from_secs(600),
        || {
            let id = broken.clone();
            async move {
                let v = cloud_json(
                    c,
                    "ecs",
                    "DescribeInstances",
                    &[("InstanceIds", &serde_json::to_string(&[&id])?)],
                )
                .await?;
                let gone = v["Instances"]["Instance"]
                    .as_array()
                    .is_none_or(|a| a.is_empty());
                Ok(gone.then(|| ((), format!("{id} released"))))
            }
        },
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_token_in_user_data() {
        let ud = "exec \"$BIN/ackemu-node\" attach \\\n  --apiserver https://x:6443 \\\n  --token abcdef.0123456789abcdef \\\n";
        assert_eq!(
            token_of(ud),
            Some(("abcdef".into(), "0123456789abcdef".into()))
        );
        assert_eq!(token_of("attach --apiserver x"), None);
        let (id, secret) = new_token();
        assert_eq!((id.len(), secret.len()), (6, 16));
        assert!(
            id.chars()
                .chain(secret.chars())
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
    }
}
