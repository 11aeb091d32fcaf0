//! S13 store-leader-loss: the store leader process is killed; the API
//! server's writes pause for about an election and resume, no acknowledged
//! write is lost, watches continue without gaps, and the restarted member
//! catches up.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::AsyncBufReadExt as _;

use crate::cluster::Cluster;
use crate::scenario::{Phase, Run};

pub const ID: &str = "S13";
pub const TITLE: &str = "store-leader-loss";

/// The store member that leads, by `etcdctl endpoint status`.
pub async fn leader(c: &impl Cluster) -> anyhow::Result<Option<String>> {
    let out = c
        .etcdctl(None, &["endpoint", "status", "-w", "json"])
        .await?;
    // Members that are down make etcdctl fail but still print the others.
    let v: serde_json::Value = match serde_json::from_str(out.stdout.trim()) {
        Ok(v) => v,
        Err(_) => return Ok(None),
    };
    let members = c.store_members();
    for e in v.as_array().into_iter().flatten() {
        let st = &e["Status"];
        let (id, lead) = (st["header"]["member_id"].as_u64(), st["leader"].as_u64());
        if id.is_some() && id == lead {
            let ep = e["Endpoint"].as_str().unwrap_or("");
            return Ok(members
                .iter()
                .find(|(_, m)| ep.ends_with(m.as_str()))
                .map(|(n, _)| n.clone()));
        }
    }
    Ok(None)
}

async fn create_cm(c: &impl Cluster, name: &str) -> anyhow::Result<bool> {
    Ok(c.kubectl(&[
        "-n",
        "s13",
        "create",
        "configmap",
        name,
        "--from-literal=k=v",
    ])
    .await?
    .ok)
}

pub async fn run(c: &impl Cluster, r: &mut Run) -> anyhow::Result<()> {
    r.phase(Phase::Setup);
    c.kubectl(&["create", "namespace", "s13"])
        .await?
        .ok("creating namespace s13")?;
    let mut acked: Vec<String> = Vec::new();
    for i in 0..5 {
        let name = format!("before-{i}");
        if !create_cm(c, &name).await? {
            anyhow::bail!("creating configmap {name} before the fault failed");
        }
        acked.push(name);
    }
    r.step(
        "workload written",
        format!("{} configmaps in s13", acked.len()),
    );
    // A watch from now on, through the API server's watch cache.
    let mut watch = c.kubectl_command(&[
        "-n",
        "s13",
        "get",
        "configmaps",
        "--watch-only",
        "-o",
        "name",
    ]);
    let mut child = watch
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting kubectl get --watch")?;
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let stdout = child.stdout.take().context("watch stdout")?;
    let sink = seen.clone();
    let reader = async move {
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            if let Ok(mut v) = sink.lock() {
                v.push(l.trim().trim_start_matches("configmap/").to_owned());
            }
        }
    };
    let watching = async {
        // The watch is established once it reports a fresh object.
        let mut tries = 0;
        r.eventually("the watch is established", Duration::from_secs(120), || {
            tries += 1;
            let probe = format!("probe-{tries}");
            let seen = seen.clone();
            async move {
                create_cm(c, &probe).await?;
                let ok = seen.lock().map(|v| v.contains(&probe)).unwrap_or(false);
                Ok(ok.then(|| ((), format!("saw {probe}"))))
            }
        })
        .await?;

        let old = r
            .eventually("a store leader", Duration::from_secs(60), || async move {
                Ok(leader(c).await?.map(|l| (l.clone(), l)))
            })
            .await?;

        r.phase(Phase::Inject);
        c.process("kill", &old)
            .await?
            .ok(&format!("killing {old}"))?;
        r.step("leader killed", format!("SIGKILL to {old}"));

        r.phase(Phase::Observe);
        let mut n = 0;
        let first = r
            .eventually(
                "writes resume through the API server",
                Duration::from_secs(120),
                || {
                    n += 1;
                    let name = format!("during-{n}");
                    async move {
                        Ok(create_cm(c, &name)
                            .await?
                            .then(|| (name.clone(), format!("created {name}"))))
                    }
                },
            )
            .await?;
        acked.push(first);
        let new = r
            .eventually(
                "a new leader among the others",
                Duration::from_secs(60),
                || {
                    let old = old.clone();
                    async move {
                        Ok(leader(c)
                            .await?
                            .filter(|l| *l != old)
                            .map(|l| (l.clone(), l)))
                    }
                },
            )
            .await?;
        let _ = new;
        for i in 0..5 {
            let name = format!("after-{i}");
            if !create_cm(c, &name).await? {
                anyhow::bail!("creating configmap {name} after the election failed");
            }
            acked.push(name);
        }
        let listed = c
            .kubectl(&["-n", "s13", "get", "configmaps", "-o", "name"])
            .await?
            .ok("listing configmaps")?;
        let lost: Vec<&String> = acked
            .iter()
            .filter(|a| !listed.lines().any(|l| l.trim() == format!("configmap/{a}")))
            .collect();
        if !lost.is_empty() {
            anyhow::bail!("acknowledged writes lost: {lost:?}");
        }
        r.step(
            "no acknowledged write lost",
            format!("{} configmaps present", acked.len()),
        );
        let after: Vec<String> = acked
            .iter()
            .filter(|a| !a.starts_with("before-"))
            .cloned()
            .collect();
        r.eventually(
            "the watch saw every write, without gaps",
            Duration::from_secs(60),
            || {
                let seen = seen.clone();
                let after = after.clone();
                async move {
                    let v = seen.lock().map(|v| v.clone()).unwrap_or_default();
                    let missing: Vec<&String> = after.iter().filter(|a| !v.contains(a)).collect();
                    if missing.is_empty() {
                        Ok(Some((
                            (),
                            format!("{} events after the fault", after.len()),
                        )))
                    } else {
                        anyhow::bail!("missing from the watch: {missing:?}")
                    }
                }
            },
        )
        .await?;

        r.phase(Phase::Heal);
        c.process("restart", &old)
            .await?
            .ok(&format!("restarting {old}"))?;
        r.step("member restarted", old.clone());

        r.phase(Phase::Recover);
        let last = acked.last().cloned().unwrap_or_default();
        let key = format!("/registry/configmaps/s13/{last}");
        r.eventually(
            "the restarted member caught up",
            Duration::from_secs(120),
            || {
                let key = key.clone();
                let old = old.clone();
                async move {
                    let out = c
                        .etcdctl(Some(&old), &["get", &key, "--consistency=s", "--keys-only"])
                        .await?;
                    Ok((out.ok && out.stdout.contains(&key))
                        .then(|| ((), format!("{old} serves {key} locally"))))
                }
            },
        )
        .await?;
        anyhow::Ok(())
    };
    let result = tokio::select! {
        r = watching => r,
        () = reader => Err(anyhow::anyhow!("the watch ended early")),
    };
    let _ = child.kill().await;
    result
}
