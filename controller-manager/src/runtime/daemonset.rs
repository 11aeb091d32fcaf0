//! Drives [`crate::daemonset`].

use std::sync::Arc;

use ackemu_kube::api::apps::v1::DaemonSet;
use ackemu_kube::api::core::v1::Pod;
use parking_lot::Mutex;
use serde_json::json;

use super::informer::Change;
use super::rest;
use super::{Ctx, Next, Queue};
use crate::daemonset::{DaemonSetController, DsAction, DsInput};
use crate::util::{Event, ObjectRef, meta};

const COMPONENT: &str = "daemonset-controller";

pub fn start(ctx: &Ctx, workers: usize) {
    let core = Arc::new(Mutex::new(DaemonSetController::new()));
    let q = Queue::new("daemonset", ctx);
    {
        let q = q.clone();
        let core = core.clone();
        ctx.inf.daemonsets.on(move |c| match c {
            Change::Add(d) | Change::Update(_, d) => q.add(&meta::key(&d.metadata)),
            Change::Delete(d) => core.lock().forget(&meta::key(&d.metadata)),
        });
    }
    {
        let q = q.clone();
        let core = core.clone();
        ctx.inf.pods.on(move |c| {
            let key = |p: &Pod| {
                meta::controller_of(&p.metadata)
                    .filter(|r| r.kind == "DaemonSet")
                    .map(|r| format!("{}/{}", meta::namespace(&p.metadata), r.name))
            };
            match c {
                Change::Add(p) => {
                    core.lock().pod_added(p);
                    if let Some(k) = key(p) {
                        q.add(&k);
                    }
                }
                Change::Update(o, p) => {
                    core.lock().pod_updated(o, p);
                    if let Some(k) = key(p) {
                        q.add(&k);
                    }
                }
                Change::Delete(p) => {
                    core.lock().pod_deleted(p);
                    if let Some(k) = key(p) {
                        q.add(&k);
                    }
                }
            }
        });
    }
    {
        let q = q.clone();
        let c2 = ctx.clone();
        ctx.inf.nodes.on(move |_| {
            for d in c2.inf.daemonsets.list() {
                q.add(&meta::key(&d.metadata));
            }
        });
    }
    let c2 = ctx.clone();
    q.run(workers, move |key| {
        let (ctx, core) = (c2.clone(), core.clone());
        async move {
            let Some(ds) = ctx.inf.daemonsets.get(&key) else {
                core.lock().forget(&key);
                return Ok(Next::Done);
            };
            let ns = meta::namespace(&ds.metadata).to_owned();
            let nodes = ctx.inf.nodes.list();
            let pods = ctx.inf.pods.list_ns(&ns);
            let actions = {
                let input = DsInput {
                    ds: &ds,
                    nodes: nodes.iter().map(Arc::as_ref).collect(),
                    pods: pods.iter().map(Arc::as_ref).collect(),
                };
                core.lock().reconcile(&input, ctx.now())
            };
            let dref = ObjectRef::new("apps/v1", "DaemonSet", &ds.metadata);
            let mut next = Next::Done;
            for a in actions {
                match a {
                    DsAction::PatchOwners {
                        namespace,
                        name,
                        uid,
                        owner_references,
                    } => {
                        let patch =
                            json!({"metadata": {"ownerReferences": owner_references, "uid": uid}});
                        rest::patch::<Pod>(&ctx.client, Some(&namespace), &name, "", &patch)
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    DsAction::CreatePods(list) => {
                        for (node, p) in list {
                            match rest::create(&ctx.client, Some(&ns), &p).await {
                                Ok(created) => ctx.event(
                                    COMPONENT,
                                    Event::normal(
                                        dref.clone(),
                                        "SuccessfulCreate",
                                        format!("Created pod: {}", meta::name(&created.metadata)),
                                    ),
                                ),
                                Err(e) => {
                                    core.lock().creation_failed(&key);
                                    ctx.event(
                                        COMPONENT,
                                        Event::warning(
                                            dref.clone(),
                                            "FailedCreate",
                                            format!("Error creating: {e} (node {node})"),
                                        ),
                                    );
                                }
                            }
                        }
                    }
                    DsAction::DeletePods(list) => {
                        let info = rest::info_of::<Pod>(&ctx.client).map_err(|e| e.to_string())?;
                        for p in list {
                            match rest::delete(
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
                            {
                                Ok(()) => ctx.event(
                                    COMPONENT,
                                    Event::normal(
                                        dref.clone(),
                                        "SuccessfulDelete",
                                        format!("Deleted pod: {}", p.name),
                                    ),
                                ),
                                Err(e) => {
                                    core.lock().deletion_failed(&key, &p.key());
                                    ctx.event(
                                        COMPONENT,
                                        Event::warning(
                                            dref.clone(),
                                            "FailedDelete",
                                            format!("Error deleting: {e}"),
                                        ),
                                    );
                                }
                            }
                        }
                    }
                    DsAction::UpdateStatus(st) => {
                        let mut obj: DaemonSet = (*ds).clone();
                        obj.status = Some(*st);
                        if let Err(e) = rest::update(
                            &ctx.client,
                            Some(&ns),
                            meta::name(&ds.metadata),
                            "status",
                            &obj,
                        )
                        .await
                            && !e.is_not_found()
                        {
                            return Err(format!("updating status of daemonset {key}: {e}"));
                        }
                    }
                    DsAction::RequeueAfter(d) => next = Next::After(d),
                    DsAction::Event(e) => ctx.event(COMPONENT, e),
                }
            }
            Ok(next)
        }
    });
}
