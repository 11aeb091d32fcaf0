//! Drives [`crate::endpoints`] and [`crate::endpointslice`]: Service and
//! pod changes → Service keys.

use std::collections::BTreeMap;
use std::sync::Arc;

use ackemu_kube::api::core::v1::{Endpoints, Node, Pod};
use ackemu_kube::api::discovery::v1::EndpointSlice;
use parking_lot::Mutex;

use super::informer::Change;
use super::rest;
use super::{Ctx, Next, Queue};
use crate::endpoints::{EndpointsAction, reconcile, service_selector};
use crate::endpointslice::{
    CONTROLLER_NAME, LABEL_MANAGED_BY, LABEL_SERVICE_NAME, SliceAction, SliceTracker,
};
use crate::util::meta;

/// Services whose selector matches the pod.
fn services_of(ctx: &Ctx, p: &Pod) -> Vec<String> {
    ctx.inf
        .services
        .list_ns(meta::namespace(&p.metadata))
        .iter()
        .filter(|s| service_selector(s).is_some_and(|sel| sel.matches(meta::labels(&p.metadata))))
        .map(|s| meta::key(&s.metadata))
        .collect()
}

fn wire(ctx: &Ctx, q: &Queue) {
    {
        let q = q.clone();
        ctx.inf.services.on(move |c| {
            let s = match c {
                Change::Add(s) | Change::Update(_, s) | Change::Delete(s) => s,
            };
            q.add(&meta::key(&s.metadata));
        });
    }
    {
        let q = q.clone();
        let c2 = ctx.clone();
        ctx.inf.pods.on(move |c| match c {
            Change::Add(p) | Change::Delete(p) => {
                for k in services_of(&c2, p) {
                    q.add(&k);
                }
            }
            Change::Update(old, new) => {
                let mut keys = services_of(&c2, old);
                keys.extend(services_of(&c2, new));
                keys.sort();
                keys.dedup();
                for k in keys {
                    q.add(&k);
                }
            }
        });
    }
}

pub fn start_endpoints(ctx: &Ctx, workers: usize) {
    let q = Queue::new("endpoint", ctx);
    wire(ctx, &q);
    {
        let q = q.clone();
        ctx.inf.endpoints.on(move |c| {
            if let Change::Delete(e) = c {
                q.add(&meta::key(&e.metadata));
            }
        });
    }
    let c2 = ctx.clone();
    q.run(workers, move |key| {
        let ctx = c2.clone();
        async move {
            let (ns, name) = key.split_once('/').unwrap_or(("", key.as_str()));
            let svc = ctx.inf.services.get(&key);
            let pods = ctx.inf.pods.list_ns(ns);
            let cur = ctx.inf.endpoints.get(&key);
            let refs: Vec<&Pod> = pods.iter().map(Arc::as_ref).collect();
            let r = match reconcile(ns, name, svc.as_deref(), &refs, cur.as_deref()) {
                None => return Ok(Next::Done),
                Some(EndpointsAction::Create(e)) => {
                    rest::create::<Endpoints>(&ctx.client, Some(ns), &e)
                        .await
                        .map(|_| ())
                }
                Some(EndpointsAction::Update(e)) => {
                    rest::update::<Endpoints>(&ctx.client, Some(ns), name, "", &e)
                        .await
                        .map(|_| ())
                }
                Some(EndpointsAction::Delete { namespace, name }) => {
                    let info =
                        rest::info_of::<Endpoints>(&ctx.client).map_err(|e| e.to_string())?;
                    rest::delete(
                        &ctx.client,
                        &info,
                        Some(&namespace),
                        &name,
                        rest::Del::default(),
                    )
                    .await
                }
            };
            match r {
                Ok(()) => Ok(Next::Done),
                // A namespace being deleted refuses new objects.
                Err(e) if e.code() == Some(403) => Ok(Next::Done),
                Err(e) => Err(format!("syncing endpoints {key}: {e}")),
            }
        }
    });
}

pub fn start_slices(ctx: &Ctx, workers: usize) {
    let q = Queue::new("endpointslice", ctx);
    wire(ctx, &q);
    let tracker = Arc::new(Mutex::new(SliceTracker::new()));
    {
        let q = q.clone();
        let t = tracker.clone();
        ctx.inf.endpointslices.on(move |c| {
            let s = match c {
                Change::Add(s) | Change::Update(_, s) => s,
                Change::Delete(s) => {
                    t.lock().deleted(meta::uid(&s.metadata));
                    s
                }
            };
            if let Some(svc) = meta::labels(&s.metadata).get(LABEL_SERVICE_NAME) {
                q.add(&format!("{}/{svc}", meta::namespace(&s.metadata)));
            }
        });
    }
    ctx.inf.nodes.require();
    let c2 = ctx.clone();
    q.run(workers, move |key| {
        let (ctx, tracker) = (c2.clone(), tracker.clone());
        async move {
            let Some(svc) = ctx.inf.services.get(&key) else {
                return Ok(Next::Done);
            };
            let ns = meta::namespace(&svc.metadata).to_owned();
            let pods = ctx.inf.pods.list_ns(&ns);
            let slices: Vec<Arc<EndpointSlice>> = ctx
                .inf
                .endpointslices
                .list_ns(&ns)
                .into_iter()
                .filter(|s| {
                    let l = meta::labels(&s.metadata);
                    l.get(LABEL_SERVICE_NAME).map(String::as_str) == Some(meta::name(&svc.metadata))
                        && l.get(LABEL_MANAGED_BY).map(String::as_str) == Some(CONTROLLER_NAME)
                })
                .collect();
            let nodes = ctx.inf.nodes.list();
            let by_name: BTreeMap<String, &Node> = nodes
                .iter()
                .map(|n| (meta::name(&n.metadata).to_owned(), n.as_ref()))
                .collect();
            let out = {
                let t = tracker.lock();
                crate::endpointslice::reconcile(
                    &svc,
                    &pods.iter().map(Arc::as_ref).collect::<Vec<_>>(),
                    &slices.iter().map(Arc::as_ref).collect::<Vec<_>>(),
                    &by_name,
                    &t,
                )
            };
            if out.stale {
                return Err(format!(
                    "endpointslice cache for {key} is older than our writes"
                ));
            }
            for a in out.actions {
                match a {
                    SliceAction::Create(s) => {
                        match rest::create::<EndpointSlice>(&ctx.client, Some(&ns), &s).await {
                            Ok(created) => tracker.lock().update(&created),
                            Err(e) if e.code() == Some(403) => return Ok(Next::Done),
                            Err(e) => {
                                return Err(format!("creating an endpointslice for {key}: {e}"));
                            }
                        }
                    }
                    SliceAction::Update(s) => {
                        let name = meta::name(&s.metadata).to_owned();
                        let updated =
                            rest::update::<EndpointSlice>(&ctx.client, Some(&ns), &name, "", &s)
                                .await
                                .map_err(|e| format!("updating endpointslice {ns}/{name}: {e}"))?;
                        tracker.lock().update(&updated);
                    }
                    SliceAction::Delete { name, uid } => {
                        let info = rest::info_of::<EndpointSlice>(&ctx.client)
                            .map_err(|e| e.to_string())?;
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
                        .map_err(|e| format!("deleting endpointslice {ns}/{name}: {e}"))?;
                        tracker.lock().expect_deletion(&uid);
                    }
                }
            }
            if !out.skipped.is_empty() {
                return Err(out.skipped.join("; "));
            }
            Ok(Next::Done)
        }
    });
}
