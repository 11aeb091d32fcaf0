//! Drives [`crate::replicaset`]: ReplicaSet and pod events → keys; a sync
//! creates and deletes pods in slow-start batches and writes status.

use std::collections::HashMap;
use std::sync::Arc;

use ackemu_kube::LabelSelector;
use ackemu_kube::api::apps::v1::ReplicaSet;
use ackemu_kube::api::core::v1::Pod;
use parking_lot::Mutex;
use serde_json::json;

use super::informer::Change;
use super::rest::{self, ns_opt};
use super::{Ctx, Next, Queue};
use crate::replicaset::{
    PodRef, ReplicaSetController, RsAction, RsInput, created_message, deleted_message,
    slow_start_batches,
};
use crate::util::{Event, ObjectRef, meta};

const COMPONENT: &str = "replicaset-controller";

struct State {
    core: Mutex<ReplicaSetController>,
    last_error: Mutex<HashMap<String, String>>,
}

fn rs_key_of_pod(p: &Pod) -> Option<String> {
    let r = meta::controller_of(&p.metadata)?;
    (r.kind == "ReplicaSet").then(|| format!("{}/{}", meta::namespace(&p.metadata), r.name))
}

/// ReplicaSets whose selector matches an orphan pod (candidates for adoption).
fn matching_sets(ctx: &Ctx, p: &Pod) -> Vec<String> {
    ctx.inf
        .replicasets
        .list_ns(meta::namespace(&p.metadata))
        .iter()
        .filter(|rs| {
            LabelSelector::from_meta(rs.spec.as_ref().map(|s| &s.selector))
                .is_ok_and(|s| !s.is_everything() && s.matches(meta::labels(&p.metadata)))
        })
        .map(|rs| meta::key(&rs.metadata))
        .collect()
}

pub fn start(ctx: &Ctx, workers: usize) {
    let state = Arc::new(State {
        core: Mutex::new(ReplicaSetController::new()),
        last_error: Mutex::new(HashMap::new()),
    });
    let q = Queue::new("replicaset", ctx);
    {
        let q = q.clone();
        let st = state.clone();
        ctx.inf.replicasets.on(move |c| match c {
            Change::Add(rs) | Change::Update(_, rs) => q.add(&meta::key(&rs.metadata)),
            Change::Delete(rs) => {
                st.core.lock().forget(&meta::key(&rs.metadata));
                q.add(&meta::key(&rs.metadata));
            }
        });
    }
    {
        let q = q.clone();
        let st = state.clone();
        let c2 = ctx.clone();
        ctx.inf.pods.on(move |c| {
            let enqueue = |p: &Pod| match rs_key_of_pod(p) {
                Some(k) => q.add(&k),
                None if p.metadata.deletion_timestamp.is_none() => {
                    for k in matching_sets(&c2, p) {
                        q.add(&k);
                    }
                }
                None => {}
            };
            match c {
                Change::Add(p) => {
                    st.core.lock().pod_added(p);
                    enqueue(p);
                }
                Change::Update(old, new) => {
                    st.core.lock().pod_updated(old, new);
                    if rs_key_of_pod(old) != rs_key_of_pod(new)
                        || old.metadata.labels != new.metadata.labels
                    {
                        enqueue(old);
                    }
                    enqueue(new);
                }
                Change::Delete(p) => {
                    st.core.lock().pod_deleted(p);
                    enqueue(p);
                }
            }
        });
    }
    ctx.inf.pods.require();
    let ctx2 = ctx.clone();
    q.run(workers, move |key| {
        let ctx = ctx2.clone();
        let state = state.clone();
        async move { sync(&ctx, &state, &key).await }
    });
}

/// Active pods of the other ReplicaSets of the same Deployment.
fn related(ctx: &Ctx, rs: &ReplicaSet, pods: &[Arc<Pod>]) -> Vec<Arc<Pod>> {
    let Some(owner) = meta::controller_of(&rs.metadata) else {
        return pods
            .iter()
            .filter(|p| {
                meta::controller_of(&p.metadata).is_some_and(|r| r.uid == meta::uid(&rs.metadata))
            })
            .cloned()
            .collect();
    };
    let siblings: Vec<String> = ctx
        .inf
        .replicasets
        .list_ns(meta::namespace(&rs.metadata))
        .iter()
        .filter(|s| meta::controller_of(&s.metadata).is_some_and(|r| r.uid == owner.uid))
        .map(|s| meta::uid(&s.metadata).to_owned())
        .collect();
    pods.iter()
        .filter(|p| meta::controller_of(&p.metadata).is_some_and(|r| siblings.contains(&r.uid)))
        .cloned()
        .collect()
}

