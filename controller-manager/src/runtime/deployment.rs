//! Drives [`crate::deployment`]: Deployment, ReplicaSet and pod events →
//! Deployment keys; a sync performs the writes in order and stops at the
//! first failure (the rate-limited retry starts over from the caches).

use ackemu_kube::LabelSelector;
use ackemu_kube::api::apps::v1::{Deployment, ReplicaSet};
use serde_json::json;

use super::informer::Change;
use super::rest::{self, ns_opt};
use super::{Ctx, Next, Queue};
use crate::deployment::{DeployAction, DeployInput, REVISION, reconcile};
use crate::util::meta;

const COMPONENT: &str = "deployment-controller";

fn owner_key(ns: &str, m: &ackemu_kube::meta::ObjectMeta) -> Option<String> {
    let r = meta::controller_of(m)?;
    (r.kind == "Deployment").then(|| format!("{ns}/{}", r.name))
}

fn matching(
    ctx: &Ctx,
    ns: &str,
    labels: &std::collections::BTreeMap<String, String>,
) -> Vec<String> {
    ctx.inf
        .deployments
        .list_ns(ns)
        .iter()
        .filter(|d| {
            LabelSelector::from_meta(d.spec.as_ref().map(|s| &s.selector))
                .is_ok_and(|s| !s.is_everything() && s.matches(labels))
        })
        .map(|d| meta::key(&d.metadata))
        .collect()
}

pub fn start(ctx: &Ctx, workers: usize) {
    let q = Queue::new("deployment", ctx);
    {
        let q = q.clone();
        ctx.inf.deployments.on(move |c| {
            let d = match c {
                Change::Add(d) | Change::Update(_, d) | Change::Delete(d) => d,
            };
            q.add(&meta::key(&d.metadata));
        });
    }
    {
        let q = q.clone();
        let c2 = ctx.clone();
        ctx.inf.replicasets.on(move |c| {
            let each = |rs: &ReplicaSet| {
                let ns = meta::namespace(&rs.metadata);
                match owner_key(ns, &rs.metadata) {
                    Some(k) => q.add(&k),
                    None => {
                        for k in matching(&c2, ns, meta::labels(&rs.metadata)) {
                            q.add(&k);
                        }
                    }
                }
            };
            match c {
                Change::Add(rs) | Change::Delete(rs) => each(rs),
                Change::Update(old, new) => {
                    each(old);
                    each(new);
                }
            }
        });
    }
    {
        // Recreate waits for old pods to go away.
        let q = q.clone();
        let c2 = ctx.clone();
        ctx.inf.pods.on(move |c| {
            if let Change::Delete(p) = c {
                let ns = meta::namespace(&p.metadata);
                if let Some(r) = meta::controller_of(&p.metadata).filter(|r| r.kind == "ReplicaSet")
                    && let Some(rs) = c2.inf.replicasets.get(&format!("{ns}/{}", r.name))
                    && let Some(k) = owner_key(ns, &rs.metadata)
                {
                    q.add(&k);
                }
            }
        });
    }
    let ctx2 = ctx.clone();
    q.run(workers, move |key| {
        let ctx = ctx2.clone();
        async move { sync(&ctx, &key).await }
    });
}

async fn sync(ctx: &Ctx, key: &str) -> Result<Next, String> {
    let Some(d) = ctx.inf.deployments.get(key) else {
        return Ok(Next::Done);
    };
    let ns = meta::namespace(&d.metadata).to_owned();
    let rss = ctx.inf.replicasets.list_ns(&ns);
    let pods = ctx.inf.pods.list_ns(&ns);
    let input = DeployInput {
        deployment: &d,
        replica_sets: rss.iter().map(|r| r.as_ref()).collect(),
        pods: pods.iter().map(|p| p.as_ref()).collect(),
    };
    let actions = reconcile(&input, ctx.now());
    tracing::debug!(
        "deployment {key} rv={:?}: {:?}",
        d.metadata.resource_version,
        actions
            .iter()
            .map(|a| match a {
                DeployAction::UpdateReplicaSet(rs) => format!(
                    "update rs {} -> {:?}",
                    meta::name(&rs.metadata),
                    rs.spec.as_ref().and_then(|s| s.replicas)
                ),
                DeployAction::CreateReplicaSet(rs) =>
                    format!("create rs {}", meta::name(&rs.metadata)),
                DeployAction::UpdateStatus(_) => "status".to_string(),
                DeployAction::SetRevision(r) => format!("revision {r}"),
                other => format!("{other:?}").chars().take(60).collect(),
            })
            .collect::<Vec<_>>()
    );
    let mut next = Next::Done;
    let mut revision = None;
    for a in actions {
        match a {
            DeployAction::PatchRsOwners {
                name,
                uid,
                owner_references,
            } => {
                let patch = json!({"metadata": {"ownerReferences": owner_references, "uid": uid}});
                rest::patch::<ReplicaSet>(&ctx.client, ns_opt(&ns), &name, "", &patch)
                    .await
                    .map_err(|e| format!("patching owners of replicaset {ns}/{name}: {e}"))?;
            }
            DeployAction::CreateReplicaSet(rs) => {
                rest::create(&ctx.client, Some(&ns), rs.as_ref())
                    .await
                    .map_err(|e| {
                        format!("creating replicaset {ns}/{}: {e}", meta::name(&rs.metadata))
                    })?;
            }
            DeployAction::UpdateReplicaSet(rs) => {
                rest::update(
                    &ctx.client,
                    Some(&ns),
                    meta::name(&rs.metadata),
                    "",
                    rs.as_ref(),
                )
                .await
                .map_err(|e| {
                    format!("updating replicaset {ns}/{}: {e}", meta::name(&rs.metadata))
                })?;
            }
            DeployAction::DeleteReplicaSet { name, uid } => {
                let info = rest::info_of::<ReplicaSet>(&ctx.client).map_err(|e| e.to_string())?;
                rest::delete(
                    &ctx.client,
                    &info,
                    Some(&ns),
                    &name,
                    rest::Del {
                        uid: Some(&uid),
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| format!("deleting replicaset {ns}/{name}: {e}"))?;
            }
            DeployAction::SetRevision(r) => revision = Some(r),
            DeployAction::UpdateStatus(st) => {
                let mut obj: Deployment = (*d).clone();
                obj.status = Some(*st);
                match rest::update(
                    &ctx.client,
                    Some(&ns),
                    meta::name(&d.metadata),
                    "status",
                    &obj,
                )
                .await
                {
                    Ok(_) => {}
                    Err(e) if e.is_not_found() => return Ok(Next::Done),
                    Err(e) => return Err(format!("updating status of deployment {key}: {e}")),
                }
            }
            DeployAction::RequeueAfter(dur) => next = Next::After(dur),
            DeployAction::Event(e) => ctx.event(COMPONENT, e),
        }
    }
    if let Some(r) = revision {
        let patch = json!({"metadata": {"annotations": {REVISION: r}}});
        rest::patch::<Deployment>(
            &ctx.client,
            ns_opt(&ns),
            meta::name(&d.metadata),
            "",
            &patch,
        )
        .await
        .map_err(|e| format!("setting the revision of deployment {key}: {e}"))?;
    }
    Ok(next)
}
