//! S14 store-space-quota: the store's backend grows past its space quota
//! (one ConfigMap rewritten until its history fills it); the NOSPACE alarm
//! is raised, every write fails with etcd's error while reads work; the
//! operator compacts, defragments and disarms, and writes work again.

use std::time::Duration;

use crate::cluster::Cluster;
use crate::scenario::{Phase, Run};

pub const ID: &str = "S14";
pub const TITLE: &str = "store-space-quota";
/// The quota the scenario's cluster runs with.
pub const QUOTA_BYTES: u64 = 8 * 1024 * 1024;

const NOSPACE: &str = "mvcc: database space exceeded";

/// A merge patch that rewrites the ConfigMap's 256 KiB value.
fn patch(round: usize) -> String {
    let ch = (b'a' + (round % 26) as u8) as char;
    format!(
        "{{\"data\":{{\"v\":\"{}\"}}}}",
        std::iter::repeat_n(ch, 256 * 1024).collect::<String>()
    )
}

async fn current_revision(c: &impl Cluster) -> anyhow::Result<i64> {
    let out = c
        .etcdctl(None, &["endpoint", "status", "-w", "json"])
        .await?
        .ok("etcdctl endpoint status")?;
    let v: serde_json::Value = serde_json::from_str(out.trim())?;
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["Status"]["header"]["revision"].as_i64())
        .max()
        .ok_or_else(|| anyhow::anyhow!("no revision in {out}"))
}

pub async fn run(c: &impl Cluster, r: &mut Run) -> anyhow::Result<()> {
    r.phase(Phase::Setup);
    c.kubectl(&["create", "configmap", "big", "--from-literal=v=0"])
        .await?
        .ok("creating configmap big")?;
    r.step("workload written", "configmap default/big");

    r.phase(Phase::Inject);
    // Each rewrite keeps the old value in the store's history until it is
    // compacted: 256 KiB per revision.
    let rounds = (QUOTA_BYTES / (256 * 1024)) as usize * 3;
    let mut refused = None;
    let file = std::env::temp_dir().join(format!("ackemu-s14-{}.json", std::process::id()));
    let path = file.display().to_string();
    for round in 0..rounds {
        std::fs::write(&file, patch(round))?;
        let out = c
            .kubectl(&[
                "patch",
                "configmap",
                "big",
                "--type=merge",
                "--patch-file",
                &path,
            ])
            .await?;
        if !out.ok {
            refused = Some((round, out.text()));
            break;
        }
    }
    let _ = std::fs::remove_file(&file);
    let Some((round, err)) = refused else {
        anyhow::bail!("{rounds} rewrites of 256 KiB never reached the {QUOTA_BYTES}-byte quota");
    };
    if !err.contains(NOSPACE) {
        anyhow::bail!("write {round} failed, but not with {NOSPACE:?}: {err}");
    }
    r.step(
        "the backend reached its quota",
        format!("write {round} refused: {}", err.trim()),
    );

    r.phase(Phase::Observe);
    r.eventually(
        "the NOSPACE alarm",
        Duration::from_secs(60),
        || async move {
            let out = c.etcdctl(None, &["alarm", "list"]).await?;
            Ok(out
                .stdout
                .contains("alarm:NOSPACE")
                .then(|| ((), out.stdout.trim().to_owned())))
        },
    )
    .await?;
    let out = c
        .kubectl(&["create", "configmap", "other", "--from-literal=k=v"])
        .await?;
    if out.ok || !out.text().contains(NOSPACE) {
        anyhow::bail!("a new write under the alarm: {}", out.text());
    }
    r.step("every write fails", out.text().trim().to_owned());
    let read = c
        .kubectl(&["get", "configmap", "big", "-o", "name"])
        .await?
        .ok("reading configmap big under the alarm")?;
    c.kubectl(&["get", "namespaces"])
        .await?
        .ok("listing namespaces under the alarm")?;
    r.step("reads work", read.trim().to_owned());

    r.phase(Phase::Heal);
    let rev = current_revision(c).await?;
    let out = c
        .etcdctl(None, &["compact", &rev.to_string()])
        .await?
        .ok("etcdctl compact")?;
    r.step("compacted", out.trim().to_owned());
    let out = c.etcdctl(None, &["defrag"]).await?.ok("etcdctl defrag")?;
    r.step(
        "defragmented",
        format!(
            "{} members",
            out.matches("Finished defragmenting etcd member").count()
        ),
    );
    c.etcdctl(None, &["alarm", "disarm"])
        .await?
        .ok("etcdctl alarm disarm")?;
    r.step("alarm disarmed", "etcdctl alarm disarm");

    r.phase(Phase::Recover);
    r.eventually(
        "writes work again",
        Duration::from_secs(60),
        || async move {
            let out = c
                .kubectl(&["create", "configmap", "after-heal", "--from-literal=k=v"])
                .await?;
            Ok((out.ok || out.text().contains("AlreadyExists"))
                .then(|| ((), "configmap/after-heal created".to_owned())))
        },
    )
    .await?;
    let alarms = c
        .etcdctl(None, &["alarm", "list"])
        .await?
        .ok("alarm list")?;
    if !alarms.trim().is_empty() {
        anyhow::bail!("alarms left after the heal: {alarms}");
    }
    r.step("no alarm left", "etcdctl alarm list is empty");
    Ok(())
}