async fn sync(ctx: &Ctx, state: &State, key: &str) -> Result<Next, String> {
    let Some(rs) = ctx.inf.replicasets.get(key) else {
        state.core.lock().forget(key);
        state.last_error.lock().remove(key);
        return Ok(Next::Done);
    };
    let ns = meta::namespace(&rs.metadata).to_owned();
    let pods = ctx.inf.pods.list_ns(&ns);
    let rel = related(ctx, &rs, &pods);
    let last_error = state.last_error.lock().get(key).cloned();
    let actions = {
        let input = RsInput {
            rs: &rs,
            pods: pods.iter().map(|p| p.as_ref()).collect(),
            related: rel.iter().map(|p| p.as_ref()).collect(),
            last_error,
        };
        state.core.lock().reconcile(&input, ctx.now())
    };
    let rs_ref = ObjectRef::new("apps/v1", "ReplicaSet", &rs.metadata);
    let mut next = Next::Done;
    let mut manage_error: Option<String> = None;
    let mut managed = false;
    for a in actions {
        match a {
            RsAction::PatchOwners {
                namespace,
                name,
                uid,
                owner_references,
            } => {
                let patch = json!({"metadata": {"ownerReferences": owner_references, "uid": uid}});
                match rest::patch::<Pod>(&ctx.client, ns_opt(&namespace), &name, "", &patch).await {
                    Ok(_) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => {
                        return Err(format!("patching owners of pod {namespace}/{name}: {e}"));
                    }
                }
            }
            RsAction::CreatePods { count, pod } => {
                managed = true;
                let mut done = 0;
                'batches: for b in slow_start_batches(count) {
                    for _ in 0..b {
                        match rest::create(&ctx.client, Some(&ns), pod.as_ref()).await {
                            Ok(p) => {
                                done += 1;
                                ctx.event(
                                    COMPONENT,
                                    Event::normal(
                                        rs_ref.clone(),
                                        "SuccessfulCreate",
                                        created_message(meta::name(&p.metadata)),
                                    ),
                                );
                            }
                            Err(e) => {
                                let msg = e.to_string();
                                ctx.event(
                                    COMPONENT,
                                    Event::warning(
                                        rs_ref.clone(),
                                        "FailedCreate",
                                        format!("Error creating: {msg}"),
                                    ),
                                );
                                manage_error = Some(msg);
                                break 'batches;
                            }
                        }
                    }
                }
                let mut core = state.core.lock();
                for _ in done..count {
                    core.creation_failed(key);
                }
            }
            RsAction::DeletePods { pods } => {
                managed = true;
                for p in pods {
                    if let Err(e) = delete_pod(ctx, &p).await {
                        state.core.lock().deletion_failed(key, &p.key());
                        manage_error = Some(e.clone());
                        ctx.event(
                            COMPONENT,
                            Event::warning(
                                rs_ref.clone(),
                                "FailedDelete",
                                format!("Error deleting: {e}"),
                            ),
                        );
                    } else {
                        ctx.event(
                            COMPONENT,
                            Event::normal(
                                rs_ref.clone(),
                                "SuccessfulDelete",
                                deleted_message(&p.name),
                            ),
                        );
                    }
                }
            }
            RsAction::UpdateStatus(st) => {
                let mut obj = (*rs).clone();
                obj.status = Some(*st);
                if let Err(e) = rest::update(
                    &ctx.client,
                    Some(&ns),
                    meta::name(&rs.metadata),
                    "status",
                    &obj,
                )
                .await
                    && !e.is_not_found()
                {
                    return Err(format!("updating status of replicaset {key}: {e}"));
                }
            }
            RsAction::RequeueAfter(d) => next = Next::After(d),
            RsAction::Event(e) => ctx.event(COMPONENT, e),
        }
    }
    if managed {
        match manage_error {
            Some(e) => {
                state.last_error.lock().insert(key.to_owned(), e.clone());
                return Err(e);
            }
            None => {
                state.last_error.lock().remove(key);
            }
        }
    }
    Ok(next)
}

async fn delete_pod(ctx: &Ctx, p: &PodRef) -> Result<(), String> {
    let info = rest::info_of::<Pod>(&ctx.client).map_err(|e| e.to_string())?;
    rest::delete(
        &ctx.client,
        &info,
        Some(&p.namespace),
        &p.name,
        rest::Del {
            uid: Some(&p.uid),
            ..Default::default()
        },
    )
    .await
    .map_err(|e| format!("deleting pod {}: {e}", p.key()))
}
